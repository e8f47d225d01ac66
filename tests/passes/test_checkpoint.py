"""`ln.checkpoint` and the `checkpoint` pass: the backward pass recomputes the
region instead of reading stored intermediates, and the gradients stay the same."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from lanterna.ir import parse_module, print_ir
from lanterna.passes import run_pipeline

from support.checks import finite_differences, ops_named, run
from support.programs import load

CPU_PIPELINE = "reverse-loops,lower-continuations,elide-zero-adjoints,canonicalize,cse,licm,dce,fuse-elementwise"
X = np.array([0.3, -0.5, 0.9])
W = np.array([0.7, 1.1, -0.4])


def _saved(module) -> list[str]:
    """The types pushed by forward loops, one entry per stack."""
    return sorted(str(op.results[0].type) for op in module.walk() if op.name == "ad.stack")


@pytest.mark.parametrize("tail", ["", ",reverse-loops", "," + CPU_PIPELINE])
def test_checkpointed_loop_gradients(tail):
    module = load("ad_checkpoint.mlir")
    run_pipeline(module, "reverse-ad{argnums=0,1}" + tail)
    module.verify()
    got = run(module, "f_grad", X, W)
    expected = finite_differences(lambda x, w: run(module, "f", x, w)[0], [X, W])
    for g, e in zip(got[1:], expected):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-9)


def test_only_the_regions_inputs_are_saved():
    plain = parse_module(
        str(load("ad_checkpoint.mlir"))
        .replace(
            "ln.checkpoint -> (tensor<3xf64>, tensor<3xf64>) {",
            "scf.execute_region -> (tensor<3xf64>, tensor<3xf64>) {",
        )
        .replace("ln.checkpoint_yield", "scf.yield")
    )
    marked = load("ad_checkpoint.mlir")
    run_pipeline(plain, "canonicalize,reverse-ad{argnums=0,1},reverse-loops")
    run_pipeline(marked, "reverse-ad{argnums=0,1},reverse-loops")
    # Without the marker the forward loop keeps h (for w's adjoint), tanh's
    # output and c; with it, h (the region's input) and c (read after it).
    text = print_ir(marked)
    assert "%h_saved = ad.stack" in text and "%c_saved = ad.stack" in text
    assert len(_saved(marked)) == 2, text
    assert len(_saved(plain)) == 3, print_ir(plain)
    # The backward loop runs the region again: tanh appears in both loops.
    assert ops_named(marked, "ln.tanh") == 3  # @f, the forward loop, the recomputation
    a = run(marked, "f_grad", X, W)
    b = run(plain, "f_grad", X, W)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-13)


def test_checkpoint_pass_wraps_loop_bodies():
    module = load("ad_nested_for.mlir")
    run_pipeline(module, "checkpoint")
    module.verify()
    text = print_ir(module)
    # The outer body is wrapped; the inner loop, already inside it, is not.
    assert ops_named(module, "ln.checkpoint") == 1, text
    outer = next(op for op in module.walk() if op.name == "scf.for")
    body_ops = [op.name for op in outer.body.block.ops]
    assert body_ops == ["ln.checkpoint", "scf.yield"]
    original = load("ad_nested_for.mlir")
    np.testing.assert_allclose(run(module, "f", X, W)[0], run(original, "f", X, W)[0], rtol=1e-15)
    run_pipeline(module, "reverse-ad{argnums=0,1}," + CPU_PIPELINE)
    run_pipeline(original, "reverse-ad{argnums=0,1}," + CPU_PIPELINE)
    for a, b in zip(run(module, "f_grad", X, W), run(original, "f_grad", X, W)):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_checkpoint_pass_on_a_simple_loop_saves_only_the_carried_value():
    module = load("ad_for.mlir")
    run_pipeline(module, "checkpoint,reverse-ad{argnums=0,1},reverse-loops")
    assert _saved(module) == ["!ad.stack<tensor<f64>>"], print_ir(module)


CALL = """
func.func @g(%h: tensor<3xf64>, %w: tensor<3xf64>) -> tensor<3xf64> {
  %a = ln.mul %h, %w : tensor<3xf64>, tensor<3xf64>
  %b = ln.tanh %a : tensor<3xf64>
  func.return %b : tensor<3xf64>
}
func.func @f(%x: tensor<3xf64>, %w: tensor<3xf64>) -> tensor<f64> {
  %y = ln.checkpoint -> (tensor<3xf64>) {
    %b = func.call @g(%x, %w) : (tensor<3xf64>, tensor<3xf64>) -> tensor<3xf64>
    %c = func.call @g(%b, %w) : (tensor<3xf64>, tensor<3xf64>) -> tensor<3xf64>
    ln.checkpoint_yield %c : tensor<3xf64>
  }
  %z = func.call @g(%y, %w) : (tensor<3xf64>, tensor<3xf64>) -> tensor<3xf64>
  %t = ln.sum %z {axes = array<i64: 0>} : tensor<3xf64>
  func.return %t : tensor<f64>
}
"""


def test_calls_inside_a_checkpoint():
    """A function called from the recomputation has its own differentiated
    version (its continuations answer to the recomputation's reset)."""
    module = parse_module(CALL)
    run_pipeline(module, "reverse-ad{func=f argnums=0,1}")
    names = {op.sym_name.data for op in module.ops}
    assert {"f_grad__g", "f_grad__g_recompute"} <= names
    expected = finite_differences(lambda x, w: run(module, "f", x, w)[0], [X, W])
    for tail in ["", CPU_PIPELINE]:
        if tail:
            run_pipeline(module, tail)
        got = run(module, "f_grad", X, W)
        for g, e in zip(got[1:], expected):
            np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-9)


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")
def test_cpu_runs_checkpointed_code():
    from lanterna.backends import get_backend

    module = load("ad_checkpoint.mlir")
    run_pipeline(module, "reverse-ad{argnums=0,1}")
    expected = run(module, "f_grad", X, W)
    run_pipeline(module, CPU_PIPELINE)
    got = get_backend("cpu").compile(module, "f_grad")(X, W)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-12)
    # Forward only, the region is emitted inline.
    fwd = load("ad_checkpoint.mlir")
    (value,) = get_backend("cpu").compile(fwd, "f")(X, W)
    np.testing.assert_allclose(value, run(fwd, "f", X, W)[0], rtol=1e-12)
