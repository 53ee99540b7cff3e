/*
 * ast.c - the syntax tree of .poly files and its lowering into Kernels.
 *
 * The grammar calls the constructors at the top of this file, one per
 * action, and describes nothing but shape.  program_build then turns the
 * tree into the Kernels of polyc.h: it looks each setting up by name,
 * checks that its value has the right form and range, expands the
 * polynomial into monomials, fills in defaults and checks what spans
 * settings (the variables of `values` against the polynomial).  Every
 * problem is reported at the node it concerns and counted; lowering goes
 * on after an error so that one run reports them all, and any error
 * discards the Program.  program_define applies a -D definition the same
 * way to a Program already built.
 */
#include "polyc.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ the tree */

/* ast_new = an empty node of the given kind, without a location yet. */
Ast *ast_new(AstKind kind)
{
	Ast *a = calloc(1, sizeof *a);
	a->kind = kind;
	return a;
}

/* ast_leaf = a number or name leaf spelled by the source at l. */
Ast *ast_leaf(Loc l, AstKind kind)
{
	Ast *a = ast_new(kind);
	a->loc = l;
	return a;
}

/* ast_add = parent with kid appended to its children, now covering l. */
Ast *ast_add(Loc l, Ast *parent, Ast *kid)
{
	if (parent->last)
		parent->last->next = kid;
	else
		parent->kids = kid;
	parent->last = kid;
	parent->loc = l;
	return parent;
}

/* ast_named = node given its name, now covering l. */
Ast *ast_named(Loc l, Ast *node, Ast *name)
{
	node->name = name;
	node->loc = l;
	return node;
}

/* ast_pair = a new node of kind over l with a name and one child (either
 * may be NULL). */
Ast *ast_pair(Loc l, AstKind kind, Ast *name, Ast *kid)
{
	Ast *a = ast_named(l, ast_new(kind), name);
	return kid ? ast_add(l, a, kid) : a;
}

/* ast_negate = term, marked as subtracted. */
Ast *ast_negate(Ast *term)
{
	term->neg = !term->neg;
	return term;
}

/* ast_bare = a file whose whole text is the polynomial poly at l. */
Ast *ast_bare(Loc l, Ast *poly)
{
	return ast_add(l, ast_new(AST_FILE), poly);
}

/* ast_order = the order constraint a <= b (a < b when strict) at l. */
Ast *ast_order(Loc l, Ast *a, Ast *b, bool strict)
{
	Ast *o = ast_add(l, ast_add(l, ast_new(AST_ORDER), a), b);
	o->strict = strict;
	return o;
}

/* ast_free: release a and everything below it (NULL is fine). */
void ast_free(Ast *a)
{
	while (a) {
		Ast *next = a->next;
		ast_free(a->name);
		ast_free(a->kids);
		free(a);
		a = next;
	}
}

/* src_at = the source text a leaf or node spells. */
static const char *src_at(const Ast *a)
{
	return a->loc.file->text + a->loc.off;
}

/* SPELL(a): printf arguments for "%.*s" showing what a spells. */
#define SPELL(a) (a)->loc.len, src_at(a)

/* QUOTE(a): like SPELL but cut to 40 bytes, for values in messages. */
#define QUOTE(a) ((a)->loc.len > 40 ? 40 : (a)->loc.len), src_at(a)

/* spells: a spells exactly the word s. */
static bool spells(const Ast *a, const char *s)
{
	return (size_t)a->loc.len == strlen(s) && memcmp(src_at(a), s, a->loc.len) == 0;
}

/* all_digits: s[0..len) is a non-empty run of decimal digits. */
static bool all_digits(const char *s, int len)
{
	for (int i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return len > 0;
}

/* ----------------------------------------------------------- the names */

static const char *const setting_names[] = {
#define X(e, s) s,
	PC_SETTINGS(X)
#undef X
};

static const char *const algo_names[] = {"auto", "exact", "approx"};

/* setting_name = the key of setting s in .poly syntax. */
const char *setting_name(PcSetting s)
{
	return setting_names[s];
}

/* algo_name = the spelling of algorithm a. */
const char *algo_name(PcAlgo a)
{
	return algo_names[a];
}

/* setting_of = the setting key names; PC_SET__COUNT (reported) if none. */
static PcSetting setting_of(const Ast *key, Diag *d)
{
	char known[256];
	int o = 0;
	for (int s = 0; s < PC_SET__COUNT; s++) {
		if (spells(key, setting_names[s]))
			return (PcSetting)s;
		o += snprintf(known + o, sizeof known - o, "%s%s", s ? ", " : "",
		              setting_names[s]);
	}
	diag_error(d, key->loc, "unknown setting '%.*s' (known: %s)", QUOTE(key),
	           known);
	return PC_SET__COUNT;
}

/* ---------------------------------------------------------- the values */

/* bad_value: report that setting s must be what, not v; = false. */
static bool bad_value(Diag *d, PcSetting s, const Ast *v, const char *what)
{
	diag_error(d, v->loc, "%s must be %s, not '%.*s'%s", setting_name(s),
	           what, QUOTE(v), v->loc.len > 40 ? "..." : "");
	return false;
}

/* single_factor = the factor of a value written as one term of one
 * factor (a number or a name), else NULL; *neg: it was written after '-'. */
static const Ast *single_factor(const Ast *v, bool *neg)
{
	if (v->kind != AST_POLY || v->kids->next || v->kids->kids->next)
		return NULL;
	*neg = v->kids->neg;
	return v->kids->kids;
}

/* single_name = the name a value consists of, or NULL. */
static const Ast *single_name(const Ast *v)
{
	bool neg;
	const Ast *f = single_factor(v, &neg);
	return f && !neg && f->kind == AST_NAME ? f : NULL;
}

/* fits_float: x is 0 or a normal float in magnitude (FLT_MIN to
 * FLT_MAX): what the kernels' float arithmetic holds without turning it
 * into infinity, zero or a denormal. */
static bool fits_float(double x)
{
	return x == 0 || (fabs(x) >= FLT_MIN && fabs(x) <= FLT_MAX);
}

/* FLOAT_RANGE: how messages state fits_float's range. */
#define FLOAT_RANGE "0, or a magnitude from 1.2e-38 to 3.4e+38"

/* nonzero_digits: the mantissa of literal s[0..len) has a digit other
 * than 0 (so the literal is not zero, whatever strtod rounds it to). */
static bool nonzero_digits(const char *s, int len)
{
	for (int i = 0; i < len && s[i] != 'e' && s[i] != 'E'; i++)
		if (s[i] >= '1' && s[i] <= '9')
			return true;
	return false;
}

/* number_of: *x = the value of a number literal; false (reported) when
 * it does not fit the kernels' float arithmetic: too large for a float,
 * or so small that it would become 0 or a denormal (both ends alike). */
static bool number_of(const Ast *num, double *x, Diag *d)
{
	char *s = strndup(src_at(num), num->loc.len);
	*x = strtod(s, NULL);
	free(s);
	bool lost = *x == 0 && nonzero_digits(src_at(num), num->loc.len);
	if (fits_float(*x) && !lost)
		return true;
	diag_error(d, num->loc, "number '%.*s' does not fit the kernel's float "
	           "arithmetic (" FLOAT_RANGE ")", QUOTE(num));
	return false;
}

/* integer_of = the value of a number literal made of digits only, capped
 * at a billion; -1 if it has a point or an exponent. */
static long integer_of(const Ast *num)
{
	if (!all_digits(src_at(num), num->loc.len))
		return -1;
	if (num->loc.len > 9)
		return 1000000000;
	return strtol(src_at(num), NULL, 10);
}

/* number_value: *x = the value of v, a number literal with an optional
 * sign; false (reported as "s must be what") otherwise. */
static bool number_value(const Ast *v, PcSetting s, const char *what,
                         double *x, Diag *d)
{
	bool neg;
	const Ast *f = single_factor(v, &neg);
	if (!f || f->kind != AST_NUM)
		return bad_value(d, s, v, what);
	if (!number_of(f, x, d))
		return false;
	*x = neg ? -*x : *x;
	return true;
}

/* dim_value = v as an integer from 1 to PC_MAX_DIM for setting s, or 0
 * (reported). */
static int dim_value(const Ast *v, PcSetting s, Diag *d)
{
	bool neg;
	const Ast *f = single_factor(v, &neg);
	long x = f && !neg && f->kind == AST_NUM ? integer_of(f) : -1;
	if (x >= 1 && x <= PC_MAX_DIM)
		return (int)x;
	bad_value(d, s, v, "an integer from 1 to 4096");
	return 0;
}

/* var_index = j of a name spelling x_j with 1 ≤ j ≤ PC_MAX_VARS, or 0
 * (reported). */
static int var_index(const Ast *name, Diag *d)
{
	const char *s = src_at(name);
	int len = name->loc.len;
	if (len < 2 || s[0] != 'x' || !all_digits(s + 1, len - 1))
		diag_error(d, name->loc, "'%.*s' is not a variable: variables are "
		           "x1 to x%d", QUOTE(name), PC_MAX_VARS);
	else if (s[1] == '0' && len > 2)
		diag_error(d, name->loc, "variable '%.*s' has a leading zero",
		           SPELL(name));
	else if (len > 3 || atoi(s + 1) > PC_MAX_VARS)
		diag_error(d, name->loc, "variable '%.*s' is out of range: at most "
		           "%d variables (x1 to x%d)", QUOTE(name), PC_MAX_VARS,
		           PC_MAX_VARS);
	else if (atoi(s + 1) == 0)
		diag_error(d, name->loc, "there is no variable x0: variables are "
		           "numbered from x1");
	else
		return atoi(s + 1);
	return 0;
}

/* power_of = the exponent num spells, from 1 to PC_MAX_DEGREE, or 0
 * (reported). */
static int power_of(const Ast *num, Diag *d)
{
	long p = integer_of(num);
	if (p < 0)
		diag_error(d, num->loc, "a power must be a positive integer, not "
		           "'%.*s'", QUOTE(num));
	else if (p == 0)
		diag_error(d, num->loc, "a power must be at least 1");
	else if (p > PC_MAX_DEGREE)
		diag_error(d, num->loc, "power %.*s is too large: a monomial has at "
		           "most %d factor occurrences", QUOTE(num), PC_MAX_DEGREE);
	else
		return (int)p;
	return 0;
}

/* ------------------------------------------------------ the polynomial */

/* add_occ: append `times` occurrences of x_j to m (counting past
 * PC_MAX_DEGREE without storing, so the caller can report the degree). */
static void add_occ(Monomial *m, int j, int times)
{
	for (int i = 0; i < times; i++, m->degree++)
		if (m->degree < PC_MAX_DEGREE)
			m->occ[m->degree] = j;
}

/* factor_into: multiply factor f (number, variable or power) into m;
 * false (reported) if it is invalid. */
static bool factor_into(Monomial *m, const Ast *f, Diag *d)
{
	double x;
	int j, p;
	switch (f->kind) {
	case AST_NUM:
		if (!number_of(f, &x, d))
			return false;
		m->coef *= x;
		return true;
	case AST_NAME:
		j = var_index(f, d);
		add_occ(m, j, 1);
		return j != 0;
	default:
		j = var_index(f->name, d);
		p = power_of(f->kids, d);
		add_occ(m, j, p);
		return j != 0 && p != 0;
	}
}

/* term_monomial: m = term t: coefficient (sign included) times its
 * variables in written order; false (reported) if t is invalid. */
static bool term_monomial(Monomial *m, const Ast *t, Diag *d)
{
	bool ok = true;
	*m = (Monomial){.coef = t->neg ? -1.0 : 1.0, .loc = t->loc};
	for (const Ast *f = t->kids; f; f = f->next)
		ok = factor_into(m, f, d) && ok;
	if (!ok)
		return false;
	if (m->degree == 0)
		diag_error(d, t->loc, "a term needs at least one variable");
	else if (m->degree > PC_MAX_DEGREE)
		diag_error(d, t->loc, "a monomial has at most %d factor "
		           "occurrences; this one has %d", PC_MAX_DEGREE, m->degree);
	else if (!fits_float(m->coef))
		diag_error(d, t->loc, "the coefficient of this term, %g, does not "
		           "fit the kernel's float arithmetic (" FLOAT_RANGE ")",
		           m->coef);
	else
		return true;
	return false;
}

/* highest_var = t, the highest variable of monomials m[0..n); false
 * (reported at poly) if some variable from x2 to x_t does not appear. */
static bool highest_var(const Monomial *m, int n, const Ast *poly, int *t,
                        Diag *d)
{
	uint32_t used = 0;
	for (int i = 0; i < n; i++)
		for (int q = 0; q < m[i].degree; q++)
			used |= 1u << m[i].occ[q];
	*t = 31 - __builtin_clz(used);
	for (int j = 2; j < *t; j++)
		if (!((used >> j) & 1)) {
			diag_error(d, poly->loc, "the polynomial uses x%d but not x%d: "
			           "every variable from x2 to x%d must appear", *t, j,
			           *t);
			return false;
		}
	return true;
}

/* print_coef: c in the shortest %.Ng (N = 1..17) that reads back as c. */
static void print_coef(FILE *f, double c)
{
	char best[32] = "", buf[32];
	for (int p = 1; p <= 17; p++) {
		snprintf(buf, sizeof buf, "%.*g", p, c);
		if (strtod(buf, NULL) == c && (!best[0] || strlen(buf) < strlen(best)))
			strcpy(best, buf);
	}
	fprintf(f, "%s*", best);
}

/* print_term: monomial m as written in poly_text, with its sign. */
static void print_term(FILE *f, const Monomial *m, bool first)
{
	bool neg = signbit(m->coef);
	fputs(first ? (neg ? "-" : "") : (neg ? " - " : " + "), f);
	if (fabs(m->coef) != 1.0)
		print_coef(f, fabs(m->coef));
	for (int q = 0, r; q < m->degree; q = r) {
		for (r = q; r < m->degree && m->occ[r] == m->occ[q]; r++)
			;
		fprintf(f, "%sx%d", q ? "*" : "", m->occ[q]);
		if (r - q > 1)
			fprintf(f, "^%d", r - q);
	}
}

/* poly_render = the normalized, re-parseable text of monomials m[0..n)
 * ("x1*x2 + 0.5*x2*x3", "x1^2*x2"), on the heap. */
static char *poly_render(const Monomial *m, int n)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	for (int i = 0; i < n; i++)
		print_term(f, &m[i], i == 0);
	fclose(f);
	return text;
}

/* set_poly: the polynomial of k from v, its monomials, t and text. */
static bool set_poly(Kernel *k, const Ast *v, Diag *d)
{
	Monomial m[PC_MAX_MONOMIALS];
	int n = 0, t;
	bool ok = true;
	if (v->kind != AST_POLY)
		return bad_value(d, PC_SET_POLY, v, "a polynomial such as x1*x2");
	for (const Ast *term = v->kids; term; term = term->next, n++) {
		if (n == PC_MAX_MONOMIALS) {
			diag_error(d, term->loc, "too many monomials: a polynomial "
			           "has at most %d", PC_MAX_MONOMIALS);
			return false;
		}
		ok = term_monomial(&m[n], term, d) && ok;
	}
	if (!ok || !highest_var(m, n, v, &t, d))
		return false;
	memcpy(k->mono, m, n * sizeof *m);
	k->nmono = n;
	k->nvars = t;
	free(k->poly_text);
	k->poly_text = poly_render(m, n);
	return true;
}

/* --------------------------------------------------- the other settings */

/* set_head_dim, set_value_dim: an integer from 1 to PC_MAX_DIM. */
static bool set_head_dim(Kernel *k, const Ast *v, Diag *d)
{
	k->head_dim = dim_value(v, PC_SET_HEAD_DIM, d);
	return k->head_dim != 0;
}

static bool set_value_dim(Kernel *k, const Ast *v, Diag *d)
{
	k->value_dim = dim_value(v, PC_SET_VALUE_DIM, d);
	return k->value_dim != 0;
}

/* value_var: add the variable `name` to *mask; false (reported) if it is
 * no variable, is above x_t of k (when k has a polynomial) or is listed
 * twice. */
static bool value_var(const Kernel *k, const Ast *name, uint32_t *mask,
                      Diag *d)
{
	int j = var_index(name, d);
	if (!j)
		return false;
	if (k->nvars && j > k->nvars)
		diag_error(d, name->loc, "x%d is not a variable of the polynomial "
		           "(its variables are x1 to x%d)", j, k->nvars);
	else if ((*mask >> j) & 1)
		diag_error(d, name->loc, "x%d is listed twice in values", j);
	else {
		*mask |= 1u << j;
		return true;
	}
	return false;
}

/* set_values: 'none', one variable, or a comma list of variables. */
static bool set_values(Kernel *k, const Ast *v, Diag *d)
{
	const Ast *name = single_name(v);
	uint32_t mask = 0;
	bool ok = true;
	if (name && spells(name, "none")) {
		k->values = 0;
		return true;
	}
	if (!name && v->kind != AST_LIST)
		return bad_value(d, PC_SET_VALUES, v, "'none' or variables such "
		                 "as 'x2, x3'");
	for (const Ast *n = name ? name : v->kids; n; n = name ? NULL : n->next)
		ok = value_var(k, n, &mask, d) && ok;
	k->values = mask;
	return ok;
}

/* set_scale: any finite number. */
static bool set_scale(Kernel *k, const Ast *v, Diag *d)
{
	return number_value(v, PC_SET_SCALE, "a number", &k->scale, d);
}

/* set_algorithm: auto, exact or approx. */
static bool set_algorithm(Kernel *k, const Ast *v, Diag *d)
{
	const Ast *name = single_name(v);
	for (int a = 0; name && a < 3; a++)
		if (spells(name, algo_names[a])) {
			k->algorithm = (PcAlgo)a;
			return true;
		}
	return bad_value(d, PC_SET_ALGORITHM, v, "auto, exact or approx");
}

/* set_bound: a number greater than 0. */
static bool set_bound(Kernel *k, const Ast *v, Diag *d)
{
	static const char what[] = "a number greater than 0";
	if (!number_value(v, PC_SET_BOUND, what, &k->bound, d))
		return false;
	return k->bound > 0 || bad_value(d, PC_SET_BOUND, v, what);
}

/* set_tolerance: a number strictly between 0 and 1. */
static bool set_tolerance(Kernel *k, const Ast *v, Diag *d)
{
	static const char what[] = "a number between 0 and 1 (exclusive)";
	double x;
	if (!number_value(v, PC_SET_TOLERANCE, what, &x, d))
		return false;
	k->tolerance = x;
	return (x > 0 && x < 1) || bad_value(d, PC_SET_TOLERANCE, v, what);
}

/* set_fallback: 'exact' (run the exact algorithm when an input exceeds
 * the bound) or 'none' (return PA_ERR_BOUND). */
static bool set_fallback(Kernel *k, const Ast *v, Diag *d)
{
	const Ast *name = single_name(v);
	if (name && (spells(name, "exact") || spells(name, "none"))) {
		k->fallback_exact = spells(name, "exact");
		return true;
	}
	return bad_value(d, PC_SET_FALLBACK, v, "exact or none");
}

/* order_of: *m = order constraint node o (AST_ORDER); false (reported)
 * when a side is no variable or both sides are the same one. */
static bool order_of(const Ast *o, PcMask *m, Diag *d)
{
	const Ast *a = o->kids, *b = o->kids->next;
	*m = (PcMask){.a = var_index(a, d), .b = var_index(b, d),
	              .strict = o->strict, .loc = o->loc, .loc_a = a->loc,
	              .loc_b = b->loc};
	if (!m->a || !m->b)
		return false;
	if (m->a != m->b)
		return true;
	diag_error(d, o->loc, "the constraint '%.*s' orders x%d against itself: "
	           "a constraint needs two different variables", QUOTE(o), m->a);
	return false;
}

/* set_mask: 'causal', 'none', or order constraints such as
 * 'x2 <= x1, x3 < x2'. */
static bool set_mask(Kernel *k, const Ast *v, Diag *d)
{
	static const char what[] = "causal, none, or order constraints such as "
	                           "'x2 <= x1, x3 < x2'";
	const Ast *name = single_name(v);
	bool ok = true;
	k->causal = false;
	k->nwritten = 0;
	if (name && (spells(name, "causal") || spells(name, "none"))) {
		k->causal = spells(name, "causal");
		return true;
	}
	if (v->kind != AST_LIST || v->kids->kind != AST_ORDER)
		return bad_value(d, PC_SET_MASK, v, what);
	for (const Ast *o = v->kids; o; o = o->next) {
		if (k->nwritten == PC_MAX_MASKS) {
			diag_error(d, o->loc, "too many order constraints: a mask has "
			           "at most %d", PC_MAX_MASKS);
			return false;
		}
		if (order_of(o, &k->written[k->nwritten], d))
			k->nwritten++;
		else
			ok = false;
	}
	return ok;
}

/* set_window: an integer of at least 1. */
static bool set_window(Kernel *k, const Ast *v, Diag *d)
{
	bool neg;
	const Ast *f = single_factor(v, &neg);
	long x = f && !neg && f->kind == AST_NUM ? integer_of(f) : -1;
	if (x < 1)
		return bad_value(d, PC_SET_WINDOW, v, "an integer of at least 1");
	k->window = x;
	return true;
}

/* The setter of each setting: checks value v and stores it in k. */
typedef bool Setter(Kernel *k, const Ast *v, Diag *d);
static Setter *const setters[PC_SET__COUNT] = {
	[PC_SET_POLY] = set_poly,
	[PC_SET_HEAD_DIM] = set_head_dim,
	[PC_SET_VALUE_DIM] = set_value_dim,
	[PC_SET_VALUES] = set_values,
	[PC_SET_SCALE] = set_scale,
	[PC_SET_ALGORITHM] = set_algorithm,
	[PC_SET_BOUND] = set_bound,
	[PC_SET_TOLERANCE] = set_tolerance,
	[PC_SET_FALLBACK] = set_fallback,
	[PC_SET_MASK] = set_mask,
	[PC_SET_WINDOW] = set_window,
};

/* apply_setting: give setting s of k the value v; false (reported) if v
 * is not a valid value for s. */
static bool apply_setting(Kernel *k, PcSetting s, const Ast *v, Diag *d)
{
	k->set_loc[s] = v->loc;
	return setters[s](k, v, d);
}

/* ------------------------------------------------------------ kernels */

/* kernel_init: k with name (a C identifier of len bytes) at loc and every
 * setting at its default; false (reported) if the name is too long or C
 * cannot hold it (names.c). */
static bool kernel_init(Kernel *k, const char *name, int len, Loc loc,
                        Diag *d)
{
	*k = (Kernel){.loc = loc, .head_dim = 64, .value_dim = 64, .scale = 1.0,
	              .algorithm = PC_ALGO_AUTO, .tolerance = 1e-3};
	memcpy(k->name, name, len < PC_MAX_NAME ? len : PC_MAX_NAME);
	if (len > PC_MAX_NAME) {
		diag_error(d, loc, "kernel name '%.20s...' is longer than %d "
		           "characters", name, PC_MAX_NAME);
		return false;
	}
	char why[160];
	if (name_refusal(k->name, why, sizeof why)) {
		diag_error(d, loc, "kernel name '%s' %s", k->name, why);
		return false;
	}
	return true;
}

/* causal_masks: k's mask = child <= parent along the breadth-first tree
 * from x1 of the primal graph of its monomials (lowest variable first). */
static void causal_masks(Kernel *k)
{
	uint32_t adj[PC_MAX_VARS + 1] = {0}, seen = 2;
	int queue[PC_MAX_VARS], head = 0, tail = 0;
	for (int m = 0; m < k->nmono; m++) {
		uint32_t vs = 0;
		for (int q = 0; q < k->mono[m].degree; q++)
			vs |= 1u << k->mono[m].occ[q];
		for (uint32_t r = vs; r; r &= r - 1)
			adj[__builtin_ctz(r)] |= vs & ~(1u << __builtin_ctz(r));
	}
	queue[tail++] = 1;
	while (head < tail) {
		int p = queue[head++];
		for (uint32_t r = adj[p] & ~seen; r; r &= r - 1) {
			int c = __builtin_ctz(r);
			seen |= 1u << c;
			queue[tail++] = c;
			k->mask[k->nmasks++] = (PcMask){.a = c, .b = p,
				.loc = k->set_loc[PC_SET_MASK], .loc_a = k->set_loc[PC_SET_MASK],
				.loc_b = k->set_loc[PC_SET_MASK]};
		}
	}
}

/* check_cycles: report a strict constraint of k's mask that lies on a
 * cycle of constraints (ℓa ≤ … ≤ ℓa with one '<': no positions satisfy
 * them), found as a strict edge inside a strongly connected component. */
static void check_cycles(const Kernel *k, Diag *d)
{
	uint32_t reach[PC_MAX_VARS + 1] = {0};
	for (int i = 0; i < k->nmasks; i++)
		reach[k->mask[i].a] |= 1u << k->mask[i].b;
	for (int m = 1; m <= k->nvars; m++)
		for (int a = 1; a <= k->nvars; a++)
			if (reach[a] >> m & 1)
				reach[a] |= reach[m];
	for (int i = 0; i < k->nmasks; i++) {
		const PcMask *c = &k->mask[i];
		if (!c->strict || !(reach[c->b] >> c->a & 1))
			continue;
		char vars[128];
		int o = 0;
		for (int v = 1; v <= k->nvars; v++)
			if (v == c->a || ((reach[c->a] >> v & 1) && (reach[v] >> c->a & 1)))
				o += snprintf(vars + o, sizeof vars - o, "%sx%d", o ? ", " : "", v);
		diag_error(d, c->loc, "contradictory mask: '%.*s' closes a cycle of "
		           "order constraints through %s, which no positions satisfy",
		           c->loc.len, c->loc.file->text + c->loc.off, vars);
		return;
	}
}

/* mask_check: the mask in effect from what mask and window say, after
 * any setting changed: a window needs a mask, written constraints name
 * variables of the polynomial, causal is expanded, and no constraints
 * contradict each other. */
static void mask_check(Kernel *k, Diag *d)
{
	int before = d->errors;
	k->nmasks = 0;
	if (k->window && !k->causal && !k->nwritten)
		diag_error(d, k->set_loc[PC_SET_WINDOW], "window of kernel '%s' "
		           "needs a mask (mask = causal, or order constraints such as "
		           "x2 <= x1): it bounds the distance of constrained pairs",
		           k->name);
	for (int i = 0; k->nvars && i < k->nwritten; i++) {
		const PcMask *c = &k->written[i];
		int j = c->a > k->nvars ? c->a : c->b;
		if (j > k->nvars)
			diag_error(d, j == c->a ? c->loc_a : c->loc_b, "x%d is not a "
			           "variable of the polynomial of kernel '%s' (its "
			           "variables are x1 to x%d)", j, k->name, k->nvars);
	}
	if (d->errors != before || !k->nvars)
		return;
	if (k->causal)
		causal_masks(k);
	else
		memcpy(k->mask, k->written, (k->nmasks = k->nwritten) * sizeof *k->mask);
	check_cycles(k, d);
}

/* kernel_check: what spans settings, after any of them changed: values
 * default to every variable but x1, and given values lie within x1..x_t;
 * then the mask (mask_check). */
static void kernel_check(Kernel *k, Diag *d)
{
	uint32_t all = ((UINT32_C(2) << k->nvars) - 1) & ~UINT32_C(1);
	for (int m = 0; fits_float(k->scale) && m < k->nmono; m++)
		if (!fits_float(k->scale * k->mono[m].coef)) {
			diag_error(d, k->mono[m].loc, "scale times this term's "
			           "coefficient, %g, does not fit the kernel's float "
			           "arithmetic (" FLOAT_RANGE ")",
			           k->scale * k->mono[m].coef);
			diag_note(d, k->set_loc[PC_SET_SCALE], "the scale is given here");
			break;
		}
	if (!k->set_loc[PC_SET_VALUES].file)
		k->values = all & ~UINT32_C(2);
	else if (k->nvars && (k->values & ~all)) {
		diag_error(d, k->set_loc[PC_SET_VALUES], "values names x%d, but the "
		           "polynomial of kernel '%s' has only %d variables",
		           31 - __builtin_clz(k->values), k->name, k->nvars);
		diag_note(d, k->set_loc[PC_SET_POLY], "the polynomial is given here");
	}
	mask_check(k, d);
}

/* poly_of = the first setting of kernel node ka whose key is poly. */
static const Ast *poly_of(const Ast *ka)
{
	for (const Ast *set = ka->kids; set; set = set->next)
		if (spells(set->name, "poly"))
			return set;
	return NULL;
}

/* take_setting = which setting node `set` gives; PC_SET__COUNT if it is
 * unknown or repeated (reported).  given[] records the first of each. */
static PcSetting take_setting(const Ast *set, const Ast *given[], Diag *d)
{
	PcSetting s = setting_of(set->name, d);
	if (s == PC_SET__COUNT)
		return s;
	if (given[s]) {
		diag_error(d, set->name->loc, "setting '%s' is given twice",
		           setting_name(s));
		diag_note(d, given[s]->name->loc, "first given here");
		return PC_SET__COUNT;
	}
	given[s] = set;
	return s;
}

/* kernel_lower: k = kernel node ka: its name, its poly (first, so values
 * can be checked against it), its other settings in written order, and
 * defaults for the rest.  Problems are reported. */
static void kernel_lower(Kernel *k, const Ast *ka, Diag *d)
{
	const Ast *given[PC_SET__COUNT] = {0};
	const Ast *poly = poly_of(ka);
	kernel_init(k, src_at(ka->name), ka->name->loc.len, ka->name->loc, d);
	if (poly)
		apply_setting(k, PC_SET_POLY, poly->kids, d);
	else
		diag_error(d, k->loc, "kernel '%s' has no 'poly' setting", k->name);
	for (const Ast *set = ka->kids; set; set = set->next) {
		PcSetting s = take_setting(set, given, d);
		if (s != PC_SET__COUNT && set != poly)
			apply_setting(k, s, set->kids, d);
	}
	kernel_check(k, d);
}

/* name_from_path: buf = the basename of path without ".poly", made a C
 * identifier (other characters become '_', a leading digit gains a '_';
 * standard input, "<stdin>", gives "stdin_kernel"); = its length. */
static int name_from_path(char *buf, size_t size, const char *path)
{
	if (strcmp(path, "<stdin>") == 0)
		return snprintf(buf, size, "stdin_kernel");
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	size_t len = strlen(base);
	if (len >= 5 && strcmp(base + len - 5, ".poly") == 0)
		len -= 5;
	int n = snprintf(buf, size, "%s%.*s", len && base[0] >= '0' &&
	                 base[0] <= '9' ? "_" : "", (int)len, base);
	for (int i = 0; buf[i]; i++)
		if (!(buf[i] == '_' || (buf[i] >= '0' && buf[i] <= '9') ||
		      ((buf[i] | 0x20) >= 'a' && (buf[i] | 0x20) <= 'z')))
			buf[i] = '_';
	return n ? n : snprintf(buf, size, "_");
}

/* bare_lower: k = the one kernel of a file that is only the polynomial
 * poly, named after the file, at the start of the file. */
static void bare_lower(Kernel *k, const Ast *poly, SrcFile *f, Diag *d)
{
	char name[4096];
	int len = name_from_path(name, sizeof name, f->path);
	kernel_init(k, name, len < (int)sizeof name ? len : (int)sizeof name - 1,
	            (Loc){f, 0, 0}, d);
	apply_setting(k, PC_SET_POLY, poly, d);
	kernel_check(k, d);
}

/* kernel_named = the kernel of p spelled by name, or NULL. */
static Kernel *kernel_named(Program *p, const Ast *name, int before)
{
	for (int i = 0; i < before; i++)
		if ((size_t)name->loc.len == strlen(p->kernels[i].name) &&
		    memcmp(p->kernels[i].name, src_at(name), name->loc.len) == 0)
			return &p->kernels[i];
	return NULL;
}

/* add_kernel: lower kernel node ka as the next kernel of p; false when p
 * is full (reported once). */
static bool add_kernel(Program *p, const Ast *ka, Diag *d)
{
	if (p->nkernels == PC_MAX_KERNELS) {
		diag_error(d, ka->name->loc, "too many kernels: a file holds at "
		           "most %d", PC_MAX_KERNELS);
		return false;
	}
	Kernel *first = kernel_named(p, ka->name, p->nkernels);
	if (first) {
		diag_error(d, ka->name->loc, "kernel '%.*s' is defined twice",
		           QUOTE(ka->name));
		diag_note(d, first->loc, "first defined here");
	}
	Kernel *k = &p->kernels[p->nkernels++];
	kernel_lower(k, ka, d);
	for (int i = 0; !first && i < p->nkernels - 1; i++)
		if (names_clash(p->kernels[i].name, k->name)) {
			diag_error(d, k->loc, "kernel name '%s' clashes with the C "
			           "symbols of kernel '%s' (a kernel K also defines "
			           "K_info, K_run, ...)", k->name, p->kernels[i].name);
			diag_note(d, p->kernels[i].loc, "kernel '%s' is defined here",
			          p->kernels[i].name);
			break;
		}
	return true;
}

/* --------------------------------------------------------- programs */

/* program_build = the Program of file tree `file` parsed from f, or NULL
 * when anything in it is invalid (every problem reported to d). */
Program *program_build(const Ast *file, SrcFile *f, Diag *d)
{
	int before = d->errors, n = 0;
	Program *p = calloc(1, sizeof *p);
	p->file = f;
	for (const Ast *a = file->kids; a; a = a->next)
		n++;
	p->kernels = calloc(n < PC_MAX_KERNELS ? n + 1 : PC_MAX_KERNELS,
	                    sizeof *p->kernels);
	if (n == 0)
		diag_error(d, (Loc){f, 0, 0}, "no kernel in file: expected "
		           "'kernel NAME { ... }' or a polynomial");
	else if (file->kids->kind == AST_POLY)
		bare_lower(&p->kernels[p->nkernels++], file->kids, f, d);
	for (const Ast *a = file->kids; a && a->kind == AST_KERNEL; a = a->next)
		if (!add_kernel(p, a, d))
			break;
	if (d->errors == before)
		return p;
	program_free(p);
	return NULL;
}

/* program_define: apply definition node def (from -D) to every kernel of
 * p, or to the one it names, re-checking each; false (reported) on a
 * problem. */
bool program_define(Program *p, const Ast *def, Diag *d)
{
	int before = d->errors;
	const Ast *set = def->kids;
	Kernel *only = def->name ? kernel_named(p, def->name, p->nkernels) : NULL;
	if (def->name && !only) {
		diag_error(d, def->name->loc, "no kernel named '%.*s' in %s",
		           QUOTE(def->name), p->file->path);
		return false;
	}
	PcSetting s = setting_of(set->name, d);
	for (int i = 0; s != PC_SET__COUNT && i < p->nkernels; i++) {
		Kernel *k = &p->kernels[i];
		if (only && k != only)
			continue;
		if (!apply_setting(k, s, set->kids, d))
			break;
		kernel_check(k, d);
	}
	return d->errors == before;
}

/* program_free: release p, its kernels' texts and its -D texts (not the
 * SrcFile it was parsed from). */
void program_free(Program *p)
{
	if (!p)
		return;
	for (int i = 0; i < p->nkernels; i++)
		free(p->kernels[i].poly_text);
	for (int i = 0; i < p->ndefs; i++)
		src_free(p->defs[i]);
	free(p->defs);
	free(p->kernels);
	free(p);
}
