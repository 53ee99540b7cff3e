/*
 * pa_attend_row.c - a tree message's attention for a single query row
 * (a decoding step), see pa_kernel.h.  The generated micro-kernels put
 * queries in the vector lanes, so one query fills one lane of 16 and
 * pays for all of them; here the lanes run over the PA_BK keys of a panel
 * for the scores (the packed panel kt[d][j] is contiguous in j) and over
 * the payload columns for the weighted sum.  Per panel: s_j = q . k_j +
 * kb_j (keys the mask rules out score -inf), the online softmax (a new
 * maximum m rescales the sum and the payload sums by e^(m_old - m)),
 * then acc += sum_j e^(s_j - m) pv_j.  A panel that leaves the row no key
 * is skipped, as its weights would all be 0.  The loops are one body
 * compiled for each ISA; only the exp of a panel's scores is written per
 * ISA, with pa_simd.h's exp (pa_math.h's lane for lane).
 */
#include "pa_kernel.h"

#include <math.h>

/* exp_panel_generic: s[j] = e^(s[j] - m) for the PA_BK scores of a panel. */
static void exp_panel_generic(float *s, float m)
{
	for (int j = 0; j < PA_BK; j++)
		s[j] = pa_expf(s[j] - m);
}

/* row: pa_attend_row's body, exp_panel the ISA's exp of a panel. */
static inline __attribute__((always_inline)) void
row(int64_t nb, int64_t pos, int64_t lo, int64_t hi, int dim, int vp, int dv,
    const float *restrict q, const float *restrict kt, const float *restrict kb,
    const float *restrict pv, float *restrict o, float *restrict lse,
    void (*exp_panel)(float *, float))
{
	float acc[vp > 0 ? vp : 1];
	for (int c = 0; c < vp; c++)
		acc[c] = 0.0f;
	float mx = -INFINITY, sum = 0.0f;
	/* the panels holding keys pos + lo .. pos + hi */
	const int64_t first = pos + lo, last = pos + hi;
	const int64_t jb0 = first > 0 ? first / PA_BK : 0;
	const int64_t jb1 = last < 0 ? 0 : last / PA_BK + 1 < nb ? last / PA_BK + 1 : nb;
	for (int64_t jb = jb0; jb < jb1; jb++) {
		const float *kp = kt + jb * dim * PA_BK, *kbp = kb + jb * PA_BK;
		float s[PA_BK] __attribute__((aligned(64)));
		for (int j = 0; j < PA_BK; j++)
			s[j] = kbp[j];
		for (int d = 0; d < dim; d++) {
			const float qd = q[d];
			for (int j = 0; j < PA_BK; j++)
				s[j] += qd * kp[d * PA_BK + j];
		}
		/* key j of the panel is key - position k0 + j */
		const int64_t k0 = jb * PA_BK - pos;
		if (k0 < lo || k0 + PA_BK - 1 > hi)
			for (int j = 0; j < PA_BK; j++)
				if (k0 + j < lo || k0 + j > hi)
					s[j] = -INFINITY;
		float top = -INFINITY;
		for (int j = 0; j < PA_BK; j++)
			top = s[j] > top ? s[j] : top;
		if (top == -INFINITY)
			continue;       /* no key of the panel weighs anything */
		const float m = top > mx ? top : mx;
		const float r = pa_expf(mx - m);
		exp_panel(s, m);
		float l = 0.0f;
		for (int j = 0; j < PA_BK; j++)
			l += s[j];
		sum = sum * r + l;
		mx = m;
		if (!vp)
			continue;       /* a message of its log-normalizer alone: pv NULL */
		const float *pp = pv + jb * PA_BK * vp;
		for (int c = 0; c < vp; c++)
			acc[c] *= r;
		for (int j = 0; j < PA_BK; j++)
			for (int c = 0; c < vp; c++)
				acc[c] += s[j] * pp[j * vp + c];
	}
	/* a row that saw no key: o = 0, lse = -inf */
	const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
	for (int c = 0; c < dv; c++)
		o[c] = acc[c] * inv;
	*lse = sum > 0.0f ? mx + logf(sum) : -INFINITY;
}

static void row_generic(int64_t nb, int64_t pos, int64_t lo, int64_t hi, int dim,
                        int vp, int dv, const float *q, const float *kt,
                        const float *kb, const float *pv, float *o, float *lse)
{
	row(nb, pos, lo, hi, dim, vp, dv, q, kt, kb, pv, o, lse, exp_panel_generic);
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void exp_panel_avx2(float *s, float m)
{
	const __m256 mm = _mm256_set1_ps(m);
	for (int j = 0; j < PA_BK; j += 8)
		_mm256_storeu_ps(s + j, pa_exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), mm)));
}

__attribute__((target("avx2,fma"))) static void
row_avx2(int64_t nb, int64_t pos, int64_t lo, int64_t hi, int dim, int vp, int dv,
         const float *q, const float *kt, const float *kb, const float *pv, float *o,
         float *lse)
{
	row(nb, pos, lo, hi, dim, vp, dv, q, kt, kb, pv, o, lse, exp_panel_avx2);
}

__attribute__((target("avx512f"))) static void exp_panel_avx512(float *s, float m)
{
	const __m512 mm = _mm512_set1_ps(m);
	for (int j = 0; j < PA_BK; j += 16)
		_mm512_storeu_ps(s + j, pa_exp16(_mm512_sub_ps(_mm512_loadu_ps(s + j), mm)));
}

__attribute__((target("avx512f"))) static void
row_avx512(int64_t nb, int64_t pos, int64_t lo, int64_t hi, int dim, int vp, int dv,
           const float *q, const float *kt, const float *kb, const float *pv, float *o,
           float *lse)
{
	row(nb, pos, lo, hi, dim, vp, dv, q, kt, kb, pv, o, lse, exp_panel_avx512);
}
#endif

/* pa_attend_row: see pa_kernel.h. */
void pa_attend_row(int64_t nb, int64_t pos, int64_t lo, int64_t hi, int dim, int vp,
                   int dv, const float *q, const float *kt, const float *kb,
                   const float *pv, float *o, float *lse)
{
#if defined(__x86_64__)
	if (pa_isa() == PA_ISA_AVX512) {
		row_avx512(nb, pos, lo, hi, dim, vp, dv, q, kt, kb, pv, o, lse);
		return;
	}
	if (pa_isa() == PA_ISA_AVX2) {
		row_avx2(nb, pos, lo, hi, dim, vp, dv, q, kt, kb, pv, o, lse);
		return;
	}
#endif
	row_generic(nb, pos, lo, hi, dim, vp, dv, q, kt, kb, pv, o, lse);
}
