/*
 * example.h - what an example program needs: the runtime's interface and
 * example_main, the driver in example_main.c that runs one kernel.
 */
#ifndef EXAMPLE_H
#define EXAMPLE_H

#include <stdint.h>

#include "polyattn.h"

/*
 * Parse "[N [BATCH]] [--check]" from argv, run fn (the kernel k_info
 * describes) on BATCH random sequences of length N, print its checksum
 * and time, and with --check compare it with pa_reference on
 * min(N, check_n) positions.  Returns the exit status of the program.
 */
int example_main(const pa_kernel_info *k, pa_kernel_fn fn, int64_t check_n,
                 int argc, char **argv);

#endif /* EXAMPLE_H */
