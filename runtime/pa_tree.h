/*
 * pa_tree.h - the backward of tree kernels (doc/training.md): one edge's
 * attention backward, and the reverse message pass that chains it over a
 * tree, root first.
 *
 * A tree kernel's forward (emit_tree.c in polyc) runs, per message x_j →
 * x_p, one attention pass with key bias: queries q (x_p's side of the
 * edge's monomials, times scale·c), keys k (x_j's side), key bias kb (x_j's
 * bias monomials plus its children's log-normalizers) and payload pv
 * (x_j's values times its children's normalized messages).  It keeps per
 * message the log-normalizer lse and the normalized message o.  The
 * backward rebuilds q, k, kb and pv with the same generated "prepare"
 * stages, from the inputs and the saved lse and o, and hands them here.
 * Users of kernels do not need this header; generated C includes it.
 */
#ifndef PA_TREE_H
#define PA_TREE_H

#include <stddef.h>
#include <stdint.h>

#include "polyattn.h"

/*
 * One edge's backward, for every batch entry.  With P = exp(q·kᵀ + kb −
 * lse) (rows: queries, columns: keys) and Dv_i = ⟨dm_i, o_i⟩ − dl_i:
 *     dS = P ⊙ (dm · pvᵀ − Dv),   dq = dS · k,   dk = dSᵀ · q,
 *     dpv = Pᵀ · dm,              dkb = column sums of dS.
 * dl is the gradient reaching lse (the column sums of the parent edge's
 * dS); dm the gradient reaching o.  Nothing n × n is stored: each key
 * panel walks every query block, S and P are recomputed tile by tile.
 * The edge has nq query rows and nk key rows (nq < nk for a message into
 * x1 of a call with fewer queries than keys).  Layouts are the forward's
 * (emit_tree.c): q batch × nq × dim; kt packed panels batch × nb × dim ×
 * PA_BK (nb panels of the nk keys); kb batch × np; pv batch × np × vp with
 * vp = value_dim rounded up to 16; o, dm batch × nq × vd; lse, dl batch ×
 * nq.  Outputs are batch × nq × dim (dq), batch × nk × dim (dk), batch ×
 * nk × vd (dpv), batch × nk (dkb).  vd = 0: the edge carries no payload
 * (pv, o, dm, dpv unused).  masked (doc/design.md, "Masks"): query row i,
 * at position i + off, sees key j only when lo ≤ j − (i + off) ≤ hi, as
 * the forward's masked micro-kernel; a block of queries and a panel of
 * keys whose pairs are all masked out are skipped, and a row the forward
 * left without keys (lse = −inf) has no gradient.
 */
typedef struct pa_edge {
	int64_t batch, nq, nk;   /* batch entries, query rows, key rows */
	int64_t off;             /* position of query row 0 (nk − nq or 0) */
	int dim;                 /* columns of q and k */
	int vd;                  /* value_dim, or 0 */
	const float *q, *kt, *kb, *pv, *o, *lse;
	const float *dm;         /* NULL when vd == 0 */
	const float *dl;         /* NULL: no gradient reaches lse */
	float *dq, *dk, *dpv, *dkb;
	int masked;              /* 0: every pair (lo, hi unused) */
	int64_t lo, hi;          /* the pairs the mask allows, ±PA_UNBOUNDED */
} pa_edge;

/* pa_edge_floats: the workspace pa_edge_backward needs for e, from the
 * threads OpenMP would give it here (SIZE_MAX on overflow); the backward
 * itself cannot fail. */
size_t pa_edge_floats(const pa_edge *e);
void pa_edge_backward(const pa_edge *e, float *ws);

/* The forward's buffers of variable j (emit_tree.c): for a message x_j →
 * parent q, kt, kb, lse and, if its subtree carries values, pv and o; for
 * a component root other than x1, kb and pv only. */
typedef struct pa_tree_bufs {
	const float *q, *kt, *kb, *lse, *pv, *o;
} pa_tree_bufs;

/* The shape of a tree plan: each variable's parent (0 for a root), the
 * messages in the forward's order, children before parents, and the
 * component roots the forward keeps (x1's first; a component without x1,
 * values and masks is left out: it scales numerator and denominator
 * alike).  With a mask, message x_j → x_p allows the pairs lo[j] ≤ ℓj −
 * ℓp ≤ hi[j] (±PA_UNBOUNDED: no limit), as in the forward. */
typedef struct pa_tree_plan {
	int parent[17];          /* indexed by j of x_j */
	int nmsg;
	int order[16];           /* the variable of each message */
	int nroots;
	int root[16];
	int masked;              /* the kernel has a mask */
	int64_t lo[17], hi[17];  /* indexed by j of x_j */
} pa_tree_plan;

/*
 * The reverse message pass: gradients of every input whose grad[i] is not
 * NULL, written (not added to).  k describes the kernel, bufs[j] the
 * rebuilt forward buffers of x_j, out and grad_out the forward's output
 * and dL/dout.  x1's inputs, grad_out and the buffers of the messages into
 * x1 (q, lse, o) have nq rows, query row i at position i + nk − nq; every
 * other input and buffer has nk rows (K_info.backward_qk).  Returns PA_ERR_NOMEM (nothing written) when its scratch
 * cannot be had.
 */
pa_status pa_tree_backward(const pa_kernel_info *k, const pa_tree_plan *t,
                           const pa_tree_bufs *bufs, int64_t batch, int64_t nq,
                           int64_t nk,
                           const float *const in[], const float *grad_out,
                           float *const grad[]);

#endif /* PA_TREE_H */
