"""Kernel outputs against the float64 brute force of the definition, for
softmax, tree, Strassen and 3-tensor attention; dtypes, layouts, NumPy."""
import numpy as np
import pytest
import torch

from conftest import POLYS, compile_case, random_inputs, reference, rel_err


@pytest.mark.parametrize("case", list(POLYS))
@pytest.mark.parametrize("lead,n", [((1,), 1), ((2, 3), 7), ((5,), 16)])
def test_forward_matches_definition(case, lead, n, gen):
    k = compile_case(case)
    xs = random_inputs(k, lead, n, gen)
    out = k(*xs)
    assert out.shape == (*lead, n, k.value_dim) and out.dtype == torch.float32
    assert rel_err(out, reference(k, xs)) < 1e-5


@pytest.mark.parametrize("case", list(POLYS))
def test_large_scores_stay_finite(case, gen):
    k = compile_case(case, scale=1.0)
    xs = random_inputs(k, (2,), 6, gen, amp=12.0)   # scores of 10^3 and more
    out = k(*xs)
    assert torch.isfinite(out).all()
    assert rel_err(out, reference(k, xs)) < 1e-4


def test_info(gen):
    k = compile_case("tree")
    assert (k.name, k.polynomial, k.graph_class) == ("tree", "x1*x2 + x2*x3", "tree")
    assert k.algorithm == "exact-tree"
    assert [d.name for d in k.inputs] == ["m0_x1", "m0_x2", "m1_x2", "m1_x3", "v3"]
    assert [d.kind for d in k.inputs] == ["factor"] * 4 + ["value"]
    assert [(d.monomial, d.variable, d.cols) for d in k.inputs] == [
        (0, 1, 4), (0, 2, 4), (1, 2, 4), (1, 3, 4), (-1, 3, 3)]
    assert (k.head_dim, k.value_dim, k.scale, k.coefficients) == (4, 3, 0.5, (1.0, 1.0))
    assert k.explain.startswith("kernel tree\npolynomial: x1*x2 + x2*x3\n")
    assert "class: tree" in k.explain and "plan: exact-tree" in k.explain
    assert compile_case("strassen").graph_class == "cyclic"
    assert compile_case("tensor").graph_class == "high-degree"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_float_dtypes_convert_and_back(dtype, gen):
    k = compile_case("tree")
    xs = random_inputs(k, (2,), 5, gen)
    out = k(*[x.to(dtype) for x in xs])
    assert out.dtype == dtype
    want = reference(k, [x.to(dtype) for x in xs])
    assert rel_err(out, want) < {torch.float64: 1e-5}.get(dtype, 1e-2)


def test_non_contiguous_inputs(gen):
    k = compile_case("softmax")
    # (batch, n, heads, d) projections viewed as (batch, heads, n, d)
    xs = [torch.randn(2, 9, 3, d.cols, generator=gen).transpose(1, 2) for d in k.inputs]
    assert not xs[0].is_contiguous()
    out = k(*xs)
    assert out.shape == (2, 3, 9, k.value_dim)
    assert rel_err(out, reference(k, xs)) < 1e-5


def test_empty_batch():
    k = compile_case("softmax")
    xs = [torch.zeros(0, 4, d.cols) for d in k.inputs]
    assert k(*xs).shape == (0, 4, k.value_dim)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy(dtype, gen):
    k = compile_case("tree")
    xs = random_inputs(k, (3,), 6, gen)
    out = k(*[x.numpy().astype(dtype) for x in xs])
    assert isinstance(out, np.ndarray) and out.dtype == dtype
    assert out.shape == (3, 6, k.value_dim)
    assert rel_err(torch.from_numpy(out), reference(k, xs)) < 1e-5


def test_kernel_from_file_and_source_text(tmp_path, gen):
    f = tmp_path / "two.poly"
    f.write_text("kernel a { poly = x1*x2; head_dim = 4; value_dim = 3; }\n"
                 "kernel b { poly = x1*x2 + x2*x3; head_dim = 4; value_dim = 3; }\n")
    import polyattn
    both = polyattn.compile_all(str(f))
    assert list(both) == ["a", "b"]
    b = polyattn.compile(f, kernel="b")
    assert b.polynomial == "x1*x2 + x2*x3" and b.inputs[-1].name == "v3"
    with pytest.raises(ValueError, match="name one with kernel="):
        polyattn.compile(str(f))
    src = polyattn.compile("kernel c { poly = x1*x2; head_dim = 2; value_dim = 2; }")
    assert src.name == "c" and src.head_dim == 2
    xs = random_inputs(both["a"], (1,), 5, gen)
    assert rel_err(both["a"](*xs), reference(both["a"], xs)) < 1e-5


def test_approximate_kernel_promise_and_bound(gen):
    import polyattn
    k = polyattn.compile("x1*x2 + x2*x3 + x3*x1", kernel="strassen_approx", head_dim=2,
                         value_dim=2, algorithm="approx", bound=0.5)
    assert k.algorithm == "approx" and k.bound == 0.5 and 0 < k.error < 1e-3
    xs = [torch.rand(2, 7, d.cols, generator=gen) - 0.5 for d in k.inputs]
    vmax = max(x.abs().max() for x, d in zip(xs, k.inputs) if d.kind == "value") ** 2
    promise = 2 * k.error / (1 - k.error) * vmax          # README: the promise
    assert (k(*xs).double() - reference(k, xs)).abs().max() < promise + 1e-6
    xs[0][1, 2, 0] = 0.75
    with pytest.raises(polyattn.KernelError, match="PA_ERR_BOUND") as e:
        k(*xs)
    assert e.value.status == -4


def test_kernels_pickle_and_deepcopy(gen):
    import copy
    import pickle
    import polyattn
    k = compile_case("tree")
    k2 = pickle.loads(pickle.dumps(k))
    assert k2.path == k.path and k2.name == k.name
    layer = polyattn.PolyAttention(8, heads=2, poly="x1*x2")
    clone = copy.deepcopy(layer)
    x = torch.randn(2, 5, 8, generator=gen)
    assert torch.equal(clone(x), layer(x))
    assert torch.equal(pickle.loads(pickle.dumps(layer))(x), layer(x))
