/*
 * pa_approx_tree.c - the approximate engine on a masked tree (pa_approx.h,
 * pa_approx_tree; doc/design.md, "Masks"), forward and backward.
 *
 * Every edge keeps its Taylor feature map, exp(u_e(ℓp, ℓj)) ≈ Σ_f
 * Φp[ℓp, f] Φj[ℓj, f] (weights folded into weight_var's side), and the
 * kernel is contracted as the exact tree plan's messages, children
 * before parents.  With B_v = W_v ⊙ Π_{children c} M_c (W_v the weight
 * leaf: exp(b_v − max b_v) times x_v's values, alone in the last
 * channel), the message of x_j to its parent x_p is
 *
 *     M[ℓp, c] = Σ_{ℓj : lo ≤ ℓj − ℓp ≤ hi} (Φp[ℓp] · Φj[ℓj]) B_j[ℓj, c].
 *
 * A causal range (hi ∈ {0, −1}, no lower limit) is a prefix sum, run by
 * chunks of ch rows as chunked causal linear attention runs: the state
 * S = Σ_{ℓj before the chunk} Φj[ℓj]ᵀ B_j[ℓj] (F × channels) gives
 * M[chunk] = Φp[chunk] S plus the chunk's own part, the ch × ch scores
 * Φp Φjᵀ masked and times B_j[chunk]; then the chunk is added into S.
 * A reverse range (lo ∈ {0, 1}, no upper limit) is the same over the
 * chunks from the last; no range is Φp S with S the total.  The walk over
 * chunks is split into one contiguous run of chunks per thread: each
 * run's total first, then every run from the sum of the runs before it
 * (so a result depends on the thread count, never on timing).  out[ℓ1]
 * = R[ℓ1, c] / R[ℓ1, vd], R = B_1 times, per channel, Σ_ℓr B_r of every
 * other component's root; 0 where R[ℓ1, vd] = 0 (the mask leaves ℓ1 no
 * tuple).  Cost per message O(n · F · (vd + 1) + n · ch · (F + vd + 1));
 * ch is 64 (PA_APPROX_FR, the rows the feature maps make side by side),
 * halved for edges of so many features that a thread's chunk buffers
 * would pass CH_BUDGET.
 *
 * The backward is reverse mode of the same recursion: dR from out; dB_1
 * and the other roots' dB from R; then, parents before children, each
 * message's dM = dB_p ⊙ W_p ⊙ Π of p's other incoming messages, and
 *
 *     dΦp = dM Sᵀ + (mask ⊙ dM B_jᵀ) Φj          (walked as S is)
 *     dB_j = Φj T + (maskᵀ ⊙ Φj Φpᵀ) dM,
 *     dΦj = B_j Tᵀ + (maskᵀ ⊙ B_j dMᵀ) Φp        (walked the other way)
 *
 * with T = Σ Φpᵀ dM over the chunks on the other side (a suffix sum for a
 * causal range).  The features' gradients go back to the factor inputs
 * (pa_approx_feature_push), dW_v = dB_v ⊙ Π M_c to the values and the
 * bias monomials (pa_approx_weights_push): the exact gradient of what
 * the forward computed.
 */
#include "pa_approx.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "pa_kernel.h"

#define CH PA_APPROX_FR           /* rows of a chunk, at most */
#define CH_BUDGET ((int64_t)1 << 22) /* floats of a thread's feature chunks */
#define MAX_VARS 31
#define U PA_UNBOUNDED

/* One call. */
typedef struct Tree {
	const pa_kernel_info *k;
	const pa_approx_plan *p;
	const pa_approx_tree *tr;
	int64_t n;
	int t, nc, nt;               /* variables, channels (vd + 1), threads */
	int fmax;                    /* the most features of an edge */
	int64_t ch;                  /* rows of a chunk */
	pa_approx_io io;             /* this batch entry */
	float *ew[MAX_VARS + 1];     /* exp(b_v − max b_v), n floats */
	float *W[MAX_VARS + 1];      /* W_v, n × nc (backward only) */
	float *B[MAX_VARS + 1];      /* W_v ⊙ the messages into v, n × nc */
	float *dB[MAX_VARS + 1];     /* backward: dL/dB_v */
	float *M;                    /* backward: every message, nmsg × n × nc */
	float *dM;                   /* backward: one message's gradient */
	float *mem, *work;
	int64_t per_thread;          /* floats of one run's buffers */
	int64_t fscratch;            /* floats of the feature scratch */
} Tree;

/* How one walk over the chunks of a message runs (see the file comment):
 * the state before a chunk is the sum of update over the chunks before
 * it in direction dir (all of them when full), and body reads it. */
typedef struct Walk {
	const Tree *T;
	const pa_approx_msg *m;
	int dir;                     /* +1: chunks ascending; −1: descending */
	bool full;                   /* no range: the state is the total */
	void (*chunk)(const struct Walk *w, int64_t r0, int64_t r1, float *state,
	              bool body, bool update, float *buf);
	float *keep;                 /* forward: where the messages go, or NULL */
} Walk;

static int64_t pad16(int64_t x)
{
	return (x + 15) & ~(int64_t)15;
}

/* gemm: O (+= when acc) = A · B of [M][K], [K][N], [M][N], one thread. */
static void gemm(int64_t M, int64_t N, int64_t K, const float *A, const float *B,
                 float *O, bool acc)
{
	pa_approx_gemm(1, M, N, K, A, B, O, acc, 1, 0);
}

/* transpose: dst[c][r] = src[r][c] for rows × cols. */
static void transpose(const float *src, int64_t rows, int64_t cols, float *dst)
{
	for (int64_t r = 0; r < rows; r++)
		for (int64_t c = 0; c < cols; c++)
			dst[c * rows + r] = src[r * cols + c];
}

/* mask_scores: a[i][j] = 0 unless lo ≤ j − i ≤ hi (rows × rows; i the
 * parent's row, j the child's), or, when trans, unless lo ≤ i − j ≤ hi
 * (i the child's row). */
static void mask_scores(float *a, int64_t rows, int64_t lo, int64_t hi, bool trans)
{
	for (int64_t i = 0; i < rows; i++)
		for (int64_t j = 0; j < rows; j++) {
			int64_t d = trans ? i - j : j - i;
			if (d < lo || d > hi)
				a[i * rows + j] = 0.0f;
		}
}

/* features: rows r0 … r1-1 of Φ of the message's edge on x_v, into dst
 * ([row][feature]) and dstt ([feature][row], r1 − r0 floats a feature),
 * each when not NULL. */
static void features(const Walk *w, int v, int64_t r0, int64_t r1, float *dst,
                     float *dstt, float *scratch)
{
	pa_approx_feature_rows(&w->T->io, &w->T->p->edges[w->m->edge], v, r0, r1, dst, dstt,
	                       r1 - r0, scratch);
}

/* Buffers of one chunk, carved from a run's space: features of either
 * side in either layout (t: [feature][row]), a features' gradient
 * [feature][row], two chunk × chunk score blocks, two transposed chunks
 * of channels and one of a message. */
typedef struct Bufs {
	float *fj, *fjt, *fp, *fpt, *dft, *a, *g, *pt, *dmt, *mc, *scratch;
} Bufs;

static Bufs bufs_of(const Tree *T, float *buf)
{
	const int64_t F = T->fmax, nc = T->nc, ch = T->ch;
	Bufs b;
	float **five[] = {&b.fj, &b.fjt, &b.fp, &b.fpt, &b.dft};
	for (int i = 0; i < 5; i++)
		*five[i] = buf, buf += pad16(ch * F);
	b.a = buf, buf += pad16(ch * ch);
	b.g = buf, buf += pad16(ch * ch);
	b.pt = buf, buf += pad16(nc * ch);
	b.dmt = buf, buf += pad16(nc * ch);
	b.mc = buf, buf += pad16(ch * nc);
	b.scratch = buf;
	return b;
}

/* CHUNK_VIEW: what a chunk function reads of rows r0 … r1-1 of walk w:
 * the engine T, message m, rows, features F and channels nc, the
 * child's products P and the message's gradient dM at row r0, buffers b
 * in buf. */
#define CHUNK_VIEW(w, r0, r1, buf)                                               \
	const Tree *T = (w)->T;                                                  \
	const pa_approx_msg *m = (w)->m;                                         \
	const int64_t rows = (r1) - (r0), F = T->p->edges[m->edge].nfeat;        \
	const int64_t nc = T->nc;                                                \
	const float *P = T->B[m->var] + (r0) * nc;                               \
	const float *dM = T->dM ? T->dM + (r0) * nc : NULL;                      \
	Bufs b = bufs_of(T, (buf));                                              \
	(void)dM

/* run_floats: floats of one run's buffers (its state first). */
static int64_t run_floats(const Tree *T)
{
	const int64_t F = T->fmax, nc = T->nc, ch = T->ch;
	return pad16(F * nc) + 5 * pad16(ch * F) + 2 * pad16(ch * ch) + 2 * pad16(nc * ch) +
	       pad16(ch * nc) + pad16(T->fscratch);
}

/* ------------------------------------------------------------- walking */

/* walk: every chunk of w's message, one contiguous run of chunks per
 * thread (see the file comment). */
static void walk(const Walk *w)
{
	const Tree *T = w->T;
	const int64_t n = T->n, ch = T->ch, nck = (n + ch - 1) / ch;
	const int64_t sf = (int64_t)T->p->edges[w->m->edge].nfeat * T->nc;
	const int nr = (int)(nck < T->nt ? nck : T->nt);
	#define RUN(i) (T->work + (size_t)(i) * (size_t)T->per_thread)
	#define FIRST(i) ((i) * nck / nr)
	/* each run's total */
	#pragma omp parallel for schedule(static, 1) num_threads(nr) if (nr > 1)
	for (int i = 0; i < nr; i++) {
		float *state = RUN(i), *buf = state + pad16(sf);
		memset(state, 0, (size_t)sf * sizeof(float));
		if (nr == 1 && !w->full)
			continue;
		for (int64_t c = FIRST(i); c < FIRST(i + 1); c++)
			w->chunk(w, c * ch, (c + 1) * ch < n ? (c + 1) * ch : n, state, false, true,
			         buf);
	}
	/* each run's state: the sum of the runs before it (all, when full) */
	if (nr > 1 || w->full) {
		float *sum = T->work + (size_t)nr * (size_t)T->per_thread;
		memset(sum, 0, (size_t)sf * sizeof(float));
		for (int q = 0; q < nr; q++) {
			int i = w->dir > 0 ? q : nr - 1 - q;
			float *state = RUN(i);
			for (int64_t e = 0; e < sf; e++) {
				float x = state[e];
				state[e] = sum[e];
				sum[e] += x;
			}
		}
		for (int i = 0; i < nr && w->full; i++)
			memcpy(RUN(i), sum, (size_t)sf * sizeof(float));
	}
	#pragma omp parallel for schedule(static, 1) num_threads(nr) if (nr > 1)
	for (int i = 0; i < nr; i++) {
		float *state = RUN(i), *buf = state + pad16(sf);
		int64_t c0 = FIRST(i), c1 = FIRST(i + 1);
		for (int64_t q = 0; q < c1 - c0; q++) {
			int64_t c = w->dir > 0 ? c0 + q : c1 - 1 - q;
			w->chunk(w, c * ch, (c + 1) * ch < n ? (c + 1) * ch : n, state, true,
			         !w->full, buf);
		}
	}
	#undef RUN
	#undef FIRST
}

/* walk_of: a walk over message m, the direction its range gives (rev:
 * the other one). */
static Walk walk_of(const Tree *T, const pa_approx_msg *m, bool rev)
{
	Walk w = {.T = T, .m = m, .dir = m->hi < U ? 1 : -1};
	w.full = m->lo <= -U && m->hi >= U;
	if (rev)
		w.dir = -w.dir;
	return w;
}

/* ------------------------------------------------------------- forward */

/* fwd_chunk: body: M[r0 … r1) = Φp S + the chunk's masked part, into
 * B_p (⊙) and keep; update: S += Φjᵀ B_j over the chunk. */
static void fwd_chunk(const Walk *w, int64_t r0, int64_t r1, float *S, bool body,
                      bool update, float *buf)
{
	CHUNK_VIEW(w, r0, r1, buf);
	features(w, m->var, r0, r1, NULL, b.fjt, b.scratch);
	if (body) {
		features(w, m->parent, r0, r1, b.fp, NULL, b.scratch);
		gemm(rows, nc, F, b.fp, S, b.mc, false);
		if (!w->full) {
			gemm(rows, rows, F, b.fp, b.fjt, b.a, false);
			mask_scores(b.a, rows, m->lo, m->hi, false);
			gemm(rows, nc, rows, b.a, P, b.mc, true);
		}
		float *Bp = T->B[m->parent] + r0 * nc;
		for (int64_t e = 0; e < rows * nc; e++)
			Bp[e] *= b.mc[e];
		if (w->keep)
			memcpy(w->keep + r0 * nc, b.mc, (size_t)(rows * nc) * sizeof(float));
	}
	if (update)
		gemm(F, nc, rows, b.fjt, P, S, true);
}

/* weights: W_v = exp(b_v − max b_v) ⊙ V_v (ones without values), the
 * bias alone in the last channel, n × nc into dst. */
static void weights(const Tree *T, int v, float *dst)
{
	const pa_kernel_info *k = T->k;
	const int vd = k->value_dim;
	int vin = -1;
	for (int i = 0; i < k->num_inputs; i++)
		if (k->inputs[i].kind == PA_INPUT_VALUE && k->inputs[i].variable == v)
			vin = i;
	const float *val = vin >= 0 ? T->io.in[vin] : NULL, *ew = T->ew[v];
	for (int64_t r = 0; r < T->n; r++) {
		for (int c = 0; c < vd; c++)
			dst[r * T->nc + c] = val ? ew[r] * val[r * vd + c] : ew[r];
		dst[r * T->nc + vd] = ew[r];
	}
}

/* in_tree: x_v sends or receives a message, or is a root. */
static bool in_tree(const Tree *T, int v)
{
	for (int i = 0; i < T->tr->nmsg; i++)
		if (T->tr->msg[i].var == v || T->tr->msg[i].parent == v)
			return true;
	for (int i = 0; i < T->tr->nroots; i++)
		if (T->tr->roots[i] == v)
			return true;
	return false;
}

/* forward: B_v for every variable, the messages kept when T->M is set;
 * Z[c] = Π over the roots but x1 of Σ_ℓ B_r[ℓ, c]. */
static void forward(Tree *T, double *Z)
{
	for (int v = 1; v <= T->t; v++) {
		if (!in_tree(T, v))
			continue;
		pa_approx_bias_exp(T->k, T->io.in, T->n, v, T->ew[v]);
		weights(T, v, T->B[v]);
		if (T->W[v])
			memcpy(T->W[v], T->B[v], (size_t)(T->n * T->nc) * sizeof(float));
	}
	for (int i = 0; i < T->tr->nmsg; i++) {
		Walk w = walk_of(T, &T->tr->msg[i], false);
		w.chunk = fwd_chunk;
		w.keep = T->M ? T->M + (size_t)i * (size_t)(T->n * T->nc) : NULL;
		walk(&w);
	}
	for (int c = 0; c < T->nc; c++)
		Z[c] = 1;
	for (int i = 1; i < T->tr->nroots; i++) {
		const float *Br = T->B[T->tr->roots[i]];
		for (int c = 0; c < T->nc; c++) {
			double s = 0;
			for (int64_t r = 0; r < T->n; r++)
				s += Br[r * T->nc + c];
			Z[c] *= s;
		}
	}
}

/* write_out: out[ℓ, c] = R[ℓ, c] / R[ℓ, vd], R = B_1 ⊙ Z; 0 when
 * R[ℓ, vd] = 0. */
static void write_out(const Tree *T, const double *Z, float *out)
{
	const int vd = T->k->value_dim, nc = T->nc;
	const float *B1 = T->B[1];
	for (int64_t r = 0; r < T->n; r++) {
		float den = (float)(B1[r * nc + vd] * Z[vd]);
		for (int c = 0; c < vd; c++)
			out[r * vd + c] = den != 0.0f ? (float)(B1[r * nc + c] * Z[c]) / den : 0.0f;
	}
}

/* check: the tree is one this engine runs: messages over the plan's
 * edges, children before parents, ranges it sums; x1 the first root. */
static bool check(const Tree *T)
{
	const pa_approx_tree *tr = T->tr;
	bool sent[MAX_VARS + 1] = {false};
	if (T->t < 1 || T->t > MAX_VARS || tr->nroots < 1 || tr->roots[0] != 1 ||
	    tr->nmsg < 0 || tr->nmsg > T->t - 1)
		return false;
	for (int i = 0; i < tr->nroots; i++)
		if (tr->roots[i] < 1 || tr->roots[i] > T->t)
			return false;
	for (int i = 0; i < tr->nmsg; i++) {
		const pa_approx_msg *m = &tr->msg[i];
		if (m->var < 1 || m->var > T->t || m->parent < 1 || m->parent > T->t ||
		    m->edge < 0 || m->edge >= T->p->nedges || sent[m->var] || sent[m->parent] ||
		    T->p->edges[m->edge].vars != (1u << m->var | 1u << m->parent))
			return false;
		const pa_approx_edge *ed = &T->p->edges[m->edge];
		if (ed->nfeat < 1 || ed->nmono * T->k->head_dim > 1024)
			return false;
		for (int f = 1; f < ed->nfeat; f++)
			if (ed->parent[f] < 0 || ed->parent[f] >= f || ed->coord[f] < 0 ||
			    ed->coord[f] >= ed->nmono * T->k->head_dim)
				return false;
		bool causal = m->lo <= -U && (m->hi == 0 || m->hi == -1);
		bool reverse = m->hi >= U && (m->lo == 0 || m->lo == 1);
		if (!causal && !reverse && !(m->lo <= -U && m->hi >= U))
			return false;
		sent[m->var] = true;
	}
	return true;
}

/* setup: the checks, then the buffers: B_v (and, for the backward,
 * W_v, dB_v, the messages and one message's gradient). */
static pa_status setup(Tree *T, bool grad)
{
	T->t = T->k->num_vars;
	T->nc = T->k->value_dim + 1;
	if (!T->tr || !check(T))
		return PA_ERR_UNSUPPORTED;
	T->fmax = 1;
	T->fscratch = 16;
	for (int i = 0; i < T->tr->nmsg; i++) {
		const pa_approx_edge *ed = &T->p->edges[T->tr->msg[i].edge];
		int64_t fs = pa_approx_feature_scratch(T->k, ed);
		T->fmax = ed->nfeat > T->fmax ? ed->nfeat : T->fmax;
		T->fscratch = fs > T->fscratch ? fs : T->fscratch;
	}
	T->ch = CH;
	while (T->ch > 8 && 5 * T->ch * T->fmax > CH_BUDGET)
		T->ch /= 2;
	const int64_t rows = T->n * T->nc;
	size_t total = 0, off[4][MAX_VARS + 1], moff = 0, dmoff = 0;
	for (int v = 1; v <= T->t; v++) {
		off[0][v] = pa_carve(&total, T->n, 1, 1);
		off[1][v] = pa_carve(&total, rows, 1, 1);
		if (grad) {
			off[2][v] = pa_carve(&total, rows, 1, 1);
			off[3][v] = pa_carve(&total, rows, 1, 1);
		}
	}
	if (grad) {
		moff = pa_carve(&total, T->tr->nmsg ? T->tr->nmsg : 1, rows, 1);
		dmoff = pa_carve(&total, rows, 1, 1);
	}
	T->per_thread = pad16(run_floats(T));
	size_t wtotal = 0;
	pa_carve(&wtotal, T->nt + 1, T->per_thread, 1);
	if (!(T->mem = pa_alloc(total)) || !(T->work = pa_alloc(wtotal)))
		return PA_ERR_NOMEM;
	for (int v = 1; v <= T->t; v++) {
		T->ew[v] = T->mem + off[0][v];
		T->B[v] = T->mem + off[1][v];
		T->W[v] = grad ? T->mem + off[2][v] : NULL;
		T->dB[v] = grad ? T->mem + off[3][v] : NULL;
	}
	T->M = grad ? T->mem + moff : NULL;
	T->dM = grad ? T->mem + dmoff : NULL;
	return PA_OK;
}

/* entry_view: batch entry b's inputs (and gradients) in T->io. */
static void entry_view(Tree *T, const float **in, float **gin, const float *const inputs[],
                       float *const grad[], int64_t b)
{
	for (int i = 0; i < T->k->num_inputs; i++) {
		int64_t at = b * T->n * T->k->inputs[i].cols;
		in[i] = inputs[i] + at;
		if (gin)
			gin[i] = grad[i] ? grad[i] + at : NULL;
	}
	T->io = (pa_approx_io){T->k, in, gin};
}

/* pa_approx_tree_run: see pa_approx.h. */
pa_status pa_approx_tree_run(const pa_kernel_info *k, const pa_approx_plan *p,
                             int64_t batch, int64_t n, const float *const inputs[],
                             float *out)
{
	Tree T = {.k = k, .p = p, .tr = p->tree, .n = n, .nt = omp_get_max_threads()};
	const float **in = malloc(sizeof *in * (size_t)(k->num_inputs + 1));
	pa_status st = in ? setup(&T, false) : PA_ERR_NOMEM;
	double Z[T.nc > 0 ? T.nc : 1];
	for (int64_t b = 0; b < batch && st == PA_OK; b++) {
		entry_view(&T, in, NULL, inputs, NULL, b);
		forward(&T, Z);
		write_out(&T, Z, out + b * n * k->value_dim);
	}
	pa_free(T.mem);
	pa_free(T.work);
	free(in);
	return st;
}

/* ------------------------------------------------------------ backward */

/* bwd_parent_chunk: body: dΦpᵀ = S dMᵀ + Φjᵀ (mask ⊙ dM B_jᵀ)ᵀ, pushed
 * to x_p's factor inputs; update: S += Φjᵀ B_j. */
static void bwd_parent_chunk(const Walk *w, int64_t r0, int64_t r1, float *S, bool body,
                             bool update, float *buf)
{
	CHUNK_VIEW(w, r0, r1, buf);
	features(w, m->var, r0, r1, NULL, b.fjt, b.scratch);
	if (body) {
		transpose(dM, rows, nc, b.dmt);
		gemm(F, rows, nc, S, b.dmt, b.dft, false);
		if (!w->full) {
			gemm(rows, rows, nc, P, b.dmt, b.g, false);
			mask_scores(b.g, rows, m->lo, m->hi, true);
			gemm(F, rows, rows, b.fjt, b.g, b.dft, true);
		}
		pa_approx_feature_push(&T->io, &T->p->edges[m->edge], m->parent, r0, r1, b.dft,
		                       rows, 1, b.scratch);
	}
	if (update)
		gemm(F, nc, rows, b.fjt, P, S, true);
}

/* bwd_child_chunk: body (the state is T = Σ Φpᵀ dM over the chunks on
 * the other side): dB_j = Φj T + (maskᵀ ⊙ Φj Φpᵀ) dM into dB_j, and
 * dΦjᵀ = T B_jᵀ + Φpᵀ (mask ⊙ dM B_jᵀ) pushed to x_j's factor inputs;
 * update: T += Φpᵀ dM. */
static void bwd_child_chunk(const Walk *w, int64_t r0, int64_t r1, float *S, bool body,
                            bool update, float *buf)
{
	CHUNK_VIEW(w, r0, r1, buf);
	float *dP = T->dB[m->var] + r0 * nc;
	features(w, m->parent, r0, r1, NULL, b.fpt, b.scratch);
	if (body) {
		features(w, m->var, r0, r1, b.fj, NULL, b.scratch);
		gemm(rows, nc, F, b.fj, S, dP, false);
		transpose(P, rows, nc, b.pt);
		gemm(F, rows, nc, S, b.pt, b.dft, false);
		if (!w->full) {
			gemm(rows, rows, F, b.fj, b.fpt, b.a, false);
			mask_scores(b.a, rows, m->lo, m->hi, true);
			gemm(rows, nc, rows, b.a, dM, dP, true);
			gemm(rows, rows, nc, dM, b.pt, b.g, false);
			mask_scores(b.g, rows, m->lo, m->hi, false);
			gemm(F, rows, rows, b.fpt, b.g, b.dft, true);
		}
		pa_approx_feature_push(&T->io, &T->p->edges[m->edge], m->var, r0, r1, b.dft,
		                       rows, 1, b.scratch);
	}
	if (update)
		gemm(F, nc, rows, b.fpt, dM, S, true);
}

/* others: dst = dB_p ⊙ W_p ⊙ Π of the messages into p but message skip
 * (−1: all of them, dst = dB_p ⊙ Π M: then W_p's gradient). */
static void others(const Tree *T, int p, int skip, float *dst)
{
	const int64_t len = T->n * T->nc;
	const float *W = T->W[p], *dB = T->dB[p];
	for (int64_t e = 0; e < len; e++)
		dst[e] = skip >= 0 ? dB[e] * W[e] : dB[e];
	for (int i = 0; i < T->tr->nmsg; i++) {
		if (T->tr->msg[i].parent != p || i == skip)
			continue;
		const float *M = T->M + (size_t)i * (size_t)len;
		for (int64_t e = 0; e < len; e++)
			dst[e] *= M[e];
	}
}

/* seed: dB_1 and every other root's dB from out = R[., c] / R[., vd]
 * and g = dL/dout (0 on rows whose R[., vd] is 0). */
static void seed(const Tree *T, const double *Z, const float *g)
{
	const int vd = T->k->value_dim, nc = T->nc, nr = T->tr->nroots;
	const float *B1 = T->B[1];
	float *dB1 = T->dB[1];
	double dZ[nc];
	for (int c = 0; c < nc; c++)
		dZ[c] = 0;
	for (int64_t r = 0; r < T->n; r++) {
		const float *x = B1 + r * nc;
		float *dx = dB1 + r * nc;
		float den = (float)(x[vd] * Z[vd]), go = 0;
		for (int c = 0; c < nc; c++)
			dx[c] = 0.0f;
		if (den == 0.0f)
			continue;
		for (int c = 0; c < vd; c++) {
			float o = (float)(x[c] * Z[c]) / den;
			dx[c] = g[r * vd + c] / den;
			go += g[r * vd + c] * o;
		}
		dx[vd] = -go / den;
		for (int c = 0; c < nc; c++) {
			dZ[c] += (double)dx[c] * x[c];
			dx[c] = (float)(dx[c] * Z[c]);
		}
	}
	/* R = B_1 ⊙ Π_r Σ B_r: root r's sum gets dZ · Π of the others */
	for (int i = 1; i < nr; i++) {
		const int v = T->tr->roots[i];
		for (int c = 0; c < nc; c++) {
			double prod = 1;
			for (int q = 1; q < nr; q++) {
				if (q == i)
					continue;
				const float *Bq = T->B[T->tr->roots[q]];
				double s = 0;
				for (int64_t r = 0; r < T->n; r++)
					s += Bq[r * nc + c];
				prod *= s;
			}
			for (int64_t r = 0; r < T->n; r++)
				T->dB[v][r * nc + c] = (float)(dZ[c] * prod);
		}
	}
}

/* backward_entry: one batch entry's gradients, added into T->io.gin. */
static void backward_entry(Tree *T, const float *g)
{
	double Z[T->nc];
	forward(T, Z);
	seed(T, Z, g);
	for (int i = T->tr->nmsg - 1; i >= 0; i--) {
		const pa_approx_msg *m = &T->tr->msg[i];
		others(T, m->parent, i, T->dM);
		Walk w = walk_of(T, m, false);
		w.chunk = bwd_parent_chunk;
		walk(&w);
		w = walk_of(T, m, true);
		w.chunk = bwd_child_chunk;
		walk(&w);
	}
	for (int v = 1; v <= T->t; v++) {
		if (!in_tree(T, v))
			continue;
		others(T, v, -1, T->dM);
		pa_approx_weights_push(&T->io, v, T->ew[v], T->dM, true, T->n, T->nt);
	}
}

/* pa_approx_tree_backward: see pa_approx.h. */
pa_status pa_approx_tree_backward(const pa_kernel_info *k, const pa_approx_plan *p,
                                  int64_t batch, int64_t n, const float *const inputs[],
                                  const float *grad_out, float *const grad_inputs[])
{
	Tree T = {.k = k, .p = p, .tr = p->tree, .n = n, .nt = omp_get_max_threads()};
	const float **in = malloc(sizeof *in * (size_t)(k->num_inputs + 1));
	float **gin = malloc(sizeof *gin * (size_t)(k->num_inputs + 1));
	pa_status st = in && gin ? setup(&T, true) : PA_ERR_NOMEM;
	bool values = false;
	for (int i = 0; st == PA_OK && i < k->num_inputs; i++) {
		values |= k->inputs[i].kind == PA_INPUT_VALUE;
		if (grad_inputs[i])
			memset(grad_inputs[i], 0,
			       (size_t)(batch * n * k->inputs[i].cols) * sizeof(float));
	}
	/* without values out is 1, or 0 on rows the mask leaves empty: its
	 * gradient is 0 */
	for (int64_t b = 0; b < batch && st == PA_OK && values; b++) {
		entry_view(&T, in, gin, inputs, grad_inputs, b);
		backward_entry(&T, grad_out + b * n * k->value_dim);
	}
	pa_free(T.mem);
	pa_free(T.work);
	free(in);
	free(gin);
	return st;
}
