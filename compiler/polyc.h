/*
 * polyc.h - the one internal header of the polyc compiler.
 *
 * polyc reads .poly files, builds the hypergraph of an attention polynomial's
 * monomials, classifies it, plans an algorithm and emits C that clang turns
 * into an object file.  This header declares the intermediate forms handed
 * from pass to pass and every function that crosses a source file, under a
 * banner per file.  Passes talk to each other only through what is declared
 * here: the parser describes, the planner decides, the emitter prints.
 */
#ifndef POLYC_H
#define POLYC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define POLYC_VERSION "0.1.0"

/* Documented limits; each one has its own diagnostic. */
enum {
	PC_MAX_VARS = 16,        /* variables x1 … x16 */
	PC_MAX_MONOMIALS = 64,   /* monomials per polynomial */
	PC_MAX_DEGREE = 16,      /* factor occurrences per monomial */
	PC_MAX_DIM = 4096,       /* head_dim and value_dim */
	PC_MAX_NAME = 63,        /* kernel name length */
	PC_MAX_KERNELS = 256,    /* kernels per file */
	PC_MAX_FILE = 1 << 20,   /* bytes per .poly file */
	PC_MAX_ERRORS = 20,      /* errors shown before polyc stops showing them */
	PC_MAX_MASKS = 64,       /* order constraints per kernel */
};

/* ---------------------------------------------------------------- diag.c */

/* A source text with the name diagnostics show for it. */
typedef struct SrcFile {
	char *path;              /* as given on the command line, or
	                            "<command line>" for a -D definition */
	char *text;              /* NUL-terminated contents */
	int len;                 /* bytes in text */
	int *line_start;         /* offset of each line's first byte */
	int nlines;              /* lines in text (1 for an empty text) */
} SrcFile;

/* A range of bytes in a source: what tokens and AST nodes carry. */
typedef struct Loc {
	const SrcFile *file;     /* NULL for "no location" */
	int off;                 /* byte offset of the first byte */
	int len;                 /* bytes covered (0 = a point) */
} Loc;

/* Where diagnostics go and how many errors were reported. */
typedef struct Diag {
	FILE *out;               /* stderr in polyc, a memstream in tests */
	int errors;              /* errors reported so far */
	int warnings;            /* warnings reported so far */
	bool muted;              /* past PC_MAX_ERRORS: nothing more is shown */
} Diag;

SrcFile *src_read(const char *path, Diag *d);
SrcFile *src_from_string(const char *name, const char *text);
void src_free(SrcFile *f);
Loc loc_span(Loc a, Loc b);
void loc_line_col(Loc l, int *line, int *col);
int src_bom(const SrcFile *f);
void diag_error(Diag *d, Loc l, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void diag_note(Diag *d, Loc l, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void diag_warning(Diag *d, Loc l, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void diag_plain(Diag *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ----------------------------------------------------------------- ast.c */

/* Kernel settings, defined once. X(ENUM, "key in .poly") */
#define PC_SETTINGS(X)                                                      \
	X(POLY, "poly")                                                      \
	X(HEAD_DIM, "head_dim")                                              \
	X(VALUE_DIM, "value_dim")                                            \
	X(VALUES, "values")                                                  \
	X(SCALE, "scale")                                                    \
	X(ALGORITHM, "algorithm")                                            \
	X(BOUND, "bound")                                                    \
	X(TOLERANCE, "tolerance")                                            \
	X(FALLBACK, "fallback")                                              \
	X(MASK, "mask")                                                      \
	X(WINDOW, "window")

typedef enum PcSetting {
#define X(e, s) PC_SET_##e,
	PC_SETTINGS(X)
#undef X
	PC_SET__COUNT            /* number of settings */
} PcSetting;

typedef enum PcAlgo {
	PC_ALGO_AUTO,            /* exact for trees; cost model otherwise */
	PC_ALGO_EXACT,           /* exact algorithm only */
	PC_ALGO_APPROX,          /* polynomial method (needs bound) */
} PcAlgo;

/* One monomial c · Π_q x_{occ[q]}, powers expanded in written order. */
typedef struct Monomial {
	double coef;             /* c_m, sign included */
	int degree;              /* k_m: number of occurrences, ≥ 1 */
	int occ[PC_MAX_DEGREE];  /* occ[q] = j of x_j (1-based) */
	Loc loc;                 /* the whole term */
} Monomial;

/* One order constraint of a mask: ℓa ≤ ℓb, or ℓa < ℓb when strict
 * (doc/design.md, "Masks"). */
typedef struct PcMask {
	int a, b;                /* j of x_a and x_b */
	bool strict;             /* '<' rather than '<=' */
	Loc loc;                 /* the constraint as written; for causal's,
	                            the mask setting */
	Loc loc_a, loc_b;        /* its two variables */
} PcMask;

/* A kernel as written, with defaults filled in and validated. */
typedef struct Kernel {
	char name[PC_MAX_NAME + 1]; /* a C identifier */
	Loc loc;                 /* the name (or the file for bare polys) */
	char *poly_text;         /* normalized polynomial, e.g. "x1*x2 + 0.5*x2*x3" */
	Monomial mono[PC_MAX_MONOMIALS];
	int nmono;               /* s: number of monomials */
	int nvars;               /* t: highest variable index */
	int head_dim;            /* default 64 */
	int value_dim;           /* default 64 */
	uint32_t values;         /* bit j set: x_j carries values (bit 0 unused);
	                            default: every variable but x1 */
	double scale;            /* default 1.0 */
	PcAlgo algorithm;        /* default auto */
	double bound;            /* approx: max |entry|; 0 = not given */
	double tolerance;        /* approx: default 1e-3 */
	bool fallback_exact;     /* approx: over the bound, run exact (default:
	                            return PA_ERR_BOUND) */
	bool causal;             /* mask = causal */
	PcMask written[PC_MAX_MASKS]; /* explicit constraints, as written */
	int nwritten;
	PcMask mask[PC_MAX_MASKS]; /* in effect: the written ones, or causal's
	                            child <= parent along the BFS tree from x1 */
	int nmasks;
	int64_t window;          /* every constrained pair closer than this;
	                            0 = no window */
	Loc set_loc[PC_SET__COUNT]; /* where each setting was given ({0} if not) */
} Kernel;

/* A parsed file: its kernels in order. */
typedef struct Program {
	SrcFile *file;
	Kernel *kernels;
	int nkernels;
	SrcFile **defs;          /* -D texts that set_loc may point into; */
	int ndefs;               /* owned by the Program */
} Program;

/* What a node of the syntax tree is.  Leaves keep no text: their Loc
 * covers the spelling in the source. */
typedef enum AstKind {
	AST_NUM,                 /* a number literal */
	AST_NAME,                /* an identifier: x3, auto, none, head_dim */
	AST_POW,                 /* name ^ kids: a variable to a power */
	AST_TERM,                /* product of the kids (numbers, names, powers) */
	AST_POLY,                /* sum of AST_TERM kids, each maybe negated */
	AST_LIST,                /* comma-separated AST_NAME or AST_ORDER kids */
	AST_ORDER,               /* kids[0] <= kids[1], or < when strict */
	AST_SETTING,             /* name = kids: one setting and its value */
	AST_KERNEL,              /* kernel name { kids: settings } */
	AST_FILE,                /* kids: kernels, or one bare AST_POLY */
	AST_DEFINE,              /* -D [name.]kids: a setting, maybe for one kernel */
} AstKind;

/* A node of the syntax tree the grammar builds and ast.c lowers. */
typedef struct Ast {
	AstKind kind;
	Loc loc;                 /* the whole construct */
	bool neg;                /* AST_TERM: written after '-' */
	bool strict;             /* AST_ORDER: '<' rather than '<=' */
	struct Ast *name;        /* AST_POW variable, AST_SETTING key, AST_KERNEL
	                            name, AST_DEFINE kernel (or NULL) */
	struct Ast *kids, *last; /* children in written order */
	struct Ast *next;        /* the next sibling */
} Ast;

Ast *ast_new(AstKind kind);
Ast *ast_leaf(Loc l, AstKind kind);
Ast *ast_add(Loc l, Ast *parent, Ast *kid);
Ast *ast_named(Loc l, Ast *node, Ast *name);
Ast *ast_pair(Loc l, AstKind kind, Ast *name, Ast *kid);
Ast *ast_negate(Ast *term);
Ast *ast_bare(Loc l, Ast *poly);
Ast *ast_order(Loc l, Ast *a, Ast *b, bool strict);
void ast_free(Ast *a);

const char *setting_name(PcSetting s);
const char *algo_name(PcAlgo a);
Program *program_build(const Ast *file, SrcFile *f, Diag *d);
bool program_define(Program *p, const Ast *def, Diag *d);
void program_free(Program *p);

/* --------------------------------------------------------------- names.c */

/* Why C cannot hold kernel name k (a sentence to follow "kernel name
 * 'k' ", written to why), or NULL when it can. */
const char *name_refusal(const char *k, char *why, size_t size);
/* Whether kernels named a and b would define a C symbol of the same name. */
bool names_clash(const char *a, const char *b);

/* --------------------------------------------------------------- parse.c */

/* Parse a .poly source.  On any error, reports every error to d and
 * returns NULL (no partial program).  The Program keeps a reference to f. */
Program *parse_source(SrcFile *f, Diag *d);
/* Read and parse a file; NULL on error (reported to d). */
Program *parse_file(const char *path, Diag *d);
/* Apply "-D key=value" or "-D kernel.key=value" to p, re-validating the
 * kernels it touches.  Returns false (and reports) on a bad definition. */
bool apply_define(Program *p, const char *def, Diag *d);

/* One run of the scanner and the grammar over a source: what they share
 * (the scanner's extra data and the grammar's parameter). */
typedef struct Parser {
	SrcFile *file;
	Diag *d;
	int start;               /* token that picks the start rule; 0 once sent */
	bool define;             /* the source is the text of a -D option */
	int pos;                 /* byte offset the scanner has reached */
	Loc prev;                /* the token before the current one */
	Ast *tree;               /* what the grammar built, NULL on error */
} Parser;

void parse_done(Parser *P, Ast *tree);
void parse_syntax_error(Parser *P, Loc at, int token, uint32_t expected);

/* --------------------------------------------------------------- graph.c */

typedef enum GraphClass {
	GC_TREE,                 /* edges of ≤ 2 variables, a forest */
	GC_CYCLIC,               /* edges of ≤ 2 variables, some cycle */
	GC_HIGH_DEGREE,          /* some monomial touches ≥ 3 variables */
} GraphClass;

/* A hyperedge: the monomials over one set of ≥ 2 distinct variables. */
typedef struct Edge {
	uint32_t vars;           /* bit j set: x_j is in the edge */
	int nmono;               /* monomials merged into this edge; 0: an
	                            edge that a mask constraint alone adds */
	int mono[PC_MAX_MONOMIALS]; /* their indices, in written order */
} Edge;

/* The monomial hypergraph of a kernel and its class. */
typedef struct Graph {
	const Kernel *k;
	int nvars;               /* t */
	Edge edge[PC_MAX_MONOMIALS];
	int nedges;
	int nbias[PC_MAX_VARS + 1]; /* one-variable monomials per variable */
	int bias[PC_MAX_VARS + 1][PC_MAX_MONOMIALS];
	uint32_t adj[PC_MAX_VARS + 1]; /* primal graph: neighbours of x_j */
	int comp[PC_MAX_VARS + 1];  /* connected component of x_j, 0-based */
	int ncomps;
	GraphClass cls;
} Graph;

void graph_build(Graph *g, const Kernel *k);
const char *graph_class_name(GraphClass c);
int popcount32(uint32_t x);

/* ---------------------------------------------------------------- plan.c */

typedef enum PlanKind {
	PLAN_TREE,               /* exact message passing on a forest */
	PLAN_ELIM,               /* exact variable elimination, any graph */
} PlanKind;

/* The message x_var sends its parent: the edge's attention with the
 * subtree below x_var folded into key biases and payloads. */
typedef struct Message {
	int var;                 /* j: the variable summed out */
	int parent;              /* p */
	int edge;                /* index into Graph.edge */
	int dim;                 /* columns of the edge's queries and keys
	                            (0 for an edge of the mask alone) */
	bool values;             /* the subtree of x_var carries values */
	int64_t lo, hi;          /* masks: the allowed ℓvar − ℓparent, lo ≤
	                            · ≤ hi (±PC_UNBOUNDED: no limit) */
} Message;

/* No limit on a Message's lo or hi (PA_UNBOUNDED in the kernels). */
#define PC_UNBOUNDED (INT64_C(1) << 62)

/* One step of variable elimination: x_var is summed out of every factor
 * holding it, leaving a message over scope. */
typedef struct ElimStep {
	int var;                 /* j */
	uint32_t scope;          /* R: the variables the factors share with x_j */
	uint64_t edges;          /* bit e: Graph.edge[e] is read here (first use) */
	uint32_t msgs;           /* bit s: the message of step s is read here */
	bool values;             /* a value-carrying variable lies below */
} ElimStep;

/* ------------------------------------------------------------- approx.c */

enum {
	PC_APPROX_MAX_IDX = 8,   /* indices of one tensor (PA_APPROX_MAX_IDX) */
	PC_APPROX_MAX_IN = 32,   /* inputs of one contraction step */
	PC_APPROX_MAX_TENSORS = 128, /* leaves plus steps */
	PC_APPROX_MAX_DEGREE = 40,   /* highest Taylor degree tried */
	PC_APPROX_NIDX = 1 + PC_MAX_VARS + PC_MAX_MONOMIALS, /* c, ℓ_j, α_e */
	PC_APPROX_MAX_ID = 64,   /* index ids the engine handles: 1 + t + edges */
	PC_APPROX_MAX_COORDS = 1024, /* D = monomials · head_dim of one edge */
	PC_APPROX_CHUNK = 64,    /* rows of a masked message's chunk (at most: CH of
	                            runtime/pa_approx_tree.c) */
};

/* An edge of the graph and its Taylor feature map. */
typedef struct ApproxEdge {
	int ncoord;              /* D = monomials · head_dim */
	double x;                /* |score| ≤ x when entries are within bound */
	int degree;              /* P: the smallest even degree meeting the share */
	double nfeat;            /* C(D + P, P) */
	double err;              /* e^x · x^(P+1) / (P+1)!: relative, per weight */
	int weight_var;          /* the variable whose features carry weights */
} ApproxEdge;

/* A tensor of the network: a leaf (features or weights) or a step's
 * result.  Index numbering as in pa_approx.h: 0 = c, j = ℓ_j,
 * nvars + 1 + e = α_e. */
typedef struct ATensor {
	int kind;                /* leaves: PA_LEAF_FEATURES 0 or _WEIGHTS 1 */
	int edge, var;           /* leaves: what it holds */
	int nidx;
	int idx[PC_APPROX_MAX_IDX];
} ATensor;

/* Multiply the inputs and sum out one index (or none: -1). */
typedef struct AStep {
	int sum;
	int nin;
	int in[PC_APPROX_MAX_IN];
	int out;                 /* the tensor it makes */
	int npos;                /* position indices its loops run over */
	double coef;             /* flops ≈ coef · n^npos */
} AStep;

/* The approximate algorithm of a kernel (doc/design.md, "Approximation:
 * the polynomial method"). */
typedef struct Approx {
	bool usable;             /* false: why says what stops it */
	char why[320];
	double err;              /* promised relative error of every weight */
	ApproxEdge edge[PC_MAX_MONOMIALS];
	ATensor t[PC_APPROX_MAX_TENSORS];
	int nleaves, ntensors;
	AStep step[PC_APPROX_MAX_TENSORS];
	int nsteps;
	double flops_lin, flops_const; /* flops ≈ flops_lin · n + flops_const */
	double mem_lin, mem_const;     /* workspace floats, the same way */
	double min_n;            /* the cost model's crossover with exact */
	bool masked;             /* a masked tree: the exact plan's messages,
	                            each summed by chunked prefix sums */
} Approx;

/* How a kernel's entry point chooses. */
typedef enum PlanUse {
	USE_EXACT,               /* the exact plan only */
	USE_APPROX,              /* approx; exact too when fallback = exact */
	USE_AUTO,                /* exact below approx.min_n, approx above */
} PlanUse;

typedef struct Plan {
	PlanKind kind;
	const Graph *g;
	int parent[PC_MAX_VARS + 1]; /* 0 for a component root */
	Message msg[PC_MAX_VARS];    /* children before parents */
	int nmsg;
	int root[PC_MAX_VARS];       /* component roots, x1's first */
	int nroots;
	bool sub_values[PC_MAX_VARS + 1]; /* subtree of x_j carries values */
	ElimStep step[PC_MAX_VARS];  /* PLAN_ELIM: in elimination order */
	int nsteps;
	int mem_exp;                 /* PLAN_ELIM: largest message, n^mem_exp rows */
	int cost_exp;                /* work grows as n^cost_exp */
	double cost_coef;            /* flops ≈ cost_coef · n^cost_exp */
	PlanUse use;
	bool carry_exact;            /* the exact plan is emitted */
	Approx approx;               /* USE_APPROX, USE_AUTO; also auto's
	                                figures when approx is not usable */
	bool approx_tried;           /* approx holds an attempt */
} Plan;

bool plan_build(Plan *p, const Graph *g, Diag *d);
void mask_range(const Kernel *k, int parent, int child, int64_t *lo,
                int64_t *hi);
const char *plan_kind_name(PlanKind k);
const char *plan_algorithm(const Plan *p);
bool plan_trains(const Plan *p);
bool plan_exact_trains(const Plan *p);
bool plan_runs_qk(const Plan *p);
double plan_flops(const Plan *p, double n);
double mask_pairs(double n, int64_t lo, int64_t hi);
double plan_seconds(const Plan *p, double n);

/* Rates the cost model assumes (flops per second, both cores), as make
 * bench-approx measured them for small head_dim (exps weigh most there);
 * only their ratio decides anything. */
#define PC_RATE_EXACT 25e9
#define PC_RATE_APPROX 15e9

void approx_plan(Plan *p);
void approx_mask(Plan *p);
double approx_bound(const Kernel *k);
void approx_describe_step(FILE *f, const Plan *p, int s);
double approx_seconds(const Approx *a, double n);
int approx_feature_weights(const ApproxEdge *ae, const Kernel *k,
                           const Edge *e, int *parent, int *coord,
                           double *weight);

/* ------------------------------------------------------------- explain.c */

void explain_kernel(FILE *f, const Plan *p);

/* ---------------------------------------------------------------- emit.c */

/* Where generated C goes: indentation and fresh names. */
typedef struct Emitter {
	FILE *out;
	int indent;              /* current depth, back to 0 after a kernel */
	const char *src_path;    /* the .poly file, for the banner */
} Emitter;

void emit_line(Emitter *E, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void emit_open(Emitter *E, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void emit_close(Emitter *E);
void emit_banner(Emitter *E);
const char *emit_vars(char *buf, size_t size, uint32_t mask);
void emit_program_c(Emitter *E, const Plan *plans, int nplans);
void emit_program_h(Emitter *E, const Plan *plans, int nplans);
void emit_info(Emitter *E, const Plan *p);

/* ----------------------------------------------------------- emit_tree.c */

void emit_tree_kernel(Emitter *E, const Plan *p, const char *entry);
const char *emit_mask_bound(char *buf, size_t size, int64_t x);

/* -------------------------------------------------------- emit_attend.c */

void emit_attend(Emitter *E, const char *kname, int dim, int dv, bool masked);

/* ----------------------------------------------------------- emit_elim.c */

void emit_elim_kernel(Emitter *E, const Plan *p, const char *entry);

/* --------------------------------------------------------- emit_approx.c */

void emit_approx_kernel(Emitter *E, const Plan *p);

/* -------------------------------------------------------------- driver.c */

/* What clang is asked to make of the generated C. */
typedef enum CcOutput {
	CC_OBJECT,               /* -c: an object file */
	CC_ASM,                  /* -S: assembly */
	CC_LLVM,                 /* -S -emit-llvm: LLVM IR as text */
	CC_SHARED,               /* -shared: a shared object holding the
	                            kernels, the runtime and OpenMP */
} CcOutput;

/* How to run the back end. */
typedef struct CcOptions {
	const char *cc;          /* clang binary: --cc, $POLYC_CC, or "clang" */
	const char *opt;         /* "-O3" unless -O given */
	const char *march;       /* NULL or "-march=…" */
	const char *include_dir; /* where polyattn.h lives */
	const char *runtime_pic; /* CC_SHARED: the position-independent
	                            runtime archive (libpolyattn_pic.a) */
	const char *src_name;    /* the .poly file the C comes from, as the
	                            object names it */
	const char **extra;      /* extra flags (-Xclang-style passthrough) */
	int nextra;
} CcOptions;

/* Which output an OutFile is, for the cleanup of its temporary when a
 * signal stops polyc. */
enum {
	OUT_MAIN,                /* the output the action asks for */
	OUT_DEPS,                /* the dependency file of -MD */
};

/* An output being written: to a temporary beside its target (symlinks
 * followed) that out_close renames into place, or in place when the
 * target is not a regular file (a device, a FIFO), or to stdout ("-"). */
typedef struct OutFile {
	FILE *f;                 /* where to write */
	const char *path;        /* as the user gave it, for messages */
	int kind;                /* OUT_MAIN or OUT_DEPS */
	char target[4096];       /* path with its symlinks followed */
	char tmp[4096 + 16];     /* the temporary; "" when written in place */
} OutFile;

/* Open path for writing (kind: OUT_MAIN or OUT_DEPS); false (reported,
 * under the user's path) when it cannot be created. */
bool out_open(OutFile *o, const char *path, int kind, Diag *d);
/* Finish o: with keep, put it in place (false, reported, on a write
 * error); without, discard it.  Returns whether the output was kept. */
bool out_close(OutFile *o, bool keep, Diag *d);
/* Whether paths a and b name the same file (the same inode, or, for
 * files not yet there, the same path once symlinks are followed). */
bool same_file(const char *a, const char *b);
/* Write the text produced by fn to path atomically ("-" = stdout). */
bool write_output(const char *path, void (*fn)(FILE *, void *), void *ctx,
                  Diag *d);
/* Compile C text produced by fn with clang into what kind names (an
 * object, assembly, LLVM IR or a shared object) at path, atomically
 * ("-" = stdout). */
bool compile_c(const char *path, CcOutput kind, const CcOptions *o,
               void (*fn)(FILE *, void *), void *ctx, Diag *d);

#endif /* POLYC_H */
