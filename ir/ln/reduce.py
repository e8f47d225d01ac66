"""`ln` reductions: sum, mean and max over a set of axes.

The reduced axes are a property, always spelled out: non-negative, sorted and
unique. Python's "all axes" (`axes=None`) is expanded by the constructor, so an
empty `axes` means "reduce nothing" (the identity; it is what "all axes" becomes
on a rank-0 tensor), never "reduce everything".

    %s = ln.sum %x {axes = array<i64: 0, 1>} : tensor<2x3xf32>               // tensor<f32>
    %m = ln.mean %x {axes = array<i64: 1>, keepdims} : tensor<2x3xf32>       // tensor<2x1xf32>

Adjoints spread the result's adjoint back over the reduced axes: reshape it to
the keepdims shape, then `ln.broadcast_to` the operand's shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from xdsl.dialects.builtin import DenseArrayBase, TensorType, UnitAttr
from xdsl.ir import Attribute, SSAValue
from xdsl.irdl import IRDLOperation, irdl_op_definition, operand_def, opt_prop_def, prop_def
from xdsl.utils.exceptions import VerifyException

from lanterna.ir.ln.adjoint import AdjointBuilder
from lanterna.ir.ln.base import LnOp, Props, get_flag, get_ints, ints_prop, want_arity
from lanterna.ir.ln.elementwise import CastOp, EqOp
from lanterna.ir.ln.shape import BroadcastToOp, ReshapeOp
from lanterna.ir.types import elt, expect_tensor, format_shape, is_bool, is_float, shape_of, tensor


def normalize_axes(op_name: str, axes: int | Sequence[int] | None, rank: int) -> tuple[int, ...]:
    """Python-style axes (None = all, negative counts from the end) in canonical form."""
    if axes is None:
        return tuple(range(rank))
    if isinstance(axes, int):
        axes = (axes,)
    out: list[int] = []
    for a in axes:
        if not -rank <= a < rank:
            raise VerifyException(f"'{op_name}': axis {a} is out of range for rank {rank}")
        out.append(a % rank)
    if len(set(out)) != len(out):
        raise VerifyException(f"'{op_name}': axes {format_shape(tuple(axes))} repeat an axis")
    return tuple(sorted(out))


def wide_sum(x: np.ndarray, axis: int | tuple[int, ...], keepdims: bool = False) -> np.ndarray:
    """`np.sum` as every backend computes it: floats accumulate in float64 (a float32
    sum is rounded once, at the end), integers in their own type, wrapping. numpy's
    own float32 sum is pairwise only along a contiguous axis; along another one it
    adds element by element in float32, and stops counting at 2^24."""
    if x.dtype.kind == "f":
        return np.sum(x, axis=axis, keepdims=keepdims, dtype=np.float64)
    return np.sum(x, axis=axis, keepdims=keepdims, dtype=x.dtype)


class ReduceOp(LnOp):
    """Shared rule of the reductions: drop (or keep as 1) the dimensions in `axes`."""

    x = operand_def(TensorType)
    axes = prop_def(DenseArrayBase)
    keepdims = opt_prop_def(UnitAttr)

    # mean divides, so it needs floats; the others also take i32 and i64.
    FLOAT_ONLY: ClassVar[bool] = False
    # max has no identity element, so it cannot reduce an empty extent.
    NEEDS_ELEMENTS: ClassVar[bool] = False

    def __init__(
        self,
        x: SSAValue | IRDLOperation,
        axes: int | Sequence[int] | None = None,
        keepdims: bool = False,
    ):
        value = SSAValue.get(x)
        t = expect_tensor(self.name, "operand", value.type)
        props: dict[str, Attribute] = {
            "axes": ints_prop(normalize_axes(self.name, axes, len(shape_of(t))))
        }
        if keepdims:
            props["keepdims"] = UnitAttr()
        super().__init__(value, **props)

    @classmethod
    def infer_type(
        cls, operand_types: Sequence[Attribute], props: Props, result_type: Attribute | None
    ) -> TensorType:
        want_arity(cls.name, operand_types, 1)
        (t,) = operand_types
        e = elt(t)
        if is_bool(e) or (cls.FLOAT_ONLY and not is_float(e)):
            kind = "a float" if cls.FLOAT_ONLY else "a numeric"
            raise VerifyException(f"'{cls.name}': operand must have {kind} element type, got {e}")
        shape = shape_of(t)
        axes = get_ints(props, "axes")
        if any(not 0 <= a < len(shape) for a in axes) or list(axes) != sorted(set(axes)):
            raise VerifyException(
                f"'{cls.name}': axes {format_shape(axes)} must be sorted, unique and in "
                f"[0, {len(shape)}) for operand {t}"
            )
        if cls.NEEDS_ELEMENTS:
            for a in axes:
                if shape[a] == 0:
                    raise VerifyException(
                        f"'{cls.name}': cannot reduce axis {a} of operand {t}: it has no elements"
                    )
        keep = get_flag(props, "keepdims")
        out = [1 if i in axes else d for i, d in enumerate(shape) if keep or i not in axes]
        return tensor(out, e)

    def reduce_args(self) -> tuple[tuple[int, ...], bool]:
        return get_ints(self.properties, "axes"), get_flag(self.properties, "keepdims")

    def spread(self, ab: AdjointBuilder, v: SSAValue) -> SSAValue:
        """`v`, shaped like this op's result, broadcast back to the operand's shape."""
        axes, _ = self.reduce_args()
        shape = shape_of(ab.operands[0].type)
        kept = tuple(1 if i in axes else d for i, d in enumerate(shape))
        if shape_of(v.type) != kept:
            v = ab.emit(ReshapeOp(v, kept))
        if kept != shape:
            v = ab.emit(BroadcastToOp(v, shape))
        return v


@irdl_op_definition
class SumOp(ReduceOp):
    """Sum over `axes` (f32, f64, i32, i64; floats accumulate in f64, see `wide_sum`).

    %s = ln.sum %x {axes = array<i64: 1>} : tensor<2x3xf32>     // tensor<2xf32>
    """

    name = "ln.sum"

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        axes, keep = self.reduce_args()
        return np.asarray(wide_sum(x, axes, keep), dtype=x.dtype)

    def adjoint(self, ab: AdjointBuilder) -> None:
        ab.accum(0, self.spread(ab, ab.grad))


@irdl_op_definition
class MeanOp(ReduceOp):
    """Arithmetic mean over `axes` (floats only).

    %m = ln.mean %x {axes = array<i64: 0, 1>} : tensor<2x3xf64>   // tensor<f64>
    """

    name = "ln.mean"
    FLOAT_ONLY: ClassVar[bool] = True

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        axes, keep = self.reduce_args()
        # In float64 throughout, as `wide_sum`; rounded once.
        return np.asarray(np.mean(x, axis=axes, keepdims=keep, dtype=np.float64), dtype=x.dtype)

    def adjoint(self, ab: AdjointBuilder) -> None:
        axes, _ = self.reduce_args()
        shape = shape_of(ab.operands[0].type)
        count = math.prod(shape[a] for a in axes)
        if count == 0:
            return  # the operand has no elements, so its adjoint is empty
        # Scale before spreading: the result is the smaller tensor.
        ab.accum(0, self.spread(ab, ab.div(ab.grad, ab.const(float(count), ab.grad))))


@irdl_op_definition
class MaxOp(ReduceOp):
    """Maximum over `axes` (f32, f64, i32, i64); the reduced extents must be non-empty.

    %m = ln.max %x {axes = array<i64: 0>, keepdims} : tensor<2x3xi32>  // tensor<1x3xi32>
    """

    name = "ln.max"
    NEEDS_ELEMENTS: ClassVar[bool] = True

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        axes, keep = self.reduce_args()
        return np.asarray(np.max(x, axis=axes, keepdims=keep))

    def adjoint(self, ab: AdjointBuilder) -> None:
        # A subgradient: each maximum's adjoint is split evenly among the
        # elements equal to it, so tied elements are treated alike and the total
        # is preserved (JAX makes the same choice). Without ties it all goes to
        # the argmax.
        (x,) = ab.operands
        axes, keep = self.reduce_args()
        hit = ab.emit(CastOp(ab.emit(EqOp(x, self.spread(ab, ab.result))), result_type=x.type))
        ties = ab.emit(SumOp(hit, axes=axes, keepdims=keep))
        ab.accum(0, ab.mul(hit, self.spread(ab, ab.div(ab.grad, ties))))


REDUCE_OPS = [SumOp, MeanOp, MaxOp]
