/* timing.h - what the benchmarks share for timing: the monotonic clock and
 * the order qsort needs to take medians. */
#ifndef BENCH_TIMING_H
#define BENCH_TIMING_H

#include <time.h>

/* now = monotonic seconds. */
static inline double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

/* cmp_double: qsort order of doubles. */
static inline int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

#endif /* BENCH_TIMING_H */
