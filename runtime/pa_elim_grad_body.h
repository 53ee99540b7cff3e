/*
 * pa_elim_grad_body.h - the products and exponentials of the elimination
 * backward (pa_elim_grad.c) for one instruction set, included once per
 * set with these defined, as pa_edge_body.h is:
 *
 *     W         floats per vector
 *     vf        a vector of W floats (GCC vector extension)
 *     TARGET    the function attribute of the set (may be empty)
 *     FN(name)  name with the set's suffix
 *     VEXP(x)   e^x lane by lane, as pa_expf computes it
 *     TILE_C    vectors per row of the widest register tile
 *
 * Every product has one shape, C[r][:] += Σ_k A[r·ars + k·aks] · B[k·bks
 * + :] with A read as scalars (broadcast; the strides make a transposed
 * A free) and B as rows of vectors, in register tiles of 4 rows.
 */

/* vld, vst: W floats at p. */
TARGET static inline vf FN(vld)(const float *p)
{
	vf v;
	memcpy(&v, p, sizeof v);
	return v;
}

TARGET static inline void FN(vst)(float *p, vf v)
{
	memcpy(p, &v, sizeof v);
}

/* tile NAME, R rows × C vectors of C += A · B over kn. */
#define PA_EG_TILE(NAME, R, C)                                               \
	TARGET static void FN(NAME)(const float *A, int64_t ars, int64_t aks,    \
		const float *B, int64_t bks, int64_t kn, float *Cm, int64_t crs)     \
	{                                                                        \
		vf acc[R][C];                                                        \
		for (int r = 0; r < R; r++)                                          \
			for (int c = 0; c < C; c++)                                      \
				acc[r][c] = FN(vld)(Cm + r * crs + c * W);                   \
		for (int64_t k = 0; k < kn; k++) {                                   \
			vf b[C];                                                         \
			for (int c = 0; c < C; c++)                                      \
				b[c] = FN(vld)(B + k * bks + c * W);                         \
			for (int r = 0; r < R; r++) {                                    \
				const float a = A[r * ars + k * aks];                        \
				for (int c = 0; c < C; c++)                                  \
					acc[r][c] += a * b[c];                                   \
			}                                                                \
		}                                                                    \
		for (int r = 0; r < R; r++)                                          \
			for (int c = 0; c < C; c++)                                      \
				FN(vst)(Cm + r * crs + c * W, acc[r][c]);                    \
	}

PA_EG_TILE(tile_4w, 4, TILE_C)
PA_EG_TILE(tile_4v, 4, 1)
PA_EG_TILE(tile_1w, 1, TILE_C)
PA_EG_TILE(tile_1v, 1, 1)
#undef PA_EG_TILE

/* mm: C[r][0 .. N) += Σ_{k < K} A[r·ars + k·aks] · B[k·bks + 0 .. N) for
 * r < M; N a multiple of 16. */
TARGET static void FN(mm)(int64_t M, int64_t N, int64_t K, const float *A,
                          int64_t ars, int64_t aks, const float *B, int64_t bks,
                          float *C, int64_t crs)
{
	int64_t r = 0;
	for (; r + 4 <= M; r += 4) {
		int64_t c = 0;
		for (; c + TILE_C * W <= N; c += TILE_C * W)
			FN(tile_4w)(A + r * ars, ars, aks, B + c, bks, K, C + r * crs + c, crs);
		for (; c < N; c += W)
			FN(tile_4v)(A + r * ars, ars, aks, B + c, bks, K, C + r * crs + c, crs);
	}
	for (; r < M; r++) {
		int64_t c = 0;
		for (; c + TILE_C * W <= N; c += TILE_C * W)
			FN(tile_1w)(A + r * ars, ars, aks, B + c, bks, K, C + r * crs + c, crs);
		for (; c < N; c += W)
			FN(tile_1v)(A + r * ars, ars, aks, B + c, bks, K, C + r * crs + c, crs);
	}
}

/* exp_sub: x[r] = e^(x[r] − m) for r < n, 0 for n ≤ r < np (np a
 * multiple of 16); returns Σ x. */
TARGET static float FN(exp_sub)(float *x, int64_t n, int64_t np, float m)
{
	vf sum = (vf){0}, vm = (vf){0} + m;
	int64_t r = 0;
	for (; r + W <= n; r += W) {
		vf e = VEXP(FN(vld)(x + r) - vm);
		FN(vst)(x + r, e);
		sum += e;
	}
	float s = 0.0f;
	for (; r < n; r++)
		s += x[r] = pa_expf(x[r] - m);
	for (; r < np; r++)
		x[r] = 0.0f;
	for (int i = 0; i < W; i++)
		s += sum[i];
	return s;
}

/* vadd: d[r] += x[r] for r < n. */
TARGET static void FN(vadd)(float *d, const float *x, int64_t n)
{
	int64_t r = 0;
	for (; r + W <= n; r += W)
		FN(vst)(d + r, FN(vld)(d + r) + FN(vld)(x + r));
	for (; r < n; r++)
		d[r] += x[r];
}

/* dscore: g[r] = p[r] · (g[r] + add) for r < n (a block row's dw). */
TARGET static void FN(dscore)(float *g, const float *p, float add, int64_t n)
{
	vf va = (vf){0} + add;
	int64_t r = 0;
	for (; r + W <= n; r += W)
		FN(vst)(g + r, FN(vld)(p + r) * (FN(vld)(g + r) + va));
	for (; r < n; r++)
		g[r] = p[r] * (g[r] + add);
}
