"""`reverse-ad`: IR in, IR out, and gradients equal to finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from lanterna.errors import PipelineError
from lanterna.ir import parse_module, print_ir
from lanterna.passes import run_pipeline

from support import programs
from support.checks import finite_differences, ops_named, run
from support.programs import AD_PROGRAMS, Program, load


@pytest.mark.parametrize("program", programs.params(AD_PROGRAMS))
def test_gradients_match_finite_differences(program: Program):
    module = program.load()
    run_pipeline(module, program.reverse_ad)
    args = program.args()
    value, *grads = run(module, "f_grad", *args)
    np.testing.assert_allclose(value, run(module, "f", *args)[0], rtol=1e-12)
    expected = finite_differences(lambda *a: run(module, "f", *a)[0], args)
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-9)


def test_output_is_a_reset_of_shifts_with_a_seed():
    module = load("ad_for.mlir")
    run_pipeline(module, "reverse-ad{argnums=0,1}")
    text = print_ir(module)
    assert (
        "func.func @f_grad(%x: tensor<f64>, %w: tensor<f64>) -> (tensor<f64>, tensor<f64>, tensor<f64>)"
        in text
    )
    assert ops_named(module, "cont.reset") == 1
    # mul, tanh and add in the loop body each become one shift
    assert ops_named(module, "cont.shift") == 3
    assert ops_named(module, "cont.resume") == 3
    # the loop carries (value, cell) pairs
    assert "iter_args(%h = %x, %h_bar = %x_bar) -> (tensor<f64>, !ad.cell<tensor<f64>>)" in text
    # the loss cell is seeded with ones
    assert ops_named(module, "ln.ones") == 1
    # the original function is untouched
    assert "func.func @f(%x: tensor<f64>, %w: tensor<f64>) -> tensor<f64>" in text


def test_callee_is_differentiated_into_a_pair_taking_function():
    module = load("ad_recursive.mlir")
    run_pipeline(module, "reverse-ad{func=f argnums=1}")
    text = print_ir(module)
    # Only w carries an adjoint: x is passed alone (no zero cell per call), and the
    # version is named after the activity of its float arguments (x, w) = (0, 1).
    sig = (
        "func.func @f_grad__pow_01(%n: i64, %x: tensor<f64>, "
        "%w: tensor<f64>, %w_bar: !ad.cell<tensor<f64>>) -> (tensor<f64>, !ad.cell<tensor<f64>>)"
    )
    assert sig in text
    # the recursion calls the same differentiated version
    assert "func.call @f_grad__pow_01(%m, %x, %w, %w_bar)" in text
    # with both differentiated, every float argument comes with its cell
    both = load("ad_recursive.mlir")
    run_pipeline(both, "reverse-ad{func=f argnums=0,1}")
    assert (
        "func.func @f_grad__pow(%n: i64, %x: tensor<f64>, %x_bar: !ad.cell<tensor<f64>>, "
        "%w: tensor<f64>, %w_bar: !ad.cell<tensor<f64>>)"
    ) in print_ir(both)


def test_integer_values_get_no_cells():
    module = load("ad_if.mlir")
    run_pipeline(module, "reverse-ad{argnums=0}")
    for op in module.walk():
        if op.name == "ad.zero_like":
            assert "f64" in str(op.operands[0].type)


def test_vjp_seed_takes_cotangents():
    src = """
    func.func @f(%x: tensor<2xf64>) -> tensor<2xf64> {
      %y = ln.exp %x : tensor<2xf64>
      func.return %y : tensor<2xf64>
    }"""
    module = parse_module(src)
    run_pipeline(module, "reverse-ad{seed=true out=f_vjp}")
    x = np.array([0.1, -0.5])
    ct = np.array([2.0, 3.0])
    y, dx = run(module, "f_vjp", x, ct)
    np.testing.assert_allclose(y, np.exp(x))
    np.testing.assert_allclose(dx, ct * np.exp(x))


BAD = [
    (
        """func.func @f(%x: tensor<2xf64>) -> tensor<2xf64> {
             func.return %x : tensor<2xf64>
           }""",
        "reverse-ad{func=f}",
        r"@f: the function must return one scalar float tensor \(a loss\), but it returns tensor<2xf64>",
    ),
    (
        """func.func @f(%x: tensor<i64>) -> tensor<f64> {
             %y = ln.cast %x : tensor<i64> -> tensor<f64>
             func.return %y : tensor<f64>
           }""",
        "reverse-ad{func=f}",
        r"@f: argument 0 has type tensor<i64>; only float tensors can be differentiated",
    ),
    (
        """func.func @f(%x: tensor<f64>) -> tensor<f64> {
             func.return %x : tensor<f64>
           }""",
        "reverse-ad{func=f argnums=3}",
        r"@f: argnum 3 is out of range for 1 arguments",
    ),
    (
        """func.func @f(%x: tensor<f64>) -> tensor<f64> {
             func.return %x : tensor<f64>
           }""",
        "reverse-ad{func=g}",
        r"no function @g",
    ),
]


@pytest.mark.parametrize("src,pipeline,message", BAD)
def test_bad_requests_name_the_function(src, pipeline, message):
    module = parse_module(src)
    with pytest.raises(PipelineError, match=message):
        run_pipeline(module, pipeline)


def test_item_of_a_differentiated_value_is_rejected():
    src = """
    func.func @f(%x: tensor<f64>) -> tensor<f64> {
      %s = ln.item %x : tensor<f64>
      %t = ln.from_scalar %s : f64
      func.return %t : tensor<f64>
    }"""
    with pytest.raises(PipelineError, match="'ln.item' of a differentiated float tensor"):
        run_pipeline(parse_module(src), "reverse-ad")
