/*
 * pa_math.h - scalar math for generated kernels: the portable exp that the
 * generic code path uses and the vector paths mirror lane for lane.
 *
 * pa_expf: Cody-Waite reduction x = n·ln2 + r with |r| <= ln2/2 (ln2 split
 * in two, the first part exact in 9 bits so n·PA_LN2_HI is exact), the
 * degree-5 polynomial p with p(0) = 1 (so e^0 is exactly 1) closest to e^r
 * in relative error on that range (minimax, 2.9e-7; in float, below 4e-7
 * on [-87.3, 88.4]: five FMAs where Cephes' expf takes eight), and 2^n
 * put into the exponent bits.  Below -87.34 it returns 0 (and so maps
 * -inf, the score of a padding key, to 0), above 88.38 +inf.  It has no
 * branches but the clamps, so loops over it vectorize.
 */
#ifndef PA_MATH_H
#define PA_MATH_H

#include <stdint.h>
#include <string.h>

#define PA_EXP_LO -87.3365478515625f     /* e^x below: 0 */
#define PA_EXP_HI 88.3762626647949f      /* e^x above: +inf */
#define PA_LOG2E 1.44269504088896341f
#define PA_LN2_HI 0.693359375f
#define PA_LN2_LO -2.12194440e-4f
#define PA_EXP_C0 1.0f                   /* e^r ~ C0 + C1 r + ... + C5 r^5 */
#define PA_EXP_C1 1.00000131f
#define PA_EXP_C2 0.499991685f
#define PA_EXP_C3 0.166629136f
#define PA_EXP_C4 0.0419031195f
#define PA_EXP_C5 0.00857601315f

/* pa_expf: e^x as described above; NaN gives NaN. */
static inline float pa_expf(float x)
{
	if (x != x)
		return x;
	if (x < PA_EXP_LO)
		return 0.0f;
	if (x > PA_EXP_HI)
		return __builtin_inff();
	float n = __builtin_rintf(x * PA_LOG2E);
	float r = x - n * PA_LN2_HI;
	r = r - n * PA_LN2_LO;
	float p = PA_EXP_C5;
	p = p * r + PA_EXP_C4;
	p = p * r + PA_EXP_C3;
	p = p * r + PA_EXP_C2;
	p = p * r + PA_EXP_C1;
	p = p * r + PA_EXP_C0;
	/* 2^n in two steps, so n = 128 (x near PA_EXP_HI) does not overflow
	 * the exponent field of one factor. */
	int32_t e = (int32_t)n;
	int32_t e1 = e / 2, e2 = e - e1;
	uint32_t b1 = (uint32_t)(e1 + 127) << 23, b2 = (uint32_t)(e2 + 127) << 23;
	float s1, s2;
	memcpy(&s1, &b1, sizeof s1);
	memcpy(&s2, &b2, sizeof s2);
	return p * s1 * s2;
}

#endif /* PA_MATH_H */
