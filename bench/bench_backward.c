/*
 * bench_backward.c - how fast polyc's training pair runs (doc/training.md): for
 * self-attention x1*x2 at n = 1024 and 4096 and the 2-edge path x1*x2 +
 * x2*x3 (values on x3) at n = 1024, 4096 and 16384, head_dim = value_dim =
 * 64, scale 0.125, it prints the median seconds of the plain forward K,
 * the training forward K_train, K_backward and K_train + K_backward, their
 * GFLOP/s, the fraction of the FMA peak measured in the same run, and
 * backward / forward.  The three calls are timed in turn, round after
 * round, so a slow spell of a shared machine falls on all of them alike;
 * the peak is the best of runs before and between the shapes.
 *
 * Flops counted, per batch entry and per edge (exp, max and the row sums
 * are not counted):
 *     forward   2·n²·head_dim (scores) + 2·n²·value_dim (payload)
 *     backward  the five n × n products of FlashAttention-2's backward:
 *               the scores again, dP = dm·payloadᵀ, d(payload) = Pᵀ·dm,
 *               dQ = dS·K, dK = dSᵀ·Q: 2·n²·(3·head_dim + 2·value_dim)
 * so at head_dim = value_dim = d a forward is 4·n²·d and a backward
 * 10·n²·d flops (2.5×); train + backward counts 14·n²·d.
 *
 * Other modes:
 *   -g            Strassen x1*x2 + x2*x3 + x3*x1 at n = 256, 512, 1024 and
 *                 3-tensor x1*x2*x3 at n = 128, 256, 512 (the elimination
 *                 plan, head_dim = value_dim = 64, batch 1): median seconds
 *                 of the same four timings over 3 rounds, and backward /
 *                 forward; the TSV gets the same columns.
 *   --dump DIR    for every shape: write the inputs, grad_out, K_train's
 *                 out and K_backward's gradients as raw float32 files
 *                 DIR/KERNEL_N_NAME.f32 (NAME: an input's name, "gout",
 *                 "out", "d" + an input's name), for torch_backward.py
 *                 --check to compare with PyTorch's autograd.
 *   --approx      the approximate kernels of bench/approx_backward.poly
 *                 (batch 1, factor entries uniform within the bound): the
 *                 median seconds of K, K_train, K_backward and K_train +
 *                 K_backward at n = 4096 … 65536, and each one's growth
 *                 from n = 4096 (16× n: linear is 16×).
 *   --memory N    K_train then K_backward of `big` (head_dim = value_dim =
 *                 16, batch 1) at n = N: seconds, saved_floats, the
 *                 buffers the caller holds, and the peak resident set
 *                 size before and after each call.  Also appends "n
 *                 saved_bytes peak_rss_bytes workspace_bytes" to the TSV
 *                 if given (workspace: peak RSS after the backward minus
 *                 before the calls, every caller's buffer being resident).
 *
 * Inputs and grad_out are standard normal (Box-Muller on rand_r), so the
 * scores scale·⟨q, k⟩ have unit spread, as in a trained transformer.
 *
 * usage: bench_backward [-k KERNEL]... [-n N]... [TSV]
 *        bench_backward -g [TSV]
 *        bench_backward --dump DIR
 *        bench_backward --memory N [TSV]
 *        bench_backward --approx
 *   -k, -n  time only these kernels / lengths (default: all of them)
 *   TSV     also write "kernel n fwd train bwd train+bwd" seconds there
 */
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "approx_backward.h"
#include "backward.h"
#include "pa_simd.h"
#include "peak.h"
#include "timing.h"

/* Every input and the output carry this leading batch (batch × heads). */
enum { BATCH = 4 };

static const struct {
	const pa_kernel_info *info;
	int edges;               /* messages, each carrying a payload */
	int sizes[3];            /* lengths timed; 0 ends the list */
} kernels[] = {
	{&attn_info, 1, {1024, 4096, 0}},
	{&path2_info, 2, {1024, 4096, 16384}},
};
enum { NK = sizeof kernels / sizeof *kernels, MAXS = 3 };
/* The elimination kernels of -g, batch 1 (each n^3). */
static const struct {
	const pa_kernel_info *info;
	int sizes[3];
} general[] = {
	{&strassen_info, {256, 512, 1024}},
	{&tensor3_info, {128, 256, 512}},
};
enum { NG = sizeof general / sizeof *general, REPS_GENERAL = 3 };
/* Timed rounds per shape: fewer at 16384, where one round takes seconds. */
enum { REPS = 7, REPS_LONG = 3 };
/* What a round times. */
enum { T_FWD, T_TRAIN, T_BWD, T_BOTH, NT };
static const char *const tname[NT] = {"forward", "train", "backward", "train+bwd"};

/* A kernel's buffers at one length. */
typedef struct Case {
	const pa_kernel_info *k;
	int64_t batch, n;
	float *in[16], *grad[16], *out, *saved, *gout;
} Case;

/* gauss = a standard normal sample (Box-Muller on rand_r). */
static float gauss(unsigned *seed)
{
	double u = ((double)rand_r(seed) + 1) / ((double)RAND_MAX + 2);
	double v = (double)rand_r(seed) / RAND_MAX;
	return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

/* fill = a buffer of len floats, standard normal, or zero when seed is
 * NULL; written through, so its pages are resident; exits when out of
 * memory. */
static float *fill(size_t len, unsigned *seed)
{
	float *x = malloc(len * sizeof *x);
	if (!x) {
		fprintf(stderr, "bench_backward: out of memory\n");
		exit(2);
	}
	for (size_t e = 0; e < len; e++)
		x[e] = seed ? gauss(seed) : 0.0f;
	return x;
}

/* case_init: random inputs and grad_out for k at batch × n, zeroed out,
 * saved and gradients. */
static void case_init(Case *c, const pa_kernel_info *k, int64_t batch, int64_t n)
{
	unsigned seed = 12345;
	size_t rows = (size_t)(batch * n);
	c->k = k, c->batch = batch, c->n = n;
	for (int i = 0; i < k->num_inputs; i++) {
		c->in[i] = fill(rows * k->inputs[i].cols, &seed);
		c->grad[i] = fill(rows * k->inputs[i].cols, NULL);
	}
	c->gout = fill(rows * k->value_dim, &seed);
	c->out = fill(rows * k->value_dim, NULL);
	c->saved = fill((size_t)k->saved_floats(batch, n), NULL);
}

/* case_free: release c's buffers. */
static void case_free(Case *c)
{
	for (int i = 0; i < c->k->num_inputs; i++)
		free(c->in[i]), free(c->grad[i]);
	free(c->gout), free(c->out), free(c->saved);
}

/* check: abort with the kernel's name when st is not PA_OK. */
static void check(pa_status st, const Case *c, const char *what)
{
	if (st != PA_OK) {
		fprintf(stderr, "bench_backward: %s %s at n = %lld: %s\n", c->k->name, what,
		        (long long)c->n, pa_strerror(st));
		exit(2);
	}
}

/* call_* = seconds of one call on c. */
static double call_fwd(Case *c)
{
	double t0 = now();
	check(c->k->run(c->batch, c->n, (const float *const *)c->in, c->out), c, "forward");
	return now() - t0;
}
static double call_train(Case *c)
{
	double t0 = now();
	check(c->k->train(c->batch, c->n, (const float *const *)c->in, c->out, c->saved), c,
	      "train");
	return now() - t0;
}
static double call_bwd(Case *c)
{
	double t0 = now();
	check(c->k->backward(c->batch, c->n, (const float *const *)c->in, c->out, c->saved,
	                     c->gout, c->grad),
	      c, "backward");
	return now() - t0;
}

/* time_shape: secs[t] = median seconds of each of NT timings of k at n,
 * over reps rounds of forward, train, backward (after one warm-up round
 * below n = 16384). */
static void time_shape(const pa_kernel_info *k, int64_t batch, int n, int reps,
                       bool warm, double *secs)
{
	Case c;
	double t[NT][REPS];
	case_init(&c, k, batch, n);
	if (warm)
		call_fwd(&c), call_train(&c), call_bwd(&c);
	for (int r = 0; r < reps; r++) {
		t[T_FWD][r] = call_fwd(&c);
		t[T_TRAIN][r] = call_train(&c);
		t[T_BWD][r] = call_bwd(&c);
		t[T_BOTH][r] = t[T_TRAIN][r] + t[T_BWD][r];
	}
	for (int i = 0; i < NT; i++) {
		qsort(t[i], reps, sizeof *t[i], cmp_double);
		secs[i] = t[i][reps / 2];
	}
	case_free(&c);
}

/* flops = useful flops of timing t of a kernel with this many edges (see
 * the top of the file). */
static double flops(const pa_kernel_info *k, int edges, int n, int t)
{
	double nn = (double)BATCH * edges * n * n;
	double fwd = 2 * nn * (k->head_dim + k->value_dim);
	double bwd = 2 * nn * (3 * k->head_dim + 2 * k->value_dim);
	return t == T_BWD ? bwd : t == T_BOTH ? fwd + bwd : fwd;
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

/* print_row: one shape's line of the table. */
static void print_row(const pa_kernel_info *k, int edges, int n, const double *secs,
                      double peak)
{
	printf("%-6s %6d", k->name, n);
	for (int t = 0; t < NT; t++) {
		double g = flops(k, edges, n, t) / secs[t] / 1e9;
		printf("  %9.4f %6.1f %4.0f%%", secs[t], g, 100 * g / peak);
	}
	printf("  %6.2fx\n", secs[T_BWD] / secs[T_FWD]);
}

/* bench: the timing mode (see the top of the file); returns 0. */
static int bench(int argc, char **argv, const char *tsv_path)
{
	FILE *tsv = tsv_path ? fopen(tsv_path, "w") : NULL;
	double peak = peak_gflops(), secs[NK][MAXS][NT] = {{{0}}};
	printf("polyc training pair: head_dim = value_dim = 64, scale 0.125, batch %d, "
	       "%d threads, ISA %s\n", BATCH, omp_get_max_threads(), pa_isa_name(pa_isa()));
	for (int k = 0; k < NK; k++) {
		const pa_kernel_info *ki = kernels[k].info;
		for (int s = 0; s < MAXS && kernels[k].sizes[s]; s++) {
			int n = kernels[k].sizes[s];
			if (!selected(argc, argv, "-k", ki->name, 0) ||
			    !selected(argc, argv, "-n", NULL, n))
				continue;
			time_shape(ki, BATCH, n, n >= 16384 ? REPS_LONG : REPS, n < 16384, secs[k][s]);
			double p = peak_gflops();  /* the peak again, between shapes */
			peak = p > peak ? p : peak;
		}
	}
	printf("FMA peak, measured: %.1f GFLOP/s (the best of runs between the shapes)\n", peak);
	printf("median seconds, GFLOP/s, %% of peak; forward and train count 4·n²·d flops "
	       "per edge and batch entry,\nbackward 10·n²·d, train+bwd 14·n²·d "
	       "(d = 64; exp not counted)\n\n");
	printf("%-6s %6s", "kernel", "n");
	for (int t = 0; t < NT; t++)
		printf("  %9s %6s %5s", tname[t], "GF/s", "peak");
	printf("  %7s\n", "bwd/fwd");
	for (int k = 0; k < NK; k++)
		for (int s = 0; s < MAXS && kernels[k].sizes[s]; s++) {
			const pa_kernel_info *ki = kernels[k].info;
			int n = kernels[k].sizes[s];
			if (secs[k][s][T_FWD] == 0)
				continue;
			print_row(ki, kernels[k].edges, n, secs[k][s], peak);
			if (tsv)
				fprintf(tsv, "%s\t%d\t%.6f\t%.6f\t%.6f\t%.6f\n", ki->name, n,
				        secs[k][s][T_FWD], secs[k][s][T_TRAIN], secs[k][s][T_BWD],
				        secs[k][s][T_BOTH]);
		}
	if (tsv)
		fclose(tsv);
	return 0;
}

/* bench_general: the -g mode (see the top of the file); returns 0. */
static int bench_general(const char *tsv_path)
{
	FILE *tsv = tsv_path ? fopen(tsv_path, "w") : NULL;
	printf("polyc training pair, elimination plans: head_dim = value_dim = 64, scale 0.125, "
	       "batch 1, %d threads, ISA %s\n", omp_get_max_threads(), pa_isa_name(pa_isa()));
	printf("median seconds of %d rounds\n\n", REPS_GENERAL);
	printf("%-8s %6s", "kernel", "n");
	for (int t = 0; t < NT; t++)
		printf("  %9s", tname[t]);
	printf("  %7s\n", "bwd/fwd");
	for (int k = 0; k < NG; k++)
		for (int s = 0; s < 3; s++) {
			double secs[NT];
			const pa_kernel_info *ki = general[k].info;
			int n = general[k].sizes[s];
			time_shape(ki, 1, n, REPS_GENERAL, s == 0, secs);
			printf("%-8s %6d", ki->name, n);
			for (int t = 0; t < NT; t++)
				printf("  %9.4f", secs[t]);
			printf("  %6.2fx\n", secs[T_BWD] / secs[T_FWD]);
			fflush(stdout);
			if (tsv)
				fprintf(tsv, "%s\t%d\t%.6f\t%.6f\t%.6f\t%.6f\n", ki->name, n,
				        secs[T_FWD], secs[T_TRAIN], secs[T_BWD], secs[T_BOTH]);
		}
	if (tsv)
		fclose(tsv);
	return 0;
}

/* write_f32: len floats of x to DIR/KERNEL_N_NAME.f32; exits on failure. */
static void write_f32(const char *dir, const Case *c, const char *prefix, const char *name,
                      const float *x, size_t len)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s_%lld_%s%s.f32", dir, c->k->name, (long long)c->n,
	         prefix, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(x, sizeof *x, len, f) != len || fclose(f) != 0) {
		fprintf(stderr, "bench_backward: cannot write %s\n", path);
		exit(2);
	}
}

/* dump_one: k at n, batch 1, as dump writes a shape (the smallest length
 * of an elimination kernel: PyTorch's formulation holds n^3 floats). */
static void dump_one(const char *dir, const pa_kernel_info *k, int n)
{
	Case c;
	case_init(&c, k, 1, n);
	call_train(&c), call_bwd(&c);
	for (int i = 0; i < k->num_inputs; i++) {
		write_f32(dir, &c, "", k->inputs[i].name, c.in[i], (size_t)n * k->inputs[i].cols);
		write_f32(dir, &c, "d", k->inputs[i].name, c.grad[i], (size_t)n * k->inputs[i].cols);
	}
	write_f32(dir, &c, "", "gout", c.gout, (size_t)n * k->value_dim);
	write_f32(dir, &c, "", "out", c.out, (size_t)n * k->value_dim);
	case_free(&c);
}

/* dump: the --dump mode (see the top of the file); returns 0. */
static int dump(const char *dir)
{
	for (int k = 0; k < NK; k++)
		for (int s = 0; s < MAXS && kernels[k].sizes[s]; s++) {
			const pa_kernel_info *ki = kernels[k].info;
			Case c;
			size_t rows = (size_t)BATCH * kernels[k].sizes[s];
			case_init(&c, ki, BATCH, kernels[k].sizes[s]);
			call_train(&c), call_bwd(&c);
			for (int i = 0; i < ki->num_inputs; i++) {
				size_t len = rows * ki->inputs[i].cols;
				write_f32(dir, &c, "", ki->inputs[i].name, c.in[i], len);
				write_f32(dir, &c, "d", ki->inputs[i].name, c.grad[i], len);
			}
			write_f32(dir, &c, "", "gout", c.gout, rows * ki->value_dim);
			write_f32(dir, &c, "", "out", c.out, rows * ki->value_dim);
			case_free(&c);
		}
	for (int k = 0; k < NG; k++)
		dump_one(dir, general[k].info, general[k].sizes[0]);
	return 0;
}

#define MB (1024.0 * 1024.0)

/* peak_rss = the process's peak resident set size in bytes. */
static double peak_rss(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss * 1024.0;
}

/* memory: the --memory mode (see the top of the file); returns 0. */
static int memory(int64_t n, const char *tsv_path)
{
	const pa_kernel_info *k = &big_info;
	Case c;
	double held = 0;
	case_init(&c, k, 1, n);  /* every buffer written, so resident */
	for (int i = 0; i < k->num_inputs; i++)
		held += 2.0 * n * k->inputs[i].cols * sizeof(float);
	held += 2.0 * n * k->value_dim * sizeof(float);
	double saved = (double)k->saved_floats(1, n) * sizeof(float);
	double before = peak_rss(), tt = call_train(&c), after_train = peak_rss();
	double tb = call_bwd(&c), after_bwd = peak_rss();
	printf("n %6lld  train %6.2f s, backward %6.2f s;  saved_floats %8lld (%5.1f MB),"
	       " inputs, out, grad_out, gradients %5.1f MB\n"
	       "          peak RSS: before the calls %6.1f MB, after train %6.1f MB, after backward"
	       " %6.1f MB (+%.1f MB)  [an n x n float matrix: %.1f GB]\n",
	       (long long)n, tt, tb, (long long)k->saved_floats(1, n), saved / MB, held / MB,
	       before / MB, after_train / MB, after_bwd / MB, (after_bwd - before) / MB,
	       4.0 * n * n / 1e9);
	if (tsv_path) {
		FILE *tsv = fopen(tsv_path, "a");
		if (tsv)
			fprintf(tsv, "%lld\t%.0f\t%.0f\t%.0f\n", (long long)n, saved, after_bwd,
			        after_bwd - before), fclose(tsv);
	}
	case_free(&c);
	return 0;
}

/* ------------------------------------------------- approximate kernels */

static const pa_kernel_info *const approx_kernels[] = {&tree_approx_info,
                                                       &strassen_approx_info};
static const int approx_sizes[] = {4096, 8192, 16384, 32768, 65536};
enum { NA = sizeof approx_kernels / sizeof *approx_kernels,
       NAS = sizeof approx_sizes / sizeof *approx_sizes, AREPS = 5 };

/* approx_case: case_init at batch 1 with every factor entry uniform in
 * [-bound, bound], so the network runs. */
static void approx_case(Case *c, const pa_kernel_info *k, int64_t n)
{
	unsigned seed = 777;
	case_init(c, k, 1, n);
	for (int i = 0; i < k->num_inputs; i++)
		if (k->inputs[i].kind == PA_INPUT_FACTOR)
			for (int64_t e = 0; e < n * k->inputs[i].cols; e++)
				c->in[i][e] = (float)(k->bound * (2.0 * rand_r(&seed) / RAND_MAX - 1));
}

/* approx_shape: secs[t] = median seconds of each timing of k at n. */
static void approx_shape(const pa_kernel_info *k, int n, double *secs)
{
	Case c;
	double t[NT][AREPS];
	approx_case(&c, k, n);
	call_fwd(&c), call_train(&c), call_bwd(&c);
	for (int r = 0; r < AREPS; r++) {
		t[T_FWD][r] = call_fwd(&c);
		t[T_TRAIN][r] = call_train(&c);
		t[T_BWD][r] = call_bwd(&c);
		t[T_BOTH][r] = t[T_TRAIN][r] + t[T_BWD][r];
	}
	for (int i = 0; i < NT; i++) {
		qsort(t[i], AREPS, sizeof *t[i], cmp_double);
		secs[i] = t[i][AREPS / 2];
	}
	case_free(&c);
}

/* approx_scaling: the --approx mode (see the top of the file). */
static int approx_scaling(void)
{
	double secs[NA][NAS][NT];
	printf("approximate kernels (bench/approx_backward.poly): batch 1, %d threads, ISA %s, "
	       "median of %d rounds\n", omp_get_max_threads(), pa_isa_name(pa_isa()), AREPS);
	printf("%-16s %6s  %10s %10s %10s %10s  %7s  %s\n", "kernel", "n", "forward", "train",
	       "backward", "train+bwd", "bwd/fwd", "train+bwd growth from 4096 (linear: n/4096)");
	for (int k = 0; k < NA; k++)
		for (int s = 0; s < NAS; s++) {
			approx_shape(approx_kernels[k], approx_sizes[s], secs[k][s]);
			const double *x = secs[k][s];
			printf("%-16s %6d  %10.4f %10.4f %10.4f %10.4f  %6.2fx  %6.2fx (n %2dx)\n",
			       approx_kernels[k]->name, approx_sizes[s], x[T_FWD], x[T_TRAIN], x[T_BWD],
			       x[T_BOTH], x[T_BWD] / x[T_FWD], x[T_BOTH] / secs[k][0][T_BOTH],
			       approx_sizes[s] / approx_sizes[0]);
			fflush(stdout);
		}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "--approx") == 0)
		return approx_scaling();
	const char *tsv_path = NULL;
	if (argc >= 3 && strcmp(argv[1], "--dump") == 0)
		return dump(argv[2]);
	if (argc >= 3 && strcmp(argv[1], "--memory") == 0)
		return memory(atoll(argv[2]), argc > 3 ? argv[3] : NULL);
	if (argc >= 2 && strcmp(argv[1], "-g") == 0)
		return bench_general(argc > 2 ? argv[2] : NULL);
	for (int i = 1; i < argc; i++)
		if (argv[i][0] == '-')
			i++;
		else
			tsv_path = argv[i];
	return bench(argc, argv, tsv_path);
}
