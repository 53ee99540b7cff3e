/*
 * check_qk_elim.c - the dense entry points with fewer queries than keys
 * (K_info.run_qk, saved_floats_qk, train_qk, backward_qk; polyattn.h) of
 * the exact elimination kernels of tests/e2e/polys_qk_elim.txt (cycles,
 * 3-tensor attention and its fused path, high-degree edges beside
 * others, causal, strict and windowed masks), called directly, against
 * pa_reference_call and pa_reference_call_backward: a pa_call of the same
 * batch, nq and nk without lengths describes the same problem (query row
 * i at position i + nk − nq).  Each kernel is one test of these loop test
 * cases:
 *   forward   every shape of `shapes` (one query, an odd number, nq = nk,
 *             nk not a multiple of any vector width or tile, nk past the
 *             fused path's key tile) with scores of order 1 and with
 *             scores in the hundreds: out within TOL of the reference,
 *             nothing written past it; at nq = nk, run_qk's out is run's
 *             bit for bit;
 *   train     every shape: train_qk's out is run_qk's bit for bit and
 *             stays inside saved_floats_qk; backward_qk's gradients (one
 *             left NULL, so not written) within TOL of the reference (of
 *             the largest gradient of the call, for a gradient the
 *             reference has identically 0; with large scores, within
 *             4·|s|·2^-24 of the largest gradient too, the float32
 *             conditioning check_grad.c allows: weights near one-hot make
 *             a gradient a sum of nearly cancelling terms), nothing
 *             written past them; at
 *             nq = nk, saved, out and gradients are those of
 *             saved_floats / train / backward bit for bit;
 *   statuses  nq < 1, nk < nq, batch < 1, NULL pointers, NaN in a query
 *             row or in grad_out: their status and nothing written;
 *             saved_floats_qk -1 for nq > nk.
 * Every kernel of the table must have the qk entry points: plan_runs_qk
 * holds for every exact elimination plan.
 * Environment: E2E_KERNEL=e2e_3 runs that kernel only.
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

#define TOL 1e-4             /* relative error allowed */
#define GUARD 64             /* guard floats past every tensor */
#define SENTINEL 12345.0f
#define MAXIN 64
#define COUNT(a) ((int)(sizeof(a) / sizeof(a)[0]))

/* One dense call: batch, queries, keys, and how large scores are. */
typedef struct Shape {
	int64_t batch, nq, nk;
	double amp;              /* factor entries times this (scores ~ amp^deg) */
} Shape;

/* The reference costs nk^t per batch entry: the longest shapes only for
 * kernels of three variables (max_vars). */
static const struct { Shape S; int max_vars; } shapes[] = {
	{{1, 1, 1, 1}, 4},
	{{2, 1, 9, 1}, 4},
	{{1, 3, 7, 1}, 4},
	{{2, 6, 6, 1}, 4},
	{{1, 5, 13, 1}, 4},
	{{2, 4, 11, 6}, 4},       /* scores in the hundreds */
	{{1, 7, 23, 1}, 3},
	{{1, 13, 40, 1}, 3},
	{{1, 5, 29, 5}, 3},
	{{1, 3, 70, 1}, 3},      /* past the fused path's 64-key tile */
	{{1, 33, 33, 1}, 3},
};

/* A tensor with GUARD sentinel floats past its len floats. */
typedef struct T {
	float *p;
	size_t len;
} T;

static void t_make(T *t, size_t len)
{
	t->len = len;
	t->p = malloc((len + GUARD) * sizeof(float));
	ck_assert(t->p != NULL);
	for (size_t e = 0; e < len + GUARD; e++)
		t->p[e] = SENTINEL;
}

static float *t_copy(const T *t)
{
	float *c = malloc((t->len + GUARD) * sizeof(float));
	ck_assert(c != NULL);
	memcpy(c, t->p, (t->len + GUARD) * sizeof(float));
	return c;
}

/* guard_kept: nothing written past t's len floats. */
static bool guard_kept(const T *t)
{
	for (int e = 0; e < GUARD; e++)
		if (t->p[t->len + e] != SENTINEL)
			return false;
	return true;
}

/* Every tensor of one call. */
typedef struct Bufs {
	const pa_kernel_info *k;
	Shape S;
	T in[MAXIN], out, gout, grad[MAXIN], saved;
	const float *inp[MAXIN];
	float *gradp[MAXIN];
	pa_call c;               /* the reference's description */
} Bufs;

/* rows_of: nq for x1's inputs, nk for the others. */
static int64_t rows_of(const pa_kernel_info *k, const Shape *S, int i)
{
	return k->inputs[i].variable == 1 ? S->nq : S->nk;
}

/* factor_amp: the half-width of factor entries of monomial m for scores
 * of order 1. */
static double factor_amp(const pa_kernel_info *k, int m)
{
	int deg = 0;
	for (int i = 0; i < k->num_inputs; i++)
		deg += k->inputs[i].kind == PA_INPUT_FACTOR && k->inputs[i].monomial == m;
	double w = fabs(k->scale * k->coefficients[m]);
	return sqrt(3.0) * pow(1.0 / (w * sqrt((double)k->head_dim)), 1.0 / deg);
}

/* bufs_make: inputs random (factors scaled by S->amp), out and grad_out
 * allocated, the reference's pa_call. */
static void bufs_make(Bufs *B, const pa_kernel_info *k, const Shape *S, uint64_t seed)
{
	ck_assert(k->num_inputs <= MAXIN);
	memset(B, 0, sizeof *B);
	B->k = k, B->S = *S;
	uint64_t s = seed;
	for (int i = 0; i < k->num_inputs; i++) {
		const pa_input_desc *d = &k->inputs[i];
		double amp = d->kind == PA_INPUT_FACTOR ? S->amp * factor_amp(k, d->monomial) : 1.0;
		t_make(&B->in[i], (size_t)(S->batch * rows_of(k, S, i) * d->cols));
		for (size_t e = 0; e < B->in[i].len; e++)
			B->in[i].p[e] = (float)(amp * rnd_unit(&s));
		B->inp[i] = B->in[i].p;
	}
	t_make(&B->out, (size_t)(S->batch * S->nq * k->value_dim));
	t_make(&B->gout, B->out.len);
	for (size_t e = 0; e < B->gout.len; e++)
		B->gout.p[e] = (float)rnd_unit(&s);
	B->c = (pa_call){.mode = PA_FORWARD, .batch = S->batch, .nq = S->nq, .nk = S->nk,
	                 .inputs = B->inp, .out = B->out.p, .grad_out = B->gout.p};
}

static void bufs_free(Bufs *B)
{
	for (int i = 0; i < B->k->num_inputs; i++)
		free(B->in[i].p), free(B->grad[i].p);
	free(B->out.p), free(B->gout.p), free(B->saved.p);
}

/* what: the kernel and shape, for messages. */
static void what(char *buf, size_t len, int idx, const Shape *S)
{
	const pa_kernel_info *k = e2e_kernels[idx];
	snprintf(buf, len, "%s (%s) '%s' hd %d vd %d, batch %lld nq %lld nk %lld amp %g",
	         k->name, e2e_origins[idx], k->polynomial, k->head_dim, k->value_dim,
	         (long long)S->batch, (long long)S->nq, (long long)S->nk, S->amp);
}

/* compare: every float of got[0 .. len) within tol · max |want| +
 * abs_tol of want. */
static void compare(const float *got, const double *want, size_t len, double tol,
                    double abs_tol, const char *ctx, const char *name)
{
	double err = 0, big = 0;
	for (size_t e = 0; e < len; e++) {
		err = fmax(err, isfinite(got[e]) ? fabs(got[e] - want[e]) : INFINITY);
		big = fmax(big, fabs(want[e]));
	}
	ck_assert_msg(err <= tol * big + abs_tol, "%s: %s: error %g, size %g", ctx, name,
	              err, big);
}

/* score_bound: Σ_m |weight_m| · Σ_l Π_q max_r |F_q[r][l]|, at least every
 * |score| of the call (for the float conditioning of its gradients). */
static double score_bound(const Bufs *B)
{
	const pa_kernel_info *k = B->k;
	double total = 0;
	for (int m = 0; m < k->num_monomials; m++) {
		double sum = 0;
		for (int l = 0; l < k->head_dim; l++) {
			double prod = 1;
			for (int i = 0; i < k->num_inputs; i++) {
				if (k->inputs[i].kind != PA_INPUT_FACTOR || k->inputs[i].monomial != m)
					continue;
				double mx = 0;
				for (size_t e = (size_t)l; e < B->in[i].len; e += (size_t)k->head_dim)
					mx = fmax(mx, fabs(B->in[i].p[e]));
				prod *= mx;
			}
			sum += prod;
		}
		total += fabs(k->scale * k->coefficients[m]) * sum;
	}
	return total;
}

/* skip: not this kernel (E2E_KERNEL), or a shape too long for it. */
static bool skip(const pa_kernel_info *k, int si)
{
	const char *only = getenv("E2E_KERNEL");
	return (only && *only && strcmp(only, k->name) != 0) || k->num_vars > shapes[si].max_vars;
}

/* has_qk: the kernel carries all four entry points. */
static void has_qk(const pa_kernel_info *k)
{
	ck_assert_msg(k->run_qk && k->saved_floats_qk && k->train_qk && k->backward_qk,
	              "%s (%s): no qk entry points", k->name, k->algorithm);
}

/* run_forward: run_qk on shape si, checked against the reference; B
 * keeps the call. */
static void run_forward(Bufs *B, int idx, int si, const char *ctx)
{
	const pa_kernel_info *k = e2e_kernels[idx];
	bufs_make(B, k, &shapes[si].S, (uint64_t)si * 1000 + (uint64_t)idx);
	pa_status st = k->run_qk(B->S.batch, B->S.nq, B->S.nk, B->inp, B->out.p);
	ck_assert_msg(st == PA_OK, "%s: run_qk: %s", ctx, pa_strerror(st));
	ck_assert_msg(guard_kept(&B->out), "%s: run_qk wrote past out", ctx);
	double *want = malloc(B->out.len * sizeof *want);
	ck_assert(want != NULL);
	st = pa_reference_call(k, &B->c, want);
	ck_assert_msg(st == PA_OK, "%s: pa_reference_call: %s", ctx, pa_strerror(st));
	compare(B->out.p, want, B->out.len, TOL, 0, ctx, "out");
	free(want);
}

START_TEST(forward)
{
	const pa_kernel_info *k = e2e_kernels[_i];
	has_qk(k);
	for (int si = 0; si < COUNT(shapes); si++) {
		if (skip(k, si))
			continue;
		char ctx[512];
		what(ctx, sizeof ctx, _i, &shapes[si].S);
		Bufs B;
		run_forward(&B, _i, si, ctx);
		if (B.S.nq == B.S.nk) {      /* run_qk(b, n, n) is run(b, n) */
			T plain;
			t_make(&plain, B.out.len);
			pa_status st = k->run(B.S.batch, B.S.nk, B.inp, plain.p);
			ck_assert_msg(st == PA_OK, "%s: run: %s", ctx, pa_strerror(st));
			ck_assert_msg(memcmp(plain.p, B.out.p, (B.out.len + GUARD) * sizeof(float)) == 0,
			              "%s: run_qk at nq = nk differs from run", ctx);
			free(plain.p);
		}
		bufs_free(&B);
	}
}
END_TEST

/* same_as_plain_train: at nq = nk, train and backward give what the qk
 * ones gave (B's out, saved and gradients) bit for bit. */
static void same_as_plain_train(Bufs *B, int skip_grad, const char *ctx)
{
	const pa_kernel_info *k = B->k;
	const int64_t b = B->S.batch, n = B->S.nk;
	ck_assert_msg(k->saved_floats(b, n) == k->saved_floats_qk(b, n, n),
	              "%s: saved_floats_qk at nq = nk differs", ctx);
	T out, saved, grad[MAXIN];
	float *gp[MAXIN];
	t_make(&out, B->out.len);
	t_make(&saved, B->saved.len);
	pa_status st = k->train(b, n, B->inp, out.p, saved.p);
	ck_assert_msg(st == PA_OK, "%s: train: %s", ctx, pa_strerror(st));
	ck_assert_msg(memcmp(out.p, B->out.p, (out.len + GUARD) * sizeof(float)) == 0 &&
	              memcmp(saved.p, B->saved.p, (saved.len + GUARD) * sizeof(float)) == 0,
	              "%s: train at nq = nk differs from train_qk", ctx);
	for (int i = 0; i < k->num_inputs; i++) {
		t_make(&grad[i], B->grad[i].len);
		gp[i] = i == skip_grad ? NULL : grad[i].p;
	}
	st = k->backward(b, n, B->inp, out.p, saved.p, B->gout.p, gp);
	ck_assert_msg(st == PA_OK, "%s: backward: %s", ctx, pa_strerror(st));
	for (int i = 0; i < k->num_inputs; i++) {
		ck_assert_msg(memcmp(grad[i].p, B->grad[i].p, (grad[i].len + GUARD) * sizeof(float)) == 0,
		              "%s: backward's gradient of %s differs from backward_qk's", ctx,
		              k->inputs[i].name);
		free(grad[i].p);
	}
	free(out.p), free(saved.p);
}

START_TEST(train)
{
	const pa_kernel_info *k = e2e_kernels[_i];
	has_qk(k);
	for (int si = 0; si < COUNT(shapes); si++) {
		if (skip(k, si))
			continue;
		char ctx[512];
		what(ctx, sizeof ctx, _i, &shapes[si].S);
		Bufs B;
		run_forward(&B, _i, si, ctx);
		const Shape *S = &B.S;
		float *fwd = t_copy(&B.out);
		for (size_t e = 0; e < B.out.len; e++)
			B.out.p[e] = SENTINEL;
		int64_t len = k->saved_floats_qk(S->batch, S->nq, S->nk);
		ck_assert_msg(len > 0, "%s: saved_floats_qk %lld", ctx, (long long)len);
		t_make(&B.saved, (size_t)len);
		pa_status st = k->train_qk(S->batch, S->nq, S->nk, B.inp, B.out.p, B.saved.p);
		ck_assert_msg(st == PA_OK, "%s: train_qk: %s", ctx, pa_strerror(st));
		ck_assert_msg(memcmp(fwd, B.out.p, (B.out.len + GUARD) * sizeof(float)) == 0,
		              "%s: train_qk's out differs from run_qk's", ctx);
		ck_assert_msg(guard_kept(&B.saved), "%s: train_qk wrote past saved_floats_qk", ctx);
		free(fwd);
		const int skip_grad = si % 2 ? 0 : -1;
		for (int i = 0; i < k->num_inputs; i++) {
			t_make(&B.grad[i], B.in[i].len);
			B.gradp[i] = i == skip_grad ? NULL : B.grad[i].p;
		}
		st = k->backward_qk(S->batch, S->nq, S->nk, B.inp, B.out.p, B.saved.p,
		                    B.gout.p, B.gradp);
		ck_assert_msg(st == PA_OK, "%s: backward_qk: %s", ctx, pa_strerror(st));
		double *want[MAXIN], scale = 0;
		for (int i = 0; i < k->num_inputs; i++) {
			want[i] = malloc(B.in[i].len * sizeof(double));
			ck_assert(want[i] != NULL);
		}
		st = pa_reference_call_backward(k, &B.c, want);
		ck_assert_msg(st == PA_OK, "%s: pa_reference_call_backward: %s", ctx,
		              pa_strerror(st));
		for (int i = 0; i < k->num_inputs; i++)
			for (size_t e = 0; i != skip_grad && e < B.in[i].len; e++)
				scale = fmax(scale, fabs(want[i][e]));
		double abs_tol = S->amp > 1 ? 1e-6 + 4 * score_bound(&B) * 0x1p-24 : 1e-6;
		for (int i = 0; i < k->num_inputs; i++) {
			char name[64];
			snprintf(name, sizeof name, "gradient of %s", k->inputs[i].name);
			ck_assert_msg(guard_kept(&B.grad[i]), "%s: %s written past its end", ctx, name);
			if (i == skip_grad) {
				for (size_t e = 0; e < B.grad[i].len; e++)
					ck_assert_msg(B.grad[i].p[e] == SENTINEL,
					              "%s: the NULL gradient was written", ctx);
			} else {
				compare(B.grad[i].p, want[i], B.grad[i].len, TOL, abs_tol * scale, ctx, name);
			}
			free(want[i]);
		}
		if (S->nq == S->nk)
			same_as_plain_train(&B, skip_grad, ctx);
		bufs_free(&B);
	}
}
END_TEST

/* refused: status st is want and t holds what before held. */
static void refused(pa_status st, pa_status want, const T *t, const float *before,
                    const char *name, const char *why)
{
	ck_assert_msg(st == want, "%s: %s: got '%s', want '%s'", name, why,
	              pa_strerror(st), pa_strerror(want));
	ck_assert_msg(memcmp(t->p, before, (t->len + GUARD) * sizeof(float)) == 0,
	              "%s: %s: output written", name, why);
}

START_TEST(statuses)
{
	const pa_kernel_info *k = e2e_kernels[_i];
	const char *only = getenv("E2E_KERNEL");
	if (only && *only && strcmp(only, k->name) != 0)
		return;
	has_qk(k);
	const Shape S = {2, 3, 5, 1};
	Bufs B;
	bufs_make(&B, k, &S, 99 + (uint64_t)_i);
	float *o = t_copy(&B.out);
	const char *nm = k->name;
	refused(k->run_qk(2, 0, 5, B.inp, B.out.p), PA_ERR_ARGUMENT, &B.out, o, nm, "nq 0");
	refused(k->run_qk(2, 4, 3, B.inp, B.out.p), PA_ERR_ARGUMENT, &B.out, o, nm, "nk < nq");
	refused(k->run_qk(0, 3, 5, B.inp, B.out.p), PA_ERR_ARGUMENT, &B.out, o, nm, "batch 0");
	refused(k->run_qk(2, 3, 5, NULL, B.out.p), PA_ERR_NULL, &B.out, o, nm, "NULL inputs");
	refused(k->run_qk(2, 3, 5, B.inp, NULL), PA_ERR_NULL, &B.out, o, nm, "NULL out");
	ck_assert_msg(k->saved_floats_qk(2, 6, 5) == -1, "%s: saved_floats_qk at nq > nk", nm);
	ck_assert_msg(k->saved_floats_qk(2, 0, 5) == -1, "%s: saved_floats_qk at nq 0", nm);
	int64_t len = k->saved_floats_qk(2, 3, 5);
	ck_assert(len > 0);
	t_make(&B.saved, (size_t)len);
	refused(k->train_qk(2, 3, 5, B.inp, B.out.p, NULL), PA_ERR_NULL, &B.out, o, nm,
	        "NULL saved");
	/* NaN in the last query row of x1's first input: read, so refused */
	int q = -1;
	for (int i = 0; i < k->num_inputs && q < 0; i++)
		q = k->inputs[i].variable == 1 ? i : -1;
	ck_assert(q >= 0);
	float keep = B.in[q].p[B.in[q].len - 1];
	B.in[q].p[B.in[q].len - 1] = NAN;
	refused(k->run_qk(2, 3, 5, B.inp, B.out.p), PA_ERR_NONFINITE, &B.out, o, nm,
	        "NaN in a query row");
	B.in[q].p[B.in[q].len - 1] = keep;
	pa_status st = k->train_qk(2, 3, 5, B.inp, B.out.p, B.saved.p);
	ck_assert_msg(st == PA_OK, "%s: train_qk: %s", nm, pa_strerror(st));
	for (int i = 0; i < k->num_inputs; i++) {
		t_make(&B.grad[i], B.in[i].len);
		B.gradp[i] = B.grad[i].p;
	}
	float *g = t_copy(&B.grad[0]);
	B.gout.p[B.gout.len - 1] = NAN;
	refused(k->backward_qk(2, 3, 5, B.inp, B.out.p, B.saved.p, B.gout.p, B.gradp),
	        PA_ERR_NONFINITE, &B.grad[0], g, nm, "NaN in grad_out");
	B.gout.p[B.gout.len - 1] = 0.5f;
	refused(k->backward_qk(2, 4, 3, B.inp, B.out.p, B.saved.p, B.gout.p, B.gradp),
	        PA_ERR_ARGUMENT, &B.grad[0], g, nm, "backward nk < nq");
	refused(k->backward_qk(2, 3, 5, B.inp, B.out.p, NULL, B.gout.p, B.gradp),
	        PA_ERR_NULL, &B.grad[0], g, nm, "backward NULL saved");
	st = k->backward_qk(2, 3, 5, B.inp, B.out.p, B.saved.p, B.gout.p, B.gradp);
	ck_assert_msg(st == PA_OK, "%s: backward_qk: %s", nm, pa_strerror(st));
	free(o), free(g);
	bufs_free(&B);
}
END_TEST

/* qk_suite: the loop test cases over every kernel of the table. */
static Suite *qk_suite(void)
{
	Suite *s = suite_create("qk");
	const struct { const char *name; const TTest *test; } cases[] = {
		{"forward", forward}, {"train", train}, {"statuses", statuses},
	};
	for (int c = 0; c < COUNT(cases); c++) {
		TCase *tc = tcase_create(cases[c].name);
		tcase_set_timeout(tc, 300);
		tcase_add_loop_test(tc, cases[c].test, 0, e2e_nkernels);
		suite_add_tcase(s, tc);
	}
	return s;
}

/* main: run the suite; exit status 0 when every kernel passes. */
int main(void)
{
	SRunner *sr = srunner_create(qk_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
