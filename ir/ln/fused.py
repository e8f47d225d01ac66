"""`ln.fused`: a chain of elementwise ops computed in one pass over its result.

The `fuse-elementwise` pass (passes/fuse_elementwise.py) builds these from
chains of elementwise `ln` ops; backends lower one as a single loop nest (cpu)
or a single kernel, so the intermediates of the chain never reach memory.

    %r = ln.fused %a, %b : tensor<4x3xf32>, tensor<3xf32> -> tensor<4x3xf32> {
    ^bb0(%x: tensor<f32>, %y: tensor<f32>):
      %s = ln.mul %x, %y : tensor<f32>, tensor<f32>
      %t = ln.tanh %s : tensor<f32>
      ln.fused_yield %t : tensor<f32>
    }

The operands broadcast (numpy-style) to the result shape. The body is one block
taking one rank-0 tensor per operand, with the operand's element type, and
computes one element of the result with ordinary elementwise `ln` ops on rank-0
tensors; `ln.fused_yield` gives the element, whose type is the result's element
type. The body uses nothing from outside (IsolatedFromAbove).

Semantics: element `i` of the result is the body run on element `i` of each
operand broadcast to the result shape. Since the body's ops are elementwise and
broadcast, the reference `evaluate` runs each of them once on whole arrays.

There is no adjoint rule: fusion runs after `reverse-ad`, on the adjoint
program, so nothing differentiates a fused op.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    irdl_op_definition,
    operand_def,
    region_def,
    traits_def,
    var_operand_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import HasParent, IsolatedFromAbove, IsTerminator, Pure
from xdsl.utils.exceptions import VerifyException

from lanterna.ir.ln.base import LnOp, parse_operands_and_types
from lanterna.ir.ln.elementwise import (
    BinaryOp,
    CastOp,
    ConstantOp,
    FullOp,
    OnesOp,
    SelectOp,
    UnaryOp,
    ZerosOp,
)
from lanterna.ir.types import (
    broadcast_shapes,
    elt,
    expect_tensor,
    format_shape,
    shape_of,
    tensor,
    to_numpy_dtype,
)

# The op families a fused body may hold (on rank-0 tensors).
BODY_OPS: tuple[type[Operation], ...] = (
    BinaryOp,
    UnaryOp,
    SelectOp,
    CastOp,
    ConstantOp,
    ZerosOp,
    OnesOp,
    FullOp,
)


def is_body_op(op: Operation) -> bool:
    return isinstance(op, BODY_OPS)


class BodyIsolatedFromAbove(IsolatedFromAbove):
    """IsolatedFromAbove (so CSE and other passes treat the body as its own
    scope), with a diagnostic that names the fused op and the captured value."""

    def verify(self, op: Operation) -> None:
        for inner in op.walk():
            if inner is op:
                continue
            for v in inner.operands:
                if v.owner is op or not op.is_ancestor(v.owner):
                    name = f"%{v.name_hint}" if v.name_hint else "a value"
                    raise VerifyException(
                        f"'{op.name}': the body uses {name}, defined outside it (in '{inner.name}')"
                    )


@irdl_op_definition
class FusedOp(LnOp):
    """Elementwise ops computed element by element in one pass (see the module
    docstring for the body's rules).

        %r = ln.fused %a, %b : tensor<4x3xf64>, tensor<3xf64> -> tensor<4x3xf64> {
        ^bb0(%x: tensor<f64>, %y: tensor<f64>):
          %s = ln.add %x, %y : tensor<f64>, tensor<f64>
          %e = ln.exp %s : tensor<f64>
          ln.fused_yield %e : tensor<f64>
        }
    """

    name = "ln.fused"
    RESULT_IN_SYNTAX: ClassVar[bool] = True
    inputs = var_operand_def(TensorType)
    body = region_def("single_block")
    traits = traits_def(Pure(), BodyIsolatedFromAbove())

    def __init__(
        self, inputs: Sequence[SSAValue | Operation], result_type: Attribute, body: Region
    ):
        values = [SSAValue.get(v) for v in inputs]
        rt = self.infer_type([v.type for v in values], {}, result_type)
        IRDLOperation.__init__(self, operands=[values], result_types=[rt], regions=[body])

    @staticmethod
    def body_for(inputs: Sequence[SSAValue]) -> Block:
        """An empty body block with one rank-0 argument per input, named after it."""
        block = Block(arg_types=[tensor((), elt(v.type)) for v in inputs])
        for arg, v in zip(block.args, inputs, strict=True):
            if v.name_hint is not None:
                arg.name_hint = v.name_hint
        return block

    @staticmethod
    def of(
        inputs: Sequence[SSAValue],
        result_type: Attribute,
        compute: Callable[[Sequence[SSAValue]], Sequence[Operation]],
    ) -> FusedOp:
        """Build from `compute`, which gets the body's arguments and returns the body's
        ops; the last one's result is the element yielded.

            FusedOp.of([a, b], t, lambda xy: [s := MulOp(*xy), TanhOp(s)])
        """
        block = FusedOp.body_for(inputs)
        ops = list(compute(block.args))
        block.add_ops([*ops, FusedYieldOp(ops[-1].results[0])])
        return FusedOp(inputs, result_type, Region(block))

    # --- the type rule ----------------------------------------------------------------------

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        if result_type is None:
            raise VerifyException(f"'{cls.name}' needs an explicit result type")
        rt = expect_tensor(cls.name, "result", result_type)
        out = shape_of(rt)
        for i, t in enumerate(operand_types):
            if broadcast_shapes(shape_of(t), out) != out:
                raise VerifyException(
                    f"'{cls.name}': operand #{i} of shape {format_shape(shape_of(t))} does not "
                    f"broadcast to the result shape {format_shape(out)}"
                )
        return rt

    def verify_(self) -> None:
        super().verify_()
        block = self.body.block
        if len(block.args) != len(self.inputs):
            raise VerifyException(
                f"'{self.name}': the body takes {len(block.args)} arguments for "
                f"{len(self.inputs)} operands"
            )
        for i, (arg, v) in enumerate(zip(block.args, self.inputs, strict=True)):
            want = tensor((), elt(v.type))
            if arg.type != want:
                raise VerifyException(
                    f"'{self.name}': body argument #{i} has type {arg.type}, expected {want} "
                    f"for operand #{i} ({v.type})"
                )
        term = block.last_op
        if not isinstance(term, FusedYieldOp):
            raise VerifyException(f"'{self.name}': the body must end in 'ln.fused_yield'")
        want = tensor((), elt(self.result.type))
        if term.value.type != want:
            raise VerifyException(
                f"'{self.name}': the body yields {term.value.type}, expected {want} for the "
                f"result {self.result.type}"
            )
        for op in block.ops:
            if op is term:
                continue
            if not is_body_op(op):
                raise VerifyException(
                    f"'{self.name}': '{op.name}' is not an elementwise op and cannot be fused"
                )
            for r in op.results:
                if shape_of(r.type) != ():
                    raise VerifyException(
                        f"'{self.name}': body op '{op.name}' has result type {r.type}; the body "
                        "computes on rank-0 tensors"
                    )

    # --- semantics --------------------------------------------------------------------------

    def evaluate(self, *args: np.ndarray) -> np.ndarray:
        block = self.body.block
        env: dict[SSAValue, np.ndarray] = dict(zip(block.args, args, strict=True))
        for op in block.ops:
            if isinstance(op, FusedYieldOp):
                out = env[op.value]
                t = self.result.type
                dtype = to_numpy_dtype(elt(t))
                # A copy, never a view of an input (an operand may be yielded as is).
                return np.array(np.broadcast_to(out, shape_of(t)), dtype=dtype)
            assert isinstance(op, LnOp)
            value = op.evaluate(*(env[o] for o in op.operands))
            env[op.result] = np.asarray(value, dtype=to_numpy_dtype(elt(op.result.type)))
        raise VerifyException(f"'{self.name}': the body has no 'ln.fused_yield'")

    # --- syntax -----------------------------------------------------------------------------
    # `ln.fused %a, %b {attrs} : type(%a), type(%b) -> result type { body }`

    @classmethod
    def parse(cls, parser: Parser) -> FusedOp:
        start = parser.pos
        unresolved, attrs, types = parse_operands_and_types(cls.name, parser)
        if unresolved:
            parser.parse_punctuation("->")
        result_type = parser.parse_type()
        end = parser.pos
        operands = parser.resolve_operands(unresolved, types, end)
        try:
            for i, t in enumerate(types):
                expect_tensor(cls.name, f"operand #{i}", t)
            rt = cls.infer_type(types, {}, result_type)
        except VerifyException as e:
            parser.raise_error(str(e), start, end)
        body = parser.parse_region()
        return cls.create(
            operands=list(operands), result_types=[rt], regions=[body], attributes=attrs
        )

    def print(self, printer: Printer) -> None:
        if self.operands:
            printer.print_string(" ")
            printer.print_list(self.operands, printer.print_operand)
        if self.attributes:
            printer.print_string(" ")
            printer.print_attr_dict(self.attributes)
        printer.print_string(" : ")
        if self.operands:
            printer.print_list([o.type for o in self.operands], printer.print_attribute)
            printer.print_string(" -> ")
        printer.print_attribute(self.result.type)
        printer.print_string(" ")
        printer.print_region(self.body)


@irdl_op_definition
class FusedYieldOp(IRDLOperation):
    """The element a fused body computes.

    ln.fused_yield %t : tensor<f32>
    """

    name = "ln.fused_yield"
    value = operand_def(TensorType)
    traits = traits_def(IsTerminator(), HasParent(FusedOp), Pure())

    assembly_format = "$value attr-dict `:` type($value)"

    def __init__(self, value: SSAValue | Operation):
        super().__init__(operands=[SSAValue.get(value)])


FUSED_OPS = [FusedOp]
