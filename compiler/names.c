/*
 * names.c - which kernel names C can hold.  A kernel named K becomes the
 * external C function K and further symbols K_info, K_run, K_prepare_x3,
 * … (the words of symbol_words below), in the generated C beside the C
 * library's headers and the runtime's, and later in a program beside
 * everything it links.  So a name is refused, at its place in the
 * .poly file and with the reason, when it is a C keyword, a name the C
 * implementation reserves (a leading '_', except '_' and a digit, which
 * polyc itself makes of a file name such as 3d.poly), begins with the
 * runtime's prefix pa_ or PA_, is (or gives a symbol that is) a name the
 * C library declares (compiler/c_names.inc: `main`, `exp`, `malloc`,
 * `NULL`, `int64_t`, …), or gives a symbol another kernel of the file
 * also gives (`a` beside `a_info`).  clang then never sees a clash.
 */
#include "polyc.h"

#include <stdlib.h>
#include <string.h>

static const char *const c_keywords[] = {
	"auto", "break", "case", "char", "const", "continue", "default", "do",
	"double", "else", "enum", "extern", "float", "for", "goto", "if",
	"inline", "int", "long", "register", "restrict", "return", "short",
	"signed", "sizeof", "static", "struct", "switch", "typedef", "union",
	"unsigned", "void", "volatile", "while", "_Alignas", "_Alignof",
	"_Atomic", "_Bool", "_Complex", "_Generic", "_Imaginary", "_Noreturn",
	"_Static_assert", "_Thread_local",
};

/* The C library's names, sorted (scripts/c_names.sh). */
static const char *const c_names[] = {
#include "c_names.inc"
};

/* The first word after "K_" of every symbol the emitters give kernel K
 * besides K itself; '#' stands for a run of digits.  A new symbol in an
 * emitter is a new row (tests/cli/run.sh checks generated/ against it). */
static const char *const symbol_words[] = {
	"aedges", "ain", "aleaves", "aplan", "asteps", "attend", "backward", "call",
	"coefficients", "coord", "edge#", "edges", "exact", "finish", "info",
	"inputs", "mono", "parent", "plan", "prepare", "run", "saved", "send",
	"step#", "steps", "train", "weight", "work",
};

/* word_is: s[0..len) matches pattern w ('#': one or more digits). */
static bool word_is(const char *s, size_t len, const char *w)
{
	size_t i = 0;
	for (; *w && *w != '#'; w++, i++)
		if (i >= len || s[i] != *w)
			return false;
	if (*w != '#')
		return i == len;
	size_t digits = i;
	while (i < len && s[i] >= '0' && s[i] <= '9')
		i++;
	return i > digits && i == len;
}

/* symbol_rest: rest (what follows "K_" in a name) begins a symbol of
 * kernel K: its first word is one of symbol_words. */
static bool symbol_rest(const char *rest)
{
	size_t len = strcspn(rest, "_");
	for (size_t i = 0; i < sizeof symbol_words / sizeof *symbol_words; i++)
		if (word_is(rest, len, symbol_words[i]))
			return true;
	return false;
}

/* cmp_name: bsearch order of c_names. */
static int cmp_name(const void *key, const void *elem)
{
	return strcmp(key, *(const char *const *)elem);
}

/* library_clash = the C library name that K or one of its symbols is,
 * or NULL.  Only names beginning with K can be one: those from K on in
 * sorted order. */
static const char *library_clash(const char *k)
{
	size_t len = strlen(k), n = sizeof c_names / sizeof *c_names;
	if (bsearch(k, c_names, n, sizeof *c_names, cmp_name))
		return k;
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (strcmp(c_names[mid], k) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; i < n && strncmp(c_names[i], k, len) == 0; i++)
		if (c_names[i][len] == '_' && symbol_rest(c_names[i] + len + 1))
			return c_names[i];
	return NULL;
}

/* name_refusal: see polyc.h. */
const char *name_refusal(const char *k, char *why, size_t size)
{
	for (size_t i = 0; i < sizeof c_keywords / sizeof *c_keywords; i++)
		if (strcmp(k, c_keywords[i]) == 0) {
			snprintf(why, size, "is a C keyword; the kernel becomes a C "
			         "function of that name");
			return why;
		}
	if (k[0] == '_' && !(k[1] >= '0' && k[1] <= '9')) {
		snprintf(why, size, "begins with '_': such names are reserved for "
		         "the C implementation");
		return why;
	}
	if (strncmp(k, "pa_", 3) == 0 || strncmp(k, "PA_", 3) == 0 ||
	    strcmp(k, "pa") == 0 || strcmp(k, "PA") == 0) {
		snprintf(why, size, "is taken by the runtime: its names begin "
		         "with pa_ and PA_");
		return why;
	}
	const char *lib = library_clash(k);
	if (lib == k)
		snprintf(why, size, "is a name of the C library; the kernel "
		         "becomes a C function of that name");
	else if (lib)
		snprintf(why, size, "would clash with '%s' of the C library (a "
		         "kernel K also defines K_info, K_run, ...)", lib);
	return lib ? why : NULL;
}

/* names_clash: see polyc.h. */
bool names_clash(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > lb)
		return names_clash(b, a);
	if (strcmp(a, b) == 0)
		return true;
	return strncmp(a, b, la) == 0 && b[la] == '_' && symbol_rest(b + la + 1);
}
