"""make paper: the seed paper's function-composition experiment and cost
table, with polyc's kernels doing the attention.

    python3 paper.py [--quick] [--out DIR] [--jobs J] [--seeds25 K]

1. compiles every kernel used below and checks it against the float64
   brute force (gradcheck.py), outputs and gradients: a disagreement
   stops the run before any training;
2. trains each model on 2-fold function composition (task.py, model.py,
   train.py), J runs at a time (default 3, so both of 2 cores stay busy
   to the end), each in a process of its own with one thread: n = 10 for
   6,000 steps on 3 seeds (tree1, self1, self2; tree1-tied on seed 0),
   n = 25 (length 51) for 12,000 steps on K seeds (default 1: tree1,
   self1, self2); --quick: n = 10, seed 0, tree1, self1 and self2 only;
3. times forward and forward+backward of tree, path, Strassen and
   3-tensor attention against n = 50 … 8,000, where each fits (cost.py);
   --cost-only keeps the training runs of DIR/results.json and measures
   the rest again;
4. writes DIR/README.md (tables), accuracy_n*.png, cost.png and
   results.json, and prints, last,
   ``compose: tree1 <acc> self1 <acc> self2 <acc>`` (held-out accuracy
   at the last step of n = 10, seed 0).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cost        # noqa: E402
import gradcheck   # noqa: E402
import model       # noqa: E402
import train       # noqa: E402


def plan(args) -> list:
    """The runs: (model, n, seed, steps), longest first."""
    if args.quick:
        runs = [(m, 10, 0, 6000) for m in ("self2", "tree1", "self1")]
    else:
        runs = [(m, 25, s, 12000) for s in range(args.seeds25)
                for m in ("self2", "tree1", "self1")]
        runs += [(m, 10, s, 6000) for s in range(3)
                 for m in ("self2", "tree1", "self1")]
        runs.append(("tree1-tied", 10, 0, 6000))
    return runs


def run_all(runs, jobs: int, tmp: str) -> list:
    """Every run as `python3 train.py ...` with OMP_NUM_THREADS=1, jobs at a
    time; their records.  A failed run stops everything."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    pending, active, records = list(runs), [], []
    while pending or active:
        while pending and len(active) < jobs:
            name, n, seed, steps = pending.pop(0)
            out = os.path.join(tmp, f"{name}-n{n}-s{seed}.json")
            cmd = [sys.executable, os.path.join(HERE, "train.py"), name, str(n),
                   str(seed), str(steps), out]
            active.append((subprocess.Popen(cmd, env=env), out))
        time.sleep(0.2)
        for p, out in list(active):
            if p.poll() is None:
                continue
            active.remove((p, out))
            if p.returncode:
                for q, _ in active:
                    q.kill()
                raise SystemExit(f"paper: {' '.join(p.args)} failed ({p.returncode})")
            with open(out) as f:
                records.append(json.load(f))
    return records


def first_at(rec, level=0.99):
    """The first evaluated step with held-out accuracy >= level, or None."""
    return next((s for s, a in zip(rec["steps"], rec["acc"]) if a >= level), None)


def acc_at(rec, step):
    return rec["acc"][rec["steps"].index(step)]


def accuracy_tables(records) -> str:
    """Markdown: per n, a row per model and seed of held-out accuracy at
    every 500 (n = 10) or 1,000 (n = 25) steps and the first step at 0.99."""
    lines = []
    for n in sorted({r["n"] for r in records}):
        rs = sorted((r for r in records if r["n"] == n),
                    key=lambda r: (list(model.MODELS).index(r["model"]), r["seed"]))
        last = rs[0]["steps"][-1]
        every = 500 if last <= 6000 else 1000
        cols = list(range(0, last + 1, every))
        lines += [f"### n = {n} (sequence length {2 * n + 1}), held-out accuracy", "",
                  "| model | seed | " + " | ".join(f"{c:,}" for c in cols)
                  + " | first step ≥ 0.99 |",
                  "|---|---|" + "---|" * len(cols) + "---|"]
        for r in rs:
            hit = first_at(r)
            lines.append(f"| {r['model']} | {r['seed']} | "
                         + " | ".join(f"{acc_at(r, c):.3f}" for c in cols)
                         + f" | {'—' if hit is None else f'{hit:,}'} |")
        lines.append("")
    return "\n".join(lines)


def cost_table(table) -> str:
    ns = sorted({n for row in table.values() for n in row["n"]})
    lines = ["| mechanism | | " + " | ".join(f"n = {n:,}" for n in ns)
             + " | growth exponent (fit) | between the two largest n |",
             "|---|---|" + "---|" * len(ns) + "---|---|"]
    for label, row in table.items():
        for key, what in (("fwd", "forward"), ("both", "fwd+bwd")):
            cells = []
            for n in ns:
                if n not in row["n"]:
                    cells.append("—")
                    continue
                t = row[key][row["n"].index(n)]
                cells.append("no backward yet" if t is None else
                             f"{t:.3g} s" if t >= 1 else f"{t * 1e3:.3g} ms")
            e = row["exp_" + key]
            exp = "no backward yet" if e is None else f"{e:.2f}"
            last = row["exp_last"].get(key)
            last = "" if last is None else f"{last:.2f}"
            lines.append(f"| {label if key == 'fwd' else ''} | {what} | "
                         + " | ".join(cells) + f" | {exp} | {last} |")
    return "\n".join(lines)


def plot_accuracy(records, path, n):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colors = {"tree1": "C0", "tree1-tied": "C2", "self1": "C3", "self2": "C1"}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name in model.MODELS:
        rs = [r for r in records if r["n"] == n and r["model"] == name]
        for i, r in enumerate(sorted(rs, key=lambda r: r["seed"])):
            ax.plot(r["steps"], r["acc"], color=colors[name], alpha=0.9 - 0.2 * i,
                    label=name if i == 0 else None)
    ax.axhline(0.99, color="grey", lw=0.6, ls=":")
    ax.set(xlabel="training step", ylabel="held-out accuracy", ylim=(0, 1.02),
           title=f"2-fold composition, n = {n} (length {2 * n + 1}); a line per seed")
    ax.legend(loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_cost(table, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.6))
    for i, (label, row) in enumerate(table.items()):
        ax.loglog(row["n"], row["fwd"], "o-", color=f"C{i}",
                  label=f"{label}: forward, n^{row['exp_fwd']:.2f}")
        if row["exp_both"] is not None:
            ax.loglog(row["n"], row["both"], "s--", color=f"C{i}",
                      label=f"{label}: fwd+bwd, n^{row['exp_both']:.2f}")
    ax.set(xlabel="n", ylabel="seconds per call (batch 1, head_dim 64)",
           title="cost of each mechanism (polyc kernels)")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", lw=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def must_show(records, table) -> list:
    """The issue's claims, each with what was measured."""
    out = []
    for r in sorted(records, key=lambda r: (r["n"], r["model"], r["seed"])):
        if r["n"] != 10:
            continue
        hit = first_at(r)
        if r["model"] == "tree1":
            out.append(f"tree1 seed {r['seed']}: 0.99 by step 3,000: "
                       f"{'yes' if hit is not None and hit <= 3000 else 'NO'} "
                       f"(first at {hit})")
        elif r["model"] == "self1":
            a = acc_at(r, 6000)
            out.append(f"self1 seed {r['seed']}: <= 0.35 at step 6,000: "
                       f"{'yes' if a <= 0.35 else 'NO'} ({a:.3f})")
        elif r["model"] == "self2":
            tree = next(t for t in records if t["n"] == 10 and t["seed"] == r["seed"]
                        and t["model"] == "tree1")
            th = first_at(tree)
            later = hit is None or (th is not None and hit > th)
            out.append(f"self2 seed {r['seed']}: 0.99 later than tree1 or never: "
                       f"{'yes' if later else 'NO'} (self2 {hit}, tree1 {th})")
    for label, row in table.items():
        out.append(f"growth exponent {label}: forward {row['exp_fwd']:.2f}"
                   + ("" if row["exp_both"] is None else f", fwd+bwd {row['exp_both']:.2f}"))
    return out


def write_report(out_dir, args, checks, records, table, claims, times):
    os.makedirs(out_dir, exist_ok=True)
    for n in sorted({r["n"] for r in records}):
        plot_accuracy(records, os.path.join(out_dir, f"accuracy_n{n}.png"), n)
    plot_cost(table, os.path.join(out_dir, "cost.png"))
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(dict(runs=records, cost=table, gradcheck=checks, seconds=times), f)
    cmd = "make paper QUICK=1" if args.quick else "make paper"
    kept = ("\nThe training runs are an earlier run's, kept by `paper.py --cost-only`;"
            "\nthe gradient check and the cost table are this run's." if args.cost_only else "")
    imgs = "\n\n".join(f"![held-out accuracy, n = {n}](accuracy_n{n}.png)"
                       for n in sorted({r["n"] for r in records}))
    text = f"""# Function composition and the cost of each mechanism (`{cmd}`)

Written by `examples/compose/paper.py`; the attention of every model is a
polyc kernel (forward and backward), the rest is PyTorch.  Recipe: one
post-LN block (d_model 32, 4 heads of 8, bias-free attention projections,
FFN 128 with ReLU), value + position embeddings + sinusoidal encoding, a
bias-free head at the last position, AdamW lr 1e-3, batch 64, fresh
samples every step, 2,048 held-out sequences.  Models: `tree1` is
tree-attention `x1*x2 + x2*x3` with values = x3 (x1 the query position,
each occurrence its own projection; `tree1-tied`: x2's two occurrences
share one), `self1` and `self2` are 1 and 2 layers of self-attention
`x1*x2`.

Machine: {platform.machine()}, {os.cpu_count()} cores (shared), torch
{torch.__version__}; each training run in a process of its own on one
thread, {args.jobs} at a time.  Wall time: gradient check
{times['gradcheck']:.0f} s, training {times['training']:.0f} s, cost table
{times['cost']:.0f} s, total {times['total']:.0f} s.{kept}

## Gradient check (before any training)

Every kernel used, against the float64 brute force of the definition
(relative max errors; the run stops if an output is off by more than
{gradcheck.OUT_TOL:g} or a gradient by more than {gradcheck.GRAD_TOL:g}):

```
{chr(10).join(checks)}
```

## Held-out accuracy

{accuracy_tables(records)}
{imgs}

## Cost

Seconds per call at batch 1, head_dim = value_dim = 64, on
{os.environ["OMP_NUM_THREADS"]} thread(s), best of up to 5 calls; forward is the kernel (`K`), fwd+bwd the training forward
(`K_train`) and the backward (`K_backward`) through autograd.  Growth
exponent: least-squares slope of log time against log n for n ≥
{next(iter(table.values()))['fit_from']} (below it the call's fixed cost
hides the growth), and the same slope between the two largest n measured.
A size is left out (—) where the previous one, grown as n³, predicts
more than a minute per call.

{cost_table(table)}

![time against n](cost.png)

## The issue's claims, as measured

```
{chr(10).join(claims)}
```
"""
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one seed at n = 10")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "..", "doc", "paper"))
    ap.add_argument("--jobs", type=int, default=3, help="runs at a time")
    ap.add_argument("--seeds25", type=int, default=1, help="seeds at n = 25")
    ap.add_argument("--cost-only", action="store_true",
                    help="keep the training runs of OUT/results.json, measure the rest again")
    args = ap.parse_args()
    # One thread everywhere, the kernels' OpenMP included (set before the
    # first kernel loads): the runs are processes of their own, and on a
    # shared machine a thread that waits for a busy core stalls the
    # others at every barrier, which the cost table would measure.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    t0 = time.perf_counter()
    times = {}

    used = {f"{name} attention ({model.make(name, 10).blocks[0].attn.kernel.polynomial}, "
            f"head_dim 8)": model.make(name, 10).blocks[0].attn.kernel
            for name in ("tree1", "self1")}
    used.update({f"cost: {label}": k for label, k in cost.kernels().items()})
    checks = gradcheck.check(used)
    print("gradcheck: every kernel agrees with the float64 brute force:", flush=True)
    for line in checks:
        print("  " + line, flush=True)
    times["gradcheck"] = time.perf_counter() - t0

    t = time.perf_counter()
    if args.cost_only:
        with open(os.path.join(args.out, "results.json")) as f:
            kept = json.load(f)
        records, times["training"] = kept["runs"], kept["seconds"]["training"]
    else:
        with tempfile.TemporaryDirectory(prefix="paper-") as tmp:
            records = run_all(plan(args), args.jobs, tmp)
        times["training"] = time.perf_counter() - t

    t = time.perf_counter()
    if args.quick:
        table = cost.measure((50, 100, 200, 500), budget=2.0, fit_from=200)
    else:
        table = cost.measure((50, 100, 500, 1000, 2000, 4000, 8000), budget=60.0)
    times["cost"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t0 + (times["training"] if args.cost_only else 0)

    claims = must_show(records, table)
    write_report(args.out, args, checks, records, table, claims, times)
    print(f"paper: wrote {os.path.normpath(args.out)}/README.md, plots and results.json "
          f"in {times['total']:.0f} s")
    for line in claims:
        print("  " + line)
    last = {r["model"]: r["acc"][-1] for r in records if r["n"] == 10 and r["seed"] == 0}
    print(f"compose: tree1 {last['tree1']:.3f} self1 {last['self1']:.3f} "
          f"self2 {last['self2']:.3f}", flush=True)


if __name__ == "__main__":
    main()
