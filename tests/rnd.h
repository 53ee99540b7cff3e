/* rnd.h - the deterministic random numbers the kernel checks draw
 * inputs from: splitmix64 and a uniform double in [-1, 1). */
#ifndef TESTS_RND_H
#define TESTS_RND_H

#include <stdint.h>

/* rnd_next: splitmix64, a deterministic 64-bit generator. */
static inline uint64_t rnd_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/* rnd_unit: uniform in [-1, 1). */
static inline double rnd_unit(uint64_t *s)
{
	return (double)(rnd_next(s) >> 11) * 0x1.0p-52 - 1.0;
}

#endif /* TESTS_RND_H */
