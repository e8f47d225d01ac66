"""`accumulate-products`: a matrix product used only by an `ad.accum` becomes one
`ad.accum_matmul` where the product was, when nothing in between touches the
cell; checked on textual IR and on the interpreter."""

from __future__ import annotations

import numpy as np
import pytest

from lanterna.ir import parse_module, print_ir
from lanterna.ir.interpreter import Interpreter
from lanterna.passes import run_pipeline

RNG = np.random.default_rng(1)
CELL = "!ad.cell<tensor<3x4xf64>>"


def rewritten(src: str, pipeline: str = "accumulate-products"):
    before = parse_module(src)
    after = run_pipeline(before.clone(), pipeline)
    after.verify()
    return before, after


def same_results(before, after, *args) -> None:
    want = Interpreter(before).call("f", *args)
    got = Interpreter(after).call("f", *args)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def names(module) -> list[str]:
    return [o.name for o in module.walk()]


def args():
    return RNG.standard_normal((5, 3)), RNG.standard_normal((5, 4)), RNG.standard_normal((3, 4))


LATER_ACCUM = f"""
func.func @f(%x: tensor<5x3xf64>, %g: tensor<5x4xf64>, %w: tensor<3x4xf64>) -> tensor<3x4xf64> {{
  %c = ad.cell_from %w : tensor<3x4xf64>
  %p = ln.matmul %x, %g {{transpose_a}} : tensor<5x3xf64>, tensor<5x4xf64>
  %e = ln.exp %w : tensor<3x4xf64>
  ad.accum %c, %p : {CELL}
  ad.accum %c, %e : {CELL}
  %r = ad.load %c : {CELL}
  func.return %r : tensor<3x4xf64>
}}
"""


def test_the_product_is_added_into_the_cell_where_it_was_computed():
    before, after = rewritten(LATER_ACCUM)
    text = print_ir(after)
    assert "ln.matmul" not in text
    assert (
        f"ad.accum_matmul %c, %x, %g {{transpose_a}} : {CELL}, tensor<5x3xf64>, tensor<5x4xf64>\n"
        "    %e = ln.exp %w"
    ) in text, text
    assert names(after).count("ad.accum") == 1  # the exp's
    same_results(before, after, *args())


def test_the_transposes_of_an_adjoint_become_flags_then_one_accum_matmul():
    """What reverse mode makes of a weight's gradient, through both passes."""
    src = """
func.func @f(%x: tensor<5x3xf64>, %w: tensor<3x4xf64>) -> tensor<f64> {
  %y = ln.matmul %x, %w : tensor<5x3xf64>, tensor<3x4xf64>
  %t = ln.tanh %y : tensor<5x4xf64>
  %l = ln.sum %t {axes = array<i64: 0, 1>} : tensor<5x4xf64>
  func.return %l : tensor<f64>
}
"""
    module = parse_module(src)
    run_pipeline(module, "reverse-ad{func=f argnums=0,1},lower-continuations,cse,dce")
    before = module.clone()
    run_pipeline(module, "absorb-transposes,accumulate-products")
    text = print_ir(module)
    assert "ln.transpose" not in text and "ln.matmul %" in text  # the forward product
    assert text.count("ad.accum_matmul") == 2, text
    assert "{transpose_a}" in text and "{transpose_b}" in text, text
    x, w = RNG.standard_normal((5, 3)), RNG.standard_normal((3, 4))
    want = Interpreter(before).call("f_grad", x, w)
    got = Interpreter(module).call("f_grad", x, w)
    for a, b in zip(want, got, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-12)


NEGATIVE = {
    "a second use of the product": f"""
func.func @f(%x: tensor<5x3xf64>, %g: tensor<5x4xf64>, %w: tensor<3x4xf64>) -> (tensor<3x4xf64>, tensor<3x4xf64>) {{
  %c = ad.cell_from %w : tensor<3x4xf64>
  %p = ln.matmul %x, %g {{transpose_a}} : tensor<5x3xf64>, tensor<5x4xf64>
  ad.accum %c, %p : {CELL}
  %r = ad.load %c : {CELL}
  func.return %r, %p : tensor<3x4xf64>, tensor<3x4xf64>
}}
""",
    "the cell loaded in between": f"""
func.func @f(%x: tensor<5x3xf64>, %g: tensor<5x4xf64>, %w: tensor<3x4xf64>) -> (tensor<3x4xf64>, tensor<3x4xf64>) {{
  %c = ad.cell_from %w : tensor<3x4xf64>
  %p = ln.matmul %x, %g {{transpose_a}} : tensor<5x3xf64>, tensor<5x4xf64>
  %early = ad.load %c : {CELL}
  ad.accum %c, %p : {CELL}
  %r = ad.load %c : {CELL}
  func.return %r, %early : tensor<3x4xf64>, tensor<3x4xf64>
}}
""",
    "the cell used inside a region in between": f"""
func.func @f(%x: tensor<5x3xf64>, %g: tensor<5x4xf64>, %w: tensor<3x4xf64>) -> (tensor<3x4xf64>, tensor<3x4xf64>) {{
  %c = ad.cell_from %w : tensor<3x4xf64>
  %p = ln.matmul %x, %g {{transpose_a}} : tensor<5x3xf64>, tensor<5x4xf64>
  %true = arith.constant true
  %early = scf.if %true -> (tensor<3x4xf64>) {{
    %v = ad.load %c : {CELL}
    scf.yield %v : tensor<3x4xf64>
  }} else {{
    scf.yield %w : tensor<3x4xf64>
  }}
  ad.accum %c, %p : {CELL}
  %r = ad.load %c : {CELL}
  func.return %r, %early : tensor<3x4xf64>, tensor<3x4xf64>
}}
""",
    "the cell made after the product": f"""
func.func @f(%x: tensor<5x3xf64>, %g: tensor<5x4xf64>, %w: tensor<3x4xf64>) -> tensor<3x4xf64> {{
  %p = ln.matmul %x, %g {{transpose_a}} : tensor<5x3xf64>, tensor<5x4xf64>
  %c = ad.cell_from %w : tensor<3x4xf64>
  ad.accum %c, %p : {CELL}
  %r = ad.load %c : {CELL}
  func.return %r : tensor<3x4xf64>
}}
""",
    "the accum in another block": f"""
func.func @f(%x: tensor<5x3xf64>, %g: tensor<5x4xf64>, %w: tensor<3x4xf64>) -> tensor<3x4xf64> {{
  %c = ad.cell_from %w : tensor<3x4xf64>
  %p = ln.matmul %x, %g {{transpose_a}} : tensor<5x3xf64>, tensor<5x4xf64>
  %true = arith.constant true
  scf.if %true {{
    ad.accum %c, %p : {CELL}
    scf.yield
  }}
  %r = ad.load %c : {CELL}
  func.return %r : tensor<3x4xf64>
}}
""",
}


@pytest.mark.parametrize("case", NEGATIVE, ids=list(NEGATIVE))
def test_no_rewrite_when_the_move_could_be_seen(case):
    before, after = rewritten(NEGATIVE[case])
    assert print_ir(after) == print_ir(before)
    assert "ad.accum_matmul" not in print_ir(after)
    same_results(before, after, *args())


def test_a_cell_from_an_enclosing_block_is_accumulated_into_from_a_loop():
    src = f"""
func.func @f(%x: tensor<5x3xf64>, %g: tensor<5x4xf64>, %w: tensor<3x4xf64>) -> tensor<3x4xf64> {{
  %c = ad.cell_from %w : tensor<3x4xf64>
  %lb = arith.constant 0 : index
  %ub = arith.constant 3 : index
  %st = arith.constant 1 : index
  scf.for %i = %lb to %ub step %st {{
    %p = ln.matmul %x, %g {{transpose_a}} : tensor<5x3xf64>, tensor<5x4xf64>
    ad.accum %c, %p : {CELL}
    scf.yield
  }}
  %r = ad.load %c : {CELL}
  func.return %r : tensor<3x4xf64>
}}
"""
    before, after = rewritten(src)
    assert "ad.accum_matmul %c, %x, %g {transpose_a}" in print_ir(after)
    x, g, w = args()
    (got,) = Interpreter(after).call("f", x, g, w)
    np.testing.assert_allclose(got, w + 3 * x.T @ g)
    same_results(before, after, x, g, w)


def test_matrix_vector_products_are_left_alone():
    src = """
func.func @f(%m: tensor<3x4xf64>, %v: tensor<4xf64>) -> tensor<3xf64> {
  %c = ad.zero_cell : tensor<3xf64>
  %p = ln.matmul %m, %v : tensor<3x4xf64>, tensor<4xf64>
  ad.accum %c, %p : !ad.cell<tensor<3xf64>>
  %r = ad.load %c : !ad.cell<tensor<3xf64>>
  func.return %r : tensor<3xf64>
}
"""
    before, after = rewritten(src)
    assert print_ir(after) == print_ir(before)
