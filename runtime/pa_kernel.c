/*
 * pa_kernel.c - runtime support for generated kernels (see pa_kernel.h):
 * workspace allocation with overflow checks, the softmax average that
 * closes a component without x1, argument checks and the ISA choice.
 */
#include "pa_kernel.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* MAX_ABS_BODY: top = the largest |x[i]| of x[0..len) as bits, bad = whether
 * some entry is NaN or infinite (exponent bits all ones); an integer scan
 * of the bits, so it vectorizes without fast-math.  The same loop is
 * compiled for each ISA: the plain x86-64 build has no unsigned 32-bit
 * max and runs it at a quarter of AVX2's speed, and a decoding step scans
 * every key and value row. */
#define MAX_ABS_BODY(x, len, top, bad) \
	for (size_t i = 0; i < (len); i++) { \
		uint32_t bits; \
		memcpy(&bits, (x) + i, sizeof bits); \
		bits &= 0x7fffffffu; \
		(bad) |= bits >= 0x7f800000u; \
		(top) = bits > (top) ? bits : (top); \
	}

static uint32_t max_abs_generic(const float *x, size_t len, uint32_t *bad)
{
	uint32_t top = 0, b = 0;
	MAX_ABS_BODY(x, len, top, b)
	*bad |= b;
	return top;
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static uint32_t
max_abs_avx2(const float *x, size_t len, uint32_t *bad)
{
	uint32_t top = 0, b = 0;
	MAX_ABS_BODY(x, len, top, b)
	*bad |= b;
	return top;
}

__attribute__((target("avx512f"))) static uint32_t
max_abs_avx512(const float *x, size_t len, uint32_t *bad)
{
	uint32_t top = 0, b = 0;
	MAX_ABS_BODY(x, len, top, b)
	*bad |= b;
	return top;
}
#endif

/* max_abs = the largest |x[i]| of x[0..len), or INFINITY when some entry
 * is NaN or infinite; the scan for pa_isa(). */
static float max_abs(const float *x, size_t len)
{
	uint32_t bad = 0, top;
#if defined(__x86_64__)
	if (pa_isa() == PA_ISA_AVX512)
		top = max_abs_avx512(x, len, &bad);
	else if (pa_isa() == PA_ISA_AVX2)
		top = max_abs_avx2(x, len, &bad);
	else
#endif
		top = max_abs_generic(x, len, &bad);
	float m;
	memcpy(&m, &top, sizeof m);
	return bad ? INFINITY : m;
}

/* PA_SCAN_SPLIT: inputs of more floats than this in all are scanned by
 * every thread, a slice of each input per thread (a decoding step scans
 * megabytes; a parallel region costs a few microseconds). */
#define PA_SCAN_SPLIT (1 << 18)

/* max_abs_all: top[i] = max_abs(x[i], len[i]) for the n inputs. */
static void max_abs_all(int n, const float *const x[], const size_t len[], float top[])
{
	size_t total = 0;
	for (int i = 0; i < n; i++)
		total += len[i];
	const int threads = total > PA_SCAN_SPLIT ? pa_max_threads() : 1;
	if (threads <= 1) {
		for (int i = 0; i < n; i++)
			top[i] = max_abs(x[i], len[i]);
		return;
	}
	float part[threads][n > 0 ? n : 1];
	#pragma omp parallel for num_threads(threads) schedule(static)
	for (int t = 0; t < threads; t++)
		for (int i = 0; i < n; i++) {
			const size_t a = len[i] / threads * t;
			const size_t b = t + 1 < threads ? len[i] / threads * (t + 1) : len[i];
			part[t][i] = max_abs(x[i] + a, b - a);
		}
	for (int i = 0; i < n; i++) {
		top[i] = 0.0f;
		for (int t = 0; t < threads; t++)
			top[i] = part[t][i] > top[i] ? part[t][i] : top[i];
	}
}

/* overlaps: the byte ranges [a, a + na) and [b, b + nb) share a byte. */
static bool overlaps(const void *a, size_t na, const void *b, size_t nb)
{
	uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
	return x < y + nb && y < x + na;
}

/* PA_RANGE_LOG2: the accumulations of every engine stay finite while
 * Π_j max|V[j]| · n^(t-1) is below 2^PA_RANGE_LOG2 (the weights are at most
 * 1, or e^x ≤ 2^27 for an approximation, and there are n^(t-1) tuples). */
#define PA_RANGE_LOG2 100

/* pa_check_args_qk: see pa_kernel.h. */
pa_status pa_check_args_qk(const pa_kernel_info *k, int64_t batch, int64_t nq,
                           int64_t nk, const float *const inputs[],
                           const float *out)
{
	if (!inputs || !out)
		return PA_ERR_NULL;
	for (int i = 0; i < k->num_inputs; i++)
		if (!inputs[i])
			return PA_ERR_NULL;
	if (batch <= 0 || nq <= 0 || nk < nq)
		return PA_ERR_ARGUMENT;
	size_t len[k->num_inputs > 0 ? k->num_inputs : 1], out_len;
	if (__builtin_mul_overflow((size_t)batch, (size_t)nq, &out_len) ||
	    __builtin_mul_overflow(out_len, (size_t)k->value_dim, &out_len) ||
	    out_len > SIZE_MAX / sizeof(float))
		return PA_ERR_ARGUMENT;
	for (int i = 0; i < k->num_inputs; i++) {
		const int64_t rows = k->inputs[i].variable == 1 ? nq : nk;
		if (__builtin_mul_overflow((size_t)batch, (size_t)rows, &len[i]) ||
		    __builtin_mul_overflow(len[i], (size_t)k->inputs[i].cols, &len[i]) ||
		    len[i] > SIZE_MAX / sizeof(float))
			return PA_ERR_ARGUMENT;
	}
	for (int i = 0; i < k->num_inputs; i++)
		if (overlaps(out, out_len * sizeof(float), inputs[i],
		             len[i] * sizeof(float)))
			return PA_ERR_ARGUMENT;
	double log2_range = (k->num_vars - 1) * log2((double)nk);
	float top[k->num_inputs > 0 ? k->num_inputs : 1];
	max_abs_all(k->num_inputs, inputs, len, top);
	for (int i = 0; i < k->num_inputs; i++) {
		float m = top[i];
		if (m == INFINITY)
			return PA_ERR_NONFINITE;
		if (k->inputs[i].kind == PA_INPUT_VALUE)
			log2_range += log2((double)m);
	}
	return log2_range < PA_RANGE_LOG2 ? PA_OK : PA_ERR_RANGE;
}

/* pa_check_args: see pa_kernel.h. */
pa_status pa_check_args(const pa_kernel_info *k, int64_t batch, int64_t n,
                        const float *const inputs[], const float *out)
{
	return pa_check_args_qk(k, batch, n, n, inputs, out);
}

/* span_floats = batch · rows · cols, or SIZE_MAX on overflow. */
static size_t span_floats(int64_t batch, int64_t rows, int64_t cols)
{
	size_t len;
	if (__builtin_mul_overflow((size_t)batch, (size_t)rows, &len) ||
	    __builtin_mul_overflow(len, (size_t)cols, &len) ||
	    len > SIZE_MAX / sizeof(float))
		return SIZE_MAX;
	return len;
}

/* pa_check_grad_args_qk: see pa_kernel.h (sizes were checked by
 * pa_check_args_qk). */
pa_status pa_check_grad_args_qk(const pa_kernel_info *k, int64_t batch,
                                int64_t nq, int64_t nk,
                                const float *const inputs[], const float *out,
                                const float *saved, int64_t saved_len,
                                const float *grad_out, float *const grad_inputs[])
{
	if (!saved || !grad_out || !grad_inputs)
		return PA_ERR_NULL;
	const size_t out_len = span_floats(batch, nq, k->value_dim);
	if (out_len == SIZE_MAX || saved_len < 0)
		return PA_ERR_ARGUMENT;
	/* a gradient written over what the backward reads, or over another
	 * gradient, would give wrong numbers: refused */
	for (int i = 0; i < k->num_inputs; i++) {
		if (!grad_inputs[i])
			continue;
		const int64_t rows = k->inputs[i].variable == 1 ? nq : nk;
		const size_t bytes = span_floats(batch, rows, k->inputs[i].cols) * sizeof(float);
		bool bad = overlaps(grad_inputs[i], bytes, out, out_len * sizeof(float)) ||
		           overlaps(grad_inputs[i], bytes, grad_out, out_len * sizeof(float)) ||
		           overlaps(grad_inputs[i], bytes, saved, (size_t)saved_len * sizeof(float));
		for (int j = 0; j < k->num_inputs && !bad; j++) {
			const int64_t rj = k->inputs[j].variable == 1 ? nq : nk;
			const size_t bj = span_floats(batch, rj, k->inputs[j].cols) * sizeof(float);
			bad = overlaps(grad_inputs[i], bytes, inputs[j], bj) ||
			      (j != i && grad_inputs[j] && overlaps(grad_inputs[i], bytes,
			                                            grad_inputs[j], bj));
		}
		if (bad)
			return PA_ERR_ARGUMENT;
	}
	return max_abs(grad_out, out_len) < INFINITY ? PA_OK : PA_ERR_NONFINITE;
}

/* pa_check_grad_args: see pa_kernel.h. */
pa_status pa_check_grad_args(const pa_kernel_info *k, int64_t batch, int64_t n,
                             const float *const inputs[], const float *out,
                             const float *saved, int64_t saved_len,
                             const float *grad_out, float *const grad_inputs[])
{
	return pa_check_grad_args_qk(k, batch, n, n, inputs, out, saved, saved_len,
	                             grad_out, grad_inputs);
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

/*
 * Workspaces are reused: a call's workspace is tens of MB at n = 4096, and
 * a fresh one costs a page fault and a zeroed page per 4 KB (about 5 % of
 * a backward).  pa_free keeps the PA_CACHE largest blocks freed; pa_alloc
 * takes the smallest kept block that is large enough.  A block carries its
 * size in a header of PA_HEAD bytes before the floats.  When the system
 * has no memory for a new block, the kept ones are released and the
 * allocation tried once more, so keeping never makes a call fail.
 */
#define PA_HEAD 64
enum { PA_CACHE = 4 };
static struct { char *block; size_t bytes; } cache[PA_CACHE];
static char cache_busy;

/* cache_lock, cache_unlock: a spin lock around cache[] (held for a few
 * instructions; kernels are called from several threads at once). */
static void cache_lock(void)
{
	while (__atomic_test_and_set(&cache_busy, __ATOMIC_ACQUIRE))
		;
}

static void cache_unlock(void)
{
	__atomic_clear(&cache_busy, __ATOMIC_RELEASE);
}

/* cache_take: the smallest kept block of at least bytes, or NULL. */
static char *cache_take(size_t bytes)
{
	int best = -1;
	cache_lock();
	for (int i = 0; i < PA_CACHE; i++)
		if (cache[i].block && cache[i].bytes >= bytes &&
		    (best < 0 || cache[i].bytes < cache[best].bytes))
			best = i;
	char *b = best >= 0 ? cache[best].block : NULL;
	if (b)
		cache[best].block = NULL;
	cache_unlock();
	return b;
}

/* cache_slot: an empty slot, else the one holding the smallest block
 * (the lock held). */
static int cache_slot(void)
{
	int slot = 0;
	for (int i = 0; i < PA_CACHE; i++) {
		if (!cache[i].block)
			return i;
		if (cache[i].bytes < cache[slot].bytes)
			slot = i;
	}
	return slot;
}

/* cache_flush: release every kept block. */
static void cache_flush(void)
{
	char *out[PA_CACHE];
	cache_lock();
	for (int i = 0; i < PA_CACHE; i++)
		out[i] = cache[i].block, cache[i].block = NULL;
	cache_unlock();
	for (int i = 0; i < PA_CACHE; i++)
		free(out[i]);
}

/* pa_alloc: see pa_kernel.h. */
float *pa_alloc(size_t nfloats)
{
	if (nfloats >= (SIZE_MAX - 2 * PA_HEAD) / sizeof(float))
		return NULL;
	size_t bytes = (nfloats * sizeof(float) + 63) & ~(size_t)63;
	bytes = bytes ? bytes : 64;
	char *b = cache_take(bytes);
	if (!b) {
		b = aligned_alloc(64, bytes + PA_HEAD);
		if (!b) {
			cache_flush();
			b = aligned_alloc(64, bytes + PA_HEAD);
		}
		if (!b)
			return NULL;
		memcpy(b, &bytes, sizeof bytes);
	}
	return (float *)(b + PA_HEAD);
}

/* pa_free: see pa_kernel.h; the block is kept if it is among the
 * PA_CACHE largest freed. */
void pa_free(float *p)
{
	if (!p)
		return;
	char *b = (char *)p - PA_HEAD;
	size_t bytes;
	memcpy(&bytes, b, sizeof bytes);
	cache_lock();
	const int slot = cache_slot();
	char *drop = b;
	if (!cache[slot].block || cache[slot].bytes < bytes) {
		drop = cache[slot].block;
		cache[slot].block = b;
		cache[slot].bytes = bytes;
	}
	cache_unlock();
	free(drop);
}

/* pa_split_parts: see pa_kernel.h. */
int64_t pa_split_parts(int64_t tasks, int64_t nb)
{
	const int64_t threads = pa_max_threads();
	if (tasks <= 0 || tasks >= threads)
		return 1;
	int64_t parts = threads / tasks;
	parts = parts < nb / 2 ? parts : nb / 2;
	return parts > 1 ? parts : 1;
}

/* pa_merge_parts: see pa_kernel.h.  Sums in double, the parts in order. */
void pa_merge_parts(int64_t parts, int rows, int dv, const float *part,
                    size_t stride, float *o, float *lse)
{
	for (int i = 0; i < rows; i++) {
		float top = -INFINITY;
		for (int64_t r = 0; r < parts; r++)
			top = part[r * stride + i] > top ? part[r * stride + i] : top;
		if (top == -INFINITY) {   /* the mask left the row no key */
			for (int c = 0; c < dv; c++)
				o[i * dv + c] = 0.0f;
			lse[i] = -INFINITY;
			continue;
		}
		double den = 0, num[dv > 0 ? dv : 1];
		for (int c = 0; c < dv; c++)
			num[c] = 0;
		for (int64_t r = 0; r < parts; r++) {
			const float *pr = part + r * stride;
			if (pr[i] == -INFINITY)
				continue;
			const double wgt = exp((double)pr[i] - top);
			den += wgt;
			for (int c = 0; c < dv; c++)
				num[c] += wgt * pr[PA_TQ + i * dv + c];
		}
		for (int c = 0; c < dv; c++)
			o[i * dv + c] = (float)(num[c] / den);
		lse[i] = (float)(top + log(den));
	}
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
	if (mx == -INFINITY) {   /* a mask left no weight: the average is 0 */
		for (int v = 0; v < dim; v++)
			out[v] = 0.0f;
		return;
	}
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

/* choose_isa: $PA_ISA when this CPU has it, else the widest it has.  A
 * PA_ISA that names no code path is said once on stderr (a path this CPU
 * lacks falls back quietly: make test forces every path on every CPU). */
static pa_isa_kind choose_isa(void)
{
	const char *want = getenv("PA_ISA");
	bool known = !want || !*want;
	for (int k = PA_ISA_AVX512; want && k >= PA_ISA_GENERIC; k--) {
		known = known || strcmp(want, pa_isa_name(k)) == 0;
		if (strcmp(want, pa_isa_name(k)) == 0 && isa_supported(k))
			return k;
	}
	if (!known)
		fprintf(stderr, "polyattn: PA_ISA=%s is not one of generic, avx2, "
		        "avx512; using the widest this CPU has\n", want);
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
