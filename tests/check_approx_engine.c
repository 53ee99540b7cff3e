/*
 * check_approx_engine.c - the approximate engine (runtime/pa_approx.c)
 * against pa_reference, on networks built here by hand the way a planner
 * would: leaf positions summed first, then features.  With entries in
 * [-0.3, 0.3] and Taylor degree 8 the truncation is far below float
 * rounding, so the engine must match the exact definition to ~1e-4.
 * Also: the bound and the exact fallback, a product step (sum = -1), and
 * timings of x1*x2 + x2*x3 at growing n (linear growth).
 *
 * make e2e builds it as build/e2e/check_approx_engine and runs it under
 * every PA_ISA; exit status 1 on any failure.
 *
 *   check_approx_engine [--bench [tree|cycle]]
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "pa_approx.h"
#include "polyattn.h"

#define MAXM 8                   /* monomials */
#define MAXE 4                   /* edges */
#define MAXL 16                  /* leaves */
#define MAXS 16                  /* steps */

/* A kernel description and its plan, built by the helpers below. */
typedef struct Net {
	pa_kernel_info k;
	pa_input_desc in[32];
	double coef[MAXM];
	int hd, vd, P;
	pa_approx_edge e[MAXE];
	int emono[MAXE][MAXM];
	int *parent[MAXE], *coord[MAXE];
	float *weight[MAXE];
	pa_approx_leaf leaf[MAXL];
	pa_approx_step step[MAXS];
	int stepin[MAXS][8];
	pa_approx_plan p;
} Net;

static int failures;

/* net_init: a kernel over x1 … xt with no monomials yet. */
static void net_init(Net *N, int t, int hd, int vd, int P, double scale)
{
	memset(N, 0, sizeof *N);
	N->hd = hd, N->vd = vd, N->P = P;
	N->k = (pa_kernel_info){.name = "net", .polynomial = "", .graph_class = "",
	                        .algorithm = "approx", .num_vars = t, .head_dim = hd,
	                        .value_dim = vd, .inputs = N->in, .scale = scale,
	                        .coefficients = N->coef};
	N->p.edges = N->e, N->p.leaves = N->leaf, N->p.steps = N->step;
	N->p.bound = 1.0;
}

/* mono: a monomial c · x_{v[0]} ⋯ x_{v[nocc-1]}; its factor inputs. */
static void mono(Net *N, double c, int nocc, const int *v)
{
	int m = N->k.num_monomials++;
	N->coef[m] = c;
	for (int q = 0; q < nocc; q++)
		N->in[N->k.num_inputs++] = (pa_input_desc){"f", PA_INPUT_FACTOR, m, v[q], N->hd};
}

/* values: the value inputs of the variables in mask, by increasing j. */
static void values(Net *N, uint32_t mask)
{
	for (int j = 1; j <= N->k.num_vars; j++)
		if (mask >> j & 1u)
			N->in[N->k.num_inputs++] = (pa_input_desc){"v", PA_INPUT_VALUE, -1, j, N->vd};
}

/* feats: the multi-indices of degree ≤ P over D coordinates as
 * nondecreasing coordinate sequences, depth first: feature f extends
 * its parent by coord[f]; weight Π w_i^α_i / α_i!. */
static void feats(int *count, int D, int P, const double *w, int par, int last,
                  int run, int depth, double wpar, int *parent, int *coord,
                  float *weight)
{
	for (int c = last; c < D; c++) {
		int f = (*count)++, r = c == last && par >= 0 && depth > 0 ? run + 1 : 1;
		double wf = wpar * w[c] / r;
		parent[f] = par, coord[f] = c, weight[f] = (float)wf;
		if (depth + 1 < P)
			feats(count, D, P, w, f, c, r, depth + 1, wf, parent, coord, weight);
	}
}

/* edge: the edge over vars of monomials ms, weight on wvar; its id. */
static int edge(Net *N, uint32_t vars, int nm, const int *ms, int wvar)
{
	int e = N->p.nedges++, D = nm * N->hd;
	double w[64];
	long F = 1;
	for (int i = 1; i <= N->P; i++)
		F = F * (D + i) / i;
	for (int i = 0; i < nm; i++) {
		N->emono[e][i] = ms[i];
		for (int l = 0; l < N->hd; l++)
			w[i * N->hd + l] = N->k.scale * N->coef[ms[i]];
	}
	N->parent[e] = calloc(F, sizeof(int));
	N->coord[e] = calloc(F, sizeof(int));
	N->weight[e] = calloc(F, sizeof(float));
	int count = 1;
	N->weight[e][0] = 1.0f;
	if (N->P > 0)
		feats(&count, D, N->P, w, 0, 0, 0, 0, 1.0, N->parent[e], N->coord[e], N->weight[e]);
	if (count != F) {
		printf("FAIL feature count %d, want %ld\n", count, F);
		failures++;
	}
	N->e[e] = (pa_approx_edge){.vars = vars, .nmono = nm, .mono = N->emono[e],
	                           .degree = N->P, .nfeat = (int)F, .parent = N->parent[e],
	                           .coord = N->coord[e], .weight = N->weight[e],
	                           .weight_var = wvar};
	return e;
}

/* alpha: the index id of edge e's features. */
static int alpha(const Net *N, int e)
{
	return N->k.num_vars + 1 + e;
}

/* phi, wts: a features leaf Φ_{e,v}, a weights leaf W_v ({v, 0} when
 * chan, else {v}); their tensor ids. */
static int phi(Net *N, int e, int v)
{
	int l = N->p.nleaves++;
	N->leaf[l] = (pa_approx_leaf){PA_LEAF_FEATURES, e, v, 2, {v, alpha(N, e)}};
	return l;
}

static int wts(Net *N, int v, bool chan)
{
	int l = N->p.nleaves++;
	N->leaf[l] = (pa_approx_leaf){PA_LEAF_WEIGHTS, -1, v, chan ? 2 : 1, {v, 0}};
	return l;
}

/* step: T[out] = Σ_sum Π in; its tensor id (leaves must all be made). */
static int step(Net *N, int sum, int nout, const int *out, int nin, const int *in)
{
	int s = N->p.nsteps++;
	memcpy(N->stepin[s], in, nin * sizeof(int));
	N->step[s] = (pa_approx_step){.sum = sum, .nin = nin, .in = N->stepin[s], .nout = nout};
	memcpy(N->step[s].out, out, nout * sizeof(int));
	return N->p.nleaves + s;
}

#define L(...) (int[]){__VA_ARGS__}
#define STEP(N, sum, out, in) step(N, sum, sizeof(out) / sizeof(int), out, \
                                   sizeof(in) / sizeof(int), in)

static void net_free(Net *N)
{
	for (int e = 0; e < N->p.nedges; e++)
		free(N->parent[e]), free(N->coord[e]), free(N->weight[e]);
}

/* ------------------------------------------------------------ networks */

/* self: x1*x2. */
static void build_self(Net *N)
{
	mono(N, 1.0, 2, L(1, 2));
	values(N, 1u << 2);
	int e = edge(N, 6, 1, L(0), 2), a = alpha(N, e);
	int f1 = phi(N, e, 1), f2 = phi(N, e, 2), w2 = wts(N, 2, true);
	int s0 = STEP(N, 2, L(a, 0), L(f2, w2));
	STEP(N, a, L(1, 0), L(f1, s0));
}

/* tree: x1*x2 + x2*x3. */
static void build_tree(Net *N)
{
	mono(N, 1.0, 2, L(1, 2));
	mono(N, 1.0, 2, L(2, 3));
	values(N, 1u << 2 | 1u << 3);
	int e0 = edge(N, 6, 1, L(0), 2), e1 = edge(N, 12, 1, L(1), 3);
	int a0 = alpha(N, e0), a1 = alpha(N, e1);
	int f01 = phi(N, e0, 1), f02 = phi(N, e0, 2), f12 = phi(N, e1, 2);
	int f13 = phi(N, e1, 3), w2 = wts(N, 2, true), w3 = wts(N, 3, true);
	int s0 = STEP(N, 3, L(a1, 0), L(f13, w3));
	int s1 = STEP(N, a1, L(2, 0), L(f12, s0));
	int s2 = STEP(N, 2, L(a0, 0), L(f02, w2, s1));
	STEP(N, a0, L(1, 0), L(f01, s2));
}

/* cycle: x1*x2 + x2*x3 + x3*x1 (Strassen). */
static void build_cycle(Net *N)
{
	mono(N, 1.0, 2, L(1, 2));
	mono(N, 1.0, 2, L(2, 3));
	mono(N, 1.0, 2, L(3, 1));
	values(N, 1u << 2 | 1u << 3);
	int e0 = edge(N, 6, 1, L(0), 2), e1 = edge(N, 12, 1, L(1), 3);
	int e2 = edge(N, 10, 1, L(2), 3);
	int a0 = alpha(N, e0), a1 = alpha(N, e1), a2 = alpha(N, e2);
	int f01 = phi(N, e0, 1), f02 = phi(N, e0, 2), f12 = phi(N, e1, 2);
	int f13 = phi(N, e1, 3), f23 = phi(N, e2, 3), f21 = phi(N, e2, 1);
	int w2 = wts(N, 2, true), w3 = wts(N, 3, true);
	int s0 = STEP(N, 2, L(a0, a1, 0), L(f02, f12, w2));
	int s1 = STEP(N, 3, L(a1, a2, 0), L(f13, f23, w3));
	int s2 = STEP(N, a1, L(a0, a2, 0), L(s0, s1));
	int s3 = STEP(N, a0, L(1, a2, 0), L(f01, s2));
	STEP(N, a2, L(1, 0), L(f21, s3));
}

/* chain: x1*x2 + x2*x3 + x3*x1 in polyc's order: x1's rows flow through
 * three products in a row (T2, T4, T5 all [ℓ1, …]), each made by chunks
 * of ℓ1 inside the next; chain_perm lays T2 and T4 out other ways (ℓ1
 * not first, or the channel before the feature). */
static void chain(Net *N, bool perm)
{
	mono(N, 1.0, 2, L(1, 2));
	mono(N, 1.0, 2, L(2, 3));
	mono(N, 1.0, 2, L(3, 1));
	values(N, 1u << 2 | 1u << 3);
	int e0 = edge(N, 6, 1, L(0), 2), e1 = edge(N, 12, 1, L(1), 3);
	int e2 = edge(N, 10, 1, L(2), 3);
	int a0 = alpha(N, e0), a1 = alpha(N, e1), a2 = alpha(N, e2);
	int f01 = phi(N, e0, 1), f02 = phi(N, e0, 2), f12 = phi(N, e1, 2);
	int f13 = phi(N, e1, 3), f23 = phi(N, e2, 3), f21 = phi(N, e2, 1);
	int w1 = wts(N, 1, false), w2 = wts(N, 2, true), w3 = wts(N, 3, true);
	int s0 = STEP(N, 2, L(a0, a1, 0), L(w2, f02, f12));
	int s1 = perm ? STEP(N, a0, L(a1, 1, 0), L(s0, f01))
	              : STEP(N, a0, L(1, a1, 0), L(s0, f01));
	int s2 = STEP(N, 3, L(a1, a2, 0), L(w3, f13, f23));
	int s3 = perm ? STEP(N, a1, L(1, 0, a2), L(s2, s1))
	              : STEP(N, a1, L(1, a2, 0), L(s2, s1));
	int s4 = STEP(N, a2, L(1, 0), L(f21, s3));
	STEP(N, -1, L(1, 0), L(w1, s4));
}

static void build_chain(Net *N)
{
	chain(N, false);
}

static void build_chain_perm(Net *N)
{
	chain(N, true);
}

/* triple: x1*x2*x3 (3-tensor attention); the two messages meet in a
 * product step (sum = -1). */
static void build_triple(Net *N)
{
	mono(N, 1.0, 3, L(1, 2, 3));
	values(N, 1u << 2 | 1u << 3);
	int e = edge(N, 14, 1, L(0), 3), a = alpha(N, e);
	int f1 = phi(N, e, 1), f2 = phi(N, e, 2), f3 = phi(N, e, 3);
	int w2 = wts(N, 2, true), w3 = wts(N, 3, true);
	int s0 = STEP(N, 3, L(a, 0), L(f3, w3));
	int s1 = STEP(N, 2, L(a, 0), L(f2, w2));
	int s2 = STEP(N, -1, L(a, 0), L(s0, s1));
	STEP(N, a, L(1, 0), L(f1, s2));
}

/* square: 0.7*x1^2*x2 - 0.5*x2^2 with values on x1 and x2, scale 0.8:
 * two occurrences on one side, a bias, and x1's values in a product
 * step with a position index. */
static void build_square(Net *N)
{
	N->k.scale = 0.8;
	mono(N, 0.7, 3, L(1, 1, 2));
	mono(N, -0.5, 2, L(2, 2));
	values(N, 1u << 1 | 1u << 2);
	int e = edge(N, 6, 1, L(0), 1), a = alpha(N, e);
	int f1 = phi(N, e, 1), f2 = phi(N, e, 2);
	int w1 = wts(N, 1, true), w2 = wts(N, 2, true);
	int s0 = STEP(N, 2, L(a, 0), L(f2, w2));
	int s1 = STEP(N, a, L(1, 0), L(f1, s0));
	STEP(N, -1, L(1, 0), L(s1, w1));
}

/* split: x1*x2 + x3*x4, a component without x1: its constant joins
 * x1's rows in a product step [ℓ1, c] ⊙ [c]. */
static void build_split(Net *N)
{
	mono(N, 1.0, 2, L(1, 2));
	mono(N, 1.0, 2, L(3, 4));
	values(N, 1u << 2 | 1u << 3 | 1u << 4);
	int e0 = edge(N, 6, 1, L(0), 2), e1 = edge(N, 24, 1, L(1), 4);
	int a0 = alpha(N, e0), a1 = alpha(N, e1);
	int f01 = phi(N, e0, 1), f02 = phi(N, e0, 2), f13 = phi(N, e1, 3);
	int f14 = phi(N, e1, 4), w2 = wts(N, 2, true), w3 = wts(N, 3, true);
	int w4 = wts(N, 4, true);
	int s0 = STEP(N, 2, L(a0, 0), L(f02, w2));
	int s1 = STEP(N, a0, L(1, 0), L(f01, s0));
	int s2 = STEP(N, 4, L(a1, 0), L(f14, w4));
	int s3 = STEP(N, a1, L(3, 0), L(f13, s2));
	int s4 = STEP(N, 3, L(0), L(w3, s3));
	STEP(N, -1, L(1, 0), L(s1, s4));
}

/* novalue: x1*x2 with no values: the output is all ones. */
static void build_novalue(Net *N)
{
	mono(N, 1.0, 2, L(1, 2));
	int e = edge(N, 6, 1, L(0), 2), a = alpha(N, e);
	int f1 = phi(N, e, 1), f2 = phi(N, e, 2), w2 = wts(N, 2, false);
	int s0 = STEP(N, 2, L(a), L(f2, w2));
	STEP(N, a, L(1), L(f1, s0));
}

typedef struct Case {
	const char *name;
	void (*build)(Net *);
	int t;
	int64_t maxn;            /* the reference costs n^t */
} Case;

static const Case cases[] = {
	{"x1*x2", build_self, 2, 100},
	{"x1*x2 + x2*x3", build_tree, 3, 100},
	{"x1*x2 + x2*x3 + x3*x1", build_cycle, 3, 100},
	{"x1*x2*x3", build_triple, 3, 100},
	{"x1*x2 + x2*x3 + x3*x1 (chain)", build_chain, 3, 100},
	{"x1*x2 + x2*x3 + x3*x1 (chain, permuted)", build_chain_perm, 3, 100},
	{"0.7*x1^2*x2 - 0.5*x2^2", build_square, 2, 100},
	{"x1*x2 + x3*x4", build_split, 4, 33},
	{"x1*x2 (no values)", build_novalue, 2, 100},
};

/* ---------------------------------------------------------------- checks */

static unsigned long long rng = 88172645463325252ull;

static float uniform(float lo, float hi)
{
	rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
	return lo + (hi - lo) * (float)((rng >> 11) * 0x1.0p-53);
}

/* make_inputs: factor entries in [-B, B], values in [-1, 1]. */
static float **make_inputs(const Net *N, int64_t batch, int64_t n, float B)
{
	float **in = calloc(N->k.num_inputs, sizeof *in);
	for (int i = 0; i < N->k.num_inputs; i++) {
		int64_t len = batch * n * N->in[i].cols;
		in[i] = malloc((len ? len : 1) * sizeof(float));
		float r = N->in[i].kind == PA_INPUT_FACTOR ? B : 1.0f;
		for (int64_t e = 0; e < len; e++)
			in[i][e] = uniform(-r, r);
	}
	return in;
}

static void free_inputs(const Net *N, float **in)
{
	for (int i = 0; i < N->k.num_inputs; i++)
		free(in[i]);
	free(in);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* check_case: one network at one size against pa_reference. */
static void check_case(const Case *c, int hd, int vd, int64_t n, int64_t batch)
{
	Net N;
	net_init(&N, c->t, hd, vd, 8, 1.0);
	c->build(&N);
	float **in = make_inputs(&N, batch, n, 0.3f);
	int64_t len = batch * n * vd;
	float *out = malloc((len ? len : 1) * sizeof *out);
	double *ref = malloc((len ? len : 1) * sizeof *ref);
	double t0 = now();
	pa_status st = pa_approx_run(&N.k, &N.p, batch, n, (const float *const *)in, out);
	double t1 = now();
	pa_status sr = pa_reference(&N.k, batch, n, (const float *const *)in, ref);
	double err = 0, mx = 1e-30;
	for (int64_t i = 0; i < len; i++) {
		err = fmax(err, fabs(out[i] - ref[i]));
		mx = fmax(mx, fabs(ref[i]));
	}
	if (st != PA_OK || sr != PA_OK || !(err <= 1e-4 * fmax(mx, 0.05))) {
		printf("FAIL %s hd=%d vd=%d n=%ld batch=%ld: status %d/%d, error %.3g (max %.3g)\n",
		       c->name, hd, vd, (long)n, (long)batch, st, sr, err, mx);
		failures++;
	}
	if (getenv("VERBOSE"))
		printf("%s hd=%d vd=%d n=%ld batch=%ld: %.3g ms, ref %.3g ms, error %.3g\n", c->name,
		       hd, vd, (long)n, (long)batch, 1e3 * (t1 - t0), 1e3 * (now() - t1), err);
	free(out), free(ref);
	free_inputs(&N, in);
	net_free(&N);
}

static int exact_calls;

/* fake_exact: stands for an exact kernel: counts calls, fills out with 7. */
static pa_status fake_exact(int64_t batch, int64_t n, const float *const inputs[],
                            float *out)
{
	(void)inputs;
	exact_calls++;
	for (int64_t i = 0; i < batch * n * 3; i++)
		out[i] = 7.0f;
	return PA_OK;
}

#define EXPECT(cond, ...) do { if (!(cond)) { printf("FAIL " __VA_ARGS__); \
	printf("\n"); failures++; } } while (0)

/* check_guards: the bound, the exact fallback and n below min_n. */
static void check_guards(void)
{
	Net N;
	net_init(&N, 3, 2, 3, 4, 1.0);
	build_tree(&N);
	int64_t n = 20;
	float **in = make_inputs(&N, 1, n, 0.5f);
	float out[60];
	for (int i = 0; i < 60; i++)
		out[i] = -3.0f;
	N.p.bound = 0.4;   /* the entries reach 0.5 */
	in[1][7] = 0.5f;
	pa_status st = pa_approx_run(&N.k, &N.p, 1, n, (const float *const *)in, out);
	bool untouched = true;
	for (int i = 0; i < 60; i++)
		untouched = untouched && out[i] == -3.0f;
	EXPECT(st == PA_ERR_BOUND && untouched, "bound: status %d, out untouched %d", st, untouched);
	EXPECT(pa_factor_max(&N.k, 1, n, (const float *const *)in) == 0.5, "pa_factor_max");
	N.p.exact = fake_exact;
	st = pa_approx_run(&N.k, &N.p, 1, n, (const float *const *)in, out);
	EXPECT(st == PA_OK && exact_calls == 1 && out[59] == 7.0f, "bound with exact: %d, %d calls",
	       st, exact_calls);
	N.p.bound = 1.0;
	N.p.min_n = 21;
	st = pa_approx_run(&N.k, &N.p, 1, n, (const float *const *)in, out);
	EXPECT(st == PA_OK && exact_calls == 2, "n below min_n: %d, %d calls", st, exact_calls);
	N.p.min_n = 20;
	out[0] = 7.0f;
	st = pa_approx_run(&N.k, &N.p, 1, n, (const float *const *)in, out);
	EXPECT(st == PA_OK && exact_calls == 2 && out[0] != 7.0f, "n at min_n: %d", st);
	st = pa_approx_run(&N.k, &N.p, 1, 0, (const float *const *)in, out);
	EXPECT(st == PA_ERR_ARGUMENT, "n = 0: %d", st);
	st = pa_approx_run(&N.k, &N.p, 1, n, (const float *const *)in, NULL);
	EXPECT(st == PA_ERR_NULL, "out NULL: %d", st);
	in[0][3] = NAN;
	st = pa_approx_run(&N.k, &N.p, 1, n, (const float *const *)in, out);
	EXPECT(st == PA_ERR_NONFINITE, "NaN: %d", st);
	in[0][3] = 0.0f;
	N.step[0].sum = 1;    /* a plan whose out misses an index */
	st = pa_approx_run(&N.k, &N.p, 1, n, (const float *const *)in, out);
	EXPECT(st == PA_ERR_UNSUPPORTED, "bad plan: %d", st);
	free_inputs(&N, in);
	net_free(&N);
}

/* check_nested: the cycle network from inside a parallel region, where
 * omp_get_max_threads() is 2 but the engine's own regions get a team of
 * one thread: every piece of its work must still run (the reduced
 * accumulator of its first steps is scattered by pieces of rows). */
static void check_nested(void)
{
#ifdef _OPENMP
	int threads = omp_get_max_threads(), levels = omp_get_max_active_levels();
	omp_set_num_threads(2);
	omp_set_max_active_levels(1);
	#pragma omp parallel num_threads(2)
	#pragma omp single
	{
		check_case(&cases[2], 2, 3, 7, 1);
		check_case(&cases[2], 2, 5, 33, 2);
		check_case(&cases[2], 3, 3, 100, 1);
	}
	omp_set_max_active_levels(levels);
	omp_set_num_threads(threads);
#endif
}

/* ----------------------------------------------------------------- bench */

/* bench: a network at growing n; best of reps; GFLOP/s of the products
 * (flops(n, F, C) of them per call). */
static void bench(const char *name, void (*build)(Net *), int t, int hd, int vd,
                  int P, double (*flops)(double n, double F, double C))
{
	static const int64_t ns[] = {4096, 16384, 65536};
	for (int i = 0; i < 3; i++) {
		Net N;
		net_init(&N, t, hd, vd, P, 1.0);
		build(&N);
		int64_t n = ns[i];
		float **in = make_inputs(&N, 1, n, 0.3f);
		float *out = malloc(n * vd * sizeof *out);
		double best = 1e30;
		for (int r = 0; r < 5; r++) {
			double t0 = now();
			pa_status st = pa_approx_run(&N.k, &N.p, 1, n, (const float *const *)in, out);
			double dt = now() - t0;
			best = dt < best ? dt : best;
			if (st != PA_OK)
				printf("bench: status %d\n", st);
		}
		double F = N.e[0].nfeat, fl = flops(n, F, vd + 1);
		printf("%-24s hd=%d P=%d F=%4.0f vd=%d n=%6ld: %8.3f ms, %6.1f ns/row, %6.1f GFLOP/s\n",
		       name, hd, P, F, vd, (long)n, 1e3 * best, 1e9 * best / n, fl / best * 1e-9);
		free(out);
		free_inputs(&N, in);
		net_free(&N);
	}
}

/* Flops of the products: 2 n F C per Φ-by-weights step. */
static double tree_flops(double n, double F, double C)
{
	return 4 * 2 * n * F * C;
}

static double cycle_flops(double n, double F, double C)
{
	return 2 * (2 * n * F * F * C) + 2 * F * F * F * C + 2 * n * F * F * C + 2 * n * F * C;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	static const int64_t ns[] = {1, 2, 7, 33, 100};
	for (size_t c = 0; c < sizeof cases / sizeof *cases && argc < 3; c++)
		for (int hd = 2; hd <= 3; hd++)
			for (int vd = 1; vd <= 5; vd += 2)
				for (int i = 0; i < 5; i++)
					for (int64_t batch = 1; batch <= 2; batch++)
						if (ns[i] <= cases[c].maxn && (batch == 1 || ns[i] <= 33))
							check_case(&cases[c], hd, vd, ns[i], batch);
	check_guards();
	if (argc < 3)
		check_nested();
	printf("%s: %d failures\n", argv[0], failures);
	const char *which = argc > 2 ? argv[2] : "tree cycle";
	if (argc > 1 && strcmp(argv[1], "--bench") == 0 && strstr(which, "tree")) {
		bench("x1*x2 + x2*x3", build_tree, 3, 4, 4, 4, tree_flops);
		bench("x1*x2 + x2*x3", build_tree, 3, 4, 4, 8, tree_flops);
	}
	if (argc > 1 && strcmp(argv[1], "--bench") == 0 && strstr(which, "cycle"))
		bench("x1*x2+x2*x3+x3*x1", build_cycle, 3, 4, 4, 4, cycle_flops);
	return failures != 0;
}
