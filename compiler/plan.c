/*
 * plan.c - choose how a kernel is computed.
 *
 * A tree-class kernel becomes message passing (doc/design.md, "Trees:
 * message passing"): every component is rooted (x1's at x1, the others
 * at their lowest variable) and every non-root variable sends its parent
 * one attention-like message, children before parents.  Other classes get
 * variable elimination: x2 … xt are summed out in a min-fill order
 * (doc/design.md, "Other graphs"), each step leaving a message over the
 * variables it touched.  The plan also carries the cost model that
 * --explain prints.  A mask (doc/design.md, "Masks") becomes, per tree
 * message, the range its key positions may lie in relative to its query
 * positions; the elimination engine masks its two-variable edge tables
 * and the tuples of its wider edges.  An approximate plan takes a mask on
 * a tree: its messages sum under their ranges by prefix (or suffix) sums
 * over positions (runtime/pa_approx_tree.c); a window, an edge of the
 * mask alone, a range bounded on both sides or a mask beyond trees it
 * refuses.
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

/* mask_range: *lo, *hi = the range of ℓchild − ℓparent that k's mask
 * allows (±PC_UNBOUNDED where it sets no limit): each constraint between
 * the two bounds one side, and its window the other. */
void mask_range(const Kernel *k, int parent, int child, int64_t *lo,
                int64_t *hi)
{
	*lo = -PC_UNBOUNDED, *hi = PC_UNBOUNDED;
	for (int i = 0; i < k->nmasks; i++) {
		const PcMask *c = &k->mask[i];
		int64_t gap = c->strict ? 1 : 0, far = k->window ? k->window - 1 : PC_UNBOUNDED;
		if (c->a == child && c->b == parent) {        /* ℓchild ≤ ℓparent */
			*hi = *hi < -gap ? *hi : -gap;
			*lo = *lo > -far ? *lo : -far;
		} else if (c->a == parent && c->b == child) { /* ℓparent ≤ ℓchild */
			*lo = *lo > gap ? *lo : gap;
			*hi = *hi < far ? *hi : far;
		}
	}
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
	mask_range(k, parent, j, &m->lo, &m->hi);
}

/* msg_flops = the cost model's flops of message m per pair of positions:
 * the score's multiply-adds and the payload's. */
static double msg_flops(const Kernel *k, const Message *m)
{
	return 2.0 * m->dim + (m->values ? 2.0 * k->value_dim : 0);
}

/* mask_pairs = the pairs (i, j) of [0, n)² with lo ≤ j − i ≤ hi: the
 * pairs a masked message's kernel visits (it skips the tiles masked out
 * entirely), Σ over the allowed diagonals d of n − |d|. */
double mask_pairs(double n, int64_t lo, int64_t hi)
{
	double a = (double)lo > 1 - n ? (double)lo : 1 - n;
	double b = (double)hi < n - 1 ? (double)hi : n - 1;
	if (a > b)
		return 0;
	double abs_sum = a >= 0 ? (a + b) * (b - a + 1) / 2
	               : b <= 0 ? -(a + b) * (b - a + 1) / 2
	               : -a * (1 - a) / 2 + b * (b + 1) / 2;
	return (b - a + 1) * n - abs_sum;
}

/* comp_masked: some mask constraint of the kernel lies in component c
 * (then its weights may all be 0, and it cannot be dropped). */
static bool comp_masked(const Graph *g, int c)
{
	for (int i = 0; i < g->k->nmasks; i++)
		if (g->comp[g->k->mask[i].a] == c)
			return true;
	return false;
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
		/* Without x1, values and masks a component only scales numerator
		 * and denominator alike: it is dropped. */
		if (j != 1 && !p->sub_values[j] && !comp_masked(g, g->comp[j]))
			p->nmsg = before;
		else
			p->root[p->nroots++] = j;
	}
	p->cost_exp = p->nmsg ? 2 : 1;
	p->cost_coef = 0;
	for (int i = 0; i < p->nmsg; i++)
		p->cost_coef += msg_flops(g->k, &p->msg[i]);
	if (!p->nmsg)
		p->cost_coef = g->k->value_dim;
}

/* fill_in = the edges that summing out x_j adds between its neighbours
 * in the primal graph adj. */
static int fill_in(const uint32_t *adj, int j)
{
	int fill = 0;
	for (uint32_t r = adj[j]; r; r &= r - 1) {
		int a = __builtin_ctz(r);
		fill += popcount32(adj[j] & ~adj[a] & ~(1u << a));
	}
	return fill / 2;
}

/* pick_next = the variable of left (never x1) whose elimination adds the
 * fewest fill edges; ties go to the fewest neighbours, then the lowest
 * index. */
static int pick_next(const uint32_t *adj, uint32_t left)
{
	int best = 0, best_fill = 0, best_deg = 0;
	for (uint32_t r = left; r; r &= r - 1) {
		int j = __builtin_ctz(r), f = fill_in(adj, j), dg = popcount32(adj[j]);
		if (!best || f < best_fill || (f == best_fill && dg < best_deg))
			best = j, best_fill = f, best_deg = dg;
	}
	return best;
}

/* eliminate: x_j's step: the edges and messages holding it that no step
 * read yet, and the message over its neighbours; the primal graph gains
 * the fill edges. */
static void eliminate(Plan *p, uint32_t *adj, int j, uint64_t *edges_left,
                      uint32_t *msgs_left)
{
	const Graph *g = p->g;
	ElimStep *st = &p->step[p->nsteps];
	st->var = j;
	st->scope = adj[j];
	st->values = (g->k->values >> j) & 1;
	for (int e = 0; e < g->nedges; e++)
		if ((*edges_left >> e & 1) && (g->edge[e].vars >> j & 1))
			st->edges |= 1ull << e, *edges_left &= ~(1ull << e);
	for (uint32_t r = *msgs_left; r; r &= r - 1) {
		int s = __builtin_ctz(r);
		if (p->step[s].scope >> j & 1) {
			st->msgs |= 1u << s, *msgs_left &= ~(1u << s);
			st->values |= p->step[s].values;
		}
	}
	*msgs_left |= 1u << p->nsteps++;
	for (uint32_t r = adj[j]; r; r &= r - 1) {
		int a = __builtin_ctz(r);
		adj[a] = (adj[a] | adj[j]) & ~(1u << a) & ~(1u << j);
	}
	adj[j] = 0;
}

/* step_cost = flops of one step per tuple of its scope and position of
 * its variable: the scores it adds and the value channels it multiplies. */
static double step_cost(const Plan *p, const ElimStep *st)
{
	const Graph *g = p->g;
	double c = 4;            /* exp, max, sum */
	for (int e = 0; e < g->nedges; e++)
		if (st->edges >> e & 1)
			c += popcount32(g->edge[e].vars) > 2 ? 2.0 * g->edge[e].nmono * g->k->head_dim : 1;
	c += popcount32(st->msgs);
	if (st->values)
		c += 2.0 * g->k->value_dim * (1 + popcount32(st->msgs));
	return c;
}

/* plan_elim: the min-fill order and its steps; the widest step costs
 * n^(|R|+1) (every tuple of R, every position of x_j: a step holding x1
 * runs once per query position), its message n^|R minus x1| rows. */
static void plan_elim(Plan *p)
{
	const Graph *g = p->g;
	uint32_t adj[PC_MAX_VARS + 1], left = 0, msgs_left = 0;
	uint64_t edges_left = g->nedges >= 64 ? ~0ull : (1ull << g->nedges) - 1;
	memcpy(adj, g->adj, sizeof adj);
	for (int j = 2; j <= g->nvars; j++)
		left |= 1u << j;
	p->cost_exp = p->mem_exp = 0;
	while (left) {
		int j = pick_next(adj, left);
		left &= ~(1u << j);
		eliminate(p, adj, j, &edges_left, &msgs_left);
		const ElimStep *st = &p->step[p->nsteps - 1];
		int width = popcount32(st->scope) + 1;
		int mem = popcount32(st->scope & ~2u);
		p->mem_exp = mem > p->mem_exp ? mem : p->mem_exp;
		if (width > p->cost_exp)
			p->cost_exp = width, p->cost_coef = 0;
		if (width == p->cost_exp)
			p->cost_coef += step_cost(p, st);
	}
}

/* warn_idle: a warning at each of bound, tolerance and fallback that k
 * gives although plan p runs the exact algorithm only, saying why. */
static void warn_idle(const Plan *p, Diag *d)
{
	static const PcSetting idle[] = {PC_SET_BOUND, PC_SET_TOLERANCE,
	                                 PC_SET_FALLBACK};
	const Kernel *k = p->g->k;
	const char *why = k->algorithm == PC_ALGO_EXACT ? "algorithm = exact"
	        : p->kind == PLAN_TREE ? "a tree is exact under algorithm = auto"
	        : k->nmasks ? "approximate kernels take a mask only on a tree"
	        : !(k->bound > 0) ? "algorithm = auto approximates only with a bound"
	        : "no approximation fits (polyc --explain says why)";
	for (size_t i = 0; i < sizeof idle / sizeof *idle; i++)
		if (k->set_loc[idle[i]].file)
			diag_warning(d, k->set_loc[idle[i]], "'%s' has no effect: kernel "
			             "'%s' runs the exact algorithm only (%s)",
			             setting_name(idle[i]), k->name, why);
}

/* warn_mask_edges: a warning at each constraint whose two variables
 * share no monomial: it adds their pair to the graph. */
static void warn_mask_edges(const Graph *g, Diag *d)
{
	const Kernel *k = g->k;
	for (int e = 0; e < g->nedges; e++) {
		if (g->edge[e].nmono)
			continue;
		int a = __builtin_ctz(g->edge[e].vars), b = 31 - __builtin_clz(g->edge[e].vars);
		for (int i = 0; i < k->nmasks; i++)
			if ((1u << k->mask[i].a | 1u << k->mask[i].b) == g->edge[e].vars) {
				diag_warning(d, k->mask[i].loc, "x%d and x%d share no monomial: "
				             "the mask adds the edge {x%d, x%d} to the graph of "
				             "kernel '%s' (class %s)", a, b, a, b, k->name,
				             graph_class_name(g->cls));
				break;
			}
	}
}

/* refuse_mask: report that the approximate plan cannot honour kernel
 * k's setting set (mask or window), for the reason why; = false. */
static bool refuse_mask(const Kernel *k, PcSetting set, const char *why, Diag *d)
{
	diag_error(d, k->set_loc[set], "%s of kernel '%s' is refused: the approx "
	           "plan cannot honour it (%s); exact plans can", setting_name(set),
	           k->name, why);
	return false;
}

/* approx_mask_ok: the approximate plan p can honour k's mask: a tree
 * whose constraints all lie on its edges, each message's range bounded
 * on one side at most, and no window (a prefix sum over positions sums
 * everything before a point, not a band); else refused, false. */
static bool approx_mask_ok(const Plan *p, Diag *d)
{
	const Graph *g = p->g;
	const Kernel *k = g->k;
	char why[256];
	if (k->window)
		return refuse_mask(k, PC_SET_WINDOW, "its prefix sums over positions "
		                   "cannot leave out the keys a window or more apart", d);
	for (int e = 0; e < g->nedges; e++)
		if (!g->edge[e].nmono) {
			int a = __builtin_ctz(g->edge[e].vars), b = 31 - __builtin_clz(g->edge[e].vars);
			snprintf(why, sizeof why, "x%d and x%d share no monomial: no feature "
			         "map carries their constraint", a, b);
			return refuse_mask(k, PC_SET_MASK, why, d);
		}
	if (p->kind != PLAN_TREE) {
		snprintf(why, sizeof why, "the %s graph is contracted as one tensor "
		         "network; only a tree's messages sum under a mask",
		         graph_class_name(g->cls));
		return refuse_mask(k, PC_SET_MASK, why, d);
	}
	for (int i = 0; i < p->nmsg; i++) {
		const Message *m = &p->msg[i];
		if (m->lo > -PC_UNBOUNDED && m->hi < PC_UNBOUNDED) {
			snprintf(why, sizeof why, "it bounds l%d - l%d on both sides; a prefix "
			         "sum bounds one side", m->var, m->parent);
			return refuse_mask(k, PC_SET_MASK, why, d);
		}
	}
	return true;
}

/* plan_build: p = the plan of graph g: its exact algorithm, and the
 * approximate one when the kernel asks for it (approx) or may gain from
 * it (auto, with a bound, beyond trees); false (reported) when the
 * kernel asks for what this polyc cannot plan.  Settings that then do
 * nothing are warned about. */
bool plan_build(Plan *p, const Graph *g, Diag *d)
{
	const Kernel *k = g->k;
	memset(p, 0, sizeof *p);
	p->g = g;
	p->kind = g->cls == GC_TREE ? PLAN_TREE : PLAN_ELIM;
	if (p->kind == PLAN_ELIM)
		plan_elim(p);
	else
		plan_tree(p);
	p->use = USE_EXACT;
	p->carry_exact = true;
	if (k->nmasks) {
		warn_mask_edges(g, d);
		if (k->algorithm == PC_ALGO_APPROX && !approx_mask_ok(p, d))
			return false;
	}
	if (k->algorithm == PC_ALGO_APPROX) {
		Loc at = k->set_loc[PC_SET_ALGORITHM];
		if (!(k->bound > 0)) {
			diag_error(d, at, "algorithm 'approx' of kernel '%s' needs "
			           "'bound': the largest |entry| its factor inputs "
			           "may hold", k->name);
			return false;
		}
		approx_plan(p);
		if (!p->approx.usable) {
			diag_error(d, at, "algorithm 'approx' is refused for kernel "
			           "'%s': %s", k->name, p->approx.why);
			diag_note(d, k->set_loc[PC_SET_BOUND], "the bound is given here");
			return false;
		}
		p->use = USE_APPROX;
		p->carry_exact = k->fallback_exact;
		if (k->nmasks)
			approx_mask(p);
	} else if (k->algorithm == PC_ALGO_AUTO && k->bound > 0 &&
	           p->kind == PLAN_ELIM && !k->nmasks) {
		approx_plan(p);
		if (p->approx.usable)
			p->use = USE_AUTO;
	}
	if (p->use == USE_EXACT)
		warn_idle(p, d);
	return true;
}

/* plan_seconds = the cost model's time of the exact plan at length n. */
double plan_seconds(const Plan *p, double n)
{
	return plan_flops(p, n) / PC_RATE_EXACT;
}

/* plan_trains: the kernel carries a backward (doc/training.md): every
 * plan does, exact (tree or elimination), approximate or auto (its
 * network's backward or, masked, its tree's, pa_approx_tree.c, and its
 * exact part's over the bound). */
bool plan_trains(const Plan *p)
{
	return p->kind == PLAN_TREE || p->kind == PLAN_ELIM;
}

/* plan_exact_trains: p's exact algorithm has a backward, so the exact
 * part an approximate plan carries is emitted with its training pair:
 * every tree and elimination plan. */
bool plan_exact_trains(const Plan *p)
{
	return p->kind == PLAN_TREE || p->kind == PLAN_ELIM;
}

/* plan_runs_qk: the kernel's entry points take nq query rows besides nk
 * key rows (K_info.run_qk, .saved_floats_qk, .train_qk, .backward_qk,
 * named K_run_qk … in the generated C); else the call layer pads x1. */
bool plan_runs_qk(const Plan *p)
{
	if (p->use != USE_EXACT)
		return false;
	switch (p->kind) {
	case PLAN_TREE: return true;  /* emit_tree.c */
	case PLAN_ELIM: return true;  /* emit_elim.c */
	}
	return false;
}

/* plan_algorithm = what K_info.algorithm says: the exact plan's name,
 * "approx", or "auto" when the entry point picks per call. */
const char *plan_algorithm(const Plan *p)
{
	switch (p->use) {
	case USE_APPROX: return "approx";
	case USE_AUTO: return "auto";
	default: return plan_kind_name(p->kind);
	}
}

/* plan_flops = the cost model's floating-point operations at length n:
 * cost_coef · n^cost_exp, and for a masked tree each message's flops
 * over the pairs its mask keeps.  (An elimination plan masks its tables
 * but visits every tuple, so its mask saves nothing here.) */
double plan_flops(const Plan *p, double n)
{
	if (p->kind == PLAN_TREE && p->nmsg && p->g->k->nmasks) {
		double f = 0;
		for (int i = 0; i < p->nmsg; i++)
			f += msg_flops(p->g->k, &p->msg[i])
			   * mask_pairs(n, p->msg[i].lo, p->msg[i].hi);
		return f;
	}
	return p->cost_coef * pow(n, p->cost_exp);
}

/* plan_kind_name = how the plan is named in K_info and --explain. */
const char *plan_kind_name(PlanKind k)
{
	switch (k) {
	case PLAN_TREE: return "exact-tree";
	case PLAN_ELIM: return "exact-elimination";
	}
	return "?";
}
