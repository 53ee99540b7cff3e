/*
 * emit_tree.c - C for the exact tree plan (doc/design.md, "Trees: message
 * passing").
 *
 * Every message x_j → x_p is one attention pass: the rows of x_p are the
 * queries, the rows of x_j the keys, with x_j's own biases and the
 * log-normalizers of x_j's children as key biases, and the entrywise
 * product of x_j's values and its children's messages as payload.  A pass
 * keeps a running maximum per row (online softmax), so it returns the
 * normalized message and its log-normalizer and never forms an n × n
 * matrix.  A kernel is a struct of workspace pointers and, per message,
 * a "prepare" stage (queries, packed keys, key bias, payload) and a
 * "send" stage; "finish" multiplies the root's messages into the output.
 *
 * Every stage takes nq query rows and nk key rows (K_run_qk; K is it at
 * nq = nk = n): only the messages into x1 have x1's rows as queries, so
 * their queries, log-normalizers and messages, x1's inputs and the output
 * have nq rows, every other buffer nk.  Query row i of a message into x1
 * sits at position i + nk − nq, the position its masked micro-kernel
 * takes, so a causal decoding query visits the key panels up to its own
 * position and no others.
 */
#include "polyc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* flit: x as a float literal ("0.5f", "1.0f", "-2e-05f"). */
static const char *flit(char *buf, size_t sz, double x)
{
	snprintf(buf, sz, "%.9g", x);
	if (!strpbrk(buf, ".e"))
		strncat(buf, ".0", sz - strlen(buf) - 1);
	strncat(buf, "f", sz - strlen(buf) - 1);
	return buf;
}

/* first_input = index in inputs[] of monomial m's first occurrence. */
static int first_input(const Kernel *k, int m)
{
	int i = 0;
	for (int a = 0; a < m; a++)
		i += k->mono[a].degree;
	return i;
}

/* value_input = index in inputs[] of x_j's value matrix. */
static int value_input(const Kernel *k, int j)
{
	return first_input(k, k->nmono) + popcount32(k->values & ((1u << j) - 1));
}

/* side_product: "f3[l] * f4[l]", the product of monomial m's occurrences
 * on x_v at column l (the f<i> pointers are declared by the caller). */
static void side_product(char *buf, size_t sz, const Kernel *k, int m, int v)
{
	int base = first_input(k, m), o = 0;
	buf[0] = 0;
	for (int q = 0; q < k->mono[m].degree; q++)
		if (k->mono[m].occ[q] == v)
			o += snprintf(buf + o, sz - o, "%sf%d[l]", o ? " * " : "",
			              base + q);
}

/* declare_rows: "const float *f<i> = in[i] + row * HD;" for every factor
 * occurrence of monomial m on x_v. */
static void declare_rows(Emitter *E, const Kernel *k, int m, int v)
{
	int base = first_input(k, m);
	for (int q = 0; q < k->mono[m].degree; q++)
		if (k->mono[m].occ[q] == v)
			emit_line(E, "const float *f%d = in[%d] + row * %d;", base + q,
			          base + q, k->head_dim);
}

/* children = the variables whose parent is j. */
static uint32_t children(const Plan *p, int j)
{
	uint32_t c = 0;
	for (int i = 0; i < p->nmsg; i++)
		if (p->msg[i].parent == j)
			c |= 1u << p->msg[i].var;
	return c;
}

/* A workspace buffer: batch × rows × cols floats. */
typedef struct Buf {
	char name[16];           /* member of struct K_work */
	const char *rows;        /* "nq" (x1's rows), "nk" (every other
	                            variable's), "np" (keys padded to panels)
	                            or "1" */
	int cols;
	bool kept;               /* training keeps it for the backward (saved) */
	int direct;              /* a payload that is this value input's rows
	                            themselves when nk fills whole panels, or -1 */
} Buf;

/* padded = a payload's row stride: value_dim rounded up to 16 floats,
 * so micro-kernels of every ISA read whole vectors. */
static int padded(int vd)
{
	return (vd + 15) / 16 * 16;
}

/* add_buf: append one buffer description. */
static void add_buf(Buf *b, int *nb, const char *pre, int j, const char *rows,
                    int cols)
{
	snprintf(b[*nb].name, sizeof b[*nb].name, "%s%d", pre, j);
	b[*nb].rows = rows;
	b[*nb].kept = false;
	b[*nb].direct = -1;
	b[(*nb)++].cols = cols;
}

/* query_rows = the rows of message msg's queries and results: "nq" for a
 * message into x1 (x1's rows are the queries), "nk" for the others. */
static const char *query_rows(const Message *msg)
{
	return msg->parent == 1 ? "nq" : "nk";
}

/* direct_payload = the input whose rows are x_j's payload as they stand
 * (x_j has values, no child sends it values, and value_dim needs no
 * padding), or -1.  Its message then reads the value rows in place of a
 * copy when nk is a multiple of PA_BK (no padding keys). */
static int direct_payload(const Plan *p, int j)
{
	const Kernel *k = p->g->k;
	if (!((k->values >> j) & 1) || padded(k->value_dim) != k->value_dim)
		return -1;
	for (uint32_t r = children(p, j); r; r &= r - 1)
		if (p->sub_values[__builtin_ctz(r)])
			return -1;
	return value_input(k, j);
}

/* work_buffers: every buffer the kernel of p needs, in workspace order:
 * per message its queries, packed keys, key bias, log-normalizer and (if
 * it carries values) payload and normalized message; per component
 * without x1 its weights, payload and constant. Returns the count. */
static int work_buffers(const Plan *p, Buf *b)
{
	int nb = 0, vd = p->g->k->value_dim;
	for (int i = 0; i < p->nmsg; i++) {
		const Message *m = &p->msg[i];
		const char *rows = query_rows(m);
		add_buf(b, &nb, "q", m->var, rows, m->dim);
		add_buf(b, &nb, "kt", m->var, "np", m->dim);
		add_buf(b, &nb, "kb", m->var, "np", 1);
		add_buf(b, &nb, "lse", m->var, rows, 1);
		b[nb - 1].kept = true;
		if (m->values) {
			add_buf(b, &nb, "pv", m->var, "np", padded(vd));
			b[nb - 1].direct = direct_payload(p, m->var);
			add_buf(b, &nb, "o", m->var, rows, vd);
			b[nb - 1].kept = true;
		}
	}
	for (int r = 1; r < p->nroots; r++) {
		add_buf(b, &nb, "kb", p->root[r], "np", 1);
		add_buf(b, &nb, "pv", p->root[r], "np", padded(vd));
		add_buf(b, &nb, "c", p->root[r], "1", vd);
	}
	return nb;
}

/* scratch_cols: floats per query row of the widest micro-kernel's task
 * scratch: the edge's columns and its payload's, padded. */
static int scratch_cols(const Plan *p)
{
	int widest = 0;
	for (int i = 0; i < p->nmsg; i++) {
		const Message *m = &p->msg[i];
		int cols = m->dim + (m->values ? padded(p->g->k->value_dim) : 0);
		widest = cols > widest ? cols : widest;
	}
	return widest;
}

/* into_x1: some message of p goes into x1 (its send may split key
 * ranges, which needs the split buffer). */
static bool into_x1(const Plan *p)
{
	for (int i = 0; i < p->nmsg; i++)
		if (p->msg[i].parent == 1)
			return true;
	return false;
}

/* emit_work: the struct of workspace pointers. */
static void emit_work(Emitter *E, const Plan *p, const Buf *b, int nb)
{
	emit_line(E, "/* workspace: per message x_j -> parent, queries q, packed keys kt,");
	emit_line(E, " * key bias kb, log-normalizer lse, payload pv, normalized message o */");
	emit_open(E, "struct %s_work", p->g->k->name);
	for (int i = 0; i < nb; i++)
		emit_line(E, "float *%s; /* batch x %s x %d */", b[i].name, b[i].rows,
		          b[i].cols);
	if (p->nmsg)
		emit_line(E, "float *scratch; /* threads x PA_TQ x %d: the micro-kernels' tasks */",
		          scratch_cols(p));
	if (into_x1(p))
		emit_line(E, "float *split; /* threads x PA_TQ x %d: key ranges' lse and o */",
		          p->g->k->value_dim + 1);
	if (!nb)
		emit_line(E, "char unused;");
	E->indent--;
	emit_line(E, "};");
	emit_line(E, "");
}

/* emit_attends: one attend function per distinct (dim, payload) shape. */
static void emit_attends(Emitter *E, const Plan *p)
{
	const Kernel *k = p->g->k;
	for (int i = 0; i < p->nmsg; i++) {
		int dv = p->msg[i].values ? k->value_dim : 0, seen = 0;
		for (int a = 0; a < i; a++)
			seen |= p->msg[a].dim == p->msg[i].dim &&
			        p->msg[a].values == p->msg[i].values;
		if (!seen)
			emit_attend(E, k->name, p->msg[i].dim, dv, k->nmasks > 0);
	}
}

/* emit_keys: x_j's side of every monomial of the edge, packed into the
 * key panel (column d of row r at kt[d * PA_BK]). */
static void emit_keys(Emitter *E, const Plan *p, const Message *msg)
{
	const Kernel *k = p->g->k;
	const Edge *e = &p->g->edge[msg->edge];
	char prod[512];
	for (int a = 0; a < e->nmono; a++) {
		int m = e->mono[a];
		emit_line(E, "/* keys: x%d's side of monomial %d */", msg->var, m);
		emit_open(E, "");
		declare_rows(E, k, m, msg->var);
		side_product(prod, sizeof prod, k, m, msg->var);
		emit_line(E, "for (int l = 0; l < %d; l++)", k->head_dim);
		if (a == 0)
			emit_line(E, "\tkt[l * PA_BK] = %s;", prod);
		else
			emit_line(E, "\tkt[(%d + l) * PA_BK] = %s;", a * k->head_dim, prod);
		emit_close(E);
	}
}

/* emit_queries: x_p's side of every monomial of the edge, times scale·c. */
static void emit_queries(Emitter *E, const Plan *p, const Message *msg)
{
	const Kernel *k = p->g->k;
	const Edge *e = &p->g->edge[msg->edge];
	char prod[512], c[40];
	if (!e->nmono)
		return;              /* an edge of the mask alone: no columns */
	emit_line(E, "float *q = w->q%d + row * %d;", msg->var, msg->dim);
	for (int a = 0; a < e->nmono; a++) {
		int m = e->mono[a];
		emit_line(E, "/* queries: x%d's side of monomial %d, times scale * c */",
		          msg->parent, m);
		emit_open(E, "");
		declare_rows(E, k, m, msg->parent);
		side_product(prod, sizeof prod, k, m, msg->parent);
		emit_line(E, "for (int l = 0; l < %d; l++)", k->head_dim);
		emit_line(E, "\tq[%d + l] = %s * (%s);", a * k->head_dim,
		          flit(c, sizeof c, k->scale * k->mono[m].coef), prod);
		emit_close(E);
	}
}

/* emit_key_bias: kb = x_j's bias monomials plus its children's
 * log-normalizers. */
static void emit_key_bias(Emitter *E, const Plan *p, int j, const char *kb)
{
	const Graph *g = p->g;
	const Kernel *k = g->k;
	char prod[512], c[40];
	emit_line(E, "float bias = 0.0f;");
	for (int a = 0; a < g->nbias[j]; a++) {
		int m = g->bias[j][a];
		emit_line(E, "/* bias: monomial %d */", m);
		emit_open(E, "");
		declare_rows(E, k, m, j);
		side_product(prod, sizeof prod, k, m, j);
		emit_line(E, "float t = 0.0f;");
		emit_line(E, "for (int l = 0; l < %d; l++)", k->head_dim);
		emit_line(E, "\tt += %s;", prod);
		emit_line(E, "bias += %s * t;", flit(c, sizeof c, k->scale * k->mono[m].coef));
		emit_close(E);
	}
	for (uint32_t r = children(p, j); r; r &= r - 1)
		emit_line(E, "bias += w->lse%d[row];", __builtin_ctz(r));
	emit_line(E, "%s[b * np + r] = bias;", kb);
}

/* emit_payload_row: dst[v] = x_j's values times its children's messages. */
static void emit_payload_row(Emitter *E, const Plan *p, int j, const char *dst)
{
	const Kernel *k = p->g->k;
	char expr[1024];
	int o = 0;
	if ((k->values >> j) & 1)
		o += snprintf(expr + o, sizeof expr - o, "in[%d][row * %d + v]",
		              value_input(k, j), k->value_dim);
	for (uint32_t r = children(p, j); r; r &= r - 1) {
		int c = __builtin_ctz(r);
		if (p->sub_values[c])
			o += snprintf(expr + o, sizeof expr - o, "%sw->o%d[row * %d + v]",
			              o ? " * " : "", c, k->value_dim);
	}
	emit_line(E, "for (int v = 0; v < %d; v++)", k->value_dim);
	emit_line(E, "\t%s[v] = %s;", dst, o ? expr : "1.0f");
	if (padded(k->value_dim) != k->value_dim) {
		emit_line(E, "for (int v = %d; v < %d; v++)", k->value_dim, padded(k->value_dim));
		emit_line(E, "\t%s[v] = 0.0f;", dst);
	}
}

/* emit_prepare: stage that fills x_j's keys, key bias and payload and its
 * parent's queries (msg = NULL: a root's key bias and payload only). */
static void emit_prepare(Emitter *E, const Plan *p, int j, const Message *msg)
{
	const Kernel *k = p->g->k;
	bool vals = p->sub_values[j] || !msg; /* a root's payload: ones at least */
	int dim = msg ? msg->dim : 0, vd = k->value_dim;
	if (msg)
		emit_line(E, "/* message x%d -> x%d, inputs: keys of x%d, queries of x%d */",
		          j, msg->parent, j, msg->parent);
	else
		emit_line(E, "/* component rooted at x%d: its weights and payload */", j);
	emit_line(E, "static void %s_prepare_x%d(int64_t batch, int64_t nq, int64_t nk,", k->name, j);
	emit_open(E, "\tconst float *const in[], const struct %s_work *w)", k->name);
	emit_line(E, "const int64_t nb = (nk + PA_BK - 1) / PA_BK, np = nb * PA_BK;");
	const bool x1_queries = msg && msg->parent == 1 && p->g->edge[msg->edge].nmono;
	if (!x1_queries)
		emit_line(E, "(void)nq; /* every row here is a key row */");
	if (!msg && !(k->values >> j & 1) && !p->g->nbias[j])
		emit_line(E, "(void)in; /* a root with neither values nor biases */");
	emit_line(E, "#pragma omp parallel for collapse(2) schedule(static)");
	emit_open(E, "for (int64_t b = 0; b < batch; b++)");
	emit_open(E, "for (int64_t r = 0; r < np; r++)");
	emit_line(E, "const int64_t row = b * nk + r;");
	if (msg)
		emit_line(E, "float *kt = w->kt%d + (b * nb + r / PA_BK) * %d * PA_BK + r %% PA_BK;", j, dim);
	if (vals)
		emit_line(E, "float *pv = w->pv%d + (b * np + r) * %d;", j, padded(vd));
	emit_open(E, "if (r >= nk)");
	emit_line(E, "/* padding: a key that weighs nothing */");
	if (msg)
		emit_line(E, "for (int d = 0; d < %d; d++)", dim);
	if (msg)
		emit_line(E, "\tkt[d * PA_BK] = 0.0f;");
	emit_line(E, "w->kb%d[b * np + r] = -INFINITY;", j);
	if (vals)
		emit_line(E, "for (int v = 0; v < %d; v++)", padded(vd));
	if (vals)
		emit_line(E, "\tpv[v] = 0.0f;");
	emit_line(E, "continue;");
	emit_close(E);
	if (msg) {
		emit_keys(E, p, msg);
		if (msg->parent != 1)
			emit_queries(E, p, msg);
	}
	char kb[32];
	snprintf(kb, sizeof kb, "w->kb%d", j);
	emit_key_bias(E, p, j, kb);
	if (vals && msg && direct_payload(p, j) >= 0) {
		emit_line(E, "/* the payload, unless it is the value rows themselves (see run) */");
		emit_open(E, "if (w->pv%d != in[%d])", j, direct_payload(p, j));
		emit_payload_row(E, p, j, "pv");
		emit_close(E);
	} else if (vals) {
		emit_payload_row(E, p, j, "pv");
	}
	emit_close(E);
	emit_close(E);
	if (x1_queries) {
		emit_line(E, "/* the queries: x1's nq rows */");
		emit_line(E, "#pragma omp parallel for collapse(2) schedule(static) if (batch * nq >= PA_PAR_ROWS)");
		emit_open(E, "for (int64_t b = 0; b < batch; b++)");
		emit_open(E, "for (int64_t r = 0; r < nq; r++)");
		emit_line(E, "const int64_t row = b * nq + r;");
		emit_queries(E, p, msg);
		emit_close(E);
		emit_close(E);
	}
	emit_close(E);
	emit_line(E, "");
}

/* emit_mask_bound = a mask bound as C: "-PA_UNBOUNDED", "PA_UNBOUNDED"
 * or the number, in buf. */
const char *emit_mask_bound(char *buf, size_t size, int64_t x)
{
	if (x <= -PC_UNBOUNDED || x >= PC_UNBOUNDED)
		snprintf(buf, size, "%sPA_UNBOUNDED", x < 0 ? "-" : "");
	else
		snprintf(buf, size, "%lld", (long long)x);
	return buf;
}

/* emit_split: in the send of a message into x1, the path for fewer query
 * tasks than threads (a decoding step): each task's key panels split
 * into ranges (pa_split_parts), a thread attends a task's queries over
 * one range into w->split, then the ranges' partial messages merge
 * (pa_merge_parts). */
static void emit_split(Emitter *E, const Plan *p, const Message *msg)
{
	const Kernel *k = p->g->k;
	int dv = msg->values ? k->value_dim : 0;
	emit_line(E, "const int64_t parts = pa_split_parts(batch * tasks, nb);");
	emit_open(E, "if (parts > 1)");
	emit_line(E, "/* fewer query tasks than threads: part r of a task attends over");
	emit_line(E, " * panels [nb r / parts, nb (r + 1) / parts), then the parts merge */");
	emit_line(E, "const size_t stride = PA_TQ * %d;", k->value_dim + 1);
	emit_line(E, "#pragma omp parallel");
	emit_open(E, "");
	emit_line(E, "float *const scratch = w->scratch + (size_t)pa_thread_num() * PA_TQ * %d;",
	          scratch_cols(p));
	emit_line(E, "#pragma omp for schedule(static)");
	emit_open(E, "for (int64_t u = 0; u < batch * tasks * parts; u++)");
	emit_line(E, "const int64_t b = u / (tasks * parts), t = u / parts %% tasks, r = u %% parts;");
	emit_line(E, "const int64_t end = (t + 1) * PA_TQ < rows ? (t + 1) * PA_TQ : rows;");
	emit_line(E, "const int64_t i = t * PA_TQ, p0 = nb * r / parts, p1 = nb * (r + 1) / parts;");
	emit_line(E, "float *const part = w->split + u * stride;");
	if (k->nmasks) {
		char lo[32], hi[32];
		emit_line(E, "/* positions relative to the range's first key */");
		emit_line(E, "attend(p1 - p0, (int)(end - i), i + off - p0 * PA_BK, %s, %s,",
		          emit_mask_bound(lo, sizeof lo, msg->lo), emit_mask_bound(hi, sizeof hi, msg->hi));
		emit_line(E, "\tw->q%d + (b * rows + i) * %d,", msg->var, msg->dim);
	} else {
		emit_line(E, "attend(p1 - p0, (int)(end - i), w->q%d + (b * rows + i) * %d,", msg->var,
		          msg->dim);
	}
	emit_line(E, "\tw->kt%d + (b * np + p0 * PA_BK) * %d, w->kb%d + b * np + p0 * PA_BK,",
	          msg->var, msg->dim, msg->var);
	if (dv)
		emit_line(E, "\tw->pv%d + (b * np + p0 * PA_BK) * %d, part + PA_TQ, part, scratch);",
		          msg->var, padded(dv));
	else
		emit_line(E, "\tNULL, NULL, part, scratch);");
	emit_close(E);
	emit_line(E, "#pragma omp for schedule(static)");
	emit_open(E, "for (int64_t bt = 0; bt < batch * tasks; bt++)");
	emit_line(E, "const int64_t b = bt / tasks, i = bt %% tasks * PA_TQ;");
	emit_line(E, "const int64_t end = i + PA_TQ < rows ? i + PA_TQ : rows;");
	emit_line(E, "pa_merge_parts(parts, (int)(end - i), %d, w->split + bt * parts * stride, stride,",
	          dv);
	if (dv)
		emit_line(E, "\tw->o%d + (b * rows + i) * %d, w->lse%d + b * rows + i);", msg->var, dv,
		          msg->var);
	else
		emit_line(E, "\tNULL, w->lse%d + b * rows + i);", msg->var);
	emit_close(E);
	emit_close(E);
	emit_line(E, "return;");
	emit_close(E);
}

/* emit_send: the stage that runs message x_j -> parent over query tiles. */
static void emit_send(Emitter *E, const Plan *p, const Message *msg)
{
	const Kernel *k = p->g->k;
	int dv = msg->values ? k->value_dim : 0;
	emit_line(E, "/* message x%d -> x%d: every row of x%d attends over the rows of x%d */",
	          msg->var, msg->parent, msg->parent, msg->var);
	emit_line(E, "static void %s_send_x%d(int64_t batch, int64_t nq, int64_t nk, const struct %s_work *w)",
	          k->name, msg->var, k->name);
	emit_open(E, "");
	emit_line(E, "const int64_t nb = (nk + PA_BK - 1) / PA_BK, np = nb * PA_BK;");
	if (msg->parent == 1) {
		emit_line(E, "/* the queries are x1's nq rows, row i at position i + nk - nq */");
		emit_line(E, "const int64_t rows = nq%s;", k->nmasks ? ", off = nk - nq" : "");
	} else {
		emit_line(E, "const int64_t rows = nk;");
		emit_line(E, "(void)nq;");
	}
	emit_line(E, "const int64_t tasks = (rows + PA_TQ - 1) / PA_TQ;");
	if (k->nmasks)
		emit_line(E, "const pa_attend_mask_fn attend = %s_attend_d%d_v%d_masked();",
		          k->name, msg->dim, dv);
	else
		emit_line(E, "const pa_attend_fn attend = %s_attend_d%d_v%d();", k->name, msg->dim, dv);
	if (msg->parent == 1)
		emit_split(E, p, msg);
	emit_line(E, "#pragma omp parallel");
	emit_open(E, "");
	emit_line(E, "float *const scratch = w->scratch + (size_t)pa_thread_num() * PA_TQ * %d;",
	          scratch_cols(p));
	emit_line(E, "#pragma omp for collapse(2) schedule(dynamic)");
	emit_open(E, "for (int64_t b = 0; b < batch; b++)");
	if (k->nmasks && msg->lo == -PC_UNBOUNDED && msg->hi != PC_UNBOUNDED) {
		/* rows see more keys the later they come: those tasks go first, so
		 * the last to finish are small */
		emit_open(E, "for (int64_t tt = 0; tt < tasks; tt++)");
		emit_line(E, "const int64_t t = tasks - 1 - tt; /* the longest tasks first */");
	} else {
		emit_open(E, "for (int64_t t = 0; t < tasks; t++)");
	}
	emit_line(E, "const int64_t end = (t + 1) * PA_TQ < rows ? (t + 1) * PA_TQ : rows;");
	emit_line(E, "const int64_t i = t * PA_TQ;");
	if (k->nmasks) {
		char lo[32], hi[32];
		emit_line(E, "/* the mask: key rows r with %s <= r - position <= %s */",
		          emit_mask_bound(lo, sizeof lo, msg->lo), emit_mask_bound(hi, sizeof hi, msg->hi));
		emit_line(E, "attend(nb, (int)(end - i), %s, %s, %s, w->q%d + (b * rows + i) * %d,",
		          msg->parent == 1 ? "i + off" : "i", lo, hi, msg->var, msg->dim);
	} else {
		emit_line(E, "attend(nb, (int)(end - i), w->q%d + (b * rows + i) * %d,", msg->var, msg->dim);
	}
	emit_line(E, "\tw->kt%d + b * np * %d, w->kb%d + b * np,", msg->var, msg->dim, msg->var);
	if (dv)
		emit_line(E, "\tw->pv%d + b * np * %d, w->o%d + (b * rows + i) * %d,", msg->var,
		          padded(dv), msg->var, dv);
	else
		emit_line(E, "\tNULL, NULL,");
	emit_line(E, "\tw->lse%d + b * rows + i, scratch);", msg->var);
	emit_close(E);
	emit_close(E);
	emit_close(E);
	emit_close(E);
	emit_line(E, "");
}

/* emit_finish: out = x1's values times the messages x1 receives times
 * the constants of the components without x1. */
static void emit_finish(Emitter *E, const Plan *p)
{
	const Kernel *k = p->g->k;
	int vd = k->value_dim, o = 0;
	char expr[2048];
	if (k->values & 2)
		o += snprintf(expr + o, sizeof expr - o, "in[%d][row * %d + v]",
		              value_input(k, 1), vd);
	for (uint32_t r = children(p, 1); r; r &= r - 1)
		if (p->sub_values[__builtin_ctz(r)])
			o += snprintf(expr + o, sizeof expr - o, "%sw->o%d[row * %d + v]",
			              o ? " * " : "", __builtin_ctz(r), vd);
	for (int r = 1; r < p->nroots; r++)
		o += snprintf(expr + o, sizeof expr - o, "%sw->c%d[b * %d + v]",
		              o ? " * " : "", p->root[r], vd);
	emit_line(E, "/* output: x1's values, the messages x1 receives, the other components */");
	emit_line(E, "static void %s_finish(int64_t batch, int64_t nq, int64_t nk, const float *const in[],", k->name);
	emit_open(E, "\tconst struct %s_work *w, float *out)", k->name);
	emit_line(E, "const int64_t np = (nk + PA_BK - 1) / PA_BK * PA_BK;");
	emit_line(E, "(void)in, (void)w, (void)np;");
	for (int r = 1; r < p->nroots; r++) {
		int x = p->root[r];
		emit_line(E, "for (int64_t b = 0; b < batch; b++)");
		emit_line(E, "\tpa_softmax_average(nk, w->kb%d + b * np, w->pv%d + b * np * %d, %d, %d, w->c%d + b * %d);",
		          x, x, padded(vd), padded(vd), vd, x, vd);
	}
	emit_line(E, "#pragma omp parallel for collapse(2) schedule(static) if (batch * nq >= PA_PAR_ROWS)");
	emit_open(E, "for (int64_t b = 0; b < batch; b++)");
	emit_open(E, "for (int64_t r = 0; r < nq; r++)");
	emit_line(E, "const int64_t row = b * nq + r;");
	if (k->nmasks && children(p, 1)) {
		char none[512];
		int c = 0;
		for (uint32_t r = children(p, 1); r; r &= r - 1)
			c += snprintf(none + c, sizeof none - c, "%sw->lse%d[row] == -INFINITY",
			              c ? " || " : "", __builtin_ctz(r));
		emit_line(E, "/* the mask leaves the row no tuple: a message x1 receives is empty */");
		emit_open(E, "if (%s)", none);
		emit_line(E, "for (int v = 0; v < %d; v++)", vd);
		emit_line(E, "\tout[row * %d + v] = 0.0f;", vd);
		emit_line(E, "continue;");
		emit_close(E);
	}
	emit_line(E, "for (int v = 0; v < %d; v++)", vd);
	emit_line(E, "\tout[row * %d + v] = %s;", vd, o ? expr : "1.0f");
	emit_close(E);
	emit_close(E);
	emit_close(E);
	emit_line(E, "");
}

/* emit_carves: the offsets of every buffer: the kept ones in saved
 * (counted by "kept") when the kernel trains, the others in the
 * workspace ("total"); with only_kept, the kept ones alone. */
static void emit_carves(Emitter *E, const Plan *p, const Buf *b, int nb,
                        bool only_kept)
{
	for (int i = 0; i < nb; i++)
		if (b[i].kept)
			emit_line(E, "const size_t at_%s = pa_carve(%s, batch, %s, %d);",
			          b[i].name, only_kept ? "&kept" : "keep", b[i].rows, b[i].cols);
		else if (!only_kept)
			emit_line(E, "const size_t at_%s = pa_carve(&total, batch, %s, %d);",
			          b[i].name, b[i].rows, b[i].cols);
	if (!only_kept && p->nmsg)
		emit_line(E, "const size_t at_scratch = pa_carve(&total, pa_max_threads(), PA_TQ, %d);",
		          scratch_cols(p));
	if (!only_kept && into_x1(p))
		emit_line(E, "const size_t at_split = pa_carve(&total, pa_max_threads(), PA_TQ, %d);",
		          p->g->k->value_dim + 1);
}

/* any_buf: some buffer of b[0..nb) has rows `rows` (NULL: any), and is
 * kept when `kept`. */
static bool any_buf(const Buf *b, int nb, const char *rows, bool kept)
{
	for (int i = 0; i < nb; i++)
		if ((!rows || strcmp(b[i].rows, rows) == 0) && (!kept || b[i].kept))
			return true;
	return false;
}

/* emit_workspace: allocate ws and point the struct w at it, the kept
 * buffers at `base` when it is not NULL (saved). */
static void emit_workspace(Emitter *E, const Plan *p, const Buf *b, int nb,
                           const char *base)
{
	emit_line(E, "if (total == SIZE_MAX || kept == SIZE_MAX)");
	emit_line(E, "\treturn PA_ERR_ARGUMENT;");
	emit_line(E, "float *ws = pa_alloc(total);");
	emit_line(E, "if (!ws)");
	emit_line(E, "\treturn PA_ERR_NOMEM;");
	emit_line(E, "float *const base = %s ? %s : ws;", base, base);
	if (!any_buf(b, nb, NULL, true))
		emit_line(E, "(void)base; /* no buffer is kept */");
	emit_open(E, "const struct %s_work w =", p->g->k->name);
	for (int i = 0; i < nb; i++)
		if (b[i].direct >= 0)
			emit_line(E, ".%s = nk %% PA_BK == 0 ? (float *)inputs[%d] : ws + at_%s, /* no padding key: the rows, read only */",
			          b[i].name, b[i].direct, b[i].name);
		else
			emit_line(E, ".%s = %s + at_%s,", b[i].name, b[i].kept ? "base" : "ws",
			          b[i].name);
	if (p->nmsg)
		emit_line(E, ".scratch = ws + at_scratch,");
	if (into_x1(p))
		emit_line(E, ".split = ws + at_split,");
	E->indent--;
	emit_line(E, "};");
}

/* emit_run: the forward over nq query and nk key rows; saved = NULL
 * keeps nothing, otherwise the log-normalizers and messages go to saved
 * for the backward. */
static void emit_run(Emitter *E, const Plan *p, const Buf *b, int nb,
                     const char *base)
{
	const Kernel *k = p->g->k;
	emit_line(E, "static pa_status %s_run(int64_t batch, int64_t nq, int64_t nk, const float *const inputs[],", base);
	emit_open(E, "\tfloat *out, float *saved)");
	emit_line(E, "const pa_status st = pa_check_args_qk(&%s_info, batch, nq, nk, inputs, out);", k->name);
	emit_line(E, "if (st != PA_OK)");
	emit_line(E, "\treturn st;");
	emit_line(E, "const int64_t np = (nk + PA_BK - 1) / PA_BK * PA_BK;");
	emit_line(E, "size_t total = 0, kept = 0;");
	emit_line(E, "size_t *const keep = saved ? &kept : &total;");
	emit_carves(E, p, b, nb, false);
	if (!any_buf(b, nb, "np", false))
		emit_line(E, "(void)np; /* no buffer of padded rows */");
	if (!any_buf(b, nb, NULL, true))
		emit_line(E, "(void)keep; /* no buffer is kept */");
	emit_workspace(E, p, b, nb, "saved");
	for (int i = 0; i < p->nmsg; i++) {
		emit_line(E, "%s_prepare_x%d(batch, nq, nk, inputs, &w);", k->name, p->msg[i].var);
		emit_line(E, "%s_send_x%d(batch, nq, nk, &w);", k->name, p->msg[i].var);
	}
	for (int r = 1; r < p->nroots; r++)
		emit_line(E, "%s_prepare_x%d(batch, nq, nk, inputs, &w);", k->name, p->root[r]);
	emit_line(E, "%s_finish(batch, nq, nk, inputs, &w, out);", k->name);
	emit_line(E, "pa_free(ws);");
	emit_line(E, "return PA_OK;");
	emit_close(E);
	emit_line(E, "");
}

/* emit_entry: the kernel's entry points over its forward: K_run_qk
 * (nq query rows, nk key rows) and K, the same with nq = nk = n; with
 * entry, static ones named after it. */
static void emit_entry(Emitter *E, const Plan *p, const char *entry)
{
	const char *name = entry ? entry : p->g->k->name, *qual = entry ? "static " : "";
	emit_line(E, "/* nq query rows (x1's) against nk key rows, query row i at position");
	emit_line(E, " * i + nk - nq */");
	emit_line(E, "%spa_status %s_run_qk(int64_t batch, int64_t nq, int64_t nk, const float *const inputs[],", qual, name);
	emit_open(E, "\tfloat *out)");
	emit_line(E, "return %s_run(batch, nq, nk, inputs, out, NULL);", name);
	emit_close(E);
	emit_line(E, "");
	emit_line(E, "%spa_status %s(int64_t batch, int64_t n, const float *const inputs[], float *out)", qual, name);
	emit_open(E, "");
	emit_line(E, "return %s_run_qk(batch, n, n, inputs, out);", name);
	emit_close(E);
	emit_line(E, "");
}

/* emit_train: K_saved_floats_qk and K_train_qk (doc/training.md), and
 * K_saved_floats and K_train over them; with entry, static ones named
 * after it (the exact part of an approximate kernel). */
static void emit_train(Emitter *E, const Plan *p, const Buf *b, int nb,
                       const char *entry)
{
	const char *name = entry ? entry : p->g->k->name, *qual = entry ? "static " : "";
	emit_line(E, "/* training: the forward keeps each message's log-normalizer and");
	emit_line(E, " * normalized message in saved, this many floats */");
	emit_line(E, "%sint64_t %s_saved_floats_qk(int64_t batch, int64_t nq, int64_t nk)", qual, name);
	emit_open(E, "");
	emit_line(E, "size_t kept = 0;");
	emit_line(E, "(void)nq, (void)nk;");
	emit_carves(E, p, b, nb, true);
	emit_line(E, "return kept == SIZE_MAX || kept > INT64_MAX ? -1 : (int64_t)kept;");
	emit_close(E);
	emit_line(E, "");
	emit_line(E, "%sint64_t %s_saved_floats(int64_t batch, int64_t n)", qual, name);
	emit_open(E, "");
	emit_line(E, "return %s_saved_floats_qk(batch, n, n);", name);
	emit_close(E);
	emit_line(E, "");
	emit_line(E, "%spa_status %s_train_qk(int64_t batch, int64_t nq, int64_t nk, const float *const inputs[],", qual, name);
	emit_open(E, "\tfloat *out, float *saved)");
	emit_line(E, "if (!saved)");
	emit_line(E, "\treturn PA_ERR_NULL;");
	emit_line(E, "return %s_run(batch, nq, nk, inputs, out, saved);", name);
	emit_close(E);
	emit_line(E, "");
	emit_line(E, "%spa_status %s_train(int64_t batch, int64_t n, const float *const inputs[], float *out,", qual, name);
	emit_open(E, "\tfloat *saved)");
	emit_line(E, "return %s_train_qk(batch, n, n, inputs, out, saved);", name);
	emit_close(E);
	emit_line(E, "");
}

/* emit_tree_plan: the plan's shape for the reverse pass, as data. */
static void emit_tree_plan(Emitter *E, const Plan *p)
{
	char list[512];
	int o = 0;
	for (int j = 0; j <= p->g->nvars; j++)
		o += snprintf(list + o, sizeof list - o, "%s%d", j ? ", " : "", p->parent[j]);
	emit_open(E, "static const pa_tree_plan plan =");
	emit_line(E, ".parent = {%s},", list);
	emit_line(E, ".nmsg = %d,", p->nmsg);
	o = 0;
	for (int i = 0; i < p->nmsg; i++)
		o += snprintf(list + o, sizeof list - o, "%s%d", i ? ", " : "", p->msg[i].var);
	emit_line(E, ".order = {%s},", p->nmsg ? list : "0");
	emit_line(E, ".nroots = %d,", p->nroots);
	o = 0;
	for (int i = 0; i < p->nroots; i++)
		o += snprintf(list + o, sizeof list - o, "%s%d", i ? ", " : "", p->root[i]);
	emit_line(E, ".root = {%s},", list);
	if (p->g->k->nmasks) {
		char lo[16][32], hi[16][32];
		emit_line(E, ".masked = 1, /* message x_j -> parent: lo[j] <= l_j - l_parent <= hi[j] */");
		for (int i = 0; i < p->nmsg; i++) {
			emit_mask_bound(lo[i], sizeof lo[i], p->msg[i].lo);
			emit_mask_bound(hi[i], sizeof hi[i], p->msg[i].hi);
		}
		for (int side = 0; side < 2; side++) {
			o = 0;
			for (int i = 0; i < p->nmsg; i++)
				o += snprintf(list + o, sizeof list - o, "%s[%d] = %s", i ? ", " : "",
				              p->msg[i].var, side ? hi[i] : lo[i]);
			emit_line(E, ".%s = {%s},", side ? "hi" : "lo", list);
		}
	}
	E->indent--;
	emit_line(E, "};");
}

/* emit_backward: K_backward rebuilds every message's queries, keys, key
 * bias and payload with the forward's prepare stages, from the inputs and
 * saved, and runs the reverse pass of the runtime (pa_tree.h); with
 * entry, a static one named after it. */
static void emit_backward(Emitter *E, const Plan *p, const Buf *b, int nb,
                          const char *entry)
{
	const Kernel *k = p->g->k;
	const char *name = entry ? entry : k->name, *qual = entry ? "static " : "";
	emit_line(E, "/* the backward: the reverse message pass, root first */");
	emit_line(E, "%spa_status %s_backward_qk(int64_t batch, int64_t nq, int64_t nk, const float *const inputs[],",
	          qual, name);
	emit_open(E, "\tconst float *out, const float *saved, const float *grad_out, float *const grad_inputs[])");
	emit_line(E, "pa_status st = pa_check_args_qk(&%s_info, batch, nq, nk, inputs, out);", k->name);
	emit_line(E, "if (st == PA_OK)");
	emit_line(E, "\tst = pa_check_grad_args_qk(&%s_info, batch, nq, nk, inputs, out, saved,", k->name);
	emit_line(E, "\t\t%s_saved_floats_qk(batch, nq, nk), grad_out, grad_inputs);", name);
	emit_line(E, "if (st != PA_OK)");
	emit_line(E, "\treturn st;");
	emit_line(E, "const int64_t np = (nk + PA_BK - 1) / PA_BK * PA_BK;");
	emit_line(E, "size_t total = 0, kept = 0;");
	emit_line(E, "size_t *const keep = &kept;");
	emit_carves(E, p, b, nb, false);
	emit_line(E, "(void)np, (void)keep;");
	emit_line(E, "/* the prepare stages only read what saved holds */");
	emit_line(E, "float *const kept_base = (float *)saved;");
	emit_workspace(E, p, b, nb, "kept_base");
	for (int i = 0; i < p->nmsg; i++)
		emit_line(E, "%s_prepare_x%d(batch, nq, nk, inputs, &w);", k->name, p->msg[i].var);
	for (int r = 1; r < p->nroots; r++)
		emit_line(E, "%s_prepare_x%d(batch, nq, nk, inputs, &w);", k->name, p->root[r]);
	emit_tree_plan(E, p);
	emit_line(E, "pa_tree_bufs bufs[%d] = {{0}};", p->g->nvars + 1);
	for (int i = 0; i < nb; i++) {
		int j = atoi(b[i].name + strcspn(b[i].name, "0123456789"));
		char member[8];
		snprintf(member, sizeof member, "%.*s", (int)strcspn(b[i].name, "0123456789"), b[i].name);
		if (strcmp(member, "c") != 0)
			emit_line(E, "bufs[%d].%s = w.%s;", j, member, b[i].name);
	}
	emit_line(E, "st = pa_tree_backward(&%s_info, &plan, bufs, batch, nq, nk, inputs, grad_out, grad_inputs);", k->name);
	emit_line(E, "pa_free(ws);");
	emit_line(E, "return st;");
	emit_close(E);
	emit_line(E, "");
	emit_line(E, "%spa_status %s_backward(int64_t batch, int64_t n, const float *const inputs[],", qual, name);
	emit_open(E, "\tconst float *out, const float *saved, const float *grad_out, float *const grad_inputs[])");
	emit_line(E, "return %s_backward_qk(batch, n, n, inputs, out, saved, grad_out, grad_inputs);", name);
	emit_close(E);
	emit_line(E, "");
}

/* emit_tree_kernel: the whole kernel of a tree plan; with entry, only
 * its static entry point of that name (another plan's exact part). */
void emit_tree_kernel(Emitter *E, const Plan *p, const char *entry)
{
	const Kernel *k = p->g->k;
	Buf b[4 * PC_MAX_VARS + 3 * PC_MAX_VARS];
	int nb = work_buffers(p, b);
	emit_line(E, "/*");
	emit_line(E, " * kernel %s: %s", k->name, k->poly_text);
	emit_line(E, " * class %s, plan %s: %d message(s), children before parents.",
	          graph_class_name(p->g->cls), plan_kind_name(p->kind), p->nmsg);
	emit_line(E, " */");
	if (!entry) {
		emit_line(E, "extern const pa_kernel_info %s_info;", k->name);
		emit_line(E, "");
	}
	emit_work(E, p, b, nb);
	emit_attends(E, p);
	for (int i = 0; i < p->nmsg; i++) {
		emit_prepare(E, p, p->msg[i].var, &p->msg[i]);
		emit_send(E, p, &p->msg[i]);
	}
	for (int r = 1; r < p->nroots; r++)
		emit_prepare(E, p, p->root[r], NULL);
	emit_finish(E, p);
	emit_run(E, p, b, nb, entry ? entry : k->name);
	emit_entry(E, p, entry);
	if (plan_trains(p) && plan_exact_trains(p)) {
		emit_train(E, p, b, nb, entry);
		emit_backward(E, p, b, nb, entry);
	}
	if (!entry)
		emit_info(E, p);
}
