"""Buffer reuse in the cpu arena: `plan-buffers` releases a buffer after its last
use, the generated code hands it back and the next request of its size takes it;
the arena reports what a call asked of it. Results are checked against the
interpreter; the byte counts are exact consequences of the reuse rule, not timings."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import lanterna as ln
from lanterna.backends import get_backend
from lanterna.backends.cpu_cpp.backend import CpuBackend
from lanterna.backends.cpu_cpp.emitter import emit_module
from lanterna.ir import parse_module
from lanterna.ir.interpreter import Interpreter
from lanterna.passes import run_pipeline

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")

LOOP = """
func.func @f(%x: tensor<1000xf32>) -> tensor<1000xf32> {
  %lb = arith.constant 0 : index
  %ub = arith.constant TRIPS : index
  %st = arith.constant 1 : index
  %r = scf.for %i = %lb to %ub step %st iter_args(%h = %x) -> (tensor<1000xf32>) {
    %a = ln.tanh %h : tensor<1000xf32>
    %b = ln.mul %a, %x : tensor<1000xf32>, tensor<1000xf32>
    %c = ln.exp %b : tensor<1000xf32>
    scf.yield %c : tensor<1000xf32>
  }
  func.return %r : tensor<1000xf32>
}
"""
# The cpu pipeline with buffer reuse off (its last pass, `plan-buffers`, told so).
NO_REUSE = CpuBackend.default_pipeline.replace("plan-buffers", "plan-buffers{reuse=false}")
BUFFER = 4032  # 1000 float32, rounded up to the arena's 64-byte alignment


def planned(text: str, pipeline: str = "plan-buffers"):
    module = parse_module(text)
    run_pipeline(module, pipeline)
    return module


def _run(trips: int, x: np.ndarray, reuse: bool = True) -> tuple[np.ndarray, dict[str, int]]:
    module = planned(
        LOOP.replace("TRIPS", str(trips)), f"plan-buffers{{reuse={str(reuse).lower()}}}"
    )
    compiled = get_backend("cpu").compile(module, "f")
    (out,) = compiled(x)
    (want,) = Interpreter(module).call("f", x)
    np.testing.assert_allclose(out, want, rtol=1e-6)
    return out, compiled.memory_stats()


def test_intermediates_are_released_after_their_last_use():
    source = emit_module(planned(LOOP.replace("TRIPS", "3")), "f").source
    body = source[source.index("for (int64_t") :]
    # a dies at b, b at c; c is handed to the next iteration and stays.
    assert body.index("lanterna::release(a, 4000);") > body.index("lanterna::tanh")
    assert "lanterna::release(b, 4000);" in body
    assert "release(c," not in body


def test_each_iteration_reuses_the_previous_ones_buffers():
    x = np.linspace(-1, 1, 1000, dtype=np.float32)
    _, few = _run(10, x)
    _, many = _run(100, x)
    # Per iteration only the carried value is new: a and b take back the
    # buffers released in the iteration before.
    assert many["fresh"] - few["fresh"] == 90 * BUFFER
    assert many["requested"] - few["requested"] == 90 * 3 * BUFFER
    assert many["reused"] - few["reused"] == 90 * 2 * BUFFER
    assert many["held"] >= many["fresh"]
    # Reuse off is a pipeline option: no releases, every request is fresh.
    _, plain = _run(100, x, reuse=False)
    assert plain["reused"] == 0
    assert plain["fresh"] == plain["requested"] == many["requested"]


def test_jit_reports_the_memory_of_its_last_call():
    @ln.jit
    def f(x, w):
        return ln.grad(lambda w, x: ln.sum(ln.tanh(x @ w) ** 2))(w, x)

    x, w = np.ones((4, 8), np.float32), np.full((8, 8), 0.1, np.float32)
    assert f.memory_stats() == {}
    f(x, w)
    stats = f.memory_stats()
    assert set(stats) == {"requested", "reused", "fresh", "held"}
    assert 0 < stats["fresh"] <= stats["requested"] <= stats["held"] + stats["requested"]
    assert ln.jit(lambda x: x + 1, backend="interp").memory_stats() == {}


PIECES = """
func.func @f(%g: tensor<2x3xf32>, %h: tensor<2x2xf32>) -> tensor<2x5xf32> {
  %z3 = ln.zeros : tensor<2x3xf32>
  %z2 = ln.zeros : tensor<2x2xf32>
  %a = ln.concatenate %g, %z2 {axis = 1 : i64} : tensor<2x3xf32>, tensor<2x2xf32>
  %b = ln.concatenate %z3, %h {axis = 1 : i64} : tensor<2x3xf32>, tensor<2x2xf32>
  %c = ad.zero_cell : tensor<2x5xf32>
  ad.accum %c, %a : !ad.cell<tensor<2x5xf32>>
  ad.accum %c, %b : !ad.cell<tensor<2x5xf32>>
  ad.accum %c, %a : !ad.cell<tensor<2x5xf32>>
  %r = ad.load %c : !ad.cell<tensor<2x5xf32>>
  func.return %r : tensor<2x5xf32>
}
"""


def test_slice_adjoints_add_into_their_ranges_without_building_the_concatenation():
    """What a slice's adjoint makes -- a concatenation with zeros, accumulated --
    adds each nonzero piece into its range of the cell. (%a is accumulated twice,
    so it is built; %b is not.)"""
    module = planned(PIECES, "accumulate-pieces,plan-buffers")
    source = emit_module(module, "f").source
    assert source.count("lanterna::copy_strided") == 2, source  # %a's two pieces only
    g = np.arange(6, dtype=np.float32).reshape(2, 3)
    h = -np.arange(4, dtype=np.float32).reshape(2, 2)
    (got,) = get_backend("cpu").compile(module, "f")(g, h)
    (want,) = Interpreter(module).call("f", g, h)
    np.testing.assert_array_equal(got, want)


# The entry returns %n (made in its body) and %m; %w is read again after %n is made.
DESTINATIONS = """
func.func @f(%w: tensor<1000xf32>, %g: tensor<1000xf32>) -> (tensor<1000xf32>, tensor<1000xf32>) {
  %n = ln.sub %w, %g : tensor<1000xf32>, tensor<1000xf32>
  %m = ln.mul %w, %n : tensor<1000xf32>, tensor<1000xf32>
  func.return %n, %m : tensor<1000xf32>, tensor<1000xf32>
}
"""


def test_the_entrys_results_are_written_straight_into_the_outputs():
    module = planned(DESTINATIONS)
    source = emit_module(module, "f").source
    assert "lanterna::output<float>(0, 1000)" in source
    assert "lanterna::output<float>(1, 1000)" in source
    w = np.linspace(-1, 1, 1000, dtype=np.float32)
    g = np.full(1000, 0.5, np.float32)
    compiled = get_backend("cpu").compile(module, "f")
    n, m = compiled(w, g)
    np.testing.assert_array_equal(n, w - g)
    np.testing.assert_array_equal(m, w * (w - g))
    # Neither result took a buffer of the arena.
    assert compiled.memory_stats()["requested"] == 0


def test_a_donated_output_is_not_written_while_the_call_still_reads_its_input():
    # %n's output is %w's buffer, and %m reads %w after %n is made: %n must wait
    # in the arena until the end of the call.
    module = planned(DESTINATIONS)
    compiled = get_backend("cpu").compile(module, "f", donate=(0,))
    w = np.linspace(-1, 1, 1000, dtype=np.float32)
    w0, g = w.copy(), np.full(1000, 0.5, np.float32)
    n, m = compiled(w, g)
    assert n is w
    np.testing.assert_array_equal(n, w0 - g)
    np.testing.assert_array_equal(m, w0 * (w0 - g))
    assert compiled.memory_stats()["requested"] == BUFFER


def test_an_entry_that_calls_itself_keeps_its_results_in_the_arena():
    # Each activation of @f makes its own %y: were they written into output 0,
    # the inner ones would overwrite the outer one.
    module = planned(
        """
        func.func @f(%x: tensor<4xf32>, %t: tensor<i64>) -> (tensor<4xf32>, tensor<4xf32>) {
          %y = ln.tanh %x : tensor<4xf32>
          %zero = ln.constant {value = dense<0> : tensor<i64>} : tensor<i64>
          %stop = ln.le %t, %zero : tensor<i64>, tensor<i64>
          %c = ln.item %stop : tensor<i1>
          %r = scf.if %c -> (tensor<4xf32>) {
            scf.yield %y : tensor<4xf32>
          } else {
            %one = ln.constant {value = dense<1> : tensor<i64>} : tensor<i64>
            %t1 = ln.sub %t, %one : tensor<i64>, tensor<i64>
            %first, %inner = func.call @f(%y, %t1) : (tensor<4xf32>, tensor<i64>) -> (tensor<4xf32>, tensor<4xf32>)
            scf.yield %inner : tensor<4xf32>
          }
          func.return %y, %r : tensor<4xf32>, tensor<4xf32>
        }
        """
    )
    x = np.linspace(-2, 2, 4, dtype=np.float32)
    y, r = get_backend("cpu").compile(module, "f")(x, np.int64(3))
    np.testing.assert_allclose(y, np.tanh(x), rtol=1e-6)
    np.testing.assert_allclose(r, np.tanh(np.tanh(np.tanh(np.tanh(x)))), rtol=1e-6)
    assert "lanterna::output<" not in emit_module(module, "f").source


def test_without_plan_buffers_nothing_is_released_or_written_in_place():
    """The emitter decides nothing about buffers: IR that did not go through
    `plan-buffers` is printed with every buffer kept and every result copied out."""
    source = emit_module(parse_module(LOOP.replace("TRIPS", "3")), "f").source
    assert "lanterna::release(" not in source
    source = emit_module(parse_module(DESTINATIONS), "f").source
    assert "lanterna::output<" not in source


# Reductions and losses whose result the entry returns; each is written into output 0.
RETURNED = {
    "sum": "ln.sum %x {axes = array<i64: 0, 1>} : tensor<4x5xf32>",
    "mean": "ln.mean %x {axes = array<i64: 0>} : tensor<4x5xf32>",
    "max": "ln.max %x {axes = array<i64: 1>} : tensor<4x5xf32>",
    "cross_entropy": 'ln.cross_entropy %x, %t {reduction = "mean"} : '
    "tensor<4x5xf32>, tensor<4xi64>",
    "nll_loss": 'ln.nll_loss %x, %t {reduction = "sum"} : tensor<4x5xf32>, tensor<4xi64>',
}
RESULT_TYPES = {"sum": "f32", "mean": "5xf32", "max": "4xf32"}


@pytest.mark.parametrize("name", sorted(RETURNED))
def test_a_returned_reduction_or_loss_is_written_into_the_output(name):
    result = f"tensor<{RESULT_TYPES.get(name, 'f32')}>"
    module = planned(
        f"""
        func.func @f(%x: tensor<4x5xf32>, %t: tensor<4xi64>) -> {result} {{
          %r = {RETURNED[name]}
          func.return %r : {result}
        }}
        """,
        CpuBackend.default_pipeline,
    )
    source = emit_module(module, "f").source
    assert "float* r = lanterna::output<float>(0, " in source, source
    x = np.linspace(-2, 2, 20, dtype=np.float32).reshape(4, 5)
    t = np.array([0, 4, 2, 1])
    compiled = get_backend("cpu").compile(module, "f")
    (got,) = compiled(x, t)
    (want,) = Interpreter(module).call("f", x, t)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # Only what a loss needs inside (cross-entropy's log-probabilities) is allocated.
    assert compiled.memory_stats()["requested"] == (128 if name == "cross_entropy" else 0)


def test_jit_writes_a_returned_sum_into_its_output():
    f = ln.jit(lambda x: ln.sum(x), backend="cpu")
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert float(f(x)) == 66.0
    assert f.memory_stats()["requested"] == 0
    # Reuse off keeps the output slots: they are not a matter of reuse.
    g = ln.jit(lambda x: ln.sum(x), backend="cpu", pipeline=NO_REUSE)
    assert float(g(x)) == 66.0
    assert g.memory_stats()["requested"] == 0


def test_reuse_off_is_a_pipeline_option_of_jit():
    def step(x, w):
        return ln.grad(lambda w, x: ln.sum(ln.tanh(x @ w) ** 2))(w, x)

    x, w = np.ones((4, 8), np.float32), np.full((8, 8), 0.1, np.float32)
    on = ln.jit(step, backend="cpu")
    off = ln.jit(step, backend="cpu", pipeline=NO_REUSE)
    np.testing.assert_allclose(on(x, w), off(x, w), rtol=1e-6)
    assert on.memory_stats()["reused"] > 0
    assert off.memory_stats()["reused"] == 0
    assert off.memory_stats()["fresh"] > on.memory_stats()["fresh"]
