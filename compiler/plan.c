/*
 * plan.c - choose how a kernel is computed.
 *
 * A tree-class kernel becomes message passing (DESIGN §3): every component
 * is rooted (x1's at x1, the others at their lowest variable) and every
 * non-root variable sends its parent one attention-like message, children
 * before parents.  Other classes are computed by exact enumeration of all
 * position tuples until a variable-elimination planner replaces it.  The
 * plan also carries the cost model that --explain prints.
 */
#include "polyc.h"

#include <math.h>
#include <string.h>

/* edge_of = index of the edge over exactly {a, b}, or -1. */
static int edge_of(const Graph *g, int a, int b)
{
	uint32_t vs = (1u << a) | (1u << b);
	for (int e = 0; e < g->nedges; e++)
		if (g->edge[e].vars == vs)
			return e;
	return -1;
}

/* visit: root the subtree of j (reached from parent), appending messages
 * in post-order so that children come before parents. */
static void visit(Plan *p, int j, int parent)
{
	const Graph *g = p->g;
	const Kernel *k = g->k;
	p->parent[j] = parent;
	p->sub_values[j] = (k->values >> j) & 1;
	for (uint32_t r = g->adj[j]; r; r &= r - 1) {
		int c = __builtin_ctz(r);
		if (c == parent)
			continue;
		visit(p, c, j);
		p->sub_values[j] |= p->sub_values[c];
	}
	if (parent == 0)
		return;
	Message *m = &p->msg[p->nmsg++];
	m->var = j;
	m->parent = parent;
	m->edge = edge_of(g, j, parent);
	m->dim = g->edge[m->edge].nmono * k->head_dim;
	m->values = p->sub_values[j];
}

/* plan_tree: root every component and order the messages. */
static void plan_tree(Plan *p)
{
	const Graph *g = p->g;
	bool seen[PC_MAX_VARS] = {false};
	for (int j = 1; j <= g->nvars; j++) {
		if (seen[g->comp[j]])
			continue;
		seen[g->comp[j]] = true;
		int before = p->nmsg;
		visit(p, j, 0);
		/* Without x1 and without values a component only scales numerator
		 * and denominator alike: it is dropped. */
		if (j != 1 && !p->sub_values[j])
			p->nmsg = before;
		else
			p->root[p->nroots++] = j;
	}
	p->cost_exp = p->nmsg ? 2 : 1;
	p->cost_coef = 0;
	for (int i = 0; i < p->nmsg; i++)
		p->cost_coef += 2.0 * p->msg[i].dim
		              + (p->msg[i].values ? 2.0 * g->k->value_dim : 0);
	if (!p->nmsg)
		p->cost_coef = g->k->value_dim;
}

/* plan_dense: enumeration of all n^t tuples, each scoring every monomial. */
static void plan_dense(Plan *p)
{
	const Kernel *k = p->g->k;
	p->cost_exp = k->nvars;
	p->cost_coef = 2.0 * k->value_dim;
	for (int i = 0; i < k->nmono; i++)
		p->cost_coef += 1.0;  /* tables hold each monomial's contribution */
}

/* plan_build: the plan for the kernel of g; false (reported to d) when
 * the kernel asks for what this polyc cannot plan. */
bool plan_build(Plan *p, const Graph *g, Diag *d)
{
	const Kernel *k = g->k;
	if (k->algorithm == PC_ALGO_APPROX) {
		diag_error(d, k->set_loc[PC_SET_ALGORITHM],
		           "algorithm 'approx' is not available in polyc %s; "
		           "use 'exact' or 'auto'", POLYC_VERSION);
		return false;
	}
	memset(p, 0, sizeof *p);
	p->g = g;
	p->kind = g->cls == GC_TREE ? PLAN_TREE : PLAN_DENSE;
	if (p->kind == PLAN_TREE)
		plan_tree(p);
	else
		plan_dense(p);
	return true;
}

/* plan_flops = the cost model's floating-point operations at length n. */
double plan_flops(const Plan *p, double n)
{
	return p->cost_coef * pow(n, p->cost_exp);
}

/* plan_kind_name = how the plan is named in K_info and --explain. */
const char *plan_kind_name(PlanKind k)
{
	switch (k) {
	case PLAN_TREE: return "exact-tree";
	case PLAN_DENSE: return "exact-dense";
	}
	return "?";
}
