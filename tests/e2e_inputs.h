/*
 * e2e_inputs.h - what the kernel checks share (check_e2e.c, check_grad.c):
 * facts about a kernel from its K_info, buffers for its inputs and the
 * ways of filling them: scores of order 1, or of order 1e4 exactly
 * representable in float.  Needs the table tests/e2e/mkcases.sh writes.
 */
#ifndef TESTS_E2E_INPUTS_H
#define TESTS_E2E_INPUTS_H

#include <check.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>

#include "polyattn.h"
#include "rnd.h"

#ifndef HUGE_SCORE
#define HUGE_SCORE 1e4       /* |score| each monomial reaches in "huge" */
#endif

/* ------------------------------------------------------------- random */

/* rnd_seed: the seed of one (test, kernel, n, batch) run. */
static inline uint64_t rnd_seed(int test, int kernel, int64_t n, int64_t batch)
{
	uint64_t s = (uint64_t)test << 48 ^ (uint64_t)kernel << 24 ^
	             (uint64_t)n << 4 ^ (uint64_t)batch;
	rnd_next(&s);
	return s;
}

/* ------------------------------------------------------ kernel facts */

/* skip_kernel: true when E2E_KERNEL names another kernel than k. */
static inline bool skip_kernel(const pa_kernel_info *k)
{
	const char *only = getenv("E2E_KERNEL");
	return only && *only && strcmp(only, k->name) != 0;
}

/* is_tree: the kernel's graph is a forest (doc/design.md, "Classes"). */
static inline bool is_tree(const pa_kernel_info *k)
{
	return strcmp(k->graph_class, "tree") == 0;
}

/* degree_of: k_m, the factor inputs of monomial m. */
static inline int degree_of(const pa_kernel_info *k, int m)
{
	int d = 0;
	for (int i = 0; i < k->num_inputs; i++)
		d += k->inputs[i].kind == PA_INPUT_FACTOR && k->inputs[i].monomial == m;
	return d;
}

/* tuple_allowed: positions pos keep every mask constraint of k and its
 * window (doc/design.md, "Masks"). */
static inline bool tuple_allowed(const pa_kernel_info *k, const int64_t *pos)
{
	for (int i = 0; i < k->num_masks; i++) {
		int64_t a = pos[k->masks[i].a], b = pos[k->masks[i].b];
		if ((k->masks[i].strict ? a >= b : a > b) ||
		    (k->window && b - a >= k->window))
			return false;
	}
	return true;
}

/* row_empty: no tuple with x1 at l1 keeps k's mask (its output is 0,
 * its gradients 0). */
static inline bool row_empty(const pa_kernel_info *k, int64_t n, int64_t l1)
{
	int64_t pos[33] = {0};
	pos[1] = l1;
	for (;;) {
		if (tuple_allowed(k, pos))
			return false;
		int j = 2;
		for (; j <= k->num_vars; j++) {
			if (++pos[j] < n)
				break;
			pos[j] = 0;
		}
		if (j > k->num_vars)
			return true;
	}
}

/* ref_cost: the operations pa_reference spends on (batch, n). */
static inline double ref_cost(const pa_kernel_info *k, int64_t n, int64_t batch)
{
	double per_tuple = k->num_monomials;
	for (int i = 0; i < k->num_inputs; i++)
		per_tuple += k->inputs[i].cols;
	return (double)batch * pow((double)n, k->num_vars) * per_tuple;
}

/* ------------------------------------------------------------ buffers */

/* The inputs of one call, and views of one batch entry of them. */
typedef struct Inputs {
	const pa_kernel_info *k;
	int64_t batch, n;
	float *buf[256];         /* input i: batch × n × cols floats */
} Inputs;

/* inputs_len: the floats of input i. */
static inline size_t inputs_len(const Inputs *in, int i)
{
	return (size_t)(in->batch * in->n * in->k->inputs[i].cols);
}

/* inputs_alloc: zeroed buffers for every input of k. */
static inline void inputs_alloc(Inputs *in, const pa_kernel_info *k, int64_t n,
                         int64_t batch)
{
	ck_assert_msg(k->num_inputs > 0 && k->num_inputs <= 256,
	              "%s: num_inputs %d", k->name, k->num_inputs);
	in->k = k, in->n = n, in->batch = batch;
	for (int i = 0; i < k->num_inputs; i++) {
		in->buf[i] = calloc(inputs_len(in, i), sizeof(float));
		ck_assert(in->buf[i] != NULL);
	}
}

/* inputs_free: release what inputs_alloc took. */
static inline void inputs_free(Inputs *in)
{
	for (int i = 0; i < in->k->num_inputs; i++)
		free(in->buf[i]);
}

/* inputs_view: ptrs[i] = input i of batch entry b (b = 0 with the whole
 * batch behind it, for a call on every entry). */
static inline void inputs_view(const Inputs *in, int64_t b, const float *ptrs[])
{
	for (int i = 0; i < in->k->num_inputs; i++)
		ptrs[i] = in->buf[i] + b * in->n * in->k->inputs[i].cols;
}

/* ----------------------------------------------------- filling inputs */

/* fill_values: every value matrix uniform in [-1, 1). */
static inline void fill_values(Inputs *in, uint64_t *s)
{
	for (int i = 0; i < in->k->num_inputs; i++)
		if (in->k->inputs[i].kind == PA_INPUT_VALUE)
			for (size_t e = 0; e < inputs_len(in, i); e++)
				in->buf[i][e] = (float)rnd_unit(s);
}

/* fill_factors_unit: the factors of monomial m uniform in [-a, a) with
 * a = √3 · (1 / (|scale·c_m| · √head_dim))^(1/k_m): a product of k_m of
 * them has variance (a²/3)^k_m, so each monomial's score has standard
 * deviation 1 and scores are of order 1. */
static inline void fill_factors_unit(Inputs *in, uint64_t *s)
{
	const pa_kernel_info *k = in->k;
	for (int i = 0; i < k->num_inputs; i++) {
		const pa_input_desc *d = &k->inputs[i];
		if (d->kind != PA_INPUT_FACTOR)
			continue;
		double w = fabs(k->scale * k->coefficients[d->monomial]);
		double a = sqrt(3.0) * pow(1.0 / (w * sqrt((double)d->cols)),
		                           1.0 / degree_of(k, d->monomial));
		for (size_t e = 0; e < inputs_len(in, i); e++)
			in->buf[i][e] = (float)(a * rnd_unit(s));
	}
}

/* monomial_max: max over batch entries and position tuples of
 * |scale · c_m · Σ_l Π_q F[m,q][ℓ_j(q), l]|, by enumerating the tuples of
 * the monomial's own variables (n^(distinct variables) of them). */
static inline double monomial_max(const Inputs *in, int m)
{
	const pa_kernel_info *k = in->k;
	int occ[64], nocc = 0, var[64], nvar = 0, slot[64];
	for (int i = 0; i < k->num_inputs && nocc < 64; i++) {
		if (k->inputs[i].kind != PA_INPUT_FACTOR || k->inputs[i].monomial != m)
			continue;
		int j = k->inputs[i].variable, v = 0;
		while (v < nvar && var[v] != j)
			v++;
		if (v == nvar)
			var[nvar++] = j;
		occ[nocc] = i, slot[nocc++] = v;
	}
	double best = 0, tuples = pow((double)in->n, nvar);
	int hd = k->head_dim;
	for (int64_t b = 0; b < in->batch; b++)
		for (int64_t t = 0; t < (int64_t)tuples; t++) {
			int64_t pos[64], r = t;
			for (int v = 0; v < nvar; v++)
				pos[v] = r % in->n, r /= in->n;
			double dot = 0;
			for (int l = 0; l < hd; l++) {
				double p = 1;
				for (int q = 0; q < nocc; q++)
					p *= in->buf[occ[q]][(b * in->n + pos[slot[q]]) * hd + l];
				dot += p;
			}
			best = fmax(best, fabs(dot));
		}
	return best * fabs(k->scale * k->coefficients[m]);
}

/* fill_factors_huge: scale monomial m's unit factors by
 * (HUGE_SCORE / monomial_max)^(1/k_m) and round them to integers, so its
 * largest |score| is about HUGE_SCORE and the dot products are exact in
 * float (|Σ| < 2^24).  Returns the largest monomial_max afterwards. */
static inline double fill_factors_huge(Inputs *in, uint64_t *s)
{
	const pa_kernel_info *k = in->k;
	fill_factors_unit(in, s);
	double reached = 0;
	for (int m = 0; m < k->num_monomials; m++) {
		double mx = monomial_max(in, m);
		double a = mx > 0 ? pow(HUGE_SCORE / mx, 1.0 / degree_of(k, m)) : 1;
		for (int i = 0; i < k->num_inputs; i++)
			if (k->inputs[i].kind == PA_INPUT_FACTOR &&
			    k->inputs[i].monomial == m)
				for (size_t e = 0; e < inputs_len(in, i); e++)
					in->buf[i][e] = nearbyintf((float)(a * in->buf[i][e]));
		reached = fmax(reached, monomial_max(in, m));
	}
	return reached;
}


/* ---------------------------------------------------- out of memory */

/* vm_bytes: this process's virtual memory size, from /proc/self/statm. */
static inline size_t vm_bytes(void)
{
	unsigned long pages = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%lu", &pages) != 1)
			pages = 0;
		fclose(f);
	}
	return pages * (size_t)sysconf(_SC_PAGESIZE);
}

/* Under AddressSanitizer a failed allocation returns NULL, as libc's
 * does, instead of ending the process (see nomem).  LeakSanitizer's
 * tracking of dynamic TLS crashes now and then at exit with OpenMP threads
 * alive ("Tracer caught signal 11", google/sanitizers#1342, #1322): it is
 * turned off, as those reports advise; heap leaks are still found. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "allocator_may_return_null=1:intercept_tls_get_addr=0";
}

/* A child forked from a process whose OpenMP threads are running holds
 * libomp's records of threads it does not have: LeakSanitizer would call
 * them leaks when the nomem child exits.  Only libomp's own allocations
 * are ignored. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:libomp.so\n";
}

#endif /* TESTS_E2E_INPUTS_H */
