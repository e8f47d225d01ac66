"""The cpu runtime's own float exp, tanh and sigmoid (vectorizable forms) against
numpy, including the values where such approximations go wrong: infinities,
NaN, the ends of exp's range, tanh's switch between its two formulas."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import lanterna as ln

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")

SPECIAL = [np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-8, -1e-8, 0.62, 0.625, 0.63, -0.63, 1.0,
           8.9, 9.0, 9.5, 20.0, -20.0, 88.0, 88.7, 88.72, 88.73, 89.0, -87.3, -87.34, -88.0,
           -100.0, -104.0, 50.0, -50.0]  # fmt: skip


def _inputs() -> np.ndarray:
    rng = np.random.default_rng(0)
    spread = np.concatenate([rng.normal(0, s, 4000) for s in (0.3, 3.0, 30.0)])
    return np.concatenate([np.array(SPECIAL), spread]).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return (1 / (1 + np.exp(-x.astype(np.float64)))).astype(np.float32)


@pytest.mark.parametrize(
    "fn, reference",
    [(ln.exp, np.exp), (ln.tanh, np.tanh), (ln.sigmoid, _sigmoid)],
    ids=["exp", "tanh", "sigmoid"],
)
def test_float_math_matches_numpy(fn, reference):
    x = _inputs()
    got = ln.jit(fn, backend="cpu")(x)
    with np.errstate(over="ignore"):
        want = reference(x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    # Two units in the last place; exp's results below 2^-126 are flushed to 0.
    np.testing.assert_allclose(got[finite], want[finite], rtol=3e-7, atol=1.2e-38)
