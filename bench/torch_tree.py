"""What a PyTorch user would write for the kernels bench_tree.c times.

x1*x2 is torch's fused scaled_dot_product_attention (scale 1, as polyc's
kernel), and with mask = causal the same with is_causal=True.  Trees are
the O(n^2) formulation with matrix products and max-subtraction: each
message is softmax(Q K^T + key bias) V together with its log-normalizer,
children before parents; a causal tree adds -inf above the diagonal.  Prints "kernel n seconds"
lines (median of runs), the same inputs' shapes as bench_tree.c.

Decoding (decode_q1, decode_q64): scaled_dot_product_attention of nq
queries against nk = 4096 keys with the causal mask aligned bottom-right
(query row i at position i + nk - nq, as K_call places it), an explicit
boolean mask; n in the output is nk.  --decode prints these rows alone.
"""
import statistics
import sys
import time

import torch

D = 64


def message(q, k, v, key_bias=None, mask=None):
    """softmax(q k^T + key_bias + mask) v and the log-normalizer of every row."""
    s = q @ k.T
    if key_bias is not None:
        s = s + key_bias
    if mask is not None:
        s = s + mask
    m = s.amax(dim=1, keepdim=True)
    p = torch.exp(s - m)
    z = p.sum(dim=1, keepdim=True)
    return (p @ v) / z, (m + torch.log(z)).squeeze(1)


def attn(x):
    q, k, v = x[0][None, None], x[1][None, None], x[2][None, None]
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=1.0)


def attn_causal(x):
    q, k, v = x[0][None, None], x[1][None, None], x[2][None, None]
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=1.0, is_causal=True)


def causal(n):
    """0 where a key position is <= the query's, -inf above the diagonal."""
    return torch.full((n, n), float("-inf")).triu(1)


def path2_causal(x):
    mask = causal(x[0].shape[0])
    o3, l3 = message(x[2], x[3], x[5], mask=mask)
    o2, _ = message(x[0], x[1], x[4] * o3, l3, mask)
    return o2


def path2(x):
    # inputs: m0_x1 m0_x2 m1_x2 m1_x3 v2 v3
    o3, l3 = message(x[2], x[3], x[5])
    o2, _ = message(x[0], x[1], x[4] * o3, l3)
    return o2


def path3(x):
    # inputs: m0_x1 m0_x2 m1_x2 m1_x3 m2_x3 m2_x4 v2 v3 v4
    o4, l4 = message(x[4], x[5], x[8])
    o3, l3 = message(x[2], x[3], x[7] * o4, l4)
    o2, _ = message(x[0], x[1], x[6] * o3, l3)
    return o2


def star(x):
    # inputs: m0_x1 m0_x2 m1_x1 m1_x3 m2_x1 m2_x4 v2 v3 v4
    o2, _ = message(x[0], x[1], x[6])
    o3, _ = message(x[2], x[3], x[7])
    o4, _ = message(x[4], x[5], x[8])
    return o2 * o3 * o4


KERNELS = [("attn", attn, 3, None), ("path2", path2, 6, None), ("path3", path3, 9, None),
           ("star", star, 9, None), ("attn_causal", attn_causal, 3, 4096),
           ("path2_causal", path2_causal, 6, 4096)]


def decode(nq, nk):
    """Median seconds of SDPA for nq queries against nk causal keys."""
    q = (torch.rand(1, 1, nq, D) - 0.5)
    k = (torch.rand(1, 1, nk, D) - 0.5)
    v = (torch.rand(1, 1, nk, D) - 0.5)
    rows = torch.arange(nq)[:, None] + (nk - nq)
    mask = torch.arange(nk)[None, :] <= rows  # True: the key is seen
    fn = lambda: torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, scale=1.0)
    fn()
    times = []
    for _ in range(14):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    torch.set_grad_enabled(False)
    # --decode: the decoding rows alone
    for name, fn, inputs, only_n in [] if "--decode" in sys.argv else KERNELS:
        for n in (only_n,) if only_n else (1024, 4096, 16384):
            x = [torch.rand(n, D) - 0.5 for _ in range(inputs)]
            fn(x)
            times = []
            for _ in range(3 if n >= 16384 else 7):
                t = time.perf_counter()
                fn(x)
                times.append(time.perf_counter() - t)
            print(f"{name}\t{n}\t{statistics.median(times):.6f}")
            sys.stdout.flush()
    for nq in (1, 64):
        print(f"decode_q{nq}\t4096\t{decode(nq, 4096):.6f}")


if __name__ == "__main__":
    main()
