/*
 * emit_elim.c - C for the exact variable-elimination plan (cyclic and
 * high-degree graphs): the plan printed as constant tables that the
 * runtime's engine (runtime/pa_elim.c) runs.  Edges come first as the
 * graph has them, then one bias edge per variable with one-variable
 * monomials (x1's cancel and are left out); each step lists the edges and
 * the earlier messages it reads.  An exact kernel (plan_runs_qk) also gets
 * K_run_qk, K_saved_floats_qk, K_train_qk and K_backward_qk, the engine's
 * entries with nq queries and nk keys; K and its training pair are the
 * same engine calls at nq = nk = n.
 */
#include "polyc.h"

/* bias_edge = the runtime edge index of x_j's bias monomials, or -1. */
static int bias_edge(const Graph *g, int j)
{
	if (j == 1 || !g->nbias[j])
		return -1;
	int e = g->nedges;
	for (int v = 2; v < j; v++)
		e += g->nbias[v] > 0;
	return e;
}

/* emit_int_list: "static const int NAME[] = {a, b};" (a dummy 0 when
 * empty, so the array is valid C). */
static void emit_int_list(Emitter *E, const char *name, const int *v, int n)
{
	char buf[1024];
	int o = 0;
	for (int i = 0; i < n && o < (int)sizeof buf - 16; i++)
		o += snprintf(buf + o, sizeof buf - o, "%s%d", i ? ", " : "", v[i]);
	emit_line(E, "static const int %s[] = {%s};", name, n ? buf : "0");
}

/* emit_edges: every edge's monomial list and the edge table. */
static void emit_edges(Emitter *E, const Plan *p)
{
	const Graph *g = p->g;
	const char *kn = g->k->name;
	char name[256];
	for (int e = 0; e < g->nedges; e++) {
		snprintf(name, sizeof name, "%s_edge%d", kn, e);
		emit_int_list(E, name, g->edge[e].mono, g->edge[e].nmono);
	}
	for (int j = 2; j <= g->nvars; j++)
		if (bias_edge(g, j) >= 0) {
			snprintf(name, sizeof name, "%s_edge%d", kn, bias_edge(g, j));
			emit_int_list(E, name, g->bias[j], g->nbias[j]);
		}
	emit_open(E, "static const pa_elim_edge %s_edges[] =", kn);
	for (int e = 0; e < g->nedges; e++)
		emit_line(E, "{.vars = %s, .nmono = %d, .mono = %s_edge%d},",
		          emit_vars(name, sizeof name, g->edge[e].vars),
		          g->edge[e].nmono, kn, e);
	for (int j = 2; j <= g->nvars; j++)
		if (bias_edge(g, j) >= 0)
			emit_line(E, "{.vars = PA_X(%d), .nmono = %d, .mono = %s_edge%d}, "
			          "/* bias of x%d */", j, g->nbias[j], kn,
			          bias_edge(g, j), j);
	E->indent--;
	emit_line(E, "};");
}

/* emit_steps: per step its edge and message lists, then the step table. */
static void emit_steps(Emitter *E, const Plan *p)
{
	const Graph *g = p->g;
	const char *kn = g->k->name;
	char name[256];
	for (int s = 0; s < p->nsteps; s++) {
		const ElimStep *st = &p->step[s];
		int ev[PC_MAX_MONOMIALS + 1], ne = 0, mv[PC_MAX_VARS], nm = 0;
		for (int e = 0; e < g->nedges; e++)
			if (st->edges >> e & 1)
				ev[ne++] = e;
		if (bias_edge(g, st->var) >= 0)
			ev[ne++] = bias_edge(g, st->var);
		for (uint32_t r = st->msgs; r; r &= r - 1)
			mv[nm++] = __builtin_ctz(r);
		emit_line(E, "/* step %d: sum out x%d */", s + 1, st->var);
		snprintf(name, sizeof name, "%s_step%d_edges", kn, s);
		emit_int_list(E, name, ev, ne);
		snprintf(name, sizeof name, "%s_step%d_msgs", kn, s);
		emit_int_list(E, name, mv, nm);
	}
	emit_open(E, "static const pa_elim_step %s_steps[] =", kn);
	for (int s = 0; s < p->nsteps; s++) {
		const ElimStep *st = &p->step[s];
		int ne = popcount32((uint32_t)st->edges) + popcount32((uint32_t)(st->edges >> 32)) +
		         (bias_edge(g, st->var) >= 0);
		emit_line(E, "{.var = %d, .scope = %s, .nedges = %d, .edges = "
		          "%s_step%d_edges, .nmsgs = %d, .msgs = %s_step%d_msgs, "
		          ".values = %d},", st->var,
		          emit_vars(name, sizeof name, st->scope), ne, kn, s,
		          popcount32(st->msgs), kn, s, st->values);
	}
	E->indent--;
	emit_line(E, "};");
}

/* emit_training: K_saved_floats, K_train and K_backward, each a call of
 * the engine's training entry (runtime/pa_elim_grad.c) with the plan;
 * with entry, static ones named after it (the exact part of an
 * approximate kernel). */
static void emit_training(Emitter *E, const Plan *p, const char *entry)
{
	const char *kn = p->g->k->name, *fn = entry ? entry : kn;
	const char *qual = entry ? "static " : "";
	emit_line(E, "/* training: saved keeps the messages of the steps without x1; the");
	emit_line(E, " * backward runs the steps in reverse order */");
	emit_line(E, "%sint64_t %s_saved_floats(int64_t batch, int64_t n)", qual, fn);
	emit_open(E, "");
	emit_line(E, "return pa_elim_saved_floats(&%s_info, &%s_plan, batch, n);", kn, kn);
	emit_close(E);
	emit_line(E, "");
	emit_line(E, "%spa_status %s_train(int64_t batch, int64_t n, const float *const inputs[], float *out,", qual, fn);
	emit_open(E, "\tfloat *saved)");
	emit_line(E, "return pa_elim_train(&%s_info, &%s_plan, batch, n, inputs, out, saved);", kn, kn);
	emit_close(E);
	emit_line(E, "");
	emit_line(E, "%spa_status %s_backward(int64_t batch, int64_t n, const float *const inputs[],", qual, fn);
	emit_open(E, "\tconst float *out, const float *saved, const float *grad_out, float *const grad_inputs[])");
	emit_line(E, "return pa_elim_backward(&%s_info, &%s_plan, batch, n, inputs, out, saved,", kn, kn);
	emit_line(E, "                        grad_out, grad_inputs);");
	emit_close(E);
	emit_line(E, "");
}

/* emit_qk: K_run_qk, K_saved_floats_qk, K_train_qk and K_backward_qk, the
 * engine's entries with nq query rows and nk key rows (K_info.run_qk …). */
static void emit_qk(Emitter *E, const Plan *p)
{
	const char *kn = p->g->k->name;
	emit_line(E, "/* nq queries (x1's rows) against nk keys, query row i at position i + nk - nq */");
	emit_line(E, "pa_status %s_run_qk(int64_t batch, int64_t nq, int64_t nk, const float *const inputs[],", kn);
	emit_open(E, "\tfloat *out)");
	emit_line(E, "return pa_elim_run_qk(&%s_info, &%s_plan, batch, nq, nk, inputs, out);", kn, kn);
	emit_close(E);
	emit_line(E, "");
	emit_line(E, "int64_t %s_saved_floats_qk(int64_t batch, int64_t nq, int64_t nk)", kn);
	emit_open(E, "");
	emit_line(E, "return pa_elim_saved_floats_qk(&%s_info, &%s_plan, batch, nq, nk);", kn, kn);
	emit_close(E);
	emit_line(E, "");
	emit_line(E, "pa_status %s_train_qk(int64_t batch, int64_t nq, int64_t nk, const float *const inputs[],", kn);
	emit_open(E, "\tfloat *out, float *saved)");
	emit_line(E, "return pa_elim_train_qk(&%s_info, &%s_plan, batch, nq, nk, inputs, out, saved);", kn, kn);
	emit_close(E);
	emit_line(E, "");
	emit_line(E, "pa_status %s_backward_qk(int64_t batch, int64_t nq, int64_t nk, const float *const inputs[],", kn);
	emit_open(E, "\tconst float *out, const float *saved, const float *grad_out, float *const grad_inputs[])");
	emit_line(E, "return pa_elim_backward_qk(&%s_info, &%s_plan, batch, nq, nk, inputs, out, saved,", kn, kn);
	emit_line(E, "                           grad_out, grad_inputs);");
	emit_close(E);
	emit_line(E, "");
}

/* emit_elim_kernel: the tables, the plan and the entry point; with
 * entry, a static entry point of that name and no K_info (another plan's
 * exact part). */
void emit_elim_kernel(Emitter *E, const Plan *p, const char *entry)
{
	const Graph *g = p->g;
	const Kernel *k = g->k;
	int nbias = 0;
	for (int j = 2; j <= g->nvars; j++)
		nbias += bias_edge(g, j) >= 0;
	emit_line(E, "/*");
	emit_line(E, " * kernel %s: %s", k->name, k->poly_text);
	emit_line(E, " * class %s, plan %s: %d step(s), cost n^%d.",
	          graph_class_name(g->cls), plan_kind_name(p->kind), p->nsteps,
	          p->cost_exp);
	emit_line(E, " */");
	if (!entry) {
		emit_line(E, "extern const pa_kernel_info %s_info;", k->name);
		emit_line(E, "");
	}
	emit_edges(E, p);
	emit_steps(E, p);
	emit_open(E, "static const pa_elim_plan %s_plan =", k->name);
	emit_line(E, ".nedges = %d, .edges = %s_edges,", g->nedges + nbias, k->name);
	emit_line(E, ".nsteps = %d, .steps = %s_steps,", p->nsteps, k->name);
	E->indent--;
	emit_line(E, "};");
	emit_line(E, "");
	if (entry)
		emit_line(E, "static pa_status %s(int64_t batch, int64_t n, const float *const inputs[], float *out)", entry);
	else
		emit_line(E, "pa_status %s(int64_t batch, int64_t n, const float *const inputs[], float *out)", k->name);
	emit_open(E, "");
	emit_line(E, "return pa_elim_run(&%s_info, &%s_plan, batch, n, inputs, out);",
	          k->name, k->name);
	emit_close(E);
	emit_line(E, "");
	if (plan_trains(p) && plan_exact_trains(p))
		emit_training(E, p, entry);
	if (!entry && plan_runs_qk(p))
		emit_qk(E, p);
	if (!entry)
		emit_info(E, p);
}
