/*
 * pa_math.h - scalar math for generated kernels: the portable exp that the
 * generic code path uses and the vector paths mirror lane for lane.
 *
 * pa_expf follows Cephes' expf, the same algorithm as pa_exp8 and pa_exp16
 * in pa_simd.h: Cody-Waite reduction x = n·ln2 + r with |r| ≤ ln2/2, a
 * degree-6 polynomial for e^r, and 2^n put into the exponent bits.  Its
 * relative error is below 2e-7 on [-87.3, 88.4]; below that range it
 * returns 0 (and so maps -inf, the score of a padding key, to 0), above it
 * +inf.  It has no branches but the clamps, so loops over it vectorize.
 */
#ifndef PA_MATH_H
#define PA_MATH_H

#include <stdint.h>
#include <string.h>

/* pa_expf: e^x as described above; NaN gives NaN. */
static inline float pa_expf(float x)
{
	const float hi = 88.3762626647949f, lo = -87.3365478515625f;
	if (x != x)
		return x;
	if (x < lo)
		return 0.0f;
	if (x > hi)
		return __builtin_inff();
	float n = __builtin_rintf(x * 1.44269504088896341f);
	float r = x - n * 0.693359375f;
	r = r - n * -2.12194440e-4f;
	float p = 1.9875691500e-4f;
	p = p * r + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	p = p * (r * r) + (r + 1.0f);
	/* 2^n in two steps, so n = 128 (x near hi) does not overflow the
	 * exponent field of one factor. */
	int32_t e = (int32_t)n;
	int32_t e1 = e / 2, e2 = e - e1;
	uint32_t b1 = (uint32_t)(e1 + 127) << 23, b2 = (uint32_t)(e2 + 127) << 23;
	float s1, s2;
	memcpy(&s1, &b1, sizeof s1);
	memcpy(&s2, &b2, sizeof s2);
	return p * s1 * s2;
}

#endif /* PA_MATH_H */
