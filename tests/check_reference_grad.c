/*
 * check_reference_grad.c - the reference gradient suite: pa_reference_backward
 * against central finite differences of pa_reference on kernels built by
 * hand (self-attention, paths of two and three edges with values only at
 * the far end, a power, bias monomials, Strassen, the 3-tensor, values on
 * x1), against a hand-derived answer at scores of ±1e4, and its handling
 * of NULL gradient entries and bad arguments.
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

/* ------------------------------------------------------------ kernels */

/* Inputs of the kernels below; cols is filled in per case by sized(). */
#define F(m, j) {"m" #m "_x" #j, PA_INPUT_FACTOR, m, j, 0}
#define V(j) {"v" #j, PA_INPUT_VALUE, -1, j, 0}
#define COUNT(a) ((int)(sizeof(a) / sizeof *(a)))
#define INFO(id, poly, vars, sc)                                          \
	{.name = #id, .polynomial = poly, .graph_class = "test",          \
	 .algorithm = "test", .num_vars = vars,                           \
	 .num_monomials = COUNT(id##_c), .num_inputs = COUNT(id##_in),    \
	 .inputs = id##_in, .scale = sc, .coefficients = id##_c}

static const pa_input_desc self_in[] = {F(0, 1), F(0, 2), V(2)};
static const double self_c[] = {1};
static const pa_kernel_info self_k = INFO(self, "x1*x2", 2, 0.8);

static const pa_input_desc path2_in[] = {F(0, 1), F(0, 2), F(1, 2), F(1, 3), V(3)};
static const double path2_c[] = {1, -0.7};
static const pa_kernel_info path2_k = INFO(path2, "x1*x2 - 0.7*x2*x3", 3, 0.9);

static const pa_input_desc path3_in[] = {F(0, 1), F(0, 2), F(1, 2), F(1, 3),
                                         F(2, 3), F(2, 4), V(4)};
static const double path3_c[] = {1, 0.5, -1.2};
static const pa_kernel_info path3_k =
	INFO(path3, "x1*x2 + 0.5*x2*x3 - 1.2*x3*x4", 4, 1.0);

static const pa_input_desc power_in[] = {F(0, 1), F(0, 1), F(0, 2), V(2)};
static const double power_c[] = {0.9};
static const pa_kernel_info power_k = INFO(power, "0.9*x1^2*x2", 2, 1.1);

static const pa_input_desc bias2_in[] = {F(0, 1), F(0, 2), F(1, 2), V(2)};
static const double bias2_c[] = {1, 0.5};
static const pa_kernel_info bias2_k = INFO(bias2, "x1*x2 + 0.5*x2", 2, 0.9);

/* A bias on x1 shifts every score of a query alike: its gradient is 0. */
static const pa_input_desc bias3_in[] = {F(0, 1), F(0, 2), F(1, 2), F(1, 3),
                                         F(2, 2), F(3, 3), F(3, 3), F(4, 1), V(3)};
static const double bias3_c[] = {1, -0.6, 0.5, -0.75, -1.5};
static const pa_kernel_info bias3_k =
	INFO(bias3, "x1*x2 - 0.6*x2*x3 + 0.5*x2 - 0.75*x3^2 - 1.5*x1", 3, 0.7);

static const pa_input_desc strassen_in[] = {F(0, 1), F(0, 2), F(1, 2), F(1, 3),
                                            F(2, 3), F(2, 1), V(2), V(3)};
static const double strassen_c[] = {1, 1, 1};
static const pa_kernel_info strassen_k =
	INFO(strassen, "x1*x2 + x2*x3 + x3*x1", 3, 0.6);

static const pa_input_desc tensor_in[] = {F(0, 1), F(0, 2), F(0, 3), V(2), V(3)};
static const double tensor_c[] = {1};
static const pa_kernel_info tensor_k = INFO(tensor, "x1*x2*x3", 3, 0.9);

static const pa_input_desc qvalues_in[] = {F(0, 1), F(0, 2), F(1, 2), F(1, 3),
                                           V(1), V(2), V(3)};
static const double qvalues_c[] = {1, -0.5};
static const pa_kernel_info qvalues_k =
	INFO(qvalues, "x1*x2 - 0.5*x2*x3, values x1 x2 x3", 3, 0.7);

#define MAX_IN 16

/* A kernel of the table with its head_dim and value_dim chosen. */
typedef struct Sized {
	pa_kernel_info k;
	pa_input_desc in[MAX_IN];
} Sized;

/* sized: base with every factor hd columns wide and every value vd. */
static void sized(const pa_kernel_info *base, int hd, int vd, Sized *s)
{
	ck_assert_int_le(base->num_inputs, MAX_IN);
	s->k = *base;
	s->k.head_dim = hd, s->k.value_dim = vd, s->k.inputs = s->in;
	for (int i = 0; i < base->num_inputs; i++) {
		s->in[i] = base->inputs[i];
		s->in[i].cols = s->in[i].kind == PA_INPUT_FACTOR ? hd : vd;
	}
}

/* -------------------------------------------------------------- cases */

/* The arrays of one call: inputs, grad_out, gradients, a forward out. */
typedef struct Case {
	const pa_kernel_info *k;
	int64_t batch, n;
	float *in[MAX_IN], *g;
	double *grad[MAX_IN], *out;
} Case;

/* len: floats in input i of c (or in grad_out for i = -1). */
static size_t len(const Case *c, int i)
{
	int cols = i < 0 ? c->k->value_dim : c->k->inputs[i].cols;
	return (size_t)(c->batch * c->n * cols);
}

/* case_new: arrays for k at batch × n, drawn uniform from seed: factors
 * in [-1.2, 1.2), values and grad_out in [-1, 1). */
static Case case_new(const pa_kernel_info *k, int64_t batch, int64_t n,
                     uint64_t seed)
{
	Case c = {.k = k, .batch = batch, .n = n};
	for (int i = 0; i < k->num_inputs; i++) {
		double amp = k->inputs[i].kind == PA_INPUT_FACTOR ? 1.2 : 1.0;
		c.in[i] = malloc(len(&c, i) * sizeof *c.in[i]);
		c.grad[i] = malloc(len(&c, i) * sizeof *c.grad[i]);
		ck_assert(c.in[i] && c.grad[i]);
		for (size_t e = 0; e < len(&c, i); e++)
			c.in[i][e] = (float)(amp * rnd_unit(&seed));
	}
	c.g = malloc(len(&c, -1) * sizeof *c.g);
	c.out = malloc(len(&c, -1) * sizeof *c.out);
	ck_assert(c.g && c.out);
	for (size_t e = 0; e < len(&c, -1); e++)
		c.g[e] = (float)rnd_unit(&seed);
	return c;
}

/* case_free: releases what case_new allocated. */
static void case_free(Case *c)
{
	for (int i = 0; i < c->k->num_inputs; i++)
		free(c->in[i]), free(c->grad[i]);
	free(c->g), free(c->out);
}

/* backward: pa_reference_backward on c into c->grad, asserting PA_OK. */
static void backward(Case *c)
{
	ck_assert_int_eq(pa_reference_backward(c->k, c->batch, c->n,
	                                       (const float *const *)c->in, c->g,
	                                       c->grad), PA_OK);
}

/* loss: L = Σ g ⊙ out, out = pa_reference of c's current inputs. */
static double loss(Case *c)
{
	ck_assert_int_eq(pa_reference(c->k, c->batch, c->n,
	                              (const float *const *)c->in, c->out), PA_OK);
	double l = 0;
	for (size_t e = 0; e < len(c, -1); e++)
		l += c->g[e] * c->out[e];
	return l;
}

/* ------------------------------------------------- finite differences */

/*
 * Central differences (L(x+h) − L(x−h)) / (x+h − x−h), the denominator the
 * exact difference of the two floats.  The error is the truncation
 * h²/6 · L''' plus the loss's rounding (≈ 1e-16 · |L| / h).  On these
 * inputs it falls as h² down to h ≈ 2^-14 (worst 4e-9 of the gradient's
 * scale, 1e-5 at h = 2^-8), and rounding shows from 2^-17 on.
 * h = 2^-12 · max(1, |x|) (≈ 2.4e-4, exact in float) keeps it at 4e-8,
 * clear of both, so FD_TOL is 1e-6: 25 times the worst seen, while a
 * wrong formula is off by O(1).
 */
#define FD_STEP 0x1p-12
#define FD_TOL 1e-6

/* fd_entry: the central difference of the loss in input i, entry e. */
static double fd_entry(Case *c, int i, size_t e)
{
	float x = c->in[i][e];
	float h = (float)(FD_STEP * fmax(1.0, fabs(x)));
	float up = x + h, down = x - h;
	c->in[i][e] = up;
	double lu = loss(c);
	c->in[i][e] = down;
	double ld = loss(c);
	c->in[i][e] = x;
	return (lu - ld) / ((double)up - (double)down);
}

/* max_abs: the largest |entry| of gradient i of c. */
static double max_abs(const Case *c, int i)
{
	double m = 0;
	for (size_t e = 0; e < len(c, i); e++)
		m = fmax(m, fabs(c->grad[i][e]));
	return m;
}

/* fd_worst: the largest |analytic − finite difference| over every entry
 * of every input of c, relative to the gradient's scale: the largest
 * |entry| of that input's gradient, but not below 1% of the largest over
 * all inputs (an input whose gradient is 0, as a bias on x1, or tiny, is
 * then held to an absolute 1e-7 of the case's scale). */
static double fd_worst(Case *c)
{
	double all = 1e-30, worst = 0;
	for (int i = 0; i < c->k->num_inputs; i++)
		all = fmax(all, max_abs(c, i));
	for (int i = 0; i < c->k->num_inputs; i++) {
		double scale = fmax(max_abs(c, i), 0.01 * all);
		for (size_t e = 0; e < len(c, i); e++) {
			double err = fabs(c->grad[i][e] - fd_entry(c, i, e)) / scale;
			worst = fmax(worst, err);
		}
	}
	return worst;
}

/* check_kernel: base at every n ∈ {1, 2, 3, 5}, batch ∈ {1, 2},
 * head_dim and value_dim ∈ {1, 2, 3}: the analytic gradients match the
 * finite differences within FD_TOL. */
static void check_kernel(const pa_kernel_info *base)
{
	static const int64_t ns[] = {1, 2, 3, 5};
	double worst = 0;
	uint64_t seed = 0x5eed;
	for (int a = 0; a < 4; a++)
		for (int64_t batch = 1; batch <= 2; batch++)
			for (int hd = 1; hd <= 3; hd++)
				for (int vd = 1; vd <= 3; vd++) {
					Sized s;
					sized(base, hd, vd, &s);
					Case c = case_new(&s.k, batch, ns[a], seed++);
					backward(&c);
					double w = fd_worst(&c);
					ck_assert_msg(w <= FD_TOL,
					              "%s n=%d batch=%d hd=%d vd=%d: error %g",
					              base->name, (int)ns[a], (int)batch, hd,
					              vd, w);
					worst = fmax(worst, w);
					case_free(&c);
				}
	if (getenv("PA_GRAD_VERBOSE"))
		fprintf(stderr, "%-9s worst fd error %.3g\n", base->name, worst);
}

START_TEST(test_grad_self) { check_kernel(&self_k); }
END_TEST
START_TEST(test_grad_path2) { check_kernel(&path2_k); }
END_TEST
START_TEST(test_grad_path3) { check_kernel(&path3_k); }
END_TEST
START_TEST(test_grad_power) { check_kernel(&power_k); }
END_TEST
START_TEST(test_grad_bias2) { check_kernel(&bias2_k); }
END_TEST
START_TEST(test_grad_bias3) { check_kernel(&bias3_k); }
END_TEST
START_TEST(test_grad_strassen) { check_kernel(&strassen_k); }
END_TEST
START_TEST(test_grad_tensor) { check_kernel(&tensor_k); }
END_TEST
START_TEST(test_grad_qvalues) { check_kernel(&qvalues_k); }
END_TEST

/* ------------------------------------------------------- huge scores */

START_TEST(test_grad_huge_scores)
{
	/* x1*x2, scale 0.8, head_dim 1, n = 2: each batch entry has scores
	 * of ±8000 (entries ±100), where a naive exp overflows or gives 0/0.
	 *   entry 0: F1 = F2 = (100, -100): the diagonal dominates, p is
	 *     one-hot, out[l1] = V[l1], so dL/ds = 0: dF = 0, dV[r] = g[r];
	 *   entry 1: every score +8000, entry 2: every score -8000: p = ½,
	 *     dL/ds(l1, l2) = ¼ ⟨g[l1], V[l2] − V[1−l2]⟩, so
	 *     dF1[l1] = 0.8 · F2 · Σ_l2 dL/ds = 0,
	 *     dF2[r] = 0.8 · 100 · Σ_l1 ¼ ⟨g[l1], V[r] − V[1−r]⟩,
	 *     dV[r, c] = ½ Σ_l1 g[l1, c]. */
	enum { VD = 2 };
	Sized s;
	sized(&self_k, 1, VD, &s);
	Case c = case_new(&s.k, 3, 2, 7);
	const float f1[] = {100, -100, 100, 100, 100, 100};
	const float f2[] = {100, -100, 100, 100, -100, -100};
	memcpy(c.in[0], f1, sizeof f1), memcpy(c.in[1], f2, sizeof f2);
	backward(&c);
	for (int i = 0; i < 3; i++)
		for (size_t e = 0; e < len(&c, i); e++)
			ck_assert(isfinite(c.grad[i][e]));
	const float *v = c.in[2], *g = c.g;
	for (int e = 0; e < 2 * VD; e++)
		ck_assert_double_eq_tol(c.grad[2][e], g[e], 1e-12);
	ck_assert_double_eq_tol(c.grad[0][0], 0, 1e-12);
	ck_assert_double_eq_tol(c.grad[1][0], 0, 1e-12);
	for (int b = 1; b < 3; b++) {
		const float *vb = v + b * 2 * VD, *gb = g + b * 2 * VD;
		for (int r = 0; r < 2; r++) {
			double want = 0;
			for (int l1 = 0; l1 < 2; l1++)
				for (int col = 0; col < VD; col++)
					want += 0.25 * gb[l1 * VD + col] *
					        ((double)vb[r * VD + col] - vb[(1 - r) * VD + col]);
			ck_assert_double_eq_tol(c.grad[0][b * 2 + r], 0, 1e-9);
			ck_assert_double_eq_tol(c.grad[1][b * 2 + r], 80 * want, 1e-9);
			for (int col = 0; col < VD; col++)
				ck_assert_double_eq_tol(c.grad[2][(b * 2 + r) * VD + col],
				                        0.5 * ((double)gb[col] + gb[VD + col]), 1e-12);
		}
	}
	case_free(&c);
}
END_TEST

/* ---------------------------------------------- NULL entries, statuses */

#define SENTINEL 12345.0

/* fill: every entry of every gradient of c set to SENTINEL. */
static void fill(Case *c)
{
	for (int i = 0; i < c->k->num_inputs; i++)
		for (size_t e = 0; e < len(c, i); e++)
			c->grad[i][e] = SENTINEL;
}

/* untouched: every gradient of c still holds SENTINEL. */
static bool untouched(const Case *c, int i)
{
	for (size_t e = 0; e < len(c, i); e++)
		if (c->grad[i][e] != SENTINEL)
			return false;
	return true;
}

START_TEST(test_grad_null_entries)
{
	/* Only the wanted gradients are written, each overwritten (a second
	 * call gives the same, not twice), and equal to a call wanting all. */
	Sized s;
	sized(&path2_k, 2, 2, &s);
	Case all = case_new(&s.k, 2, 3, 11), some = case_new(&s.k, 2, 3, 11);
	backward(&all);
	fill(&some);
	double *want[MAX_IN] = {some.grad[0], NULL, some.grad[2], NULL, some.grad[4]};
	for (int call = 0; call < 2; call++)
		ck_assert_int_eq(pa_reference_backward(&s.k, 2, 3,
		                                       (const float *const *)some.in,
		                                       some.g, want), PA_OK);
	for (int i = 0; i < s.k.num_inputs; i++) {
		if (!want[i]) {
			ck_assert(untouched(&some, i));
			continue;
		}
		for (size_t e = 0; e < len(&some, i); e++)
			ck_assert_double_eq(some.grad[i][e], all.grad[i][e]);
	}
	double *none[MAX_IN] = {NULL};
	ck_assert_int_eq(pa_reference_backward(&s.k, 2, 3,
	                                       (const float *const *)some.in,
	                                       some.g, none), PA_OK);
	case_free(&all), case_free(&some);
}
END_TEST

/* status: pa_reference_backward on c's gradients, which must be left
 * untouched when it fails. */
static pa_status status(Case *c, const pa_kernel_info *k, int64_t batch,
                        int64_t n, const float *const *in, const float *g,
                        double *const *grad)
{
	fill(c);
	pa_status st = pa_reference_backward(k, batch, n, in, g, grad);
	for (int i = 0; st != PA_OK && i < c->k->num_inputs; i++)
		ck_assert(untouched(c, i));
	return st;
}

START_TEST(test_grad_statuses)
{
	Sized s;
	sized(&qvalues_k, 2, 3, &s);
	Case c = case_new(&s.k, 2, 3, 13);
	const float *const *in = (const float *const *)c.in;
	const float *holes[MAX_IN];
	memcpy(holes, c.in, sizeof holes);
	holes[5] = NULL;
	ck_assert_int_eq(status(&c, &s.k, 2, 3, in, c.g, c.grad), PA_OK);
	ck_assert_int_eq(status(&c, NULL, 2, 3, in, c.g, c.grad), PA_ERR_NULL);
	ck_assert_int_eq(status(&c, &s.k, 2, 3, NULL, c.g, c.grad), PA_ERR_NULL);
	ck_assert_int_eq(status(&c, &s.k, 2, 3, holes, c.g, c.grad), PA_ERR_NULL);
	ck_assert_int_eq(status(&c, &s.k, 2, 3, in, NULL, c.grad), PA_ERR_NULL);
	ck_assert_int_eq(status(&c, &s.k, 2, 3, in, c.g, NULL), PA_ERR_NULL);
	ck_assert_int_eq(status(&c, &s.k, 0, 3, in, c.g, c.grad), PA_ERR_ARGUMENT);
	ck_assert_int_eq(status(&c, &s.k, 2, -1, in, c.g, c.grad), PA_ERR_ARGUMENT);
	c.in[1][4] = NAN;
	ck_assert_int_eq(status(&c, &s.k, 2, 3, in, c.g, c.grad), PA_ERR_NONFINITE);
	c.in[1][4] = 0.5f, c.in[6][17] = INFINITY;   /* the last entry of v3 */
	ck_assert_int_eq(status(&c, &s.k, 2, 3, in, c.g, c.grad), PA_ERR_NONFINITE);
	c.in[6][17] = 0.5f, c.g[17] = NAN;           /* the last of grad_out */
	ck_assert_int_eq(status(&c, &s.k, 2, 3, in, c.g, c.grad), PA_ERR_NONFINITE);
	c.g[17] = 0, c.g[0] = -INFINITY;
	ck_assert_int_eq(status(&c, &s.k, 2, 3, in, c.g, c.grad), PA_ERR_NONFINITE);
	c.g[0] = 0;
	ck_assert_int_eq(status(&c, &s.k, 2, 3, in, c.g, c.grad), PA_OK);
	case_free(&c);
}
END_TEST

/* reference_grad_suite: every test above. */
Suite *reference_grad_suite(void)
{
	Suite *s = suite_create("reference_grad");
	TCase *tc = tcase_create("reference_grad");
	tcase_set_timeout(tc, 60);   /* the finite differences, under sanitizers */
	tcase_add_test(tc, test_grad_self);
	tcase_add_test(tc, test_grad_path2);
	tcase_add_test(tc, test_grad_path3);
	tcase_add_test(tc, test_grad_power);
	tcase_add_test(tc, test_grad_bias2);
	tcase_add_test(tc, test_grad_bias3);
	tcase_add_test(tc, test_grad_strassen);
	tcase_add_test(tc, test_grad_tensor);
	tcase_add_test(tc, test_grad_qvalues);
	tcase_add_test(tc, test_grad_huge_scores);
	tcase_add_test(tc, test_grad_null_entries);
	tcase_add_test(tc, test_grad_statuses);
	suite_add_tcase(s, tc);
	return s;
}
