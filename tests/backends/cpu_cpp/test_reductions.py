"""Float32 sums, means and losses on the cpu backend and the interpreter, against
float64 references: accumulation is in double (rounded once), so the error is
the final rounding, not one rounding per element.

A float32 accumulator stops counting at 2^24: before, the sum of 2^25 ones was
16,777,216 and their mean 0.5, and numpy's own float32 sum along a non-contiguous
axis (what the interpreter ran) has the same fault.
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


@pytest.fixture
def backend(request: pytest.FixtureRequest, cache_dir) -> str:
    return request.param


pytestmark = pytest.mark.parametrize("backend", BACKENDS, indirect=True)


def _sums(x):
    return ln.sum(x), ln.mean(x)


def test_sum_and_mean_of_2_25_ones_are_exact(backend: str):
    x = np.ones(2**25, np.float32)
    total, mean = ln.jit(_sums, backend=backend)(x)
    assert total.dtype == mean.dtype == np.float32
    assert (float(total), float(mean)) == (2.0**25, 1.0)
    # All axes of a matrix, and the contiguous axis alone.
    m = x.reshape(2**12, 2**13)
    total, mean = ln.jit(_sums, backend=backend)(m)
    assert (float(total), float(mean)) == (2.0**25, 1.0)
    rows = ln.jit(lambda m: ln.sum(m, axis=1), backend=backend)(m)
    np.testing.assert_array_equal(rows, np.full(2**12, 2.0**13, np.float32))


def test_sums_along_a_leading_axis_accumulate_in_double(backend: str):
    # Each column starts at 2^24, where float32's spacing is 2: adding the 4096
    # ones after it one at a time in float32 leaves 2^24.
    x = np.ones((4097, 3), np.float32)
    x[0] = 2.0**24
    want = np.float32(2.0**24 + 4096)
    cols, mean, both = ln.jit(
        lambda x: (ln.sum(x, axis=0), ln.mean(x, axis=0), ln.sum(x)), backend=backend
    )(x)
    np.testing.assert_array_equal(cols, [want] * 3)
    np.testing.assert_array_equal(mean, [np.float32((2.0**24 + 4096) / 4097)] * 3)
    assert float(both) == 3 * (2.0**24 + 4096)


def test_ten_million_normal_values_against_float64(backend: str):
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 1.0, 10**7).astype(np.float32)
    m, cube = x.reshape(10**4, 10**3), x.reshape(10**2, 10**2, 10**3)
    got = ln.jit(
        lambda x, m, cube: (
            ln.sum(x),
            ln.mean(x),
            ln.sum(m, axis=0),
            ln.mean(m, axis=1),
            ln.mean(cube, axis=(0, 2)),  # two passes: axis 2, then axis 0
        ),
        backend=backend,
    )(x, m, cube)
    x64, m64, cube64 = (a.astype(np.float64) for a in (x, m, cube))
    want = [x64.sum(), x64.mean(), m64.sum(axis=0), m64.mean(axis=1), cube64.mean(axis=(0, 2))]
    # One rounding to float32 (2^-24 = 6e-8) and nothing that grows with n; the
    # element-by-element float32 sum was off by 1.8e-5.
    for g, w in zip(got, want, strict=True):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1.2e-7, atol=0)


def test_losses_over_many_rows_and_classes_against_float64(backend: str):
    rng = np.random.default_rng(1)
    # A mean over a million rows, and a softmax over a million classes.
    n, c = 10**6, 4
    logits = rng.normal(0.0, 1.0, (n, c)).astype(np.float32)
    target = rng.integers(0, c, n)
    wide = rng.normal(0.0, 0.1, (2, 10**6)).astype(np.float32)
    wide_target = np.array([5, 999_999])
    got = ln.jit(
        lambda z, t, w, u: (
            ln.cross_entropy(z, t),
            ln.cross_entropy(z, t, reduction="sum"),
            ln.cross_entropy(w, u),
        ),
        backend=backend,
    )(logits, target, wide, wide_target)

    def reference(z: np.ndarray, t: np.ndarray) -> np.ndarray:
        z = z.astype(np.float64)
        shifted = z - z.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return -logp[np.arange(len(t)), t]

    per_row = reference(logits, target)
    want = [per_row.mean(), per_row.sum(), reference(wide, wide_target).mean()]
    for g, w in zip(got, want, strict=True):
        assert g.dtype == np.float32
        # Each row's loss is computed in float32 (a few units in its last place);
        # their sum adds no error of its own.
        np.testing.assert_allclose(g, w, rtol=5e-7, atol=0)
