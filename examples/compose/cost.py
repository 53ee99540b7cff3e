"""The cost table: forward and forward+backward time of tree-attention,
a path of 3 edges, Strassen and 3-tensor attention against n, at
head_dim = value_dim = 64 and batch 1, with each mechanism's fitted
growth exponent (the slope of log time against log n).

Each time is the best of up to 5 calls, fewer once REPEAT_SECONDS are
spent (the machine is shared: the minimum is the least disturbed).  A
size is skipped when the previous size's time, grown as n^3, predicts
more than the budget per call.  The exponent is fitted over n >=
FIT_FROM, where the call's fixed cost (tens to hundreds of microseconds)
no longer hides the growth.
"""
import math
import time

import torch

import polyattn

HEAD_DIM = 64
MECHANISMS = {                         # label: (polynomial, values)
    "tree x1*x2 + x2*x3": ("x1*x2 + x2*x3", "x3"),
    "path x1*x2 + x2*x3 + x3*x4": ("x1*x2 + x2*x3 + x3*x4", "x4"),
    "Strassen x1*x2 + x2*x3 + x3*x1": ("x1*x2 + x2*x3 + x3*x1", None),
    "3-tensor x1*x2*x3": ("x1*x2*x3", None),
}
FIT_FROM = 500                         # the fit leaves out smaller n (call overhead)
REPEAT_SECONDS = 2.0


def kernels() -> dict:
    """{label: Kernel} of MECHANISMS at HEAD_DIM."""
    out = {}
    for label, (poly, values) in MECHANISMS.items():
        settings = dict(head_dim=HEAD_DIM, value_dim=HEAD_DIM)
        if values:
            settings["values"] = values
        out[label] = polyattn.compile(poly, kernel="cost", **settings)
    return out


def best_time(fn) -> float:
    """The fastest of up to 5 calls of fn, fewer once REPEAT_SECONDS are spent."""
    best, spent = math.inf, 0.0
    for _ in range(5):
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        best, spent = min(best, dt), spent + dt
        if spent > REPEAT_SECONDS:
            break
    return best


def time_kernel(k: polyattn.Kernel, n: int) -> tuple:
    """(forward seconds, forward+backward seconds or None) at n."""
    gen = torch.Generator().manual_seed(n)
    xs = [torch.randn(1, n, d.cols, generator=gen) for d in k.inputs]
    g = torch.randn(1, n, k.value_dim, generator=gen)
    with torch.no_grad():
        fwd = best_time(lambda: k(*xs))
    if not k.has_backward:
        return fwd, None
    leaves = [x.requires_grad_() for x in xs]
    both = best_time(lambda: k(*leaves).backward(g))
    return fwd, both


def fit_exponent(ns, ts, fit_from: int = FIT_FROM) -> float:
    """Least-squares slope of log t against log n over n >= fit_from."""
    pts = [(math.log(n), math.log(t)) for n, t in zip(ns, ts) if t and n >= fit_from]
    if len(pts) < 2:
        return float("nan")
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    return (sum((x - mx) * (y - my) for x, y in pts)
            / sum((x - mx) ** 2 for x, _ in pts))


def measure(ns, budget: float, fit_from: int = FIT_FROM, log=print) -> dict:
    """{label: {"n": [...], "fwd": [...], "both": [...], "exp_fwd", "exp_both"}},
    the exponents fitted over n >= fit_from."""
    table = {}
    for label, k in kernels().items():
        row = dict(n=[], fwd=[], both=[])
        last = None
        for n in ns:
            if last and last[1] * (n / last[0]) ** 3 > budget:
                log(f"cost: {label} n={n} skipped (predicted > {budget:.0f} s per call)")
                break
            fwd, both = time_kernel(k, n)
            row["n"].append(n), row["fwd"].append(fwd), row["both"].append(both)
            last = (n, max(fwd, both or 0.0))
            log(f"cost: {label:<30} n={n:>5}  forward {fwd * 1e3:10.2f} ms  "
                f"fwd+bwd {'no backward yet' if both is None else f'{both * 1e3:.2f} ms'}")
        row["exp_fwd"] = fit_exponent(row["n"], row["fwd"], fit_from)
        row["exp_both"] = (fit_exponent(row["n"], row["both"], fit_from)
                           if k.has_backward else None)
        row["fit_from"] = fit_from
        row["exp_last"] = {key: fit_exponent(row["n"][-2:], row[key][-2:], 0)
                           for key in ("fwd", "both")
                           if len(row["n"]) >= 2 and row[key][-1] is not None}
        table[label] = row
    return table
