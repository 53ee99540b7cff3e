/*
 * compose3.c - run the compose3 kernel of examples/compose3.poly, tree
 * attention for three-fold composition (x1*x2 + x2*x3 + x3*x4, values on
 * x4), on pseudo-random inputs.  Its definition sums over n³ chains per
 * query; the kernel passes three messages along the path in O(n²·d).
 *
 *     compose3 [N [BATCH]] [--check]
 *
 * N (default 1024) is the sequence length, BATCH (default 1) the number of
 * independent sequences (batch × heads).  The program prints what ran
 * (from compose3_info), a checksum of the output (the sum of its floats)
 * and the time the call took.  With --check it also runs the kernel and
 * pa_reference, the brute-force definition, on n ≤ 16 (the reference
 * costs n⁴ here) and prints the largest relative error of an output row.
 * Exit status: 0; 1 if the kernel fails or --check finds an error above
 * 1e-4; 2 on bad arguments.
 *
 * Build (make examples does this, into build/examples/):
 *     polyc compose3.poly -c -o compose3.o
 *     polyc compose3.poly --emit=h -o compose3.h
 *     clang -fopenmp -Iruntime compose3.c compose3.o libpolyattn.a -lm
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compose3.h"

#define CHECK_N 16		/* n of the --check run */
#define CHECK_TOL 1e-4		/* largest relative row error accepted */

/* die: print "compose3: why" and exit 1. */
static void die(const char *why)
{
	fprintf(stderr, "compose3: %s\n", why);
	exit(1);
}

/* uniform: the next float in [-1, 1) of a 64-bit linear congruential
 * generator (Knuth's MMIX constants). */
static float uniform(uint64_t *state)
{
	*state = *state * 6364136223846793005u + 1442695040888963407u;
	return (float)((double)(*state >> 40) * 0x1.0p-23 - 1.0);
}

/* make_inputs: one batch × n × cols buffer for every input compose3_info
 * lists (A to F and V4, see compose3.poly), filled from seed. */
static float **make_inputs(int64_t batch, int64_t n, uint64_t seed)
{
	const pa_kernel_info *k = &compose3_info;
	float **in = calloc(k->num_inputs, sizeof *in);
	if (!in)
		die("out of memory");
	for (int i = 0; i < k->num_inputs; i++) {
		size_t len = (size_t)(batch * n * k->inputs[i].cols);
		if (!(in[i] = malloc(len * sizeof(float))))
			die("out of memory");
		for (size_t e = 0; e < len; e++)
			in[i][e] = uniform(&seed);
	}
	return in;
}

/* free_inputs: release what make_inputs allocated. */
static void free_inputs(float **in)
{
	for (int i = 0; i < compose3_info.num_inputs; i++)
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

/* run: out = compose3(in); if the kernel fails, say why and exit 1. */
static void run(int64_t batch, int64_t n, float **in, float *out)
{
	pa_status st = compose3(batch, n, (const float *const *)in, out);
	if (st != PA_OK)
		die(pa_strerror(st));
}

/* check: the largest relative error of an output row (max |out - ref| /
 * max |ref| over the row) of the kernel against pa_reference, on one
 * sequence of length n; infinite if the reference fails. */
static double check(int64_t n)
{
	int vd = compose3_info.value_dim;
	float **in = make_inputs(1, n, 7), *out = malloc(n * vd * sizeof *out);
	double *ref = malloc(n * vd * sizeof *ref), worst = 0;
	if (!out || !ref)
		die("out of memory");
	run(1, n, in, out);
	if (pa_reference(&compose3_info, 1, n, (const float *const *)in, ref))
		worst = INFINITY;
	for (int64_t r = 0; r < n && worst < INFINITY; r++) {
		double err = 0, size = 1e-30;
		for (int v = 0; v < vd; v++) {
			err = fmax(err, fabs(out[r * vd + v] - ref[r * vd + v]));
			size = fmax(size, fabs(ref[r * vd + v]));
		}
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

/* main: run the kernel once on BATCH sequences of length N, print what
 * ran, the checksum and the time; then --check on a small n. */
int main(int argc, char **argv)
{
	int64_t size[2] = {1024, 1};
	int want_check = 0;
	parse_args(argc, argv, size, &want_check);
	int64_t n = size[0], batch = size[1];
	const pa_kernel_info *k = &compose3_info;
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
	int64_t cn = n < CHECK_N ? n : CHECK_N;
	double err = check(cn);
	printf("check     n %lld: max relative error %.3g (%s)\n", (long long)cn,
	       err, err <= CHECK_TOL ? "ok" : "FAILED");
	return err <= CHECK_TOL ? 0 : 1;
}
