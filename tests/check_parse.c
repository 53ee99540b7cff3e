/*
 * check_parse.c - the front-end suite: the .poly grammar and what it
 * lowers to (monomials, normalized polynomial text, settings, defaults,
 * locations), every class of diagnostic and its exact format, reading
 * files, -D definitions, the documented limits, and parsing many texts in
 * one process.  Diagnostics go to a memory stream so tests can read them.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "polyc.h"

/* One parse of a text: the Program (or NULL) and what was reported. */
typedef struct Run {
	SrcFile *src;
	Program *prog;
	Diag d;
	char *out;               /* every diagnostic, NUL-terminated */
	size_t len;
} Run;

/* run_open: r ready to collect diagnostics. */
static void run_open(Run *r)
{
	memset(r, 0, sizeof *r);
	r->d.out = open_memstream(&r->out, &r->len);
}

/* run_parse: r = the parse of text, shown as path. */
static void run_parse(Run *r, const char *path, const char *text)
{
	run_open(r);
	r->src = src_from_string(path, text);
	r->prog = parse_source(r->src, &r->d);
	fflush(r->d.out);
}

/* run_close: release r. */
static void run_close(Run *r)
{
	program_free(r->prog);
	src_free(r->src);
	fclose(r->d.out);
	free(r->out);
}

/* kernel0 = the first kernel of a parse that must succeed. */
static const Kernel *kernel0(Run *r)
{
	ck_assert_msg(r->prog != NULL, "parse failed:\n%s", r->out);
	return &r->prog->kernels[0];
}

/* poly_text_of = the normalized text of a one-polynomial file (static). */
static const char *poly_text_of(const char *poly)
{
	static char text[1024];
	Run r;
	run_parse(&r, "t.poly", poly);
	snprintf(text, sizeof text, "%s", kernel0(&r)->poly_text);
	run_close(&r);
	return text;
}

START_TEST(test_full_kernel)
{
	Run r;
	run_parse(&r, "c.poly",
	          "# comment\n"
	          "kernel compose2 {\n"
	          "    poly      = x1*x2 + x2*x3;   # two edges\n"
	          "    head_dim  = 32;\n"
	          "    value_dim = 16;\n"
	          "    values    = x3;\n"
	          "    scale     = 0.125;\n"
	          "    algorithm = exact;\n"
	          "    bound     = 1.0;\n"
	          "    tolerance = 1e-4;\n"
	          "}\n");
	const Kernel *k = kernel0(&r);
	ck_assert_int_eq(r.prog->nkernels, 1);
	ck_assert_str_eq(k->name, "compose2");
	ck_assert_str_eq(k->poly_text, "x1*x2 + x2*x3");
	ck_assert_int_eq(k->nmono, 2);
	ck_assert_int_eq(k->nvars, 3);
	ck_assert_int_eq(k->head_dim, 32);
	ck_assert_int_eq(k->value_dim, 16);
	ck_assert_uint_eq(k->values, 1u << 3);
	ck_assert_double_eq(k->scale, 0.125);
	ck_assert_int_eq(k->algorithm, PC_ALGO_EXACT);
	ck_assert_double_eq(k->bound, 1.0);
	ck_assert_double_eq(k->tolerance, 1e-4);
	int line, col;
	loc_line_col(k->loc, &line, &col);
	ck_assert_int_eq(line, 2);
	ck_assert_int_eq(col, 8);
	loc_line_col(k->set_loc[PC_SET_SCALE], &line, &col);
	ck_assert_int_eq(line, 7);
	ck_assert_int_eq(col, 17);
	ck_assert_int_eq(k->set_loc[PC_SET_SCALE].len, 5);
	ck_assert_int_eq(r.d.errors, 0);
	ck_assert_str_eq(r.out, "");
	run_close(&r);
}
END_TEST

START_TEST(test_defaults)
{
	Run r;
	run_parse(&r, "d.poly", "kernel k { poly = x1*x2 + x2*x3 + x3*x4; }");
	const Kernel *k = kernel0(&r);
	ck_assert_int_eq(k->head_dim, 64);
	ck_assert_int_eq(k->value_dim, 64);
	ck_assert_uint_eq(k->values, (1u << 2) | (1u << 3) | (1u << 4));
	ck_assert_double_eq(k->scale, 1.0);
	ck_assert_int_eq(k->algorithm, PC_ALGO_AUTO);
	ck_assert_double_eq(k->bound, 0.0);
	ck_assert_double_eq(k->tolerance, 1e-3);
	ck_assert_ptr_nonnull(k->set_loc[PC_SET_POLY].file);
	for (int s = PC_SET_HEAD_DIM; s < PC_SET__COUNT; s++)
		ck_assert_ptr_null(k->set_loc[s].file);
	run_close(&r);
}
END_TEST

START_TEST(test_bare_polynomial)
{
	Run r;
	run_parse(&r, "some/dir/3d-attn v2.poly", "  x1*x2 - x2*x3 ;\n# end\n");
	const Kernel *k = kernel0(&r);
	ck_assert_str_eq(k->name, "_3d_attn_v2");
	ck_assert_int_eq(k->loc.off, 0);
	ck_assert_ptr_eq(k->loc.file, r.src);
	ck_assert_str_eq(k->poly_text, "x1*x2 - x2*x3");
	run_close(&r);
	run_parse(&r, "plain", "x1*x2");
	ck_assert_str_eq(kernel0(&r)->name, "plain");
	run_close(&r);
}
END_TEST

START_TEST(test_monomials)
{
	Run r;
	run_parse(&r, "m.poly", "-0.5*x1*x2 + x1^2*x2 - 1e-2*x2*x3^3 + x1*2*x2 "
	                        "+ 0*x3 + x2*x1*x2");
	const Kernel *k = kernel0(&r);
	static const double coef[] = {-0.5, 1, -0.01, 2, 0, 1};
	static const int degree[] = {2, 3, 4, 2, 1, 3};
	static const int occ[][4] = {{1, 2}, {1, 1, 2}, {2, 3, 3, 3}, {1, 2},
	                             {3}, {2, 1, 2}};
	ck_assert_int_eq(k->nmono, 6);
	for (int m = 0; m < 6; m++) {
		ck_assert_double_eq(k->mono[m].coef, coef[m]);
		ck_assert_int_eq(k->mono[m].degree, degree[m]);
		for (int q = 0; q < degree[m]; q++)
			ck_assert_int_eq(k->mono[m].occ[q], occ[m][q]);
	}
	/* a term's Loc covers the term without its sign */
	ck_assert_int_eq(k->mono[0].loc.off, 1);
	ck_assert_int_eq(k->mono[0].loc.len, 9);
	run_close(&r);
}
END_TEST

/* Polynomials as written and as normalized. */
static const char *const normalized[][2] = {
	{"x1*x2 + x2*x3", "x1*x2 + x2*x3"},
	{"x1*x2+0.5*x2*x3", "x1*x2 + 0.5*x2*x3"},
	{"-x1*x2 - 0.1*x2*x3", "-x1*x2 - 0.1*x2*x3"},
	{"+x1*x1*x2", "x1^2*x2"},
	{"x2*x1*x2", "x2*x1*x2"},
	{"1*x1*x2 - 1*x2", "x1*x2 - x2"},
	{"x1*2*x2*0.25", "0.5*x1*x2"},
	{"10*x1*x2 + 1e20*x2 - 1.5e-30*x2", "10*x1*x2 + 1e+20*x2 - 1.5e-30*x2"},
	{"3e38*x1*x2 + 1.2e-38*x2", "3e+38*x1*x2 + 1.2e-38*x2"},
	{"0.1*x1*x2 + 0.3*x2", "0.1*x1*x2 + 0.3*x2"},
	{"0*x1*x2", "0*x1*x2"},
	{"x2*x3", "x2*x3"},
	{"x1^3*x2^2*x1", "x1^3*x2^2*x1"},
	{"123456789.123*x1*x2", "123456789.123*x1*x2"},
};

START_TEST(test_poly_text)
{
	ck_assert_str_eq(poly_text_of(normalized[_i][0]), normalized[_i][1]);
	/* the text reads back as itself */
	ck_assert_str_eq(poly_text_of(normalized[_i][1]), normalized[_i][1]);
}
END_TEST

START_TEST(test_values_forms)
{
	static const struct { const char *v; uint32_t mask; } cases[] = {
		{"none", 0}, {"x1", 1u << 1}, {"x1, x3", (1u << 1) | (1u << 3)},
		{"x3,x2", (1u << 2) | (1u << 3)},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		char text[128];
		Run r;
		snprintf(text, sizeof text, "kernel k { poly = x1*x2*x3; values = %s; }",
		         cases[i].v);
		run_parse(&r, "v.poly", text);
		ck_assert_uint_eq(kernel0(&r)->values, cases[i].mask);
		run_close(&r);
	}
}
END_TEST

START_TEST(test_several_kernels)
{
	Run r;
	run_parse(&r, "s.poly", "kernel a { poly = x1*x2; }\n"
	                        "kernel b { scale = -2; poly = x2*x3; }\n");
	ck_assert_ptr_nonnull(r.prog);
	ck_assert_int_eq(r.prog->nkernels, 2);
	ck_assert_str_eq(r.prog->kernels[1].name, "b");
	ck_assert_double_eq(r.prog->kernels[1].scale, -2.0);
	ck_assert_int_eq(r.prog->kernels[1].nvars, 3);
	run_close(&r);
}
END_TEST

/* Invalid texts: what the first diagnostic says and how many errors. */
static const struct Bad {
	const char *text, *says;
	int errors;
} bad[] = {
	{"", "e.poly:1:1: error: no kernel in file", 1},
	{"# only a comment\n", "no kernel in file", 1},
	{"kernel k { poly = x1*x2 }", "e.poly:1:24: error: expected ';' after setting", 1},
	{"kernel k { poly = x1*x2; ", "expected a setting or '}', found the end of the file", 1},
	{"kernel { }", "expected a kernel name after 'kernel', found '{'", 1},
	{"kernel k poly", "expected '{' after the kernel name, found 'poly'", 1},
	{"kernel k { poly x1; }", "expected '=' after the setting name, found 'x1'", 1},
	{"kernel k { poly = ; }", "expected a value after '=', found ';'", 1},
	{"x1**x2", "expected a number or a variable after '*', found '*'", 1},
	{"x1^x2", "expected a power (a positive integer) after '^', found 'x2'", 1},
	{"x1*x2 x3", "expected '+', '-', '*', ';' or the end of the file, found 'x3'", 1},
	{"x1 @ x2", "e.poly:1:4: error: unexpected character '@'", 1},
	{"x1*x2 + \x01", "unexpected character (byte 0x01)", 1},
	{"1.2.3*x1", "malformed number '1.2.3'", 1},
	{"1e*x1", "malformed number '1e'", 1},
	{"2x1", "malformed number '2x1'", 1},
	{"x1*x2 + 3", "e.poly:1:9: error: a term needs at least one variable", 1},
	{"x0*x1", "there is no variable x0", 1},
	{"x1*x17", "variable 'x17' is out of range", 1},
	{"x1*x02", "variable 'x02' has a leading zero", 1},
	{"x1*z", "'z' is not a variable", 1},
	{"x1^0", "a power must be at least 1", 1},
	{"x1^17", "power 17 is too large", 1},
	{"x1^2.0", "a power must be a positive integer, not '2.0'", 1},
	{"x1^9*x2^8", "a monomial has at most 16 factor occurrences; this one has 17", 1},
	{"x1*x2 + x2*x4", "the polynomial uses x4 but not x3", 1},
	{"1e999*x1", "number '1e999' does not fit the kernel's float arithmetic", 1},
	{"1e39*x1*x2", "e.poly:1:1: error: number '1e39' does not fit the kernel's float arithmetic", 1},
	{"1e-400*x1*x2", "e.poly:1:1: error: number '1e-400' does not fit the kernel's float arithmetic", 1},
	{"1e-39*x1*x2", "number '1e-39' does not fit the kernel's float arithmetic", 1},
	{"0.0*x1*x2 + 1e20*1e20*x2", "e.poly:1:13: error: the coefficient of this term, 1e+40, does not fit", 1},
	{"1e-20*1e-20*x1", "the coefficient of this term, 1e-40, does not fit", 1},
	{"kernel k { poly = 1e30*x1*x2; scale = 1e10; }", "e.poly:1:19: error: scale times this term's coefficient, 1e+40, does not fit", 1},
	{"kernel k { poly = x1*x2; scale = 1e-39; }", "number '1e-39' does not fit", 1},
	{"kernel k { poly = x1*x2; tolerance = 1e-60; }", "number '1e-60' does not fit", 1},
	{"kernel main { poly = x1*x2; }", "e.poly:1:8: error: kernel name 'main' is a name of the C library", 1},
	{"kernel exp { poly = x1*x2; }", "kernel name 'exp' is a name of the C library", 1},
	{"kernel malloc { poly = x1*x2; }", "kernel name 'malloc' is a name of the C library", 1},
	{"kernel NULL { poly = x1*x2; }", "kernel name 'NULL' is a name of the C library", 1},
	{"kernel int64_t { poly = x1*x2; }", "kernel name 'int64_t' is a name of the C library", 1},
	{"kernel pa_status { poly = x1*x2; }", "kernel name 'pa_status' is taken by the runtime", 1},
	{"kernel pa_reference { poly = x1*x2; }", "kernel name 'pa_reference' is taken by the runtime", 1},
	{"kernel _x { poly = x1*x2; }", "kernel name '_x' begins with '_'", 1},
	{"kernel a { poly = x1*x2; } kernel a_info { poly = x1*x2; }", "e.poly:1:35: error: kernel name 'a_info' clashes with the C symbols of kernel 'a'", 1},
	{"kernel s_exact { poly = x1*x2; } kernel s { poly = x1*x2; }", "e.poly:1:41: error: kernel name 's' clashes with the C symbols of kernel 's_exact'", 1},
	{"kernel k { poly = x1; head_dim = x1; }", "head_dim must be an integer from 1 to 4096, not 'x1'", 1},
	{"kernel k { poly = x1; head_dim = 4097; }", "head_dim must be an integer from 1 to 4096, not '4097'", 1},
	{"kernel k { poly = x1; value_dim = 12345678901234567890; }", "value_dim must be an integer", 1},
	{"kernel k { poly = x1; value_dim = 64.0; }", "value_dim must be an integer", 1},
	{"kernel k { poly = x1; head_dim = -64; }", "head_dim must be an integer", 1},
	{"kernel k { poly = x1; scale = x1*x2; }", "scale must be a number, not 'x1*x2'", 1},
	{"kernel k { poly = x1; bound = 0; }", "bound must be a number greater than 0, not '0'", 1},
	{"kernel k { poly = x1; tolerance = 0; }", "tolerance must be a number between 0 and 1", 1},
	{"kernel k { poly = x1; algorithm = fast; }", "algorithm must be auto, exact or approx, not 'fast'", 1},
	{"kernel k { poly = x1*x2; values = x3; }", "x3 is not a variable of the polynomial (its variables are x1 to x2)", 1},
	{"kernel k { poly = x1*x2; values = x2, x2; }", "x2 is listed twice in values", 1},
	{"kernel k { poly = x1*x2; values = 2; }", "values must be 'none' or variables", 1},
	{"kernel k { poly = x1, x2; }", "poly must be a polynomial", 1},
	{"kernel k { poly = x1; size = 3; }", "unknown setting 'size' (known: poly, head_dim,", 1},
	{"kernel k { poly = x1; scale = 1; scale = 2; }", "e.poly:1:34: error: setting 'scale' is given twice", 1},
	{"kernel k { scale = 2; }", "e.poly:1:8: error: kernel 'k' has no 'poly' setting", 1},
	{"kernel k { poly = x1; } kernel k { poly = x1; }", "e.poly:1:32: error: kernel 'k' is defined twice", 1},
	{"kernel while { poly = x1; }", "kernel name 'while' is a C keyword", 1},
	{"kernel k { poly = x1; head_dim = 0; algorithm = x; }", "head_dim must be", 2},
	{"kernel a { poly = x1; scale = x1; } kernel b { head_dim = 0; }", "scale must be a number", 3},
};

START_TEST(test_errors)
{
	Run r;
	run_parse(&r, "e.poly", bad[_i].text);
	ck_assert_msg(r.prog == NULL, "accepted: %s", bad[_i].text);
	ck_assert_msg(strstr(r.out, bad[_i].says) != NULL,
	              "for %s\nwanted: %s\ngot:\n%s", bad[_i].text, bad[_i].says,
	              r.out);
	ck_assert_msg(strncmp(r.out, "e.poly:", 7) == 0, "no location: %s", r.out);
	ck_assert_int_eq(r.d.errors, bad[_i].errors);
	run_close(&r);
}
END_TEST

START_TEST(test_diag_format)
{
	Run r;
	run_parse(&r, "tab.poly", "kernel k {\n\tpoly\t= x1*x2;\n\thead_dim = 0x10;\n}\n");
	ck_assert_ptr_null(r.prog);
	ck_assert_str_eq(r.out,
	                 "tab.poly:3:13: error: malformed number '0x10'\n"
	                 "    \thead_dim = 0x10;\n"
	                 "    \t           ^~~~\n");
	run_close(&r);
	run_parse(&r, "two.poly", "kernel k {\n  poly = x1;\n  poly = x2;\n}");
	ck_assert_str_eq(r.out,
	                 "two.poly:3:3: error: setting 'poly' is given twice\n"
	                 "      poly = x2;\n"
	                 "      ^~~~\n"
	                 "two.poly:2:3: note: first given here\n"
	                 "      poly = x1;\n"
	                 "      ^~~~\n");
	ck_assert_int_eq(r.d.errors, 1);
	run_close(&r);
}
END_TEST

START_TEST(test_diag_plain)
{
	Run r;
	run_open(&r);
	diag_plain(&r.d, "cannot read '%s'", "x");
	diag_error(&r.d, (Loc){0}, "no place");
	fflush(r.d.out);
	ck_assert_str_eq(r.out, "polyc: error: cannot read 'x'\n"
	                        "polyc: error: no place\n");
	ck_assert_int_eq(r.d.errors, 2);
	run_close(&r);
}
END_TEST

START_TEST(test_loc_line_col)
{
	SrcFile *f = src_from_string("l", "ab\ncd\n\nef");
	int line, col;
	loc_line_col((Loc){f, 0, 1}, &line, &col);
	ck_assert_int_eq(line * 100 + col, 101);
	loc_line_col((Loc){f, 4, 1}, &line, &col);
	ck_assert_int_eq(line * 100 + col, 202);
	loc_line_col((Loc){f, 8, 1}, &line, &col);
	ck_assert_int_eq(line * 100 + col, 402);
	Loc s = loc_span((Loc){f, 1, 1}, (Loc){f, 4, 2});
	ck_assert_int_eq(s.off, 1);
	ck_assert_int_eq(s.len, 5);
	src_free(f);
}
END_TEST

/* write_temp: a temporary file holding n bytes of text; its path in buf. */
static void write_temp(char *buf, const char *text, size_t n)
{
	strcpy(buf, "/tmp/check_parse_XXXXXX");
	int fd = mkstemp(buf);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, n), (ssize_t)n);
	close(fd);
}

START_TEST(test_src_read)
{
	char path[64];
	Run r;
	run_open(&r);
	write_temp(path, "x1*x2\0x3", 8);
	ck_assert_ptr_null(src_read(path, &r.d));
	remove(path);
	char *big = malloc(PC_MAX_FILE + 1);
	memset(big, ' ', PC_MAX_FILE + 1);
	write_temp(path, big, PC_MAX_FILE + 1);
	ck_assert_ptr_null(src_read(path, &r.d));
	remove(path);
	ck_assert_ptr_null(src_read("/nonexistent/x.poly", &r.d));
	fflush(r.d.out);
	ck_assert_ptr_nonnull(strstr(r.out, ":1:6: error: NUL byte (0x00): a .poly file is text"));
	ck_assert_ptr_nonnull(strstr(r.out, ":1:1048577: error: the file goes on past 1048576 bytes"));
	ck_assert_ptr_nonnull(strstr(r.out, "polyc: error: cannot read '/nonexistent/x.poly'"));
	ck_assert_int_eq(r.d.errors, 3);
	/* exactly PC_MAX_FILE bytes is fine */
	memcpy(big, "x1*x2", 5);
	write_temp(path, big, PC_MAX_FILE);
	Program *p = parse_file(path, &r.d);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(p->file->len, PC_MAX_FILE);
	SrcFile *src = p->file;
	program_free(p);
	src_free(src);
	remove(path);
	free(big);
	run_close(&r);
}
END_TEST

/* parses = whether text is accepted; *errors = errors reported. */
static bool parses(const char *text, int *errors)
{
	Run r;
	run_parse(&r, "lim.poly", text);
	bool ok = r.prog != NULL;
	*errors = r.d.errors;
	run_close(&r);
	return ok;
}

/* sum_text: "c*x1*x2 + …" with n terms into buf. */
static void sum_text(char *buf, int n)
{
	buf[0] = 0;
	for (int i = 0; i < n; i++)
		sprintf(buf + strlen(buf), "%s%d*x1*x2", i ? " + " : "", i + 1);
}

START_TEST(test_limits)
{
	static char buf[1 << 15];
	int errors;
	sum_text(buf, PC_MAX_MONOMIALS);
	ck_assert(parses(buf, &errors));
	sum_text(buf, PC_MAX_MONOMIALS + 1);
	ck_assert(!parses(buf, &errors));
	ck_assert_int_eq(errors, 1);
	ck_assert(parses("x1^8*x2^8", &errors));
	ck_assert(!parses("x1^8*x2^8*x1", &errors));
	buf[0] = 0;
	for (int j = 2; j <= PC_MAX_VARS; j++)
		sprintf(buf + strlen(buf), "%sx1*x%d", j > 2 ? " + " : "", j);
	ck_assert(parses(buf, &errors));
	buf[0] = 0;
	for (int i = 0; i < PC_MAX_KERNELS; i++)
		sprintf(buf + strlen(buf), "kernel k%d { poly = x1; }\n", i);
	ck_assert(parses(buf, &errors));
	strcat(buf, "kernel extra { poly = x1; }\nkernel more { poly = x1; }\n");
	ck_assert(!parses(buf, &errors));
	ck_assert_int_eq(errors, 1);
	snprintf(buf, sizeof buf, "kernel %.*s { poly = x1; }", PC_MAX_NAME,
	         "k123456789k123456789k123456789k123456789k123456789k123456789k1234");
	ck_assert(parses(buf, &errors));
	snprintf(buf, sizeof buf, "kernel %.*s { poly = x1; }", PC_MAX_NAME + 1,
	         "k123456789k123456789k123456789k123456789k123456789k123456789k1234");
	ck_assert(!parses(buf, &errors));
}
END_TEST

/* repeat_text = a heap string: head, then item n times joined by sep,
 * then tail. */
static char *repeat_text(const char *head, const char *item, const char *sep,
                         int n, const char *tail)
{
	size_t len = strlen(head) + (size_t)n * (strlen(item) + strlen(sep)) +
	             strlen(tail) + 1;
	char *buf = malloc(len), *at = buf;
	at = stpcpy(at, head);
	for (int i = 0; i < n; i++)
		at = stpcpy(stpcpy(at, i ? sep : ""), item);
	strcpy(at, tail);
	return buf;
}

/* first_error_is: the parse of text fails with errors errors, the first
 * of which contains msg. */
static void first_error_is(char *text, int errors, const char *msg)
{
	Run r;
	run_parse(&r, "big.poly", text);
	ck_assert_ptr_null(r.prog);
	ck_assert_int_eq(r.d.errors, errors);
	ck_assert_msg(strstr(r.out, msg) != NULL, "no '%s' in:\n%.400s", msg,
	              r.out);
	run_close(&r);
	free(text);
}

/* Long inputs within the file-size limit: the grammar has no nesting and
 * its lists are left-recursive, so the parser's stack stays small however
 * long a polynomial or a term is, and each limit is reported once. */
START_TEST(test_long_inputs)
{
	first_error_is(repeat_text("", "x1*x2", " + ", 100000, ""), 1,
	               "too many monomials: a polynomial has at most 64");
	first_error_is(repeat_text("", "x1", "*", 100000, ""), 1,
	               "a monomial has at most 16 factor occurrences; this one "
	               "has 100000");
	/* 255 "defined twice", then the limit ends the file; only the
	 * first PC_MAX_ERRORS are shown */
	first_error_is(repeat_text("", "kernel k { poly = x1; }", "\n", 1000, ""),
	               256, "polyc: error: too many errors (20); stopping here");
	first_error_is(repeat_text("", "-", "", 100000, "x1"), 1,
	               "expected a number or a variable");
	char *name = repeat_text("kernel ", "k", "", 100000, " { poly = x1; }");
	first_error_is(name, 1, "is longer than 63 characters");
}
END_TEST

/* define = the diagnostics of applying def to a parse of text ("" if
 * none); *ok = what apply_define returned; *r keeps the Program. */
static void define(Run *r, const char *text, const char *def, bool *ok)
{
	run_parse(r, "f.poly", text);
	ck_assert_ptr_nonnull(r->prog);
	*ok = apply_define(r->prog, def, &r->d);
	fflush(r->d.out);
}

static const char two_kernels[] =
	"kernel a { poly = x1*x2 + x2*x3; values = x3; }\n"
	"kernel b { poly = x1*x2 + x2*x3; }\n";

START_TEST(test_define)
{
	Run r;
	bool ok;
	define(&r, two_kernels, "head_dim=128", &ok);
	ck_assert(ok);
	ck_assert_int_eq(r.prog->kernels[0].head_dim, 128);
	ck_assert_int_eq(r.prog->kernels[1].head_dim, 128);
	ck_assert_ptr_eq(r.prog->kernels[1].set_loc[PC_SET_HEAD_DIM].file,
	                 r.prog->defs[0]);
	ck_assert_int_eq(r.prog->kernels[1].set_loc[PC_SET_HEAD_DIM].off, 12);
	run_close(&r);
	define(&r, two_kernels, "b.poly = x1*x2 + x2*x3 + x3*x4", &ok);
	ck_assert(ok);
	ck_assert_int_eq(r.prog->kernels[0].nvars, 3);
	ck_assert_int_eq(r.prog->kernels[1].nvars, 4);
	ck_assert_uint_eq(r.prog->kernels[1].values, 0x1c); /* new default */
	ck_assert_str_eq(r.prog->kernels[1].poly_text, "x1*x2 + x2*x3 + x3*x4");
	ck_assert(apply_define(r.prog, "values=none", &r.d));
	ck_assert(apply_define(r.prog, "a.algorithm=exact", &r.d));
	ck_assert_uint_eq(r.prog->kernels[1].values, 0);
	ck_assert_int_eq(r.prog->kernels[0].algorithm, PC_ALGO_EXACT);
	ck_assert_int_eq(r.prog->kernels[1].algorithm, PC_ALGO_AUTO);
	ck_assert_str_eq(r.out, "");
	run_close(&r);
}
END_TEST

START_TEST(test_define_mask)
{
	Run r;
	bool ok;
	define(&r, two_kernels, "mask=causal", &ok);
	ck_assert(ok);
	const Kernel *a = &r.prog->kernels[0];
	ck_assert(a->causal);
	ck_assert_int_eq(a->nmasks, 2);
	ck_assert_int_eq(a->mask[0].a, 2);
	ck_assert_int_eq(a->mask[0].b, 1);
	ck_assert_int_eq(a->mask[1].a, 3);
	ck_assert_int_eq(a->mask[1].b, 2);
	ck_assert(apply_define(r.prog, "b.mask=x2<x1, x2 <= x3", &r.d));
	ck_assert(apply_define(r.prog, "b.window=16", &r.d));
	const Kernel *b = &r.prog->kernels[1];
	ck_assert(!b->causal);
	ck_assert_int_eq(b->nmasks, 2);
	ck_assert(b->mask[0].strict && !b->mask[1].strict);
	ck_assert_int_eq(b->mask[1].a, 2);
	ck_assert_int_eq(b->mask[1].b, 3);
	ck_assert_int_eq(b->window, 16);
	/* a new polynomial expands causal again */
	ck_assert(apply_define(r.prog, "a.poly=x1*x2 + x1*x3 + x3*x4", &r.d));
	ck_assert_int_eq(a->nmasks, 3);
	ck_assert_int_eq(a->mask[2].a, 4);
	ck_assert_int_eq(a->mask[2].b, 3);
	ck_assert(apply_define(r.prog, "a.mask=none", &r.d));
	ck_assert_int_eq(a->nmasks, 0);
	ck_assert_str_eq(r.out, "");
	/* b keeps its window, which then has no mask */
	ck_assert(!apply_define(r.prog, "b.mask=none", &r.d));
	ck_assert_ptr_nonnull(strstr(r.out, "window of kernel 'b' needs a mask"));
	run_close(&r);
}
END_TEST

/* Bad definitions and what they say. */
static const char *const bad_defs[][2] = {
	{"head_dim=abc", "<command line>:1:13: error: head_dim must be an integer "
	                 "from 1 to 4096, not 'abc'\n"
	                 "    -D head_dim=abc\n"
	                 "                ^~~\n"},
	{"head_dim", "<command line>:1:4: error: expected KEY=VALUE or "
	             "KERNEL.KEY=VALUE after -D\n"},
	{"c.scale=2", "<command line>:1:4: error: no kernel named 'c' in f.poly\n"},
	{"heads=2", "<command line>:1:4: error: unknown setting 'heads'"},
	{"scale=", "<command line>:1:10: error: expected a value after '=', found "
	           "the end of the definition\n"},
	{"values=x1 x2", "expected an operator or the end of the definition, "
	                 "found 'x2'"},
	{"poly=x1*x2", "f.poly:1:43: error: values names x3, but the polynomial "
	               "of kernel 'a' has only 2 variables\n"},
	{"a.values=x4", "<command line>:1:13: error: x4 is not a variable of the "
	                "polynomial"},
};

START_TEST(test_define_errors)
{
	Run r;
	bool ok;
	define(&r, two_kernels, bad_defs[_i][0], &ok);
	ck_assert(!ok);
	ck_assert_msg(strstr(r.out, bad_defs[_i][1]) != NULL,
	              "-D %s\nwanted: %s\ngot: %s", bad_defs[_i][0],
	              bad_defs[_i][1], r.out);
	run_close(&r);
}
END_TEST

START_TEST(test_reentrant)
{
	/* many parses, good and bad, interleaved in one process */
	for (int i = 0; i < 500; i++) {
		char text[128];
		Run r;
		snprintf(text, sizeof text, "kernel k%d { poly = x1*x2 + %d*x2*x%d; }",
		         i, i + 2, 3 + i % 10);
		run_parse(&r, "r.poly", text);
		bool valid = 3 + i % 10 == 3;
		ck_assert_int_eq(r.prog != NULL, valid);
		if (valid)
			ck_assert_int_eq(r.prog->kernels[0].mono[1].coef, i + 2);
		run_close(&r);
		run_parse(&r, "r.poly", "kernel { oops");
		ck_assert_ptr_null(r.prog);
		ck_assert_int_eq(r.d.errors, 1);
		run_close(&r);
	}
}
END_TEST

/* parse_suite: the front-end tests. */
Suite *parse_suite(void)
{
	Suite *s = suite_create("parse");
	TCase *tc = tcase_create("accept");
	tcase_add_test(tc, test_full_kernel);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_bare_polynomial);
	tcase_add_test(tc, test_monomials);
	tcase_add_loop_test(tc, test_poly_text, 0,
	                    sizeof normalized / sizeof *normalized);
	tcase_add_test(tc, test_values_forms);
	tcase_add_test(tc, test_several_kernels);
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_long_inputs);
	tcase_add_test(tc, test_reentrant);
	suite_add_tcase(s, tc);
	tc = tcase_create("diagnose");
	tcase_add_loop_test(tc, test_errors, 0, sizeof bad / sizeof *bad);
	tcase_add_test(tc, test_diag_format);
	tcase_add_test(tc, test_diag_plain);
	tcase_add_test(tc, test_loc_line_col);
	tcase_add_test(tc, test_src_read);
	suite_add_tcase(s, tc);
	tc = tcase_create("define");
	tcase_add_test(tc, test_define);
	tcase_add_test(tc, test_define_mask);
	tcase_add_loop_test(tc, test_define_errors, 0,
	                    sizeof bad_defs / sizeof *bad_defs);
	suite_add_tcase(s, tc);
	return s;
}
