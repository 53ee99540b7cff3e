/*
 * pa_approx_grad.c - training for approximate kernels (pa_approx.h;
 * doc/training.md, "Approximate kernels"): K_saved_floats, K_train and
 * K_backward of a kernel whose forward is pa_approx_run.
 *
 * A call takes the algorithm pa_approx_run's rule gives for the same n
 * and inputs: the exact part below min_n or over the bound (PA_ERR_BOUND
 * when there is none), the network otherwise.  Training records that
 * choice in saved[0] and the exact part's own saved after it; the
 * backward takes the rule again and refuses a saved that disagrees, so
 * the gradient is always the one of the function the forward ran.  A
 * plan carrying a masked tree takes pa_approx_tree.c's backward instead
 * of the network's, which shares the leaves' routines below
 * (pa_approx_feature_rows, _feature_push, _weights_push).
 *
 * The network's backward is reverse mode through its steps.  The network
 * is contracted again with every step's result kept; out = R[., c] /
 * R[., value_dim] gives dR; and each step T = Σ_x Π_k T_k hands each input
 * k the contraction dT_k = Σ dT · Π_{k' ≠ k} T_k' over the same indices,
 * which costs what the step costs and so stays linear in n (one position
 * index per step).  Every contraction runs by chunks of rows of that
 * position, over the threads (a result without the position summed in an
 * accumulator per thread, chunks dealt statically so sums do not depend
 * on timing).  A chunk is a batched matrix product when it is worth one:
 * operands whose indices all lie in the result multiply it at the end;
 * of the others, one is B and the product of the rest is A, and
 * O[bat][x][y] = Σ_k X[bat][x][k] · Y[bat][k][y] with (X, Y) = (A, B)
 * or (B, A), the choice that packs least (a side or result already laid
 * out as the product wants is used in place) in the forward engine's
 * register tiles (pa_approx_gemm).  Otherwise it is one loop nest whose
 * innermost loop is its longest index.  Feature leaves are never stored:
 * a chunk of their rows is made where a contraction reads it, by the
 * forward's own feature block, and a chunk of their gradient goes at once
 * back through the recursion φ_f = φ_parent · a[coord] to the coordinates
 * a, and by the product rule to the factor inputs.  Weight leaves pass their gradient to the values and, through
 * exp(b_v), to x_v's bias monomials.
 */
#include "pa_approx.h"

#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "pa_kernel.h"

#define MAXI PA_APPROX_MAX_IDX
#define MAXW 16                  /* indices of one contraction */
#define MAX_ID 64                /* index ids: 0, 1 … t, t+1 … t+nedges */
#define MAX_VARS 31
#define MAXIN 32                 /* inputs of one step */
#define MAX_FLOATS ((int64_t)1 << 40)
#define MAX_COORDS 1024          /* D of one edge */
#define CHUNK 256                /* rows of the position per task at most */
#define BUDGET ((int64_t)1 << 18) /* floats of one task's chunk buffers */
#define FB PA_APPROX_FR           /* feature rows made side by side */


/* A tensor of the network: a leaf or a step's result. */
typedef struct Ten {
	int nidx;
	int idx[MAXI];           /* layout order */
	uint64_t mask;           /* bit id: idx holds id */
	int64_t st[MAX_ID];      /* stride of each id, 0 when absent */
	int64_t size;            /* floats */
	bool feat;               /* a feature leaf: made by chunks, never stored */
	bool need;               /* its gradient reaches an input */
	float *val, *grad;       /* stored value and gradient (not for feat) */
} Ten;

/* One backward call. */
typedef struct Net {
	const pa_kernel_info *k;
	const pa_approx_plan *p;
	int64_t n;
	int t, nid, ntens, nt;
	int64_t dim[MAX_ID];
	Ten *T;
	const float *in[256];    /* this batch entry's inputs */
	float *gin[256];         /* their gradients, NULL when not wanted */
	float *ew[MAX_VARS + 1]; /* exp(b_v - max b_v), n floats each */
	float *mem;              /* stored tensors, gradients and ew */
	size_t mem_floats;
	float *work;             /* nt × per_thread floats */
	int64_t per_thread;
} Net;

/* An operand of a contraction: a tensor's value or its gradient. */
typedef struct Opnd {
	int id;
	bool grad;
} Opnd;

/* How one contraction runs. */
typedef struct Con {
	int nops;
	Opnd op[MAXIN + 1];
	Opnd res;                /* the result, added to */
	uint64_t all;            /* every index it touches */
	int p;                   /* its position index, or -1 */
	bool acc;                /* the result lacks p: per-thread sums */
	int64_t rst[MAX_ID];     /* the result's strides as a task writes it: a
	                            feature leaf's gradient chunk lies
	                            [feature][row], the rows of a chunk apart */
	int64_t chunk;           /* rows of p per task */
	int64_t floats;          /* one thread's buffers */
	/* The product form, when gemm: the operands but B and the posts make
	 * A, and per chunk O[bat][x][y] = Σ_k X[bat][x][k] · Y[bat][k][y]
	 * with (X, Y) = (A, B) or (B, A), the wider side as y; then
	 * res += O · Π posts. */
	bool gemm;
	uint32_t post;           /* operands whose indices all lie in res */
	int bop;                 /* the operand that alone makes B */
	bool a_x;                /* A is X */
	uint64_t ma, mb;         /* the indices of A and of B */
	uint64_t gbat, gx, gy, gk; /* the index groups */
} Con;

static uint64_t bit(int id)
{
	return (uint64_t)1 << id;
}

static int64_t pad16(int64_t x)
{
	return (x + 15) & ~(int64_t)15;
}

/* ------------------------------------------------------------ loop nests */

/* A loop nest (last dimension innermost): dst += Π of the sources. */
typedef struct Loop {
	int nd;
	int64_t len[MAXW];
	float *dst;
	int64_t ds[MAXW];
	int ns;
	const float *src[MAXIN + 1];
	int64_t ss[MAXIN + 1][MAXW];
} Loop;

/* loop_row: the innermost dimension at offsets od and os. */
static void loop_row(const Loop *L, int64_t od, const int64_t *os)
{
	const int I = L->nd - 1, ns = L->ns;
	const int64_t len = L->len[I], dsl = L->ds[I];
	float *d = L->dst + od;
	if (ns == 1) {
		const float *a = L->src[0] + os[0];
		const int64_t sa = L->ss[0][I];
		if (dsl == 0) {
			float s = 0;
			for (int64_t i = 0; i < len; i++)
				s += a[i * sa];
			*d += s;
		} else
			for (int64_t i = 0; i < len; i++)
				d[i * dsl] += a[i * sa];
		return;
	}
	if (ns == 2) {
		const float *a = L->src[0] + os[0], *b = L->src[1] + os[1];
		const int64_t sa = L->ss[0][I], sb = L->ss[1][I];
		if (dsl == 0) {
			float s = 0;
			for (int64_t i = 0; i < len; i++)
				s += a[i * sa] * b[i * sb];
			*d += s;
		} else
			for (int64_t i = 0; i < len; i++)
				d[i * dsl] += a[i * sa] * b[i * sb];
		return;
	}
	float s = 0;
	for (int64_t i = 0; i < len; i++) {
		float x = 1;
		for (int q = 0; q < ns; q++)
			x *= L->src[q][os[q] + i * L->ss[q][I]];
		if (dsl == 0)
			s += x;
		else
			d[i * dsl] += x;
	}
	if (dsl == 0)
		*d += s;
}

/* loop_inner: the longest dimension of L made the innermost loop (every
 * stride is explicit, so the order of the loops is free). */
static void loop_inner(Loop *L)
{
	int best = L->nd - 1;
	for (int d = 0; d < L->nd; d++)
		if (L->len[d] > L->len[best])
			best = d;
	for (int d = best; d < L->nd - 1; d++) {
		int64_t t = L->len[d];
		L->len[d] = L->len[d + 1], L->len[d + 1] = t;
		t = L->ds[d], L->ds[d] = L->ds[d + 1], L->ds[d + 1] = t;
		for (int q = 0; q < L->ns; q++)
			t = L->ss[q][d], L->ss[q][d] = L->ss[q][d + 1], L->ss[q][d + 1] = t;
	}
}

/* loop_run: every row of L, the outer dimensions as an odometer. */
static void loop_run(const Loop *L)
{
	int64_t ctr[MAXW] = {0}, od = 0, os[MAXIN + 1] = {0};
	for (int d = 0; d < L->nd; d++)
		if (L->len[d] <= 0)
			return;
	for (;;) {
		loop_row(L, od, os);
		int d = L->nd - 2;
		for (; d >= 0; d--) {
			od += L->ds[d];
			for (int q = 0; q < L->ns; q++)
				os[q] += L->ss[q][d];
			if (++ctr[d] < L->len[d])
				break;
			od -= L->ds[d] * L->len[d];
			for (int q = 0; q < L->ns; q++)
				os[q] -= L->ss[q][d] * L->len[d];
			ctr[d] = 0;
		}
		if (d < 0)
			return;
	}
}

/* --------------------------------------------------------------- leaves */

/* side_row: a[(i, l)] = Π of the factor inputs of monomial mono[i] of
 * edge ed on x_v at row r, column l (A_{e,v} of pa_approx.h). */
static void side_row(const pa_approx_io *N, const pa_approx_edge *ed, int v, int64_t r,
                     float *a)
{
	const pa_kernel_info *k = N->k;
	const int hd = k->head_dim;
	for (int i = 0; i < ed->nmono; i++) {
		float *ai = a + i * hd;
		for (int l = 0; l < hd; l++)
			ai[l] = 1.0f;
		for (int q = 0; q < k->num_inputs; q++) {
			const pa_input_desc *d = &k->inputs[q];
			if (d->kind != PA_INPUT_FACTOR || d->monomial != ed->mono[i] ||
			    d->variable != v)
				continue;
			const float *x = N->in[q] + r * hd;
			for (int l = 0; l < hd; l++)
				ai[l] *= x[l];
		}
	}
}

/* side_block: at[d][r] = A_{e,v}[r0 + r, d] for r < rows, 0 beyond (FB
 * rows side by side, so the feature loops below run across rows). */
static void side_block(const pa_approx_io *N, const pa_approx_edge *ed, int v,
                       int64_t r0, int rows, float (*at)[FB])
{
	float a[MAX_COORDS];
	const int D = ed->nmono * N->k->head_dim;
	for (int r = 0; r < FB; r++) {
		if (r < rows)
			side_row(N, ed, v, r0 + r, a);
		for (int d = 0; d < D; d++)
			at[d][r] = r < rows ? a[d] : 0.0f;
	}
}

/* phi_block: ph[f][r] = φ_f of row r, unweighted. */
static void phi_block(const pa_approx_edge *ed, float (*at)[FB], float (*ph)[FB])
{
	for (int r = 0; r < FB; r++)
		ph[0][r] = 1.0f;
	for (int f = 1; f < ed->nfeat; f++) {
		const float *pp = ph[ed->parent[f]], *ac = at[ed->coord[f]];
		float x[FB];
		for (int r = 0; r < FB; r++)
			x[r] = pp[r] * ac[r];
		memcpy(ph[f], x, sizeof x);
	}
}

/* pa_approx_feature_rows: see pa_approx.h.  Made as the forward makes
 * them (the same products, so the same floats). */
void pa_approx_feature_rows(const pa_approx_io *io, const pa_approx_edge *ed, int v,
                            int64_t r0, int64_t r1, float *dst, float *dstt,
                            int64_t ldt, float *scratch)
{
	const int nf = ed->nfeat;
	const float *w = v == ed->weight_var ? ed->weight : NULL;
	float (*ph)[FB] = (float (*)[FB])scratch, (*at)[FB] = ph + nf;
	for (int64_t b = r0; b < r1; b += FB) {
		const int rows = r1 - b < FB ? (int)(r1 - b) : FB;
		side_block(io, ed, v, b, rows, at);
		pa_approx_feature_block(nf, ed->parent, ed->coord, w, ph[0], at[0], rows,
		                        dst ? dst + (b - r0) * nf : NULL);
		for (int f = 0; dstt && f < nf; f++) {
			float *o = dstt + f * ldt + (b - r0), wf = w ? w[f] : 1.0f;
			for (int r = 0; r < rows; r++)
				o[r] = ph[f][r] * wf;
		}
	}
}

/* feat_rows: rows r0 … r1-1 of feature leaf l, [row][feature], weighted
 * on the edge's weight_var; scratch holds feat_scratch floats. */
static void feat_rows(const Net *N, int l, int64_t r0, int64_t r1, float *dst,
                      float *scratch)
{
	const pa_approx_leaf *lf = &N->p->leaves[l];
	const pa_approx_io io = {N->k, N->in, N->gin};
	pa_approx_feature_rows(&io, &N->p->edges[lf->edge], lf->var, r0, r1, dst, NULL, 0,
	                       scratch);
}

/* pa_approx_feature_scratch: see pa_approx.h. */
int64_t pa_approx_feature_scratch(const pa_kernel_info *k, const pa_approx_edge *ed)
{
	return (int64_t)FB * (2 * ed->nfeat + 2 * ed->nmono * k->head_dim);
}

/* feat_scratch: the floats feat_rows and feat_push need for edge ed. */
static int64_t feat_scratch(const Net *N, const pa_approx_edge *ed)
{
	return pa_approx_feature_scratch(N->k, ed);
}

/* spread_mono: for every factor input q of monomial m on x_v at row r,
 * grad[q][r, l] += g[l] · c · Π of m's other factors on x_v (the product
 * rule over one side of a monomial). */
static void spread_mono(const pa_approx_io *N, int m, int v, int64_t r, const float *g,
                        float c)
{
	const pa_kernel_info *k = N->k;
	const int hd = k->head_dim;
	for (int q = 0; q < k->num_inputs; q++) {
		const pa_input_desc *d = &k->inputs[q];
		if (d->kind != PA_INPUT_FACTOR || d->monomial != m || d->variable != v ||
		    !N->gin[q])
			continue;
		float *dst = N->gin[q] + r * hd;
		for (int l = 0; l < hd; l++) {
			float x = c * g[l];
			for (int o = 0; o < k->num_inputs; o++)
				if (o != q && k->inputs[o].kind == PA_INPUT_FACTOR &&
				    k->inputs[o].monomial == m && k->inputs[o].variable == v)
					x *= N->in[o][r * hd + l];
			dst[l] += x;
		}
	}
}

/* back_one: one feature's step of the reverse recursion, FB rows:
 * dpp += g · ac (to its parent), dac += g · pp (to its coordinate); the
 * five rows are distinct (parent < f, and dp, da, at, ph apart). */
static inline void back_one(float *restrict dpp, float *restrict dac,
                            const float *restrict g, const float *restrict ac,
                            const float *restrict pp)
{
	for (int r = 0; r < FB; r++) {
		dpp[r] += g[r] * ac[r];
		dac[r] += g[r] * pp[r];
	}
}

/* pa_approx_feature_push: see pa_approx.h. */
void pa_approx_feature_push(const pa_approx_io *io, const pa_approx_edge *ed, int v,
                            int64_t r0, int64_t r1, const float *dphi, int64_t sf,
                            int64_t sr, float *scratch)
{
	const int nf = ed->nfeat, hd = io->k->head_dim, D = ed->nmono * hd;
	const float *w = v == ed->weight_var ? ed->weight : NULL;
	float (*ph)[FB] = (float (*)[FB])scratch, (*dp)[FB] = ph + nf;
	float (*at)[FB] = dp + nf, (*da)[FB] = at + D;
	for (int64_t b = r0; b < r1; b += FB) {
		const int rows = r1 - b < FB ? (int)(r1 - b) : FB;
		side_block(io, ed, v, b, rows, at);
		phi_block(ed, at, ph);
		for (int f = 0; f < nf; f++) {
			const float *g = dphi + f * sf + (b - r0) * sr, wf = w ? w[f] : 1.0f;
			for (int r = 0; r < rows; r++)
				dp[f][r] = g[r * sr] * wf;
			for (int r = rows; r < FB; r++)
				dp[f][r] = 0.0f;
		}
		memset(da, 0, sizeof(float) * FB * (size_t)D);
		for (int f = nf - 1; f >= 1; f--)
			back_one(dp[ed->parent[f]], da[ed->coord[f]], dp[f], at[ed->coord[f]],
			         ph[ed->parent[f]]);
		for (int r = 0; r < rows; r++) {
			float g[MAX_COORDS];
			for (int d = 0; d < D; d++)
				g[d] = da[d][r];
			for (int i = 0; i < ed->nmono; i++)
				spread_mono(io, ed->mono[i], v, b + r, g + i * hd, 1.0f);
		}
	}
}

/* feat_push: the gradient of rows r0 … r1-1 of feature leaf l (dphi,
 * [feature][row], ld floats a feature) back to the factor inputs. */
static void feat_push(const Net *N, int l, int64_t r0, int64_t r1,
                      const float *dphi, int64_t ld, float *scratch)
{
	const pa_approx_leaf *lf = &N->p->leaves[l];
	const pa_approx_io io = {N->k, N->in, N->gin};
	pa_approx_feature_push(&io, &N->p->edges[lf->edge], lf->var, r0, r1, dphi, ld, 1,
	                       scratch);
}

/* bias_only: monomial m's occurrences are all on x_v. */
static bool bias_only(const pa_kernel_info *k, int m, int v)
{
	bool any = false;
	for (int i = 0; i < k->num_inputs; i++)
		if (k->inputs[i].kind == PA_INPUT_FACTOR && k->inputs[i].monomial == m) {
			if (k->inputs[i].variable != v)
				return false;
			any = true;
		}
	return any;
}

/* has_bias: x_v (not x1, whose bias cancels) has a bias monomial. */
static bool has_bias(const pa_kernel_info *k, int v)
{
	for (int m = 0; m < k->num_monomials && v != 1; m++)
		if (bias_only(k, m, v))
			return true;
	return false;
}

/* value_input: the input holding x_v's values, or -1. */
static int value_input(const pa_kernel_info *k, int v)
{
	for (int i = 0; i < k->num_inputs; i++)
		if (k->inputs[i].kind == PA_INPUT_VALUE && k->inputs[i].variable == v)
			return i;
	return -1;
}

/* weights_fill: W_v = exp(b_v - max b_v) · V_v, the bias alone in the
 * last channel (or without channels). */
static void weights_fill(const Net *N, int l)
{
	const pa_approx_leaf *lf = &N->p->leaves[l];
	const int vd = N->k->value_dim, vin = value_input(N->k, lf->var);
	const float *ew = N->ew[lf->var], *v = vin >= 0 ? N->in[vin] : NULL;
	float *dst = N->T[l].val;
	for (int64_t r = 0; r < N->n; r++) {
		if (lf->nidx == 1) {
			dst[r] = ew[r];
			continue;
		}
		float *w = dst + r * (vd + 1);
		for (int c = 0; c < vd; c++)
			w[c] = v ? ew[r] * v[r * vd + c] : ew[r];
		w[vd] = ew[r];
	}
}

/* pa_approx_weights_push: see pa_approx.h. */
void pa_approx_weights_push(const pa_approx_io *io, int v, const float *ew,
                            const float *dw, bool chan, int64_t n, int nt)
{
	const pa_kernel_info *k = io->k;
	const int vd = k->value_dim, hd = k->head_dim, vin = value_input(k, v);
	const bool bias = has_bias(k, v);
	const float *val = vin >= 0 ? io->in[vin] : NULL;
	float *dv = vin >= 0 ? io->gin[vin] : NULL;
	#pragma omp parallel for schedule(static) num_threads(nt)
	for (int64_t r = 0; r < n; r++) {
		float de;
		if (!chan)
			de = dw[r];
		else {
			const float *g = dw + r * (vd + 1);
			de = g[vd];
			for (int c = 0; c < vd; c++) {
				de += g[c] * (val ? val[r * vd + c] : 1.0f);
				if (dv)
					dv[r * vd + c] += g[c] * ew[r];
			}
		}
		if (!bias)
			continue;
		float g[hd];
		for (int c = 0; c < hd; c++)
			g[c] = de * ew[r];
		for (int m = 0; m < k->num_monomials; m++)
			if (bias_only(k, m, v))
				spread_mono(io, m, v, r, g, (float)(k->scale * k->coefficients[m]));
	}
}

/* weights_push: W_v's gradient to V_v and, through exp(b_v), to x_v's
 * bias monomials. */
static void weights_push(const Net *N, int l)
{
	const pa_approx_leaf *lf = &N->p->leaves[l];
	const pa_approx_io io = {N->k, N->in, N->gin};
	pa_approx_weights_push(&io, lf->var, N->ew[lf->var], N->T[l].grad, lf->nidx != 1,
	                       N->n, N->nt);
}

/* --------------------------------------------------------- contractions */

/* msize: Π of the sizes of the ids in m, p's being rows. */
static int64_t msize(const Net *N, uint64_t m, int p, int64_t rows)
{
	int64_t s = 1;
	for (int id = 0; id < N->nid; id++)
		if (m & bit(id))
			s *= id == p ? rows : N->dim[id];
	return s;
}

/* list_ids: the ids of m into ids from *nd on, in B's layout order, then
 * the result's, then increasing (so B and the result may be used where
 * they lie). */
static void list_ids(const Net *N, const Con *C, uint64_t m, int *ids, int *nd)
{
	const Ten *B = &N->T[C->op[C->bop].id], *R = &N->T[C->res.id];
	for (int i = 0; i < B->nidx; i++)
		if (m & bit(B->idx[i]))
			ids[(*nd)++] = B->idx[i], m &= ~bit(B->idx[i]);
	for (int i = 0; i < R->nidx; i++)
		if (m & bit(R->idx[i]))
			ids[(*nd)++] = R->idx[i], m &= ~bit(R->idx[i]);
	for (int id = 0; id < N->nid; id++)
		if (m & bit(id))
			ids[(*nd)++] = id;
}

/* fits: a tensor of indices mask and strides st, at a chunk of rows of
 * p, is laid out as [g1][g2][g3] (list_ids' orders) and holds nothing
 * else. */
static bool fits(const Net *N, const Con *C, uint64_t mask, const int64_t *st,
                 uint64_t g1, uint64_t g2, uint64_t g3, int64_t rows)
{
	int ids[MAXW], nd = 0;
	if (mask != (g1 | g2 | g3))
		return false;
	list_ids(N, C, g1, ids, &nd);
	list_ids(N, C, g2, ids, &nd);
	list_ids(N, C, g3, ids, &nd);
	int64_t s = 1;
	for (int d = nd - 1; d >= 0; d--) {
		if (st[ids[d]] != s)
			return false;
		s *= ids[d] == C->p ? rows : N->dim[ids[d]];
	}
	return true;
}

/* side_cost: floats a side costs to pack (0 when one operand of it
 * already lies that way), the union of its operands' indices. */
static int64_t side_cost(const Net *N, const Con *C, uint32_t which, uint64_t extra,
                         uint64_t g1, uint64_t g2, uint64_t g3, int64_t rows)
{
	uint64_t m = 0;
	for (int i = 0; i < C->nops; i++)
		if (which >> i & 1u)
			m |= N->T[C->op[i].id].mask;
	if (!extra && !(which & (which - 1)) &&
	    fits(N, C, N->T[C->op[__builtin_ctz(which)].id].mask,
	         N->T[C->op[__builtin_ctz(which)].id].st, g1, g2, g3, rows))
		return 0;
	return msize(N, m, C->p, rows);
}

/* con_geo: whether C runs as products for chunks of rows, and how: of
 * every choice of B and of which side is X, the one whose packing (about
 * 50 flops a float, scalar and strided) and tiles (16 columns wide) cost
 * least. */
static void con_geo(const Net *N, Con *C, int64_t rows)
{
	const Ten *R = &N->T[C->res.id];
	const uint64_t mr = R->mask;
	int left = 0;
	C->post = 0, C->gemm = false, C->bop = -1;
	for (int i = 0; i < C->nops; i++)
		if (N->T[C->op[i].id].mask & ~mr)
			left++;
		else
			C->post |= 1u << i;
	if (left < 2)
		return;
	const uint32_t all = (uint32_t)((1ull << C->nops) - 1) & ~C->post;
	double best = INFINITY;
	Con t = *C;
	for (int b = 0; b < C->nops; b++) {
		if (!(all >> b & 1u))
			continue;
		t.bop = b;
		t.mb = N->T[C->op[b].id].mask;
		t.ma = 0;
		for (int i = 0; i < C->nops; i++)
			if (all >> i & 1u && i != b)
				t.ma |= N->T[C->op[i].id].mask;
		uint64_t ia = t.ma & mr & ~t.mb, ib = t.mb & mr & ~t.ma;
		uint64_t ea = t.ma & ~t.mb & ~mr, eb = t.mb & ~t.ma & ~mr;
		t.gbat = t.ma & t.mb & mr;
		t.gk = t.ma & t.mb & ~mr;
		for (int ax = 0; ax < 2; ax++) {
			t.a_x = ax;
			t.gx = ax ? ia : ib, t.gy = ax ? ib : ia;
			uint32_t xw = ax ? all & ~(1u << b) : 1u << b, yw = all & ~xw;
			double pk = side_cost(N, &t, xw, ax ? ea : eb, t.gbat, t.gx, t.gk, rows) +
			            side_cost(N, &t, yw, ax ? eb : ea, t.gbat, t.gk, t.gy, rows);
			if (C->post || !fits(N, &t, mr, C->rst, t.gbat, t.gx, t.gy, rows))
				pk += 2.0 * msize(N, mr, C->p, rows);
			double y = (double)msize(N, t.gy, C->p, rows);
			double cost = 50 * pk + 2.0 * msize(N, t.gbat | t.gx | t.gk, C->p, rows) *
			              (16 * ceil(y / 16));
			if (cost < best)
				best = cost, *C = t;
		}
	}
	C->gemm = msize(N, C->gx | C->gy | C->gk, C->p, rows) >= 256;
}

/* gemm_floats: the packed X, Y and O of one chunk of rows. */
static int64_t gemm_floats(const Net *N, const Con *C, int64_t rows)
{
	if (!C->gemm)
		return 0;
	int64_t b = msize(N, C->gbat, C->p, rows), x = msize(N, C->gx, C->p, rows);
	int64_t y = msize(N, C->gy, C->p, rows), k = msize(N, C->gk, C->p, rows);
	return pad16(b * x * k) + pad16(b * k * y) + pad16(b * x * y);
}

/* con_plan: the indices, position, chunk and buffers of contraction C. */
static void con_plan(const Net *N, Con *C)
{
	const Ten *R = &N->T[C->res.id];
	C->all = R->mask;
	for (int i = 0; i < C->nops; i++)
		C->all |= N->T[C->op[i].id].mask;
	C->p = -1;
	for (int j = 1; j <= N->t; j++)
		if (C->all & bit(j))
			C->p = j;
	C->acc = C->p < 0 || !(R->mask & bit(C->p));
	int64_t rows = C->p >= 0 ? N->n : 1;
	int64_t c = (rows + N->nt - 1) / N->nt;
	c = c < CHUNK ? c : CHUNK;
	for (;;) {
		int64_t f = 0;
		int64_t fs = 0;
		for (int i = 0; i < C->nops; i++)
			if (N->T[C->op[i].id].feat) {
				const pa_approx_edge *ed = &N->p->edges[N->p->leaves[C->op[i].id].edge];
				f += pad16(c * N->T[C->op[i].id].size / N->n);
				fs = feat_scratch(N, ed) > fs ? feat_scratch(N, ed) : fs;
			}
		f += pad16(fs);         /* the last leaf's scratch, after its rows */
		if (R->feat)
			f += pad16(c * R->size / N->n);
		memcpy(C->rst, R->st, sizeof C->rst);
		if (R->feat)
			C->rst[N->t + 1 + N->p->leaves[C->res.id].edge] = c, C->rst[C->p] = 1;
		con_geo(N, C, c);
		f += gemm_floats(N, C, c);
		if (c == 1 || f <= BUDGET) {
			C->chunk = c;
			C->floats = f + (C->acc ? pad16(R->size) : 0);
			break;
		}
		c = (c + 1) / 2;
	}
	if (R->feat) {
		const pa_approx_edge *ed = &N->p->edges[N->p->leaves[C->res.id].edge];
		C->floats += pad16(feat_scratch(N, ed));
	}
}

/* ptr_of: operand o's data at row r0 of p (a feature leaf: its rows
 * made into buf). */
static const float *ptr_of(const Net *N, const Con *C, Opnd o, int64_t r0,
                           int64_t r1, float **buf)
{
	const Ten *T = &N->T[o.id];
	if (T->feat) {
		float *rows = *buf;
		*buf += pad16((r1 - r0) * (T->size / N->n));
		feat_rows(N, o.id, r0, r1, rows, *buf);
		return rows;
	}
	const float *d = o.grad ? T->grad : T->val;
	return C->p >= 0 ? d + r0 * T->st[C->p] : d;
}

/* pack: dst = the product of the operands in `which` laid out [g1][g2][g3]
 * (each group's ids increasing), summed over the ids of `extra`. */
static void pack(const Net *N, const Con *C, const float *const *ptr, uint32_t which,
                 uint64_t g1, uint64_t g2, uint64_t g3, uint64_t extra, int64_t rows,
                 float *dst)
{
	Loop L = {.dst = dst};
	int ids[MAXW], nd = 0, nlay;
	list_ids(N, C, g1, ids, &nd);
	list_ids(N, C, g2, ids, &nd);
	list_ids(N, C, g3, ids, &nd);
	nlay = nd;
	list_ids(N, C, extra, ids, &nd);
	int64_t s = 1;
	for (int d = nd - 1; d >= 0; d--) {
		L.len[d] = ids[d] == C->p ? rows : N->dim[ids[d]];
		L.ds[d] = d < nlay ? s : 0;
		if (d < nlay)
			s *= L.len[d];
	}
	memset(dst, 0, (size_t)s * sizeof *dst);
	for (int i = 0; i < C->nops; i++)
		if (which >> i & 1u) {
			L.src[L.ns] = ptr[i];
			for (int d = 0; d < nd; d++)
				L.ss[L.ns][d] = N->T[C->op[i].id].st[ids[d]];
			L.ns++;
		}
	L.nd = nd ? nd : 1;
	if (!nd)
		L.len[0] = 1;
	loop_inner(&L);
	loop_run(&L);
}

/* scatter: dst (the result at the chunk) += O · Π posts over the result's
 * indices, O laid out [bat][x][y]. */
static void scatter(const Net *N, const Con *C, const float *const *ptr,
                    const float *O, int64_t rows, float *dst)
{
	const Ten *R = &N->T[C->res.id];
	Loop L = {.dst = dst, .ns = 1, .src = {O}};
	int lay[MAXW], nl = 0;
	list_ids(N, C, C->gbat, lay, &nl);
	list_ids(N, C, C->gx, lay, &nl);
	list_ids(N, C, C->gy, lay, &nl);
	int64_t ost[MAX_ID] = {0}, s = 1;
	for (int d = nl - 1; d >= 0; d--) {
		ost[lay[d]] = s;
		s *= lay[d] == C->p ? rows : N->dim[lay[d]];
	}
	for (int i = 0; i < C->nops; i++)
		if (C->post >> i & 1u)
			L.src[L.ns++] = ptr[i];
	L.nd = R->nidx;
	for (int d = 0; d < R->nidx; d++) {
		int id = R->idx[d];
		L.len[d] = id == C->p ? rows : N->dim[id];
		L.ds[d] = C->rst[id];
		L.ss[0][d] = ost[id];
		for (int i = 0, q = 1; i < C->nops; i++)
			if (C->post >> i & 1u)
				L.ss[q++][d] = N->T[C->op[i].id].st[id];
	}
	if (!R->nidx)
		L.nd = 1, L.len[0] = 1;
	loop_inner(&L);
	loop_run(&L);
}

/* con_gemm: a chunk as products (see Con); buf has gemm_floats. */
static void con_gemm(const Net *N, const Con *C, const float *const *ptr, int64_t rows,
                     float *buf, float *dst, bool par)
{
	const uint64_t mr = N->T[C->res.id].mask;
	const uint32_t bw = 1u << C->bop;
	const uint32_t aw = ~C->post & ~bw & (uint32_t)((1ull << C->nops) - 1);
	int64_t b = msize(N, C->gbat, C->p, rows), x = msize(N, C->gx, C->p, rows);
	int64_t y = msize(N, C->gy, C->p, rows), k = msize(N, C->gk, C->p, rows);
	float *X = buf, *Y = X + pad16(b * x * k), *O = Y + pad16(b * k * y);
	uint64_t ea = C->ma & ~C->mb & ~mr, eb = C->mb & ~C->ma & ~mr;
	const uint32_t xw = C->a_x ? aw : bw, yw = C->a_x ? bw : aw;
	const uint64_t xe = C->a_x ? ea : eb, ye = C->a_x ? eb : ea;
	/* one operand already laid out as its side is used where it lies */
	const int xi = __builtin_ctz(xw), yi = __builtin_ctz(yw);
	if (!xe && !(xw & (xw - 1)) &&
	    fits(N, C, N->T[C->op[xi].id].mask, N->T[C->op[xi].id].st, C->gbat, C->gx, C->gk,
	         rows))
		X = (float *)ptr[xi];
	else
		pack(N, C, ptr, xw, C->gbat, C->gx, C->gk, xe, rows, X);
	if (!ye && !(yw & (yw - 1)) &&
	    fits(N, C, N->T[C->op[yi].id].mask, N->T[C->op[yi].id].st, C->gbat, C->gk, C->gy,
	         rows))
		Y = (float *)ptr[yi];
	else
		pack(N, C, ptr, yw, C->gbat, C->gk, C->gy, ye, rows, Y);
	/* and the result, when nothing multiplies it */
	if (!C->post && fits(N, C, mr, C->rst, C->gbat, C->gx, C->gy, rows)) {
		pa_approx_gemm(b, x, y, k, X, Y, dst, 1, N->nt, par);
		return;
	}
	pa_approx_gemm(b, x, y, k, X, Y, O, 0, N->nt, par);
	scatter(N, C, ptr, O, rows, dst);
}

/* con_task: rows r0 … r1-1 of p; dst is the result at row r0 (or the
 * thread's accumulator, or its chunk of a feature leaf's gradient). */
static void con_task(const Net *N, const Con *C, int64_t r0, int64_t r1,
                     float *buf, float *dst, bool par)
{
	Loop L = {.dst = dst, .ns = C->nops};
	for (int i = 0; i < C->nops; i++)
		L.src[i] = ptr_of(N, C, C->op[i], r0, r1, &buf);
	if (C->gemm) {
		con_gemm(N, C, L.src, r1 - r0, buf, dst, par);
		return;
	}
	/* p outermost, then the other indices by size, the longest inside */
	int ids[MAXW], nd = 0;
	if (C->p >= 0)
		ids[nd++] = C->p;
	for (int id = 0; id < N->nid; id++)
		if ((C->all & bit(id)) && id != C->p) {
			int at = nd++;
			while (at > (C->p >= 0) && N->dim[ids[at - 1]] > N->dim[id])
				ids[at] = ids[at - 1], at--;
			ids[at] = id;
		}
	L.nd = nd;
	for (int d = 0; d < nd; d++) {
		L.len[d] = ids[d] == C->p ? r1 - r0 : N->dim[ids[d]];
		L.ds[d] = C->rst[ids[d]];
		for (int i = 0; i < C->nops; i++)
			L.ss[i][d] = N->T[C->op[i].id].st[ids[d]];
	}
	if (nd == 0)
		L.nd = 1, L.len[0] = 1;
	loop_run(&L);
}

/* con_run: contraction C over every chunk, spread over the threads. */
static void con_run(const Net *N, const Con *C)
{
	Ten *R = &N->T[C->res.id];
	float *res = C->res.grad ? R->grad : R->val;
	const int64_t rows = C->p >= 0 ? N->n : 1, c = C->chunk;
	const int64_t ntask = (rows + c - 1) / c;
	const int64_t rsz = C->acc ? pad16(R->size) : 0;
	int nt = N->nt;
	if (C->acc)
		for (int t = 0; t < nt; t++)
			memset(N->work + t * N->per_thread, 0, (size_t)rsz * sizeof(float));
	/* static: each thread sums the same chunks every call, so the result
	 * does not depend on timing */
	#pragma omp parallel for schedule(static) num_threads(nt) if (ntask > 1)
	for (int64_t i = 0; i < ntask; i++) {
		float *mine = N->work + (size_t)omp_get_thread_num() * N->per_thread;
		float *buf = mine + rsz;
		const int64_t r0 = i * c, r1 = r0 + c < rows ? r0 + c : rows;
		if (R->feat) {
			const pa_approx_edge *ed = &N->p->edges[N->p->leaves[C->res.id].edge];
			const int64_t row = R->size / N->n;
			float *g = buf, *scratch = g + pad16(c * row);
			float *rest = scratch + pad16(feat_scratch(N, ed));
			memset(g, 0, (size_t)(c * row) * sizeof *g);
			con_task(N, C, r0, r1, rest, g, ntask == 1);
			feat_push(N, C->res.id, r0, r1, g, c, scratch);
		} else
			con_task(N, C, r0, r1, buf, C->acc ? mine : res + r0 * R->st[C->p],
			         ntask == 1);
	}
	if (C->acc) {
		#pragma omp parallel for schedule(static) num_threads(nt) if (R->size > 4096)
		for (int64_t e = 0; e < R->size; e++) {
			float x = 0;
			for (int t = 0; t < nt; t++)
				x += N->work[t * N->per_thread + e];
			res[e] += x;
		}
	}
}

/* forward_con, adjoint_con: step s as a contraction; the gradient it
 * hands its input q. */
static Con forward_con(const Net *N, int s)
{
	const pa_approx_step *st = &N->p->steps[s];
	Con C = {.nops = st->nin, .res = {N->p->nleaves + s, false}};
	for (int i = 0; i < st->nin; i++)
		C.op[i] = (Opnd){st->in[i], false};
	con_plan(N, &C);
	return C;
}

static Con adjoint_con(const Net *N, int s, int q)
{
	const pa_approx_step *st = &N->p->steps[s];
	Con C = {.nops = 1, .res = {st->in[q], true}};
	C.op[0] = (Opnd){N->p->nleaves + s, true};
	for (int i = 0; i < st->nin; i++)
		if (i != q)
			C.op[C.nops++] = (Opnd){st->in[i], false};
	con_plan(N, &C);
	return C;
}

/* ---------------------------------------------------------------- setup */

/* set_ten: T's indices, strides and size; false when they are not ones
 * this engine handles. */
static bool set_ten(const Net *N, Ten *T, int nidx, const int *list)
{
	if (nidx < 0 || nidx > MAXI)
		return false;
	T->nidx = nidx;
	int64_t s = 1;
	for (int i = nidx - 1; i >= 0; i--) {
		int id = list[i];
		if (id < 0 || id >= N->nid || (T->mask & bit(id)))
			return false;
		T->idx[i] = id;
		T->mask |= bit(id);
		T->st[id] = s;
		if (__builtin_mul_overflow(s, N->dim[id], &s) || s > MAX_FLOATS)
			return false;
	}
	T->size = s;
	return true;
}

/* check: the plan is one this backward runs: leaves and steps as
 * pa_approx.h describes them, every step over at most one position. */
static bool check(const Net *N)
{
	const pa_approx_plan *p = N->p;
	for (int e = 0; e < p->nedges; e++)
		if (p->edges[e].nmono * N->k->head_dim > MAX_COORDS || p->edges[e].nfeat < 1)
			return false;
	for (int l = 0; l < p->nleaves; l++) {
		const pa_approx_leaf *lf = &p->leaves[l];
		if (lf->var < 1 || lf->var > N->t || lf->nidx < 1 || lf->idx[0] != lf->var ||
		    (lf->kind == PA_LEAF_FEATURES && (lf->edge < 0 || lf->edge >= p->nedges)))
			return false;
	}
	for (int s = 0; s < p->nsteps; s++) {
		const pa_approx_step *st = &p->steps[s];
		if (st->nin < 1 || st->nin > MAXIN)
			return false;
		uint64_t all = N->T[p->nleaves + s].mask;
		for (int i = 0; i < st->nin; i++) {
			if (st->in[i] < 0 || st->in[i] >= p->nleaves + s)
				return false;
			all |= N->T[st->in[i]].mask;
		}
		if (__builtin_popcountll(all & (((uint64_t)2 << N->t) - 2)) > 1 ||
		    __builtin_popcountll(all) > MAXW)
			return false;
	}
	const Ten *R = &N->T[N->ntens - 1];
	return R->nidx >= 1 && R->idx[0] == 1 && (R->nidx == 1 || R->idx[1] == 0);
}

/* setup: the tensors, what needs a gradient, and every buffer. */
static pa_status setup(Net *N)
{
	const pa_approx_plan *p = N->p;
	N->t = N->k->num_vars;
	N->nid = 1 + N->t + p->nedges;
	N->ntens = p->nleaves + p->nsteps;
	if (N->t < 1 || N->t > MAX_VARS || N->nid > MAX_ID || p->nsteps < 1 ||
	    N->k->num_inputs > 256)
		return PA_ERR_UNSUPPORTED;
	N->dim[0] = N->k->value_dim + 1;
	for (int j = 1; j <= N->t; j++)
		N->dim[j] = N->n;
	for (int e = 0; e < p->nedges; e++)
		N->dim[N->t + 1 + e] = p->edges[e].nfeat;
	if (!(N->T = calloc((size_t)N->ntens, sizeof *N->T)))
		return PA_ERR_NOMEM;
	for (int l = 0; l < p->nleaves; l++) {
		Ten *T = &N->T[l];
		const pa_approx_leaf *lf = &p->leaves[l];
		T->feat = lf->kind == PA_LEAF_FEATURES;
		T->need = T->feat || value_input(N->k, lf->var) >= 0 || has_bias(N->k, lf->var);
		if (!set_ten(N, T, lf->nidx, lf->idx))
			return PA_ERR_UNSUPPORTED;
	}
	for (int s = 0; s < p->nsteps; s++) {
		N->T[p->nleaves + s].need = true;
		if (!set_ten(N, &N->T[p->nleaves + s], p->steps[s].nout, p->steps[s].out))
			return PA_ERR_UNSUPPORTED;
	}
	if (!check(N))
		return PA_ERR_UNSUPPORTED;
	size_t total = 0, off[2 * N->ntens], ewoff[MAX_VARS + 1];
	for (int i = 0; i < N->ntens; i++)
		if (!N->T[i].feat) {
			off[2 * i] = pa_carve(&total, N->T[i].size, 1, 1);
			off[2 * i + 1] = pa_carve(&total, N->T[i].size, 1, 1);
		}
	for (int v = 1; v <= N->t; v++)
		ewoff[v] = pa_carve(&total, N->n, 1, 1);
	N->per_thread = 16;
	for (int s = 0; s < p->nsteps; s++) {
		Con C = forward_con(N, s);
		N->per_thread = C.floats > N->per_thread ? C.floats : N->per_thread;
		for (int q = 0; q < p->steps[s].nin; q++) {
			C = adjoint_con(N, s, q);
			N->per_thread = C.floats > N->per_thread ? C.floats : N->per_thread;
		}
	}
	N->per_thread = pad16(N->per_thread);
	size_t wtotal = 0;
	pa_carve(&wtotal, N->nt, N->per_thread, 1);
	if (!(N->mem = pa_alloc(total)) || !(N->work = pa_alloc(wtotal)))
		return PA_ERR_NOMEM;
	N->mem_floats = total;
	for (int i = 0; i < N->ntens; i++)
		if (!N->T[i].feat) {
			N->T[i].val = N->mem + off[2 * i];
			N->T[i].grad = N->mem + off[2 * i + 1];
		}
	for (int v = 1; v <= N->t; v++)
		N->ew[v] = N->mem + ewoff[v];
	return PA_OK;
}

/* ----------------------------------------------------------- the passes */

/* seed: R again; dR from out = R[., c] / R[., vd] and g = dL/dout. */
static void seed(const Net *N, const float *g)
{
	const Ten *R = &N->T[N->ntens - 1];
	const int vd = N->k->value_dim;
	const int64_t s1 = R->st[1], s0 = R->st[0];
	#pragma omp parallel for schedule(static) num_threads(N->nt)
	for (int64_t r = 0; r < N->n; r++) {
		const float *x = R->val + r * s1;
		float *dx = R->grad + r * s1, den = x[vd * s0], go = 0;
		for (int c = 0; c < vd; c++) {
			dx[c * s0] = g[r * vd + c] / den;
			go += g[r * vd + c] * (x[c * s0] / den);
		}
		dx[vd * s0] = -go / den;
	}
}

/* entry: one batch entry's gradients, added into N->gin. */
static void entry(Net *N, const float *g)
{
	const pa_approx_plan *p = N->p;
	memset(N->mem, 0, N->mem_floats * sizeof(float));
	for (int v = 1; v <= N->t; v++)
		pa_approx_bias_exp(N->k, N->in, N->n, v, N->ew[v]);
	for (int l = 0; l < p->nleaves; l++)
		if (!N->T[l].feat)
			weights_fill(N, l);
	for (int s = 0; s < p->nsteps; s++) {
		Con C = forward_con(N, s);
		con_run(N, &C);
	}
	if (!(N->T[N->ntens - 1].mask & bit(0)))
		return;                   /* no values: out is all ones */
	seed(N, g);
	for (int s = p->nsteps - 1; s >= 0; s--)
		for (int q = 0; q < p->steps[s].nin; q++)
			if (N->T[p->steps[s].in[q]].need) {
				Con C = adjoint_con(N, s, q);
				con_run(N, &C);
			}
	for (int l = 0; l < p->nleaves; l++)
		if (!N->T[l].feat && N->T[l].need)
			weights_push(N, l);
}

/* network_backward: the gradients of the network's function. */
static pa_status network_backward(const pa_kernel_info *k, const pa_approx_plan *p,
                                  int64_t batch, int64_t n,
                                  const float *const inputs[], const float *grad_out,
                                  float *const grad[])
{
	Net *N = calloc(1, sizeof *N);
	if (!N)
		return PA_ERR_NOMEM;
	*N = (Net){.k = k, .p = p, .n = n, .nt = omp_get_max_threads()};
	pa_status st = setup(N);
	for (int i = 0; st == PA_OK && i < k->num_inputs; i++)
		if (grad[i])
			memset(grad[i], 0, (size_t)(batch * n * k->inputs[i].cols) * sizeof(float));
	for (int64_t b = 0; b < batch && st == PA_OK; b++) {
		for (int i = 0; i < k->num_inputs; i++) {
			N->in[i] = inputs[i] + b * n * k->inputs[i].cols;
			N->gin[i] = grad[i] ? grad[i] + b * n * k->inputs[i].cols : NULL;
		}
		entry(N, grad_out + b * n * k->value_dim);
	}
	pa_free(N->mem);
	pa_free(N->work);
	free(N->T);
	free(N);
	return st;
}

/* ------------------------------------------------------------ the entries */

/* path: the algorithm pa_approx_run takes for this call, or PA_ERR_BOUND
 * (arguments already checked). */
static int path(const pa_kernel_info *k, const pa_approx_plan *p,
                int64_t batch, int64_t n, const float *const inputs[])
{
	if (p->exact && n < p->min_n)
		return PA_APPROX_EXACT;
	if (pa_factor_max(k, batch, n, inputs) > p->bound)
		return p->exact ? PA_APPROX_EXACT : PA_ERR_BOUND;
	return PA_APPROX_NETWORK;
}

/* pa_approx_saved_floats: see pa_approx.h. */
int64_t pa_approx_saved_floats(const pa_approx_plan *p, int64_t batch, int64_t n)
{
	if (batch <= 0 || n <= 0)
		return -1;
	int64_t e = p->exact_saved_floats ? p->exact_saved_floats(batch, n) : 0;
	return e < 0 || e == INT64_MAX ? -1 : 1 + e;
}

/* pa_approx_train: see pa_approx.h. */
pa_status pa_approx_train(const pa_kernel_info *k, const pa_approx_plan *p,
                          int64_t batch, int64_t n, const float *const inputs[],
                          float *out, float *saved)
{
	pa_status st = pa_check_args(k, batch, n, inputs, out);
	if (st != PA_OK)
		return st;
	if (!saved)
		return PA_ERR_NULL;
	int way = path(k, p, batch, n, inputs);
	if (way == PA_ERR_BOUND)
		return PA_ERR_BOUND;
	if (way == PA_APPROX_NETWORK)
		st = pa_approx_run(k, p, batch, n, inputs, out);
	else if (p->exact_train)
		st = p->exact_train(batch, n, inputs, out, saved + 1);
	else
		st = p->exact(batch, n, inputs, out);
	if (st == PA_OK)
		saved[0] = (float)way;
	return st;
}

/* pa_approx_backward: see pa_approx.h. */
pa_status pa_approx_backward(const pa_kernel_info *k, const pa_approx_plan *p,
                             int64_t batch, int64_t n, const float *const inputs[],
                             const float *out, const float *saved,
                             const float *grad_out, float *const grad_inputs[])
{
	pa_status st = pa_check_args(k, batch, n, inputs, out);
	if (st == PA_OK)
		st = pa_check_grad_args(k, batch, n, inputs, out, saved,
		                        pa_approx_saved_floats(p, batch, n), grad_out,
		                        grad_inputs);
	if (st != PA_OK)
		return st;
	int way = path(k, p, batch, n, inputs);
	if (way == PA_ERR_BOUND)
		return PA_ERR_BOUND;
	if (saved[0] != (float)way)
		return PA_ERR_ARGUMENT;   /* saved is not from train on these inputs */
	if (way == PA_APPROX_EXACT)
		return p->exact_backward ? p->exact_backward(batch, n, inputs, out, saved + 1,
		                                             grad_out, grad_inputs)
		                         : PA_ERR_UNSUPPORTED;
	if (p->tree)
		return pa_approx_tree_backward(k, p, batch, n, inputs, grad_out, grad_inputs);
	return network_backward(k, p, batch, n, inputs, grad_out, grad_inputs);
}
