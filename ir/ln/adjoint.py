"""What an op's adjoint rule sees, and the helpers rules share.

The `reverse-ad` pass rewrites each differentiable op into a `cont.shift` whose
body computes the op, resumes the continuation, loads the result's complete
adjoint, and then calls the op's rule:

    class MulOp(BinaryOp):
        def adjoint(self, ab: AdjointBuilder) -> None:
            a, b = ab.operands
            ab.accum(0, ab.mul(ab.grad, b))
            ab.accum(1, ab.mul(ab.grad, a))

`accum` reduces a contribution back to the operand's shape (un-broadcasting)
and skips operands that carry no adjoint (integers, masks, values that do not
depend on the differentiated arguments), so rules never special-case them.
`wants(i)` lets a rule skip computing a contribution nobody needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from xdsl.builder import Builder
from xdsl.dialects.builtin import TensorType
from xdsl.ir import Attribute, Operation, SSAValue

from lanterna.ir.types import elt, is_float, shape_of, tensor


class MissingAdjointRule(NotImplementedError):
    """A differentiable op has no adjoint rule."""


class AdjointBuilder:
    """The context of one adjoint rule: forward values, the result's adjoint, and
    a way to accumulate into each operand's cell."""

    def __init__(
        self,
        builder: Builder,
        operands: Sequence[SSAValue],
        result: SSAValue,
        grad: SSAValue,
        accumulate: Callable[[int, SSAValue], None],
        wants: Callable[[int], bool],
    ):
        self.builder = builder
        self.operands = list(operands)
        self.result = result
        self.grad = grad
        self._accumulate = accumulate
        self._wants = wants

    # --- the two things a rule does --------------------------------------------------------

    def wants(self, i: int) -> bool:
        """Whether operand i has an adjoint cell (is differentiated)."""
        return self._wants(i)

    def accum(self, i: int, contribution: SSAValue) -> None:
        """Add `contribution` to operand i's adjoint, un-broadcasting it first."""
        if not self._wants(i):
            return
        target = self.operands[i].type
        self._accumulate(i, self.unbroadcast(contribution, shape_of(target)))

    # --- building blocks -----------------------------------------------------------------

    def emit(self, op: Operation) -> SSAValue:
        self.builder.insert(op)
        return op.results[0]

    def const(self, value: float, like: SSAValue) -> SSAValue:
        """A rank-0 constant with `like`'s element type."""
        from lanterna.ir.ln.elementwise import FullOp

        return self.emit(FullOp(value, tensor((), elt(like.type))))

    def unbroadcast(self, value: SSAValue, shape: tuple[int, ...]) -> SSAValue:
        """Sum `value` over the axes numpy broadcasting added to reach its shape."""
        from lanterna.ir.ln.reduce import SumOp
        from lanterna.ir.ln.shape import ReshapeOp

        have = shape_of(value.type)
        if have == tuple(shape):
            return value
        lead = len(have) - len(shape)
        axes = list(range(lead)) + [
            lead + i for i, d in enumerate(shape) if d == 1 and have[lead + i] != 1
        ]
        if axes:
            value = self.emit(SumOp(value, axes=tuple(axes), keepdims=False))
        if shape_of(value.type) != tuple(shape):
            value = self.emit(ReshapeOp(value, tensor(shape, elt(value.type))))
        return value

    def _binary(self, cls: Any, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.emit(cls(a, b))

    def add(self, a: SSAValue, b: SSAValue) -> SSAValue:
        from lanterna.ir.ln.elementwise import AddOp

        return self._binary(AddOp, a, b)

    def sub(self, a: SSAValue, b: SSAValue) -> SSAValue:
        from lanterna.ir.ln.elementwise import SubOp

        return self._binary(SubOp, a, b)

    def mul(self, a: SSAValue, b: SSAValue) -> SSAValue:
        from lanterna.ir.ln.elementwise import MulOp

        return self._binary(MulOp, a, b)

    def div(self, a: SSAValue, b: SSAValue) -> SSAValue:
        from lanterna.ir.ln.elementwise import DivOp

        return self._binary(DivOp, a, b)

    def neg(self, a: SSAValue) -> SSAValue:
        from lanterna.ir.ln.elementwise import NegOp

        return self.emit(NegOp(a))

    def select(self, c: SSAValue, a: SSAValue, b: SSAValue) -> SSAValue:
        from lanterna.ir.ln.elementwise import SelectOp

        return self.emit(SelectOp(c, a, b))

    def zeros_like(self, v: SSAValue) -> SSAValue:
        from lanterna.ir.ln.elementwise import ZerosOp

        return self.emit(ZerosOp(result_type=v.type))


def is_differentiable_type(t: Attribute) -> bool:
    """Float tensors carry adjoints; integers, masks and scalars do not."""
    return isinstance(t, TensorType) and is_float(t.element_type)
