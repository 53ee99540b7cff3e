/*
 * emit_attend.c - the attention micro-kernel of a tree message, printed
 * once per instruction set from a table of templates.
 *
 * A micro-kernel takes PA_TQ query rows and streams the panels of PA_BK
 * keys.  The lanes of a vector are queries: the task's queries are held
 * transposed (qt[d][i]), a query tile is QV vectors, and for each panel
 * and tile it computes
 *   - scores s[j][i] = q_i . k_j + kb_j, a register tile of KR keys × QV
 *     vectors, and the panel's maximum per query;
 *   - the online softmax, lane by lane: a new maximum m rescales the sum
 *     and the payload sums by e^(m_old - m), and s becomes e^(s - m);
 *   - the payload acc[c][i] += Σ_j s[j][i] · pv[j][c], a register tile of
 *     CR columns × QV vectors.
 * So the whole softmax is elementwise: no horizontal reduction, no scalar
 * per-row bookkeeping.  When the rows left fit one vector (a decoding
 * query, the last rows of a task) the tile is one vector wide: each lane
 * does the same operations in the same order either way, so a query's
 * result does not depend on the tile that carried it.  The same printing code serves every instruction
 * set; what differs is one row per operation in simd_table below and one
 * row of isa_shape, so a new ISA is new rows, not new branches.
 *
 * The masked variant (doc/design.md, "Masks") serves every message of a
 * kernel with a mask: query row i (position row0 + i) may see key j only
 * when lo ≤ j − (row0 + i) ≤ hi.  It visits only the panels some row of
 * the task may see, skips a tile whose pairs with the panel are all
 * masked out, and where a panel crosses the mask's edge sets the masked
 * scores to −inf before the softmax.  A row may then see no key at all
 * (or only keys of bias −inf): its maximum stays at −FLT_MAX, so no
 * −inf − (−inf) arises, and it ends with o = 0 and lse = −inf, which
 * its parent's key bias turns into weight 0.
 *
 * Template escapes, expanded by simd(): %0 %1 %2 are the operands, in
 * order; everything else is copied.
 */
#include "polyc.h"

#include <string.h>

#define SIMD_OPS(X)                                                     \
	X(TYPE)     /* the vector type */                                \
	X(TARGET)   /* the function attribute enabling the ISA */        \
	X(ZERO)     /* all lanes 0 */                                    \
	X(LOAD)     /* %0: a float lvalue, the vector starting there */  \
	X(STORE)    /* %0: a float lvalue, %1: vector */                 \
	X(BCAST)    /* %0: a float lvalue, in every lane */              \
	X(SET1)     /* %0: float expression in every lane */             \
	X(FMA)      /* %0 * %1 + %2 */                                   \
	X(ADD)                                                           \
	X(SUB)                                                           \
	X(MUL)                                                           \
	X(MAX)                                                           \
	X(EXP)      /* e^%0 lane-wise, 0 for -inf */

typedef enum SimdOp {
#define X(op) OP_##op,
	SIMD_OPS(X)
#undef X
	OP__COUNT
} SimdOp;

typedef enum Isa {
	ISA_GENERIC,             /* portable C: one float per "vector" */
	ISA_AVX2,                /* 8 floats, FMA */
	ISA_AVX512,              /* 16 floats */
	ISA__COUNT
} Isa;

/* How each ISA is named, how wide it is and how its tiles are shaped:
 * a score tile holds kr × qv vectors, a payload tile cr × qv, and both
 * leave room for qv loaded vectors and a broadcast (the register file:
 * 16 vectors for AVX2, 32 for AVX-512).  On a 2-core AVX-512 machine
 * 4 × 4 tiles of 64 queries measured a few per cent faster than 3 × 8. */
static const struct IsaShape {
	const char *suffix;      /* function name suffix */
	const char *guard;       /* preprocessor condition, NULL = always */
	int width;               /* floats (queries) per vector */
	int qv;                  /* vectors per query tile (width·qv divides PA_TQ) */
	int kr;                  /* keys per score tile (divides PA_BK) */
	int cr;                  /* payload columns per tile (divides 16) */
} isa_shape[ISA__COUNT] = {
	[ISA_GENERIC] = {"generic", NULL, 1, 4, 4, 4},
	[ISA_AVX2] = {"avx2", "defined(__x86_64__)", 8, 2, 4, 4},
	[ISA_AVX512] = {"avx512", "defined(__x86_64__)", 16, 4, 4, 4},
};

static const struct SimdRow {
	Isa isa;
	SimdOp op;
	const char *tmpl;
} simd_table[] = {
	{ISA_GENERIC, OP_TYPE, "float"},
	{ISA_GENERIC, OP_TARGET, ""},
	{ISA_GENERIC, OP_ZERO, "0.0f"},
	{ISA_GENERIC, OP_LOAD, "%0"},
	{ISA_GENERIC, OP_STORE, "%0 = %1"},
	{ISA_GENERIC, OP_BCAST, "%0"},
	{ISA_GENERIC, OP_SET1, "%0"},
	{ISA_GENERIC, OP_FMA, "%0 * %1 + %2"},
	{ISA_GENERIC, OP_ADD, "%0 + %1"},
	{ISA_GENERIC, OP_SUB, "%0 - %1"},
	{ISA_GENERIC, OP_MUL, "%0 * %1"},
	{ISA_GENERIC, OP_MAX, "fmaxf(%0, %1)"},
	{ISA_GENERIC, OP_EXP, "pa_expf(%0)"},

	{ISA_AVX2, OP_TYPE, "__m256"},
	{ISA_AVX2, OP_TARGET, "__attribute__((target(\"avx2,fma\"))) "},
	{ISA_AVX2, OP_ZERO, "_mm256_setzero_ps()"},
	{ISA_AVX2, OP_LOAD, "_mm256_loadu_ps(&%0)"},
	{ISA_AVX2, OP_STORE, "_mm256_storeu_ps(&%0, %1)"},
	{ISA_AVX2, OP_BCAST, "_mm256_broadcast_ss(&%0)"},
	{ISA_AVX2, OP_SET1, "_mm256_set1_ps(%0)"},
	{ISA_AVX2, OP_FMA, "_mm256_fmadd_ps(%0, %1, %2)"},
	{ISA_AVX2, OP_ADD, "_mm256_add_ps(%0, %1)"},
	{ISA_AVX2, OP_SUB, "_mm256_sub_ps(%0, %1)"},
	{ISA_AVX2, OP_MUL, "_mm256_mul_ps(%0, %1)"},
	{ISA_AVX2, OP_MAX, "_mm256_max_ps(%0, %1)"},
	{ISA_AVX2, OP_EXP, "pa_exp8(%0)"},

	{ISA_AVX512, OP_TYPE, "__m512"},
	{ISA_AVX512, OP_TARGET, "__attribute__((target(\"avx512f\"))) "},
	{ISA_AVX512, OP_ZERO, "_mm512_setzero_ps()"},
	{ISA_AVX512, OP_LOAD, "_mm512_loadu_ps(&%0)"},
	{ISA_AVX512, OP_STORE, "_mm512_storeu_ps(&%0, %1)"},
	{ISA_AVX512, OP_BCAST, "_mm512_set1_ps(%0)"},
	{ISA_AVX512, OP_SET1, "_mm512_set1_ps(%0)"},
	{ISA_AVX512, OP_FMA, "_mm512_fmadd_ps(%0, %1, %2)"},
	{ISA_AVX512, OP_ADD, "_mm512_add_ps(%0, %1)"},
	{ISA_AVX512, OP_SUB, "_mm512_sub_ps(%0, %1)"},
	{ISA_AVX512, OP_MUL, "_mm512_mul_ps(%0, %1)"},
	{ISA_AVX512, OP_MAX, "_mm512_max_ps(%0, %1)"},
	{ISA_AVX512, OP_EXP, "pa_exp16(%0)"},
};

/* simd = template (isa, op) with its escapes replaced by the operands,
 * in one of a ring of static buffers (valid for the next 15 calls). */
static const char *simd(Isa isa, SimdOp op, const char *a0, const char *a1,
                        const char *a2)
{
	static char ring[16][256];
	static int next;
	const char *args[3] = {a0, a1, a2}, *t = NULL;
	for (size_t i = 0; i < sizeof simd_table / sizeof *simd_table; i++)
		if (simd_table[i].isa == isa && simd_table[i].op == op)
			t = simd_table[i].tmpl;
	char *out = ring[next++ % 16];
	size_t o = 0;
	for (; t && *t && o + 1 < sizeof ring[0]; t++) {
		if (t[0] == '%' && t[1] >= '0' && t[1] <= '2') {
			o += snprintf(out + o, sizeof ring[0] - o, "%s", args[*++t - '0']);
			o = o < sizeof ring[0] ? o : sizeof ring[0] - 1;
		} else {
			out[o++] = *t;
		}
	}
	out[o] = 0;
	return out;
}

/* Shorthands: one operand, two, three. */
#define S0(op) simd(isa, OP_##op, "", "", "")
#define S1(op, a) simd(isa, OP_##op, a, "", "")
#define S2(op, a, b) simd(isa, OP_##op, a, b, "")
#define S3(op, a, b, c) simd(isa, OP_##op, a, b, c)

/* fmt = printf into a ring of static buffers, for template operands. */
static const char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static const char *fmt(const char *f, ...)
{
	static char ring[16][128];
	static int next;
	char *out = ring[next++ % 16];
	va_list ap;
	va_start(ap, f);
	vsnprintf(out, sizeof ring[0], f, ap);
	va_end(ap);
	return out;
}

/* plus = "base + k", or "base" when k is 0. */
static const char *plus(const char *base, int k)
{
	return k ? fmt("%s + %d", base, k) : base;
}

/* Shape of one micro-kernel. */
typedef struct Attend {
	const char *kname;
	int dim;                 /* key columns */
	int dv;                  /* payload columns (0: log-normalizer only) */
	int dvp;                 /* dv rounded up to 16: the payload's stride */
	bool masked;             /* the masked variant (see the top) */
	Isa isa;
	int qv;                  /* vectors per query tile being printed: the
	                            ISA's, or 1 for the narrow tile */
} Attend;

/* Per-ISA shorthands of the printing functions below. */
#define W (isa_shape[a->isa].width)
#define QV (a->qv)
#define QT (W * QV)              /* queries per tile being printed */
#define QT_WIDE (W * isa_shape[a->isa].qv) /* queries per full tile */

/* emit_score_tile: s[kk..kk+kr)[tile] = q . k + kb in registers, and the
 * panel's maximum per query in top<v>. */
static void emit_score_tile(Emitter *E, const Attend *a, const char *T)
{
	Isa isa = a->isa;
	int kr = isa_shape[isa].kr;
	emit_line(E, "/* scores s[j][i] = q_i . k_j + kb_j: %d keys x %d queries in registers */",
	          kr, QT);
	emit_open(E, "for (int kk = 0; kk < PA_BK; kk += %d)", kr);
	emit_line(E, "/* the next panel on its way to cache, a part per step */");
	emit_open(E, "if (t0 == 0 && jb + 1 < nb)");
	emit_line(E, "pa_prefetch_part(kp + %d * PA_BK, %d * PA_BK, kk / %d, PA_BK / %d);",
	          a->dim, a->dim, kr, kr);
	if (a->dv)
		emit_line(E, "pa_prefetch_part(pvp + PA_BK * %d, PA_BK * %d, kk / %d, PA_BK / %d);",
		          a->dvp, a->dvp, kr, kr);
	emit_close(E);
	for (int j = 0; j < kr; j++)
		for (int v = 0; v < QV; v++)
			emit_line(E, "%s s%d_%d = %s;", T, j, v,
			          v ? fmt("s%d_0", j) : S1(BCAST, fmt("kbp[%s]", plus("kk", j))));
	emit_open(E, "for (int d = 0; d < %d; d++)", a->dim);
	for (int v = 0; v < QV; v++)
		emit_line(E, "const %s q%d = %s;", T, v, S1(LOAD, fmt("qt[d][%s]", plus("t0", v * W))));
	emit_line(E, "%s k;", T);
	for (int j = 0; j < isa_shape[isa].kr; j++) {
		emit_line(E, "k = %s;", S1(BCAST, fmt("kp[d * PA_BK + %s]", plus("kk", j))));
		for (int v = 0; v < QV; v++)
			emit_line(E, "s%d_%d = %s;", j, v,
			          S3(FMA, "k", fmt("q%d", v), fmt("s%d_%d", j, v)));
	}
	emit_close(E);
	for (int j = 0; j < kr; j++)
		for (int v = 0; v < QV; v++) {
			emit_line(E, "top%d = %s;", v, S2(MAX, fmt("top%d", v), fmt("s%d_%d", j, v)));
			emit_line(E, "%s;", S2(STORE, fmt("s[%s][%d]", plus("kk", j), v * W),
			                       fmt("s%d_%d", j, v)));
		}
	emit_close(E);
}

/* emit_softmax: lane by lane, the new maximum m<v>, the factor r<v> that
 * rescales what was summed under the old one, s = e^(s - m) summed. */
static void emit_softmax(Emitter *E, const Attend *a, const char *T)
{
	Isa isa = a->isa;
	emit_line(E, "/* online softmax, one lane per query: a new maximum m rescales");
	emit_line(E, " * the sums by r = e^(m_old - m)%s */", a->masked ? "; m >= -FLT_MAX" : "");
	for (int v = 0; v < QV; v++) {
		const char *old = fmt("mx[%s]", plus("t0", v * W));
		const char *m = S2(MAX, S1(LOAD, old), fmt("top%d", v));
		emit_line(E, "const %s m%d = %s;", T, v,
		          a->masked ? S2(MAX, m, S1(SET1, "-FLT_MAX")) : m);
		emit_line(E, "const %s r%d = %s;", T, v, S1(EXP, S2(SUB, S1(LOAD, old), fmt("m%d", v))));
		emit_line(E, "%s l%d = %s;", T, v,
		          S2(MUL, S1(LOAD, fmt("sum[%s]", plus("t0", v * W))), fmt("r%d", v)));
		emit_line(E, "%s;", S2(STORE, old, fmt("m%d", v)));
	}
	emit_open(E, "for (int j = 0; j < PA_BK; j++)");
	for (int v = 0; v < QV; v++) {
		const char *sj = fmt("s[j][%d]", v * W);
		emit_line(E, "const %s p%d = %s;", T, v, S1(EXP, S2(SUB, S1(LOAD, sj), fmt("m%d", v))));
		emit_line(E, "%s;", S2(STORE, sj, fmt("p%d", v)));
		emit_line(E, "l%d = %s;", v, S2(ADD, fmt("l%d", v), fmt("p%d", v)));
	}
	emit_close(E);
	for (int v = 0; v < QV; v++)
		emit_line(E, "%s;", S2(STORE, fmt("sum[%s]", plus("t0", v * W)), fmt("l%d", v)));
}

/* emit_payload_tile: acc[c][tile] = r · acc[c][tile] + Σ_j s[j][tile] ·
 * pv[j][c] over the panel, cr columns × QV vectors in registers. */
static void emit_payload_tile(Emitter *E, const Attend *a, const char *T)
{
	Isa isa = a->isa;
	int cr = isa_shape[isa].cr;
	emit_line(E, "/* payload acc[c][i] = r_i acc[c][i] + sum_j s[j][i] pv[j][c]:");
	emit_line(E, " * %d columns x %d queries in registers */", cr, QT);
	emit_open(E, "for (int c = 0; c < %d; c += %d)", a->dvp, cr);
	for (int c = 0; c < cr; c++)
		for (int v = 0; v < QV; v++)
			emit_line(E, "%s a%d_%d = %s;", T, c, v,
			          S2(MUL, S1(LOAD, fmt("acc[%s][%s]", plus("c", c), plus("t0", v * W))), fmt("r%d", v)));
	emit_open(E, "for (int j = 0; j < PA_BK; j++)");
	for (int v = 0; v < QV; v++)
		emit_line(E, "const %s p%d = %s;", T, v, S1(LOAD, fmt("s[j][%d]", v * W)));
	emit_line(E, "const float *pr = pvp + j * %d + c;", a->dvp);
	emit_line(E, "%s x;", T);
	for (int c = 0; c < cr; c++) {
		emit_line(E, "x = %s;", S1(BCAST, fmt("pr[%d]", c)));
		for (int v = 0; v < QV; v++)
			emit_line(E, "a%d_%d = %s;", c, v,
			          S3(FMA, "x", fmt("p%d", v), fmt("a%d_%d", c, v)));
	}
	emit_close(E);
	for (int c = 0; c < cr; c++)
		for (int v = 0; v < QV; v++)
			emit_line(E, "%s;", S2(STORE, fmt("acc[%s][%s]", plus("c", c), plus("t0", v * W)),
			                       fmt("a%d_%d", c, v)));
	emit_close(E);
}

/* emit_mask_tile: where the panel crosses the mask's edge, the scores of
 * masked pairs become -inf and the panel's maxima are taken again. */
static void emit_mask_tile(Emitter *E, const Attend *a)
{
	Isa isa = a->isa;
	emit_open(E, "if (dmin < lo || dmax > hi)");
	emit_line(E, "/* the panel crosses the mask's edge: masked pairs score -inf */");
	emit_open(E, "for (int j = 0; j < PA_BK; j++)");
	emit_open(E, "for (int i = 0; i < %d; i++)", QT);
	emit_line(E, "const int64_t d = jb * PA_BK + j - (row0 + t0 + i);");
	emit_line(E, "if (d < lo || d > hi)");
	emit_line(E, "\ts[j][i] = -INFINITY;");
	emit_close(E);
	emit_close(E);
	for (int v = 0; v < QV; v++)
		emit_line(E, "top%d = %s;", v, S1(SET1, "-INFINITY"));
	emit_open(E, "for (int j = 0; j < PA_BK; j++)");
	for (int v = 0; v < QV; v++)
		emit_line(E, "top%d = %s;", v, S2(MAX, fmt("top%d", v), S1(LOAD, fmt("s[j][%d]", v * W))));
	emit_close(E);
	emit_close(E);
}

/* emit_panel_range: the masked variant's panels: those holding keys some
 * row of the task may see, row0 + lo to row0 + rows - 1 + hi. */
static void emit_panel_range(Emitter *E)
{
	emit_line(E, "/* the panels some row of the task may see: keys row0 + lo .. row0 + rows - 1 + hi */");
	emit_line(E, "const int64_t first = row0 + lo, last = row0 + rows - 1 + hi;");
	emit_line(E, "const int64_t jb0 = first > 0 ? first / PA_BK : 0;");
	emit_line(E, "const int64_t jb1 = last < 0 ? 0 : last / PA_BK + 1 < nb ? last / PA_BK + 1 : nb;");
}

/* emit_tile_range: the masked variant skips a tile whose pairs with the
 * panel are all masked out; dmin, dmax bound key - query over them. */
static void emit_tile_range(Emitter *E, const Attend *a)
{
	emit_line(E, "/* key - query over the tile's rows and the panel's keys */");
	emit_line(E, "const int64_t dmin = jb * PA_BK - (row0 + t0 + %d);", QT - 1);
	emit_line(E, "const int64_t dmax = jb * PA_BK + PA_BK - 1 - (row0 + t0);");
	emit_line(E, "if (dmax < lo || dmin > hi)");
	emit_line(E, "\tcontinue; /* every pair masked out */");
}

/* emit_prologue: the task's queries transposed, zero sums, maxima -inf. */
static void emit_prologue(Emitter *E, const Attend *a)
{
	emit_line(E, "/* lanes are queries: qt[d][i] = q_i[d]; rows past the last are 0;");
	emit_line(E, " * qt and the payload sums acc are the task's scratch */");
	emit_line(E, "float (*const qt)[PA_TQ] = (float (*)[PA_TQ])scratch;");
	emit_line(E, "float mx[PA_TQ] __attribute__((aligned(64)));");
	emit_line(E, "float sum[PA_TQ] __attribute__((aligned(64)));");
	emit_line(E, "float s[PA_BK][%d] __attribute__((aligned(64)));", QT_WIDE);
	if (a->dv)
		emit_line(E, "float (*const acc)[PA_TQ] = (float (*)[PA_TQ])(scratch + %d * PA_TQ);", a->dim);
	else
		emit_line(E, "(void)pv, (void)o;");
	emit_open(E, "for (int i = 0; i < PA_TQ; i++)");
	emit_line(E, "for (int d = 0; d < %d; d++)", a->dim);
	emit_line(E, "\tqt[d][i] = i < rows ? q[i * %d + d] : 0.0f;", a->dim);
	if (a->dv) {
		emit_line(E, "for (int c = 0; c < %d; c++)", a->dvp);
		emit_line(E, "\tacc[c][i] = 0.0f;");
	}
	emit_line(E, "mx[i] = -INFINITY;");
	emit_line(E, "sum[i] = 0.0f;");
	emit_close(E);
	emit_line(E, "const int tiles = (rows + %d) / %d * %d;", QT_WIDE - 1, QT_WIDE, QT_WIDE);
}

/* emit_epilogue: o_i = acc[.][i] / sum_i, lse_i = m_i + log sum_i. */
static void emit_epilogue(Emitter *E, const Attend *a)
{
	emit_open(E, "for (int i = 0; i < rows; i++)");
	if (a->masked) {
		emit_line(E, "/* a row that saw no key: o = 0, lse = -inf */");
		emit_line(E, "const float inv = sum[i] > 0.0f ? 1.0f / sum[i] : 0.0f;");
	}
	if (a->dv) {
		emit_line(E, "for (int c = 0; c < %d; c++)", a->dv);
		if (a->masked)
			emit_line(E, "\to[i * %d + c] = acc[c][i] * inv;", a->dv);
		else
			emit_line(E, "\to[i * %d + c] = acc[c][i] / sum[i];", a->dv);
	}
	if (a->masked)
		emit_line(E, "lse[i] = sum[i] > 0.0f ? mx[i] + logf(sum[i]) : -INFINITY;");
	else
		emit_line(E, "lse[i] = mx[i] + logf(sum[i]);");
	emit_close(E);
}

/* emit_tile: one query tile of QV vectors against one panel. */
static void emit_tile(Emitter *E, const Attend *a, const char *T)
{
	Isa isa = a->isa;
	if (a->masked)
		emit_tile_range(E, a);
	for (int v = 0; v < QV; v++)
		emit_line(E, "%s top%d = %s;", T, v, v ? "top0" : S1(SET1, "-INFINITY"));
	emit_score_tile(E, a, T);
	if (a->masked)
		emit_mask_tile(E, a);
	emit_softmax(E, a, T);
	if (a->dv)
		emit_payload_tile(E, a, T);
}

/* emit_variant: the whole micro-kernel for one ISA. */
static void emit_variant(Emitter *E, const Attend *a)
{
	Isa isa = a->isa;
	char T[32];
	snprintf(T, sizeof T, "%s", S0(TYPE));
	if (isa_shape[isa].guard)
		emit_line(E, "#if %s", isa_shape[isa].guard);
	emit_line(E, "static %svoid %s_attend_d%d_v%d%s_%s(int64_t nb, int rows,%s",
	          S0(TARGET), a->kname, a->dim, a->dv, a->masked ? "_masked" : "",
	          isa_shape[isa].suffix, a->masked ? " int64_t row0, int64_t lo, int64_t hi," : "");
	emit_line(E, "\tconst float *restrict q, const float *restrict kt, const float *restrict kb,");
	emit_line(E, "\tconst float *restrict pv, float *restrict o, float *restrict lse,");
	emit_line(E, "\tfloat *restrict scratch)");
	emit_open(E, "");
	emit_open(E, "if (rows == 1)");
	emit_line(E, "/* one query (a decoding step): lanes over keys */");
	emit_line(E, "pa_attend_row(nb, %s, %d, %d, %d, q, kt, kb, pv, o, lse);",
	          a->masked ? "row0, lo, hi" : "0, -PA_UNBOUNDED, PA_UNBOUNDED", a->dim, a->dvp, a->dv);
	emit_line(E, "return;");
	emit_close(E);
	emit_prologue(E, a);
	if (a->masked)
		emit_panel_range(E);
	emit_line(E, "/* each panel of keys stays in cache while every tile of queries uses it */");
	emit_open(E, "for (int64_t jb = %s; jb < %s; jb++)", a->masked ? "jb0" : "0",
	          a->masked ? "jb1" : "nb");
	emit_line(E, "const float *kp = kt + jb * %d * PA_BK, *kbp = kb + jb * PA_BK;", a->dim);
	if (a->dv)
		emit_line(E, "const float *pvp = pv + jb * PA_BK * %d;", a->dvp);
	emit_open(E, "for (int t0 = 0; t0 < tiles; t0 += %d)", QT);
	if (QV > 1) {
		Attend narrow = *a;
		narrow.qv = 1;
		emit_open(E, "if (rows - t0 <= %d)", W);
		emit_line(E, "/* the last rows fit one vector (a decoding query): a narrow tile */");
		emit_tile(E, &narrow, T);
		emit_line(E, "continue;");
		emit_close(E);
	}
	emit_tile(E, a, T);
	emit_close(E);
	emit_close(E);
	emit_epilogue(E, a);
	emit_close(E);
	if (isa_shape[isa].guard)
		emit_line(E, "#endif");
	emit_line(E, "");
}

#undef W
#undef QV
#undef QT
#undef QT_WIDE

/* emit_attend: the micro-kernel of every ISA for (dim, dv), and the
 * function that picks one for this CPU. */
void emit_attend(Emitter *E, const char *kname, int dim, int dv, bool masked)
{
	Attend a = {kname, dim, dv, (dv + 15) / 16 * 16, masked, ISA_GENERIC, 0};
	const char *mk = masked ? "_masked" : "";
	emit_line(E, "/*");
	emit_line(E, " * Attention of rows q[0 .. rows-1] (rows <= PA_TQ) over nb panels of PA_BK");
	emit_line(E, " * keys with %d columns: s_ij = q_i . k_j + kb_j, lse_i = log sum_j exp(s_ij)%s",
	          dim, dv ? "," : ".");
	if (dv)
		emit_line(E, " * o_i = sum_j exp(s_ij - lse_i) pv_j over %d payload columns.", dv);
	emit_line(E, " * Vector lanes are queries, so the online softmax is elementwise.");
	if (masked) {
		emit_line(E, " * Masked: row i (position row0 + i) sees key j only when lo <= j - (row0 + i) <= hi;");
		emit_line(E, " * a row that sees none gets o = 0 and lse = -inf.");
	}
	emit_line(E, " */");
	for (int isa = 0; isa < ISA__COUNT; isa++) {
		a.isa = isa;
		a.qv = isa_shape[isa].qv;
		emit_variant(E, &a);
	}
	emit_line(E, "static pa_attend%s_fn %s_attend_d%d_v%d%s(void)", masked ? "_mask" : "",
	          kname, dim, dv, mk);
	emit_open(E, "");
	emit_line(E, "#if defined(__x86_64__)");
	emit_line(E, "if (pa_isa() == PA_ISA_AVX512)");
	emit_line(E, "\treturn %s_attend_d%d_v%d%s_avx512;", kname, dim, dv, mk);
	emit_line(E, "if (pa_isa() == PA_ISA_AVX2)");
	emit_line(E, "\treturn %s_attend_d%d_v%d%s_avx2;", kname, dim, dv, mk);
	emit_line(E, "#endif");
	emit_line(E, "return %s_attend_d%d_v%d%s_generic;", kname, dim, dv, mk);
	emit_close(E);
	emit_line(E, "");
}
