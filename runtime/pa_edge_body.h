/*
 * pa_edge_body.h - the micro-kernels of one edge's backward for one
 * instruction set, included by pa_edge.c once per set with these defined:
 *
 *     W         floats per vector
 *     vf        a vector of W floats (GCC vector extension)
 *     TARGET    the function attribute of the set (may be empty)
 *     FN(name)  name with the set's suffix
 *     VEXP(x)   e^x lane by lane, as pa_expf computes it
 *     TILE_C    vectors per row of the widest register tile
 *
 * Every product is one shape, C[r][:] += Σ_k A[r, k] · B[k][:] with A read
 * as scalars (broadcast) and B as rows of vectors: a register tile of
 * 4 (or 8) rows times TILE_C (or fewer) vectors accumulates over k.  The
 * five products of the backward are all of it, by the strides given.
 */

/* vld, vst: W floats at p (64-byte aligned buffers, strides of 16). */
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

/* tile NAME, R rows × C vectors: C[r][c·W ..] += Σ_k A[r·ars + k·aks] · B[k·bks + c·W ..] for
 * r < R, c < C, k < kn. */
#define PA_EDGE_TILE(NAME, R, C)                                             \
	TARGET static void FN(NAME)(const float *A, int64_t ars,       \
		int64_t aks, const float *B, int64_t bks, int kn, float *Cm,         \
		int64_t crs)                                                         \
	{                                                                        \
		vf acc[R][C];                                                        \
		for (int r = 0; r < R; r++)                                          \
			for (int c = 0; c < C; c++)                                      \
				acc[r][c] = FN(vld)(Cm + r * crs + c * W);                   \
		for (int k = 0; k < kn; k++) {                                       \
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

/* tile_scores: an 8-row × 2-vector tile of a score product with its
 * epilogue fused (no second pass over the tile): rows r are queries,
 * lanes keys; the accumulators start at bias (kb's vectors) or 0, and go
 * out as, by mode,
 *   EPI_EXP  P  = exp(acc − row[r])                        (row = lse)
 *   EPI_DS   dS = P ⊙ (acc − row[r]), colsum += dS          (row = Dv)  */
TARGET static inline void FN(tile_scores)(int mode, const float *A, int64_t ars,
	const float *B, int64_t bks, int kn, const float *bias, const float *row,
	const float *P, float *Cm, int64_t crs, vf *colsum)
{
	vf acc[8][2];
	for (int r = 0; r < 8; r++)
		for (int c = 0; c < 2; c++)
			acc[r][c] = bias ? FN(vld)(bias + c * W) : (vf){0};
	for (int k = 0; k < kn; k++) {
		const vf b0 = FN(vld)(B + k * bks), b1 = FN(vld)(B + k * bks + W);
		for (int r = 0; r < 8; r++) {
			const float a = A[r * ars + k];
			acc[r][0] += a * b0;
			acc[r][1] += a * b1;
		}
	}
	for (int r = 0; r < 8; r++)
		for (int c = 0; c < 2; c++) {
			vf x = acc[r][c] - row[r];
			if (mode == EPI_EXP) {
				x = VEXP(x);
			} else {
				x *= FN(vld)(P + r * crs + c * W);
				colsum[c] += x;
			}
			FN(vst)(Cm + r * crs + c * W, x);
		}
}

PA_EDGE_TILE(tile_wide, 4, TILE_C)
PA_EDGE_TILE(tile_8x2, 8, 2)
PA_EDGE_TILE(tile_8x1, 8, 1)

/* opacc: C[r][0 .. cols) += Σ_k A[r·ars + k·aks] · B[k·bks + 0 .. cols)
 * for r < rows (a multiple of 8), cols a multiple of W. */
TARGET static void FN(opacc)(int rows, int cols, int kn, const float *A,
	int64_t ars, int64_t aks, const float *B, int64_t bks, float *Cm,
	int64_t crs)
{
	int c0 = 0;
	for (; c0 + TILE_C * W <= cols; c0 += TILE_C * W)
		for (int r = 0; r < rows; r += 4)
			FN(tile_wide)(A + r * ars, ars, aks, B + c0, bks, kn,
			              Cm + r * crs + c0, crs);
	for (; c0 + 2 * W <= cols; c0 += 2 * W)
		for (int r = 0; r < rows; r += 8)
			FN(tile_8x2)(A + r * ars, ars, aks, B + c0, bks, kn,
			             Cm + r * crs + c0, crs);
	for (; c0 < cols; c0 += W)
		for (int r = 0; r < rows; r += 8)
			FN(tile_8x1)(A + r * ars, ars, aks, B + c0, bks, kn,
			             Cm + r * crs + c0, crs);
}

/*
 * block: the backward of query block i0 (PA_BQ rows) against key panel
 * jb of one batch entry: P and dS tiles (PA_BQ × PA_BK) into scratch, then
 * dq rows += dS · k, and the panel's accumulators dk += dSᵀ · q,
 * dpv += Pᵀ · dm, dkb += column sums of dS.  A block the mask rules out
 * does nothing; one it crosses has its masked weights set to 0.
 */
TARGET static void FN(block)(const EdgeJob *j, int64_t i0, int64_t jb,
	float *P, float *dS, float *dq, float *dk, float *dpv, float *dkb)
{
	const int mask = block_masked(j, i0, jb);
	if (mask == 2)
		return;              /* every pair masked out */
	const int dp = j->dp, vp = j->vp;
	const float *q = j->qp + i0 * dp, *dm = j->dmp + i0 * vp;
	/* P = exp(q · kᵀ + kb − lse), 8 queries × 2W keys at a time */
	for (int c = 0; c < PA_BK; c += 2 * W)
		for (int r = 0; r < PA_BQ; r += 8)
			FN(tile_scores)(EPI_EXP, q + r * dp, dp,
			                j->kt + jb * j->dim * PA_BK + c, PA_BK, j->dim,
			                j->kb + jb * PA_BK + c, j->lse + i0 + r, NULL,
			                P + r * PA_BK + c, PA_BK, NULL);
	if (mask)
		mask_weights(j, i0, jb, P);
	/* dS = P ⊙ (dm · pvᵀ − Dv); dkb += column sums of dS */
	for (int c = 0; c < PA_BK; c += 2 * W) {
		vf colsum[2] = {FN(vld)(dkb + c), FN(vld)(dkb + c + W)};
		for (int r = 0; r < PA_BQ; r += 8)
			FN(tile_scores)(EPI_DS, dm + r * vp, vp,
			                j->pvt + jb * vp * PA_BK + c, PA_BK, vp ? j->vd : 0,
			                NULL, j->dv + i0 + r, P + r * PA_BK + c,
			                dS + r * PA_BK + c, PA_BK, colsum);
		FN(vst)(dkb + c, colsum[0]);
		FN(vst)(dkb + c + W, colsum[1]);
	}
	/* dq += dS · k; dk += dSᵀ · q; dpv += Pᵀ · dm */
	FN(opacc)(PA_BQ, dp, PA_BK, dS, PA_BK, 1, j->kp + jb * PA_BK * dp, dp,
	          dq + i0 * dp, dp);
	FN(opacc)(PA_BK, dp, PA_BQ, dS, 1, PA_BK, q, dp, dk, dp);
	if (vp)
		FN(opacc)(PA_BK, vp, PA_BQ, P, 1, PA_BK, dm, vp, dpv, vp);
}

/* panels: key panels jb0 .. jb0 + count − 1 of one batch entry against
 * every query block (the block's queries stay in cache while each panel
 * of the group uses them); the panels' accumulators start at 0 and are
 * written to the job's outputs. */
TARGET static void FN(panels)(const EdgeJob *j, int64_t jb0, int count,
	float *scratch, float *dq)
{
	const int dp = j->dp, vp = j->vp;
	const size_t per = (size_t)PA_BK * (dp + vp + 1);
	float *P = scratch, *dS = P + PA_BQ * PA_BK, *acc = dS + PA_BQ * PA_BK;
	memset(acc, 0, count * per * sizeof *acc);
	for (int64_t i0 = 0; i0 < j->nqp; i0 += PA_BQ)
		for (int g = 0; g < count; g++) {
			float *dk = acc + g * per, *dpv = dk + PA_BK * dp;
			FN(block)(j, i0, jb0 + g, P, dS, dq, dk, dpv, dpv + PA_BK * vp);
		}
	for (int g = 0; g < count; g++) {
		const float *dk = acc + g * per, *dpv = dk + PA_BK * dp;
		edge_store_panel(j, jb0 + g, dk, dpv, dpv + PA_BK * vp);
	}
}

#undef PA_EDGE_TILE
