/*
 * check_call.c - the extended entry point K_call (polyattn.h, pa_call) of
 * every kernel of tests/e2e/polys_call.txt (trees with and without masks,
 * which run through their _qk entry points, elimination, approximate,
 * auto; built as check_call) or of tests/e2e/polys_call_masked.txt
 * (masked trees and elimination; built as check_call_masked), against
 * pa_reference_call and
 * pa_reference_call_backward (the definition per batch entry, in double)
 * and against the plain entry points.  Each kernel is one test of these
 * loop test cases:
 *   forward   every shape of `shapes` below, fixed and random (lengths 0,
 *             1 and n, queries fewer than keys down to one query against
 *             a context, rows padded apart, (B, n, H, d) tensors with heads
 *             > 1): out within TOL of the reference (approximate kernels:
 *             within their promise), rows past a length exactly 0, no
 *             float between rows or past the tensor written; the rows past
 *             a length of every input hold NaN, which must not be read;
 *             full lengths give the plain forward's output bit for bit;
 *   train     for kernels with a backward, every shape: PA_TRAIN's out is
 *             PA_FORWARD's bit for bit and stays inside call_saved_floats;
 *             PA_BACKWARD's gradients (one left NULL, so not written)
 *             within TOL of the reference (a gradient the reference has
 *             identically 0, as at n = 1, within 1e-6 of the largest
 *             other, 1e-5 for an approximate kernel), 0 past the
 *             lengths, nothing written between rows;
 *   statuses  bad calls give their status and write nothing: NULL
 *             pointers, bad mode, sizes, lengths, strides, overlapping
 *             tensors, a backward of another shape than its train or of
 *             a train that failed, NaN in a row that is read, and
 *             PA_ERR_UNSUPPORTED for training a kernel without a backward.
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

#define TOL 1e-4             /* relative error allowed (exact kernels) */
#define GUARD 64             /* guard floats past every tensor */
#define SENTINEL 12345.0f
#define MAXIN 64
#define COUNT(a) ((int)(sizeof(a) / sizeof(a)[0]))

enum { DENSE, PADDED, BNHD };  /* layouts: contiguous, rows padded apart,
                                  (batch, n, heads, cols) read in place */

/* One call's shape. */
typedef struct Shape {
	int64_t batch, heads, nq, nk;
	int64_t ql[4], kl[4];    /* lengths, when has_q / has_k */
	bool has_q, has_k;
	int layout;
} Shape;

static const Shape fixed_shapes[] = {
	{3, 2, 7, 7, {0}, {0}, false, false, DENSE},
	{3, 2, 7, 7, {0}, {0}, false, false, PADDED},
	{3, 3, 17, 17, {0}, {0, 1, 17}, false, true, BNHD},
	{3, 2, 9, 9, {3, 5, 1}, {9, 5, 5}, true, true, PADDED},
	{3, 2, 1, 17, {0}, {17, 4, 1}, false, true, PADDED},
	{2, 2, 4, 11, {0}, {0}, false, false, BNHD},
	{4, 1, 6, 13, {6, 2, 0, 6}, {13, 2, 5, 6}, true, true, DENSE},
	{1, 1, 1, 1, {0}, {0}, false, false, PADDED},
	{3, 2, 5, 5, {0}, {0, 0, 0}, false, true, BNHD},
	/* last: large enough that the call layer spreads its gathers and
	 * scatters over threads; kernels of two variables only (the
	 * reference costs n^t) */
	{3, 4, 600, 600, {0}, {600, 599, 1}, false, true, PADDED},
};

/* Every shape run: fixed_shapes but its last, RANDOM_SHAPES drawn by
 * random_shape, then fixed_shapes' last (made by make_shapes). */
enum { RANDOM_SHAPES = 12 };
static Shape shapes[COUNT(fixed_shapes) + RANDOM_SHAPES];

/* random_shape: batch 1–4, heads 1–3, nk 1–12, nq = nk or fewer, lengths
 * given or not, any layout, within pa_call's rules. */
static Shape random_shape(uint64_t *s)
{
	Shape S = {.batch = 1 + rnd_next(s) % 4, .heads = 1 + rnd_next(s) % 3,
	           .nk = 1 + rnd_next(s) % 12, .layout = rnd_next(s) % 3};
	S.nq = rnd_next(s) % 2 ? S.nk : 1 + (int64_t)(rnd_next(s) % S.nk);
	S.has_k = rnd_next(s) % 2, S.has_q = rnd_next(s) % 2;
	for (int64_t b = 0; b < S.batch; b++) {
		S.kl[b] = S.has_k ? (int64_t)(rnd_next(s) % (S.nk + 1)) : S.nk;
		if (S.nq < S.nk && !S.has_q && S.kl[b] < S.nq)
			S.kl[b] = S.nq;      /* all nq queries need as many keys */
		const int64_t most = S.kl[b] < S.nq ? S.kl[b] : S.nq;
		S.ql[b] = (int64_t)(rnd_next(s) % (most + 1));
	}
	return S;
}

/* make_shapes: fill shapes[]. */
static void make_shapes(void)
{
	uint64_t s = 2026;
	int o = 0;
	for (int i = 0; i + 1 < COUNT(fixed_shapes); i++)
		shapes[o++] = fixed_shapes[i];
	for (int i = 0; i < RANDOM_SHAPES; i++)
		shapes[o++] = random_shape(&s);
	shapes[o++] = fixed_shapes[COUNT(fixed_shapes) - 1];
}

/* shapes_for: how many of `shapes` kernel k runs (the last only with two
 * variables). */
static int shapes_for(const pa_kernel_info *k)
{
	return k->num_vars <= 2 ? COUNT(shapes) : COUNT(shapes) - 1;
}

/* A strided tensor: element (b, h, r, c) at p[b·bs + h·hs + r·rs + c]. */
typedef struct T {
	float *p;
	size_t len;              /* floats, guard excluded */
	int64_t batch, heads, rows, cols;
	pa_layout l;
} T;

/* t_make: a tensor of the shape in the layout, every float SENTINEL. */
static void t_make(T *t, int layout, const Shape *S, int64_t rows, int64_t cols)
{
	*t = (T){.batch = S->batch, .heads = S->heads, .rows = rows, .cols = cols};
	if (layout == PADDED)
		t->l.row = cols + 3, t->l.head = rows * (cols + 3) + 5,
		t->l.batch = S->heads * t->l.head + 7;
	else if (layout == BNHD)
		t->l.row = S->heads * cols, t->l.head = cols,
		t->l.batch = rows * S->heads * cols;
	else
		t->l.row = cols, t->l.head = rows * cols, t->l.batch = S->heads * rows * cols;
	t->len = (size_t)((S->batch - 1) * t->l.batch + (S->heads - 1) * t->l.head +
	                  (rows - 1) * t->l.row + cols);
	t->p = malloc((t->len + GUARD) * sizeof(float));
	ck_assert(t->p != NULL);
	for (size_t e = 0; e < t->len + GUARD; e++)
		t->p[e] = SENTINEL;
	if (layout == DENSE)
		t->l = (pa_layout){0};   /* 0s: the dense defaults */
}

/* at: element (b, h, r, 0). */
static float *at(const T *t, int64_t b, int64_t h, int64_t r)
{
	int64_t rs = t->l.row ? t->l.row : t->cols;
	int64_t hs = t->l.head ? t->l.head : t->rows * rs;
	int64_t bs = t->l.batch ? t->l.batch : t->heads * hs;
	return t->p + b * bs + h * hs + r * rs;
}

/* t_copy: a copy of every float of t, guard included. */
static float *t_copy(const T *t)
{
	float *c = malloc((t->len + GUARD) * sizeof *c);
	ck_assert(c != NULL);
	memcpy(c, t->p, (t->len + GUARD) * sizeof *c);
	return c;
}

/* gaps_kept: every float of t that is not an element equals before's. */
static bool gaps_kept(const T *t, const float *before)
{
	float *now = t_copy(t);
	for (int64_t b = 0; b < t->batch; b++)
		for (int64_t h = 0; h < t->heads; h++)
			for (int64_t r = 0; r < t->rows; r++) {
				float *e = at(t, b, h, r);
				memcpy(now + (e - t->p), before + (e - t->p), t->cols * sizeof(float));
			}
	bool same = memcmp(now, before, (t->len + GUARD) * sizeof(float)) == 0;
	free(now);
	return same;
}

/* lengths of entry b under S (the rules of polyattn.h, pa_call). */
static int64_t klen(const Shape *S, int64_t b)
{
	return S->has_k ? S->kl[b] : S->nk;
}

static int64_t qlen(const Shape *S, int64_t b)
{
	return S->has_q ? S->ql[b] : S->nq == S->nk ? klen(S, b) : S->nq;
}

/* A call's tensors. */
typedef struct Bufs {
	const pa_kernel_info *k;
	Shape S;
	T in[MAXIN], out, gout, grad[MAXIN];
	pa_layout inl[MAXIN], gradl[MAXIN];
	const float *inp[MAXIN];
	float *gradp[MAXIN];
	float *saved;
	int64_t saved_len;
	pa_call c;
} Bufs;

/* rows_of: nq for x1's inputs, nk for the others. */
static int64_t rows_of(const pa_kernel_info *k, const Shape *S, int i)
{
	return k->inputs[i].variable == 1 ? S->nq : S->nk;
}

/* valid_rows: the rows of a tensor of entry b that are read or written. */
static int64_t valid_rows(const Shape *S, bool query, int64_t b)
{
	return query ? qlen(S, b) : klen(S, b);
}

/* factor_amp: the half-width of factor entries of monomial m: scores of
 * order 1, and within the bound of an approximate kernel. */
static double factor_amp(const pa_kernel_info *k, int m)
{
	int deg = 0;
	for (int i = 0; i < k->num_inputs; i++)
		deg += k->inputs[i].kind == PA_INPUT_FACTOR && k->inputs[i].monomial == m;
	double w = fabs(k->scale * k->coefficients[m]);
	double a = sqrt(3.0) * pow(1.0 / (w * sqrt((double)k->head_dim)), 1.0 / deg);
	return k->bound > 0 && a > k->bound ? k->bound : a;
}

/* fill: the valid rows of t random in [-amp, amp), the others NaN. */
static void fill(T *t, const Shape *S, bool query, double amp, uint64_t *s)
{
	for (int64_t b = 0; b < t->batch; b++)
		for (int64_t h = 0; h < t->heads; h++)
			for (int64_t r = 0; r < t->rows; r++)
				for (int64_t c = 0; c < t->cols; c++)
					at(t, b, h, r)[c] = r < valid_rows(S, query, b)
					                    ? (float)(amp * rnd_unit(s)) : NAN;
}

/* bufs_make: every tensor of a call of k with shape S, inputs filled, and
 * the pa_call of mode PA_FORWARD. */
static void bufs_make(Bufs *B, const pa_kernel_info *k, const Shape *S, uint64_t seed)
{
	ck_assert(k->num_inputs <= MAXIN);
	memset(B, 0, sizeof *B);
	B->k = k, B->S = *S;
	uint64_t s = seed;
	for (int i = 0; i < k->num_inputs; i++) {
		const pa_input_desc *d = &k->inputs[i];
		t_make(&B->in[i], S->layout, S, rows_of(k, S, i), d->cols);
		fill(&B->in[i], S, d->variable == 1,
		     d->kind == PA_INPUT_FACTOR ? factor_amp(k, d->monomial) : 1.0, &s);
		B->inl[i] = B->in[i].l, B->inp[i] = B->in[i].p;
	}
	t_make(&B->out, S->layout, S, S->nq, k->value_dim);
	B->c = (pa_call){
		.mode = PA_FORWARD, .batch = S->batch, .heads = S->heads,
		.nq = S->nq, .nk = S->nk == S->nq && S->layout == DENSE ? 0 : S->nk,
		.q_lengths = S->has_q ? S->ql : NULL,
		.k_lengths = S->has_k ? S->kl : NULL,
		.inputs = B->inp, .in_layout = S->layout == DENSE ? NULL : B->inl,
		.out = B->out.p, .out_layout = B->out.l,
	};
}

/* bufs_grad: grad_out (NaN past the lengths) and gradient tensors; the
 * gradient of input `skip` is not asked for. */
static void bufs_grad(Bufs *B, int skip, uint64_t seed)
{
	const pa_kernel_info *k = B->k;
	uint64_t s = seed;
	t_make(&B->gout, B->S.layout, &B->S, B->S.nq, k->value_dim);
	fill(&B->gout, &B->S, true, 1.0, &s);
	for (int i = 0; i < k->num_inputs; i++) {
		t_make(&B->grad[i], B->S.layout == BNHD ? PADDED : BNHD, &B->S,
		       rows_of(k, &B->S, i), k->inputs[i].cols);
		B->gradl[i] = B->grad[i].l;
		B->gradp[i] = i == skip ? NULL : B->grad[i].p;
	}
	B->c.grad_out = B->gout.p, B->c.grad_out_layout = B->gout.l;
	B->c.grad_inputs = B->gradp, B->c.grad_layout = B->gradl;
}

/* bufs_free: release every tensor. */
static void bufs_free(Bufs *B)
{
	for (int i = 0; i < B->k->num_inputs; i++)
		free(B->in[i].p), free(B->grad[i].p);
	free(B->out.p), free(B->gout.p), free(B->saved);
}

/* what: the kernel and shape, for messages. */
static const char *what(char *buf, size_t len, int idx, int si)
{
	const pa_kernel_info *k = e2e_kernels[idx];
	const Shape *S = &shapes[si];
	snprintf(buf, len, "%s (%s) '%s' %s hd %d vd %d, shape %d (batch %lld heads %lld nq %lld nk %lld)",
	         k->name, e2e_origins[idx], k->polynomial, k->algorithm, k->head_dim,
	         k->value_dim, si, (long long)S->batch, (long long)S->heads,
	         (long long)S->nq, (long long)S->nk);
	return buf;
}

/* compare: max |t − want| over the valid rows of t against tol · max
 * |want| (+ abs); rows past the lengths exactly 0.  want is dense
 * (batch, heads, rows, cols). */
static void compare(const T *t, const double *want, const Shape *S, bool query,
                    double tol, double abs_tol, const char *ctx, const char *name)
{
	double err = 0, big = 0;
	bool zeros = true;
	for (int64_t b = 0; b < t->batch; b++)
		for (int64_t h = 0; h < t->heads; h++)
			for (int64_t r = 0; r < t->rows; r++)
				for (int64_t c = 0; c < t->cols; c++) {
					double w = want[((b * t->heads + h) * t->rows + r) * t->cols + c];
					float g = at(t, b, h, r)[c];
					if (r >= valid_rows(S, query, b))
						zeros = zeros && g == 0.0f && w == 0.0;
					err = fmax(err, isfinite(g) ? fabs(g - w) : INFINITY);
					big = fmax(big, fabs(w));
				}
	ck_assert_msg(zeros, "%s: %s: a row past a length is not 0", ctx, name);
	ck_assert_msg(err <= tol * big + abs_tol, "%s: %s: error %g, size %g",
	              ctx, name, err, big);
}

/* out_tolerance: (relative, absolute) error allowed on out: TOL, and for
 * an approximate kernel its promise 2ε/(1−ε) · max |value product| (values
 * within 1). */
static double out_abs_tol(const pa_kernel_info *k)
{
	return k->error > 0 ? 2 * k->error / (1 - k->error) + TOL : 0;
}

/* same_as_plain: with full lengths and nq = nk, K_call's out is the plain
 * forward's on a contiguous copy of the inputs, bit for bit. */
static void same_as_plain(const Bufs *B, const char *ctx)
{
	const pa_kernel_info *k = B->k;
	const Shape *S = &B->S;
	for (int64_t b = 0; b < S->batch; b++)
		if (qlen(S, b) != S->nk || klen(S, b) != S->nk || S->nq != S->nk)
			return;
	const int64_t bh = S->batch * S->heads, n = S->nk;
	float *dense[MAXIN];
	for (int i = 0; i < k->num_inputs; i++) {
		const int64_t cols = k->inputs[i].cols;
		dense[i] = malloc((size_t)(bh * n * cols) * sizeof(float));
		ck_assert(dense[i] != NULL);
		for (int64_t e = 0; e < bh; e++)
			for (int64_t r = 0; r < n; r++)
				memcpy(dense[i] + (e * n + r) * cols,
				       at(&B->in[i], e / S->heads, e % S->heads, r),
				       cols * sizeof(float));
	}
	const int64_t vd = k->value_dim;
	float *out = malloc((size_t)(bh * n * vd) * sizeof(float));
	ck_assert(out != NULL);
	ck_assert_int_eq(k->run(bh, n, (const float *const *)dense, out), PA_OK);
	for (int64_t e = 0; e < bh; e++)
		for (int64_t r = 0; r < n; r++)
			ck_assert_msg(memcmp(out + (e * n + r) * vd,
			                     at(&B->out, e / S->heads, e % S->heads, r),
			                     vd * sizeof(float)) == 0,
			              "%s: K_call's out differs from the plain forward's", ctx);
	for (int i = 0; i < k->num_inputs; i++)
		free(dense[i]);
	free(out);
}

/* run_forward: the forward of shape si; returns the reference's out (to
 * free) and leaves B made. */
static double *run_forward(Bufs *B, int idx, int si, const char *ctx)
{
	const pa_kernel_info *k = e2e_kernels[idx];
	const Shape *S = &shapes[si];
	bufs_make(B, k, S, rnd_next(&(uint64_t){(uint64_t)idx << 32 | (uint64_t)si}));
	float *before = t_copy(&B->out);
	pa_status st = k->call(&B->c);
	ck_assert_msg(st == PA_OK, "%s: K_call: %s", ctx, pa_strerror(st));
	ck_assert_msg(gaps_kept(&B->out, before), "%s: K_call wrote between rows", ctx);
	free(before);
	double *want = malloc((size_t)(S->batch * S->heads * S->nq * k->value_dim) *
	                      sizeof *want);
	ck_assert(want != NULL);
	st = pa_reference_call(k, &B->c, want);
	ck_assert_msg(st == PA_OK, "%s: pa_reference_call: %s", ctx, pa_strerror(st));
	return want;
}

START_TEST(forward)
{
	const pa_kernel_info *k = e2e_kernels[_i];
	const char *only = getenv("E2E_KERNEL");
	if (only && *only && strcmp(only, k->name) != 0)
		return;
	ck_assert_ptr_nonnull(k->call);
	/* exact kernels run fewer queries than keys natively, not padded */
	if (strncmp(k->algorithm, "exact-", 6) == 0)
		ck_assert_msg(k->run_qk && k->saved_floats_qk && k->train_qk && k->backward_qk,
		              "%s: an exact kernel without its _qk entry points", k->name);
	for (int si = 0; si < shapes_for(k); si++) {
		char ctx[512];
		what(ctx, sizeof ctx, _i, si);
		Bufs B;
		double *want = run_forward(&B, _i, si, ctx);
		compare(&B.out, want, &B.S, true, TOL, out_abs_tol(k), ctx, "out");
		same_as_plain(&B, ctx);
		free(want);
		bufs_free(&B);
	}
}
END_TEST

/* want_grads: the reference's gradients, dense doubles per input. */
static void want_grads(const Bufs *B, double *want[], const char *ctx)
{
	const pa_kernel_info *k = B->k;
	const Shape *S = &B->S;
	for (int i = 0; i < k->num_inputs; i++) {
		want[i] = malloc((size_t)(S->batch * S->heads * rows_of(k, S, i) *
		                          k->inputs[i].cols) * sizeof(double));
		ck_assert(want[i] != NULL);
	}
	pa_status st = pa_reference_call_backward(k, &B->c, want);
	ck_assert_msg(st == PA_OK, "%s: pa_reference_call_backward: %s", ctx,
	              pa_strerror(st));
}

START_TEST(train)
{
	const pa_kernel_info *k = e2e_kernels[_i];
	const char *only = getenv("E2E_KERNEL");
	if ((only && *only && strcmp(only, k->name) != 0) || !k->backward)
		return;
	for (int si = 0; si < shapes_for(k); si++) {
		char ctx[512];
		what(ctx, sizeof ctx, _i, si);
		Bufs B;
		double *want_out = run_forward(&B, _i, si, ctx);
		free(want_out);
		float *fwd = t_copy(&B.out);
		for (size_t e = 0; e < B.out.len; e++)
			B.out.p[e] = SENTINEL;
		B.c.mode = PA_TRAIN;
		B.saved_len = k->call_saved_floats(&B.c);
		ck_assert_msg(B.saved_len > 0, "%s: call_saved_floats %lld", ctx,
		              (long long)B.saved_len);
		B.saved = malloc((size_t)(B.saved_len + GUARD) * sizeof(float));
		ck_assert(B.saved != NULL);
		for (int64_t e = 0; e < B.saved_len + GUARD; e++)
			B.saved[e] = SENTINEL;
		B.c.saved = B.saved;
		pa_status st = k->call(&B.c);
		ck_assert_msg(st == PA_OK, "%s: PA_TRAIN: %s", ctx, pa_strerror(st));
		ck_assert_msg(memcmp(fwd, B.out.p, (B.out.len + GUARD) * sizeof(float)) == 0,
		              "%s: PA_TRAIN's out differs from PA_FORWARD's", ctx);
		for (int e = 0; e < GUARD; e++)
			ck_assert_msg(B.saved[B.saved_len + e] == SENTINEL,
			              "%s: PA_TRAIN wrote past call_saved_floats", ctx);
		free(fwd);
		const int skip = si % 2 ? 0 : -1;
		bufs_grad(&B, skip, (uint64_t)si * 77 + (uint64_t)_i);
		float *before[MAXIN];
		for (int i = 0; i < k->num_inputs; i++)
			before[i] = t_copy(&B.grad[i]);
		B.c.mode = PA_BACKWARD;
		st = k->call(&B.c);
		ck_assert_msg(st == PA_OK, "%s: PA_BACKWARD: %s", ctx, pa_strerror(st));
		double *want[MAXIN], scale = 0;
		want_grads(&B, want, ctx);
		for (int i = 0; i < k->num_inputs; i++)   /* the largest gradient */
			for (size_t e = 0; i != skip && e < (size_t)(B.S.batch * B.S.heads *
			     rows_of(k, &B.S, i) * k->inputs[i].cols); e++)
				scale = fmax(scale, fabs(want[i][e]));
		for (int i = 0; i < k->num_inputs; i++) {
			char name[64];
			snprintf(name, sizeof name, "gradient of %s", k->inputs[i].name);
			if (i == skip)
				ck_assert_msg(memcmp(before[i], B.grad[i].p,
				                     (B.grad[i].len + GUARD) * sizeof(float)) == 0,
				              "%s: the NULL gradient was written", ctx);
			else {
				ck_assert_msg(gaps_kept(&B.grad[i], before[i]),
				              "%s: %s written between rows", ctx, name);
				/* where the reference is 0 (n = 1), float roundoff of
				 * the largest gradient's size: a few ulps, more for an
				 * approximate kernel, whose network gets ⟨g, u⟩ − ⟨g,
				 * out⟩ from two contractions of many terms */
				compare(&B.grad[i], want[i], &B.S, k->inputs[i].variable == 1,
				        TOL, (k->error > 0 ? 1e-5 : 1e-6) * scale, ctx, name);
			}
			free(before[i]), free(want[i]);
		}
		bufs_free(&B);
	}
}
END_TEST

/* refused: K_call(c) gives status want and writes neither out, nor
 * (grad != NULL) that tensor. */
static void refused(const pa_kernel_info *k, const pa_call *c, T *out, T *grad,
                    pa_status want, const char *why)
{
	float *o = out ? t_copy(out) : NULL, *g = grad ? t_copy(grad) : NULL;
	pa_status st = k->call(c);
	ck_assert_msg(st == want, "%s: %s: got '%s', want '%s'", k->name, why,
	              pa_strerror(st), pa_strerror(want));
	if (o)
		ck_assert_msg(memcmp(o, out->p, (out->len + GUARD) * sizeof(float)) == 0,
		              "%s: %s: out written", k->name, why);
	if (g)
		ck_assert_msg(memcmp(g, grad->p, (grad->len + GUARD) * sizeof(float)) == 0,
		              "%s: %s: a gradient written", k->name, why);
	free(o), free(g);
}

/* forward_statuses: the refusals of a forward call. */
static void forward_statuses(const pa_kernel_info *k, Bufs *B)
{
	pa_call c;
	refused(k, NULL, NULL, NULL, PA_ERR_NULL, "NULL call");
#define TRY(edit, want, why) (c = B->c, edit, refused(k, &c, &B->out, NULL, want, why))
	TRY(c.inputs = NULL, PA_ERR_NULL, "NULL inputs");
	const float *none[MAXIN];
	memcpy(none, B->inp, sizeof none);
	none[k->num_inputs - 1] = NULL;
	TRY(c.inputs = none, PA_ERR_NULL, "a NULL input");
	TRY(c.out = NULL, PA_ERR_NULL, "NULL out");
	TRY(c.mode = 7, PA_ERR_ARGUMENT, "mode 7");
	TRY(c.batch = 0, PA_ERR_ARGUMENT, "batch 0");
	TRY(c.nq = 0, PA_ERR_ARGUMENT, "nq 0");
	TRY(c.heads = -1, PA_ERR_ARGUMENT, "heads -1");
	TRY((c.nq = c.nk + 1, c.q_lengths = NULL), PA_ERR_ARGUMENT, "nq > nk");
	const int64_t longer[4] = {B->S.nk + 1, 1, 1, 1}, negative[4] = {-1, 1, 1, 1};
	const int64_t one[4] = {1, 1, 1, 1}, two[4] = {2, 2, 2, 2};
	TRY(c.k_lengths = longer, PA_ERR_ARGUMENT, "a length past nk");
	TRY(c.k_lengths = negative, PA_ERR_ARGUMENT, "a negative length");
	TRY((c.k_lengths = one, c.q_lengths = two), PA_ERR_ARGUMENT, "q_len > k_len");
	pa_layout bad[MAXIN];
	memcpy(bad, B->inl, sizeof bad);
	bad[0].row = k->inputs[0].cols - 1;
	TRY(c.in_layout = bad, PA_ERR_ARGUMENT, "a row stride below a row");
	memcpy(bad, B->inl, sizeof bad);
	bad[0].head = -3;
	TRY(c.in_layout = bad, PA_ERR_ARGUMENT, "a negative stride");
	TRY(c.out_layout.head = 1, PA_ERR_ARGUMENT, "out's heads overlapping");
	TRY(c.out = (float *)B->inp[0], PA_ERR_ARGUMENT, "out overlapping an input");
	TRY(c.out = (float *)B->inp[0] + B->in[0].len - 1, PA_ERR_ARGUMENT,
	    "out's first float the last of an input");
#undef TRY
	float keep = B->in[0].p[0];
	B->in[0].p[0] = INFINITY;        /* row 0 of entry 0 is read */
	refused(k, &B->c, &B->out, NULL, PA_ERR_NONFINITE, "an infinite input");
	B->in[0].p[0] = keep;
	if (!k->backward) {
		c = B->c, c.mode = PA_TRAIN, c.saved = B->out.p + 1;
		refused(k, &c, NULL, NULL, PA_ERR_UNSUPPORTED, "PA_TRAIN without a backward");
		ck_assert_int_eq(k->call_saved_floats(&c), -1);
	}
}

/* backward_statuses: the refusals of training calls. */
static void backward_statuses(const pa_kernel_info *k, Bufs *B)
{
	pa_call c = B->c;
	c.mode = PA_TRAIN;
	B->saved_len = k->call_saved_floats(&c);
	ck_assert(B->saved_len > 0);
	B->saved = calloc((size_t)B->saved_len + GUARD, sizeof(float));
	ck_assert(B->saved != NULL);
	refused(k, &c, &B->out, NULL, PA_ERR_NULL, "PA_TRAIN with NULL saved");
	c.saved = (float *)B->inp[0];
	refused(k, &c, &B->out, NULL, PA_ERR_ARGUMENT, "saved overlapping an input");
	c.saved = B->saved;
	ck_assert_int_eq(k->call(&c), PA_OK);
	bufs_grad(B, -1, 5);
	c.mode = PA_BACKWARD;
	c.grad_out = B->gout.p, c.grad_out_layout = B->gout.l;
	c.grad_inputs = B->gradp, c.grad_layout = B->gradl;
	pa_call d;
#define TRY(edit, want, why) (d = c, edit, refused(k, &d, NULL, &B->grad[0], want, why))
	TRY(d.grad_out = NULL, PA_ERR_NULL, "NULL grad_out");
	TRY(d.grad_inputs = NULL, PA_ERR_NULL, "NULL grad_inputs");
	TRY(d.saved = NULL, PA_ERR_NULL, "PA_BACKWARD with NULL saved");
	const int64_t shorter[4] = {1, 1, 1, 1};
	TRY((d.k_lengths = shorter, d.q_lengths = shorter), PA_ERR_ARGUMENT,
	    "lengths other than the train's");
	TRY(d.grad_out = B->grad[0].p, PA_ERR_ARGUMENT, "a gradient overlapping grad_out");
	float *twice[MAXIN];
	memcpy(twice, B->gradp, sizeof twice);
	twice[k->num_inputs - 1] = twice[0];
	if (k->num_inputs > 1)
		TRY(d.grad_inputs = twice, PA_ERR_ARGUMENT, "two gradients at one place");
	TRY(d.grad_inputs = (float *const *)(float *[MAXIN]){(float *)B->inp[0]},
	    PA_ERR_ARGUMENT, "a gradient overlapping an input");
#undef TRY
	float keep = B->gout.p[0];
	B->gout.p[0] = NAN;
	refused(k, &c, NULL, &B->grad[0], PA_ERR_NONFINITE, "NaN in grad_out");
	B->gout.p[0] = keep;
	ck_assert_int_eq(k->call(&c), PA_OK);
	keep = B->in[0].p[0];        /* a train that fails: saved unusable */
	B->in[0].p[0] = INFINITY;
	d = c, d.mode = PA_TRAIN;
	ck_assert_int_eq(k->call(&d), PA_ERR_NONFINITE);
	B->in[0].p[0] = keep;
	refused(k, &c, NULL, &B->grad[0], PA_ERR_ARGUMENT, "the saved of a failed train");
}

START_TEST(statuses)
{
	const pa_kernel_info *k = e2e_kernels[_i];
	const char *only = getenv("E2E_KERNEL");
	if (only && *only && strcmp(only, k->name) != 0)
		return;
	Shape S = fixed_shapes[3]; /* lengths given, rows padded apart */
	Bufs B;
	bufs_make(&B, k, &S, 11);
	forward_statuses(k, &B);
	if (k->backward)
		backward_statuses(k, &B);
	bufs_free(&B);
}
END_TEST

/* call_suite: the loop test cases over every kernel of the table. */
static Suite *call_suite(void)
{
	Suite *s = suite_create("call");
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
	make_shapes();
	SRunner *sr = srunner_create(call_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
