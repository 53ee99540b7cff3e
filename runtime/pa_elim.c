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
 */
#include "pa_elim.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "pa_kernel.h"
#include "pa_math.h"

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
} Step;

/* What one thread writes: per-query messages and scratch rows. */
typedef struct Thread {
	float *lse[MAXV], *o[MAXV]; /* messages of per-query steps */
	float *w, *acc, *q;      /* n weights, value_dim sums, one query side */
	float *block;            /* the allocation holding all of the above */
} Thread;

/* One kernel call. */
typedef struct Elim {
	const pa_kernel_info *k;
	const pa_elim_plan *p;
	int64_t n;
	int hd, vd, qdim;        /* qdim: widest query side of a high edge */
	Mono *mono;
	int value_in[MAXV + 1];  /* input index of V[j], -1 if none */
	int consumer[64];        /* per edge: the variable whose step reads it */
	Step step[MAXV];
	const float *in[1056];   /* this batch entry's inputs (64 monomials of
	                            16 occurrences, 16 value matrices at most) */
	float *sides;            /* 2 · n · head_dim: both sides of a monomial */
	float *etab[64];         /* per edge: bias vector, table or key side */
	float *lse[MAXV], *o[MAXV]; /* messages of steps that run once */
} Elim;

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

/* edge_table: etab[ℓa·n + ℓj] = the edge's score for x_a at ℓa and the
 * eliminated x_j at ℓj; computed from both sides of every monomial. */
static void edge_table(Elim *E, int e, int a)
{
	const pa_elim_edge *ed = &E->p->edges[e];
	int j = E->consumer[e], hd = E->hd;
	int64_t n = E->n;
	float *t = E->etab[e], *as = E->sides, *bs = E->sides + n * hd;
	memset(t, 0, (size_t)(n * n) * sizeof *t);
	for (int i = 0; i < ed->nmono; i++) {
		int m = ed->mono[i];
		for (int64_t r = 0; r < n; r++)
			for (int l = 0; l < hd; l++) {
				as[r * hd + l] = E->mono[m].weight * side(E, m, a, true, NULL, r, l);
				bs[r * hd + l] = side(E, m, j, true, NULL, r, l);
			}
		#pragma omp parallel for schedule(static)
		for (int64_t ra = 0; ra < n; ra++)
			for (int64_t rj = 0; rj < n; rj++) {
				float dot = 0.0f;
				for (int l = 0; l < hd; l++)
					dot += as[ra * hd + l] * bs[rj * hd + l];
				t[ra * n + rj] += dot;
			}
	}
}

/* edge_keys: etab[ℓj·dim + i·hd + l] = x_j's side of the edge's i-th
 * monomial (an edge of three or more variables). */
static void edge_keys(Elim *E, int e)
{
	const pa_elim_edge *ed = &E->p->edges[e];
	int j = E->consumer[e], hd = E->hd, dim = ed->nmono * hd;
	#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < E->n; r++)
		for (int i = 0; i < ed->nmono; i++)
			for (int l = 0; l < hd; l++)
				E->etab[e][r * dim + i * hd + l] = side(E, ed->mono[i], j, true, NULL, r, l);
}

/* edge_size: floats edge e needs in etab. */
static int64_t edge_size(const Elim *E, int e)
{
	uint32_t others = E->p->edges[e].vars & ~(1u << E->consumer[e]);
	if (!others)
		return E->n;
	if (__builtin_popcount(others) == 1)
		return E->n * E->n;
	return E->n * E->p->edges[e].nmono * E->hd;
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
}

/* add_edge: w[ℓj] += edge e's score at the tuple pos, for every ℓj. */
static void add_edge(const Elim *E, Thread *T, int e, const int64_t *pos)
{
	const pa_elim_edge *ed = &E->p->edges[e];
	int j = E->consumer[e], hd = E->hd, dim = ed->nmono * hd;
	uint32_t others = ed->vars & ~(1u << j);
	int64_t n = E->n;
	float *w = T->w;
	if (__builtin_popcount(others) <= 1) {
		const float *row = E->etab[e] + (others ? pos[__builtin_ctz(others)] * n : 0);
		for (int64_t r = 0; r < n; r++)
			w[r] += row[r];
		return;
	}
	for (int i = 0; i < ed->nmono; i++) {
		int m = ed->mono[i];
		for (int l = 0; l < hd; l++)
			T->q[i * hd + l] = E->mono[m].weight * side(E, m, j, false, pos, 0, l);
	}
	for (int64_t r = 0; r < n; r++) {
		const float *kr = E->etab[e] + r * dim;
		float dot = 0.0f;
		for (int d = 0; d < dim; d++)
			dot += T->q[d] * kr[d];
		w[r] += dot;
	}
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

/* payload: acc[c] = Σ_ℓj p[ℓj] · V_j[ℓj][c] · Π_g o_g[…ℓj…][c]. */
static void payload(const Elim *E, Thread *T, const pa_elim_step *ps,
                    const int64_t *pos)
{
	int vd = E->vd, ng = 0, vin = E->value_in[ps->var];
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
	for (int c = 0; c < vd; c++)
		T->acc[c] = 0.0f;
	for (int64_t r = 0; r < E->n; r++) {
		float p = T->w[r];
		if (p == 0.0f)
			continue;
		float x[vd];
		for (int c = 0; c < vd; c++)
			x[c] = v ? p * v[r * vd + c] : p;
		for (int i = 0; i < ng; i++) {
			const float *o = og[i] + (base[i] + r * sj[i]) * vd;
			for (int c = 0; c < vd; c++)
				x[c] *= o[c];
		}
		for (int c = 0; c < vd; c++)
			T->acc[c] += x[c];
	}
}

/* run_tuple: step s at the tuple pos: its message row idx. */
static void run_tuple(const Elim *E, Thread *T, int s, const int64_t *pos,
                      int64_t idx, float *lse, float *o)
{
	const pa_elim_step *ps = &E->p->steps[s];
	int64_t n = E->n;
	float *w = T->w;
	memset(w, 0, (size_t)n * sizeof *w);
	for (int a = 0; a < ps->nedges; a++)
		add_edge(E, T, ps->edges[a], pos);
	for (int i = 0; i < ps->nmsgs; i++) {
		int g = ps->msgs[i];
		const float *l = msg_lse(E, T, g) + msg_base(E, g, ps->var, pos);
		int64_t sj = E->step[g].stride[ps->var];
		for (int64_t r = 0; r < n; r++)
			w[r] += l[r * sj];
	}
	float mx = -INFINITY, den = 0.0f;
	for (int64_t r = 0; r < n; r++)
		mx = w[r] > mx ? w[r] : mx;
	for (int64_t r = 0; r < n; r++) {
		w[r] = pa_expf(w[r] - mx);
		den += w[r];
	}
	lse[idx] = mx + logf(den);
	if (!ps->values)
		return;
	payload(E, T, ps, pos);
	for (int c = 0; c < E->vd; c++)
		o[idx * E->vd + c] = T->acc[c] / den;
}

/* decode: the positions of step s's variables for tuple t. */
static void decode(const Step *st, int64_t n, int64_t t, int64_t *pos)
{
	for (int i = 0; i < st->nvars; i++, t /= n)
		pos[st->vars[i]] = t % n;
}

/* thread_alloc: scratch rows and per-query messages; false if out of
 * memory. */
static bool thread_alloc(const Elim *E, Thread *T)
{
	size_t total = (size_t)(E->n + E->vd + E->qdim);
	for (int s = 0; s < E->p->nsteps; s++)
		if (E->step[s].per_query)
			total += (size_t)E->step[s].rows * (1 + E->vd);
	T->block = malloc(total * sizeof(float));
	if (!T->block)
		return false;
	float *at = T->block;
	T->w = at, at += E->n;
	T->acc = at, at += E->vd;
	T->q = at, at += E->qdim;
	for (int s = 0; s < E->p->nsteps; s++)
		if (E->step[s].per_query) {
			T->lse[s] = at, at += E->step[s].rows;
			T->o[s] = at, at += E->step[s].rows * E->vd;
		}
	return true;
}

/* run_global: the steps whose message does not hold x1, once each, their
 * tuples spread over the threads.  false if out of memory. */
static bool run_global(Elim *E)
{
	bool ok = true;
	#pragma omp parallel reduction(&& : ok)
	{
		Thread T;
		ok = thread_alloc(E, &T);
		for (int s = 0; s < E->p->nsteps; s++) {
			if (E->step[s].per_query)
				continue;
			#pragma omp for schedule(dynamic, 16)
			for (int64_t t = 0; t < E->step[s].rows; t++) {
				int64_t pos[MAXV + 1] = {0};
				decode(&E->step[s], E->n, t, pos);
				if (ok)
					run_tuple(E, &T, s, pos, t, E->lse[s], E->o[s]);
			}
		}
		free(T.block);
	}
	return ok;
}

/* output_row: out = V1[ℓ1] ⊙ the value vectors of the final messages. */
static void output_row(const Elim *E, const Thread *T, int64_t l1, float *out)
{
	int vd = E->vd;
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
		for (int64_t l1 = 0; l1 < E->n; l1++) {
			if (!ok)
				continue;
			int64_t pos[MAXV + 1] = {0};
			pos[1] = l1;
			for (int s = 0; s < E->p->nsteps; s++) {
				if (!E->step[s].per_query)
					continue;
				for (int64_t t = 0; t < E->step[s].rows; t++) {
					decode(&E->step[s], E->n, t, pos);
					run_tuple(E, &T, s, pos, t, T.lse[s], T.o[s]);
				}
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
	if (!(E->sides = malloc((size_t)(2 * E->n * E->hd) * sizeof(float))))
		return false;
	for (int e = 0; e < E->p->nedges; e++)
		if (!(E->etab[e] = malloc((size_t)edge_size(E, e) * sizeof(float))))
			return false;
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
		free(E->etab[e]);
	for (int s = 0; s < E->p->nsteps; s++)
		free(E->lse[s]), free(E->o[s]);
	free(E->mono);
	free(E->sides);
}

/* pa_elim_run: see pa_elim.h. */
pa_status pa_elim_run(const pa_kernel_info *k, const pa_elim_plan *p,
                      int64_t batch, int64_t n, const float *const inputs[],
                      float *out)
{
	pa_status st = pa_check_args(k, batch, n, inputs, out);
	if (st != PA_OK)
		return st;
	Elim *E = calloc(1, sizeof *E);
	if (!E)
		return PA_ERR_NOMEM;
	*E = (Elim){.k = k, .p = p, .n = n, .hd = k->head_dim, .vd = k->value_dim};
	E->mono = calloc(k->num_monomials, sizeof *E->mono);
	if (!setup_steps(E))
		st = PA_ERR_ARGUMENT;
	else if (!E->mono || (setup_inputs(E), !alloc_tables(E)))
		st = PA_ERR_NOMEM;
	for (int64_t b = 0; b < batch && st == PA_OK; b++) {
		for (int i = 0; i < k->num_inputs; i++)
			E->in[i] = inputs[i] + b * n * k->inputs[i].cols;
		prepare_edges(E);
		if (!run_global(E) || !run_queries(E, out + b * n * k->value_dim))
			st = PA_ERR_NOMEM;
	}
	free_tables(E);
	free(E);
	return st;
}
