/*
 * graph.c - the monomial hypergraph of a kernel and its class
 * (doc/design.md, "Classes").
 *
 * Vertices are the variables x1 … xt.  Each monomial touching two or more
 * distinct variables is a hyperedge over that set; monomials over the same
 * set merge into one edge (they add inside one exponent, they are not a
 * cycle).  A monomial over a single variable is a per-token bias on it.
 * The class follows from the edges: any edge of three or more variables
 * makes the graph high-degree; otherwise it is a tree (a forest) or cyclic.
 * A mask constraint between two variables that share no monomial adds
 * the pair as an edge without monomials (doc/design.md, "Masks"): the
 * plan must still see the two positions together.
 */
#include "polyc.h"

#include <string.h>

/* popcount32 = number of set bits of x. */
int popcount32(uint32_t x)
{
	return __builtin_popcount(x);
}

/* mono_vars = the set of distinct variables of monomial m. */
static uint32_t mono_vars(const Monomial *m)
{
	uint32_t s = 0;
	for (int q = 0; q < m->degree; q++)
		s |= 1u << m->occ[q];
	return s;
}

/* add_edge_mono: file monomial i under the edge over vars, creating it. */
static void add_edge_mono(Graph *g, uint32_t vars, int i)
{
	int e = 0;
	while (e < g->nedges && g->edge[e].vars != vars)
		e++;
	if (e == g->nedges) {
		g->edge[e].vars = vars;
		g->edge[e].nmono = 0;
		g->nedges++;
	}
	g->edge[e].mono[g->edge[e].nmono++] = i;
}

/* add_mask_edge: the edge {x_a, x_b} without monomials, unless some
 * edge holds both already.  A graph of PC_MAX_MONOMIALS edges over at
 * most 16 variables is cyclic whatever is added. */
static void add_mask_edge(Graph *g, int a, int b)
{
	if ((g->adj[a] >> b & 1) || g->nedges == PC_MAX_MONOMIALS)
		return;
	g->edge[g->nedges++] = (Edge){.vars = (1u << a) | (1u << b)};
	g->adj[a] |= 1u << b;
	g->adj[b] |= 1u << a;
}

/* find = the representative of x in a union-find forest. */
static int find(int *up, int x)
{
	while (up[x] != x)
		x = up[x] = up[up[x]];
	return x;
}

/* classify: components and class; a cycle shows as an edge whose two ends
 * are already connected. */
static void classify(Graph *g)
{
	int up[PC_MAX_VARS + 1];
	bool cycle = false, high = false;
	for (int j = 1; j <= g->nvars; j++)
		up[j] = j;
	for (int e = 0; e < g->nedges; e++) {
		uint32_t vs = g->edge[e].vars;
		int a = __builtin_ctz(vs);
		if (popcount32(vs) > 2)
			high = true;
		for (uint32_t r = vs & (vs - 1); r; r &= r - 1) {
			int ra = find(up, a), rb = find(up, __builtin_ctz(r));
			if (ra == rb)
				cycle = true;
			up[rb] = ra;
		}
	}
	g->cls = high ? GC_HIGH_DEGREE : cycle ? GC_CYCLIC : GC_TREE;
	int id[PC_MAX_VARS + 1];
	memset(id, -1, sizeof id);
	g->ncomps = 0;
	for (int j = 1; j <= g->nvars; j++) {
		int r = find(up, j);
		if (id[r] < 0)
			id[r] = g->ncomps++;
		g->comp[j] = id[r];
	}
}

/* graph_build: the hypergraph of k, its primal adjacency and its class. */
void graph_build(Graph *g, const Kernel *k)
{
	memset(g, 0, sizeof *g);
	g->k = k;
	g->nvars = k->nvars;
	for (int i = 0; i < k->nmono; i++) {
		uint32_t vs = mono_vars(&k->mono[i]);
		if (popcount32(vs) == 1) {
			int j = __builtin_ctz(vs);
			g->bias[j][g->nbias[j]++] = i;
			continue;
		}
		add_edge_mono(g, vs, i);
		for (uint32_t r = vs; r; r &= r - 1)
			g->adj[__builtin_ctz(r)] |= vs & ~(1u << __builtin_ctz(r));
	}
	for (int i = 0; i < k->nmasks; i++)
		add_mask_edge(g, k->mask[i].a, k->mask[i].b);
	classify(g);
}

/* graph_class_name = "tree", "cyclic" or "high-degree". */
const char *graph_class_name(GraphClass c)
{
	switch (c) {
	case GC_TREE: return "tree";
	case GC_CYCLIC: return "cyclic";
	case GC_HIGH_DEGREE: return "high-degree";
	}
	return "?";
}
