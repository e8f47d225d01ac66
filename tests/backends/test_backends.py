"""The backend contract and registry (`lanterna.backends`): lazy registration by import
path, cheap availability checks, the fallback to the interpreter, and the interpreter
backend's side of the contract (`donate`, `memory_stats`)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import lanterna as ln
from lanterna import backends
from lanterna.backends import (
    UnknownBackendError,
    available_backends,
    default_backend,
    get_backend,
    register_backend,
    unavailable_reason,
)
from lanterna.backends.interp import InterpBackend
from lanterna.errors import LanternaError
from lanterna.ir import parse_module

SCALE = """
func.func @f(%x: tensor<3xf64>, %y: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>) {
  %t = ln.tanh %x : tensor<3xf64>
  %s = ln.mul %t, %y : tensor<3xf64>, tensor<3xf64>
  func.return %s, %y : tensor<3xf64>, tensor<3xf64>
}
"""


def _without_gxx(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_builtin_backends_are_registered_and_name_themselves():
    assert {"cpu", "interp"} <= set(available_backends())
    for name in ("cpu", "interp"):
        backend = get_backend(name)
        assert backend.name == name
        assert get_backend(name) is backend  # built once
    assert get_backend("interp").default_pipeline == ""
    assert "lower-continuations" in get_backend("cpu").default_pipeline


def test_interp_is_always_available():
    interp = get_backend("interp")
    assert interp.available() is True
    assert interp.unavailable_reason() is None
    assert unavailable_reason("interp") is None


def test_interp_accepts_donate_and_leaves_the_donated_array_alone():
    module = parse_module(SCALE)
    run = InterpBackend().compile(module, "f", donate=(0, 1))
    x, y = np.array([0.1, -0.5, 2.0]), np.array([1.0, 2.0, 3.0])
    x0, y0 = x.copy(), y.copy()
    s, y_out = run(x, y)
    np.testing.assert_allclose(s, np.tanh(x0) * y0, rtol=1e-15)
    # Donation is a permission: the interpreter writes into no input, and a result
    # that passes an argument through is a copy, not the caller's array.
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y_out, y0)
    assert y_out is not y
    assert run.memory_stats() == {}


def test_jit_with_donation_on_the_interpreter():
    step = ln.jit(lambda p, g: p - 0.5 * g, backend="interp", donate_argnums=0)
    assert step.memory_stats() == {}  # nothing ran yet
    p = np.ones(4)
    np.testing.assert_allclose(step(p, np.full(4, 2.0)), np.zeros(4))
    np.testing.assert_array_equal(p, np.ones(4))
    assert step.memory_stats() == {}


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(UnknownBackendError, match="unknown backend 'nope'; known backends: .*cpu"):
        get_backend("nope")
    with pytest.raises(UnknownBackendError, match="unknown backend 'nope'"):
        unavailable_reason("nope")


def test_registration_by_import_path_is_lazy(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(backends, "_REGISTRY", dict(backends._REGISTRY))
    register_backend("lazy-interp", "lanterna.backends.interp:InterpBackend")
    assert backends._REGISTRY["lazy-interp"].instance is None
    assert unavailable_reason("lazy-interp") is None  # no check given: asks the backend
    assert isinstance(get_backend("lazy-interp"), InterpBackend)
    with pytest.raises(ValueError, match="already registered"):
        register_backend("lazy-interp", InterpBackend)
    register_backend("lazy-interp", InterpBackend, replace=True)
    assert get_backend("lazy-interp") is not get_backend("interp")


def test_a_check_answers_without_building_the_backend(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(backends, "_REGISTRY", dict(backends._REGISTRY))

    def factory():
        raise AssertionError("the backend must not be built to ask if it is available")

    register_backend("needs-a-gpu", factory, check=lambda: "no GPU found")
    assert unavailable_reason("needs-a-gpu") == "no GPU found"


def test_a_backend_missing_part_of_the_contract_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(backends, "_REGISTRY", dict(backends._REGISTRY))

    class Old:
        default_pipeline = ""

        def compile(self, module, fn_name):
            raise AssertionError("not called")

    register_backend("old-style", Old)
    with pytest.raises(LanternaError) as e:
        ln.jit(lambda x: x, backend="old-style")
    message = str(e.value)
    assert "backend 'old-style' (" in message and "Old) does not implement" in message
    assert "no name, available, unavailable_reason" in message


def test_the_cpu_check_is_the_compiler_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    _without_gxx(monkeypatch, tmp_path)
    cpu = get_backend("cpu")
    assert cpu.available() is False
    assert cpu.unavailable_reason() == "no C++ compiler (g++) found on PATH"
    assert unavailable_reason("cpu") == cpu.unavailable_reason()


def test_without_gxx_the_default_is_the_interpreter_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    _without_gxx(monkeypatch, tmp_path)
    monkeypatch.setattr(backends, "_warned_unavailable", False)
    with pytest.warns(RuntimeWarning, match=r"no C\+\+ compiler \(g\+\+\) found on PATH; ln.jit"):
        assert default_backend() == "interp"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert default_backend() == "interp"


def test_with_gxx_the_default_is_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    fake = tmp_path / "bin"
    fake.mkdir()
    gxx = fake / "g++"
    gxx.write_text("#!/bin/sh\nexit 1\n")
    gxx.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    assert get_backend("cpu").available() is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert default_backend() == "cpu"


def test_importing_backends_builds_no_backend():
    # The registry, the availability check and default_backend() import no driver,
    # emitter or backend module: they are imported when a backend is first built.
    code = (
        "import sys\n"
        "from lanterna.backends import default_backend, unavailable_reason\n"
        "unavailable_reason('cpu')\n"
        "default_backend()\n"
        "print(sorted(m for m in sys.modules if m.startswith('lanterna.')))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    loaded = set(eval(out))
    assert loaded == {"lanterna.backends", "lanterna.backends.cpu_cpp", "lanterna.errors"}
