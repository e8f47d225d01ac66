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


# --- argnums order, keyword arguments, closures, size-1 losses (issue 12) -----------------


def three_args(a, b, c):
    return ln.sum(a) ** 2 * ln.sum(b * b) + ln.sum(ln.tanh(c)) * ln.sum(a)


def three_args_grads(a, b, c):
    """(da, db, dc) of `three_args`, by hand."""
    sa, sb, st = a.sum(), (b * b).sum(), np.tanh(c).sum()
    return (
        np.full_like(a, 2 * sa * sb + st),
        2 * sa**2 * b,
        sa * (1 - np.tanh(c) ** 2),
    )


def test_grad_returns_gradients_in_argnums_order():
    a, b, c = RNG.standard_normal(2), RNG.standard_normal(3), RNG.standard_normal(4)
    da, db, dc = three_args_grads(a, b, c)
    # Shapes differ per argument, so gradients handed back in argument order show.
    got = ln.grad(three_args, argnums=(2, 0))(a, b, c)
    assert [g.shape for g in got] == [(4,), (2,)]
    np.testing.assert_allclose(got[0], dc, rtol=1e-12)
    np.testing.assert_allclose(got[1], da, rtol=1e-12)
    value, got = ln.value_and_grad(three_args, argnums=(1, 2, 0))(a, b, c)
    np.testing.assert_allclose(value, (a.sum() ** 2) * (b * b).sum() + np.tanh(c).sum() * a.sum())
    for g, want in zip(got, (db, dc, da)):
        np.testing.assert_allclose(g, want, rtol=1e-12)
    inside = ln.jit(ln.grad(three_args, argnums=(-1, 1)), backend="interp")(a, b, c)
    np.testing.assert_allclose(inside[0], dc, rtol=1e-12)
    np.testing.assert_allclose(inside[1], db, rtol=1e-12)

    # Pytree arguments keep their structure in any order.
    params = make_params()
    x = RNG.standard_normal((6, 4))
    y = RNG.integers(0, 3, 6)
    gx, gp = ln.grad(mlp_loss, argnums=(1, 0))(params, x, y)
    assert gx.shape == x.shape and set(gp) == set(params)
    want = ln.grad(mlp_loss, argnums=(0, 1))(params, x, y)
    np.testing.assert_allclose(gx, want[1], rtol=1e-12)
    for k in params:
        np.testing.assert_allclose(gp[k], want[0][k], rtol=1e-12)


def test_grad_with_a_repeated_argnum_names_it():
    with pytest.raises(ln.TraceError, match=r"argnums \(0, 2, -3\) names argument 0 twice"):
        ln.grad(three_args, argnums=(0, 2, -3))(np.ones(2), np.ones(3), np.ones(4))


def scaled_loss(w, x, scale=1.0, shift=None):
    out = ln.sum(ln.tanh(x @ w)) * scale
    return out if shift is None else out + ln.sum(shift * w)


def scaled_loss_grad(w, x, scale=1.0, shift=None):
    t = np.tanh(x @ w)
    return scale * x.T @ (1 - t * t) + (0 if shift is None else shift)


def test_grad_passes_keyword_arguments_through():
    w, x = RNG.standard_normal((3, 2)), RNG.standard_normal((4, 3))
    shift = RNG.standard_normal((3, 2))
    g = ln.grad(scaled_loss)(w, x, scale=2.0)
    np.testing.assert_allclose(g, scaled_loss_grad(w, x, scale=2.0), rtol=1e-12)
    # An array keyword argument is an input of the trace, not differentiated.
    g = ln.grad(scaled_loss)(w, x=x, shift=shift)
    np.testing.assert_allclose(g, scaled_loss_grad(w, x, shift=shift), rtol=1e-12)
    value, (gw, gx) = ln.value_and_grad(scaled_loss, argnums=(0, 1))(w, x, scale=-1.5)
    np.testing.assert_allclose(value, -1.5 * np.tanh(x @ w).sum(), rtol=1e-12)
    np.testing.assert_allclose(gw, scaled_loss_grad(w, x, scale=-1.5), rtol=1e-12)
    assert gx.shape == x.shape

    @ln.jit(backend="interp")
    def step(w, x, shift):
        return w - 0.1 * ln.grad(scaled_loss)(w, x, scale=3.0, shift=shift)

    want = w - 0.1 * scaled_loss_grad(w, x, scale=3.0, shift=shift)
    np.testing.assert_allclose(step(w, x, shift), want, rtol=1e-12)


def tanh_loss(w, x):
    return ln.sum(ln.tanh(x @ w) ** 2)


def tanh_loss_grad(w, x):
    t = np.tanh(x @ w)
    return x.T @ (2 * t * (1 - t * t))


@pytest.mark.parametrize("backend", ["interp", "cpu"])
def test_grad_of_a_closure_over_staged_values(backend):
    w, x = RNG.standard_normal((3, 2)), RNG.standard_normal((4, 3))

    # x is staged by the jit and captured: a constant of the inner differentiation.
    g = ln.jit(lambda W, x: ln.grad(lambda v: tanh_loss(v, x))(W), backend=backend)(w, x)
    np.testing.assert_allclose(g, tanh_loss_grad(w, x), rtol=1e-12)

    # Captured from inside a loop body: a few steps of gradient descent.
    @ln.jit(backend=backend)
    def descend(W, x):
        return ln.fori_loop(0, 3, lambda i, V: V - 0.1 * ln.grad(lambda v: tanh_loss(v, x))(V), W)

    want = w
    for _ in range(3):
        want = want - 0.1 * tanh_loss_grad(want, x)
    np.testing.assert_allclose(descend(w, x), want, rtol=1e-12)

    # Captured values returned as aux, and through vjp.
    @ln.jit(backend=backend)
    def both(W, x):
        (value, aux), g = ln.value_and_grad(lambda v: (tanh_loss(v, x), x * 2.0), has_aux=True)(W)
        _, pull = ln.vjp(lambda v: ln.tanh(x @ v), W)
        return value, aux, g, pull(ln.ones((4, 2)))[0]

    value, aux, g, pulled = both(w, x)
    t = np.tanh(x @ w)
    np.testing.assert_allclose(value, (t * t).sum(), rtol=1e-12)
    np.testing.assert_allclose(aux, 2 * x)
    np.testing.assert_allclose(g, tanh_loss_grad(w, x), rtol=1e-12)
    np.testing.assert_allclose(pulled, x.T @ (1 - t * t), rtol=1e-12)

    # And against finite differences.
    np.testing.assert_allclose(g, numeric_grad(tanh_loss, [w, x], 0), rtol=1e-6, atol=1e-9)


def test_captures_pass_through_every_enclosing_trace():
    """A value of the root trace used two sub-traces down becomes a parameter of
    each, and each caller passes its own: the middle trace captures it too."""
    from lanterna.frontends.python.tracing import Tracer, tracing
    from lanterna.ir.types import f64, tensor

    t = tensor((2,), f64)
    root = Tracer("root", [t])
    middle = Tracer("middle", [t], parent=root, captures=True)
    inner = Tracer("inner", [t], parent=middle, captures=True)
    x = root.args[0]
    with tracing(inner):
        got = inner.own(x)
        assert inner.own(x) is got  # captured once
    assert got.tracer is inner and got.value is inner.block.args[1]
    assert middle.captured == [x]
    assert [c.value for c in inner.captured] == [middle.block.args[1]]
    # Without `captures` (a staged function, reused at other call sites) it stays an error.
    other = Tracer("other", [t], parent=root)
    with pytest.raises(ln.TraceError, match="cannot escape"):
        other.own(x)
    with pytest.raises(ln.TraceError, match="cannot escape"):
        Tracer("sibling", [t], parent=root, captures=True).own(inner.args[0])


def test_grad_of_a_size_one_output_says_how_to_make_a_scalar():
    def column_loss(x):
        return ln.sum(x * x, axis=0, keepdims=True)

    with pytest.raises(ln.TraceError, match=r"got shape \(1,\).*ln\.sum\(\.\.\.\).*\[0\]") as e:
        ln.grad(column_loss)(np.ones(3))
    assert Path(e.value.filename).name == "test_transforms.py"
    with pytest.raises(ln.TraceError, match=r"got shape \(1, 1\).*reshape it to \(\)"):
        ln.grad(lambda x: ln.sum(x).reshape((1, 1)))(np.ones(3))
    # What the message suggests works.
    np.testing.assert_allclose(ln.grad(lambda x: column_loss(x)[0])(np.arange(3.0)), [0, 2, 4])
    np.testing.assert_allclose(ln.grad(lambda x: ln.sum(column_loss(x)))(np.ones(2)), [2, 2])


def test_grad_of_a_gradient_says_it_is_not_supported():
    def inner_grad_norm(x):
        return ln.sum(ln.grad(lambda y: ln.sum(x * y**2))(x))  # closes over x

    with pytest.raises(
        ln.TraceError, match=r"'inner_grad_norm' itself calls ln.grad.*reverse over"
    ):
        ln.grad(inner_grad_norm)(np.ones(3))
