/*
 * parse.c - running the scanner and grammar of grammar/ over a source,
 * and what the grammar reports through its Parser: the finished tree and
 * syntax errors.  parse_source turns a .poly text into a Program (the
 * tree is lowered by ast.c and then dropped); apply_define parses the text
 * of a -D option with the same scanner and grammar, from a SrcFile of its
 * own so that diagnostics point inside the option, and applies it.
 */
#include "polyc.h"

#include "parser.h"
#define YYSTYPE PCYYSTYPE
#define YYLTYPE Loc
#include "lexer.h"

#include <stdlib.h>
#include <string.h>

/* parse_tree = the tree of f's text from byte `from`, parsed from the
 * start pseudo-token `start`; NULL on a syntax error (reported to d). */
static Ast *parse_tree(SrcFile *f, int from, int start, Diag *d)
{
	Parser P = {.file = f, .d = d, .start = start, .pos = from,
	            .define = start == T_START_DEFINE};
	yyscan_t scanner;
	if (pcyylex_init_extra(&P, &scanner) != 0) {
		diag_plain(d, "out of memory");
		return NULL;
	}
	YY_BUFFER_STATE buf = pcyy_scan_bytes(f->text + from, f->len - from,
	                                      scanner);
	int rc = pcyyparse(scanner, &P);
	pcyy_delete_buffer(buf, scanner);
	pcyylex_destroy(scanner);
	if (rc == 0)
		return P.tree;
	ast_free(P.tree);
	return NULL;
}

/* parse_done: the grammar's result for this run. */
void parse_done(Parser *P, Ast *tree)
{
	P->tree = tree;
}

/* Token sets of the phrases below: T(x) is the bit of token T_x. */
#define T(x) (UINT32_C(1) << T_##x)
#define TERM_START (T(IDENT) | T(NUMBER))
#define VALUE_START (TERM_START | T(PLUS) | T(MINUS))

/* How a phrase is placed: at the unexpected token, or just past the
 * previous one (where a missing token belongs). */
typedef enum PhraseAt {
	PH_FOUND,                /* at the token: "PHRASE, found 'TOKEN'" */
	PH_AFTER_PREV,           /* same, with " after 'PREVIOUS'" */
	PH_GAP,                  /* past the previous token: "PHRASE" */
} PhraseAt;

/* What a syntax error says, by the tokens the grammar expected there: the
 * first row all of whose `need` tokens and none of whose `not` tokens are
 * expected, and (when `prev` is set) whose previous token spells prev. */
static const struct Phrase {
	uint32_t need, not;
	const char *prev;
	PhraseAt at;
	const char *text;
} phrases[] = {
	{T(SEMI), T(YYEOF), NULL, PH_GAP, "expected ';' after setting"},
	{T(KERNEL) | VALUE_START, 0, NULL, PH_FOUND,
	 "expected 'kernel' or a polynomial"},
	{T(KERNEL), 0, NULL, PH_FOUND, "expected 'kernel' or the end of the file"},
	{T(LBRACE), 0, NULL, PH_FOUND, "expected '{' after the kernel name"},
	{T(IDENT) | T(RBRACE), 0, NULL, PH_FOUND, "expected a setting or '}'"},
	{T(EQ) | T(DOT), 0, NULL, PH_AFTER_PREV, "expected '=' or '.'"},
	{T(EQ), 0, NULL, PH_FOUND, "expected '=' after the setting name"},
	{VALUE_START, 0, NULL, PH_AFTER_PREV, "expected a value"},
	{T(NUMBER), T(IDENT), NULL, PH_AFTER_PREV,
	 "expected a power (a positive integer)"},
	{TERM_START, 0, NULL, PH_AFTER_PREV, "expected a number or a variable"},
	{T(IDENT), 0, "kernel", PH_AFTER_PREV, "expected a kernel name"},
	{T(IDENT), 0, ",", PH_AFTER_PREV, "expected a variable"},
	{T(IDENT), 0, "<", PH_AFTER_PREV, "expected a variable"},
	{T(IDENT), 0, "<=", PH_AFTER_PREV, "expected a variable"},
	{T(LT) | T(LE), T(STAR), NULL, PH_AFTER_PREV, "expected '<' or '<='"},
	{T(IDENT), 0, NULL, PH_AFTER_PREV, "expected a setting name"},
	{T(YYEOF) | T(STAR) | T(SEMI), 0, NULL, PH_FOUND,
	 "expected '+', '-', '*', ';' or the end of the file"},
	{T(YYEOF) | T(STAR), 0, NULL, PH_FOUND,
	 "expected an operator or the end of the definition"},
	{T(YYEOF) | T(COMMA), 0, NULL, PH_FOUND,
	 "expected ',' or the end of the definition"},
	{T(YYEOF), 0, NULL, PH_FOUND, "expected the end of the file"},
};

/* phrase_for = the first row of phrases that fits, or NULL. */
static const struct Phrase *phrase_for(const Parser *P, uint32_t expected)
{
	const char *prev = P->file->text + P->prev.off;
	for (size_t i = 0; i < sizeof phrases / sizeof *phrases; i++) {
		const struct Phrase *ph = &phrases[i];
		if ((ph->need & ~expected) || (ph->not & expected))
			continue;
		if (!ph->prev || ((size_t)P->prev.len == strlen(ph->prev) &&
		                  memcmp(prev, ph->prev, P->prev.len) == 0))
			return ph;
	}
	return NULL;
}

/* parse_syntax_error: report that token at `at` is not one of the
 * `expected` ones (a bit set of token numbers). */
void parse_syntax_error(Parser *P, Loc at, int token, uint32_t expected)
{
	static const struct Phrase other = {0, 0, NULL, PH_FOUND, "syntax error"};
	const struct Phrase *ph = phrase_for(P, expected);
	ph = ph ? ph : &other;
	char after[64] = "", found[64];
	if (ph->at == PH_GAP) {
		diag_error(P->d, (Loc){P->file, P->prev.off + P->prev.len, 0},
		           "%s", ph->text);
		return;
	}
	if (ph->at == PH_AFTER_PREV && P->prev.len > 0)
		snprintf(after, sizeof after, " after '%.*s'", P->prev.len,
		         P->file->text + P->prev.off);
	if (token == T_YYEOF)
		snprintf(found, sizeof found, "the end of the %s",
		         P->define ? "definition" : "file");
	else
		snprintf(found, sizeof found, "'%.*s'", at.len,
		         P->file->text + at.off);
	diag_error(P->d, at, "%s%s, found %s", ph->text, after, found);
}

/* parse_source: see polyc.h. */
Program *parse_source(SrcFile *f, Diag *d)
{
	Ast *tree = parse_tree(f, src_bom(f), T_START_FILE, d);
	if (!tree)
		return NULL;
	Program *p = program_build(tree, f, d);
	ast_free(tree);
	return p;
}

/* parse_file: see polyc.h.  The SrcFile is freed when parsing fails. */
Program *parse_file(const char *path, Diag *d)
{
	SrcFile *f = src_read(path, d);
	Program *p = f ? parse_source(f, d) : NULL;
	if (!p)
		src_free(f);
	return p;
}

/* keep_def: make the -D text f part of p, which may point into it. */
static void keep_def(Program *p, SrcFile *f)
{
	p->defs = realloc(p->defs, (p->ndefs + 1) * sizeof *p->defs);
	p->defs[p->ndefs++] = f;
}

/* apply_define: see polyc.h.  The text is shown as "-D DEF" in a SrcFile
 * named "<command line>". */
bool apply_define(Program *p, const char *def, Diag *d)
{
	char *text = malloc(strlen(def) + 4);
	sprintf(text, "-D %s", def);
	SrcFile *f = src_from_string("<command line>", text);
	free(text);
	keep_def(p, f);
	if (!strchr(def, '=')) {
		diag_error(d, (Loc){f, 3, f->len - 3}, "expected KEY=VALUE or "
		           "KERNEL.KEY=VALUE after -D");
		return false;
	}
	Ast *tree = parse_tree(f, 3, T_START_DEFINE, d);
	bool ok = tree && program_define(p, tree, d);
	ast_free(tree);
	return ok;
}
