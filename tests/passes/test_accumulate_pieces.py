"""`accumulate-pieces`: an accumulated concatenation with zero pieces (a slice's
adjoint) is added into the cell piece by piece and never built; checked on
textual IR and on the interpreter."""

from __future__ import annotations

import numpy as np
import pytest

from lanterna.ir import parse_module, print_ir
from lanterna.ir.interpreter import Interpreter
from lanterna.passes import run_pipeline

RNG = np.random.default_rng(2)
CELL = "!ad.cell<tensor<2x7xf32>>"


def rewritten(src: str):
    before = parse_module(src)
    after = run_pipeline(before.clone(), "accumulate-pieces")
    after.verify()
    return before, after


def same_results(before, after, *args) -> None:
    want = Interpreter(before).call("f", *args)
    got = Interpreter(after).call("f", *args)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(g, w)


def args():
    return (
        RNG.standard_normal((2, 2)).astype(np.float32),
        RNG.standard_normal((2, 3)).astype(np.float32),
        RNG.standard_normal((2, 7)).astype(np.float32),
    )


PIECES = f"""
func.func @f(%g: tensor<2x2xf32>, %h: tensor<2x3xf32>, %w: tensor<2x7xf32>) -> tensor<2x7xf32> {{
  %c = ad.cell_from %w : tensor<2x7xf32>
  %z = ln.zeros : tensor<2x1xf32>
  %f = ln.full {{value = 0.0 : f64}} : tensor<2x1xf32>
  %v = ln.concatenate %z, %g, %f, %h {{axis = 1 : i64}} : tensor<2x1xf32>, tensor<2x2xf32>, tensor<2x1xf32>, tensor<2x3xf32>
  ad.accum %c, %v : {CELL}
  %r = ad.load %c : {CELL}
  func.return %r : tensor<2x7xf32>
}}
"""


def test_nonzero_pieces_are_added_into_their_ranges():
    before, after = rewritten(PIECES)
    text = print_ir(after)
    assert "ln.concatenate" not in text and "ad.accum %" not in text
    assert "ln.zeros" not in text and "ln.full" not in text  # dead fills go too
    assert (
        f"ad.accum_slice %c, %g {{axis = 1 : i64, offset = 1 : i64}} : {CELL}, tensor<2x2xf32>\n"
        f"    ad.accum_slice %c, %h {{axis = 1 : i64, offset = 4 : i64}} : {CELL}, tensor<2x3xf32>"
    ) in text, text
    g, h, w = args()
    (got,) = Interpreter(after).call("f", g, h, w)
    want = w.copy()
    want[:, 1:3] += g
    want[:, 4:7] += h
    np.testing.assert_array_equal(got, want)
    same_results(before, after, g, h, w)


def test_a_slice_adjoint_from_reverse_mode_is_added_in_place():
    src = """
func.func @f(%x: tensor<4x3xf32>) -> tensor<f32> {
  %s = ln.slice %x {start = array<i64: 1, 0>, stop = array<i64: 3, 3>, step = array<i64: 1, 1>} : tensor<4x3xf32>
  %u = ln.slice %x {start = array<i64: 0, 0>, stop = array<i64: 1, 3>, step = array<i64: 1, 1>} : tensor<4x3xf32>
  %t = ln.tanh %s : tensor<2x3xf32>
  %e = ln.exp %u : tensor<1x3xf32>
  %l = ln.sum %t {axes = array<i64: 0, 1>} : tensor<2x3xf32>
  %m = ln.sum %e {axes = array<i64: 0, 1>} : tensor<1x3xf32>
  %r = ln.add %l, %m : tensor<f32>, tensor<f32>
  func.return %r : tensor<f32>
}
"""
    module = parse_module(src)
    run_pipeline(module, "reverse-ad{func=f argnums=0},lower-continuations,elide-zero-adjoints")
    before = module.clone()
    assert "ln.concatenate" in print_ir(before)
    run_pipeline(module, "accumulate-pieces")
    text = print_ir(module)
    # The first contribution made the cell (elide-zero-adjoints); the second is added.
    assert text.count("ln.concatenate") == 1 and "ad.accum_slice" in text, text
    x = RNG.standard_normal((4, 3)).astype(np.float32)
    want = Interpreter(before).call("f_grad", x)
    got = Interpreter(module).call("f_grad", x)
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(b, a)
    np.testing.assert_allclose(got[1][1:3], 1 - np.tanh(x[1:3]) ** 2, rtol=1e-6)
    np.testing.assert_allclose(got[1][0], np.exp(x[0]), rtol=1e-6)
    np.testing.assert_array_equal(got[1][3], 0)


NEGATIVE = {
    "the concatenation used twice": f"""
func.func @f(%g: tensor<2x2xf32>, %h: tensor<2x3xf32>, %w: tensor<2x7xf32>) -> (tensor<2x7xf32>, tensor<2x7xf32>) {{
  %c = ad.cell_from %w : tensor<2x7xf32>
  %z = ln.zeros : tensor<2x2xf32>
  %v = ln.concatenate %g, %z, %h {{axis = 1 : i64}} : tensor<2x2xf32>, tensor<2x2xf32>, tensor<2x3xf32>
  ad.accum %c, %v : {CELL}
  %r = ad.load %c : {CELL}
  func.return %r, %v : tensor<2x7xf32>, tensor<2x7xf32>
}}
""",
    "no zero piece": f"""
func.func @f(%g: tensor<2x2xf32>, %h: tensor<2x3xf32>, %w: tensor<2x7xf32>) -> tensor<2x7xf32> {{
  %c = ad.cell_from %w : tensor<2x7xf32>
  %o = ln.full {{value = 1.0 : f64}} : tensor<2x2xf32>
  %v = ln.concatenate %g, %o, %h {{axis = 1 : i64}} : tensor<2x2xf32>, tensor<2x2xf32>, tensor<2x3xf32>
  ad.accum %c, %v : {CELL}
  %r = ad.load %c : {CELL}
  func.return %r : tensor<2x7xf32>
}}
""",
}


@pytest.mark.parametrize("case", NEGATIVE, ids=list(NEGATIVE))
def test_no_rewrite(case):
    before, after = rewritten(NEGATIVE[case])
    assert print_ir(after) == print_ir(before)
    same_results(before, after, *args())


def test_an_integer_concatenation_is_left_alone():
    src = """
func.func @f(%g: tensor<2xi32>) -> tensor<5xi32> {
  %c = ad.zero_cell : tensor<5xi32>
  %z = ln.zeros : tensor<3xi32>
  %v = ln.concatenate %g, %z {axis = 0 : i64} : tensor<2xi32>, tensor<3xi32>
  ad.accum %c, %v : !ad.cell<tensor<5xi32>>
  %r = ad.load %c : !ad.cell<tensor<5xi32>>
  func.return %r : tensor<5xi32>
}
"""
    before, after = rewritten(src)
    assert print_ir(after) == print_ir(before)
    (got,) = Interpreter(after).call("f", np.array([3, 4], np.int32))
    np.testing.assert_array_equal(got, [3, 4, 0, 0, 0])


def test_a_zero_piece_someone_else_reads_stays():
    src = f"""
func.func @f(%g: tensor<2x2xf32>, %h: tensor<2x3xf32>, %w: tensor<2x7xf32>) -> (tensor<2x7xf32>, tensor<2x2xf32>) {{
  %c = ad.cell_from %w : tensor<2x7xf32>
  %z = ln.zeros : tensor<2x2xf32>
  %v = ln.concatenate %g, %z, %h {{axis = 1 : i64}} : tensor<2x2xf32>, tensor<2x2xf32>, tensor<2x3xf32>
  ad.accum %c, %v : {CELL}
  %r = ad.load %c : {CELL}
  func.return %r, %z : tensor<2x7xf32>, tensor<2x2xf32>
}}
"""
    before, after = rewritten(src)
    text = print_ir(after)
    assert "ln.zeros" in text and "ln.concatenate" not in text
    assert text.count("ad.accum_slice") == 2
    same_results(before, after, *args())
