"""polyattn: compile, call and train poly-attention kernels from Python.

    import polyattn, torch
    attn = polyattn.compile("x1*x2 + x2*x3", head_dim=64, values="x3")
    out = attn(q1, k2, q2, k3, v3)         # (..., n, 64) tensors; autograd works
    layer = polyattn.PolyAttention(dim=512, heads=8, poly="x1*x2 + x2*x3")

The kernels are C made by polyc (``polyc --emit=so``), cached under
``$XDG_CACHE_HOME/polyc`` and called through ctypes and ``torch.library``
operators; no attention is computed in Python.
"""
import math
import os
import re
from typing import Dict, Optional, Union

import numpy as np
import torch

from ._build import PolycError, find_polyc, cache_dir
from ._capi import KernelError, InputDesc
from . import _build, _capi, _op

__all__ = ["compile", "compile_all", "Kernel", "PolycError", "KernelError",
           "InputDesc", "PolyAttention", "find_polyc", "cache_dir"]
__version__ = "0.1.0"


def _define(key, value):
    """One ``-D KEY=VALUE`` from a Python setting."""
    if isinstance(value, bool):
        raise TypeError(f"setting {key}: a bool is not a polyc value")
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    elif isinstance(value, float):
        value = repr(value)
    return f"{key}={value}"


def _source(poly_or_path, kernel):
    """(text, file name, path to compile or None) for compile's argument."""
    if isinstance(poly_or_path, os.PathLike) or (
            isinstance(poly_or_path, str) and poly_or_path.endswith(".poly")):
        path = os.fspath(poly_or_path)
        try:
            with open(path) as f:
                text = f.read()
        except OSError as e:
            raise PolycError(f"cannot read '{path}': {e.strerror}") from None
        return text, os.path.basename(path), path
    if not isinstance(poly_or_path, str):
        raise TypeError("polyattn.compile takes a polynomial, .poly source "
                        f"text or a .poly path, not {type(poly_or_path).__name__}")
    if "{" in poly_or_path:
        return poly_or_path, "kernels.poly", None
    name = kernel or "attn"
    if not re.fullmatch(r"[A-Za-z_]\w*", name):
        raise ValueError(f"kernel name '{name}' is not a C identifier")
    return poly_or_path.strip() + "\n", name + ".poly", None


def compile_all(poly_or_path: Union[str, os.PathLike], **settings) -> Dict[str, "Kernel"]:
    r"""Compile every kernel of a .poly file (or source text).

    Like :func:`compile`, but returns ``{name: Kernel}`` for all kernels of
    the file, in the file's order.
    """
    text, filename, path = _source(poly_or_path, settings.pop("kernel", None))
    defines = [_define(k, v) for k, v in settings.items()]
    so, meta = _build.build(text, filename, defines, path)
    lib = _capi.load(so, meta["explain"])
    spec = (poly_or_path if path is None else os.path.abspath(path), dict(settings))
    return {name: Kernel(lib.kernels[name], spec) for name in lib.kernels}


def compile(poly_or_path: Union[str, os.PathLike], *, kernel: Optional[str] = None,
            **settings) -> "Kernel":
    r"""compile(poly_or_path, *, kernel=None, **settings) -> Kernel

    Compile a poly-attention kernel with polyc and load it.

    Args:
        poly_or_path: a polynomial such as ``"x1*x2 + x2*x3"``; or the text
            of a .poly file (anything holding ``{``); or the path of a
            ``.poly`` file (a ``str`` ending in ``.poly`` or a
            ``os.PathLike``).
        kernel: for a polynomial, the kernel's name (default ``"attn"``);
            for a file holding several kernels, which one to return.
        **settings: the settings of a .poly file (``head_dim``,
            ``value_dim``, ``values``, ``scale``, ``algorithm``, ``bound``,
            ``tolerance``, ``fallback``, ``mask`` such as ``"causal"`` or
            ``"x2 <= x1, x3 < x2"``, ``window``), each passed to polyc as
            ``-D KEY=VALUE``; a list or tuple such as ``values=("x2", "x3")``
            becomes ``x2, x3``.  A key ``"name.key"`` (through ``**{...}``)
            sets one kernel's setting only.

    Returns:
        a :class:`Kernel`.  The shared object is cached under
        ``$XDG_CACHE_HOME/polyc`` (default ``~/.cache/polyc``), keyed by the
        source, the settings, polyc's version and the CPU: a second call
        with the same arguments runs no polyc.

    Raises:
        PolycError: polyc refused the polynomial or a setting; the message
            is polyc's (``file:line:col: error: ...``).

    Example::

        >>> attn = polyattn.compile("x1*x2", head_dim=16, value_dim=16, scale=0.25)
        >>> attn.inputs[0].name, attn.graph_class
        ('m0_x1', 'tree')
    """
    kernels = compile_all(poly_or_path, kernel=kernel, **settings)
    if kernel is not None and kernel in kernels:
        return kernels[kernel]
    if len(kernels) == 1:
        return next(iter(kernels.values()))
    names = ", ".join(kernels)
    if kernel is not None:
        raise ValueError(f"no kernel '{kernel}' in the file (it holds {names})")
    raise ValueError(f"the file holds kernels {names}: name one with kernel=")


def _from_spec(poly_or_path, kernel, settings):
    """Unpickling a Kernel: compile it again (a cache hit, usually)."""
    return compile(poly_or_path, kernel=kernel, **settings)


class Kernel:
    r"""A compiled poly-attention kernel (made by :func:`compile`).

    Call it with one tensor per input, in ``kernel.inputs`` order: the
    factor matrices ``(..., n, head_dim)`` in monomial order, then the value
    matrices ``(..., n, value_dim)`` by increasing variable.  Leading
    dimensions are batch (batch x heads, say) and must agree.  It returns
    ``(..., n, value_dim)``.

    Torch tensors (CPU) go through the ``polyattn::`` operators: autograd
    and ``torch.compile`` work, float32 is computed (other float dtypes are
    converted and the result converted back), strided tensors are passed
    to ``K_call`` as they are.  ``lengths=`` and fewer rows in x1's inputs
    than in the others' give key padding and cross-attention (see
    ``__call__``).  NumPy arrays work too, forward only.

    Attributes:
        name, polynomial, graph_class (``"tree"``, ``"cyclic"``,
        ``"high-degree"``), algorithm (the plan, e.g. ``"exact-tree"``),
        num_vars, head_dim, value_dim, scale, coefficients, inputs (a tuple
        of :class:`InputDesc`), explain (``polyc --explain``'s text),
        has_backward, bound, error and exact_fallback (approximate
        kernels), path (the shared object).
    """

    def __init__(self, info, spec):
        self._info, self._spec = info, spec
        self._key = f"{info.lib.path}:{info.name}"
        for attr in ("name", "polynomial", "graph_class", "algorithm",
                     "num_vars", "num_inputs", "head_dim", "value_dim", "scale",
                     "coefficients", "inputs", "explain", "has_backward",
                     "bound", "error", "exact_fallback"):
            setattr(self, attr, getattr(info, attr))
        self.path = info.lib.path
        self._cols = tuple(d.cols for d in info.inputs)
        _op.register(self._key, info)

    def __repr__(self):
        return (f"<polyattn.Kernel {self.name}: {self.polynomial} "
                f"({self.graph_class}, {self.algorithm}), head_dim "
                f"{self.head_dim}, value_dim {self.value_dim}, inputs "
                f"{', '.join(d.name for d in self.inputs)}>")

    def __reduce__(self):
        return (_from_spec, (self._spec[0], self.name, self._spec[1]))

    def __deepcopy__(self, memo):
        return self

    def __call__(self, *inputs, lengths=None, q_lengths=None):
        r"""kernel(*inputs, lengths=None, q_lengths=None) -> Tensor or numpy.ndarray

        Poly-attention of the inputs (doc/design.md): for each query position
        ℓ1, the softmax over every tuple (ℓ2, …, ℓt) of the polynomial's
        score, weighting the entrywise product of the value rows.

        Args:
            *inputs: one tensor (or array) per entry of ``kernel.inputs``,
                shaped ``(B, ..., n, head_dim)`` for a factor and
                ``(B, ..., n, value_dim)`` for a value, all with the same
                leading dimensions.  x1's inputs (the queries) may have
                fewer rows ``nq`` than the others' ``n`` (cross-attention,
                decoding): query row i then sits at position i + n − nq.
                Strided tensors, such as ``(B, n, H, d)`` tensors
                transposed to ``(B, H, n, d)``, are read in place.
            lengths: optional, ``B`` integers (a tensor or sequence), the
                valid key rows of each entry of the first leading
                dimension (shared by the others, e.g. heads): rows past it
                are not read, and are no keys (key padding).  With
                ``nq == n`` the queries have the same lengths unless
                ``q_lengths`` says otherwise; output rows past a length
                are 0.
            q_lengths: optional, ``B`` integers, the valid query rows of each
                entry (at most its length), the last of which sits at the
                entry's last key position.  Without it the queries of an
                entry are all ``nq`` rows when ``nq < n`` (each length then
                at least ``nq``), its length when ``nq == n``.

        Returns:
            ``(..., nq, value_dim)``, of the inputs' (promoted) float dtype.

        Raises:
            TypeError: wrong number or type of inputs.
            ValueError: shapes that do not fit, or a tensor not on the CPU.
            KernelError: the kernel's status, e.g. ``PA_ERR_NONFINITE`` for
                NaN or Inf in an input, ``PA_ERR_BOUND`` past an
                approximate kernel's bound.
            NotImplementedError: on backward, for a kernel without one.
        """
        if inputs and all(type(x).__module__ == "numpy" for x in inputs):
            if lengths is not None or q_lengths is not None:
                raise TypeError(f"kernel '{self.name}': lengths= takes torch "
                                "tensors as inputs, not NumPy arrays")
            return self._call_numpy(inputs)
        return self._call_torch(inputs, lengths, q_lengths)

    def _shape(self, shapes):
        """(leading dims, n) of the inputs' shapes, checked against the kernel."""
        if len(shapes) != self.num_inputs:
            raise TypeError(f"kernel '{self.name}' takes {self.num_inputs} "
                            f"inputs ({', '.join(d.name for d in self.inputs)}),"
                            f" got {len(shapes)}")
        lead, n = tuple(shapes[0][:-2]), shapes[0][-2] if len(shapes[0]) >= 2 else 0
        first = {}                   # x1's inputs share their rows, the others theirs
        for s, d in zip(shapes, self.inputs):
            q = d.variable == 1
            f = first.setdefault(q, (d, tuple(s)))
            rows = f[1][-2] if len(f[1]) >= 2 else 0
            if len(s) < 2 or tuple(s[:-2]) != lead or s[-2] != rows or s[-1] != d.cols:
                raise ValueError(
                    f"kernel '{self.name}': input {d.name} has shape "
                    f"{tuple(s)}; expected (..., n, {d.cols}) with the leading "
                    f"dimensions of {self.inputs[0].name} {tuple(shapes[0])} and "
                    f"the n of {f[0].name} {f[1]}")
        return lead, n

    def _call_numpy(self, inputs):
        lead, n = self._shape([x.shape for x in inputs])
        dtype = np.result_type(*inputs)
        if dtype.kind != "f":
            raise TypeError(f"kernel '{self.name}': inputs must be float "
                            f"arrays, got {dtype}")
        arrs = [np.ascontiguousarray(x, dtype=np.float32) for x in inputs]
        out = np.empty(lead + (n, self.value_dim), np.float32)
        if out.size:
            self._info.run(math.prod(lead), n, [a.ctypes.data for a in arrs],
                           out.ctypes.data)
        return out if dtype == np.float32 else out.astype(dtype)

    def _rows(self, inputs):
        """(nq, n): the rows of x1's inputs (the queries) and the others'."""
        nq = n = None
        for x, d in zip(inputs, self.inputs):
            rows = x.shape[-2] if isinstance(x, torch.Tensor) and x.dim() >= 2 else None
            if d.variable == 1:
                nq = rows if nq is None else nq
            else:
                n = rows if n is None else n
        return (n if nq is None else nq), (nq if n is None else n)

    def _call_torch(self, inputs, lengths=None, q_lengths=None):
        if len(inputs) != self.num_inputs:
            self._shape([getattr(x, "shape", ()) for x in inputs])
        x0 = inputs[0]
        if not isinstance(x0, torch.Tensor) or x0.dim() < 2:
            self._torch_error(inputs)
        nq, n = self._rows(inputs)
        lead, dtype = x0.shape[:-2], x0.dtype
        plain = True                 # every input float32, 3-D and contiguous
        for x, c, d in zip(inputs, self._cols, self.inputs):
            if (not isinstance(x, torch.Tensor) or x.dim() < 2
                    or x.shape[:-2] != lead
                    or x.shape[-2] != (nq if d.variable == 1 else n)
                    or x.shape[-1] != c
                    or x.device.type != "cpu" or not x.is_floating_point()):
                self._torch_error(inputs)
            if x.dtype != dtype:
                dtype = torch.promote_types(dtype, x.dtype)
            plain = plain and x.dim() == 3 and x.is_contiguous()
        if nq > n:
            raise ValueError(f"kernel '{self.name}': x1's inputs have {nq} rows, "
                             f"more than the {n} of the others (each query needs "
                             f"a position among the keys)")
        batch = math.prod(lead)
        if batch == 0 or n == 0:
            return x0.new_zeros(tuple(lead) + (nq, self.value_dim), dtype=dtype)
        if lengths is not None or q_lengths is not None or nq != n or not plain:
            return self._call_extended(inputs, lengths, q_lengths, dtype)
        if not (plain and dtype == torch.float32):
            inputs = [x.to(torch.float32).reshape(batch, n, c).contiguous()
                      for x, c in zip(inputs, self._cols)]
        grad = torch.is_grad_enabled() and any(x.requires_grad for x in inputs)
        if not _op.eager_ok(inputs):
            out = _op.train(self._key, inputs)[0] if grad else _op.forward(self._key, inputs)
        elif grad:
            out = _op.Train.apply(self._info, batch, n, *inputs)[0]
        else:
            out = _op.forward_impl(self._info, batch, n, inputs)
        if not (plain and dtype == torch.float32):
            out = out.reshape(tuple(lead) + (n, self.value_dim)).to(dtype)
        return out

    def _call_extended(self, inputs, lengths, q_lengths, dtype):
        """The call through K_call (the polyattn::call_* operators): tensors
        read in place, lengths, fewer queries than keys."""
        lead = tuple(inputs[0].shape[:-2])
        entries = lead[0] if lead else 1

        def as_lengths(x, name):
            if x is None:
                return None
            t = torch.as_tensor(x, dtype=torch.int64).reshape(-1).contiguous()
            if t.numel() != entries:
                raise ValueError(f"kernel '{self.name}': {name} has {t.numel()} "
                                 f"entries; the first leading dimension is {entries}")
            return t

        lengths, q_lengths = as_lengths(lengths, "lengths"), as_lengths(q_lengths, "q_lengths")
        inputs = [x if x.dtype == torch.float32 else x.to(torch.float32) for x in inputs]
        grad = torch.is_grad_enabled() and any(x.requires_grad for x in inputs)
        if grad:
            out = _op.call_train(self._key, inputs, lengths, q_lengths)[0]
        else:
            out = _op.call_forward(self._key, inputs, lengths, q_lengths)
        return out if dtype == torch.float32 else out.to(dtype)

    def _torch_error(self, inputs):
        """Raise the error that explains why inputs do not fit."""
        for x in inputs:
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"kernel '{self.name}' takes torch tensors or "
                                f"NumPy arrays, got {type(x).__name__}")
            if x.device.type != "cpu":
                raise ValueError(f"kernel '{self.name}' runs on the CPU; an "
                                 f"input is on {x.device}")
            if not x.is_floating_point():
                raise TypeError(f"kernel '{self.name}': inputs must be float "
                                f"tensors, got {x.dtype}")
        self._shape([x.shape for x in inputs])


from . import nn                      # noqa: E402  (needs compile above)
from .nn import PolyAttention        # noqa: E402
