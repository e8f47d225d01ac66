"""`canonicalize` on `ln`: algebraic identities, compositions and constant folding
(patterns in `ir/ln/canonicalize.py`), each checked on text and on the interpreter."""

from __future__ import annotations

import numpy as np
import pytest

from lanterna.ir import parse_module, print_ir
from lanterna.passes import run_pipeline

from support import programs
from support.checks import run
from support.programs import AD_PROGRAMS, Program

T = "tensor<2x3xf64>"


def canonicalize(source: str, *args: np.ndarray) -> str:
    """Run `canonicalize` on `@f` in `source`; check the results did not change;
    return the function's text."""
    module = parse_module(source)
    module.verify()
    before = run(module, "f", *args)
    run_pipeline(module, "canonicalize")
    after = run(module, "f", *args)
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)
    return print_ir(module)


X = np.arange(6.0).reshape(2, 3) - 2.5
S = np.array([0.5, -1.0, 2.0])


@pytest.mark.parametrize(
    "body",
    [
        f"%z = ln.zeros : {T}\n %y = ln.add %x, %z : {T}, {T}",
        f"%z = ln.zeros : {T}\n %y = ln.add %z, %x : {T}, {T}",
        f"%z = ln.full {{value = 0.0 : f64}} : {T}\n %y = ln.sub %x, %z : {T}, {T}",
        f"%o = ln.ones : tensor<3xf64>\n %y = ln.mul %x, %o : {T}, tensor<3xf64>",
        f"%o = ln.ones : {T}\n %y = ln.mul %o, %x : {T}, {T}",
        (
            "%o = ln.constant {value = dense<1.0> : tensor<f64>} : tensor<f64>\n"
            f" %y = ln.div %x, %o : {T}, tensor<f64>"
        ),
        f"%n = ln.neg %x : {T}\n %y = ln.neg %n : {T}",
        f"%y = ln.cast %x : {T} -> {T}",
        f"%y = ln.reshape %x : {T} -> {T}",
        f"%y = ln.broadcast_to %x : {T} -> {T}",
        f"%y = ln.transpose %x {{perm = array<i64: 0, 1>}} : {T}",
        (
            f"%t = ln.transpose %x {{perm = array<i64: 1, 0>}} : {T}\n"
            " %y = ln.transpose %t {perm = array<i64: 1, 0>} : tensor<3x2xf64>"
        ),
    ],
    ids=[
        "x+0",
        "0+x",
        "x-0",
        "x*1-broadcast",
        "1*x",
        "x/1",
        "neg-neg",
        "cast",
        "reshape",
        "broadcast",
        "transpose-id",
        "transpose-transpose",
    ],
)
def test_identity_returns_the_operand(body):
    text = canonicalize(
        f"""func.func @f(%x: {T}) -> {T} {{
          {body}
          func.return %y : {T}
        }}""",
        X,
    )
    assert f"func.return %x : {T}" in text
    assert text.count("ln.") == 0, text


def test_identity_keeps_a_broadcast():
    """`s + zeros` with a larger zeros is a broadcast, not `s`."""
    text = canonicalize(
        f"""func.func @f(%s: tensor<3xf64>) -> {T} {{
          %z = ln.zeros : {T}
          %y = ln.add %s, %z : tensor<3xf64>, {T}
          func.return %y : {T}
        }}""",
        S,
    )
    assert f"ln.add %s, %z : tensor<3xf64>, {T}" in text


def test_a_non_unit_constant_is_not_an_identity():
    text = canonicalize(
        f"""func.func @f(%x: {T}) -> {T} {{
          %c = ln.full {{value = 2.0 : f64}} : {T}
          %y = ln.mul %x, %c : {T}, {T}
          func.return %y : {T}
        }}""",
        X,
    )
    assert "ln.mul %x, %c" in text


def test_reshapes_compose():
    text = canonicalize(
        f"""func.func @f(%x: {T}) -> tensor<3x2xf64> {{
          %a = ln.reshape %x : {T} -> tensor<6xf64>
          %b = ln.reshape %a : tensor<6xf64> -> tensor<3x2xf64>
          func.return %b : tensor<3x2xf64>
        }}""",
        X,
    )
    assert f"%b = ln.reshape %x : {T} -> tensor<3x2xf64>" in text
    assert "tensor<6xf64>" not in text


def test_transposes_compose_their_permutations():
    x = np.arange(24.0).reshape(2, 3, 4)
    text = canonicalize(
        """func.func @f(%x: tensor<2x3x4xf64>) -> tensor<3x2x4xf64> {
          %a = ln.transpose %x {perm = array<i64: 2, 0, 1>} : tensor<2x3x4xf64>
          %b = ln.transpose %a {perm = array<i64: 2, 1, 0>} : tensor<4x2x3xf64>
          func.return %b : tensor<3x2x4xf64>
        }""",
        x,
    )
    assert "%b = ln.transpose %x {perm = array<i64: 1, 0, 2>} : tensor<2x3x4xf64>" in text
    assert text.count("ln.transpose") == 1


def test_small_constants_fold():
    text = canonicalize(
        """func.func @f() -> (tensor<2xf64>, tensor<2xi1>, tensor<f32>) {
          %c = ln.constant {value = dense<[1.0, 2.0]> : tensor<2xf64>} : tensor<2xf64>
          %e = ln.exp %c : tensor<2xf64>
          %f = ln.add %e, %c : tensor<2xf64>, tensor<2xf64>
          %h = ln.full {value = 1.5 : f64} : tensor<2xf64>
          %l = ln.lt %c, %h : tensor<2xf64>, tensor<2xf64>
          %o = ln.ones : tensor<4xf32>
          %s = ln.sum %o {axes = array<i64: 0>} : tensor<4xf32>
          func.return %f, %l, %s : tensor<2xf64>, tensor<2xi1>, tensor<f32>
        }""",
    )
    body = text[text.index("{") :]
    assert "ln.exp" not in body and "ln.add" not in body and "ln.lt" not in body
    assert "ln.sum" not in body
    assert "dense<[true, false]> : tensor<2xi1>" in text
    assert "dense<4.000000e+00> : tensor<f32>" in text


def test_large_constants_do_not_fold():
    text = canonicalize(
        """func.func @f() -> tensor<65xf32> {
          %o = ln.ones : tensor<65xf32>
          %e = ln.exp %o : tensor<65xf32>
          func.return %e : tensor<65xf32>
        }""",
    )
    assert "ln.exp %o" in text


@pytest.mark.parametrize("program", programs.params(AD_PROGRAMS))
def test_gradient_programs_keep_their_values(program: Program):
    """On reverse-mode output, where the seeds and adjoint arithmetic give the
    patterns real work."""
    module = program.load()
    run_pipeline(module, f"{program.reverse_ad},lower-continuations")
    args = program.args()
    before = run(module, "f_grad", *args)
    run_pipeline(module, "elide-zero-adjoints,canonicalize,cse,dce")
    after = run(module, "f_grad", *args)
    for b, a in zip(before, after):
        np.testing.assert_allclose(a, b, rtol=1e-14)
