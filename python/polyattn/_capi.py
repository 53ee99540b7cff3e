"""The C interface of a kernel (runtime/polyattn.h) through ctypes.

A ``Library`` is one loaded ``kernels.so``; a ``KernelInfo`` is one
kernel's ``K_info`` read into Python, with the kernel's entry points
(``run``, ``train``, ``backward``, ``saved_floats``) as ctypes functions
that take the batch, n and the addresses of contiguous float32 buffers.
No attention is computed here: every call goes to the C kernel.
"""
import ctypes
import os
from collections import namedtuple

__all__ = ["KernelError", "InputDesc", "KernelInfo", "load"]

PA_OK = 0
STATUS_NAMES = {
    -1: "PA_ERR_ARGUMENT", -2: "PA_ERR_NULL", -3: "PA_ERR_NOMEM",
    -4: "PA_ERR_BOUND", -5: "PA_ERR_NONFINITE", -6: "PA_ERR_UNSUPPORTED",
    -7: "PA_ERR_RANGE",
}


class KernelError(RuntimeError):
    """A kernel returned a status other than ``PA_OK``.

    ``str(err)`` names the kernel and gives ``pa_strerror``'s text;
    ``err.status`` is the ``pa_status`` code (negative) and
    ``err.status_name`` its name, e.g. ``"PA_ERR_NONFINITE"``.
    """

    def __init__(self, kernel, status, text):
        self.kernel, self.status = kernel, status
        self.status_name = STATUS_NAMES.get(status, "pa_status %d" % status)
        super().__init__(f"kernel '{kernel}': {text} ({self.status_name})")


class _InputDesc(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("kind", ctypes.c_int),
                ("monomial", ctypes.c_int), ("variable", ctypes.c_int),
                ("cols", ctypes.c_int)]


class _KernelInfo(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p), ("polynomial", ctypes.c_char_p),
        ("graph_class", ctypes.c_char_p), ("algorithm", ctypes.c_char_p),
        ("num_vars", ctypes.c_int), ("num_monomials", ctypes.c_int),
        ("num_inputs", ctypes.c_int), ("head_dim", ctypes.c_int),
        ("value_dim", ctypes.c_int),
        ("inputs", ctypes.POINTER(_InputDesc)),
        ("run", ctypes.c_void_p),
        ("scale", ctypes.c_double),
        ("coefficients", ctypes.POINTER(ctypes.c_double)),
        ("bound", ctypes.c_double), ("error", ctypes.c_double),
        ("exact_fallback", ctypes.c_int),
        ("saved_floats", ctypes.c_void_p),
        ("train", ctypes.c_void_p), ("backward", ctypes.c_void_p),
    ]


_i64, _vp = ctypes.c_int64, ctypes.c_void_p


class _Layout(ctypes.Structure):
    _fields_ = [("row", ctypes.c_int64), ("head", ctypes.c_int64),
                ("batch", ctypes.c_int64)]


class _Call(ctypes.Structure):
    _fields_ = [
        ("mode", ctypes.c_int), ("batch", _i64), ("heads", _i64),
        ("nq", _i64), ("nk", _i64), ("q_lengths", _vp), ("k_lengths", _vp),
        ("inputs", _vp), ("in_layout", _vp), ("out", _vp),
        ("out_layout", _Layout), ("saved", _vp), ("grad_out", _vp),
        ("grad_out_layout", _Layout), ("grad_inputs", _vp),
        ("grad_layout", _vp),
    ]


PA_FORWARD, PA_TRAIN, PA_BACKWARD = 0, 1, 2
_RUN = ctypes.CFUNCTYPE(ctypes.c_int, _i64, _i64, _vp, _vp)
_TRAIN = ctypes.CFUNCTYPE(ctypes.c_int, _i64, _i64, _vp, _vp, _vp)
_BACKWARD = ctypes.CFUNCTYPE(ctypes.c_int, _i64, _i64, _vp, _vp, _vp, _vp, _vp)
_SAVED = ctypes.CFUNCTYPE(_i64, _i64, _i64)
_CALL = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(_Call))
_CALL_SAVED = ctypes.CFUNCTYPE(_i64, ctypes.POINTER(_Call))

InputDesc = namedtuple("InputDesc", "name kind monomial variable cols")
InputDesc.__doc__ = """One input of a kernel, from ``K_info.inputs``.

``kind`` is ``"factor"`` (a factor matrix F[m,q], ``cols`` = head_dim) or
``"value"`` (a value matrix V[j], ``cols`` = value_dim); ``monomial`` is the
0-based monomial of a factor (-1 for values); ``variable`` is j of x_j."""


class KernelInfo:
    """One kernel's ``K_info`` and entry points in a loaded library."""

    def __init__(self, lib, name, explain):
        raw = _KernelInfo.in_dll(lib.dll, name + "_info")
        self.lib, self.name, self.explain = lib, name, explain
        self.polynomial = raw.polynomial.decode()
        self.graph_class = raw.graph_class.decode()
        self.algorithm = raw.algorithm.decode()
        self.num_vars, self.num_inputs = raw.num_vars, raw.num_inputs
        self.head_dim, self.value_dim = raw.head_dim, raw.value_dim
        self.scale = raw.scale
        self.coefficients = tuple(raw.coefficients[i]
                                  for i in range(raw.num_monomials))
        self.bound, self.error = raw.bound, raw.error
        self.exact_fallback = bool(raw.exact_fallback)
        self.inputs = tuple(
            InputDesc(d.name.decode(), "value" if d.kind == 1 else "factor",
                      d.monomial, d.variable, d.cols)
            for d in raw.inputs[:raw.num_inputs])
        self._run = _RUN(raw.run)
        # K_call by its name, so this does not depend on where K_info
        # keeps the pointer.
        self._call = _CALL((name + "_call", lib.dll))
        self._call_saved = _CALL_SAVED((name + "_call_saved_floats", lib.dll))
        self.has_backward = bool(raw.train and raw.backward and raw.saved_floats)
        if self.has_backward:
            self._train = _TRAIN(raw.train)
            self._backward = _BACKWARD(raw.backward)
            self._saved = _SAVED(raw.saved_floats)

    def check(self, status):
        """Raise KernelError for a status other than PA_OK."""
        if status != PA_OK:
            raise KernelError(self.name, status, self.lib.strerror(status))

    def saved_floats(self, batch, n):
        """Floats the training forward keeps for the backward (0 without one)."""
        return int(self._saved(batch, n)) if self.has_backward else 0

    def run(self, batch, n, inputs, out):
        """The forward on buffer addresses; raises KernelError."""
        arr = (_vp * len(inputs))(*inputs)
        self.check(self._run(batch, n, arr, out))

    def train(self, batch, n, inputs, out, saved):
        """The training forward, filling saved; raises KernelError."""
        arr = (_vp * len(inputs))(*inputs)
        self.check(self._train(batch, n, arr, out, saved))

    def backward(self, batch, n, inputs, out, saved, grad_out, grads):
        """Gradients of every input into the buffers grads; raises KernelError."""
        arr = (_vp * len(inputs))(*inputs)
        garr = (_vp * len(grads))(*grads)
        self.check(self._backward(batch, n, arr, out, saved, grad_out, garr))


    def _make_call(self, mode, shape, inputs, out, saved=None, grad_out=None,
                   grads=None):
        """The pa_call of a K_call: shape = (batch, heads, nq, nk, q_lengths,
        k_lengths) with lengths as addresses (or None); inputs, grads: lists
        of (address or None, (row, head, batch)); out, grad_out: (address,
        (row, head, batch)).  The ctypes arrays are kept on the struct."""
        c = _Call(mode=mode)
        c.batch, c.heads, c.nq, c.nk, c.q_lengths, c.k_lengths = shape
        c._keep = []

        def arrays(pairs):
            ptrs = (_vp * len(pairs))(*[p for p, _ in pairs])
            lays = (_Layout * len(pairs))(*[_Layout(*l) for _, l in pairs])
            c._keep.extend((ptrs, lays))
            return ctypes.cast(ptrs, _vp), ctypes.cast(lays, _vp)

        c.inputs, c.in_layout = arrays(inputs)
        c.out, c.out_layout = out[0], _Layout(*out[1])
        c.saved = saved
        if grad_out is not None:
            c.grad_out, c.grad_out_layout = grad_out[0], _Layout(*grad_out[1])
            c.grad_inputs, c.grad_layout = arrays(grads)
        return c

    def call(self, *args, **kw):
        """K_call on the pa_call _make_call builds; raises KernelError."""
        c = self._make_call(*args, **kw)
        self.check(self._call(ctypes.byref(c)))

    def call_saved_floats(self, shape):
        """K_call_saved_floats of a PA_TRAIN call of that shape (-1: none)."""
        c = _Call(mode=PA_TRAIN)
        c.batch, c.heads, c.nq, c.nk, c.q_lengths, c.k_lengths = shape
        return int(self._call_saved(ctypes.byref(c)))


class Library:
    """A loaded kernels.so and the names of the kernels it holds."""

    def __init__(self, path, explain):
        # The kernels' OpenMP symbols carry libomp's version (VERSION), so
        # they bind to clang's libomp even where PyTorch has loaded
        # libgomp globally.
        self.path = path
        self.dll = ctypes.CDLL(path, mode=os.RTLD_NOW | os.RTLD_LOCAL)
        self.dll.pa_strerror.restype = ctypes.c_char_p
        self.dll.pa_strerror.argtypes = [ctypes.c_int]
        self.kernels = {name: KernelInfo(self, name, text)
                        for name, text in explain.items()}

    def strerror(self, status):
        """pa_strerror's text for status."""
        return self.dll.pa_strerror(status).decode()


_loaded = {}


def load(path, explain):
    """The Library at path, loaded once per process."""
    if path not in _loaded:
        _loaded[path] = Library(path, explain)
    return _loaded[path]
