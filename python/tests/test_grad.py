"""Gradients of the kernels (K_info.backward through autograd) against
the float64 brute force's, and the brute force against finite
differences."""
import math

import pytest
import torch

import polyattn
from conftest import POLYS, TREES, compile_case, random_inputs, reference, rel_err

GENERAL = [c for c in POLYS if c not in TREES]


def grads(kernel, xs, g, fn):
    """d<fn(kernel, xs), g>/dxs for leaf copies of xs."""
    leaves = [x.detach().clone().requires_grad_() for x in xs]
    out = fn(kernel, leaves)
    return out, torch.autograd.grad((out * g.to(out.dtype)).sum(), leaves)


def kernel_call(k, xs):
    return k(*xs)


def grad_errs(got, want):
    """Each input's max |got − want| over its max |want|, or over 1e-2 of
    the largest reference gradient of any input when its own vanishes
    (n = 1, where the factors' gradients are exactly 0)."""
    scale = max(w.abs().max().item() for w in want)
    return [((a.double() - w).abs().max() / max(w.abs().max().item(), 1e-2 * scale)).item()
            for a, w in zip(got, want)]


@pytest.mark.parametrize("case", TREES)
@pytest.mark.parametrize("lead,n", [((1,), 1), ((2, 3), 6), ((2,), 17)])
def test_gradients_match_definition(case, lead, n, gen):
    k = compile_case(case)
    assert k.has_backward
    xs = random_inputs(k, lead, n, gen)
    g = torch.randn(*lead, n, k.value_dim, generator=gen)
    out, got = grads(k, xs, g, kernel_call)
    want_out, want = grads(k, [x.double() for x in xs], g, reference)
    assert rel_err(out, want_out) < 1e-5
    for a, b in zip(got, want):
        assert a.dtype == torch.float32 and a.shape == b.shape
    errs = grad_errs(got, want)
    assert max(errs) < 1e-4, dict(zip([d.name for d in k.inputs], errs))


@pytest.mark.parametrize("case", list(POLYS))
@pytest.mark.parametrize("amp", [12.0, 40.0])
def test_gradients_at_large_scores(case, amp, gen):
    """Scores of 10^3 to 10^4: finite gradients within float32 rounding.

    There p is nearly one-hot and the true factor gradients are tiny
    (e^-gap), while dL/ds = p (<g,u> - <g,out>) cancels in float32 to the
    rounding of out; so errors are measured against the gradients' natural
    size N = max|g| · max|V| · |scale| · max|F| (and max|g| · max|V| for
    the values), not against the vanishing exact ones."""
    k = compile_case(case, scale=1.0)
    xs = random_inputs(k, (2,), 6, gen, amp=amp)
    g = torch.randn(2, 6, k.value_dim, generator=gen)
    _, got = grads(k, xs, g, kernel_call)
    _, want = grads(k, [x.double() for x in xs], g, reference)
    f_max = max(x.abs().max() for x, d in zip(xs, k.inputs) if d.kind == "factor")
    v_max = max(x.abs().max() for x, d in zip(xs, k.inputs) if d.kind == "value")
    for d, a, w in zip(k.inputs, got, want):
        nat = g.abs().max() * v_max * (k.scale * f_max if d.kind == "factor" else 1)
        assert torch.isfinite(a).all(), d.name
        assert (a.double() - w).abs().max() < 1e-4 * nat.item(), d.name


@pytest.mark.parametrize("case", list(POLYS))
def test_brute_force_against_finite_differences(case, gen):
    k = compile_case(case, head_dim=2, value_dim=2)
    xs = [x.double().requires_grad_() for x in random_inputs(k, (2,), 3, gen)]
    assert torch.autograd.gradcheck(lambda *xs: reference(k, xs), xs, eps=1e-6, atol=1e-7)


def test_some_inputs_without_grad(gen):
    k = compile_case("tree")
    xs = random_inputs(k, (3,), 5, gen)
    xs[1].requires_grad_()
    xs[4].requires_grad_()
    k(*xs).sum().backward()
    assert [x.grad is not None for x in xs] == [False, True, False, False, True]
    _, want = grads(k, [x.double() for x in xs], torch.ones(3, 5, k.value_dim), reference)
    assert rel_err(xs[1].grad, want[1]) < 1e-4 and rel_err(xs[4].grad, want[4]) < 1e-4


def test_gradients_through_dtype_and_layout(gen):
    k = compile_case("softmax")
    xs = [torch.randn(2, 5, 3, d.cols, generator=gen, dtype=torch.float64)
          .transpose(1, 2).requires_grad_() for d in k.inputs]
    out = k(*xs)
    assert out.dtype == torch.float64 and out.shape == (2, 3, 5, k.value_dim)
    out.sum().backward()
    _, want = grads(k, [x.detach() for x in xs], torch.ones_like(out), reference)
    for x, w in zip(xs, want):
        assert x.grad.dtype == torch.float64 and rel_err(x.grad, w) < 1e-4


def test_nonfinite_grad_out_gives_status(gen):
    k = compile_case("tree")
    xs = [x.requires_grad_() for x in random_inputs(k, (1,), 4, gen)]
    g = torch.ones(1, 4, k.value_dim)
    g[0, 2, 1] = float("inf")
    with pytest.raises(polyattn.KernelError, match="PA_ERR_NONFINITE"):
        k(*xs).backward(g)


@pytest.mark.parametrize("case", GENERAL)
@pytest.mark.parametrize("lead,n", [((1,), 1), ((2,), 5), ((3,), 9)])
def test_general_kernels_gradients_match_definition(case, lead, n, gen):
    """Cyclic and high-degree kernels (the elimination plan) train too:
    autograd through K_backward gives the brute force's gradients, at
    dims that are no multiple of a vector."""
    k = compile_case(case, head_dim=3, value_dim=5)
    assert k.has_backward and k.algorithm == "exact-elimination"
    xs = random_inputs(k, lead, n, gen)
    g = torch.randn(*lead, n, k.value_dim, generator=gen)
    out, got = grads(k, xs, g, kernel_call)
    want_out, want = grads(k, [x.double() for x in xs], g, reference)
    assert rel_err(out, want_out) < 1e-5
    errs = grad_errs(got, want)
    assert max(errs) < 1e-4, dict(zip([d.name for d in k.inputs], errs))


def masked_reference(kernel, xs, allowed):
    """The brute force of a kernel over x1, x2, x3 in float64, over the
    tuples allowed(l1, l2, l3) keeps; a row with none outputs 0 (its
    gradients are 0); differentiable."""
    xs = [x.double() for x in xs]
    n, lead = xs[0].shape[-2], xs[0].shape[:-2]

    def on_axis(x, j):               # row l_j of x, broadcast over the others
        shape = list(lead) + [1, 1, 1, x.shape[-1]]
        shape[len(lead) + j - 1] = n
        return x.reshape(shape)

    s, u = 0, torch.ones(kernel.value_dim, dtype=torch.float64)
    for m, c in enumerate(kernel.coefficients):
        prod = 1
        for x, d in zip(xs, kernel.inputs):
            if d.kind == "factor" and d.monomial == m:
                prod = prod * on_axis(x, d.variable)
        s = s + c * prod.sum(-1)
    for x, d in zip(xs, kernel.inputs):
        if d.kind == "value":
            u = u * on_axis(x, d.variable)
    pos = torch.arange(n)
    ok = allowed(pos[:, None, None], pos[None, :, None], pos[None, None, :])
    s = (kernel.scale * s).masked_fill(~ok, -1e30)
    p = (s - torch.logsumexp(s, (-2, -1), keepdim=True)).exp()
    out = (p.unsqueeze(-1) * u).sum((-3, -2))
    return out * ok.any(-1).any(-1).unsqueeze(-1)


@pytest.mark.parametrize("mask,allowed", [
    ("causal", lambda l1, l2, l3: (l2 <= l1) & (l3 <= l1)),
    ("x2 < x1", lambda l1, l2, l3: (l2 < l1) & (l3 >= 0))])   # l1 = 0: no tuple
def test_masked_cyclic_kernel_gradients_match_definition(mask, allowed, gen):
    """A masked cyclic kernel (the elimination plan) trains: its autograd
    gradients are the brute force's over the tuples the mask keeps, and 0
    for a query the mask leaves no tuple."""
    k = polyattn.compile("x1*x2 + x2*x3 + x3*x1", kernel="masked_cycle", head_dim=3,
                         value_dim=5, scale=0.5, mask=mask)
    plain = polyattn.compile("x1*x2 + x2*x3 + x3*x1", kernel="plain_cycle", head_dim=3,
                             value_dim=5, scale=0.5)
    assert k.has_backward and k.algorithm == "exact-elimination"
    xs = random_inputs(k, (2,), 7, gen)
    g = torch.randn(2, 7, k.value_dim, generator=gen)
    out, got = grads(k, xs, g, kernel_call)
    want_out, want = grads(k, xs, g, lambda k, xs: masked_reference(k, xs, allowed))
    assert rel_err(out, want_out) < 1e-5
    assert rel_err(plain(*xs), want_out) > 1e-2   # the mask changes the output
    errs = grad_errs(got, want)
    assert max(errs) < 1e-4, dict(zip([d.name for d in k.inputs], errs))


def test_operator_autograd_matches_eager_path(gen):
    """polyattn::train's registered autograd formula (what torch.compile and
    dispatch modes see) gives the gradients of the eager path."""
    k = compile_case("tree")
    xs = random_inputs(k, (3,), 6, gen)
    a = [x.clone().requires_grad_() for x in xs]
    b = [x.clone().requires_grad_() for x in xs]
    (k(*a) ** 2).sum().backward()
    out, saved = torch.ops.polyattn.train(k._key, b)
    assert not saved.requires_grad
    (out ** 2).sum().backward()
    for x, y in zip(a, b):
        assert torch.equal(x.grad, y.grad)


@pytest.mark.parametrize("case", ["tree", "strassen"])
def test_operators_opcheck(case, gen):
    """torch.library.opcheck of polyattn::forward and polyattn::train:
    schema, fake implementation, autograd registration and AOT dispatch
    (outputs compared, saved included), for a tree and an elimination
    kernel."""
    k = compile_case(case)
    xs = random_inputs(k, (2,), 5, gen)
    k(*xs)                                   # registers the kernel
    torch.library.opcheck(torch.ops.polyattn.forward.default, (k._key, xs))
    ys = [x.detach().requires_grad_() for x in xs]
    torch.library.opcheck(torch.ops.polyattn.train.default, (k._key, ys))


def test_no_silent_double_backward(gen):
    k = compile_case("softmax")
    xs = [x.requires_grad_() for x in random_inputs(k, (1,), 4, gen)]
    g = torch.autograd.grad(k(*xs).square().sum(), xs[0], create_graph=True)[0]
    with pytest.raises(RuntimeError):
        g.sum().backward()


def taylor(u, p):
    """Σ_{i ≤ p} u^i / i!, the Taylor polynomial that replaces exp(u)."""
    s, t = torch.ones_like(u), torch.ones_like(u)
    for i in range(1, p + 1):
        t = t * u / i
        s = s + t
    return s


def edges_of(k):
    """Each edge's variables, monomials, score bound X and Taylor degree P,
    read from the kernel's --explain text (polyc's plan)."""
    import re
    edges = re.findall(r"edge \d+ \{([^}]*)\}: \|score\| <= ([0-9.e+-]+), Taylor degree (\d+)",
                       k.explain)
    out = []
    for vs, x, p in edges:
        vars_ = frozenset(int(v.strip()[1:]) for v in vs.split(","))
        monos = [m for m in range(len(k.coefficients))
                 if {d.variable for d in k.inputs if d.kind == "factor" and d.monomial == m} == vars_]
        out.append((vars_, monos, float(x), int(p)))
    return out


def weights(k, xs, taylor_edges=None, absolute=False):
    """Every tuple's weight exp(s(ℓ)) (or, with taylor_edges, Π_e T_Pe(u_e) ·
    exp(biases)) as a tensor (b, n, …, n), and the value product (b, n, …,
    n, vd).  absolute: the scores' terms with |scale·c| and |F| (the size of
    ∂u/∂F), no exp."""
    n, t = xs[0].shape[-2], k.num_vars
    b = xs[0].shape[0]

    def on_axis(x, j):
        shape = [b] + [1] * t + [x.shape[-1]]
        shape[j] = n
        return x.reshape(shape)

    mono = []
    for m, c in enumerate(k.coefficients):
        prod = None
        for x, d in zip(xs, k.inputs):
            if d.kind == "factor" and d.monomial == m:
                v = on_axis(x.abs() if absolute else x, d.variable)
                prod = v if prod is None else prod * v
        c = abs(k.scale * c) if absolute else k.scale * c
        mono.append((c * prod.sum(-1)).expand([b] + [n] * t))
    u = torch.ones(k.value_dim, dtype=xs[0].dtype)
    for x, d in zip(xs, k.inputs):
        if d.kind == "value":
            u = u * on_axis(x.abs() if absolute else x, d.variable)
    if absolute:
        return sum(mono), u
    if taylor_edges is None:
        s = sum(mono)
        return (s - s.amax()).exp(), u
    w, in_edge = 1.0, set()
    for _, monos, _, p in taylor_edges:
        w = w * taylor(sum(mono[m] for m in monos), p)
        in_edge |= set(monos)
    bias = sum((mono[m] for m in range(len(mono)) if m not in in_edge), torch.zeros(()))
    return w * bias.exp(), u


def attend(w, u, t):
    """out[ℓ1] = Σ w u / Σ w over ℓ2 … ℓt."""
    dims = tuple(range(2, t + 1))
    return (w.unsqueeze(-1) * u).sum(dims) / w.sum(dims).unsqueeze(-1)


def promise_bounds(k, xs, g, out_approx_err):
    """doc/training.md's per-entry bound on |approximate − exact gradient|:
    for a factor Σ_ℓ p |∂u/∂F| (κ(|⟨g,u⟩| + |⟨g,out⟩|) + (1+κ) η Σ_c |g_c| A_c),
    for a value η Σ_ℓ p |g_c| Π_{j'≠j} |V_j'|; as gradients of the absolute
    terms weighted by the (constant) rest."""
    t, eps = k.num_vars, k.error
    eta = 2 * eps / (1 - eps)
    dmax = max(math.exp(x) * x ** p / math.factorial(p) for _, _, x, p in edges_of(k)) / (1 - eps)
    kappa = (1 + eta) * (1 + dmax) - 1
    w, u = weights(k, xs)
    dims = tuple(range(2, t + 1))
    p = w / w.sum(dims, keepdim=True)
    view = [p.shape[0], p.shape[1]] + [1] * (t - 1) + [k.value_dim]
    gv = g.reshape(view)
    out = (p.unsqueeze(-1) * u).sum(dims)
    gu = (gv * u).sum(-1)
    go = (g * out).sum(-1).reshape(view[:-1])
    A = (p.unsqueeze(-1) * u.abs()).sum(dims)
    G = (g.abs() * A).sum(-1).reshape(view[:-1])
    room = (kappa * (gu.abs() + go.abs()) + (1 + kappa) * eta * G).detach()
    leaves = [x.abs().detach().requires_grad_() for x in xs]
    sa, ua = weights(k, leaves, absolute=True)
    total = (p.detach() * room * sa).sum() + eta * (p.detach().unsqueeze(-1) * gv.abs() * ua).sum()
    return torch.autograd.grad(total, leaves, allow_unused=True)


APPROX = [("x1*x2 + x2*x3 + x3*x1", dict(head_dim=2, value_dim=2, bound=0.5)),
          ("x1*x2 + x2*x3", dict(head_dim=2, value_dim=3, bound=0.5, values="x2, x3"))]


@pytest.mark.parametrize("poly,settings", APPROX)
@pytest.mark.parametrize("n", [1, 5])
def test_approximate_gradients_within_promise(poly, settings, n, gen):
    """An approximate kernel's autograd gradients: within doc/training.md's
    promise of the exact gradients (float64 brute force), and within 1e-3 of
    the float64 gradients of the function it computes (each edge's exp(u)
    replaced by its Taylor polynomial of the degree --explain gives)."""
    k = polyattn.compile(poly, kernel="approx_grad", algorithm="approx", **settings)
    assert k.has_backward
    B = k.bound
    xs = [(2 * torch.rand(2, n, d.cols, generator=gen) - 1) * (B if d.kind == "factor" else 1)
          for d in k.inputs]
    g = torch.randn(2, n, k.value_dim, generator=gen)
    out, got = grads(k, xs, g, kernel_call)
    _, want = grads(k, [x.double() for x in xs], g, reference)
    bounds = promise_bounds(k, [x.double() for x in xs], g.double(), k.error)
    for a, w, bd, d in zip(got, want, bounds, k.inputs):
        slack = 1e-4 * max(w.abs().max().item(), 1e-6)
        excess = ((a.double() - w).abs() - bd - slack).max().item()
        assert excess <= 0, (d.name, excess)
    edges = edges_of(k)
    _, taylor_want = grads(k, [x.double() for x in xs], g,
                           lambda k, ys: attend(*weights(k, ys, edges), k.num_vars))
    errs = grad_errs(got, taylor_want)
    assert max(errs) < 1e-3, dict(zip([d.name for d in k.inputs], errs))


def test_approximate_gradient_over_the_bound(gen):
    """Over the bound the forward refuses (PA_ERR_BOUND): no gradient either."""
    k = polyattn.compile("x1*x2 + x2*x3 + x3*x1", kernel="approx_bound", head_dim=2,
                         value_dim=2, algorithm="approx", bound=0.5)
    xs = [(torch.rand(1, 4, d.cols, generator=gen) - 0.5).requires_grad_() for d in k.inputs]
    with torch.no_grad():
        xs[0][0, 1, 0] = 0.75
    with pytest.raises(polyattn.KernelError, match="PA_ERR_BOUND"):
        k(*xs).sum().backward()
