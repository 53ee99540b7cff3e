"""Errors: polyc's diagnostics, bad shapes and dtypes, kernel statuses."""
import numpy as np
import pytest
import torch

import polyattn
from conftest import compile_case, random_inputs


def test_bad_polynomial_carries_polyc_diagnostic():
    with pytest.raises(polyattn.PolycError) as e:
        polyattn.compile("x1*x2 + ", kernel="bad")
    msg = str(e.value)
    assert msg.startswith("bad.poly:1:8: error: expected a number or a variable")
    assert "x1*x2 +" in msg and "^" in msg            # the source line, a caret
    assert e.value.returncode == 1 and e.value.stderr.startswith("bad.poly:1:8:")


def test_gap_in_variables(tmp_path):
    with pytest.raises(polyattn.PolycError, match=r"gap\.poly:1:\d+: error: "):
        polyattn.compile("x1*x3", kernel="gap")


def test_bad_setting_names_the_command_line():
    with pytest.raises(polyattn.PolycError,
                       match=r"<command line>:1:13: error: head_dim must be an integer"):
        polyattn.compile("x1*x2", head_dim=0)


def test_bad_file(tmp_path):
    f = tmp_path / "broken.poly"
    f.write_text("kernel k {\n    poly = x1*x2;\n    head_dim = 64\n}\n")
    with pytest.raises(polyattn.PolycError) as e:
        polyattn.compile(str(f))
    assert str(e.value).startswith(f"{f}:3:18: error: expected ';'")
    with pytest.raises(polyattn.PolycError, match="cannot read"):
        polyattn.compile(str(tmp_path / "missing.poly"))


def test_no_polyc(monkeypatch, tmp_path):
    monkeypatch.setenv("POLYC", str(tmp_path / "nowhere" / "polyc"))
    with pytest.raises(polyattn.PolycError, match=r"\$POLYC"):
        polyattn.compile("x1*x2")


def test_wrong_number_of_inputs():
    k = compile_case("softmax")
    with pytest.raises(TypeError, match=r"takes 3 inputs \(m0_x1, m0_x2, v2\), got 2"):
        k(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4))


@pytest.mark.parametrize("shapes", [
    [(2, 5, 4), (2, 5, 4), (2, 5, 4)],        # v2 must have 3 columns
    [(2, 5, 4), (2, 6, 4), (2, 5, 3)],        # n differs
    [(2, 5, 4), (3, 5, 4), (2, 5, 3)],        # batch differs
    [(5, 4), (5, 4), (5,)],                   # a vector
])
def test_bad_shapes(shapes):
    k = compile_case("softmax")
    with pytest.raises(ValueError, match="kernel 'softmax': input"):
        k(*[torch.zeros(s) for s in shapes])
    with pytest.raises(ValueError, match="kernel 'softmax': input"):
        k(*[np.zeros(s, np.float32) for s in shapes])


def test_bad_dtype_and_type():
    k = compile_case("softmax")
    with pytest.raises(TypeError, match="float tensors"):
        k(*[torch.zeros(1, 4, d.cols, dtype=torch.int32) for d in k.inputs])
    with pytest.raises(TypeError, match="torch tensors or NumPy arrays"):
        k(torch.zeros(1, 4, 4), [[0.0] * 4] * 4, torch.zeros(1, 4, 3))


@pytest.mark.parametrize("grad", [False, True])
def test_nan_gives_status_exception(grad, gen):
    k = compile_case("tree")
    xs = random_inputs(k, (2,), 5, gen)
    xs[1][1, 3, 2] = float("nan")
    xs = [x.requires_grad_(grad) for x in xs]
    with pytest.raises(polyattn.KernelError) as e:
        k(*xs)
    assert e.value.status == -5 and e.value.status_name == "PA_ERR_NONFINITE"
    assert str(e.value) == ("kernel 'tree': an input holds NaN or infinity "
                            "(PA_ERR_NONFINITE)")


def test_nan_numpy(gen):
    k = compile_case("softmax")
    xs = [x.numpy() for x in random_inputs(k, (1,), 3, gen)]
    xs[2][0, 0, 0] = np.inf
    with pytest.raises(polyattn.KernelError, match="NaN or infinity"):
        k(*xs)


def test_operator_checks_its_own_arguments():
    k = compile_case("softmax")
    k(*[torch.zeros(1, 2, d.cols) for d in k.inputs])          # registers it
    with pytest.raises(ValueError, match="contiguous float32 CPU tensor"):
        torch.ops.polyattn.forward(k._key, [torch.zeros(1, 2, 4, dtype=torch.float64),
                                            torch.zeros(1, 2, 4), torch.zeros(1, 2, 3)])
    with pytest.raises(RuntimeError, match="no kernel 'nope'"):
        torch.ops.polyattn.forward("nope", [torch.zeros(1, 2, 4)])


def test_emit_so_leaves_no_file_on_error(tmp_path):
    """polyc --emit=so fails like polyc's other outputs: status 1, a
    diagnostic, and nothing written beside the target."""
    import subprocess
    (tmp_path / "bad.poly").write_text("x1*x2 + x4\n")
    good = tmp_path / "good.poly"
    good.write_text("x1*x2\n")
    polyc = polyattn.find_polyc()
    r = subprocess.run([polyc, "bad.poly", "--emit=so", "-o", "bad.so"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("bad.poly:1:")
    r = subprocess.run([polyc, "good.poly", "--emit=so", "-o", "good.so"], cwd=tmp_path,
                       capture_output=True, text=True, env={**__import__("os").environ,
                                                           "POLYC_LIB_DIR": str(tmp_path)})
    assert r.returncode == 1 and "libpolyattn_pic.a" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.poly", "good.poly"]
    r = subprocess.run([polyc, "good.poly", "--emit=so"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0 and (tmp_path / "good.so").read_bytes()[:4] == b"\x7fELF"
