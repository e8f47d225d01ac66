"""`licm` (xDSL's loop-invariant code motion, in the cpu pipeline): invariant pure
ops leave the loop; ops that check indices at run time stay, since the loop
might not run and hoisting them could raise an IndexError the program never had."""

from __future__ import annotations

import numpy as np

from lanterna.ir import parse_module, print_ir
from lanterna.ir.interpreter import Interpreter
from lanterna.passes import run_pipeline

SOURCE = """
func.func @f(%w: tensor<2x3xf64>, %t: tensor<4x3xf64>, %ids: tensor<2xi64>, %n: index) -> tensor<3x3xf64> {
  %lb = arith.constant 0 : index
  %st = arith.constant 1 : index
  %z = ln.zeros : tensor<3x3xf64>
  %r = scf.for %i = %lb to %n step %st iter_args(%acc = %z) -> (tensor<3x3xf64>) {
    %wt = ln.transpose %w {perm = array<i64: 1, 0>} : tensor<2x3xf64>
    %rows = ln.gather %t, %ids : tensor<4x3xf64>, tensor<2xi64>
    %p = ln.matmul %wt, %rows : tensor<3x2xf64>, tensor<2x3xf64>
    %s = ln.add %acc, %p : tensor<3x3xf64>, tensor<3x3xf64>
    scf.yield %s : tensor<3x3xf64>
  }
  func.return %r : tensor<3x3xf64>
}
"""


def test_invariant_ops_leave_the_loop_but_checked_ones_stay():
    module = parse_module(SOURCE)
    rng = np.random.default_rng(0)
    args = (rng.standard_normal((2, 3)), rng.standard_normal((4, 3)), np.array([3, 1]), 5)
    (before,) = Interpreter(module).call("f", *args)
    run_pipeline(module, "licm")
    loop = next(op for op in module.walk() if op.name == "scf.for")
    inside = [op.name for op in loop.body.block.ops]
    assert "ln.transpose" not in inside and "ln.gather" in inside, print_ir(module)
    # The product depends on nothing in the loop either, but its operand (the
    # gather) stays, so it stays too.
    (after,) = Interpreter(module).call("f", *args)
    np.testing.assert_allclose(after, before, rtol=1e-15)
    # A loop that does not run does not look its indices up.
    bad = (args[0], args[1], np.array([7, 1]), 0)
    (zero,) = Interpreter(module).call("f", *bad)
    np.testing.assert_array_equal(zero, np.zeros((3, 3)))
