/*
 * pa_elim.h - the exact engine for graphs that are not trees (cyclic or
 * high-degree; doc/design.md, "Other graphs"): variable elimination
 * driven by a plan that polyc computes and prints into the generated C as constant tables.
 *
 * Variables x2 … xt are summed out one at a time in the plan's order.  The
 * step that sums out x_j reads every factor still holding x_j (the edges of
 * the polynomial and the messages of earlier steps) and makes one message
 * over R, the variables those factors share with x_j.  A message is stored
 * as what tree messages carry: per tuple of R, its log-normalizer and (when
 * values lie below it) the normalized value vector, so scores of any size
 * stay finite.  x1 is never summed out: a step whose R holds x1 runs once
 * per query position, in that thread's own buffers, so its message needs
 * n^(|R|-1) rows, not n^|R|.
 */
#ifndef PA_ELIM_H
#define PA_ELIM_H

#include <stdint.h>

#include "polyattn.h"

/* A factor of the polynomial: the monomials over one set of variables
 * (one variable: a per-token bias). */
typedef struct pa_elim_edge {
	uint32_t vars;           /* bit j: x_j is in the edge */
	int nmono;
	const int *mono;         /* monomial indices, as in K_info */
} pa_elim_edge;

/* One elimination step: sum out x_var. */
typedef struct pa_elim_step {
	int var;                 /* j */
	uint32_t scope;          /* R: variables of the message made */
	int nedges;
	const int *edges;        /* edges consumed (they all hold x_j) */
	int nmsgs;
	const int *msgs;         /* earlier steps whose messages are consumed */
	int values;              /* the message carries value_dim channels */
} pa_elim_step;

typedef struct pa_elim_plan {
	int nedges;
	const pa_elim_edge *edges;
	int nsteps;
	const pa_elim_step *steps; /* in elimination order */
} pa_elim_plan;

/* A pair of positions a mask rules out (doc/design.md, "Masks") scores
 * -PA_MASKED in its edge's table: beside any allowed tuple its weight is
 * exactly 0, and a row or message whose every tuple is ruled out keeps a
 * log-normalizer near -PA_MASKED: its query's output is 0 and, in the
 * backward, its gradient too. */
#define PA_MASKED 1e30f

/* pa_elim_mask: t[ra·ld + ℓj] = -PA_MASKED, for ra < na, ℓj < n, where a
 * constraint of k's mask between x_a and x_j, or its window, rules out x_a
 * at position ra + off with x_j at ℓj (the table of a two-variable edge,
 * rows for x_a: off is nk − nq for x1's nq rows, else 0). */
void pa_elim_mask(const pa_kernel_info *k, int64_t na, int64_t n, int64_t off,
                  int64_t ld, int a, int j, float *t);

/* pa_elim_mask_high: w[ℓj] += -PA_MASKED, for ℓj < n, where a constraint
 * of k's mask or its window rules out the tuple pos with x_j at ℓj, for
 * the constraints edge e of p (three or more variables, x_j among them)
 * enforces: those whose pair is no two-variable edge of p (its table is
 * masked) and lies in no edge before e.  pos[1] is x1's row, at position
 * pos[1] + off (off = nk − nq). */
void pa_elim_mask_high(const pa_kernel_info *k, const pa_elim_plan *p, int e,
                       int j, const int64_t *pos, int64_t n, int64_t off,
                       float *w);

/* Run the plan p of kernel k: the kernel's whole computation. */
pa_status pa_elim_run(const pa_kernel_info *k, const pa_elim_plan *p,
                      int64_t batch, int64_t n, const float *const inputs[],
                      float *out);

/* The same with nq query rows (x1's inputs and out) and nk ≥ nq key rows
 * (every other input), query row i at position i + nk − nq
 * (K_info.run_qk); pa_elim_run(…, n, …) is pa_elim_run_qk(…, n, n, …). */
pa_status pa_elim_run_qk(const pa_kernel_info *k, const pa_elim_plan *p,
                         int64_t batch, int64_t nq, int64_t nk,
                         const float *const inputs[], float *out);

/*
 * Training (doc/training.md §6; runtime/pa_elim_grad.c).  saved holds, per
 * batch entry, the log-normalizers and value vectors of the steps whose
 * message does not hold x1 (O(n^|R|) floats each, as the forward's
 * workspace; one float when there are none).  pa_elim_saved_floats is -1
 * when the sizes overflow or a message would be too large.
 */
int64_t pa_elim_saved_floats(const pa_kernel_info *k, const pa_elim_plan *p,
                             int64_t batch, int64_t n);

/* The forward k->run, keeping saved; PA_ERR_NULL for a NULL saved. */
pa_status pa_elim_train(const pa_kernel_info *k, const pa_elim_plan *p,
                        int64_t batch, int64_t n, const float *const inputs[],
                        float *out, float *saved);

/* The backward: the steps in reverse order (polyattn.h's contract of
 * K_backward: checks as pa_check_args and pa_check_grad_args, nothing
 * written on any status but PA_OK, grad_inputs[i] written, NULL ones
 * skipped). */
pa_status pa_elim_backward(const pa_kernel_info *k, const pa_elim_plan *p,
                           int64_t batch, int64_t n, const float *const inputs[],
                           const float *out, const float *saved,
                           const float *grad_out, float *const grad_inputs[]);

/* The same three with nq query rows and nk ≥ nq key rows, as
 * pa_elim_run_qk (K_info.saved_floats_qk, train_qk, backward_qk): x1's
 * inputs, out, grad_out and x1's gradients have nq rows.  saved holds
 * what it holds at n = nk (no message of a step that runs once holds x1);
 * pa_elim_saved_floats_qk is -1 for nq < 1 or nq > nk too.  Each with
 * nq = nk = n is the entry above. */
int64_t pa_elim_saved_floats_qk(const pa_kernel_info *k, const pa_elim_plan *p,
                                int64_t batch, int64_t nq, int64_t nk);
pa_status pa_elim_train_qk(const pa_kernel_info *k, const pa_elim_plan *p,
                           int64_t batch, int64_t nq, int64_t nk,
                           const float *const inputs[], float *out, float *saved);
pa_status pa_elim_backward_qk(const pa_kernel_info *k, const pa_elim_plan *p,
                              int64_t batch, int64_t nq, int64_t nk,
                              const float *const inputs[], const float *out,
                              const float *saved, const float *grad_out,
                              float *const grad_inputs[]);

#endif /* PA_ELIM_H */
