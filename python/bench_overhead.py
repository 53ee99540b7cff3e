"""bench_overhead.py - what calling a kernel from Python costs over the
bare C kernel: x1*x2 (head_dim = value_dim = 64), batch 1, n = 64.

Prints the median time per call of
  bare C:   the kernel's entry point through ctypes with prepared
            arguments (the C time plus about a microsecond of ctypes),
  kernel(): polyattn's call on torch tensors (shape checks, the
            polyattn::forward operator, the output tensor),
  train:    the same with inputs that require grad (polyattn::train),
  numpy:    the call on NumPy arrays,
and each one's overhead over bare C.  Usage: python bench_overhead.py [n]
"""
import ctypes
import statistics
import sys
import time

import numpy as np
import torch

import polyattn


def median_us(fn, reps=2000, rounds=7):
    """Median over rounds of the mean time of reps calls, in µs."""
    for _ in range(200):
        fn()
    per = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        per.append((time.perf_counter() - t) / reps * 1e6)
    return statistics.median(per)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    k = polyattn.compile("x1*x2", kernel="bench_sa", head_dim=64, value_dim=64,
                         scale=0.125)
    torch.manual_seed(0)
    xs = [torch.randn(1, n, c) for c in (64, 64, 64)]
    out = torch.empty(1, n, 64)
    fn = k._info._run
    arr = (ctypes.c_void_p * 3)(*[x.data_ptr() for x in xs])
    optr = out.data_ptr()
    bare = median_us(lambda: fn(1, n, arr, optr))
    rows = [("bare C", bare)]
    rows.append(("kernel(torch)", median_us(lambda: k(*xs))))
    g = [x.clone().requires_grad_() for x in xs]
    rows.append(("kernel(torch, requires_grad)", median_us(lambda: k(*g), reps=500)))
    a = [x.numpy() for x in xs]
    rows.append(("kernel(numpy)", median_us(lambda: k(*a))))
    print(f"x1*x2, head_dim = value_dim = 64, batch 1, n = {n}, "
          f"{torch.get_num_threads()} threads")
    for name, us in rows:
        extra = "" if name == "bare C" else f"   overhead {us - bare:7.1f} us"
        print(f"  {name:30s} {us:8.1f} us per call{extra}")


if __name__ == "__main__":
    main()
