"""Before any training: every kernel paper.py uses against the float64
brute force of poly-attention's definition, outputs and (where the
kernel has a backward) gradients, at small n.

A wrong gradient can still learn, so accuracy alone proves nothing;
check() raises SystemExit naming the kernel and input that disagree.
The brute force is the definition itself (doc/training.md §1), written
out over all n^t tuples: it is the test's oracle, not the model's
attention, which is always the compiled kernel.
"""
import torch

import polyattn

OUT_TOL, GRAD_TOL = 1e-5, 1e-4


def brute_force(kernel: polyattn.Kernel, inputs):
    """out[b, ℓ1] = Σ_{ℓ2..ℓt} softmax(s)(ℓ) · ⊙_{j ∈ values} V[j][ℓj], with
    s(ℓ) = scale Σ_m c_m Σ_l Π_q F[m,q][ℓ_{j(m,q)}, l]; float64, over every
    tuple.  inputs: (batch, n, cols) tensors in kernel.inputs order."""
    t, (b, n) = kernel.num_vars, inputs[0].shape[:2]

    def on_axis(x, j):           # x's rows along tuple axis j (1-based)
        shape = [b] + [1] * t + [x.shape[-1]]
        shape[j] = n
        return x.double().reshape(shape)

    score = torch.zeros([b] + [1] * t, dtype=torch.float64)
    for m, c in enumerate(kernel.coefficients):
        prod = 1.0
        for x, d in zip(inputs, kernel.inputs):
            if d.kind == "factor" and d.monomial == m:
                prod = prod * on_axis(x, d.variable)
        score = score + c * prod.sum(-1)
    score = (kernel.scale * score).expand([b] + [n] * t).reshape(b, n, -1)
    p = torch.softmax(score, -1).reshape([b] + [n] * t + [1])
    u = 1.0
    for x, d in zip(inputs, kernel.inputs):
        if d.kind == "value":
            u = u * on_axis(x, d.variable)
    return (p * u).sum(dim=tuple(range(2, t + 1)))


def _err(got, want):
    return ((got.double() - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()


def check_kernel(label: str, kernel: polyattn.Kernel, n: int, gen: torch.Generator) -> str:
    """One kernel at batch 3 and n: a line of its worst errors, or SystemExit."""
    xs = [torch.randn(3, n, d.cols, generator=gen, requires_grad=True) for d in kernel.inputs]
    g = torch.randn(3, n, kernel.value_dim, generator=gen)
    ref_in = [x.detach().double().requires_grad_() for x in xs]
    want = brute_force(kernel, ref_in)
    out_err = _err(kernel(*xs).detach(), want.detach())
    if out_err > OUT_TOL:
        raise SystemExit(f"gradcheck: {label}: output off the brute force by {out_err:.2e}")
    if not kernel.has_backward:
        try:
            kernel(*xs).backward(g)
        except NotImplementedError:
            return f"{label:<34} n={n}  output {out_err:.1e}  (forward only: no backward yet)"
        raise SystemExit(f"gradcheck: {label}: has_backward is false but backward ran")
    got = torch.autograd.grad((kernel(*xs) * g).sum(), xs)
    ref = torch.autograd.grad((want * g.double()).sum(), ref_in)
    errs = {d.name: _err(a, r) for d, a, r in zip(kernel.inputs, got, ref)}
    worst = max(errs, key=errs.get)
    if errs[worst] > GRAD_TOL:
        raise SystemExit(f"gradcheck: {label}: gradient of {worst} off the brute force "
                         f"by {errs[worst]:.2e} (all: {errs})")
    return (f"{label:<34} n={n}  output {out_err:.1e}  worst gradient "
            f"{errs[worst]:.1e} ({worst})")


def check(kernels: dict, n_for=lambda k: 6 if k.num_vars <= 3 else 4) -> list:
    """Every kernel of {label: Kernel}; the lines of errors."""
    gen = torch.Generator().manual_seed(0)
    return [check_kernel(label, k, n_for(k), gen) for label, k in kernels.items()]
