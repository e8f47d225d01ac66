"""`fuse-elementwise`: elementwise chains become `ln.fused` ops, the meaning is kept."""

from __future__ import annotations

import numpy as np
import pytest

from lanterna.ir import parse_module, print_ir
from lanterna.ir.interpreter import Interpreter
from lanterna.passes import run_pipeline

from support import programs
from support.checks import ops_named, run
from support.programs import AD_PROGRAMS, Program, load

AFTER_AD = "lower-continuations,cse,dce"
AD_PIPELINE = "reverse-ad{{func=f argnums={}}}," + AFTER_AD


def ln_ops(module) -> list[str]:
    """Names of the `ln` ops outside fused bodies."""
    out = []
    for op in module.walk():
        parent = op.parent_op()
        if op.name.startswith("ln.") and not (parent is not None and parent.name == "ln.fused"):
            out.append(op.name)
    return out


def fuse(text: str):
    module = parse_module(text)
    module.verify()
    fused = parse_module(text)
    run_pipeline(fused, "fuse-elementwise")
    return module, fused


def same_results(before, after, fn: str, *args: np.ndarray) -> None:
    want = Interpreter(before).call(fn, *args)
    got = Interpreter(after).call(fn, *args)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)


def test_a_broadcasting_chain_becomes_one_fused_op():
    before, after = fuse(
        """func.func @f(%x: tensor<4x3xf64>, %b: tensor<3xf64>) -> tensor<4x3xf64> {
             %s = ln.add %x, %b : tensor<4x3xf64>, tensor<3xf64>
             %t = ln.tanh %s : tensor<4x3xf64>
             %one = ln.full {value = 1.0 : f64} : tensor<f64>
             %sq = ln.mul %t, %t : tensor<4x3xf64>, tensor<4x3xf64>
             %d = ln.sub %one, %sq : tensor<f64>, tensor<4x3xf64>
             func.return %d : tensor<4x3xf64>
           }""",
    )
    text = print_ir(after)
    assert ln_ops(after) == ["ln.fused"], text
    # One operand per distinct outside value, each a rank-0 body argument.
    assert "%d = ln.fused %x, %b : tensor<4x3xf64>, tensor<3xf64> -> tensor<4x3xf64> {" in text
    assert "^bb0(%x_1: tensor<f64>, %b_1: tensor<f64>):" in text
    assert "ln.fused_yield %d_1 : tensor<f64>" in text
    body = [op.name for op in after.walk() if op.parent_op() and op.parent_op().name == "ln.fused"]
    assert body == ["ln.add", "ln.tanh", "ln.full", "ln.mul", "ln.sub", "ln.fused_yield"]
    rng = np.random.default_rng(0)
    same_results(before, after, "f", rng.standard_normal((4, 3)), rng.standard_normal(3))


def test_values_used_outside_the_chain_are_not_fused_away():
    before, after = fuse(
        """func.func @f(%x: tensor<5xf32>) -> (tensor<5xf32>, tensor<5xf32>) {
             %e = ln.exp %x : tensor<5xf32>
             %n = ln.neg %e : tensor<5xf32>
             %a = ln.abs %n : tensor<5xf32>
             %y = ln.mul %a, %e : tensor<5xf32>, tensor<5xf32>
             %s = ln.sqrt %y : tensor<5xf32>
             func.return %s, %e : tensor<5xf32>, tensor<5xf32>
           }""",
    )
    # %e is returned: it stays an op of its own and the rest reads it.
    assert ln_ops(after) == ["ln.exp", "ln.fused"], print_ir(after)
    assert "ln.fused %e : tensor<5xf32> -> tensor<5xf32>" in print_ir(after)
    same_results(before, after, "f", np.linspace(-1, 1, 5).astype(np.float32))


def test_a_smaller_producer_joins_only_when_free_to_recompute():
    before, after = fuse(
        """func.func @f(%x: tensor<4x3xf64>, %b: tensor<3xf64>) -> tensor<4x3xf64> {
             %eb = ln.exp %b : tensor<3xf64>
             %z = ln.zeros : tensor<3xf64>
             %c = ln.broadcast_to %eb : tensor<3xf64> -> tensor<4x3xf64>
             %m = ln.maximum %x, %z : tensor<4x3xf64>, tensor<3xf64>
             %r = ln.mul %m, %c : tensor<4x3xf64>, tensor<4x3xf64>
             func.return %r : tensor<4x3xf64>
           }""",
    )
    # exp over 3 elements would run 12 times inside the loop: it stays out.
    # The zeros and the broadcast cost nothing per element: they join.
    assert ln_ops(after) == ["ln.exp", "ln.fused"], print_ir(after)
    assert "ln.fused %eb, %x : tensor<3xf64>, tensor<4x3xf64> -> tensor<4x3xf64>" in print_ir(after)
    rng = np.random.default_rng(1)
    same_results(before, after, "f", rng.standard_normal((4, 3)), rng.standard_normal(3))


def test_masks_selects_casts_and_constants_fuse():
    before, after = fuse(
        """func.func @f(%x: tensor<6xf32>, %k: tensor<6xi32>) -> tensor<6xf32> {
             %c = ln.constant {value = dense<0.25> : tensor<f32>} : tensor<f32>
             %kf = ln.cast %k : tensor<6xi32> -> tensor<6xf32>
             %p = ln.pow %x {exponent = 2.0 : f64} : tensor<6xf32>
             %m = ln.lt %kf, %p : tensor<6xf32>, tensor<6xf32>
             %s = ln.select %m, %kf, %c : tensor<6xi1>, tensor<6xf32>, tensor<f32>
             %r = ln.sigmoid %s : tensor<6xf32>
             func.return %r : tensor<6xf32>
           }""",
    )
    assert ln_ops(after) == ["ln.fused"], print_ir(after)
    same_results(
        before, after, "f", np.linspace(-2, 2, 6).astype(np.float32), np.arange(6, dtype=np.int32)
    )


def test_non_elementwise_ops_split_chains():
    before, after = fuse(
        """func.func @f(%x: tensor<2x3xf64>, %w: tensor<3x3xf64>) -> tensor<f64> {
             %t = ln.tanh %x : tensor<2x3xf64>
             %u = ln.relu %t : tensor<2x3xf64>
             %m = ln.matmul %u, %w : tensor<2x3xf64>, tensor<3x3xf64>
             %e = ln.exp %m : tensor<2x3xf64>
             %l = ln.log %e : tensor<2x3xf64>
             %s = ln.sum %l {axes = array<i64: 0, 1>} : tensor<2x3xf64>
             func.return %s : tensor<f64>
           }""",
    )
    assert ln_ops(after) == ["ln.fused", "ln.matmul", "ln.fused", "ln.sum"], print_ir(after)
    rng = np.random.default_rng(2)
    same_results(before, after, "f", rng.standard_normal((2, 3)), rng.standard_normal((3, 3)))


def test_a_single_op_is_left_alone():
    text = """func.func @f(%x: tensor<3xf64>) -> tensor<3xf64> {
                %t = ln.tanh %x : tensor<3xf64>
                func.return %t : tensor<3xf64>
              }"""
    _, after = fuse(text)
    assert print_ir(after) == print_ir(parse_module(text))


def test_chains_inside_loops_and_closures_fuse():
    before, after = fuse(
        """func.func @f(%x: tensor<3xf64>) -> tensor<3xf64> {
             %lb = arith.constant 0 : index
             %ub = arith.constant 4 : index
             %st = arith.constant 1 : index
             %r = scf.for %i = %lb to %ub step %st iter_args(%h = %x) -> (tensor<3xf64>) {
               %a = ln.mul %h, %x : tensor<3xf64>, tensor<3xf64>
               %b = ln.tanh %a : tensor<3xf64>
               %c = ln.add %b, %x : tensor<3xf64>, tensor<3xf64>
               scf.yield %c : tensor<3xf64>
             }
             %k = cont.lambda (%v: tensor<3xf64>) -> (tensor<3xf64>) {
               %n = ln.neg %v : tensor<3xf64>
               %e = ln.exp %n : tensor<3xf64>
               cont.yield %e : tensor<3xf64>
             }
             %y = cont.apply %k(%r) : !cont.closure<(tensor<3xf64>) -> (tensor<3xf64>)>
             func.return %y : tensor<3xf64>
           }""",
    )
    assert ln_ops(after) == ["ln.fused", "ln.fused"], print_ir(after)
    same_results(before, after, "f", np.array([0.1, -0.5, 2.0]))


def test_running_twice_changes_nothing():
    module = load("ad_for.mlir")
    run_pipeline(module, AD_PIPELINE.format("0,1") + ",fuse-elementwise")
    once = print_ir(module)
    run_pipeline(module, "fuse-elementwise")
    assert print_ir(module) == once


def test_a_consumed_fused_op_is_inlined():
    before, after = fuse(
        """func.func @f(%x: tensor<3xf64>, %y: tensor<3xf64>) -> tensor<3xf64> {
             %f = ln.fused %x, %y : tensor<3xf64>, tensor<3xf64> -> tensor<3xf64> {
             ^bb0(%a: tensor<f64>, %b: tensor<f64>):
               %s = ln.mul %a, %b : tensor<f64>, tensor<f64>
               ln.fused_yield %s : tensor<f64>
             }
             %e = ln.exp %f : tensor<3xf64>
             %r = ln.add %e, %x : tensor<3xf64>, tensor<3xf64>
             func.return %r : tensor<3xf64>
           }""",
    )
    assert ln_ops(after) == ["ln.fused"], print_ir(after)
    assert "ln.fused %x, %y : tensor<3xf64>, tensor<3xf64> -> tensor<3xf64>" in print_ir(after)
    same_results(before, after, "f", np.array([0.1, -0.5, 2.0]), np.array([1.0, 2.0, -3.0]))


@pytest.mark.parametrize("program", programs.params(AD_PROGRAMS))
def test_ad_programs_keep_their_gradients(program: Program):
    module = program.load()
    run_pipeline(module, f"{program.reverse_ad},{AFTER_AD}")
    args = program.args()
    before = run(module, "f_grad", *args)
    ops_before = len(ln_ops(module))
    run_pipeline(module, "fuse-elementwise")
    assert ops_named(module, "ln.fused") > 0, print_ir(module)
    assert len(ln_ops(module)) < ops_before
    after = run(module, "f_grad", *args)
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def test_tanh_adjoint_of_the_loop_is_one_fused_op():
    """The adjoint arithmetic `g * (1 - b * b)` of ad_for.mlir's loop body."""
    module = load("ad_for.mlir")
    run_pipeline(module, AD_PIPELINE.format("0,1") + ",fuse-elementwise")
    grad = next(op for op in module.ops if op.sym_name.data == "f_grad")
    (fused,) = [op for op in grad.walk() if op.name == "ln.fused"]
    body = [op.name for op in fused.regions[0].block.ops]
    assert body == ["ln.full", "ln.mul", "ln.sub", "ln.mul", "ln.fused_yield"]
    assert fused.operands[0].name_hint == "b"


def test_tree_program_with_vectors():
    module = load("ad_tree.mlir")
    run_pipeline(module, AD_PIPELINE.format("0,1,2"))
    rng = np.random.default_rng(1)
    args = (
        rng.standard_normal(7),
        np.array(0.7),
        np.array(-1.3),
        np.array([1, 3, 5, -1, -1, -1, -1]),
        np.array([2, 4, 6, -1, -1, -1, -1]),
    )
    before = run(module, "f_grad", *args)
    run_pipeline(module, "fuse-elementwise")
    after = run(module, "f_grad", *args)
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def test_lanterna_opt_runs_the_pass(tmp_path):
    from lanterna.tools.opt import main

    src = tmp_path / "in.mlir"
    src.write_text(
        """func.func @f(%x: tensor<3xf64>) -> tensor<3xf64> {
             %n = ln.neg %x : tensor<3xf64>
             %e = ln.exp %n : tensor<3xf64>
             func.return %e : tensor<3xf64>
           }"""
    )
    out = tmp_path / "out.mlir"
    assert main([str(src), "-p", "fuse-elementwise", "-o", str(out)]) == 0
    text = out.read_text()
    assert "ln.fused %x : tensor<3xf64> -> tensor<3xf64>" in text
    parse_module(text).verify()


def test_a_shared_fill_is_copied_into_each_group():
    before, after = fuse(
        """func.func @f(%x: tensor<3xf64>, %y: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>, tensor<f64>) {
             %one = ln.full {value = 1.0 : f64} : tensor<f64>
             %a = ln.sub %one, %x : tensor<f64>, tensor<3xf64>
             %b = ln.exp %a : tensor<3xf64>
             %c = ln.add %y, %one : tensor<3xf64>, tensor<f64>
             %d = ln.log %c : tensor<3xf64>
             func.return %b, %d, %one : tensor<3xf64>, tensor<3xf64>, tensor<f64>
           }""",
    )
    # Both groups compute 1 themselves; the returned fill stays as well.
    assert ln_ops(after) == ["ln.full", "ln.fused", "ln.fused"], print_ir(after)
    assert "ln.fused %x : tensor<3xf64>" in print_ir(after)
    assert "ln.fused %y : tensor<3xf64>" in print_ir(after)
    same_results(before, after, "f", np.array([0.1, -0.5, 2.0]), np.array([1.0, 2.0, 3.0]))
