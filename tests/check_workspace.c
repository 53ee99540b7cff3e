/*
 * check_workspace.c - the runtime's workspaces (pa_alloc, pa_free): 64-byte
 * alignment, sizes that overflow refused, a freed block reused by the next
 * call that fits in it, live blocks never shared, and blocks kept across
 * calls released when the system has no memory for a new one.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "pa_kernel.h"

/* Under AddressSanitizer a failed allocation returns NULL, as libc's does
 * (the memory test below needs one to fail), instead of ending the test. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "allocator_may_return_null=1";
}

START_TEST(test_aligned_and_refused)
{
	for (size_t n = 0; n < 300; n += 37) {
		float *p = pa_alloc(n);
		ck_assert_ptr_nonnull(p);
		ck_assert_uint_eq((uintptr_t)p % 64, 0);
		memset(p, 0xab, n * sizeof *p);
		pa_free(p);
	}
	ck_assert_ptr_null(pa_alloc(SIZE_MAX));
	ck_assert_ptr_null(pa_alloc(SIZE_MAX / 4));
	pa_free(NULL);
}
END_TEST

START_TEST(test_reused_not_shared)
{
	float *a = pa_alloc(1 << 20);
	ck_assert_ptr_nonnull(a);
	pa_free(a);
	/* the next block that fits is the one just freed: no fresh pages */
	float *b = pa_alloc(1000);
	ck_assert_ptr_eq(a, b);
	/* while b is live, another call gets its own block */
	float *c = pa_alloc(1000);
	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_ne(b, c);
	memset(b, 1, 1000 * sizeof *b);
	memset(c, 2, 1000 * sizeof *c);
	ck_assert_uint_eq(((unsigned char *)b)[0], 1);
	pa_free(b);
	pa_free(c);
	/* a request larger than every kept block gets a new one */
	float *d = pa_alloc(4 << 20);
	ck_assert_ptr_nonnull(d);
	ck_assert_ptr_ne(d, a);
	memset(d, 0, (size_t)(4 << 20) * sizeof *d);
	pa_free(d);
}
END_TEST

/* Under an address-space limit that leaves room for one 64 MB block
 * beside the kept ones, a 96 MB request succeeds only because the kept
 * blocks are released first. */
START_TEST(test_kept_blocks_released_for_memory)
{
	float *kept[4];
	for (int i = 0; i < 4; i++)
		kept[i] = pa_alloc((size_t)16 << 20);      /* 64 MB each */
	for (int i = 0; i < 4; i++) {
		ck_assert_ptr_nonnull(kept[i]);
		memset(kept[i], 0, (size_t)64 << 20);
	}
	for (int i = 0; i < 4; i++)
		pa_free(kept[i]);
	struct rlimit rl, old;
	ck_assert_int_eq(getrlimit(RLIMIT_AS, &old), 0);
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long pages = 0;
	ck_assert(f && fscanf(f, "%lu", &pages) == 1);
	fclose(f);
	rl = old;
	rl.rlim_cur = pages * 4096ul + ((size_t)64 << 20);
	ck_assert_int_eq(setrlimit(RLIMIT_AS, &rl), 0);
	float *big = pa_alloc((size_t)24 << 20);            /* 96 MB */
	ck_assert_int_eq(setrlimit(RLIMIT_AS, &old), 0);
	ck_assert_ptr_nonnull(big);
	pa_free(big);
}
END_TEST

/* workspace_suite: pa_alloc and pa_free. */
Suite *workspace_suite(void)
{
	Suite *s = suite_create("workspace");
	TCase *tc = tcase_create("blocks");
	tcase_add_test(tc, test_aligned_and_refused);
	tcase_add_test(tc, test_reused_not_shared);
	tcase_add_test(tc, test_kept_blocks_released_for_memory);
	suite_add_tcase(s, tc);
	return s;
}
