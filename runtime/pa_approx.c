/*
 * pa_approx.c - the approximate engine of pa_approx.h: a tensor network
 * whose leaves are Taylor feature maps and softmax-free weights,
 * contracted step by step in time linear in n.
 *
 * Per call the plan is checked and every step is given a geometry.  A
 * step whose summed index is held by one of its inputs besides others is
 * a batched matrix product: one input is B, the product of the others is
 * A, and the indices other than the summed x split into batch (in both),
 * a (A only) and b (B only), so that
 *
 *     O[batch, a, b] = Σ_x A[batch, a, x] · B[batch, x, b].
 *
 * The step runs by chunks of rows of one position index p (x itself, or
 * one of batch and a): each chunk builds the rows of its leaves (a leaf
 * whose position is p is never stored whole) and, when p is not summed,
 * of the results of earlier product steps chunked over the same p as an
 * output position, by their tasks for those rows (chains recursively:
 * their n-row results are never stored either), packs A and B into those
 * layouts unless an input already has it, multiplies, and writes the
 * rows of O into the result.  Chunks of an output position are spread
 * over the threads; chunks of a summed position add into one accumulator
 * per thread, added up at the end.  Every other step (one input, no sum,
 * a product or permutation) walks its output entry by entry.
 *
 * The matrix products run in register tiles of MR rows, one per
 * instruction set (pa_isa), with masked loads and stores for the last
 * columns.
 */
#include "pa_approx.h"

#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "pa_kernel.h"
#include "pa_simd.h"

#define MAXI PA_APPROX_MAX_IDX
#define MAXW (MAXI + 1)          /* dimensions of a walk: out and the sum */
#define MAX_ID 64                /* index ids: 0, 1 … t, t+1 … t+nedges */
#define MAX_VARS 31              /* pa_approx_edge.vars is 32 bits */
#define MAXIN 32                 /* inputs of one step */
#define MAX_FLOATS ((int64_t)1 << 40) /* floats one tensor may hold */
#define MAX_COORDS 1024          /* D = nmono · head_dim of one edge */
#define FR PA_APPROX_FR           /* rows of features made side by side: a
                                    multiple of 16 (the AVX-512 transpose) */
#define CHUNK 256                /* rows of p per task at most */
#define BUDGET ((int64_t)1 << 17) /* floats of one task's buffers */
#define MR 6                     /* rows of a register tile */
#define KC 256                   /* depth of one pass over a tile */
#define RB 48                    /* rows per parallel piece of a product */

/* A tensor of the network: a leaf or a step's result. */
typedef struct Tensor {
	int nidx;
	int idx[MAXI];           /* index ids, layout order */
	uint64_t mask;           /* bit id: idx holds id */
	int64_t st[MAX_ID];      /* stride of each id, 0 when absent */
	int64_t size;            /* floats */
	int64_t row;             /* floats per value of idx[0] */
	bool lazy;               /* a leaf or step result its consumer builds
	                            by row chunks (never stored whole) */
	int consumer;            /* the step reading it, -1 if none */
	float *data;             /* NULL while lazy */
} Tensor;

/* How one step runs (see the file comment). */
typedef struct Geo {
	bool gemm;               /* a batched product; else a walk */
	int x, p;                /* summed index; chunked position, or -1 */
	int bin;                 /* which input is B */
	int nbat, na, nb;
	int bat[MAXI], a[MAXI], b[MAXI];
	bool zcb, zca;           /* B, A used where they lie (no packing) */
	bool xa;                 /* A laid out [bat][x][a], else [bat][a][x] */
	bool direct;             /* O's layout is the result's */
	int64_t chunk;           /* rows of p per task */
	int64_t ws;              /* floats of one thread's buffers */
} Geo;

/* One call. */
typedef struct Engine {
	const pa_kernel_info *k;
	const pa_approx_plan *p;
	int64_t n;
	int t, nt, nid, ntens;
	int64_t dim[MAX_ID];     /* size of each index */
	uint64_t posmask;        /* the position indices 1 … t */
	Tensor *T;
	Geo *G;
	const float **in;        /* this batch entry's inputs */
	float *ew[MAX_VARS + 1]; /* exp(b_v - max b_v), n floats, or NULL */
	float *mem;              /* stored tensors and ew */
	float *work;             /* nt × per_thread floats */
	int64_t per_thread;      /* a thread's leaf scratch, then its buffers */
	int64_t scratch;         /* floats of leaf scratch (leaf_features) */
} Engine;

/* A loop nest over dims (last fastest): dst (=, or += when add) the
 * product of the sources; a dst stride of 0 on the last dimension sums
 * it into one entry. */
typedef struct Walk {
	int nd;
	int64_t dim[MAXW];
	float *dst;
	int64_t ds[MAXW];
	int nsrc;
	const float *src[MAXIN];
	int64_t ss[MAXIN][MAXW];
	bool add;
} Walk;

/* A matrix product O (+)= A · B with A[i][k] = A[i·sa + k·sk], rows of B
 * and O contiguous. */
typedef struct Mat {
	int64_t M, N, K;
	const float *A;
	int64_t sa, sk;
	const float *B;
	int64_t ldb;
	float *O;
	int64_t ldo;
	bool acc;
} Mat;

static int64_t pad16(int64_t x)
{
	return (x + 15) & ~(int64_t)15;
}

static uint64_t bit(int id)
{
	return id >= 0 ? (uint64_t)1 << id : 0;
}

/* ---------------------------------------------------------------- walks */

/* walk_row: the last dimension of w at offsets od (dst) and os (sources). */
static void walk_row(const Walk *w, int64_t od, const int64_t *os)
{
	int L = w->nd - 1, ns = w->nsrc;
	int64_t len = w->dim[L], dsl = w->ds[L];
	float *d = w->dst + od;
	if (dsl == 0) {
		float s = 0.0f;
		for (int64_t i = 0; i < len; i++) {
			float x = 1.0f;
			for (int k = 0; k < ns; k++)
				x *= w->src[k][os[k] + i * w->ss[k][L]];
			s += x;
		}
		*d = w->add ? *d + s : s;
		return;
	}
	if (ns == 1 && w->ss[0][L] == 1 && dsl == 1 && !w->add) {
		memcpy(d, w->src[0] + os[0], (size_t)len * sizeof *d);
		return;
	}
	for (int64_t i = 0; i < len; i++) {
		float x = 1.0f;
		for (int k = 0; k < ns; k++)
			x *= w->src[k][os[k] + i * w->ss[k][L]];
		d[i * dsl] = w->add ? d[i * dsl] + x : x;
	}
}

/* walk: every row of w, the dimensions before the last as an odometer. */
static void walk(const Walk *w)
{
	int L = w->nd - 1, ns = w->nsrc;
	int64_t ctr[MAXW] = {0}, od = 0, os[MAXIN] = {0};
	for (int d = 0; d < w->nd; d++)
		if (w->dim[d] <= 0)
			return;
	for (;;) {
		walk_row(w, od, os);
		int d = L - 1;
		for (; d >= 0; d--) {
			od += w->ds[d];
			for (int k = 0; k < ns; k++)
				os[k] += w->ss[k][d];
			if (++ctr[d] < w->dim[d])
				break;
			od -= w->ds[d] * w->dim[d];
			for (int k = 0; k < ns; k++)
				os[k] -= w->ss[k][d] * w->dim[d];
			ctr[d] = 0;
		}
		if (d < 0)
			return;
	}
}

/* walk_par: walk with its first dimension split into nt pieces spread
 * over the threads when its dst stride keeps their writes apart (and par
 * allows).  The pieces are the iterations of a worksharing loop, so every
 * one runs whatever the size of the team the runtime gives (one thread
 * when nested, or without OpenMP), not only the first pieces. */
static void walk_par(const Walk *w, int nt, bool par)
{
	int64_t total = 1;
	for (int d = 0; d < w->nd; d++)
		total *= w->dim[d];
	if (!par || nt < 2 || w->ds[0] == 0 || w->dim[0] < 2 || total < 4096) {
		walk(w);
		return;
	}
	int64_t per = (w->dim[0] + nt - 1) / nt;
	#pragma omp parallel for schedule(static) num_threads(nt)
	for (int i = 0; i < nt; i++) {
		int64_t r0 = i * per, r1 = r0 + per < w->dim[0] ? r0 + per : w->dim[0];
		if (r0 < r1) {
			Walk v = *w;
			v.dim[0] = r1 - r0;
			v.dst += r0 * w->ds[0];
			for (int k = 0; k < w->nsrc; k++)
				v.src[k] += r0 * w->ss[k][0];
			walk(&v);
		}
	}
}

/* ------------------------------------------------------ matrix products */

/* tile_generic: O[i][j] (+)= Σ_k A[i][k] B[k][j] for i < rows, j < cols
 * (cols ≤ 16); the portable form of the tiles below. */
static void tile_generic(int rows, int cols, int64_t K, const float *A,
                         int64_t sa, int64_t sk, const float *B, int64_t ldb,
                         float *O, int64_t ldo, bool acc)
{
	float c[MR][16] = {{0}};
	for (int64_t k = 0; k < K; k++) {
		float b[16] = {0};
		for (int j = 0; j < cols; j++)
			b[j] = B[k * ldb + j];
		for (int i = 0; i < rows; i++) {
			float a = A[i * sa + k * sk];
			for (int j = 0; j < 16; j++)
				c[i][j] += a * b[j];
		}
	}
	for (int i = 0; i < rows; i++)
		for (int j = 0; j < cols; j++)
			O[i * ldo + j] = acc ? O[i * ldo + j] + c[i][j] : c[i][j];
}

/* rows_generic: rows i0 … i1-1 of g in 16-column tiles. */
static void rows_generic(const Mat *g, int64_t i0, int64_t i1)
{
	for (int64_t k0 = 0; k0 < g->K; k0 += KC) {
		int64_t kc = g->K - k0 < KC ? g->K - k0 : KC;
		for (int64_t j = 0; j < g->N; j += 16)
			for (int64_t i = i0; i < i1; i += MR)
				tile_generic(i1 - i < MR ? (int)(i1 - i) : MR,
				             g->N - j < 16 ? (int)(g->N - j) : 16, kc,
				             g->A + i * g->sa + k0 * g->sk, g->sa, g->sk,
				             g->B + k0 * g->ldb + j, g->ldb,
				             g->O + i * g->ldo + j, g->ldo, g->acc || k0 > 0);
	}
}

#if defined(__x86_64__)
/* tile_avx512: tile_generic for up to MR rows and 32 columns (16 when not
 * wide) in 2·MR registers; rows and wide are constants where it inlines. */
__attribute__((target("avx512f"), always_inline)) static inline void
tile_avx512(const int rows, const bool wide, int cols, int64_t K,
            const float *A, int64_t sa, int64_t sk, const float *B,
            int64_t ldb, float *O, int64_t ldo, bool acc)
{
	__mmask16 m0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
	__mmask16 m1 = cols >= 32 ? 0xffff : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1) : 0;
	__m512 c0[MR], c1[MR];
	for (int i = 0; i < rows; i++)
		c0[i] = c1[i] = _mm512_setzero_ps();
	for (int64_t k = 0; k < K; k++) {
		__m512 b0 = _mm512_maskz_loadu_ps(m0, B + k * ldb), b1 = b0;
		if (wide)
			b1 = _mm512_maskz_loadu_ps(m1, B + k * ldb + 16);
		for (int i = 0; i < rows; i++) {
			__m512 a = _mm512_set1_ps(A[i * sa + k * sk]);
			c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
			if (wide)
				c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
		}
	}
	for (int i = 0; i < rows; i++) {
		float *o = O + i * ldo;
		if (acc)
			c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, o));
		_mm512_mask_storeu_ps(o, m0, c0[i]);
		if (!wide)
			continue;
		if (acc)
			c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(m1, o + 16));
		_mm512_mask_storeu_ps(o + 16, m1, c1[i]);
	}
}

/* rows_avx512: rows i0 … i1-1 of g in 32-column tiles (16 for the last
 * columns when no more remain). */
__attribute__((target("avx512f"))) static void
rows_avx512(const Mat *g, int64_t i0, int64_t i1)
{
	for (int64_t k0 = 0; k0 < g->K; k0 += KC) {
		int64_t kc = g->K - k0 < KC ? g->K - k0 : KC;
		bool acc = g->acc || k0 > 0;
		for (int64_t j = 0; j < g->N; j += 32) {
			int cols = g->N - j < 32 ? (int)(g->N - j) : 32;
			const float *b = g->B + k0 * g->ldb + j;
			for (int64_t i = i0; i < i1; i += MR) {
				int rows = i1 - i < MR ? (int)(i1 - i) : MR;
				const float *a = g->A + i * g->sa + k0 * g->sk;
				float *o = g->O + i * g->ldo + j;
#define TILE(r, w) case 2 * (r) + (w): \
	tile_avx512(r, w, cols, kc, a, g->sa, g->sk, b, g->ldb, o, g->ldo, acc); break;
				switch (2 * rows + (cols > 16)) {
				TILE(1, 0) TILE(1, 1) TILE(2, 0) TILE(2, 1) TILE(3, 0) TILE(3, 1)
				TILE(4, 0) TILE(4, 1) TILE(5, 0) TILE(5, 1) TILE(6, 0) TILE(6, 1)
				}
#undef TILE
			}
		}
	}
}

/* tile_avx2: tile_generic for up to MR rows and 16 columns (8 when not
 * wide) in 2·MR registers. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
tile_avx2(const int rows, const bool wide, int cols, int64_t K,
          const float *A, int64_t sa, int64_t sk, const float *B,
          int64_t ldb, float *O, int64_t ldo, bool acc)
{
	const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
	__m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols), lane);
	__m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols - 8), lane);
	__m256 c0[MR], c1[MR];
	for (int i = 0; i < rows; i++)
		c0[i] = c1[i] = _mm256_setzero_ps();
	for (int64_t k = 0; k < K; k++) {
		__m256 b0 = _mm256_maskload_ps(B + k * ldb, m0), b1 = b0;
		if (wide)
			b1 = _mm256_maskload_ps(B + k * ldb + 8, m1);
		for (int i = 0; i < rows; i++) {
			__m256 a = _mm256_broadcast_ss(A + i * sa + k * sk);
			c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
			if (wide)
				c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
		}
	}
	for (int i = 0; i < rows; i++) {
		float *o = O + i * ldo;
		if (acc)
			c0[i] = _mm256_add_ps(c0[i], _mm256_maskload_ps(o, m0));
		_mm256_maskstore_ps(o, m0, c0[i]);
		if (!wide)
			continue;
		if (acc)
			c1[i] = _mm256_add_ps(c1[i], _mm256_maskload_ps(o + 8, m1));
		_mm256_maskstore_ps(o + 8, m1, c1[i]);
	}
}

/* rows_avx2: rows i0 … i1-1 of g in 16-column tiles. */
__attribute__((target("avx2,fma"))) static void
rows_avx2(const Mat *g, int64_t i0, int64_t i1)
{
	for (int64_t k0 = 0; k0 < g->K; k0 += KC) {
		int64_t kc = g->K - k0 < KC ? g->K - k0 : KC;
		bool acc = g->acc || k0 > 0;
		for (int64_t j = 0; j < g->N; j += 16) {
			int cols = g->N - j < 16 ? (int)(g->N - j) : 16;
			const float *b = g->B + k0 * g->ldb + j;
			for (int64_t i = i0; i < i1; i += MR) {
				int rows = i1 - i < MR ? (int)(i1 - i) : MR;
				const float *a = g->A + i * g->sa + k0 * g->sk;
				float *o = g->O + i * g->ldo + j;
#define TILE(r, w) case 2 * (r) + (w): \
	tile_avx2(r, w, cols, kc, a, g->sa, g->sk, b, g->ldb, o, g->ldo, acc); break;
				switch (2 * rows + (cols > 8)) {
				TILE(1, 0) TILE(1, 1) TILE(2, 0) TILE(2, 1) TILE(3, 0) TILE(3, 1)
				TILE(4, 0) TILE(4, 1) TILE(5, 0) TILE(5, 1) TILE(6, 0) TILE(6, 1)
				}
#undef TILE
			}
		}
	}
}
#endif

/* gemm_rows: rows i0 … i1-1 of g with the widest tiles this CPU runs
 * (PA_ISA may force a narrower set). */
static void gemm_rows(const Mat *g, int64_t i0, int64_t i1)
{
	if (g->K == 0) {
		for (int64_t i = i0; i < i1 && !g->acc; i++)
			memset(g->O + i * g->ldo, 0, (size_t)g->N * sizeof(float));
		return;
	}
#if defined(__x86_64__)
	if (pa_isa() == PA_ISA_AVX512)
		return rows_avx512(g, i0, i1);
	if (pa_isa() == PA_ISA_AVX2)
		return rows_avx2(g, i0, i1);
#endif
	rows_generic(g, i0, i1);
}

/* gemm_batch: nbat products of contiguous [M][K] (or [K][M] when xa),
 * [K][N] and [M][N] blocks, spread over the threads in pieces of RB rows
 * when par and the work is worth it. */
static void gemm_batch(int64_t nbat, int64_t M, int64_t N, int64_t K,
                       const float *A, bool xa, const float *B, float *O,
                       bool acc, int nt, bool par)
{
	int64_t nrb = (M + RB - 1) / RB, tasks = nbat * nrb;
	bool many = par && nt > 1 && tasks > 1 && (double)nbat * M * N * K > 1e6;
	#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (many)
	for (int64_t t = 0; t < tasks; t++) {
		int64_t bi = t / nrb, i0 = t % nrb * RB;
		Mat g = {.M = M, .N = N, .K = K, .A = A + bi * M * K,
		         .sa = xa ? 1 : K, .sk = xa ? M : 1, .B = B + bi * K * N,
		         .ldb = N, .O = O + bi * M * N, .ldo = N, .acc = acc};
		gemm_rows(&g, i0, i0 + RB < M ? i0 + RB : M);
	}
}

/* pa_approx_gemm: see pa_approx.h. */
void pa_approx_gemm(int64_t nbat, int64_t M, int64_t N, int64_t K, const float *A,
                    const float *B, float *O, int acc, int nt, int par)
{
	gemm_batch(nbat, M, N, K, A, false, B, O, acc, nt, par);
}

/* --------------------------------------------------------------- leaves */

/* side_row: a[(i, l)] = Π of the factor inputs of monomial mono[i] of edge
 * ed on x_v, at row r and column l (A_{e,v} of pa_approx.h). */
static void side_row(const Engine *E, const pa_approx_edge *ed, int v,
                     int64_t r, float *a)
{
	const pa_kernel_info *k = E->k;
	int hd = k->head_dim;
	for (int i = 0; i < ed->nmono; i++) {
		float *ai = a + i * hd;
		for (int l = 0; l < hd; l++)
			ai[l] = 1.0f;
		for (int q = 0; q < k->num_inputs; q++) {
			const pa_input_desc *d = &k->inputs[q];
			if (d->kind != PA_INPUT_FACTOR || d->monomial != ed->mono[i] ||
			    d->variable != v)
				continue;
			const float *x = E->in[q] + r * hd;
			for (int l = 0; l < hd; l++)
				ai[l] *= x[l];
		}
	}
}

/* feature_block: from at[d][r] (coordinate d of row r), ph[f][r] =
 * φ_f of row r.  Its loops over the FR rows vectorize; it inlines into
 * one function per ISA below, which then transpose rows 0 … rows-1 into
 * out (nf floats each), times weight[f] when weight is not NULL. */
__attribute__((always_inline)) static inline void
feature_block(int nf, const int *parent, const int *coord, float (*ph)[FR],
              float (*at)[FR])
{
	for (int r = 0; r < FR; r++)
		ph[0][r] = 1.0f;
	for (int f = 1; f < nf; f++) {
		const float *pp = ph[parent[f]], *ac = at[coord[f]];
		float x[FR];             /* apart from ph, so no overlap to test */
		for (int r = 0; r < FR; r++)
			x[r] = pp[r] * ac[r];
		memcpy(ph[f], x, sizeof x);
	}
}

static void feature_generic(int nf, const int *parent, const int *coord,
                            const float *weight, float (*ph)[FR],
                            float (*at)[FR], int rows, float *out)
{
	feature_block(nf, parent, coord, ph, at);
	if (!out)
		return;
	for (int f = 0; f < nf; f++) {
		float w = weight ? weight[f] : 1.0f;
		for (int r = 0; r < rows; r++)
			out[r * nf + f] = ph[f][r] * w;
	}
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void
feature_avx2(int nf, const int *parent, const int *coord, const float *weight,
             float (*ph)[FR], float (*at)[FR], int rows, float *out)
{
	feature_block(nf, parent, coord, ph, at);
	if (!out)
		return;
	for (int f = 0; f < nf; f++) {
		float w = weight ? weight[f] : 1.0f;
		for (int r = 0; r < rows; r++)
			out[r * nf + f] = ph[f][r] * w;
	}
}

/* transpose16: the 16 × 16 matrix in r, rows to columns (FR is 16). */
__attribute__((target("avx512f"))) static inline void transpose16(__m512 r[16])
{
	__m512 t[16];
	for (int i = 0; i < 8; i++) {
		t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
		t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
	}
	for (int i = 0; i < 4; i++) {
		r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
		r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xee);
		r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
		r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xee);
	}
	for (int i = 0; i < 4; i++) {
		t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
		t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
		t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
		t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
	}
	for (int i = 0; i < 8; i++) {
		r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
		r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
	}
}

/* feature_avx512: the transpose by blocks of 16 rows and 16 features. */
__attribute__((target("avx512f"))) static void
feature_avx512(int nf, const int *parent, const int *coord, const float *weight,
               float (*ph)[FR], float (*at)[FR], int rows, float *out)
{
	feature_block(nf, parent, coord, ph, at);
	if (!out)
		return;
	for (int f0 = 0; f0 < nf; f0 += 16) {
		int cols = nf - f0 < 16 ? nf - f0 : 16;
		__mmask16 m = cols == 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
		__m512 w = weight ? _mm512_maskz_loadu_ps(m, weight + f0) : _mm512_set1_ps(1.0f);
		for (int r0 = 0; r0 < rows; r0 += 16) {
			__m512 x[16];
			for (int i = 0; i < 16; i++)
				x[i] = i < cols ? _mm512_loadu_ps(ph[f0 + i] + r0) : _mm512_setzero_ps();
			transpose16(x);
			for (int r = 0; r < 16 && r0 + r < rows; r++)
				_mm512_mask_storeu_ps(out + (r0 + r) * nf + f0, m,
				                      _mm512_mul_ps(x[r], w));
		}
	}
}
#endif

/* pa_approx_feature_block: see pa_approx.h. */
void pa_approx_feature_block(int nf, const int *parent, const int *coord,
                             const float *weight, float *ph, float *at, int rows,
                             float *out)
{
	void (*block)(int, const int *, const int *, const float *, float (*)[FR],
	              float (*)[FR], int, float *) = feature_generic;
#if defined(__x86_64__)
	if (pa_isa() == PA_ISA_AVX512)
		block = feature_avx512;
	else if (pa_isa() == PA_ISA_AVX2)
		block = feature_avx2;
#endif
	block(nf, parent, coord, weight, (float (*)[FR])ph, (float (*)[FR])at, rows, out);
}

/* leaf_features: rows r0 … r1-1 of Φ_{e,v}: φ_0 = 1, φ_f = φ_parent[f] ·
 * A[coord[f]], times weight[f] on weight_var.  FR rows are made side by
 * side in scratch ((nfeat + D) · FR floats), one vector per feature. */
static void leaf_features(const Engine *E, const pa_approx_leaf *lf,
                          int64_t r0, int64_t r1, float *dst, float *scratch)
{
	const pa_approx_edge *ed = &E->p->edges[lf->edge];
	int nf = ed->nfeat, D = ed->nmono * E->k->head_dim;
	const float *w = lf->var == ed->weight_var ? ed->weight : NULL;
	float (*ph)[FR] = (float (*)[FR])scratch, (*at)[FR] = ph + nf, a[D];
	void (*block)(int, const int *, const int *, const float *, float (*)[FR],
	              float (*)[FR], int, float *) = feature_generic;
#if defined(__x86_64__)
	if (pa_isa() == PA_ISA_AVX512)
		block = feature_avx512;
	else if (pa_isa() == PA_ISA_AVX2)
		block = feature_avx2;
#endif
	for (int64_t b = r0; b < r1; b += FR) {
		int rows = r1 - b < FR ? (int)(r1 - b) : FR;
		for (int r = 0; r < FR; r++) {
			if (r < rows)
				side_row(E, ed, lf->var, b + r, a);
			for (int d = 0; d < D; d++)
				at[d][r] = r < rows ? a[d] : 0.0f;
		}
		block(nf, ed->parent, ed->coord, w, ph, at, rows, dst + (b - r0) * nf);
	}
}

/* value_input: the input holding x_v's values, or -1. */
static int value_input(const pa_kernel_info *k, int v)
{
	for (int i = 0; i < k->num_inputs; i++)
		if (k->inputs[i].kind == PA_INPUT_VALUE && k->inputs[i].variable == v)
			return i;
	return -1;
}

/* leaf_weights: rows r0 … r1-1 of W_v: exp(b_v - max b_v) times V_v (ones
 * without values) and alone in the last channel; alone without c. */
static void leaf_weights(const Engine *E, const pa_approx_leaf *lf,
                         int64_t r0, int64_t r1, float *dst)
{
	const float *ew = E->ew[lf->var];
	int vd = E->k->value_dim, vin = value_input(E->k, lf->var);
	const float *v = vin >= 0 ? E->in[vin] : NULL;
	for (int64_t r = r0; r < r1; r++) {
		if (lf->nidx == 1) {
			dst[r - r0] = ew[r];
			continue;
		}
		float *w = dst + (r - r0) * (vd + 1);
		for (int c = 0; c < vd; c++)
			w[c] = v ? ew[r] * v[r * vd + c] : ew[r];
		w[vd] = ew[r];
	}
}

/* leaf_rows: rows r0 … r1-1 of leaf l into dst, in its layout; scratch
 * holds E->scratch floats. */
static void leaf_rows(const Engine *E, int l, int64_t r0, int64_t r1, float *dst,
                      float *scratch)
{
	const pa_approx_leaf *lf = &E->p->leaves[l];
	if (lf->kind == PA_LEAF_FEATURES)
		leaf_features(E, lf, r0, r1, dst, scratch);
	else
		leaf_weights(E, lf, r0, r1, dst);
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

/* pa_approx_bias_exp: see pa_approx.h. */
void pa_approx_bias_exp(const pa_kernel_info *k, const float *const in[], int64_t n,
                        int v, float *ew)
{
	int hd = k->head_dim;
	for (int64_t r = 0; r < n; r++)
		ew[r] = 0.0f;
	for (int m = 0; m < k->num_monomials && v != 1; m++) {
		if (!bias_only(k, m, v))
			continue;
		float c = (float)(k->scale * k->coefficients[m]);
		for (int64_t r = 0; r < n; r++) {
			float dot = 0.0f;
			for (int l = 0; l < hd; l++) {
				float x = 1.0f;
				for (int i = 0; i < k->num_inputs; i++)
					if (k->inputs[i].kind == PA_INPUT_FACTOR && k->inputs[i].monomial == m)
						x *= in[i][r * hd + l];
				dot += x;
			}
			ew[r] += c * dot;
		}
	}
	float mx = -INFINITY;
	for (int64_t r = 0; r < n; r++)
		mx = ew[r] > mx ? ew[r] : mx;
	for (int64_t r = 0; r < n; r++)
		ew[r] = expf(ew[r] - mx);
}

/* ---------------------------------------------------------------- plans */

/* check_edges: every edge's tables index what they may. */
static bool check_edges(const Engine *E)
{
	const pa_kernel_info *k = E->k;
	for (int e = 0; e < E->p->nedges; e++) {
		const pa_approx_edge *ed = &E->p->edges[e];
		int D = ed->nmono * k->head_dim;
		if (ed->nmono < 1 || D > MAX_COORDS || ed->nfeat < 1 ||
		    __builtin_popcount(ed->vars) < 2 || (ed->vars & 1u) ||
		    ed->vars >> (E->t + 1))
			return false;
		for (int i = 0; i < ed->nmono; i++)
			if (ed->mono[i] < 0 || ed->mono[i] >= k->num_monomials)
				return false;
		for (int f = 1; f < ed->nfeat; f++)
			if (ed->parent[f] < 0 || ed->parent[f] >= f ||
			    ed->coord[f] < 0 || ed->coord[f] >= D)
				return false;
	}
	return true;
}

/* set_tensor: T's indices from list, its strides and size; false when an
 * id repeats, is out of range or the size is too large. */
static bool set_tensor(const Engine *E, Tensor *T, int nidx, const int *list)
{
	if (nidx < 0 || nidx > MAXI)
		return false;
	T->nidx = nidx;
	T->mask = 0;
	memset(T->st, 0, sizeof T->st);
	int64_t s = 1;
	for (int i = nidx - 1; i >= 0; i--) {
		int id = list[i];
		if (id < 0 || id >= E->nid || (T->mask & bit(id)))
			return false;
		T->idx[i] = id;
		T->mask |= bit(id);
		T->st[id] = s;
		if (__builtin_mul_overflow(s, E->dim[id], &s) || s > MAX_FLOATS)
			return false;
	}
	T->size = s;
	T->row = nidx ? s / E->dim[T->idx[0]] : 1;
	T->consumer = -1;
	return true;
}

/* check_leaf: leaf l has the kind and indices pa_approx.h gives it. */
static bool check_leaf(const Engine *E, int l)
{
	const pa_approx_leaf *lf = &E->p->leaves[l];
	int v = lf->var;
	if (v < 1 || v > E->t || lf->nidx < 1 || lf->idx[0] != v)
		return false;
	if (lf->kind == PA_LEAF_FEATURES)
		return lf->edge >= 0 && lf->edge < E->p->nedges &&
		       (E->p->edges[lf->edge].vars >> v & 1u) && lf->nidx == 2 &&
		       lf->idx[1] == E->t + 1 + lf->edge;
	return lf->kind == PA_LEAF_WEIGHTS &&
	       (lf->nidx == 1 || (lf->nidx == 2 && lf->idx[1] == 0));
}

/* check_step: step s reads unread earlier tensors, and its out holds
 * exactly their indices but the sum; sets its result's tensor. */
static bool check_step(Engine *E, int s)
{
	const pa_approx_step *st = &E->p->steps[s];
	int self = E->p->nleaves + s;
	if (st->nin < 1 || st->nin > MAXIN || st->sum < -1 || st->sum >= E->nid)
		return false;
	uint64_t u = 0;
	for (int i = 0; i < st->nin; i++) {
		int id = st->in[i];
		if (id < 0 || id >= self || E->T[id].consumer >= 0)
			return false;
		E->T[id].consumer = s;
		u |= E->T[id].mask;
	}
	Tensor *R = &E->T[self];
	return set_tensor(E, R, st->nout, st->out) && R->mask == (u & ~bit(st->sum));
}

/* mask_size: Π of the sizes of the ids in m. */
static double mask_size(const Engine *E, uint64_t m)
{
	double s = 1;
	for (int id = 0; id < E->nid; id++)
		if (m >> id & 1u)
			s *= (double)E->dim[id];
	return s;
}

/* others_mask: the indices of step s's inputs but input skip. */
static uint64_t others_mask(const Engine *E, const pa_approx_step *st, int skip)
{
	uint64_t m = 0;
	for (int i = 0; i < st->nin; i++)
		if (i != skip)
			m |= E->T[st->in[i]].mask;
	return m;
}

/* choose_b: the input of step s that becomes B: one holding the sum,
 * preferring b without a position index, then the largest b, then the
 * later input; -1 if no input holds the sum. */
static int choose_b(const Engine *E, const pa_approx_step *st)
{
	int best = -1;
	bool bestpos = true;
	double bestsize = -1;
	for (int i = 0; i < st->nin; i++) {
		uint64_t m = E->T[st->in[i]].mask;
		if (!(m & bit(st->sum)))
			continue;
		uint64_t b = m & ~others_mask(E, st, i) & ~bit(st->sum);
		bool pos = b & E->posmask;
		double size = mask_size(E, b);
		if ((bestpos && !pos) || (pos == bestpos && size >= bestsize))
			best = i, bestpos = pos, bestsize = size;
	}
	return best;
}

/* pick: the ids of list (in its order) that lie in m, into out. */
static int pick(const int *list, int len, uint64_t m, int *out)
{
	int c = 0;
	for (int i = 0; i < len; i++)
		if (m >> list[i] & 1u)
			out[c++] = list[i];
	return c;
}

/* same_list: T's layout is the concatenation of the parts (ids or -1
 * for an empty part are skipped). */
static bool same_list(const Tensor *T, int n1, const int *l1, int mid,
                      int n2, const int *l2, int n3, const int *l3)
{
	int list[3 * MAXI + 1], c = 0;
	for (int i = 0; i < n1; i++)
		list[c++] = l1[i];
	if (mid >= 0)
		list[c++] = mid;
	for (int i = 0; i < n2; i++)
		list[c++] = l2[i];
	for (int i = 0; i < n3; i++)
		list[c++] = l3[i];
	return c == T->nidx && memcmp(list, T->idx, (size_t)c * sizeof *list) == 0;
}

/* first_ok: a chunk of p is a slice of T (p absent, or T's first index). */
static bool first_ok(const Tensor *T, int p)
{
	return p < 0 || !(T->mask & bit(p)) || T->idx[0] == p;
}

/* geo_orders: B, the index groups and their orders, and p for step s. */
static void geo_orders(Engine *E, const pa_approx_step *st, Geo *g)
{
	const Tensor *B = &E->T[st->in[g->bin]], *R = &E->T[E->p->nleaves + (g - E->G)];
	uint64_t oth = others_mask(E, st, g->bin), xb = bit(g->x);
	g->nbat = pick(B->idx, B->nidx, oth & ~xb, g->bat);
	g->nb = pick(B->idx, B->nidx, ~oth & ~xb, g->b);
	const Tensor *A1 = st->nin == 2 ? &E->T[st->in[1 - g->bin]] : R;
	g->na = pick(A1->idx, A1->nidx, oth & ~B->mask & ~xb, g->a);
	g->p = -1;
	if (E->posmask & xb)
		g->p = g->x;
	for (int i = 0; i < g->nbat && g->p < 0; i++)
		if (E->posmask & bit(g->bat[i]))
			g->p = g->bat[i];
	for (int i = 0; i < g->na && g->p < 0; i++)
		if (E->posmask & bit(g->a[i]))
			g->p = g->a[i];
}

/* geo_layouts: which of A, B and O are used where they lie. */
static void geo_layouts(Engine *E, const pa_approx_step *st, Geo *g, int s)
{
	const Tensor *B = &E->T[st->in[g->bin]], *R = &E->T[E->p->nleaves + s];
	g->zcb = same_list(B, g->nbat, g->bat, g->x, g->nb, g->b, 0, NULL) &&
	         first_ok(B, g->p);
	g->zca = false;
	g->xa = g->x == g->p;
	if (st->nin == 2) {
		const Tensor *A = &E->T[st->in[1 - g->bin]];
		if (same_list(A, g->nbat, g->bat, g->x, g->na, g->a, 0, NULL) && first_ok(A, g->p))
			g->zca = true, g->xa = true;
		else if (same_list(A, g->nbat, g->bat, -1, g->na, g->a, 1, &g->x) &&
		         first_ok(A, g->p))
			g->zca = true, g->xa = false;
	}
	g->direct = same_list(R, g->nbat, g->bat, -1, g->na, g->a, g->nb, g->b) &&
	            (g->x == g->p || first_ok(R, g->p));
}

/* layout_size: floats of the concatenated groups with p's size rows. */
static int64_t layout_size(const Engine *E, int p, int64_t rows, int n1,
                           const int *l1, int mid, int n2, const int *l2)
{
	int64_t s = mid >= 0 ? (mid == p ? rows : E->dim[mid]) : 1;
	for (int i = 0; i < n1; i++)
		s *= l1[i] == p ? rows : E->dim[l1[i]];
	for (int i = 0; i < n2; i++)
		s *= l2[i] == p ? rows : E->dim[l2[i]];
	return s;
}

/* task_floats: floats of one task's buffers with chunks of rows. */
static int64_t task_floats(const Engine *E, const pa_approx_step *st,
                           const Geo *g, int64_t rows)
{
	int64_t f = 0;
	for (int i = 0; i < st->nin; i++)
		if (E->T[st->in[i]].lazy)
			f += pad16(rows * E->T[st->in[i]].row);
	if (!g->zcb)
		f += pad16(layout_size(E, g->p, rows, g->nbat, g->bat, g->x, g->nb, g->b));
	if (!g->zca)
		f += pad16(layout_size(E, g->p, rows, g->nbat, g->bat, g->x, g->na, g->a));
	if (!g->direct && g->x != g->p) {
		int64_t o = layout_size(E, g->p, rows, g->nbat, g->bat, -1, g->na, g->a);
		f += pad16(o * layout_size(E, g->p, rows, g->nb, g->b, -1, 0, NULL));
	}
	return f;
}

/* step_need: floats of one task of step s with chunks of rows, with the
 * tasks of the steps whose results it builds by chunks (each runs in the
 * space after the rows it makes, before step s packs). */
static int64_t step_need(const Engine *E, int s, int64_t rows)
{
	const pa_approx_step *st = &E->p->steps[s];
	int64_t f = task_floats(E, st, &E->G[s], rows);
	for (int i = 0; i < st->nin; i++)
		if (st->in[i] >= E->p->nleaves && E->T[st->in[i]].lazy)
			f += step_need(E, st->in[i] - E->p->nleaves, rows);
	return f;
}

/* geo_chunk: rows per task within BUDGET, and enough tasks for the
 * threads; the thread's buffers, with its accumulator when x = p. */
static void geo_chunk(Engine *E, int s, Geo *g)
{
	int64_t n = E->n, share = (n + E->nt - 1) / E->nt, c = n;
	if (g->p >= 0) {
		c = CHUNK < share ? CHUNK : share;
		while (c > 16 && step_need(E, s, c) > BUDGET)
			c /= 2;
	}
	g->chunk = c;
	g->ws = step_need(E, s, g->chunk);
	if (g->x == g->p)
		g->ws += pad16(layout_size(E, -1, 0, g->nbat, g->bat, -1, g->na, g->a) *
		               layout_size(E, -1, 0, g->nb, g->b, -1, 0, NULL));
}

/* fusable: tensor id, an input of a product step g chunked over p, can
 * be built by chunks of rows of p inside g's tasks: a leaf whose first
 * index is p, or, when g keeps p (an output position), the result of a
 * product step chunked over the same p as an output position (its rows
 * of p are made by its tasks for those rows alone) whose first index is
 * p.  A step summing p keeps its results stored: its chunks then hold
 * the rows of its leaves already, and would shrink for the others'. */
static bool fusable(const Engine *E, int id, const Geo *g)
{
	const Tensor *T = &E->T[id];
	if (g->p < 0 || T->nidx < 1 || T->idx[0] != g->p)
		return false;
	if (id < E->p->nleaves)
		return true;
	const Geo *h = &E->G[id - E->p->nleaves];
	return g->x != g->p && h->gemm && h->p == g->p && h->x != g->p;
}

/* plan_step: step s's geometry; the leaves and earlier results it builds
 * by chunks become lazy. */
static void plan_step(Engine *E, int s)
{
	const pa_approx_step *st = &E->p->steps[s];
	Geo *g = &E->G[s];
	memset(g, 0, sizeof *g);
	g->x = st->sum;
	g->p = -1;
	g->bin = st->sum >= 0 && st->nin >= 2 ? choose_b(E, st) : -1;
	g->gemm = g->bin >= 0;
	if (!g->gemm)
		return;
	geo_orders(E, st, g);
	for (int i = 0; i < st->nin; i++) {
		Tensor *T = &E->T[st->in[i]];
		T->lazy = fusable(E, st->in[i], g);
	}
	geo_layouts(E, st, g, s);
	geo_chunk(E, s, g);
}

/* plan: check p against k and n and lay out every tensor and step;
 * PA_ERR_UNSUPPORTED for a plan this engine cannot run. */
static pa_status plan(Engine *E)
{
	const pa_approx_plan *p = E->p;
	E->t = E->k->num_vars;
	E->nid = 1 + E->t + p->nedges;
	if (E->t < 1 || E->t > MAX_VARS || E->nid > MAX_ID || p->nleaves < 1 ||
	    p->nsteps < 0 || !check_edges(E))
		return PA_ERR_UNSUPPORTED;
	E->dim[0] = E->k->value_dim + 1;
	for (int j = 1; j <= E->t; j++)
		E->dim[j] = E->n, E->posmask |= bit(j);
	for (int e = 0; e < p->nedges; e++)
		E->dim[E->t + 1 + e] = p->edges[e].nfeat;
	E->ntens = p->nleaves + p->nsteps;
	if (!(E->T = calloc(E->ntens, sizeof *E->T)) ||
	    !(E->G = calloc(p->nsteps ? p->nsteps : 1, sizeof *E->G)))
		return PA_ERR_NOMEM;
	for (int l = 0; l < p->nleaves; l++)
		if (!check_leaf(E, l) || !set_tensor(E, &E->T[l], p->leaves[l].nidx, p->leaves[l].idx))
			return PA_ERR_UNSUPPORTED;
	for (int s = 0; s < p->nsteps; s++)
		if (!check_step(E, s))
			return PA_ERR_UNSUPPORTED;
	const Tensor *R = &E->T[E->ntens - 1];
	if (R->nidx < 1 || (R->mask != bit(1) && R->mask != (bit(1) | bit(0))))
		return PA_ERR_UNSUPPORTED;
	for (int s = 0; s < p->nsteps; s++)
		plan_step(E, s);
	return PA_OK;
}

/* alloc_all: the stored tensors, the bias arrays and every thread's
 * buffers, in two blocks. */
static pa_status alloc_all(Engine *E)
{
	size_t total = 0;
	size_t off[E->ntens], ewoff[MAX_VARS + 1];
	for (int i = 0; i < E->ntens; i++)
		if (!E->T[i].lazy)
			off[i] = pa_carve(&total, E->T[i].size, 1, 1);
	for (int v = 1; v <= E->t; v++)
		ewoff[v] = pa_carve(&total, E->n, 1, 1);
	E->per_thread = 16;
	for (int s = 0; s < E->p->nsteps; s++)
		if (!E->T[E->p->nleaves + s].lazy && E->G[s].ws > E->per_thread)
			E->per_thread = E->G[s].ws;
	E->scratch = 16;
	for (int e = 0; e < E->p->nedges; e++) {
		const pa_approx_edge *ed = &E->p->edges[e];
		int64_t f = pad16((int64_t)(ed->nfeat + ed->nmono * E->k->head_dim) * FR);
		E->scratch = f > E->scratch ? f : E->scratch;
	}
	E->per_thread += E->scratch;
	size_t wtotal = 0;
	pa_carve(&wtotal, E->nt, E->per_thread, 1);
	if (!(E->mem = pa_alloc(total)) || !(E->work = pa_alloc(wtotal)))
		return PA_ERR_NOMEM;
	for (int i = 0; i < E->ntens; i++)
		E->T[i].data = E->T[i].lazy ? NULL : E->mem + off[i];
	for (int v = 1; v <= E->t; v++)
		E->ew[v] = E->mem + ewoff[v];
	return PA_OK;
}

/* ---------------------------------------------------------------- steps */

/* Where one task reads and writes. */
typedef struct Task {
	int64_t r0, r1;          /* rows of p */
	int64_t dim[MAX_ID];     /* index sizes, p's restricted to the rows */
	const float *ptr[MAXIN]; /* each input at row r0 of p */
	float *at;               /* the thread's free buffer space */
	float *scratch;          /* the thread's leaf scratch */
} Task;

static void run_task(const Engine *E, int s, int64_t r0, int64_t r1,
                     float *buf, float *acc, float *scratch, float *res, bool par);

/* task_inputs: each input's pointer for the task's rows: a lazy leaf's
 * rows are built into the buffer, a lazy step result's by that step's
 * task for the same rows, in the space after them. */
static void task_inputs(const Engine *E, const pa_approx_step *st, int p,
                        Task *k, bool par)
{
	for (int i = 0; i < st->nin; i++) {
		int id = st->in[i];
		const Tensor *T = &E->T[id];
		if (T->lazy) {
			float *rows = k->at;
			k->at += pad16((k->r1 - k->r0) * T->row);
			if (id < E->p->nleaves)
				leaf_rows(E, id, k->r0, k->r1, rows, k->scratch);
			else
				run_task(E, id - E->p->nleaves, k->r0, k->r1, k->at, NULL,
				         k->scratch, rows, par);
			k->ptr[i] = rows;
		} else {
			k->ptr[i] = T->data + (p >= 0 ? k->r0 * T->st[p] : 0);
		}
	}
}

/* pack: dst = the product of the sources (each input of step st whose
 * bit is in which) laid out as the concatenated groups under the task's
 * sizes, contiguous. */
static void pack(const Engine *E, const pa_approx_step *st, const Task *k,
                 uint32_t which, float *dst, int n1, const int *l1, int mid,
                 int n2, const int *l2)
{
	Walk w = {.dst = dst};
	int list[MAXW];
	for (int i = 0; i < n1; i++)
		list[w.nd++] = l1[i];
	if (mid >= 0)
		list[w.nd++] = mid;
	for (int i = 0; i < n2; i++)
		list[w.nd++] = l2[i];
	for (int i = 0; i < st->nin; i++)
		if (which >> i & 1u) {
			w.src[w.nsrc] = k->ptr[i];
			for (int d = 0; d < w.nd; d++)
				w.ss[w.nsrc][d] = E->T[st->in[i]].st[list[d]];
			w.nsrc++;
		}
	int64_t s = 1;
	for (int d = w.nd - 1; d >= 0; d--) {
		w.dim[d] = k->dim[list[d]];
		w.ds[d] = s;
		s *= w.dim[d];
	}
	if (w.nd == 0)
		w.nd = 1, w.dim[0] = 1, w.ds[0] = 1;
	walk(&w);
}

/* scatter: the result's rows of the task from O, laid out [bat][a][b],
 * into res (the result at row r0 of p, or at its start when x = p). */
static void scatter(const Engine *E, const Geo *g, const Tensor *R,
                    const Task *k, const float *O, float *res, bool par)
{
	Walk w = {.nsrc = 1, .src = {O}};
	int list[3 * MAXI];
	for (int i = 0; i < g->nbat; i++)
		list[w.nd++] = g->bat[i];
	for (int i = 0; i < g->na; i++)
		list[w.nd++] = g->a[i];
	for (int i = 0; i < g->nb; i++)
		list[w.nd++] = g->b[i];
	int64_t s = 1;
	for (int d = w.nd - 1; d >= 0; d--) {
		w.dim[d] = k->dim[list[d]];
		w.ss[0][d] = s;
		w.ds[d] = R->st[list[d]];
		s *= w.dim[d];
	}
	w.dst = res;
	if (w.nd == 0)
		w.nd = 1, w.dim[0] = 1, w.ds[0] = w.ss[0][0] = 1;
	walk_par(&w, E->nt, par);
}

/* group_size: Π of the task's sizes of a group. */
static int64_t group_size(const Task *k, int n, const int *l)
{
	int64_t s = 1;
	for (int i = 0; i < n; i++)
		s *= k->dim[l[i]];
	return s;
}

/* run_task: rows r0 … r1-1 of p of a product step (see the file
 * comment); buf is the thread's buffers, acc its accumulator when x = p,
 * else res where the result's row r0 of p goes (the stored result, or
 * the rows of a lazy one). */
static void run_task(const Engine *E, int s, int64_t r0, int64_t r1,
                     float *buf, float *acc, float *scratch, float *res, bool par)
{
	const pa_approx_step *st = &E->p->steps[s];
	const Geo *g = &E->G[s];
	const Tensor *R = &E->T[E->p->nleaves + s];
	Task k = {.r0 = r0, .r1 = r1, .at = buf, .scratch = scratch};
	memcpy(k.dim, E->dim, sizeof k.dim);
	if (g->p >= 0)
		k.dim[g->p] = r1 - r0;
	task_inputs(E, st, g->p, &k, par);
	const float *B = k.ptr[g->bin], *A = g->zca ? k.ptr[1 - g->bin] : NULL;
	if (!g->zcb) {
		pack(E, st, &k, 1u << g->bin, k.at, g->nbat, g->bat, g->x, g->nb, g->b);
		B = k.at;
		k.at += pad16(group_size(&k, g->nbat, g->bat) * k.dim[g->x] *
		              group_size(&k, g->nb, g->b));
	}
	if (!g->zca) {
		uint32_t all = (uint32_t)((1ull << st->nin) - 1) & ~(1u << g->bin);
		int ax[MAXI + 1];       /* [a][x]: x last */
		memcpy(ax, g->a, sizeof(int) * g->na);
		ax[g->na] = g->x;
		if (g->xa)
			pack(E, st, &k, all, k.at, g->nbat, g->bat, g->x, g->na, g->a);
		else
			pack(E, st, &k, all, k.at, g->nbat, g->bat, -1, g->na + 1, ax);
		A = k.at;
		k.at += pad16(group_size(&k, g->nbat, g->bat) * k.dim[g->x] *
		              group_size(&k, g->na, g->a));
	}
	float *O = acc;
	if (g->x != g->p)
		O = g->direct ? res : k.at;
	gemm_batch(group_size(&k, g->nbat, g->bat), group_size(&k, g->na, g->a),
	           group_size(&k, g->nb, g->b), k.dim[g->x], A, g->xa, B, O,
	           g->x == g->p, E->nt, par);
	if (g->x != g->p && !g->direct)
		scatter(E, g, R, &k, O, res, par);
}

/* thread_buf, thread_scratch: thread i's buffers and leaf scratch. */
static float *thread_buf(const Engine *E, int i)
{
	return E->work + (size_t)i * (size_t)E->per_thread + E->scratch;
}

static float *thread_scratch(const Engine *E, int i)
{
	return E->work + (size_t)i * (size_t)E->per_thread;
}

/* reduce: the result of a step whose sum is its chunked position: the
 * threads' accumulators added up, in place or through a scatter. */
static void reduce(const Engine *E, int s)
{
	const Geo *g = &E->G[s];
	const Tensor *R = &E->T[E->p->nleaves + s];
	float *dst = g->direct ? R->data : thread_buf(E, 0);
	int nt = E->nt;
	#pragma omp parallel for schedule(static) num_threads(nt) if (R->size > 4096)
	for (int64_t i = 0; i < R->size; i++) {
		float x = 0.0f;
		for (int t = 0; t < nt; t++)
			x += thread_buf(E, t)[i];
		dst[i] = x;
	}
	if (!g->direct) {
		Task k = {.r0 = 0, .r1 = E->n};
		memcpy(k.dim, E->dim, sizeof k.dim);
		scatter(E, g, R, &k, dst, R->data, true);
	}
}

/* run_gemm_step: step s by chunks of rows of p: over the threads when
 * there are enough chunks, else one after another with each product
 * spread over the threads. */
static void run_gemm_step(const Engine *E, int s)
{
	const Geo *g = &E->G[s];
	int64_t rows = g->p >= 0 ? E->n : 1, c = g->p >= 0 ? g->chunk : 1;
	int64_t ntask = (rows + c - 1) / c;
	bool summed = g->x == g->p;
	const Tensor *R = &E->T[E->p->nleaves + s];
	int64_t rs = g->p >= 0 && !summed ? R->st[g->p] : 0;
	int64_t accf = summed ? pad16(E->T[E->p->nleaves + s].size) : 0;
	for (int t = 0; summed && t < E->nt; t++)
		memset(thread_buf(E, t), 0, (size_t)accf * sizeof(float));
	if (ntask >= E->nt && E->nt > 1) {
		/* round robin: a thread sums the same chunks every call, so a
		 * summed result (and K_train's output) does not depend on timing */
		#pragma omp parallel for schedule(static, 1) num_threads(E->nt)
		for (int64_t i = 0; i < ntask; i++) {
			int id = omp_get_thread_num();
			float *buf = thread_buf(E, id);
			int64_t r1 = (i + 1) * c < rows ? (i + 1) * c : rows;
			run_task(E, s, i * c, r1, buf + accf, buf, thread_scratch(E, id),
			         R->data + i * c * rs, false);
		}
	} else {
		for (int64_t i = 0; i < ntask; i++) {
			int64_t r1 = (i + 1) * c < rows ? (i + 1) * c : rows;
			run_task(E, s, i * c, r1, thread_buf(E, 0) + accf, thread_buf(E, 0),
			         thread_scratch(E, 0), R->data + i * c * rs, true);
		}
	}
	if (summed)
		reduce(E, s);
}

/* run_walk_step: step s entry by entry: every output entry the sum over
 * x (when there is one) of the product of its inputs. */
static void run_walk_step(const Engine *E, int s)
{
	const pa_approx_step *st = &E->p->steps[s];
	const Tensor *R = &E->T[E->p->nleaves + s];
	Walk w = {.dst = R->data, .add = st->sum >= 0, .nsrc = st->nin};
	int list[MAXW];
	for (int i = 0; i < R->nidx; i++)
		list[w.nd++] = R->idx[i];
	if (st->sum >= 0)
		list[w.nd++] = st->sum;
	for (int d = 0; d < w.nd; d++) {
		w.dim[d] = E->dim[list[d]];
		w.ds[d] = R->st[list[d]];
		for (int i = 0; i < st->nin; i++)
			w.ss[i][d] = E->T[st->in[i]].st[list[d]];
	}
	for (int i = 0; i < st->nin; i++)
		w.src[i] = E->T[st->in[i]].data;
	if (w.nd == 0)
		w.nd = 1, w.dim[0] = 1;
	if (w.add)
		memset(R->data, 0, (size_t)R->size * sizeof(float));
	walk_par(&w, E->nt, true);
}

/* store_leaves: the bias weights of every variable with a weights leaf,
 * then every leaf no step builds by chunks, rows spread over the threads. */
static void store_leaves(Engine *E)
{
	const pa_approx_plan *p = E->p;
	bool done[MAX_VARS + 1] = {false};
	for (int l = 0; l < p->nleaves; l++) {
		int v = p->leaves[l].var;
		if (p->leaves[l].kind == PA_LEAF_WEIGHTS && !done[v])
			pa_approx_bias_exp(E->k, E->in, E->n, v, E->ew[v]), done[v] = true;
	}
	for (int l = 0; l < p->nleaves; l++) {
		const Tensor *T = &E->T[l];
		if (T->lazy)
			continue;
		int64_t nc = (E->n + 63) / 64;
		#pragma omp parallel for schedule(static) num_threads(E->nt)
		for (int64_t c = 0; c < nc; c++) {
			int64_t r1 = (c + 1) * 64 < E->n ? (c + 1) * 64 : E->n;
			leaf_rows(E, l, c * 64, r1, T->data + c * 64 * T->row,
			          thread_scratch(E, omp_get_thread_num()));
		}
	}
}

/* write_out: out[ℓ1, c] = R[ℓ1, c] / R[ℓ1, value_dim], ones without c. */
static void write_out(const Engine *E, float *out)
{
	const Tensor *R = &E->T[E->ntens - 1];
	int vd = E->k->value_dim;
	int64_t s1 = R->st[1], s0 = R->st[0];
	bool chan = R->mask & bit(0);
	#pragma omp parallel for schedule(static) num_threads(E->nt)
	for (int64_t r = 0; r < E->n; r++) {
		const float *x = R->data + r * s1;
		for (int c = 0; c < vd; c++)
			out[r * vd + c] = chan ? x[c * s0] / x[vd * s0] : 1.0f;
	}
}

/* run_entry: one batch entry: leaves, steps, output rows. */
static void run_entry(Engine *E, float *out)
{
	store_leaves(E);
	for (int s = 0; s < E->p->nsteps; s++) {
		if (E->T[E->p->nleaves + s].lazy)
			continue;             /* made inside its consumer's tasks */
		if (E->G[s].gemm)
			run_gemm_step(E, s);
		else
			run_walk_step(E, s);
	}
	write_out(E, out);
}

/* pa_factor_max: see pa_approx.h. */
double pa_factor_max(const pa_kernel_info *k, int64_t batch, int64_t n,
                     const float *const inputs[])
{
	float mx = 0.0f;
	for (int i = 0; i < k->num_inputs; i++) {
		if (k->inputs[i].kind != PA_INPUT_FACTOR)
			continue;
		const float *x = inputs[i];
		int64_t len = batch * n * k->inputs[i].cols;
		#pragma omp parallel for schedule(static) reduction(max : mx) if (len > 65536)
		for (int64_t e = 0; e < len; e++) {
			float a = fabsf(x[e]);
			mx = a > mx ? a : mx;
		}
	}
	return mx;
}

/* engine_free: everything an Engine holds (NULL entries are fine). */
static void engine_free(Engine *E)
{
	pa_free(E->mem);
	pa_free(E->work);
	free(E->T);
	free(E->G);
	free(E->in);
	free(E);
}

/* pa_approx_run: see pa_approx.h. */
pa_status pa_approx_run(const pa_kernel_info *k, const pa_approx_plan *p,
                        int64_t batch, int64_t n, const float *const inputs[],
                        float *out)
{
	pa_status st = pa_check_args(k, batch, n, inputs, out);
	if (st != PA_OK)
		return st;
	if (p->exact && n < p->min_n)
		return p->exact(batch, n, inputs, out);
	if (pa_factor_max(k, batch, n, inputs) > p->bound)
		return p->exact ? p->exact(batch, n, inputs, out) : PA_ERR_BOUND;
	if (p->tree)
		return pa_approx_tree_run(k, p, batch, n, inputs, out);
	Engine *E = calloc(1, sizeof *E);
	if (!E)
		return PA_ERR_NOMEM;
	*E = (Engine){.k = k, .p = p, .n = n, .nt = omp_get_max_threads()};
	E->in = malloc((size_t)(k->num_inputs > 0 ? k->num_inputs : 1) * sizeof *E->in);
	st = E->in ? plan(E) : PA_ERR_NOMEM;
	if (st == PA_OK)
		st = alloc_all(E);
	for (int64_t b = 0; b < batch && st == PA_OK; b++) {
		for (int i = 0; i < k->num_inputs; i++)
			E->in[i] = inputs[i] + b * n * k->inputs[i].cols;
		run_entry(E, out + b * n * k->value_dim);
	}
	engine_free(E);
	return st;
}
