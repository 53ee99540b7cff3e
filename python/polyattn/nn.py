"""Poly-attention layers: ``PolyAttention`` and a small transformer.

``PolyAttention`` is a drop-in multi-head attention whose scores come
from an attention polynomial; ``Block`` and ``Transformer`` show it in a
pre-norm transformer (a language model over token ids).
"""
from typing import Optional, Sequence, Union

import torch
from torch import Tensor, nn

import polyattn

__all__ = ["PolyAttention", "Block", "Transformer"]


class PolyAttention(nn.Module):
    r"""PolyAttention(dim, heads=8, poly="x1*x2", values=None, head_dim=None, value_dim=None, scale=None, out_bias=True, **settings)

    Multi-head poly-attention over a sequence ``x`` of shape ``(batch, n, dim)``.

    Each input of the compiled kernel gets its own bias-free projection of
    ``x``: one per factor occurrence (``heads * head_dim`` wide, like the
    queries and keys of softmax attention) and one per value variable
    (``heads * value_dim``).  The heads run as the kernel's batch, and an
    output projection maps ``heads * value_dim`` back to ``dim``.  With
    ``poly="x1*x2"`` this is ordinary multi-head self-attention.

    Args:
        dim: model width (last dimension of the input and the output).
        heads: number of heads.
        poly: the attention polynomial, e.g. ``"x1*x2 + x2*x3"``.
        values: value-carrying variables, e.g. ``"x3"`` or ``("x2", "x3")``
            (default: polyc's, every variable but x1).
        head_dim: columns of each factor per head (default ``dim // heads``).
        value_dim: columns of each value per head (default ``head_dim``).
        scale: the score's scale (default ``head_dim ** -0.5``).
        out_bias: whether the output projection has a bias.
        **settings: further kernel settings for :func:`polyattn.compile`
            (``algorithm``, ``bound``, ...).

    Shape:
        - Input: ``(batch, n, dim)``, or ``(n, dim)``.
        - context (optional): ``(batch, m, dim)`` (or ``(m, dim)``), m ≥ n:
          x1's inputs (the queries) are projected from ``x``, the others
          from ``context`` (cross-attention; query row i sits at position
          i + m − n of the context).
        - lengths (optional): ``batch`` integers, the valid rows of each
          entry of ``x`` (or of ``context``); rows past them are no keys
          and give 0 (key padding, through the kernel's ``lengths=``).
        - Output: the shape of ``x``.

    Attributes:
        kernel: the :class:`polyattn.Kernel`; ``proj`` maps each of its
            input names (``"m0_x1"``, ``"v3"``, ...) to that input's
            projection, ``out`` is the output projection.

    Example::

        >>> layer = polyattn.PolyAttention(64, heads=4, poly="x1*x2 + x2*x3", values="x3")
        >>> layer(torch.randn(2, 10, 64)).shape
        torch.Size([2, 10, 64])
    """

    def __init__(self, dim: int, heads: int = 8, poly: str = "x1*x2",
                 values: Optional[Union[str, Sequence[str]]] = None,
                 head_dim: Optional[int] = None, value_dim: Optional[int] = None,
                 scale: Optional[float] = None, out_bias: bool = True,
                 **settings):
        super().__init__()
        head_dim = head_dim or dim // heads
        value_dim = value_dim or head_dim
        if head_dim < 1:
            raise ValueError(f"head_dim = dim // heads is {head_dim}: give head_dim")
        settings.update(head_dim=head_dim, value_dim=value_dim,
                        scale=float(scale if scale is not None else head_dim ** -0.5))
        if values is not None:
            settings["values"] = values
        self.kernel = polyattn.compile(poly, **settings)
        self.dim, self.heads = dim, heads
        self.proj = nn.ModuleDict({
            d.name: nn.Linear(dim, heads * d.cols, bias=False)
            for d in self.kernel.inputs})
        self.out = nn.Linear(heads * value_dim, dim, bias=out_bias)

    def forward(self, x: Tensor, context: Optional[Tensor] = None,
                lengths=None) -> Tensor:
        squeeze = x.dim() == 2
        if squeeze:
            x = x.unsqueeze(0)
            context = None if context is None else context.unsqueeze(0)
        ctx = x if context is None else context
        b, n, _ = x.shape

        def project(d):                              # (b, heads, rows, cols), in place
            src = x if d.variable == 1 else ctx
            return (self.proj[d.name](src).view(b, src.shape[1], self.heads, d.cols)
                    .transpose(1, 2))
        ins = [project(d) for d in self.kernel.inputs]
        y = self.kernel(*ins, lengths=lengths)       # (b, heads, n, value_dim)
        y = self.out(y.transpose(1, 2).reshape(b, n, -1))
        return y.squeeze(0) if squeeze else y

    def extra_repr(self) -> str:
        k = self.kernel
        return (f"dim={self.dim}, heads={self.heads}, poly='{k.polynomial}', "
                f"head_dim={k.head_dim}, value_dim={k.value_dim}, "
                f"class={k.graph_class}, algorithm={k.algorithm}")


class Block(nn.Module):
    r"""Block(dim, heads=8, poly="x1*x2", mlp_ratio=4, **attn_args)

    A pre-norm transformer block: ``x + attn(norm(x))``, then
    ``x + mlp(norm(x))``, with :class:`PolyAttention` as the attention.
    ``attn_args`` go to :class:`PolyAttention`.
    """

    def __init__(self, dim: int, heads: int = 8, poly: str = "x1*x2",
                 mlp_ratio: int = 4, **attn_args):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = PolyAttention(dim, heads, poly=poly, **attn_args)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(),
                                 nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    r"""Transformer(vocab, dim, depth=1, heads=8, poly="x1*x2", max_len=512, **attn_args)

    A small sequence model: token and position embeddings, ``depth``
    :class:`Block` s, a final norm and a linear head giving ``vocab``
    logits per position.  The attention sees the whole sequence (no mask).

    Shape:
        - Input: ``(batch, n)`` token ids, ``n <= max_len``.
        - Output: ``(batch, n, vocab)`` logits.
    """

    def __init__(self, vocab: int, dim: int, depth: int = 1, heads: int = 8,
                 poly: str = "x1*x2", max_len: int = 512, **attn_args):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(max_len, dim))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, poly=poly, **attn_args)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, ids: Tensor) -> Tensor:
        x = self.tok(ids) + self.pos[: ids.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))
