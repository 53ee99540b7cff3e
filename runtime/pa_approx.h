/*
 * pa_approx.h - the approximate engine (doc/design.md, "Approximation:
 * the polynomial method"): a tensor network that polyc plans and prints into the generated C as
 * constant tables, contracted here in time linear in n.
 *
 * Every edge e (the monomials over one set of ≥ 2 variables) has the score
 *
 *     u_e = Σ_i w_i · Π_{v ∈ e} A_{e,v}[ℓ_v, i],     i = (a, l),
 *
 * over D_e = nmono · head_dim coordinates: a is the a-th monomial of the
 * edge (mono[a]), l a column, w_i = scale · c_{mono[a]}, and
 * A_{e,v}[ℓ, (a, l)] the product of the factor inputs of monomial mono[a]
 * whose variable is v, at row ℓ and column l.  exp(u_e) is replaced by
 * its degree-P Taylor polynomial, which factors through feature maps:
 *
 *     exp(u_e) ≈ Σ_f weight[f] · Π_{v ∈ e} φ_f(A_{e,v}[ℓ_v]),
 *     φ_0 = 1,  φ_f = φ_{parent[f]} · A[coord[f]]   (f ≥ 1, parent[f] < f),
 *
 * one feature per multi-index of total degree ≤ P.  weight[f] is folded
 * into the features of one variable, weight_var.
 *
 * The network's indices are numbered:
 *
 *     0          c:   value_dim + 1 channels; the last is the denominator
 *     j (1..t)   ℓ_j: a position of x_j, n values
 *     t + 1 + e  α_e: a feature of edge e, nfeat values
 *
 * Its leaves are dense tensors (row-major, last index fastest):
 *
 *     PA_LEAF_FEATURES  Φ_{e,v}[ℓ_v, α_e] = φ_f(A_{e,v}[ℓ_v]) (weighted on
 *                       weight_var), for v in edge e;
 *     PA_LEAF_WEIGHTS   W_v[ℓ_v, c] = exp(b_v(ℓ_v) - max b_v) · V_v[ℓ_v, c]
 *                       for c < value_dim and exp(b_v - max b_v) for the
 *                       last channel, where b_v is x_v's bias score
 *                       (scale · Σ of its one-variable monomials, 0 for x1)
 *                       and V_v its value matrix; W_v[ℓ_v] (no c) when
 *                       x_v carries no values.
 *
 * Each step multiplies its inputs (leaves or earlier steps' results; the
 * result of step s is tensor nleaves + s) and sums out one index:
 *
 *     T[out] = Σ_{x in sum} Π_k T_{in[k]}[its indices]
 *
 * (sum = -1: no sum, a product or a permutation).  Every index of the
 * inputs but sum appears in out; out's order is the stored layout.  The
 * last step's result is R[ℓ1, c] (R[ℓ1] when no variable carries values),
 * and the kernel's output is out[ℓ1, c] = R[ℓ1, c] / R[ℓ1, value_dim]
 * (all ones without values).
 */
#ifndef PA_APPROX_H
#define PA_APPROX_H

#include <stdbool.h>
#include <stdint.h>

#include "polyattn.h"

/* An edge and its feature map. */
typedef struct pa_approx_edge {
	uint32_t vars;           /* bit j: x_j is in the edge (≥ 2 bits) */
	int nmono;
	const int *mono;         /* monomial indices, as in K_info */
	int degree;              /* P, even */
	int nfeat;               /* C(D + P, P) */
	const int *parent;       /* nfeat entries; entry 0 unused */
	const int *coord;        /* nfeat entries, in [0, nmono·head_dim) */
	const float *weight;     /* nfeat entries */
	int weight_var;          /* the variable whose features carry weight */
} pa_approx_edge;

enum {
	PA_LEAF_FEATURES = 0,    /* Φ_{edge,var}[ℓ_var, α_edge] */
	PA_LEAF_WEIGHTS = 1,     /* W_var[ℓ_var, c] or W_var[ℓ_var] */
};

#define PA_APPROX_MAX_IDX 8  /* indices of one tensor */

typedef struct pa_approx_leaf {
	int kind;                /* PA_LEAF_FEATURES or PA_LEAF_WEIGHTS */
	int edge;                /* features: the edge; weights: -1 */
	int var;                 /* v */
	int nidx;
	int idx[PA_APPROX_MAX_IDX]; /* features {v, t+1+e}; weights {v, 0} or {v} */
} pa_approx_leaf;

typedef struct pa_approx_step {
	int sum;                 /* the index summed out, or -1 */
	int nin;
	const int *in;           /* tensor ids: leaves, then step results */
	int nout;
	int out[PA_APPROX_MAX_IDX]; /* the result's indices, in layout order */
} pa_approx_step;

/*
 * A masked tree (pa_approx_tree.c; doc/design.md, "Masks"): the same
 * edges and feature maps, but contracted as the exact tree plan's
 * messages, children before parents, each summed under its mask range
 * by chunked prefix sums over positions (suffix sums for a reverse
 * constraint) in time linear in n.  A message from x_var to x_parent over
 * edge edge sums the positions ℓvar with lo ≤ ℓvar − ℓparent ≤ hi, one
 * side at most bounded: hi ∈ {0, −1} with lo = −PA_UNBOUNDED (pa_kernel.h;
 * ℓvar ≤ ℓparent, or <), lo ∈ {0, 1} with hi = PA_UNBOUNDED (ℓvar ≥
 * ℓparent, or >), or both unbounded.  roots are the components'
 * roots, x1 first; a component without x1 contributes Σ over its root's
 * positions, per channel.
 */
typedef struct pa_approx_msg {
	int var;                 /* the child, x_var */
	int parent;              /* x_parent */
	int edge;                /* the edge between them */
	int64_t lo, hi;          /* the allowed range of ℓvar − ℓparent */
} pa_approx_msg;

typedef struct pa_approx_tree {
	int nmsg;
	const pa_approx_msg *msg; /* children before parents */
	int nroots;
	const int *roots;        /* x1 first */
} pa_approx_tree;

typedef struct pa_approx_plan {
	int nedges;
	const pa_approx_edge *edges;
	int nleaves;
	const pa_approx_leaf *leaves;
	int nsteps;
	const pa_approx_step *steps;
	double bound;            /* max |entry| of factor inputs: the declared
	                            bound rounded up to a float */
	int64_t min_n;           /* below this n the exact kernel runs (auto) */
	pa_kernel_fn exact;      /* the exact kernel, or NULL: over the bound
	                            gives PA_ERR_BOUND */
	/* the exact kernel's training pair, NULL when it has none */
	int64_t (*exact_saved_floats)(int64_t batch, int64_t n);
	pa_train_fn exact_train;
	pa_backward_fn exact_backward;
	/* a masked tree: its messages replace the network (which then is
	 * not contracted); NULL otherwise */
	const pa_approx_tree *tree;
} pa_approx_plan;

/*
 * The kernel's whole computation.  After pa_check_args: when exact is set
 * and n < min_n, the exact kernel runs.  Otherwise every factor input is
 * scanned; an entry with |x| > bound runs the exact kernel, or returns
 * PA_ERR_BOUND (out untouched) when there is none.  Then the network is
 * contracted per batch entry.
 */
pa_status pa_approx_run(const pa_kernel_info *k, const pa_approx_plan *p,
                        int64_t batch, int64_t n, const float *const inputs[],
                        float *out);

/*
 * Training (doc/training.md, "Approximate kernels"), pa_approx_grad.c.
 * A call runs what pa_approx_run would: the network, or the exact kernel
 * (below min_n, or over the bound with one), or returns PA_ERR_BOUND.
 * saved[0] records which; the exact kernel's saved follows it, so
 * pa_approx_saved_floats is 1 + exact_saved_floats(batch, n).
 * pa_approx_train writes the output pa_approx_run writes, bit for bit.
 * pa_approx_backward takes the rule again on its inputs (PA_ERR_BOUND
 * over the bound without an exact kernel; PA_ERR_ARGUMENT when saved[0]
 * records another choice) and gives the exact gradient of the function
 * the forward computed: the network's, by reverse mode through its steps,
 * or the exact kernel's backward (PA_ERR_UNSUPPORTED when it has none).
 * Nothing is written unless the status is PA_OK.
 */
enum {
	PA_APPROX_NETWORK = 1,   /* saved[0]: the forward contracted the network */
	PA_APPROX_EXACT = 2,     /* saved[0]: it ran the exact kernel */
};
int64_t pa_approx_saved_floats(const pa_approx_plan *p, int64_t batch, int64_t n);
pa_status pa_approx_train(const pa_kernel_info *k, const pa_approx_plan *p,
                          int64_t batch, int64_t n, const float *const inputs[],
                          float *out, float *saved);
pa_status pa_approx_backward(const pa_kernel_info *k, const pa_approx_plan *p,
                             int64_t batch, int64_t n, const float *const inputs[],
                             const float *out, const float *saved,
                             const float *grad_out, float *const grad_inputs[]);

/* The masked tree's forward and backward (pa_approx_tree.c), called by
 * pa_approx_run, pa_approx_train and pa_approx_backward on the network
 * path when p->tree is set, after their checks (arguments, the bound,
 * min_n).  out[ℓ1] = R[ℓ1, c] / R[ℓ1, value_dim], 0 where the mask
 * leaves ℓ1 no tuple (R[ℓ1, value_dim] = 0; its gradients are 0). */
pa_status pa_approx_tree_run(const pa_kernel_info *k, const pa_approx_plan *p,
                             int64_t batch, int64_t n, const float *const inputs[],
                             float *out);
pa_status pa_approx_tree_backward(const pa_kernel_info *k, const pa_approx_plan *p,
                                  int64_t batch, int64_t n, const float *const inputs[],
                                  const float *grad_out, float *const grad_inputs[]);

/* One batch entry's inputs and their gradients (entries NULL when not
 * wanted; gradients are added to), for the feature and weight leaves'
 * shared routines below (pa_approx_grad.c). */
typedef struct pa_approx_io {
	const pa_kernel_info *k;
	const float *const *in;
	float *const *gin;
} pa_approx_io;

/* Rows r0 … r1-1 of Φ_{ed,v}, weighted when v is ed's weight_var, as the
 * forward makes them: into dst ([row][feature], nfeat floats a row) and
 * into dstt ([feature][row], ldt floats a feature), each when not NULL;
 * scratch holds pa_approx_feature_scratch floats. */
void pa_approx_feature_rows(const pa_approx_io *io, const pa_approx_edge *ed, int v,
                            int64_t r0, int64_t r1, float *dst, float *dstt,
                            int64_t ldt, float *scratch);
int64_t pa_approx_feature_scratch(const pa_kernel_info *k, const pa_approx_edge *ed);

/* The gradient of rows r0 … r1-1 of Φ_{ed,v}, dphi[f · sf + (r − r0) · sr],
 * back through the feature recursion to the coordinates and by the
 * product rule to the factor inputs, added into io->gin. */
void pa_approx_feature_push(const pa_approx_io *io, const pa_approx_edge *ed, int v,
                            int64_t r0, int64_t r1, const float *dphi, int64_t sf,
                            int64_t sr, float *scratch);

/* The gradient dw of W_v (n rows of value_dim + 1 channels when chan,
 * else n floats; ew = exp(b_v − max b_v)) to V_v and through exp(b_v) to
 * x_v's bias monomials, added into io->gin, rows over nt threads. */
void pa_approx_weights_push(const pa_approx_io *io, int v, const float *ew,
                            const float *dw, bool chan, int64_t n, int nt);

/* Rows of features made side by side. */
#define PA_APPROX_FR 64

/* From at[d][r] (coordinate d of row r, PA_APPROX_FR rows side by side),
 * ph[f][r] = φ_f of row r (nf × PA_APPROX_FR floats), and rows 0 … rows-1
 * of the features into out (nf floats each; none when out is NULL), times
 * weight[f] when weight is not NULL: the forward's feature maps, in the
 * widest vectors this CPU runs. */
void pa_approx_feature_block(int nf, const int *parent, const int *coord,
                             const float *weight, float *ph, float *at, int rows,
                             float *out);

/* nbat products O (+= when acc) = A · B of contiguous [M][K], [K][N] and
 * [M][N] blocks in the engine's register tiles (the widest this CPU runs),
 * over nt threads when par and the work is worth it. */
void pa_approx_gemm(int64_t nbat, int64_t M, int64_t N, int64_t K, const float *A,
                    const float *B, float *O, int acc, int nt, int par);

/* ew[r] = exp(b_v(r) − max_r b_v) for r < n, b_v the scaled sum of x_v's
 * one-variable monomials over the batch entry's inputs in (all 1 for x1,
 * whose bias cancels): the weight leaf of x_v, forward and backward. */
void pa_approx_bias_exp(const pa_kernel_info *k, const float *const in[], int64_t n,
                        int v, float *ew);

/* The largest |entry| of the factor inputs of k (a NaN-free call). */
double pa_factor_max(const pa_kernel_info *k, int64_t batch, int64_t n,
                     const float *const inputs[]);

#endif /* PA_APPROX_H */
