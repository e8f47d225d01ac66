"""User mistakes while tracing raise TraceError at the user's own line."""

from __future__ import annotations

import inspect
import os

import numpy as np
import pytest

import lanterna as ln


def line_of(marker: str) -> int:
    """The line of this file that carries `marker` in a comment."""
    with open(__file__) as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines, start=1):
        if line.rstrip().endswith(f"# {marker}"):
            return i
    raise AssertionError(marker)


def model(x, y):
    h = ln.tanh(x)
    return h + y  # MISMATCH


def test_shape_mismatch_names_user_file_line_and_shapes():
    with pytest.raises(ln.TraceError) as info:
        ln.jit(model)(np.ones((2, 3), np.float32), np.ones(4, np.float32))
    err = info.value
    msg = str(err)
    assert err.filename == __file__
    assert err.lineno == line_of("MISMATCH")
    assert msg.startswith(f"{__file__}:{err.lineno}: ln.add:")
    assert os.path.basename(__file__) in msg
    assert "(2, 3)" in msg and "(4,)" in msg


def test_error_through_a_helper_names_the_innermost_user_line():
    def helper(a, b):
        return ln.matmul(a, b)  # HELPER

    def f(a, b):
        return helper(a, b) * 2

    with pytest.raises(ln.TraceError) as info:
        ln.jit(f)(np.ones((2, 3)), np.ones((4, 5)))
    assert info.value.lineno == line_of("HELPER")
    assert "(2, 3)" in str(info.value) and "(4, 5)" in str(info.value)


def test_op_error_via_method():
    def f(x):
        return x.reshape(7)  # RESHAPE

    with pytest.raises(ln.TraceError, match="ln.reshape") as info:
        ln.jit(f)(np.ones((2, 3)))
    assert info.value.lineno == line_of("RESHAPE")


def test_bool_of_staged_value():
    # A Python `if` on a staged value is staged (autograph.py); an explicit bool() is not.
    def f(x):
        return x if bool(x.sum() > 0) else -x  # BOOL

    with pytest.raises(ln.TraceError, match=r"ln\.cond.*ln\.while_loop") as info:
        ln.jit(f)(np.ones(3))
    assert info.value.filename == __file__ and info.value.lineno == line_of("BOOL")


def test_concrete_conversions_are_errors():
    with pytest.raises(ln.TraceError, match="Python float"):
        ln.jit(lambda x: float(x.sum()))(np.ones(3))
    with pytest.raises(ln.TraceError, match="numpy array"):
        ln.jit(lambda x: np.asarray(x))(np.ones(3))
    with pytest.raises(ln.TraceError, match="Python int"):
        ln.jit(lambda x: range(x.sum()))(np.ones(3, np.int64))


def test_leaked_staged_value():
    leaked = []

    def f(x):
        leaked.append(x)
        return x

    ln.jit(f)(np.ones(2))
    with pytest.raises(ln.TraceError, match="after its trace ended"):
        ln.exp(leaked[0])
    with pytest.raises(ln.TraceError, match="cannot escape"):
        ln.jit(lambda y: y + leaked[0])(np.ones(2))


def test_dtype_errors():
    with pytest.raises(ln.TraceError, match="ln.matmul"):
        ln.jit(lambda a, b: a @ b)(np.ones((2, 3)), np.ones(4))
    with pytest.raises(ln.TraceError, match="ln.nll_loss.*target"):
        ln.jit(lambda p, t: ln.nll_loss(p, t))(np.ones((2, 3)), np.ones(2))


def test_error_is_a_lanterna_error():
    assert issubclass(ln.TraceError, ln.LanternaError)
    assert inspect.isclass(ln.CompileError)
