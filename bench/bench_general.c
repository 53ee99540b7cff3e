/*
 * bench_general.c - how fast polyc's exact kernels for graphs that are not
 * trees run, beside OpenBLAS sgemm measured in the same run.
 *
 * Strassen attention (x1*x2 + x2*x3 + x3*x1) at n = 512 and 1024 and
 * 3-tensor attention (x1*x2*x3) at n = 256 and 512, head_dim = value_dim
 * = 64, batch 1, every core.  Useful work: summing out a variable of a
 * triangle is a product of an n × n weight matrix with the n × (value_dim
 * + 1) payload for each of n query positions, 2·n³·(value_dim + 1) flops,
 * plus 2·n²·head_dim per edge for the score tables; for the 3-tensor the
 * n³ scores cost 2·n³·head_dim more.  sgemm of order n does 2·n³.  The
 * figures are medians of several runs; the ratio is the kernel's GFLOP/s
 * over sgemm's.
 *
 * usage: bench_general
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "general.h"
#include "timing.h"

/* median = the middle of t[0 .. reps) (sorted in place). */
static double median(double *t, int reps)
{
	qsort(t, reps, sizeof *t, cmp_double);
	return t[reps / 2];
}

/* filled = n floats, uniform in [-a, a). */
static float *filled(size_t n, float a, unsigned *seed)
{
	float *x = malloc(n * sizeof *x);
	for (size_t i = 0; x && i < n; i++)
		x[i] = a * (2.0f * (float)((double)rand_r(seed) / RAND_MAX) - 1.0f);
	return x;
}

/* time_kernel = median seconds of reps calls of k at length n. */
static double time_kernel(const pa_kernel_info *k, int n, int reps)
{
	float *in[64], *out = malloc(sizeof(float) * n * k->value_dim);
	unsigned seed = 7;
	for (int i = 0; i < k->num_inputs; i++)
		in[i] = filled((size_t)n * k->inputs[i].cols, 0.3f, &seed);
	double t[16];
	for (int r = 0; r < reps; r++) {
		double t0 = now();
		pa_status st = k->run(1, n, (const float *const *)in, out);
		t[r] = now() - t0;
		if (st != PA_OK) {
			fprintf(stderr, "%s: %s\n", k->name, pa_strerror(st));
			exit(1);
		}
	}
	for (int i = 0; i < k->num_inputs; i++)
		free(in[i]);
	free(out);
	return median(t, reps);
}

/* time_sgemm = median seconds of an n × n × n sgemm. */
static double time_sgemm(int n, int reps)
{
	unsigned seed = 3;
	float *a = filled((size_t)n * n, 1, &seed), *b = filled((size_t)n * n, 1, &seed);
	float *c = filled((size_t)n * n, 1, &seed);
	double t[16];
	for (int r = 0; r < reps; r++) {
		double t0 = now();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f,
		            a, n, b, n, 0.0f, c, n);
		t[r] = now() - t0;
	}
	free(a), free(b), free(c);
	return median(t, reps);
}

/* row: one kernel at one n, with sgemm of the same order. */
static void row(const pa_kernel_info *k, int n, double flops, int reps)
{
	double tk = time_kernel(k, n, reps), tg = time_sgemm(n, 5);
	double gk = flops / tk * 1e-9, gg = 2.0 * n * n * n / tg * 1e-9;
	printf("%-9s %5d %10.4f %9.1f %12.5f %9.1f %7.2f\n", k->name, n, tk, gk,
	       tg, gg, gk / gg);
}

int main(void)
{
	printf("exact kernels of graphs that are not trees (median of runs), "
	       "OpenBLAS sgemm of order n in the same run\n");
	printf("%-9s %5s %10s %9s %12s %9s %7s\n", "kernel", "n", "seconds",
	       "GFLOP/s", "sgemm s", "GFLOP/s", "ratio");
	const int hd = 64, vd = 64;
	for (int n = 512; n <= 1024; n *= 2) {
		double nn = n;
		row(&strassen_info, n, 2 * nn * nn * nn * (vd + 1) + 3 * 2 * nn * nn * hd,
		    n > 512 ? 3 : 5);
	}
	for (int n = 256; n <= 512; n *= 2) {
		double nn = n;
		row(&tensor3_info, n, 2 * nn * nn * nn * (hd + vd + 1), 3);
	}
	return 0;
}
