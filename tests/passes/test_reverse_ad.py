"""`reverse-ad`: IR in, IR out, and gradients equal to finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from lanterna.errors import PipelineError
from lanterna.ir import parse_module, print_ir

PROGRAMS = [
    # file, inputs (x, w)
    ("ad_if.mlir", (0.7, -1.3)),
    ("ad_if.mlir", (-0.4, 0.9)),
    ("ad_for.mlir", (0.3, 0.8)),
    ("ad_while.mlir", (0.5, 1.7)),
    ("ad_call.mlir", (0.6, 1.4)),
    ("ad_recursive.mlir", (0.4, 1.1)),
]


@pytest.mark.parametrize("name,point", PROGRAMS)
def test_gradients_match_finite_differences(passes_lib, name, point):
    lib = passes_lib
    module = lib.load(name)
    lib.run_pipeline(module, "reverse-ad{func=f argnums=0,1}")
    args = [np.array(v) for v in point]
    value, *grads = lib.run(module, "f_grad", *args)
    np.testing.assert_allclose(value, lib.run(module, "f", *args)[0], rtol=1e-12)
    expected = lib.finite_differences(lambda *a: lib.run(module, "f", *a)[0], args)
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-9)


def test_output_is_a_reset_of_shifts_with_a_seed(passes_lib):
    lib = passes_lib
    module = lib.load("ad_for.mlir")
    lib.run_pipeline(module, "reverse-ad{argnums=0,1}")
    text = print_ir(module)
    assert (
        "func.func @f_grad(%x: tensor<f64>, %w: tensor<f64>) -> (tensor<f64>, tensor<f64>, tensor<f64>)"
        in text
    )
    assert lib.ops_named(module, "cont.reset") == 1
    # mul, tanh and add in the loop body each become one shift
    assert lib.ops_named(module, "cont.shift") == 3
    assert lib.ops_named(module, "cont.resume") == 3
    # the loop carries (value, cell) pairs
    assert "iter_args(%h = %x, %h_bar = %x_bar) -> (tensor<f64>, !ad.cell<tensor<f64>>)" in text
    # the loss cell is seeded with ones
    assert lib.ops_named(module, "ln.ones") == 1
    # the original function is untouched
    assert "func.func @f(%x: tensor<f64>, %w: tensor<f64>) -> tensor<f64>" in text


def test_callee_is_differentiated_into_a_pair_taking_function(passes_lib):
    lib = passes_lib
    module = lib.load("ad_recursive.mlir")
    lib.run_pipeline(module, "reverse-ad{func=f argnums=1}")
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
    both = lib.load("ad_recursive.mlir")
    lib.run_pipeline(both, "reverse-ad{func=f argnums=0,1}")
    assert (
        "func.func @f_grad__pow(%n: i64, %x: tensor<f64>, %x_bar: !ad.cell<tensor<f64>>, "
        "%w: tensor<f64>, %w_bar: !ad.cell<tensor<f64>>)"
    ) in print_ir(both)


def test_integer_values_get_no_cells(passes_lib):
    lib = passes_lib
    module = lib.load("ad_if.mlir")
    lib.run_pipeline(module, "reverse-ad{argnums=0}")
    for op in module.walk():
        if op.name == "ad.zero_like":
            assert "f64" in str(op.operands[0].type)


def test_vjp_seed_takes_cotangents(passes_lib):
    lib = passes_lib
    src = """
    func.func @f(%x: tensor<2xf64>) -> tensor<2xf64> {
      %y = ln.exp %x : tensor<2xf64>
      func.return %y : tensor<2xf64>
    }"""
    module = parse_module(src)
    lib.run_pipeline(module, "reverse-ad{seed=true out=f_vjp}")
    x = np.array([0.1, -0.5])
    ct = np.array([2.0, 3.0])
    y, dx = lib.run(module, "f_vjp", x, ct)
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
def test_bad_requests_name_the_function(passes_lib, src, pipeline, message):
    module = parse_module(src)
    with pytest.raises(PipelineError, match=message):
        passes_lib.run_pipeline(module, pipeline)


def test_item_of_a_differentiated_value_is_rejected(passes_lib):
    src = """
    func.func @f(%x: tensor<f64>) -> tensor<f64> {
      %s = ln.item %x : tensor<f64>
      %t = ln.from_scalar %s : f64
      func.return %t : tensor<f64>
    }"""
    with pytest.raises(PipelineError, match="'ln.item' of a differentiated float tensor"):
        passes_lib.run_pipeline(parse_module(src), "reverse-ad")
