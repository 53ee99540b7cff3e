"""Shared pieces of the polyattn tests: an empty cache per test session,
and the definition of poly-attention by brute force in float64 (doc/design.md
and doc/training.md), which the kernels' outputs and gradients are compared with."""
import os
import shutil
import tempfile

import pytest
import torch

# Before polyattn compiles anything: a cache of this session's own, which
# the processes the tests spawn (DDP workers) share through the environment.
_OWN_CACHE = "POLYATTN_TEST_CACHE" not in os.environ
if _OWN_CACHE:
    os.environ["POLYATTN_TEST_CACHE"] = tempfile.mkdtemp(prefix="polyattn-test-cache-")
os.environ["XDG_CACHE_HOME"] = os.environ["POLYATTN_TEST_CACHE"]

import polyattn  # noqa: E402

# The polynomials every numerical test runs, with the settings they use.
POLYS = {
    "softmax": dict(poly="x1*x2", values=None),
    "tree": dict(poly="x1*x2 + x2*x3", values="x3"),
    "strassen": dict(poly="x1*x2 + x2*x3 + x3*x1", values=None),
    "tensor": dict(poly="x1*x2*x3", values=None),
}
TREES = ("softmax", "tree")


def compile_case(case, head_dim=4, value_dim=3, scale=0.5, **extra):
    """The kernel of POLYS[case] at small sizes."""
    c = POLYS[case]
    settings = dict(head_dim=head_dim, value_dim=value_dim, scale=scale, **extra)
    if c["values"]:
        settings["values"] = c["values"]
    return polyattn.compile(c["poly"], kernel=case, **settings)


def random_inputs(kernel, lead, n, generator=None, dtype=torch.float32, amp=1.0):
    """One tensor per kernel input, shaped lead + (n, cols)."""
    return [amp * torch.randn(*lead, n, d.cols, generator=generator, dtype=dtype)
            for d in kernel.inputs]


def reference(kernel, inputs, dtype=torch.float64):
    """out[ℓ1] = Σ_{ℓ2..ℓt} exp(s(ℓ)) u(ℓ) / Σ exp(s(ℓ)) over every tuple ℓ,
    with s(ℓ) = scale Σ_m c_m Σ_l Π_q F[m,q][ℓ_j(m,q), l] and u(ℓ) the
    entrywise product of the value rows; in float64 (or dtype),
    differentiable.

    inputs: tensors lead + (n, cols) in kernel.inputs order."""
    lead, n = inputs[0].shape[:-2], inputs[0].shape[-2]
    t = kernel.num_vars
    xs = [x.to(dtype).reshape(-1, n, x.shape[-1]) for x in inputs]
    b = xs[0].shape[0]

    def on_axis(x, j):               # row ℓ_j of x, broadcast over the others
        shape = [b] + [1] * t + [x.shape[-1]]
        shape[j] = n
        return x.reshape(shape)

    s = torch.zeros([b] + [1] * t, dtype=dtype)
    for m, c in enumerate(kernel.coefficients):
        prod = None
        for x, d in zip(xs, kernel.inputs):
            if d.kind == "factor" and d.monomial == m:
                v = on_axis(x, d.variable)
                prod = v if prod is None else prod * v
        s = s + c * prod.sum(-1)
    s = (kernel.scale * s).expand([b] + [n] * t)
    u = torch.ones(kernel.value_dim, dtype=dtype)
    for x, d in zip(xs, kernel.inputs):
        if d.kind == "value":
            u = u * on_axis(x, d.variable)
    logp = s - torch.logsumexp(s.reshape(b, n, -1), -1).reshape([b, n] + [1] * (t - 1))
    out = (logp.exp().unsqueeze(-1) * u).sum(dim=tuple(range(2, t + 1)))
    return out.reshape(*lead, n, kernel.value_dim)


def rel_err(got, want):
    """max |got − want| / max |want|."""
    got, want = got.detach().to(torch.float64), want.detach().to(torch.float64)
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()


@pytest.fixture
def gen():
    """A seeded generator, so every test draws the same inputs each run."""
    return torch.Generator().manual_seed(1234)


def pytest_sessionfinish(session, exitstatus):
    """Remove the session's cache (not one a parent process made)."""
    if _OWN_CACHE:
        shutil.rmtree(os.environ["POLYATTN_TEST_CACHE"], ignore_errors=True)
