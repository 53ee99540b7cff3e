/*
 * pa_simd.h - the vector building blocks of generated kernels, one set per
 * instruction set: exp, horizontal max and sum.  Each function carries a
 * target attribute, so one object holds every variant and the kernel picks
 * one at run time (pa_isa).  The exp follows Cephes' expf: Cody-Waite range
 * reduction, a degree-6 polynomial on [-ln2/2, ln2/2], and scaling by 2^n
 * through the exponent bits; below -87.3 it returns 0, which the online
 * softmax relies on for padding keys (score -inf).
 */
#ifndef PA_SIMD_H
#define PA_SIMD_H

#include "pa_math.h"

/* The instruction sets generated kernels are built for. */
typedef enum pa_isa_kind {
	PA_ISA_GENERIC = 0,      /* portable C, any CPU */
	PA_ISA_AVX2 = 1,         /* AVX2 + FMA, 8 floats per vector */
	PA_ISA_AVX512 = 2,       /* AVX-512F, 16 floats per vector */
} pa_isa_kind;

/* The widest set this CPU has, or the one $PA_ISA names (generic, avx2,
 * avx512) if this CPU has it: how tests force each variant. */
pa_isa_kind pa_isa(void);
const char *pa_isa_name(pa_isa_kind k);

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define PA_EXP_CONSTANTS                                                    \
	const float hi = 88.3762626647949f, lo = -87.3365478515625f;         \
	const float log2e = 1.44269504088896341f;                            \
	const float c1 = 0.693359375f, c2 = -2.12194440e-4f;                 \
	const float p0 = 1.9875691500e-4f, p1 = 1.3981999507e-3f;            \
	const float p2 = 8.3334519073e-3f, p3 = 4.1665795894e-2f;            \
	const float p4 = 1.6666665459e-1f, p5 = 5.0000001201e-1f

/* pa_exp8: e^x in each lane; 0 below -87.3, +inf above 88.4. */
__attribute__((target("avx2,fma"))) static inline __m256 pa_exp8(__m256 x)
{
	PA_EXP_CONSTANTS;
	__m256 under = _mm256_cmp_ps(x, _mm256_set1_ps(lo), _CMP_LT_OQ);
	__m256 over = _mm256_cmp_ps(x, _mm256_set1_ps(hi), _CMP_GT_OQ);
	__m256 xc = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(hi)),
	                          _mm256_set1_ps(lo));
	__m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(log2e)),
	                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(c1), xc);
	r = _mm256_fnmadd_ps(n, _mm256_set1_ps(c2), r);
	__m256 p = _mm256_set1_ps(p0);
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(p1));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(p2));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(p3));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(p4));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(p5));
	p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
	__m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n),
	                                               _mm256_set1_epi32(127)), 23);
	p = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
	p = _mm256_blendv_ps(p, _mm256_setzero_ps(), under);
	return _mm256_blendv_ps(p, _mm256_set1_ps(__builtin_inff()), over);
}

/* pa_hmax8, pa_hsum8: the maximum and the sum of the 8 lanes. */
__attribute__((target("avx2,fma"))) static inline float pa_hmax8(__m256 v)
{
	__m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	m = _mm_max_ps(m, _mm_movehl_ps(m, m));
	m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
	return _mm_cvtss_f32(m);
}

__attribute__((target("avx2,fma"))) static inline float pa_hsum8(__m256 v)
{
	__m128 m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	m = _mm_add_ps(m, _mm_movehl_ps(m, m));
	m = _mm_add_ss(m, _mm_shuffle_ps(m, m, 1));
	return _mm_cvtss_f32(m);
}

/* pa_exp16: e^x in each lane; 0 below -87.3, +inf above 88.4. */
__attribute__((target("avx512f"))) static inline __m512 pa_exp16(__m512 x)
{
	PA_EXP_CONSTANTS;
	__mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(lo), _CMP_LT_OQ);
	__mmask16 over = _mm512_cmp_ps_mask(x, _mm512_set1_ps(hi), _CMP_GT_OQ);
	__m512 xc = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(hi)),
	                          _mm512_set1_ps(lo));
	__m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(log2e)),
	                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(c1), xc);
	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(c2), r);
	__m512 p = _mm512_set1_ps(p0);
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(p1));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(p2));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(p3));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(p4));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(p5));
	p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
	p = _mm512_scalef_ps(p, n);
	p = _mm512_mask_mov_ps(p, under, _mm512_setzero_ps());
	return _mm512_mask_mov_ps(p, over, _mm512_set1_ps(__builtin_inff()));
}

/* pa_hmax16, pa_hsum16: the maximum and the sum of the 16 lanes. */
__attribute__((target("avx512f"))) static inline float pa_hmax16(__m512 v)
{
	return _mm512_reduce_max_ps(v);
}

__attribute__((target("avx512f"))) static inline float pa_hsum16(__m512 v)
{
	return _mm512_reduce_add_ps(v);
}
#endif /* x86 */

#endif /* PA_SIMD_H */
