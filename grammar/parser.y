/*
 * parser.y - the grammar of .poly files (doc/design.md, "The .poly
 * format") and of -D definitions.
 *
 * A pure bison parser over the reentrant scanner of lexer.l.  It describes
 * and nothing more: every action is one call to a constructor of
 * compiler/ast.c, and the tree it builds is handed to the Parser with
 * parse_done.  What a setting's value must be (a polynomial, an integer,
 * a list of variables) is checked when ast.c lowers the tree, so a wrong
 * value is reported with the setting it belongs to.  The scanner sends a
 * pseudo-token first: T_START_FILE for a file, T_START_DEFINE for the text
 * of a -D option.  A syntax error is reported by parse_syntax_error with
 * the set of tokens that were expected, and ends the parse.
 */
%define api.pure full
%define api.prefix {pcyy}
%define api.token.prefix {T_}
%define api.token.raw
%define parse.error custom
%define parse.lac full
%locations
%expect 0

%code requires {
#include "polyc.h"
#ifndef YY_TYPEDEF_YY_SCANNER_T
#define YY_TYPEDEF_YY_SCANNER_T
typedef void *yyscan_t;
#endif
#define PCYYLTYPE Loc
#define PCYYLTYPE_IS_DECLARED 1
}

%code {
int pcyylex(PCYYSTYPE *lval, Loc *lloc, yyscan_t scanner);
static void pcyyerror(Loc *l, yyscan_t scanner, Parser *P, const char *msg);
#define YYLLOC_DEFAULT(Cur, Rhs, N)                                         \
	((Cur) = (N) ? loc_span(YYRHSLOC(Rhs, 1), YYRHSLOC(Rhs, N))            \
	             : (Loc){YYRHSLOC(Rhs, 0).file,                            \
	                     YYRHSLOC(Rhs, 0).off + YYRHSLOC(Rhs, 0).len, 0})
}

%param {yyscan_t scanner}
%parse-param {Parser *P}

%initial-action { @$ = (Loc){P->file, P->pos, 0}; }

%union {
	Ast *ast;
}

%token START_FILE "start of file"
%token START_DEFINE "start of definition"
%token KERNEL "'kernel'"
%token IDENT "name"
%token NUMBER "number"
%token LBRACE "'{'"
%token RBRACE "'}'"
%token EQ "'='"
%token SEMI "';'"
%token COMMA "','"
%token DOT "'.'"
%token PLUS "'+'"
%token MINUS "'-'"
%token STAR "'*'"
%token CARET "'^'"
%token LT "'<'"
%token LE "'<='"

%type <ast> kernels kernel settings setting assign value poly term factor
%type <ast> list name define orders order
%destructor { ast_free($$); } <ast>

%%

start
	: START_FILE kernels         { parse_done(P, $2); }
	| START_FILE poly opt_semi   { parse_done(P, ast_bare(@2, $2)); }
	| START_FILE                 { parse_done(P, ast_new(AST_FILE)); }
	| START_DEFINE define        { parse_done(P, $2); }
	;

kernels
	: kernel                     { $$ = ast_add(@$, ast_new(AST_FILE), $1); }
	| kernels kernel             { $$ = ast_add(@$, $1, $2); }
	;

kernel
	: KERNEL name LBRACE settings RBRACE   { $$ = ast_named(@$, $4, $2); }
	;

settings
	: %empty                     { $$ = ast_new(AST_KERNEL); }
	| settings setting           { $$ = ast_add(@$, $1, $2); }
	;

setting
	: assign SEMI                { $$ = $1; }
	;

assign
	: name EQ value              { $$ = ast_pair(@$, AST_SETTING, $1, $3); }
	;

define
	: assign                     { $$ = ast_pair(@$, AST_DEFINE, NULL, $1); }
	| name DOT assign            { $$ = ast_pair(@$, AST_DEFINE, $1, $3); }
	;

value
	: poly
	| list
	| orders
	;

orders
	: order                      { $$ = ast_add(@$, ast_new(AST_LIST), $1); }
	| orders COMMA order         { $$ = ast_add(@$, $1, $3); }
	;

order
	: name LE name               { $$ = ast_order(@$, $1, $3, false); }
	| name LT name               { $$ = ast_order(@$, $1, $3, true); }
	;

list
	: name COMMA name            { $$ = ast_add(@$, ast_add(@1, ast_new(AST_LIST), $1), $3); }
	| list COMMA name            { $$ = ast_add(@$, $1, $3); }
	;

poly
	: term                       { $$ = ast_add(@$, ast_new(AST_POLY), $1); }
	| PLUS term                  { $$ = ast_add(@$, ast_new(AST_POLY), $2); }
	| MINUS term                 { $$ = ast_add(@$, ast_new(AST_POLY), ast_negate($2)); }
	| poly PLUS term             { $$ = ast_add(@$, $1, $3); }
	| poly MINUS term            { $$ = ast_add(@$, $1, ast_negate($3)); }
	;

term
	: factor                     { $$ = ast_add(@$, ast_new(AST_TERM), $1); }
	| term STAR factor           { $$ = ast_add(@$, $1, $3); }
	;

factor
	: NUMBER                     { $$ = ast_leaf(@$, AST_NUM); }
	| name
	| name CARET NUMBER          { $$ = ast_pair(@$, AST_POW, $1, ast_leaf(@3, AST_NUM)); }
	;

name
	: IDENT                      { $$ = ast_leaf(@$, AST_NAME); }
	;

opt_semi
	: %empty
	| SEMI
	;

%%

/* pcyyerror: the grammar's own errors (running out of memory). */
static void pcyyerror(Loc *l, yyscan_t scanner, Parser *P, const char *msg)
{
	(void)scanner;
	diag_error(P->d, *l, "%s", msg);
}

/* yyreport_syntax_error: hand the unexpected token and the set of tokens
 * the grammar would have taken to parse_syntax_error. */
static int yyreport_syntax_error(const yypcontext_t *c, yyscan_t scanner,
                                 Parser *P)
{
	yysymbol_kind_t want[YYNTOKENS];
	int n = yypcontext_expected_tokens(c, want, YYNTOKENS);
	uint32_t expected = 0;
	(void)scanner;
	for (int i = 0; i < n; i++)
		expected |= UINT32_C(1) << want[i];
	parse_syntax_error(P, *yypcontext_location(c), yypcontext_token(c),
	                   expected);
	return 0;
}
