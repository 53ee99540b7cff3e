/*
 * bench_approx.c - the approximate kernels (polynomial method) beside the
 * exact kernels of the same polynomials (bench/approx.poly), measured side
 * by side in one run.
 *
 * For each pair: seconds of both at n = 4096 … 65536 (batch 1, every
 * core, inputs uniform within the bound), the approximate kernel's growth
 * t(65536) / t(4096) (linear time gives 16; the target is at most 20),
 * and the crossover: the smallest n, found by doubling from 64 and then
 * bisecting, from which the approximate kernel is faster.  An exact kernel
 * whose cost grows as n³ is measured at n = 1024 and then only where the
 * n³ extrapolation from the last size measured stays under EXACT_BUDGET
 * seconds; beyond that the table shows the extrapolation (marked "~").
 * Medians of REPS calls.
 *
 * usage: bench_approx [max_n]
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "approx.h"
#include "timing.h"

#define REPS 5
#define EXACT_BUDGET 20.0    /* seconds one exact call may take */

/* A benchmark's inputs at one n: every input uniform within bound. */
typedef struct Call {
	const pa_kernel_info *k;
	int64_t n;
	float *in[64], *out;
} Call;

static void call_init(Call *c, const pa_kernel_info *k, int64_t n, float bound)
{
	unsigned seed = 11;
	c->k = k, c->n = n;
	for (int i = 0; i < k->num_inputs; i++) {
		size_t len = (size_t)n * k->inputs[i].cols;
		c->in[i] = malloc(len * sizeof(float));
		for (size_t e = 0; c->in[i] && e < len; e++)
			c->in[i][e] = bound * (float)(2.0 * rand_r(&seed) / RAND_MAX - 1.0);
		if (!c->in[i]) {
			fprintf(stderr, "bench_approx: out of memory\n");
			exit(1);
		}
	}
	c->out = malloc(sizeof(float) * n * k->value_dim);
}

static void call_free(Call *c)
{
	for (int i = 0; i < c->k->num_inputs; i++)
		free(c->in[i]);
	free(c->out);
}

/* seconds = the median of reps calls of k at n (fewer when one call is
 * slow: a call over 2 s is taken once). */
static double seconds(const pa_kernel_info *k, int64_t n, float bound)
{
	Call c;
	call_init(&c, k, n, bound);
	double t[REPS];
	int reps = 0;
	for (; reps < REPS; reps++) {
		double t0 = now();
		pa_status st = k->run(1, n, (const float *const *)c.in, c.out);
		t[reps] = now() - t0;
		if (st != PA_OK) {
			fprintf(stderr, "%s at n = %lld: %s\n", k->name, (long long)n,
			        pa_strerror(st));
			exit(1);
		}
		if (t[reps] > 2.0) {
			reps++;
			break;
		}
	}
	call_free(&c);
	qsort(t, reps, sizeof *t, cmp_double);
	return t[reps / 2];
}

/* faster = the approximate kernel beats the exact one at n. */
static bool faster(const pa_kernel_info *a, const pa_kernel_info *e, int64_t n,
                   float bound)
{
	return seconds(a, n, bound) < seconds(e, n, bound);
}

/* crossover = the smallest n (to within 1/16 of it) where a beats e,
 * or 0 if it does not by limit. */
static int64_t crossover(const pa_kernel_info *a, const pa_kernel_info *e,
                         float bound, int64_t limit)
{
	int64_t lo = 32, hi = 64;
	while (!faster(a, e, hi, bound)) {
		if (hi >= limit)
			return 0;
		lo = hi, hi *= 2;
	}
	while (hi - lo > lo / 16) {
		int64_t mid = (lo + hi) / 2;
		if (faster(a, e, mid, bound))
			hi = mid;
		else
			lo = mid;
	}
	return hi;
}

/* bench_pair: the table of one polynomial. */
static void bench_pair(const pa_kernel_info *a, const pa_kernel_info *e,
                       int cubic, int64_t max_n)
{
	float bound = (float)a->bound;
	printf("\n%s  (head_dim %d, value_dim %d, bound %g, weights within %.2g; "
	       "exact cost n^%d)\n", a->polynomial, a->head_dim, a->value_dim,
	       a->bound, a->error, cubic ? 3 : 2);
	printf("%8s %12s %12s %10s\n", "n", "approx s", "exact s", "exact/approx");
	double first = 0, last = 0, te_last = 0;
	int64_t n_last = 0;
	if (cubic) {
		/* seed the n³ extrapolation below the table */
		n_last = 1024;
		te_last = seconds(e, n_last, bound);
		printf("%8lld %12s %12.4f  (exact measured below the table)\n",
		       (long long)n_last, "", te_last);
	}
	for (int64_t n = 4096; n <= max_n; n *= 2) {
		double ta = seconds(a, n, bound), te;
		char mark = ' ';
		double predict = n_last ? te_last * pow((double)n / n_last, cubic ? 3 : 2) : 0;
		if (n_last && predict > EXACT_BUDGET)
			te = predict, mark = '~';
		else
			te = seconds(e, n, bound), te_last = te, n_last = n;
		printf("%8lld %12.4f %11.4f%c %10.1f\n", (long long)n, ta, te, mark,
		       te / ta);
		if (n == 4096)
			first = ta;
		last = ta;
		fflush(stdout);
	}
	if (max_n >= 65536)
		printf("approx growth 4096 -> 65536 (16x n): %.1fx time\n", last / first);
	int64_t x = crossover(a, e, bound, 4096);
	if (x)
		printf("crossover: approx is faster from n = %lld (measured)\n", (long long)x);
	else
		printf("crossover: approx is not faster up to n = 4096\n");
}

int main(int argc, char **argv)
{
	int64_t max_n = argc > 1 ? atoll(argv[1]) : 65536;
	printf("approximate vs exact kernels, batch 1, every core; medians of "
	       "up to %d calls\n", REPS);
	bench_pair(&tree_approx_info, &tree_exact_info, 0, max_n);
	bench_pair(&strassen_approx_info, &strassen_exact_info, 1, max_n);
	bench_pair(&tensor3_approx_info, &tensor3_exact_info, 1, max_n);
	return 0;
}
