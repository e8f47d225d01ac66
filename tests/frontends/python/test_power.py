"""`x ** y`: values as numpy's `power` (a negative base to an integer-valued
exponent is real) and gradients as JAX's, eagerly, on the interpreter and on the
cpu backend.

The derivatives have points where the textbook formulas multiply 0 by an infinity:
d/dx x**0 = 0 * x**-1 and d/dy 0**y = 0**y * log(0). Both are 0 (JAX and autograd
select them to 0); before, they were NaN.

`ln.power` with a Python-number exponent is `ln.pow`; with a tensor exponent it is
the `ln.power` op.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import lanterna as ln

BACKENDS = [
    "interp",
    pytest.param(
        "cpu", marks=pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")
    ),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path, monkeypatch) -> str:
    # A private compile cache, as the cpu backend's own tests use.
    if request.param == "cpu":
        request.getfixturevalue("cpu_cache")
    return request.param


@pytest.fixture
def cpu_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LANTERNA_CACHE_DIR", str(tmp_path / "cache"))


def power(x, y):
    """`x ** y` with a tensor exponent, as users write it."""
    return ln.power(x, y)


def _central_differences(f, args, i, eps=1e-6):
    out = np.zeros_like(args[i])
    for k in np.ndindex(out.shape):
        hi = [a.copy() for a in args]
        lo = [a.copy() for a in args]
        hi[i][k] += eps
        lo[i][k] -= eps
        out[k] = (f(*hi) - f(*lo)) / (2 * eps)
    return out


# A negative base to integer-valued exponents, a fractional power of a negative
# base (NaN), zero to positive, zero and negative powers.
BASE = np.array([-2.0, -1.5, -3.0, -2.0, 3.0, 0.0, 0.0, 0.0])
EXPONENT = np.array([3.0, 2.0, -1.0, 0.5, 0.5, 2.0, 0.0, -1.0])


def test_eager_values_follow_numpy():
    with np.errstate(invalid="ignore", divide="ignore"):
        want = np.power(BASE, EXPONENT)
        got = power(BASE, EXPONENT)
    np.testing.assert_array_equal(got, want)
    assert want[0] == -8.0 and np.isnan(want[3])


def test_staged_values_follow_numpy(backend: str):
    with np.errstate(invalid="ignore", divide="ignore"):
        want = np.power(BASE, EXPONENT)
        got = ln.jit(power, backend=backend)(BASE, EXPONENT)
    np.testing.assert_allclose(got, want, rtol=1e-15)
    f32 = ln.jit(power, backend=backend)(BASE.astype(np.float32), EXPONENT.astype(np.float32))
    with np.errstate(invalid="ignore", divide="ignore"):
        np.testing.assert_allclose(f32, want.astype(np.float32), rtol=1e-6)


def test_gradients_at_zero_are_zero(backend: str):
    zeros = np.zeros(4)
    y = np.array([0.5, 1.0, 2.0, 3.0])

    # d/dy 0 ** y = 0 ** y * log(0) -> 0
    dy = ln.jit(ln.grad(lambda x, y: ln.sum(power(x, y)), argnums=1), backend=backend)(zeros, y)
    np.testing.assert_array_equal(dy, np.zeros(4))

    # d/dx x ** 0 at x = 0 -> 0, with the exponent a tensor or a Python number
    dx = ln.jit(ln.grad(lambda x, y: ln.sum(power(x, y))), backend=backend)(zeros, zeros)
    np.testing.assert_array_equal(dx, np.zeros(4))
    dx = ln.jit(ln.grad(lambda x: ln.sum(ln.power(x, 0.0))), backend=backend)(zeros)
    np.testing.assert_array_equal(dx, np.zeros(4))

    # Both at once, and the values around them, as JAX gives them:
    # d/dx x ** y = y * x ** (y - 1) is 1 at (0, 1) and 0 at (0, 2).
    x = np.array([0.0, 0.0, 0.0, 2.0])
    y = np.array([0.0, 1.0, 2.0, 0.0])
    dx, dy = ln.jit(ln.grad(lambda x, y: ln.sum(power(x, y)), argnums=(0, 1)), backend=backend)(
        x, y
    )
    np.testing.assert_array_equal(dx, [0.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(dy, [0.0, 0.0, 0.0, np.log(2.0)], rtol=1e-15)


def test_gradients_match_finite_differences(backend: str):
    rng = np.random.default_rng(3)
    x = rng.uniform(0.5, 2.0, (2, 3))
    y = rng.normal(size=3)

    def loss(x, y):
        return np.sum(np.power(x, y) * np.arange(1.0, 7.0).reshape(2, 3))

    weights = np.arange(1.0, 7.0).reshape(2, 3)
    f = ln.jit(ln.grad(lambda x, y, w: ln.sum(power(x, y) * w), argnums=(0, 1)), backend=backend)
    dx, dy = f(x, y, weights)
    np.testing.assert_allclose(dx, _central_differences(loss, [x, y], 0), rtol=1e-7)
    np.testing.assert_allclose(dy, _central_differences(loss, [x, y], 1), rtol=1e-7)

    # A negative base to integer exponents: d/dx = y * x ** (y - 1) is real.
    base = np.array([-2.0, -1.5, -0.7])
    exponent = np.array([3.0, 2.0, -2.0])
    dx = ln.jit(ln.grad(lambda x, y: ln.sum(power(x, y))), backend=backend)(base, exponent)
    np.testing.assert_allclose(dx, exponent * base ** (exponent - 1), rtol=1e-14)
    # and x ** 3 through `ln.pow`
    dx = ln.jit(ln.grad(lambda x: ln.sum(ln.power(x, 3.0))), backend=backend)(base)
    np.testing.assert_allclose(dx, 3 * base**2, rtol=1e-14)


def test_the_reported_cases_through_the_public_name():
    np.testing.assert_array_equal(ln.power(np.array([-2.0, 3.0]), np.array([3.0, 2.0])), [-8, 9])
    g = ln.grad(lambda y: ln.sum(ln.power(0.0, y)))(np.array([0.5, 2.0]))
    np.testing.assert_array_equal(g, [0.0, 0.0])
    g = ln.grad(lambda x: ln.sum(ln.power(x, np.zeros(2))))(np.array([0.0, 2.0]))
    np.testing.assert_array_equal(g, [0.0, 0.0])
