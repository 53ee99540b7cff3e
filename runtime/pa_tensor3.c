/*
 * pa_tensor3.c - 3-tensor attention as matrix products:
 *
 *     out_i = V1_i ⊙ Σ_jk e^(s_ijk) V2_j ⊙ V3_k / Σ_jk e^(s_ijk),
 *     s_ijk = w · Σ_l q_il a_jl b_kl,
 *
 * q, a, b the factors on x1, x2, x3, w the scale times the coefficient,
 * a missing value matrix a row of ones.  For a query i and a key j,
 * r_ij = w · q_i ⊙ a_j makes the score bilinear, s_ijk = r_ij · b_k (the
 * idea of the 2-simplicial attention kernels): a block of T3_ROWS pairs
 * (i, j) against the keys k is one register-tiled matrix product with b,
 * its weights go through an online softmax over k (running maximum m_ij
 * and sum l_ij per pair, T3_KC keys at a time, so no score tensor is
 * stored), and o_ij = Σ_k e^(s_ijk - m_ij) V3_k is a second product.  The
 * pairs of query i are folded over j with a running maximum M:
 *
 *     out_i = V1_i ⊙ Σ_j e^(m_ij - M) V2_j ⊙ o_ij / Σ_j e^(m_ij - M) l_ij.
 *
 * Every sum holds its largest term as 1, so scores of 10⁴ stay finite and
 * exact.  The work is 2·n³·(head_dim + value_dim) flops in the two
 * products and n³ vector exps; query positions are spread over threads.
 * With nq queries against nk keys (pa_elim_run_qk) the pairs are (i, j)
 * for i < nq and j < nk: 2·nq·nk²·(head_dim + value_dim) flops.  The
 * kernel has no mask (pa_tensor3_takes), so where a query sits does not
 * matter.
 * AVX-512, AVX2 and portable forms of the tiles, chosen by pa_isa.
 */
#include "pa_tensor3.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pa_kernel.h"
#include "pa_math.h"
#include "pa_simd.h"

#define T3_ROWS 6               /* pairs (i, j) weighed at once */
#define T3_KT 64                /* keys of one score tile; n is padded to it */
#define T3_KC 512               /* keys of one step of the online softmax */

/* One call: sizes, inputs of the current batch entry, packed keys. */
typedef struct T3 {
	int64_t n, np;           /* keys; np: n rounded up to T3_KT */
	int64_t nq;              /* queries (rows of x1's inputs and out) */
	int hd, vd, vdp;         /* vdp: value_dim rounded up to 16 */
	float w;                 /* scale · coefficient */
	int fin[4], vin[4];      /* input index of x_v's factor, values (-1) */
	const float *f[4], *v[4]; /* the current batch entry's (v: NULL if none) */
	float *bt;               /* b by column in tiles of T3_KT keys (tile t:
	                            hd × T3_KT at t·T3_KT·hd), zero past n */
	float *v3;               /* np × vdp: V3 (or ones), zero past n and vd */
} T3;

/* A thread's block of pairs (i, j0 + r), r < T3_ROWS. */
typedef struct Pairs {
	float *r;                /* T3_ROWS × hd: r_ij */
	float *s;                /* T3_ROWS × T3_KC: scores, then weights */
	float *o;                /* T3_ROWS × vdp: o_ij */
	float *acc;              /* vdp: query i's running sum */
	float m[T3_ROWS], l[T3_ROWS];
} Pairs;

/* The tiles of one instruction set. */
typedef struct T3Isa {
	/* s[i·T3_KC + c] = Σ_l r[i·hd + l] · bt[l·ldb + c], i < T3_ROWS, c < T3_KT */
	void (*scores)(const float *r, int hd, const float *bt, int64_t ldb, float *s);
	/* the largest of s[0 .. len), len a multiple of T3_KT */
	float (*rowmax)(const float *s, int64_t len);
	/* s[c] = e^(s[c] - m) for c < len; returns their sum */
	float (*expsum)(float *s, int64_t len, float m);
	/* o[i·vdp + c] += Σ_k p[i·T3_KC + k] · v[k·vdp + c], i < T3_ROWS */
	void (*weigh)(const float *p, int64_t len, const float *v, int vdp, float *o);
} T3Isa;

/* --- portable tiles */

static void scores_generic(const float *r, int hd, const float *bt, int64_t ldb,
                           float *s)
{
	for (int i = 0; i < T3_ROWS; i++) {
		float *x = s + i * T3_KC;
		memset(x, 0, T3_KT * sizeof *x);
		for (int l = 0; l < hd; l++) {
			float a = r[i * hd + l];
			const float *b = bt + l * ldb;
			for (int c = 0; c < T3_KT; c++)
				x[c] += a * b[c];
		}
	}
}

static float rowmax_generic(const float *s, int64_t len)
{
	float m = -INFINITY;
	for (int64_t c = 0; c < len; c++)
		m = s[c] > m ? s[c] : m;
	return m;
}

static float expsum_generic(float *s, int64_t len, float m)
{
	float sum = 0.0f;
	for (int64_t c = 0; c < len; c++) {
		s[c] = pa_expf(s[c] - m);
		sum += s[c];
	}
	return sum;
}

static void weigh_generic(const float *p, int64_t len, const float *v, int vdp,
                          float *o)
{
	for (int i = 0; i < T3_ROWS; i++)
		for (int64_t k = 0; k < len; k++) {
			float x = p[i * T3_KC + k];
			for (int c = 0; c < vdp; c++)
				o[i * vdp + c] += x * v[k * vdp + c];
		}
}

static const T3Isa isa_generic = {scores_generic, rowmax_generic, expsum_generic,
                                  weigh_generic};

#if defined(__x86_64__)
/* --- AVX-512: 6 pairs × 64 keys and 6 pairs × 64 value columns in 24
 * registers. */

__attribute__((target("avx512f"))) static void
scores_avx512(const float *r, int hd, const float *bt, int64_t ldb, float *s)
{
	__m512 a[T3_ROWS][4];
	for (int i = 0; i < T3_ROWS; i++)
		for (int u = 0; u < 4; u++)
			a[i][u] = _mm512_setzero_ps();
	for (int l = 0; l < hd; l++) {
		const float *b = bt + l * ldb;
		__m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
		__m512 b2 = _mm512_loadu_ps(b + 32), b3 = _mm512_loadu_ps(b + 48);
		for (int i = 0; i < T3_ROWS; i++) {
			__m512 x = _mm512_set1_ps(r[i * hd + l]);
			a[i][0] = _mm512_fmadd_ps(x, b0, a[i][0]);
			a[i][1] = _mm512_fmadd_ps(x, b1, a[i][1]);
			a[i][2] = _mm512_fmadd_ps(x, b2, a[i][2]);
			a[i][3] = _mm512_fmadd_ps(x, b3, a[i][3]);
		}
	}
	for (int i = 0; i < T3_ROWS; i++)
		for (int u = 0; u < 4; u++)
			_mm512_storeu_ps(s + i * T3_KC + 16 * u, a[i][u]);
}

__attribute__((target("avx512f"))) static float
rowmax_avx512(const float *s, int64_t len)
{
	__m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
	for (int64_t c = 0; c < len; c += 32) {
		m0 = _mm512_max_ps(m0, _mm512_loadu_ps(s + c));
		m1 = _mm512_max_ps(m1, _mm512_loadu_ps(s + c + 16));
	}
	return pa_hmax16(_mm512_max_ps(m0, m1));
}

__attribute__((target("avx512f"))) static float
expsum_avx512(float *s, int64_t len, float m)
{
	__m512 vm = _mm512_set1_ps(m), t0 = _mm512_setzero_ps(), t1 = t0;
	for (int64_t c = 0; c < len; c += 32) {
		__m512 p0 = pa_exp16(_mm512_sub_ps(_mm512_loadu_ps(s + c), vm));
		__m512 p1 = pa_exp16(_mm512_sub_ps(_mm512_loadu_ps(s + c + 16), vm));
		_mm512_storeu_ps(s + c, p0);
		_mm512_storeu_ps(s + c + 16, p1);
		t0 = _mm512_add_ps(t0, p0);
		t1 = _mm512_add_ps(t1, p1);
	}
	return pa_hsum16(_mm512_add_ps(t0, t1));
}

/* weigh_cols_avx512: weigh for columns c … c + 16·nv of o, nv ≤ 4. */
__attribute__((target("avx512f"), always_inline)) static inline void
weigh_cols_avx512(const float *p, int64_t len, const float *v, int vdp, float *o,
                  int c, int nv)
{
	__m512 a[T3_ROWS][4];
	for (int i = 0; i < T3_ROWS; i++)
		for (int u = 0; u < nv; u++)
			a[i][u] = _mm512_loadu_ps(o + i * vdp + c + 16 * u);
	for (int64_t k = 0; k < len; k++) {
		__m512 b[4];
		for (int u = 0; u < nv; u++)
			b[u] = _mm512_loadu_ps(v + k * vdp + c + 16 * u);
		for (int i = 0; i < T3_ROWS; i++) {
			__m512 x = _mm512_set1_ps(p[i * T3_KC + k]);
			for (int u = 0; u < nv; u++)
				a[i][u] = _mm512_fmadd_ps(x, b[u], a[i][u]);
		}
	}
	for (int i = 0; i < T3_ROWS; i++)
		for (int u = 0; u < nv; u++)
			_mm512_storeu_ps(o + i * vdp + c + 16 * u, a[i][u]);
}

__attribute__((target("avx512f"))) static void
weigh_avx512(const float *p, int64_t len, const float *v, int vdp, float *o)
{
	int c = 0;
	for (; c + 64 <= vdp; c += 64)
		weigh_cols_avx512(p, len, v, vdp, o, c, 4);
	if (vdp - c == 48)
		weigh_cols_avx512(p, len, v, vdp, o, c, 3);
	else if (vdp - c == 32)
		weigh_cols_avx512(p, len, v, vdp, o, c, 2);
	else if (vdp - c == 16)
		weigh_cols_avx512(p, len, v, vdp, o, c, 1);
}

static const T3Isa isa_avx512 = {scores_avx512, rowmax_avx512, expsum_avx512,
                                 weigh_avx512};

/* --- AVX2: 6 pairs × 16 keys and 6 pairs × 16 value columns in 12
 * registers. */

__attribute__((target("avx2,fma"))) static void
scores_avx2(const float *r, int hd, const float *bt, int64_t ldb, float *s)
{
	for (int t = 0; t < T3_KT; t += 16) {
		__m256 a[T3_ROWS][2];
		for (int i = 0; i < T3_ROWS; i++)
			a[i][0] = a[i][1] = _mm256_setzero_ps();
		for (int l = 0; l < hd; l++) {
			const float *b = bt + l * ldb + t;
			__m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
			for (int i = 0; i < T3_ROWS; i++) {
				__m256 x = _mm256_broadcast_ss(r + i * hd + l);
				a[i][0] = _mm256_fmadd_ps(x, b0, a[i][0]);
				a[i][1] = _mm256_fmadd_ps(x, b1, a[i][1]);
			}
		}
		for (int i = 0; i < T3_ROWS; i++) {
			_mm256_storeu_ps(s + i * T3_KC + t, a[i][0]);
			_mm256_storeu_ps(s + i * T3_KC + t + 8, a[i][1]);
		}
	}
}

__attribute__((target("avx2,fma"))) static float
rowmax_avx2(const float *s, int64_t len)
{
	__m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
	for (int64_t c = 0; c < len; c += 16) {
		m0 = _mm256_max_ps(m0, _mm256_loadu_ps(s + c));
		m1 = _mm256_max_ps(m1, _mm256_loadu_ps(s + c + 8));
	}
	return pa_hmax8(_mm256_max_ps(m0, m1));
}

__attribute__((target("avx2,fma"))) static float
expsum_avx2(float *s, int64_t len, float m)
{
	__m256 vm = _mm256_set1_ps(m), t0 = _mm256_setzero_ps(), t1 = t0;
	for (int64_t c = 0; c < len; c += 16) {
		__m256 p0 = pa_exp8(_mm256_sub_ps(_mm256_loadu_ps(s + c), vm));
		__m256 p1 = pa_exp8(_mm256_sub_ps(_mm256_loadu_ps(s + c + 8), vm));
		_mm256_storeu_ps(s + c, p0);
		_mm256_storeu_ps(s + c + 8, p1);
		t0 = _mm256_add_ps(t0, p0);
		t1 = _mm256_add_ps(t1, p1);
	}
	return pa_hsum8(_mm256_add_ps(t0, t1));
}

__attribute__((target("avx2,fma"))) static void
weigh_avx2(const float *p, int64_t len, const float *v, int vdp, float *o)
{
	for (int c = 0; c < vdp; c += 16) {
		__m256 a[T3_ROWS][2];
		for (int i = 0; i < T3_ROWS; i++) {
			a[i][0] = _mm256_loadu_ps(o + i * vdp + c);
			a[i][1] = _mm256_loadu_ps(o + i * vdp + c + 8);
		}
		for (int64_t k = 0; k < len; k++) {
			__m256 b0 = _mm256_loadu_ps(v + k * vdp + c);
			__m256 b1 = _mm256_loadu_ps(v + k * vdp + c + 8);
			for (int i = 0; i < T3_ROWS; i++) {
				__m256 x = _mm256_broadcast_ss(p + i * T3_KC + k);
				a[i][0] = _mm256_fmadd_ps(x, b0, a[i][0]);
				a[i][1] = _mm256_fmadd_ps(x, b1, a[i][1]);
			}
		}
		for (int i = 0; i < T3_ROWS; i++) {
			_mm256_storeu_ps(o + i * vdp + c, a[i][0]);
			_mm256_storeu_ps(o + i * vdp + c + 8, a[i][1]);
		}
	}
}

static const T3Isa isa_avx2 = {scores_avx2, rowmax_avx2, expsum_avx2, weigh_avx2};
#endif

/* isa_tiles: the widest tiles this CPU runs (PA_ISA may force narrower). */
static const T3Isa *isa_tiles(void)
{
#if defined(__x86_64__)
	if (pa_isa() == PA_ISA_AVX512)
		return &isa_avx512;
	if (pa_isa() == PA_ISA_AVX2)
		return &isa_avx2;
#endif
	return &isa_generic;
}

/* pa_tensor3_takes: see pa_tensor3.h. */
bool pa_tensor3_takes(const pa_kernel_info *k, const pa_elim_plan *p)
{
	if (k->num_masks || k->num_vars != 3 || k->num_monomials != 1 || p->nedges != 1 ||
	    p->edges[0].vars != (PA_X(1) | PA_X(2) | PA_X(3)))
		return false;
	uint32_t seen = 0;
	int factors = 0;
	for (int i = 0; i < k->num_inputs; i++)
		if (k->inputs[i].kind == PA_INPUT_FACTOR) {
			factors++;
			seen |= PA_X(k->inputs[i].variable);
		}
	return factors == 3 && seen == (PA_X(1) | PA_X(2) | PA_X(3));
}

/* pack_keys: bt and v3 from the current batch entry. */
static void pack_keys(T3 *T)
{
	int64_t n = T->n, np = T->np;
	int hd = T->hd, vd = T->vd, vdp = T->vdp;
	const float *b = T->f[3], *v = T->v[3];
	#pragma omp parallel for schedule(static) if (np * hd > 1 << 16)
	for (int64_t t = 0; t < np; t += T3_KT)
		for (int l = 0; l < hd; l++)
			for (int64_t k = t; k < t + T3_KT; k++)
				T->bt[t * hd + l * T3_KT + k - t] = k < n ? b[k * hd + l] : 0.0f;
	#pragma omp parallel for schedule(static) if (np * vdp > 1 << 16)
	for (int64_t k = 0; k < np; k++)
		for (int c = 0; c < vdp; c++)
			T->v3[k * vdp + c] = k < n && c < vd ? (v ? v[k * vd + c] : 1.0f) : 0.0f;
}

/* softmax_chunk: the scores of keys k0 … k0 + len into weights, with
 * every pair's running maximum, sum and o rescaled. */
static void softmax_chunk(const T3 *T, const T3Isa *isa, Pairs *P, int rows,
                          int64_t k0, int64_t len)
{
	for (int i = 0; i < T3_ROWS; i++) {
		float *s = P->s + i * T3_KC;
		if (i >= rows) {             /* no pair: weight 0 */
			memset(s, 0, (size_t)len * sizeof *s);
			continue;
		}
		for (int64_t c = T->n - k0; c < len; c++) /* padding keys */
			s[c] = -INFINITY;
		float mx = isa->rowmax(s, len);
		mx = mx > P->m[i] ? mx : P->m[i];
		float alpha = pa_expf(P->m[i] - mx);
		P->l[i] = P->l[i] * alpha + isa->expsum(s, len, mx);
		P->m[i] = mx;
		if (alpha != 1.0f)
			for (int c = 0; c < T->vdp; c++)
				P->o[i * T->vdp + c] *= alpha;
	}
}

/* pairs_run: m, l and o of the pairs (i, j0 + r) for r < rows. */
static void pairs_run(const T3 *T, const T3Isa *isa, Pairs *P, int64_t i,
                      int64_t j0, int rows)
{
	int hd = T->hd;
	const float *q = T->f[1] + i * hd, *a = T->f[2] + j0 * hd;
	for (int r = 0; r < rows; r++)
		for (int l = 0; l < hd; l++)
			P->r[r * hd + l] = T->w * q[l] * a[r * hd + l];
	memset(P->r + rows * hd, 0, (size_t)((T3_ROWS - rows) * hd) * sizeof *P->r);
	memset(P->o, 0, (size_t)(T3_ROWS * T->vdp) * sizeof *P->o);
	for (int r = 0; r < T3_ROWS; r++)
		P->m[r] = -INFINITY, P->l[r] = 0.0f;
	for (int64_t k0 = 0; k0 < T->np; k0 += T3_KC) {
		int64_t len = T->np - k0 < T3_KC ? T->np - k0 : T3_KC;
		for (int64_t t = 0; t < len; t += T3_KT)
			isa->scores(P->r, hd, T->bt + (k0 + t) * hd, T3_KT, P->s + t);
		softmax_chunk(T, isa, P, rows, k0, len);
		isa->weigh(P->s, len, T->v3 + k0 * T->vdp, T->vdp, P->o);
	}
}

/* fold: the pairs (i, j0 + r), r < rows, into query i's running maximum
 * *M, sum *L and P->acc. */
static void fold(const T3 *T, Pairs *P, int64_t j0, int rows, float *M, float *L)
{
	int vd = T->vd;
	for (int r = 0; r < rows; r++) {
		float m = P->m[r];
		if (m > *M) {
			float a = pa_expf(*M - m);
			*L *= a;
			for (int c = 0; c < vd; c++)
				P->acc[c] *= a;
			*M = m;
		}
		float e = pa_expf(m - *M);
		const float *o = P->o + r * T->vdp;
		*L += e * P->l[r];
		if (T->v[2]) {
			const float *v2 = T->v[2] + (j0 + r) * vd;
			for (int c = 0; c < vd; c++)
				P->acc[c] += e * v2[c] * o[c];
		} else {
			for (int c = 0; c < vd; c++)
				P->acc[c] += e * o[c];
		}
	}
}

/* query: out[0 .. value_dim) of query position i. */
static void query(const T3 *T, const T3Isa *isa, Pairs *P, int64_t i, float *out)
{
	float M = -INFINITY, L = 0.0f;
	memset(P->acc, 0, (size_t)T->vd * sizeof *P->acc);
	for (int64_t j0 = 0; j0 < T->n; j0 += T3_ROWS) {
		int rows = T->n - j0 < T3_ROWS ? (int)(T->n - j0) : T3_ROWS;
		pairs_run(T, isa, P, i, j0, rows);
		fold(T, P, j0, rows, &M, &L);
	}
	const float *v1 = T->v[1] ? T->v[1] + i * T->vd : NULL;
	for (int c = 0; c < T->vd; c++)
		out[c] = (v1 ? v1[c] : 1.0f) * P->acc[c] / L;
}

/* pairs_at: thread t's block in scratch, of per floats. */
static Pairs pairs_at(const T3 *T, float *scratch, size_t per, int t)
{
	float *at = scratch + per * (size_t)t;
	Pairs P;
	P.r = at, at += T3_ROWS * T->hd;
	P.s = at, at += T3_ROWS * T3_KC;
	P.o = at, at += T3_ROWS * T->vdp;
	P.acc = at;
	return P;
}

/* setup: sizes, weight and input indices of kernel k, nq queries and n
 * keys. */
static void setup(T3 *T, const pa_kernel_info *k, int64_t nq, int64_t n)
{
	*T = (T3){.n = n, .nq = nq, .np = (n + T3_KT - 1) / T3_KT * T3_KT, .hd = k->head_dim,
	          .vd = k->value_dim, .vdp = (k->value_dim + 15) / 16 * 16,
	          .w = (float)(k->scale * k->coefficients[0])};
	for (int v = 0; v < 4; v++)
		T->fin[v] = T->vin[v] = -1;
	for (int i = 0; i < k->num_inputs; i++) {
		if (k->inputs[i].kind == PA_INPUT_VALUE)
			T->vin[k->inputs[i].variable] = i;
		else
			T->fin[k->inputs[i].variable] = i;
	}
}

/* pa_tensor3_run: see pa_tensor3.h. */
pa_status pa_tensor3_run(const pa_kernel_info *k, int64_t batch, int64_t nq,
                         int64_t n, const float *const inputs[], float *out)
{
	T3 T;
	setup(&T, k, nq, n);
	const T3Isa *isa = isa_tiles();
	int threads = pa_max_threads();
	size_t per = (size_t)(T3_ROWS * (T.hd + T3_KC + T.vdp) + T.vdp + 15) / 16 * 16;
	T.bt = pa_alloc((size_t)(T.hd * T.np));
	T.v3 = pa_alloc((size_t)(T.np * T.vdp));
	float *scratch = pa_alloc(per * (size_t)threads);
	pa_status st = T.bt && T.v3 && scratch ? PA_OK : PA_ERR_NOMEM;
	for (int64_t b = 0; b < batch && st == PA_OK; b++) {
		for (int v = 1; v <= 3; v++) {
			int64_t rows = v == 1 ? nq : n;
			T.f[v] = inputs[T.fin[v]] + b * rows * T.hd;
			T.v[v] = T.vin[v] >= 0 ? inputs[T.vin[v]] + b * rows * T.vd : NULL;
		}
		pack_keys(&T);
		float *ob = out + b * nq * T.vd;
		#pragma omp parallel
		{
			Pairs P = pairs_at(&T, scratch, per, pa_thread_num());
			#pragma omp for schedule(dynamic, 1)
			for (int64_t i = 0; i < nq; i++)
				query(&T, isa, &P, i, ob + i * T.vd);
		}
	}
	pa_free(T.bt);
	pa_free(T.v3);
	pa_free(scratch);
	return st;
}
