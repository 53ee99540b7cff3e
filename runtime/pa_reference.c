/*
 * pa_reference.c - the definition of poly-attention (doc/design.md, "The
 * computation"), computed by brute force in double precision: for each query position ℓ1, every
 * tuple (ℓ2 … ℓt) of the other positions is scored and the softmax over
 * all of them weights the entrywise product of the value rows.  A tuple
 * that breaks one of K_info's mask constraints, or its window, is left
 * out; a row left without tuples is 0 (doc/design.md, "Masks").  It knows
 * nothing of graphs or plans, only what K_info says, so it checks every
 * kernel polyc emits against the same formula.
 *
 * The backward (doc/training.md) walks the same tuples twice per query: the
 * first pass is the forward's (the running maximum, the denominator and
 * out[ℓ1]), the second spreads dL/ds(ℓ) and p(ℓ) over the entries of the
 * factor and value rows the tuple reads.
 */
#include "polyattn.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define REF_MAX_VARS 16
#define REF_MAX_INPUTS 512

/* One call's view of the inputs of a single batch entry. */
typedef struct Ref {
	const pa_kernel_info *k;
	int64_t n;
	const float *in[REF_MAX_INPUTS]; /* this batch entry's rows */
	double *prod;            /* head_dim scratch for a monomial's product */
} Ref;

/* score: scale · Σ_m c_m · Σ_l Π_q F[m,q][pos[j(m,q)], l] at tuple pos.
 * Factor inputs come in monomial order, so one walk sees each monomial's
 * occurrences together. */
static double score(const Ref *r, const int64_t *pos)
{
	const pa_kernel_info *k = r->k;
	int hd = k->head_dim, m = -1;
	double s = 0;
	for (int i = 0; i <= k->num_inputs; i++) {
		bool factor = i < k->num_inputs && k->inputs[i].kind == PA_INPUT_FACTOR;
		if (m >= 0 && (!factor || k->inputs[i].monomial != m)) {
			double dot = 0;
			for (int l = 0; l < hd; l++)
				dot += r->prod[l];
			s += k->coefficients[m] * dot;
			m = -1;
		}
		if (!factor)
			break;
		const float *row = r->in[i] + pos[k->inputs[i].variable] * hd;
		if (m < 0) {
			m = k->inputs[i].monomial;
			for (int l = 0; l < hd; l++)
				r->prod[l] = row[l];
		} else {
			for (int l = 0; l < hd; l++)
				r->prod[l] *= row[l];
		}
	}
	return k->scale * s;
}

/* accumulate: num += w · (⊙_j V[j][pos[j]]) over value_dim columns. */
static void accumulate(const Ref *r, const int64_t *pos, double w, double *num)
{
	const pa_kernel_info *k = r->k;
	int vd = k->value_dim;
	for (int v = 0; v < vd; v++) {
		double x = w;
		for (int i = 0; i < k->num_inputs; i++)
			if (k->inputs[i].kind == PA_INPUT_VALUE)
				x *= r->in[i][pos[k->inputs[i].variable] * vd + v];
		num[v] += x;
	}
}

/* allowed: tuple pos keeps every mask constraint of k and its window. */
static bool allowed(const pa_kernel_info *k, const int64_t *pos)
{
	for (int i = 0; i < k->num_masks; i++) {
		int64_t a = pos[k->masks[i].a], b = pos[k->masks[i].b];
		if (k->masks[i].strict ? a >= b : a > b)
			return false;
		if (k->window && b - a >= k->window)
			return false;
	}
	return true;
}

/* next_tuple: advance (pos[2] … pos[t]) like an odometer; false after the
 * last tuple. */
static bool next_tuple(int64_t *pos, int t, int64_t n)
{
	for (int j = 2; j <= t; j++) {
		if (++pos[j] < n)
			return true;
		pos[j] = 0;
	}
	return false;
}

/* The softmax normalizer of one query row: Σ_ℓ exp(s(ℓ)) = den · e^mx,
 * mx the largest score, so den ≥ 1; den = 0 when the masks leave the row
 * no tuple. */
typedef struct Norm {
	double mx, den;
} Norm;

/* query_row: out[0 .. value_dim) for query position l1, and the row's
 * normalizer.  The running maximum keeps exp finite: when a larger score
 * arrives, what was summed is rescaled, as an online softmax does. */
static Norm query_row(const Ref *r, int64_t l1, double *num, double *out)
{
	const pa_kernel_info *k = r->k;
	int vd = k->value_dim;
	int64_t pos[REF_MAX_VARS + 1] = {0};
	double mx = -INFINITY, den = 0;
	pos[1] = l1;
	memset(num, 0, vd * sizeof *num);
	do {
		if (!allowed(k, pos))
			continue;
		double s = score(r, pos);
		if (s > mx) {
			double alpha = exp(mx - s);
			den *= alpha;
			for (int v = 0; v < vd; v++)
				num[v] *= alpha;
			mx = s;
		}
		double w = exp(s - mx);
		den += w;
		accumulate(r, pos, w, num);
	} while (next_tuple(pos, k->num_vars, r->n));
	for (int v = 0; v < vd; v++)
		out[v] = den > 0 ? num[v] / den : 0;
	return (Norm){mx, den};
}

/* all_finite: no NaN or infinity in the first len floats of x. */
static bool all_finite(const float *x, size_t len)
{
	for (size_t e = 0; e < len; e++)
		if (!isfinite(x[e]))
			return false;
	return true;
}

/* check_args: the status for a call with these arguments, PA_OK if it
 * can run; out is only tested for NULL (the forward's out, the
 * backward's grad_out). */
static pa_status check_args(const pa_kernel_info *k, int64_t batch, int64_t n,
                            const float *const inputs[], const void *out)
{
	if (!k || !inputs || !out)
		return PA_ERR_NULL;
	if (batch <= 0 || n <= 0 || k->num_vars < 1 ||
	    k->num_vars > REF_MAX_VARS || k->num_inputs > REF_MAX_INPUTS)
		return PA_ERR_ARGUMENT;
	for (int i = 0; i < k->num_inputs; i++) {
		if (!inputs[i])
			return PA_ERR_NULL;
		if (!all_finite(inputs[i], (size_t)(batch * n * k->inputs[i].cols)))
			return PA_ERR_NONFINITE;
	}
	return PA_OK;
}

/* pa_reference: see polyattn.h. */
pa_status pa_reference(const pa_kernel_info *k, int64_t batch, int64_t n,
                       const float *const inputs[], double *out)
{
	pa_status st = check_args(k, batch, n, inputs, out);
	if (st != PA_OK)
		return st;
	Ref r = {.k = k, .n = n};
	double *num = malloc((k->head_dim + k->value_dim) * sizeof *num);
	if (!num)
		return PA_ERR_NOMEM;
	r.prod = num + k->value_dim;
	for (int64_t b = 0; b < batch; b++) {
		for (int i = 0; i < k->num_inputs; i++)
			r.in[i] = inputs[i] + b * n * k->inputs[i].cols;
		for (int64_t l1 = 0; l1 < n; l1++)
			query_row(&r, l1, num, out + (b * n + l1) * k->value_dim);
	}
	free(num);
	return PA_OK;
}

/* ---------------------------------------------------------- backward */

/* One call's view of the gradients of a single batch entry, and the
 * backward's scratch. */
typedef struct Back {
	double *gin[REF_MAX_INPUTS]; /* this entry's rows; NULL: not wanted */
	double *excl;            /* num_inputs × head_dim: for factor input i,
	                            the product of its monomial's other
	                            occurrences' rows */
	double *vex;             /* num_inputs: for value input i, the product
	                            of the other value entries of one column */
} Back;

/* monomial_end: one past the last factor input of the monomial whose
 * first occurrence is input a. */
static int monomial_end(const pa_kernel_info *k, int a)
{
	int b = a + 1;
	while (b < k->num_inputs && k->inputs[b].kind == PA_INPUT_FACTOR &&
	       k->inputs[b].monomial == k->inputs[a].monomial)
		b++;
	return b;
}

/* exclusive_products: excl[i·hd + l] = Π_{q' ≠ i} F[q'][pos[j(q')], l]
 * over the occurrences q' of input i's monomial, by a prefix and a suffix
 * sweep; an occurrence is excluded by its input, not by its variable, so
 * x1^2*x2 keeps the other x1.  A monomial of one occurrence gets ones. */
static void exclusive_products(const Ref *r, const int64_t *pos, double *excl)
{
	const pa_kernel_info *k = r->k;
	int hd = k->head_dim;
	for (int a = 0; a < k->num_inputs && k->inputs[a].kind == PA_INPUT_FACTOR;) {
		int b = monomial_end(k, a);
		for (int l = 0; l < hd; l++)
			r->prod[l] = 1;
		for (int i = a; i < b; i++) {
			const float *row = r->in[i] + pos[k->inputs[i].variable] * hd;
			for (int l = 0; l < hd; l++)
				excl[i * hd + l] = r->prod[l], r->prod[l] *= row[l];
		}
		for (int l = 0; l < hd; l++)
			r->prod[l] = 1;
		for (int i = b - 1; i >= a; i--) {
			const float *row = r->in[i] + pos[k->inputs[i].variable] * hd;
			for (int l = 0; l < hd; l++)
				excl[i * hd + l] *= r->prod[l], r->prod[l] *= row[l];
		}
		a = b;
	}
}

/* factor_grads: dF[i][pos[j(i)], l] += ds · scale · c_m · excl[i·hd + l]
 * for every wanted factor input i of monomial m, ds = dL/ds at tuple pos. */
static void factor_grads(const Ref *r, Back *bk, const int64_t *pos, double ds)
{
	const pa_kernel_info *k = r->k;
	int hd = k->head_dim;
	exclusive_products(r, pos, bk->excl);
	for (int i = 0; i < k->num_inputs && k->inputs[i].kind == PA_INPUT_FACTOR; i++) {
		if (!bk->gin[i])
			continue;
		double w = ds * k->scale * k->coefficients[k->inputs[i].monomial];
		double *grow = bk->gin[i] + pos[k->inputs[i].variable] * hd;
		for (int l = 0; l < hd; l++)
			grow[l] += w * bk->excl[i * hd + l];
	}
}

/* value_column: u = Π_i V[i][pos[j(i)], c] over the value inputs (1 if
 * none), and vex[i] the same product without input i. */
static double value_column(const Ref *r, const int64_t *pos, int c, double *vex)
{
	const pa_kernel_info *k = r->k;
	int vd = k->value_dim;
	double run = 1;
	for (int i = 0; i < k->num_inputs; i++)
		if (k->inputs[i].kind == PA_INPUT_VALUE)
			vex[i] = run, run *= r->in[i][pos[k->inputs[i].variable] * vd + c];
	double u = run;
	run = 1;
	for (int i = k->num_inputs - 1; i >= 0; i--)
		if (k->inputs[i].kind == PA_INPUT_VALUE)
			vex[i] *= run, run *= r->in[i][pos[k->inputs[i].variable] * vd + c];
	return u;
}

/* value_grads: dV[i][pos[j(i)], c] += p · g[c] · vex[i] for every wanted
 * value input i and column c; returns ⟨g, u(pos)⟩. */
static double value_grads(const Ref *r, Back *bk, const int64_t *pos, double p,
                          const float *g)
{
	const pa_kernel_info *k = r->k;
	int vd = k->value_dim;
	double gu = 0;
	for (int c = 0; c < vd; c++) {
		gu += g[c] * value_column(r, pos, c, bk->vex);
		for (int i = 0; i < k->num_inputs; i++)
			if (k->inputs[i].kind == PA_INPUT_VALUE && bk->gin[i])
				bk->gin[i][pos[k->inputs[i].variable] * vd + c] +=
					p * g[c] * bk->vex[i];
	}
	return gu;
}

/* backward_row: adds query l1's share of every wanted gradient, g its row
 * of grad_out.  The first pass is the forward's (normalizer and out[l1]
 * into outrow); the second recomputes each score, so p = exp(s − mx)/den
 * ≤ 1 and dL/ds = p · (⟨g, u⟩ − ⟨g, out[l1]⟩). */
static void backward_row(const Ref *r, Back *bk, int64_t l1, const float *g,
                         double *num, double *outrow)
{
	const pa_kernel_info *k = r->k;
	Norm nm = query_row(r, l1, num, outrow);
	if (nm.den == 0)
		return;              /* no tuple: output 0, no gradient */
	double gout = 0;
	for (int v = 0; v < k->value_dim; v++)
		gout += g[v] * outrow[v];
	int64_t pos[REF_MAX_VARS + 1] = {0};
	pos[1] = l1;
	do {
		if (!allowed(k, pos))
			continue;
		double p = exp(score(r, pos) - nm.mx) / nm.den;
		double gu = value_grads(r, bk, pos, p, g);
		factor_grads(r, bk, pos, p * (gu - gout));
	} while (next_tuple(pos, k->num_vars, r->n));
}

/* check_backward: check_args for the backward, then a NULL grad_inputs
 * array (PA_ERR_NULL) and a non-finite grad_out (PA_ERR_NONFINITE). */
static pa_status check_backward(const pa_kernel_info *k, int64_t batch,
                                int64_t n, const float *const inputs[],
                                const float *grad_out,
                                double *const grad_inputs[])
{
	pa_status st = check_args(k, batch, n, inputs, grad_out);
	if (st != PA_OK)
		return st;
	if (!grad_inputs)
		return PA_ERR_NULL;
	if (!all_finite(grad_out, (size_t)(batch * n * k->value_dim)))
		return PA_ERR_NONFINITE;
	return PA_OK;
}

/* pa_reference_backward: see polyattn.h.  Scratch: two value_dim rows,
 * the head_dim product, excl and vex. */
pa_status pa_reference_backward(const pa_kernel_info *k, int64_t batch,
                                int64_t n, const float *const inputs[],
                                const float *grad_out,
                                double *const grad_inputs[])
{
	pa_status st = check_backward(k, batch, n, inputs, grad_out, grad_inputs);
	if (st != PA_OK)
		return st;
	int hd = k->head_dim, vd = k->value_dim, ni = k->num_inputs;
	double *num = malloc(((size_t)2 * vd + hd + (size_t)ni * (hd + 1) + 1) *
	                     sizeof *num);
	if (!num)
		return PA_ERR_NOMEM;
	Ref r = {.k = k, .n = n, .prod = num + 2 * vd};
	Back bk = {.excl = r.prod + hd, .vex = r.prod + hd + (size_t)ni * hd};
	for (int i = 0; i < ni; i++)
		if (grad_inputs[i])
			memset(grad_inputs[i], 0,
			       (size_t)(batch * n * k->inputs[i].cols) * sizeof **grad_inputs);
	for (int64_t b = 0; b < batch; b++) {
		for (int i = 0; i < ni; i++) {
			int64_t off = b * n * k->inputs[i].cols;
			r.in[i] = inputs[i] + off;
			bk.gin[i] = grad_inputs[i] ? grad_inputs[i] + off : NULL;
		}
		for (int64_t l1 = 0; l1 < n; l1++)
			backward_row(&r, &bk, l1, grad_out + (b * n + l1) * vd, num,
			             num + vd);
	}
	free(num);
	return PA_OK;
}
