/*
 * emit_attend.c - the attention micro-kernel of a tree message, printed
 * once per instruction set from a table of templates.
 *
 * A micro-kernel takes PA_TQ query rows and streams the key panels; for
 * each panel and each tile of PA_BQ rows: a register tile of scores
 * (rows × KS keys), the online softmax of each
 * row (a new maximum rescales what has been summed), then a register tile
 * of the weighted payload (rows × CW columns).  The same printing code
 * serves every instruction set; what differs is one row per operation in
 * simd_table below, so a new ISA is new rows, not new branches.
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
	X(LOAD)     /* %0: const float * */                              \
	X(STORE)    /* %0: float *, %1: vector */                        \
	X(BCAST)    /* %0: const float *, one float in every lane */     \
	X(SET1)     /* %0: float expression in every lane */             \
	X(FMA)      /* %0 * %1 + %2 */                                   \
	X(ADD)                                                           \
	X(SUB)                                                           \
	X(MUL)                                                           \
	X(MAX)                                                           \
	X(EXP)      /* e^%0 lane-wise, 0 for -inf */                     \
	X(HMAX)     /* the largest lane, a float */                      \
	X(HSUM)     /* the sum of the lanes, a float */

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

/* How each ISA is named, how wide it is and how its tiles are shaped. */
static const struct IsaShape {
	const char *suffix;      /* function name suffix */
	const char *guard;       /* preprocessor condition, NULL = always */
	int width;               /* floats per vector */
	int ks;                  /* keys per score tile (divides PA_BK) */
	int cw;                  /* payload columns per tile (divides 16) */
} isa_shape[ISA__COUNT] = {
	[ISA_GENERIC] = {"generic", NULL, 1, 8, 16},
	[ISA_AVX2] = {"avx2", "defined(__x86_64__)", 8, 16, 16},
	[ISA_AVX512] = {"avx512", "defined(__x86_64__)", 16, 32, 16},
};

static const struct SimdRow {
	Isa isa;
	SimdOp op;
	const char *tmpl;
} simd_table[] = {
	{ISA_GENERIC, OP_TYPE, "float"},
	{ISA_GENERIC, OP_TARGET, ""},
	{ISA_GENERIC, OP_ZERO, "0.0f"},
	{ISA_GENERIC, OP_LOAD, "*(%0)"},
	{ISA_GENERIC, OP_STORE, "*(%0) = %1"},
	{ISA_GENERIC, OP_BCAST, "*(%0)"},
	{ISA_GENERIC, OP_SET1, "%0"},
	{ISA_GENERIC, OP_FMA, "%0 * %1 + %2"},
	{ISA_GENERIC, OP_ADD, "%0 + %1"},
	{ISA_GENERIC, OP_SUB, "%0 - %1"},
	{ISA_GENERIC, OP_MUL, "%0 * %1"},
	{ISA_GENERIC, OP_MAX, "fmaxf(%0, %1)"},
	{ISA_GENERIC, OP_EXP, "pa_expf(%0)"},
	{ISA_GENERIC, OP_HMAX, "%0"},
	{ISA_GENERIC, OP_HSUM, "%0"},

	{ISA_AVX2, OP_TYPE, "__m256"},
	{ISA_AVX2, OP_TARGET, "__attribute__((target(\"avx2,fma\"))) "},
	{ISA_AVX2, OP_ZERO, "_mm256_setzero_ps()"},
	{ISA_AVX2, OP_LOAD, "_mm256_loadu_ps(%0)"},
	{ISA_AVX2, OP_STORE, "_mm256_storeu_ps(%0, %1)"},
	{ISA_AVX2, OP_BCAST, "_mm256_broadcast_ss(%0)"},
	{ISA_AVX2, OP_SET1, "_mm256_set1_ps(%0)"},
	{ISA_AVX2, OP_FMA, "_mm256_fmadd_ps(%0, %1, %2)"},
	{ISA_AVX2, OP_ADD, "_mm256_add_ps(%0, %1)"},
	{ISA_AVX2, OP_SUB, "_mm256_sub_ps(%0, %1)"},
	{ISA_AVX2, OP_MUL, "_mm256_mul_ps(%0, %1)"},
	{ISA_AVX2, OP_MAX, "_mm256_max_ps(%0, %1)"},
	{ISA_AVX2, OP_EXP, "pa_exp8(%0)"},
	{ISA_AVX2, OP_HMAX, "pa_hmax8(%0)"},
	{ISA_AVX2, OP_HSUM, "pa_hsum8(%0)"},

	{ISA_AVX512, OP_TYPE, "__m512"},
	{ISA_AVX512, OP_TARGET, "__attribute__((target(\"avx512f\"))) "},
	{ISA_AVX512, OP_ZERO, "_mm512_setzero_ps()"},
	{ISA_AVX512, OP_LOAD, "_mm512_loadu_ps(%0)"},
	{ISA_AVX512, OP_STORE, "_mm512_storeu_ps(%0, %1)"},
	{ISA_AVX512, OP_BCAST, "_mm512_set1_ps(*(%0))"},
	{ISA_AVX512, OP_SET1, "_mm512_set1_ps(%0)"},
	{ISA_AVX512, OP_FMA, "_mm512_fmadd_ps(%0, %1, %2)"},
	{ISA_AVX512, OP_ADD, "_mm512_add_ps(%0, %1)"},
	{ISA_AVX512, OP_SUB, "_mm512_sub_ps(%0, %1)"},
	{ISA_AVX512, OP_MUL, "_mm512_mul_ps(%0, %1)"},
	{ISA_AVX512, OP_MAX, "_mm512_max_ps(%0, %1)"},
	{ISA_AVX512, OP_EXP, "pa_exp16(%0)"},
	{ISA_AVX512, OP_HMAX, "pa_hmax16(%0)"},
	{ISA_AVX512, OP_HSUM, "pa_hsum16(%0)"},
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

/* Shape of one micro-kernel. */
typedef struct Attend {
	const char *kname;
	int dim;                 /* key columns */
	int dv;                  /* payload columns (0: log-normalizer only) */
	int dvp;                 /* dv rounded up to 16: the payload's stride */
	Isa isa;
} Attend;

/* emit_score_tile: s[0..PA_BQ)[kk..kk+ks) = q . k + kb, in registers. */
static void emit_score_tile(Emitter *E, const Attend *a)
{
	Isa isa = a->isa;
	int w = isa_shape[isa].width, nv = isa_shape[isa].ks / w;
	char T[32];
	snprintf(T, sizeof T, "%s", S0(TYPE));
	emit_line(E, "/* scores: PA_BQ rows x %d keys in registers */", isa_shape[isa].ks);
	emit_open(E, "for (int kk = 0; kk < PA_BK; kk += %d)", isa_shape[isa].ks);
	for (int i = 0; i < 6; i++)
		for (int v = 0; v < nv; v++)
			emit_line(E, "%s s%d_%d = %s;", T, i, v,
			          S1(LOAD, fmt("kbp + kk + %d", v * w)));
	emit_open(E, "for (int d = 0; d < %d; d++)", a->dim);
	for (int v = 0; v < nv; v++)
		emit_line(E, "const %s k%d = %s;", T, v,
		          S1(LOAD, fmt("kp + d * PA_BK + kk + %d", v * w)));
	emit_line(E, "%s b;", T);
	for (int i = 0; i < 6; i++) {
		emit_line(E, "b = %s;", S1(BCAST, fmt("&qt[t0 + %d][d]", i)));
		for (int v = 0; v < nv; v++)
			emit_line(E, "s%d_%d = %s;", i, v,
			          S3(FMA, "b", fmt("k%d", v), fmt("s%d_%d", i, v)));
	}
	emit_close(E);
	for (int i = 0; i < 6; i++)
		for (int v = 0; v < nv; v++)
			emit_line(E, "%s;", S2(STORE, fmt("&s[%d][kk + %d]", i, v * w),
			                       fmt("s%d_%d", i, v)));
	emit_close(E);
}

/* emit_softmax: per row, the panel's maximum, the rescaling of what was
 * summed when it rises, and s = exp(s - max) summed into sum[i]. */
static void emit_softmax(Emitter *E, const Attend *a)
{
	Isa isa = a->isa;
	int w = isa_shape[isa].width;
	char T[32];
	snprintf(T, sizeof T, "%s", S0(TYPE));
	emit_line(E, "/* online softmax: a new row maximum rescales what is summed */");
	emit_open(E, "for (int i = 0; i < PA_BQ; i++)");
	emit_line(E, "const int r = t0 + i;");
	emit_line(E, "%s m = %s;", T, S1(LOAD, "&s[i][0]"));
	emit_line(E, "for (int j = %d; j < PA_BK; j += %d)", w, w);
	emit_line(E, "\tm = %s;", S2(MAX, "m", S1(LOAD, "&s[i][j]")));
	emit_line(E, "const float mnew = fmaxf(mx[r], %s);", S1(HMAX, "m"));
	emit_open(E, "if (mnew > mx[r])");
	emit_line(E, "const float alpha = pa_expf(mx[r] - mnew);");
	emit_line(E, "sum[r] *= alpha;");
	if (a->dv) {
		emit_line(E, "for (int v = 0; v < %d; v += %d)", a->dvp, w);
		emit_line(E, "\t%s;", S2(STORE, "&acc[r][v]",
		                         S2(MUL, S1(LOAD, "&acc[r][v]"), S1(SET1, "alpha"))));
	}
	emit_line(E, "mx[r] = mnew;");
	emit_close(E);
	emit_line(E, "const %s mv = %s;", T, S1(SET1, "mx[r]"));
	emit_line(E, "%s t = %s;", T, S0(ZERO));
	emit_open(E, "for (int j = 0; j < PA_BK; j += %d)", w);
	emit_line(E, "const %s p = %s;", T, S1(EXP, S2(SUB, S1(LOAD, "&s[i][j]"), "mv")));
	emit_line(E, "%s;", S2(STORE, "&s[i][j]", "p"));
	emit_line(E, "t = %s;", S2(ADD, "t", "p"));
	emit_close(E);
	emit_line(E, "sum[r] += %s;", S1(HSUM, "t"));
	emit_close(E);
}

/* emit_payload_tile: acc += s . pv over the panel, PA_BQ rows × cw
 * columns in registers at a time. */
static void emit_payload_tile(Emitter *E, const Attend *a)
{
	Isa isa = a->isa;
	int w = isa_shape[isa].width, cw = isa_shape[isa].cw, nc = cw / w;
	char T[32];
	snprintf(T, sizeof T, "%s", S0(TYPE));
	emit_line(E, "/* payload: acc += p . pv, PA_BQ rows x %d columns in registers */", cw);
	emit_open(E, "for (int c = 0; c < %d; c += %d)", a->dvp, cw);
	for (int i = 0; i < 6; i++)
		for (int v = 0; v < nc; v++)
			emit_line(E, "%s a%d_%d = %s;", T, i, v,
			          S1(LOAD, fmt("&acc[t0 + %d][c + %d]", i, v * w)));
	emit_open(E, "for (int j = 0; j < PA_BK; j++)");
	emit_line(E, "const float *pr = pvp + j * %d + c;", a->dvp);
	for (int v = 0; v < nc; v++)
		emit_line(E, "const %s v%d = %s;", T, v, S1(LOAD, fmt("pr + %d", v * w)));
	emit_line(E, "%s p;", T);
	for (int i = 0; i < 6; i++) {
		emit_line(E, "p = %s;", S1(BCAST, fmt("&s[%d][j]", i)));
		for (int v = 0; v < nc; v++)
			emit_line(E, "a%d_%d = %s;", i, v,
			          S3(FMA, "p", fmt("v%d", v), fmt("a%d_%d", i, v)));
	}
	emit_close(E);
	for (int i = 0; i < 6; i++)
		for (int v = 0; v < nc; v++)
			emit_line(E, "%s;", S2(STORE, fmt("&acc[t0 + %d][c + %d]", i, v * w),
			                       fmt("a%d_%d", i, v)));
	emit_close(E);
}

/* emit_variant: the whole micro-kernel for one ISA. */
static void emit_variant(Emitter *E, const Attend *a)
{
	Isa isa = a->isa;
	if (isa_shape[isa].guard)
		emit_line(E, "#if %s", isa_shape[isa].guard);
	emit_line(E, "static %svoid %s_attend_d%d_v%d_%s(int64_t nb, int rows,",
	          S0(TARGET), a->kname, a->dim, a->dv, isa_shape[isa].suffix);
	emit_line(E, "\tconst float *restrict q, const float *restrict kt, const float *restrict kb,");
	emit_line(E, "\tconst float *restrict pv, float *restrict o, float *restrict lse)");
	emit_open(E, "");
	emit_line(E, "float qt[PA_TQ][%d], mx[PA_TQ], sum[PA_TQ];", a->dim);
	emit_line(E, "float s[PA_BQ][PA_BK] __attribute__((aligned(64)));");
	if (a->dv)
		emit_line(E, "float acc[PA_TQ][%d] __attribute__((aligned(64))) = {{0}};", a->dvp);
	else
		emit_line(E, "(void)pv, (void)o;");
	emit_line(E, "const int tiles = (rows + PA_BQ - 1) / PA_BQ * PA_BQ;");
	emit_open(E, "for (int i = 0; i < tiles; i++)");
	emit_line(E, "for (int d = 0; d < %d; d++)", a->dim);
	emit_line(E, "\tqt[i][d] = i < rows ? q[i * %d + d] : 0.0f;", a->dim);
	emit_line(E, "mx[i] = -INFINITY;");
	emit_line(E, "sum[i] = 0.0f;");
	emit_close(E);
	emit_line(E, "/* each panel of keys stays in cache while every tile of rows uses it */");
	emit_open(E, "for (int64_t jb = 0; jb < nb; jb++)");
	emit_line(E, "const float *kp = kt + jb * %d * PA_BK, *kbp = kb + jb * PA_BK;", a->dim);
	if (a->dv)
		emit_line(E, "const float *pvp = pv + jb * PA_BK * %d;", a->dvp);
	emit_open(E, "for (int t0 = 0; t0 < tiles; t0 += PA_BQ)");
	emit_score_tile(E, a);
	emit_softmax(E, a);
	if (a->dv)
		emit_payload_tile(E, a);
	emit_close(E);
	emit_close(E);
	emit_open(E, "for (int i = 0; i < rows; i++)");
	if (a->dv) {
		emit_line(E, "for (int v = 0; v < %d; v++)", a->dv);
		emit_line(E, "\to[i * %d + v] = acc[i][v] / sum[i];", a->dv);
	}
	emit_line(E, "lse[i] = mx[i] + logf(sum[i]);");
	emit_close(E);
	emit_close(E);
	if (isa_shape[isa].guard)
		emit_line(E, "#endif");
	emit_line(E, "");
}

/* emit_attend: the micro-kernel of every ISA for (dim, dv), and the
 * function that picks one for this CPU. */
void emit_attend(Emitter *E, const char *kname, int dim, int dv)
{
	Attend a = {kname, dim, dv, (dv + 15) / 16 * 16, ISA_GENERIC};
	emit_line(E, "/*");
	emit_line(E, " * Attention of rows q[0 .. rows-1] (rows <= PA_TQ) over nb panels of PA_BK");
	emit_line(E, " * keys with %d columns: s_ij = q_i . k_j + kb_j, lse_i = log sum_j exp(s_ij)%s",
	          dim, dv ? "," : ".");
	if (dv)
		emit_line(E, " * o_i = sum_j exp(s_ij - lse_i) pv_j over %d payload columns.", dv);
	emit_line(E, " */");
	for (int isa = 0; isa < ISA__COUNT; isa++) {
		a.isa = isa;
		emit_variant(E, &a);
	}
	emit_line(E, "static pa_attend_fn %s_attend_d%d_v%d(void)", kname, dim, dv);
	emit_open(E, "");
	emit_line(E, "#if defined(__x86_64__)");
	emit_line(E, "if (pa_isa() == PA_ISA_AVX512)");
	emit_line(E, "\treturn %s_attend_d%d_v%d_avx512;", kname, dim, dv);
	emit_line(E, "if (pa_isa() == PA_ISA_AVX2)");
	emit_line(E, "\treturn %s_attend_d%d_v%d_avx2;", kname, dim, dv);
	emit_line(E, "#endif");
	emit_line(E, "return %s_attend_d%d_v%d_generic;", kname, dim, dv);
	emit_close(E);
	emit_line(E, "");
}
