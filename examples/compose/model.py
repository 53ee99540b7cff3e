"""The models of the experiment: one or two post-LN transformer blocks
around polyattn's kernels.

The attention is polyattn.PolyAttention (every score, softmax and
weighted sum is a polyc kernel, forward and backward); the rest is
ordinary PyTorch: value and position embeddings plus a fixed sinusoidal
encoding, a post-LN block (x = LN(x + attn(x)), x = LN(x + FFN(x)), FFN
with ReLU), and a bias-free head read at the last position, which holds
x.  The attention's projections are bias-free, one per kernel input: for
tree-attention x1*x2 + x2*x3 with values = x3 that is a query (x1's
occurrence), two projections of x2 (one per monomial; the same one with
tied_x2), a key of x3 and the value of x3.  x1 is the query position.
"""
import math

import torch
from torch import Tensor, nn

import polyattn

DIM, HEADS, FFN = 32, 4, 128

# name: (polynomial, values, layers, tie x2's two occurrences)
MODELS = {
    "tree1": ("x1*x2 + x2*x3", "x3", 1, False),
    "tree1-tied": ("x1*x2 + x2*x3", "x3", 1, True),
    "self1": ("x1*x2", None, 1, False),
    "self2": ("x1*x2", None, 2, False),
}


def sinusoidal(length: int, dim: int) -> Tensor:
    """The fixed encoding of Vaswani et al.: sin and cos of position at
    geometric frequencies, (length, dim)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(1e4) / dim))
    enc = torch.zeros(length, dim)
    enc[:, 0::2], enc[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return enc


def attention(poly: str, values, tied_x2: bool) -> polyattn.PolyAttention:
    """A bias-free PolyAttention of DIM with HEADS heads; with tied_x2, x2's
    two occurrences (m0_x2, m1_x2) share one projection."""
    attn = polyattn.PolyAttention(DIM, HEADS, poly=poly, values=values, out_bias=False)
    if tied_x2:
        attn.proj["m1_x2"] = attn.proj["m0_x2"]
    return attn


class PostLNBlock(nn.Module):
    """x = LN(x + attn(x)); x = LN(x + FFN(x)).  With last_only the block
    returns the last position only (its attention still reads all)."""

    def __init__(self, attn: nn.Module):
        super().__init__()
        self.attn = attn
        self.norm1, self.norm2 = nn.LayerNorm(DIM), nn.LayerNorm(DIM)
        self.ffn = nn.Sequential(nn.Linear(DIM, FFN), nn.ReLU(), nn.Linear(FFN, DIM))

    def forward(self, x: Tensor, last_only: bool = False) -> Tensor:
        a = self.attn(x)
        if last_only:
            x, a = x[:, -1:], a[:, -1:]
        x = self.norm1(x + a)
        return self.norm2(x + self.ffn(x))


class ComposeModel(nn.Module):
    """Logits (batch, n) of f2(f1(x)) from ids (batch, 2n + 1)."""

    def __init__(self, n: int, poly: str, values, layers: int, tied_x2: bool = False):
        super().__init__()
        length = 2 * n + 1
        self.value = nn.Embedding(n, DIM)
        self.position = nn.Embedding(length, DIM)
        self.register_buffer("encoding", sinusoidal(length, DIM), persistent=False)
        self.blocks = nn.ModuleList(PostLNBlock(attention(poly, values, tied_x2))
                                    for _ in range(layers))
        self.head = nn.Linear(DIM, n, bias=False)

    def forward(self, ids: Tensor) -> Tensor:
        x = self.value(ids) + self.position.weight + self.encoding
        for i, block in enumerate(self.blocks):
            x = block(x, last_only=i == len(self.blocks) - 1)
        return self.head(x[:, -1])


def make(name: str, n: int) -> ComposeModel:
    """The model MODELS[name] for tables of size n."""
    poly, values, layers, tied = MODELS[name]
    return ComposeModel(n, poly, values, layers, tied)
