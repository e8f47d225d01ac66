"""`ln.jit`: pytrees in and out, the trace cache, constants, unrolling, `lower`,
and the backend registry."""

from __future__ import annotations

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
        default_pipeline = ""

        def compile(self, module, fn_name):
            interp = get_backend("interp").compile(module, fn_name)

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
