/*
 * pa_edge.c - one tree edge's attention backward (pa_tree.h), in the
 * FlashAttention-2 order: a thread owns a group of PA_GROUP panels of
 * PA_BK keys at a time and walks every block of PA_BQ queries, recomputing the scores and
 * weights from the saved log-normalizers; the key side's gradients (dk,
 * dpv, dkb) accumulate in the panel's own scratch, the query side's (dq)
 * in a buffer per thread, summed at the end: no atomics, nothing n × n.
 *
 * The forward's layouts are repacked once per call into the ones the
 * products want (O(n·d), small beside the O(n²·d) work): queries and keys
 * as rows padded to whole vectors, the payload transposed into panels,
 * query rows padded to whole blocks (a padding row has lse = +inf, so its
 * weights are 0).  The micro-kernels are pa_edge_body.h, built once per
 * instruction set and picked at run time as the forward's are.  A masked
 * edge (doc/design.md, "Masks") skips the blocks its mask rules out and
 * zeroes the masked weights of the blocks it crosses.
 */
#include "pa_tree.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "pa_kernel.h"

/* Query rows per block of the backward, key panels per task. */
#define PA_BQ 64
#define PA_GROUP 4

/* One call, repacked: per batch entry pointers are offset by the caller. */
typedef struct EdgeJob {
	int dim, dp;             /* columns of q and k; dim rounded up to 16 */
	int vd, vp;              /* payload columns; vd rounded up to 16 (0) */
	int64_t nqr, nk;         /* query rows, key rows */
	int64_t nqp, nb;         /* query rows padded to PA_BQ; key panels */
	int64_t off;             /* position of query row 0 */
	const float *qp;         /* nqp × dp queries */
	const float *kt;         /* nb × dim × PA_BK packed keys (forward's) */
	const float *kp;         /* nb·PA_BK × dp keys as rows */
	const float *kb;         /* nb·PA_BK key bias (forward's) */
	const float *pvt;        /* nb × vp × PA_BK payload, transposed */
	const float *dmp;        /* nqp × vp gradient of the message */
	const float *lse;        /* nqp log-normalizers, +inf past nqr */
	const float *dv;         /* nqp: ⟨dm, o⟩ − dl */
	float *dk, *dpv, *dkb;   /* outputs of this batch entry, nk rows */
	int masked;              /* pairs outside lo ≤ key − query ≤ hi weigh 0 */
	int64_t lo, hi;
} EdgeJob;

/* edge_store_panel: the rows of panel jb that are keys (< nk) from the
 * panel's accumulators into the job's outputs. */
static void edge_store_panel(const EdgeJob *j, int64_t jb, const float *dk,
                             const float *dpv, const float *dkb)
{
	for (int r = 0; r < PA_BK && jb * PA_BK + r < j->nk; r++) {
		const int64_t row = jb * PA_BK + r;
		memcpy(j->dk + row * j->dim, dk + r * j->dp, j->dim * sizeof *dk);
		if (j->vd)
			memcpy(j->dpv + row * j->vd, dpv + r * j->vp, j->vd * sizeof *dpv);
		j->dkb[row] = dkb[r];
	}
}

/* block_masked: how the mask of j meets query block i0 and key panel jb:
 * 0 every pair allowed, 1 some, 2 none. */
static int block_masked(const EdgeJob *j, int64_t i0, int64_t jb)
{
	if (!j->masked)
		return 0;
	const int64_t p0 = i0 + j->off; /* the block's first position */
	const int64_t dmin = jb * PA_BK - (p0 + PA_BQ - 1), dmax = jb * PA_BK + PA_BK - 1 - p0;
	if (dmax < j->lo || dmin > j->hi)
		return 2;
	return dmin < j->lo || dmax > j->hi;
}

/* mask_weights: P[r][c] = 0 for the pairs of query block i0 and key panel
 * jb that the mask of j rules out. */
static void mask_weights(const EdgeJob *j, int64_t i0, int64_t jb, float *P)
{
	for (int r = 0; r < PA_BQ; r++)
		for (int c = 0; c < PA_BK; c++) {
			const int64_t d = jb * PA_BK + c - (i0 + j->off + r);
			if (d < j->lo || d > j->hi)
				P[r * PA_BK + c] = 0.0f;
		}
}

/* What a score tile does before it stores (pa_edge_body.h). */
enum {
	EPI_EXP,                 /* P = exp(acc − lse) */
	EPI_DS,                  /* dS = P ⊙ (acc − Dv), with column sums */
};

/* ---- the micro-kernels, once per instruction set */

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
#include "pa_edge_body.h"
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
#include "pa_edge_body.h"
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
#include "pa_edge_body.h"
#undef FN
#undef W
#undef TILE_C
#undef TARGET
#undef vf
#undef VEXP
#endif

typedef void (*panel_fn)(const EdgeJob *, int64_t, int, float *, float *);

/* choose_panel: the micro-kernels of the widest set this CPU runs. */
static panel_fn choose_panel(void)
{
#if defined(__x86_64__)
	if (pa_isa() == PA_ISA_AVX512)
		return panels_avx512;
	if (pa_isa() == PA_ISA_AVX2)
		return panels_avx2;
#endif
	return panels_generic;
}

/* ---- repacking */

/* Where the repacked buffers of a call live in its workspace. */
typedef struct EdgeWork {
	float *qp, *kp, *pvt, *dmp, *lse, *dv; /* batch × their per-entry size */
	float *dq;               /* threads × batch × nqp × dp */
	float *scratch;          /* threads × per-panel scratch */
	size_t scratch_floats;   /* per thread */
} EdgeWork;

/* pad16 = x rounded up to a multiple of 16. */
static int pad16(int x)
{
	return (x + 15) / 16 * 16;
}

/* pack_queries: qp, dmp, lse, dv of batch entry b (rows past nq padded:
 * q = dm = 0, lse = +inf, dv = 0; a row the mask left without keys, lse
 * = −inf, gets lse = +inf too, so its weights are 0). */
static void pack_queries(const pa_edge *e, const EdgeJob *j, int64_t b,
                         float *qp, float *dmp, float *lse, float *dv)
{
	for (int64_t r = 0; r < j->nqp; r++) {
		bool real = r < e->nq;
		const int64_t row = b * e->nq + r;
		for (int d = 0; d < j->dp; d++)
			qp[r * j->dp + d] = real && d < j->dim ? e->q[row * j->dim + d] : 0.0f;
		double dot = 0;
		for (int c = 0; c < j->vp; c++) {
			float g = real && c < j->vd ? e->dm[row * j->vd + c] : 0.0f;
			dmp[r * j->vp + c] = g;
			if (real && c < j->vd)
				dot += (double)g * e->o[row * j->vd + c];
		}
		lse[r] = real && e->lse[row] != -INFINITY ? e->lse[row] : INFINITY;
		dv[r] = real ? (float)(dot - (e->dl ? e->dl[row] : 0.0f)) : 0.0f;
	}
}

/* pack_keys: kp (keys as rows) and pvt (payload panels, transposed) of
 * batch entry b from the forward's panels. */
static void pack_keys(const pa_edge *e, const EdgeJob *j, int64_t b,
                      float *kp, float *pvt)
{
	const int64_t np = j->nb * PA_BK;
	const float *kt = e->kt + b * np * j->dim;
	for (int64_t r = 0; r < np; r++)
		for (int d = 0; d < j->dp; d++)
			kp[r * j->dp + d] = d < j->dim ?
				kt[(r / PA_BK) * j->dim * PA_BK + d * PA_BK + r % PA_BK] : 0.0f;
	if (!j->vp)
		return;
	const float *pv = e->pv + b * np * j->vp;
	for (int64_t r = 0; r < np; r++)
		for (int c = 0; c < j->vp; c++)
			pvt[(r / PA_BK) * j->vp * PA_BK + c * PA_BK + r % PA_BK] =
				pv[r * j->vp + c];
}

/* job_of: the job of batch entry b. */
static EdgeJob job_of(const pa_edge *e, const EdgeJob *shape,
                      const EdgeWork *w, int64_t b)
{
	EdgeJob j = *shape;
	const int64_t np = j.nb * PA_BK;
	j.qp = w->qp + b * j.nqp * j.dp;
	j.kt = e->kt + b * np * j.dim;
	j.kp = w->kp + b * np * j.dp;
	j.kb = e->kb + b * np;
	j.pvt = w->pvt + b * np * j.vp;
	j.dmp = w->dmp + b * j.nqp * j.vp;
	j.lse = w->lse + b * j.nqp;
	j.dv = w->dv + b * j.nqp;
	j.dk = e->dk + b * e->nk * j.dim;
	j.dpv = e->dpv ? e->dpv + b * e->nk * j.vd : NULL;
	j.dkb = e->dkb + b * e->nk;
	return j;
}

/* carve_work: the workspace of a call with this shape for threads
 * threads, laid out from ws (NULL: only counted); its floats, or SIZE_MAX
 * when they overflow. */
static size_t carve_work(const pa_edge *e, const EdgeJob *s, int threads,
                         float *ws, EdgeWork *w)
{
	const int64_t np = s->nb * PA_BK, B = e->batch;
	size_t total = 0;
	size_t at_qp = pa_carve(&total, B, s->nqp, s->dp);
	size_t at_kp = pa_carve(&total, B, np, s->dp);
	size_t at_pvt = pa_carve(&total, B, np, s->vp);
	size_t at_dmp = pa_carve(&total, B, s->nqp, s->vp);
	size_t at_lse = pa_carve(&total, B, s->nqp, 1);
	size_t at_dv = pa_carve(&total, B, s->nqp, 1);
	size_t at_dq = pa_carve(&total, threads, B * s->nqp, s->dp);
	w->scratch_floats = 2 * PA_BQ * PA_BK + (size_t)PA_GROUP * PA_BK * (s->dp + s->vp + 1);
	w->scratch_floats = (w->scratch_floats + 15) / 16 * 16;
	size_t at_scratch = pa_carve(&total, threads, w->scratch_floats, 1);
	if (ws) {
		w->qp = ws + at_qp, w->kp = ws + at_kp, w->pvt = ws + at_pvt;
		w->dmp = ws + at_dmp, w->lse = ws + at_lse, w->dv = ws + at_dv;
		w->dq = ws + at_dq, w->scratch = ws + at_scratch;
	}
	return total;
}

/* shape_of: the repacked shape of e. */
static EdgeJob shape_of(const pa_edge *e)
{
	return (EdgeJob){.dim = e->dim, .dp = pad16(e->dim), .vd = e->vd,
	                 .vp = e->vd ? pad16(e->vd) : 0, .nqr = e->nq, .nk = e->nk,
	                 .nqp = (e->nq + PA_BQ - 1) / PA_BQ * PA_BQ,
	                 .nb = (e->nk + PA_BK - 1) / PA_BK, .off = e->off,
	                 .masked = e->masked,
	                 .lo = e->lo, .hi = e->hi};
}

/* max_threads: the threads a call may use. */
static int max_threads(void)
{
	return pa_max_threads();
}

/* pa_edge_floats: see pa_tree.h. */
size_t pa_edge_floats(const pa_edge *e)
{
	const EdgeJob s = shape_of(e);
	EdgeWork w;
	return carve_work(e, &s, max_threads(), NULL, &w);
}

/* reduce_dq: e->dq = the sum of the threads' query-side accumulators. */
static void reduce_dq(const pa_edge *e, const EdgeJob *s, const EdgeWork *w,
                      int threads)
{
	const size_t per = (size_t)e->batch * s->nqp * s->dp;
	#pragma omp parallel for collapse(2) schedule(static)
	for (int64_t b = 0; b < e->batch; b++)
		for (int64_t r = 0; r < e->nq; r++)
			for (int d = 0; d < s->dim; d++) {
				const size_t at = (b * s->nqp + r) * s->dp + d;
				float sum = 0.0f;
				for (int t = 0; t < threads; t++)
					sum += w->dq[t * per + at];
				e->dq[(b * e->nq + r) * s->dim + d] = sum;
			}
}

/* pa_edge_backward: see pa_tree.h. */
void pa_edge_backward(const pa_edge *e, float *ws)
{
	const EdgeJob s = shape_of(e);
	const int threads = max_threads();
	EdgeWork w;
	carve_work(e, &s, threads, ws, &w);
	const int64_t np = s.nb * PA_BK;
	#pragma omp parallel for schedule(static)
	for (int64_t b = 0; b < e->batch; b++) {
		pack_queries(e, &s, b, w.qp + b * s.nqp * s.dp, w.dmp + b * s.nqp * s.vp,
		             w.lse + b * s.nqp, w.dv + b * s.nqp);
		pack_keys(e, &s, b, w.kp + b * np * s.dp, w.pvt + b * np * s.vp);
	}
	const panel_fn panel = choose_panel();
	const size_t per = (size_t)e->batch * s.nqp * s.dp;
	/* every thread's accumulator, also of threads the region may not get */
	memset(w.dq, 0, threads * per * sizeof *w.dq);
	#pragma omp parallel num_threads(threads)
	{
		int t = 0;
#ifdef _OPENMP
		t = omp_get_thread_num();
#endif
		float *dq = w.dq + t * per;
		const int64_t groups = (s.nb + PA_GROUP - 1) / PA_GROUP;
		#pragma omp for collapse(2) schedule(dynamic)
		for (int64_t b = 0; b < e->batch; b++)
			for (int64_t g = 0; g < groups; g++) {
				const EdgeJob j = job_of(e, &s, &w, b);
				const int64_t jb = g * PA_GROUP;
				const int count = s.nb - jb < PA_GROUP ? (int)(s.nb - jb) : PA_GROUP;
				panel(&j, jb, count, w.scratch + t * w.scratch_floats,
				      dq + b * s.nqp * s.dp);
			}
	}
	reduce_dq(e, &s, &w, threads);
}
