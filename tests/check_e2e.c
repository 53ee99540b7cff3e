/*
 * check_e2e.c - the end-to-end checks: every kernel that polyc compiled from
 * a list of polynomials (tests/e2e/polys*.txt, turned into kernels by
 * tests/e2e/mkcases.sh) is run on random inputs and compared with
 * pa_reference, the brute-force evaluator of doc/design.md, "The computation".
 *
 * The binary links one cases object and its table (e2e_kernels[]); each
 * kernel is one test of three loop test cases:
 *   accuracy  scores of order 1, n in {1, 2, 7, 17, 64, 100, 257} × batch {1, 3}
 *             as far as the reference's cost allows (below), relative error
 *             per output row ≤ 1e-4;
 *   huge      factor entries scaled so every monomial's score reaches ±1e4:
 *             outputs finite and within HUGE_TOL of the reference.  A float
 *             kernel holds a score s to about |s|·2^-24 (6e-4 at 1e4), and
 *             where the top scores of a row nearly tie that moves their
 *             weights by as much: HUGE_TOL allows 4 such roundings beyond
 *             TOL, the conditioning of softmax in float32, not a looser
 *             algorithm (rows without near-ties still agree within 1e-4);
 *   abi       K_info describes the inputs doc/design.md, "The binary
 *             interface" prescribes, the kernel returns PA_OK, writes every output and nothing around it, leaves
 *             its inputs alone, and refuses bad arguments with the right code:
 *             NULL pointers, sizes ≤ 0 or overflowing, NaN and ±Inf in every
 *             input;
 *   nomem     (once per binary) the first tree kernel with too little address
 *             space returns PA_ERR_NOMEM, leaves out alone and leaks nothing.
 *
 * The reference costs about batch · n^t · (Σ_m k_m·head_dim + values·value_dim)
 * operations; sizes whose cost passes REF_BUDGET are skipped (n ≤ 7 always
 * runs).  The abi test runs kernels whose class is not "tree" (their own
 * cost grows faster than n²) on n ≤ ABI_GENERAL_N.
 *
 * The relative error of a row is max |out - ref| / max |ref| over the row.
 * When the values nearly cancel, max |ref| is far below the size of what the
 * kernel summed, and float rounding alone can exceed 1e-4 of it; a row that
 * fails is then measured again against the reference computed with |V|
 * (Σ w·Π|v|, the size of the terms summed), and fails only if it fails both.
 *
 * Environment: E2E_KERNEL=e2e_12 runs that kernel only (the other tests pass
 * at once); E2E_VERBOSE=1 prints each kernel's sizes and errors.
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

#define TOL 1e-4             /* relative error allowed per output row */
#define HUGE_SCORE 1e4       /* |score| each monomial reaches in "huge" */
#define HUGE_TOL (TOL + 4 * HUGE_SCORE * 0x1p-24) /* see "huge" above */
#define REF_BUDGET 4e7       /* reference operations allowed per call */
#define SMALL_N 7            /* n always run, whatever the reference costs */
#define ABI_GENERAL_N 17     /* largest abi n for graphs that are not trees */
#define GUARD 64             /* guard floats on each side of out */

static const int64_t acc_sizes[] = {1, 2, 7, 17, 64, 100, 257};
static const int64_t acc_batches[] = {1, 3};
static const int64_t huge_sizes[] = {2, 7, 64};
static const int64_t abi_sizes[] = {1, 5, 17, 65, 130};

#define COUNT(a) ((int)(sizeof(a) / sizeof(a)[0]))

#include "e2e_inputs.h"

/* size_ok: (n, batch) is affordable for k's reference and its class. */
static bool size_ok(const pa_kernel_info *k, int64_t n, int64_t batch)
{
	return n <= SMALL_N || ref_cost(k, n, batch) <= REF_BUDGET;
}

/* describe: "e2e_12 (polys.txt:21) 'x1*x2' [tree, exact] head_dim 3
 * value_dim 5 n 7 batch 3" into buf, for failure messages. */
static const char *describe(char *buf, size_t len, int idx, int64_t n,
                            int64_t batch)
{
	const pa_kernel_info *k = e2e_kernels[idx];
	snprintf(buf, len, "%s (%s) '%s' [%s, %s] head_dim %d value_dim %d "
	         "n %lld batch %lld", k->name, e2e_origins[idx], k->polynomial,
	         k->graph_class, k->algorithm, k->head_dim, k->value_dim,
	         (long long)n, (long long)batch);
	return buf;
}

/* ------------------------------------------------- reference, compare */

/* abs_values: *dst = in with every value matrix replaced by a fresh
 * copy holding |V|; the factors are shared. */
static void abs_values(const Inputs *in, Inputs *dst)
{
	*dst = *in;
	for (int i = 0; i < in->k->num_inputs; i++) {
		if (in->k->inputs[i].kind != PA_INPUT_VALUE)
			continue;
		dst->buf[i] = malloc(inputs_len(in, i) * sizeof(float));
		ck_assert(dst->buf[i] != NULL);
		for (size_t e = 0; e < inputs_len(in, i); e++)
			dst->buf[i][e] = fabsf(in->buf[i][e]);
	}
}

/* free_values: release the value copies abs_values made. */
static void free_values(Inputs *in)
{
	for (int i = 0; i < in->k->num_inputs; i++)
		if (in->k->inputs[i].kind == PA_INPUT_VALUE)
			free(in->buf[i]);
}

/* reference: pa_reference on every batch entry, the entries in parallel
 * (the reference is single-threaded and pure); the first failure, or
 * PA_OK. */
static pa_status reference(const Inputs *in, double *ref)
{
	int vd = in->k->value_dim, bad = PA_OK;
#pragma omp parallel for schedule(dynamic, 1) reduction(min : bad)
	for (int64_t b = 0; b < in->batch; b++) {
		const float *ptrs[256];
		inputs_view(in, b, ptrs);
		int st = pa_reference(in->k, 1, in->n, ptrs, ref + b * in->n * vd);
		bad = st < bad ? st : bad;
	}
	return (pa_status)bad;
}

/* reference_sizes: the reference with |V|, Σ w·Π|v|: how large the terms
 * are that each output element sums. */
static pa_status reference_sizes(const Inputs *in, double *sizes)
{
	Inputs absd;
	abs_values(in, &absd);
	pa_status st = reference(&absd, sizes);
	free_values(&absd);
	return st;
}

/* The worst row of a comparison and its worst element. */
typedef struct Worst {
	double rel;              /* max |out - ref| / row size; inf if not finite */
	int64_t row;             /* batch entry × n + position */
	int col;
	double got, want, size;  /* the element and its row's size */
} Worst;

/* row_size: max |ref| over the row, or over sizes' row if larger. */
static double row_size(const double *ref, const double *sizes, int vd)
{
	double s = 1e-30;
	for (int v = 0; v < vd; v++) {
		s = fmax(s, fabs(ref[v]));
		if (sizes)
			s = fmax(s, sizes[v]);
	}
	return s;
}

/* compare: the worst relative row error of out against ref (rows × vd);
 * rows are measured by row_size(ref, sizes).  A non-finite output or
 * reference element counts as an infinite error. */
static Worst compare(const float *out, const double *ref, const double *sizes,
                     int64_t rows, int vd)
{
	Worst w = {.rel = -1};
	for (int64_t r = 0; r < rows; r++) {
		const double *rr = ref + r * vd;
		double size = row_size(rr, sizes ? sizes + r * vd : NULL, vd);
		for (int v = 0; v < vd; v++) {
			float o = out[r * vd + v];
			double e = isfinite(o) && isfinite(rr[v]) ?
			           fabs(o - rr[v]) / size : INFINITY;
			if (e > w.rel)
				w = (Worst){e, r, v, o, rr[v], size};
		}
	}
	return w;
}

/* check_against_reference: compare the kernel's out with the reference of
 * in; on a failing row retry with the |V| sizes (see the file comment),
 * and fail with what, n, batch and the worst element. */
static void check_against_reference(const Inputs *in, const float *out,
                                    const char *what, double tol)
{
	const pa_kernel_info *k = in->k;
	int64_t rows = in->batch * in->n;
	double *ref = malloc(rows * k->value_dim * sizeof *ref);
	ck_assert(ref != NULL);
	pa_status st = reference(in, ref);
	ck_assert_msg(st == PA_OK, "%s: pa_reference: %s", what, pa_strerror(st));
	Worst w = compare(out, ref, NULL, rows, k->value_dim), ws = w;
	if (w.rel > tol && isfinite(w.rel)) {
		double *sizes = malloc(rows * k->value_dim * sizeof *sizes);
		ck_assert(sizes != NULL && reference_sizes(in, sizes) == PA_OK);
		ws = compare(out, ref, sizes, rows, k->value_dim);
		free(sizes);
	}
	if (getenv("E2E_VERBOSE"))
		fprintf(stderr, "%s: max rel error %.3g (%.3g against |V|)\n",
		        what, w.rel, ws.rel);
	free(ref);
	ck_assert_msg(ws.rel <= tol,
	              "%s: max relative error %.3g > %g (%.3g against the |V| "
	              "reference) at batch %lld row %lld col %d: got %.9g, want "
	              "%.9g, row max |ref| %.6g", what, w.rel, tol, ws.rel,
	              (long long)(w.row / in->n), (long long)(w.row % in->n),
	              w.col, w.got, w.want, w.size);
}

/* run_kernel: out = k(in), asserting PA_OK.  out has batch·n·value_dim
 * floats, set to NaN first so a row the kernel skips cannot pass. */
static void run_kernel(const Inputs *in, float *out, const char *what)
{
	const pa_kernel_info *k = in->k;
	const float *ptrs[256];
	size_t len = (size_t)(in->batch * in->n * k->value_dim);
	for (size_t e = 0; e < len; e++)
		out[e] = NAN;
	inputs_view(in, 0, ptrs);
	ck_assert_msg(k->run != NULL, "%s: K_info.run is NULL", k->name);
	pa_status st = k->run(in->batch, in->n, ptrs, out);
	ck_assert_msg(st == PA_OK, "%s: returned %d (%s)", what, (int)st,
	              pa_strerror(st));
}

/* ------------------------------------------------------------ accuracy */

/* accuracy_once: one (n, batch) of the accuracy test. */
static void accuracy_once(int idx, int64_t n, int64_t batch)
{
	const pa_kernel_info *k = e2e_kernels[idx];
	char what[512];
	describe(what, sizeof what, idx, n, batch);
	uint64_t s = rnd_seed(1, idx, n, batch);
	Inputs in;
	inputs_alloc(&in, k, n, batch);
	fill_factors_unit(&in, &s);
	fill_values(&in, &s);
	float *out = malloc(batch * n * k->value_dim * sizeof *out);
	ck_assert(out != NULL);
	run_kernel(&in, out, what);
	check_against_reference(&in, out, what, TOL);
	free(out);
	inputs_free(&in);
}

/* accuracy: kernel _i against the reference on every affordable size. */
START_TEST(accuracy)
{
	const pa_kernel_info *k = e2e_kernels[_i];
	if (skip_kernel(k))
		return;
	for (int a = 0; a < COUNT(acc_sizes); a++)
		for (int b = 0; b < COUNT(acc_batches); b++)
			if (size_ok(k, acc_sizes[a], acc_batches[b]))
				accuracy_once(_i, acc_sizes[a], acc_batches[b]);
}
END_TEST

/* ---------------------------------------------------------------- huge */

/* huge_once: one n of the huge-scores test, batch 2. */
static void huge_once(int idx, int64_t n)
{
	const pa_kernel_info *k = e2e_kernels[idx];
	int64_t batch = 2;
	char what[512];
	describe(what, sizeof what, idx, n, batch);
	uint64_t s = rnd_seed(2, idx, n, batch);
	Inputs in;
	inputs_alloc(&in, k, n, batch);
	double reached = fill_factors_huge(&in, &s);
	fill_values(&in, &s);
	ck_assert_msg(reached >= HUGE_SCORE / 4 && reached <= HUGE_SCORE * 4,
	              "%s: test inputs reach |score| %.3g, not about %g", what,
	              reached, HUGE_SCORE);
	float *out = malloc(batch * n * k->value_dim * sizeof *out);
	ck_assert(out != NULL);
	run_kernel(&in, out, what);
	check_against_reference(&in, out, what, HUGE_TOL);
	free(out);
	inputs_free(&in);
}

/* huge: scores of ±1e4 give finite outputs that match the reference. */
START_TEST(huge)
{
	const pa_kernel_info *k = e2e_kernels[_i];
	if (skip_kernel(k))
		return;
	for (int a = 0; a < COUNT(huge_sizes); a++)
		if (size_ok(k, huge_sizes[a], 2))
			huge_once(_i, huge_sizes[a]);
}
END_TEST

/* ----------------------------------------------------------------- abi */

/* check_info: K_info lists the factors of each monomial in order, then the
 * values by increasing variable, with head_dim and value_dim columns. */
static void check_info(const pa_kernel_info *k)
{
	int i = 0, prev_var = 0, factors = 0;
	for (; i < k->num_inputs && k->inputs[i].kind == PA_INPUT_FACTOR; i++) {
		const pa_input_desc *d = &k->inputs[i];
		ck_assert_msg(d->cols == k->head_dim && d->monomial >= 0 &&
		              d->monomial < k->num_monomials &&
		              (i == 0 || d->monomial >= k->inputs[i - 1].monomial),
		              "%s: input %d (%s) is not a factor of a monomial in "
		              "order with head_dim columns", k->name, i, d->name);
		factors++;
	}
	for (; i < k->num_inputs; i++) {
		const pa_input_desc *d = &k->inputs[i];
		ck_assert_msg(d->kind == PA_INPUT_VALUE && d->cols == k->value_dim &&
		              d->variable > prev_var && d->variable <= k->num_vars,
		              "%s: input %d (%s) is not a value matrix in variable "
		              "order with value_dim columns", k->name, i, d->name);
		prev_var = d->variable;
	}
	for (int m = 0; m < k->num_monomials; m++)
		ck_assert_msg(degree_of(k, m) >= 1, "%s: monomial %d has no factors",
		              k->name, m);
}

/* refuse_nonfinite: with entry e of input i set to x (NaN or ±Inf), the
 * kernel returns PA_ERR_NONFINITE; the entry is restored. */
static void refuse_nonfinite(const Inputs *in, float *out, int i, size_t e,
                             float x)
{
	const float *ptrs[256];
	inputs_view(in, 0, ptrs);
	float saved = in->buf[i][e];
	in->buf[i][e] = x;
	ck_assert_msg(in->k->run(in->batch, in->n, ptrs, out) == PA_ERR_NONFINITE,
	              "%s: %g in input %d (%s) not refused", in->k->name, x, i,
	              in->k->inputs[i].name);
	in->buf[i][e] = saved;
}

/* refuse_aliasing: out overlapping any input, wholly or by one float at
 * either end, gives PA_ERR_ARGUMENT and leaves the input alone. */
static void refuse_aliasing(const Inputs *in)
{
	const pa_kernel_info *k = in->k;
	size_t olen = (size_t)(in->batch * in->n * k->value_dim);
	for (int i = 0; i < k->num_inputs; i++) {
		size_t ilen = inputs_len(in, i);
		float *keep = malloc(ilen * sizeof *keep);
		ck_assert(keep != NULL);
		memcpy(keep, in->buf[i], ilen * sizeof *keep);
		const float *ptrs[256];
		inputs_view(in, 0, ptrs);
		float *starts[] = {in->buf[i], in->buf[i] + ilen - 1,
		                   in->buf[i] - (olen - 1)};
		for (int a = 0; a < 3; a++)
			ck_assert_msg(k->run(in->batch, in->n, ptrs, starts[a]) ==
			              PA_ERR_ARGUMENT, "%s: out overlapping input %d "
			              "(%s, case %d) not refused", k->name, i,
			              k->inputs[i].name, a);
		ck_assert_msg(memcmp(keep, in->buf[i], ilen * sizeof *keep) == 0,
		              "%s: a refused call wrote to input %d", k->name, i);
		free(keep);
	}
}

/* refuse_range: value entries of 1e36 in every value input (outputs or
 * sums of them overflow float) give PA_ERR_RANGE, never PA_OK with an
 * infinite output; the inputs are restored. */
static void refuse_range(const Inputs *in, float *out)
{
	const pa_kernel_info *k = in->k;
	const float *ptrs[256];
	inputs_view(in, 0, ptrs);
	bool any = false;
	float keep[256];
	for (int i = 0; i < k->num_inputs; i++)
		if (k->inputs[i].kind == PA_INPUT_VALUE) {
			keep[i] = in->buf[i][0];
			in->buf[i][0] = 1e36f;
			any = true;
		}
	pa_status st = k->run(in->batch, in->n, ptrs, out);
	if (any)
		ck_assert_msg(st == PA_ERR_RANGE, "%s: value entries of 1e36 at "
		              "n = %lld: status %d, not PA_ERR_RANGE", k->name,
		              (long long)in->n, st);
	for (size_t e = 0; st == PA_OK && e < (size_t)(in->batch * in->n * k->value_dim); e++)
		ck_assert_msg(isfinite(out[e]), "%s: PA_OK with out[%zu] = %g",
		              k->name, e, out[e]);
	for (int i = 0; i < k->num_inputs; i++)
		if (k->inputs[i].kind == PA_INPUT_VALUE)
			in->buf[i][0] = keep[i];
}

/* check_refusals: bad sizes give PA_ERR_ARGUMENT, NULL pointers
 * PA_ERR_NULL and NaN or infinite inputs PA_ERR_NONFINITE, without
 * touching out. */
static void check_refusals(const Inputs *in, float *out, size_t len)
{
	const pa_kernel_info *k = in->k;
	const float *ptrs[256];
	inputs_view(in, 0, ptrs);
	float *copy = malloc(len * sizeof *copy);
	ck_assert(copy != NULL);
	memcpy(copy, out, len * sizeof *copy);
	ck_assert_int_eq(k->run(0, in->n, ptrs, out), PA_ERR_ARGUMENT);
	ck_assert_int_eq(k->run(in->batch, 0, ptrs, out), PA_ERR_ARGUMENT);
	ck_assert_int_eq(k->run(in->batch, -1, ptrs, out), PA_ERR_ARGUMENT);
	ck_assert_int_eq(k->run(in->batch, in->n, NULL, out), PA_ERR_NULL);
	ck_assert_int_eq(k->run(in->batch, in->n, ptrs, NULL), PA_ERR_NULL);
	ck_assert_int_eq(k->run(INT64_MAX, in->n, ptrs, out), PA_ERR_ARGUMENT);
	const float *hole = ptrs[k->num_inputs - 1];
	ptrs[k->num_inputs - 1] = NULL;
	ck_assert_int_eq(k->run(in->batch, in->n, ptrs, out), PA_ERR_NULL);
	ptrs[k->num_inputs - 1] = hole;
	for (int i = 0; i < k->num_inputs; i++) {
		size_t last = inputs_len(in, i) - 1;
		refuse_nonfinite(in, out, i, i % 2 ? 0 : last, NAN);
		refuse_nonfinite(in, out, i, last / 2, i % 2 ? -INFINITY : INFINITY);
	}
	ck_assert_msg(memcmp(copy, out, len * sizeof *copy) == 0,
	              "%s: a refused call wrote to out", k->name);
	free(copy);
	refuse_aliasing(in);
	refuse_range(in, out);
}

/* GUARD_BITS: the NaN that fills the guards, one no kernel computes. */
#define GUARD_BITS 0x7fa5a5a5u

/* guarded_alloc: len floats with GUARD guard floats on each side; returns
 * the first of the len. */
static float *guarded_alloc(size_t len)
{
	uint32_t *buf = malloc((len + 2 * GUARD) * sizeof *buf);
	ck_assert(buf != NULL);
	for (size_t e = 0; e < len + 2 * GUARD; e++)
		buf[e] = GUARD_BITS;
	return (float *)(buf + GUARD);
}

/* guard_intact: the GUARD floats at g still hold GUARD_BITS. */
static bool guard_intact(const float *g)
{
	for (int e = 0; e < GUARD; e++) {
		uint32_t bits;
		memcpy(&bits, g + e, sizeof bits);
		if (bits != GUARD_BITS)
			return false;
	}
	return true;
}

/* inputs_same: a and b hold the same floats. */
static bool inputs_same(const Inputs *a, const Inputs *b, int i)
{
	return memcmp(a->buf[i], b->buf[i], inputs_len(a, i) * sizeof(float)) == 0;
}

/* abi_once: run k on (n, batch 2) inside guards; every output finite,
 * guards and inputs unchanged, bad calls refused. */
static void abi_once(int idx, int64_t n)
{
	const pa_kernel_info *k = e2e_kernels[idx];
	int64_t batch = 2;
	char what[512];
	describe(what, sizeof what, idx, n, batch);
	uint64_t s = rnd_seed(3, idx, n, batch);
	Inputs in, saved;
	inputs_alloc(&in, k, n, batch);
	inputs_alloc(&saved, k, n, batch);
	fill_factors_unit(&in, &s);
	fill_values(&in, &s);
	for (int i = 0; i < k->num_inputs; i++)
		memcpy(saved.buf[i], in.buf[i], inputs_len(&in, i) * sizeof(float));
	size_t len = (size_t)(batch * n * k->value_dim);
	float *out = guarded_alloc(len);
	run_kernel(&in, out, what);
	ck_assert_msg(guard_intact(out - GUARD), "%s: wrote before out", what);
	ck_assert_msg(guard_intact(out + len), "%s: wrote after out", what);
	for (size_t e = 0; e < len; e++)
		ck_assert_msg(isfinite(out[e]), "%s: out[%zu] = %g (not written?)",
		              what, e, out[e]);
	for (int i = 0; i < k->num_inputs; i++)
		ck_assert_msg(inputs_same(&in, &saved, i), "%s: the kernel changed "
		              "input %d (%s)", what, i, k->inputs[i].name);
	check_refusals(&in, out, len);
	free(out - GUARD);
	inputs_free(&saved);
	inputs_free(&in);
}

/* abi: kernel _i keeps the binary interface (doc/design.md). */
START_TEST(abi)
{
	const pa_kernel_info *k = e2e_kernels[_i];
	if (skip_kernel(k))
		return;
	check_info(k);
	for (int a = 0; a < COUNT(abi_sizes); a++)
		if (is_tree(k) || abi_sizes[a] <= ABI_GENERAL_N)
			abi_once(_i, abi_sizes[a]);
}
END_TEST

/* --------------------------------------------------------------- nomem */

/* nomem_child: in a child process whose address space may grow by
 * NOMEM_SLACK bytes at most, k on n rows (a larger workspace) must return
 * PA_ERR_NOMEM and leave out alone; then, the limit lifted, everything is
 * freed, so that LeakSanitizer (in a sanitized build) sees any leak at
 * exit.  Returns the child's exit status, 0 if so. */
#define NOMEM_SLACK ((size_t)32 << 20)
static int nomem_child(const pa_kernel_info *k, int64_t n)
{
	Inputs in;
	uint64_t s = rnd_seed(4, 0, n, 1);
	inputs_alloc(&in, k, n, 1);
	fill_factors_unit(&in, &s);
	fill_values(&in, &s);
	const float *ptrs[256];
	inputs_view(&in, 0, ptrs);
	size_t len = (size_t)n * k->value_dim;
	float *out = malloc(len * sizeof *out);
	if (!out)
		return 3;
	memset(out, 0x5a, len * sizeof *out);
	struct rlimit rl, saved;
	if (getrlimit(RLIMIT_AS, &saved) != 0)
		return 4;
	rl = saved;
	rl.rlim_cur = vm_bytes() + NOMEM_SLACK;
	if (setrlimit(RLIMIT_AS, &rl) != 0)
		return 4;
	pa_status st = k->run(1, n, ptrs, out);
	if (setrlimit(RLIMIT_AS, &saved) != 0)
		return 4;
	int bad = 0;
	for (size_t e = 0; e < len; e++)
		bad |= ((unsigned char *)out)[e * sizeof *out] != 0x5a;
	free(out);
	inputs_free(&in);
	return bad ? 2 : st == PA_ERR_NOMEM ? 0 : 1;
}

/* nomem_rows = rows whose workspace surely passes 2·NOMEM_SLACK: every
 * message holds at least queries and keys of head_dim columns, a key bias
 * and a log-normalizer per row. */
static int64_t nomem_rows(const pa_kernel_info *k)
{
	size_t per_row = (2 * (size_t)k->head_dim + 2) * sizeof(float);
	return (int64_t)(2 * NOMEM_SLACK / per_row + 1);
}

/* nomem: the first tree kernel, in a child process under RLIMIT_AS, on
 * more rows than its workspace may take: PA_ERR_NOMEM, out untouched,
 * nothing leaked. */
START_TEST(nomem)
{
	const pa_kernel_info *k = NULL;
	for (int i = 0; i < e2e_nkernels && !k; i++)
		if (is_tree(e2e_kernels[i]) && !skip_kernel(e2e_kernels[i]))
			k = e2e_kernels[i];
	if (!k)
		return;
	fflush(NULL);
	pid_t pid = fork();
	ck_assert(pid >= 0);
	if (pid == 0)
		exit(nomem_child(k, nomem_rows(k)));
	int st;
	ck_assert(waitpid(pid, &st, 0) == pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	              "%s: out of address space: %s", k->name,
	              !WIFEXITED(st) ? "the child crashed" :
	              WEXITSTATUS(st) == 1 ? "not PA_ERR_NOMEM" :
	              WEXITSTATUS(st) == 2 ? "out was written" :
	              WEXITSTATUS(st) == 4 ? "setrlimit failed" :
	              "setup failed or a leak");
}
END_TEST

/* ---------------------------------------------------------------- main */

/* e2e_suite: the three loop test cases over every kernel of the table. */
static Suite *e2e_suite(void)
{
	Suite *s = suite_create("e2e");
	struct { const char *name; const TTest *test; } cases[] = {
		{"abi", abi}, {"accuracy", accuracy}, {"huge", huge},
	};
	for (int c = 0; c < COUNT(cases); c++) {
		TCase *tc = tcase_create(cases[c].name);
		tcase_set_timeout(tc, 120);
		tcase_add_loop_test(tc, cases[c].test, 0, e2e_nkernels);
		suite_add_tcase(s, tc);
	}
	TCase *tc = tcase_create("nomem");
	tcase_add_test(tc, nomem);
	suite_add_tcase(s, tc);
	return s;
}

/* main: run the suite; exit status 0 when every kernel passes. */
int main(void)
{
	SRunner *sr = srunner_create(e2e_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
