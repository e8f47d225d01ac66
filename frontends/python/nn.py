"""Parameter initializers and layer helpers over param dicts: `ln.nn`.

The initializers run once, in numpy, from a `numpy.random.Generator`; the
layers are `ln` ops, so they run inside a trace (and are differentiated with
the rest of the model) or eagerly on numpy arrays. A layer's parameters are a
plain dict, so a model's parameters are a pytree that `ln.grad` and the
optimizers of `ln.optim` take as they are.

    p = {"l1": ln.nn.init_linear(rng, 784, 50), "l2": ln.nn.init_linear(rng, 50, 10)}
    logits = ln.nn.linear(p["l2"], ln.relu(ln.nn.linear(p["l1"], x)))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from lanterna.frontends.python import ops
from lanterna.frontends.python.location import user_error

Params = dict[str, Any]

# --- initializers -------------------------------------------------------------------------


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out): a matrix is [in, out]; a conv kernel is OIHW."""
    if len(shape) < 2:
        raise user_error(f"ln.nn: fans need a shape of rank >= 2, got {shape}")
    if len(shape) == 2:
        return shape[0], shape[1]
    field = math.prod(shape[2:])
    return shape[1] * field, shape[0] * field


def glorot_uniform(
    rng: np.random.Generator, shape: Sequence[int], dtype: Any = np.float32
) -> np.ndarray:
    """Uniform in `[-a, a]` with `a = sqrt(6 / (fan_in + fan_out))` (Glorot & Bengio)."""
    dims = tuple(int(d) for d in shape)
    fan_in, fan_out = _fans(dims)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, dims).astype(dtype)


def normal(
    rng: np.random.Generator, shape: Sequence[int], std: float = 0.01, dtype: Any = np.float32
) -> np.ndarray:
    """Gaussian with mean 0 and standard deviation `std` (min-char-rnn uses 0.01)."""
    return (rng.standard_normal(tuple(int(d) for d in shape)) * std).astype(dtype)


def zeros(shape: Sequence[int], dtype: Any = np.float32) -> np.ndarray:
    return np.zeros(tuple(int(d) for d in shape), dtype)


# --- layers and their parameters ----------------------------------------------------------


def init_linear(rng: np.random.Generator, n_in: int, n_out: int, dtype: Any = np.float32) -> Params:
    """`{"w": [n_in, n_out] Glorot-uniform, "b": [n_out] zeros}`."""
    return {"w": glorot_uniform(rng, (n_in, n_out), dtype), "b": zeros((n_out,), dtype)}


def linear(params: Params, x: Any) -> Any:
    """`x @ w + b`; `x` is [..., n_in]."""
    return ops.matmul(x, params["w"]) + params["b"]


def init_lstm(
    rng: np.random.Generator,
    n_in: int,
    hidden: int,
    dtype: Any = np.float32,
    forget_bias: float = 1.0,
) -> Params:
    """`{"wx": [n_in, 4H], "wh": [H, 4H], "b": [4H]}`, gates ordered i, f, o, g;
    the forget gate's bias starts at `forget_bias` so the cell remembers at first."""
    b = zeros((4 * hidden,), dtype)
    b[hidden : 2 * hidden] = forget_bias
    return {
        "wx": glorot_uniform(rng, (n_in, 4 * hidden), dtype),
        "wh": glorot_uniform(rng, (hidden, 4 * hidden), dtype),
        "b": b,
    }


def lstm_cell(params: Params, x: Any, h: Any, c: Any) -> tuple[Any, Any]:
    """One LSTM step: `(h', c')` from input `x` [..., n_in] and state `h`, `c` [..., H].

    i, f, o = sigmoid(.), g = tanh(.)   of   x @ wx + h @ wh + b  (split in four)
    c' = f * c + i * g;   h' = o * tanh(c')
    """
    wh = params["wh"]
    hidden = wh.shape[0] if hasattr(wh, "shape") else np.shape(wh)[0]
    z = ops.matmul(x, params["wx"]) + ops.matmul(h, params["wh"]) + params["b"]
    i = ops.sigmoid(z[..., :hidden])
    f = ops.sigmoid(z[..., hidden : 2 * hidden])
    o = ops.sigmoid(z[..., 2 * hidden : 3 * hidden])
    g = ops.tanh(z[..., 3 * hidden :])
    c_new = f * c + i * g
    return o * ops.tanh(c_new), c_new


def init_conv(
    rng: np.random.Generator, c_in: int, c_out: int, kernel: int, dtype: Any = np.float32
) -> Params:
    """`{"w": [c_out, c_in, k, k] Glorot-uniform (OIHW), "b": [c_out] zeros}`."""
    return {
        "w": glorot_uniform(rng, (c_out, c_in, kernel, kernel), dtype),
        "b": zeros((c_out,), dtype),
    }


def conv2d_layer(params: Params, x: Any, stride: int = 1, padding: int = 0) -> Any:
    """`conv2d(x, w) + b` over NCHW input, the bias broadcast per output channel."""
    y = ops.conv2d(x, params["w"], stride=stride, padding=padding)
    return y + ops.reshape(params["b"], (1, -1, 1, 1))


__all__ = [
    "conv2d_layer",
    "glorot_uniform",
    "init_conv",
    "init_linear",
    "init_lstm",
    "linear",
    "lstm_cell",
    "normal",
    "zeros",
]
