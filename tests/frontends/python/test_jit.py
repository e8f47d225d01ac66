"""`ln.jit`: pytrees in and out, the trace cache, constants, unrolling, `lower`,
and the backend registry."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from xdsl.dialects import func

import lanterna as ln
from lanterna.backends import get_backend, register_backend
from lanterna.ir import parse_module

RNG = np.random.default_rng(1)


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def ln_ops(text: str) -> list[str]:
    """The `ln.*` op names in printed IR, in order."""
    return [w for line in text.splitlines() for w in line.split() if w.startswith("ln.")]


def test_pytrees_in_and_out():
    @ln.jit
    def step(params, batch):
        h = ln.tanh(batch["x"] @ params["w"] + params["b"])
        return {"h": h, "stats": (h.sum(), [h.max(), None])}

    params = {"w": f32(3, 4), "b": f32(4)}
    batch = {"x": f32(2, 3)}
    out = step(params, batch)
    h = np.tanh(batch["x"] @ params["w"] + params["b"])
    assert set(out) == {"h", "stats"}
    np.testing.assert_allclose(out["h"], h, rtol=1e-5)
    total, (mx, none) = out["stats"][0], out["stats"][1]
    np.testing.assert_allclose(total, h.sum(), rtol=1e-5)
    np.testing.assert_allclose(mx, h.max(), rtol=1e-6)
    assert none is None and isinstance(out["stats"], tuple) and isinstance(out["stats"][1], list)
    # Inputs are named after the parameters and the pytree paths.
    text = step.lower(params, batch).as_text()
    assert "%params_b" in text and "%params_w" in text and "%batch_x" in text


def test_dict_key_order_does_not_matter():
    calls = []

    @ln.jit
    def f(d):
        calls.append(1)
        return d["a"] - d["b"]

    a, b = f32(3), f32(3)
    np.testing.assert_allclose(f({"a": a, "b": b}), a - b)
    np.testing.assert_allclose(f({"b": b, "a": a}), a - b)
    assert len(calls) == 1


def test_retrace_per_shape_and_dtype_cache_hit_otherwise():
    traces = []

    @ln.jit
    def f(x):
        traces.append(x.shape)
        return x * 2

    f(f32(3))
    f(f32(3))
    assert traces == [(3,)]
    f(f32(4))
    assert traces == [(3,), (4,)]
    f(f32(3))
    f(np.ones(3, np.float64))
    assert traces == [(3,), (4,), (3,)] and f.trace_count == 3 and f.cache_size == 3
    f([f32(3)][0])
    assert f.trace_count == 3


def test_python_scalars_are_constants_in_the_key():
    traces = []

    @ln.jit
    def scale(x, k):
        traces.append(k)
        return x * k

    x = f32(3)
    np.testing.assert_allclose(scale(x, 2.0), x * 2)
    np.testing.assert_allclose(scale(x, 2.0), x * 2)
    np.testing.assert_allclose(scale(x, 3.0), x * 3)
    assert traces == [2.0, 3.0]
    text = scale.lower(x, 3.0).as_text()
    assert "ln.constant" in text and "3.0" in text
    # The function has one parameter: the scalar is folded, not passed.
    fn = next(iter(scale.lower(x, 3.0).module.ops))
    assert isinstance(fn, func.FuncOp) and len(fn.function_type.inputs) == 1
    # 2 and 2.0 trace separately (an int constant stays an int for ints).
    assert scale(np.arange(3, dtype=np.int32), 2).dtype == np.int32


def test_python_for_unrolls():
    @ln.jit
    def f(x, n):
        for _ in range(n):
            x = ln.tanh(x) * 0.5
        return x

    x = f32(4)
    want = x
    for _ in range(5):
        want = np.tanh(want) * np.float32(0.5)
    np.testing.assert_allclose(f(x, 5), want, rtol=1e-6)
    ops = ln_ops(f.lower(x, 5).as_text())
    assert ops.count("ln.tanh") == 5 and ops.count("ln.mul") == 5


def test_static_argnums_and_argnames():
    traces = []

    def f(x, axis, mode="sum"):
        traces.append((axis, mode))
        return x.sum(axis) if mode == "sum" else x.max(axis)

    x = f32(2, 3)
    g = ln.jit(f, static_argnums=1, static_argnames="mode")
    np.testing.assert_allclose(g(x, 0), x.sum(0), rtol=1e-6)
    np.testing.assert_allclose(g(x, 1, mode="max"), x.max(1))
    np.testing.assert_allclose(g(x, (0, 1)), x.sum(), rtol=1e-6)
    g(x, 0)
    assert traces == [(0, "sum"), (1, "max"), ((0, 1), "sum")]
    with pytest.raises(TypeError, match="hashable"):
        g(x, [0])


def test_decorator_with_arguments():
    @ln.jit(backend="interp")
    def f(x):
        return x + 1

    assert isinstance(f, ln.Jitted)
    np.testing.assert_allclose(f(f32(2) * 0), [1, 1])
    assert f.__name__ == "f"


def test_outputs_constants_and_passthrough():
    @ln.jit
    def f(x, y):
        return x, 3, {"y": y, "c": np.arange(2)}

    x, y = f32(2), f32(3)
    a, three, rest = f(x, y)
    np.testing.assert_array_equal(a, x)
    assert a is not x
    np.testing.assert_array_equal(rest["y"], y)
    np.testing.assert_array_equal(rest["c"], [0, 1])
    assert three == 3
    rest["c"][0] = 9
    assert f(x, y)[2]["c"][0] == 0
    assert ln.jit(lambda x: None)(x) is None


def test_nested_jit_is_inlined():
    inner = ln.jit(lambda x: ln.exp(x))

    @ln.jit
    def outer(x):
        return inner(x) + inner(x * 2)

    x = f32(3)
    np.testing.assert_allclose(outer(x), np.exp(x) + np.exp(2 * x), rtol=1e-6)
    text = outer.lower(x).as_text()
    assert text.count("func.func") == 1 and ln_ops(text).count("ln.exp") == 2


def test_lower_text_reparses():
    @ln.jit
    def mlp(w1, w2, x):
        return ln.relu(x @ w1) @ w2

    args = (f32(3, 4), f32(4, 2), f32(5, 3))
    lowered = mlp.lower(*args)
    text = lowered.as_text()
    assert str(lowered) == text
    assert "func.func @mlp(" in text
    assert ln_ops(text) == ["ln.matmul", "ln.relu", "ln.matmul"]
    module = parse_module(text)
    module.verify()
    from lanterna.ir.interpreter import Interpreter

    (got,) = Interpreter(module).call("mlp", *args)
    np.testing.assert_allclose(got, mlp(*args), rtol=1e-6)


def test_function_names_are_sanitized():
    text = ln.jit(lambda x: x * 2).lower(f32(2)).as_text()
    assert "func.func @lambda(" in text
    parse_module(text).verify()


def test_backend_registry():
    with pytest.raises(ln.LanternaError, match="unknown backend 'nope'.*interp"):
        ln.jit(lambda x: x, backend="nope")
    assert get_backend("interp").default_pipeline == ""

    seen = []

    class Recording:
        name = "test-recording"
        default_pipeline = ""

        def available(self):
            return True

        def unavailable_reason(self):
            return None

        def compile(self, module, fn_name, *, donate=()):
            interp = get_backend("interp").compile(module, fn_name, donate=donate)

            def run(*arrays):
                seen.append(fn_name)
                return interp(*arrays)

            return run

    register_backend("test-recording", Recording)
    f = ln.jit(lambda x: x + 1, backend="test-recording")
    np.testing.assert_allclose(f(np.zeros(2, np.float32)), [1, 1])
    assert seen == ["lambda"]
    with pytest.raises(ValueError, match="already registered"):
        register_backend("test-recording", Recording)


def test_unsupported_argument_types():
    f = ln.jit(lambda x: x)
    with pytest.raises(TypeError, match="static_argnums"):
        f("text")
    with pytest.raises(ln.TraceError, match="unsupported dtype"):
        f(np.ones(2, np.float16))


def test_public_namespace():
    for name in (
        "jit",
        "float32",
        "float64",
        "int32",
        "int64",
        "bool_",
        "TraceError",
        "LanternaError",
        "matmul",
        "conv2d",
        "take",
        "scatter_add",
        "Tensor",
    ):
        assert hasattr(ln, name), name
    assert ln.float32 == np.float32 and ln.bool_ == np.bool_


# --- constants by bits, a bounded cache, threads (issue 12) -------------------------------


@pytest.mark.parametrize("backend", ["interp", "cpu"])
def test_float_constants_are_keyed_by_their_bits(backend):
    f = ln.jit(lambda x, s: x / s, backend=backend)
    x = np.array([1.0, -2.0])
    with np.errstate(divide="ignore"):
        np.testing.assert_array_equal(f(x, 0.0), [np.inf, -np.inf])
        np.testing.assert_array_equal(f(x, -0.0), [-np.inf, np.inf])  # 0.0 == -0.0, not alike
    assert f.trace_count == 2
    for _ in range(50):  # nan != nan, but one NaN constant is one trace
        assert np.isnan(f(x, float("nan"))).all()
    assert f.trace_count == 3

    # True, 1 and 1.0 are equal and hash alike but trace differently.
    g = ln.jit(lambda n, s: n * s, backend=backend)
    n = np.arange(3, dtype=np.int32)
    assert [g(n, s).dtype for s in (True, 1, 1.0)] == [np.int32, np.int32, np.float32]
    assert g.trace_count == 3
    # Numpy scalars are typed arrays: their dtype is in the key, their value is not.
    assert g(n, np.float64(2.0)).dtype == np.float64 and g(n, np.float32(2.0)).dtype == np.float32
    np.testing.assert_array_equal(g(n, np.float32(3.0)), [0, 3, 6])
    assert g.trace_count == 5

    # Static arguments and tuples of them too.
    h = ln.jit(lambda x, s: x / s[0], static_argnums=1, backend=backend)
    with np.errstate(divide="ignore"):
        np.testing.assert_array_equal(h(x, (0.0,)), [np.inf, -np.inf])
        np.testing.assert_array_equal(h(x, (-0.0,)), [-np.inf, np.inf])


def test_staged_function_constants_are_keyed_by_their_bits():
    @ln.function
    def div(x, s):
        return x / s

    @ln.jit(backend="interp")
    def both(x):
        return div(x, 0.0), div(x, -0.0), div(x, float("nan")), div(x, float("nan"))

    x = np.array([1.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        pos, neg, nan1, nan2 = both(x)
    assert pos[0] == np.inf and neg[0] == -np.inf and np.isnan(nan1[0]) and np.isnan(nan2[0])
    assert div.trace_count == 3  # one function per constant, the NaN one shared


def test_trace_cache_keeps_the_most_recently_used():
    traces = []

    @ln.jit(backend="interp", cache_maxsize=2)
    def f(x):
        traces.append(x.shape[0])
        return x * 2.0

    for n in (1, 2, 3):  # 1 is evicted by 3
        np.testing.assert_allclose(f(np.ones(n)), 2 * np.ones(n))
    assert traces == [1, 2, 3] and f.cache_size == 2
    f(np.ones(2))  # a hit: 2 is now the most recently used, 3 the least
    assert traces == [1, 2, 3]
    np.testing.assert_allclose(f(np.ones(1)), [2.0])  # retraced, evicting 3
    assert traces == [1, 2, 3, 1] and f.cache_size == 2
    f(np.ones(2))
    f(np.ones(3))
    assert traces == [1, 2, 3, 1, 3] and f.trace_count == 5

    unbounded = ln.jit(lambda x: x, backend="interp", cache_maxsize=None)
    for n in range(1, 200):
        unbounded(np.ones(n))
    assert unbounded.cache_size == 199
    bounded = ln.jit(lambda x: x, backend="interp")
    for n in range(1, 200):
        bounded(np.ones(n))
    assert (
        bounded.cache_size == bounded.cache_maxsize == ln.frontends.python.api.DEFAULT_CACHE_MAXSIZE
    )
    with pytest.raises(ValueError, match="cache_maxsize of 'lambda' must be at least 1"):
        ln.jit(lambda x: x, cache_maxsize=0)
    with pytest.raises(TypeError, match="cache_maxsize of 'lambda' must be an int"):
        ln.jit(lambda x: x, cache_maxsize=2.5)


def test_a_first_call_from_many_threads_traces_and_compiles_once():
    n_threads = 8
    barrier = threading.Barrier(n_threads)

    @ln.jit(backend="interp")
    def f(x):
        time.sleep(0.05)  # a slow trace: every thread arrives while it runs
        return ln.tanh(x) * 2.0

    compiles = []
    compile_ = f._compile

    def counting_compile(traced):
        compiles.append(traced)
        time.sleep(0.05)
        return compile_(traced)

    f._compile = counting_compile
    x = RNG.standard_normal(5)

    def work(i):
        barrier.wait()
        return f(x + i)

    with ThreadPoolExecutor(n_threads) as pool:
        results = list(pool.map(work, range(n_threads), timeout=120))
    assert f.trace_count == 1 and len(compiles) == 1
    for i, r in enumerate(results):
        np.testing.assert_allclose(r, np.tanh(x + i) * 2.0, rtol=1e-12)

    # A trace that fails wakes the waiting threads, which then meet the error themselves.
    @ln.jit(backend="interp")
    def bad(x):
        time.sleep(0.05)
        return x + np.ones(7)

    barrier = threading.Barrier(4)

    def call_bad(_):
        barrier.wait()
        with pytest.raises(ln.TraceError, match="broadcast"):
            bad(x)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(call_bad, range(4), timeout=120))  # re-raises a thread's failure


def test_asking_for_a_signature_while_tracing_it_does_not_wait_for_itself():
    asked, lowered = [], []

    @ln.jit(backend="interp")
    def f(x):
        if not asked:  # same thread, same key, while its trace is in progress
            asked.append(True)
            lowered.append(f.lower(np.ones(3)))
        return x + 1.0

    done = threading.Thread(target=lambda: f(np.ones(3)), daemon=True)
    done.start()
    done.join(timeout=60)
    assert not done.is_alive()
    assert "ln.add" in lowered[0].as_text()
    np.testing.assert_allclose(f(np.zeros(3)), [1, 1, 1])
