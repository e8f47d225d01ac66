"""ln.nn: initializers (shapes, dtypes, scale) and the layer helpers' values
against numpy and their gradients against finite differences."""

from __future__ import annotations

import numpy as np
import pytest

import lanterna as ln

RNG = np.random.default_rng(23)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_initializers():
    rng = np.random.default_rng(0)
    w = ln.nn.glorot_uniform(rng, (300, 200))
    assert w.shape == (300, 200) and w.dtype == np.float32
    limit = np.sqrt(6.0 / 500)
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.95 * limit
    k = ln.nn.glorot_uniform(rng, (20, 10, 5, 5), np.float64)
    assert k.dtype == np.float64 and np.abs(k).max() <= np.sqrt(6.0 / (250 + 500))
    n = ln.nn.normal(rng, (1000,), std=0.5)
    assert 0.45 < n.std() < 0.55
    assert not ln.nn.zeros((2, 3)).any()
    lstm = ln.nn.init_lstm(rng, 4, 3)
    assert lstm["wx"].shape == (4, 12) and lstm["wh"].shape == (3, 12)
    np.testing.assert_array_equal(lstm["b"], [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    conv = ln.nn.init_conv(rng, 1, 10, 5)
    assert conv["w"].shape == (10, 1, 5, 5) and conv["b"].shape == (10,)


def test_lstm_cell_matches_numpy():
    p = ln.nn.init_lstm(RNG, 4, 3, np.float64)
    p["b"] = RNG.standard_normal(12)
    x, h, c = RNG.standard_normal((2, 4)), RNG.standard_normal((2, 3)), RNG.standard_normal((2, 3))
    h1, c1 = ln.jit(ln.nn.lstm_cell, backend="cpu")(p, x, h, c)
    z = x @ p["wx"] + h @ p["wh"] + p["b"]
    i, f, o, g = sigmoid(z[:, :3]), sigmoid(z[:, 3:6]), sigmoid(z[:, 6:9]), np.tanh(z[:, 9:])
    c_ref = f * c + i * g
    np.testing.assert_allclose(c1, c_ref, rtol=1e-12)
    np.testing.assert_allclose(h1, o * np.tanh(c_ref), rtol=1e-12)


def test_linear_and_conv_match_numpy_eagerly():
    p = ln.nn.init_linear(RNG, 4, 3, np.float64)
    x = RNG.standard_normal((5, 4))
    np.testing.assert_allclose(ln.nn.linear(p, x), x @ p["w"] + p["b"])
    conv = ln.nn.init_conv(RNG, 2, 3, 3, np.float64)
    conv["b"] = RNG.standard_normal(3)
    img = RNG.standard_normal((1, 2, 5, 5))
    out = ln.nn.conv2d_layer(conv, img)
    ref = np.zeros((1, 3, 3, 3))
    for o in range(3):
        for r in range(3):
            for s in range(3):
                ref[0, o, r, s] = (
                    np.sum(img[0, :, r : r + 3, s : s + 3] * conv["w"][o]) + conv["b"][o]
                )
    np.testing.assert_allclose(out, ref, rtol=1e-12)


def test_linear_gradients():
    w, b, x = RNG.standard_normal((4, 3)), RNG.standard_normal(3), RNG.standard_normal((2, 4))
    ln.check_grads(lambda w, b, x: ln.sum(ln.tanh(ln.nn.linear({"w": w, "b": b}, x))), [w, b, x])


def test_lstm_cell_gradients():
    wx, wh, b = RNG.standard_normal((3, 8)), RNG.standard_normal((2, 8)), RNG.standard_normal(8)
    x, h, c = RNG.standard_normal((2, 3)), RNG.standard_normal((2, 2)), RNG.standard_normal((2, 2))

    def f(wx, wh, b, x, h, c):
        h1, c1 = ln.nn.lstm_cell({"wx": wx, "wh": wh, "b": b}, x, h, c)
        h2, c2 = ln.nn.lstm_cell({"wx": wx, "wh": wh, "b": b}, x, h1, c1)
        return ln.sum(h2 * 1.5 + c2)

    ln.check_grads(f, [wx, wh, b, x, h, c])


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1)])
def test_conv2d_layer_gradients(stride, padding):
    w, b = RNG.standard_normal((3, 2, 3, 3)), RNG.standard_normal(3)
    x = RNG.standard_normal((2, 2, 5, 5))

    def f(w, b, x):
        y = ln.nn.conv2d_layer({"w": w, "b": b}, x, stride=stride, padding=padding)
        return ln.sum(ln.tanh(y))

    ln.check_grads(f, [w, b, x])
