/*
 * check_graph.c - the graph, classifier and planner suites: the class of
 * every shape of DESIGN §2, how monomials merge into edges and biases, the
 * message order of tree plans, and the --explain text of the examples
 * against golden files.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "polyc.h"

/* A parsed kernel with its graph and plan. */
typedef struct Fixture {
	Program *prog;
	Graph g;
	Plan p;
} Fixture;

/* setup_poly: parse "kernel t { poly = POLY; EXTRA }" and plan it. */
static void setup_poly(Fixture *f, const char *poly, const char *extra)
{
	char text[1024];
	snprintf(text, sizeof text, "kernel t { poly = %s; %s }", poly, extra);
	Diag d = {.out = stderr};
	f->prog = parse_source(src_from_string("test.poly", text), &d);
	ck_assert_msg(f->prog != NULL, "does not parse: %s", text);
	graph_build(&f->g, &f->prog->kernels[0]);
	ck_assert(plan_build(&f->p, &f->g, &d));
}

/* teardown: free what setup_poly made. */
static void teardown(Fixture *f)
{
	SrcFile *src = f->prog->file;
	program_free(f->prog);
	src_free(src);
}

/* class_of = the class polyc gives poly. */
static GraphClass class_of(const char *poly)
{
	Fixture f;
	setup_poly(&f, poly, "");
	GraphClass c = f.g.cls;
	teardown(&f);
	return c;
}

START_TEST(test_classes)
{
	ck_assert_int_eq(class_of("x1*x2"), GC_TREE);
	ck_assert_int_eq(class_of("x1*x2 + x2*x3"), GC_TREE);
	ck_assert_int_eq(class_of("x1*x2 + x1*x3 + x1*x4"), GC_TREE);
	ck_assert_int_eq(class_of("x1^2*x2"), GC_TREE);
	ck_assert_int_eq(class_of("x1*x2 + 2*x1*x2^2"), GC_TREE);
	ck_assert_int_eq(class_of("x1*x2 + x3*x4"), GC_TREE);
	ck_assert_int_eq(class_of("x1*x2 + x3^2 + x2*x3"), GC_TREE);
	ck_assert_int_eq(class_of("x1*x2 + x2*x3 + x3*x1"), GC_CYCLIC);
	ck_assert_int_eq(class_of("x1*x2 + x2*x3 + x3*x4 + x4*x1"), GC_CYCLIC);
	ck_assert_int_eq(class_of("x2*x3 + x3*x4 + x4*x2 + x1*x2"), GC_CYCLIC);
	ck_assert_int_eq(class_of("x1*x2*x3"), GC_HIGH_DEGREE);
	ck_assert_int_eq(class_of("x1*x2*x3 - 0.5*x3*x4"), GC_HIGH_DEGREE);
	ck_assert_int_eq(class_of("x1^2*x2*x3^3"), GC_HIGH_DEGREE);
}
END_TEST

START_TEST(test_edges_merge_and_biases)
{
	Fixture f;
	setup_poly(&f, "x1*x2 + 2*x1*x2^2 - x2*x1 + x2^3 + 0.5*x1", "");
	ck_assert_int_eq(f.g.nedges, 1);
	ck_assert_int_eq(f.g.edge[0].nmono, 3);
	ck_assert_uint_eq(f.g.edge[0].vars, (1u << 1) | (1u << 2));
	ck_assert_int_eq(f.g.nbias[2], 1);
	ck_assert_int_eq(f.g.bias[2][0], 3);
	ck_assert_int_eq(f.g.nbias[1], 1);
	ck_assert_int_eq(f.p.nmsg, 1);
	ck_assert_int_eq(f.p.msg[0].dim, 3 * 64);
	teardown(&f);
}
END_TEST

START_TEST(test_path_order)
{
	Fixture f;
	setup_poly(&f, "x1*x2 + x2*x3 + x3*x4", "");
	ck_assert_int_eq(f.p.kind, PLAN_TREE);
	ck_assert_int_eq(f.p.nmsg, 3);
	ck_assert_int_eq(f.p.msg[0].var, 4);
	ck_assert_int_eq(f.p.msg[0].parent, 3);
	ck_assert_int_eq(f.p.msg[1].var, 3);
	ck_assert_int_eq(f.p.msg[2].var, 2);
	ck_assert_int_eq(f.p.msg[2].parent, 1);
	ck_assert_int_eq(f.p.cost_exp, 2);
	teardown(&f);
}
END_TEST

START_TEST(test_star_and_inner_root)
{
	Fixture f;
	setup_poly(&f, "x2*x1 + x2*x3 + x2*x4", "values = x3;");
	ck_assert_int_eq(f.p.nmsg, 3);
	ck_assert_int_eq(f.p.msg[2].var, 2);
	ck_assert_int_eq(f.p.msg[2].parent, 1);
	ck_assert(f.p.msg[2].values);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(f.p.msg[i].parent, 2);
	/* x4 carries no values: its message is a log-normalizer only */
	ck_assert(!f.p.sub_values[4]);
	ck_assert(f.p.sub_values[3]);
	teardown(&f);
}
END_TEST

START_TEST(test_components)
{
	Fixture f;
	setup_poly(&f, "x1*x2 + x3*x4", "");
	ck_assert_int_eq(f.g.ncomps, 2);
	ck_assert_int_eq(f.p.nroots, 2);
	ck_assert_int_eq(f.p.root[0], 1);
	ck_assert_int_eq(f.p.root[1], 3);
	teardown(&f);
	/* a component without x1 and without values cancels: dropped */
	setup_poly(&f, "x1*x2 + x3*x4", "values = x2;");
	ck_assert_int_eq(f.p.nroots, 1);
	ck_assert_int_eq(f.p.nmsg, 1);
	teardown(&f);
	/* x1 in no monomial is a component of its own, rooted at x1 */
	setup_poly(&f, "x2*x3", "");
	ck_assert_int_eq(f.p.root[0], 1);
	ck_assert_int_eq(f.p.nroots, 2);
	teardown(&f);
}
END_TEST

START_TEST(test_elim_plan)
{
	Fixture f;
	/* a triangle: one variable out first (its message over x1 and the
	 * other), then the other; cost n^3, messages of n rows per query */
	setup_poly(&f, "x1*x2 + x2*x3 + x3*x1", "");
	ck_assert_int_eq(f.p.kind, PLAN_ELIM);
	ck_assert_int_eq(f.p.nsteps, 2);
	ck_assert_int_eq(f.p.step[0].var, 2);
	ck_assert_uint_eq(f.p.step[0].scope, (1u << 1) | (1u << 3));
	ck_assert_uint_eq(f.p.step[0].edges, 3);   /* {x1,x2} and {x2,x3} */
	ck_assert_int_eq(f.p.step[1].var, 3);
	ck_assert_uint_eq(f.p.step[1].scope, 1u << 1);
	ck_assert_uint_eq(f.p.step[1].msgs, 1);
	ck_assert_int_eq(f.p.cost_exp, 3);
	ck_assert_int_eq(f.p.mem_exp, 1);
	teardown(&f);
	/* a 4-variable monomial: n^4 work, n^2 rows per query position */
	setup_poly(&f, "x1*x2*x3*x4", "");
	ck_assert_int_eq(f.p.cost_exp, 4);
	ck_assert_int_eq(f.p.mem_exp, 2);
	teardown(&f);
	/* min-fill takes the pendant x4 (no fill) before the cycle */
	setup_poly(&f, "x1*x2 + x2*x3 + x3*x1 + x3*x4", "");
	ck_assert_int_eq(f.p.step[0].var, 4);
	ck_assert_uint_eq(f.p.step[0].scope, 1u << 3);
	ck_assert(f.p.step[0].values);
	ck_assert_int_eq(f.p.cost_exp, 3);
	teardown(&f);
	/* a 5-cycle stays at treewidth 2: n^3 */
	setup_poly(&f, "x1*x2 + x2*x3 + x3*x4 + x4*x5 + x5*x1", "");
	ck_assert_int_eq(f.p.cost_exp, 3);
	ck_assert_int_eq(f.p.nsteps, 4);
	teardown(&f);
}
END_TEST

/* slurp = the contents of path (NULL if unreadable); free it. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = calloc(1, 1 << 16);
	size_t n = fread(buf, 1, (1 << 16) - 1, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

static const char *const explained[] = {
	"self_attention", "compose2", "compose3", "star",
};

START_TEST(test_explain_golden)
{
	char path[256], *text = NULL;
	size_t len = 0;
	snprintf(path, sizeof path, "examples/%s.poly", explained[_i]);
	Diag d = {.out = stderr};
	Program *prog = parse_file(path, &d);
	ck_assert_msg(prog != NULL, "%s does not parse", path);
	FILE *out = open_memstream(&text, &len);
	for (int i = 0; i < prog->nkernels; i++) {
		Graph g;
		Plan p;
		graph_build(&g, &prog->kernels[i]);
		ck_assert(plan_build(&p, &g, &d));
		explain_kernel(out, &p);
	}
	fclose(out);
	snprintf(path, sizeof path, "tests/golden/explain/%s.txt", explained[_i]);
	char *want = slurp(path);
	ck_assert_msg(want != NULL, "missing %s", path);
	ck_assert_str_eq(text, want);
	free(want);
	free(text);
	SrcFile *src = prog->file;
	program_free(prog);
	src_free(src);
}
END_TEST

/* graph_suite: the graph, classifier and planner tests. */
Suite *graph_suite(void)
{
	Suite *s = suite_create("graph");
	TCase *tc = tcase_create("classify");
	tcase_add_test(tc, test_classes);
	tcase_add_test(tc, test_edges_merge_and_biases);
	suite_add_tcase(s, tc);
	tc = tcase_create("plan");
	tcase_add_test(tc, test_path_order);
	tcase_add_test(tc, test_star_and_inner_root);
	tcase_add_test(tc, test_components);
	tcase_add_test(tc, test_elim_plan);
	tcase_add_loop_test(tc, test_explain_golden, 0,
	                    sizeof explained / sizeof *explained);
	suite_add_tcase(s, tc);
	return s;
}
