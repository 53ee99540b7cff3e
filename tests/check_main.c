/*
 * check_main.c - runs every unit suite of polyc and exits with the number
 * of failures (0 when all pass).
 */
#include <check.h>
#include <stdlib.h>

Suite *parse_suite(void);
Suite *graph_suite(void);
Suite *runtime_suite(void);
Suite *workspace_suite(void);
Suite *reference_grad_suite(void);
Suite *elim_paths_suite(void);

/* main: one runner over all suites. */
int main(void)
{
	SRunner *sr = srunner_create(parse_suite());
	srunner_add_suite(sr, graph_suite());
	srunner_add_suite(sr, runtime_suite());
	srunner_add_suite(sr, workspace_suite());
	srunner_add_suite(sr, reference_grad_suite());
	srunner_add_suite(sr, elim_paths_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
