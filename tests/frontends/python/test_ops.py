"""Every public op, traced with `ln.jit` on the interpreter and compared with numpy
(in float32 and float64), and the same op used eagerly on numpy arrays."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import lanterna as ln

RNG = np.random.default_rng(0)
DTYPES = [np.float32, np.float64]


def rand(shape, dtype, low=-2.0, high=2.0):
    return RNG.uniform(low, high, size=shape).astype(dtype)


def positive(shape, dtype):
    return rand(shape, dtype, 0.5, 3.0)


def tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


# (name, lanterna function, numpy reference, input makers)
UNARY: list[tuple[str, Callable, Callable, Callable]] = [
    ("negative", ln.negative, np.negative, rand),
    ("abs", ln.abs, np.abs, rand),
    ("exp", ln.exp, np.exp, rand),
    ("log", ln.log, np.log, positive),
    ("tanh", ln.tanh, np.tanh, rand),
    ("sqrt", ln.sqrt, np.sqrt, positive),
    ("sigmoid", ln.sigmoid, lambda x: 1 / (1 + np.exp(-x)), rand),
    ("relu", ln.relu, lambda x: np.maximum(x, 0), rand),
]

BINARY: list[tuple[str, Callable, Callable]] = [
    ("add", ln.add, np.add),
    ("subtract", ln.subtract, np.subtract),
    ("multiply", ln.multiply, np.multiply),
    ("divide", ln.divide, np.divide),
    ("maximum", ln.maximum, np.maximum),
    ("minimum", ln.minimum, np.minimum),
    ("power", ln.power, np.power),
]

COMPARE = [
    ("less", ln.less, np.less),
    ("less_equal", ln.less_equal, np.less_equal),
    ("greater", ln.greater, np.greater),
    ("greater_equal", ln.greater_equal, np.greater_equal),
    ("equal", ln.equal, np.equal),
    ("not_equal", ln.not_equal, np.not_equal),
]


def check(fn, ref, *args, dtype):
    got = ln.jit(fn)(*args)
    want = ref(*args)
    assert got.shape == np.shape(want)
    assert got.dtype == np.asarray(want).dtype
    np.testing.assert_allclose(got, want, **tol(dtype))
    eager = fn(*args)
    assert isinstance(eager, np.ndarray)
    np.testing.assert_allclose(eager, want, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,fn,ref,make", UNARY, ids=[u[0] for u in UNARY])
def test_unary(name, fn, ref, make, dtype):
    check(fn, ref, make((3, 4), dtype), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,fn,ref", BINARY, ids=[b[0] for b in BINARY])
def test_binary_with_broadcasting(name, fn, ref, dtype):
    check(fn, ref, positive((2, 3), dtype), positive((3,), dtype), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,fn,ref", COMPARE, ids=[c[0] for c in COMPARE])
def test_comparisons_give_bool(name, fn, ref, dtype):
    a = np.array([[1, 2, 3], [3, 2, 1]], dtype)
    b = np.array([2, 2, 2], dtype)
    got = ln.jit(fn)(a, b)
    assert got.dtype == np.bool_
    np.testing.assert_array_equal(got, ref(a, b))


@pytest.mark.parametrize("dtype", DTYPES)
def test_operators(dtype):
    x, y = positive((2, 3), dtype), positive((2, 3), dtype)

    def f(x, y):
        return (x + y, x - y, x * y, x / y, x**2, -x, 2 - x, 1 / x, x @ y.T, x < y, abs(-x))

    got = ln.jit(f)(x, y)
    want = (x + y, x - y, x * y, x / y, x**2, -x, 2 - x, 1 / x, x @ y.T, x < y, x)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype
        np.testing.assert_allclose(g, w, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_where_and_logic(dtype):
    x = rand((3, 4), dtype)

    def f(x):
        m = (x > -0.5) & (x < 0.5)
        return ln.where(m, x, 0.0), ln.where(~m | (x > 0), 1.0, -x)

    a, b = ln.jit(f)(x)
    m = (x > -0.5) & (x < 0.5)
    np.testing.assert_allclose(a, np.where(m, x, 0.0).astype(dtype))
    np.testing.assert_allclose(b, np.where(~m | (x > 0), 1.0, -x).astype(dtype))
    assert a.dtype == b.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [None, 0, 1, (0, 2), -1])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(dtype, axis, keepdims):
    x = rand((2, 3, 4), dtype)
    for fn, ref in ((ln.sum, np.sum), (ln.mean, np.mean), (ln.max, np.max)):
        check(
            lambda x, fn=fn: fn(x, axis=axis, keepdims=keepdims),
            lambda x, ref=ref: ref(x, axis=axis, keepdims=keepdims),
            x,
            dtype=dtype,
        )

    def methods(x):
        return x.sum(axis, keepdims), x.mean(axis, keepdims), x.max(axis, keepdims)

    got = ln.jit(methods)(x)
    want = (
        x.sum(axis, keepdims=keepdims),
        x.mean(axis, keepdims=keepdims),
        x.max(axis, keepdims=keepdims),
    )
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "sa,sb",
    [
        ((2, 3), (3, 4)),
        ((2, 3), (3,)),
        ((3,), (3, 4)),
        ((5, 2, 3), (5, 3, 4)),
        ((5, 2, 3), (3, 4)),
        ((3,), (3,)),
        ((2, 5, 2, 3), (3, 4)),
        ((2, 1, 2, 3), (5, 3, 4)),
        ((3,), (5, 3, 4)),
    ],
)
def test_matmul_all_ranks(dtype, sa, sb):
    check(ln.matmul, np.matmul, rand(sa, dtype), rand(sb, dtype), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_shape_ops(dtype):
    x = rand((2, 3, 4), dtype)
    check(lambda x: ln.reshape(x, (6, -1)), lambda x: x.reshape(6, -1), x, dtype=dtype)
    check(lambda x: x.reshape(4, 6), lambda x: x.reshape(4, 6), x, dtype=dtype)
    check(ln.transpose, np.transpose, x, dtype=dtype)
    check(
        lambda x: ln.transpose(x, (1, 0, 2)), lambda x: np.transpose(x, (1, 0, 2)), x, dtype=dtype
    )
    check(lambda x: x.T, lambda x: x.T, x, dtype=dtype)
    check(
        lambda x: ln.broadcast_to(x, (5, 2, 3, 4)),
        lambda x: np.broadcast_to(x, (5, 2, 3, 4)),
        x,
        dtype=dtype,
    )
    y = rand((2, 5, 4), dtype)
    check(
        lambda x, y: ln.concatenate([x, y, x], axis=1),
        lambda x, y: np.concatenate([x, y, x], axis=1),
        x,
        y,
        dtype=dtype,
    )
    check(lambda x: ln.stack([x, x], axis=1), lambda x: np.stack([x, x], axis=1), x, dtype=dtype)
    check(lambda x: ln.expand_dims(x, -1), lambda x: np.expand_dims(x, -1), x, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_take_and_scatter_add(dtype):
    table = rand((5, 3), dtype)
    ids = np.array([[0, 4], [4, 2]], np.int64)
    check(ln.take, np.take, table, ids, dtype=dtype)
    check(lambda t, i: ln.take(t, i, axis=0), lambda t, i: t[i], table, ids, dtype=dtype)
    check(
        lambda t, i: ln.take(t, i, axis=1),
        lambda t, i: np.take(t, i, axis=1),
        table,
        np.array([2, 0]),
        dtype=dtype,
    )
    updates = rand((2, 2, 3), dtype)

    def ref(u, i):
        out = np.zeros((5, 3), dtype)
        np.add.at(out, i, u)
        return out

    check(lambda u, i: ln.scatter_add(u, i, 5), ref, updates, ids, dtype=dtype)
    check(lambda u, i: ln.scatter_add(u, i, (5, 3)), ref, updates, ids, dtype=dtype)


@pytest.mark.parametrize("backend", ["interp", "cpu"])
def test_take_without_axis_flattens_like_numpy(backend):
    x = np.arange(12.0).reshape(3, 4)
    for idx in ([1, 0, 11], np.array([[5, -1], [2, 3]]), 2, -3, np.array(7)):
        want = np.take(x, idx)
        for got in (ln.take(x, idx), ln.jit(lambda x, i=idx: ln.take(x, i), backend=backend)(x)):
            assert np.shape(got) == np.shape(want)
            np.testing.assert_array_equal(got, want)
    staged = ln.jit(lambda x, i: ln.take(x, i), backend=backend)
    for idx in (np.array([11, 0, 4]), np.array([[5, 1], [2, 3]]), np.array(7)):
        np.testing.assert_array_equal(staged(x, idx), np.take(x, idx))
    np.testing.assert_array_equal(
        staged(x[:, :1], np.array([2, 0])), np.take(x[:, :1], np.array([2, 0]))
    )
    with pytest.raises(ln.TraceError, match="index 12 is out of bounds for axis 0 with size 12"):
        ln.take(x, [12])


def test_take_without_axis_wraps_staged_negative_indices():
    x = np.arange(12.0).reshape(3, 4)
    got = ln.jit(lambda x, i: ln.take(x, i), backend="interp")(x, np.array([-1, 2, -12]))
    np.testing.assert_array_equal(got, np.take(x, [-1, 2, -12]))


def np_log_softmax(x, axis=-1):
    s = x - x.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_and_losses(dtype):
    x = rand((4, 5), dtype)
    t = np.array([0, 4, 2, 2], np.int64)
    check(ln.softmax, lambda x: np.exp(np_log_softmax(x)), x, dtype=dtype)
    check(lambda x: ln.log_softmax(x, axis=0), lambda x: np_log_softmax(x, 0), x, dtype=dtype)
    nll = -np_log_softmax(x)[np.arange(4), t]
    check(
        lambda p, t: ln.nll_loss(p, t),
        lambda p, t: np.asarray(-p[np.arange(4), t].mean()),
        np_log_softmax(x),
        t,
        dtype=dtype,
    )
    check(
        lambda p, t: ln.nll_loss(p, t, reduction="sum"),
        lambda p, t: np.asarray(-p[np.arange(4), t].sum()),
        np_log_softmax(x),
        t,
        dtype=dtype,
    )
    check(ln.cross_entropy, lambda x, t: np.asarray(nll.mean(), dtype), x, t, dtype=dtype)


def np_conv2d(x, w, stride, padding):
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh = (h + 2 * padding - kh) // stride + 1
    ow = (wd + 2 * padding - kw) // stride + 1
    out = np.zeros((n, o, oh, ow), x.dtype)
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", win, w)
    return out


def np_pool(x, k, reduce):
    n, c, h, w = x.shape
    return reduce(x.reshape(n, c, h // k, k, w // k, k), axis=(3, 5))


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_and_pooling(dtype):
    x = rand((2, 3, 6, 6), dtype)
    w = rand((4, 3, 3, 3), dtype)
    check(ln.conv2d, lambda x, w: np_conv2d(x, w, 1, 0), x, w, dtype=dtype)
    check(
        lambda x, w: ln.conv2d(x, w, stride=2, padding=1),
        lambda x, w: np_conv2d(x, w, 2, 1),
        x,
        w,
        dtype=dtype,
    )
    check(lambda x: ln.max_pool2d(x, 2), lambda x: np_pool(x, 2, np.max), x, dtype=dtype)
    check(lambda x: ln.avg_pool2d(x, 3), lambda x: np_pool(x, 3, np.mean), x, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_keeps_or_scales(dtype):
    x = positive((64, 64), dtype)
    f = ln.jit(lambda x, s: ln.dropout(x, 0.25, s))
    y = f(x, np.int64(7))
    kept = y != 0
    np.testing.assert_allclose(y[kept], (x / dtype(0.75))[kept], rtol=1e-6)
    assert 0.65 < kept.mean() < 0.85
    np.testing.assert_array_equal(y, f(x, np.int64(7)))
    assert not np.array_equal(y, f(x, np.int64(8)))
    np.testing.assert_array_equal(y, ln.dropout(x, 0.25, 7))
    # A Python int seed is folded into the trace as a constant.
    np.testing.assert_array_equal(y, ln.jit(lambda x: ln.dropout(x, 0.25, 7))(x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_creation_and_casts(dtype):
    def f(x):
        return (
            ln.zeros((2, 3), dtype),
            ln.ones(4, dtype),
            ln.full((2,), 2.5, dtype),
            ln.astype(x, np.int32),
            x.astype(ln.float64),
            ln.asarray(np.arange(3)),
            ln.zeros_like(x),
        )

    x = np.array([1.7, -2.2], dtype)
    z, o, fl, i, d, a, zl = ln.jit(f)(x)
    assert z.dtype == o.dtype == fl.dtype == zl.dtype == dtype
    np.testing.assert_array_equal(z, np.zeros((2, 3)))
    np.testing.assert_array_equal(o, np.ones(4))
    np.testing.assert_array_equal(fl, [2.5, 2.5])
    np.testing.assert_array_equal(zl, [0, 0])
    assert i.dtype == np.int32 and list(i) == [1, -2]
    assert d.dtype == np.float64
    assert a.dtype == np.int64 and list(a) == [0, 1, 2]


def test_dtype_promotion_in_traces():
    f32 = np.ones(3, np.float32)
    f64 = np.ones(3, np.float64)
    i32 = np.arange(3, dtype=np.int32)
    i64 = np.arange(3, dtype=np.int64)
    j = ln.jit(lambda a, b: a + b)
    assert j(f32, f64).dtype == np.float64
    assert j(i64, f32).dtype == np.float32  # ints take the float's type
    assert j(i32, i64).dtype == np.int64
    assert ln.jit(lambda a: a * 2.5)(i32).dtype == np.float32  # weak float on ints
    assert ln.jit(lambda a: a * 2)(f64).dtype == np.float64  # weak int takes float64
    assert ln.jit(lambda a: 2.0 * a)(f32).dtype == np.float32  # no float64 from a literal
    np.testing.assert_array_equal(ln.jit(lambda a: a**3)(i32), i32**3)
    assert ln.jit(lambda a: a**3)(i32).dtype == np.int32
    assert ln.jit(lambda a, b: a / b)(i32, i32 + 1).dtype == np.float32
    assert ln.jit(lambda a: ln.exp(a))(i64).dtype == np.float32
    assert ln.jit(lambda a: (a > 0).sum())(f32).dtype == np.int32
    # numpy scalars are typed like arrays (np.float64 subclasses float, still strong).
    assert ln.jit(lambda a: a * np.float64(2))(f32).dtype == np.float64
    assert ln.jit(lambda a, b: a * b)(f32, np.float64(2)).dtype == np.float64
    m = np.array([True, False, True])
    np.testing.assert_array_equal(ln.jit(lambda m: m == True)(m), m)


def test_numpy_ufuncs_on_staged_values():
    x = rand((3,), np.float32)
    got = ln.jit(lambda x: (np.exp(x), np.ones(3, np.float32) + x, np.maximum(x, 0)))(x)
    np.testing.assert_allclose(got[0], np.exp(x), rtol=1e-6)
    np.testing.assert_allclose(got[1], 1 + x)
    np.testing.assert_allclose(got[2], np.maximum(x, 0))


def test_eager_ops_on_numpy_arrays():
    x = np.array([[1.0, -2.0], [3.0, 0.5]])
    np.testing.assert_allclose(ln.tanh(np.ones(3)), np.tanh(np.ones(3)))
    assert ln.tanh(np.ones(3)).dtype == np.float64
    np.testing.assert_allclose(ln.matmul(x, x), x @ x)
    np.testing.assert_allclose(ln.sum(x, axis=0), x.sum(axis=0))
    np.testing.assert_allclose(ln.softmax(x), np.exp(np_log_softmax(x)))
    # numpy's promotion rules outside a trace.
    assert ln.add(np.ones(2, np.float32), 1.5).dtype == np.float32
    assert ln.add(np.ones(2, np.int32), np.ones(2, np.float32)).dtype == np.float64
    assert ln.divide(np.arange(3), 2).dtype == np.float64
    np.testing.assert_array_equal(ln.where(x > 0, x, 0.0), np.where(x > 0, x, 0.0))
    np.testing.assert_array_equal(ln.take(x, [1, 0]), np.take(x, [1, 0]))
    np.testing.assert_array_equal(ln.take(x, [1, 0], axis=0), x[[1, 0]])
    assert ln.zeros((2,)).dtype == np.float32
    with pytest.raises(ln.TraceError, match=r"do not broadcast"):
        ln.add(np.ones((2, 3)), np.ones(4))
