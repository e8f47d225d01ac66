"""Canonicalization patterns of the `ln` ops, run by xDSL's `canonicalize` pass.

Every `ln` op carries `LnCanonicalization` (see `base.py`), which asks
`patterns_for(type(op))` here for the patterns rooted at that op:

* algebraic identities that return an operand unchanged: `x + 0`, `0 + x`,
  `x - 0`, `x * 1`, `1 * x`, `x / 1` (only when the result has the operand's
  type, so broadcasting is never lost), `neg(neg(x))`, and a cast, reshape,
  broadcast or identity transpose to the operand's own type;
* compositions: `reshape(reshape(x))` is one reshape, `transpose(transpose(x))`
  one transpose with the composed permutation;
* constant folding: an op whose operands all come from `ln.constant`,
  `ln.zeros`, `ln.ones` or `ln.full` becomes an `ln.constant` holding what its
  `evaluate` computes, when every operand and the result have at most
  `FOLD_LIMIT` elements (folding must stay cheap and the IR readable).

Like MLIR's, these are cheap, convergent and never needed for correctness.
The identities treat `x + 0` as `x`, which differs from IEEE only in the sign
of a zero result.

    %z = ln.zeros : tensor<3xf32>
    %y = ln.add %x, %z : tensor<3xf32>, tensor<3xf32>      // %y is %x
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.pattern_rewriter import PatternRewriter, RewritePattern

from lanterna.ir.ln import elementwise as ew
from lanterna.ir.ln import shape as sh
from lanterna.ir.ln.base import LnOp, get_ints
from lanterna.ir.types import elt, shape_of, to_numpy_dtype

FOLD_LIMIT = 64
"""The most elements an operand or result of a constant-folded op may have."""

_CONSTANT_OPS = (ew.ConstantOp, ew.ZerosOp, ew.OnesOp, ew.FullOp)


# --- what a value is known to be -----------------------------------------------------------


def splat(value: SSAValue) -> float | None:
    """The one number every element of `value` is known to hold, or None."""
    owner = value.owner
    if isinstance(owner, ew.ZerosOp | ew.OnesOp | ew.FullOp):
        return owner.fill_value()
    if isinstance(owner, ew.ConstantOp):
        values = owner.value.get_values()
        if values and all(v == values[0] for v in values):
            return float(values[0])
    return None


def numel(value: SSAValue) -> int:
    return math.prod(shape_of(value.type))


# --- patterns ------------------------------------------------------------------------------


class _Identity(RewritePattern):
    """`op(x, c)` (or `op(c, x)`) is `x` when `c` is all `unit` and the result
    has `x`'s type."""

    def __init__(self, unit: float, sides: Sequence[int]):
        self.unit = unit
        self.sides = tuple(sides)  # which operand may be the unit

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        for side in self.sides:
            other = op.operands[1 - side]
            if splat(op.operands[side]) == self.unit and other.type == op.results[0].type:
                rewriter.replace(op, (), (other,))
                return


class _SameType(RewritePattern):
    """A unary op whose result has its operand's type and that, for such types,
    returns its operand (cast, reshape, broadcast_to)."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        (x,) = op.operands
        if x.type == op.results[0].type:
            rewriter.replace(op, (), (x,))


class _NegNeg(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        inner = op.operands[0].owner
        if isinstance(inner, ew.NegOp):
            rewriter.replace(op, (), (inner.operands[0],))


class _ReshapeReshape(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        inner = op.operands[0].owner
        if isinstance(inner, sh.ReshapeOp):
            rewriter.replace(op, sh.ReshapeOp(inner.operands[0], op.results[0].type))


class _TransposeTranspose(RewritePattern):
    """Result dimension i of the outer transpose is dimension outer[i] of the
    inner one, which is dimension inner[outer[i]] of its operand."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        perm = get_ints(op.properties, "perm")
        if list(perm) == list(range(len(perm))):
            rewriter.replace(op, (), (op.operands[0],))
            return
        inner = op.operands[0].owner
        if isinstance(inner, sh.TransposeOp):
            first = get_ints(inner.properties, "perm")
            composed = [first[p] for p in perm]
            rewriter.replace(op, sh.TransposeOp(inner.operands[0], composed))


class _FoldConstants(RewritePattern):
    """Evaluate an op on small constant operands at compile time."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        if not isinstance(op, LnOp) or not op.operands or op.regions:
            return
        if not all(isinstance(v.owner, _CONSTANT_OPS) for v in op.operands):
            return
        result = op.results[0]
        if any(numel(v) > FOLD_LIMIT for v in (*op.operands, result)):
            return
        args = [v.owner.evaluate() for v in op.operands]  # type: ignore[union-attr]
        # Folding must not warn where running the program would not (1/0 is inf).
        with np.errstate(all="ignore"):
            value = op.evaluate(*args)
        t = result.type
        assert isinstance(t, TensorType)
        array = np.asarray(value, dtype=to_numpy_dtype(elt(t))).reshape(shape_of(t))
        flat = array.reshape(-1)
        data = [bool(x) for x in flat] if array.dtype == np.bool_ else flat.tolist()
        constant = ew.ConstantOp(result_type=t, value=DenseIntOrFPElementsAttr.from_list(t, data))
        rewriter.replace(op, constant)


_FOLD = _FoldConstants()

_PATTERNS: dict[type[Operation], tuple[RewritePattern, ...]] = {
    ew.AddOp: (_Identity(0.0, (1, 0)),),
    ew.SubOp: (_Identity(0.0, (1,)),),
    ew.MulOp: (_Identity(1.0, (1, 0)),),
    ew.DivOp: (_Identity(1.0, (1,)),),
    ew.NegOp: (_NegNeg(),),
    ew.CastOp: (_SameType(),),
    sh.ReshapeOp: (_SameType(), _ReshapeReshape()),
    sh.BroadcastToOp: (_SameType(),),
    sh.TransposeOp: (_TransposeTranspose(),),
}


def patterns_for(op_type: type[Operation]) -> tuple[RewritePattern, ...]:
    """The canonicalization patterns rooted at ops of `op_type`."""
    return (*_PATTERNS.get(op_type, ()), _FOLD)
