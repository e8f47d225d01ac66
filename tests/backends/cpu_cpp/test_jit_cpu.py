"""`ln.jit` on the cpu backend: the default, donation, fallback, `-t cpp`."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import lanterna as ln
from lanterna import backends
from lanterna.tools.opt import main as opt_main

INPUTS = Path(__file__).parents[2] / "passes" / "inputs"


def test_cpu_is_the_default_backend(cache_dir):
    f = ln.jit(lambda x: ln.tanh(x) * 2.0)
    assert f.backend_name == "cpu"
    x = np.linspace(-1, 1, 5)
    np.testing.assert_allclose(f(x), np.tanh(x) * 2.0, rtol=1e-12)


def test_training_step_gradients_match_the_interpreter(cache_dir):
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}
    x, y = rng.standard_normal((5, 4)), rng.integers(0, 3, 5)

    def loss(p, x, y):
        return ln.cross_entropy(ln.tanh(x @ p["w"] + p["b"]), y)

    cpu = ln.jit(ln.value_and_grad(loss), backend="cpu")(params, x, y)
    ref = ln.jit(ln.value_and_grad(loss), backend="interp")(params, x, y)
    np.testing.assert_allclose(cpu[0], ref[0], rtol=1e-12)
    for k in params:
        np.testing.assert_allclose(cpu[1][k], ref[1][k], rtol=1e-10, atol=1e-14)


def test_donated_parameters_are_updated_in_place(cache_dir):
    def update(p, g):
        return {k: p[k] - 0.5 * g[k] for k in p}

    step = ln.jit(update, backend="cpu", donate_argnums=0)
    p = {"a": np.ones(3), "b": np.zeros((2, 2))}
    g = {"a": np.full(3, 2.0), "b": np.ones((2, 2))}
    a, b = p["a"], p["b"]
    out = step(p, g)
    assert out["a"] is a and out["b"] is b
    np.testing.assert_array_equal(a, np.zeros(3))
    np.testing.assert_array_equal(b, np.full((2, 2), -0.5))
    # the interpreter ignores donation but computes the same thing
    out2 = ln.jit(update, backend="interp", donate_argnums=0)(
        {"a": np.ones(3), "b": np.zeros((2, 2))}, g
    )
    np.testing.assert_array_equal(out2["a"], np.zeros(3))


def test_without_a_compiler_jit_warns_once_and_interprets(monkeypatch):
    from lanterna.backends import cpu_cpp

    monkeypatch.setattr(cpu_cpp, "find_compiler", lambda: None)
    monkeypatch.setattr(backends, "_warned_unavailable", False)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        f = ln.jit(lambda x: x + 1.0)
    assert f.backend_name == "interp"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = ln.jit(lambda x: x * 2.0)
    assert g.backend_name == "interp"
    np.testing.assert_allclose(f(np.ones(2)), [2.0, 2.0])


def test_lanterna_opt_prints_cpp(capsys):
    rc = opt_main(
        [
            str(INPUTS / "ad_for.mlir"),
            "-p",
            "reverse-ad{func=f argnums=0,1},lower-continuations,cse,dce",
            "-t",
            "cpp",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert '#include "lanterna_cpu.h"' in out
    assert 'extern "C" int lanterna_entry' in out
    assert "// %" in out and "ln.tanh" in out  # each statement names its op
    assert "lanterna::recursive" in out  # the loop is a recursive closure


def test_lanterna_opt_cpp_refuses_unlowered_continuations(capsys):
    rc = opt_main(
        [str(INPUTS / "ad_for.mlir"), "-p", "reverse-ad{func=f argnums=0,1}", "-t", "cpp"]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert "no lowering for 'cont.reset'" in err and "Traceback" not in err
