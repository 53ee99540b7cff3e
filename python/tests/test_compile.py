"""torch.compile(fullgraph=True) through the polyattn operators: the same
outputs and gradients as eager."""
import torch

import polyattn
from conftest import compile_case, random_inputs, rel_err


def test_compiled_forward_matches_eager(gen):
    k = compile_case("tree")
    xs = random_inputs(k, (2, 3), 6, gen)

    def f(*xs):
        return (k(*xs) * 2.0).tanh()
    cf = torch.compile(f, fullgraph=True)
    with torch.no_grad():
        assert rel_err(cf(*xs), f(*xs)) < 1e-6
        # another n: a recompile (or a dynamic shape), still right
        ys = random_inputs(k, (2, 3), 9, gen)
        assert rel_err(cf(*ys), f(*ys)) < 1e-6


def test_compiled_forward_backward_matches_eager(gen):
    k = compile_case("tree")
    xs = random_inputs(k, (4,), 7, gen)
    w = torch.randn(4, 7, k.value_dim, generator=gen)

    def loss(*xs):
        return (k(*xs) * w).square().sum()
    cl = torch.compile(loss, fullgraph=True)
    a = [x.clone().requires_grad_() for x in xs]
    b = [x.clone().requires_grad_() for x in xs]
    la, lb = loss(*a), cl(*b)
    la.backward()
    lb.backward()
    assert rel_err(lb, la) < 1e-6
    for x, y in zip(a, b):
        assert rel_err(y.grad, x.grad) < 1e-6


def test_compiled_module(gen):
    torch.manual_seed(0)
    layer = polyattn.PolyAttention(16, heads=2, poly="x1*x2 + x2*x3", values="x3")
    x = torch.randn(3, 5, 16, generator=gen, requires_grad=True)
    cl = torch.compile(layer, fullgraph=True)
    y_eager, y_comp = layer(x), cl(x)
    assert rel_err(y_comp, y_eager) < 1e-6
    g_eager = torch.autograd.grad(y_eager.square().sum(), [x, *layer.parameters()])
    g_comp = torch.autograd.grad(y_comp.square().sum(), [x, *layer.parameters()])
    for p, q in zip(g_eager, g_comp):
        assert rel_err(q, p) < 1e-5


def test_compiled_forward_of_general_kernels(gen):
    for case in ("strassen", "tensor"):
        k = compile_case(case)
        xs = random_inputs(k, (2,), 5, gen)
        with torch.no_grad():
            assert rel_err(torch.compile(k, fullgraph=True)(*xs), k(*xs)) < 1e-6


def test_compiled_with_dynamic_shapes(gen):
    """dynamic=True: n is symbolic, and so is the size of `saved`."""
    k = compile_case("tree")

    def loss(*xs):
        return k(*xs).square().sum()
    cl = torch.compile(loss, fullgraph=True, dynamic=True)
    for n in (5, 8):
        xs = [x.requires_grad_() for x in random_inputs(k, (2,), n, gen)]
        ys = [x.detach().clone().requires_grad_() for x in xs]
        la, lb = loss(*xs), cl(*ys)
        la.backward()
        lb.backward()
        assert rel_err(lb, la) < 1e-6
        for x, y in zip(xs, ys):
            assert rel_err(y.grad, x.grad) < 1e-6
