"""`defer-products`: small-rank products into big cells are logged, flushed
before every load and dropped at every new cell of those cells' types; checked
on textual IR and on the interpreter, which keeps a deferred product pending
until its flush and rejects a load without one."""

from __future__ import annotations

import numpy as np
import pytest

from lanterna.ir import parse_module, print_ir
from lanterna.ir.interpreter import Interpreter, InterpreterError
from lanterna.passes import run_pipeline

RNG = np.random.default_rng(3)
BIG = "tensor<128x160xf32>"
CELL = f"!ad.cell<{BIG}>"
SMALL_CELL = "!ad.cell<tensor<8x8xf32>>"

# A big weight's cell gets two rank-1 products, a small one gets one; a second,
# dead cell of the big type is made first.
PROGRAM = f"""
func.func @f(%w: {BIG}, %a: tensor<1x128xf32>, %b: tensor<1x160xf32>, %s: tensor<8x8xf32>, %v: tensor<1x8xf32>) -> ({BIG}, tensor<8x8xf32>) {{
  %dead = ad.zero_like %w : {BIG}
  ad.accum_matmul %dead, %a, %b {{transpose_a}} : {CELL}, tensor<1x128xf32>, tensor<1x160xf32>
  %c = ad.cell_from %w : {BIG}
  ad.accum_matmul %c, %a, %b {{transpose_a}} : {CELL}, tensor<1x128xf32>, tensor<1x160xf32>
  ad.accum_matmul %c, %a, %b {{transpose_a}} : {CELL}, tensor<1x128xf32>, tensor<1x160xf32>
  %d = ad.zero_cell : tensor<8x8xf32>
  ad.accum_matmul %d, %v, %v {{transpose_a}} : {SMALL_CELL}, tensor<1x8xf32>, tensor<1x8xf32>
  %r = ad.load %c : {CELL}
  %q = ad.load %d : {SMALL_CELL}
  func.return %r, %q : {BIG}, tensor<8x8xf32>
}}
"""


def args():
    shapes = [(128, 160), (1, 128), (1, 160), (8, 8), (1, 8)]
    return [RNG.standard_normal(s).astype(np.float32) for s in shapes]


def deferred(src: str, pipeline: str = "defer-products"):
    before = parse_module(src)
    after = run_pipeline(before.clone(), pipeline)
    after.verify()
    return before, after


def test_big_cells_defer_flush_before_loads_and_drop_at_new_cells():
    before, after = deferred(PROGRAM)
    text = print_ir(after)
    assert text.count("{deferred, transpose_a}") + text.count("{transpose_a, deferred}") == 3
    assert f"ad.accum_matmul %d, %v, %v {{transpose_a}} : {SMALL_CELL}" in text  # too small
    assert f"ad.flush_products %c : {CELL}\n    %r = ad.load %c : {CELL}" in text, text
    assert f"%dead = ad.zero_like %w : {BIG}\n    ad.drop_products %dead : {CELL}" in text
    assert f"%c = ad.cell_from %w : {BIG}\n    ad.drop_products %c : {CELL}" in text
    assert "ad.flush_products %d :" not in text and "ad.drop_products %d :" not in text
    x = args()
    want = Interpreter(before).call("f", *x)
    got = Interpreter(after).call("f", *x)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got[0], x[0] + 2 * np.outer(x[1], x[2]), rtol=1e-5, atol=1e-5)


def test_the_interpreter_rejects_a_load_that_misses_its_flush():
    _, after = deferred(PROGRAM)
    flush = next(o for o in after.walk() if o.name == "ad.flush_products")
    flush.detach()
    flush.erase()
    with pytest.raises(InterpreterError, match=r"'ad.load' of a cell with 2 deferred product"):
        Interpreter(after).call("f", *args())


def test_a_drop_discards_what_is_pending():
    src = f"""
func.func @f(%w: {BIG}, %a: tensor<1x128xf32>, %b: tensor<1x160xf32>) -> {BIG} {{
  %c = ad.cell_from %w : {BIG}
  ad.accum_matmul %c, %a, %b {{deferred, transpose_a}} : {CELL}, tensor<1x128xf32>, tensor<1x160xf32>
  ad.drop_products %c : {CELL}
  %r = ad.load %c : {CELL}
  func.return %r : {BIG}
}}
"""
    x = args()
    (got,) = Interpreter(parse_module(src)).call("f", *x[:3])
    np.testing.assert_array_equal(got, x[0])


def test_options_move_the_threshold():
    _, after = deferred(PROGRAM, "defer-products{min_cell=64 log_factor=2}")
    assert print_ir(after).count("deferred") == 4  # the 8x8 cell too
    _, after = deferred(PROGRAM, "defer-products{log_factor=1000}")
    assert "deferred" not in print_ir(after) and "ad.flush_products" not in print_ir(after)


def test_running_it_twice_adds_nothing():
    _, once = deferred(PROGRAM)
    assert print_ir(run_pipeline(once.clone(), "defer-products")) == print_ir(once)


def test_a_weight_used_in_a_loop_is_deferred_and_flushed_after_it():
    """A recurrent weight's gradient, through the cpu pipeline's passes: its
    per-step products are logged and the load after the loop flushes them."""
    src = """
func.func @f(%w: tensor<128x160xf32>, %h0: tensor<1x128xf32>, %xs: tensor<3x1x160xf32>) -> tensor<f32> {
  %lb = arith.constant 0 : index
  %ub = arith.constant 3 : index
  %st = arith.constant 1 : index
  %h = scf.for %i = %lb to %ub step %st iter_args(%hi = %h0) -> (tensor<1x128xf32>) {
    %z = ln.matmul %hi, %w : tensor<1x128xf32>, tensor<128x160xf32>
    %zs = ln.slice %z {start = array<i64: 0, 0>, stop = array<i64: 1, 128>, step = array<i64: 1, 1>} : tensor<1x160xf32>
    %t = ln.tanh %zs : tensor<1x128xf32>
    scf.yield %t : tensor<1x128xf32>
  }
  %l = ln.sum %h {axes = array<i64: 0, 1>} : tensor<1x128xf32>
  func.return %l : tensor<f32>
}
"""
    module = parse_module(src)
    run_pipeline(module, "reverse-ad{func=f argnums=0}")
    before = module.clone()
    run_pipeline(
        module,
        "reverse-loops,lower-continuations,elide-zero-adjoints,canonicalize,cse,licm,dce,"
        "fuse-elementwise,absorb-transposes,accumulate-products,accumulate-pieces,defer-products",
    )
    text = print_ir(module)
    assert "deferred" in text and "ad.flush_products" in text, text
    w = (RNG.standard_normal((128, 160)) / 12).astype(np.float32)
    h0 = RNG.standard_normal((1, 128)).astype(np.float32)
    xs = RNG.standard_normal((3, 1, 160)).astype(np.float32)
    want = Interpreter(before).call("f_grad", w, h0, xs)
    got = Interpreter(module).call("f_grad", w, h0, xs)
    for a, b in zip(want, got, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
