/*
 * compose3.c - run the compose3 kernel of examples/compose3.poly, tree attention for three-fold
 * composition (x1*x2 + x2*x3 + x3*x4, values on x4)
 * on pseudo-random inputs:
 *
 *     compose3 [N [BATCH]] [--check]
 *
 * prints what ran, a checksum of the output and the time the call took;
 * --check compares the kernel with pa_reference on n ≤ 16 (the reference costs n⁴ here).
 *
 * Build (make examples does this, into build/examples/):
 *     polyc compose3.poly -c -o compose3.o
 *     polyc compose3.poly --emit=h -o compose3.h
 *     clang -fopenmp -Iruntime compose3.c example_main.c compose3.o libpolyattn.a -lm
 */
#include "compose3.h"
#include "example.h"

/* main: the shared driver, on this example's kernel. */
int main(int argc, char **argv)
{
	return example_main(&compose3_info, compose3, 16, argc, argv);
}
