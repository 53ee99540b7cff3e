"""The extended call (K_call) from Python: key lengths (ragged batches, key
padding), fewer query rows than key rows (cross-attention, decoding),
strided tensors read in place; forward, backward and torch.compile,
against the float64 definition of conftest.reference on each entry."""
import pytest
import torch

import polyattn
from polyattn import _op
from conftest import compile_case, reference, rel_err


def bnhd_inputs(k, b, h, n, gen, nq=None, requires_grad=False):
    """Per input a (b, n, h, cols) tensor seen as (b, h, n, cols), the
    layout a projection makes, not contiguous; x1's with nq rows."""
    xs = []
    for d in k.inputs:
        rows = nq if (nq is not None and d.variable == 1) else n
        x = torch.randn(b, rows, h, d.cols, generator=gen).transpose(1, 2)
        xs.append(x.requires_grad_(requires_grad))
    return xs


def entry_reference(k, xs, b, klen, qlen):
    """Entry b's out by the definition: its first klen key rows, its first
    qlen query rows placed at positions klen - qlen ...; differentiable."""
    ins = []
    for x, d in zip(xs, k.inputs):
        e = x[b]
        if d.variable == 1:
            q = e[..., :qlen, :]
            pad = q.new_zeros(q.shape[:-2] + (klen - qlen, q.shape[-1]))
            ins.append(torch.cat([pad, q], -2))
        else:
            ins.append(e[..., :klen, :])
    return reference(k, ins)[..., klen - qlen:, :]


@pytest.mark.parametrize("case", ["softmax", "tree", "strassen"])
def test_lengths_forward_backward(case, gen):
    k = compile_case(case)
    lengths = [7, 3, 1]
    xs = bnhd_inputs(k, 3, 2, 7, gen, requires_grad=True)
    assert all(not x.is_contiguous() and _op.layout_of(x) is not None for x in xs)
    out = k(*xs, lengths=lengths)
    assert out.shape == (3, 2, 7, k.value_dim)
    w = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    refs = [entry_reference(k, xs, b, n, n) for b, n in enumerate(lengths)]
    for b, n in enumerate(lengths):
        assert rel_err(out[b, :, :n], refs[b]) < 1e-5
        assert torch.all(out[b, :, n:] == 0)
    (out.double() * w).sum().backward()
    got = [x.grad.clone() for x in xs]
    for x in xs:
        x.grad = None
    sum((r * w[b, :, :n]).sum() for b, (r, n) in enumerate(zip(refs, lengths))).backward()
    for g, x in zip(got, xs):
        assert rel_err(g, x.grad) < 1e-4
        for b, n in enumerate(lengths):
            assert torch.all(g[b, :, n:] == 0)


@pytest.mark.parametrize("nq", [1, 3])
def test_cross_attention(nq, gen):
    k = compile_case("tree")
    xs = bnhd_inputs(k, 2, 2, 6, gen, nq=nq, requires_grad=True)
    out = k(*xs, lengths=torch.tensor([6, 4]))
    assert out.shape == (2, 2, nq, k.value_dim)
    refs = [entry_reference(k, xs, b, n, nq) for b, n in enumerate([6, 4])]
    for b in range(2):
        assert rel_err(out[b], refs[b]) < 1e-5
    w = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    (out.double() * w).sum().backward()
    got = [x.grad.clone() for x in xs]
    for x in xs:
        x.grad = None
    sum((r * w[b]).sum() for b, r in enumerate(refs)).backward()
    for g, x in zip(got, xs):
        assert rel_err(g, x.grad) < 1e-4


def test_q_lengths(gen):
    k = compile_case("softmax")
    xs = bnhd_inputs(k, 2, 1, 5, gen)
    out = k(*xs, lengths=[5, 4], q_lengths=[2, 4])
    for b, (n, q) in enumerate([(5, 2), (4, 4)]):
        assert rel_err(out[b, :, :q], entry_reference(k, xs, b, n, q)) < 1e-5
        assert torch.all(out[b, :, q:] == 0)


def test_strided_in_place_matches_contiguous(gen):
    k = compile_case("tree")
    xs = bnhd_inputs(k, 2, 3, 9, gen)
    got = k(*xs)
    want = k(*[x.contiguous() for x in xs])
    assert torch.equal(got, want)


def test_compiled_lengths_and_cross_attention(gen):
    k = compile_case("tree")
    xs = bnhd_inputs(k, 2, 2, 6, gen, nq=2)
    lengths = torch.tensor([6, 3])
    w = torch.randn(2, 2, 2, k.value_dim, generator=gen)

    def loss(*xs):
        return (k(*xs, lengths=lengths) * w).square().sum()
    cl = torch.compile(loss, fullgraph=True)
    a = [x.detach().clone().requires_grad_() for x in xs]
    b = [x.detach().clone().requires_grad_() for x in xs]
    la, lb = loss(*a), cl(*b)
    la.backward()
    lb.backward()
    assert rel_err(lb, la) < 1e-6
    for x, y in zip(a, b):
        assert rel_err(y.grad, x.grad) < 1e-6


def test_call_errors(gen):
    k = compile_case("softmax")
    xs = bnhd_inputs(k, 2, 1, 4, gen, nq=5)
    with pytest.raises(ValueError, match="more than the 4"):
        k(*xs)
    xs = bnhd_inputs(k, 2, 1, 4, gen)
    with pytest.raises(ValueError, match="lengths has 3 entries"):
        k(*xs, lengths=[1, 2, 3])
    with pytest.raises(polyattn.KernelError, match="PA_ERR_ARGUMENT"):
        k(*xs, lengths=[5, 1])
    with pytest.raises(polyattn.KernelError, match="PA_ERR_ARGUMENT"):
        k(*[x.detach().clone().requires_grad_() for x in xs], lengths=[5, 1])
    with pytest.raises(TypeError, match="NumPy"):
        k(*[x.contiguous().numpy() for x in xs], lengths=[1, 1])


def test_module_lengths_and_context(gen):
    torch.manual_seed(0)
    layer = polyattn.PolyAttention(16, heads=2, poly="x1*x2 + x2*x3", values="x3")
    x = torch.randn(2, 5, 16, generator=gen)
    y = layer(x, lengths=[5, 3])
    want = layer(x[1:, :3])                  # entry 1 alone, its 3 rows
    assert rel_err(y[1, :3], want[0]) < 1e-5
    assert rel_err(y[0], layer(x[:1])[0]) < 1e-5
    ctx = torch.randn(2, 7, 16, generator=gen, requires_grad=True)
    q = torch.randn(2, 2, 16, generator=gen, requires_grad=True)
    z = layer(q, context=ctx)
    assert z.shape == (2, 2, 16)
    # the same as self-attention over the context with x1's rows replaced
    full = torch.cat([ctx[:, :5], q], 1)
    ins = []
    for d in layer.kernel.inputs:
        src = full if d.variable == 1 else ctx
        ins.append(layer.proj[d.name](src).view(2, 7, 2, d.cols).transpose(1, 2))
    w = layer.kernel(*ins)[:, :, 5:]
    assert rel_err(z, layer.out(w.transpose(1, 2).reshape(2, 2, -1))) < 1e-5
    z.square().sum().backward()
    assert q.grad is not None and ctx.grad is not None


def test_call_operators_opcheck(gen):
    """torch.library.opcheck: schema, fake implementation, autograd
    registration and AOT dispatch (outputs compared, saved included),
    on strided inputs with lengths and fewer queries."""
    k = compile_case("tree")
    xs = bnhd_inputs(k, 2, 3, 5, gen, nq=2)
    k(*xs)                                   # registers the kernel
    L = torch.tensor([5, 3])
    torch.library.opcheck(torch.ops.polyattn.call_forward.default, (k._key, xs, L, None))
    ys = [x.detach().requires_grad_() for x in xs]
    torch.library.opcheck(torch.ops.polyattn.call_train.default, (k._key, ys, L, None))
