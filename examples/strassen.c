/*
 * strassen.c - run the strassen kernel of examples/strassen.poly, Strassen
 * attention (x1*x2 + x2*x3 + x3*x1) approximated by the polynomial method,
 * on pseudo-random inputs within its bound:
 *
 *     strassen [N [BATCH]] [--check]
 *
 * prints what ran, a checksum of the output and the time the call took;
 * --check compares the kernel with pa_reference on n ≤ 48 (the reference
 * costs n³ here) against the error K_info promises.
 *
 * Build (make examples does this, into build/examples/):
 *     polyc strassen.poly -c -o strassen.o
 *     polyc strassen.poly --emit=h -o strassen.h
 *     clang -fopenmp -Iruntime strassen.c example_main.c strassen.o libpolyattn.a -lm
 */
#include "strassen.h"
#include "example.h"

/* main: the shared driver, on this example's kernel. */
int main(int argc, char **argv)
{
	return example_main(&strassen_info, strassen, 48, argc, argv);
}
