/*
 * bench_large.c - a tree kernel at large n runs in memory linear in n.
 *
 * Runs `large` (bench/large.poly: x1*x2 + x2*x3, head_dim = value_dim =
 * 16) once at each n given (default 25,000, 50,000 and 100,000; batch 1),
 * smallest first, and prints the seconds, the peak resident set size
 * (getrusage ru_maxrss), the memory the inputs and output take, and the
 * workspace the kernel allocates by the formula of README "Memory":
 *
 *     per message x_j -> parent, dim = (monomials on the edge) · head_dim,
 *     n' = n rounded up to a multiple of 32 (PA_BK):
 *         queries n·dim, packed keys n'·dim, key bias n', log-normalizer n,
 *         and when the subtree of x_j carries values: payload
 *         n'·pad16(value_dim) and message n·value_dim floats,
 *     each buffer rounded up to 16 floats; times 4 bytes and batch.
 *
 * Peak RSS minus the resident size just before the call is the memory the
 * call itself touched: it should match the workspace within a few MB
 * (thread stacks, the OpenMP runtime).  An n × n float matrix would be
 * 4·n² bytes: 40 GB at n = 100,000.
 *
 * usage: bench_large [N]...
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "large.h"
#include "timing.h"

#define MB (1024.0 * 1024.0)

/* peak_rss = the process's peak resident set size in bytes. */
static double peak_rss(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss * 1024.0;
}

/* rss = the current resident set size in bytes (/proc/self/statm). */
static double rss(void)
{
	long pages = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f && fscanf(f, "%ld %ld", &pages, &res) != 2)
		res = 0;
	if (f)
		fclose(f);
	return res * 4096.0;
}

/* carve = floats of one buffer, rounded up to 16 as pa_carve does. */
static double carve(int64_t rows, int cols)
{
	return (double)((rows * cols + 15) / 16 * 16);
}

/* workspace_bytes = the formula above for `large`: two messages over
 * one-monomial edges (dim = head_dim), both carrying values. */
static double workspace_bytes(int64_t n)
{
	const int dim = large_info.head_dim, vd = large_info.value_dim;
	const int64_t np = (n + 31) / 32 * 32;
	const int pad = (vd + 15) / 16 * 16;
	double per_msg = carve(n, dim) + carve(np, dim) + carve(np, 1) +
	                 carve(n, 1) + carve(np, pad) + carve(n, vd);
	return 2 * per_msg * sizeof(float);
}

/* run_once: one call at n; returns its status. */
static int run_once(int64_t n)
{
	const pa_kernel_info *k = &large_info;
	const float *in[16];
	double io = 0;
	for (int i = 0; i < k->num_inputs; i++) {
		size_t len = (size_t)n * k->inputs[i].cols;
		float *x = malloc(len * sizeof *x);
		if (!x)
			return PA_ERR_NOMEM;
		for (size_t e = 0; e < len; e++)
			x[e] = (float)((e * 2654435761u) % 2001) / 1000.0f - 1.0f;
		in[i] = x;
		io += len * sizeof *x;
	}
	float *out = calloc((size_t)n * k->value_dim, sizeof *out);
	io += (double)n * k->value_dim * sizeof *out;
	double before = rss(), t0 = now();
	pa_status st = large(1, n, in, out);
	double secs = now() - t0, peak = peak_rss();
	printf("n %7lld  %-7s %8.2f s  peak RSS %7.1f MB  inputs+output %6.1f MB"
	       "  workspace: formula %6.1f MB, measured %6.1f MB  (n x n floats: %.1f GB)\n",
	       (long long)n, st == PA_OK ? "ok" : pa_strerror(st), secs, peak / MB,
	       io / MB, workspace_bytes(n) / MB, (peak - before) / MB,
	       4.0 * n * n / 1e9);
	fflush(stdout);
	for (int i = 0; i < k->num_inputs; i++)
		free((void *)in[i]);
	free(out);
	return st;
}

/* main: every n of the command line, or 25,000, 50,000 and 100,000. */
int main(int argc, char **argv)
{
	int64_t def[] = {25000, 50000, 100000};
	int bad = 0;
	printf("%s: %s, head_dim %d, value_dim %d, batch 1\n", large_info.name,
	       large_info.polynomial, large_info.head_dim, large_info.value_dim);
	if (argc > 1)
		for (int a = 1; a < argc; a++)
			bad |= run_once(atoll(argv[a])) != PA_OK;
	else
		for (int a = 0; a < 3; a++)
			bad |= run_once(def[a]) != PA_OK;
	return bad;
}
