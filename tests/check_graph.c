/*
 * check_graph.c - the graph, classifier and planner suites: the class of
 * every shape of doc/design.md's "Classes", how monomials merge into edges and biases, the
 * message order of tree plans, and the --explain text of the examples
 * against golden files.
 */
#include <check.h>
#include <math.h>
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

/* has_mask: k's mask in effect holds x_a <= x_b (< when strict). */
static bool has_mask(const Kernel *k, int a, int b, bool strict)
{
	for (int i = 0; i < k->nmasks; i++)
		if (k->mask[i].a == a && k->mask[i].b == b && k->mask[i].strict == strict)
			return true;
	return false;
}

START_TEST(test_masks)
{
	Fixture f;
	/* causal: child <= parent along the BFS tree from x1 */
	setup_poly(&f, "x1*x2 + x2*x3 + x2*x4 + x1*x5", "mask = causal; window = 8;");
	const Kernel *k = f.g.k;
	ck_assert_int_eq(k->nmasks, 4);
	ck_assert(has_mask(k, 2, 1, false) && has_mask(k, 5, 1, false));
	ck_assert(has_mask(k, 3, 2, false) && has_mask(k, 4, 2, false));
	ck_assert_int_eq(f.g.cls, GC_TREE);
	for (int i = 0; i < f.p.nmsg; i++) {
		ck_assert_int_eq(f.p.msg[i].lo, -7);
		ck_assert_int_eq(f.p.msg[i].hi, 0);
	}
	teardown(&f);
	/* explicit constraints, each side of an edge; one unconstrained edge */
	setup_poly(&f, "x1*x2 + x1*x3 + x1*x4", "mask = x1 < x2, x3 <= x1, x1 <= x3;");
	for (int i = 0; i < f.p.nmsg; i++) {
		const Message *m = &f.p.msg[i];
		int64_t lo = m->var == 2 ? 1 : m->var == 3 ? 0 : -PC_UNBOUNDED;
		int64_t hi = m->var == 2 ? PC_UNBOUNDED : m->var == 3 ? 0 : PC_UNBOUNDED;
		ck_assert_int_eq(m->lo, lo);
		ck_assert_int_eq(m->hi, hi);
	}
	teardown(&f);
	/* a constraint between variables sharing no monomial adds an edge */
	setup_poly(&f, "x1*x2 + x3*x4", "mask = x3 < x1;");
	ck_assert_int_eq(f.g.nedges, 3);
	ck_assert_int_eq(f.g.edge[2].nmono, 0);
	ck_assert_uint_eq(f.g.edge[2].vars, (1u << 1) | (1u << 3));
	ck_assert_int_eq(f.g.ncomps, 1);
	ck_assert_int_eq(f.g.cls, GC_TREE);
	ck_assert_int_eq(f.p.nmsg, 3);
	ck_assert_int_eq(f.p.msg[2].dim, 0);
	teardown(&f);
}
END_TEST

/* plan_of_text: parse and plan text, diagnostics into *out; whether the
 * plan was made. */
static bool plan_of_text(const char *text, char **out)
{
	size_t len;
	Diag d = {.out = open_memstream(out, &len)};
	Program *prog = parse_source(src_from_string("m.poly", text), &d);
	ck_assert_ptr_nonnull(prog);
	Graph g;
	Plan p;
	graph_build(&g, &prog->kernels[0]);
	bool ok = plan_build(&p, &g, &d);
	fclose(d.out);
	SrcFile *src = prog->file;
	program_free(prog);
	src_free(src);
	return ok;
}

START_TEST(test_mask_warnings)
{
	char *out;
	ck_assert(plan_of_text("kernel k { poly = x1*x2 + x3*x4; mask = x3 <= x1; }", &out));
	ck_assert_msg(strstr(out, "warning: x1 and x3 share no monomial: the mask adds "
	                     "the edge {x1, x3} to the graph of kernel 'k' (class tree)"), "%s", out);
	free(out);
	ck_assert(plan_of_text("kernel k { poly = x1*x2 + x1*x3; mask = x3 < x2; }", &out));
	ck_assert_msg(strstr(out, "the edge {x2, x3} to the graph of kernel 'k' (class "
	                     "cyclic)") && !strstr(out, "error"), "%s", out);
	free(out);
	/* a pair inside a monomial of three variables: its edge masks it */
	ck_assert(plan_of_text("kernel k { poly = x1*x2*x3; mask = x3 < x2; }", &out));
	ck_assert_str_eq(out, "");
	free(out);
	ck_assert(!plan_of_text("kernel k { poly = x1*x2 + x2*x3 + x3*x1; bound = 0.1; "
	                        "algorithm = approx; mask = causal; }", &out));
	ck_assert_msg(strstr(out, "mask of kernel 'k' is refused: the approx plan cannot "
	                     "honour it (the cyclic graph"), "%s", out);
	free(out);
	/* a tree takes a mask with approx: its messages sum by prefix sums */
	ck_assert(plan_of_text("kernel k { poly = x1*x2 + x2*x3; bound = 0.1; head_dim = 4; "
	                       "algorithm = approx; mask = causal; }", &out));
	ck_assert_msg(!strstr(out, "error"), "%s", out);
	free(out);
	ck_assert(!plan_of_text("kernel k { poly = x1*x2 + x2*x3; bound = 0.1; head_dim = 4; "
	                        "algorithm = approx; mask = causal; window = 8; }", &out));
	ck_assert_msg(strstr(out, "window of kernel 'k' is refused"), "%s", out);
	free(out);
	ck_assert(plan_of_text("kernel k { poly = x1*x2 + x2*x3; mask = causal; }", &out));
	ck_assert_str_eq(out, "");
	free(out);
}
END_TEST

/* mask_pairs counts the allowed pairs of a range as a double loop does,
 * and plan_flops of a masked tree is each message's flops times them. */
START_TEST(test_mask_cost)
{
	static const int64_t U = PC_UNBOUNDED;
	static const int64_t ranges[][2] = {
		{-U, U}, {-U, 0}, {-U, -1}, {0, U}, {1, U}, {-3, 0}, {-3, 2},
		{2, 5}, {-6, -4}, {0, 0}, {5, 2}, {-U, -40}, {40, U},
	};
	for (size_t r = 0; r < sizeof ranges / sizeof *ranges; r++)
		for (int n = 1; n <= 9; n++) {
			double want = 0;
			for (int i = 0; i < n; i++)
				for (int j = 0; j < n; j++)
					want += ranges[r][0] <= j - i && j - i <= ranges[r][1];
			ck_assert_msg(mask_pairs(n, ranges[r][0], ranges[r][1]) == want,
			              "range %zu, n = %d: %g pairs, not %g", r, n,
			              mask_pairs(n, ranges[r][0], ranges[r][1]), want);
		}
	Fixture f;
	setup_poly(&f, "x1*x2 + x2*x3", "head_dim = 8; value_dim = 4; values = x3; "
	           "mask = x2 < x1, x3 <= x2; window = 3;");
	/* x3 -> x2: 2·8 + 2·4 flops over -2 <= l3 - l2 <= 0; x2 -> x1: the
	 * same over -2 <= l2 - l1 <= -1 */
	ck_assert_double_eq(plan_flops(&f.p, 10), 24 * (10 + 9 + 8) + 24 * (9 + 8));
	ck_assert_double_eq(f.p.cost_coef, 48);
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

/* .poly files whose --explain text tests/golden/explain/NAME.txt holds. */
static const char *const explained[] = {
	"examples/self_attention", "examples/compose2", "examples/compose3",
	"examples/star", "tests/golden/explain/approx", "tests/golden/explain/masked",
	"tests/golden/explain/approx_masked",
};

START_TEST(test_explain_golden)
{
	char path[256], *text = NULL;
	size_t len = 0;
	snprintf(path, sizeof path, "%s.poly", explained[_i]);
	Diag d = {.out = stderr};
	Program *prog = parse_file(path, &d);
	ck_assert_msg(prog != NULL, "%s does not parse", path);
	FILE *out = open_memstream(&text, &len);
	for (int i = 0; i < prog->nkernels; i++) {
		Graph g;
		Plan p;
		graph_build(&g, &prog->kernels[i]);
		ck_assert(plan_build(&p, &g, &d));
		if (i)
			fputc('\n', out);
		explain_kernel(out, &p);
	}
	fclose(out);
	snprintf(path, sizeof path, "tests/golden/explain/%s.txt",
	         strrchr(explained[_i], '/') + 1);
	char *want = slurp(path);
	ck_assert_msg(want != NULL, "missing %s", path);
	size_t at = 0;
	while (text[at] && text[at] == want[at])
		at++;
	ck_assert_msg(text[at] == want[at], "--explain of %s differs from %s at "
	              "byte %zu: \"%.60s\" instead of \"%.60s\"", explained[_i],
	              path, at, text + at, want + at);
	free(want);
	free(text);
	SrcFile *src = prog->file;
	program_free(prog);
	src_free(src);
}
END_TEST

/* approx_of: the approximate plan of poly with settings extra. */
static void approx_of(Fixture *f, const char *poly, const char *extra)
{
	setup_poly(f, poly, extra);
	ck_assert_msg(f->p.use != USE_EXACT, "%s {%s}: not approximated (%s)",
	              poly, extra, f->p.approx.why);
}

/* taylor = e^x · x^(p+1) / (p+1)!, directly. */
static double taylor(double x, int p)
{
	double t = exp(x);
	for (int i = 1; i <= p + 1; i++)
		t *= x / i;
	return t;
}

/* The degree of every edge is the smallest even one whose remainder meets
 * the edge's share of the tolerance; features are C(D + P, P); the
 * promise stays within the tolerance; every step is linear in n. */
START_TEST(test_approx_degree)
{
	static const struct {
		const char *poly, *extra;
	} cases[] = {
		{"x1*x2", "head_dim = 4; algorithm = approx; bound = 0.5; tolerance = 1e-3;"},
		{"x1*x2", "head_dim = 4; algorithm = approx; bound = 0.5; tolerance = 1e-2;"},
		{"x1*x2", "head_dim = 4; algorithm = approx; bound = 0.25; tolerance = 1e-3;"},
		{"x1*x2 + x2*x3 + x3*x1", "head_dim = 2; algorithm = approx; bound = 0.7;"},
		{"x1*x2*x3 - 0.5*x1*x2", "head_dim = 3; algorithm = approx; bound = 0.6; scale = 2;"},
		{"x1^2*x2 + 3*x1*x2", "head_dim = 2; algorithm = approx; bound = 0.3;"},
	};
	for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
		Fixture f;
		approx_of(&f, cases[c].poly, cases[c].extra);
		const Kernel *k = f.g.k;
		double share = pow(1 + k->tolerance, 1.0 / f.g.nedges) - 1, hi = 1;
		for (int e = 0; e < f.g.nedges; e++) {
			const ApproxEdge *ae = &f.p.approx.edge[e];
			double x = 0;
			for (int a = 0; a < f.g.edge[e].nmono; a++) {
				const Monomial *mo = &k->mono[f.g.edge[e].mono[a]];
				x += fabs(k->scale * mo->coef) * k->head_dim * pow(approx_bound(k), mo->degree);
			}
			ck_assert_double_eq_tol(ae->x, x, 1e-12);
			ck_assert_int_eq(ae->degree % 2, 0);
			ck_assert_msg(taylor(x, ae->degree) <= share, "%s: degree %d "
			              "misses the share", cases[c].poly, ae->degree);
			ck_assert_msg(ae->degree == 0 || taylor(x, ae->degree - 2) > share,
			              "%s: degree %d is not the smallest", cases[c].poly,
			              ae->degree);
			double feat = 1;
			for (int i = 1; i <= ae->degree; i++)
				feat = feat * (ae->ncoord + i) / i;
			ck_assert_double_eq_tol(ae->nfeat, feat, 0.5);
			hi *= 1 + taylor(x, ae->degree);
		}
		ck_assert_double_eq_tol(f.p.approx.err, hi - 1, 1e-12);
		ck_assert(f.p.approx.err <= k->tolerance);
		for (int s = 0; s < f.p.approx.nsteps; s++)
			ck_assert_int_le(f.p.approx.step[s].npos, 1);
		teardown(&f);
	}
	/* The bound kernels test is the declared one rounded up to a float. */
	Fixture r;
	approx_of(&r, "x1*x2", "head_dim = 4; algorithm = approx; bound = 0.1;");
	ck_assert((float)approx_bound(r.g.k) == approx_bound(r.g.k));
	ck_assert(approx_bound(r.g.k) >= 0.1);
	ck_assert(nextafterf((float)approx_bound(r.g.k), 0) < 0.1);
	teardown(&r);
	/* A tighter tolerance never lowers a degree. */
	Fixture a, b;
	approx_of(&a, "x1*x2", "head_dim = 4; algorithm = approx; bound = 0.5; tolerance = 1e-2;");
	approx_of(&b, "x1*x2", "head_dim = 4; algorithm = approx; bound = 0.5; tolerance = 1e-5;");
	ck_assert_int_gt(b.p.approx.edge[0].degree, a.p.approx.edge[0].degree);
	teardown(&a), teardown(&b);
}
END_TEST

/* The feature map holds every multi-index of degree ≤ P once, with the
 * Taylor weight Π w^α / α!: checked by summing it as a polynomial. */
START_TEST(test_approx_features)
{
	Fixture f;
	approx_of(&f, "x1*x2 - 0.5*x1*x2^2", "head_dim = 2; algorithm = approx; bound = 0.6; scale = 0.7;");
	const ApproxEdge *ae = &f.p.approx.edge[0];
	int nf = (int)ae->nfeat, parent[4096], coord[4096];
	double weight[4096];
	ck_assert_int_le(nf, 4096);
	ck_assert_int_eq(approx_feature_weights(ae, f.g.k, &f.g.edge[0], parent,
	                                        coord, weight), nf);
	/* Σ_f ω_f φ_f(a) φ_f(b) = T_P(u) with u = Σ_i w_i a_i b_i. */
	double a[4] = {0.3, -0.5, 0.2, 0.6}, b[4] = {-0.4, 0.1, 0.5, -0.6};
	double w[4] = {0.7, 0.7, -0.35, -0.35}, u = 0, sum = 0, tp = 0, term = 1;
	double pa[4096], pb[4096];
	for (int i = 0; i < 4; i++)
		u += w[i] * a[i] * b[i];
	pa[0] = pb[0] = 1;
	for (int q = 1; q < nf; q++) {
		ck_assert_int_lt(parent[q], q);
		pa[q] = pa[parent[q]] * a[coord[q]];
		pb[q] = pb[parent[q]] * b[coord[q]];
	}
	for (int q = 0; q < nf; q++)
		sum += weight[q] * pa[q] * pb[q];
	for (int p = 0; p <= ae->degree; p++)
		tp += term, term *= u / (p + 1);
	ck_assert_double_eq_tol(sum, tp, 1e-12);
	teardown(&f);
}
END_TEST

/* auto carries approx only where the cost model says it pays, and never
 * for trees; too many features are refused with the reason. */
START_TEST(test_approx_choice)
{
	Fixture f;
	setup_poly(&f, "x1*x2 + x2*x3 + x3*x1", "head_dim = 2; bound = 0.5;");
	ck_assert_int_eq(f.p.use, USE_AUTO);
	ck_assert(f.p.approx.min_n > 1 && f.p.approx.min_n < 1e5);
	ck_assert_double_lt(approx_seconds(&f.p.approx, f.p.approx.min_n),
	                    plan_seconds(&f.p, f.p.approx.min_n));
	ck_assert_double_ge(approx_seconds(&f.p.approx, f.p.approx.min_n - 1),
	                    plan_seconds(&f.p, f.p.approx.min_n - 1));
	teardown(&f);
	setup_poly(&f, "x1*x2 + x2*x3", "head_dim = 2; bound = 0.5;");
	ck_assert_int_eq(f.p.use, USE_EXACT);
	teardown(&f);
	setup_poly(&f, "x1*x2 + x2*x3 + x3*x1", "head_dim = 64; bound = 0.15;");
	ck_assert_int_eq(f.p.use, USE_EXACT);
	ck_assert(!f.p.approx.usable);
	ck_assert_ptr_nonnull(strstr(f.p.approx.why, "features"));
	teardown(&f);
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
	tcase_add_test(tc, test_masks);
	tcase_add_test(tc, test_mask_warnings);
	tcase_add_test(tc, test_mask_cost);
	tcase_add_test(tc, test_approx_degree);
	tcase_add_test(tc, test_approx_features);
	tcase_add_test(tc, test_approx_choice);
	tcase_add_loop_test(tc, test_explain_golden, 0,
	                    sizeof explained / sizeof *explained);
	suite_add_tcase(s, tc);
	return s;
}
