"""The shared-object cache: a second compile runs no polyc, in the same
process or another; two processes compiling one kernel at once agree."""
import os
import subprocess
import sys
import textwrap

import pytest

import polyattn
from polyattn import _build

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache, and no polyc version remembered in this process."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(_build, "_versions", {})
    return tmp_path / "cache" / "polyc"


@pytest.fixture
def spawns(monkeypatch):
    """The argv of every process polyattn starts."""
    calls = []
    real = _build.subprocess.run

    def counting(argv, *a, **kw):
        calls.append(list(argv))
        return real(argv, *a, **kw)
    monkeypatch.setattr(_build.subprocess, "run", counting)
    return calls


def entries(cache):
    return sorted(p for p in os.listdir(cache) if p != "polyc-version")


def test_second_compile_spawns_no_polyc(fresh_cache, spawns, monkeypatch):
    k1 = polyattn.compile("x1*x2 + x2*x3", head_dim=4, value_dim=4)
    assert len(spawns) == 3         # --version, --explain, --emit=so
    assert any("--emit=so" in a for a in spawns)
    monkeypatch.setattr(_build, "_versions", {})       # as a new process would
    k2 = polyattn.compile("x1*x2 + x2*x3", head_dim=4, value_dim=4)
    assert len(spawns) == 3
    assert k2.path == k1.path and k2.explain == k1.explain
    assert entries(fresh_cache) == [os.path.basename(os.path.dirname(k1.path))]


def test_key_covers_source_and_settings(fresh_cache, spawns):
    paths = {polyattn.compile("x1*x2", head_dim=4).path,
             polyattn.compile("x1*x2", head_dim=8).path,
             polyattn.compile("x1*x2", head_dim=4, scale=0.5).path,
             polyattn.compile("x1*x2 + x2*x3", head_dim=4).path,
             polyattn.compile("x1*x2", kernel="other", head_dim=4).path}
    assert len(paths) == 5 and len(entries(fresh_cache)) == 5


def test_failed_compile_leaves_no_entry(fresh_cache):
    with pytest.raises(polyattn.PolycError):
        polyattn.compile("x1*x2 +")
    assert entries(fresh_cache) == []


def _logging_polyc(tmp_path):
    """A polyc that logs each run to a file, then runs the real one."""
    log = tmp_path / "polyc.log"
    wrapper = tmp_path / "polyc"
    wrapper.write_text(f"#!/bin/sh\necho \"$@\" >> '{log}'\n"
                       f"exec '{polyattn.find_polyc()}' \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper, log


SCRIPT = textwrap.dedent("""
    import polyattn, torch
    k = polyattn.compile("x1*x2", head_dim=4, value_dim=4)
    print(k.path, k(torch.ones(1, 3, 4), torch.ones(1, 3, 4), torch.ones(1, 3, 4)).sum().item())
""")


def _run_python(env, script=SCRIPT):
    return subprocess.Popen([sys.executable, "-c", script], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_new_process_hits_the_cache(tmp_path):
    wrapper, log = _logging_polyc(tmp_path)
    env = dict(os.environ, POLYC=str(wrapper), XDG_CACHE_HOME=str(tmp_path / "c"),
               PYTHONPATH=os.pathsep.join([os.path.dirname(polyattn.__path__[0]), HERE]))
    first = _run_python(env).communicate(timeout=120)
    assert first[1] == "" and len(log.read_text().splitlines()) == 3, first
    second = _run_python(env).communicate(timeout=120)
    assert second[0] == first[0] and second[0].split()[1] == "12.0"
    assert len(log.read_text().splitlines()) == 3        # no polyc this time


def test_two_processes_compile_at_once(tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "c"),
               PYTHONPATH=os.path.dirname(polyattn.__path__[0]))
    procs = [_run_python(env) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert len({o[0] for o in outs}) == 1                 # one path, one answer
    cache = tmp_path / "c" / "polyc"
    assert len(entries(cache)) == 1                      # no temporaries left
    assert sorted(os.listdir(cache / entries(cache)[0])) == ["kernels.so", "meta.json"]
