/*
 * explain.c - the human-readable account of a kernel that
 * `polyc --explain` prints: the monomials, the hypergraph, its class, the
 * plan and the cost model's figures.  The format is stable (golden tests
 * read it): one "key: value" header per section, details indented.
 */
#include "polyc.h"

#include <math.h>

/* var_set: "{x1, x2}" for a bit set of variables. */
static void print_vars(FILE *f, uint32_t vs)
{
	const char *sep = "";
	fputc('{', f);
	for (; vs; vs &= vs - 1, sep = ", ")
		fprintf(f, "%sx%d", sep, __builtin_ctz(vs));
	fputc('}', f);
}

/* plural = "s" unless count is 1. */
static const char *plural(int count)
{
	return count == 1 ? "" : "s";
}

/* print_graph: edges with their monomials, biases, components. */
static void print_graph(FILE *f, const Graph *g)
{
	fprintf(f, "graph: %d variable%s, %d edge%s, %d component%s\n",
	        g->nvars, plural(g->nvars), g->nedges, plural(g->nedges),
	        g->ncomps, plural(g->ncomps));
	for (int e = 0; e < g->nedges; e++) {
		fprintf(f, "  edge ");
		print_vars(f, g->edge[e].vars);
		fprintf(f, g->edge[e].nmono ? ": monomials" : ": the mask's alone (no monomial)");
		for (int a = 0; a < g->edge[e].nmono; a++)
			fprintf(f, " %d", g->edge[e].mono[a]);
		fputc('\n', f);
	}
	for (int j = 1; j <= g->nvars; j++)
		if (g->nbias[j]) {
			fprintf(f, "  bias x%d: monomials", j);
			for (int a = 0; a < g->nbias[j]; a++)
				fprintf(f, " %d", g->bias[j][a]);
			fprintf(f, "%s\n", j == 1 ? " (cancels: x1 is the query)" : "");
		}
}

/* print_range: ", keys where lo <= lj - lp <= hi", the range a message's
 * mask allows (the sides it limits). */
static void print_range(FILE *f, const Message *m)
{
	if (m->lo == -PC_UNBOUNDED && m->hi == PC_UNBOUNDED)
		return;
	fprintf(f, ", keys where ");
	if (m->lo != -PC_UNBOUNDED)
		fprintf(f, "%lld <= ", (long long)m->lo);
	fprintf(f, "l%d - l%d", m->var, m->parent);
	if (m->hi != PC_UNBOUNDED)
		fprintf(f, " <= %lld", (long long)m->hi);
}

/* print_mask: the constraints in effect and the window. */
static void print_mask(FILE *f, const Kernel *k)
{
	if (!k->nmasks)
		return;
	fprintf(f, "mask:%s", k->causal ? " causal," : "");
	for (int i = 0; i < k->nmasks; i++)
		fprintf(f, "%s x%d %s x%d", i ? "," : "", k->mask[i].a,
		        k->mask[i].strict ? "<" : "<=", k->mask[i].b);
	if (k->window)
		fprintf(f, "; window %lld", (long long)k->window);
	fputc('\n', f);
}

/* print_elim: the elimination order, then per step what it reads, the
 * message it leaves and that message's size. */
static void print_elim(FILE *f, const Plan *p)
{
	const Graph *g = p->g;
	fprintf(f, "  order (min-fill):");
	for (int s = 0; s < p->nsteps; s++)
		fprintf(f, " x%d", p->step[s].var);
	fputc('\n', f);
	for (int s = 0; s < p->nsteps; s++) {
		const ElimStep *st = &p->step[s];
		int rows = popcount32(st->scope & ~2u);
		fprintf(f, "  step %d: sum out x%d, reading", s + 1, st->var);
		for (int e = 0; e < g->nedges; e++)
			if (st->edges >> e & 1) {
				fprintf(f, " edge ");
				print_vars(f, g->edge[e].vars);
			}
		if (g->nbias[st->var])
			fprintf(f, " bias x%d", st->var);
		for (uint32_t r = st->msgs; r; r &= r - 1)
			fprintf(f, " message %d", __builtin_ctz(r) + 1);
		fprintf(f, "\n    message ");
		print_vars(f, st->scope);
		fprintf(f, ": n^%d x %d floats%s, cost n^%d\n", rows,
		        st->values ? g->k->value_dim + 1 : 1,
		        st->scope & 2u ? " per query position" : "",
		        popcount32(st->scope) + 1);
	}
	fprintf(f, "  workspace: messages of at most n^%d rows, an n x n score "
	        "table per two-variable edge\n", p->mem_exp);
}

/* print_plan: roots and messages of a tree plan, or the elimination. */
static void print_plan(FILE *f, const Plan *p)
{
	fprintf(f, "plan: %s\n", plan_kind_name(p->kind));
	if (p->kind == PLAN_ELIM) {
		print_elim(f, p);
		return;
	}
	for (int r = 0; r < p->nroots; r++)
		fprintf(f, "  root x%d%s\n", p->root[r],
		        r ? ": a constant vector multiplied into every row" : "");
	for (int i = 0; i < p->nmsg; i++) {
		const Message *m = &p->msg[i];
		fprintf(f, "  message x%d -> x%d: %d key columns, %s", m->var,
		        m->parent, m->dim, m->values ? "payload of value_dim columns"
		                                     : "log-normalizer only");
		print_range(f, m);
		fputc('\n', f);
	}
	fprintf(f, "  workspace: O(n) per message, no n x n matrix\n");
}

/* print_masked: the rest of a masked approximation: the tree's messages,
 * each summed over the features by chunked prefix sums under its range. */
static void print_masked(FILE *f, const Plan *p)
{
	const Approx *A = &p->approx;
	fprintf(f, "  masked by prefix sums over positions: the tree's messages, "
	        "children first, by chunks of %d rows\n", PC_APPROX_CHUNK);
	for (int r = 0; r < p->nroots; r++)
		fprintf(f, "  root x%d%s\n", p->root[r],
		        r ? ": summed over its positions, per channel" : "");
	for (int i = 0; i < p->nmsg; i++) {
		const Message *m = &p->msg[i];
		fprintf(f, "  message x%d -> x%d: %.0f features of edge %d", m->var,
		        m->parent, A->edge[m->edge].nfeat, m->edge);
		print_range(f, m);
		fprintf(f, "%s\n", m->lo == -PC_UNBOUNDED && m->hi == PC_UNBOUNDED
		        ? ", every key (one total)"
		        : m->hi != PC_UNBOUNDED ? " (prefix sum)" : " (suffix sum)");
	}
	fprintf(f, "  workspace: %.4g * n + %.4g floats\n", A->mem_lin, A->mem_const);
	fprintf(f, "  over the bound: %s\n", p->carry_exact ?
	        plan_kind_name(p->kind) : "PA_ERR_BOUND (fallback = none)");
}

/* print_approx: degrees and features per edge, the contraction, the
 * workspace, what happens over the bound. */
static void print_approx(FILE *f, const Plan *p)
{
	const Graph *g = p->g;
	const Kernel *k = g->k;
	const Approx *A = &p->approx;
	fprintf(f, "  bound %g, tolerance %g: every weight within a relative "
	        "%.3g; outputs within %.3g x max|value product|\n", k->bound,
	        k->tolerance, A->err, 2 * A->err / (1 - A->err));
	for (int e = 0; e < g->nedges; e++) {
		const ApproxEdge *ae = &A->edge[e];
		fprintf(f, "  edge %d ", e);
		print_vars(f, g->edge[e].vars);
		fprintf(f, ": |score| <= %.4g, Taylor degree %d over %d coordinates, "
		        "%.0f features, error %.3g\n", ae->x, ae->degree, ae->ncoord,
		        ae->nfeat, ae->err);
	}
	if (A->masked) {
		print_masked(f, p);
		return;
	}
	for (int s = 0; s < A->nsteps; s++) {
		fprintf(f, "  step %d: ", s + 1);
		approx_describe_step(f, p, s);
		fprintf(f, ": %.3g flops%s\n", A->step[s].coef,
		        A->step[s].npos ? " x n" : "");
	}
	fprintf(f, "  workspace: %.4g * n + %.4g floats\n", A->mem_lin, A->mem_const);
	if (p->use == USE_AUTO)
		fprintf(f, "  over the bound: %s\n", plan_kind_name(p->kind));
	else
		fprintf(f, "  over the bound: %s\n", p->carry_exact ?
		        plan_kind_name(p->kind) : "PA_ERR_BOUND (fallback = none)");
}

/* print_cost: the cost model's figures. */
static void print_cost(FILE *f, const Plan *p)
{
	const Approx *A = &p->approx;
	fprintf(f, "cost: %.4g * n^%d flops", p->cost_coef, p->cost_exp);
	double full = p->cost_coef * pow(4096, p->cost_exp);
	if (plan_flops(p, 4096) != full)
		fprintf(f, " unmasked, the mask keeps %.3g%% at n=4096",
		        100 * plan_flops(p, 4096) / full);
	fprintf(f, " (n=1024: %.3g, n=4096: %.3g)\n", plan_flops(p, 1024),
	        plan_flops(p, 4096));
	if (!p->approx_tried)
		return;
	if (A->flops_lin > 0)
		fprintf(f, "approx cost: %.4g * n + %.4g flops (n=1024: %.3g, "
		        "n=4096: %.3g)\n", A->flops_lin, A->flops_const,
		        A->flops_lin * 1024 + A->flops_const,
		        A->flops_lin * 4096 + A->flops_const);
	fprintf(f, "cost model: exact at %.3g GFLOP/s, approx at %.3g GFLOP/s",
	        PC_RATE_EXACT / 1e9, PC_RATE_APPROX / 1e9);
	if (A->min_n > 0)
		fprintf(f, "; approx is faster from n = %.0f\n", A->min_n);
	else
		fprintf(f, "; approx is never faster\n");
	if (p->use == USE_AUTO)
		fprintf(f, "choice: per call, %s for n < %.0f, approx from n = %.0f "
		        "(exact when an input exceeds the bound)\n",
		        plan_kind_name(p->kind), A->min_n, A->min_n);
	else if (p->use == USE_EXACT)
		fprintf(f, "choice: exact only; approx not carried: %s\n", A->why);
}

/* explain_kernel: everything --explain prints for one kernel. */
void explain_kernel(FILE *f, const Plan *p)
{
	const Kernel *k = p->g->k;
	fprintf(f, "kernel %s\n", k->name);
	fprintf(f, "polynomial: %s\n", k->poly_text);
	fprintf(f, "settings: head_dim %d, value_dim %d, scale %g, values ",
	        k->head_dim, k->value_dim, k->scale);
	if (k->values)
		print_vars(f, k->values);
	else
		fprintf(f, "none");
	fprintf(f, ", algorithm %s", algo_name(k->algorithm));
	if (k->bound > 0)
		fprintf(f, ", bound %g, tolerance %g, fallback %s", k->bound,
		        k->tolerance, k->fallback_exact ? "exact" : "none");
	fputc('\n', f);
	print_mask(f, k);
	print_graph(f, p->g);
	fprintf(f, "class: %s\n", graph_class_name(p->g->cls));
	if (p->use == USE_APPROX) {
		fprintf(f, "plan: approx (Taylor features, %s linear in n)\n",
		        p->approx.masked ? "masked messages" : "contraction");
		print_approx(f, p);
		if (p->carry_exact) {
			fprintf(f, "over the bound, the exact plan:\n");
			print_plan(f, p);
		}
	} else {
		print_plan(f, p);
		if (p->use == USE_AUTO) {
			fprintf(f, "approx plan, from the crossover on: approx\n");
			print_approx(f, p);
		}
	}
	print_cost(f, p);
	if (k->algorithm == PC_ALGO_AUTO && k->bound > 0 && p->kind == PLAN_TREE)
		fprintf(f, "choice: exact: auto keeps trees exact (quadratic); "
		        "algorithm approx asks for the approximation\n");
}
