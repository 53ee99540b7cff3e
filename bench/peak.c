/*
 * peak.c - the machine's FMA peak, measured: every thread runs chains of
 * independent vector FMAs (enough to cover the FMA latency) on the widest
 * unit the CPU has.  Used by the benchmarks to report a fraction of peak.
 */
#include "peak.h"

#include <omp.h>
#include <time.h>

#include "pa_simd.h"
#include "timing.h"

#if defined(__x86_64__)
/* fma_avx2 = 10 chains of 8-wide FMAs, iters times; returns a sum so the
 * work is not optimized away. */
__attribute__((target("avx2,fma"))) static float fma_avx2(long iters)
{
	__m256 a[10], m = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-3f);
	for (int i = 0; i < 10; i++)
		a[i] = _mm256_set1_ps((float)i);
	for (long k = 0; k < iters; k++)
		for (int i = 0; i < 10; i++)
			a[i] = _mm256_fmadd_ps(a[i], m, c);
	for (int i = 1; i < 10; i++)
		a[0] = _mm256_add_ps(a[0], a[i]);
	return pa_hsum8(a[0]);
}

/* fma_avx512 = 20 chains of 16-wide FMAs, iters times. */
__attribute__((target("avx512f"))) static float fma_avx512(long iters)
{
	__m512 a[20], m = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(1e-3f);
	for (int i = 0; i < 20; i++)
		a[i] = _mm512_set1_ps((float)i);
	for (long k = 0; k < iters; k++)
		for (int i = 0; i < 20; i++)
			a[i] = _mm512_fmadd_ps(a[i], m, c);
	for (int i = 1; i < 20; i++)
		a[0] = _mm512_add_ps(a[0], a[i]);
	return pa_hsum16(a[0]);
}
#endif

/* fma_generic = 8 scalar chains, for CPUs without AVX2. */
static float fma_generic(long iters)
{
	float a[8];
	for (int i = 0; i < 8; i++)
		a[i] = (float)i;
	for (long k = 0; k < iters; k++)
		for (int i = 0; i < 8; i++)
			a[i] = a[i] * 0.999f + 1e-3f;
	return a[0] + a[7];
}

/* peak_gflops: see peak.h. */
double peak_gflops(void)
{
	const long iters = 20000000;
	pa_isa_kind isa = pa_isa();
	double per = isa == PA_ISA_AVX512 ? 20 * 32.0 : isa == PA_ISA_AVX2 ? 10 * 16.0 : 16.0;
	double best = 0;
	for (int rep = 0; rep < 3; rep++) {
		volatile float sink = 0;
		double t = now();
		int threads = 1;
#pragma omp parallel reduction(+ : sink)
		{
#pragma omp single
			threads = omp_get_num_threads();
#if defined(__x86_64__)
			if (isa == PA_ISA_AVX512)
				sink += fma_avx512(iters);
			else if (isa == PA_ISA_AVX2)
				sink += fma_avx2(iters);
			else
#endif
				sink += fma_generic(iters);
		}
		t = now() - t;
		double g = threads * per * iters / t / 1e9;
		best = g > best ? g : best;
	}
	return best;
}
