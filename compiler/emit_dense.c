/*
 * emit_dense.c - C for the exact dense plan: graphs with a cycle or a
 * monomial over three or more variables, computed by enumerating every
 * position tuple in the runtime (pa_dense_run).  Exact and slow: its cost
 * is n^t, as --explain says.
 */
#include "polyc.h"

/* emit_dense_kernel: the entry point, delegating to the runtime. */
void emit_dense_kernel(Emitter *E, const Plan *p)
{
	const Kernel *k = p->g->k;
	emit_line(E, "/*");
	emit_line(E, " * kernel %s: %s", k->name, k->poly_text);
	emit_line(E, " * class %s, plan %s: every tuple of %d positions is scored.",
	          graph_class_name(p->g->cls), plan_kind_name(p->kind), k->nvars);
	emit_line(E, " */");
	emit_line(E, "extern const pa_kernel_info %s_info;", k->name);
	emit_line(E, "");
	emit_line(E, "pa_status %s(int64_t batch, int64_t n, const float *const inputs[], float *out)", k->name);
	emit_open(E, "");
	emit_line(E, "if (!inputs || !out)");
	emit_line(E, "\treturn PA_ERR_NULL;");
	emit_line(E, "return pa_dense_run(&%s_info, batch, n, inputs, out);", k->name);
	emit_close(E);
	emit_line(E, "");
	emit_info(E, p);
}
