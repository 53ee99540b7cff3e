"""PyTorch autograd for the kernels bench_backward.c trains.

x1*x2 is torch's fused scaled_dot_product_attention.  The path x1*x2 +
x2*x3 (values on x3) is the O(n^2) matmul formulation, children before
parents: the message m23 = softmax(q2 k3^T * scale) v3 with its
log-normalizer L23 = logsumexp(q2 k3^T * scale), then out =
softmax(q1 k2^T * scale + L23^T) m23 (the child's log-normalizer is a key
bias of the parent's scores).  Two chained SDPA calls would compute the
same forward but the wrong gradients: SDPA does not propagate the
gradient of its log-normalizer.

Strassen x1*x2 + x2*x3 + x3*x1 and 3-tensor x1*x2*x3 (values on x2 and
x3, batch 1) are their einsum formulation: the n x n x n score tensor
materialized, a softmax over its last two axes, and an einsum with both
value matrices for the output.

usage: torch_backward.py            time: "kernel n fwd fwd+bwd" lines
                                    (median seconds, batch 4, float32)
       torch_backward.py --general  the same for Strassen and 3-tensor
                                    (batch 1; 3 rounds; n = 1024 of
                                    Strassen left out: one n^3 tensor is
                                    4.3 GB, autograd keeps several and
                                    their gradients, on a 23 GB machine)
       torch_backward.py --check DIR
           compare polyc's out and gradients (bench_backward --dump DIR)
           with autograd's; prints the relative max error of each,
           max |polyc - torch| / max |torch|, and flags any over 1e-3.
"""
import os
import statistics
import sys
import time

import numpy as np
import torch

B, D, SCALE = 4, 64, 0.125
TOL = 1e-3
# Shapes timed (16384: polyc only, see LONG_CHECK) and the inputs' names.
SHAPES = [("attn", 1024), ("attn", 4096), ("path2", 1024), ("path2", 4096)]
INPUTS = {"attn": ["m0_x1", "m0_x2", "v2"],
          "path2": ["m0_x1", "m0_x2", "m1_x2", "m1_x3", "v3"],
          "strassen": ["m0_x1", "m0_x2", "m1_x2", "m1_x3", "m2_x3", "m2_x1", "v2", "v3"],
          "tensor3": ["m0_x1", "m0_x2", "m0_x3", "v2", "v3"]}
# The elimination kernels: timed (batch 1), and checked at their first n.
GENERAL = [("strassen", 256), ("strassen", 512), ("tensor3", 128), ("tensor3", 256),
           ("tensor3", 512)]
GENERAL_CHECK = [("strassen", 256), ("tensor3", 128)]
# At n = 16384 one n x n float matrix of the batch is 4.3 GB and autograd
# keeps several (more than this machine's 23 GB): nothing is timed, and
# batch entry 0 is checked by path2_by_blocks.
LONG_CHECK = ("path2", 16384)


def attn(q, k, v):
    """Softmax attention, torch's fused kernel."""
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=SCALE)


def path2(q1, k2, q2, k3, v3):
    """The 2-edge path: out = softmax(q1 k2^T s + L23^T) m23."""
    s23 = (q2 @ k3.mT) * SCALE
    l23 = torch.logsumexp(s23, dim=-1)
    m23 = torch.softmax(s23, dim=-1) @ v3
    s12 = (q1 @ k2.mT) * SCALE + l23.unsqueeze(-2)
    return torch.softmax(s12, dim=-1) @ m23


def cubic(s, v2, v3):
    """out[i] = sum_jk softmax(s[i])[j, k] v2[j] * v3[k]."""
    b, n = s.shape[0], s.shape[1]
    p = torch.softmax(s.reshape(b, n, n * n), dim=-1).reshape(b, n, n, n)
    return torch.einsum("bijk,bjc,bkc->bic", p, v2, v3)


def strassen(q1, k2, q2, k3, q3, k1, v2, v3):
    """Strassen attention: s[i, j, k] = (q1_i k2_j + q2_j k3_k + q3_k k1_i) s."""
    s12, s23, s31 = q1 @ k2.mT, q2 @ k3.mT, q3 @ k1.mT
    s = (s12[..., :, :, None] + s23[..., None, :, :] + s31.mT[..., :, None, :]) * SCALE
    return cubic(s, v2, v3)


def tensor3(q1, q2, q3, v2, v3):
    """3-tensor attention: s[i, j, k] = sum_l q1_il q2_jl q3_kl s."""
    return cubic(torch.einsum("bil,bjl,bkl->bijk", q1, q2, q3) * SCALE, v2, v3)


KERNELS = {"attn": attn, "path2": path2, "strassen": strassen, "tensor3": tensor3}


def path2_by_blocks(x, gout, rows=2048):
    """out and the gradients of path2, autograd on blocks of rows so that
    no n x n matrix is held: m23 and L23 first, without a graph, made
    leaves; each block of q1's rows back to q1, k2, L23 and m23; then each
    block of q2's rows back to q2, k3 and v3 from the gradients L23 and m23
    received.  The formulas of path2, the chain rule split at the message."""
    q1, k2, q2, k3, v3 = [t.detach().requires_grad_() for t in x]
    n = q1.shape[-2]
    with torch.no_grad():
        s = [(q2[..., i:i + rows, :] @ k3.mT) * SCALE for i in range(0, n, rows)]
        l23 = torch.cat([torch.logsumexp(si, dim=-1) for si in s], -1).requires_grad_()
        m23 = torch.cat([torch.softmax(si, dim=-1) @ v3 for si in s], -2).requires_grad_()
        del s
    out = []
    for i in range(0, n, rows):
        s12 = (q1[..., i:i + rows, :] @ k2.mT) * SCALE + l23.unsqueeze(-2)
        o = torch.softmax(s12, dim=-1) @ m23
        o.backward(gout[..., i:i + rows, :])
        out.append(o.detach())
    for i in range(0, n, rows):
        s23 = (q2[..., i:i + rows, :] @ k3.mT) * SCALE
        l, m = torch.logsumexp(s23, dim=-1), torch.softmax(s23, dim=-1) @ v3
        torch.autograd.backward([l, m], [l23.grad[..., i:i + rows],
                                         m23.grad[..., i:i + rows, :]])
    return torch.cat(out, -2), [q1.grad, k2.grad, q2.grad, k3.grad, v3.grad]


def grads(name, x, gout):
    """out and the gradients of <out, gout> with respect to every input."""
    x = [t.detach().requires_grad_() for t in x]
    out = KERNELS[name](*x)
    out.backward(gout)
    return out.detach(), [t.grad for t in x]


def rel(a, b):
    """max |a - b| / max |b|, in double precision."""
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / b.abs().max()).item()


def load(path, n, batch, dumped=B):
    """The first batch entries of a dumped (dumped) x n x cols tensor."""
    x = torch.from_numpy(np.fromfile(path, dtype=np.float32))
    return x.reshape(dumped, n, -1)[:batch].contiguous()


def check_shape(d, name, n, batch, dumped=B):
    """Print one shape's errors; returns how many exceed TOL."""
    f = lambda what: load(os.path.join(d, f"{name}_{n}_{what}.f32"), n, batch, dumped)
    names = INPUTS[name]
    x, gout = [f(i) for i in names], f("gout")
    if (name, n) == LONG_CHECK:
        out, g = path2_by_blocks(x, gout)
    else:
        out, g = grads(name, x, gout)
    errs = [("out", rel(f("out"), out))]
    errs += [("d" + i, rel(f("d" + i), gi)) for i, gi in zip(names, g)]
    bad = [e for e in errs if not e[1] <= TOL]
    note = f" (batch entry 0 of {B}, by blocks of rows)" if batch < dumped else ""
    print(f"{name:6s} {n:6d}  " + "  ".join(f"{k} {v:.1e}" for k, v in errs)
          + ("  ok" if not bad else f"  OVER {TOL:g}: " + ", ".join(k for k, _ in bad))
          + note)
    sys.stdout.flush()
    return len(bad)


def check(d):
    """Every shape's check; returns the number of errors over TOL."""
    print(f"gradient check: polyc against PyTorch {torch.__version__} autograd, "
          f"float32, relative max error = max|polyc - torch| / max|torch|")
    bad = sum(check_shape(d, name, n, B) for name, n in SHAPES)
    bad += check_shape(d, *LONG_CHECK, 1)
    bad += sum(check_shape(d, name, n, 1, 1) for name, n in GENERAL_CHECK)
    return bad


def median_times(name, n, reps, warm, batch=B):
    """Median seconds of the forward and of forward + backward over reps
    rounds, after a round to warm up if warm."""
    gen = torch.Generator().manual_seed(12345)
    x = [torch.randn(batch, n, D, generator=gen).requires_grad_() for _ in INPUTS[name]]
    gout = torch.randn(batch, n, D, generator=gen)
    fn = KERNELS[name]
    fwd, both = [], []
    for r in range(-1 if warm else 0, reps):
        with torch.no_grad():
            t = time.perf_counter()
            fn(*x)
            t1 = time.perf_counter() - t
        t = time.perf_counter()
        fn(*x).backward(gout)
        t2 = time.perf_counter() - t
        for xi in x:
            xi.grad = None
        if r >= 0:
            fwd.append(t1), both.append(t2)
    return statistics.median(fwd), statistics.median(both)


def main():
    torch.set_num_threads(2)
    if len(sys.argv) > 2 and sys.argv[1] == "--check":
        sys.exit(1 if check(sys.argv[2]) else 0)
    if len(sys.argv) > 1 and sys.argv[1] == "--general":
        for i, (name, n) in enumerate(GENERAL):
            f, fb = median_times(name, n, 3, warm=i == 0 or GENERAL[i - 1][0] != name, batch=1)
            print(f"{name}\t{n}\t{f:.6f}\t{fb:.6f}")
            sys.stdout.flush()
        return
    for name, n in SHAPES:
        # A round of path2 at 4096 takes seconds; the first length of each
        # kernel warms it up for the next.
        reps = 7 if n <= 1024 else 5 if name == "attn" else 3
        f, fb = median_times(name, n, reps, warm=n <= 1024)
        print(f"{name}\t{n}\t{f:.6f}\t{fb:.6f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
