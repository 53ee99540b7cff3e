/*
 * pa_threads.c - the OpenMP facts generated kernels ask the runtime for,
 * so that generated C needs no <omp.h>: how many threads a parallel region
 * may get here, and which one is asking.  Compiled with -fopenmp; without
 * it both answer as a single thread would.
 */
#include "pa_kernel.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* pa_max_threads: see pa_kernel.h. */
int pa_max_threads(void)
{
#ifdef _OPENMP
	return omp_get_max_threads();
#else
	return 1;
#endif
}

/* pa_thread_num: see pa_kernel.h. */
int pa_thread_num(void)
{
#ifdef _OPENMP
	return omp_get_thread_num();
#else
	return 0;
#endif
}
