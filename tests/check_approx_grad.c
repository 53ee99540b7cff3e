/*
 * check_approx_grad.c - the gradients of the approximate kernels
 * (doc/training.md, "Approximate kernels").
 *
 * Every kernel of tests/e2e/polys_approx.txt (or of polys_approx_masked.txt:
 * the brute forces below honour K_info's masks as pa_reference does) is trained on factor inputs
 * drawn AT the declared bound (uniform, all ±B, and the split draw of
 * check_approx.c) and its gradients are checked twice:
 *   promise  against pa_reference_backward (the exact softmax, in double)
 *            within the bound doc/training.md derives from K_info.error:
 *            per entry, for a value (η = 2ε/(1−ε))
 *                |Δ dV[j][r,c]| ≤ η · Σ_{ℓ∋r} p |g[ℓ1,c]| Π_{j'≠j} |V_j'|,
 *            and for a factor on edge e
 *                |Δ dF[r,l]| ≤ Σ_{ℓ∋r} p |∂u_e/∂F| · (κ (|⟨g,u⟩| + |⟨g,out⟩|)
 *                                               + (1+κ) η Σ_c |g_c| A_c(ℓ1)),
 *            κ = (1+η)(1+ε') − 1, ε' = max_e e^X_e X_e^P_e / (P_e! (1−ε)) the
 *            relative error of the Taylor polynomial's derivative and
 *            A_c(ℓ1) = Σ p |u_c|; plus TOL of the gradient's size for float;
 *   tight    against the exact gradient, in double, of the SAME function the
 *            kernel computes (each edge's exp replaced by its degree-P_e
 *            Taylor polynomial, the biases' exp kept), within TIGHT of each
 *            gradient's size: a wrong gradient of the approximation itself
 *            shows here, not under the approximation's tolerance.  That
 *            reference is itself checked against central differences of its
 *            own forward (fd), and its exact mode against
 *            pa_reference_backward.
 * The degrees P_e are not in K_info: they are the ones polyc's rule (the
 * smallest even degree within a share of the tolerance, doc/design.md)
 * gives for some share, the one whose combined error is K_info.error.
 * Also: train writes what the plain forward writes; an auto kernel's call
 * that ran exact (saved[0], pa_approx.h) gives the exact gradient (every
 * exact part, tree or elimination, has a backward);
 * over the bound: PA_ERR_BOUND and nothing written, or with fallback =
 * exact the exact plan's gradient;
 * a saved that records another choice PA_ERR_ARGUMENT; under a mask, a
 * row left without any tuple outputs exactly 0 and x1's inputs get
 * exactly 0 gradient there; NULL arguments,
 * NaN gradients and NULL gradient entries as check_grad.c checks them.
 *
 * Environment: E2E_KERNEL=e2e_12 runs one kernel; E2E_VERBOSE=1 prints
 * each kernel's worst errors against its promise and the tight check.
 */
#include <check.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pa_approx.h"
#include "polyattn.h"
#include "rnd.h"

extern const pa_kernel_info *const e2e_kernels[];
extern const int e2e_nkernels;
extern const char *const e2e_origins[];

#include "e2e_inputs.h"

#define TOL 1e-4             /* float rounding, of a gradient's size */
#define TIGHT 1e-3           /* the tight check, of a gradient's size */
#define EXACT_TOL 1e-4       /* an exact path's gradient */
#define REF_BUDGET 3e7       /* reference operations per call */
#define MAX_DEG 40
#define AUTO_N 240           /* past every auto kernel's crossover */
#define SENTINEL 12345.0f

static const int64_t sizes[] = {1, 2, 7, 33, 100, 257, 600};
static const int64_t batches[] = {1, 2};

#define COUNT(a) ((int)(sizeof(a) / sizeof(a)[0]))

/* ------------------------------------------------- the kernel's shape */

/* Edges, their score bounds and degrees, from K_info (doc/design.md). */
typedef struct Shape {
	int nedges;
	uint32_t mvars[64];      /* variables of monomial m */
	int edge[64];            /* edge of monomial m, -1 for a bias */
	double X[64];            /* |u_e| ≤ X_e within the bound */
	int P[64];               /* Taylor degree of edge e */
	double dmax;             /* ε': the derivative's relative error */
} Shape;

static double taylor_err(double x, int p)
{
	if (x == 0)
		return 0;
	return exp(x + (p + 1) * log(x) - lgamma(p + 2.0));
}

/* degree_for: the smallest even degree within share, or -1. */
static int degree_for(double x, double share)
{
	for (int p = 0; p <= MAX_DEG; p += 2)
		if (taylor_err(x, p) <= share)
			return p;
	return -1;
}

/* combined: the promise polyc computes from the degrees. */
static double combined(const Shape *S, const int *P)
{
	double hi = 1, lo = 1;
	for (int e = 0; e < S->nedges; e++) {
		double err = taylor_err(S->X[e], P[e]);
		hi *= 1 + err, lo *= 1 - err;
	}
	return fmax(hi - 1, 1 - lo);
}

/* shape_of: edges in polyc's order (first monomial), X_e as polyc's
 * edge_x sums it (over the float bound K_info.bound is printed from), and the degrees whose combined error is K_info.error. */
static Shape shape_of(const pa_kernel_info *k)
{
	Shape S = {0};
	for (int i = 0; i < k->num_inputs; i++)
		if (k->inputs[i].kind == PA_INPUT_FACTOR)
			S.mvars[k->inputs[i].monomial] |= 1u << k->inputs[i].variable;
	uint32_t ev[64];
	for (int m = 0; m < k->num_monomials; m++) {
		S.edge[m] = -1;
		if (__builtin_popcount(S.mvars[m]) < 2)
			continue;
		int e = 0;
		while (e < S.nedges && ev[e] != S.mvars[m])
			e++;
		if (e == S.nedges)
			ev[S.nedges++] = S.mvars[m];
		S.edge[m] = e;
		S.X[e] += fabs(k->scale * k->coefficients[m]) * k->head_dim *
		          pow((float)k->bound, degree_of(k, m));
	}
	bool found = false;
	for (int f = 0; f < S.nedges && !found; f++)
		for (int q = 0; q <= MAX_DEG && !found; q += 2) {
			double share = taylor_err(S.X[f], q);
			int P[64];
			bool ok = true;
			for (int e = 0; e < S.nedges; e++)
				ok &= (P[e] = degree_for(S.X[e], share)) >= 0;
			if (ok && fabs(combined(&S, P) - k->error) <= 1e-12 * k->error) {
				memcpy(S.P, P, sizeof P);
				found = true;
			}
		}
	ck_assert_msg(found, "%s: no Taylor degrees give K_info.error %g", k->name, k->error);
	for (int e = 0; e < S.nedges; e++) {
		double x = S.X[e], d = exp(x - lgamma(S.P[e] + 1.0)) * pow(x, S.P[e]);
		S.dmax = fmax(S.dmax, d / (1 - k->error));
	}
	return S;
}

/* --------------------------------------------- brute force, in double */

/* taylor: Σ_{i ≤ p} u^i / i! (p < 0: 0). */
static double taylor(double u, int p)
{
	double s = 0, t = 1;
	for (int i = 0; i <= p; i++) {
		s += t;
		t *= u / (i + 1);
	}
	return s;
}

/* What one brute-force pass computes (grad and bound may be NULL). */
typedef struct Brute {
	const pa_kernel_info *k;
	const Shape *S;
	bool exact;              /* exp(u_e) itself, not its Taylor polynomial */
	int64_t n;
	const float *const *in;
	const float *g;          /* dL/dout */
	double *out;             /* n × vd */
	double *const *grad;     /* per input */
	double *const *bound;    /* the promise's bound per entry (exact mode) */
	double eta, kappa;
} Brute;

static bool next_tuple(int64_t *pos, int t, int64_t n)
{
	for (int j = 2; j <= t; j++) {
		if (++pos[j] < n)
			return true;
		pos[j] = 0;
	}
	return false;
}

/* mono_term: Σ_l Π of monomial m's factors at pos, skipping input skip
 * (-1: none) when col < 0; else the product at column col. */
static double mono_prod(const Brute *B, int m, const int64_t *pos, int skip, int col)
{
	const pa_kernel_info *k = B->k;
	double p = 1;
	for (int i = 0; i < k->num_inputs; i++)
		if (i != skip && k->inputs[i].kind == PA_INPUT_FACTOR && k->inputs[i].monomial == m)
			p *= B->in[i][pos[k->inputs[i].variable] * k->head_dim + col];
	return p;
}

/* weight: the tuple's weight (relative to the bias at 0) and its score
 * per edge in u. */
static double weight(const Brute *B, const int64_t *pos, double *u)
{
	const pa_kernel_info *k = B->k;
	double bias = 0, w = 1;
	for (int e = 0; e < B->S->nedges; e++)
		u[e] = 0;
	for (int m = 0; m < k->num_monomials; m++) {
		double s = 0;
		for (int l = 0; l < k->head_dim; l++)
			s += mono_prod(B, m, pos, -1, l);
		s *= k->scale * k->coefficients[m];
		if (B->S->edge[m] >= 0)
			u[B->S->edge[m]] += s;
		else if (!(B->S->mvars[m] & 2u))
			bias += s;
	}
	for (int e = 0; e < B->S->nedges; e++)
		w *= B->exact ? exp(u[e]) : taylor(u[e], B->S->P[e]);
	return w * exp(bias);
}

/* vprod: Π of the value rows at pos in channel c, skipping input skip. */
static double vprod(const Brute *B, const int64_t *pos, int c, int skip, bool absval)
{
	const pa_kernel_info *k = B->k;
	double u = 1;
	for (int i = 0; i < k->num_inputs; i++)
		if (i != skip && k->inputs[i].kind == PA_INPUT_VALUE) {
			double x = B->in[i][pos[k->inputs[i].variable] * k->value_dim + c];
			u *= absval ? fabs(x) : x;
		}
	return u;
}

/* brute_row: query ℓ1's output, and its share of every gradient (none,
 * and output 0, for a row the mask leaves no tuple). */
static void brute_row(const Brute *B, int64_t l1)
{
	const pa_kernel_info *k = B->k;
	const int vd = k->value_dim, hd = k->head_dim, E = B->S->nedges;
	const float *g = B->g + l1 * vd;
	int64_t pos[17] = {0};
	double u[64], Z = 0, out[vd], A[vd];
	pos[1] = l1;
	for (int c = 0; c < vd; c++)
		out[c] = A[c] = 0;
	do {
		if (!tuple_allowed(k, pos))
			continue;
		double w = weight(B, pos, u);
		Z += w;
		for (int c = 0; c < vd; c++) {
			out[c] += w * vprod(B, pos, c, -1, false);
			A[c] += w * vprod(B, pos, c, -1, true);
		}
	} while (next_tuple(pos, k->num_vars, B->n));
	double go = 0, G = 0;
	if (Z == 0) {
		for (int c = 0; c < vd; c++)
			B->out[l1 * vd + c] = 0;
		return;
	}
	for (int c = 0; c < vd; c++) {
		out[c] /= Z, A[c] /= Z;
		B->out[l1 * vd + c] = out[c];
		go += g[c] * out[c];
		G += fabs(g[c]) * A[c];
	}
	if (!B->grad)
		return;
	do {
		if (!tuple_allowed(k, pos))
			continue;
		double w = weight(B, pos, u), p = w / Z, gu = 0, du[64];
		for (int c = 0; c < vd; c++)
			gu += g[c] * vprod(B, pos, c, -1, false);
		double dw = p * (gu - go);
		for (int e = 0; e < E; e++) {
			double T = taylor(u[e], B->S->P[e]);
			du[e] = B->exact ? dw : dw * taylor(u[e], B->S->P[e] - 1) / T;
		}
		double room = B->kappa * (fabs(gu) + fabs(go)) + (1 + B->kappa) * B->eta * G;
		for (int i = 0; i < k->num_inputs; i++) {
			const pa_input_desc *d = &k->inputs[i];
			if (d->kind == PA_INPUT_VALUE) {
				for (int c = 0; c < vd; c++) {
					double x = p * g[c] * vprod(B, pos, c, i, false);
					B->grad[i][pos[d->variable] * vd + c] += x;
					if (B->bound)
						B->bound[i][pos[d->variable] * vd + c] +=
							B->eta * p * fabs(g[c]) * vprod(B, pos, c, i, true);
				}
				continue;
			}
			int m = d->monomial, e = B->S->edge[m];
			if (e < 0 && (B->S->mvars[m] & 2u))
				continue;           /* x1's bias cancels */
			double c0 = k->scale * k->coefficients[m] * (e >= 0 ? du[e] : dw);
			for (int l = 0; l < hd; l++) {
				double dd = mono_prod(B, m, pos, i, l);
				B->grad[i][pos[d->variable] * hd + l] += c0 * dd;
				if (B->bound)
					B->bound[i][pos[d->variable] * hd + l] +=
						p * fabs(k->scale * k->coefficients[m] * dd) * room;
			}
		}
	} while (next_tuple(pos, k->num_vars, B->n));
}

/* brute: every row of one batch entry (grad and bound zeroed here), the
 * rows over the threads, each summing into its own arrays. */
static void brute(Brute *B)
{
	const pa_kernel_info *k = B->k;
	const int ni = k->num_inputs;
	for (int i = 0; i < ni && B->grad; i++) {
		size_t len = (size_t)(B->n * k->inputs[i].cols);
		memset(B->grad[i], 0, len * sizeof(double));
		if (B->bound)
			memset(B->bound[i], 0, len * sizeof(double));
	}
	#pragma omp parallel
	{
		Brute mine = *B;
		double *g[256] = {0}, *bd[256] = {0};
		for (int i = 0; i < ni && B->grad; i++) {
			size_t len = (size_t)(B->n * k->inputs[i].cols);
			g[i] = calloc(len, sizeof(double));
			bd[i] = B->bound ? calloc(len, sizeof(double)) : NULL;
		}
		mine.grad = B->grad ? g : NULL;
		mine.bound = B->bound ? bd : NULL;
		#pragma omp for schedule(dynamic, 1)
		for (int64_t l1 = 0; l1 < B->n; l1++)
			brute_row(&mine, l1);
		#pragma omp critical
		for (int i = 0; i < ni && B->grad; i++)
			for (int64_t e = 0; e < B->n * k->inputs[i].cols; e++) {
				B->grad[i][e] += g[i][e];
				if (B->bound)
					B->bound[i][e] += bd[i][e];
			}
		for (int i = 0; i < ni; i++)
			free(g[i]), free(bd[i]);
	}
}

/* -------------------------------------------------------------- inputs */

enum { DRAW_UNIFORM, DRAW_SIGNS, DRAW_SPLIT, NDRAWS };
static const char *const draw_names[] = {"uniform", "signs", "split"};

/* fill: check_approx.c's draws at the bound (K_info.bound, a float). */
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
			bool plus = dsc->variable == 1 || (l / dsc->variable) % 2 == 0;
			for (int c = 0; c < dsc->cols; c++) {
				float *x = &in->buf[i][r * dsc->cols + c];
				if (dsc->kind == PA_INPUT_VALUE)
					*x = d == DRAW_SPLIT ? (plus ? 1.0f : -1.0f) : (float)rnd_unit(s);
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

/* One call's buffers: out, saved, grad_out, gradients, references. */
typedef struct Call {
	Inputs in;
	size_t out_len, saved_len;
	float *out, *saved, *g;
	float *grad[256];
	double *want[256], *tight[256], *bound[256], *mine[256];
	double *dout;
} Call;

static float *filled(size_t len, float v)
{
	float *p = malloc((len ? len : 1) * sizeof *p);
	ck_assert(p != NULL);
	for (size_t e = 0; e < len; e++)
		p[e] = v;
	return p;
}

static void call_alloc(Call *C, const pa_kernel_info *k, int64_t n, int64_t batch,
                       int d, uint64_t *s)
{
	memset(C, 0, sizeof *C);
	inputs_alloc(&C->in, k, n, batch);
	fill(&C->in, d, s);
	C->out_len = (size_t)(batch * n * k->value_dim);
	int64_t sf = k->saved_floats(batch, n);
	ck_assert_msg(sf >= 1, "%s: saved_floats %lld", k->name, (long long)sf);
	C->saved_len = (size_t)sf;
	C->out = filled(C->out_len, SENTINEL);
	C->saved = filled(C->saved_len, SENTINEL);
	C->g = filled(C->out_len, 0);
	for (size_t e = 0; e < C->out_len; e++)
		C->g[e] = (float)rnd_unit(s);
	C->dout = malloc(C->out_len * sizeof(double));
	for (int i = 0; i < k->num_inputs; i++) {
		size_t len = inputs_len(&C->in, i);
		C->grad[i] = filled(len, SENTINEL);
		C->want[i] = malloc(len * sizeof(double));
		C->tight[i] = malloc(len * sizeof(double));
		C->bound[i] = malloc(len * sizeof(double));
		C->mine[i] = malloc(len * sizeof(double));
		ck_assert(C->want[i] && C->tight[i] && C->bound[i] && C->mine[i]);
	}
}

static void call_free(Call *C)
{
	for (int i = 0; i < C->in.k->num_inputs; i++)
		free(C->grad[i]), free(C->want[i]), free(C->tight[i]), free(C->bound[i]),
		free(C->mine[i]);
	free(C->out), free(C->saved), free(C->g), free(C->dout);
	inputs_free(&C->in);
}

/* untouched: every gradient still SENTINEL. */
static bool untouched(const Call *C)
{
	for (int i = 0; i < C->in.k->num_inputs; i++)
		for (size_t e = 0; e < inputs_len(&C->in, i); e++)
			if (C->grad[i][e] != SENTINEL)
				return false;
	return true;
}

/* references: pa_reference_backward into want, the promise's bound (and
 * the exact brute force into mine), the Taylor function's gradient into
 * tight, per batch entry. */
static void references(Call *C, const Shape *S, bool promise)
{
	const pa_kernel_info *k = C->in.k;
	const double eps = k->error, eta = 2 * eps / (1 - eps);
	for (int64_t b = 0; b < C->in.batch; b++) {
		const float *ptrs[256];
		double *want[256], *tight[256], *bound[256], *mine[256];
		inputs_view(&C->in, b, ptrs);
		for (int i = 0; i < k->num_inputs; i++) {
			size_t o = (size_t)(b * C->in.n * k->inputs[i].cols);
			want[i] = C->want[i] + o, tight[i] = C->tight[i] + o;
			bound[i] = C->bound[i] + o, mine[i] = C->mine[i] + o;
		}
		const float *g = C->g + b * C->in.n * k->value_dim;
		Brute B = {.k = k, .S = S, .exact = true, .n = C->in.n, .in = ptrs, .g = g,
		           .out = C->dout + b * C->in.n * k->value_dim, .grad = mine,
		           .bound = bound, .eta = eta,
		           .kappa = (1 + eta) * (1 + S->dmax) - 1};
		if (promise) {
			ck_assert_int_eq(pa_reference_backward(k, 1, C->in.n, ptrs, g, want), PA_OK);
			brute(&B);
		}
		B.exact = false, B.grad = tight, B.bound = NULL;
		brute(&B);
	}
}

/* ------------------------------------------------------------ checking */

/* size_of: max |x| over input i's reference gradient. */
static double size_of(const Call *C, double *const *x, int i)
{
	double m = 0;
	for (size_t e = 0; e < inputs_len(&C->in, i); e++)
		m = fmax(m, fabs(x[i][e]));
	return m;
}

/* check_promise: every entry within its bound plus TOL of the size;
 * returns the worst (error − TOL·size) / bound. */
static double check_promise(const Call *C, const char *ctx)
{
	const pa_kernel_info *k = C->in.k;
	double worst = 0, largest = 0;
	for (int i = 0; i < k->num_inputs; i++)
		largest = fmax(largest, size_of(C, C->want, i));
	for (int i = 0; i < k->num_inputs; i++) {
		double slack = TOL * fmax(size_of(C, C->want, i), 1e-2 * largest);
		for (size_t e = 0; e < inputs_len(&C->in, i); e++) {
			double err = fabs(C->grad[i][e] - C->want[i][e]);
			ck_assert_msg(isfinite(C->grad[i][e]) && err <= C->bound[i][e] + slack,
			              "%s: input %s entry %zu: gradient %.9g, exact %.9g: error "
			              "%.3g over the promised %.3g + %.3g", ctx, k->inputs[i].name,
			              e, C->grad[i][e], C->want[i][e], err, C->bound[i][e], slack);
			if (C->bound[i][e] > 0)
				worst = fmax(worst, (err - slack) / C->bound[i][e]);
		}
	}
	return worst;
}

/* check_close: every gradient within tol of its size (1e-2 of the
 * largest gradient's for one that is nearly 0) of ref; the worst ratio. */
static double check_close(const Call *C, double *const *ref, double tol,
                          const char *what, const char *ctx)
{
	const pa_kernel_info *k = C->in.k;
	double worst = 0, largest = 0;
	for (int i = 0; i < k->num_inputs; i++)
		largest = fmax(largest, size_of(C, ref, i));
	for (int i = 0; i < k->num_inputs; i++) {
		double size = fmax(size_of(C, ref, i), 1e-2 * largest), err = 0;
		for (size_t e = 0; e < inputs_len(&C->in, i); e++)
			err = fmax(err, isfinite(C->grad[i][e]) ? fabs(C->grad[i][e] - ref[i][e])
			                                         : INFINITY);
		ck_assert_msg(err <= tol * size, "%s: input %s: error %.3g against the %s, "
		              "over %.3g (%.0e of %.3g)", ctx, k->inputs[i].name, err, what,
		              tol * size, tol, size);
		worst = fmax(worst, err / size);
	}
	return worst;
}

/* check_mine: the brute force's exact mode is pa_reference_backward. */
static void check_mine(const Call *C, const char *ctx)
{
	const pa_kernel_info *k = C->in.k;
	double largest = 1e-300;
	for (int i = 0; i < k->num_inputs; i++)
		largest = fmax(largest, size_of(C, C->want, i));
	for (int i = 0; i < k->num_inputs; i++) {
		double size = fmax(size_of(C, C->want, i), 1e-6 * largest);
		for (size_t e = 0; e < inputs_len(&C->in, i); e++)
			ck_assert_msg(fabs(C->mine[i][e] - C->want[i][e]) <= 1e-9 * size,
			              "%s: input %s entry %zu: brute force %.12g, reference %.12g",
			              ctx, k->inputs[i].name, e, C->mine[i][e], C->want[i][e]);
	}
}

static bool affordable(const pa_kernel_info *k, int64_t n, int64_t batch)
{
	return n <= 7 || 3 * ref_cost(k, n, batch) <= REF_BUDGET;
}

/* train_backward: train (its output the plain forward's), backward; the
 * backward's status.  *ran: what saved[0] says ran. */
static pa_status train_backward(Call *C, int *ran, const char *ctx)
{
	const pa_kernel_info *k = C->in.k;
	const float *ptrs[256];
	inputs_view(&C->in, 0, ptrs);
	ck_assert_int_eq(k->train(C->in.batch, C->in.n, ptrs, C->out, C->saved), PA_OK);
	float *plain = filled(C->out_len, 0);
	ck_assert_int_eq(k->run(C->in.batch, C->in.n, ptrs, plain), PA_OK);
	ck_assert_msg(memcmp(plain, C->out, C->out_len * sizeof *plain) == 0,
	              "%s: train's output differs from the forward's", ctx);
	free(plain);
	*ran = (int)C->saved[0];
	ck_assert_msg(*ran == PA_APPROX_NETWORK || *ran == PA_APPROX_EXACT,
	              "%s: saved[0] = %g", ctx, C->saved[0]);
	return k->backward(C->in.batch, C->in.n, ptrs, C->out, C->saved, C->g, C->grad);
}

/* check_exact_path: a call that ran the exact part: its gradient. */
static void check_exact_path(Call *C, pa_status st, const char *ctx)
{
	const pa_kernel_info *k = C->in.k;
	ck_assert_msg(st == PA_OK, "%s: exact path's backward: %s", ctx, pa_strerror(st));
	for (int64_t b = 0; b < C->in.batch; b++) {
		const float *ptrs[256];
		double *want[256];
		inputs_view(&C->in, b, ptrs);
		for (int i = 0; i < k->num_inputs; i++)
			want[i] = C->want[i] + b * C->in.n * k->inputs[i].cols;
		ck_assert_int_eq(pa_reference_backward(k, 1, C->in.n, ptrs,
		                                       C->g + b * C->in.n * k->value_dim, want),
		                 PA_OK);
	}
	check_close(C, C->want, EXACT_TOL, "exact reference", ctx);
}

/* check_empty_rows: every row the mask leaves no tuple outputs exactly 0,
 * and x1's inputs get exactly 0 gradient there (x1's row reaches that
 * output alone); returns how many such rows the call had. */
static int check_empty_rows(const Call *C, const char *ctx)
{
	const pa_kernel_info *k = C->in.k;
	const int64_t n = C->in.n;
	int empty = 0;
	for (int64_t l1 = 0; k->num_masks && l1 < n; l1++) {
		if (!row_empty(k, n, l1))
			continue;
		empty++;
		for (int64_t b = 0; b < C->in.batch; b++) {
			for (int c = 0; c < k->value_dim; c++)
				ck_assert_msg(C->out[(b * n + l1) * k->value_dim + c] == 0.0f,
				              "%s: row %lld has no tuple, output %g", ctx,
				              (long long)l1, C->out[(b * n + l1) * k->value_dim + c]);
			for (int i = 0; i < k->num_inputs; i++) {
				int cols = k->inputs[i].cols;
				for (int c = 0; k->inputs[i].variable == 1 && c < cols; c++)
					ck_assert_msg(C->grad[i][(b * n + l1) * cols + c] == 0.0f,
					              "%s: row %lld has no tuple, input %s gradient %g",
					              ctx, (long long)l1, k->inputs[i].name,
					              C->grad[i][(b * n + l1) * cols + c]);
			}
		}
	}
	return empty;
}

/* one_run: one draw at one size; counts the runs the network took. */
static void one_run(int idx, int d, int64_t n, int64_t batch, const Shape *S,
                    bool promise, int *network, int *empty, double *worst_promise,
                    double *worst_tight)
{
	const pa_kernel_info *k = e2e_kernels[idx];
	char ctx[512];
	snprintf(ctx, sizeof ctx, "%s (%s) '%s' head_dim %d value_dim %d, %s draw, n %lld "
	         "batch %lld", k->name, e2e_origins[idx], k->polynomial, k->head_dim,
	         k->value_dim, draw_names[d], (long long)n, (long long)batch);
	uint64_t s = rnd_seed(d, idx, n, batch);
	Call C;
	call_alloc(&C, k, n, batch, d, &s);
	int ran;
	pa_status st = train_backward(&C, &ran, ctx);
	if (ran == PA_APPROX_EXACT)
		check_exact_path(&C, st, ctx);
	else {
		ck_assert_msg(st == PA_OK, "%s: backward: %s", ctx, pa_strerror(st));
		*empty += check_empty_rows(&C, ctx);
		references(&C, S, promise);
		if (promise) {
			check_mine(&C, ctx);
			*worst_promise = fmax(*worst_promise, check_promise(&C, ctx));
		}
		*worst_tight = fmax(*worst_tight, check_close(&C, C.tight, TIGHT,
		                                              "Taylor function's gradient", ctx));
		(*network)++;
	}
	call_free(&C);
}

START_TEST(gradients)
{
	const pa_kernel_info *k = e2e_kernels[_i];
	if (skip_kernel(k))
		return;
	ck_assert_msg(k->saved_floats && k->train && k->backward,
	              "%s: an approximate kernel without a backward", k->name);
	Shape S = shape_of(k);
	int network = 0, empty = 0;
	double wp = 0, wt = 0;
	for (int d = 0; d < NDRAWS; d++)
		for (int a = 0; a < COUNT(sizes); a++)
			for (int b = 0; b < COUNT(batches); b++)
				if (affordable(k, sizes[a], batches[b]) && (d != DRAW_SIGNS || sizes[a] <= 7))
					one_run(_i, d, sizes[a], batches[b], &S, true, &network, &empty,
					        &wp, &wt);
	/* an auto kernel runs the network from its crossover, up to n = 225
	 * here: one call past it, checked against the Taylor function (the
	 * promise's references would cost three times as much) */
	if (!network && strcmp(k->algorithm, "auto") == 0)
		one_run(_i, DRAW_UNIFORM, AUTO_N, 1, &S, false, &network, &empty, &wp, &wt);
	ck_assert_msg(network > 0, "%s: no call ran the network", k->name);
	if (getenv("E2E_VERBOSE"))
		printf("%s %-36s hd %d vd %d: %d network runs (%d empty rows), worst %.3f of "
		       "the promise, %.2e against the Taylor function (degrees", k->name,
		       k->polynomial, k->head_dim, k->value_dim, network, empty, wp, wt);
	for (int e = 0; getenv("E2E_VERBOSE") && e < S.nedges; e++)
		printf(" %d", S.P[e]);
	if (getenv("E2E_VERBOSE"))
		printf(", eps' %.2g)\n", S.dmax);
}
END_TEST

/* fd: the Taylor reference's gradient against central differences of its
 * own forward, n = 2, in double. */
START_TEST(fd)
{
	const pa_kernel_info *k = e2e_kernels[_i];
	if (skip_kernel(k))
		return;
	Shape S = shape_of(k);
	const int64_t n = 2;
	uint64_t s = 5 + _i;
	Call C;
	call_alloc(&C, k, n, 1, DRAW_UNIFORM, &s);
	const float *ptrs[256];
	inputs_view(&C.in, 0, ptrs);
	Brute B = {.k = k, .S = &S, .n = n, .in = ptrs, .g = C.g, .out = C.dout,
	           .grad = C.tight};
	brute(&B);
	double *o2 = malloc(C.out_len * sizeof *o2);
	for (int i = 0; i < k->num_inputs; i++)
		for (size_t e = 0; e < inputs_len(&C.in, i); e++) {
			float keep = C.in.buf[i][e], h = 1e-3f;
			double L[2];
			for (int sgn = 0; sgn < 2; sgn++) {
				C.in.buf[i][e] = keep + (sgn ? h : -h);
				Brute F = B;
				F.grad = NULL, F.out = o2;
				brute(&F);
				L[sgn] = 0;
				for (size_t q = 0; q < C.out_len; q++)
					L[sgn] += C.g[q] * o2[q];
			}
			double hh = (double)(keep + h) - (double)(keep - h);
			C.in.buf[i][e] = keep;
			double fdv = (L[1] - L[0]) / hh;
			ck_assert_msg(fabs(fdv - C.tight[i][e]) <= 1e-5 * (1 + fabs(fdv)),
			              "%s: input %s entry %zu: Taylor gradient %.9g, differences %.9g",
			              k->name, k->inputs[i].name, e, C.tight[i][e], fdv);
		}
	free(o2);
	call_free(&C);
}
END_TEST

/* over_bound: one factor entry just past the bound. */
START_TEST(over_bound)
{
	const pa_kernel_info *k = e2e_kernels[_i];
	if (skip_kernel(k))
		return;
	const int64_t n = 7, batch = 2;
	uint64_t s = 99 + _i;
	Call C;
	call_alloc(&C, k, n, batch, DRAW_UNIFORM, &s);
	const float *ptrs[256];
	inputs_view(&C.in, 0, ptrs);
	/* a saved from a call within the bound, for the backward below */
	ck_assert_int_eq(k->train(batch, n, ptrs, C.out, C.saved), PA_OK);
	int f = 0;
	while (k->inputs[f].kind != PA_INPUT_FACTOR)
		f++;
	float past = nextafterf((float)k->bound, INFINITY);
	if ((double)past <= k->bound)
		past = nextafterf(past, INFINITY);
	C.in.buf[f][inputs_len(&C.in, f) - 1] = -past;
	float *out2 = filled(C.out_len, SENTINEL), *saved2 = filled(C.saved_len, SENTINEL);
	pa_status st = k->train(batch, n, ptrs, out2, saved2);
	if (!k->exact_fallback) {
		ck_assert_int_eq(st, PA_ERR_BOUND);
		for (size_t e = 0; e < C.out_len; e++)
			ck_assert(out2[e] == SENTINEL);
		for (size_t e = 0; e < C.saved_len; e++)
			ck_assert(saved2[e] == SENTINEL);
		st = k->backward(batch, n, ptrs, C.out, C.saved, C.g, C.grad);
		ck_assert_int_eq(st, PA_ERR_BOUND);
		ck_assert_msg(untouched(&C), "%s: a refused backward wrote a gradient", k->name);
	} else {
		ck_assert_int_eq(st, PA_OK);
		ck_assert(saved2[0] == PA_APPROX_EXACT);
		/* a saved from the call within the bound that ran the network */
		if (C.saved[0] == PA_APPROX_NETWORK) {
			ck_assert_int_eq(k->backward(batch, n, ptrs, out2, C.saved, C.g, C.grad),
			                 PA_ERR_ARGUMENT);
			ck_assert(untouched(&C));
		}
		st = k->backward(batch, n, ptrs, out2, saved2, C.g, C.grad);
		check_exact_path(&C, st, k->name);
	}
	free(out2), free(saved2);
	call_free(&C);
}
END_TEST

/* statuses: bad arguments refused, nothing written; NULL gradient
 * entries leave the others as they are. */
START_TEST(statuses)
{
	const pa_kernel_info *k = e2e_kernels[_i];
	if (skip_kernel(k))
		return;
	const int64_t n = 9, batch = 2;
	uint64_t s = 7 + _i;
	Call C;
	call_alloc(&C, k, n, batch, DRAW_UNIFORM, &s);
	const float *ptrs[256];
	inputs_view(&C.in, 0, ptrs);
	ck_assert_int_eq(k->train(batch, n, ptrs, C.out, NULL), PA_ERR_NULL);
	ck_assert_int_eq(k->train(0, n, ptrs, C.out, C.saved), PA_ERR_ARGUMENT);
	ck_assert_int_eq(k->train(batch, n, ptrs, C.out, C.saved), PA_OK);
	ck_assert_int_eq(k->backward(batch, n, ptrs, C.out, NULL, C.g, C.grad), PA_ERR_NULL);
	ck_assert_int_eq(k->backward(batch, n, ptrs, C.out, C.saved, NULL, C.grad), PA_ERR_NULL);
	ck_assert_int_eq(k->backward(batch, n, ptrs, C.out, C.saved, C.g, NULL), PA_ERR_NULL);
	ck_assert_int_eq(k->backward(batch, -1, ptrs, C.out, C.saved, C.g, C.grad),
	                 PA_ERR_ARGUMENT);
	float keep = C.g[4];
	C.g[4] = NAN;
	ck_assert_int_eq(k->backward(batch, n, ptrs, C.out, C.saved, C.g, C.grad),
	                 PA_ERR_NONFINITE);
	C.g[4] = keep;
	float path = C.saved[0];
	C.saved[0] = 0;
	ck_assert_int_eq(k->backward(batch, n, ptrs, C.out, C.saved, C.g, C.grad),
	                 PA_ERR_ARGUMENT);
	C.saved[0] = path;
	ck_assert_msg(untouched(&C), "%s: a refused backward wrote a gradient", k->name);
	pa_status st = k->backward(batch, n, ptrs, C.out, C.saved, C.g, C.grad);
	ck_assert_int_eq(st, PA_OK);
	float *part[256] = {0};
	for (int i = 0; i < k->num_inputs; i += 2)
		part[i] = filled(inputs_len(&C.in, i), SENTINEL);
	ck_assert_int_eq(k->backward(batch, n, ptrs, C.out, C.saved, C.g, part), PA_OK);
	for (int i = 0; i < k->num_inputs; i += 2) {
		ck_assert_msg(memcmp(part[i], C.grad[i], inputs_len(&C.in, i) * sizeof(float)) == 0,
		              "%s: input %d's gradient differs when others are not asked for",
		              k->name, i);
		free(part[i]);
	}
	call_free(&C);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("approx_grad");
	TCase *tc = tcase_create("approx_grad");
	tcase_set_timeout(tc, 1200);
	tcase_add_loop_test(tc, fd, 0, e2e_nkernels);
	tcase_add_loop_test(tc, statuses, 0, e2e_nkernels);
	tcase_add_loop_test(tc, over_bound, 0, e2e_nkernels);
	tcase_add_loop_test(tc, gradients, 0, e2e_nkernels);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
