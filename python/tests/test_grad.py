"""Gradients of the kernels (K_info.backward through autograd) against
the float64 brute force's, and the brute force against finite
differences."""
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


def test_no_silent_double_backward(gen):
    k = compile_case("softmax")
    xs = [x.requires_grad_() for x in random_inputs(k, (1,), 4, gen)]
    g = torch.autograd.grad(k(*xs).square().sum(), xs[0], create_graph=True)[0]
    with pytest.raises(RuntimeError):
        g.sum().backward()
