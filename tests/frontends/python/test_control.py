"""ln.cond / ln.while_loop / ln.fori_loop: the IR they emit, their values, their
type errors, and their gradients against finite differences."""

from __future__ import annotations

import numpy as np
import pytest

import lanterna as ln

RNG = np.random.default_rng(1)


def line_of(marker: str) -> int:
    with open(__file__) as f:
        for i, line in enumerate(f.read().splitlines(), start=1):
            if line.rstrip().endswith(f"# {marker}"):
                return i
    raise AssertionError(marker)


# --- cond -----------------------------------------------------------------------------------


def branchy(x):
    return ln.cond(ln.sum(x) > 0, lambda v: (v * 2.0, ln.sum(v)), lambda v: (-v, 1.0), x)


def test_cond_emits_scf_if_and_picks_the_branch():
    f = ln.jit(branchy)
    ir = str(f.lower(np.ones(3)))
    assert "scf.if" in ir and "ln.item" in ir
    y, s = f(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(y, [2.0, 4.0, 6.0])
    assert float(s) == 6.0
    y, s = f(np.array([-1.0, -2.0, 0.5]))
    np.testing.assert_allclose(y, [1.0, 2.0, -0.5])
    # The Python 1.0 was lifted to the other branch's dtype.
    assert float(s) == 1.0 and s.dtype == np.float64


def test_cond_on_python_predicate_runs_one_branch_only():
    calls = []

    def f(x):
        return ln.cond(
            True, lambda v: calls.append("t") or v + 1.0, lambda v: calls.append("f") or v, x
        )

    ir = str(ln.jit(f).lower(np.ones(2)))
    assert calls == ["t"] and "scf.if" not in ir


def test_cond_uses_values_of_the_enclosing_trace():
    def f(x, w):
        return ln.cond(x[0] > 0, lambda: x * w, lambda: x + w)

    x, w = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    np.testing.assert_allclose(ln.jit(f)(x, w), x * w)
    np.testing.assert_allclose(ln.jit(f)(-x, w), -x + w)


def test_cond_outside_a_trace_is_python():
    assert ln.cond(np.array(1.0) > 0, lambda: "yes", lambda: "no") == "yes"


def test_cond_branch_type_mismatch_names_line_and_both_types():
    def f(x):
        return ln.cond(x[0] > 0, lambda: x, lambda: x[:2])  # COND

    with pytest.raises(
        ln.TraceError, match=r"tensor\[3\] of float64 and tensor\[2\] of float64"
    ) as info:
        ln.jit(f)(np.ones(3))
    assert info.value.filename == __file__ and info.value.lineno == line_of("COND")


def test_cond_branch_structure_mismatch():
    def f(x):
        return ln.cond(x[0] > 0, lambda: (x, x), lambda: x)

    with pytest.raises(ln.TraceError, match=r"\(\*, \*\) and \*"):
        ln.jit(f)(np.ones(3))


def test_cond_nonscalar_predicate():
    with pytest.raises(ln.TraceError, match="must be a scalar"):
        ln.jit(lambda x: ln.cond(x > 0, lambda: x, lambda: -x))(np.ones(3))


def test_grad_through_cond():
    def f(x, w):
        return ln.cond(ln.sum(x * w) > 0, lambda: ln.sum(ln.tanh(x * w)), lambda: ln.sum(x * x))

    x, w = RNG.standard_normal(4), RNG.standard_normal(4)
    ln.check_grads(f, [x, w])
    ln.check_grads(f, [x, -w])


# --- while_loop -----------------------------------------------------------------------------


def grow_until(x, w):
    """Iterate x <- tanh(x * w) + x until its norm passes 5: the trip count depends on data."""

    def body(state):
        v, n = state
        return ln.tanh(v * w) + v * 1.1, n + 1

    v, n = ln.while_loop(lambda s: ln.sum(s[0] * s[0]) < 25.0, body, (x, 0))
    return ln.sum(v * v) / 10.0 + ln.sum(v * w), n


def test_while_loop_trip_count_depends_on_data():
    f = ln.jit(grow_until)
    assert "scf.while" in str(f.lower(np.ones(3), np.ones(3)))
    x, w = np.array([0.5, 0.2, 0.1]), np.array([0.3, 0.2, 0.1])
    _, n_small = f(x, w)
    _, n_big = f(x * 4, w)
    assert int(n_small) > int(n_big) >= 1
    # The same as plain Python on numpy.
    v, n = x, 0
    while np.sum(v * v) < 25.0:
        v, n = np.tanh(v * w) + v * 1.1, n + 1
    assert int(n_small) == n


def test_grad_through_data_dependent_while_loop():
    x, w = np.array([0.5, 0.2, 0.1]), np.array([0.3, 0.2, 0.1])
    ln.check_grads(lambda x, w: grow_until(x, w)[0], [x, w])


def test_while_loop_carried_type_must_not_change():
    def f(x):
        def grow(v):
            return ln.concatenate([v, v])

        return ln.while_loop(lambda v: ln.sum(v) < 10.0, grow, x)  # GROW

    with pytest.raises(ln.TraceError, match="must keep its shape and dtype") as info:
        ln.jit(f)(np.ones(2))
    assert info.value.lineno == line_of("GROW")


def test_while_loop_outside_a_trace_runs_eagerly():
    out = ln.while_loop(lambda v: v < 10, lambda v: v * 2, 1)
    assert out == 16


# --- fori_loop ------------------------------------------------------------------------------


def test_fori_loop_with_staged_bounds():
    def f(xs, lo, hi):
        return ln.fori_loop(lo, hi, lambda i, acc: acc + xs[i] * i.astype(np.float64), 0.0)

    jf = ln.jit(f)
    ir = str(jf.lower(np.ones(5), np.int64(1), np.int64(4)))
    assert "scf.for" in ir and "arith.index_cast" in ir
    xs = np.arange(5.0) + 1
    assert float(jf(xs, np.int64(1), np.int64(4))) == pytest.approx(
        sum(xs[i] * i for i in range(1, 4))
    )
    assert float(jf(xs, np.int64(0), np.int64(5))) == pytest.approx(
        sum(xs[i] * i for i in range(5))
    )
    assert jf.trace_count == 1


def test_grad_through_fori_loop_with_staged_bounds():
    def f(x, w, n):
        h = ln.fori_loop(0, n[0], lambda i, h: ln.tanh(h * w + x[i]), ln.zeros_like(w))
        return ln.sum(h * h)

    x, w = RNG.standard_normal(5), RNG.standard_normal(3)
    ln.check_grads(f, [x, w, np.array([4])], argnums=(0, 1))


def test_fori_loop_bound_must_be_integer():
    with pytest.raises(ln.TraceError, match="loop bound"):
        ln.jit(lambda x: ln.fori_loop(0, x[0], lambda i, v: v, x))(np.ones(3))


# --- checkpoint -----------------------------------------------------------------------------


def rnn_loss(xs, w, u, checkpointed):
    def cell(h, x):
        return ln.tanh(h @ w + x * u)

    step = ln.checkpoint(cell) if checkpointed else cell
    h = ln.fori_loop(0, xs.shape[0], lambda i, h: step(h, xs[i]), ln.zeros_like(u))
    return ln.sum(h * h)


@pytest.mark.parametrize("backend", ["interp", "cpu"])
def test_checkpoint_gives_the_same_gradients(backend):
    xs, w, u = RNG.standard_normal((6, 3)), RNG.standard_normal((3, 3)), RNG.standard_normal(3)
    grads = [
        ln.jit(
            ln.grad(lambda xs, w, u, c=c: rnn_loss(xs, w, u, c), argnums=(1, 2)), backend=backend
        )(xs, w, u)
        for c in (False, True)
    ]
    for a, b in zip(*grads):
        np.testing.assert_allclose(b, a, rtol=1e-12)
    ln.check_grads(lambda xs, w, u: rnn_loss(xs, w, u, True), [xs, w, u], argnums=(1, 2))


def test_checkpoint_emits_the_region_and_runs_plainly_outside_a_trace():
    xs, w, u = RNG.standard_normal((4, 3)), RNG.standard_normal((3, 3)), RNG.standard_normal(3)
    f = ln.jit(lambda xs, w, u: rnn_loss(xs, w, u, True))
    assert "ln.checkpoint ->" in f.lower(xs, w, u).as_text()
    np.testing.assert_allclose(f(xs, w, u), rnn_loss(xs, w, u, False), rtol=1e-12)
    # Outside a trace the function is called as it is.
    double = ln.checkpoint(lambda a: 2 * a)
    assert double(3) == 6 and double.__wrapped__(4) == 8


def test_checkpoint_returns_pytrees_and_python_numbers():
    def f(x):
        out = ln.checkpoint(lambda v: {"a": ln.tanh(v), "n": 2.0})(x)
        return ln.sum(out["a"] * out["n"])

    x = RNG.standard_normal(3)
    np.testing.assert_allclose(ln.jit(f)(x), 2 * np.tanh(x).sum(), rtol=1e-12, atol=1e-14)
    ln.check_grads(f, [x])


def test_checkpoint_rejects_non_array_results():
    with pytest.raises(ln.TraceError, match="must return arrays") as info:
        ln.jit(lambda x: ln.checkpoint(lambda v: "text")(x))(np.ones(3))  # checkpoint-error
    assert f"test_control.py:{line_of('checkpoint-error')}" in str(info.value)
