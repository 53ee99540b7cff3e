/*
 * self_attention.c - run the self_attention kernel of examples/self_attention.poly (x1*x2: softmax attention,
 * softmax(scale · Q Kᵀ) V)
 * on pseudo-random inputs:
 *
 *     self_attention [N [BATCH]] [--check]
 *
 * prints what ran, a checksum of the output and the time the call took;
 * --check compares the kernel with pa_reference on n ≤ 256 (the reference costs n² here).
 *
 * Build (make examples does this, into build/examples/):
 *     polyc self_attention.poly -c -o self_attention.o
 *     polyc self_attention.poly --emit=h -o self_attention.h
 *     clang -fopenmp -Iruntime self_attention.c example_main.c self_attention.o libpolyattn.a -lm
 */
#include "self_attention.h"
#include "example.h"

/* main: the shared driver, on this example's kernel. */
int main(int argc, char **argv)
{
	return example_main(&self_attention_info, self_attention, 256, argc, argv);
}
