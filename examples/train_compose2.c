/*
 * train_compose2.c - gradient steps with the compose2 kernel of
 * examples/compose2.poly (tree attention, x1*x2 + x2*x3, values on x3):
 * fit the kernel's output to a fixed random target by plain gradient
 * descent on every input, the loss being L = ½ Σ (out − target)².
 *
 *     train_compose2 [N [STEPS]]
 *
 * Each step is the training forward (compose2_train, which keeps what the
 * backward needs in saved), dL/dout = out − target, the backward
 * (compose2_backward, every input's gradient) and an update of every
 * input.  It prints the loss before and after and exits with 1 unless the
 * loss went down.  See doc/training.md.
 *
 * Build (make examples does this, into build/examples/):
 *     polyc compose2.poly -c -o compose2.o
 *     polyc compose2.poly --emit=h -o compose2.h
 *     clang -fopenmp -Iruntime train_compose2.c compose2.o libpolyattn.a -lm
 */
#include <stdio.h>
#include <stdlib.h>

#include "compose2.h"

/* unit: a pseudo-random float in [-1, 1). */
static float unit(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* loss = ½ Σ (out − target)², and grad_out = out − target. */
static double loss_and_grad(const float *out, const float *target, float *grad_out,
                            size_t len)
{
	double loss = 0;
	for (size_t e = 0; e < len; e++) {
		grad_out[e] = out[e] - target[e];
		loss += 0.5 * (double)grad_out[e] * grad_out[e];
	}
	return loss;
}

/* step: one training forward, backward and update; the loss before it,
 * or a negative number on a kernel error (printed). */
static double step(int64_t n, float *const in[], float *const grad[], float *out,
                   float *saved, const float *target, float *grad_out, float lr)
{
	const pa_kernel_info *k = &compose2_info;
	const size_t len = (size_t)n * k->value_dim;
	pa_status st = compose2_train(1, n, (const float *const *)in, out, saved);
	double loss = loss_and_grad(out, target, grad_out, len);
	if (st == PA_OK)
		st = compose2_backward(1, n, (const float *const *)in, out, saved, grad_out, grad);
	if (st != PA_OK) {
		fprintf(stderr, "compose2: %s\n", pa_strerror(st));
		return -1;
	}
	for (int i = 0; i < k->num_inputs; i++)
		for (int64_t e = 0; e < n * k->inputs[i].cols; e++)
			in[i][e] -= lr * grad[i][e];
	return loss;
}

/* main: fit, print the first and last loss. */
int main(int argc, char **argv)
{
	const pa_kernel_info *k = &compose2_info;
	const int64_t n = argc > 1 ? atoll(argv[1]) : 64;
	const int steps = argc > 2 ? atoi(argv[2]) : 20;
	if (n <= 0 || steps <= 0) {
		fprintf(stderr, "usage: train_compose2 [N [STEPS]]\n");
		return 2;
	}
	unsigned seed = 1;
	float *in[16], *grad[16];
	for (int i = 0; i < k->num_inputs; i++) {
		size_t len = (size_t)n * k->inputs[i].cols;
		in[i] = malloc(len * sizeof(float));
		grad[i] = malloc(len * sizeof(float));
		if (!in[i] || !grad[i])
			return 1;
		for (size_t e = 0; e < len; e++)
			in[i][e] = unit(&seed);
	}
	const size_t len = (size_t)n * k->value_dim;
	float *out = malloc(len * sizeof(float)), *target = malloc(len * sizeof(float));
	float *grad_out = malloc(len * sizeof(float));
	float *saved = malloc((size_t)compose2_saved_floats(1, n) * sizeof(float));
	if (!out || !target || !grad_out || !saved)
		return 1;
	for (size_t e = 0; e < len; e++)
		target[e] = 0.5f * unit(&seed);
	double first = 0, last = 0;
	for (int s = 0; s < steps; s++) {
		last = step(n, in, grad, out, saved, target, grad_out, 0.5f);
		if (last < 0)
			return 1;
		if (s == 0)
			first = last;
	}
	printf("compose2, n = %lld: loss %.6f before %d gradient steps, %.6f before the last\n",
	       (long long)n, first, steps, last);
	return last < first ? 0 : 1;
}
