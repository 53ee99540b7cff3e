/*
 * pa_elim_grad.c - training for the variable-elimination engine
 * (pa_elim.h, doc/training.md §6): what K_train keeps and K_backward.
 *
 * A step that sums out x_j is, at each tuple r of its R, a softmax over
 * ℓj with weights p = exp(w − lse), w adding the edge scores and the
 * log-normalizers of the messages it reads, and a weighted sum o of the
 * payload V_j ⊙ Π_g o_g.  Its reverse, given the gradients dlse(r) and
 * do(r) reaching its message (FlashAttention-2's identity Σ p⟨do, pay⟩ =
 * ⟨do, o⟩):
 *
 *     dw(ℓj)   = p(ℓj) · (dlse + ⟨do, pay(ℓj)⟩ − ⟨do, o⟩)
 *     dpay(ℓj) = p(ℓj) · do
 *
 * dw goes to every edge score the weight adds (a bias entry, a table
 * entry, or the two sides of a monomial over three or more variables)
 * and to the log-normalizers of the messages read; dpay splits over the
 * payload's factors (V_j and the messages' value vectors, each getting
 * the product of the others).  The steps run in reverse plan order, so a
 * message's gradient is complete when its own step is reversed.
 *
 * Steps whose message holds x1 run per query position ℓ1: for each ℓ1 a
 * thread recomputes them forward in its own buffers and reverses them at
 * once.  Steps without x1 run once; K_train keeps their messages in
 * saved.  What several threads add to (factor gradients, the gradients of
 * edge tables whose rows are not x1's, of messages that run once) has a
 * copy per thread, summed in thread order: the result does not depend on
 * timing.  Edge tables' gradients become factor gradients at the end, by
 * the product rule over each monomial's occurrences; a table whose rows
 * are x1's has none: each query's row goes to the factors at once.
 *
 * A step whose payload depends on x_j's position alone (key_only) runs in
 * blocks of BR tuples, each product of its forward and reverse one call
 * of the register-tiled kernel of pa_elim_grad_body.h; other steps run
 * one tuple at a time with the same formulas.
 *
 * Masks: the tables score a masked pair -PA_MASKED as the forward's do,
 * and a high edge's tuples add it (pa_elim_mask_high), so its weight p,
 * and with it its dw, is exactly 0 and nothing reaches the factors
 * through it; a query the mask leaves no tuple (output 0) takes no
 * gradient.
 *
 * Fewer queries than keys (pa_elim_train_qk, pa_elim_backward_qk): x1's
 * inputs, out and grad_out have nq rows, query row ℓ1 at position
 * ℓ1 + nk − nq (the masks shift it so).  Only what is indexed by ℓ1
 * shrinks: the tables whose rows are x1's (nq rows; their sides' rows
 * past nq are 0), the per-query loop and x1's gradients; the steps that
 * run once, and so saved, are those of n = nk.
 */
#include "pa_elim.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "pa_kernel.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define GV 16                   /* variables x1 … x16 */
#define GE 64                   /* edges */
#define MAX_ROWS ((int64_t)1 << 34) /* rows one message may hold, as the forward */
#define BR 32                   /* tuples a block step weighs at once */
#define UP16(x) (((x) + 15) / 16 * 16)

typedef enum EdgeKind {
	EK_BIAS,                 /* one variable: a vector over x_j */
	EK_TABLE,                /* two: an n × n table, rows for x_a */
	EK_HIGH,                 /* three or more: x_j's side of each monomial */
} EdgeKind;

/* An edge as the backward reads it. */
typedef struct Edge {
	EdgeKind kind;
	int var;                 /* x_j, summed out by the step that reads it */
	int other;               /* EK_TABLE: x_a */
	int dim, dimp;           /* EK_HIGH: nmono · head_dim, rounded up to 16 */
	bool shared;             /* EK_TABLE with x_a = x1: a query owns its row */
} Edge;

/* A step's enumeration, as pa_elim.c's. */
typedef struct Step {
	bool per_query;          /* x1 ∈ R */
	int nvars, vars[GV];     /* R without x1 */
	int64_t rows;            /* n^nvars */
	int64_t stride[GV + 1];  /* index step of each variable, 0 if absent */
} Step;

/* One thread's buffers: per-query messages, scratch and gradient sums. */
typedef struct Sink {
	float *lse[GV], *o[GV];  /* per-query messages */
	float *dlse[GV], *dom[GV]; /* their gradients */
	float *glse[GV], *gom[GV]; /* gradients of messages that run once */
	float *dedge[GE];        /* bias: n; table: n × np (shared: the query's row,
	                            np); high: n × dimp */
	float **df;              /* per input: n × cols */
	float *w, *p, *pay, *q, *dq; /* one tuple's scratch */
	float *wb, *gb;          /* BR × np: a block's weights and dw */
	float *ob, *dob;         /* BR × vdp: its value vectors and their gradients */
	float *qb, *dqb;         /* BR × qtotp, BR × the widest dimp: query sides */
	float *kpay[GV], *kpayt[GV]; /* n × vdp, vdp × np: a key-only step's payload */
	int64_t kstamp[GV];      /* which batch entry and query kpay[s] is of */
	float *dpay;             /* n × vdp: its gradient */
	float *block;
} Sink;

/* One call. */
typedef struct Grad {
	const pa_kernel_info *k;
	const pa_elim_plan *p;
	int64_t n, np;           /* keys; np: n rounded up to 16 */
	int64_t nq, off;         /* queries (x1's rows), at positions off + ℓ1 */
	int64_t entry;           /* batch entry being run, from 1 */
	int hd, vd, nin, threads;
	int hdp, vdp, qtotp, dimw; /* rounded up to 16; qtotp: Σ dimp; dimw: widest dimp */
	int *first, *degree;     /* per monomial */
	float *weight;           /* scale · c_m */
	int value_in[GV + 1];
	Edge edge[GE];
	Step step[GV];
	const float **in;        /* this batch entry's inputs */
	float *etab[GE];         /* bias (n), table (n × np), or keys: K (n × dimp)
	                            then Kᵀ (dim × np) */
	float *shside[GE];       /* shared tables: per monomial both sides, n × hdp
	                            each (x1's times the weight, then x_j's) */
	const float *lse[GV], *o[GV]; /* messages that run once (in saved) */
	float *tlse[GV], *tom[GV]; /* their gradients, summed over threads */
	float *sa, *sb, *sd;     /* n × hdp: sides of a table's monomial, and its gradient */
	float *sbt;              /* hd × np: sb transposed */
	Sink *sink;
} Grad;

/* rows_of: n^k into *rows; false past MAX_ROWS. */
static bool rows_of(int64_t n, int k, int64_t *rows)
{
	int64_t r = 1;
	for (int i = 0; i < k; i++)
		if (__builtin_mul_overflow(r, n, &r) || r > MAX_ROWS)
			return false;
	*rows = r;
	return true;
}

/* in_rows: the rows input i has in one batch entry (nq for x1's). */
static int64_t in_rows(const Grad *G, int i)
{
	return G->k->inputs[i].variable == 1 ? G->nq : G->n;
}

/* setup_steps: enumeration of every step; false if a message is too large. */
static bool setup_steps(Grad *G)
{
	for (int s = 0; s < G->p->nsteps; s++) {
		Step *st = &G->step[s];
		uint32_t scope = G->p->steps[s].scope;
		int64_t stride = 1;
		st->per_query = scope & 2u;
		st->nvars = 0;
		memset(st->stride, 0, sizeof st->stride);
		for (int v = 2; v <= GV; v++)
			if (scope >> v & 1u) {
				st->vars[st->nvars++] = v;
				st->stride[v] = stride;
				stride = G->n > 0 && stride <= MAX_ROWS ? stride * G->n : stride;
			}
		if (!rows_of(G->n, st->nvars, &st->rows))
			return false;
	}
	return true;
}

/* setup_edges: monomials, values and what kind each edge is. */
static bool setup_edges(Grad *G)
{
	const pa_kernel_info *k = G->k;
	G->first = calloc(k->num_monomials, sizeof *G->first);
	G->degree = calloc(k->num_monomials, sizeof *G->degree);
	G->weight = calloc(k->num_monomials, sizeof *G->weight);
	if (!G->first || !G->degree || !G->weight)
		return false;
	for (int j = 0; j <= GV; j++)
		G->value_in[j] = -1;
	for (int i = k->num_inputs - 1; i >= 0; i--) {
		const pa_input_desc *d = &k->inputs[i];
		if (d->kind == PA_INPUT_VALUE)
			G->value_in[d->variable] = i;
		else
			G->first[d->monomial] = i, G->degree[d->monomial]++;
	}
	for (int m = 0; m < k->num_monomials; m++)
		G->weight[m] = (float)(k->scale * k->coefficients[m]);
	G->qtotp = G->dimw = 0;
	for (int s = 0; s < G->p->nsteps; s++)
		for (int a = 0; a < G->p->steps[s].nedges; a++) {
			int e = G->p->steps[s].edges[a];
			Edge *ed = &G->edge[e];
			uint32_t others = G->p->edges[e].vars & ~(1u << G->p->steps[s].var);
			ed->var = G->p->steps[s].var;
			ed->kind = !others ? EK_BIAS : __builtin_popcount(others) == 1 ? EK_TABLE : EK_HIGH;
			ed->other = ed->kind == EK_TABLE ? __builtin_ctz(others) : 0;
			ed->shared = ed->kind == EK_TABLE && ed->other == 1;
			ed->dim = G->p->edges[e].nmono * G->hd;
			ed->dimp = UP16(ed->dim);
			if (ed->kind == EK_HIGH) {
				G->qtotp += ed->dimp;
				G->dimw = ed->dimp > G->dimw ? ed->dimp : G->dimw;
			}
		}
	return true;
}

/* ------------------------------------------ products, once per ISA */

#define FN(name) name##_generic
#define W 4
#define TILE_C 2
#define TARGET
typedef float vf_generic __attribute__((vector_size(16)));
#define vf vf_generic
/* exp_generic: pa_expf lane by lane. */
static inline vf exp_generic(vf x)
{
	for (int i = 0; i < W; i++)
		x[i] = pa_expf(x[i]);
	return x;
}
#define VEXP exp_generic
#include "pa_elim_grad_body.h"
#undef FN
#undef W
#undef TILE_C
#undef TARGET
#undef vf
#undef VEXP

#if defined(__x86_64__)
#define FN(name) name##_avx2
#define W 8
#define TILE_C 2
#define TARGET __attribute__((target("avx2,fma")))
#define vf __m256
#define VEXP pa_exp8
#include "pa_elim_grad_body.h"
#undef FN
#undef W
#undef TILE_C
#undef TARGET
#undef vf
#undef VEXP

#define FN(name) name##_avx512
#define W 16
#define TILE_C 4
#define TARGET __attribute__((target("avx512f")))
#define vf __m512
#define VEXP pa_exp16
#include "pa_elim_grad_body.h"
#undef FN
#undef W
#undef TILE_C
#undef TARGET
#undef vf
#undef VEXP
#endif

/* mm: C += A · B as pa_elim_grad_body.h says, in the widest set this CPU
 * runs (PA_ISA may force a narrower one). */
static void mm(int64_t M, int64_t N, int64_t K, const float *A, int64_t ars,
               int64_t aks, const float *B, int64_t bks, float *C, int64_t crs)
{
#if defined(__x86_64__)
	if (pa_isa() == PA_ISA_AVX512)
		return mm_avx512(M, N, K, A, ars, aks, B, bks, C, crs);
	if (pa_isa() == PA_ISA_AVX2)
		return mm_avx2(M, N, K, A, ars, aks, B, bks, C, crs);
#endif
	mm_generic(M, N, K, A, ars, aks, B, bks, C, crs);
}

/* exp_sub: x = e^(x − m) over n, 0 up to np; the sum (the body's). */
static float exp_sub(float *x, int64_t n, int64_t np, float m)
{
#if defined(__x86_64__)
	if (pa_isa() == PA_ISA_AVX512)
		return exp_sub_avx512(x, n, np, m);
	if (pa_isa() == PA_ISA_AVX2)
		return exp_sub_avx2(x, n, np, m);
#endif
	return exp_sub_generic(x, n, np, m);
}

/* vadd: d += x over n floats (the body's). */
static void vadd(float *d, const float *x, int64_t n)
{
#if defined(__x86_64__)
	if (pa_isa() == PA_ISA_AVX512)
		return vadd_avx512(d, x, n);
	if (pa_isa() == PA_ISA_AVX2)
		return vadd_avx2(d, x, n);
#endif
	vadd_generic(d, x, n);
}

/* dscore: g = p ⊙ (g + add) over n floats (the body's). */
static void dscore(float *g, const float *p, float add, int64_t n)
{
#if defined(__x86_64__)
	if (pa_isa() == PA_ISA_AVX512)
		return dscore_avx512(g, p, add, n);
	if (pa_isa() == PA_ISA_AVX2)
		return dscore_avx2(g, p, add, n);
#endif
	dscore_generic(g, p, add, n);
}

/* ------------------------------------------------------------- edges */

/* factor: input i at row r, column l. */
static float factor(const Grad *G, int i, int64_t r, int l)
{
	return G->in[i][r * G->hd + l];
}

/* side: the product over monomial m's occurrences on x_v (want) or not
 * on x_v (!want) at column l; row r for x_v's, pos[var] for the others. */
static float side(const Grad *G, int m, int v, bool want, const int64_t *pos,
                  int64_t r, int l)
{
	float x = 1.0f;
	for (int q = 0; q < G->degree[m]; q++) {
		int i = G->first[m] + q, var = G->k->inputs[i].variable;
		if ((var == v) == want)
			x *= factor(G, i, want ? r : pos[var], l);
	}
	return x;
}

/* spread: for each occurrence q of monomial m chosen as side() chooses
 * them: df[q][row_q][l] += c · g[l] · Π of the other chosen occurrences
 * (the product rule; no division). */
static void spread(const Grad *G, float *const *df, int m, int v, bool want,
                   const int64_t *pos, int64_t r, const float *g, float c)
{
	const int f = G->first[m], hd = G->hd;
	for (int q = 0; q < G->degree[m]; q++) {
		int var = G->k->inputs[f + q].variable;
		if ((var == v) != want)
			continue;
		int64_t row = want ? r : pos[var];
		float *dst = df[f + q] + row * hd;
		for (int l = 0; l < hd; l++) {
			float x = c * g[l];
			for (int o = 0; o < G->degree[m]; o++) {
				int vo = G->k->inputs[f + o].variable;
				if (o != q && (vo == v) == want)
					x *= factor(G, f + o, want ? r : pos[vo], l);
			}
			dst[l] += x;
		}
	}
}

/* sides: sa = x_a's side of monomial m (times its weight), sb = x_j's,
 * each n × hdp (zeros past head_dim, and past nq rows of sa for x1), and
 * sbt = sb transposed (hd × np). */
static void sides(Grad *G, int m, int a, int j)
{
	const int hd = G->hd, hdp = G->hdp;
	const int64_t n = G->n, np = G->np, na = a == 1 ? G->nq : n;
	#pragma omp parallel for schedule(static) num_threads(G->threads)
	for (int64_t r = 0; r < np; r++)
		for (int l = 0; l < hdp; l++) {
			bool in = r < n && l < hd;
			float b = in ? side(G, m, j, true, NULL, r, l) : 0.0f;
			if (r < n) {
				G->sa[r * hdp + l] = in && r < na ?
					G->weight[m] * side(G, m, a, true, NULL, r, l) : 0.0f;
				G->sb[r * hdp + l] = b;
			}
			if (l < hd)
				G->sbt[l * np + r] = b;
		}
}

/* prepare_edge: edge e's bias, table (masked as the forward's) or keys
 * for this batch entry. */
static void prepare_edge(Grad *G, int e)
{
	const pa_elim_edge *pe = &G->p->edges[e];
	const Edge *ed = &G->edge[e];
	const int64_t n = G->n, np = G->np, na = ed->shared ? G->nq : n;
	const int hd = G->hd;
	float *t = G->etab[e];
	if (ed->kind == EK_TABLE) {
		memset(t, 0, (size_t)(n * np) * sizeof *t);
		for (int i = 0; i < pe->nmono; i++) {
			sides(G, pe->mono[i], ed->other, ed->var);
			if (G->shside[e]) {
				size_t len = (size_t)(n * G->hdp);
				memcpy(G->shside[e] + 2 * i * len, G->sa, len * sizeof(float));
				memcpy(G->shside[e] + (2 * i + 1) * len, G->sb, len * sizeof(float));
			}
			#pragma omp parallel for schedule(static) num_threads(G->threads)
			for (int64_t r0 = 0; r0 < na; r0 += 16)
				mm(na - r0 < 16 ? na - r0 : 16, np, hd, G->sa + r0 * G->hdp, G->hdp, 1,
				   G->sbt, np, t + r0 * np, np);
		}
		pa_elim_mask(G->k, na, n, ed->shared ? G->off : 0, np, ed->other, ed->var, t);
		return;
	}
	#pragma omp parallel for schedule(static) num_threads(G->threads)
	for (int64_t r = 0; r < np; r++) {
		if (ed->kind == EK_BIAS) {
			float b = 0.0f;
			for (int i = 0; r < n && i < pe->nmono; i++)
				for (int l = 0; l < hd; l++)
					b += G->weight[pe->mono[i]] * side(G, pe->mono[i], ed->var, true, NULL, r, l);
			if (r < n)
				t[r] = b;
			continue;
		}
		float *kt = t + n * ed->dimp;
		for (int d = 0; d < ed->dimp; d++) {
			float x = r < n && d < ed->dim ?
				side(G, pe->mono[d / hd], ed->var, true, NULL, r, d % hd) : 0.0f;
			if (r < n)
				t[r * ed->dimp + d] = x;
			if (d < ed->dim)
				kt[d * np + r] = x;
		}
	}
}

/* ---------------------------------------------------------- messages */

/* msg_at: the index of message g's row at pos, x_j at 0; its step along
 * x_j in *sj. */
static int64_t msg_at(const Grad *G, int g, int j, const int64_t *pos, int64_t *sj)
{
	const Step *st = &G->step[g];
	int64_t base = 0;
	for (int i = 0; i < st->nvars; i++)
		if (st->vars[i] != j)
			base += pos[st->vars[i]] * st->stride[st->vars[i]];
	*sj = st->stride[j];
	return base;
}

static const float *msg_lse(const Grad *G, const Sink *S, int g)
{
	return G->step[g].per_query ? S->lse[g] : G->lse[g];
}

static const float *msg_o(const Grad *G, const Sink *S, int g)
{
	return G->step[g].per_query ? S->o[g] : G->o[g];
}

/* decode: the positions of step s's variables for tuple t. */
static void decode(const Step *st, int64_t n, int64_t t, int64_t *pos)
{
	for (int i = 0; i < st->nvars; i++, t /= n)
		pos[st->vars[i]] = t % n;
}

/* query_side: q[l] = weight_m · Π over monomial m's occurrences not on
 * x_j of their rows at pos, for l < head_dim. */
static void query_side(const Grad *G, int m, int j, const int64_t *pos, float *q)
{
	const int hd = G->hd;
	for (int l = 0; l < hd; l++)
		q[l] = G->weight[m];
	for (int o = 0; o < G->degree[m]; o++) {
		int i = G->first[m] + o, var = G->k->inputs[i].variable;
		if (var == j)
			continue;
		const float *f = G->in[i] + pos[var] * hd;
		for (int l = 0; l < hd; l++)
			q[l] *= f[l];
	}
}

/* scores: w[ℓj] = step s's weight exponent at pos for every ℓj < n: its
 * edges' scores (the high edges' masked as the forward's) and the
 * log-normalizers of the messages it reads; the
 * query sides of its high edges (times their weights, zeros up to dimp)
 * in q, one after the other.  high: add the high edges' scores too (else
 * the caller does, a block at a time). */
static void scores(const Grad *G, const Sink *S, int s, const int64_t *pos,
                   float *w, float *q, bool high)
{
	const pa_elim_step *ps = &G->p->steps[s];
	const int64_t n = G->n, np = G->np;
	memset(w, 0, (size_t)n * sizeof *w);
	for (int a = 0; a < ps->nedges; a++) {
		int e = ps->edges[a];
		const Edge *ed = &G->edge[e];
		const float *t = G->etab[e];
		if (ed->kind == EK_BIAS || ed->kind == EK_TABLE) {
			vadd(w, t + (ed->kind == EK_TABLE ? pos[ed->other] * np : 0), n);
			continue;
		}
		const pa_elim_edge *pe = &G->p->edges[e];
		for (int i = 0; i < pe->nmono; i++)
			query_side(G, pe->mono[i], ps->var, pos, q + i * G->hd);
		for (int d = ed->dim; d < ed->dimp; d++)
			q[d] = 0.0f;
		for (int64_t r = 0; high && r < n; r++) {
			float dot = 0.0f;
			for (int d = 0; d < ed->dim; d++)
				dot += q[d] * t[r * ed->dimp + d];
			w[r] += dot;
		}
		if (G->k->num_masks)
			pa_elim_mask_high(G->k, G->p, e, ps->var, pos, n, G->off, w);
		q += ed->dimp;
	}
	for (int i = 0; i < ps->nmsgs; i++) {
		int g = ps->msgs[i];
		int64_t sj, base = msg_at(G, g, ps->var, pos, &sj);
		const float *l = msg_lse(G, S, g) + base;
		if (sj == 1)
			vadd(w, l, n);
		for (int64_t r = 0; sj != 1 && r < n; r++)
			w[r] += l[r * sj];
	}
}

/* payload: pay[c] = V_j[r][c] · Π over the value-carrying messages read
 * of o_g[c], at pos with x_j at r. */
static void payload(const Grad *G, const Sink *S, int s, const int64_t *pos,
                    int64_t r, float *pay)
{
	const pa_elim_step *ps = &G->p->steps[s];
	const int vd = G->vd, vin = G->value_in[ps->var];
	for (int c = 0; c < vd; c++)
		pay[c] = vin >= 0 ? G->in[vin][r * vd + c] : 1.0f;
	for (int i = 0; i < ps->nmsgs; i++) {
		int g = ps->msgs[i];
		if (!G->p->steps[g].values)
			continue;
		int64_t sj, base = msg_at(G, g, ps->var, pos, &sj);
		const float *o = msg_o(G, S, g) + (base + r * sj) * vd;
		for (int c = 0; c < vd; c++)
			pay[c] *= o[c];
	}
}

/* forward: step s at pos: its log-normalizer into *lse and, when it
 * carries values, its value vector into o. */
static void forward(const Grad *G, Sink *S, int s, const int64_t *pos,
                    float *lse, float *o)
{
	const int64_t n = G->n;
	const int vd = G->vd;
	scores(G, S, s, pos, S->w, S->q, true);
	float mx = -INFINITY, den = 0.0f;
	for (int64_t r = 0; r < n; r++)
		mx = S->w[r] > mx ? S->w[r] : mx;
	for (int64_t r = 0; r < n; r++)
		den += S->p[r] = pa_expf(S->w[r] - mx);
	*lse = mx + logf(den);
	if (!G->p->steps[s].values)
		return;
	for (int c = 0; c < vd; c++)
		o[c] = 0.0f;
	for (int64_t r = 0; r < n; r++) {
		payload(G, S, s, pos, r, S->pay);
		for (int c = 0; c < vd; c++)
			o[c] += S->p[r] * S->pay[c];
	}
	for (int c = 0; c < vd; c++)
		o[c] /= den;
}

/* A product of value vectors and where each factor's gradient goes. */
typedef struct Factors {
	int count;
	const float *f[GV + 2];
	float *g[GV + 2];        /* += there, or NULL */
} Factors;

static void add_factor(Factors *F, const float *f, float *g)
{
	F->f[F->count] = f;
	F->g[F->count++] = g;
}

/* split: g_a += d ⊙ Π_{a' ≠ a} f_a' for every factor. */
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
			F->g[a][c] += x;
		}
	}
}

/* grad_lse, grad_o: where message g's gradients go: the thread's. */
static float *grad_lse(const Sink *S, const Grad *G, int g)
{
	return G->step[g].per_query ? S->dlse[g] : S->glse[g];
}

static float *grad_o(const Sink *S, const Grad *G, int g)
{
	return G->step[g].per_query ? S->dom[g] : S->gom[g];
}

/* pay_factors: the payload of step s at pos, x_j at r, as factors whose
 * gradients go to dV_j and the messages' do. */
static void pay_factors(const Grad *G, const Sink *S, int s, const int64_t *pos,
                        int64_t r, Factors *F)
{
	const pa_elim_step *ps = &G->p->steps[s];
	const int vd = G->vd, vin = G->value_in[ps->var];
	F->count = 0;
	if (vin >= 0)
		add_factor(F, G->in[vin] + r * vd, S->df[vin] + r * vd);
	for (int i = 0; i < ps->nmsgs; i++) {
		int g = ps->msgs[i];
		if (!G->p->steps[g].values)
			continue;
		int64_t sj, base = msg_at(G, g, ps->var, pos, &sj);
		add_factor(F, msg_o(G, S, g) + (base + r * sj) * vd,
		           grad_o(S, G, g) + (base + r * sj) * vd);
	}
}

/* low_grads: dw (over ℓj) reaches step s's one- and two-variable edges
 * and the log-normalizers of the messages it reads. */
static void low_grads(const Grad *G, Sink *S, int s, const int64_t *pos,
                      const float *dw)
{
	const pa_elim_step *ps = &G->p->steps[s];
	const int64_t n = G->n, np = G->np;
	for (int a = 0; a < ps->nedges; a++) {
		int e = ps->edges[a];
		const Edge *ed = &G->edge[e];
		if (ed->kind == EK_HIGH)
			continue;
		vadd(S->dedge[e] + (ed->kind == EK_TABLE && !ed->shared ? pos[ed->other] * np : 0),
		     dw, n);
	}
	for (int i = 0; i < ps->nmsgs; i++) {
		int g = ps->msgs[i];
		int64_t sj, base = msg_at(G, g, ps->var, pos, &sj);
		float *dl = grad_lse(S, G, g) + base;
		if (sj == 1)
			vadd(dl, dw, n);
		for (int64_t r = 0; sj != 1 && r < n; r++)
			dl[r * sj] += dw[r];
	}
}

/* high_spread: the gradient dq of high edge e's query side at pos (its
 * monomials' blocks) to the factors not on x_j. */
static void high_spread(const Grad *G, Sink *S, int e, const int64_t *pos,
                        const float *dq)
{
	const pa_elim_edge *pe = &G->p->edges[e];
	for (int i = 0; i < pe->nmono; i++)
		spread(G, S->df, pe->mono[i], G->edge[e].var, false, pos, 0,
		       dq + i * G->hd, G->weight[pe->mono[i]]);
}

/* score_grads: dw (over ℓj) reaches every edge of step s and the
 * messages it reads; one tuple (q: its query sides from scores()). */
static void score_grads(const Grad *G, Sink *S, int s, const int64_t *pos,
                        const float *dw)
{
	const pa_elim_step *ps = &G->p->steps[s];
	const int64_t n = G->n;
	const float *q = S->q;
	low_grads(G, S, s, pos, dw);
	for (int a = 0; a < ps->nedges; a++) {
		int e = ps->edges[a];
		const Edge *ed = &G->edge[e];
		if (ed->kind != EK_HIGH)
			continue;
		const float *t = G->etab[e];
		float *dk = S->dedge[e];
		for (int d = 0; d < ed->dim; d++)
			S->dq[d] = 0.0f;
		for (int64_t r = 0; r < n; r++)
			for (int d = 0; d < ed->dim; d++) {
				dk[r * ed->dimp + d] += dw[r] * q[d];
				S->dq[d] += dw[r] * t[r * ed->dimp + d];
			}
		high_spread(G, S, e, pos, S->dq);
		q += ed->dimp;
	}
}

/* reverse: step s at pos backwards, from its message (lse, o) and the
 * gradients reaching it (dlse, dom). */
static void reverse(const Grad *G, Sink *S, int s, const int64_t *pos,
                    float lse, const float *o, float dlse, const float *dom)
{
	const int64_t n = G->n;
	const int vd = G->vd;
	const bool values = G->p->steps[s].values;
	if (!values && dlse == 0.0f)
		return;
	scores(G, S, s, pos, S->w, S->q, true);
	float dd = 0.0f;
	for (int c = 0; values && c < vd; c++)
		dd += dom[c] * o[c];
	for (int64_t r = 0; r < n; r++) {
		float p = pa_expf(S->w[r] - lse), gp = 0.0f;
		if (values) {
			Factors F;
			payload(G, S, s, pos, r, S->pay);
			for (int c = 0; c < vd; c++)
				gp += dom[c] * S->pay[c], S->pay[c] = p * dom[c];
			pay_factors(G, S, s, pos, r, &F);
			split(&F, S->pay, vd);
		}
		S->p[r] = p * (dlse + gp - dd);
	}
	score_grads(G, S, s, pos, S->p);
}

/* ------------------------------------------------------ block steps */

/* key_only: step s's payload depends on x_j's position alone (no message
 * it multiplies holds another variable): its weighted sums over a block
 * of tuples are matrix products with one payload matrix. */
static bool key_only(const Grad *G, int s)
{
	const pa_elim_step *ps = &G->p->steps[s];
	for (int i = 0; i < ps->nmsgs; i++) {
		const Step *g = &G->step[ps->msgs[i]];
		for (int a = 0; G->p->steps[ps->msgs[i]].values && a < g->nvars; a++)
			if (g->vars[a] != ps->var)
				return false;
	}
	return true;
}

/* per_query_pay: step s's payload multiplies a message of ℓ1. */
static bool per_query_pay(const Grad *G, int s)
{
	const pa_elim_step *ps = &G->p->steps[s];
	for (int i = 0; i < ps->nmsgs; i++)
		if (G->p->steps[ps->msgs[i]].values && G->step[ps->msgs[i]].per_query)
			return true;
	return false;
}

/* key_pay: the key-only payload of step s: kpay[s] (n × vdp, zeros past
 * value_dim) and kpayt[s], its transpose (vdp × np, zeros past n); kept
 * for the batch entry, or for the query when it reads messages of ℓ1. */
static void key_pay(const Grad *G, Sink *S, int s, const int64_t *pos)
{
	const int64_t n = G->n, np = G->np;
	const int vd = G->vd, vdp = G->vdp;
	const int64_t stamp = G->entry * (n + 1) + (per_query_pay(G, s) ? pos[1] + 1 : 0);
	if (S->kstamp[s] == stamp)
		return;
	S->kstamp[s] = stamp;
	memset(S->kpayt[s], 0, (size_t)(vdp * np) * sizeof(float));
	for (int64_t r = 0; r < n; r++) {
		float *x = S->kpay[s] + r * vdp;
		payload(G, S, s, pos, r, x);
		for (int c = 0; c < vdp; c++)
			x[c] = c < vd ? x[c] : 0.0f;
	}
	for (int c = 0; c < vd; c++)
		for (int64_t r = 0; r < n; r++)
			S->kpayt[s][c * np + r] = S->kpay[s][r * vdp + c];
}

/* block_scores: S->wb[i][ℓj] (ℓj < n) for tuples t0 … t0+nb−1 of step s,
 * the high edges' scores as one product of the block's query sides
 * (S->qb) with their keys. */
static void block_scores(const Grad *G, Sink *S, int s, int64_t *pos,
                         int64_t t0, int nb)
{
	const pa_elim_step *ps = &G->p->steps[s];
	const int64_t n = G->n, np = G->np;
	for (int i = 0; i < nb; i++) {
		decode(&G->step[s], n, t0 + i, pos);
		scores(G, S, s, pos, S->wb + i * np, S->qb + i * G->qtotp, false);
		for (int64_t r = n; r < np; r++)
			S->wb[i * np + r] = 0.0f;
	}
	int off = 0;
	for (int a = 0; a < ps->nedges; a++) {
		const Edge *ed = &G->edge[ps->edges[a]];
		if (ed->kind != EK_HIGH)
			continue;
		mm(nb, np, ed->dim, S->qb + off, G->qtotp, 1,
		   G->etab[ps->edges[a]] + n * ed->dimp, np, S->wb, np);
		off += ed->dimp;
	}
}

/* block_forward: tuples t0 … t0+nb−1 of a key-only step s forward, their
 * log-normalizers and value vectors into lse[t] and o[t·vd]. */
static void block_forward(const Grad *G, Sink *S, int s, int64_t *pos,
                          int64_t t0, int nb, float *lse, float *o)
{
	const int64_t n = G->n, np = G->np;
	const int vd = G->vd, vdp = G->vdp;
	float den[BR];
	block_scores(G, S, s, pos, t0, nb);
	for (int i = 0; i < nb; i++) {
		float *w = S->wb + i * np, mx = -INFINITY;
		for (int64_t r = 0; r < n; r++)
			mx = w[r] > mx ? w[r] : mx;
		den[i] = exp_sub(w, n, np, mx);
		lse[t0 + i] = mx + logf(den[i]);
	}
	if (!G->p->steps[s].values)
		return;
	memset(S->ob, 0, (size_t)(nb * vdp) * sizeof(float));
	mm(nb, vdp, n, S->wb, np, 1, S->kpay[s], vdp, S->ob, vdp);
	for (int i = 0; i < nb; i++)
		for (int c = 0; c < vd; c++)
			o[(t0 + i) * vd + c] = S->ob[i * vdp + c] / den[i];
}

/* block_high: the high edges' part of a block's reverse: dq = dw · K to
 * the factors of each tuple's query side, dK += dwᵀ · q. */
static void block_high(const Grad *G, Sink *S, int s, int64_t *pos, int64_t t0,
                       int nb)
{
	const pa_elim_step *ps = &G->p->steps[s];
	const int64_t n = G->n, np = G->np;
	int off = 0;
	for (int a = 0; a < ps->nedges; a++) {
		int e = ps->edges[a];
		const Edge *ed = &G->edge[e];
		if (ed->kind != EK_HIGH)
			continue;
		memset(S->dqb, 0, (size_t)(nb * ed->dimp) * sizeof(float));
		mm(nb, ed->dimp, n, S->gb, np, 1, G->etab[e], ed->dimp, S->dqb, ed->dimp);
		for (int i = 0; i < nb; i++) {
			decode(&G->step[s], n, t0 + i, pos);
			high_spread(G, S, e, pos, S->dqb + i * ed->dimp);
		}
		mm(n, ed->dimp, nb, S->gb, 1, np, S->qb + off, G->qtotp, S->dedge[e], ed->dimp);
		off += ed->dimp;
	}
}

/* block_reverse: tuples t0 … t0+nb−1 of a key-only step s backwards;
 * d(payload) gathers in S->dpay.  Arrays as block_forward's, dlse and
 * dom the gradients reaching the message. */
static void block_reverse(const Grad *G, Sink *S, int s, int64_t *pos,
                          int64_t t0, int nb, const float *lse, const float *o,
                          const float *dlse, const float *dom)
{
	const int64_t n = G->n, np = G->np;
	const int vd = G->vd, vdp = G->vdp;
	const bool values = G->p->steps[s].values;
	float dd[BR];
	bool any = values;
	for (int i = 0; i < nb; i++)
		any |= dlse[t0 + i] != 0.0f;
	if (!any)
		return;
	block_scores(G, S, s, pos, t0, nb);
	for (int i = 0; i < nb; i++)
		exp_sub(S->wb + i * np, n, np, lse[t0 + i]);
	memset(S->gb, 0, (size_t)(nb * np) * sizeof(float));
	if (values) {
		for (int i = 0; i < nb; i++) {
			dd[i] = 0.0f;
			for (int c = 0; c < vdp; c++) {
				float d = c < vd ? dom[(t0 + i) * vd + c] : 0.0f;
				S->dob[i * vdp + c] = d;
				dd[i] += c < vd ? d * o[(t0 + i) * vd + c] : 0.0f;
			}
		}
		mm(nb, np, vd, S->dob, vdp, 1, S->kpayt[s], np, S->gb, np);
		mm(n, vdp, nb, S->wb, 1, np, S->dob, vdp, S->dpay, vdp);
	}
	for (int i = 0; i < nb; i++) {
		float *g = S->gb + i * np;
		const float *p = S->wb + i * np;
		dscore(g, p, dlse[t0 + i] - (values ? dd[i] : 0.0f), n);
		decode(&G->step[s], n, t0 + i, pos);
		low_grads(G, S, s, pos, g);
	}
	block_high(G, S, s, pos, t0, nb);
}

/* split_pay: a key-only step's d(payload), gathered over its tuples, to
 * x_j's values and the messages it multiplies. */
static void split_pay(const Grad *G, Sink *S, int s, const int64_t *pos)
{
	for (int64_t r = 0; r < G->n; r++) {
		Factors F;
		pay_factors(G, S, s, pos, r, &F);
		split(&F, S->dpay + r * G->vdp, G->vd);
	}
}

/* range_forward: tuples t0 … t1−1 of step s forward (pos holds x1 for a
 * per-query step), into lse and o. */
static void range_forward(const Grad *G, Sink *S, int s, int64_t *pos,
                          int64_t t0, int64_t t1, float *lse, float *o)
{
	if (!key_only(G, s)) {
		for (int64_t t = t0; t < t1; t++) {
			decode(&G->step[s], G->n, t, pos);
			forward(G, S, s, pos, &lse[t], o + t * G->vd);
		}
		return;
	}
	if (G->p->steps[s].values)
		key_pay(G, S, s, pos);
	for (int64_t t = t0; t < t1; t += BR)
		block_forward(G, S, s, pos, t, t1 - t < BR ? (int)(t1 - t) : BR, lse, o);
}

/* range_reverse: tuples t0 … t1−1 of step s backwards, from the message
 * (lse, o) and the gradients reaching it (dlse, dom). */
static void range_reverse(const Grad *G, Sink *S, int s, int64_t *pos,
                          int64_t t0, int64_t t1, const float *lse, const float *o,
                          const float *dlse, const float *dom)
{
	const int vd = G->vd;
	if (!key_only(G, s)) {
		for (int64_t t = t0; t < t1; t++) {
			decode(&G->step[s], G->n, t, pos);
			reverse(G, S, s, pos, lse[t], o + t * vd, dlse[t], dom + t * vd);
		}
		return;
	}
	const bool values = G->p->steps[s].values;
	if (values) {
		key_pay(G, S, s, pos);
		memset(S->dpay, 0, (size_t)(G->n * G->vdp) * sizeof(float));
	}
	for (int64_t t = t0; t < t1; t += BR)
		block_reverse(G, S, s, pos, t, t1 - t < BR ? (int)(t1 - t) : BR,
		              lse, o, dlse, dom);
	if (values)
		split_pay(G, S, s, pos);
}

/* ----------------------------------------------------- per query */

/* seed: the output row's gradient g split over x1's values and the final
 * messages' value vectors (those that run once gather over ℓ1). */
static void seed(const Grad *G, Sink *S, int64_t l1, const float *g)
{
	const int vd = G->vd, vin = G->value_in[1];
	Factors F = {0};
	if (vin >= 0)
		add_factor(&F, G->in[vin] + l1 * vd, S->df[vin] + l1 * vd);
	for (int s = 0; s < G->p->nsteps; s++)
		if ((G->p->steps[s].scope & ~2u) == 0 && G->p->steps[s].values)
			add_factor(&F, msg_o(G, S, s), grad_o(S, G, s));
	split(&F, g, vd);
}

/* dead: a mask leaves the query no tuple (a final message near
 * -PA_MASKED): its output is 0 whatever the inputs, so no gradient. */
static bool dead(const Grad *G, const Sink *S)
{
	for (int s = 0; G->k->num_masks && s < G->p->nsteps; s++)
		if ((G->p->steps[s].scope & ~2u) == 0 && msg_lse(G, S, s)[0] < -PA_MASKED / 2)
			return true;
	return false;
}

/* shared_grads: row ℓ1 of shared table e's gradient d (the query's) to
 * the factors of each monomial: dA[ℓ1] = d · B, dB[ℓj] += d[ℓj] · A[ℓ1]. */
static void shared_grads(const Grad *G, Sink *S, int e, int64_t l1)
{
	const pa_elim_edge *pe = &G->p->edges[e];
	const int64_t n = G->n;
	const int hd = G->hd, hdp = G->hdp;
	const float *d = S->dedge[e];
	float *g = S->dq;
	for (int i = 0; i < pe->nmono; i++) {
		const float *a = G->shside[e] + 2 * i * n * hdp, *b = a + n * hdp;
		int m = pe->mono[i];
		for (int l = 0; l < hd; l++)
			g[l] = 0.0f;
		for (int64_t r = 0; r < n; r++)
			for (int l = 0; l < hd; l++)
				g[l] += d[r] * b[r * hdp + l];
		spread(G, S->df, m, 1, true, NULL, l1, g, G->weight[m]);
		int q = G->first[m] + (G->k->inputs[G->first[m]].variable == 1);
		if (G->degree[m] == 2) {         /* x1·x_j: x_j's factor gets d ⊗ A[ℓ1] */
			for (int64_t r = 0; r < n; r++)
				for (int l = 0; l < hd; l++)
					S->df[q][r * hd + l] += d[r] * a[l1 * hdp + l];
			continue;
		}
		for (int64_t r = 0; r < n; r++) {
			for (int l = 0; l < hd; l++)
				g[l] = d[r] * a[l1 * hdp + l];
			spread(G, S->df, m, G->edge[e].var, true, NULL, r, g, 1.0f);
		}
	}
}

/* query: every step holding x1 at ℓ1, forward then backward. */
static void query(const Grad *G, Sink *S, int64_t l1, const float *g)
{
	const int vd = G->vd;
	int64_t pos[GV + 1] = {0};
	pos[1] = l1;
	for (int s = 0; s < G->p->nsteps; s++) {
		const Step *st = &G->step[s];
		if (!st->per_query)
			continue;
		range_forward(G, S, s, pos, 0, st->rows, S->lse[s], S->o[s]);
		memset(S->dlse[s], 0, (size_t)st->rows * sizeof(float));
		memset(S->dom[s], 0, (size_t)(st->rows * vd) * sizeof(float));
	}
	for (int e = 0; e < G->p->nedges; e++)
		if (G->edge[e].shared)
			memset(S->dedge[e], 0, (size_t)G->np * sizeof(float));
	if (dead(G, S))
		return;
	seed(G, S, l1, g);
	for (int s = G->p->nsteps - 1; s >= 0; s--)
		if (G->step[s].per_query)
			range_reverse(G, S, s, pos, 0, G->step[s].rows, S->lse[s], S->o[s],
			              S->dlse[s], S->dom[s]);
	for (int e = 0; e < G->p->nedges; e++)
		if (G->edge[e].shared)
			shared_grads(G, S, e, l1);
}

/* share: this thread's part [*t0, *t1) of rows, a static partition over
 * the team that runs (fewer threads than G->threads inside a caller's
 * parallel region). */
static void share(const Grad *G, int64_t rows, int64_t *t0, int64_t *t1)
{
	int t = pa_thread_num(), team = 1;
#ifdef _OPENMP
	team = omp_get_num_threads();
#endif
	(void)G;
	*t0 = rows * t / team;
	*t1 = rows * (t + 1) / team;
}

/* ------------------------------------------------------- allocation */

/* grad_len: floats of a thread's sum of edge e's score gradient (0 for
 * a shared table, whose rows the queries own). */
static int64_t grad_len(const Grad *G, int e)
{
	const Edge *ed = &G->edge[e];
	return ed->kind == EK_BIAS ? G->n : ed->kind == EK_HIGH ? G->n * ed->dimp :
	       ed->shared ? G->np : G->n * G->np;
}

/* piece: the next len floats of a block carved from base (counting only
 * when base is NULL). */
static float *piece(float *base, size_t *total, int64_t len)
{
	size_t at = pa_carve(total, len, 1, 1);
	return base && *total != SIZE_MAX ? base + at : NULL;
}

/* sink_layout: one thread's block from base (NULL: only its size, in
 * floats, SIZE_MAX on overflow); grads: the gradient sums too, not only
 * the forward's scratch. */
static size_t sink_layout(const Grad *G, Sink *S, float *base, bool grads)
{
	const int64_t n = G->n, np = G->np;
	const int vd = G->vd, vdp = G->vdp;
	size_t total = 0;
	S->w = piece(base, &total, np), S->p = piece(base, &total, np);
	S->pay = piece(base, &total, vdp);
	S->q = piece(base, &total, G->qtotp);
	S->dq = piece(base, &total, G->qtotp > G->hdp ? G->qtotp : G->hdp);
	S->wb = piece(base, &total, BR * np), S->gb = piece(base, &total, BR * np);
	S->ob = piece(base, &total, BR * vdp), S->dob = piece(base, &total, BR * vdp);
	S->qb = piece(base, &total, BR * G->qtotp), S->dqb = piece(base, &total, BR * G->dimw);
	S->dpay = piece(base, &total, grads ? n * vdp : 0);
	for (int s = 0; s < G->p->nsteps; s++) {
		const Step *st = &G->step[s];
		bool kp = G->p->steps[s].values && key_only(G, s);
		S->kpay[s] = piece(base, &total, kp ? n * vdp : 0);
		S->kpayt[s] = piece(base, &total, kp ? vdp * np : 0);
		S->kstamp[s] = 0;
		if (st->per_query) {
			S->lse[s] = piece(base, &total, st->rows);
			S->o[s] = piece(base, &total, st->rows * vd);
		}
		if (st->per_query && grads) {
			S->dlse[s] = piece(base, &total, st->rows);
			S->dom[s] = piece(base, &total, st->rows * vd);
		}
		if (!st->per_query && grads) {
			S->glse[s] = piece(base, &total, st->rows * (1 + vd));
			S->gom[s] = S->glse[s] ? S->glse[s] + st->rows : NULL;
		}
	}
	for (int e = 0; grads && e < G->p->nedges; e++)
		S->dedge[e] = piece(base, &total, grad_len(G, e));
	for (int i = 0; grads && i < G->nin; i++)
		S->df[i] = piece(base, &total, in_rows(G, i) * G->k->inputs[i].cols);
	return total;
}

/* table_len: floats of edge e's table. */
static size_t table_len(const Grad *G, int e)
{
	const Edge *ed = &G->edge[e];
	return ed->kind == EK_BIAS ? (size_t)G->n : ed->kind == EK_TABLE ?
	       (size_t)(G->n * G->np) : (size_t)(G->n * ed->dimp + ed->dim * G->np);
}

/* grad_alloc: tables, the messages' gradients and a block per thread;
 * false if out of memory. */
static bool grad_alloc(Grad *G, bool grads)
{
	const int64_t n = G->n, np = G->np;
	size_t nn;
	if (__builtin_mul_overflow((size_t)n, (size_t)np, &nn) || nn > SIZE_MAX / 64)
		return false;
	if (!(G->in = calloc(G->nin, sizeof *G->in)) ||
	    !(G->sa = malloc((size_t)(3 * n * G->hdp + G->hd * np) * sizeof(float))))
		return false;
	G->sb = G->sa + n * G->hdp, G->sd = G->sb + n * G->hdp, G->sbt = G->sd + n * G->hdp;
	for (int e = 0; e < G->p->nedges; e++) {
		if (!(G->etab[e] = malloc(table_len(G, e) * sizeof(float))))
			return false;
		size_t sl = (size_t)(2 * G->p->edges[e].nmono * n * G->hdp);
		if (grads && G->edge[e].shared && !(G->shside[e] = malloc(sl * sizeof(float))))
			return false;
	}
	for (int s = 0; grads && s < G->p->nsteps; s++)
		if (!G->step[s].per_query &&
		    !(G->tlse[s] = malloc((size_t)G->step[s].rows * (1 + G->vd) * sizeof(float))))
			return false;
		else if (!G->step[s].per_query)
			G->tom[s] = G->tlse[s] + G->step[s].rows;
	if (!(G->sink = calloc(G->threads, sizeof *G->sink)))
		return false;
	for (int t = 0; t < G->threads; t++) {
		Sink *S = &G->sink[t];
		if (!(S->df = calloc(G->nin, sizeof *S->df)))
			return false;
		size_t per = sink_layout(G, S, NULL, grads);
		if (per == SIZE_MAX || !(S->block = malloc(per * sizeof(float))))
			return false;
		sink_layout(G, S, S->block, grads);
	}
	return true;
}

/* grad_free: what grad_alloc and setup took (NULL entries are fine). */
static void grad_free(Grad *G)
{
	for (int t = 0; G->sink && t < G->threads; t++)
		free(G->sink[t].df), free(G->sink[t].block);
	free(G->sink);
	for (int e = 0; e < G->p->nedges; e++)
		free(G->etab[e]), free(G->shside[e]);
	for (int s = 0; s < G->p->nsteps; s++)
		free(G->tlse[s]);
	free(G->in), free(G->sa);
	free(G->first), free(G->degree), free(G->weight);
}

/* grad_init: G for kernel k, plan p at nq queries and n keys; PA_OK,
 * PA_ERR_ARGUMENT (a message too large, as the forward says) or
 * PA_ERR_NOMEM. */
static pa_status grad_init(Grad *G, const pa_kernel_info *k, const pa_elim_plan *p,
                           int64_t nq, int64_t n, bool grads)
{
	*G = (Grad){.k = k, .p = p, .n = n, .np = UP16(n), .nq = nq, .off = n - nq, .hd = k->head_dim,
	            .vd = k->value_dim, .hdp = UP16(k->head_dim), .vdp = UP16(k->value_dim),
	            .nin = k->num_inputs, .threads = pa_max_threads()};
	if (k->num_vars > GV || p->nedges > GE || p->nsteps > GV)
		return PA_ERR_UNSUPPORTED;
	if (!setup_steps(G))
		return PA_ERR_ARGUMENT;
	if (!setup_edges(G) || !grad_alloc(G, grads))
		return PA_ERR_NOMEM;
	return PA_OK;
}

/* ----------------------------------------------------------- saved */

/* saved_layout: floats one batch entry keeps: per step that runs once,
 * its log-normalizers and (with values) its value vectors. */
static int64_t saved_layout(const Grad *G, int64_t *at)
{
	int64_t total = 0;
	for (int s = 0; s < G->p->nsteps; s++) {
		const Step *st = &G->step[s];
		at[s] = total;
		if (!st->per_query)
			total += st->rows * (1 + (G->p->steps[s].values ? G->vd : 0));
	}
	return total;
}

/* pa_elim_saved_floats: see pa_elim.h. */
int64_t pa_elim_saved_floats(const pa_kernel_info *k, const pa_elim_plan *p,
                             int64_t batch, int64_t n)
{
	return pa_elim_saved_floats_qk(k, p, batch, n, n);
}

/* pa_elim_saved_floats_qk: see pa_elim.h; what is kept does not depend
 * on nq. */
int64_t pa_elim_saved_floats_qk(const pa_kernel_info *k, const pa_elim_plan *p,
                                int64_t batch, int64_t nq, int64_t n)
{
	if (nq <= 0 || nq > n)
		return -1;
	Grad G = {.k = k, .p = p, .n = n, .vd = k->value_dim};
	int64_t at[GV], per, total;
	if (batch <= 0 || n <= 0 || p->nsteps > GV || !setup_steps(&G) ||
	    __builtin_mul_overflow(batch, n, &total) ||
	    __builtin_mul_overflow(total, (int64_t)k->value_dim + 1, &total))
		return -1;
	per = saved_layout(&G, at);
	if (__builtin_mul_overflow(per, batch, &total) || total > INT64_MAX / 8)
		return -1;
	return total > 0 ? total : 1;
}

/* point_saved: the messages that run once of batch entry b, in saved. */
static void point_saved(Grad *G, const float *saved, int64_t b)
{
	int64_t at[GV], per = saved_layout(G, at);
	for (int s = 0; s < G->p->nsteps; s++)
		if (!G->step[s].per_query) {
			G->lse[s] = saved + b * per + at[s];
			G->o[s] = G->lse[s] + G->step[s].rows;
		}
}

/* prepare: inputs of batch entry b and every edge's table. */
static void prepare(Grad *G, const float *const inputs[], int64_t b)
{
	G->entry = b + 1;
	for (int i = 0; i < G->nin; i++)
		G->in[i] = inputs[i] + b * in_rows(G, i) * G->k->inputs[i].cols;
	for (int e = 0; e < G->p->nedges; e++)
		prepare_edge(G, e);
}

/* save_global: the steps that run once, in order, into saved. */
static void save_global(Grad *G, float *saved, int64_t b)
{
	point_saved(G, saved, b);
	for (int s = 0; s < G->p->nsteps; s++) {
		const Step *st = &G->step[s];
		if (st->per_query)
			continue;
		float *lse = (float *)G->lse[s], *o = (float *)G->o[s];
		#pragma omp parallel num_threads(G->threads)
		{
			int64_t pos[GV + 1] = {0}, t0, t1;
			share(G, st->rows, &t0, &t1);
			range_forward(G, &G->sink[pa_thread_num()], s, pos, t0, t1, lse, o);
		}
	}
}

/* pa_elim_train: see pa_elim.h. */
pa_status pa_elim_train(const pa_kernel_info *k, const pa_elim_plan *p,
                        int64_t batch, int64_t n, const float *const inputs[],
                        float *out, float *saved)
{
	return pa_elim_train_qk(k, p, batch, n, n, inputs, out, saved);
}

/* pa_elim_train_qk: see pa_elim.h. */
pa_status pa_elim_train_qk(const pa_kernel_info *k, const pa_elim_plan *p,
                           int64_t batch, int64_t nq, int64_t n,
                           const float *const inputs[], float *out, float *saved)
{
	pa_status st = pa_check_args_qk(k, batch, nq, n, inputs, out);
	if (st != PA_OK)
		return st;
	if (!saved)
		return PA_ERR_NULL;
	Grad G = {.k = k, .p = p, .n = n, .vd = k->value_dim};
	int64_t at[GV];
	if (p->nsteps > GV || !setup_steps(&G))
		return PA_ERR_ARGUMENT;
	if (saved_layout(&G, at) == 0) {
		saved[0] = 0.0f;     /* nothing runs once: the one float kept */
		return pa_elim_run_qk(k, p, batch, nq, n, inputs, out);
	}
	st = grad_init(&G, k, p, nq, n, false);
	for (int64_t b = 0; b < batch && st == PA_OK; b++) {
		prepare(&G, inputs, b);
		save_global(&G, saved, b);
	}
	grad_free(&G);
	return st == PA_OK ? pa_elim_run_qk(k, p, batch, nq, n, inputs, out) : st;
}

/* ------------------------------------------------------- backward */

/* sum_threads: dst[e] = Σ_t of thread t's factor sums of input idx (of_df)
 * or edge sums of edge idx, in thread order (dst may be thread 0's);
 * inside a parallel region. */
static void sum_threads(const Grad *G, float *dst, bool of_df, int idx, int64_t len)
{
	#pragma omp for schedule(static)
	for (int64_t e = 0; e < len; e++) {
		float x = 0.0f;
		for (int t = 0; t < G->threads; t++) {
			const Sink *S = &G->sink[t];
			x += of_df ? S->df[idx][e] : S->dedge[idx][e];
		}
		dst[e] = x;
	}
}

/* sum_msg: the gradients of message s that runs once, over threads. */
static void sum_msg(Grad *G, int s)
{
	const int64_t rows = G->step[s].rows, len = rows * (1 + G->vd);
	#pragma omp for schedule(static)
	for (int64_t e = 0; e < len; e++) {
		float x = 0.0f;
		for (int t = 0; t < G->threads; t++)
			x += G->sink[t].glse[s][e];
		G->tlse[s][e] = x;
	}
}

/* zero_sinks: every thread's gradient sums and the shared tables at 0. */
static void zero_sinks(Grad *G)
{
	for (int t = 0; t < G->threads; t++) {
		Sink *S = &G->sink[t];
		for (int s = 0; s < G->p->nsteps; s++)
			if (!G->step[s].per_query)
				memset(S->glse[s], 0, (size_t)(G->step[s].rows * (1 + G->vd)) * sizeof(float));
		for (int e = 0; e < G->p->nedges; e++)
			if (grad_len(G, e))
				memset(S->dedge[e], 0, (size_t)grad_len(G, e) * sizeof(float));
		for (int i = 0; i < G->nin; i++)
			memset(S->df[i], 0, (size_t)(in_rows(G, i) * G->k->inputs[i].cols) * sizeof(float));
	}
	for (int e = 0; e < G->p->nedges; e++)
		(void)e;
}

/* run_reverse: the per-query steps for every ℓ1, then the steps that run
 * once in reverse order, then every thread's sums into thread 0's. */
static void run_reverse(Grad *G, const float *grad_out)
{
	#pragma omp parallel num_threads(G->threads)
	{
		Sink *S = &G->sink[pa_thread_num()];
		#pragma omp for schedule(static)
		for (int64_t l1 = 0; l1 < G->nq; l1++)
			query(G, S, l1, grad_out + l1 * G->vd);
		for (int s = G->p->nsteps - 1; s >= 0; s--) {
			const Step *st = &G->step[s];
			if (st->per_query)
				continue;
			int64_t pos[GV + 1] = {0}, t0, t1;
			sum_msg(G, s);
			share(G, st->rows, &t0, &t1);
			range_reverse(G, S, s, pos, t0, t1, G->lse[s], G->o[s], G->tlse[s], G->tom[s]);
			#pragma omp barrier
		}
		for (int e = 0; e < G->p->nedges; e++)
			if (!G->edge[e].shared)
				sum_threads(G, G->sink[0].dedge[e], false, e, grad_len(G, e));
		for (int i = 0; i < G->nin; i++)
			sum_threads(G, G->sink[0].df[i], true, i, in_rows(G, i) * G->k->inputs[i].cols);
	}
}

/* table_grads: a table's gradient dT (rows x_a, columns x_j) to the
 * factors of both sides of each monomial: dA = dT · B, dB = dTᵀ · A. */
static void table_grads(Grad *G, int e, const float *dt, float *const *df)
{
	const pa_elim_edge *pe = &G->p->edges[e];
	const Edge *ed = &G->edge[e];
	const int64_t n = G->n, np = G->np;
	const int hdp = G->hdp;
	for (int i = 0; i < pe->nmono; i++) {
		int m = pe->mono[i];
		sides(G, m, ed->other, ed->var);
		memset(G->sd, 0, (size_t)(n * hdp) * sizeof(float));
		#pragma omp parallel for schedule(static) num_threads(G->threads)
		for (int64_t r0 = 0; r0 < n; r0 += 16) {
			int64_t rows = n - r0 < 16 ? n - r0 : 16;
			mm(rows, hdp, n, dt + r0 * np, np, 1, G->sb, hdp, G->sd + r0 * hdp, hdp);
			for (int64_t r = r0; r < r0 + rows; r++)
				spread(G, df, m, ed->other, true, NULL, r, G->sd + r * hdp, G->weight[m]);
		}
		memset(G->sd, 0, (size_t)(n * hdp) * sizeof(float));
		#pragma omp parallel for schedule(static) num_threads(G->threads)
		for (int64_t r0 = 0; r0 < n; r0 += 16) {
			int64_t rows = n - r0 < 16 ? n - r0 : 16;
			mm(rows, hdp, n, dt + r0, 1, np, G->sa, hdp, G->sd + r0 * hdp, hdp);
			for (int64_t r = r0; r < r0 + rows; r++)
				spread(G, df, m, ed->var, true, NULL, r, G->sd + r * hdp, 1.0f);
		}
	}
}

/* edge_grads: every edge's score gradient to its factors (in thread 0's
 * sums). */
static void edge_grads(Grad *G)
{
	float *const *df = G->sink[0].df;
	for (int e = 0; e < G->p->nedges; e++) {
		const pa_elim_edge *pe = &G->p->edges[e];
		const Edge *ed = &G->edge[e];
		const float *d = G->sink[0].dedge[e];
		if (ed->shared)
			continue;            /* gone to the factors query by query */
		if (ed->kind == EK_TABLE) {
			table_grads(G, e, d, df);
			continue;
		}
		#pragma omp parallel for schedule(static) num_threads(G->threads)
		for (int64_t r = 0; r < G->n; r++)
			for (int i = 0; i < pe->nmono; i++) {
				int m = pe->mono[i];
				if (ed->kind == EK_HIGH) {
					spread(G, df, m, ed->var, true, NULL, r, d + r * ed->dimp + i * G->hd, 1.0f);
					continue;
				}
				float g[G->hd];
				for (int l = 0; l < G->hd; l++)
					g[l] = d[r];
				spread(G, df, m, ed->var, true, NULL, r, g, G->weight[m]);
			}
	}
}

/* pa_elim_backward: see pa_elim.h. */
pa_status pa_elim_backward(const pa_kernel_info *k, const pa_elim_plan *p,
                           int64_t batch, int64_t n, const float *const inputs[],
                           const float *out, const float *saved,
                           const float *grad_out, float *const grad_inputs[])
{
	return pa_elim_backward_qk(k, p, batch, n, n, inputs, out, saved, grad_out,
	                           grad_inputs);
}

/* pa_elim_backward_qk: see pa_elim.h. */
pa_status pa_elim_backward_qk(const pa_kernel_info *k, const pa_elim_plan *p,
                              int64_t batch, int64_t nq, int64_t n,
                              const float *const inputs[], const float *out,
                              const float *saved, const float *grad_out,
                              float *const grad_inputs[])
{
	pa_status st = pa_check_args_qk(k, batch, nq, n, inputs, out);
	if (st == PA_OK)
		st = pa_check_grad_args_qk(k, batch, nq, n, inputs, out, saved,
		                           pa_elim_saved_floats_qk(k, p, batch, nq, n),
		                           grad_out, grad_inputs);
	if (st != PA_OK)
		return st;
	Grad G;
	st = grad_init(&G, k, p, nq, n, true);
	for (int64_t b = 0; b < batch && st == PA_OK; b++) {
		prepare(&G, inputs, b);
		point_saved(&G, saved, b);
		zero_sinks(&G);
		run_reverse(&G, grad_out + b * nq * G.vd);
		edge_grads(&G);
		for (int i = 0; i < G.nin; i++) {
			int64_t len = in_rows(&G, i) * k->inputs[i].cols;
			if (grad_inputs[i])
				memcpy(grad_inputs[i] + b * len, G.sink[0].df[i],
				       (size_t)len * sizeof(float));
		}
	}
	grad_free(&G);
	return st;
}
