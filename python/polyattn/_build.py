"""Finding polyc, running it, and the cache of shared objects it makes.

A compiled file lives in ``$XDG_CACHE_HOME/polyc/<key>/`` (default
``~/.cache/polyc``): ``kernels.so`` from ``polyc --emit=so`` and
``meta.json`` with the kernels' names and ``--explain`` text.  The key
hashes the source text, its file name, the ``-D`` settings, polyc's
version and identity (path, size, modification time) and the target CPU.
An entry is built in a temporary directory beside it and renamed into
place, so two processes compiling the same kernel at once both end with
the same complete entry, and an interrupted build leaves nothing that a
later lookup would take.  polyc's version is remembered under
``polyc-version/``, so a cache hit runs no process at all.
"""
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile

__all__ = ["PolycError", "find_polyc", "build"]


class PolycError(RuntimeError):
    """polyc refused a polynomial or a setting, or could not be run.

    ``str(err)`` is polyc's standard error (``file:line:col: error: ...``
    with the source line and a caret); ``err.stderr`` holds it too and
    ``err.returncode`` polyc's exit status.
    """

    def __init__(self, message, stderr="", returncode=None):
        super().__init__(message)
        self.stderr = stderr
        self.returncode = returncode


def find_polyc() -> str:
    r"""Return the path of the polyc to run.

    Looked for in this order: ``$POLYC``; a ``polyc`` inside the package
    (``polyattn/bin/polyc``, for a wheel that carries one); the source
    tree's ``build/polyc`` when the package is used from a checkout
    (``pip install -e ./python``); ``polyc`` on ``$PATH``.

    Raises:
        PolycError: when none of them exists.
    """
    env = os.environ.get("POLYC")
    if env:
        if not os.access(env, os.X_OK):
            raise PolycError(f"$POLYC is '{env}', which is not an executable")
        return os.path.abspath(env)
    here = os.path.dirname(os.path.abspath(__file__))
    for cand in (os.path.join(here, "bin", "polyc"),
                 os.path.join(here, "..", "..", "build", "polyc")):
        if os.access(cand, os.X_OK):
            return os.path.normpath(cand)
    found = shutil.which("polyc")
    if found:
        return found
    raise PolycError("cannot find polyc: build it with 'make' in the polyc "
                     "tree, install it on $PATH with 'make install', or name "
                     "it with $POLYC")


def cache_dir() -> str:
    """The cache root: ``$XDG_CACHE_HOME/polyc``, else ``~/.cache/polyc``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache")
    return os.path.join(base, "polyc")


def _run(argv, cwd=None):
    """Run polyc with argv; its stdout, or PolycError carrying its stderr."""
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    except OSError as e:
        raise PolycError(f"cannot run '{argv[0]}': {e}") from None
    if proc.returncode != 0:
        err = proc.stderr.rstrip("\n")
        raise PolycError(err or f"{argv[0]} failed with exit status "
                         f"{proc.returncode}", proc.stderr, proc.returncode)
    return proc.stdout


_versions = {}


def _atomic_write(path, text):
    """Write text to path through a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def polyc_version(polyc):
    """polyc's ``--version`` line, remembered per binary (path, size, mtime)
    in memory and under the cache, so a cache hit spawns nothing."""
    st = os.stat(polyc)
    ident = f"{os.path.realpath(polyc)}\0{st.st_size}\0{st.st_mtime_ns}"
    if ident in _versions:
        return _versions[ident], ident
    memo = os.path.join(cache_dir(), "polyc-version",
                        hashlib.sha256(ident.encode()).hexdigest()[:32])
    try:
        with open(memo) as f:
            version = f.read().strip()
    except OSError:
        version = _run([polyc, "--version"]).strip()
        os.makedirs(os.path.dirname(memo), exist_ok=True)
        _atomic_write(memo, version + "\n")
    _versions[ident] = version
    return version, ident


def target_cpu():
    """What names the CPU a shared object was built for: the machine and
    the model name and feature flags of /proc/cpuinfo."""
    desc = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        for field in ("model name", "flags"):
            m = re.search(rf"^{field}\s*:\s*(.*)$", info, re.M)
            if m:
                desc += "\0" + m.group(1).strip()
    except OSError:
        pass
    return desc


def _explain_names(text):
    """Split ``polyc --explain`` output into {kernel name: its text}."""
    blocks = {}
    name = None
    for line in text.splitlines(keepends=True):
        m = re.match(r"kernel (\w+)$", line.rstrip("\n"))
        if m:
            name = m.group(1)
            blocks[name] = ""
        if name is not None:
            blocks[name] += line
    return {k: v.rstrip("\n") + "\n" for k, v in blocks.items()}


def build(source, filename, defines, src_path=None):
    """Return (path of kernels.so, meta dict) for a .poly source, compiling
    it with polyc unless the cache holds it.

    source is the file's text and filename its base name (a bare
    polynomial's kernel is named after it); src_path, when given, is the
    user's file, compiled in place so diagnostics name it as given;
    defines are the ``KEY=VALUE`` strings of ``-D``.
    """
    polyc = find_polyc()
    version, ident = polyc_version(polyc)
    key = hashlib.sha256(json.dumps(
        [source, filename, list(defines), version, ident, target_cpu()]
    ).encode()).hexdigest()[:40]
    entry = os.path.join(cache_dir(), key)
    so, meta_path = os.path.join(entry, "kernels.so"), os.path.join(entry, "meta.json")
    if os.path.exists(so) and os.path.exists(meta_path):
        with open(meta_path) as f:
            return so, json.load(f)
    os.makedirs(cache_dir(), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{key}.tmp", dir=cache_dir())
    try:
        if src_path is None:
            src_path, cwd = filename, tmp
            with open(os.path.join(tmp, filename), "w") as f:
                f.write(source)
        else:
            cwd = None
        argv = [polyc, src_path]
        for d in defines:
            argv += ["-D", d]
        explain = _run(argv + ["--explain"], cwd)
        _run(argv + ["--emit=so", "-o", os.path.join(tmp, "kernels.so")], cwd)
        meta = {"polyc": version, "source": filename, "defines": list(defines),
                "explain": _explain_names(explain)}
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
        if src_path == filename:
            os.remove(os.path.join(tmp, filename))
        try:
            os.rename(tmp, entry)
        except OSError:
            if not os.path.exists(meta_path):   # not another process's entry
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with open(meta_path) as f:
        return so, json.load(f)
