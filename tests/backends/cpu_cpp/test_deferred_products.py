"""Deferred products: rank-1 (or small-rank) products added into a large adjoint
cell are logged and added as one product when the cell is read. Results are
checked against the interpreter and against numpy written out by hand; the
generated code is checked for where the log is kept, added in and dropped."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import lanterna as ln
from lanterna.backends import get_backend
from lanterna.backends.cpu_cpp.emitter import emit_module
from lanterna.ir import parse_module
from lanterna.ir.interpreter import Interpreter
from lanterna.passes import run_pipeline

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")

K, N = 128, 160  # 20480 elements: a cell big enough to defer into


def _rnn_grad(steps: int, k: int = K, n: int = N):
    """d/dW of sum(h_T) for h_{t+1} = tanh(h_t[:k] @ W + x_t): one rank-1 product
    into W's cell per step."""

    @ln.function
    def run(t, h, w, xs):
        if t < xs.shape[0]:
            return run(t + 1, ln.tanh(h[:k] @ w + xs[t]), w, xs)
        return h

    def loss(w, h0, xs):
        return ln.sum(run(ln.asarray(np.int64(0)), h0, w, xs))

    def grad(w, h0, xs):
        return ln.grad(loss)(w, h0, xs)

    rng = np.random.default_rng(steps)
    w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    h0 = rng.standard_normal(n).astype(np.float32)
    xs = rng.standard_normal((steps, n)).astype(np.float32)
    return grad, (w, h0, xs)


def _source(fn, args) -> str:
    """The C++ the cpu backend makes of `fn` at `args`, after its default pipeline."""
    backend = get_backend("cpu")
    lowered = ln.jit(fn).lower(*args)
    module = run_pipeline(lowered.module.clone(), backend.default_pipeline)
    return emit_module(module, lowered.fn_name).source


def _by_hand(w: np.ndarray, h0: np.ndarray, xs: np.ndarray) -> np.ndarray:
    k = w.shape[0]
    w, hs = w.astype(np.float64), [h0.astype(np.float64)]
    for x in xs:
        hs.append(np.tanh(hs[-1][:k] @ w + x))
    g, dw = np.ones_like(hs[-1]), np.zeros_like(w)
    for t in range(len(xs), 0, -1):
        gz = g * (1 - hs[t] ** 2)
        dw += np.outer(hs[t - 1][:k], gz)
        g = np.zeros_like(g)
        g[:k] = w @ gz
    return dw


@pytest.mark.parametrize("steps", [0, 1, 5, 100])
def test_a_weight_used_at_every_step_gets_its_gradient(steps):
    # 100 steps log more than the cell holds, so the log is added in on the way too.
    grad, args = _rnn_grad(steps)
    got = ln.jit(grad, backend="cpu")(*args)
    np.testing.assert_allclose(got, _by_hand(*args), rtol=2e-4, atol=2e-4)
    source = _source(grad, args)
    assert "lanterna::defer_product(" in source
    # Added in before the gradient is read, and dropped from a new cell's address.
    assert "lanterna::flush_products(" in source
    assert "lanterna::drop_products(" in source


def test_a_small_cell_is_updated_in_place():
    grad, args = _rnn_grad(5, k=8, n=8)
    got = ln.jit(grad, backend="cpu")(*args)
    np.testing.assert_allclose(got, _by_hand(*args), rtol=2e-4, atol=2e-5)
    source = _source(grad, args)
    assert "defer_product" not in source and "flush_products" not in source


# Two cells of one type: the first is accumulated into and never read, so its
# buffer is free again when the second is made and the second may get its
# address. What the first logged must not reach the second. `defer-products`
# decides; the emitter prints its `ad.drop_products` and `ad.flush_products`.
DEAD_CELL = """
func.func @f(%w: tensor<128x160xf32>, %a: tensor<128xf32>, %b: tensor<160xf32>) -> tensor<128x160xf32> {
  %dead = ad.zero_like %w : tensor<128x160xf32>
  %a2 = ln.reshape %a : tensor<128xf32> -> tensor<128x1xf32>
  %b2 = ln.reshape %b : tensor<160xf32> -> tensor<1x160xf32>
  %p = ln.matmul %a2, %b2 : tensor<128x1xf32>, tensor<1x160xf32>
  ad.accum %dead, %p : !ad.cell<tensor<128x160xf32>>
  %live = ad.zero_like %w : tensor<128x160xf32>
  %q = ln.matmul %a2, %b2 : tensor<128x1xf32>, tensor<1x160xf32>
  ad.accum %live, %q : !ad.cell<tensor<128x160xf32>>
  ad.accum %live, %w : !ad.cell<tensor<128x160xf32>>
  %r = ad.load %live : !ad.cell<tensor<128x160xf32>>
  func.return %r : tensor<128x160xf32>
}
"""


def test_a_dead_cells_log_does_not_reach_a_new_cell_at_its_address():
    module = parse_module(DEAD_CELL)
    run_pipeline(module, "accumulate-products,defer-products")
    text = str(module)
    assert text.count("ad.drop_products") == 2 and text.count("ad.flush_products") == 1
    source = emit_module(module, "f").source
    assert source.count("lanterna::defer_product(") == 2
    assert source.count("lanterna::drop_products(") == 2
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(s).astype(np.float32) for s in [(128, 160), (128,), (160,)]]
    (got,) = get_backend("cpu").compile(module, "f")(*args)
    (want,) = Interpreter(module).call("f", *args)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got, np.outer(args[1], args[2]) + args[0], rtol=1e-5, atol=1e-6)
