/*
 * bench_tree.c - how fast polyc's tree kernels run: for self-attention,
 * a two- and a three-step path and a star, at n = 1024, 4096 and 16384
 * with head_dim = value_dim = 64, it prints the median seconds, GFLOP/s
 * of useful work, the FMA peak measured in the same run, the fraction of
 * peak, and how time grows from n = 4096 to 16384 (n² predicts 16×).
 * On a shared machine the lengths of a kernel are timed in turn, round
 * after round, and the peak is the best of runs before and between the
 * kernels, so the fraction of peak errs low, never high.
 *
 * Useful work of a message over an edge: 2·n²·head_dim for the scores
 * and 2·n²·value_dim for the weighted payload; exp is not counted.  The
 * causal kernels (mask = causal) run at n = 4096 only; their useful work
 * is that of the pairs the mask allows, n·(n+1)/2 per edge, and the run
 * ends with their time beside the unmasked kernel's.
 *
 * Decoding: attn_causal with 1 and with 64 queries against nk = 4096
 * keys through K_call (query row i at position i + nk − nq; the tree
 * kernel runs them natively through K_info.run_qk, O(nq·nk) work) beside
 * the padded path the call layer took before (the dense nk × nk kernel
 * with x1's inputs padded by nk − nq zero rows at the top), the two
 * timed in alternating blocks; the TSV gets "decode_qNQ 4096 seconds" lines for the
 * PyTorch comparison of bench/run.sh.
 * usage: bench_tree [-k KERNEL]... [-n N]... [TSV]
 *   -k, -n  time only these kernels / lengths (default: all of them)
 *   TSV     also write "kernel n seconds" lines there
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "polyattn.h"
#include "peak.h"
#include "timing.h"
#include "pa_simd.h"
#include "tree.h"

static const struct {
	const pa_kernel_info *info;
	int edges;               /* messages, each carrying values */
	int only_n;              /* the one length it runs at, or 0: all */
	const pa_kernel_info *unmasked; /* causal: the same without mask */
} kernels[] = {
	{&attn_info, 1, 0, NULL}, {&path2_info, 2, 0, NULL}, {&path3_info, 3, 0, NULL},
	{&star_info, 3, 0, NULL}, {&attn_causal_info, 1, 4096, &attn_info},
	{&path2_causal_info, 2, 4096, &path2_info},
};
static const int sizes[] = {1024, 4096, 16384};
enum { NK = sizeof kernels / sizeof *kernels, NS = sizeof sizes / sizeof *sizes };
/* Timed calls per kernel and length. */
enum { REPS = 7 };

/* A kernel's inputs and output at one length. */
typedef struct Case {
	int n;
	float *in[64], *out;
	double t[REPS];          /* seconds of each timed call */
} Case;

/* case_init: uniform random inputs in [-0.5, 0.5) for k at length n. */
static void case_init(Case *c, const pa_kernel_info *k, int n)
{
	unsigned seed = 12345;
	c->n = n;
	c->out = malloc(sizeof(float) * n * k->value_dim);
	for (int i = 0; i < k->num_inputs; i++) {
		size_t len = (size_t)n * k->inputs[i].cols;
		c->in[i] = malloc(sizeof(float) * len);
		for (size_t e = 0; e < len; e++)
			c->in[i][e] = (float)((double)rand_r(&seed) / RAND_MAX - 0.5);
	}
}

/* case_run = seconds of one call of k on c. */
static double case_run(const pa_kernel_info *k, Case *c)
{
	double t0 = now();
	if (k->run(1, c->n, (const float *const *)c->in, c->out) != PA_OK)
		abort();
	return now() - t0;
}

/* case_free: release c's buffers. */
static void case_free(const pa_kernel_info *k, Case *c)
{
	for (int i = 0; i < k->num_inputs; i++)
		free(c->in[i]);
	free(c->out);
}

/* time_kernel: secs[s] = median seconds of REPS calls of k at each of the
 * ns lengths, the lengths taken in turn (one call each per round), so a
 * slow spell of a shared machine falls on every length alike. */
static void time_kernel(const pa_kernel_info *k, const int *lengths, int ns, double *secs)
{
	Case c[NS];
	for (int s = 0; s < ns; s++) {
		case_init(&c[s], k, lengths[s]);
		case_run(k, &c[s]);  /* warm up */
	}
	for (int r = 0; r < REPS; r++)
		for (int s = 0; s < ns; s++)
			c[s].t[r] = case_run(k, &c[s]);
	for (int s = 0; s < ns; s++) {
		qsort(c[s].t, REPS, sizeof *c[s].t, cmp_double);
		secs[s] = c[s].t[REPS / 2];
		case_free(k, &c[s]);
	}
}

/* time_ratio = median seconds of a over those of b at length n, the two
 * called in turn, so a slow spell of a shared machine weighs on both. */
static double time_ratio(const pa_kernel_info *a, const pa_kernel_info *b, int n)
{
	Case ca, cb;
	double ta[2 * REPS], tb[2 * REPS];
	case_init(&ca, a, n);
	case_init(&cb, b, n);
	case_run(a, &ca);
	case_run(b, &cb);
	for (int r = 0; r < 2 * REPS; r++) {
		ta[r] = case_run(a, &ca);
		tb[r] = case_run(b, &cb);
	}
	qsort(ta, 2 * REPS, sizeof *ta, cmp_double);
	qsort(tb, 2 * REPS, sizeof *tb, cmp_double);
	case_free(a, &ca);
	case_free(b, &cb);
	return ta[REPS] / tb[REPS];
}

/* A decoding call: nq queries of x1 against nk keys, through K_call, and
 * the same as one dense padded call of K. */
typedef struct Decode {
	int nq, nk;
	float *in[3], *pad_q, *out, *pad_out;
	pa_call c;
	double call[2 * REPS], padded[2 * REPS];
} Decode;

/* decode_init: uniform random inputs in [-0.5, 0.5) for k (x1*x2, three
 * inputs: x1's factor, x2's factor, x2's values). */
static void decode_init(Decode *d, const pa_kernel_info *k, int nq, int nk)
{
	unsigned seed = 777;
	d->nq = nq, d->nk = nk;
	for (int i = 0; i < 3; i++) {
		const size_t len = (size_t)(k->inputs[i].variable == 1 ? nq : nk) * k->inputs[i].cols;
		d->in[i] = malloc(sizeof(float) * len);
		for (size_t e = 0; e < len; e++)
			d->in[i][e] = (float)((double)rand_r(&seed) / RAND_MAX - 0.5);
	}
	const int hd = k->inputs[0].cols;
	d->pad_q = calloc((size_t)nk * hd, sizeof(float));
	memcpy(d->pad_q + (size_t)(nk - nq) * hd, d->in[0], sizeof(float) * nq * hd);
	d->out = malloc(sizeof(float) * nq * k->value_dim);
	d->pad_out = malloc(sizeof(float) * nk * k->value_dim);
	d->c = (pa_call){.mode = PA_FORWARD, .batch = 1, .nq = nq, .nk = nk,
	                 .inputs = (const float *const *)d->in, .out = d->out};
}

/* decode_time: d's K_call and padded dense call, 2·REPS times each: in
 * two rounds of REPS calls of one then REPS of the other (a decoding loop
 * calls K_call over and over on a context that stays in cache; a padded
 * call between every two would flush it), the first call of each block
 * untimed. */
static void decode_time(const pa_kernel_info *k, Decode *d)
{
	const float *padded[3] = {d->pad_q, d->in[1], d->in[2]};
	for (int round = 0; round < 2; round++)
		for (int which = 0; which < 2; which++)
			for (int r = -1; r < REPS; r++) {
				double t0 = now();
				if ((which ? k->run(1, d->nk, padded, d->pad_out) : k->call(&d->c)) != PA_OK)
					abort();
				if (r >= 0)
					(which ? d->padded : d->call)[round * REPS + r] = now() - t0;
			}
	qsort(d->call, 2 * REPS, sizeof *d->call, cmp_double);
	qsort(d->padded, 2 * REPS, sizeof *d->padded, cmp_double);
	for (int i = 0; i < 3; i++)
		free(d->in[i]);
	free(d->pad_q), free(d->out), free(d->pad_out);
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
	int lengths[NK][NS], nlen[NK] = {0};
	printf("polyc tree kernels: head_dim = value_dim = 64, batch 1, %d threads, ISA %s\n",
	       omp_get_max_threads(), pa_isa_name(pa_isa()));
	for (int k = 0; k < NK; k++) {
		if (!selected(argc, argv, "-k", kernels[k].info->name, 0))
			continue;
		for (int s = 0; s < NS; s++)
			if (selected(argc, argv, "-n", NULL, sizes[s]) &&
			    (!kernels[k].only_n || kernels[k].only_n == sizes[s]))
				lengths[k][nlen[k]++] = sizes[s];
		time_kernel(kernels[k].info, lengths[k], nlen[k], secs[k]);
		double p = peak_gflops();  /* the peak again, between kernels */
		peak = p > peak ? p : peak;
	}
	printf("FMA peak, measured: %.1f GFLOP/s (the best of runs between the kernels)\n\n", peak);
	printf("%-13s %-22s %6s %10s %9s %7s\n", "kernel", "polynomial", "n",
	       "seconds", "GFLOP/s", "% peak");
	for (int k = 0; k < NK; k++)
		for (int s = 0; s < nlen[k]; s++) {
			const pa_kernel_info *ki = kernels[k].info;
			int n = lengths[k][s];
			double t = secs[k][s];
			double pairs = kernels[k].unmasked ? n * (n + 1.0) / 2 : (double)n * n;
			double flops = kernels[k].edges * 2.0 * pairs * (ki->head_dim + ki->value_dim);
			printf("%-13s %-22s %6d %10.4f %9.1f %6.1f%%\n", ki->name, ki->polynomial,
			       n, t, flops / t / 1e9, 100 * flops / t / 1e9 / peak);
			if (tsv)
				fprintf(tsv, "%s\t%d\t%.6f\n", ki->name, n, t);
		}
	printf("\ngrowth from n = 4096 to 16384 (n^2 predicts 16x):");
	for (int k = 0; k < NK; k++)
		for (int s = 0; s + 1 < nlen[k]; s++)
			if (lengths[k][s] == 4096 && lengths[k][s + 1] == 16384)
				printf("  %s %.1fx", kernels[k].info->name, secs[k][s + 1] / secs[k][s]);
	printf("\n");
	for (int k = 0; k < NK; k++)
		if (kernels[k].unmasked && nlen[k]) {
			double r = time_ratio(kernels[k].info, kernels[k].unmasked, lengths[k][0]);
			printf("mask = causal: %s at n = %d takes %.2fx the time of %s "
			       "(medians of %d calls, the two in turn)\n", kernels[k].info->name,
			       lengths[k][0], r, kernels[k].unmasked->name, 2 * REPS);
		}
	if (selected(argc, argv, "-k", "decode", 0)) {
		static const int nqs[] = {1, 64};
		const int nk = 4096;
		printf("\ndecoding, %s (causal x1*x2) through K_call, nk = %d keys, query row i at\n"
		       "position i + nk - nq; padded: the dense nk x nk call with nk - nq zero query rows\n",
		       attn_causal_info.name, nk);
		printf("%-10s %6s %6s %12s %12s %9s\n", "row", "nq", "nk", "K_call s", "padded s",
		       "speedup");
		for (int q = 0; q < 2; q++) {
			Decode d;
			decode_init(&d, &attn_causal_info, nqs[q], nk);
			decode_time(&attn_causal_info, &d);
			const double tc = d.call[REPS], tp = d.padded[REPS];
			char name[32];
			snprintf(name, sizeof name, "decode_q%d", nqs[q]);
			printf("%-10s %6d %6d %12.6f %12.6f %8.1fx\n", name, nqs[q], nk, tc, tp, tp / tc);
			if (tsv)
				fprintf(tsv, "%s\t%d\t%.6f\n", name, nk, tc);
		}
		printf("(medians of %d calls, K_call and padded in blocks of %d, two rounds)\n",
		       2 * REPS, REPS);
	}
	if (tsv)
		fclose(tsv);
	return 0;
}
