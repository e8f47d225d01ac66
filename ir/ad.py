"""The `ad` dialect: adjoint cells, the mutable accumulators of reverse mode.

Every differentiable SSA value `%v` is paired with a cell holding its adjoint
(Lantern's `TensorR(x, d)`). Adjoint rules `accum` contributions into cells in
place; a cell is read with `load` once all contributions are in, which in the
continuation-passing form is exactly when the resumed continuation returns.

    %c = ad.zero_like %v : tensor<3xf32>
    ad.accum %c, %g : !ad.cell<tensor<3xf32>>
    %g2 = ad.load %c : !ad.cell<tensor<3xf32>>

`ad.cell_from` makes a cell that starts out holding a value instead of zeros;
`elide-zero-adjoints` turns a fresh cell's first `accum` into one, so no
zero-filled buffer is made only to be added to. `ad.zero_cell` is a zero cell
made from a type alone, for code that no longer has the value at hand (the
backward loop made by `reverse-loops`).

Stacks (`!ad.stack<T>`) hold what a backward loop needs from its forward loop:
the forward loop pushes, the backward loop pops in reverse order.

    %s = ad.stack : tensor<3xf32>
    ad.push %s, %v : !ad.stack<tensor<3xf32>>
    %v2 = ad.pop %s : !ad.stack<tensor<3xf32>>
"""

from __future__ import annotations

from typing import ClassVar

from xdsl.dialects.builtin import TensorType
from xdsl.ir import Attribute, Dialect, ParametrizedAttribute, SSAValue, TypeAttribute
from xdsl.irdl import (
    IRDLOperation,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    result_def,
    traits_def,
)
from xdsl.parser import AttrParser, Parser
from xdsl.printer import Printer
from xdsl.traits import MemoryAllocEffect, MemoryReadEffect, MemoryWriteEffect
from xdsl.utils.exceptions import VerifyException


class _ContainerType(ParametrizedAttribute, TypeAttribute):
    """`!ad.<kind><T>`: a type holding values of one element type T (`elem`)."""

    def __init__(self, elem: Attribute):
        super().__init__(elem)

    def print_parameters(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            printer.print_attribute(self.elem)  # type: ignore[attr-defined]


@irdl_attr_definition
class CellType(_ContainerType):
    """`!ad.cell<T>`: a mutable accumulator of values of tensor type T."""

    name = "ad.cell"
    elem: Attribute

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> tuple[Attribute]:
        with parser.in_angle_brackets():
            pos = parser.pos
            elem = parser.parse_type()
            if not isinstance(elem, TensorType):
                parser.raise_error(f"!ad.cell holds a tensor type, got {elem}", pos, parser.pos)
            return (elem,)

    def verify(self) -> None:
        if not isinstance(self.elem, TensorType):
            raise VerifyException(f"!ad.cell holds a tensor type, got {self.elem}")


class _NewCellOp(IRDLOperation):
    """An op making a fresh cell for its operand's type; its custom syntax is
    `%c = ad.<op> %v : T`, the result type following from the operand's."""

    value = operand_def(TensorType)
    cell = result_def(CellType)
    traits = traits_def(MemoryAllocEffect())

    def __init__(self, value: SSAValue | IRDLOperation):
        v = SSAValue.get(value)
        super().__init__(operands=[v], result_types=[CellType(v.type)])

    def verify_(self) -> None:
        if self.cell.type != CellType(self.value.type):
            raise VerifyException(
                f"'{self.name}': result {self.cell.type} must be !ad.cell<{self.value.type}>"
            )

    @classmethod
    def parse(cls, parser: Parser) -> IRDLOperation:
        return _parse_new_cell(cls, parser)

    def print(self, printer: Printer) -> None:
        _print_new_cell(self, printer)


@irdl_op_definition
class ZeroLikeOp(_NewCellOp):
    """A fresh cell holding zeros of the operand's type.

    %c = ad.zero_like %v : tensor<3xf32>
    """

    name = "ad.zero_like"


class _PutOp(IRDLOperation):
    """`<op> %into, %value {attrs} : <container type>`: puts a value of the
    container's element type into a cell or a stack (the first operand)."""

    WHAT: ClassVar[str]
    CONTAINER: ClassVar[type[Attribute]]

    def __init__(self, into: SSAValue | IRDLOperation, value: SSAValue | IRDLOperation):
        super().__init__(operands=[SSAValue.get(into), SSAValue.get(value)])

    def verify_(self) -> None:
        into, value = self.operands
        elem = into.type.elem  # type: ignore[attr-defined]
        if elem != value.type:
            raise VerifyException(
                f"'{self.name}': value has type {value.type} but the {self.WHAT} holds {elem}"
            )

    @classmethod
    def parse(cls, parser: Parser) -> IRDLOperation:
        into = parser.parse_unresolved_operand()
        parser.parse_punctuation(",")
        v = parser.parse_unresolved_operand()
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        t = _parse_container_type(parser, cls.CONTAINER)
        op = cls(parser.resolve_operand(into, t), parser.resolve_operand(v, t.elem))  # type: ignore[attr-defined]
        op.attributes.update(attrs)
        return op

    def print(self, printer: Printer) -> None:
        into, value = self.operands
        printer.print_string(" ")
        printer.print_operand(into)
        printer.print_string(", ")
        printer.print_operand(value)
        printer.print_op_attributes(self.attributes)
        printer.print_string(" : ")
        printer.print_attribute(into.type)


class _TakeOp(IRDLOperation):
    """`%v = <op> %from {attrs} : <container type>`: a value of the container's
    element type taken from a cell or a stack."""

    WHAT: ClassVar[str]
    CONTAINER: ClassVar[type[Attribute]]

    def __init__(self, source: SSAValue | IRDLOperation):
        src = SSAValue.get(source)
        container = src.type
        assert isinstance(container, self.CONTAINER)
        super().__init__(operands=[src], result_types=[container.elem])  # type: ignore[attr-defined]

    def verify_(self) -> None:
        elem = self.operands[0].type.elem  # type: ignore[attr-defined]
        if elem != self.results[0].type:
            raise VerifyException(
                f"'{self.name}': result {self.results[0].type} does not match the "
                f"{self.WHAT}'s {elem}"
            )

    @classmethod
    def parse(cls, parser: Parser) -> IRDLOperation:
        source = parser.parse_unresolved_operand()
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        t = _parse_container_type(parser, cls.CONTAINER)
        op = cls(parser.resolve_operand(source, t))
        op.attributes.update(attrs)
        return op

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_operand(self.operands[0])
        printer.print_op_attributes(self.attributes)
        printer.print_string(" : ")
        printer.print_attribute(self.operands[0].type)


def _parse_container_type(parser: Parser, kind: type[Attribute]) -> Attribute:
    pos = parser.pos
    t = parser.parse_type()
    if not isinstance(t, kind):
        name = kind.name  # type: ignore[attr-defined]
        parser.raise_error(f"expected an !{name}<...> type, got {t}", pos, parser.pos)
    return t


@irdl_op_definition
class AccumOp(_PutOp):
    """Adds a contribution into a cell, in place.

    ad.accum %c, %g : !ad.cell<tensor<3xf32>>
    """

    name = "ad.accum"
    WHAT: ClassVar[str] = "cell"
    CONTAINER: ClassVar[type[Attribute]] = CellType
    cell = operand_def(CellType)
    value = operand_def(TensorType)
    traits = traits_def(MemoryReadEffect(), MemoryWriteEffect())


@irdl_op_definition
class LoadOp(_TakeOp):
    """Reads a cell's current value.

    %g = ad.load %c : !ad.cell<tensor<3xf32>>
    """

    name = "ad.load"
    WHAT: ClassVar[str] = "cell"
    CONTAINER: ClassVar[type[Attribute]] = CellType
    cell = operand_def(CellType)
    value = result_def(TensorType)
    traits = traits_def(MemoryReadEffect())


@irdl_op_definition
class CellFromOp(_NewCellOp):
    """A fresh cell holding a copy of the operand: `ad.zero_like` followed by
    `ad.accum` of the operand, without the zeros.

        %c = ad.cell_from %g : tensor<3xf32>
    """

    name = "ad.cell_from"


def _parse_new_cell(cls: type[_NewCellOp], parser: Parser) -> IRDLOperation:
    """`%c = ad.<op> %v {attrs} : T`, the syntax of the ops that make a cell."""
    v = parser.parse_unresolved_operand()
    attrs = parser.parse_optional_attr_dict()
    parser.parse_punctuation(":")
    pos = parser.pos
    t = parser.parse_type()
    if not isinstance(t, TensorType):
        parser.raise_error(f"'{cls.name}' expects a tensor operand, got {t}", pos, parser.pos)
    op = cls(parser.resolve_operand(v, t))
    op.attributes.update(attrs)
    return op


def _print_new_cell(op: _NewCellOp, printer: Printer) -> None:
    printer.print_string(" ")
    printer.print_operand(op.value)
    printer.print_op_attributes(op.attributes)
    printer.print_string(" : ")
    printer.print_attribute(op.value.type)


class _NewContainerOp(IRDLOperation):
    """`%r = <op> {attrs} : T`: a fresh cell or stack of elements of type T."""

    CONTAINER: ClassVar[type[Attribute]]

    def __init__(self, elem: Attribute):
        super().__init__(result_types=[self.CONTAINER(elem)])  # type: ignore[call-arg]

    @classmethod
    def parse(cls, parser: Parser) -> IRDLOperation:
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        pos = parser.pos
        t = parser.parse_type()
        if cls.CONTAINER is CellType and not isinstance(t, TensorType):
            parser.raise_error(
                f"'{cls.name}' makes a cell of a tensor type, got {t}", pos, parser.pos
            )
        op = cls(t)
        op.attributes.update(attrs)
        return op

    def print(self, printer: Printer) -> None:
        printer.print_op_attributes(self.attributes)
        printer.print_string(" : ")
        printer.print_attribute(self.results[0].type.elem)  # type: ignore[attr-defined]


@irdl_op_definition
class ZeroCellOp(_NewContainerOp):
    """A fresh cell holding zeros of a tensor type.

    %c = ad.zero_cell : tensor<3xf32>
    """

    name = "ad.zero_cell"
    CONTAINER: ClassVar[type[Attribute]] = CellType
    cell = result_def(CellType)
    traits = traits_def(MemoryAllocEffect())


@irdl_attr_definition
class StackType(_ContainerType):
    """`!ad.stack<T>`: a last-in first-out stack of values of type T."""

    name = "ad.stack"
    elem: Attribute

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> tuple[Attribute]:
        with parser.in_angle_brackets():
            return (parser.parse_type(),)


@irdl_op_definition
class StackOp(_NewContainerOp):
    """A fresh, empty stack of values of one type.

    %s = ad.stack : tensor<3xf32>
    """

    name = "ad.stack"
    CONTAINER: ClassVar[type[Attribute]] = StackType
    stack = result_def(StackType)
    traits = traits_def(MemoryAllocEffect())


@irdl_op_definition
class PushOp(_PutOp):
    """Pushes a value onto a stack.

    ad.push %s, %v : !ad.stack<tensor<3xf32>>
    """

    name = "ad.push"
    WHAT: ClassVar[str] = "stack"
    CONTAINER: ClassVar[type[Attribute]] = StackType
    stack = operand_def(StackType)
    value = operand_def()
    traits = traits_def(MemoryReadEffect(), MemoryWriteEffect())


@irdl_op_definition
class PopOp(_TakeOp):
    """Pops the value pushed last; popping an empty stack is a runtime error.

    %v = ad.pop %s : !ad.stack<tensor<3xf32>>
    """

    name = "ad.pop"
    WHAT: ClassVar[str] = "stack"
    CONTAINER: ClassVar[type[Attribute]] = StackType
    stack = operand_def(StackType)
    value = result_def()
    traits = traits_def(MemoryReadEffect(), MemoryWriteEffect())


AD_OPS = [ZeroLikeOp, AccumOp, LoadOp, CellFromOp, ZeroCellOp, StackOp, PushOp, PopOp]
AD_TYPES = [CellType, StackType]

AD = Dialect("ad", AD_OPS, AD_TYPES)
