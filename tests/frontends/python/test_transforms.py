"""grad / value_and_grad / vjp / check_grads on the Python frontend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lanterna as ln

RNG = np.random.default_rng(0)


def mlp_loss(params, x, y):
    h = ln.tanh(x @ params["w1"] + params["b1"])
    logits = h @ params["w2"]
    return ln.cross_entropy(logits, y)


def make_params():
    return {
        "w1": RNG.standard_normal((4, 5)),
        "b1": RNG.standard_normal(5) * 0.1,
        "w2": RNG.standard_normal((5, 3)),
    }


def numeric_grad(f, args, argnum, eps=1e-6):
    x = np.asarray(args[argnum], np.float64)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += eps
        minus[idx] -= eps
        a = list(args)
        a[argnum] = plus
        fp = float(ln.jit(f)(*a))
        a[argnum] = minus
        fm = float(ln.jit(f)(*a))
        g[idx] = (fp - fm) / (2 * eps)
    return g


def test_grad_of_scalar_function_matches_finite_differences():
    def f(x, w):
        return ln.sum(ln.sigmoid(x * w) ** 2.0) / 3.0

    x, w = RNG.standard_normal(4), RNG.standard_normal(4)
    dx, dw = ln.grad(f, argnums=(0, 1))(x, w)
    np.testing.assert_allclose(dx, numeric_grad(f, [x, w], 0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dw, numeric_grad(f, [x, w], 1), rtol=1e-6, atol=1e-9)


def test_pytree_parameters_give_pytree_gradients():
    params = make_params()
    x = RNG.standard_normal((6, 4))
    y = RNG.integers(0, 3, 6)
    g = ln.grad(mlp_loss)(params, x, y)
    assert set(g) == {"w1", "b1", "w2"}
    for k in params:
        assert g[k].shape == params[k].shape
        assert g[k].dtype == np.float64

        def only(p_k, k=k):
            return mlp_loss({**params, k: p_k}, x, y)

        np.testing.assert_allclose(g[k], numeric_grad(only, [params[k]], 0), rtol=1e-5, atol=1e-8)


def test_jit_and_grad_compose_in_either_order():
    params = make_params()
    x = RNG.standard_normal((6, 4))
    y = RNG.integers(0, 3, 6)
    a = ln.grad(mlp_loss)(params, x, y)
    b = ln.jit(ln.grad(mlp_loss))(params, x, y)
    c = ln.grad(ln.jit(mlp_loss))(params, x, y)
    for k in params:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-12)
        np.testing.assert_allclose(c[k], a[k], rtol=1e-12)


def test_grad_inside_a_jitted_training_step():
    params = make_params()
    x = RNG.standard_normal((6, 4))
    y = RNG.integers(0, 3, 6)

    @ln.jit
    def step(p, x, y):
        loss, g = ln.value_and_grad(mlp_loss)(p, x, y)
        return loss, {k: p[k] - 0.5 * g[k] for k in p}

    losses = []
    for _ in range(20):
        loss, params = step(params, x, y)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]
    assert step.trace_count == 1
    text = str(step.lower(params, x, y))
    assert "cont.shift" in text and "func.call" in text


def test_value_and_grad_and_has_aux():
    def f(x):
        y = ln.exp(x)
        return ln.sum(y), {"y": y, "n": 3}

    x = np.array([0.5, -1.0])
    (value, aux), g = ln.value_and_grad(f, has_aux=True)(x)
    np.testing.assert_allclose(value, np.exp(x).sum())
    np.testing.assert_allclose(aux["y"], np.exp(x))
    assert aux["n"] == 3
    np.testing.assert_allclose(g, np.exp(x))
    g2, aux2 = ln.grad(f, has_aux=True)(x)
    np.testing.assert_allclose(g2, np.exp(x))
    np.testing.assert_allclose(aux2["y"], np.exp(x))


def test_vjp_of_a_vector_function():
    a = np.array([0.1, 0.2, -0.3])
    b = np.array([1.5, -2.0, 0.5])
    out, f_vjp = ln.vjp(lambda a, b: ln.tanh(a * b), a, b)
    np.testing.assert_allclose(out, np.tanh(a * b))
    ct = np.array([1.0, 2.0, 3.0])
    da, db = f_vjp(ct)
    d = ct * (1 - np.tanh(a * b) ** 2)
    np.testing.assert_allclose(da, d * b)
    np.testing.assert_allclose(db, d * a)


def test_check_grads_passes_and_reports_the_worst_element():
    assert ln.check_grads(lambda n: ln.sum(n * 2), [np.arange(3)]) is None  # nothing to check

    def f(x, w):
        return ln.sum(ln.tanh(x @ w))

    report = ln.check_grads(f, [RNG.standard_normal((2, 3)), RNG.standard_normal((3, 2))])
    assert report is not None and report.error < 1e-6


def test_check_grads_fails_loudly_on_a_kink():
    def f(x):
        return ln.sum(ln.relu(x))

    x = np.array([1.0, 0.0, -2.0])  # relu'(0) is 0 here, the central difference says 0.5
    with pytest.raises(ln.GradientCheckError, match=r"index \(1,\): analytic 0, numeric 0\.5"):
        ln.check_grads(f, [x])


def test_grad_of_non_scalar_function_names_it():
    def vector_fn(x):
        return x * 2.0

    with pytest.raises(ln.TraceError, match=r"ln.grad of 'vector_fn': .* scalar float") as e:
        ln.grad(vector_fn)(np.ones(3))
    assert Path(e.value.filename).name == "test_transforms.py"


def test_grad_of_integer_argument_names_it():
    def int_fn(n):
        return ln.sum(n * 2.0)

    with pytest.raises(ln.TraceError, match=r"ln.grad of 'int_fn': argument 0 has dtype int64"):
        ln.grad(int_fn)(np.arange(3))


def test_grad_with_argnums_out_of_range_names_it():
    def two(a, b):
        return ln.sum(a * b)

    with pytest.raises(ln.TraceError, match=r"ln.grad of 'two': argnums 2 is out of range"):
        ln.grad(two, argnums=2)(np.ones(2), np.ones(2))
