"""`absorb-transposes`: matrix products read a transposed operand through their
`transpose_a`/`transpose_b` flags; checked on textual IR and on the interpreter."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.utils.exceptions import VerifyException

from lanterna.ir import parse_module, print_ir
from lanterna.ir.interpreter import Interpreter
from lanterna.passes import run_pipeline

RNG = np.random.default_rng(0)


def absorbed(src: str) -> tuple[object, object]:
    before = parse_module(src)
    after = run_pipeline(before.clone(), "absorb-transposes")
    after.verify()
    return before, after


def same_results(before, after, *args) -> None:
    want = Interpreter(before).call("f", *args)
    got = Interpreter(after).call("f", *args)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12)


def ops(module, name: str) -> list:
    return [o for o in module.walk() if o.name == name]


BOTH_SIDES = """
func.func @f(%w: tensor<3x2xf64>, %x: tensor<4x3xf64>) -> tensor<2x4xf64> {
  %wt = ln.transpose %w {perm = array<i64: 1, 0>} : tensor<3x2xf64>
  %xt = ln.transpose %x {perm = array<i64: 1, 0>} : tensor<4x3xf64>
  %y = ln.matmul %wt, %xt : tensor<2x3xf64>, tensor<3x4xf64>
  func.return %y : tensor<2x4xf64>
}
"""


def test_both_operands_read_transposed():
    before, after = absorbed(BOTH_SIDES)
    text = print_ir(after)
    assert "ln.transpose" not in text
    assert (
        "%y = ln.matmul %w, %x {transpose_a, transpose_b} : tensor<3x2xf64>, tensor<4x3xf64>"
        in text
    ), text
    same_results(before, after, RNG.standard_normal((3, 2)), RNG.standard_normal((4, 3)))


# One transpose read by two products, once as lhs and once as rhs of a product
# that already reads it transposed: the flags toggle.
TOGGLE = """
func.func @f(%w: tensor<3x2xf64>, %x: tensor<3x4xf64>) -> tensor<2x4xf64> {
  %t = ln.transpose %w {perm = array<i64: 1, 0>} : tensor<3x2xf64>
  %y = ln.matmul %t, %x : tensor<2x3xf64>, tensor<3x4xf64>
  %s = ln.matmul %t, %t {transpose_b} : tensor<2x3xf64>, tensor<2x3xf64>
  %z = ln.matmul %s, %y : tensor<2x2xf64>, tensor<2x4xf64>
  func.return %z : tensor<2x4xf64>
}
"""


def test_flags_toggle_and_every_product_of_one_transpose_reads_the_source():
    before, after = absorbed(TOGGLE)
    text = print_ir(after)
    assert "ln.transpose" not in text
    assert "%y = ln.matmul %w, %x {transpose_a}" in text, text
    # t @ t^T = w^T @ w: the rhs reads w as it is.
    assert "%s = ln.matmul %w, %w {transpose_a} :" in text, text
    same_results(before, after, RNG.standard_normal((3, 2)), RNG.standard_normal((3, 4)))


OTHER_USER = """
func.func @f(%w: tensor<3x2xf64>, %x: tensor<3x4xf64>) -> (tensor<2x4xf64>, tensor<2x3xf64>) {
  %t = ln.transpose %w {perm = array<i64: 1, 0>} : tensor<3x2xf64>
  %y = ln.matmul %t, %x : tensor<2x3xf64>, tensor<3x4xf64>
  %e = ln.exp %t : tensor<2x3xf64>
  func.return %y, %e : tensor<2x4xf64>, tensor<2x3xf64>
}
"""

NOT_MATRICES = """
func.func @f(%w: tensor<3x2xf64>, %v: tensor<3xf64>) -> tensor<2xf64> {
  %t = ln.transpose %w {perm = array<i64: 1, 0>} : tensor<3x2xf64>
  %y = ln.matmul %t, %v : tensor<2x3xf64>, tensor<3xf64>
  func.return %y : tensor<2xf64>
}
"""

IDENTITY_AND_3D = """
func.func @f(%w: tensor<2x3xf64>, %b: tensor<4x2x3xf64>) -> (tensor<2x2xf64>, tensor<4x3x2xf64>) {
  %i = ln.transpose %w {perm = array<i64: 0, 1>} : tensor<2x3xf64>
  %t = ln.transpose %w {perm = array<i64: 1, 0>} : tensor<2x3xf64>
  %y = ln.matmul %i, %t : tensor<2x3xf64>, tensor<3x2xf64>
  %bt = ln.transpose %b {perm = array<i64: 0, 2, 1>} : tensor<4x2x3xf64>
  func.return %y, %bt : tensor<2x2xf64>, tensor<4x3x2xf64>
}
"""


def test_a_transpose_another_op_reads_is_kept_for_every_user():
    before, after = absorbed(OTHER_USER)
    assert print_ir(after) == print_ir(before)
    same_results(before, after, RNG.standard_normal((3, 2)), RNG.standard_normal((3, 4)))


def test_a_matrix_vector_product_keeps_its_transpose():
    before, after = absorbed(NOT_MATRICES)
    assert print_ir(after) == print_ir(before)


def test_only_matrix_transposes_are_absorbed():
    before, after = absorbed(IDENTITY_AND_3D)
    assert len(ops(after, "ln.transpose")) == 2  # the identity and the 3-D one
    assert "%y = ln.matmul %i, %w {transpose_b}" in print_ir(after)
    same_results(before, after, RNG.standard_normal((2, 3)), RNG.standard_normal((4, 2, 3)))


def test_running_it_twice_changes_nothing():
    _, once = absorbed(TOGGLE)
    assert print_ir(run_pipeline(once.clone(), "absorb-transposes")) == print_ir(once)


# --- the flags on ln.matmul -----------------------------------------------------------------


@pytest.mark.parametrize("ta,tb", [(False, True), (True, False), (True, True)])
def test_flagged_products_match_numpy(ta, tb):
    a = RNG.standard_normal((3, 2) if ta else (2, 3))
    b = RNG.standard_normal((4, 3) if tb else (3, 4))
    flags = ", ".join(f for f, on in (("transpose_a", ta), ("transpose_b", tb)) if on)
    src = f"""
func.func @f(%a: tensor<{"x".join(map(str, a.shape))}xf64>, %b: tensor<{"x".join(map(str, b.shape))}xf64>) -> tensor<2x4xf64> {{
  %y = ln.matmul %a, %b {{{flags}}} : tensor<{"x".join(map(str, a.shape))}xf64>, tensor<{"x".join(map(str, b.shape))}xf64>
  func.return %y : tensor<2x4xf64>
}}
"""
    module = parse_module(src)
    assert print_ir(parse_module(print_ir(module))) == print_ir(module)
    (got,) = Interpreter(module).call("f", a, b)
    np.testing.assert_allclose(got, (a.T if ta else a) @ (b.T if tb else b))


@pytest.mark.parametrize("ta,tb", [(False, True), (True, False), (True, True)])
def test_the_adjoint_of_a_flagged_product_matches_finite_differences(ta, tb):
    a = RNG.standard_normal((3, 2) if ta else (2, 3))
    b = RNG.standard_normal((4, 3) if tb else (3, 4))
    sa, sb = ("x".join(map(str, s.shape)) for s in (a, b))
    flags = ", ".join(f for f, on in (("transpose_a", ta), ("transpose_b", tb)) if on)
    src = f"""
func.func @f(%a: tensor<{sa}xf64>, %b: tensor<{sb}xf64>) -> tensor<f64> {{
  %y = ln.matmul %a, %b {{{flags}}} : tensor<{sa}xf64>, tensor<{sb}xf64>
  %t = ln.tanh %y : tensor<2x4xf64>
  %l = ln.sum %t {{axes = array<i64: 0, 1>}} : tensor<2x4xf64>
  func.return %l : tensor<f64>
}}
"""
    module = parse_module(src)
    run_pipeline(module, "reverse-ad{func=f argnums=0,1},lower-continuations")
    _, da, db = Interpreter(module).call("f_grad", a, b)

    def loss(x, y):
        return np.tanh((x.T if ta else x) @ (y.T if tb else y)).sum()

    for got, x, i in ((da, a, 0), (db, b, 1)):
        want = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            d = np.zeros_like(x)
            d[idx] = 1e-6
            args_p = [a, b]
            args_m = [a, b]
            args_p[i], args_m[i] = x + d, x - d
            want[idx] = (loss(*args_p) - loss(*args_m)) / 2e-6
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    "operands",
    [
        "%v, %m {transpose_a} : tensor<3xf64>, tensor<3x4xf64>",
        "%m, %v {transpose_a} : tensor<3x4xf64>, tensor<3xf64>",
        "%b, %b {transpose_b} : tensor<2x3x3xf64>, tensor<2x3x3xf64>",
    ],
)
def test_flags_on_anything_but_two_matrices_are_rejected_naming_the_op(operands):
    src = f"""
func.func @f(%v: tensor<3xf64>, %m: tensor<3x4xf64>, %b: tensor<2x3x3xf64>) {{
  %y = ln.matmul {operands}
  func.return
}}
"""
    with pytest.raises(Exception, match=r"'ln.matmul': transpose_[ab] needs two matrices"):
        parse_module(src)


def test_the_verifier_rejects_a_flag_set_after_construction():
    module = parse_module(NOT_MATRICES)
    (mm,) = ops(module, "ln.matmul")
    from xdsl.dialects.builtin import UnitAttr

    mm.properties["transpose_b"] = UnitAttr()
    with pytest.raises(VerifyException, match="'ln.matmul': transpose_b needs two matrices"):
        module.verify()
