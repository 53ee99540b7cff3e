/*
 * check_grad.c - the gradients of every kernel that has a backward
 * (doc/training.md), against pa_reference_backward, the brute-force
 * double-precision formulas (themselves checked against finite
 * differences in check_reference_grad.c).
 *
 * The binary links one cases object of tests/e2e/ and its table, like
 * check_e2e.c; each kernel is one test of these loop test cases:
 *   accuracy  scores of order 1, n in {1, 2, 7, 17, 64, 257} × batch {1, 3}
 *             for a tree, {1, 2, 3, 5, 9, 17, 40} for an elimination plan (up to 8
 *             variables: the reference costs n^t), as far as the
 *             reference's cost allows: train gives PA_OK, the
 *             same output as the plain forward, and writes nothing past
 *             saved_floats; backward gives PA_OK and every input's gradient
 *             within TOL of the reference (below);
 *   huge      scores of ±1e4 (factors as in check_e2e.c's "huge"), n in
 *             {2, 7, 64} for a tree, {2, 3, 5, 17} for an elimination plan: every
 *             gradient finite and within HUGE_TOL, the float32 conditioning
 *             allowance the forward uses, no looser;
 *   partial   NULL gradient entries: the others are the same as when every
 *             gradient is asked for, and nothing is written for a NULL one
 *             or past the end of another;
 *   statuses  NULL saved, grad_out or grad_inputs give PA_ERR_NULL, NaN or
 *             Inf in grad_out PA_ERR_NONFINITE, bad sizes PA_ERR_ARGUMENT,
 *             a gradient over an input, out, saved, grad_out or another
 *             gradient PA_ERR_ARGUMENT,
 *             and in each case no gradient is written;
 *   nomem     (once per binary) the first kernel's backward with too
 *             little address space returns PA_ERR_NOMEM, writes no gradient
 *             and leaks nothing.
 * Every exact kernel trains, tree or elimination (K_info.backward NULL
 * fails the test).
 *
 * Error measure: per input, max |got − want| over its gradient divided by
 * max |want| over the same gradient (the size of that gradient); a
 * gradient that is identically 0 in the reference must be 0 within 1e-6
 * of the scale of the others.  At scores of ±1e4 the weights are nearly
 * one-hot, so a gradient is a sum of terms that nearly cancel (dL/ds =
 * p·(⟨g,u⟩ − ⟨g,out⟩) vanishes where p is 1) and float holds each term
 * only to |s|·2^-24: there the size of a gradient is that of the terms it
 * sums (term_sizes, the same sums over absolute values), as check_e2e.c
 * measures a row whose values cancel.
 *
 * Tuples the kernel's mask rules out weigh 0 here as in the reference.
 *
 * Environment: E2E_KERNEL=e2e_12 runs that kernel only; E2E_VERBOSE=1
 * prints each kernel's sizes and worst errors; GRAD_BUDGET=4e6 lowers the
 * reference's budget (make e2e runs the widest ISA this CPU has with the
 * whole budget, the other code paths with a smaller one: every case up
 * to n = 17 and the one-edge kernels up to n = 257 still run).
 */
#include <check.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "polyattn.h"
#include "rnd.h"

/* The table that tests/e2e/mkcases.sh writes. */
extern const pa_kernel_info *const e2e_kernels[];
extern const int e2e_nkernels;
extern const char *const e2e_origins[];

#define TOL 1e-4             /* relative error allowed per gradient */
#define HUGE_SCORE 1e4       /* |score| each monomial reaches in "huge" */
#define HUGE_TOL (TOL + 4 * HUGE_SCORE * 0x1p-24)
#define REF_BUDGET 6e7       /* reference operations allowed per call,
                                unless $GRAD_BUDGET says otherwise */
#define SMALL_N 7            /* n always run, whatever the reference costs */
#define GUARD 64             /* guard floats after every output buffer */
#define SENTINEL 12345.0f

#include "e2e_inputs.h"

static const int64_t acc_sizes[] = {1, 2, 7, 17, 64, 257};
static const int64_t acc_batches[] = {1, 3};
static const int64_t huge_sizes[] = {2, 7, 64};
/* Elimination kernels (up to 8 variables: the reference costs n^t) */
static const int64_t elim_sizes[] = {1, 2, 3, 5, 9, 17, 40};
static const int64_t elim_huge_sizes[] = {2, 3, 5, 17};
#define ELIM_SMALL_N 3       /* n always run for them */

#define COUNT(a) ((int)(sizeof(a) / sizeof(a)[0]))

/* size_ok: the backward reference costs about twice the forward's. */
static bool size_ok(const pa_kernel_info *k, int64_t n, int64_t batch)
{
	const char *b = getenv("GRAD_BUDGET");
	double budget = b && *b ? atof(b) : REF_BUDGET;
	return n <= (is_tree(k) ? SMALL_N : ELIM_SMALL_N) ||
	       2 * ref_cost(k, n, batch) <= budget;
}

/* what: "e2e_12 (polys.txt:21) 'x1*x2' head_dim 3 value_dim 5 n 7
 * batch 3" for failure messages. */
static const char *what(char *buf, size_t len, int idx, int64_t n,
                        int64_t batch)
{
	const pa_kernel_info *k = e2e_kernels[idx];
	snprintf(buf, len, "%s (%s) '%s' head_dim %d value_dim %d n %lld batch %lld",
	         k->name, e2e_origins[idx], k->polynomial, k->head_dim,
	         k->value_dim, (long long)n, (long long)batch);
	return buf;
}

/* guarded: len floats followed by GUARD sentinels, all set to SENTINEL. */
static float *guarded(size_t len)
{
	float *p = malloc((len + GUARD) * sizeof *p);
	ck_assert(p != NULL);
	for (size_t e = 0; e < len + GUARD; e++)
		p[e] = SENTINEL;
	return p;
}

/* untouched: p[from .. to) all still SENTINEL. */
static bool untouched(const float *p, size_t from, size_t to)
{
	for (size_t e = from; e < to; e++)
		if (p[e] != SENTINEL)
			return false;
	return true;
}

/* One training step's buffers: out, saved, grad_out and the gradients. */
typedef struct Step {
	const Inputs *in;
	size_t out_len, saved_len;
	float *out, *saved, *grad_out;
	float *grad[256];
	double *want[256];
} Step;

/* step_alloc: buffers for in's kernel, grad_out uniform in [-1, 1). */
static void step_alloc(Step *S, const Inputs *in, uint64_t *s)
{
	const pa_kernel_info *k = in->k;
	S->in = in;
	S->out_len = (size_t)(in->batch * in->n * k->value_dim);
	int64_t sf = k->saved_floats(in->batch, in->n);
	ck_assert_msg(sf > 0, "%s: saved_floats %lld", k->name, (long long)sf);
	S->saved_len = (size_t)sf;
	S->out = guarded(S->out_len);
	S->saved = guarded(S->saved_len);
	S->grad_out = guarded(S->out_len);
	for (size_t e = 0; e < S->out_len; e++)
		S->grad_out[e] = (float)rnd_unit(s);
	for (int i = 0; i < k->num_inputs; i++) {
		S->grad[i] = guarded(inputs_len(in, i));
		S->want[i] = malloc(inputs_len(in, i) * sizeof(double));
		ck_assert(S->want[i] != NULL);
	}
}

/* step_free: release what step_alloc took. */
static void step_free(Step *S)
{
	free(S->out), free(S->saved), free(S->grad_out);
	for (int i = 0; i < S->in->k->num_inputs; i++)
		free(S->grad[i]), free(S->want[i]);
}

/* train_step: train, then check it against the plain forward and its
 * guards; then backward. */
static void train_step(Step *S, const char *ctx)
{
	const Inputs *in = S->in;
	const pa_kernel_info *k = in->k;
	const float *ptrs[256];
	inputs_view(in, 0, ptrs);
	ck_assert_int_eq(k->train(in->batch, in->n, ptrs, S->out, S->saved), PA_OK);
	ck_assert_msg(untouched(S->out, S->out_len, S->out_len + GUARD) &&
	              untouched(S->saved, S->saved_len, S->saved_len + GUARD),
	              "%s: train wrote past out or saved", ctx);
	float *plain = malloc(S->out_len * sizeof *plain);
	ck_assert(plain != NULL);
	ck_assert_int_eq(k->run(in->batch, in->n, ptrs, plain), PA_OK);
	ck_assert_msg(memcmp(plain, S->out, S->out_len * sizeof *plain) == 0,
	              "%s: train's output differs from the forward's", ctx);
	free(plain);
	pa_status st = k->backward(in->batch, in->n, ptrs, S->out, S->saved,
	                           S->grad_out, S->grad);
	ck_assert_msg(st == PA_OK, "%s: backward: %s", ctx, pa_strerror(st));
}

/* reference_grads: pa_reference_backward on every batch entry, the
 * entries in parallel (the reference is single-threaded and pure). */
static void reference_grads(Step *S)
{
	const Inputs *in = S->in;
	const pa_kernel_info *k = in->k;
	int bad = PA_OK;
	#pragma omp parallel for schedule(dynamic, 1) reduction(min : bad)
	for (int64_t b = 0; b < in->batch; b++) {
		const float *ptrs[256];
		double *want[256];
		inputs_view(in, b, ptrs);
		for (int i = 0; i < k->num_inputs; i++)
			want[i] = S->want[i] + b * in->n * k->inputs[i].cols;
		int st = pa_reference_backward(k, 1, in->n, ptrs,
		                               S->grad_out + b * in->n * k->value_dim,
		                               want);
		bad = st < bad ? st : bad;
	}
	ck_assert_int_eq(bad, PA_OK);
}

/* tuple_score: the score of tuple pos, in double (doc/design.md, "The
 * computation"). */
static double tuple_score(const pa_kernel_info *k, const float *const in[],
                          const int64_t *pos)
{
	double s = 0;
	for (int m = 0; m < k->num_monomials; m++)
		for (int l = 0; l < k->head_dim; l++) {
			double p = 1;
			for (int i = 0; i < k->num_inputs; i++)
				if (k->inputs[i].kind == PA_INPUT_FACTOR && k->inputs[i].monomial == m)
					p *= in[i][pos[k->inputs[i].variable] * k->head_dim + l];
			s += k->coefficients[m] * p;
		}
	return k->scale * s;
}

/* next_pos: the next tuple (pos[2] … pos[t]); false after the last. */
static bool next_pos(int64_t *pos, int t, int64_t n)
{
	for (int j = 2; j <= t; j++) {
		if (++pos[j] < n)
			return true;
		pos[j] = 0;
	}
	return false;
}

/* term_one: what tuple pos with weight p adds to the term sizes: the
 * gradient formulas with every factor replaced by its absolute value. */
static void term_one(const pa_kernel_info *k, const float *const in[],
                     const int64_t *pos, double p, const float *g,
                     const double *out, double *const size[])
{
	const int vd = k->value_dim;
	double gu = 0, go = 0;
	for (int c = 0; c < vd; c++) {
		double u = 1;
		for (int i = 0; i < k->num_inputs; i++)
			if (k->inputs[i].kind == PA_INPUT_VALUE)
				u *= in[i][pos[k->inputs[i].variable] * vd + c];
		gu += g[c] * u, go += g[c] * out[c];
	}
	const double w = p * (fabs(gu) + fabs(go));
	for (int i = 0; i < k->num_inputs; i++) {
		const pa_input_desc *d = &k->inputs[i];
		const int cols = d->cols;
		for (int l = 0; l < cols; l++) {
			double t = d->kind == PA_INPUT_FACTOR ?
				w * fabs(k->scale * k->coefficients[d->monomial]) : p * fabs(g[l]);
			for (int o = 0; o < k->num_inputs; o++)
				if (o != i && k->inputs[o].kind == d->kind &&
				    (d->kind == PA_INPUT_VALUE || k->inputs[o].monomial == d->monomial))
					t *= fabs(in[o][pos[k->inputs[o].variable] * cols + l]);
			size[i][pos[d->variable] * cols + l] += t;
		}
	}
}

/* term_sizes: size[i] = the sums of absolute terms that make input i's
 * gradient, for one batch entry (size[i] zeroed by the caller). */
static void term_sizes(const pa_kernel_info *k, int64_t n, const float *const in[],
                       const float *grad_out, double *const size[])
{
	const int vd = k->value_dim;
	double out[vd];
	for (int64_t l1 = 0; l1 < n; l1++) {
		int64_t pos[17] = {0};
		pos[1] = l1;
		double mx = -INFINITY, den = 0;
		do
			if (tuple_allowed(k, pos))
				mx = fmax(mx, tuple_score(k, in, pos));
		while (next_pos(pos, k->num_vars, n));
		if (mx == -INFINITY)
			continue;        /* the mask leaves the row no tuple */
		for (int c = 0; c < vd; c++)
			out[c] = 0;
		do {
			if (!tuple_allowed(k, pos))
				continue;
			double p = exp(tuple_score(k, in, pos) - mx);
			den += p;
			for (int c = 0; c < vd; c++) {
				double u = p;
				for (int i = 0; i < k->num_inputs; i++)
					if (k->inputs[i].kind == PA_INPUT_VALUE)
						u *= in[i][pos[k->inputs[i].variable] * vd + c];
				out[c] += u;
			}
		} while (next_pos(pos, k->num_vars, n));
		for (int c = 0; c < vd; c++)
			out[c] /= den;
		do
			if (tuple_allowed(k, pos))
				term_one(k, in, pos, exp(tuple_score(k, in, pos) - mx) / den,
				         grad_out + l1 * vd, out, size);
		while (next_pos(pos, k->num_vars, n));
	}
}

/* grad_error: input i's error as described at the top; its size in
 * *size.  Non-finite entries give +inf. */
static double grad_error(const Step *S, int i, double *size)
{
	size_t len = inputs_len(S->in, i);
	double err = 0, big = 0;
	for (size_t e = 0; e < len; e++) {
		if (!isfinite(S->grad[i][e]))
			return INFINITY;
		err = fmax(err, fabs(S->grad[i][e] - S->want[i][e]));
		big = fmax(big, fabs(S->want[i][e]));
	}
	*size = big;
	return err;
}

/* terms_max: big[i] = max over input i's term sizes, every batch entry. */
static void terms_max(const Step *S, double *big)
{
	const Inputs *in = S->in;
	const pa_kernel_info *k = in->k;
	double *size[256];
	for (int a = 0; a < k->num_inputs; a++) {
		size[a] = calloc(inputs_len(in, a), sizeof(double));
		ck_assert(size[a] != NULL);
		big[a] = 0;
	}
	for (int64_t b = 0; b < in->batch; b++) {
		const float *ptrs[256];
		double *at[256];
		inputs_view(in, b, ptrs);
		for (int a = 0; a < k->num_inputs; a++)
			at[a] = size[a] + b * in->n * k->inputs[a].cols;
		term_sizes(k, in->n, ptrs, S->grad_out + b * in->n * k->value_dim, at);
	}
	for (int a = 0; a < k->num_inputs; a++) {
		for (size_t e = 0; e < inputs_len(in, a); e++)
			big[a] = fmax(big[a], size[a][e]);
		free(size[a]);
	}
}

/* check_grads: every gradient against the reference, within tol of its
 * size; a gradient that is 0 in the reference within 1e-6 of the largest.
 * One that fails is measured again against the size of its terms (see
 * the top), at once with terms, and fails only if it fails both. */
static void check_grads(const Step *S, double tol, bool terms, const char *ctx)
{
	const pa_kernel_info *k = S->in->k;
	double sizes[256], errs[256], big[256], rel[256], largest = 0, worst = 0;
	bool have_terms = false;
	for (int i = 0; i < k->num_inputs; i++) {
		errs[i] = grad_error(S, i, &sizes[i]);
		largest = fmax(largest, sizes[i]);
		ck_assert_msg(untouched(S->grad[i], inputs_len(S->in, i),
		                        inputs_len(S->in, i) + GUARD),
		              "%s: backward wrote past gradient %d", ctx, i);
	}
	for (int i = 0; i < k->num_inputs; i++) {
		double scale = sizes[i] > 1e-6 * largest ? sizes[i] : largest;
		rel[i] = scale > 0 ? errs[i] / scale : errs[i];
		if ((rel[i] > tol || terms) && !have_terms) {
			terms_max(S, big);
			have_terms = true;
		}
		if (have_terms && big[i] > 0 && errs[i] / big[i] < rel[i])
			rel[i] = errs[i] / big[i];
		worst = fmax(worst, rel[i]);
		ck_assert_msg(rel[i] <= tol, "%s: gradient of %s off by %.3g relative "
		              "(error %.3g, size %.3g, terms %.3g)", ctx, k->inputs[i].name,
		              rel[i], errs[i], sizes[i], have_terms ? big[i] : 0.0);
	}
	if (getenv("E2E_VERBOSE"))
		printf("%s: worst %.3g\n", ctx, worst);
}

/* has_backward: the kernel trains; every exact one must. */
static bool has_backward(int idx)
{
	const pa_kernel_info *k = e2e_kernels[idx];
	if (skip_kernel(k))
		return false;
	if (!k->backward) {
		ck_assert_msg(strncmp(k->algorithm, "exact", 5) != 0,
		              "%s: an exact kernel without a backward", k->name);
		ck_assert(!k->train && !k->saved_floats);
		return false;
	}
	ck_assert(k->train && k->saved_floats);
	return true;
}

/* ------------------------------------------------------------ accuracy */

/* one_case: kernel idx on (n, batch) with scores of order 1, or of ±1e4
 * when huge: train, backward, and every gradient against the reference. */
static void one_case(int idx, int64_t n, int64_t batch, bool huge)
{
	const pa_kernel_info *k = e2e_kernels[idx];
	char ctx[512];
	what(ctx, sizeof ctx, idx, n, batch);
	if (huge)
		strncat(ctx, " (huge)", sizeof ctx - strlen(ctx) - 1);
	uint64_t s = rnd_seed(huge ? 12 : 11, idx, n, batch);
	Inputs in;
	inputs_alloc(&in, k, n, batch);
	if (huge)
		fill_factors_huge(&in, &s);
	else
		fill_factors_unit(&in, &s);
	fill_values(&in, &s);
	Step S;
	step_alloc(&S, &in, &s);
	train_step(&S, ctx);
	reference_grads(&S);
	check_grads(&S, huge ? HUGE_TOL : TOL, huge, ctx);
	step_free(&S);
	inputs_free(&in);
}

START_TEST(accuracy)
{
	if (!has_backward(_i))
		return;
	const bool tree = is_tree(e2e_kernels[_i]);
	const int64_t *sizes = tree ? acc_sizes : elim_sizes;
	const int count = tree ? COUNT(acc_sizes) : COUNT(elim_sizes);
	for (int a = 0; a < count; a++)
		for (int c = 0; c < COUNT(acc_batches); c++)
			if (size_ok(e2e_kernels[_i], sizes[a], acc_batches[c]))
				one_case(_i, sizes[a], acc_batches[c], false);
}
END_TEST

/* ---------------------------------------------------------------- huge */

START_TEST(huge)
{
	if (!has_backward(_i))
		return;
	const bool tree = is_tree(e2e_kernels[_i]);
	const int64_t *sizes = tree ? huge_sizes : elim_huge_sizes;
	const int count = tree ? COUNT(huge_sizes) : COUNT(elim_huge_sizes);
	for (int a = 0; a < count; a++)
		if (size_ok(e2e_kernels[_i], sizes[a], 1))
			one_case(_i, sizes[a], 1, true);
}
END_TEST

/* ------------------------------------------------------------- partial */

START_TEST(partial)
{
	if (!has_backward(_i))
		return;
	const pa_kernel_info *k = e2e_kernels[_i];
	const int64_t n = 17, batch = 2;
	char ctx[512];
	what(ctx, sizeof ctx, _i, n, batch);
	uint64_t s = rnd_seed(13, _i, n, batch);
	Inputs in;
	inputs_alloc(&in, k, n, batch);
	fill_factors_unit(&in, &s);
	fill_values(&in, &s);
	Step S;
	step_alloc(&S, &in, &s);
	const float *ptrs[256];
	inputs_view(&in, 0, ptrs);
	train_step(&S, ctx);
	float *all[256];
	for (int i = 0; i < k->num_inputs; i++) {
		all[i] = malloc(inputs_len(&in, i) * sizeof(float));
		ck_assert(all[i] != NULL);
		memcpy(all[i], S.grad[i], inputs_len(&in, i) * sizeof(float));
	}
	/* every other entry NULL, then the complement: the same gradients */
	for (int parity = 0; parity < 2; parity++) {
		float *some[256];
		for (int i = 0; i < k->num_inputs; i++) {
			some[i] = i % 2 == parity ? S.grad[i] : NULL;
			for (size_t e = 0; e < inputs_len(&in, i) + GUARD; e++)
				S.grad[i][e] = SENTINEL;
		}
		ck_assert_int_eq(k->backward(batch, n, ptrs, S.out, S.saved, S.grad_out, some),
		                 PA_OK);
		for (int i = 0; i < k->num_inputs; i++) {
			if (some[i])
				ck_assert_msg(memcmp(all[i], S.grad[i], inputs_len(&in, i) * sizeof(float)) == 0,
				              "%s: gradient of %s changes when others are NULL", ctx,
				              k->inputs[i].name);
			ck_assert_msg(untouched(S.grad[i], some[i] ? inputs_len(&in, i) : 0,
			                        inputs_len(&in, i) + GUARD),
			              "%s: gradient %d written where it was not asked", ctx, i);
		}
	}
	for (int i = 0; i < k->num_inputs; i++)
		free(all[i]);
	step_free(&S);
	inputs_free(&in);
}
END_TEST

/* ------------------------------------------------------------ statuses */

/* refused: backward with these arguments returns want and writes no
 * gradient. */
static void refused(const Step *S, int64_t batch, int64_t n,
                    const float *const ptrs[], const float *saved,
                    const float *grad_out, float *const *grad, pa_status want,
                    const char *ctx, const char *why)
{
	const pa_kernel_info *k = S->in->k;
	for (int i = 0; i < k->num_inputs; i++)
		for (size_t e = 0; e < inputs_len(S->in, i); e++)
			S->grad[i][e] = SENTINEL;
	pa_status st = k->backward(batch, n, ptrs, S->out, saved, grad_out, grad);
	ck_assert_msg(st == want, "%s: %s gave '%s', not '%s'", ctx, why,
	              pa_strerror(st), pa_strerror(want));
	for (int i = 0; i < k->num_inputs; i++)
		ck_assert_msg(untouched(S->grad[i], 0, inputs_len(S->in, i)),
		              "%s: %s wrote gradient %d", ctx, why, i);
}

START_TEST(statuses)
{
	if (!has_backward(_i))
		return;
	const pa_kernel_info *k = e2e_kernels[_i];
	const int64_t n = 5, batch = 2;
	char ctx[512];
	what(ctx, sizeof ctx, _i, n, batch);
	uint64_t s = rnd_seed(14, _i, n, batch);
	Inputs in;
	inputs_alloc(&in, k, n, batch);
	fill_factors_unit(&in, &s);
	fill_values(&in, &s);
	Step S;
	step_alloc(&S, &in, &s);
	const float *ptrs[256];
	inputs_view(&in, 0, ptrs);
	ck_assert_int_eq(k->train(batch, n, ptrs, S.out, NULL), PA_ERR_NULL);
	ck_assert_int_eq(k->train(batch, n, ptrs, S.out, S.saved), PA_OK);
	ck_assert_int_lt(k->saved_floats(INT64_MAX / 2, INT64_MAX / 2), 0);
	refused(&S, batch, n, ptrs, NULL, S.grad_out, S.grad, PA_ERR_NULL, ctx, "saved NULL");
	refused(&S, batch, n, ptrs, S.saved, NULL, S.grad, PA_ERR_NULL, ctx, "grad_out NULL");
	refused(&S, batch, n, ptrs, S.saved, S.grad_out, NULL, PA_ERR_NULL, ctx,
	        "grad_inputs NULL");
	refused(&S, batch, 0, ptrs, S.saved, S.grad_out, S.grad, PA_ERR_ARGUMENT, ctx, "n = 0");
	refused(&S, -1, n, ptrs, S.saved, S.grad_out, S.grad, PA_ERR_ARGUMENT, ctx,
	        "batch = -1");
	const float bad[] = {NAN, INFINITY, -INFINITY};
	for (int b = 0; b < 3; b++) {
		size_t at = (size_t)(b * 7) % S.out_len;
		float keep = S.grad_out[at];
		S.grad_out[at] = bad[b];
		refused(&S, batch, n, ptrs, S.saved, S.grad_out, S.grad, PA_ERR_NONFINITE,
		        ctx, "a non-finite grad_out");
		S.grad_out[at] = keep;
	}
	/* a gradient over what the backward reads, or over another gradient:
	 * refused, and neither it nor what it points into written */
	float *alias[256];
	for (int w = 0; w < 5; w++) {
		for (int i = 0; i < k->num_inputs; i++)
			alias[i] = S.grad[i];
		static const char *const over[] = {
			"gradient 0 over its input", "gradient 0 over out",
			"gradient 0 over the last float of saved", "gradient 0 over grad_out",
			"gradient 0 over gradient 1",
		};
		float *target = w == 0 ? in.buf[0] : w == 1 ? S.out
		              : w == 2 ? S.saved + S.saved_len - 1 : w == 3 ? S.grad_out : S.grad[1];
		size_t len = w == 0 ? inputs_len(&in, 0) : w == 2 ? 1 : w == 4 ? inputs_len(&in, 1)
		           : S.out_len;
		float *copy = malloc(len * sizeof *copy);
		ck_assert_ptr_nonnull(copy);
		memcpy(copy, target, len * sizeof *copy);
		alias[0] = target;
		refused(&S, batch, n, ptrs, S.saved, S.grad_out, alias, PA_ERR_ARGUMENT, ctx, over[w]);
		if (w != 4)          /* refused checks the gradients themselves */
			ck_assert_msg(memcmp(copy, target, len * sizeof *copy) == 0,
			              "%s: %s wrote into it", ctx, over[w]);
		free(copy);
	}
	float keep = in.buf[0][3 % inputs_len(&in, 0)];
	in.buf[0][3 % inputs_len(&in, 0)] = NAN;
	refused(&S, batch, n, ptrs, S.saved, S.grad_out, S.grad, PA_ERR_NONFINITE, ctx,
	        "a NaN input");
	in.buf[0][3 % inputs_len(&in, 0)] = keep;
	step_free(&S);
	inputs_free(&in);
}
END_TEST

/* --------------------------------------------------------------- nomem */

/* nomem_child: in a child process whose address space may grow by
 * NOMEM_SLACK bytes at most, k's backward on n rows (a larger workspace)
 * must return PA_ERR_NOMEM and write no gradient; then, the limit lifted,
 * everything is freed for LeakSanitizer.  saved is zeros: the backward
 * takes its workspace before it reads saved.  Returns the child's exit
 * status, 0 if so. */
#define NOMEM_SLACK ((size_t)32 << 20)
static int nomem_child(const pa_kernel_info *k, int64_t n)
{
	Inputs in;
	uint64_t s = rnd_seed(15, 0, n, 1);
	inputs_alloc(&in, k, n, 1);
	fill_factors_unit(&in, &s);
	fill_values(&in, &s);
	const float *ptrs[256];
	float *grad[256];
	inputs_view(&in, 0, ptrs);
	size_t len = (size_t)n * k->value_dim;
	float *out = calloc(len, sizeof *out), *go = calloc(len, sizeof *go);
	float *saved = calloc((size_t)k->saved_floats(1, n), sizeof *saved);
	if (!out || !go || !saved)
		return 3;
	for (int i = 0; i < k->num_inputs; i++)
		if (!(grad[i] = guarded(inputs_len(&in, i))))
			return 3;
	struct rlimit rl, old;
	if (getrlimit(RLIMIT_AS, &old) != 0)
		return 4;
	rl = old;
	rl.rlim_cur = vm_bytes() + NOMEM_SLACK;
	if (setrlimit(RLIMIT_AS, &rl) != 0)
		return 4;
	pa_status st = k->backward(1, n, ptrs, out, saved, go, grad);
	if (setrlimit(RLIMIT_AS, &old) != 0)
		return 4;
	int bad = 0;
	for (int i = 0; i < k->num_inputs; i++) {
		bad |= !untouched(grad[i], 0, inputs_len(&in, i) + GUARD);
		free(grad[i]);
	}
	free(out), free(go), free(saved);
	inputs_free(&in);
	return bad ? 2 : st == PA_ERR_NOMEM ? 0 : 1;
}

/* nomem: the first kernel with a backward, in a child process under
 * RLIMIT_AS, on rows enough that every message's queries and keys pass
 * 2·NOMEM_SLACK. */
START_TEST(nomem)
{
	const pa_kernel_info *k = NULL;
	for (int i = 0; i < e2e_nkernels && !k; i++)
		if (e2e_kernels[i]->backward && !skip_kernel(e2e_kernels[i]))
			k = e2e_kernels[i];
	if (!k)
		return;
	const int64_t n = (int64_t)(2 * NOMEM_SLACK / ((2 * (size_t)k->head_dim + 2) * sizeof(float)) + 1);
	fflush(NULL);
	pid_t pid = fork();
	ck_assert(pid >= 0);
	if (pid == 0)
		exit(nomem_child(k, n));
	int st;
	ck_assert(waitpid(pid, &st, 0) == pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	              "%s: backward out of address space: %s", k->name,
	              !WIFEXITED(st) ? "the child crashed" :
	              WEXITSTATUS(st) == 1 ? "not PA_ERR_NOMEM" :
	              WEXITSTATUS(st) == 2 ? "a gradient was written" :
	              WEXITSTATUS(st) == 4 ? "setrlimit failed" :
	              "setup failed or a leak");
}
END_TEST

/* ---------------------------------------------------------------- main */

/* grad_suite: the loop test cases over every kernel of the table. */
static Suite *grad_suite(void)
{
	Suite *s = suite_create("grad");
	const struct { const char *name; const TTest *test; } cases[] = {
		{"accuracy", accuracy}, {"huge", huge}, {"partial", partial},
		{"statuses", statuses},
	};
	for (int c = 0; c < COUNT(cases); c++) {
		TCase *tc = tcase_create(cases[c].name);
		tcase_set_timeout(tc, 300);
		tcase_add_loop_test(tc, cases[c].test, 0, e2e_nkernels);
		suite_add_tcase(s, tc);
	}
	TCase *tc = tcase_create("nomem");
	tcase_set_timeout(tc, 120);      /* a fork and a large setup: slow when the cores are shared */
	tcase_add_test(tc, nomem);
	suite_add_tcase(s, tc);
	return s;
}

/* main: run the suite; exit status 0 when every kernel passes. */
int main(void)
{
	SRunner *sr = srunner_create(grad_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
