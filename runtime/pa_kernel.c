/*
 * pa_kernel.c - runtime support for generated kernels (see pa_kernel.h):
 * workspace allocation with overflow checks, the softmax average that
 * closes a component without x1, argument checks and the ISA choice.
 */
#include "pa_kernel.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* all_finite: no entry of x[0..len) is NaN or infinite (exponent bits all
 * ones); an integer scan, so it vectorizes without fast-math. */
static bool all_finite(const float *x, size_t len)
{
	uint32_t bad = 0;
	for (size_t i = 0; i < len; i++) {
		uint32_t bits;
		memcpy(&bits, x + i, sizeof bits);
		bad |= (bits & 0x7f800000u) == 0x7f800000u;
	}
	return !bad;
}

/* pa_check_args: see pa_kernel.h. */
pa_status pa_check_args(const pa_kernel_info *k, int64_t batch, int64_t n,
                        const float *const inputs[], const float *out)
{
	if (!inputs || !out)
		return PA_ERR_NULL;
	for (int i = 0; i < k->num_inputs; i++)
		if (!inputs[i])
			return PA_ERR_NULL;
	if (batch <= 0 || n <= 0)
		return PA_ERR_ARGUMENT;
	size_t len[k->num_inputs > 0 ? k->num_inputs : 1];
	for (int i = 0; i < k->num_inputs; i++)
		if (__builtin_mul_overflow((size_t)batch, (size_t)n, &len[i]) ||
		    __builtin_mul_overflow(len[i], (size_t)k->inputs[i].cols, &len[i]) ||
		    len[i] > SIZE_MAX / sizeof(float))
			return PA_ERR_ARGUMENT;
	for (int i = 0; i < k->num_inputs; i++)
		if (!all_finite(inputs[i], len[i]))
			return PA_ERR_NONFINITE;
	return PA_OK;
}

/* pa_check_grad_args: see pa_kernel.h (sizes were checked by
 * pa_check_args). */
pa_status pa_check_grad_args(const pa_kernel_info *k, int64_t batch, int64_t n,
                             const float *saved, const float *grad_out,
                             float *const grad_inputs[])
{
	if (!saved || !grad_out || !grad_inputs)
		return PA_ERR_NULL;
	size_t len;
	if (__builtin_mul_overflow((size_t)batch, (size_t)n, &len) ||
	    __builtin_mul_overflow(len, (size_t)k->value_dim, &len))
		return PA_ERR_ARGUMENT;
	return all_finite(grad_out, len) ? PA_OK : PA_ERR_NONFINITE;
}

/* pa_carve: see pa_kernel.h. */
size_t pa_carve(size_t *total, int64_t a, int64_t b, int64_t c)
{
	size_t off = *total, n;
	if (off == SIZE_MAX || a < 0 || b < 0 || c < 0 ||
	    __builtin_mul_overflow((size_t)a, (size_t)b, &n) ||
	    __builtin_mul_overflow(n, (size_t)c, &n) ||
	    __builtin_add_overflow(n, (size_t)15, &n) ||
	    __builtin_add_overflow(off, n & ~(size_t)15, total) ||
	    *total > SIZE_MAX / 2 / sizeof(float))
		*total = SIZE_MAX;
	return off;
}

/* pa_alloc: see pa_kernel.h. */
float *pa_alloc(size_t nfloats)
{
	if (nfloats == SIZE_MAX)
		return NULL;
	size_t bytes = (nfloats * sizeof(float) + 63) & ~(size_t)63;
	return aligned_alloc(64, bytes ? bytes : 64);
}

/* pa_free: see pa_kernel.h. */
void pa_free(float *p)
{
	free(p);
}

/* pa_softmax_average: see pa_kernel.h.  Accumulates in double. */
void pa_softmax_average(int64_t n, const float *w, const float *rows,
                        int stride, int dim, float *out)
{
	float mx = -INFINITY;
	for (int64_t i = 0; i < n; i++)
		mx = w[i] > mx ? w[i] : mx;
	double den = 0, num[dim];
	for (int v = 0; v < dim; v++)
		num[v] = 0;
	for (int64_t i = 0; i < n; i++) {
		double p = exp((double)w[i] - mx);
		den += p;
		for (int v = 0; v < dim; v++)
			num[v] += p * rows[i * stride + v];
	}
	for (int v = 0; v < dim; v++)
		out[v] = (float)(num[v] / den);
}

/* isa_supported: whether this CPU runs kernels built for k. */
static bool isa_supported(pa_isa_kind k)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_cpu_init();
	if (k == PA_ISA_AVX512)
		return __builtin_cpu_supports("avx512f");
	if (k == PA_ISA_AVX2)
		return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
	return k == PA_ISA_GENERIC;
}

/* pa_isa_name: see pa_simd.h. */
const char *pa_isa_name(pa_isa_kind k)
{
	static const char *const names[] = {"generic", "avx2", "avx512"};
	return (unsigned)k < 3 ? names[k] : "?";
}

/* choose_isa: $PA_ISA when this CPU has it, else the widest it has. */
static pa_isa_kind choose_isa(void)
{
	const char *want = getenv("PA_ISA");
	for (int k = PA_ISA_AVX512; want && k >= PA_ISA_GENERIC; k--)
		if (strcmp(want, pa_isa_name(k)) == 0 && isa_supported(k))
			return k;
	for (int k = PA_ISA_AVX512; k > PA_ISA_GENERIC; k--)
		if (isa_supported(k))
			return k;
	return PA_ISA_GENERIC;
}

/* pa_isa: see pa_simd.h; decided once per process. */
pa_isa_kind pa_isa(void)
{
	static int cached = -1;
	int k = __atomic_load_n(&cached, __ATOMIC_RELAXED);
	if (k < 0) {
		k = choose_isa();
		__atomic_store_n(&cached, k, __ATOMIC_RELAXED);
	}
	return k;
}
