/*
 * approx.c - the approximate algorithm, the polynomial method
 * (doc/design.md, "Approximation: the polynomial method").
 *
 * Every edge's exp(score) becomes its even-degree Taylor polynomial, which
 * factors through feature maps: exp(Σ_i w_i Π_v a_v[i]) ≈ Σ_α ω_α Π_v φ_α(a_v)
 * with φ_α(a) = Π_i a[i]^α_i and ω_α = Π_i w_i^α_i / α_i!.  The whole kernel
 * becomes a tensor network over the positions ℓ_j, the features α_e of
 * every edge and the value channels c; it is contracted one index at a
 * time in a greedy order that keeps every step linear in n (runtime/
 * pa_approx.c runs it).
 *
 * The degree: with entries within the bound B, an edge's score obeys
 * |u| ≤ X = Σ_m |scale·c_m|·head_dim·B^k_m.  Taylor's remainder
 * e^ξ·u^(P+1)/(P+1)!, ξ between 0 and u, bounds the relative error of
 * exp(u) by e^X·X^(P+1)/(P+1)! (e^(ξ-u) ≤ e^X for u < 0 and ≤ 1 otherwise;
 * the cruder e^(2X)·… form of the same bound would ask for higher
 * degrees).  The tolerance
 * is shared by the E edges: each gets (1 + tolerance)^(1/E) − 1, so the
 * product of E factors stays within the tolerance.  An even P keeps every
 * Taylor polynomial positive, so weights stay positive.
 */
#include "polyc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* approx_bound = the bound as kernels test it: the smallest float not
 * below the declared one, so an input entry written as the bound itself
 * (0.1f is just above 0.1) passes, and the promise covers it. */
double approx_bound(const Kernel *k)
{
	float b = (float)k->bound;
	if ((double)b < k->bound)
		b = nextafterf(b, INFINITY);
	return b;
}

/* edge_x = the largest |score| of edge e when entries are within bound. */
static double edge_x(const Kernel *k, const Edge *e)
{
	double x = 0, b = approx_bound(k);
	for (int a = 0; a < e->nmono; a++) {
		const Monomial *mo = &k->mono[e->mono[a]];
		x += fabs(k->scale * mo->coef) * k->head_dim * pow(b, mo->degree);
	}
	return x;
}

/* taylor_err = e^x · x^(p+1) / (p+1)!, in logs so nothing overflows. */
static double taylor_err(double x, int p)
{
	if (x == 0)
		return 0;
	return exp(x + (p + 1) * log(x) - lgamma(p + 2.0));
}

/* choose = C(d + p, p) as a double. */
static double choose(int d, int p)
{
	return round(exp(lgamma(d + p + 1.0) - lgamma(d + 1.0) - lgamma(p + 1.0)));
}

/* pick_degrees: every edge's degree and features; false (why set) when
 * no degree up to PC_APPROX_MAX_DEGREE meets its share. */
static bool pick_degrees(Plan *p)
{
	const Graph *g = p->g;
	const Kernel *k = g->k;
	Approx *A = &p->approx;
	double share = pow(1 + k->tolerance, 1.0 / g->nedges) - 1;
	double hi = 1, lo = 1;
	for (int e = 0; e < g->nedges; e++) {
		ApproxEdge *ae = &A->edge[e];
		ae->ncoord = g->edge[e].nmono * k->head_dim;
		ae->x = edge_x(k, &g->edge[e]);
		ae->weight_var = __builtin_ctz(g->edge[e].vars);
		ae->degree = 0;
		while (taylor_err(ae->x, ae->degree) > share) {
			ae->degree += 2;
			if (ae->degree > PC_APPROX_MAX_DEGREE) {
				snprintf(A->why, sizeof A->why, "edge %d's scores reach "
				         "|u| = %.3g under bound %g: no Taylor degree up to "
				         "%d meets tolerance %g", e, ae->x, k->bound,
				         PC_APPROX_MAX_DEGREE, k->tolerance);
				return false;
			}
		}
		ae->err = taylor_err(ae->x, ae->degree);
		ae->nfeat = choose(ae->ncoord, ae->degree);
		hi *= 1 + ae->err;
		lo *= 1 - ae->err;
	}
	A->err = fmax(hi - 1, 1 - lo);
	return true;
}

/* ------------------------------------------------------------ the network */

/* The greedy contraction's view: index sizes as n^pos · coef. */
typedef struct Net {
	Approx *A;
	int nvars;
	double size[PC_APPROX_NIDX]; /* n-free size; positions count 1 */
	bool pos[PC_APPROX_NIDX];    /* a position index (size n) */
	bool live[PC_APPROX_MAX_TENSORS]; /* not yet consumed */
} Net;

static bool has(const ATensor *t, int i)
{
	for (int a = 0; a < t->nidx; a++)
		if (t->idx[a] == i)
			return true;
	return false;
}

/* add_tensor: a new tensor; false when the network outgrows the tables. */
static ATensor *add_tensor(Net *N)
{
	if (N->A->ntensors == PC_APPROX_MAX_TENSORS) {
		snprintf(N->A->why, sizeof N->A->why, "the network needs more than "
		         "%d tensors", PC_APPROX_MAX_TENSORS);
		return NULL;
	}
	N->live[N->A->ntensors] = true;
	return &N->A->t[N->A->ntensors++];
}

/* add_leaves: Φ_{e,v}[ℓ_v, α_e] for every edge and variable in it, then
 * W_v for every variable (x1's only carries its values, if any). */
static bool add_leaves(Net *N, const Graph *g)
{
	for (int e = 0; e < g->nedges; e++)
		for (uint32_t r = g->edge[e].vars; r; r &= r - 1) {
			ATensor *t = add_tensor(N);
			if (!t)
				return false;
			*t = (ATensor){.kind = 0, .edge = e, .var = __builtin_ctz(r),
			               .nidx = 2};
			t->idx[0] = t->var;
			t->idx[1] = N->nvars + 1 + e;
		}
	for (int j = 1; j <= g->nvars; j++) {
		ATensor *t = add_tensor(N);
		if (!t)
			return false;
		*t = (ATensor){.kind = 1, .edge = -1, .var = j, .nidx = 1};
		t->idx[0] = j;
		if (g->k->values >> j & 1)
			t->idx[t->nidx++] = 0;
	}
	N->A->nleaves = N->A->ntensors;
	return true;
}

/* gather: the live tensors holding index x and the union of their other
 * indices (in order: positions, features, channel); the step's cost. */
static void gather(const Net *N, int x, AStep *st, ATensor *out)
{
	bool u[PC_APPROX_NIDX] = {false};
	st->nin = 0;
	for (int i = 0; i < N->A->ntensors; i++) {
		if (!N->live[i] || (x >= 0 && !has(&N->A->t[i], x)))
			continue;
		if (st->nin < PC_APPROX_MAX_IN)
			st->in[st->nin] = i;
		st->nin++;
		for (int a = 0; a < N->A->t[i].nidx; a++)
			u[N->A->t[i].idx[a]] = true;
	}
	st->sum = x;
	st->npos = 0;
	st->coef = 1;
	*out = (ATensor){.kind = -1, .edge = -1, .var = 0};
	/* positions and features in index order, the channel last */
	for (int a = 1; a <= PC_APPROX_NIDX; a++) {
		int i = a % PC_APPROX_NIDX;
		if (!u[i])
			continue;
		st->npos += N->pos[i];
		st->coef *= N->size[i];
		if (i != x) {
			if (out->nidx < PC_APPROX_MAX_IDX)
				out->idx[out->nidx] = i;
			out->nidx++;
		}
	}
	st->coef *= 2.0 * (st->nin > 1 ? st->nin - 1 : 1);
}

/* cheaper: is step a cheaper than step b (fewer positions, then flops)? */
static bool cheaper(const AStep *a, const AStep *b)
{
	return a->npos < b->npos || (a->npos == b->npos && a->coef < b->coef);
}

/* commit: append step st making tensor out; false when a limit is hit. */
static bool commit(Net *N, AStep *st, const ATensor *out)
{
	Approx *A = N->A;
	if (st->nin > PC_APPROX_MAX_IN || out->nidx > PC_APPROX_MAX_IDX) {
		snprintf(A->why, sizeof A->why, "a contraction step would join %d "
		         "tensors into one of %d indices (at most %d and %d)",
		         st->nin, out->nidx, PC_APPROX_MAX_IN, PC_APPROX_MAX_IDX);
		return false;
	}
	ATensor *t = add_tensor(N);
	if (!t)
		return false;
	*t = *out;
	for (int i = 0; i < st->nin; i++)
		N->live[st->in[i]] = false;
	st->out = A->ntensors - 1;
	A->step[A->nsteps++] = *st;
	return true;
}

/* contract: sum out ℓ2 … ℓt and every α_e, cheapest step first, then
 * join what is left into R[ℓ1, c]. */
static bool contract(Net *N, const Graph *g)
{
	bool left[PC_APPROX_NIDX] = {false};
	int nleft = 0;
	for (int j = 2; j <= g->nvars; j++)
		left[j] = true, nleft++;
	for (int e = 0; e < g->nedges; e++)
		left[g->nvars + 1 + e] = true, nleft++;
	for (; nleft; nleft--) {
		AStep best = {0}, st;
		ATensor best_out = {0}, out;
		int bx = -1;
		for (int x = 1; x < PC_APPROX_NIDX; x++) {
			if (!left[x])
				continue;
			gather(N, x, &st, &out);
			if (bx < 0 || cheaper(&st, &best))
				bx = x, best = st, best_out = out;
		}
		left[bx] = false;
		if (!commit(N, &best, &best_out))
			return false;
	}
	AStep st;
	ATensor out;
	gather(N, -1, &st, &out);
	/* The result must read R[ℓ1, c]: one tensor already in that layout
	 * needs no final step. */
	if (st.nin == 1) {
		const ATensor *r = &N->A->t[st.in[0]];
		if (r->nidx == out.nidx && r->idx[0] == 1 &&
		    (r->nidx == 1 || r->idx[1] == 0) && N->A->nsteps)
			return true;
	}
	return commit(N, &st, &out);
}

/* chunked: a product of several inputs summing index `sum` that is no
 * position: the engine runs it by chunks of rows of a position it keeps. */
static bool chunked(const Net *N, const AStep *st)
{
	return st->nin >= 2 && st->sum >= 0 && !N->pos[st->sum];
}

/* built_by_chunks: tensor i is never stored whole: it starts with a
 * position index, is read by a chunked step, and is a leaf or the result
 * of a chunked step (runtime/pa_approx.c's fusable: its rows are made
 * inside the reader's tasks for those rows). */
static bool built_by_chunks(const Approx *A, const Net *N, int i)
{
	const ATensor *t = &A->t[i];
	if (t->nidx < 1 || !N->pos[t->idx[0]])
		return false;
	if (i >= A->nleaves && !chunked(N, &A->step[i - A->nleaves]))
		return false;
	for (int s = 0; s < A->nsteps; s++)
		for (int q = 0; q < A->step[s].nin; q++)
			if (A->step[s].in[q] == i)
				return chunked(N, &A->step[s]) ||
				       (i < A->nleaves && A->step[s].sum == t->idx[0] &&
				        A->step[s].nin >= 2);
	return false;
}

/* cost: the linear and constant parts of flops and workspace.  The
 * workspace is what the engine (runtime/pa_approx.c) stores: the
 * tensors not built by chunks, and one bias array of n floats per
 * variable (the tasks' buffers are a constant per thread, left out). */
static void cost(Approx *A, const Net *N)
{
	A->flops_lin = A->flops_const = A->mem_lin = A->mem_const = 0;
	A->mem_lin = N->nvars;
	for (int i = 0; i < A->ntensors; i++) {
		const ATensor *t = &A->t[i];
		double sz = 1;
		bool lin = false;
		for (int q = 0; q < t->nidx; q++) {
			sz *= N->size[t->idx[q]];
			lin |= N->pos[t->idx[q]];
		}
		if (!built_by_chunks(A, N, i))
			*(lin ? &A->mem_lin : &A->mem_const) += sz;
		if (i < A->nleaves && t->kind == 0)
			A->flops_lin += sz;           /* one product per feature */
	}
	for (int s = 0; s < A->nsteps; s++)
		*(A->step[s].npos ? &A->flops_lin : &A->flops_const) += A->step[s].coef;
}

/* approx_seconds = the cost model's time at length n. */
double approx_seconds(const Approx *a, double n)
{
	return (a->flops_lin * n + a->flops_const) / PC_RATE_APPROX;
}

/* crossover: the smallest n from which approx is faster than exact (the
 * exact cost grows faster than n, so it stays faster); 0 if never
 * within 2^40. */
static double crossover(const Plan *p)
{
	double lo = 1, hi = 1;
	while (approx_seconds(&p->approx, hi) >= plan_seconds(p, hi)) {
		if (hi > 0x1p40)
			return 0;
		lo = hi;
		hi *= 2;
	}
	if (hi == 1)
		return 1;
	while (hi - lo > 1) {
		double mid = floor((lo + hi) / 2);
		if (approx_seconds(&p->approx, mid) < plan_seconds(p, mid))
			hi = mid;
		else
			lo = mid;
	}
	return hi;
}

/* Past these the approximation is not worth emitting. */
#define MAX_FEATURES 0x1p16      /* over all edges: the tables polyc prints */
#define MAX_CONST_FLOATS 0x1p28  /* n-free workspace (1 GiB) */
#define MAX_CROSSOVER 0x1p24     /* beats exact only beyond n = 16M */

/* approx_plan: degrees, network, cost and crossover of p's kernel into
 * p->approx; approx.usable says whether it is worth emitting, and why
 * not. */
void approx_plan(Plan *p)
{
	const Graph *g = p->g;
	const Kernel *k = g->k;
	Approx *A = &p->approx;
	memset(A, 0, sizeof *A);
	p->approx_tried = true;
	if (!g->nedges) {
		snprintf(A->why, sizeof A->why, "no monomial joins two variables: "
		         "there is no exp(score) to approximate");
		return;
	}
	if (1 + g->nvars + g->nedges > PC_APPROX_MAX_ID) {
		snprintf(A->why, sizeof A->why, "%d variables and %d edges make "
		         "more than %d network indices", g->nvars, g->nedges,
		         PC_APPROX_MAX_ID);
		return;
	}
	for (int e = 0; e < g->nedges; e++)
		if (g->edge[e].nmono * k->head_dim > PC_APPROX_MAX_COORDS) {
			snprintf(A->why, sizeof A->why, "edge %d has %d coordinates "
			         "(monomials x head_dim; at most %d)", e,
			         g->edge[e].nmono * k->head_dim, PC_APPROX_MAX_COORDS);
			return;
		}
	if (!pick_degrees(p))
		return;
	double total = 0;
	int big = 0;
	for (int e = 0; e < g->nedges; e++) {
		total += A->edge[e].nfeat;
		big = A->edge[e].nfeat > A->edge[big].nfeat ? e : big;
	}
	if (total > MAX_FEATURES) {
		snprintf(A->why, sizeof A->why, "edge %d needs Taylor degree %d over "
		         "%d coordinates: %.3g features, %.3g in all (at most %.0f); "
		         "a smaller bound or head_dim or a looser tolerance lowers it",
		         big, A->edge[big].degree, A->edge[big].ncoord,
		         A->edge[big].nfeat, total, MAX_FEATURES);
		return;
	}
	Net N = {.A = A, .nvars = g->nvars};
	N.size[0] = k->value_dim + 1;
	for (int j = 1; j <= g->nvars; j++)
		N.size[j] = 1, N.pos[j] = true;
	for (int e = 0; e < g->nedges; e++)
		N.size[g->nvars + 1 + e] = A->edge[e].nfeat;
	if (!add_leaves(&N, g) || !contract(&N, g))
		return;
	for (int s = 0; s < A->nsteps; s++)
		if (A->step[s].npos > 1) {
			snprintf(A->why, sizeof A->why, "the contraction needs n^%d work",
			         A->step[s].npos);
			return;
		}
	cost(A, &N);
	A->min_n = crossover(p);
	if (A->mem_const > MAX_CONST_FLOATS)
		snprintf(A->why, sizeof A->why, "its feature tensors take %.3g "
		         "floats (at most %.3g): degree and head_dim make too many "
		         "features", A->mem_const, MAX_CONST_FLOATS);
	else if (A->min_n == 0 || A->min_n > MAX_CROSSOVER)
		snprintf(A->why, sizeof A->why, "the cost model puts it behind "
		         "the exact algorithm up to n = %.3g: %.3g features per "
		         "edge cost more than the %s plan saves",
		         MAX_CROSSOVER, A->edge[0].nfeat, plan_kind_name(p->kind));
	else
		A->usable = true;
}

/* approx_mask: p's approximation becomes the masked tree's (plan.c
 * checked that it can): the same edges and feature maps, contracted as
 * p's messages instead of the network (which is dropped).  Per row, a
 * message makes both sides' features (one product each), multiplies the
 * parent's by the state and adds its own row into it (2 · F · (vd + 1)
 * flops each) and, under a range, its chunk's masked part (2 · chunk ·
 * (F + vd + 1)); each variable keeps n · (vd + 1) floats of products, and
 * each thread a state and a chunk's features. */
void approx_mask(Plan *p)
{
	const Kernel *k = p->g->k;
	Approx *A = &p->approx;
	const double nc = k->value_dim + 1;
	A->masked = true;
	A->nleaves = A->ntensors = A->nsteps = 0;
	A->flops_lin = A->flops_const = A->mem_const = 0;
	A->mem_lin = p->g->nvars * (nc + 1);
	for (int i = 0; i < p->nmsg; i++) {
		const Message *m = &p->msg[i];
		double f = A->edge[m->edge].nfeat;
		A->flops_lin += 2 * f + 4 * f * nc;
		if (m->lo > -PC_UNBOUNDED || m->hi < PC_UNBOUNDED)
			A->flops_lin += 2.0 * PC_APPROX_CHUNK * (f + nc);
		A->mem_const = fmax(A->mem_const, 8.0 * PC_APPROX_CHUNK * f + f * nc);
	}
	A->min_n = crossover(p);
}

/* approx_feature_weights: the feature map of edge e, graded by degree,
 * each feature its parent times one coordinate (coordinates never
 * decreasing along a chain, so run counts give α_i!): parent, coord and
 * weight ω get nfeat entries; returns nfeat. */
int approx_feature_weights(const ApproxEdge *ae, const Kernel *k,
                           const Edge *e, int *parent, int *coord,
                           double *weight)
{
	int nf = (int)ae->nfeat, f = 1, level = 0, *run = malloc(sizeof(int) * nf);
	if (!run)
		return 0;
	parent[0] = coord[0] = -1, weight[0] = 1, run[0] = 0;
	for (int deg = 1; deg <= ae->degree; deg++) {
		int start = f;
		for (int q = level; q < start; q++)
			for (int i = coord[q] < 0 ? 0 : coord[q]; i < ae->ncoord; i++) {
				double w = k->scale * k->mono[e->mono[i / k->head_dim]].coef;
				parent[f] = q;
				coord[f] = i;
				run[f] = coord[q] == i ? run[q] + 1 : 1;
				weight[f] = weight[q] * w / run[f];
				f++;
			}
		level = start;
	}
	free(run);
	return f;
}

/* print_index: how a network index reads: c, l3, a1 (edge 1's features). */
static void print_index(FILE *f, const Graph *g, int i)
{
	if (i == 0)
		fprintf(f, "c");
	else if (i <= g->nvars)
		fprintf(f, "l%d", i);
	else
		fprintf(f, "a%d", i - g->nvars - 1);
}

/* print_tensor: "F(e0,x2)[l2,a0]", "W2[l2,c]" or "T3[a0,c]". */
static void print_tensor(FILE *f, const Plan *p, int id)
{
	const ATensor *t = &p->approx.t[id];
	if (id >= p->approx.nleaves)
		fprintf(f, "T%d", id - p->approx.nleaves + 1);
	else if (t->kind == 0)
		fprintf(f, "F%d.x%d", t->edge, t->var);
	else
		fprintf(f, "W%d", t->var);
	fputc('[', f);
	for (int q = 0; q < t->nidx; q++) {
		if (q)
			fputc(',', f);
		print_index(f, p->g, t->idx[q]);
	}
	fputc(']', f);
}

/* approx_describe_step: "sum l2 of W2[l2,c] F0.x2[l2,a0] -> T1[a0,c]":
 * step s in --explain's notation (F: features, W: weights, T: results;
 * l: positions, a: features of an edge, c: value channels). */
void approx_describe_step(FILE *f, const Plan *p, int s)
{
	const AStep *st = &p->approx.step[s];
	if (st->sum >= 0) {
		fprintf(f, "sum ");
		print_index(f, p->g, st->sum);
		fprintf(f, " of");
	} else
		fprintf(f, "multiply");
	for (int i = 0; i < st->nin; i++) {
		fputc(' ', f);
		print_tensor(f, p, st->in[i]);
	}
	fprintf(f, " -> ");
	print_tensor(f, p, st->out);
}
