/*
 * check_elim_paths.c - the elimination engine's fast paths against the
 * definition computed directly in double precision, on sizes the
 * end-to-end reference cannot afford: the 3-tensor path (pa_tensor3.c,
 * n past one softmax chunk of 512 keys) and the factored step of
 * Strassen attention (n past several chunks of 128 keys).  Odd n, n = 1,
 * head and value dims that are not multiples of the vector width, scores
 * of ±10⁴, a batch of 2, value subsets and factor orders, under every ISA
 * (PA_ISA, forced in each test's own process) and 1 and 2 threads.  Rows
 * are sampled: the reference costs n²·(head_dim + value_dim) per row.
 */
#include <check.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pa_elim.h"
#include "pa_tensor3.h"
#include "pa_kernel.h"
#include "rnd.h"

#define TOL 1e-4                /* relative error per output row */
#define HUGE_SCORE 1e4
#define HUGE_TOL (TOL + 4 * HUGE_SCORE * 0x1p-24) /* as tests/check_e2e.c */
#define SAMPLES 6               /* rows checked per batch entry */

/* One shape: x1*x2*x3 (factor inputs in the order of vars), the value
 * variables (bit j: x_j), scale, sizes. */
typedef struct Case {
	int vars[3];
	uint32_t values;
	double scale;
	int64_t n, batch;
	int hd, vd;
	bool huge;
} Case;

static const Case cases[] = {
	{{1, 2, 3}, PA_X(2) | PA_X(3), 1.0, 1, 1, 64, 64, false},
	{{1, 2, 3}, PA_X(2) | PA_X(3), 1.0, 7, 2, 3, 5, false},
	{{1, 2, 3}, PA_X(2) | PA_X(3), 0.7, 531, 1, 11, 21, false},
	{{1, 2, 3}, PA_X(2) | PA_X(3), 1.0, 130, 1, 64, 64, true},
	{{2, 1, 3}, PA_X(1) | PA_X(3), -0.4, 65, 2, 17, 33, false},
	{{3, 2, 1}, PA_X(1), 1.0, 100, 1, 16, 48, true},
	{{1, 3, 2}, 0, 1.0, 31, 1, 5, 80, false},
	{{1, 2, 3}, PA_X(1) | PA_X(2) | PA_X(3), 1.0, 701, 1, 3, 16, true},
};

/* The kernel description and plan of one case. */
typedef struct Kernel {
	pa_input_desc in[6];
	double coef;
	pa_kernel_info k;
	int mono;
	pa_elim_edge edge;
	pa_elim_step steps[2];
	pa_elim_plan plan;
	float *data[6];
} Kernel;

/* make_kernel: K's description from case c, inputs drawn from seed. */
static void make_kernel(Kernel *K, const Case *c, uint64_t seed)
{
	memset(K, 0, sizeof *K);
	int ni = 0;
	for (int q = 0; q < 3; q++)
		K->in[ni++] = (pa_input_desc){"f", PA_INPUT_FACTOR, 0, c->vars[q], c->hd};
	for (int j = 1; j <= 3; j++)
		if (c->values & PA_X(j))
			K->in[ni++] = (pa_input_desc){"v", PA_INPUT_VALUE, -1, j, c->vd};
	K->coef = 1.0;
	K->k = (pa_kernel_info){.name = "t3", .polynomial = "x1*x2*x3",
	                        .graph_class = "high-degree",
	                        .algorithm = "exact-elimination", .num_vars = 3,
	                        .num_monomials = 1, .num_inputs = ni,
	                        .head_dim = c->hd, .value_dim = c->vd,
	                        .inputs = K->in, .scale = c->scale,
	                        .coefficients = &K->coef};
	K->edge = (pa_elim_edge){PA_X(1) | PA_X(2) | PA_X(3), 1, &K->mono};
	K->plan = (pa_elim_plan){1, &K->edge, 0, K->steps};
	double amp = c->huge ? cbrt(3 * HUGE_SCORE / c->hd / fabs(c->scale)) : 1.0;
	for (int i = 0; i < ni; i++) {
		int cols = K->in[i].cols;
		size_t count = (size_t)(c->batch * c->n * cols);
		K->data[i] = malloc(count * sizeof(float));
		ck_assert_ptr_nonnull(K->data[i]);
		for (size_t e = 0; e < count; e++) {
			/* x3's rows grow with the position, so the largest scores of
			 * a pair lie among the last keys, past the first chunk */
			int64_t pos = (int64_t)(e / cols) % c->n;
			double ramp = K->in[i].variable == 3 ? 0.5 + (double)pos / c->n : 1.0;
			K->data[i][e] = (float)((K->in[i].kind == PA_INPUT_FACTOR ? amp * ramp : 1.0) *
			                        rnd_unit(&seed));
		}
	}
}

/* at: input i's row of x_v at position pos in batch entry b. */
static const float *at(const Kernel *K, const Case *c, int i, int64_t b, int64_t pos)
{
	return K->data[i] + (b * c->n + pos) * K->in[i].cols;
}

/* ref_row: the definition at query l1 of entry b in double, with each
 * value entry v (absolute: |v|, the size of the terms summed). */
static void ref_row(const Kernel *K, const Case *c, int64_t b, int64_t l1,
                    bool absolute, double *out)
{
	const float *f[4];
	int ni = K->k.num_inputs;
	int64_t pos[4] = {0, l1, 0, 0};
	double mx = -INFINITY, den = 0, *num = calloc(c->vd, sizeof *num);
	ck_assert_ptr_nonnull(num);
	for (pos[2] = 0; pos[2] < c->n; pos[2]++)
		for (pos[3] = 0; pos[3] < c->n; pos[3]++) {
			for (int q = 0; q < 3; q++)
				f[q] = at(K, c, q, b, pos[c->vars[q]]);
			double s = 0;
			for (int l = 0; l < c->hd; l++)
				s += (double)f[0][l] * f[1][l] * f[2][l];
			s *= c->scale;
			if (s > mx) {
				double a = exp(mx - s);
				den *= a;
				for (int v = 0; v < c->vd; v++)
					num[v] *= a;
				mx = s;
			}
			double w = exp(s - mx);
			den += w;
			for (int v = 0; v < c->vd; v++) {
				double x = w;
				for (int i = 3; i < ni; i++) {
					double e = at(K, c, i, b, pos[K->in[i].variable])[v];
					x *= absolute ? fabs(e) : e;
				}
				num[v] += x;
			}
		}
	for (int v = 0; v < c->vd; v++)
		out[v] = num[v] / den;
	free(num);
}

/* row_error: max |got - want| / max |want| over a row of vd. */
static double row_error(const float *got, const double *want, int vd)
{
	double err = 0, size = 0;
	for (int v = 0; v < vd; v++) {
		err = fmax(err, fabs(got[v] - want[v]));
		size = fmax(size, fabs(want[v]));
		if (!isfinite(got[v]))
			return INFINITY;
	}
	return err / fmax(size, 1e-30);
}

static const char *const isas[] = {"generic", "avx2", "avx512"};
static const char *const threads[] = {"1", "2"};

/* A reference row: the definition at query l1 of batch entry b, each
 * value entry v taken as |v| when absolute. */
typedef void (*ref_fn)(const void *ctx, int64_t b, int64_t l1, bool absolute,
                       double *out);

/* check_rows: SAMPLES rows of each batch entry of out (first, last, random)
 * against ref, within tol (or within tol of the |V| reference, for rows
 * whose values cancel). */
static void check_rows(const float *out, int64_t batch, int64_t n, int vd,
                       double tol, ref_fn ref, const void *ctx, const char *what,
                       uint64_t pick)
{
	double *want = malloc(vd * sizeof *want);
	ck_assert_ptr_nonnull(want);
	for (int64_t b = 0; b < batch; b++)
		for (int r = 0; r < SAMPLES; r++) {
			int64_t l1 = r == 0 ? 0 : r == 1 ? n - 1 : (int64_t)(rnd_next(&pick) % n);
			const float *got = out + (b * n + l1) * vd;
			ref(ctx, b, l1, false, want);
			double err = row_error(got, want, vd);
			if (err > tol) {  /* cancelling values: measure against |V| */
				double diff = 0, size = 0;
				for (int v = 0; v < vd; v++)
					diff = fmax(diff, fabs(got[v] - want[v]));
				ref(ctx, b, l1, true, want);
				for (int v = 0; v < vd; v++)
					size = fmax(size, fabs(want[v]));
				err = fmin(err, diff / size);
			}
			ck_assert_msg(err <= tol, "%s, PA_ISA=%s: batch %lld row %lld relative "
			              "error %g > %g", what, getenv("PA_ISA") ? getenv("PA_ISA") : "-",
			              (long long)b, (long long)l1, err, tol);
		}
	free(want);
}

/* force_isa: PA_ISA and OMP_NUM_THREADS from loop index i, in a forked
 * test's own process (without CK_FORK, the ISA pa_isa chose). */
static void force_isa(int i)
{
	const char *fork_mode = getenv("CK_FORK");
	if (fork_mode && strcmp(fork_mode, "no") == 0)
		return;
	setenv("PA_ISA", isas[i % 3], 1);
	setenv("OMP_NUM_THREADS", threads[i / 3], 1);
	ck_assert_int_eq(pa_max_threads(), i / 3 + 1);
}

/* The context of the 3-tensor reference. */
typedef struct T3Ref {
	const Kernel *K;
	const Case *c;
} T3Ref;

static void t3_ref(const void *ctx, int64_t b, int64_t l1, bool absolute, double *out)
{
	const T3Ref *r = ctx;
	ref_row(r->K, r->c, b, l1, absolute, out);
}

/* test_tensor3: every case under ISA _i % 3 and thread count _i / 3. */
START_TEST(test_tensor3)
{
	force_isa(_i);
	for (int ci = 0; ci < (int)(sizeof cases / sizeof *cases); ci++) {
		const Case *c = &cases[ci];
		Kernel K;
		make_kernel(&K, c, 0x7e57 + ci);
		ck_assert(pa_tensor3_takes(&K.k, &K.plan));
		float *out = malloc((size_t)(c->batch * c->n * c->vd) * sizeof *out);
		ck_assert_ptr_nonnull(out);
		pa_status st = pa_elim_run(&K.k, &K.plan, c->batch, c->n,
		                           (const float *const *)K.data, out);
		ck_assert_int_eq(st, PA_OK);
		char what[96];
		snprintf(what, sizeof what, "x1*x2*x3 case %d (n %lld, head_dim %d, value_dim %d)",
		         ci, (long long)c->n, c->hd, c->vd);
		T3Ref ref = {&K, c};
		check_rows(out, c->batch, c->n, c->vd, c->huge ? HUGE_TOL : TOL, t3_ref,
		           &ref, what, 99 + ci);
		free(out);
		for (int i = 0; i < K.k.num_inputs; i++)
			free(K.data[i]);
	}
}
END_TEST

/* ------------------------------------------------ Strassen attention */

/* One shape of x1*x2 + x2*x3 + x3*x1 (coefficients 1, -0.5, 0.8). */
typedef struct SCase {
	uint32_t values;
	double scale;
	int64_t n, batch;
	int hd, vd;
	bool huge;
} SCase;

static const SCase scases[] = {
	{PA_X(2) | PA_X(3), 0.7, 299, 1, 5, 21, false},
	{PA_X(2) | PA_X(3), 1.0, 1, 1, 64, 64, false},
	{PA_X(2) | PA_X(3), 1.0, 200, 1, 16, 16, true},
	{PA_X(1) | PA_X(3), 1.0, 131, 2, 3, 5, false},
	{PA_X(3), 1.0, 260, 1, 7, 80, true},
};

static const double scoef[3] = {1.0, -0.5, 0.8};
static const int svars[3][2] = {{1, 2}, {2, 3}, {3, 1}};

/* The kernel, plan and inputs of one Strassen case, and the reference's
 * score tables of the current batch entry. */
typedef struct SKernel {
	pa_input_desc in[9];
	pa_kernel_info k;
	int mono[3], step0_edges[2], step1_edges[1], step1_msgs[1];
	pa_elim_edge edges[3];
	pa_elim_step steps[2];
	pa_elim_plan plan;
	float *data[9];
	const SCase *c;
	double *table[3];        /* n × n scores of each monomial */
	int64_t table_b;         /* the batch entry they hold, -1 none */
} SKernel;

/* make_skernel: the description the compiler gives case c (plan: sum out
 * x2, then x3), inputs drawn from seed. */
static void make_skernel(SKernel *K, const SCase *c, uint64_t seed)
{
	memset(K, 0, sizeof *K);
	int ni = 0;
	for (int m = 0; m < 3; m++)
		for (int q = 0; q < 2; q++)
			K->in[ni++] = (pa_input_desc){"f", PA_INPUT_FACTOR, m, svars[m][q], c->hd};
	for (int j = 1; j <= 3; j++)
		if (c->values & PA_X(j))
			K->in[ni++] = (pa_input_desc){"v", PA_INPUT_VALUE, -1, j, c->vd};
	K->k = (pa_kernel_info){.name = "strassen", .polynomial = "x1*x2 + x2*x3 + x3*x1",
	                        .graph_class = "cyclic", .algorithm = "exact-elimination",
	                        .num_vars = 3, .num_monomials = 3, .num_inputs = ni,
	                        .head_dim = c->hd, .value_dim = c->vd, .inputs = K->in,
	                        .scale = c->scale, .coefficients = scoef};
	for (int m = 0; m < 3; m++) {
		K->mono[m] = m;
		K->edges[m] = (pa_elim_edge){PA_X(svars[m][0]) | PA_X(svars[m][1]), 1, &K->mono[m]};
	}
	K->step0_edges[0] = 0, K->step0_edges[1] = 1, K->step1_edges[0] = 2;
	K->step1_msgs[0] = 0;
	bool v2 = c->values & PA_X(2), v3 = c->values & PA_X(3);
	K->steps[0] = (pa_elim_step){2, PA_X(1) | PA_X(3), 2, K->step0_edges, 0, K->step1_msgs, v2};
	K->steps[1] = (pa_elim_step){3, PA_X(1), 1, K->step1_edges, 1, K->step1_msgs, v2 || v3};
	K->plan = (pa_elim_plan){3, K->edges, 2, K->steps};
	K->c = c;
	K->table_b = -1;
	double amp = c->huge ? sqrt(3 * HUGE_SCORE / c->hd / fabs(c->scale)) : 1.0;
	for (int i = 0; i < ni; i++) {
		size_t count = (size_t)(c->batch * c->n * K->in[i].cols);
		K->data[i] = malloc(count * sizeof(float));
		ck_assert_ptr_nonnull(K->data[i]);
		for (size_t e = 0; e < count; e++)
			K->data[i][e] = (float)((K->in[i].kind == PA_INPUT_FACTOR ? amp : 1.0) *
			                        rnd_unit(&seed));
	}
	for (int m = 0; m < 3; m++) {
		K->table[m] = malloc((size_t)(c->n * c->n) * sizeof(double));
		ck_assert_ptr_nonnull(K->table[m]);
	}
}

/* s_tables: table[m][ℓa·n + ℓb] = monomial m's score with its first
 * variable at ℓa and its second at ℓb, for batch entry b. */
static void s_tables(SKernel *K, int64_t b)
{
	const SCase *c = K->c;
	if (K->table_b == b)
		return;
	for (int m = 0; m < 3; m++)
		for (int64_t x = 0; x < c->n; x++)
			for (int64_t y = 0; y < c->n; y++) {
				const float *f = K->data[2 * m] + (b * c->n + x) * c->hd;
				const float *g = K->data[2 * m + 1] + (b * c->n + y) * c->hd;
				double t = 0;
				for (int l = 0; l < c->hd; l++)
					t += (double)f[l] * g[l];
				K->table[m][x * c->n + y] = c->scale * scoef[m] * t;
			}
	K->table_b = b;
}

static void s_ref(const void *ctx, int64_t b, int64_t l1, bool absolute, double *out)
{
	SKernel *K = (SKernel *)ctx;
	const SCase *c = K->c;
	int64_t n = c->n;
	s_tables(K, b);
	double mx = -INFINITY, den = 0, *num = calloc(c->vd, sizeof *num);
	ck_assert_ptr_nonnull(num);
	for (int64_t j = 0; j < n; j++)
		for (int64_t k = 0; k < n; k++) {
			double s = K->table[0][l1 * n + j] + K->table[1][j * n + k] +
			           K->table[2][k * n + l1];
			if (s > mx) {
				double a = exp(mx - s);
				den *= a;
				for (int v = 0; v < c->vd; v++)
					num[v] *= a;
				mx = s;
			}
			double w = exp(s - mx);
			int64_t pos[4] = {0, l1, j, k};
			den += w;
			for (int v = 0; v < c->vd; v++) {
				double x = w;
				for (int i = 6; i < K->k.num_inputs; i++) {
					double e = K->data[i][(b * n + pos[K->in[i].variable]) * c->vd + v];
					x *= absolute ? fabs(e) : e;
				}
				num[v] += x;
			}
		}
	for (int v = 0; v < c->vd; v++)
		out[v] = num[v] / den;
	free(num);
}

/* test_strassen: every Strassen case under ISA _i % 3 and thread count
 * _i / 3. */
START_TEST(test_strassen)
{
	force_isa(_i);
	for (int ci = 0; ci < (int)(sizeof scases / sizeof *scases); ci++) {
		const SCase *c = &scases[ci];
		SKernel K;
		make_skernel(&K, c, 0x5eed + ci);
		ck_assert(!pa_tensor3_takes(&K.k, &K.plan));
		float *out = malloc((size_t)(c->batch * c->n * c->vd) * sizeof *out);
		ck_assert_ptr_nonnull(out);
		pa_status st = pa_elim_run(&K.k, &K.plan, c->batch, c->n,
		                           (const float *const *)K.data, out);
		ck_assert_int_eq(st, PA_OK);
		char what[96];
		snprintf(what, sizeof what, "Strassen case %d (n %lld, head_dim %d, value_dim %d)",
		         ci, (long long)c->n, c->hd, c->vd);
		check_rows(out, c->batch, c->n, c->vd, c->huge ? HUGE_TOL : TOL, s_ref, &K,
		           what, 77 + ci);
		free(out);
		for (int i = 0; i < K.k.num_inputs; i++)
			free(K.data[i]);
		for (int m = 0; m < 3; m++)
			free(K.table[m]);
	}
}
END_TEST

/* test_tensor3_declines: plans the path must leave to the general engine. */
START_TEST(test_tensor3_declines)
{
	Kernel K;
	Case c = {{1, 2, 3}, PA_X(2) | PA_X(3), 1.0, 4, 1, 3, 3, false};
	make_kernel(&K, &c, 1);
	ck_assert(pa_tensor3_takes(&K.k, &K.plan));
	K.in[2].variable = 2;                 /* x1*x2^2 */
	ck_assert(!pa_tensor3_takes(&K.k, &K.plan));
	K.in[2].variable = 3;
	K.k.num_monomials = 2;                /* a second monomial */
	ck_assert(!pa_tensor3_takes(&K.k, &K.plan));
	K.k.num_monomials = 1;
	K.k.num_vars = 4;                     /* a fourth variable */
	ck_assert(!pa_tensor3_takes(&K.k, &K.plan));
	for (int i = 0; i < K.k.num_inputs; i++)
		free(K.data[i]);
}
END_TEST

/* elim_paths_suite: the tests above. */
Suite *elim_paths_suite(void)
{
	Suite *s = suite_create("elim_paths");
	TCase *tc = tcase_create("elim_paths");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_tensor3, 0, 6);
	tcase_add_loop_test(tc, test_strassen, 0, 6);
	tcase_add_test(tc, test_tensor3_declines);
	suite_add_tcase(s, tc);
	return s;
}
