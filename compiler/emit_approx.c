/*
 * emit_approx.c - C for an approximate kernel (algorithm approx, or auto
 * when the cost model carries both): each edge's feature map as constant
 * tables (parent, coordinate and Taylor weight of every feature), the
 * tensor network's leaves and contraction steps, and an entry point that
 * hands them to the runtime's engine (runtime/pa_approx.c).  The exact
 * plan, when carried, is emitted first as a static function the engine
 * calls below the crossover n or over the bound.  A masked tree also
 * gets its message table (child, parent, edge and the range of ℓchild −
 * ℓparent its mask allows) instead of the network, which the engine sums
 * by prefix sums (runtime/pa_approx_tree.c).
 */
#include "polyc.h"

#include <stdlib.h>
#include <string.h>

/* emit_ints, emit_floats: a constant array, eight entries per line. */
static void emit_ints(Emitter *E, const char *name, int idx, const int *v, int n)
{
	emit_open(E, "static const int %s_%d[%d] =", name, idx, n > 0 ? n : 1);
	for (int i = 0; i < n; i += 8) {
		char buf[256];
		int o = 0;
		for (int j = i; j < n && j < i + 8; j++)
			o += snprintf(buf + o, sizeof buf - o, "%d, ", v[j]);
		buf[o - 1] = 0;
		emit_line(E, "%s", buf);
	}
	if (n <= 0)
		emit_line(E, "0");
	E->indent--;
	emit_line(E, "};");
}

static void emit_floats(Emitter *E, const char *name, int idx, const double *v, int n)
{
	emit_open(E, "static const float %s_%d[%d] =", name, idx, n);
	for (int i = 0; i < n; i += 6) {
		char buf[256];
		int o = 0;
		for (int j = i; j < n && j < i + 6; j++)
			o += snprintf(buf + o, sizeof buf - o, "%.9g, ", v[j]);
		buf[o - 1] = 0;
		emit_line(E, "%s", buf);
	}
	E->indent--;
	emit_line(E, "};");
}

/* map_of: the feature map of edge e (nf entries each, malloc'd); false
 * when memory runs out. */
static bool map_of(const Plan *p, int e, int **parent, int **coord,
                   double **weight)
{
	const ApproxEdge *ae = &p->approx.edge[e];
	int nf = (int)ae->nfeat;
	*parent = malloc(sizeof(int) * nf), *coord = malloc(sizeof(int) * nf);
	*weight = malloc(sizeof(double) * nf);
	if (*parent && *coord && *weight &&
	    approx_feature_weights(ae, p->g->k, &p->g->edge[e], *parent, *coord,
	                           *weight) == nf)
		return true;
	free(*parent), free(*coord), free(*weight);
	return false;
}

/* same_map = the first edge before e whose feature map (parents,
 * coordinates and weights, which hold the coefficients) is e's, or e. */
static int same_map(const Plan *p, int e)
{
	const Approx *A = &p->approx;
	int nf = (int)A->edge[e].nfeat, *pe, *ce, *pf, *cf;
	double *we, *wf;
	if (!map_of(p, e, &pe, &ce, &we))
		return e;
	int same = e;
	for (int f = 0; f < e && same == e; f++) {
		if ((int)A->edge[f].nfeat != nf || same_map(p, f) != f ||
		    !map_of(p, f, &pf, &cf, &wf))
			continue;
		if (!memcmp(pe, pf, nf * sizeof *pe) && !memcmp(ce, cf, nf * sizeof *ce) &&
		    !memcmp(we, wf, nf * sizeof *we))
			same = f;
		free(pf), free(cf), free(wf);
	}
	free(pe), free(ce), free(we);
	return same;
}

/* emit_features: per edge its monomials and feature map (an edge whose
 * map an earlier edge has shares its tables), then the edge table.
 * Returns false when memory for the tables runs out. */
static bool emit_features(Emitter *E, const Plan *p)
{
	const Graph *g = p->g;
	const Kernel *k = g->k;
	const Approx *A = &p->approx;
	char name[256];
	for (int e = 0; e < g->nedges; e++) {
		snprintf(name, sizeof name, "%s_mono", k->name);
		if (same_map(p, e) != e) {
			emit_line(E, "/* edge %d: the feature map of edge %d; weights on "
			          "x%d */", e, same_map(p, e), A->edge[e].weight_var);
			emit_ints(E, name, e, g->edge[e].mono, g->edge[e].nmono);
			continue;
		}
		const ApproxEdge *ae = &A->edge[e];
		int nf = (int)ae->nfeat;
		int *parent = malloc(sizeof(int) * nf), *coord = malloc(sizeof(int) * nf);
		double *weight = malloc(sizeof(double) * nf);
		if (!parent || !coord || !weight ||
		    approx_feature_weights(ae, k, &g->edge[e], parent, coord, weight) != nf) {
			free(parent), free(coord), free(weight);
			return false;
		}
		emit_line(E, "/* edge %d: score bound %.6g, Taylor degree %d over %d "
		          "coordinates, %d features; weights on x%d */", e, ae->x,
		          ae->degree, ae->ncoord, nf, ae->weight_var);
		emit_ints(E, name, e, g->edge[e].mono, g->edge[e].nmono);
		snprintf(name, sizeof name, "%s_parent", k->name);
		emit_ints(E, name, e, parent, nf);
		snprintf(name, sizeof name, "%s_coord", k->name);
		emit_ints(E, name, e, coord, nf);
		snprintf(name, sizeof name, "%s_weight", k->name);
		emit_floats(E, name, e, weight, nf);
		free(parent), free(coord), free(weight);
	}
	emit_open(E, "static const pa_approx_edge %s_aedges[] =", k->name);
	for (int e = 0; e < g->nedges; e++) {
		const char *kn = k->name;
		int m = same_map(p, e);
		emit_open(E, "");
		emit_line(E, ".vars = %s, .nmono = %d, .mono = %s_mono_%d,",
		          emit_vars(name, sizeof name, g->edge[e].vars),
		          g->edge[e].nmono, kn, e);
		emit_line(E, ".degree = %d, .nfeat = %d,", A->edge[e].degree,
		          (int)A->edge[e].nfeat);
		emit_line(E, ".parent = %s_parent_%d, .coord = %s_coord_%d, "
		          ".weight = %s_weight_%d,", kn, m, kn, m, kn, m);
		emit_line(E, ".weight_var = %d,", A->edge[e].weight_var);
		E->indent--;
		emit_line(E, "},");
	}
	E->indent--;
	emit_line(E, "};");
	return true;
}

/* idx_list: "{a, b, c}" of a tensor's indices. */
static const char *idx_list(char *buf, size_t sz, const ATensor *t)
{
	int o = snprintf(buf, sz, "{");
	for (int i = 0; i < t->nidx; i++)
		o += snprintf(buf + o, sz - o, "%s%d", i ? ", " : "", t->idx[i]);
	snprintf(buf + o, sz - o, "}");
	return buf;
}

/* emit_network: the leaves and the steps. */
static void emit_network(Emitter *E, const Plan *p)
{
	const Kernel *k = p->g->k;
	const Approx *A = &p->approx;
	char buf[256];
	emit_open(E, "static const pa_approx_leaf %s_aleaves[] =", k->name);
	for (int i = 0; i < A->nleaves; i++) {
		const ATensor *t = &A->t[i];
		emit_line(E, "{.kind = %s, .edge = %d, .var = %d, .nidx = %d, "
		          ".idx = %s},", t->kind ? "PA_LEAF_WEIGHTS"
		          : "PA_LEAF_FEATURES", t->edge, t->var, t->nidx,
		          idx_list(buf, sizeof buf, t));
	}
	E->indent--;
	emit_line(E, "};");
	char name[128];
	snprintf(name, sizeof name, "%s_ain", k->name);
	for (int s = 0; s < A->nsteps; s++)
		emit_ints(E, name, s, A->step[s].in, A->step[s].nin);
	emit_open(E, "static const pa_approx_step %s_asteps[] =", k->name);
	for (int s = 0; s < A->nsteps; s++) {
		const AStep *st = &A->step[s];
		const ATensor *t = &A->t[st->out];
		char *what = NULL;
		size_t len = 0;
		FILE *mem = open_memstream(&what, &len);
		if (mem) {
			approx_describe_step(mem, p, s);
			fclose(mem);
		}
		emit_line(E, "/* %d: %s */", s + 1, what ? what : "");
		emit_line(E, "{.sum = %d, .nin = %d, .in = %s_ain_%d, .nout = %d, "
		          ".out = %s},", st->sum, st->nin, k->name, s, t->nidx,
		          idx_list(buf, sizeof buf, t));
		free(what);
	}
	E->indent--;
	emit_line(E, "};");
}

/* emit_tree: the masked tree's messages, children first, and roots. */
static void emit_tree(Emitter *E, const Plan *p)
{
	const Kernel *k = p->g->k;
	char lo[64], hi[64];
	emit_open(E, "static const pa_approx_msg %s_amsg[] =", k->name);
	for (int i = 0; i < p->nmsg; i++) {
		const Message *m = &p->msg[i];
		emit_line(E, "/* x%d -> x%d over edge %d */", m->var, m->parent, m->edge);
		emit_line(E, "{.var = %d, .parent = %d, .edge = %d, .lo = %s, .hi = %s},",
		          m->var, m->parent, m->edge, emit_mask_bound(lo, sizeof lo, m->lo),
		          emit_mask_bound(hi, sizeof hi, m->hi));
	}
	if (!p->nmsg)
		emit_line(E, "{0}");
	E->indent--;
	emit_line(E, "};");
	char name[PC_MAX_NAME + 16];
	snprintf(name, sizeof name, "%s_aroots", k->name);
	emit_ints(E, name, 0, p->root, p->nroots);
	emit_open(E, "static const pa_approx_tree %s_atree =", k->name);
	emit_line(E, ".nmsg = %d, .msg = %s_amsg, .nroots = %d, .roots = %s_0,",
	          p->nmsg, k->name, p->nroots, name);
	E->indent--;
	emit_line(E, "};");
}

/* emit_approx_train: K_saved_floats, K_train and K_backward over the
 * runtime's (pa_approx_grad.c): the exact gradient of what the forward
 * ran, the network's or the exact part's. */
static void emit_approx_train(Emitter *E, const char *kn)
{
	emit_line(E, "/* training: saved records which algorithm the forward ran; the");
	emit_line(E, " * backward is the exact gradient of that one's function */");
	emit_line(E, "int64_t %s_saved_floats(int64_t batch, int64_t n)", kn);
	emit_open(E, "");
	emit_line(E, "return pa_approx_saved_floats(&%s_aplan, batch, n);", kn);
	emit_close(E);
	emit_line(E, "");
	emit_line(E, "pa_status %s_train(int64_t batch, int64_t n, const float *const inputs[], float *out,", kn);
	emit_open(E, "\tfloat *saved)");
	emit_line(E, "return pa_approx_train(&%s_info, &%s_aplan, batch, n, inputs, out, saved);", kn, kn);
	emit_close(E);
	emit_line(E, "");
	emit_line(E, "pa_status %s_backward(int64_t batch, int64_t n, const float *const inputs[],", kn);
	emit_open(E, "\tconst float *out, const float *saved, const float *grad_out, float *const grad_inputs[])");
	emit_line(E, "return pa_approx_backward(&%s_info, &%s_aplan, batch, n, inputs, out, saved,", kn, kn);
	emit_line(E, "                          grad_out, grad_inputs);");
	emit_close(E);
	emit_line(E, "");
}

/* emit_approx_kernel: the exact part if carried, the tables, the plan and
 * the entry point. */
void emit_approx_kernel(Emitter *E, const Plan *p)
{
	const Graph *g = p->g;
	const Kernel *k = g->k;
	const Approx *A = &p->approx;
	char exact[PC_MAX_NAME + 16];
	snprintf(exact, sizeof exact, "%s_exact", k->name);
	emit_line(E, "/*");
	emit_line(E, " * kernel %s: %s", k->name, k->poly_text);
	emit_line(E, " * class %s, plan %s: Taylor features under bound %g, every "
	          "weight within %.3g;", graph_class_name(g->cls),
	          plan_algorithm(p), k->bound, A->err);
	if (p->use == USE_AUTO)
		emit_line(E, " * %s below n = %.0f (the cost model's crossover).",
		          plan_kind_name(p->kind), A->min_n);
	else if (p->carry_exact)
		emit_line(E, " * %s when an input exceeds the bound.",
		          plan_kind_name(p->kind));
	else
		emit_line(E, " * PA_ERR_BOUND when an input exceeds the bound.");
	emit_line(E, " */");
	emit_line(E, "extern const pa_kernel_info %s_info;", k->name);
	emit_line(E, "");
	if (p->carry_exact) {
		if (p->kind == PLAN_TREE)
			emit_tree_kernel(E, p, exact);
		else
			emit_elim_kernel(E, p, exact);
	}
	if (!emit_features(E, p)) {
		emit_line(E, "#error \"polyc ran out of memory for the feature tables\"");
		return;
	}
	if (A->masked)
		emit_tree(E, p);
	else
		emit_network(E, p);
	emit_open(E, "static const pa_approx_plan %s_aplan =", k->name);
	emit_line(E, ".nedges = %d, .edges = %s_aedges,", g->nedges, k->name);
	if (!A->masked) {
		emit_line(E, ".nleaves = %d, .leaves = %s_aleaves,", A->nleaves, k->name);
		emit_line(E, ".nsteps = %d, .steps = %s_asteps,", A->nsteps, k->name);
	}
	emit_line(E, ".bound = %.9g, .min_n = %.0f, .exact = %s,", approx_bound(k),
	          p->use == USE_AUTO ? A->min_n : 0.0,
	          p->carry_exact ? exact : "0");
	if (p->carry_exact && plan_exact_trains(p))
		emit_line(E, ".exact_saved_floats = %s_saved_floats, .exact_train = %s_train, "
		          ".exact_backward = %s_backward,", exact, exact, exact);
	if (A->masked)
		emit_line(E, ".tree = &%s_atree,", k->name);
	E->indent--;
	emit_line(E, "};");
	emit_line(E, "");
	emit_line(E, "pa_status %s(int64_t batch, int64_t n, const float *const inputs[], float *out)", k->name);
	emit_open(E, "");
	emit_line(E, "return pa_approx_run(&%s_info, &%s_aplan, batch, n, inputs, out);",
	          k->name, k->name);
	emit_close(E);
	emit_line(E, "");
	if (plan_trains(p))
		emit_approx_train(E, k->name);
	emit_info(E, p);
}
