/*
 * pa_reference.c - the definition of poly-attention (DESIGN §1), computed
 * by brute force in double precision: for each query position ℓ1, every
 * tuple (ℓ2 … ℓt) of the other positions is scored and the softmax over
 * all of them weights the entrywise product of the value rows.  It knows
 * nothing of graphs or plans, only what K_info says, so it checks every
 * kernel polyc emits against the same formula.
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

/* query_row: out[0 .. value_dim) for query position l1.  The running
 * maximum keeps exp finite: when a larger score arrives, what was summed
 * is rescaled, as an online softmax does. */
static void query_row(const Ref *r, int64_t l1, double *num, double *out)
{
	const pa_kernel_info *k = r->k;
	int vd = k->value_dim;
	int64_t pos[REF_MAX_VARS + 1] = {0};
	double mx = -INFINITY, den = 0;
	pos[1] = l1;
	memset(num, 0, vd * sizeof *num);
	do {
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
		out[v] = num[v] / den;
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
 * can run. */
static pa_status check_args(const pa_kernel_info *k, int64_t batch, int64_t n,
                            const float *const inputs[], const double *out)
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
