/*
 * pa_call.c - the extended entry point (polyattn.h, pa_call): a call with
 * lengths, row strides, heads and fewer queries than keys becomes dense
 * calls of the kernel's entry points.
 *
 * The batch entries are grouped by (q_len, k_len), in increasing order of
 * the pair; a group of G entries is one dense call of batch G·heads.  Its
 * inputs are gathered into dense buffers, and the dense call places query
 * row i at position i + k_len − q_len in one of two ways:
 *   - a kernel with _qk entry points (K_info.run_qk, .saved_floats_qk,
 *     .train_qk, .backward_qk: every exact tree kernel) runs them with
 *     nq = q_len and nk = k_len on the key inputs' first k_len rows and
 *     x1's (the queries') q_len rows alone: a decoding query costs O(k_len)
 *     per message it receives;
 *   - any other kernel runs K_info.run, .train, .backward with n = k_len,
 *     x1's q_len rows below k_len − q_len zero rows.  The outputs of the
 *     padding rows are discarded and their grad_out is 0, so they add no
 *     gradient.
 * (For PA_FORWARD run_qk alone decides; for training all four _qk entry
 * points must be there.)  Every group writes into the call's workspace;
 * out and the gradients are scattered from it, rows past the lengths as
 * zeros, only once every group has succeeded.
 *
 * saved, after PA_TRAIN: a header of HEADER floats (a check of the call's
 * shape and of which entry points filled it, cleared when the train
 * starts and written when it succeeded, so a PA_BACKWARD refuses the
 * saved of a failed train), then per group its dense call's saved and,
 * through the padding path, the outputs of its padding rows (the dense
 * backward takes them as part of out), each at a 16-float boundary.  A
 * call that needs no gathering (no lengths short of nq and nk, dense
 * layouts, and nq = nk unless the _qk entry points run it) runs the dense
 * entry point on the caller's buffers, with the same saved layout.
 */
#include "pa_kernel.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum { HEADER = 16 };        /* floats of saved's header */
/* Gathers and scatters of at least this many floats are spread over the
 * OpenMP threads (a copy of 4 MB takes a core about a millisecond). */
enum { PARALLEL_FLOATS = 1 << 15 };
#define SAVED_MAGIC UINT64_C(0x70615f63616c6c31) /* "pa_call1" */
#define SAVED_MAGIC_QK UINT64_C(0x70615f63616c6c71) /* "pa_callq" */

/* One tensor of a call: element (b, h, r, c) at base + b·bs + h·hs + r·rs
 * + c, for r < rows, c < cols. */
typedef struct View {
	const float *base;
	int64_t rows, cols;
	int64_t rs, hs, bs;
	int64_t span;            /* floats from base past its last element */
} View;

/* Batch entries sharing their lengths: one dense call. */
typedef struct Group {
	int64_t q, k;            /* the query and key lengths */
	int64_t count;           /* entries */
	const int64_t *member;   /* their indices, increasing */
	size_t saved_at, pad_at; /* offsets in saved of the dense call's saved
	                            and of its padding rows' outputs */
} Group;

/* A call after its checks. */
typedef struct Call {
	const pa_kernel_info *k;
	const pa_call *c;
	int64_t batch, heads, nq, nk;
	bool qk;                 /* the groups run the kernel's _qk entry
	                            points: x1's rows are the queries alone */
	int64_t *qlen, *klen;    /* per entry */
	int64_t *group, *slot;   /* per entry: its group (-1: none) and its
	                            place among the group's members */
	int64_t *member;         /* the groups' member lists, back to back */
	Group *g;
	int64_t ng;
	size_t saved_floats;     /* of the whole call; SIZE_MAX: too many */
	View *in, *grad;         /* per input */
	View out, gout;
	size_t *at;              /* per group, the workspace offsets of its
	                            kept results: at[g·(ni+1) + i] gradient i,
	                            at[g·(ni+1) + ni] out */
} Call;

/* is_query: input i is one of x1's (nq rows). */
static bool is_query(const pa_kernel_info *k, int i)
{
	return k->inputs[i].variable == 1;
}

/* trains_qk: k trains through its _qk entry points. */
static bool trains_qk(const pa_kernel_info *k)
{
	return k->train_qk && k->backward_qk && k->saved_floats_qk;
}

/* rows_of: the rows of a tensor of group g in its dense call: a query
 * tensor's (x1's inputs, out, grad_out) q with the _qk entry points, else
 * k (the queries below k − q padding rows); every other tensor's k. */
static int64_t rows_of(const Call *C, const Group *g, bool query)
{
	return query && C->qk ? g->q : g->k;
}

/* call_free: release what the checks took. */
static void call_free(Call *C)
{
	free(C->qlen);
	free(C->g);
	free(C->in);
	free(C->at);
}

/* ------------------------------------------------------------ shape */

/* A batch entry's lengths, for sorting. */
typedef struct Key {
	int64_t q, k, b;
} Key;

/* key_cmp: by (q, k), then entry. */
static int key_cmp(const void *pa, const void *pb)
{
	const Key *a = pa, *b = pb;
	if (a->q != b->q)
		return a->q < b->q ? -1 : 1;
	if (a->k != b->k)
		return a->k < b->k ? -1 : 1;
	return (a->b > b->b) - (a->b < b->b);
}

/* lengths: C->qlen and C->klen from the call; PA_ERR_ARGUMENT for a
 * length out of range (polyattn.h, pa_call). */
static pa_status lengths(Call *C)
{
	const pa_call *c = C->c;
	for (int64_t b = 0; b < C->batch; b++) {
		int64_t kl = c->k_lengths ? c->k_lengths[b] : C->nk;
		int64_t ql = c->q_lengths ? c->q_lengths[b]
		             : C->nq == C->nk ? kl : C->nq;
		if (kl < 0 || kl > C->nk || ql < 0 || ql > C->nq || ql > kl)
			return PA_ERR_ARGUMENT;
		C->qlen[b] = ql, C->klen[b] = kl;
	}
	return PA_OK;
}

/* make_groups: the groups of entries with q_len > 0, by increasing
 * (q_len, k_len), members by increasing index. */
static pa_status make_groups(Call *C)
{
	Key *key = malloc((size_t)C->batch * sizeof *key);
	if (!key)
		return PA_ERR_NOMEM;
	int64_t nkey = 0;
	for (int64_t b = 0; b < C->batch; b++) {
		C->group[b] = -1;
		if (C->qlen[b] > 0)
			key[nkey++] = (Key){C->qlen[b], C->klen[b], b};
	}
	qsort(key, (size_t)nkey, sizeof *key, key_cmp);
	C->ng = 0;
	for (int64_t e = 0; e < nkey; e++) {
		if (e == 0 || key[e].q != key[e - 1].q || key[e].k != key[e - 1].k)
			C->g[C->ng++] = (Group){.q = key[e].q, .k = key[e].k,
			                        .member = C->member + e};
		Group *g = &C->g[C->ng - 1];
		C->member[e] = key[e].b;
		C->group[key[e].b] = C->ng - 1;
		C->slot[key[e].b] = g->count++;
	}
	free(key);
	return PA_OK;
}

/* size_saved: every group's place in saved and the total (pa_carve's
 * 16-float boundaries); SIZE_MAX when a size overflows or the kernel
 * cannot train.  Through the _qk entry points a group keeps its dense
 * call's saved alone (there are no padding rows). */
static void size_saved(Call *C)
{
	const pa_kernel_info *k = C->k;
	const bool qk = trains_qk(k);
	size_t total = HEADER;
	for (int64_t i = 0; i < C->ng && k->saved_floats; i++) {
		Group *g = &C->g[i];
		const int64_t gb = g->count * C->heads;
		int64_t sf = qk ? k->saved_floats_qk(gb, g->q, g->k)
		                : k->saved_floats(gb, g->k);
		g->saved_at = pa_carve(&total, sf, 1, 1);
		g->pad_at = pa_carve(&total, gb, qk ? 0 : g->k - g->q, k->value_dim);
	}
	C->saved_floats = k->saved_floats ? total : SIZE_MAX;
}

/* call_shape: sizes, lengths, groups and saved's layout of c, nothing of
 * its pointers; PA_ERR_ARGUMENT or PA_ERR_NOMEM.  On success call_free
 * releases C. */
static pa_status call_shape(const pa_kernel_info *k, const pa_call *c, Call *C)
{
	memset(C, 0, sizeof *C);
	C->k = k, C->c = c;
	C->batch = c->batch, C->nq = c->nq;
	C->heads = c->heads ? c->heads : 1;
	C->nk = c->nk ? c->nk : c->nq;
	C->qk = c->mode == PA_FORWARD ? k->run_qk != NULL : trains_qk(k);
	int64_t bh;
	if (c->batch < 1 || c->nq < 1 || c->heads < 0 || c->nk < 0 ||
	    C->nk < C->nq || __builtin_mul_overflow(C->batch, C->heads, &bh) ||
	    (uint64_t)C->batch > SIZE_MAX / 64)
		return PA_ERR_ARGUMENT;
	size_t nb = (size_t)C->batch;
	C->qlen = malloc(5 * nb * sizeof(int64_t));
	C->g = malloc(nb * sizeof *C->g);
	if (!C->qlen || !C->g) {
		call_free(C);
		return PA_ERR_NOMEM;
	}
	C->klen = C->qlen + nb, C->group = C->klen + nb;
	C->slot = C->group + nb, C->member = C->slot + nb;
	pa_status st = lengths(C);
	if (st == PA_OK)
		st = make_groups(C);
	if (st != PA_OK) {
		call_free(C);
		return st;
	}
	size_saved(C);
	return PA_OK;
}

/* ------------------------------------------------------------ views */

/* view_of: the view of a tensor at base with layout l (NULL: dense) and
 * rows × cols per (entry, head); PA_ERR_ARGUMENT for a negative stride,
 * two elements at one address (the strides, sorted, must each span the
 * dimensions below them) or a span that overflows. */
static pa_status view_of(const Call *C, const float *base, const pa_layout *l,
                         int64_t rows, int64_t cols, View *v)
{
	static const pa_layout dense;
	l = l ? l : &dense;
	*v = (View){.base = base, .rows = rows, .cols = cols};
	if (l->row < 0 || l->head < 0 || l->batch < 0)
		return PA_ERR_ARGUMENT;
	v->rs = l->row ? l->row : cols;
	if (__builtin_mul_overflow(rows, v->rs, &v->hs) ||
	    __builtin_mul_overflow(C->heads, l->head ? l->head : v->hs, &v->bs))
		return PA_ERR_ARGUMENT;
	v->hs = l->head ? l->head : v->hs;
	v->bs = l->batch ? l->batch : v->bs;
	int64_t stride[3] = {v->rs, v->hs, v->bs}, count[3] = {rows, C->heads, C->batch};
	for (int a = 0; a < 3; a++)          /* sort the dimensions by stride */
		for (int b = a + 1; b < 3; b++)
			if (stride[b] < stride[a]) {
				int64_t t = stride[a]; stride[a] = stride[b]; stride[b] = t;
				t = count[a]; count[a] = count[b]; count[b] = t;
			}
	int64_t span = cols, step;
	for (int a = 0; a < 3; a++) {
		if (count[a] == 1)
			continue;
		if (stride[a] < span ||
		    __builtin_mul_overflow(stride[a], count[a] - 1, &step) ||
		    __builtin_add_overflow(span, step, &span))
			return PA_ERR_ARGUMENT;
	}
	if ((uint64_t)span > SIZE_MAX / sizeof(float) / 2)
		return PA_ERR_ARGUMENT;
	v->span = span;
	return PA_OK;
}

/* view_dense: v is the contiguous (batch · heads) × rows × cols tensor. */
static bool view_dense(const Call *C, const View *v)
{
	return (v->rows == 1 || v->rs == v->cols) &&
	       (C->heads == 1 || v->hs == v->rows * v->cols) &&
	       (C->batch == 1 || v->bs == C->heads * v->rows * v->cols);
}

/* row_of: the address of row r of entry b, head h. */
static const float *row_of(const View *v, int64_t b, int64_t h, int64_t r)
{
	return v->base + b * v->bs + h * v->hs + r * v->rs;
}

/* apart: the byte ranges of floats [a, a + na) and [b, b + nb) share no
 * byte. */
static bool apart(const float *a, size_t na, const float *b, size_t nb)
{
	uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
	return x >= y + nb * sizeof(float) || y >= x + na * sizeof(float);
}

/* apart_view: as apart, for two views. */
static bool apart_view(const View *a, const View *b)
{
	return apart(a->base, (size_t)a->span, b->base, (size_t)b->span);
}

/* ------------------------------------------------------------ checks */

/* check_null: the pointers the mode needs; PA_ERR_NULL. */
static pa_status check_null(const pa_kernel_info *k, const pa_call *c)
{
	if (!c->inputs || !c->out)
		return PA_ERR_NULL;
	for (int i = 0; i < k->num_inputs; i++)
		if (!c->inputs[i])
			return PA_ERR_NULL;
	if (c->mode != PA_FORWARD && !c->saved)
		return PA_ERR_NULL;
	if (c->mode == PA_BACKWARD && (!c->grad_out || !c->grad_inputs))
		return PA_ERR_NULL;
	return PA_OK;
}

/* make_views: every tensor's view; PA_ERR_ARGUMENT for a bad layout. */
static pa_status make_views(Call *C)
{
	const pa_kernel_info *k = C->k;
	const pa_call *c = C->c;
	const int ni = k->num_inputs;
	C->in = calloc(2 * (size_t)(ni > 0 ? ni : 1), sizeof *C->in);
	if (!C->in)
		return PA_ERR_NOMEM;
	C->grad = C->in + ni;
	pa_status st = view_of(C, c->out, &c->out_layout, C->nq, k->value_dim, &C->out);
	for (int i = 0; i < ni && st == PA_OK; i++)
		st = view_of(C, c->inputs[i], c->in_layout ? &c->in_layout[i] : NULL,
		             is_query(k, i) ? C->nq : C->nk, k->inputs[i].cols, &C->in[i]);
	if (c->mode != PA_BACKWARD || st != PA_OK)
		return st;
	st = view_of(C, c->grad_out, &c->grad_out_layout, C->nq, k->value_dim, &C->gout);
	for (int i = 0; i < ni && st == PA_OK; i++)
		if (c->grad_inputs[i])
			st = view_of(C, c->grad_inputs[i],
			             c->grad_layout ? &c->grad_layout[i] : NULL,
			             C->in[i].rows, C->in[i].cols, &C->grad[i]);
	return st;
}

/* shape_hash: FNV-1a of the call's sizes and lengths, which a PA_BACKWARD
 * must share with the PA_TRAIN that filled saved. */
static uint64_t shape_hash(const Call *C)
{
	uint64_t h = UINT64_C(0xcbf29ce484222325);
	int64_t v[4] = {C->batch, C->heads, C->nq, C->nk};
	for (int i = 0; i < 4 + 2 * C->batch; i++) {
		uint64_t x = (uint64_t)(i < 4 ? v[i] : i % 2 ? C->klen[(i - 4) / 2]
		                                             : C->qlen[(i - 4) / 2]);
		for (int byte = 0; byte < 8; byte++)
			h = (h ^ (x >> 8 * byte & 0xff)) * UINT64_C(0x100000001b3);
	}
	return h;
}

/* check_overlap: no tensor the call writes overlaps one it reads or
 * another it writes (saved as written by PA_TRAIN, read by PA_BACKWARD). */
static pa_status check_overlap(const Call *C)
{
	const pa_call *c = C->c;
	const int ni = C->k->num_inputs;
	const size_t sf = C->saved_floats;
	bool ok = true;
	if (c->mode != PA_BACKWARD) {
		for (int i = 0; i < ni; i++)
			ok = ok && apart_view(&C->out, &C->in[i]) &&
			     (c->mode == PA_FORWARD ||
			      apart(c->saved, sf, C->in[i].base, (size_t)C->in[i].span));
		ok = ok && (c->mode == PA_FORWARD ||
		            apart(c->saved, sf, C->out.base, (size_t)C->out.span));
		return ok ? PA_OK : PA_ERR_ARGUMENT;
	}
	for (int i = 0; i < ni; i++) {
		const View *g = &C->grad[i];
		if (!c->grad_inputs[i])
			continue;
		ok = ok && apart_view(g, &C->out) && apart_view(g, &C->gout) &&
		     apart(c->saved, sf, g->base, (size_t)g->span);
		for (int j = 0; j < ni; j++)
			ok = ok && apart_view(g, &C->in[j]) &&
			     (j == i || !c->grad_inputs[j] || apart_view(g, &C->grad[j]));
	}
	return ok ? PA_OK : PA_ERR_ARGUMENT;
}

/* header_of: saved's header for C: the magic and the shape's hash, 16
 * bits per float as whole numbers (so saved holds no NaN), then zeros. */
static void header_of(const Call *C, float h[HEADER])
{
	const uint64_t word[2] = {C->qk ? SAVED_MAGIC_QK : SAVED_MAGIC, shape_hash(C)};
	for (int i = 0; i < HEADER; i++)
		h[i] = i < 8 ? (float)(word[i / 4] >> 16 * (i % 4) & 0xffff) : 0.0f;
}

/* check_header: saved was filled by a PA_TRAIN of this shape. */
static pa_status check_header(const Call *C)
{
	float want[HEADER];
	header_of(C, want);
	return memcmp(C->c->saved, want, sizeof want) == 0 ? PA_OK : PA_ERR_ARGUMENT;
}

/* call_open: every check of polyattn.h's pa_call before anything is
 * written; on success call_free releases C. */
static pa_status call_open(const pa_kernel_info *k, const pa_call *c, Call *C)
{
	if (c->mode != PA_FORWARD && c->mode != PA_TRAIN && c->mode != PA_BACKWARD)
		return PA_ERR_ARGUMENT;
	if (c->mode != PA_FORWARD && (!k->train || !k->backward || !k->saved_floats))
		return PA_ERR_UNSUPPORTED;
	pa_status st = check_null(k, c);
	if (st == PA_OK)
		st = call_shape(k, c, C);
	if (st != PA_OK)
		return st;
	st = make_views(C);
	if (st == PA_OK && c->mode != PA_FORWARD && C->saved_floats == SIZE_MAX)
		st = PA_ERR_ARGUMENT;
	if (st == PA_OK)
		st = check_overlap(C);
	if (st == PA_OK && c->mode == PA_BACKWARD)
		st = check_header(C);
	if (st != PA_OK)
		call_free(C);
	return st;
}

/* ------------------------------------------------------ gather, scatter */

/* gather: the dense rows of group g of tensor v into d (count·heads ×
 * rows_of × cols): a query tensor's q rows (below k − q zero rows when
 * the kernel pads), another's k rows. */
static void gather(const Call *C, const Group *g, const View *v, bool query,
                   float *d)
{
	const int64_t stride = rows_of(C, g, query);
	const int64_t rows = query ? g->q : g->k, pad = stride - rows;
	const size_t row_bytes = (size_t)v->cols * sizeof(float);
	#pragma omp parallel for collapse(2) schedule(static) \
		if (g->count * C->heads * stride * v->cols >= PARALLEL_FLOATS)
	for (int64_t m = 0; m < g->count; m++)
		for (int64_t h = 0; h < C->heads; h++) {
			float *o = d + (m * C->heads + h) * stride * v->cols;
			memset(o, 0, (size_t)pad * row_bytes);
			for (int64_t r = 0; r < rows; r++)
				memcpy(o + (pad + r) * v->cols, row_of(v, g->member[m], h, r),
				       row_bytes);
		}
}

/* scatter: every row of v from the dense results of its entry's group
 * (at slot `which` of C->at), 0 for rows past the entry's length and for
 * entries that ran nothing. */
static void scatter(const Call *C, const View *v, bool query, const float *ws,
                    int which)
{
	const int ni = C->k->num_inputs;
	const size_t row_bytes = (size_t)v->cols * sizeof(float);
	#pragma omp parallel for collapse(2) schedule(static) \
		if (C->batch * C->heads * v->rows * v->cols >= PARALLEL_FLOATS)
	for (int64_t b = 0; b < C->batch; b++)
		for (int64_t h = 0; h < C->heads; h++) {
			const int64_t gi = C->group[b];
			const Group *g = gi >= 0 ? &C->g[gi] : NULL;
			const int64_t valid = !g ? 0 : query ? g->q : g->k;
			const int64_t stride = g ? rows_of(C, g, query) : 0;
			const int64_t pad = stride - valid;
			for (int64_t r = 0; r < v->rows; r++) {
				float *o = (float *)row_of(v, b, h, r);
				if (r >= valid) {
					memset(o, 0, row_bytes);
					continue;
				}
				const float *d = ws + C->at[gi * (ni + 1) + which];
				memcpy(o, d + ((C->slot[b] * C->heads + h) * stride + pad + r) * v->cols,
				       row_bytes);
			}
		}
}

/* pad_rows: copy the first k − q rows of every (entry, head) between the
 * dense out d of group g and saved's pad area (to saved when to_saved). */
static void pad_rows(const Call *C, const Group *g, float *d, bool to_saved)
{
	const int64_t pad = g->k - g->q, vd = C->k->value_dim;
	float *s = C->c->saved + g->pad_at;
	for (int64_t e = 0; e < g->count * C->heads; e++) {
		float *rows = d + e * g->k * vd, *kept = s + e * pad * vd;
		memcpy(to_saved ? kept : rows, to_saved ? rows : kept,
		       (size_t)(pad * vd) * sizeof(float));
	}
}

/* write_header: mark saved as filled by a PA_TRAIN of this shape. */
static void write_header(const Call *C)
{
	header_of(C, C->c->saved);
}

/* ------------------------------------------------------------ running */

/* plain: the call is one dense call on the caller's buffers (every
 * length full, every layout dense, and nq = nk unless the _qk entry
 * points run it). */
static bool plain(const Call *C)
{
	const pa_call *c = C->c;
	if (C->ng != 1 || C->g[0].count != C->batch || C->g[0].q != C->nq ||
	    C->g[0].k != C->nk || (!C->qk && C->nq != C->nk) ||
	    !view_dense(C, &C->out))
		return false;
	for (int i = 0; i < C->k->num_inputs; i++)
		if (!view_dense(C, &C->in[i]) ||
		    (c->mode == PA_BACKWARD && c->grad_inputs[i] &&
		     !view_dense(C, &C->grad[i])))
			return false;
	return c->mode != PA_BACKWARD || view_dense(C, &C->gout);
}

/* carve_inputs: the offsets of group g's dense inputs from *total. */
static void carve_inputs(const Call *C, const Group *g, size_t *total, size_t *at)
{
	for (int i = 0; i < C->k->num_inputs; i++)
		at[i] = pa_carve(total, g->count * C->heads, rows_of(C, g, is_query(C->k, i)),
		                 C->k->inputs[i].cols);
}

/* scratch_floats: the largest over groups of the dense inputs (and, for
 * the backward, out and grad_out) of one group. */
static size_t scratch_floats(const Call *C, bool backward)
{
	size_t most = 0, at[C->k->num_inputs > 0 ? C->k->num_inputs : 1];
	for (int64_t i = 0; i < C->ng; i++) {
		size_t total = 0;
		carve_inputs(C, &C->g[i], &total, at);
		for (int twice = 0; backward && twice < 2; twice++)
			pa_carve(&total, C->g[i].count * C->heads, rows_of(C, &C->g[i], true),
			         C->k->value_dim);
		most = total > most ? total : most;
	}
	return most;
}

/* run_forward: PA_FORWARD and PA_TRAIN. */
static pa_status run_forward(Call *C)
{
	const pa_kernel_info *k = C->k;
	const pa_call *c = C->c;
	const bool train = c->mode == PA_TRAIN;
	const int ni = k->num_inputs;
	if (train)                   /* a train that fails leaves saved unusable */
		memset(c->saved, 0, HEADER * sizeof(float));
	if (plain(C)) {
		int64_t bh = C->batch * C->heads;
		float *saved = train ? c->saved + C->g[0].saved_at : NULL;
		pa_status st = C->qk ? (train ? k->train_qk(bh, C->nq, C->nk, c->inputs, c->out, saved)
		                              : k->run_qk(bh, C->nq, C->nk, c->inputs, c->out))
		                     : (train ? k->train(bh, C->nk, c->inputs, c->out, saved)
		                              : k->run(bh, C->nk, c->inputs, c->out));
		if (st == PA_OK && train)
			write_header(C);
		return st;
	}
	size_t total = 0;
	for (int64_t i = 0; i < C->ng; i++)
		C->at[i * (ni + 1) + ni] = pa_carve(&total, C->g[i].count * C->heads,
		                                    rows_of(C, &C->g[i], true), k->value_dim);
	const size_t scratch = pa_carve(&total, (int64_t)scratch_floats(C, false), 1, 1);
	float *ws = pa_alloc(total);
	if (!ws)
		return PA_ERR_NOMEM;
	pa_status st = PA_OK;
	for (int64_t i = 0; i < C->ng && st == PA_OK; i++) {
		const Group *g = &C->g[i];
		size_t off = scratch, at[ni > 0 ? ni : 1];
		const float *dense[ni > 0 ? ni : 1];
		carve_inputs(C, g, &off, at);
		for (int j = 0; j < ni; j++) {
			gather(C, g, &C->in[j], is_query(k, j), ws + at[j]);
			dense[j] = ws + at[j];
		}
		float *o = ws + C->at[i * (ni + 1) + ni];
		const int64_t gb = g->count * C->heads;
		float *saved = train ? c->saved + g->saved_at : NULL;
		if (C->qk)
			st = train ? k->train_qk(gb, g->q, g->k, dense, o, saved)
			           : k->run_qk(gb, g->q, g->k, dense, o);
		else
			st = train ? k->train(gb, g->k, dense, o, saved) : k->run(gb, g->k, dense, o);
		if (st == PA_OK && train && !C->qk)
			pad_rows(C, g, o, true);
	}
	if (st == PA_OK) {
		scatter(C, &C->out, true, ws, ni);
		if (train)
			write_header(C);
	}
	pa_free(ws);
	return st;
}

/* run_backward: PA_BACKWARD. */
static pa_status run_backward(Call *C)
{
	const pa_kernel_info *k = C->k;
	const pa_call *c = C->c;
	const int ni = k->num_inputs;
	if (plain(C) && C->qk)
		return k->backward_qk(C->batch * C->heads, C->nq, C->nk, c->inputs, c->out,
		                      c->saved + C->g[0].saved_at, c->grad_out,
		                      c->grad_inputs);
	if (plain(C))
		return k->backward(C->batch * C->heads, C->nk, c->inputs, c->out,
		                   c->saved + C->g[0].saved_at, c->grad_out,
		                   c->grad_inputs);
	size_t total = 0;
	for (int64_t i = 0; i < C->ng; i++)
		for (int j = 0; j < ni; j++)
			if (c->grad_inputs[j])
				C->at[i * (ni + 1) + j] = pa_carve(&total, C->g[i].count * C->heads,
				                                   rows_of(C, &C->g[i], is_query(k, j)),
				                                   k->inputs[j].cols);
	const size_t scratch = pa_carve(&total, (int64_t)scratch_floats(C, true), 1, 1);
	float *ws = pa_alloc(total);
	if (!ws)
		return PA_ERR_NOMEM;
	pa_status st = PA_OK;
	for (int64_t i = 0; i < C->ng && st == PA_OK; i++) {
		const Group *g = &C->g[i];
		const int64_t gb = g->count * C->heads;
		size_t off = scratch, at[ni > 0 ? ni : 1];
		const float *dense[ni > 0 ? ni : 1];
		float *grads[ni > 0 ? ni : 1];
		carve_inputs(C, g, &off, at);
		const int64_t qrows = rows_of(C, g, true);
		float *dout = ws + pa_carve(&off, gb, qrows, k->value_dim);
		float *dgout = ws + pa_carve(&off, gb, qrows, k->value_dim);
		for (int j = 0; j < ni; j++) {
			gather(C, g, &C->in[j], is_query(k, j), ws + at[j]);
			dense[j] = ws + at[j];
			grads[j] = c->grad_inputs[j] ? ws + C->at[i * (ni + 1) + j] : NULL;
		}
		gather(C, g, &C->out, true, dout);
		if (!C->qk)
			pad_rows(C, g, dout, false);
		gather(C, g, &C->gout, true, dgout);
		st = C->qk ? k->backward_qk(gb, g->q, g->k, dense, dout, c->saved + g->saved_at,
		                            dgout, grads)
		           : k->backward(gb, g->k, dense, dout, c->saved + g->saved_at, dgout,
		                         grads);
	}
	for (int j = 0; j < ni && st == PA_OK; j++)
		if (c->grad_inputs[j])
			scatter(C, &C->grad[j], is_query(k, j), ws, j);
	pa_free(ws);
	return st;
}

/* pa_call_run: see pa_kernel.h. */
pa_status pa_call_run(const pa_kernel_info *k, const pa_call *c)
{
	if (!c)
		return PA_ERR_NULL;
	Call C;
	pa_status st = call_open(k, c, &C);
	if (st != PA_OK)
		return st;
	C.at = calloc((size_t)(C.ng > 0 ? C.ng : 1) * (size_t)(k->num_inputs + 1),
	              sizeof *C.at);
	if (!C.at)
		st = PA_ERR_NOMEM;
	else
		st = c->mode == PA_BACKWARD ? run_backward(&C) : run_forward(&C);
	call_free(&C);
	return st;
}

/* pa_call_saved_floats: see pa_kernel.h. */
int64_t pa_call_saved_floats(const pa_kernel_info *k, const pa_call *c)
{
	Call C;
	if (!c || !k->train || !k->backward || !k->saved_floats ||
	    call_shape(k, c, &C) != PA_OK)
		return -1;
	size_t sf = C.saved_floats;
	call_free(&C);
	return sf > INT64_MAX ? -1 : (int64_t)sf;
}
