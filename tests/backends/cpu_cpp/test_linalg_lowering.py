"""The cpu lowering of the linear-algebra decisions made by passes: matrix
products reading transposed operands (`ln.matmul {transpose_a, transpose_b}`),
products added into cells (`ad.accum_matmul`, deferred or not) and pieces
added into ranges of cells (`ad.accum_slice`). Results are checked against
numpy and the interpreter; the generated C++ against the BLAS calls the
decisions stand for."""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import lanterna as ln
from lanterna.backends import get_backend
from lanterna.backends.cpu_cpp.emitter import emit_module
from lanterna.ir import parse_module
from lanterna.ir.interpreter import Interpreter
from lanterna.passes import run_pipeline

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")

RNG = np.random.default_rng(7)


def _source(fn, args) -> str:
    backend = get_backend("cpu")
    lowered = ln.jit(fn).lower(*args)
    module = run_pipeline(lowered.module.clone(), backend.default_pipeline)
    return emit_module(module, lowered.fn_name).source


def test_gradients_of_a_model_reading_a_transposed_weight():
    def loss(w, x):
        return ln.sum(ln.tanh(w.T @ x) ** 2)

    def grad(w, x):
        return ln.grad(loss, argnums=(0, 1))(w, x)

    w = RNG.standard_normal((6, 4)).astype(np.float32)
    x = RNG.standard_normal((6, 5)).astype(np.float32)
    dw, dx = ln.jit(grad, backend="cpu")(w, x)
    y = np.tanh(w.astype(np.float64).T @ x)
    gz = 2 * y * (1 - y**2)
    np.testing.assert_allclose(dw, x @ gz.T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, w @ gz, rtol=1e-4, atol=1e-5)
    source = _source(grad, (w, x))
    # The forward product reads `w` through BLAS's trans flag (`w.T` is never
    # built) and the adjoint of x reads it as it is.
    assert "lanterna::gemm(true, false, 4, 5, 6, w, 4, x, 5," in source, source
    assert "lanterna::gemm(false, false, 6, 5, 4, w, 4," in source, source


def _lstm_like(steps: int, n: int, batch: int):
    """d/dW of sum(h_T) for h_{t+1} = tanh(h_t @ W + x_t) * sigmoid(x_t @ W^T ...):
    one weight used twice per step, once transposed."""

    def loss(w, h0, xs):
        h = h0
        for t in range(xs.shape[0]):
            h = ln.tanh(h @ w + xs[t]) * ln.sigmoid(xs[t] @ w.T)
        return ln.sum(h)

    def grad(w, h0, xs):
        return ln.grad(loss)(w, h0, xs)

    w = (RNG.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32)
    h0 = RNG.standard_normal((batch, n)).astype(np.float32)
    xs = RNG.standard_normal((steps, batch, n)).astype(np.float32)
    return grad, (w, h0, xs)


def _lstm_like_by_hand(w, h0, xs):
    w = w.astype(np.float64)
    hs, zs, ss = [h0.astype(np.float64)], [], []
    for x in xs:
        z = np.tanh(hs[-1] @ w + x)
        s = 1 / (1 + np.exp(-(x @ w.T)))
        zs.append(z)
        ss.append(s)
        hs.append(z * s)
    g, dw = np.ones_like(hs[-1]), np.zeros_like(w)
    for t in range(len(xs) - 1, -1, -1):
        gz = g * ss[t] * (1 - zs[t] ** 2)
        gs = g * zs[t] * ss[t] * (1 - ss[t])
        dw += hs[t].T @ gz + (xs[t].T @ gs).T
        g = gz @ w.T
    return dw


@pytest.mark.parametrize("n,batch", [(8, 3), (160, 1)])
def test_a_weight_used_at_every_step_of_a_loop(n, batch):
    grad, args = _lstm_like(4, n, batch)
    got = ln.jit(grad, backend="cpu")(*args)
    np.testing.assert_allclose(got, _lstm_like_by_hand(*args), rtol=3e-4, atol=3e-4)
    source = _source(grad, args)
    if n * n >= 1 << 14:
        assert "lanterna::defer_product(" in source and "lanterna::flush_products(" in source
    else:
        assert "defer_product" not in source
        assert ", 1);" in source  # a product added into its cell with beta 1


ACCUMULATED = """
func.func @f(%w: tensor<6x4xf32>, %x: tensor<6x5xf32>, %g: tensor<4x2xf32>) -> tensor<4x5xf32> {
  %c = ad.zero_cell : tensor<4x5xf32>
  ad.accum_matmul %c, %w, %x {transpose_a} : !ad.cell<tensor<4x5xf32>>, tensor<6x4xf32>, tensor<6x5xf32>
  %wt = ln.transpose %w {perm = array<i64: 1, 0>} : tensor<6x4xf32>
  %xt = ln.transpose %x {perm = array<i64: 1, 0>} : tensor<6x5xf32>
  ad.accum_matmul %c, %wt, %xt {transpose_b} : !ad.cell<tensor<4x5xf32>>, tensor<4x6xf32>, tensor<5x6xf32>
  ad.accum_slice %c, %g {axis = 1 : i64, offset = 3 : i64} : !ad.cell<tensor<4x5xf32>>, tensor<4x2xf32>
  %r = ad.load %c : !ad.cell<tensor<4x5xf32>>
  func.return %r : tensor<4x5xf32>
}
"""


def test_accumulation_ops_against_numpy_and_the_interpreter():
    module = parse_module(ACCUMULATED)
    source = emit_module(module, "f").source
    assert "lanterna::gemm(true, false, 4, 5, 6, w, 4, x, 5, c, 5, 1);" in source, source
    assert "lanterna::gemm(false, true, 4, 5, 6, wt, 6, xt, 6, c, 5, 1);" in source, source
    w = RNG.standard_normal((6, 4)).astype(np.float32)
    x = RNG.standard_normal((6, 5)).astype(np.float32)
    g = RNG.standard_normal((4, 2)).astype(np.float32)
    (got,) = get_backend("cpu").compile(module, "f")(w, x, g)
    (want,) = Interpreter(module).call("f", w, x, g)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    by_hand = 2 * w.T.astype(np.float64) @ x
    by_hand[:, 3:5] += g
    np.testing.assert_allclose(got, by_hand, rtol=1e-5, atol=1e-5)


def test_a_deferred_product_is_logged_and_flushed_before_the_load():
    module = parse_module(ACCUMULATED)
    run_pipeline(module, "defer-products{min_cell=0 log_factor=0}")
    source = emit_module(module, "f").source
    assert source.count("lanterna::defer_product(c, ") == 2, source
    assert source.index("lanterna::flush_products(c);") < source.index("ad.load")
    assert "lanterna::drop_products(c);" in source
    args = [RNG.standard_normal(s).astype(np.float32) for s in [(6, 4), (6, 5), (4, 2)]]
    (got,) = get_backend("cpu").compile(module, "f")(*args)
    (want,) = Interpreter(module).call("f", *args)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# --- the benchmark models' training steps ---------------------------------------------------

MODELS_DIR = Path(__file__).resolve().parents[3] / "benchmarks" / "models"
PACKAGE = "lanterna_benchmark_models"

# The BLAS calls each paper-size training step made when the emitter made these
# decisions itself, by dimensions: the passes must keep every one of them.
STEP_CALLS = {
    "rnn": [
        "gemm(true, false, 50, 47, 1,",  # W_hy's gradient, added into its cell
        "gemm(true, false, 50, 50, 1,",
        "gemm(false, true, 1, 50, 47,",  # W_hy^T read through the flag
        "gemm(false, true, 1, 50, 50,",
    ],
    "lstm": [
        "gemm(true, false, 50, 47, 1,",
        "gemm(true, false, 50, 200, 1,",
        "gemm(true, false, 47, 200, 1,",
        "gemm(false, true, 1, 50, 47,",
        "gemm(false, true, 1, 50, 200,",
    ],
    "treelstm": [
        "defer_product(p_leaf_w_bar, false, false, 300, 450, 1,",
        "defer_product(p_node_w_bar, false, false, 300, 750, 1,",
        "flush_products(",
        "drop_products(",
    ],
    "cnn": [
        "gemm(true, false, 50, 10, 100,",
        "gemm(true, false, 320, 50, 100,",
        "gemm(false, true, 100, 50, 10,",
        "gemm(false, true, 100, 320, 50,",
    ],
}


def _load_model(name: str) -> ModuleType:
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, MODELS_DIR / "__init__.py", submodule_search_locations=[str(MODELS_DIR)]
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{PACKAGE}.{name}")


@pytest.mark.parametrize("name", list(STEP_CALLS))
def test_training_steps_keep_their_blas_calls(name):
    model = _load_model(name)
    config = model.Config()
    rng = np.random.default_rng(0)
    state = model.init(rng, config)
    batch = next(iter(model.batches(rng, config)))
    step = model.make_step(config, "cpu").__wrapped__
    source = _source(step, (state, batch))
    for call in STEP_CALLS[name]:
        assert f"lanterna::{call}" in source, call
    assert "lanterna::defer_product(" in source if name == "treelstm" else "defer" not in source
