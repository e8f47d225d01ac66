"""numpy functions on staged values dispatch to `ln` (or fail at the user's line
naming the `ln` function to use), and `ln` functions take lists of staged values
as numpy takes lists of arrays: stacked."""

from __future__ import annotations

import numpy as np
import pytest

import lanterna as ln

RNG = np.random.default_rng(20)
X = RNG.standard_normal((2, 3))


# Each case is written once and run twice: with `np` on staged values, and with
# numpy on numpy arrays as the reference.
CASES = {
    "sum": lambda t: np.sum(t),
    "sum_axis_keepdims": lambda t: np.sum(t, axis=1, keepdims=True),
    "sum_out_none": lambda t: np.sum(t, 0, None, None),
    "sum_dtype": lambda t: np.sum(t, dtype=np.float32),
    "max": lambda t: np.max(t),
    "amax_axis": lambda t: np.amax(t, axis=0),
    "mean": lambda t: np.mean(t, 1),
    "exp": lambda t: np.exp(t),
    "tanh_where_true": lambda t: np.tanh(t, where=True),
    "absolute": lambda t: np.abs(t),
    "ndarray_plus": lambda t: np.ones(3) + t,
    "ndarray_less": lambda t: np.zeros(3) < t,
    "dot": lambda t: np.dot(t, np.arange(3.0)),
    "dot_lhs": lambda t: np.dot(np.arange(2.0), t),
    "where": lambda t: np.where(t > 0, t, 0.0),
    "reshape": lambda t: np.reshape(t, (3, 2)),
    "transpose": lambda t: np.transpose(t, (1, 0)),
    "concatenate": lambda t: np.concatenate([t, t], axis=1),
    "stack": lambda t: np.stack([t, t]),
    "take": lambda t: np.take(t, [5, 0]),
    "take_axis": lambda t: np.take(t, [2, 0], axis=1),
    "broadcast_to": lambda t: np.broadcast_to(t, (4, 2, 3)),
    "expand_dims": lambda t: np.expand_dims(t, 0),
    "zeros_like": lambda t: np.zeros_like(t),
    "astype": lambda t: np.astype(t, np.float32),
}


@pytest.mark.parametrize("backend", ["interp", "cpu"])
def test_numpy_functions_on_staged_values_run_the_ln_ones(backend):
    names = list(CASES)
    got = ln.jit(lambda t: [CASES[n](t) for n in names], backend=backend)(X)
    for name, g in zip(names, got):
        want = CASES[name](X)
        assert g.shape == np.shape(want) and g.dtype == np.asarray(want).dtype, name
        np.testing.assert_allclose(g, want, rtol=1e-6, err_msg=name)


def test_static_facts_and_gradients_through_numpy_functions():
    f = ln.jit(lambda t: np.zeros(np.shape(t)) + np.ndim(t) + np.size(t) + np.size(t, 1))
    np.testing.assert_allclose(f(X), np.full((2, 3), 2 + 6 + 3))
    g = ln.grad(lambda t: np.sum(np.exp(t) * np.mean(t)))(X)
    want = np.exp(X) * X.mean() + np.exp(X).sum() / X.size
    np.testing.assert_allclose(g, want, rtol=1e-12)


ERRORS = [
    (lambda t: np.sum(t, out=np.zeros(())), r"np.sum\(..., out=...\) cannot write .* ln.sum"),  # E
    (lambda t: np.add(t, 1, out=np.zeros((2, 3))), r"np.add\(..., out=...\) .* ln.add"),  # E
    (lambda t: np.min(t), r"np.min cannot run .* no counterpart; write -ln.max\(-x\)"),  # E
    (lambda t: np.sin(t), r"np.sin cannot run on a staged value .* ln has no counterpart$"),  # E
    (lambda t: np.linalg.norm(t), r"np.linalg.norm cannot run .* no counterpart$"),  # E
    (lambda t: np.add.reduce(t), r"np.add.reduce cannot run on a staged value; use ln.sum"),  # E
    (lambda t: np.exp(t, dtype=np.float32), r"np.exp: argument dtype=.* ln.astype"),  # E
    (lambda t: np.sum(t, initial=1.0), r"np.sum: argument initial=1.0 is not supported"),  # E
    (lambda t: np.where(t > 0), r"np.where: missing .* \(ln.where takes cond, x, y\)"),  # E
    (lambda t: np.mean([t, t]), r"numpy array .* call the ln function .* ln.mean\(\[x, y\]\)"),  # E
]


@pytest.mark.parametrize("fn,match", ERRORS)
def test_numpy_functions_ln_cannot_run_name_the_line_and_the_way_out(fn, match):
    with pytest.raises(ln.TraceError, match=match) as info:
        ln.jit(fn, backend="interp")(X)
    assert info.value.filename == __file__
    with open(__file__) as f:
        assert f.read().splitlines()[info.value.lineno - 1].endswith("# E")


@pytest.mark.parametrize("backend", ["interp", "cpu"])
def test_ln_functions_stack_lists_of_staged_values(backend):
    def f(t, i):
        return (
            ln.mean([t, t + 2]),
            ln.sum((t, t * t), axis=0),
            ln.max([[t[0], t[1]], [t[1], 3.0 + t[0]]], axis=1),
            ln.exp([t[0, 0], t[1, 1], 0.5]),
            ln.dot([t[0, 0], t[0, 1]], [1.0, 2.0]),
            ln.where([t[0, 0] > 0, t[1, 0] > 0], [t[0, 1], t[1, 1]], 0.0),
            ln.asarray([t, t]) * 2.0,
            ln.zeros_like([t[0], t[1]]),
            t[[i, 0]],
            ln.take(t, [i, i + 1]),
        )

    i = np.int64(1)
    want = (
        np.mean([X, X + 2]),
        np.sum((X, X * X), axis=0),
        np.max([[X[0], X[1]], [X[1], 3.0 + X[0]]], axis=1),
        np.exp([X[0, 0], X[1, 1], 0.5]),
        np.dot([X[0, 0], X[0, 1]], [1.0, 2.0]),
        np.where([X[0, 0] > 0, X[1, 0] > 0], [X[0, 1], X[1, 1]], 0.0),
        np.asarray([X, X]) * 2.0,
        np.zeros((2, 3)),
        X[[1, 0]],
        np.take(X, [1, 2]),
    )
    for g, w in zip(ln.jit(f, backend=backend)(X, i), want):
        assert g.shape == np.shape(w)
        np.testing.assert_allclose(g, w, rtol=1e-12)
    # The same calls on numpy arrays, eagerly, are numpy's.
    for g, w in zip(f(X, i), want):
        np.testing.assert_allclose(g, w, rtol=1e-12)


def test_gradient_through_a_list_of_staged_values():
    def loss(t):
        return ln.sum(ln.mean([t, t * t, ln.tanh(t)], axis=0) * ln.asarray([t[0], t[1]]))

    report = ln.check_grads(loss, [X])
    assert report is not None and report.error < 1e-6


def test_stacking_arrays_of_different_shapes_is_an_error():
    with pytest.raises(ln.TraceError, match=r"ln.stack: all arrays must have the same shape, got"):
        ln.jit(lambda t: ln.mean([t, t[0]]))(X)


@pytest.mark.parametrize("index", [np.int64(1), np.array([1, 2])])
def test_a_numpy_array_indexed_by_a_staged_value_says_to_use_an_ln_array(index):
    table = np.arange(6.0).reshape(3, 2)
    with pytest.raises(ln.TraceError, match=r"index an ln array.*ln\.asarray\(c\)\[i\]") as info:
        ln.jit(lambda i: table[i], backend="interp")(index)
    assert info.value.filename == __file__
    # As the message says:
    got = ln.jit(lambda i: ln.asarray(table)[i], backend="interp")(index)
    np.testing.assert_array_equal(got, table[index])
