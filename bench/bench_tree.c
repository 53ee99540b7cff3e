/*
 * bench_tree.c - how fast polyc's tree kernels run: for self-attention,
 * a two- and a three-step path and a star, at n = 1024, 4096 and 16384
 * with head_dim = value_dim = 64, it prints the median seconds, GFLOP/s
 * of useful work, the FMA peak measured in the same run, the fraction of
 * peak, and how time grows from n = 4096 to 16384 (n² predicts 16×).
 *
 * Useful work of a message over an edge: 2·n²·head_dim for the scores
 * and 2·n²·value_dim for the weighted payload; exp is not counted.
 * usage: bench_tree [-k KERNEL]... [-n N]... [TSV]
 *   -k, -n  time only these kernels / lengths (default: all of them)
 *   TSV     also write "kernel n seconds" lines there
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "peak.h"
#include "pa_simd.h"
#include "tree.h"

static const struct {
	const pa_kernel_info *info;
	int edges;               /* messages, each carrying values */
} kernels[] = {
	{&attn_info, 1}, {&path2_info, 2}, {&path3_info, 3}, {&star_info, 3},
};
static const int sizes[] = {1024, 4096, 16384};
enum { NK = sizeof kernels / sizeof *kernels, NS = sizeof sizes / sizeof *sizes };

/* now = monotonic seconds. */
static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

/* cmp_double: qsort order. */
static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* time_kernel = median seconds of reps calls of k at length n. */
static double time_kernel(const pa_kernel_info *k, int n, int reps)
{
	float *in[64], *out = malloc(sizeof(float) * n * k->value_dim);
	unsigned seed = 12345;
	for (int i = 0; i < k->num_inputs; i++) {
		size_t len = (size_t)n * k->inputs[i].cols;
		in[i] = malloc(sizeof(float) * len);
		for (size_t e = 0; e < len; e++)
			in[i][e] = (float)((double)rand_r(&seed) / RAND_MAX - 0.5);
	}
	double t[16];
	k->run(1, n, (const float *const *)in, out);  /* warm up */
	for (int r = 0; r < reps; r++) {
		double t0 = now();
		if (k->run(1, n, (const float *const *)in, out) != PA_OK)
			abort();
		t[r] = now() - t0;
	}
	for (int i = 0; i < k->num_inputs; i++)
		free(in[i]);
	free(out);
	qsort(t, reps, sizeof *t, cmp_double);
	return t[reps / 2];
}

/* selected = whether name is among the -k (or v among the -n) arguments
 * of argv, or there are none. */
static int selected(int argc, char **argv, const char *flag, const char *name, int v)
{
	int any = 0;
	for (int i = 1; i + 1 < argc; i++)
		if (strcmp(argv[i], flag) == 0) {
			any = 1;
			if (name ? strcmp(argv[i + 1], name) == 0 : atoi(argv[i + 1]) == v)
				return 1;
		}
	return !any;
}

int main(int argc, char **argv)
{
	const char *tsv_path = NULL;
	for (int i = 1; i < argc; i++)
		if (argv[i][0] == '-')
			i++;
		else
			tsv_path = argv[i];
	FILE *tsv = tsv_path ? fopen(tsv_path, "w") : NULL;
	double peak = peak_gflops(), secs[NK][NS] = {{0}};
	printf("polyc tree kernels: head_dim = value_dim = 64, batch 1, %d threads, ISA %s\n",
	       omp_get_max_threads(), pa_isa_name(pa_isa()));
	printf("FMA peak, measured: %.1f GFLOP/s\n\n", peak);
	printf("%-8s %-28s %6s %10s %9s %7s\n", "kernel", "polynomial", "n",
	       "seconds", "GFLOP/s", "% peak");
	for (int k = 0; k < NK; k++)
		for (int s = 0; s < NS; s++) {
			const pa_kernel_info *ki = kernels[k].info;
			int n = sizes[s];
			if (!selected(argc, argv, "-k", ki->name, 0) ||
			    !selected(argc, argv, "-n", NULL, n))
				continue;
			double t = secs[k][s] = time_kernel(ki, n, n >= 16384 ? 5 : 9);
			double flops = kernels[k].edges * 2.0 * n * n * (ki->head_dim + ki->value_dim);
			printf("%-8s %-28s %6d %10.4f %9.1f %6.1f%%\n", ki->name, ki->polynomial,
			       n, t, flops / t / 1e9, 100 * flops / t / 1e9 / peak);
			if (tsv)
				fprintf(tsv, "%s\t%d\t%.6f\n", ki->name, n, t);
		}
	printf("\ngrowth from n = 4096 to 16384 (n^2 predicts 16x):");
	for (int k = 0; k < NK; k++)
		if (secs[k][1] > 0 && secs[k][2] > 0)
			printf("  %s %.1fx", kernels[k].info->name, secs[k][2] / secs[k][1]);
	printf("\n");
	if (tsv)
		fclose(tsv);
	return 0;
}
