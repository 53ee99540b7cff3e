/*
 * check_approx.c - the approximate kernels keep their promise.
 *
 * Every kernel polyc compiled from tests/e2e/polys_approx.txt (algorithm
 * approx or auto, with a bound) is run on factor inputs drawn AT the
 * declared bound and compared with pa_reference (brute force, double).
 * K_info.error promises that every weight exp(s(ℓ)) is within a relative
 * ε of the truth; then every normalized weight is within 2ε/(1-ε) of its
 * own size, and an output differs from the reference by at most
 *
 *     2ε/(1-ε) · max |Π_j V_j|        (the largest value product)
 *
 * plus float rounding (FLOAT_SLACK, far below the tolerances tested).
 *   at_bound   three draws per size: entries uniform in [-B, B]; every
 *              entry exactly ±B; and the adversarial draw that splits each
 *              variable's rows between +B and -B with values +1 and -1,
 *              so scores sit at ±X and the error of exp(u) < 0 (the
 *              Taylor sum overshoots) and exp(u) > 0 (it undershoots)
 *              pull the output apart.  n in {1, 2, 7, 33, 100} and batch 1,
 *              2 as far as the reference's cost allows.
 *   over_bound one factor entry just past B: PA_ERR_BOUND with out
 *              untouched, or, when K_info.exact_fallback says so, the
 *              exact answer (relative error 1e-4).
 *   abi        NULL, bad sizes, NaN and Inf refused before anything else;
 *              a good call writes every output, nothing around it, and
 *              leaves its inputs alone.
 *   info       K_info says "approx" or "auto", and the promise is within
 *              the tolerance the file asked for.
 *
 * Environment: E2E_VERBOSE=1 prints each kernel's worst error against its
 * promise.
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

#define FLOAT_SLACK 2e-5     /* float rounding beside the promise */
#define EXACT_TOL 1e-4       /* the exact fallback's accuracy */
#define REF_BUDGET 3e7       /* reference operations allowed per call */

static const int64_t sizes[] = {1, 2, 7, 33, 100};
static const int64_t batches[] = {1, 2};

#define COUNT(a) ((int)(sizeof(a) / sizeof(a)[0]))

/* One call's inputs, batch × n × cols each. */
typedef struct Inputs {
	const pa_kernel_info *k;
	int64_t batch, n;
	float *buf[64];
} Inputs;

static size_t len_of(const Inputs *in, int i)
{
	return (size_t)(in->batch * in->n * in->k->inputs[i].cols);
}

static void inputs_alloc(Inputs *in, const pa_kernel_info *k, int64_t n,
                         int64_t batch)
{
	ck_assert(k->num_inputs > 0 && k->num_inputs <= 64);
	in->k = k, in->n = n, in->batch = batch;
	for (int i = 0; i < k->num_inputs; i++) {
		in->buf[i] = calloc(len_of(in, i), sizeof(float));
		ck_assert(in->buf[i] != NULL);
	}
}

static void inputs_free(Inputs *in)
{
	for (int i = 0; i < in->k->num_inputs; i++)
		free(in->buf[i]);
}

enum { DRAW_UNIFORM, DRAW_SIGNS, DRAW_SPLIT, NDRAWS };
static const char *const draw_names[] = {"uniform", "signs", "split"};

/* fill: factors by draw d at bound B (K_info.bound, a float; rounded down
 * if it were not, so no entry passes it), values uniform in [-1, 1) or, for the split draw,
 * +1 on rows whose factors are +B and -1 on the others. */
static void fill(Inputs *in, int d, uint64_t *s)
{
	const pa_kernel_info *k = in->k;
	float B = (float)k->bound;
	if ((double)B > k->bound)
		B = nextafterf(B, 0);
	for (int i = 0; i < k->num_inputs; i++) {
		const pa_input_desc *dsc = &k->inputs[i];
		for (int64_t r = 0; r < in->batch * in->n; r++) {
			int64_t l = r % in->n;
			/* split: x1's rows all +B; x_j's rows alternate by parity of
			 * l / j so different variables split differently */
			bool plus = dsc->variable == 1 || (l / dsc->variable) % 2 == 0;
			for (int c = 0; c < dsc->cols; c++) {
				float *x = &in->buf[i][r * dsc->cols + c];
				if (dsc->kind == PA_INPUT_VALUE)
					*x = d == DRAW_SPLIT ? (plus ? 1.0f : -1.0f)
					                     : (float)rnd_unit(s);
				else if (d == DRAW_UNIFORM)
					*x = (float)(B * rnd_unit(s));
				else if (d == DRAW_SIGNS)
					*x = rnd_next(s) & 1 ? B : -B;
				else
					*x = plus ? B : -B;
			}
		}
	}
}

/* value_max = max over rows of |Π_j V_j| bounded by Π_j max |V_j|. */
static double value_max(const Inputs *in)
{
	double m = 1;
	for (int i = 0; i < in->k->num_inputs; i++) {
		if (in->k->inputs[i].kind != PA_INPUT_VALUE)
			continue;
		double mi = 0;
		for (size_t e = 0; e < len_of(in, i); e++)
			mi = fmax(mi, fabsf(in->buf[i][e]));
		m *= mi;
	}
	return m;
}

/* reference: pa_reference on every batch entry. */
static void reference(const Inputs *in, double *ref)
{
	int vd = in->k->value_dim;
	for (int64_t b = 0; b < in->batch; b++) {
		const float *ptrs[64];
		for (int i = 0; i < in->k->num_inputs; i++)
			ptrs[i] = in->buf[i] + b * in->n * in->k->inputs[i].cols;
		ck_assert_int_eq(pa_reference(in->k, 1, in->n, ptrs, ref + b * in->n * vd),
		                 PA_OK);
	}
}

static bool affordable(const pa_kernel_info *k, int64_t n, int64_t batch)
{
	double per = k->num_monomials;
	for (int i = 0; i < k->num_inputs; i++)
		per += k->inputs[i].cols;
	return n <= 7 || batch * pow((double)n, k->num_vars) * per <= REF_BUDGET;
}

/* max_abs_diff = max |out - ref| over batch × n × value_dim entries. */
static double max_abs_diff(const float *out, const double *ref, size_t len)
{
	double w = 0;
	for (size_t e = 0; e < len; e++) {
		ck_assert_msg(isfinite(out[e]), "non-finite output at %zu", e);
		w = fmax(w, fabs(out[e] - ref[e]));
	}
	return w;
}

/* at_bound_once: one draw at one size; returns err / promise. */
static double at_bound_once(int idx, int d, int64_t n, int64_t batch)
{
	const pa_kernel_info *k = e2e_kernels[idx];
	Inputs in;
	uint64_t s = (uint64_t)idx << 40 ^ (uint64_t)d << 32 ^ (uint64_t)n << 4 ^ batch;
	inputs_alloc(&in, k, n, batch);
	fill(&in, d, &s);
	size_t len = (size_t)(batch * n * k->value_dim);
	float *out = malloc(len * sizeof *out);
	double *ref = malloc(len * sizeof *ref);
	ck_assert(out && ref);
	pa_status st = k->run(batch, n, (const float *const *)in.buf, out);
	ck_assert_msg(st == PA_OK, "%s (%s) %s n %lld: %s", k->name,
	              e2e_origins[idx], draw_names[d], (long long)n,
	              pa_strerror(st));
	reference(&in, ref);
	double err = max_abs_diff(out, ref, len);
	double eps = k->error;
	double promise = 2 * eps / (1 - eps) * value_max(&in) + FLOAT_SLACK;
	ck_assert_msg(err <= promise, "%s (%s) '%s' head_dim %d value_dim %d, "
	              "%s draw at bound %g, n %lld batch %lld: error %.3g over "
	              "the promised %.3g (weights within %.3g)", k->name,
	              e2e_origins[idx], k->polynomial, k->head_dim, k->value_dim,
	              draw_names[d], k->bound, (long long)n, (long long)batch, err,
	              promise, eps);
	free(out), free(ref);
	inputs_free(&in);
	return err / promise;
}

START_TEST(at_bound)
{
	const pa_kernel_info *k = e2e_kernels[_i];
	double worst = 0;
	int runs = 0;
	for (int d = 0; d < NDRAWS; d++)
		for (int a = 0; a < COUNT(sizes); a++)
			for (int b = 0; b < COUNT(batches); b++)
				if (affordable(k, sizes[a], batches[b])) {
					worst = fmax(worst, at_bound_once(_i, d, sizes[a], batches[b]));
					runs++;
				}
	ck_assert_int_gt(runs, 0);
	if (getenv("E2E_VERBOSE"))
		printf("%s %-40s hd %d vd %d: %d runs, worst error %.3f of the "
		       "promise (weights within %.3g)\n", k->name, k->polynomial,
		       k->head_dim, k->value_dim, runs, worst, k->error);
}
END_TEST

/* over_bound: one entry just past the bound. */
START_TEST(over_bound)
{
	const pa_kernel_info *k = e2e_kernels[_i];
	const int64_t n = 7, batch = 2;
	Inputs in;
	uint64_t s = 99 + _i;
	inputs_alloc(&in, k, n, batch);
	fill(&in, DRAW_UNIFORM, &s);
	int f = 0;
	while (k->inputs[f].kind != PA_INPUT_FACTOR)
		f++;
	float past = nextafterf((float)k->bound, INFINITY);
	if ((double)past <= k->bound)
		past = nextafterf(past, INFINITY);
	in.buf[f][len_of(&in, f) - 1] = -past;
	size_t len = (size_t)(batch * n * k->value_dim);
	float *out = malloc(len * sizeof *out);
	double *ref = malloc(len * sizeof *ref);
	ck_assert(out && ref);
	for (size_t e = 0; e < len; e++)
		out[e] = 12345.0f;
	pa_status st = k->run(batch, n, (const float *const *)in.buf, out);
	if (!k->exact_fallback) {
		ck_assert_msg(st == PA_ERR_BOUND, "%s: %s over the bound, expected "
		              "PA_ERR_BOUND", k->name, pa_strerror(st));
		for (size_t e = 0; e < len; e++)
			ck_assert_msg(out[e] == 12345.0f, "%s wrote out[%zu] although "
			              "it refused", k->name, e);
		ck_assert_ptr_nonnull(strstr(pa_strerror(st), "bound"));
	} else {
		ck_assert_int_eq(st, PA_OK);
		reference(&in, ref);
		for (int64_t r = 0; r < batch * n; r++) {
			double big = 0, diff = 0;
			for (int c = 0; c < k->value_dim; c++) {
				big = fmax(big, fabs(ref[r * k->value_dim + c]));
				diff = fmax(diff, fabs(out[r * k->value_dim + c] -
				                       ref[r * k->value_dim + c]));
			}
			ck_assert_msg(diff <= EXACT_TOL * fmax(big, 1e-3), "%s exact "
			              "fallback row %lld: error %.3g", k->name,
			              (long long)r, diff);
		}
	}
	free(out), free(ref);
	inputs_free(&in);
}
END_TEST

/* abi: bad arguments are refused before the bound is looked at (NULL,
 * sizes, NaN or Inf in a factor or a value), and a good call writes every
 * output and nothing around it and leaves its inputs alone. */
START_TEST(abi)
{
	const pa_kernel_info *k = e2e_kernels[_i];
	const int64_t n = 9, batch = 2, guard = 64;
	Inputs in, copy;
	uint64_t s = 7 + _i;
	inputs_alloc(&in, k, n, batch);
	inputs_alloc(&copy, k, n, batch);
	fill(&in, DRAW_UNIFORM, &s);
	for (int i = 0; i < k->num_inputs; i++)
		memcpy(copy.buf[i], in.buf[i], len_of(&in, i) * sizeof(float));
	size_t len = (size_t)(batch * n * k->value_dim);
	float *mem = malloc((len + 2 * guard) * sizeof *mem), *out = mem + guard;
	ck_assert(mem != NULL);
	for (size_t e = 0; e < len + 2 * guard; e++)
		mem[e] = -777.0f;
	const float *const *ins = (const float *const *)in.buf;
	ck_assert_int_eq(k->run(batch, n, NULL, out), PA_ERR_NULL);
	ck_assert_int_eq(k->run(batch, n, ins, NULL), PA_ERR_NULL);
	ck_assert_int_eq(k->run(0, n, ins, out), PA_ERR_ARGUMENT);
	ck_assert_int_eq(k->run(batch, -1, ins, out), PA_ERR_ARGUMENT);
	ck_assert_int_eq(k->run(batch, INT64_MAX / 2, ins, out), PA_ERR_ARGUMENT);
	for (int i = 0; i < k->num_inputs; i++) {
		float keep = in.buf[i][3];
		in.buf[i][3] = i % 2 ? INFINITY : NAN;
		ck_assert_msg(k->run(batch, n, ins, out) == PA_ERR_NONFINITE,
		              "%s: input %d non-finite not refused", k->name, i);
		in.buf[i][3] = keep;
	}
	for (int i = 0; i < k->num_inputs; i++) {
		const float *al = ins[i];
		ck_assert_msg(k->run(batch, n, ins, (float *)al + 1) == PA_ERR_ARGUMENT,
		              "%s: out overlapping input %d not refused", k->name, i);
		if (k->inputs[i].kind != PA_INPUT_VALUE)
			continue;
		float keep = in.buf[i][5];
		in.buf[i][5] = 1e36f;
		ck_assert_msg(k->run(batch, n, ins, out) == PA_ERR_RANGE,
		              "%s: value entry 1e36 in input %d: not PA_ERR_RANGE",
		              k->name, i);
		in.buf[i][5] = keep;
	}
	for (int i = 0; i < k->num_inputs; i++)
		ck_assert(memcmp(copy.buf[i], in.buf[i], len_of(&in, i) * sizeof(float)) == 0);
	for (size_t e = 0; e < len + 2 * guard; e++)
		ck_assert_msg(mem[e] == -777.0f, "%s: a refused call wrote out", k->name);
	ck_assert_int_eq(k->run(batch, n, ins, out), PA_OK);
	for (size_t e = 0; e < (size_t)guard; e++)
		ck_assert(mem[e] == -777.0f && out[len + e] == -777.0f);
	for (size_t e = 0; e < len; e++)
		ck_assert_msg(out[e] != -777.0f && isfinite(out[e]),
		              "%s: out[%zu] not written", k->name, e);
	for (int i = 0; i < k->num_inputs; i++)
		ck_assert(memcmp(copy.buf[i], in.buf[i], len_of(&in, i) * sizeof(float)) == 0);
	free(mem);
	inputs_free(&in);
	inputs_free(&copy);
}
END_TEST

/* info: the kernel is approximate and promises no more than asked. */
START_TEST(info)
{
	const pa_kernel_info *k = e2e_kernels[_i];
	ck_assert_msg(strcmp(k->algorithm, "approx") == 0 ||
	              strcmp(k->algorithm, "auto") == 0, "%s: algorithm %s",
	              k->name, k->algorithm);
	ck_assert(k->bound > 0);
	ck_assert(k->error > 0 && k->error < 1e-2 + 1e-12);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("approx");
	TCase *tc = tcase_create("approx");
	tcase_set_timeout(tc, 600);
	tcase_add_loop_test(tc, info, 0, e2e_nkernels);
	tcase_add_loop_test(tc, at_bound, 0, e2e_nkernels);
	tcase_add_loop_test(tc, over_bound, 0, e2e_nkernels);
	tcase_add_loop_test(tc, abi, 0, e2e_nkernels);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
