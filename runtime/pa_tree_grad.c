/*
 * pa_tree_grad.c - the reverse message pass of a tree kernel (pa_tree.h,
 * doc/training.md), root first.
 *
 * The output is the entrywise product of x1's values, the messages x1
 * receives and the constants of the components without x1; its gradient
 * splits over those factors.  Then each message, parents before children,
 * is one edge backward (pa_edge.c) whose results go:
 *   dq  to the factors of x_p's side of the edge's monomials,
 *   dk  to the factors of x_j's side,
 *   dkb to x_j's bias monomials and, as the gradient of their
 *       log-normalizers, to the messages x_j's children send,
 *   dpv split over x_j's values and its children's messages.
 * A component without x1 starts the same way from the softmax average
 * that makes its constant.  Each input's gradient starts at 0 and
 * gathers what every place it enters the kernel contributes.  With a
 * mask (doc/design.md, "Masks") each edge backward skips the pairs its
 * forward skipped, and a row of the output the mask left without tuples
 * (a message x1 receives has lse = −inf there; the output is 0) passes
 * no gradient on.
 */
#include "pa_tree.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "pa_kernel.h"

#define TG_MAX_VARS 16
#define TG_MAX_MONO 64
#define TG_MAX_FACTORS (TG_MAX_VARS + 2)

/* What the pass derives from K_info and the plan's shape. */
typedef struct Tree {
	const pa_kernel_info *k;
	const pa_tree_plan *t;
	const pa_tree_bufs *bufs;
	int64_t batch, nq, nk;          /* x1's rows (queries), the others' */
	int hd, vd, nvars;
	const float *const *in;
	float *const *grad;
	uint32_t mvars[TG_MAX_MONO];    /* variables of monomial m */
	int first[TG_MAX_MONO];         /* its first input */
	int degree[TG_MAX_MONO];
	int vin[TG_MAX_VARS + 1];       /* value input of x_j, or -1 */
	bool subv[TG_MAX_VARS + 1];     /* x_j's subtree carries values */
	uint32_t kids[TG_MAX_VARS + 1]; /* children of x_j */
	float *dm[TG_MAX_VARS + 1];     /* batch × rows × vd: dL/d(message of
	                                   x_j); rows nq into x1, else nk */
	float *db[TG_MAX_VARS + 1];     /* batch × nk: dL/d(key bias of x_j) */
	float *dconst[TG_MAX_VARS + 1]; /* batch × vd: dL/d(constant of root j) */
	float *dq, *dk, *dpv;           /* one edge's results */
	float *edge_ws;                 /* the edge backward's workspace */
	float *gout;                    /* masks: grad_out, 0 on empty rows */
} Tree;

/* describe: monomials, values and subtrees from k and the plan. */
static void describe(Tree *T)
{
	const pa_kernel_info *k = T->k;
	for (int m = 0; m < k->num_monomials; m++)
		T->mvars[m] = 0, T->degree[m] = 0, T->first[m] = -1;
	for (int j = 0; j <= T->nvars; j++)
		T->vin[j] = -1, T->kids[j] = 0, T->subv[j] = false;
	for (int i = 0; i < k->num_inputs; i++) {
		const pa_input_desc *d = &k->inputs[i];
		if (d->kind == PA_INPUT_VALUE) {
			T->vin[d->variable] = i;
			continue;
		}
		T->mvars[d->monomial] |= 1u << d->variable;
		if (T->first[d->monomial] < 0)
			T->first[d->monomial] = i;
		T->degree[d->monomial]++;
	}
	for (int i = 0; i < T->t->nmsg; i++)
		T->kids[T->t->parent[T->t->order[i]]] |= 1u << T->t->order[i];
	/* children before parents: the forward's message order */
	for (int j = 1; j <= T->nvars; j++)
		T->subv[j] = T->vin[j] >= 0;
	for (int i = 0; i < T->t->nmsg; i++) {
		int j = T->t->order[i];
		if (T->subv[j])
			T->subv[T->t->parent[j]] = true;
	}
}

/* row_of: row `row` (batch entries back to back) of input i. */
static const float *row_of(const Tree *T, int i, int64_t row)
{
	return T->in[i] + row * T->k->inputs[i].cols;
}

/* spread: for every occurrence q on x_v of monomial m, at row `row`:
 * grad[q][l] += c · g[l] · Π_{q' ≠ q on x_v} F_q'[l] (the product rule
 * over one side of the monomial). */
static void spread(const Tree *T, int m, int v, int64_t row, const float *g,
                   float c)
{
	const int f = T->first[m], hd = T->hd;
	for (int q = 0; q < T->degree[m]; q++) {
		if (T->k->inputs[f + q].variable != v || !T->grad[f + q])
			continue;
		float *dst = T->grad[f + q] + row * hd;
		for (int l = 0; l < hd; l++) {
			float x = c * g[l];
			for (int o = 0; o < T->degree[m]; o++)
				if (o != q && T->k->inputs[f + o].variable == v)
					x *= row_of(T, f + o, row)[l];
			dst[l] += x;
		}
	}
}

/* spread_bias: x_j's bias monomials at row `row`, whose score moved by
 * dB: grad of each occurrence += dB · scale·c · Π of the others. */
static void spread_bias(const Tree *T, int j, int64_t row, float dB)
{
	float g[T->hd];
	for (int l = 0; l < T->hd; l++)
		g[l] = dB;
	for (int m = 0; m < T->k->num_monomials; m++)
		if (T->mvars[m] == 1u << j)
			spread(T, m, j, row, g,
			       (float)(T->k->scale * T->k->coefficients[m]));
}

/* A product of vectors and the gradient each factor gets from it. */
typedef struct Factors {
	int count;
	const float *f[TG_MAX_FACTORS]; /* value_dim floats each */
	float *g[TG_MAX_FACTORS];       /* where its gradient goes, or NULL */
	bool add[TG_MAX_FACTORS];       /* += (else =) */
} Factors;

/* split: g_f += or = d ⊙ Π_{f' ≠ f} F_f' for every factor with a
 * destination (no division: each product is formed directly). */
static void split(const Factors *F, const float *d, int vd)
{
	for (int a = 0; a < F->count; a++) {
		if (!F->g[a])
			continue;
		for (int c = 0; c < vd; c++) {
			float x = d[c];
			for (int o = 0; o < F->count; o++)
				if (o != a)
					x *= F->f[o][c];
			F->g[a][c] = F->add[a] ? F->g[a][c] + x : x;
		}
	}
}

/* add_factor: one more factor of a product. */
static void add_factor(Factors *F, const float *f, float *g, bool add)
{
	F->f[F->count] = f;
	F->g[F->count] = g;
	F->add[F->count++] = add;
}

/* key_payload: the payload of x_j at row r (x_j's values, its children's
 * messages) as factors, with dL/dpv going to dV_j and the children's dm. */
static void key_payload(const Tree *T, int j, int64_t row, Factors *F)
{
	const int vd = T->vd;
	F->count = 0;
	if (T->vin[j] >= 0)
		add_factor(F, row_of(T, T->vin[j], row),
		           T->grad[T->vin[j]] ? T->grad[T->vin[j]] + row * vd : NULL, true);
	for (uint32_t r = T->kids[j]; r; r &= r - 1) {
		int g = __builtin_ctz(r);
		if (T->subv[g])
			add_factor(F, T->bufs[g].o + row * vd, T->dm[g] + row * vd, false);
	}
}

/* key_side: what reaches x_j as a key at every row: dkb (in db[j]) to its
 * bias monomials, dpv split over its payload. */
static void key_side(const Tree *T, int j, const float *dpv)
{
	const int64_t rows = T->batch * T->nk;
	#pragma omp parallel for schedule(static)
	for (int64_t row = 0; row < rows; row++) {
		spread_bias(T, j, row, T->db[j][row]);
		if (!T->subv[j])
			continue;
		Factors F;
		key_payload(T, j, row, &F);
		split(&F, dpv + row * T->vd, T->vd);
	}
}

/* root_x1: the output's gradient split over x1's values, the messages x1
 * receives (their dm) and the constants of the other components (summed
 * over rows into dconst). */
static void root_x1(const Tree *T, const float *grad_out)
{
	const int vd = T->vd;
	#pragma omp parallel for schedule(static)
	for (int64_t b = 0; b < T->batch; b++) {
		float cacc[TG_MAX_VARS + 1][vd];
		for (int r = 2; r <= T->nvars; r++)
			for (int c = 0; c < vd; c++)
				cacc[r][c] = 0.0f;
		for (int64_t i = 0; i < T->nq; i++) {
			const int64_t row = b * T->nq + i;
			Factors F;
			key_payload(T, 1, row, &F);
			for (int a = 1; a < T->t->nroots; a++) {
				int r = T->t->root[a];
				add_factor(&F, T->dconst[r] + T->batch * vd + b * vd,
				           cacc[r], true);
			}
			split(&F, grad_out + row * vd, vd);
		}
		for (int a = 1; a < T->t->nroots; a++)
			memcpy(T->dconst[T->t->root[a]] + b * vd, cacc[T->t->root[a]],
			       vd * sizeof(float));
	}
}

/* other_root: the softmax average c = Σ_j w_j pv_j of root r's component
 * (w = softmax of its key bias), backwards: dpv_j = w_j dc and
 * dkb_j = w_j (⟨dc, pv_j⟩ − ⟨dc, c⟩); then x_r as a key. */
static void other_root(const Tree *T, int r)
{
	const int vd = T->vd, vp = (vd + 15) / 16 * 16;
	const int64_t n = T->nk, np = (n + PA_BK - 1) / PA_BK * PA_BK;
	#pragma omp parallel for schedule(static)
	for (int64_t b = 0; b < T->batch; b++) {
		const float *kb = T->bufs[r].kb + b * np, *pv = T->bufs[r].pv + b * np * vp;
		const float *c = T->dconst[r] + T->batch * vd + b * vd;
		const float *dc = T->dconst[r] + b * vd;
		double mx = -INFINITY, den = 0, cdot = 0;
		for (int64_t j = 0; j < n; j++)
			mx = kb[j] > mx ? kb[j] : mx;
		if (mx == -INFINITY) {   /* a mask left no weight: c = 0 */
			for (int64_t j = 0; j < n; j++) {
				for (int v = 0; v < vd; v++)
					T->dpv[(b * n + j) * vd + v] = 0.0f;
				T->db[r][b * n + j] = 0.0f;
			}
			continue;
		}
		for (int64_t j = 0; j < n; j++)
			den += exp(kb[j] - mx);
		for (int v = 0; v < vd; v++)
			cdot += (double)dc[v] * c[v];
		for (int64_t j = 0; j < n; j++) {
			double w = exp(kb[j] - mx) / den, dot = 0;
			for (int v = 0; v < vd; v++) {
				dot += (double)dc[v] * pv[j * vp + v];
				T->dpv[(b * n + j) * vd + v] = (float)(w * dc[v]);
			}
			T->db[r][b * n + j] = (float)(w * (dot - cdot));
		}
	}
	key_side(T, r, T->dpv);
}

/* edge_monomials: the monomials of the edge x_j – x_p in written order
 * (the blocks of its queries and keys); their count. */
static int edge_monomials(const Tree *T, int j, int *mono)
{
	const uint32_t pair = (1u << j) | (1u << T->t->parent[j]);
	int blocks = 0;
	for (int m = 0; m < T->k->num_monomials; m++)
		if (T->mvars[m] == pair)
			mono[blocks++] = m;
	return blocks;
}

/* edge_of: the edge backward of message x_j → x_p. */
static pa_edge edge_of(const Tree *T, int j)
{
	int mono[TG_MAX_MONO];
	const int p = T->t->parent[j];
	const pa_tree_bufs *B = &T->bufs[j];
	return (pa_edge){
		.batch = T->batch, .nq = p == 1 ? T->nq : T->nk, .nk = T->nk,
		.off = p == 1 ? T->nk - T->nq : 0,
		.dim = edge_monomials(T, j, mono) * T->hd,
		.vd = T->subv[j] ? T->vd : 0,
		.q = B->q, .kt = B->kt, .kb = B->kb, .pv = B->pv, .o = B->o,
		.lse = B->lse, .dm = T->subv[j] ? T->dm[j] : NULL,
		.dl = p == 1 ? NULL : T->db[p],
		.dq = T->dq, .dk = T->dk, .dpv = T->dpv, .dkb = T->db[j],
		.masked = T->t->masked, .lo = T->t->lo[j], .hi = T->t->hi[j],
	};
}

/* message: the edge backward of x_j → x_p and where its results go. */
static void message(const Tree *T, int j)
{
	const int p = T->t->parent[j], hd = T->hd;
	int mono[TG_MAX_MONO];
	const int blocks = edge_monomials(T, j, mono);
	const pa_edge e = edge_of(T, j);
	pa_edge_backward(&e, T->edge_ws);
	/* the query side has the edge's nq rows, the key side nk */
	const int64_t qrows = T->batch * e.nq, krows = T->batch * e.nk;
	#pragma omp parallel for schedule(static)
	for (int64_t row = 0; row < qrows; row++)
		for (int a = 0; a < blocks; a++) {
			int m = mono[a];
			spread(T, m, p, row, T->dq + row * e.dim + a * hd,
			       (float)(T->k->scale * T->k->coefficients[m]));
		}
	#pragma omp parallel for schedule(static)
	for (int64_t row = 0; row < krows; row++)
		for (int a = 0; a < blocks; a++)
			spread(T, mono[a], j, row, T->dk + row * e.dim + a * hd, 1.0f);
	key_side(T, j, T->dpv);
}

/* edge_sizes: the widest edge's columns, and in *ws the largest
 * workspace of an edge backward (SIZE_MAX on overflow). */
static int edge_sizes(const Tree *T, size_t *ws)
{
	int widest = 0, mono[TG_MAX_MONO];
	*ws = 0;
	for (int i = 0; i < T->t->nmsg; i++) {
		const int j = T->t->order[i], w = edge_monomials(T, j, mono) * T->hd;
		const pa_edge e = edge_of(T, j);
		const size_t need = pa_edge_floats(&e);
		widest = w > widest ? w : widest;
		*ws = need > *ws ? need : *ws;
	}
	return widest;
}

/* carve: the pass's scratch in one allocation; NULL if it cannot be had. */
static float *carve(Tree *T)
{
	const int64_t B = T->batch, n = T->nk; /* nk ≥ nq rows hold either */
	size_t edge_ws;
	const int dim = edge_sizes(T, &edge_ws);
	size_t total = 0, at_dm[TG_MAX_VARS + 1], at_db[TG_MAX_VARS + 1];
	size_t at_dc[TG_MAX_VARS + 1];
	for (int j = 1; j <= T->nvars; j++) {
		at_dm[j] = pa_carve(&total, B, n, T->vd);
		at_db[j] = pa_carve(&total, B, n, 1);
		at_dc[j] = pa_carve(&total, 2 * B, T->vd, 1);
	}
	size_t at_dq = pa_carve(&total, B, n, dim), at_dk = pa_carve(&total, B, n, dim);
	size_t at_dpv = pa_carve(&total, B, n, T->vd);
	size_t at_edge = edge_ws == SIZE_MAX ? (total = SIZE_MAX) : pa_carve(&total, edge_ws, 1, 1);
	size_t at_gout = pa_carve(&total, T->t->masked ? B : 0, n, T->vd);
	float *ws = pa_alloc(total);
	if (!ws)
		return NULL;
	for (int j = 1; j <= T->nvars; j++) {
		T->dm[j] = ws + at_dm[j];
		T->db[j] = ws + at_db[j];
		T->dconst[j] = ws + at_dc[j];
	}
	T->dq = ws + at_dq, T->dk = ws + at_dk, T->dpv = ws + at_dpv;
	T->edge_ws = ws + at_edge;
	T->gout = ws + at_gout;
	return ws;
}

/* empty_rows: T->gout = grad_out with 0 on every row the mask left
 * without tuples (some message x1 receives has lse = −inf there); =
 * T->gout. */
static const float *empty_rows(const Tree *T, const float *grad_out)
{
	const int vd = T->vd;
	const int64_t rows = T->batch * T->nq;
	#pragma omp parallel for schedule(static)
	for (int64_t row = 0; row < rows; row++) {
		bool empty = false;
		for (uint32_t r = T->kids[1]; r; r &= r - 1)
			empty |= T->bufs[__builtin_ctz(r)].lse[row] == -INFINITY;
		for (int c = 0; c < vd; c++)
			T->gout[row * vd + c] = empty ? 0.0f : grad_out[row * vd + c];
	}
	return T->gout;
}

/* pa_tree_backward: see pa_tree.h. */
pa_status pa_tree_backward(const pa_kernel_info *k, const pa_tree_plan *t,
                           const pa_tree_bufs *bufs, int64_t batch, int64_t nq,
                           int64_t nk, const float *const in[],
                           const float *grad_out, float *const grad[])
{
	Tree T = {.k = k, .t = t, .bufs = bufs, .batch = batch, .nq = nq, .nk = nk,
	          .hd = k->head_dim, .vd = k->value_dim, .nvars = k->num_vars,
	          .in = in, .grad = grad};
	if (k->num_vars > TG_MAX_VARS || k->num_monomials > TG_MAX_MONO)
		return PA_ERR_UNSUPPORTED;
	describe(&T);
	float *ws = carve(&T);
	if (!ws)
		return PA_ERR_NOMEM;
	for (int i = 0; i < k->num_inputs; i++)
		if (grad[i])
			memset(grad[i], 0, (size_t)batch * (k->inputs[i].variable == 1 ? nq : nk) *
			       k->inputs[i].cols * sizeof(float));
	/* the constants of the other components, kept beside their gradients */
	const int64_t np = (nk + PA_BK - 1) / PA_BK * PA_BK;
	const int vp = (T.vd + 15) / 16 * 16;
	for (int a = 1; a < t->nroots; a++)
		for (int64_t b = 0; b < batch; b++) {
			const int r = t->root[a];
			pa_softmax_average(nk, bufs[r].kb + b * np, bufs[r].pv + b * np * vp,
			                   vp, T.vd, T.dconst[r] + batch * T.vd + b * T.vd);
		}
	root_x1(&T, t->masked ? empty_rows(&T, grad_out) : grad_out);
	for (int a = 1; a < t->nroots; a++)
		other_root(&T, t->root[a]);
	for (int i = t->nmsg - 1; i >= 0; i--)
		message(&T, t->order[i]);
	pa_free(ws);
	return PA_OK;
}
