"""The task: 2-fold function composition (the paper's experiment, scaled
to a CPU).

A sample draws two tables f1, f2 ~ U{0…n−1}^n and a point x ~ U{0…n−1};
the sequence is the 2n + 1 tokens f1(0) … f1(n−1), f2(0) … f2(n−1), x,
and the target is f2(f1(x)).  Training samples are drawn fresh every step
from a generator seeded once per run; the held-out set is a fixed set of
sequences drawn from another seed.
"""
import torch
from torch import Tensor

HELD_OUT = 2048          # held-out sequences per n
HELD_OUT_SEED = 2 ** 31 - 1


def sample(n: int, batch: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """(ids, target): ids (batch, 2n + 1) int64, target (batch,)."""
    f1 = torch.randint(0, n, (batch, n), generator=gen)
    f2 = torch.randint(0, n, (batch, n), generator=gen)
    x = torch.randint(0, n, (batch, 1), generator=gen)
    target = f2.gather(1, f1.gather(1, x)).squeeze(1)
    return torch.cat([f1, f2, x], dim=1), target


def held_out(n: int) -> tuple[Tensor, Tensor]:
    """The fixed held-out set of n: HELD_OUT sequences from HELD_OUT_SEED."""
    return sample(n, HELD_OUT, torch.Generator().manual_seed(HELD_OUT_SEED + n))
