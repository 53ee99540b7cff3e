/*
 * compose2.c - run the compose2 kernel of examples/compose2.poly, tree attention for two-fold
 * composition (x1*x2 + x2*x3, values on x3)
 * on pseudo-random inputs:
 *
 *     compose2 [N [BATCH]] [--check]
 *
 * prints what ran, a checksum of the output and the time the call took;
 * --check compares the kernel with pa_reference on n ≤ 48 (the reference costs n³ here).
 *
 * Build (make examples does this, into build/examples/):
 *     polyc compose2.poly -c -o compose2.o
 *     polyc compose2.poly --emit=h -o compose2.h
 *     clang -fopenmp -Iruntime compose2.c example_main.c compose2.o libpolyattn.a -lm
 */
#include "compose2.h"
#include "example.h"

/* main: the shared driver, on this example's kernel. */
int main(int argc, char **argv)
{
	return example_main(&compose2_info, compose2, 48, argc, argv);
}
