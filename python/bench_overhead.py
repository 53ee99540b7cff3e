"""bench_overhead.py - what calling a kernel from Python costs over the
bare C kernel: x1*x2 (head_dim = value_dim = 64), batch 1, n = 64.

Times, per call,
  C run:           the kernel's entry point K through ctypes with prepared
                   arguments (the C time plus about a microsecond of ctypes),
  kernel(torch):   polyattn's call on torch tensors, no autograd (shape
                   checks, the kernel, the output tensor),
  kernel(numpy):   the call on NumPy arrays,
  C train:         K_train the same way, into a prepared saved buffer,
  kernel(torch, requires_grad): the call through the polyattn::train
                   operator and autograd (saved tensor, graph node),
and each call's overhead over its bare C entry point.  The variants are
timed in interleaved rounds (the machine may be shared); the median and
the best round are printed.  Usage: python bench_overhead.py [n [rounds]]
"""
import ctypes
import statistics
import sys
import time

import torch

import polyattn


def per_call_us(fn, reps):
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps * 1e6


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    k = polyattn.compile("x1*x2", kernel="bench_sa", head_dim=64, value_dim=64,
                         scale=0.125)
    info = k._info
    torch.manual_seed(0)
    xs = [torch.randn(1, n, c) for c in (64, 64, 64)]
    out = torch.empty(1, n, 64)
    arr = (ctypes.c_void_p * 3)(*[x.data_ptr() for x in xs])
    optr = out.data_ptr()
    grads = [x.clone().requires_grad_() for x in xs]
    arrays = [x.numpy() for x in xs]
    cases = [("C run", None, lambda: info._run(1, n, arr, optr)),
             ("kernel(torch)", "C run", lambda: k(*xs)),
             ("kernel(numpy)", "C run", lambda: k(*arrays))]
    if info.has_backward:
        saved = torch.empty(info.saved_floats(1, n))
        sptr = saved.data_ptr()
        cases += [("C train", None, lambda: info._train(1, n, arr, optr, sptr)),
                  ("kernel(torch, requires_grad)", "C train", lambda: k(*grads))]
    times = {name: [] for name, _, _ in cases}
    for name, _, fn in cases:                       # warm up
        per_call_us(fn, 300)
    for _ in range(rounds):
        for name, _, fn in cases:
            times[name].append(per_call_us(fn, 300))
    med = {name: statistics.median(t) for name, t in times.items()}
    best = {name: min(t) for name, t in times.items()}
    print(f"x1*x2, head_dim = value_dim = 64, batch 1, n = {n}, "
          f"{torch.get_num_threads()} threads; us per call, median (best) "
          f"of {rounds} rounds")
    for name, base, _ in cases:
        line = f"  {name:30s} {med[name]:7.1f} ({best[name]:6.1f})"
        if base:
            line += (f"   overhead {med[name] - med[base]:6.1f} "
                     f"({best[name] - best[base]:5.1f})")
        print(line)


if __name__ == "__main__":
    main()
