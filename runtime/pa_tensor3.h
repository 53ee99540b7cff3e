/*
 * pa_tensor3.h - the engine's fast path for 3-tensor attention, a single
 * monomial x1*x2*x3 (any order of its factors, any scale, any of x1, x2,
 * x3 carrying values).  pa_elim_run hands such a kernel to it; every other
 * plan goes the general way.
 */
#ifndef PA_TENSOR3_H
#define PA_TENSOR3_H

#include <stdbool.h>
#include <stdint.h>

#include "pa_elim.h"

/* pa_tensor3_takes = plan p of kernel k is one monomial x1·x2·x3 over
 * three variables, each once. */
bool pa_tensor3_takes(const pa_kernel_info *k, const pa_elim_plan *p);

/* The kernel's whole computation, after pa_check_args_qk: nq query rows
 * (x1's inputs, out) and n key rows (x2's and x3's). */
pa_status pa_tensor3_run(const pa_kernel_info *k, int64_t batch, int64_t nq,
                         int64_t n, const float *const inputs[], float *out);

#endif /* PA_TENSOR3_H */
