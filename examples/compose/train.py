"""Train one model on the composition task and record its held-out
accuracy: one job of paper.py, run in a process of its own.

    python3 train.py MODEL N SEED STEPS OUT.json

AdamW at lr 1e-3, batch 64, cross-entropy of the head at the last
position; held-out accuracy (task.held_out) at step 0 and every EVERY
steps, one progress line each.  The model's initial weights and the
training samples both come from SEED.
"""
import json
import sys
import time

import torch
from torch.nn import functional as F

import model
import task

BATCH, LR, EVERY = 64, 1e-3, 250


@torch.no_grad()
def accuracy(net: model.ComposeModel, ids, target) -> float:
    """Fraction of held-out sequences whose argmax logit is the target."""
    return (net(ids).argmax(1) == target).float().mean().item()


def train(name: str, n: int, seed: int, steps: int) -> dict:
    """The run's record: steps, accuracies and losses at each evaluation."""
    torch.manual_seed(seed)
    net = model.make(name, n)
    opt = torch.optim.AdamW(net.parameters(), lr=LR, fused=True)
    gen = torch.Generator().manual_seed(seed)
    ids_ho, target_ho = task.held_out(n)
    rec = dict(model=name, n=n, seed=seed, steps=[], acc=[], loss=[])
    start, loss = time.perf_counter(), float("nan")
    for step in range(steps + 1):
        if step % EVERY == 0:
            acc = accuracy(net, ids_ho, target_ho)
            rec["steps"].append(step), rec["acc"].append(acc), rec["loss"].append(loss)
            print(f"n={n} seed={seed} {name:<10} step {step:>5}  held-out acc {acc:.3f}"
                  f"  loss {loss:.3f}  ({time.perf_counter() - start:.0f} s)", flush=True)
        if step == steps:
            break
        ids, target = task.sample(n, BATCH, gen)
        out = F.cross_entropy(net(ids), target)
        opt.zero_grad(set_to_none=True)
        out.backward()
        opt.step()
        loss = out.item()
    rec["seconds"] = time.perf_counter() - start
    return rec


def main(argv):
    name, n, seed, steps, out = argv[1], int(argv[2]), int(argv[3]), int(argv[4]), argv[5]
    torch.set_num_threads(1)
    with open(out, "w") as f:
        json.dump(train(name, n, seed, steps), f)


if __name__ == "__main__":
    main(sys.argv)
