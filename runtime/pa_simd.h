/*
 * pa_simd.h - the vector building blocks of generated kernels, one set per
 * instruction set: exp, horizontal max and sum.  Each function carries a
 * target attribute, so one object holds every variant and the kernel picks
 * one at run time (pa_isa).
 *
 * The exp is the one of pa_math.h, lane for lane: Cody-Waite reduction
 * x = n·ln2 + r with |r| <= ln2/2, the degree-5 minimax polynomial of e^r
 * (PA_EXP_POLY), and 2^n put into the exponent.  Relative error below
 * 4e-7 where e^x is a normal float; -inf (the score of a padding key)
 * gives 0, +inf above ln(FLT_MAX), NaN gives NaN.  Every clamp takes its
 * constant first, so a NaN passes through min and max.
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

/*
 * pa_prefetch_part: ask for part `part` of `parts` of the cache lines of
 * p[0 .. nfloats) ahead of their use.  A micro-kernel spreads the next
 * panel of keys over the steps of the current one, so a stream longer
 * than L2 (n = 16384) arrives before it is needed.  Prefetches never fault.
 */
static inline void pa_prefetch_part(const float *p, int nfloats, int part, int parts)
{
	int per = (nfloats + 16 * parts - 1) / (16 * parts) * 16;
	for (int i = part * per; i < (part + 1) * per && i < nfloats; i += 16)
		__builtin_prefetch(p + i);
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* pa_exp8: e^x in each lane; 0 below -87.34 (2^n must be a normal
 * float), +inf above 88.38. */
__attribute__((target("avx2,fma"))) static inline __m256 pa_exp8(__m256 x)
{
	const __m256 lo = _mm256_set1_ps(PA_EXP_LO), hi = _mm256_set1_ps(PA_EXP_HI);
	__m256 xc = _mm256_max_ps(lo, _mm256_min_ps(hi, x));
	__m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(PA_LOG2E)),
	                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(PA_LN2_HI), xc);
	r = _mm256_fnmadd_ps(n, _mm256_set1_ps(PA_LN2_LO), r);
	__m256 p = _mm256_set1_ps(PA_EXP_C5);
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(PA_EXP_C4));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(PA_EXP_C3));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(PA_EXP_C2));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(PA_EXP_C1));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(PA_EXP_C0));
	__m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n),
	                                               _mm256_set1_epi32(127)), 23);
	p = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
	p = _mm256_and_ps(p, _mm256_cmp_ps(x, lo, _CMP_NLT_UQ));
	return _mm256_blendv_ps(p, _mm256_set1_ps(__builtin_inff()),
	                        _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
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

/* pa_exp16: e^x in each lane; scalef makes 2^n, so results below
 * 2^-126 are denormals (0 below -104), and +inf above 88.72. */
__attribute__((target("avx512f"))) static inline __m512 pa_exp16(__m512 x)
{
	__m512 xc = _mm512_max_ps(_mm512_set1_ps(-104.0f),
	                          _mm512_min_ps(_mm512_set1_ps(89.0f), x));
	__m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(PA_LOG2E)),
	                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(PA_LN2_HI), xc);
	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(PA_LN2_LO), r);
	__m512 p = _mm512_set1_ps(PA_EXP_C5);
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(PA_EXP_C4));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(PA_EXP_C3));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(PA_EXP_C2));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(PA_EXP_C1));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(PA_EXP_C0));
	return _mm512_scalef_ps(p, n);
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
