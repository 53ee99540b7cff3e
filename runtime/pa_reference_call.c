/*
 * pa_reference_call.c - the definition of an extended call (polyattn.h,
 * pa_call), batch entry by batch entry: entry b's query row i, at position
 * i + k_len(b) − q_len(b), attends over its key rows < k_len(b).  Each
 * entry becomes the dense problem of n = k_len(b) rows whose x1 rows are
 * its queries below k_len(b) − q_len(b) zero rows, computed by
 * pa_reference or pa_reference_backward (so whatever those honour, masks
 * among it, holds here).  It shares no code with the call layer
 * (pa_call.c) that it checks: strides and lengths are read afresh here.
 */
#include "polyattn.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* A call's sizes, for the reference. */
typedef struct Shape {
	int64_t batch, heads, nq, nk;
} Shape;

/* Where one tensor's rows are: strides in floats, 0 resolved. */
typedef struct Strides {
	int64_t rs, hs, bs;
} Strides;

/* strides_of: l's strides for rows × cols per (entry, head), each 0 its
 * dense value (polyattn.h, pa_layout). */
static Strides strides_of(const pa_layout *l, const Shape *S, int64_t rows,
                          int64_t cols)
{
	static const pa_layout dense;
	l = l ? l : &dense;
	Strides s = {.rs = l->row ? l->row : cols};
	s.hs = l->head ? l->head : rows * s.rs;
	s.bs = l->batch ? l->batch : S->heads * s.hs;
	return s;
}

/* shape_of: S from c, with 0 defaults; PA_ERR_ARGUMENT for bad sizes. */
static pa_status shape_of(const pa_call *c, Shape *S)
{
	S->batch = c->batch, S->nq = c->nq;
	S->heads = c->heads ? c->heads : 1;
	S->nk = c->nk ? c->nk : c->nq;
	return c->batch < 1 || c->nq < 1 || c->heads < 0 || c->nk < 0 ||
	       S->nk < S->nq ? PA_ERR_ARGUMENT : PA_OK;
}

/* entry_lengths: q_len(b) and k_len(b); false when out of range. */
static bool entry_lengths(const pa_call *c, const Shape *S, int64_t b,
                          int64_t *ql, int64_t *kl)
{
	*kl = c->k_lengths ? c->k_lengths[b] : S->nk;
	*ql = c->q_lengths ? c->q_lengths[b] : S->nq == S->nk ? *kl : S->nq;
	return *kl >= 0 && *kl <= S->nk && *ql >= 0 && *ql <= S->nq && *ql <= *kl;
}

/* check_call: sizes, lengths and pointers; PA_ERR_NULL, PA_ERR_ARGUMENT. */
static pa_status check_call(const pa_kernel_info *k, const pa_call *c,
                            const void *out, Shape *S)
{
	if (!c || !out || !c->inputs)
		return PA_ERR_NULL;
	for (int i = 0; i < k->num_inputs; i++)
		if (!c->inputs[i])
			return PA_ERR_NULL;
	pa_status st = shape_of(c, S);
	for (int64_t b = 0; b < S->batch && st == PA_OK; b++) {
		int64_t ql, kl;
		if (!entry_lengths(c, S, b, &ql, &kl))
			st = PA_ERR_ARGUMENT;
	}
	return st;
}

/* dense_entry: entry b's inputs as a dense problem of kl rows per head
 * (heads × kl × cols floats each, calloc'ed into in[]); x1's rows are
 * its ql queries below kl − ql zero rows.  false when out of memory. */
static bool dense_entry(const pa_kernel_info *k, const pa_call *c,
                        const Shape *S, int64_t b, int64_t ql, int64_t kl,
                        float *in[])
{
	bool ok = true;
	for (int i = 0; i < k->num_inputs; i++) {
		const bool query = k->inputs[i].variable == 1;
		const int64_t cols = k->inputs[i].cols, rows = query ? S->nq : S->nk;
		const int64_t pad = query ? kl - ql : 0;
		const Strides s = strides_of(c->in_layout ? &c->in_layout[i] : NULL,
		                             S, rows, cols);
		in[i] = calloc((size_t)(S->heads * kl * cols) + 1, sizeof(float));
		ok = ok && in[i];
		for (int64_t h = 0; h < S->heads && in[i]; h++)
			for (int64_t r = pad; r < kl; r++)
				memcpy(in[i] + (h * kl + r) * cols,
				       c->inputs[i] + b * s.bs + h * s.hs + (r - pad) * s.rs,
				       (size_t)cols * sizeof(float));
	}
	return ok;
}

/* free_entry: release what dense_entry took. */
static void free_entry(const pa_kernel_info *k, float *in[])
{
	for (int i = 0; i < k->num_inputs; i++)
		free(in[i]);
}

/* pa_reference_call: see polyattn.h. */
pa_status pa_reference_call(const pa_kernel_info *k, const pa_call *c,
                            double *out)
{
	Shape S;
	pa_status st = check_call(k, c, out, &S);
	const int64_t vd = k->value_dim;
	for (int64_t b = 0; b < S.batch && st == PA_OK; b++) {
		int64_t ql, kl;
		entry_lengths(c, &S, b, &ql, &kl);
		double *o = out + b * S.heads * S.nq * vd;
		memset(o, 0, (size_t)(S.heads * S.nq * vd) * sizeof *o);
		if (ql == 0)
			continue;
		float *in[k->num_inputs > 0 ? k->num_inputs : 1];
		double *full = malloc((size_t)(S.heads * kl * vd) * sizeof *full);
		bool ok = dense_entry(k, c, &S, b, ql, kl, in) && full;
		st = ok ? pa_reference(k, S.heads, kl, (const float *const *)in, full)
		        : PA_ERR_NOMEM;
		for (int64_t h = 0; h < S.heads && st == PA_OK; h++)
			memcpy(o + h * S.nq * vd, full + (h * kl + kl - ql) * vd,
			       (size_t)(ql * vd) * sizeof *o);
		free(full);
		free_entry(k, in);
	}
	return st;
}

/* dense_grad_out: entry b's grad_out as heads × kl × value_dim floats, 0
 * in the kl − ql padding rows. */
static float *dense_grad_out(const pa_kernel_info *k, const pa_call *c,
                             const Shape *S, int64_t b, int64_t ql, int64_t kl)
{
	const int64_t vd = k->value_dim;
	const Strides s = strides_of(&c->grad_out_layout, S, S->nq, vd);
	float *g = calloc((size_t)(S->heads * kl * vd) + 1, sizeof *g);
	for (int64_t h = 0; h < S->heads && g; h++)
		for (int64_t r = 0; r < ql; r++)
			memcpy(g + (h * kl + kl - ql + r) * vd,
			       c->grad_out + b * s.bs + h * s.hs + r * s.rs,
			       (size_t)vd * sizeof *g);
	return g;
}

/* backward_entry: entry b's gradients into grad_inputs (zeroed before). */
static pa_status backward_entry(const pa_kernel_info *k, const pa_call *c,
                                const Shape *S, int64_t b,
                                double *const grad_inputs[])
{
	int64_t ql, kl;
	entry_lengths(c, S, b, &ql, &kl);
	if (ql == 0)
		return PA_OK;
	const int ni = k->num_inputs > 0 ? k->num_inputs : 1;
	float *in[ni];
	double *grads[ni];
	float *g = dense_grad_out(k, c, S, b, ql, kl);
	bool ok = dense_entry(k, c, S, b, ql, kl, in) && g;
	for (int i = 0; i < k->num_inputs; i++) {
		grads[i] = grad_inputs[i]
		           ? malloc((size_t)(S->heads * kl * k->inputs[i].cols + 1) * sizeof(double))
		           : NULL;
		ok = ok && (!grad_inputs[i] || grads[i]);
	}
	pa_status st = ok ? pa_reference_backward(k, S->heads, kl,
	                                          (const float *const *)in, g, grads)
	                  : PA_ERR_NOMEM;
	for (int i = 0; i < k->num_inputs && st == PA_OK; i++) {
		if (!grad_inputs[i])
			continue;
		const bool query = k->inputs[i].variable == 1;
		const int64_t cols = k->inputs[i].cols, rows = query ? S->nq : S->nk;
		const int64_t pad = query ? kl - ql : 0;
		double *o = grad_inputs[i] + b * S->heads * rows * cols;
		for (int64_t h = 0; h < S->heads; h++)
			memcpy(o + h * rows * cols, grads[i] + (h * kl + pad) * cols,
			       (size_t)((kl - pad) * cols) * sizeof(double));
	}
	for (int i = 0; i < k->num_inputs; i++)
		free(grads[i]);
	free(g);
	free_entry(k, in);
	return st;
}

/* pa_reference_call_backward: see polyattn.h. */
pa_status pa_reference_call_backward(const pa_kernel_info *k,
                                     const pa_call *c,
                                     double *const grad_inputs[])
{
	Shape S;
	pa_status st = check_call(k, c, grad_inputs, &S);
	if (st == PA_OK && !c->grad_out)
		st = PA_ERR_NULL;
	for (int i = 0; i < k->num_inputs && st == PA_OK; i++)
		if (grad_inputs[i]) {
			const int64_t rows = k->inputs[i].variable == 1 ? S.nq : S.nk;
			memset(grad_inputs[i], 0,
			       (size_t)(S.batch * S.heads * rows * k->inputs[i].cols) *
			       sizeof(double));
		}
	for (int64_t b = 0; b < S.batch && st == PA_OK; b++)
		st = backward_entry(k, c, &S, b, grad_inputs);
	return st;
}
