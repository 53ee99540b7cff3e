/*
 * star.c - run the star kernel of examples/star.poly, a star rooted at the query
 * (x1*x2 + x1*x3 + x1*x4, values on x2, x3 and x4)
 * on pseudo-random inputs:
 *
 *     star [N [BATCH]] [--check]
 *
 * prints what ran, a checksum of the output and the time the call took;
 * --check compares the kernel with pa_reference on n ≤ 16 (the reference costs n⁴ here).
 *
 * Build (make examples does this, into build/examples/):
 *     polyc star.poly -c -o star.o
 *     polyc star.poly --emit=h -o star.h
 *     clang -fopenmp -Iruntime star.c example_main.c star.o libpolyattn.a -lm
 */
#include "star.h"
#include "example.h"

/* main: the shared driver, on this example's kernel. */
int main(int argc, char **argv)
{
	return example_main(&star_info, star, 16, argc, argv);
}
