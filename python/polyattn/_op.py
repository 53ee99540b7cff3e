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
``backward``.  ``Kernel.__call__`` (in __init__.py) reshapes and converts
the user's tensors and picks ``forward`` or ``train``.
"""
from typing import List, Tuple

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
    saved = torch.empty((info.saved_floats(b, n),), dtype=torch.float32)
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
            f"kernel '{info.name}' ({info.polynomial}) has no backward: polyc "
            f"does not yet emit gradients for {info.graph_class} kernels "
            f"(algorithm {info.algorithm}); tree and approximate kernels have them")
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
