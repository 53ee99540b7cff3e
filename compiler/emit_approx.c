/*
 * emit_approx.c - C for an approximate kernel (algorithm approx, or auto
 * when the cost model carries both): each edge's feature map as constant
 * tables (parent, coordinate and Taylor weight of every feature), the
 * tensor network's leaves and contraction steps, and an entry point that
 * hands them to the runtime's engine (runtime/pa_approx.c).  The exact
 * plan, when carried, is emitted first as a static function the engine
 * calls below the crossover n or over the bound.
 */
#include "polyc.h"

#include <stdlib.h>

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

/* emit_features: per edge its monomials and feature map, then the edge
 * table.  Returns false when memory for the tables runs out. */
static bool emit_features(Emitter *E, const Plan *p)
{
	const Graph *g = p->g;
	const Kernel *k = g->k;
	const Approx *A = &p->approx;
	char name[128];
	for (int e = 0; e < g->nedges; e++) {
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
		snprintf(name, sizeof name, "%s_mono", k->name);
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
		emit_line(E, "{0x%x, %d, %s_mono_%d, %d, %d, %s_parent_%d, %s_coord_%d, "
		          "%s_weight_%d, %d},", (unsigned)g->edge[e].vars,
		          g->edge[e].nmono, kn, e, A->edge[e].degree,
		          (int)A->edge[e].nfeat, kn, e, kn, e, kn, e,
		          A->edge[e].weight_var);
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
		emit_line(E, "{%s, %d, %d, %d, %s},", t->kind ? "PA_LEAF_WEIGHTS"
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
		emit_line(E, "{%d, %d, %s_ain_%d, %d, %s}, /* %d: %s */", st->sum,
		          st->nin, k->name, s, t->nidx, idx_list(buf, sizeof buf, t),
		          s + 1, what ? what : "");
		free(what);
	}
	E->indent--;
	emit_line(E, "};");
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
	emit_network(E, p);
	emit_open(E, "static const pa_approx_plan %s_aplan =", k->name);
	emit_line(E, "%d, %s_aedges, %d, %s_aleaves, %d, %s_asteps,", g->nedges,
	          k->name, A->nleaves, k->name, A->nsteps, k->name);
	emit_line(E, "%.9g, %.0f, %s,", approx_bound(k),
	          p->use == USE_AUTO ? A->min_n : 0.0,
	          p->carry_exact ? exact : "0");
	E->indent--;
	emit_line(E, "};");
	emit_line(E, "");
	emit_line(E, "pa_status %s(int64_t batch, int64_t n, const float *const inputs[], float *out)", k->name);
	emit_open(E, "");
	emit_line(E, "return pa_approx_run(&%s_info, &%s_aplan, batch, n, inputs, out);",
	          k->name, k->name);
	emit_close(E);
	emit_line(E, "");
	emit_info(E, p);
}
