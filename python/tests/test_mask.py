"""A causal kernel (mask="causal", doc/design.md "Masks") against the
float64 brute force with the tuples the mask rules out left out: output
and gradients."""
import torch

import polyattn
from conftest import random_inputs, rel_err


def causal_reference(kernel, xs):
    """x1*x2 + x2*x3 (values x3) by brute force in float64, over the
    tuples with l3 <= l2 <= l1 only; differentiable."""
    q1, k2, q2, k3, v3 = [x.double() for x in xs]
    n = q1.shape[-2]
    s = kernel.scale * (torch.einsum("...id,...jd->...ij", q1, k2)[..., :, :, None]
                        + torch.einsum("...jd,...kd->...jk", q2, k3)[..., None, :, :])
    pos = torch.arange(n)
    allowed = (pos[None, :, None] <= pos[:, None, None]) & (pos[None, None, :] <= pos[None, :, None])
    s = s.masked_fill(~allowed, float("-inf"))
    p = torch.softmax(s.reshape(*s.shape[:-2], -1), -1).reshape(s.shape)
    return torch.einsum("...ijk,...kc->...ic", p, v3)


def test_causal_output_and_gradients(gen):
    k = polyattn.compile("x1*x2 + x2*x3", kernel="causal", head_dim=4, value_dim=3,
                         values="x3", scale=0.5, mask="causal")
    plain = polyattn.compile("x1*x2 + x2*x3", kernel="plain", head_dim=4, value_dim=3,
                             values="x3", scale=0.5)
    xs = [x.requires_grad_() for x in random_inputs(k, (2,), 9, gen)]
    out = k(*xs)
    want = causal_reference(k, xs)
    assert rel_err(out, want) < 1e-5
    assert rel_err(plain(*xs), want) > 1e-2      # the mask changes the output
    g = torch.randn(out.shape, generator=gen)
    got = torch.autograd.grad((out * g).sum(), xs)
    ref = torch.autograd.grad((want * g.double()).sum(), xs)
    for a, b in zip(got, ref):
        assert rel_err(a, b) < 1e-4


def test_causal_decoding_with_lengths(gen):
    """Fewer queries than keys under a causal mask: query row i of an entry
    of key length L sits at position L − nq + i (bottom-right, as
    FlashAttention aligns decoding), so it sees the keys up to there."""
    k = polyattn.compile("x1*x2 + x2*x3", kernel="causal_dec", head_dim=4, value_dim=3,
                         values="x3", scale=0.5, mask="causal")
    nq, nk, lengths = 3, 9, [9, 5]
    full = random_inputs(k, (2,), nk, gen)           # x1's rows at every position
    q1 = torch.stack([full[0][b, L - nq:L] for b, L in enumerate(lengths)])
    xs = [q1.requires_grad_()] + [x.clone().requires_grad_() for x in full[1:]]
    out = k(*xs, lengths=lengths)
    g = torch.randn(out.shape, generator=gen)
    got = torch.autograd.grad((out * g).sum(), xs)
    for b, L in enumerate(lengths):
        ref_in = [x[b, :L].detach().requires_grad_() for x in full]
        want = causal_reference(k, ref_in)[L - nq:L]
        assert rel_err(out[b], want) < 1e-5
        ref = torch.autograd.grad((want * g[b].double()).sum(), ref_in)
        assert rel_err(got[0][b], ref[0][L - nq:L]) < 1e-4
        for a, r in zip(got[1:], ref[1:]):
            assert rel_err(a[b, :L], r) < 1e-4
            assert torch.all(a[b, L:] == 0)
