"""The cpu backend's float exp, tanh and sigmoid (the vectorizable forms of the
scalar header, backends/c_like/runtime/lanterna_scalar.h) through `ln.jit`, against
numpy, including the values where such approximations go wrong: infinities, NaN,
the ends of exp's range, tanh's switch between its two formulas (the inputs and
the check are tests/support/float_math.py)."""

from __future__ import annotations

import shutil

import pytest

import lanterna as ln

from support.float_math import FLOAT_MATH

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")


@pytest.mark.parametrize(
    "name, fn",
    [("exp", ln.exp), ("tanh", ln.tanh), ("sigmoid", ln.sigmoid)],
    ids=["exp", "tanh", "sigmoid"],
)
def test_float_math_matches_numpy(name, fn):
    FLOAT_MATH.check(name, ln.jit(fn, backend="cpu")(FLOAT_MATH.inputs))
