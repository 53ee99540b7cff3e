"""The kernels as PyTorch operators (torch.library custom ops).

Three operators serve every kernel; the kernel is named by a string, the
key under which ``register`` put its ``KernelInfo``:

    polyattn::forward(kernel, inputs) -> out                  K_info.run
    polyattn::train(kernel, inputs) -> (out, saved)           K_info.train
    polyattn::backward(kernel, inputs, out, saved, grad_out, wanted)
        -> grad_inputs                                        K_info.backward

Each takes the inputs as contiguous float32 CPU tensors of shape
(batch, n, cols) and has a fake (meta) implementation, so torch.compile
traces through it; ``train`` carries the autograd formula, which calls
``backward``.  Three more, ``call_forward``, ``call_train`` and
``call_backward`` (below), go through K_call: strided tensors, lengths,
fewer query rows than key rows.  ``Kernel.__call__`` (in __init__.py)
converts the user's tensors and picks the operator.
"""
from typing import List, Optional, Tuple

import torch
from torch import Tensor

_registry = {}


def register(key, info):
    """Make the kernel info callable through the operators as key."""
    _registry[key] = info


def _info(kernel):
    try:
        return _registry[kernel]
    except KeyError:
        raise RuntimeError(f"polyattn: no kernel '{kernel}' in this process "
                           "(compile it with polyattn.compile first)") from None


def _check(info, inputs):
    """The operators' own argument checks, for callers that skip
    Kernel.__call__'s: count, shape, dtype, layout, device."""
    if len(inputs) != info.num_inputs:
        raise ValueError(f"kernel '{info.name}' takes {info.num_inputs} inputs, "
                         f"got {len(inputs)}")
    b, n = inputs[0].shape[:2]
    for t, d in zip(inputs, info.inputs):
        if (t.dim() != 3 or t.shape[0] != b or t.shape[1] != n
                or t.shape[2] != d.cols or t.dtype != torch.float32
                or t.device.type != "cpu" or not t.is_contiguous()):
            raise ValueError(f"kernel '{info.name}': input {d.name} must be a "
                             f"contiguous float32 CPU tensor of shape "
                             f"({b}, {n}, {d.cols}), got {t.dtype} "
                             f"{tuple(t.shape)} on {t.device}")
    return b, n


def _ptrs(tensors):
    return [t.data_ptr() for t in tensors]


def forward_impl(info, b, n, inputs):
    """polyattn::forward's computation on checked inputs."""
    out = torch.empty((b, n, info.value_dim), dtype=torch.float32)
    info.run(b, n, _ptrs(inputs), out.data_ptr())
    return out


def eager_ok(inputs):
    """Whether a call without autograd may skip the dispatcher and run
    forward_impl itself: plain tensors, no torch.compile tracing, no
    dispatch mode (FakeTensorMode, FlopCounterMode, …) to see the op."""
    return (not torch.compiler.is_compiling()
            and torch._C._len_torch_dispatch_stack() == 0
            and all(type(x) is Tensor for x in inputs))


@torch.library.custom_op("polyattn::forward", mutates_args=())
def forward(kernel: str, inputs: List[Tensor]) -> Tensor:
    info = _info(kernel)
    b, n = _check(info, inputs)
    return forward_impl(info, b, n, inputs)


@forward.register_fake
def _(kernel, inputs):
    info = _info(kernel)
    return inputs[0].new_empty((inputs[0].shape[0], inputs[0].shape[1],
                                info.value_dim))


def train_impl(info, b, n, inputs):
    """polyattn::train's computation on checked inputs: (out, saved)."""
    out = torch.empty((b, n, info.value_dim), dtype=torch.float32)
    if not info.has_backward:       # backward raises; the forward still runs
        info.run(b, n, _ptrs(inputs), out.data_ptr())
        return out, out.new_empty((0,))
    # zeros: a kernel leaves the alignment gaps between its saved buffers
    # unwritten, and saved is an output (AOT dispatch compares it)
    saved = torch.zeros((info.saved_floats(b, n),), dtype=torch.float32)
    info.train(b, n, _ptrs(inputs), out.data_ptr(), saved.data_ptr())
    return out, saved


@torch.library.custom_op("polyattn::train", mutates_args=())
def train(kernel: str, inputs: List[Tensor]) -> Tuple[Tensor, Tensor]:
    info = _info(kernel)
    b, n = _check(info, inputs)
    return train_impl(info, b, n, inputs)


@train.register_fake
def _(kernel, inputs):
    info = _info(kernel)
    b, n = inputs[0].shape[0], inputs[0].shape[1]
    out = inputs[0].new_empty((b, n, info.value_dim))
    if isinstance(b, int) and isinstance(n, int):
        size = info.saved_floats(b, n)
    else:
        size = torch.library.get_ctx().new_dynamic_size()
    return out, inputs[0].new_empty((size,))


@torch.library.custom_op("polyattn::backward", mutates_args=())
def backward(kernel: str, inputs: List[Tensor], out: Tensor, saved: Tensor,
             grad_out: Tensor, wanted: List[bool]) -> List[Tensor]:
    return backward_impl(_info(kernel), inputs, out, saved, grad_out, wanted)


def backward_impl(info, inputs, out, saved, grad_out, wanted):
    """polyattn::backward's computation: checks, then K_info.backward."""
    if not info.has_backward:
        raise NotImplementedError(
            f"kernel '{info.name}' ({info.polynomial}) has no backward: its "
            f"K_info.backward is NULL (a library built by an older polyc)")
    b, n = _check(info, inputs)
    if (tuple(grad_out.shape) != (b, n, info.value_dim)
            or grad_out.dtype != torch.float32 or not grad_out.is_contiguous()):
        raise ValueError(f"kernel '{info.name}': grad_out must be contiguous "
                         f"float32 of shape ({b}, {n}, {info.value_dim})")
    grads = [torch.empty_like(t) if w else t.new_empty((0,))
             for t, w in zip(inputs, wanted)]
    info.backward(b, n, _ptrs(inputs), out.data_ptr(), saved.data_ptr(),
                  grad_out.data_ptr(),
                  [g.data_ptr() if w else None for g, w in zip(grads, wanted)])
    return grads


@backward.register_fake
def _(kernel, inputs, out, saved, grad_out, wanted):
    return [torch.empty_like(t) if w else t.new_empty((0,))
            for t, w in zip(inputs, wanted)]


def _setup_context(ctx, inputs, output):
    kernel, ins = inputs
    out, saved = output
    ctx.kernel = kernel
    ctx.wanted = [t.requires_grad for t in ins]
    ctx.mark_non_differentiable(saved)
    ctx.save_for_backward(*ins, out, saved)


def _train_backward(ctx, grad_out, _grad_saved):
    *ins, out, saved = ctx.saved_tensors
    if grad_out is None:
        grad_out = torch.zeros_like(out)
    grads = backward(ctx.kernel, ins, out, saved, grad_out.contiguous(),
                     ctx.wanted)
    return None, [g if w else None for g, w in zip(grads, ctx.wanted)]


train.register_autograd(_train_backward, setup_context=_setup_context)


class Train(torch.autograd.Function):
    """The train operator and its autograd formula for eager calls, without
    the dispatcher's cost (Kernel.__call__ uses it where eager_ok holds;
    torch.compile sees polyattn::train)."""

    @staticmethod
    def forward(ctx, info, b, n, *inputs):
        out, saved = train_impl(info, b, n, inputs)
        ctx.info = info
        ctx.wanted = [t.requires_grad for t in inputs]
        ctx.mark_non_differentiable(saved)
        ctx.save_for_backward(*inputs, out, saved)
        return out, saved

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, _grad_saved):
        *ins, out, saved = ctx.saved_tensors
        grads = backward_impl(ctx.info, ins, out, saved, grad_out.contiguous(),
                              ctx.wanted)
        return (None, None, None,
                *[g if w else None for g, w in zip(grads, ctx.wanted)])


# ------------------------------------------------------------------------
# Extended calls (K_call, runtime/polyattn.h "pa_call"): key lengths per
# batch entry, fewer query rows (x1's inputs) than key rows, and tensors
# read in place through their strides.  The leading dimensions of a tensor
# (B, ...) are the call's batch (B, the first; lengths are per entry of
# it) and heads (the rest, flattened).
#
#     polyattn::call_forward(kernel, inputs, lengths, q_lengths) -> out
#     polyattn::call_train(kernel, inputs, lengths, q_lengths) -> (out, saved)
#     polyattn::call_backward(kernel, inputs, out, saved, grad_out, wanted,
#                             lengths, q_lengths) -> grad_inputs
# ------------------------------------------------------------------------
import math

from ._capi import PA_FORWARD, PA_TRAIN, PA_BACKWARD


def _rows(info, inputs):
    """(nq, nk): the rows of x1's inputs and of the others."""
    nq = nk = None
    for t, d in zip(inputs, info.inputs):
        if d.variable == 1:
            nq = t.shape[-2]
        else:
            nk = t.shape[-2]
    nq = nk if nq is None else nq
    return nq, (nq if nk is None else nk)


def _batch_heads(lead):
    """(batch, heads) of leading dimensions."""
    return (lead[0] if lead else 1), math.prod(lead[1:])


def layout_of(t):
    """(row, head, batch) strides in floats that read t, shaped
    (B, ..., rows, cols), in place, or None when K_call cannot: columns not
    adjacent, trailing leading dimensions that do not fold into one head
    stride, or elements that share an address (pa_layout's rule)."""
    sizes, strides = tuple(t.shape), t.stride()
    rows, cols = sizes[-2], sizes[-1]
    if cols > 1 and strides[-1] != 1:
        return None
    lead = list(zip(sizes[:-2], strides[:-2]))
    heads = [(n, s) for n, s in lead[1:] if n != 1]
    for (_, s1), (n2, s2) in zip(heads, heads[1:]):
        if s1 != s2 * n2:
            return None
    row = strides[-2] if rows > 1 else 0
    head = heads[-1][1] if heads else 0
    batch = lead[0][1] if lead and lead[0][0] > 1 else 0
    b, h = _batch_heads(sizes[:-2])
    span = cols
    for s, n in sorted((s, n) for s, n in ((row, rows), (head, h), (batch, b)) if n > 1):
        if s < span:
            return None
        span += s * (n - 1)
    return (row, head, batch)


def _in_place(t):
    """(tensor, layout): t itself where layout_of reads it, else a copy."""
    lay = layout_of(t)
    if lay is None:
        t = t.contiguous()
        lay = layout_of(t)
    return t, lay


def _check_call(info, inputs, lengths, q_lengths):
    """The call operators' argument checks; returns (lead, nq, nk)."""
    if len(inputs) != info.num_inputs:
        raise ValueError(f"kernel '{info.name}' takes {info.num_inputs} inputs, "
                         f"got {len(inputs)}")
    nq, nk = _rows(info, inputs)
    lead = tuple(inputs[0].shape[:-2])
    for t, d in zip(inputs, info.inputs):
        rows = nq if d.variable == 1 else nk
        if (t.dim() < 2 or tuple(t.shape[:-2]) != lead or t.shape[-2] != rows
                or t.shape[-1] != d.cols or t.dtype != torch.float32
                or t.device.type != "cpu"):
            raise ValueError(f"kernel '{info.name}': input {d.name} must be a "
                             f"float32 CPU tensor of shape {lead + (rows, d.cols)}, "
                             f"got {t.dtype} {tuple(t.shape)} on {t.device}")
    if nq > nk:
        raise ValueError(f"kernel '{info.name}': x1's inputs have {nq} rows, more "
                         f"than the {nk} of the others (queries need keys)")
    batch = _batch_heads(lead)[0]
    for name, x in (("lengths", lengths), ("q_lengths", q_lengths)):
        if x is not None and (x.dtype != torch.int64 or tuple(x.shape) != (batch,)
                              or not x.is_contiguous() or x.device.type != "cpu"):
            raise ValueError(f"kernel '{info.name}': {name} must be a contiguous "
                             f"int64 CPU tensor of shape ({batch},)")
    return lead, nq, nk


def _shape(lead, nq, nk, lengths, q_lengths):
    """K_call's (batch, heads, nq, nk, q_lengths, k_lengths)."""
    b, h = _batch_heads(lead)
    return (b, h, nq, nk, q_lengths.data_ptr() if q_lengths is not None else None,
            lengths.data_ptr() if lengths is not None else None)


def call_forward_impl(info, inputs, lengths, q_lengths, train=False):
    """polyattn::call_forward's (or, train, call_train's) computation."""
    lead, nq, nk = _check_call(info, inputs, lengths, q_lengths)
    shape = _shape(lead, nq, nk, lengths, q_lengths)
    ins = [_in_place(t) for t in inputs]
    out = torch.empty(lead + (nq, info.value_dim), dtype=torch.float32)
    ptrs = [(t.data_ptr(), lay) for t, lay in ins]
    if not (train and info.has_backward):
        info.call(PA_FORWARD, shape, ptrs, (out.data_ptr(), (0, 0, 0)))
        return (out, out.new_empty((0,))) if train else out
    size = info.call_saved_floats(shape)
    if size < 0:                    # a call K_call refuses: its status says why
        info.call(PA_FORWARD, shape, ptrs, (out.data_ptr(), (0, 0, 0)))
        raise ValueError(f"kernel '{info.name}': saved would not fit in memory")
    saved = torch.zeros((size,), dtype=torch.float32)   # as in train_impl
    info.call(PA_TRAIN, shape, ptrs, (out.data_ptr(), (0, 0, 0)), saved.data_ptr())
    return out, saved


@torch.library.custom_op("polyattn::call_forward", mutates_args=())
def call_forward(kernel: str, inputs: List[Tensor], lengths: Optional[Tensor] = None,
                 q_lengths: Optional[Tensor] = None) -> Tensor:
    return call_forward_impl(_info(kernel), inputs, lengths, q_lengths)


@call_forward.register_fake
def _(kernel, inputs, lengths=None, q_lengths=None):
    info = _info(kernel)
    nq, _ = _rows(info, inputs)
    return inputs[0].new_empty(tuple(inputs[0].shape[:-2]) + (nq, info.value_dim))


@torch.library.custom_op("polyattn::call_train", mutates_args=())
def call_train(kernel: str, inputs: List[Tensor], lengths: Optional[Tensor] = None,
               q_lengths: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    return call_forward_impl(_info(kernel), inputs, lengths, q_lengths, train=True)


@call_train.register_fake
def _(kernel, inputs, lengths=None, q_lengths=None):
    info = _info(kernel)
    nq, nk = _rows(info, inputs)
    lead = tuple(inputs[0].shape[:-2])
    out = inputs[0].new_empty(lead + (nq, info.value_dim))
    if not info.has_backward:
        return out, inputs[0].new_empty((0,))
    if (lengths is None and q_lengths is None
            and all(isinstance(x, int) for x in lead + (nq, nk))):
        size = info.call_saved_floats(_shape(lead, nq, nk, None, None))
    else:
        size = torch.library.get_ctx().new_dynamic_size()
    return out, inputs[0].new_empty((size,))


@torch.library.custom_op("polyattn::call_backward", mutates_args=())
def call_backward(kernel: str, inputs: List[Tensor], out: Tensor, saved: Tensor,
                  grad_out: Tensor, wanted: List[bool],
                  lengths: Optional[Tensor] = None,
                  q_lengths: Optional[Tensor] = None) -> List[Tensor]:
    info = _info(kernel)
    if not info.has_backward:
        backward_impl(info, inputs, out, saved, grad_out, wanted)   # raises
    lead, nq, nk = _check_call(info, inputs, lengths, q_lengths)
    if tuple(grad_out.shape) != lead + (nq, info.value_dim) or grad_out.dtype != torch.float32:
        raise ValueError(f"kernel '{info.name}': grad_out must be float32 of shape "
                         f"{lead + (nq, info.value_dim)}")
    ins = [_in_place(t) for t in inputs]
    (o, olay), (g, glay) = _in_place(out), _in_place(grad_out)
    grads = [torch.empty(t.shape, dtype=torch.float32) if w else t.new_empty((0,))
             for t, w in zip(inputs, wanted)]
    info.call(PA_BACKWARD, _shape(lead, nq, nk, lengths, q_lengths),
              [(t.data_ptr(), lay) for t, lay in ins], (o.data_ptr(), olay),
              saved.data_ptr(), (g.data_ptr(), glay),
              [(x.data_ptr() if w else None, (0, 0, 0)) for x, w in zip(grads, wanted)])
    return grads


@call_backward.register_fake
def _(kernel, inputs, out, saved, grad_out, wanted, lengths=None, q_lengths=None):
    return [torch.empty_like(t, memory_format=torch.contiguous_format) if w
            else t.new_empty((0,)) for t, w in zip(inputs, wanted)]


def _call_setup_context(ctx, inputs, output):
    kernel, ins, lengths, q_lengths = inputs
    out, saved = output
    ctx.kernel = kernel
    ctx.wanted = [t.requires_grad for t in ins]
    ctx.mark_non_differentiable(saved)
    ctx.save_for_backward(*ins, out, saved, lengths, q_lengths)


def _call_train_backward(ctx, grad_out, _grad_saved):
    *ins, out, saved, lengths, q_lengths = ctx.saved_tensors
    if grad_out is None:
        grad_out = torch.zeros_like(out)
    grads = call_backward(ctx.kernel, ins, out, saved, grad_out, ctx.wanted,
                          lengths, q_lengths)
    return None, [g if w else None for g, w in zip(grads, ctx.wanted)], None, None


call_train.register_autograd(_call_train_backward, setup_context=_call_setup_context)
