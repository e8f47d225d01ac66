"""Samplers and independent numpy references for the op table (op_cases.py).

A sampler draws an argument's values: `sample(rng, shape, dtype)`. A reference
computes an op's result in float64 from the same inputs, written without the
code under test (loops over windows, SplitMix64 on Python ints).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

Sampler = Callable[[np.random.Generator, tuple[int, ...], np.dtype], np.ndarray]


# --- samplers -----------------------------------------------------------------------------


def normal(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer):
        return rng.integers(-5, 6, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def positive(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return rng.uniform(0.5, 2.0, shape).astype(dtype)


def nonzero(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Magnitudes in [0.2, 2]: safe divisors, far from the kink of abs and relu at 0."""
    sign = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    return (sign * rng.uniform(0.2, 2.0, shape)).astype(dtype)


def below(n: int) -> Sampler:
    """Indices in [0, n), with repeats likely."""

    def sample(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return rng.integers(0, n, shape).astype(dtype)

    return sample


def around(n: int) -> Sampler:
    """Indices in [-n, n): negative ones count from the end."""

    def sample(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return rng.integers(-n, n, shape).astype(dtype)

    return sample


def whole(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Integer-valued floats in [-3, 3]: exponents a negative base can take."""
    return rng.integers(-3, 4, shape).astype(dtype)


def any_seed(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return rng.integers(-(2**62), 2**62, shape).astype(dtype)


def tied(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Few distinct values, so pooling windows hold tied maxima."""
    return rng.integers(0, 3, shape).astype(dtype)


# --- references -------------------------------------------------------------------------


def softmax_ref(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def nll_ref(logp: np.ndarray, target: np.ndarray, mean: bool) -> float:
    total = -sum(logp[i, t] for i, t in enumerate(target))
    return total / len(target) if mean else total


def matmul_ref(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    spec = {
        (2, 2): "mk,kn->mn",
        (2, 1): "mk,k->m",
        (1, 2): "k,kn->n",
        (3, 3): "bmk,bkn->bmn",
        (3, 2): "bmk,kn->bmn",
    }[(x.ndim, y.ndim)]
    return np.einsum(spec, x, y)


def padded(x: np.ndarray, padding: tuple[int, int], fill: float) -> np.ndarray:
    n, c, h, w = x.shape
    ph, pw = padding
    out = np.full((n, c, h + 2 * ph, w + 2 * pw), fill)
    out[:, :, ph : ph + h, pw : pw + w] = x
    return out


def conv2d_ref(x: np.ndarray, w: np.ndarray, stride: tuple[int, int], padding: tuple[int, int]):
    xp = padded(x, padding, 0.0)
    n, o, (kh, kw), (sh, sw) = x.shape[0], w.shape[0], w.shape[2:], stride
    oh, ow = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    out = np.zeros((n, o, oh, ow))
    for b, f, i, j in itertools.product(range(n), range(o), range(oh), range(ow)):
        out[b, f, i, j] = np.sum(xp[b, :, i * sh : i * sh + kh, j * sw : j * sw + kw] * w[f])
    return out


def conv2d_input_grad_ref(g, w, x_shape, stride, padding) -> np.ndarray:
    """Every output entry's adjoint times the weight, added back over its window."""
    (sh, sw), (ph, pw), (kh, kw) = stride, padding, w.shape[2:]
    n, c, h, wd = x_shape
    out = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    for b, f, i, j in itertools.product(range(n), range(w.shape[0]), *map(range, g.shape[2:])):
        out[b, :, i * sh : i * sh + kh, j * sw : j * sw + kw] += g[b, f, i, j] * w[f]
    return out[:, :, ph : ph + h, pw : pw + wd]


def conv2d_weight_grad_ref(x, g, kernel, stride, padding) -> np.ndarray:
    """Every output entry's adjoint times its input window, summed."""
    xp = padded(x, padding, 0.0)
    (sh, sw), (kh, kw) = stride, kernel
    out = np.zeros((g.shape[1], x.shape[1], kh, kw))
    for b, f, i, j in itertools.product(
        range(x.shape[0]), range(g.shape[1]), *map(range, g.shape[2:])
    ):
        out[f] += g[b, f, i, j] * xp[b, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
    return out


def pool_ref(x, kernel, stride, padding, reduce: str) -> np.ndarray:
    xp = padded(x, padding, -np.inf if reduce == "max" else 0.0)
    (kh, kw), (sh, sw) = kernel, stride
    oh, ow = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    out = np.zeros((*x.shape[:2], oh, ow))
    for b, c, i, j in itertools.product(range(x.shape[0]), range(x.shape[1]), range(oh), range(ow)):
        window = xp[b, c, i * sh : i * sh + kh, j * sw : j * sw + kw]
        out[b, c, i, j] = window.max() if reduce == "max" else window.sum() / (kh * kw)
    return out


def max_pool_grad_ref(x, g, kernel, stride, padding) -> np.ndarray:
    """Each window's entry of g, split evenly among the window's maxima."""
    xp = padded(x, padding, -np.inf)
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    out = np.zeros(xp.shape)
    for b, c, i, j in itertools.product(*(range(d) for d in g.shape)):
        window = xp[b, c, i * sh : i * sh + kh, j * sw : j * sw + kw]
        hits = window == window.max()
        out[b, c, i * sh : i * sh + kh, j * sw : j * sw + kw] += hits * g[b, c, i, j] / hits.sum()
    return out[:, :, ph : ph + x.shape[2], pw : pw + x.shape[3]]


MASK64 = 2**64 - 1


def splitmix64_int(z: int) -> int:
    """SplitMix64 on Python ints, written independently of the numpy version."""
    z = (z + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def dropout_ref(x: np.ndarray, seed: np.ndarray, rate: float) -> np.ndarray:
    s = int(seed) & MASK64
    flat = x.reshape(-1)
    out = np.zeros(flat.shape)
    for i, v in enumerate(flat):
        u = (splitmix64_int((s * 0x9E3779B97F4A7C15 + i) & MASK64) >> 40) / 2**24
        out[i] = v / (1 - rate) if u >= rate else 0.0
    return out.reshape(x.shape)


def scatter_add_ref(updates: np.ndarray, indices: np.ndarray, shape: tuple[int, ...]):
    out = np.zeros(shape)
    rows = updates.reshape((-1, *shape[1:]))
    for j, i in enumerate(indices.reshape(-1)):
        out[i] += rows[j]
    return out
