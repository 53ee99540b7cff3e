/*
 * bench_general.c - how fast polyc's exact kernels for graphs that are not
 * trees run, beside the machine's FMA peak and OpenBLAS sgemm, both
 * measured in the same run, next to each kernel.
 *
 * Strassen attention (x1*x2 + x2*x3 + x3*x1) and 3-tensor attention
 * (x1*x2*x3) at n = 128, 256, 512 and 1024, head_dim = value_dim = 64,
 * batch 1, every core.  Useful work: summing out a variable of Strassen's
 * triangle is a product of an n × n weight matrix with the n ×
 * (value_dim + 1) payload for each of n query positions, 2·n³·(value_dim +
 * 1) flops, plus 2·n²·head_dim per edge for the score tables; the
 * 3-tensor's n³ scores cost 2·n³·head_dim and their weighted values
 * 2·n³·value_dim.  sgemm of order n does 2·n³.  Each figure is a median of
 * runs; "% peak" is the kernel's GFLOP/s over the FMA peak measured just
 * before it, "× sgemm" over sgemm's GFLOP/s measured just after it.
 *
 * Then fewer queries than keys: Strassen's run_qk with nq = 1 and nq = 64
 * queries against nk = 512 keys, beside its full 512 × 512 call (the
 * per-query steps scale with nq; the score tables and the step without
 * x1 do not): medians and the full call's time over the qk call's.
 *
 * usage: bench_general [KERNEL [N]]   (only the rows of that kernel, at N;
 *        KERNEL qk: only the rows of fewer queries)
 */
#include <cblas.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "general.h"
#include "peak.h"
#include "timing.h"

#define MAX_REPS 15

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

/* time_kernel = median seconds of calls of k at length n: at least 3,
 * more while they add up to under half a second. */
static double time_kernel(const pa_kernel_info *k, int n)
{
	float *in[64], *out = malloc(sizeof(float) * n * k->value_dim);
	unsigned seed = 7;
	for (int i = 0; i < k->num_inputs; i++)
		in[i] = filled((size_t)n * k->inputs[i].cols, 0.3f, &seed);
	double t[MAX_REPS], spent = 0;
	int reps = 0;
	k->run(1, n, (const float *const *)in, out);  /* warm-up */
	while (reps < MAX_REPS && (reps < 3 || spent < 0.5)) {
		double t0 = now();
		pa_status st = k->run(1, n, (const float *const *)in, out);
		t[reps] = now() - t0;
		spent += t[reps++];
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

/* time_qk = median seconds of run_qk calls of k, nq queries against nk
 * keys, as time_kernel. */
static double time_qk(const pa_kernel_info *k, int nq, int nk)
{
	float *in[64], *out = malloc(sizeof(float) * nq * k->value_dim);
	unsigned seed = 7;
	for (int i = 0; i < k->num_inputs; i++)
		in[i] = filled((size_t)(k->inputs[i].variable == 1 ? nq : nk) * k->inputs[i].cols,
		               0.3f, &seed);
	double t[MAX_REPS], spent = 0;
	int reps = 0;
	k->run_qk(1, nq, nk, (const float *const *)in, out);  /* warm-up */
	while (reps < MAX_REPS && (reps < 3 || spent < 0.5)) {
		double t0 = now();
		pa_status st = k->run_qk(1, nq, nk, (const float *const *)in, out);
		t[reps] = now() - t0;
		spent += t[reps++];
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

/* time_sgemm = median seconds of an n × n × n sgemm, each sample the mean
 * of enough calls to take 10 ms. */
static double time_sgemm(int n)
{
	unsigned seed = 3;
	float *a = filled((size_t)n * n, 1, &seed), *b = filled((size_t)n * n, 1, &seed);
	float *c = filled((size_t)n * n, 1, &seed);
	int calls = 1;
	double t[MAX_REPS];
	for (int r = -1; r < MAX_REPS; r++) {
		double t0 = now();
		for (int i = 0; i < calls; i++)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f,
			            a, n, b, n, 0.0f, c, n);
		double dt = (now() - t0) / calls;
		if (r < 0)          /* the warm-up sets how many calls a sample takes */
			calls = dt > 0.01 ? 1 : (int)(0.01 / dt) + 1;
		else
			t[r] = dt;
	}
	free(a), free(b), free(c);
	return median(t, MAX_REPS);
}

/* row: one kernel at one n, beside the peak and sgemm of the same order. */
static void row(const pa_kernel_info *k, int n, double flops)
{
	double peak = peak_gflops(), tk = time_kernel(k, n), tg = time_sgemm(n);
	double gk = flops / tk * 1e-9, gg = 2.0 * n * n * n / tg * 1e-9;
	printf("%-9s %5d %10.4f %9.1f %9.1f %7.1f %10.1f %8.2f\n", k->name, n, tk, gk,
	       peak, 100 * gk / peak, gg, gk / gg);
	fflush(stdout);
}

/* wanted = the row of kernel k at n is asked for by argv. */
static bool wanted(int argc, char **argv, const pa_kernel_info *k, int n)
{
	return (argc < 2 || strcmp(argv[1], k->name) == 0) &&
	       (argc < 3 || atoi(argv[2]) == n);
}

int main(int argc, char **argv)
{
	printf("exact kernels of graphs that are not trees (medians), beside the FMA peak "
	       "and OpenBLAS sgemm of order n measured in the same run\n");
	printf("%-9s %5s %10s %9s %9s %7s %10s %8s\n", "kernel", "n", "seconds",
	       "GFLOP/s", "peak", "% peak", "sgemm", "× sgemm");
	const double hd = 64, vd = 64;
	for (int n = 128; n <= 1024; n *= 2) {
		double nn = n;
		if (wanted(argc, argv, &strassen_info, n))
			row(&strassen_info, n, 2 * nn * nn * nn * (vd + 1) + 3 * 2 * nn * nn * hd);
		if (wanted(argc, argv, &tensor3_info, n))
			row(&tensor3_info, n, 2 * nn * nn * nn * (hd + vd));
	}
	if (argc >= 2 && strcmp(argv[1], "qk") != 0 && strcmp(argv[1], strassen_info.name) != 0)
		return 0;
	const int nk = 512;
	printf("\nfewer queries than keys (run_qk, medians): strassen, nk = %d keys\n", nk);
	printf("%-9s %5s %5s %10s %12s %8s\n", "kernel", "nq", "nk", "seconds",
	       "full nk × nk", "ratio");
	double full = time_kernel(&strassen_info, nk);
	for (int nq = 1; nq <= 64; nq *= 64) {
		double tq = time_qk(&strassen_info, nq, nk);
		printf("%-9s %5d %5d %10.5f %12.5f %8.1f\n", strassen_info.name, nq, nk, tq,
		       full, full / tq);
		fflush(stdout);
	}
	return 0;
}
