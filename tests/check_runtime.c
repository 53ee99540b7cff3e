/*
 * check_runtime.c - the runtime suite: status strings, the scalar and
 * vector exp against libm, workspace carving and alignment, the softmax
 * average, and pa_reference itself on cases whose answer is known in
 * closed form (so the reference every kernel is checked against is
 * checked too).
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pa_kernel.h"

/* ------------------------------------------------------------ status */

START_TEST(test_strerror)
{
	const pa_status all[] = {PA_OK, PA_ERR_ARGUMENT, PA_ERR_NULL,
	                         PA_ERR_NOMEM, PA_ERR_BOUND, PA_ERR_NONFINITE,
	                         PA_ERR_UNSUPPORTED, PA_ERR_RANGE};
	const int count = sizeof all / sizeof *all;
	const char *unknown = pa_strerror((pa_status)-99);
	ck_assert_ptr_nonnull(unknown);
	for (int i = 0; i < count; i++) {
		const char *s = pa_strerror(all[i]);
		ck_assert_ptr_nonnull(s);
		ck_assert_str_ne(s, unknown);
		for (int j = 0; j < i; j++)
			ck_assert_str_ne(s, pa_strerror(all[j]));
	}
	ck_assert_str_eq(pa_strerror(PA_OK), "success");
}
END_TEST

/* ---------------------------------------------------------------- exp */

#define EXP_TOL 1e-6

/* exp_error: relative error of got against e^x in double. */
static double exp_error(float got, float x)
{
	double want = exp((double)x);
	return fabs(got - want) / want;
}

START_TEST(test_expf_scalar)
{
	double worst = 0;
	for (float x = -87.0f; x <= 88.0f; x += 0.00731f)
		worst = fmax(worst, exp_error(pa_expf(x), x));
	ck_assert_msg(worst <= EXP_TOL, "pa_expf relative error %g", worst);
	ck_assert_float_eq(pa_expf(-INFINITY), 0.0f);
	ck_assert_float_eq(pa_expf(-1e4f), 0.0f);
	ck_assert_float_eq(pa_expf(0.0f), 1.0f);
	ck_assert(isinf(pa_expf(1e4f)));
	ck_assert(isnan(pa_expf(NAN)));
}
END_TEST

#if defined(__x86_64__)
/* exp8_worst: the largest relative error of pa_exp8 on [-87, 0]: the
 * range online softmax feeds it (scores minus their maximum). */
__attribute__((target("avx2,fma"))) static double exp8_worst(void)
{
	double worst = 0;
	float in[8], out[8];
	for (float x = -87.0f; x <= 0.0f; x += 8 * 0.00731f) {
		for (int i = 0; i < 8; i++)
			in[i] = x + i * 0.00731f;
		_mm256_storeu_ps(out, pa_exp8(_mm256_loadu_ps(in)));
		for (int i = 0; i < 8; i++)
			worst = fmax(worst, exp_error(out[i], in[i]));
	}
	_mm256_storeu_ps(out, pa_exp8(_mm256_set1_ps(-INFINITY)));
	return out[0] == 0.0f ? worst : INFINITY;
}

/* exp16_worst: the same for pa_exp16, on [-87, 88]. */
__attribute__((target("avx512f"))) static double exp16_worst(void)
{
	double worst = 0;
	float in[16], out[16];
	for (float x = -87.0f; x <= 88.0f; x += 16 * 0.00731f) {
		for (int i = 0; i < 16; i++)
			in[i] = fminf(x + i * 0.00731f, 88.0f);
		_mm512_storeu_ps(out, pa_exp16(_mm512_loadu_ps(in)));
		for (int i = 0; i < 16; i++)
			worst = fmax(worst, exp_error(out[i], in[i]));
	}
	_mm512_storeu_ps(out, pa_exp16(_mm512_set1_ps(-INFINITY)));
	return out[0] == 0.0f ? worst : INFINITY;
}
#endif

START_TEST(test_exp_vector)
{
#if defined(__x86_64__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
		double w = exp8_worst();
		ck_assert_msg(w <= EXP_TOL, "pa_exp8 relative error %g", w);
	}
	if (__builtin_cpu_supports("avx512f")) {
		double w = exp16_worst();
		ck_assert_msg(w <= EXP_TOL, "pa_exp16 relative error %g", w);
	}
#endif
}
END_TEST

/* ---------------------------------------------------------- workspace */

START_TEST(test_carve)
{
	size_t total = 0;
	size_t a = pa_carve(&total, 2, 3, 5);    /* 30 floats */
	size_t b = pa_carve(&total, 1, 7, 1);
	size_t c = pa_carve(&total, 4, 4, 4);
	ck_assert_uint_eq(a, 0);
	ck_assert_uint_eq(b % 16, 0);
	ck_assert_uint_ge(b, 30);
	ck_assert_uint_eq(c % 16, 0);
	ck_assert_uint_ge(c, b + 7);
	ck_assert_uint_ge(total, c + 64);
	float *ws = pa_alloc(total);
	ck_assert_ptr_nonnull(ws);
	ck_assert_uint_eq((uintptr_t)ws % 64, 0);
	memset(ws, 0, total * sizeof *ws);
	pa_free(ws);

	pa_carve(&total, INT64_MAX, INT64_MAX, 2);
	ck_assert_uint_eq(total, SIZE_MAX);
	pa_carve(&total, 1, 1, 1);
	ck_assert_uint_eq(total, SIZE_MAX);
	ck_assert_ptr_null(pa_alloc(SIZE_MAX));
	total = 0;
	pa_carve(&total, -1, 1, 1);
	ck_assert_uint_eq(total, SIZE_MAX);
}
END_TEST

START_TEST(test_softmax_average)
{
	enum { N = 5, STRIDE = 4, DIM = 3 };
	const float w[N] = {1e4f, 1e4f - 1, -3, 1e4f - 2, 0};
	float rows[N * STRIDE], out[DIM];
	for (int i = 0; i < N * STRIDE; i++)
		rows[i] = (float)(i % 7) - 2.5f;
	pa_softmax_average(N, w, rows, STRIDE, DIM, out);
	for (int v = 0; v < DIM; v++) {
		double num = 0, den = 0;
		for (int i = 0; i < N; i++) {
			double p = exp((double)w[i] - 1e4);
			num += p * rows[i * STRIDE + v], den += p;
		}
		ck_assert(isfinite(out[v]));
		ck_assert_double_eq_tol(out[v], num / den, 1e-6);
	}
}
END_TEST

/* ---------------------------------------------------------- reference */

/* A hand-written K_info: x1*x2 + x2*x3 with values on the given
 * variables (value inputs follow the four factor inputs). */
static pa_input_desc path_inputs[] = {
	{"m0_x1", PA_INPUT_FACTOR, 0, 1, 2}, {"m0_x2", PA_INPUT_FACTOR, 0, 2, 2},
	{"m1_x2", PA_INPUT_FACTOR, 1, 2, 2}, {"m1_x3", PA_INPUT_FACTOR, 1, 3, 2},
	{"v1", PA_INPUT_VALUE, -1, 1, 3},    {"v3", PA_INPUT_VALUE, -1, 3, 3},
};
static const double path_coef[] = {1.0, -0.5};
static const pa_kernel_info path_info = {
	.name = "path", .polynomial = "x1*x2 - 0.5*x2*x3", .graph_class = "tree",
	.algorithm = "test", .num_vars = 3, .num_monomials = 2, .num_inputs = 6,
	.head_dim = 2, .value_dim = 3, .inputs = path_inputs, .scale = 0.7,
	.coefficients = path_coef,
};

START_TEST(test_reference_zero_scores)
{
	/* All factors zero: every tuple weighs the same, so
	 * out[l1] = V1[l1] ⊙ mean_l3 V3[l3]. */
	enum { N = 4 };
	float f[N * 2] = {0}, v1[N * 3], v3[N * 3];
	for (int i = 0; i < N * 3; i++)
		v1[i] = (float)(i + 1), v3[i] = (float)(i % 5) - 1.5f;
	const float *in[] = {f, f, f, f, v1, v3};
	double out[N * 3];
	ck_assert_int_eq(pa_reference(&path_info, 1, N, in, out), PA_OK);
	for (int r = 0; r < N; r++)
		for (int v = 0; v < 3; v++) {
			double mean = 0;
			for (int l = 0; l < N; l++)
				mean += v3[l * 3 + v] / N;
			ck_assert_double_eq_tol(out[r * 3 + v], v1[r * 3 + v] * mean, 1e-12);
		}
}
END_TEST

/* path_closed_form: out[l1] for x1*x2 - 0.5*x2*x3 on n = 2 written out:
 * the four tuples (l2, l3) with their scores. */
static double path_closed_form(const float *const in[], int l1, int v)
{
	double num = 0, den = 0;
	for (int l2 = 0; l2 < 2; l2++)
		for (int l3 = 0; l3 < 2; l3++) {
			double a = (double)in[0][l1 * 2] * in[1][l2 * 2] +
			           (double)in[0][l1 * 2 + 1] * in[1][l2 * 2 + 1];
			double b = (double)in[2][l2 * 2] * in[3][l3 * 2] +
			           (double)in[2][l2 * 2 + 1] * in[3][l3 * 2 + 1];
			double w = exp(0.7 * (a - 0.5 * b));
			num += w * in[4][l1 * 3 + v] * (double)in[5][l3 * 3 + v];
			den += w;
		}
	return num / den;
}

START_TEST(test_reference_closed_form)
{
	float f0[] = {1, 2, -1, 0.5f}, f1[] = {0.3f, -1, 2, 1};
	float f2[] = {-2, 1, 0.5f, 0.5f}, f3[] = {1, 1, -1, 3};
	float v1[] = {1, 2, 3, -1, -2, -3}, v3[] = {0.5f, 1, 2, 4, -1, 1};
	const float *in[] = {f0, f1, f2, f3, v1, v3};
	double out[6];
	ck_assert_int_eq(pa_reference(&path_info, 1, 2, in, out), PA_OK);
	for (int l1 = 0; l1 < 2; l1++)
		for (int v = 0; v < 3; v++)
			ck_assert_double_eq_tol(out[l1 * 3 + v],
			                        path_closed_form(in, l1, v), 1e-12);
}
END_TEST

START_TEST(test_reference_huge_scores)
{
	/* Scores near ±1e4: the tuple with the largest score takes all the
	 * weight, and the answer stays finite. */
	float f0[] = {100, 0, -100, 0}, f1[] = {100, 0, -100, 0};
	float f2[] = {0, 0, 0, 0}, f3[] = {0, 0, 0, 0};
	float v1[] = {1, 1, 1, 1, 1, 1}, v3[] = {1, 2, 3, 5, 6, 7};
	const float *in[] = {f0, f1, f2, f3, v1, v3};
	double out[6];
	ck_assert_int_eq(pa_reference(&path_info, 1, 2, in, out), PA_OK);
	for (int v = 0; v < 6; v++) {
		ck_assert(isfinite(out[v]));
		ck_assert_double_eq_tol(out[v], (v3[v % 3] + v3[3 + v % 3]) / 2, 1e-9);
	}
}
END_TEST

START_TEST(test_reference_batch_and_errors)
{
	/* Batch entries are independent: entry 1 of a batch of 2 equals a
	 * call on entry 1 alone. */
	float f[2 * 3 * 2], v[2 * 3 * 3];
	for (int i = 0; i < 12; i++)
		f[i] = sinf((float)i);
	for (int i = 0; i < 18; i++)
		v[i] = cosf((float)i);
	const float *in[] = {f, f, f, f, v, v};
	const float *one[] = {f + 6, f + 6, f + 6, f + 6, v + 9, v + 9};
	double both[18], single[9];
	ck_assert_int_eq(pa_reference(&path_info, 2, 3, in, both), PA_OK);
	ck_assert_int_eq(pa_reference(&path_info, 1, 3, one, single), PA_OK);
	for (int i = 0; i < 9; i++)
		ck_assert_double_eq_tol(both[9 + i], single[i], 1e-12);

	ck_assert_int_eq(pa_reference(&path_info, 0, 3, in, both), PA_ERR_ARGUMENT);
	ck_assert_int_eq(pa_reference(&path_info, 1, -1, in, both), PA_ERR_ARGUMENT);
	ck_assert_int_eq(pa_reference(&path_info, 1, 3, NULL, both), PA_ERR_NULL);
	ck_assert_int_eq(pa_reference(&path_info, 1, 3, in, NULL), PA_ERR_NULL);
	const float *holes[] = {f, NULL, f, f, v, v};
	ck_assert_int_eq(pa_reference(&path_info, 1, 3, holes, both), PA_ERR_NULL);
	f[3] = NAN;
	ck_assert_int_eq(pa_reference(&path_info, 1, 3, in, both), PA_ERR_NONFINITE);
}
END_TEST

START_TEST(test_check_args)
{
	float f[3 * 2], v[3 * 3], out[9];
	for (int i = 0; i < 6; i++)
		f[i] = 0.3f * (float)i - 1;
	for (int i = 0; i < 9; i++)
		v[i] = (float)i;
	const float *in[] = {f, f, f, f, v, v};
	ck_assert_int_eq(pa_check_args(&path_info, 1, 3, in, out), PA_OK);
	ck_assert_int_eq(pa_check_args(&path_info, 1, 0, in, out), PA_ERR_ARGUMENT);
	ck_assert_int_eq(pa_check_args(&path_info, INT64_MAX, 2, in, out),
	                 PA_ERR_ARGUMENT);
	ck_assert_int_eq(pa_check_args(&path_info, 1, 3, in, NULL), PA_ERR_NULL);
	const float *with_null[] = {f, f, f, NULL, v, v};
	ck_assert_int_eq(pa_check_args(&path_info, 1, 3, with_null, out), PA_ERR_NULL);
	v[4] = NAN;
	ck_assert_int_eq(pa_check_args(&path_info, 1, 3, in, out), PA_ERR_NONFINITE);
	v[4] = 4, f[5] = -INFINITY;
	ck_assert_int_eq(pa_check_args(&path_info, 1, 3, in, out), PA_ERR_NONFINITE);
	f[5] = 0.5f;
	/* out may not overlap an input, by any amount */
	ck_assert_int_eq(pa_check_args(&path_info, 1, 3, in, v), PA_ERR_ARGUMENT);
	ck_assert_int_eq(pa_check_args(&path_info, 1, 3, in, f + 5), PA_ERR_ARGUMENT);
	/* value entries whose sums could overflow float */
	v[2] = 1e30f;
	ck_assert_int_eq(pa_check_args(&path_info, 1, 3, in, out), PA_ERR_RANGE);
	v[2] = 1e10f;
	ck_assert_int_eq(pa_check_args(&path_info, 1, 3, in, out), PA_OK);
}
END_TEST

/* test_check_args_large: inputs large enough that every thread scans a
 * slice of each (PA_SCAN_SPLIT in pa_kernel.c, with two threads or more):
 * a NaN or an infinity in the first, a middle or the last entry of any
 * input, or a value entry large enough for PA_ERR_RANGE in the last
 * slice, is found. */
START_TEST(test_check_args_large)
{
	enum { N = 40000 };
	float *f = malloc(sizeof(float) * N * 2), *v = malloc(sizeof(float) * N * 3);
	float *out = malloc(sizeof(float) * N * 3);
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(v);
	ck_assert_ptr_nonnull(out);
	for (int i = 0; i < N * 2; i++)
		f[i] = sinf((float)i);
	for (int i = 0; i < N * 3; i++)
		v[i] = cosf((float)i);
	float *g = malloc(sizeof(float) * N * 2);
	ck_assert_ptr_nonnull(g);
	memcpy(g, f, sizeof(float) * N * 2);
	const float *in[] = {f, f, g, f, v, v};
	ck_assert_int_eq(pa_check_args(&path_info, 1, N, in, out), PA_OK);
	const size_t at[] = {0, 1, N - 1, N, N + 1, 2 * N - 1};
	for (int a = 0; a < 6; a++) {
		const size_t e = at[a];
		const float keep_g = g[e], keep_v = v[e * 3 / 2];
		g[e] = NAN;
		ck_assert_int_eq(pa_check_args(&path_info, 1, N, in, out), PA_ERR_NONFINITE);
		g[e] = keep_g, v[e * 3 / 2] = INFINITY;
		ck_assert_int_eq(pa_check_args(&path_info, 1, N, in, out), PA_ERR_NONFINITE);
		v[e * 3 / 2] = keep_v;
	}
	v[N * 3 - 1] = INFINITY;
	ck_assert_int_eq(pa_check_args(&path_info, 1, N, in, out), PA_ERR_NONFINITE);
	v[N * 3 - 1] = 1e30f;
	ck_assert_int_eq(pa_check_args(&path_info, 1, N, in, out), PA_ERR_RANGE);
	v[N * 3 - 1] = 0.5f;
	ck_assert_int_eq(pa_check_args(&path_info, 1, N, in, out), PA_OK);
	free(f), free(g), free(v), free(out);
}
END_TEST

/* test_isa_unknown: PA_ISA naming no code path is said on stderr (once
 * per process: the test runs in a process of its own, CK_FORK). */
START_TEST(test_isa_unknown)
{
	const char *fork_mode = getenv("CK_FORK");
	if (fork_mode && strcmp(fork_mode, "no") == 0)
		return;
	char path[] = "/tmp/check_isa.XXXXXX";
	int fd = mkstemp(path), saved = dup(2);
	ck_assert(fd >= 0 && saved >= 0);
	setenv("PA_ISA", "avx9", 1);
	dup2(fd, 2);
	pa_isa_kind k = pa_isa();
	dup2(saved, 2);
	char buf[256] = "";
	ssize_t got = pread(fd, buf, sizeof buf - 1, 0);
	close(fd);
	close(saved);
	remove(path);
	ck_assert(got > 0);
	ck_assert_str_eq(buf, "polyattn: PA_ISA=avx9 is not one of generic, avx2, "
	                 "avx512; using the widest this CPU has\n");
	ck_assert(k >= PA_ISA_GENERIC && k <= PA_ISA_AVX512);
}
END_TEST

/* runtime_suite: every test above. */
Suite *runtime_suite(void)
{
	Suite *s = suite_create("runtime");
	TCase *tc = tcase_create("runtime");
	tcase_add_test(tc, test_strerror);
	tcase_add_test(tc, test_expf_scalar);
	tcase_add_test(tc, test_exp_vector);
	tcase_add_test(tc, test_carve);
	tcase_add_test(tc, test_check_args_large);
	tcase_add_test(tc, test_softmax_average);
	tcase_add_test(tc, test_reference_zero_scores);
	tcase_add_test(tc, test_reference_closed_form);
	tcase_add_test(tc, test_reference_huge_scores);
	tcase_add_test(tc, test_reference_batch_and_errors);
	tcase_add_test(tc, test_check_args);
	tcase_add_test(tc, test_isa_unknown);
	suite_add_tcase(s, tc);
	return s;
}
