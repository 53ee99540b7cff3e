/*
 * check_qk.c - the dense entry points with fewer queries than keys
 * (polyattn.h, pa_kernel_info.run_qk, .saved_floats_qk, .train_qk,
 * .backward_qk) of every kernel of tests/e2e/polys_qk.txt (tree kernels,
 * with and without masks), called directly, not through K_call.  Each
 * kernel is one test of these loop test cases:
 *   forward   every shape of `shapes` below (one query against many keys,
 *             odd sizes, nq = nk, query blocks and key panels cut
 *             unevenly, scores of order 1 and larger; batch 1 with one
 *             query task and several key panels, which with two threads
 *             or more split their key panels across threads and merge
 *             the ranges, see pa_split_parts): run_qk's out
 *             within TOL of pa_reference_call of the same call (query row
 *             i at position i + nk − nq), nothing written past out;
 *   train     the same shapes: train_qk's out is run_qk's bit for bit and
 *             stays inside saved_floats_qk; backward_qk's gradients (one
 *             left NULL, so not written) within TOL of
 *             pa_reference_call_backward (and 1e-5 of the largest
 *             gradient + 1e-6: a mask of one key per query leaves the
 *             factors' gradients 0 up to rounding), nothing written past
 *             them;
 *   same      f_qk(b, n, n, …) is f(b, n, …) bit for bit for run, train
 *             (out and saved), saved_floats and backward, at several n;
 *   statuses  nq < 1, nk < nq, batch < 1, sizes that overflow, NULL
 *             pointers, NaN in a query or a key row or in grad_out give
 *             their status and write nothing.
 * The suite fails for a tree kernel without run_qk (the plan must run
 * fewer queries natively).  Environment: E2E_KERNEL=e2e_3 runs that
 * kernel only.
 */
#include <check.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "polyattn.h"
#include "rnd.h"

extern const pa_kernel_info *const e2e_kernels[];
extern const int e2e_nkernels;
extern const char *const e2e_origins[];

#define TOL 2e-4             /* error allowed, relative to the largest entry */
#define GUARD 64             /* guard floats past every written tensor */
#define SENTINEL 12345.0f
#define MAXIN 64
#define BUDGET 1.5e6           /* batch · nk^t of the largest reference run */
#define COUNT(a) ((int)(sizeof(a) / sizeof(a)[0]))

/* One dense call: batch × nq query rows against nk key rows; factor
 * entries amp times those giving scores of order 1. */
typedef struct Shape {
	int64_t batch, nq, nk;
	double amp;
} Shape;

static const Shape shapes[] = {
	{1, 1, 1, 1}, {2, 1, 37, 1}, {1, 1, 130, 1}, {3, 5, 5, 1},
	{2, 3, 70, 1}, {1, 64, 97, 1}, {2, 17, 33, 1}, {1, 65, 66, 1},
	{2, 1, 9, 3}, {1, 13, 40, 3}, {1, 7, 200, 1}, {2, 2, 3, 1},
	{1, 1, 100, 3}, {1, 33, 110, 1}, {1, 1, 96, 1}, {1, 64, 128, 3},
};

/* skip: E2E_KERNEL names another kernel. */
static bool skip(const pa_kernel_info *k)
{
	const char *only = getenv("E2E_KERNEL");
	return only && *only && strcmp(only, k->name) != 0;
}

/* affordable: the reference of shape S on k costs at most BUDGET. */
static bool affordable(const pa_kernel_info *k, const Shape *S)
{
	return S->batch * pow((double)S->nk, k->num_vars) <= BUDGET;
}

/* rows_of: nq for x1's inputs, nk for the others. */
static int64_t rows_of(const pa_kernel_info *k, int64_t nq, int64_t nk, int i)
{
	return k->inputs[i].variable == 1 ? nq : nk;
}

/* factor_amp: the half-width of factor entries of monomial m giving
 * scores of order 1. */
static double factor_amp(const pa_kernel_info *k, int m)
{
	int deg = 0;
	for (int i = 0; i < k->num_inputs; i++)
		deg += k->inputs[i].kind == PA_INPUT_FACTOR && k->inputs[i].monomial == m;
	double w = fabs(k->scale * k->coefficients[m]);
	return sqrt(3.0) * pow(1.0 / (w * sqrt((double)k->head_dim)), 1.0 / deg);
}

/* A call's tensors, dense, each with GUARD sentinels past its end. */
typedef struct Bufs {
	const pa_kernel_info *k;
	Shape S;
	float *in[MAXIN], *grad[MAXIN], *gradp[MAXIN];
	size_t in_len[MAXIN];
	float *out, *gout, *saved;
	size_t out_len;
	int64_t saved_len;
} Bufs;

/* guarded: len floats and GUARD sentinels. */
static float *guarded(size_t len)
{
	float *p = malloc((len + GUARD) * sizeof(float));
	ck_assert(p != NULL);
	for (size_t e = 0; e < len + GUARD; e++)
		p[e] = SENTINEL;
	return p;
}

/* guard_kept: the GUARD floats past p[len] are sentinels. */
static bool guard_kept(const float *p, size_t len)
{
	for (int e = 0; e < GUARD; e++)
		if (p[len + e] != SENTINEL)
			return false;
	return true;
}

/* bufs_make: random inputs of shape S, out and grad_out. */
static void bufs_make(Bufs *B, const pa_kernel_info *k, const Shape *S, uint64_t seed)
{
	ck_assert(k->num_inputs <= MAXIN);
	memset(B, 0, sizeof *B);
	B->k = k, B->S = *S;
	uint64_t s = seed;
	for (int i = 0; i < k->num_inputs; i++) {
		const pa_input_desc *d = &k->inputs[i];
		B->in_len[i] = (size_t)(S->batch * rows_of(k, S->nq, S->nk, i) * d->cols);
		B->in[i] = guarded(B->in_len[i]);
		const double amp = d->kind == PA_INPUT_FACTOR
		                   ? S->amp * factor_amp(k, d->monomial) : 1.0;
		for (size_t e = 0; e < B->in_len[i]; e++)
			B->in[i][e] = (float)(amp * rnd_unit(&s));
		B->grad[i] = guarded(B->in_len[i]);
	}
	B->out_len = (size_t)(S->batch * S->nq * k->value_dim);
	B->out = guarded(B->out_len);
	B->gout = guarded(B->out_len);
	for (size_t e = 0; e < B->out_len; e++)
		B->gout[e] = (float)rnd_unit(&s);
}

/* bufs_free: release every tensor. */
static void bufs_free(Bufs *B)
{
	for (int i = 0; i < B->k->num_inputs; i++)
		free(B->in[i]), free(B->grad[i]);
	free(B->out), free(B->gout), free(B->saved);
}

/* call_of: the pa_call of B's dense problem (full lengths), for the
 * references. */
static pa_call call_of(Bufs *B)
{
	return (pa_call){.mode = PA_FORWARD, .batch = B->S.batch, .heads = 1,
	                 .nq = B->S.nq, .nk = B->S.nk,
	                 .inputs = (const float *const *)B->in, .out = B->out,
	                 .grad_out = B->gout};
}

/* what: the kernel and shape, for messages. */
static const char *what(char *buf, size_t len, int idx, const Shape *S)
{
	const pa_kernel_info *k = e2e_kernels[idx];
	snprintf(buf, len, "%s (%s) '%s' hd %d vd %d, batch %lld nq %lld nk %lld amp %g",
	         k->name, e2e_origins[idx], k->polynomial, k->head_dim, k->value_dim,
	         (long long)S->batch, (long long)S->nq, (long long)S->nk, S->amp);
	return buf;
}

/* compare: max |got − want| within TOL · max |want| (+ abs). */
static void compare(const float *got, const double *want, size_t len,
                    double abs_tol, const char *ctx, const char *name)
{
	double err = 0, big = 0;
	for (size_t e = 0; e < len; e++) {
		err = fmax(err, isfinite(got[e]) ? fabs(got[e] - want[e]) : INFINITY);
		big = fmax(big, fabs(want[e]));
	}
	ck_assert_msg(err <= TOL * big + abs_tol, "%s: %s: error %g, size %g", ctx,
	              name, err, big);
}

/* has_qk: a tree kernel names all four _qk entry points. */
static void has_qk(const pa_kernel_info *k)
{
	ck_assert_msg(strcmp(k->graph_class, "tree") != 0 ||
	              (k->run_qk && k->saved_floats_qk && k->train_qk && k->backward_qk),
	              "%s: a tree kernel without its _qk entry points", k->name);
}

START_TEST(forward)
{
	const pa_kernel_info *k = e2e_kernels[_i];
	if (skip(k))
		return;
	has_qk(k);
	if (!k->run_qk)
		return;
	for (int si = 0; si < COUNT(shapes); si++) {
		const Shape *S = &shapes[si];
		if (!affordable(k, S))
			continue;
		char ctx[512];
		what(ctx, sizeof ctx, _i, S);
		Bufs B;
		bufs_make(&B, k, S, (uint64_t)_i << 32 | (uint64_t)si);
		pa_status st = k->run_qk(S->batch, S->nq, S->nk, (const float *const *)B.in, B.out);
		ck_assert_msg(st == PA_OK, "%s: run_qk: %s", ctx, pa_strerror(st));
		ck_assert_msg(guard_kept(B.out, B.out_len), "%s: run_qk wrote past out", ctx);
		double *want = malloc(B.out_len * sizeof *want);
		ck_assert(want != NULL);
		pa_call c = call_of(&B);
		st = pa_reference_call(k, &c, want);
		ck_assert_msg(st == PA_OK, "%s: pa_reference_call: %s", ctx, pa_strerror(st));
		compare(B.out, want, B.out_len, 0, ctx, "out");
		free(want);
		bufs_free(&B);
	}
}
END_TEST

START_TEST(train)
{
	const pa_kernel_info *k = e2e_kernels[_i];
	if (skip(k) || !k->train_qk)
		return;
	for (int si = 0; si < COUNT(shapes); si++) {
		const Shape *S = &shapes[si];
		if (!affordable(k, S))
			continue;
		char ctx[512];
		what(ctx, sizeof ctx, _i, S);
		Bufs B;
		bufs_make(&B, k, S, (uint64_t)_i << 32 | (uint64_t)si);
		const float *const *in = (const float *const *)B.in;
		ck_assert_int_eq(k->run_qk(S->batch, S->nq, S->nk, in, B.out), PA_OK);
		float *fwd = malloc(B.out_len * sizeof *fwd);
		ck_assert(fwd != NULL);
		memcpy(fwd, B.out, B.out_len * sizeof *fwd);
		B.saved_len = k->saved_floats_qk(S->batch, S->nq, S->nk);
		ck_assert_msg(B.saved_len > 0, "%s: saved_floats_qk %lld", ctx,
		              (long long)B.saved_len);
		B.saved = guarded((size_t)B.saved_len);
		pa_status st = k->train_qk(S->batch, S->nq, S->nk, in, B.out, B.saved);
		ck_assert_msg(st == PA_OK, "%s: train_qk: %s", ctx, pa_strerror(st));
		ck_assert_msg(memcmp(fwd, B.out, B.out_len * sizeof *fwd) == 0,
		              "%s: train_qk's out differs from run_qk's", ctx);
		ck_assert_msg(guard_kept(B.saved, (size_t)B.saved_len),
		              "%s: train_qk wrote past saved_floats_qk", ctx);
		free(fwd);
		const int left = si % k->num_inputs; /* this gradient is not asked for */
		for (int i = 0; i < k->num_inputs; i++)
			B.gradp[i] = i == left ? NULL : B.grad[i];
		st = k->backward_qk(S->batch, S->nq, S->nk, in, B.out, B.saved, B.gout, B.gradp);
		ck_assert_msg(st == PA_OK, "%s: backward_qk: %s", ctx, pa_strerror(st));
		double *want[MAXIN], scale = 0;
		for (int i = 0; i < k->num_inputs; i++) {
			want[i] = malloc(B.in_len[i] * sizeof(double));
			ck_assert(want[i] != NULL);
		}
		pa_call c = call_of(&B);
		st = pa_reference_call_backward(k, &c, want);
		ck_assert_msg(st == PA_OK, "%s: pa_reference_call_backward: %s", ctx,
		              pa_strerror(st));
		for (int i = 0; i < k->num_inputs; i++)
			for (size_t e = 0; i != left && e < B.in_len[i]; e++)
				scale = fmax(scale, fabs(want[i][e]));
		for (int i = 0; i < k->num_inputs; i++) {
			char name[64];
			snprintf(name, sizeof name, "gradient of %s", k->inputs[i].name);
			if (i == left)
				for (size_t e = 0; e < B.in_len[i] + GUARD; e++)
					ck_assert_msg(B.grad[i][e] == SENTINEL,
					              "%s: the NULL gradient was written", ctx);
			else {
				ck_assert_msg(guard_kept(B.grad[i], B.in_len[i]),
				              "%s: %s written past its end", ctx, name);
				compare(B.grad[i], want[i], B.in_len[i], 1e-5 * scale + 1e-6, ctx, name);
			}
			free(want[i]);
		}
		bufs_free(&B);
	}
}
END_TEST

START_TEST(same)
{
	const pa_kernel_info *k = e2e_kernels[_i];
	if (skip(k) || !k->run_qk)
		return;
	static const int64_t ns[] = {1, 33, 70};
	for (int a = 0; a < COUNT(ns); a++) {
		const Shape S = {2, ns[a], ns[a], 1};
		char ctx[512];
		what(ctx, sizeof ctx, _i, &S);
		Bufs B, P;
		bufs_make(&B, k, &S, 7 + (uint64_t)a);
		bufs_make(&P, k, &S, 7 + (uint64_t)a);
		const float *const *in = (const float *const *)B.in;
		ck_assert_int_eq(k->run_qk(2, S.nq, S.nk, in, B.out), PA_OK);
		ck_assert_int_eq(k->run(2, S.nk, in, P.out), PA_OK);
		ck_assert_msg(memcmp(B.out, P.out, B.out_len * sizeof(float)) == 0,
		              "%s: run_qk(b, n, n) differs from run(b, n)", ctx);
		if (!k->train_qk) {
			bufs_free(&B), bufs_free(&P);
			continue;
		}
		B.saved_len = k->saved_floats_qk(2, S.nq, S.nk);
		P.saved_len = k->saved_floats(2, S.nk);
		ck_assert_int_eq(B.saved_len, P.saved_len);
		B.saved = guarded((size_t)B.saved_len);
		P.saved = guarded((size_t)P.saved_len);
		ck_assert_int_eq(k->train_qk(2, S.nq, S.nk, in, B.out, B.saved), PA_OK);
		ck_assert_int_eq(k->train(2, S.nk, in, P.out, P.saved), PA_OK);
		ck_assert_msg(memcmp(B.out, P.out, B.out_len * sizeof(float)) == 0 &&
		              memcmp(B.saved, P.saved, (size_t)B.saved_len * sizeof(float)) == 0,
		              "%s: train_qk(b, n, n) differs from train(b, n)", ctx);
		ck_assert_int_eq(k->backward_qk(2, S.nq, S.nk, in, B.out, B.saved, B.gout,
		                                B.grad), PA_OK);
		ck_assert_int_eq(k->backward(2, S.nk, in, P.out, P.saved, B.gout, P.grad),
		                 PA_OK);
		for (int i = 0; i < k->num_inputs; i++)
			ck_assert_msg(memcmp(B.grad[i], P.grad[i], B.in_len[i] * sizeof(float)) == 0,
			              "%s: backward_qk(b, n, n) differs from backward(b, n) in %s",
			              ctx, k->inputs[i].name);
		bufs_free(&B), bufs_free(&P);
	}
}
END_TEST

/* untouched: p[0 .. len + GUARD) are sentinels. */
static bool untouched(const float *p, size_t len)
{
	for (size_t e = 0; e < len + GUARD; e++)
		if (p[e] != SENTINEL)
			return false;
	return true;
}

/* refused_fwd: run_qk and train_qk of (batch, nq, nk) on in give status
 * want and write nothing. */
static void refused_fwd(const pa_kernel_info *k, int64_t batch, int64_t nq,
                        int64_t nk, const float *const in[], pa_status want,
                        const char *why)
{
	enum { LEN = 4096 };
	float *out = guarded(LEN), *saved = guarded(LEN);
	pa_status st = k->run_qk(batch, nq, nk, in, out);
	ck_assert_msg(st == want, "%s: run_qk, %s: %s, not %s", k->name, why,
	              pa_strerror(st), pa_strerror(want));
	st = k->train_qk(batch, nq, nk, in, out, saved);
	ck_assert_msg(st == want, "%s: train_qk, %s: %s, not %s", k->name, why,
	              pa_strerror(st), pa_strerror(want));
	ck_assert_msg(untouched(out, LEN) && untouched(saved, LEN),
	              "%s: %s: a refused call wrote", k->name, why);
	free(out), free(saved);
}

START_TEST(statuses)
{
	const pa_kernel_info *k = e2e_kernels[_i];
	if (skip(k) || !k->run_qk || !k->train_qk)
		return;
	const Shape S = {2, 3, 10, 1};
	Bufs B;
	bufs_make(&B, k, &S, 99);
	const float *const *in = (const float *const *)B.in;
	refused_fwd(k, 2, 0, 10, in, PA_ERR_ARGUMENT, "nq = 0");
	refused_fwd(k, 2, -1, 10, in, PA_ERR_ARGUMENT, "nq < 0");
	refused_fwd(k, 2, 3, 2, in, PA_ERR_ARGUMENT, "nk < nq");
	refused_fwd(k, 0, 3, 10, in, PA_ERR_ARGUMENT, "batch = 0");
	refused_fwd(k, 2, 3, INT64_MAX / 2, in, PA_ERR_ARGUMENT, "nk overflowing");
	refused_fwd(k, 2, 3, 10, NULL, PA_ERR_NULL, "inputs NULL");
	ck_assert_int_eq(k->saved_floats_qk(INT64_MAX / 2, 3, 10), -1);
	const float *held[MAXIN];
	for (int i = 0; i < k->num_inputs; i++)
		held[i] = B.in[i];
	held[k->num_inputs - 1] = NULL;
	refused_fwd(k, 2, 3, 10, held, PA_ERR_NULL, "an input NULL");
	/* NaN in the last row of a query input and of a key input */
	for (int i = 0; i < k->num_inputs; i++) {
		float *last = B.in[i] + B.in_len[i] - 1, keep = *last;
		*last = NAN;
		refused_fwd(k, 2, 3, 10, in, PA_ERR_NONFINITE,
		            k->inputs[i].variable == 1 ? "NaN in a query row" : "NaN in a key row");
		*last = keep;
	}
	ck_assert_int_eq(k->train_qk(2, 3, 10, in, B.out, NULL), PA_ERR_NULL);
	/* the backward: NaN in grad_out's last row, bad sizes */
	B.saved_len = k->saved_floats_qk(2, 3, 10);
	B.saved = guarded((size_t)B.saved_len);
	ck_assert_int_eq(k->train_qk(2, 3, 10, in, B.out, B.saved), PA_OK);
	B.gout[B.out_len - 1] = NAN;
	ck_assert_int_eq(k->backward_qk(2, 3, 10, in, B.out, B.saved, B.gout, B.grad),
	                 PA_ERR_NONFINITE);
	B.gout[B.out_len - 1] = 0.5f;
	ck_assert_int_eq(k->backward_qk(2, 4, 3, in, B.out, B.saved, B.gout, B.grad),
	                 PA_ERR_ARGUMENT);
	ck_assert_int_eq(k->backward_qk(2, 0, 10, in, B.out, B.saved, B.gout, B.grad),
	                 PA_ERR_ARGUMENT);
	ck_assert_int_eq(k->backward_qk(2, 3, 10, in, B.out, B.saved, NULL, B.grad),
	                 PA_ERR_NULL);
	for (int i = 0; i < k->num_inputs; i++)
		ck_assert_msg(untouched(B.grad[i], B.in_len[i]),
		              "%s: a refused backward wrote a gradient", k->name);
	ck_assert_int_eq(k->backward_qk(2, 3, 10, in, B.out, B.saved, B.gout, B.grad),
	                 PA_OK);
	bufs_free(&B);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("qk");
	const struct { const char *name; const TTest *test; } cases[] = {
		{"forward", forward}, {"train", train}, {"same", same},
		{"statuses", statuses},
	};
	for (int c = 0; c < COUNT(cases); c++) {
		TCase *tc = tcase_create(cases[c].name);
		tcase_set_timeout(tc, 300);
		tcase_add_loop_test(tc, cases[c].test, 0, e2e_nkernels);
		suite_add_tcase(s, tc);
	}
	SRunner *r = srunner_create(s);
	srunner_run_all(r, CK_NORMAL);
	int failed = srunner_ntests_failed(r);
	srunner_free(r);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
