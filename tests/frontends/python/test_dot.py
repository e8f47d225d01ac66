"""`ln.dot` follows numpy's `dot` for every rank pair: compared with `np.dot`
eagerly, under `ln.jit` on the interpreter and the cpu backend, and its gradients
with finite differences."""

from __future__ import annotations

import numpy as np
import pytest

import lanterna as ln

RNG = np.random.default_rng(12)

# (lhs shape, rhs shape): 0-d operands, vector inner product, matrix products,
# N-D . 1-D (sum over the last axis) and N-D . M-D (last axis with second-to-last).
SHAPES = [
    ((), ()),
    ((), (3,)),
    ((2, 3), ()),
    ((3,), (3,)),
    ((2, 3), (3, 4)),
    ((2, 3), (3,)),
    ((3,), (3, 4)),
    ((2, 2, 3), (3,)),
    ((3,), (2, 3, 4)),
    ((2, 3), (2, 3, 4)),
    ((2, 2, 3), (2, 3, 4)),
    ((2, 1, 2, 3), (5, 3, 2)),
    ((4, 3), (2, 1, 3, 2)),
]
IDS = [f"{a}x{b}" for a, b in SHAPES]


def operands(sa, sb, dtype):
    a = np.asarray(RNG.standard_normal(sa) * 3).astype(dtype)
    b = np.asarray(RNG.standard_normal(sb) * 3).astype(dtype)
    return a, b


def assert_like(got, want, rtol=1e-12):
    got = np.asarray(got)
    assert got.shape == np.shape(want) and got.dtype == np.asarray(want).dtype
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("sa,sb", SHAPES, ids=IDS)
def test_dot_matches_numpy_eagerly_and_jitted(sa, sb):
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, 1e-5), (np.int64, 0), (np.bool_, 0)):
        a, b = operands(sa, sb, dtype)
        want = np.dot(a, b)
        assert_like(ln.dot(a, b), want, rtol)
        for backend in ("interp", "cpu"):
            assert_like(ln.jit(ln.dot, backend=backend)(a, b), want, rtol)


def test_the_reported_cases():
    a, b = RNG.standard_normal((2, 3)), RNG.standard_normal((2, 3, 4))
    np.testing.assert_allclose(ln.jit(ln.dot)(a, b), np.dot(a, b), rtol=1e-12)
    assert ln.dot(RNG.standard_normal((2, 2, 3)), b).shape == (2, 2, 2, 4)
    assert ln.jit(lambda x: ln.dot(2.0, x))(a).shape == (2, 3)


def test_dot_with_python_scalars_and_mixed_dtypes():
    x = np.arange(6.0).reshape(2, 3)
    assert_like(ln.dot(x, 2), np.dot(x, 2))
    i = np.arange(3)
    assert_like(ln.dot(i, np.ones(3, np.float32)), np.dot(i, np.ones(3, np.float32)))
    np.testing.assert_allclose(ln.jit(lambda x: ln.dot(x, 0.5))(x), x * 0.5)


@pytest.mark.parametrize("sa,sb", SHAPES, ids=IDS)
def test_dot_gradients_match_finite_differences(sa, sb):
    a, b = operands(sa, sb, np.float64)
    w = RNG.standard_normal(np.dot(a, b).shape)

    def loss(a, b):
        return ln.sum(ln.dot(a, b) * w)

    report = ln.check_grads(loss, [a, b], rtol=1e-6, atol=1e-9)
    assert report is not None
    grads = ln.grad(loss, argnums=(0, 1))(a, b)
    on_interp = ln.jit(ln.grad(loss, argnums=(0, 1)), backend="interp")(a, b)
    for g, h in zip(grads, on_interp):
        np.testing.assert_allclose(g, h, rtol=1e-12, atol=1e-12)


def test_misaligned_shapes_are_a_trace_error():
    with pytest.raises(ln.TraceError, match=r"not aligned: 3 .* != 2 \(axis 1 of the rhs\)"):
        ln.dot(np.ones((2, 3)), np.ones((4, 2, 5)))
    with pytest.raises(ln.TraceError, match=r"test_dot.py:\d+: ln.dot: shapes \(3,\) and \(2,\)"):
        ln.jit(ln.dot)(np.ones(3), np.ones(2))
