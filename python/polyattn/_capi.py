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
_RUN = ctypes.CFUNCTYPE(ctypes.c_int, _i64, _i64, _vp, _vp)
_TRAIN = ctypes.CFUNCTYPE(ctypes.c_int, _i64, _i64, _vp, _vp, _vp)
_BACKWARD = ctypes.CFUNCTYPE(ctypes.c_int, _i64, _i64, _vp, _vp, _vp, _vp, _vp)
_SAVED = ctypes.CFUNCTYPE(_i64, _i64, _i64)

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
