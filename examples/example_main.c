/*
 * example_main.c - the driver every example program shares: make
 * pseudo-random inputs for a kernel from its K_info, run it once, print
 * what ran, a checksum of the output (the sum of its floats) and the time
 * the call took, and with --check compare it with pa_reference, the
 * brute-force definition, on a small n.
 *
 *     NAME [N [BATCH]] [--check]
 *
 * N (default 1024) is the sequence length, BATCH (default 1) the number of
 * independent sequences (batch × heads).  Inputs are uniform in [-1, 1),
 * factor inputs within K_info.bound for an approximate kernel.  Exit
 * status: 0; 1 if the kernel fails or --check finds a relative row error
 * above 1e-4 (for an approximate kernel: an error above the one K_info
 * promises, 2ε/(1-ε) times the largest value); 2 on bad arguments.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "example.h"

#define CHECK_TOL 1e-4		/* largest relative row error accepted */

/* The kernel being run, set once by example_main. */
static const pa_kernel_info *kernel;
static pa_kernel_fn kernel_fn;
static const char *example_name = "example";

/* die: print "NAME: why" and exit 1. */
static void die(const char *why)
{
	fprintf(stderr, "%s: %s\n", example_name, why);
	exit(1);
}

/* uniform: the next float in [-1, 1) of a 64-bit linear congruential
 * generator (Knuth's MMIX constants). */
static float uniform(uint64_t *state)
{
	*state = *state * 6364136223846793005u + 1442695040888963407u;
	return (float)((double)(*state >> 40) * 0x1.0p-23 - 1.0);
}

/* make_inputs: one batch × n × cols buffer for every input the kernel's
 * info lists, filled from seed. */
static float **make_inputs(int64_t batch, int64_t n, uint64_t seed)
{
	const pa_kernel_info *k = kernel;
	float **in = calloc(k->num_inputs, sizeof *in);
	if (!in)
		die("out of memory");
	for (int i = 0; i < k->num_inputs; i++) {
		size_t len = (size_t)(batch * n * k->inputs[i].cols);
		if (!(in[i] = malloc(len * sizeof(float))))
			die("out of memory");
		float a = k->bound > 0 && k->inputs[i].kind == PA_INPUT_FACTOR
		          ? (float)k->bound : 1.0f;
		for (size_t e = 0; e < len; e++)
			in[i][e] = a * uniform(&seed);
	}
	return in;
}

/* free_inputs: release what make_inputs allocated. */
static void free_inputs(float **in)
{
	for (int i = 0; i < kernel->num_inputs; i++)
		free(in[i]);
	free(in);
}

/* now: seconds on the monotonic clock. */
static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* run: out = K(in); if the kernel fails, say why and exit 1. */
static void run(int64_t batch, int64_t n, float **in, float *out)
{
	pa_status st = kernel_fn(batch, n, (const float *const *)in, out);
	if (st != PA_OK)
		die(pa_strerror(st));
}

/* check: the largest relative error of an output row (max |out - ref| /
 * max |ref| over the row) of the kernel against pa_reference, on one
 * sequence of length n; for an approximate kernel, the largest absolute
 * error (values are within 1, so that is what its promise bounds);
 * infinite if the reference fails. */
static double check(int64_t n)
{
	int vd = kernel->value_dim;
	float **in = make_inputs(1, n, 7), *out = malloc(n * vd * sizeof *out);
	double *ref = malloc(n * vd * sizeof *ref), worst = 0;
	if (!out || !ref)
		die("out of memory");
	run(1, n, in, out);
	if (pa_reference(kernel, 1, n, (const float *const *)in, ref))
		worst = INFINITY;
	for (int64_t r = 0; r < n && worst < INFINITY; r++) {
		double err = 0, size = 1e-30;
		for (int v = 0; v < vd; v++) {
			err = fmax(err, fabs(out[r * vd + v] - ref[r * vd + v]));
			size = fmax(size, fabs(ref[r * vd + v]));
		}
		if (kernel->error > 0)
			size = 1;
		worst = isfinite(out[r * vd]) ? fmax(worst, err / size) : INFINITY;
	}
	free(ref);
	free(out);
	free_inputs(in);
	return worst;
}

/* count: the positive integer s, or -1 if s is not one. */
static int64_t count(const char *s)
{
	char *end;
	long long v = strtoll(s, &end, 10);
	return *s && *end == '\0' && v > 0 ? v : -1;
}

/* parse_args: [N [BATCH]] [--check] into size[0], size[1] and *want_check;
 * exits with 2 on anything else. */
static void parse_args(int argc, char **argv, int64_t size[2], int *want_check)
{
	int nsize = 0;
	for (int a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--check") == 0)
			*want_check = 1;
		else if (nsize < 2 && (size[nsize] = count(argv[a])) > 0)
			nsize++;
		else {
			fprintf(stderr, "usage: %s [N [BATCH]] [--check]\n", argv[0]);
			exit(2);
		}
	}
}

/* example_main: see example.h. */
int example_main(const pa_kernel_info *k, pa_kernel_fn fn, int64_t check_n,
                 int argc, char **argv)
{
	kernel = k, kernel_fn = fn, example_name = k->name;
	int64_t size[2] = {1024, 1};
	int want_check = 0;
	parse_args(argc, argv, size, &want_check);
	int64_t n = size[0], batch = size[1];
	size_t len = (size_t)(batch * n * k->value_dim);
	float **in = make_inputs(batch, n, 42), *out = malloc(len * sizeof *out);
	if (!out)
		die("out of memory");
	double t0 = now();
	run(batch, n, in, out);
	double t1 = now(), sum = 0;
	for (size_t e = 0; e < len; e++)
		sum += out[e];
	printf("kernel    %s: %s (class %s, algorithm %s)\n", k->name,
	       k->polynomial, k->graph_class, k->algorithm);
	printf("size      batch %lld, n %lld, head_dim %d, value_dim %d\n",
	       (long long)batch, (long long)n, k->head_dim, k->value_dim);
	printf("checksum  %.6e\n", sum);
	printf("time      %.6f s\n", t1 - t0);
	free(out);
	free_inputs(in);
	if (!want_check)
		return 0;
	int64_t cn = n < check_n ? n : check_n;
	double err = check(cn), tol = CHECK_TOL;
	if (k->error > 0) {
		tol = 2 * k->error / (1 - k->error) + 2e-5;
		printf("check     n %lld: max error %.3g, promised %.3g (%s)\n",
		       (long long)cn, err, tol, err <= tol ? "ok" : "FAILED");
	} else
		printf("check     n %lld: max relative error %.3g (%s)\n",
		       (long long)cn, err, err <= tol ? "ok" : "FAILED");
	return err <= tol ? 0 : 1;
}
