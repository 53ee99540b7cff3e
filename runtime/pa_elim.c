/*
 * pa_elim.c - the variable-elimination engine of pa_elim.h.
 *
 * Per batch entry: first every edge is turned into what its step reads
 * fastest: a bias vector (one variable), an n × n score table (two
 * variables, rows for the variable that stays), or the eliminated
 * variable's side of each monomial (three or more variables: the other
 * side is formed per tuple and dotted with it).  Then the steps whose
 * message does not hold x1 run once, over every tuple of their R; and
 * for each query position ℓ1 the steps whose message holds x1 run in
 * that thread's buffers and the output row is the product of x1's
 * values and the value vectors of the last messages.
 *
 * Every step is an online softmax over the n positions of the eliminated
 * variable: weights exp(w - max w), where w adds the edge scores and the
 * log-normalizers of the consumed messages; the payload multiplies the
 * variable's values and the consumed messages' value vectors.
 *
 * With nq queries against nk keys (pa_elim_run_qk) only x1 has nq rows: a
 * table of an edge over x1 is nq × nk, the per-query steps run for nq
 * positions (their cost scales with nq), and everything else (the steps
 * without x1, their messages, the other tables) is as at n = nk.  Tuples
 * hold x1's row, pos[1] = ℓ1 < nq; the masks see its position
 * ℓ1 + nk − nq.
 */
#include "pa_elim.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "pa_kernel.h"
#include "pa_math.h"
#include "pa_simd.h"
#include "pa_tensor3.h"

#define MAXV 16                 /* variables x1 … x16 */
#define MAX_ROWS ((int64_t)1 << 34) /* floats one message may hold */

/* A monomial: where its factor inputs start, how many, its weight. */
typedef struct Mono {
	int first;               /* index in inputs[] of its first occurrence */
	int degree;
	float weight;            /* scale · c_m */
} Mono;

/* Per-step facts derived from the plan. */
typedef struct Step {
	bool per_query;          /* x1 ∈ R: runs per query position */
	int nvars;               /* variables enumerated: R, minus x1 if per_query */
	int vars[MAXV];
	int64_t rows;            /* n^nvars tuples */
	int64_t stride[MAXV + 1]; /* index step of each variable of R, 0 if absent */
	bool key_payload;        /* the payload depends on x_j's position only:
	                            the weighted sum is a matrix product */
	int rowkey;              /* factored step (see run_factored): its one
	                            edge over (x_a, x_j), a ≠ 1; else -1 */
} Step;

#define ROWS 6                  /* tuples a step weighs at once */
#define SMALL_WORK (1 << 16)    /* elements a preparing loop runs on one
                                   thread below (a fork costs more) */

/* What one thread writes: per-query messages and scratch rows. */
typedef struct Thread {
	float *lse[MAXV], *o[MAXV]; /* messages of per-query steps */
	float *w;                /* ROWS × n weights */
	float *acc;              /* ROWS × vdp weighted sums */
	float *pay;              /* n × vdp payload of a key_payload step */
	float *pay2;             /* n × vdp: a factored step's unscaled payload */
	float *fac;              /* nr × vdp sums, then nr totals of a factored
	                            step (nr: n rounded up to ROWS) */
	float *panel;            /* ROWS × max(n, qdim): weights packed for gemm */
	float *q;                /* ROWS query sides of a high edge */
	float *scores;           /* ROWS × np16 scores of a high edge */
	float *block;            /* the allocation holding all of the above */
} Thread;

/* One kernel call. */
typedef struct Elim {
	const pa_kernel_info *k;
	const pa_elim_plan *p;
	int64_t n;               /* keys: rows of every input but x1's */
	int64_t nq, off;         /* queries (x1's rows, out's), at positions
	                            off + ℓ1 with off = n − nq */
	int hd, vd, qdim;        /* qdim: widest query side of a high edge */
	int vdp;                 /* value_dim rounded up to 16 */
	int64_t np16;            /* n rounded up to 16 */
	Mono *mono;
	int value_in[MAXV + 1];  /* input index of V[j], -1 if none */
	int consumer[64];        /* per edge: the variable whose step reads it */
	Step step[MAXV];
	const float *in[1056];   /* this batch entry's inputs (64 monomials of
	                            16 occurrences, 16 value matrices at most) */
	float *sides;            /* 2 · n · head_dim: both sides of a monomial */
	float *etab[64];         /* per edge: bias vector, table or key side */
	float *eexp[64];         /* per rowkey edge: exp(table - row max), n × n,
	                            then the n row maxima */
	float *epack[64];        /* the same rows packed by ROWS for gemm_packed */
	float *lse[MAXV], *o[MAXV]; /* messages of steps that run once */
} Elim;

static float softmax(float *w, int64_t n, float *mx);
static float dot(const float *x, const float *y, int64_t n);
static void gemm(const float *p, int64_t ldp, const float *pay, int vdp,
                 int64_t n, float *acc, float *panel);
static void decode(const struct Step *st, int64_t n, int64_t t, int64_t *pos);
static void pack(const float *p, int64_t ldp, int64_t n, float *pk);

/* pow_rows: n^k into *rows; false when it exceeds MAX_ROWS. */
static bool pow_rows(int64_t n, int k, int64_t *rows)
{
	int64_t r = 1;
	for (int i = 0; i < k; i++)
		if (__builtin_mul_overflow(r, n, &r) || r > MAX_ROWS)
			return false;
	*rows = r;
	return true;
}

/* factored_edge: for a step that holds x1 and one other variable x_a,
 * whose payload and every score term but one edge over (x_a, x_j) depend
 * on x_j's position alone (given ℓ1), that edge; else -1. */
static int factored_edge(const Elim *E, int s)
{
	const pa_elim_step *ps = &E->p->steps[s];
	const Step *st = &E->step[s];
	if (!st->per_query || st->nvars != 1 || !st->key_payload)
		return -1;
	int found = -1;
	for (int i = 0; i < ps->nedges; i++) {
		uint32_t vars = E->p->edges[ps->edges[i]].vars;
		if (__builtin_popcount(vars) > 2)
			return -1;
		if (vars >> st->vars[0] & 1u) {
			if (found >= 0)
				return -1;
			found = ps->edges[i];
		}
	}
	return found;
}

/* setup_steps: the enumerated variables, row counts and strides of every
 * step; false when a message would be too large to hold. */
static bool setup_steps(Elim *E)
{
	for (int s = 0; s < E->p->nsteps; s++) {
		Step *st = &E->step[s];
		uint32_t scope = E->p->steps[s].scope;
		st->per_query = scope & 2u;
		st->nvars = 0;
		memset(st->stride, 0, sizeof st->stride);
		int64_t stride = 1;
		for (int v = 2; v <= MAXV; v++)
			if (scope >> v & 1u) {
				st->vars[st->nvars++] = v;
				st->stride[v] = stride;
				stride *= E->n;
			}
		if (!pow_rows(E->n, st->nvars, &st->rows))
			return false;
		st->key_payload = true;
		const pa_elim_step *ps = &E->p->steps[s];
		for (int i = 0; i < ps->nmsgs; i++) {
			const Step *g = &E->step[ps->msgs[i]];
			for (int a = 0; a < g->nvars; a++)
				if (g->vars[a] != ps->var && st->stride[g->vars[a]])
					st->key_payload = false;
		}
		st->rowkey = factored_edge(E, s);
	}
	return true;
}

/* setup_inputs: monomial starts and weights, value inputs, and which step
 * reads each edge. */
static void setup_inputs(Elim *E)
{
	const pa_kernel_info *k = E->k;
	for (int j = 0; j <= MAXV; j++)
		E->value_in[j] = -1;
	for (int i = k->num_inputs - 1; i >= 0; i--) {
		const pa_input_desc *d = &k->inputs[i];
		if (d->kind == PA_INPUT_VALUE)
			E->value_in[d->variable] = i;
		else
			E->mono[d->monomial].first = i, E->mono[d->monomial].degree++;
	}
	for (int m = 0; m < k->num_monomials; m++)
		E->mono[m].weight = (float)(k->scale * k->coefficients[m]);
	E->qdim = 0;
	for (int s = 0; s < E->p->nsteps; s++)
		for (int a = 0; a < E->p->steps[s].nedges; a++) {
			int e = E->p->steps[s].edges[a];
			E->consumer[e] = E->p->steps[s].var;
			int dim = E->p->edges[e].nmono * E->hd;
			E->qdim = dim > E->qdim ? dim : E->qdim;
		}
}

/* side: the product over monomial m's occurrences on x_v (want) or not on
 * x_v (!want) at column l, positions from pos (ignored for x_v when
 * want: row r is used). */
static float side(const Elim *E, int m, int v, bool want, const int64_t *pos,
                  int64_t r, int l)
{
	const Mono *mo = &E->mono[m];
	float x = 1.0f;
	for (int q = 0; q < mo->degree; q++) {
		int var = E->k->inputs[mo->first + q].variable;
		if ((var == v) == want)
			x *= E->in[mo->first + q][(want ? r : pos[var]) * E->hd + l];
	}
	return x;
}

/* edge_bias: etab = Σ_m weight_m Σ_l Π_q F (one variable x_j). */
static void edge_bias(Elim *E, int e)
{
	const pa_elim_edge *ed = &E->p->edges[e];
	int j = E->consumer[e];
	float *b = E->etab[e];
	#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < E->n; r++) {
		float t = 0.0f;
		for (int a = 0; a < ed->nmono; a++) {
			float dot = 0.0f;
			for (int l = 0; l < E->hd; l++)
				dot += side(E, ed->mono[a], j, true, NULL, r, l);
			t += E->mono[ed->mono[a]].weight * dot;
		}
		b[r] = t;
	}
}

/* ruled_out = constraint c of k's mask, or the window, rules out x_a at
 * la with x_b at lb (c over x_a, x_b). */
static bool ruled_out(const pa_kernel_info *k, pa_mask c, int64_t la, int64_t lb)
{
	return (c.strict ? la >= lb : la > lb) || (k->window && lb - la >= k->window);
}

/* pa_elim_mask: see pa_elim.h. */
void pa_elim_mask(const pa_kernel_info *k, int64_t na, int64_t n, int64_t off,
                  int64_t ld, int a, int j, float *t)
{
	for (int i = 0; i < k->num_masks; i++) {
		const pa_mask c = k->masks[i];
		if (!((c.a == a && c.b == j) || (c.a == j && c.b == a)))
			continue;
		#pragma omp parallel for schedule(static)
		for (int64_t ra = 0; ra < na; ra++)
			for (int64_t rj = 0; rj < n; rj++) {
				int64_t la = ra + off;
				if (ruled_out(k, c, c.a == a ? la : rj, c.a == a ? rj : la))
					t[ra * ld + rj] = -PA_MASKED;
			}
	}
}

/* enforces: edge e of p enforces the constraint between x_a and x_b (see
 * pa_elim_mask_high). */
static bool enforces(const pa_elim_plan *p, int e, int a, int b)
{
	uint32_t pair = 1u << a | 1u << b;
	if ((p->edges[e].vars & pair) != pair)
		return false;
	for (int f = 0; f < p->nedges; f++)
		if (p->edges[f].vars == pair || (f < e && (p->edges[f].vars & pair) == pair))
			return false;
	return true;
}

/* pa_elim_mask_high: see pa_elim.h. */
void pa_elim_mask_high(const pa_kernel_info *k, const pa_elim_plan *p, int e,
                       int j, const int64_t *pos, int64_t n, int64_t off, float *w)
{
	for (int i = 0; i < k->num_masks; i++) {
		const pa_mask c = k->masks[i];
		if (!enforces(p, e, c.a, c.b))
			continue;
		bool fixed = c.a != j && c.b != j;
		int64_t la = pos[c.a] + (c.a == 1 ? off : 0);
		int64_t lb = pos[c.b] + (c.b == 1 ? off : 0);
		if (fixed && !ruled_out(k, c, la, lb))
			continue;
		for (int64_t r = 0; r < n; r++)
			if (fixed || ruled_out(k, c, c.a == j ? r : la, c.b == j ? r : lb))
				w[r] -= PA_MASKED;
	}
}

/* table_rows: t[ra·n + rj] += as[ra] · bs[rj] (rows of hd) for every rj
 * < n and ra < na: ROWS rows of as at a time as one matrix product with bt (bs
 * by column, np16 wide), by dots where bt or the scratch is missing and
 * for the last rows. */
static void table_rows(const Elim *E, int64_t na, const float *as,
                       const float *bs, const float *bt, float *t)
{
	int hd = E->hd;
	int64_t n = E->n, np = E->np16;
	#pragma omp parallel if (na * n * hd > 16 * SMALL_WORK)
	{
		float *acc = bt ? malloc((size_t)(ROWS * (np + hd)) * sizeof *acc) : NULL;
		#pragma omp for schedule(static)
		for (int64_t r0 = 0; r0 < na; r0 += ROWS) {
			int rows = na - r0 < ROWS ? (int)(na - r0) : ROWS;
			if (acc && rows == ROWS) {
				gemm(as + r0 * hd, hd, bt, (int)np, hd, acc, acc + ROWS * np);
				for (int i = 0; i < ROWS; i++)
					for (int64_t rj = 0; rj < n; rj++)
						t[(r0 + i) * n + rj] += acc[i * np + rj];
				continue;
			}
			for (int i = 0; i < rows; i++)
				for (int64_t rj = 0; rj < n; rj++)
					t[(r0 + i) * n + rj] += dot(as + (r0 + i) * hd, bs + rj * hd, hd);
		}
		free(acc);
	}
}

/* side_rows: x[r·hd + l] = w · side(E, m, v, true, NULL, r, l) for r < rows
 * and l < head_dim: the same products in the same order, whole rows at a
 * time. */
static void side_rows(const Elim *E, int m, int v, float w, int64_t rows, float *x)
{
	const Mono *mo = &E->mono[m];
	const int64_t len = rows * E->hd;
	for (int64_t e = 0; e < len; e++)
		x[e] = 1.0f;
	for (int q = 0; q < mo->degree; q++)
		if (E->k->inputs[mo->first + q].variable == v) {
			const float *f = E->in[mo->first + q];
			for (int64_t e = 0; e < len; e++)
				x[e] *= f[e];
		}
	for (int64_t e = 0; w != 1.0f && e < len; e++)
		x[e] = w * x[e];
}

/* edge_table: etab[ℓa·n + ℓj] = the edge's score for x_a at ℓa (its row;
 * nq of them for x1) and the eliminated x_j at ℓj; computed from both
 * sides of every monomial (none for an edge of the mask alone), then
 * masked (pa_elim_mask). */
static void edge_table(Elim *E, int e, int a)
{
	const pa_elim_edge *ed = &E->p->edges[e];
	int j = E->consumer[e], hd = E->hd;
	int64_t n = E->n, np = E->np16, na = a == 1 ? E->nq : n;
	float *t = E->etab[e], *as = E->sides, *bs = E->sides + n * hd;
	float *bt = malloc((size_t)(hd * np) * sizeof *bt);
	memset(t, 0, (size_t)(na * n) * sizeof *t);
	for (int i = 0; i < ed->nmono; i++) {
		int m = ed->mono[i];
		side_rows(E, m, a, E->mono[m].weight, na, as);
		side_rows(E, m, j, 1.0f, n, bs);
		for (int l = 0; bt && l < hd; l++)
			for (int64_t r = 0; r < np; r++)
				bt[l * np + r] = r < n ? bs[r * hd + l] : 0.0f;
		table_rows(E, na, as, bs, bt, t);
	}
	free(bt);
	pa_elim_mask(E->k, na, n, a == 1 ? E->off : 0, n, a, j, t);
}

/* edge_keys: etab[(i·hd + l)·np16 + ℓj] = x_j's side of the edge's i-th
 * monomial at column l (an edge of three or more variables), stored by
 * column so that scores of a block of tuples are one matrix product;
 * positions from n to np16 hold zeros. */
static void edge_keys(Elim *E, int e)
{
	const pa_elim_edge *ed = &E->p->edges[e];
	int j = E->consumer[e], hd = E->hd, dim = ed->nmono * hd;
	int64_t np = E->np16;
	#pragma omp parallel for schedule(static)
	for (int d = 0; d < dim; d++)
		for (int64_t r = 0; r < np; r++)
			E->etab[e][d * np + r] = r < E->n ?
				side(E, ed->mono[d / hd], j, true, NULL, r, d % hd) : 0.0f;
}

/* edge_size: floats edge e needs in etab. */
static int64_t edge_size(const Elim *E, int e)
{
	uint32_t others = E->p->edges[e].vars & ~(1u << E->consumer[e]);
	if (!others)
		return E->n;
	if (others == 2u)
		return E->nq * E->n;
	if (__builtin_popcount(others) == 1)
		return E->n * E->n;
	return E->np16 * E->p->edges[e].nmono * E->hd;
}

/* edge_exp: eexp = exp(table - its row's maximum), then the maxima: the
 * part of a factored step's weights that does not depend on ℓ1. */
static void edge_exp(Elim *E, int e)
{
	int64_t n = E->n;
	float *x = E->eexp[e], *mx = x + n * n;
	memcpy(x, E->etab[e], (size_t)(n * n) * sizeof *x);
	#pragma omp parallel for schedule(static) if (n * n > SMALL_WORK)
	for (int64_t r = 0; r < n; r++)
		softmax(x + r * n, n, &mx[r]);
	#pragma omp parallel for schedule(static) if (n * n > SMALL_WORK)
	for (int64_t b = 0; b < n / ROWS; b++)
		pack(x + b * ROWS * n, n, n, E->epack[e] + b * ROWS * n);
	for (int64_t r = n / ROWS * ROWS; r < n; r++)   /* the last rows */
		for (int64_t c = 0; c < n; c++)
			E->epack[e][(n / ROWS * ROWS) * n + c * ROWS + r % ROWS] = x[r * n + c];
}

/* prepare_edges: fill every edge's table for the current batch entry. */
static void prepare_edges(Elim *E)
{
	for (int e = 0; e < E->p->nedges; e++) {
		uint32_t others = E->p->edges[e].vars & ~(1u << E->consumer[e]);
		if (!others)
			edge_bias(E, e);
		else if (__builtin_popcount(others) == 1)
			edge_table(E, e, __builtin_ctz(others));
		else
			edge_keys(E, e);
	}
	for (int s = 0; s < E->p->nsteps; s++)
		if (E->step[s].rowkey >= 0)
			edge_exp(E, E->step[s].rowkey);
}

/* is_high = edge e has three or more variables. */
static bool is_high(const Elim *E, int e)
{
	return __builtin_popcount(E->p->edges[e].vars) > 2;
}

/* add_edge: w[ℓj] += the score of edge e (one or two variables) at the
 * tuple pos, for every ℓj: a row of its table. */
static void add_edge(const Elim *E, int e, const int64_t *pos, float *w)
{
	uint32_t others = E->p->edges[e].vars & ~(1u << E->consumer[e]);
	int64_t n = E->n;
	const float *row = E->etab[e] + (others ? pos[__builtin_ctz(others)] * n : 0);
	for (int64_t r = 0; r < n; r++)
		w[r] += row[r];
}

/* msg_base: the index of message g's row at pos with x_j at 0. */
static int64_t msg_base(const Elim *E, int g, int j, const int64_t *pos)
{
	const Step *st = &E->step[g];
	int64_t base = 0;
	for (int i = 0; i < st->nvars; i++)
		if (st->vars[i] != j)
			base += pos[st->vars[i]] * st->stride[st->vars[i]];
	return base;
}

/* msg_lse, msg_o: message g's arrays, the thread's for per-query steps. */
static const float *msg_lse(const Elim *E, const Thread *T, int g)
{
	return E->step[g].per_query ? T->lse[g] : E->lse[g];
}

static const float *msg_o(const Elim *E, const Thread *T, int g)
{
	return E->step[g].per_query ? T->o[g] : E->o[g];
}

/* decode: the positions of step s's variables for tuple t. */
static void decode(const Step *st, int64_t n, int64_t t, int64_t *pos)
{
	for (int i = 0; i < st->nvars; i++, t /= n)
		pos[st->vars[i]] = t % n;
}

/* build_payload: pay[ℓj][c] = V_j[ℓj][c] · Π_g o_g[…ℓj…][c], padded with
 * zeros to vdp columns, for the rows at pos (all of them when the step is
 * key_payload) or for one row only. */
static void build_payload(const Elim *E, const Thread *T, int s,
                          const int64_t *pos, float *pay)
{
	const pa_elim_step *ps = &E->p->steps[s];
	int vd = E->vd, vdp = E->vdp, ng = 0, vin = E->value_in[ps->var];
	const float *og[MAXV];
	int64_t base[MAXV], sj[MAXV];
	for (int i = 0; i < ps->nmsgs; i++) {
		int g = ps->msgs[i];
		if (!E->p->steps[g].values)
			continue;
		og[ng] = msg_o(E, T, g);
		base[ng] = msg_base(E, g, ps->var, pos);
		sj[ng++] = E->step[g].stride[ps->var];
	}
	const float *v = vin >= 0 ? E->in[vin] : NULL;
	for (int64_t r = 0; r < E->n; r++) {
		float *x = pay + r * vdp;
		if (v)
			memcpy(x, v + r * vd, (size_t)vd * sizeof *x);
		else
			for (int c = 0; c < vd; c++)
				x[c] = 1.0f;
		for (int c = vd; c < vdp; c++)
			x[c] = 0.0f;
		for (int i = 0; i < ng; i++) {
			const float *o = og[i] + (base[i] + r * sj[i]) * vd;
			for (int c = 0; c < vd; c++)
				x[c] *= o[c];
		}
	}
}

/* gemm_generic: acc[i][c] = Σ_r pk[r·ROWS + i] · pay[r·vdp + c] for
 * i < ROWS, c < vdp: ROWS rows of weights packed side by side (a panel),
 * so the kernels below read them from consecutive addresses; the
 * portable form of those kernels. */
static void gemm_generic(const float *pk, const float *pay, int vdp,
                         int64_t n, float *acc)
{
	memset(acc, 0, (size_t)(ROWS * vdp) * sizeof *acc);
	for (int i = 0; i < ROWS; i++)
		for (int64_t r = 0; r < n; r++) {
			float w = pk[r * ROWS + i];
			for (int c = 0; c < vdp; c++)
				acc[i * vdp + c] += w * pay[r * vdp + c];
		}
}

#if defined(__x86_64__)
/* gemm_avx512: gemm_generic with ROWS × 32 columns in 12 registers (a
 * 16-column tile for the last columns when vdp is an odd multiple of 16). */
__attribute__((target("avx512f"))) static void
gemm_avx512(const float *pk, const float *pay, int vdp, int64_t n, float *acc)
{
	int c = 0;
	for (; c + 32 <= vdp; c += 32) {
		__m512 a[ROWS][2];
		for (int i = 0; i < ROWS; i++)
			a[i][0] = a[i][1] = _mm512_setzero_ps();
		for (int64_t r = 0; r < n; r++) {
			__m512 b0 = _mm512_loadu_ps(pay + r * vdp + c);
			__m512 b1 = _mm512_loadu_ps(pay + r * vdp + c + 16);
			for (int i = 0; i < ROWS; i++) {
				__m512 w = _mm512_set1_ps(pk[r * ROWS + i]);
				a[i][0] = _mm512_fmadd_ps(w, b0, a[i][0]);
				a[i][1] = _mm512_fmadd_ps(w, b1, a[i][1]);
			}
		}
		for (int i = 0; i < ROWS; i++) {
			_mm512_storeu_ps(acc + i * vdp + c, a[i][0]);
			_mm512_storeu_ps(acc + i * vdp + c + 16, a[i][1]);
		}
	}
	for (; c < vdp; c += 16) {
		__m512 a[ROWS];
		for (int i = 0; i < ROWS; i++)
			a[i] = _mm512_setzero_ps();
		for (int64_t r = 0; r < n; r++) {
			__m512 b = _mm512_loadu_ps(pay + r * vdp + c);
			for (int i = 0; i < ROWS; i++)
				a[i] = _mm512_fmadd_ps(_mm512_set1_ps(pk[r * ROWS + i]), b, a[i]);
		}
		for (int i = 0; i < ROWS; i++)
			_mm512_storeu_ps(acc + i * vdp + c, a[i]);
	}
}

/* gemm_avx2: gemm_generic with ROWS × 16 columns in 12 registers. */
__attribute__((target("avx2,fma"))) static void
gemm_avx2(const float *pk, const float *pay, int vdp, int64_t n, float *acc)
{
	for (int c = 0; c < vdp; c += 16) {
		__m256 a[ROWS][2];
		for (int i = 0; i < ROWS; i++)
			a[i][0] = a[i][1] = _mm256_setzero_ps();
		for (int64_t r = 0; r < n; r++) {
			__m256 b0 = _mm256_loadu_ps(pay + r * vdp + c);
			__m256 b1 = _mm256_loadu_ps(pay + r * vdp + c + 8);
			for (int i = 0; i < ROWS; i++) {
				__m256 w = _mm256_broadcast_ss(pk + r * ROWS + i);
				a[i][0] = _mm256_fmadd_ps(w, b0, a[i][0]);
				a[i][1] = _mm256_fmadd_ps(w, b1, a[i][1]);
			}
		}
		for (int i = 0; i < ROWS; i++) {
			_mm256_storeu_ps(acc + i * vdp + c, a[i][0]);
			_mm256_storeu_ps(acc + i * vdp + c + 8, a[i][1]);
		}
	}
}
#endif

/* gemm_packed: the widest of the kernels above this CPU runs (PA_ISA may
 * force a narrower one, as for the tree kernels). */
static void gemm_packed(const float *pk, const float *pay, int vdp, int64_t n,
                        float *acc)
{
#if defined(__x86_64__)
	if (pa_isa() == PA_ISA_AVX512)
		return gemm_avx512(pk, pay, vdp, n, acc);
	if (pa_isa() == PA_ISA_AVX2)
		return gemm_avx2(pk, pay, vdp, n, acc);
#endif
	gemm_generic(pk, pay, vdp, n, acc);
}

/* The keys a factored step's product takes at a time: their payload rows
 * (FKEYS × vdp) stay in L1 while every block of ROWS weight rows passes. */
#define FKEYS 128

/* ftile_generic: sum[i][c] += Σ_k pk[k·ROWS + i] · pay[k·vdp + c] and
 * tot[i] += Σ_k pk[k·ROWS + i] · u[k] for i < ROWS, c < vdp, k < kc: a
 * block of weight rows packed as for gemm_packed, times kc payload rows,
 * and the same weights' totals against u; the portable form of the tiles
 * below (which fetch the weights next floats on ahead). */
static void ftile_generic(const float *pk, const float *pay, const float *u,
                          int vdp, int64_t kc, float *sum, float *tot, int64_t next)
{
	(void)next;
	for (int64_t k = 0; k < kc; k++)
		for (int i = 0; i < ROWS; i++) {
			float w = pk[k * ROWS + i];
			tot[i] += w * u[k];
			for (int c = 0; c < vdp; c++)
				sum[i * vdp + c] += w * pay[k * vdp + c];
		}
}

#if defined(__x86_64__)
/* ftile_cols_avx512: ftile_generic for columns c … c + 16·nv (nv ≤ 4: ROWS
 * × 64 sums in 24 registers), the totals too when with_tot, and then the
 * weights next floats on (the next block's) are fetched ahead. */
__attribute__((target("avx512f"), always_inline)) static inline void
ftile_cols_avx512(const float *pk, const float *pay, const float *u, int vdp,
                  int64_t kc, float *sum, float *tot, int c, int nv, bool with_tot,
                  int64_t next)
{
	__m512 a[ROWS][4], t = _mm512_setzero_ps();
	if (with_tot)
		t = _mm512_maskz_loadu_ps(0x3f, tot);
	for (int i = 0; i < ROWS; i++)
		for (int v = 0; v < nv; v++)
			a[i][v] = _mm512_loadu_ps(sum + i * vdp + c + 16 * v);
	for (int64_t k = 0; k < kc; k++) {
		const float *w = pk + k * ROWS;
		__m512 b[4];
		for (int v = 0; v < nv; v++)
			b[v] = _mm512_loadu_ps(pay + k * vdp + c + 16 * v);
		for (int i = 0; i < ROWS; i++) {
			__m512 x = _mm512_set1_ps(w[i]);
			for (int v = 0; v < nv; v++)
				a[i][v] = _mm512_fmadd_ps(x, b[v], a[i][v]);
		}
		if (with_tot) {
			t = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(0x3f, w), _mm512_set1_ps(u[k]), t);
			_mm_prefetch((const char *)(w + next), _MM_HINT_T0);
		}
	}
	for (int i = 0; i < ROWS; i++)
		for (int v = 0; v < nv; v++)
			_mm512_storeu_ps(sum + i * vdp + c + 16 * v, a[i][v]);
	if (with_tot)
		_mm512_mask_storeu_ps(tot, 0x3f, t);
}

/* ftile_avx512: ftile_generic, 64 columns at a time. */
__attribute__((target("avx512f"))) static void
ftile_avx512(const float *pk, const float *pay, const float *u, int vdp,
             int64_t kc, float *sum, float *tot, int64_t next)
{
	int c = 64, rest;
	if (vdp >= 64)
		ftile_cols_avx512(pk, pay, u, vdp, kc, sum, tot, 0, 4, true, next);
	else
		c = 0;
	for (; c + 64 <= vdp; c += 64)
		ftile_cols_avx512(pk, pay, u, vdp, kc, sum, tot, c, 4, false, next);
	rest = (vdp - c) / 16;
	if (rest == 3)
		ftile_cols_avx512(pk, pay, u, vdp, kc, sum, tot, c, 3, c == 0, next);
	else if (rest == 2)
		ftile_cols_avx512(pk, pay, u, vdp, kc, sum, tot, c, 2, c == 0, next);
	else if (rest == 1)
		ftile_cols_avx512(pk, pay, u, vdp, kc, sum, tot, c, 1, c == 0, next);
}

/* ftile_cols_avx2: ftile_generic for columns c … c + 16 (ROWS × 16 sums in
 * 12 registers), the totals too when with_tot. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
ftile_cols_avx2(const float *pk, const float *pay, const float *u, int vdp,
                int64_t kc, float *sum, float *tot, int c, bool with_tot)
{
	const __m256i six = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
	__m256 a[ROWS][2], t = _mm256_setzero_ps();
	if (with_tot)
		t = _mm256_maskload_ps(tot, six);
	for (int i = 0; i < ROWS; i++) {
		a[i][0] = _mm256_loadu_ps(sum + i * vdp + c);
		a[i][1] = _mm256_loadu_ps(sum + i * vdp + c + 8);
	}
	for (int64_t k = 0; k < kc; k++) {
		const float *w = pk + k * ROWS;
		__m256 b0 = _mm256_loadu_ps(pay + k * vdp + c);
		__m256 b1 = _mm256_loadu_ps(pay + k * vdp + c + 8);
		for (int i = 0; i < ROWS; i++) {
			__m256 x = _mm256_broadcast_ss(w + i);
			a[i][0] = _mm256_fmadd_ps(x, b0, a[i][0]);
			a[i][1] = _mm256_fmadd_ps(x, b1, a[i][1]);
		}
		if (with_tot)
			t = _mm256_fmadd_ps(_mm256_maskload_ps(w, six), _mm256_broadcast_ss(u + k), t);
	}
	for (int i = 0; i < ROWS; i++) {
		_mm256_storeu_ps(sum + i * vdp + c, a[i][0]);
		_mm256_storeu_ps(sum + i * vdp + c + 8, a[i][1]);
	}
	if (with_tot)
		_mm256_maskstore_ps(tot, six, t);
}

/* ftile_avx2: ftile_generic, 16 columns at a time. */
__attribute__((target("avx2,fma"))) static void
ftile_avx2(const float *pk, const float *pay, const float *u, int vdp,
           int64_t kc, float *sum, float *tot, int64_t next)
{
	(void)next;
	ftile_cols_avx2(pk, pay, u, vdp, kc, sum, tot, 0, true);
	for (int c = 16; c < vdp; c += 16)
		ftile_cols_avx2(pk, pay, u, vdp, kc, sum, tot, c, false);
}
#endif

/* factored_gemm: sum[r][c] = Σ_k x[r][k] · pay[k·vdp + c] and tot[r] =
 * Σ_k x[r][k] · u[k] for r < n rounded up to ROWS, x the n × n weights
 * packed by ROWS rows in pk (as edge_exp stores them; rows past n are
 * zero).  Keys FKEYS at a time, so their payload rows are read from L1
 * by every block of rows. */
static void factored_gemm(const float *pk, const float *pay, const float *u,
                          int vdp, int64_t n, float *sum, float *tot)
{
	int64_t nr = (n + ROWS - 1) / ROWS * ROWS;
	void (*tile)(const float *, const float *, const float *, int, int64_t,
	             float *, float *, int64_t) = ftile_generic;
#if defined(__x86_64__)
	if (pa_isa() == PA_ISA_AVX512)
		tile = ftile_avx512;
	else if (pa_isa() == PA_ISA_AVX2)
		tile = ftile_avx2;
#endif
	memset(sum, 0, (size_t)(nr * vdp) * sizeof *sum);
	memset(tot, 0, (size_t)nr * sizeof *tot);
	for (int64_t k0 = 0; k0 < n; k0 += FKEYS) {
		int64_t kc = n - k0 < FKEYS ? n - k0 : FKEYS;
		for (int64_t t0 = 0; t0 < nr; t0 += ROWS)
			tile(pk + t0 * n + k0 * ROWS, pay + k0 * vdp, u + k0, vdp, kc,
			     sum + t0 * vdp, tot + t0, t0 + ROWS < nr ? ROWS * n : 0);
	}
}

/* pack: pk[r·ROWS + i] = p[i·ldp + r] for i < ROWS, r < n. */
static void pack(const float *p, int64_t ldp, int64_t n, float *pk)
{
	for (int i = 0; i < ROWS; i++)
		for (int64_t r = 0; r < n; r++)
			pk[r * ROWS + i] = p[i * ldp + r];
}

/* gemm: acc[i][c] = Σ_r p[i·ldp + r] · pay[r·vdp + c], through a panel. */
static void gemm(const float *p, int64_t ldp, const float *pay, int vdp,
                 int64_t n, float *acc, float *panel)
{
	pack(p, ldp, n, panel);
	gemm_packed(panel, pay, vdp, n, acc);
}

/* gemv: acc[c] = Σ_r p[r] · pay[r·vdp + c], one row (a step whose
 * payload differs from row to row). */
static void gemv(const float *p, const float *pay, int vdp, int64_t n,
                 float *acc)
{
	memset(acc, 0, (size_t)vdp * sizeof *acc);
	for (int64_t r = 0; r < n; r++)
		for (int c = 0; c < vdp; c++)
			acc[c] += p[r] * pay[r * vdp + c];
}

/* softmax_generic: w[r] = exp(w[r] - max w) for r < n; *mx = max w;
 * returns the sum.  The vector forms below compute the same. */
static float softmax_generic(float *w, int64_t n, float *mx)
{
	float m = -INFINITY, den = 0.0f;
	for (int64_t r = 0; r < n; r++)
		m = w[r] > m ? w[r] : m;
	for (int64_t r = 0; r < n; r++) {
		w[r] = pa_expf(w[r] - m);
		den += w[r];
	}
	*mx = m;
	return den;
}

#if defined(__x86_64__)
/* softmax_avx512: softmax_generic 16 lanes at a time. */
__attribute__((target("avx512f"))) static float
softmax_avx512(float *w, int64_t n, float *mx)
{
	int64_t r = 0, n16 = n / 16 * 16;
	__m512 vm = _mm512_set1_ps(-INFINITY), vs = _mm512_setzero_ps();
	for (; r < n16; r += 16)
		vm = _mm512_max_ps(vm, _mm512_loadu_ps(w + r));
	float m = pa_hmax16(vm), den = 0.0f;
	for (; r < n; r++)
		m = w[r] > m ? w[r] : m;
	vm = _mm512_set1_ps(m);
	for (r = 0; r < n16; r += 16) {
		__m512 p = pa_exp16(_mm512_sub_ps(_mm512_loadu_ps(w + r), vm));
		_mm512_storeu_ps(w + r, p);
		vs = _mm512_add_ps(vs, p);
	}
	for (; r < n; r++) {
		w[r] = pa_expf(w[r] - m);
		den += w[r];
	}
	*mx = m;
	return den + pa_hsum16(vs);
}

/* softmax_avx2: softmax_generic 8 lanes at a time. */
__attribute__((target("avx2,fma"))) static float
softmax_avx2(float *w, int64_t n, float *mx)
{
	int64_t r = 0, n8 = n / 8 * 8;
	__m256 vm = _mm256_set1_ps(-INFINITY), vs = _mm256_setzero_ps();
	for (; r < n8; r += 8)
		vm = _mm256_max_ps(vm, _mm256_loadu_ps(w + r));
	float m = pa_hmax8(vm), den = 0.0f;
	for (; r < n; r++)
		m = w[r] > m ? w[r] : m;
	vm = _mm256_set1_ps(m);
	for (r = 0; r < n8; r += 8) {
		__m256 p = pa_exp8(_mm256_sub_ps(_mm256_loadu_ps(w + r), vm));
		_mm256_storeu_ps(w + r, p);
		vs = _mm256_add_ps(vs, p);
	}
	for (; r < n; r++) {
		w[r] = pa_expf(w[r] - m);
		den += w[r];
	}
	*mx = m;
	return den + pa_hsum8(vs);
}
#endif

/* softmax: the widest form this CPU runs. */
static float softmax(float *w, int64_t n, float *mx)
{
#if defined(__x86_64__)
	if (pa_isa() == PA_ISA_AVX512)
		return softmax_avx512(w, n, mx);
	if (pa_isa() == PA_ISA_AVX2)
		return softmax_avx2(w, n, mx);
#endif
	return softmax_generic(w, n, mx);
}

/* add_terms: w[ℓj] += every score term of step s at the tuple pos but
 * its high edges (added a block at a time) and the edge skip: its one- and
 * two-variable edges and the log-normalizers of the messages it reads. */
static void add_terms(const Elim *E, const Thread *T, int s,
                      const int64_t *pos, int skip, float *w)
{
	const pa_elim_step *ps = &E->p->steps[s];
	for (int a = 0; a < ps->nedges; a++)
		if (ps->edges[a] != skip && !is_high(E, ps->edges[a]))
			add_edge(E, ps->edges[a], pos, w);
	for (int i = 0; i < ps->nmsgs; i++) {
		int g = ps->msgs[i];
		const float *l = msg_lse(E, T, g) + msg_base(E, g, ps->var, pos);
		int64_t sj = E->step[g].stride[ps->var];
		for (int64_t r = 0; r < E->n; r++)
			w[r] += l[r * sj];
	}
}

/* weigh: w[ℓj] = exp(score - max) for step s at the tuple pos, where the
 * score adds the edges and the consumed messages' log-normalizers; the
 * log-normalizer goes to *lse, the sum of the weights is returned. */
static float weigh(const Elim *E, Thread *T, int s, const int64_t *pos,
                   float *w, float *lse)
{
	add_terms(E, T, s, pos, -1, w);
	float mx, den = softmax(w, E->n, &mx);
	*lse = mx + logf(den);
	return den;
}

/* high_scores: w[i][ℓj] = the scores of the edges of three or more
 * variables for the block's tuples (row i at t0 + i), one matrix product
 * of their query sides with the edge's stored key side per edge; w rows
 * beyond rows are zero. */
static void high_scores(const Elim *E, Thread *T, int s, int64_t t0, int rows,
                        int64_t *pos)
{
	const pa_elim_step *ps = &E->p->steps[s];
	int64_t n = E->n, np = E->np16;
	memset(T->w, 0, (size_t)(ROWS * n) * sizeof(float));
	for (int a = 0; a < ps->nedges; a++) {
		int e = ps->edges[a];
		if (!is_high(E, e))
			continue;
		const pa_elim_edge *ed = &E->p->edges[e];
		int hd = E->hd, dim = ed->nmono * hd;
		memset(T->q, 0, (size_t)(ROWS * dim) * sizeof(float));
		for (int i = 0; i < rows; i++) {
			decode(&E->step[s], n, t0 + i, pos);
			for (int d = 0; d < dim; d++) {
				int m = ed->mono[d / hd];
				T->q[i * dim + d] = E->mono[m].weight *
				                    side(E, m, ps->var, false, pos, 0, d % hd);
			}
		}
		gemm(T->q, dim, E->etab[e], (int)np, dim, T->scores, T->panel);
		for (int i = 0; i < rows; i++)
			for (int64_t r = 0; r < n; r++)
				T->w[i * n + r] += T->scores[i * np + r];
	}
}

/* run_block: tuples t0 … t0+rows-1 (rows ≤ ROWS) of step s: their
 * log-normalizers and value vectors into lse and o, the high edges'
 * scores masked (pa_elim_mask_high).  pos holds the fixed positions (x1
 * for a per-query step). */
static void run_block(const Elim *E, Thread *T, int s, int64_t t0, int rows,
                      int64_t *pos, float *lse, float *o)
{
	const pa_elim_step *ps = &E->p->steps[s];
	int64_t n = E->n;
	int vd = E->vd, vdp = E->vdp;
	float den[ROWS];
	high_scores(E, T, s, t0, rows, pos);
	for (int i = 0; i < rows; i++) {
		decode(&E->step[s], n, t0 + i, pos);
		for (int a = 0; E->k->num_masks && a < ps->nedges; a++)
			if (is_high(E, ps->edges[a]))
				pa_elim_mask_high(E->k, E->p, ps->edges[a], ps->var, pos, n,
				                  E->off, T->w + i * n);
		den[i] = weigh(E, T, s, pos, T->w + i * n, &lse[t0 + i]);
		if (ps->values && !E->step[s].key_payload) {
			build_payload(E, T, s, pos, T->pay);
			gemv(T->w + i * n, T->pay, vdp, n, T->acc + i * vdp);
		}
	}
	if (!ps->values)
		return;
	if (E->step[s].key_payload)
		gemm(T->w, n, T->pay, vdp, n, T->acc, T->panel);
	for (int i = 0; i < rows; i++)
		for (int c = 0; c < vd; c++)
			o[(t0 + i) * vd + c] = T->acc[i * vdp + c] / den[i];
}

/* dot = Σ_r x[r] · y[r], in 16 running sums that the compiler keeps in
 * one vector register. */
static float dot(const float *x, const float *y, int64_t n)
{
	float part[16] = {0}, sum = 0.0f;
	int64_t r = 0;
	for (; r + 16 <= n; r += 16)
		for (int k = 0; k < 16; k++)
			part[k] += x[r + k] * y[r + k];
	for (; r < n; r++)
		sum += x[r] * y[r];
	for (int k = 0; k < 16; k++)
		sum += part[k];
	return sum;
}

/* exact_row: one tuple of a factored step weighed directly (its payload
 * unscaled in pay2), into *lse and o[0 .. value_dim). */
static void exact_row(const Elim *E, Thread *T, int s, const int64_t *pos,
                      float *lse, float *o)
{
	float *acc = T->acc + ROWS * E->vdp;
	memset(T->w, 0, (size_t)E->n * sizeof(float));
	float den = weigh(E, T, s, pos, T->w, lse);
	if (!E->p->steps[s].values)
		return;
	gemv(T->w, T->pay2, E->vdp, E->n, acc);
	for (int c = 0; c < E->vd; c++)
		o[c] = acc[c] / den;
}

/* scaled_payload: pay[ℓj][c] = the payload of factored step s at pos
 * times u[ℓj]; straight from V_j when no message brings values. */
static void scaled_payload(const Elim *E, Thread *T, int s, const int64_t *pos,
                           const float *u)
{
	const pa_elim_step *ps = &E->p->steps[s];
	int vd = E->vd, vdp = E->vdp, vin = E->value_in[ps->var];
	bool msgs = false;
	for (int i = 0; i < ps->nmsgs; i++)
		msgs = msgs || E->p->steps[ps->msgs[i]].values;
	if (msgs) {
		build_payload(E, T, s, pos, T->pay);
		for (int64_t r = 0; r < E->n; r++)
			for (int c = 0; c < vdp; c++)
				T->pay[r * vdp + c] *= u[r];
		return;
	}
	const float *v = vin >= 0 ? E->in[vin] : NULL;
	for (int64_t r = 0; r < E->n; r++) {
		float *x = T->pay + r * vdp;
		if (v)
			for (int c = 0; c < vd; c++)
				x[c] = v[r * vd + c] * u[r];
		else
			for (int c = 0; c < vd; c++)
				x[c] = u[r];
		for (int c = vd; c < vdp; c++)
			x[c] = 0.0f;
	}
}

/* run_factored: a factored step (see factored_edge) for the query
 * position in pos.  Its weights are exp(T(ℓa, ℓj) + u(ℓj)), T the row-key
 * edge and u the terms of ℓj alone; with T's rows stored as
 * exp(T - max_row) once per batch entry, they are eexp(ℓa, ℓj) · exp(u(ℓj)
 * - max u), so the message for every ℓa is one matrix product of eexp
 * with the payload scaled by exp(u - max u) (factored_gemm, which sums
 * the weights too), and no exp per (ℓa, ℓj).  A row whose sum is too
 * small to trust (scores so far apart that the two maxima hide it) is
 * weighed exactly instead. */
static void run_factored(const Elim *E, Thread *T, int s, int64_t *pos,
                         float *lse, float *o)
{
	const pa_elim_step *ps = &E->p->steps[s];
	int64_t n = E->n, nr = (n + ROWS - 1) / ROWS * ROWS;
	int vd = E->vd, vdp = E->vdp, a = E->step[s].vars[0], re = E->step[s].rowkey;
	const float *ex = E->eexp[re], *rmax = ex + n * n;
	float *u = T->scores, mu, *sum = T->fac, *tot = T->fac + nr * vdp;
	memset(u, 0, (size_t)n * sizeof *u);
	add_terms(E, T, s, pos, re, u);
	softmax(u, n, &mu);
	if (ps->values) {
		scaled_payload(E, T, s, pos, u);
		factored_gemm(E->epack[re], T->pay, u, vdp, n, sum, tot);
	}
	bool unscaled = false;      /* pay2 holds the payload exact_row reads */
	for (int64_t r = 0; r < n; r++) {
		float den = ps->values ? tot[r] : dot(ex + r * n, u, n);
		if (!(den >= 0x1p-60f)) {
			if (ps->values && !unscaled)
				build_payload(E, T, s, pos, T->pay2), unscaled = true;
			pos[a] = r;
			exact_row(E, T, s, pos, &lse[r], o + r * vd);
			continue;
		}
		lse[r] = rmax[r] + mu + logf(den);
		float inv = 1.0f / den;
		for (int c = 0; ps->values && c < vd; c++)
			o[r * vd + c] = sum[r * vdp + c] * inv;
	}
}

/* run_step: every tuple from t0 by ROWS below end, after building the
 * shared payload of a key_payload step. */
static void run_step(const Elim *E, Thread *T, int s, int64_t *pos,
                     int64_t t0, int64_t end, float *lse, float *o)
{
	for (int64_t t = t0; t < end; t += ROWS)
		run_block(E, T, s, t, end - t < ROWS ? (int)(end - t) : ROWS, pos,
		          lse, o);
}

/* thread_alloc: scratch rows and per-query messages; false if out of
 * memory. */
static bool thread_alloc(const Elim *E, Thread *T)
{
	int64_t pn = E->n > E->qdim ? E->n : E->qdim;
	int64_t nr = (E->n + ROWS - 1) / ROWS * ROWS;
	size_t total = (size_t)(ROWS * E->n + (ROWS + 1) * E->vdp + 2 * E->n * E->vdp + ROWS * pn +
	                        ROWS * E->qdim + ROWS * E->np16 + nr * (E->vdp + 1));
	for (int s = 0; s < E->p->nsteps; s++)
		if (E->step[s].per_query)
			total += (size_t)E->step[s].rows * (1 + E->vd);
	T->block = malloc(total * sizeof(float));
	if (!T->block)
		return false;
	float *at = T->block;
	T->w = at, at += ROWS * E->n;
	T->acc = at, at += (ROWS + 1) * E->vdp;
	T->pay = at, at += E->n * E->vdp;
	T->pay2 = at, at += E->n * E->vdp;
	T->panel = at, at += ROWS * pn;
	T->q = at, at += ROWS * E->qdim;
	T->scores = at, at += ROWS * E->np16;
	T->fac = at, at += nr * (E->vdp + 1);
	for (int s = 0; s < E->p->nsteps; s++)
		if (E->step[s].per_query) {
			T->lse[s] = at, at += E->step[s].rows;
			T->o[s] = at, at += E->step[s].rows * E->vd;
		}
	return true;
}

/* run_global: the steps whose message does not hold x1, once each, their
 * blocks of tuples spread over the threads.  false if out of memory. */
static bool run_global(Elim *E)
{
	bool ok = true, any = false;
	for (int s = 0; s < E->p->nsteps; s++)
		any = any || !E->step[s].per_query;
	if (!any)
		return true;
	#pragma omp parallel reduction(&& : ok)
	{
		Thread T;
		ok = thread_alloc(E, &T);
		for (int s = 0; s < E->p->nsteps; s++) {
			if (E->step[s].per_query)
				continue;
			int64_t pos[MAXV + 1] = {0};
			if (ok && E->p->steps[s].values && E->step[s].key_payload)
				build_payload(E, &T, s, pos, T.pay);
			int64_t blocks = (E->step[s].rows + ROWS - 1) / ROWS;
			#pragma omp for schedule(dynamic, 4)
			for (int64_t b = 0; b < blocks; b++) {
				int64_t end = (b + 1) * ROWS;
				if (ok)
					run_step(E, &T, s, pos, b * ROWS,
					         end < E->step[s].rows ? end : E->step[s].rows,
					         E->lse[s], E->o[s]);
			}
		}
		free(T.block);
	}
	return ok;
}

/* output_row: out = V1[ℓ1] ⊙ the value vectors of the final messages;
 * 0 when a mask leaves ℓ1 no tuple (a final message near -PA_MASKED). */
static void output_row(const Elim *E, const Thread *T, int64_t l1, float *out)
{
	int vd = E->vd;
	for (int s = 0; E->k->num_masks && s < E->p->nsteps; s++)
		if ((E->p->steps[s].scope & ~2u) == 0 && msg_lse(E, T, s)[0] < -PA_MASKED / 2) {
			memset(out, 0, (size_t)vd * sizeof *out);
			return;
		}
	const float *v1 = E->value_in[1] >= 0 ? E->in[E->value_in[1]] + l1 * vd : NULL;
	for (int c = 0; c < vd; c++)
		out[c] = v1 ? v1[c] : 1.0f;
	for (int s = 0; s < E->p->nsteps; s++)
		if ((E->p->steps[s].scope & ~2u) == 0 && E->p->steps[s].values) {
			const float *o = msg_o(E, T, s);
			for (int c = 0; c < vd; c++)
				out[c] *= o[c];
		}
}

/* run_queries: for every ℓ1 the steps whose message holds x1, then the
 * output row.  false if out of memory. */
static bool run_queries(Elim *E, float *out)
{
	bool ok = true;
	#pragma omp parallel reduction(&& : ok)
	{
		Thread T;
		ok = thread_alloc(E, &T);
		#pragma omp for schedule(dynamic, 1)
		for (int64_t l1 = 0; l1 < E->nq; l1++) {
			if (!ok)
				continue;
			int64_t pos[MAXV + 1] = {0};
			pos[1] = l1;
			for (int s = 0; s < E->p->nsteps; s++) {
				if (!E->step[s].per_query)
					continue;
				if (E->step[s].rowkey >= 0) {
					run_factored(E, &T, s, pos, T.lse[s], T.o[s]);
					continue;
				}
				if (E->p->steps[s].values && E->step[s].key_payload)
					build_payload(E, &T, s, pos, T.pay);
				run_step(E, &T, s, pos, 0, E->step[s].rows, T.lse[s], T.o[s]);
			}
			output_row(E, &T, l1, out + l1 * E->vd);
		}
		free(T.block);
	}
	return ok;
}

/* alloc_tables: edge tables and the messages of steps that run once. */
static bool alloc_tables(Elim *E)
{
	if (!(E->sides = pa_alloc((size_t)(2 * E->n * E->hd))))
		return false;
	for (int e = 0; e < E->p->nedges; e++)
		if (!(E->etab[e] = pa_alloc((size_t)edge_size(E, e))))
			return false;
	for (int s = 0; s < E->p->nsteps; s++) {
		int e = E->step[s].rowkey;
		int64_t nr = (E->n + ROWS - 1) / ROWS * ROWS;
		if (e >= 0 && (!(E->eexp[e] = pa_alloc((size_t)(E->n * E->n + E->n))) ||
		               !(E->epack[e] = pa_alloc((size_t)(nr * E->n)))))
			return false;
		if (e >= 0)
			memset(E->epack[e], 0, (size_t)(nr * E->n) * sizeof(float));
	}
	for (int s = 0; s < E->p->nsteps; s++)
		if (!E->step[s].per_query) {
			size_t rows = (size_t)E->step[s].rows;
			if (!(E->lse[s] = malloc(rows * sizeof(float))) ||
			    !(E->o[s] = malloc(rows * E->vd * sizeof(float))))
				return false;
		}
	return true;
}

/* free_tables: what alloc_tables took (NULL entries are fine). */
static void free_tables(Elim *E)
{
	for (int e = 0; e < E->p->nedges; e++)
		pa_free(E->etab[e]), pa_free(E->eexp[e]), pa_free(E->epack[e]);
	for (int s = 0; s < E->p->nsteps; s++)
		free(E->lse[s]), free(E->o[s]);
	free(E->mono);
	pa_free(E->sides);
}

/* pa_elim_run: see pa_elim.h. */
pa_status pa_elim_run(const pa_kernel_info *k, const pa_elim_plan *p,
                      int64_t batch, int64_t n, const float *const inputs[],
                      float *out)
{
	return pa_elim_run_qk(k, p, batch, n, n, inputs, out);
}

/* pa_elim_run_qk: see pa_elim.h. */
pa_status pa_elim_run_qk(const pa_kernel_info *k, const pa_elim_plan *p,
                         int64_t batch, int64_t nq, int64_t n,
                         const float *const inputs[], float *out)
{
	pa_status st = pa_check_args_qk(k, batch, nq, n, inputs, out);
	if (st != PA_OK)
		return st;
	if (pa_tensor3_takes(k, p))
		return pa_tensor3_run(k, batch, nq, n, inputs, out);
	Elim *E = calloc(1, sizeof *E);
	if (!E)
		return PA_ERR_NOMEM;
	*E = (Elim){.k = k, .p = p, .n = n, .nq = nq, .off = n - nq, .hd = k->head_dim, .vd = k->value_dim,
	            .vdp = (k->value_dim + 15) / 16 * 16, .np16 = (n + 15) / 16 * 16};
	E->mono = calloc(k->num_monomials, sizeof *E->mono);
	if (!setup_steps(E))
		st = PA_ERR_ARGUMENT;
	else if (!E->mono || (setup_inputs(E), !alloc_tables(E)))
		st = PA_ERR_NOMEM;
	for (int64_t b = 0; b < batch && st == PA_OK; b++) {
		for (int i = 0; i < k->num_inputs; i++)
			E->in[i] = inputs[i] + b * (k->inputs[i].variable == 1 ? nq : n) *
			                       k->inputs[i].cols;
		prepare_edges(E);
		if (!run_global(E) || !run_queries(E, out + b * nq * k->value_dim))
			st = PA_ERR_NOMEM;
	}
	free_tables(E);
	free(E);
	return st;
}
