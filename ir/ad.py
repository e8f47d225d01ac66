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

from xdsl.dialects.builtin import AnyFloat, IntegerAttr, TensorType, UnitAttr, i64
from xdsl.ir import Attribute, Dialect, ParametrizedAttribute, SSAValue, TypeAttribute
from xdsl.irdl import (
    IRDLOperation,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    prop_def,
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


# --- accumulation forms chosen by the lowering passes -------------------------------------
#
# None of these is made by reverse mode itself: `accumulate-products`,
# `accumulate-pieces` and (cpu only) `defer-products` rewrite `ad.accum`s into
# them, so the way a contribution reaches its cell is IR a backend prints.


class _CellUpdateOp(IRDLOperation):
    """`<op> %cell, %x, ... {props} : !ad.cell<T>, type(%x), ...`: writes into the
    cell (the first operand) from the other operands; no results."""

    @classmethod
    def parse(cls, parser: Parser) -> IRDLOperation:
        start = parser.pos
        unresolved = parser.parse_comma_separated_list(
            parser.Delimiter.NONE, parser.parse_unresolved_operand
        )
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        pos = parser.pos
        types = parser.parse_comma_separated_list(parser.Delimiter.NONE, parser.parse_type)
        if len(types) != len(unresolved):
            parser.raise_error(
                f"'{cls.name}' has {len(unresolved)} operands but {len(types)} types",
                start,
                parser.pos,
            )
        if not isinstance(types[0], CellType):
            parser.raise_error(f"'{cls.name}' writes into a cell, got {types[0]}", pos, parser.pos)
        operands = parser.resolve_operands(unresolved, types, parser.pos)
        names = cls.get_irdl_definition().properties
        return cls.create(
            operands=list(operands),
            properties={k: v for k, v in attrs.items() if k in names},
            attributes={k: v for k, v in attrs.items() if k not in names},
        )

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_list(self.operands, printer.print_operand)
        attrs = {**self.properties, **self.attributes}
        if attrs:
            printer.print_string(" ")
            printer.print_attr_dict(attrs)
        printer.print_string(" : ")
        printer.print_list([o.type for o in self.operands], printer.print_attribute)


def _flag(op: IRDLOperation, name: str) -> bool:
    return isinstance(op.properties.get(name), UnitAttr)


@irdl_op_definition
class AccumMatmulOp(_CellUpdateOp):
    """Adds a matrix product into a cell, in place: cell += op(a) @ op(b), with
    op(x) = x^T under `{transpose_a}` / `{transpose_b}`. One GEMM with beta = 1:
    the product is never a buffer of its own.

        ad.accum_matmul %c, %a, %b {transpose_a} : !ad.cell<tensor<2x4xf32>>, tensor<3x2xf32>, tensor<3x4xf32>

    `{deferred}` (set by the cpu-only `defer-products`) logs the product instead:
    it reaches the cell's value at the next `ad.flush_products` of the cell, and a
    load before that is an error.
    """

    name = "ad.accum_matmul"
    cell = operand_def(CellType)
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    transpose_a = opt_prop_def(UnitAttr)
    transpose_b = opt_prop_def(UnitAttr)
    deferred = opt_prop_def(UnitAttr)
    traits = traits_def(MemoryReadEffect(), MemoryWriteEffect())

    def __init__(
        self,
        cell: SSAValue | IRDLOperation,
        lhs: SSAValue | IRDLOperation,
        rhs: SSAValue | IRDLOperation,
        *,
        transpose_a: bool = False,
        transpose_b: bool = False,
        deferred: bool = False,
    ):
        flags = {"transpose_a": transpose_a, "transpose_b": transpose_b, "deferred": deferred}
        super().__init__(
            operands=[SSAValue.get(cell), SSAValue.get(lhs), SSAValue.get(rhs)],
            properties={k: UnitAttr() for k, on in flags.items() if on},
        )

    @property
    def transposes(self) -> tuple[bool, bool]:
        return _flag(self, "transpose_a"), _flag(self, "transpose_b")

    @property
    def is_deferred(self) -> bool:
        return _flag(self, "deferred")

    def dims(self) -> tuple[int, int, int]:
        """(m, n, k): the cell is m x n, the product's contracting extent k."""
        m, n = self.cell.type.elem.get_shape()  # type: ignore[attr-defined]
        sa = self.lhs.type.get_shape()  # type: ignore[attr-defined]
        return m, n, sa[0] if self.transposes[0] else sa[1]

    def verify_(self) -> None:
        elem = self.cell.type.elem  # type: ignore[attr-defined]
        a, b = self.lhs.type, self.rhs.type
        assert isinstance(elem, TensorType) and isinstance(a, TensorType)
        assert isinstance(b, TensorType)
        if not (len(elem.get_shape()) == len(a.get_shape()) == len(b.get_shape()) == 2):
            raise VerifyException(
                f"'{self.name}': the cell and both operands must be matrices, got "
                f"{self.cell.type}, {a} and {b}"
            )
        if not isinstance(elem.element_type, AnyFloat):
            raise VerifyException(f"'{self.name}': {self.cell.type} is not a float cell")
        if a.element_type != elem.element_type or b.element_type != elem.element_type:
            raise VerifyException(
                f"'{self.name}': operands {a} and {b} do not match the element type of "
                f"{self.cell.type}"
            )
        ta, tb = self.transposes
        sa, sb = a.get_shape(), b.get_shape()
        (m, ka), (kb, n) = (sa[::-1] if ta else sa), (sb[::-1] if tb else sb)
        if ka != kb:
            raise VerifyException(
                f"'{self.name}': lhs {a} and rhs {b} have incompatible contracting "
                f"dimensions {ka} and {kb}"
            )
        if (m, n) != tuple(elem.get_shape()):
            raise VerifyException(
                f"'{self.name}': the product is {m}x{n} but the cell holds {elem}"
            )


@irdl_op_definition
class AccumSliceOp(_CellUpdateOp):
    """Adds a value into a range of a cell along one axis, in place:
    cell[..., offset : offset + piece.shape[axis], ...] += piece.

        ad.accum_slice %c, %g {axis = 1 : i64, offset = 3 : i64} : !ad.cell<tensor<2x5xf32>>, tensor<2x2xf32>

    `accumulate-pieces` makes these of an accumulated concatenation with zero
    pieces (a slice's adjoint): only the nonzero pieces are added, and the
    concatenation is never built.
    """

    name = "ad.accum_slice"
    cell = operand_def(CellType)
    piece = operand_def(TensorType)
    axis = prop_def(IntegerAttr)
    offset = prop_def(IntegerAttr)
    traits = traits_def(MemoryReadEffect(), MemoryWriteEffect())

    def __init__(
        self,
        cell: SSAValue | IRDLOperation,
        piece: SSAValue | IRDLOperation,
        axis: int,
        offset: int,
    ):
        super().__init__(
            operands=[SSAValue.get(cell), SSAValue.get(piece)],
            properties={"axis": IntegerAttr(axis, i64), "offset": IntegerAttr(offset, i64)},
        )

    @property
    def range(self) -> tuple[int, int]:
        """(axis, offset)."""
        return self.axis.value.data, self.offset.value.data

    def verify_(self) -> None:
        elem = self.cell.type.elem  # type: ignore[attr-defined]
        piece = self.piece.type
        assert isinstance(elem, TensorType) and isinstance(piece, TensorType)
        axis, offset = self.range
        cell_shape, shape = elem.get_shape(), piece.get_shape()
        if piece.element_type != elem.element_type:
            raise VerifyException(
                f"'{self.name}': piece {piece} does not match the element type of {self.cell.type}"
            )
        if len(shape) != len(cell_shape) or not 0 <= axis < len(shape):
            raise VerifyException(
                f"'{self.name}': axis {axis} of piece {piece} into {self.cell.type}: ranks "
                f"{len(shape)} and {len(cell_shape)}"
            )
        others_match = all(
            d == c for i, (d, c) in enumerate(zip(shape, cell_shape, strict=True)) if i != axis
        )
        if not others_match or not 0 <= offset <= cell_shape[axis] - shape[axis]:
            raise VerifyException(
                f"'{self.name}': piece {piece} at offset {offset} of axis {axis} does not fit "
                f"in {self.cell.type}"
            )


class _PendingOp(_CellUpdateOp):
    """`<op> %cell : !ad.cell<T>`: acts on the products logged for the cell."""

    cell = operand_def(CellType)
    traits = traits_def(MemoryReadEffect(), MemoryWriteEffect())

    def __init__(self, cell: SSAValue | IRDLOperation):
        super().__init__(operands=[SSAValue.get(cell)])


@irdl_op_definition
class FlushProductsOp(_PendingOp):
    """Adds the products logged for the cell (`ad.accum_matmul {deferred}`) into
    it; `defer-products` puts one before every load of a cell that may have some.

        ad.flush_products %c : !ad.cell<tensor<128x160xf32>>
    """

    name = "ad.flush_products"


@irdl_op_definition
class DropProductsOp(_PendingOp):
    """Forgets what is logged for the cell. A new cell has nothing logged; the
    cpu runtime keys its log by address, and a new cell may get the address of a
    dead one whose log was never flushed, so `defer-products` puts one after every
    new cell of a type some product is logged for.

        ad.drop_products %c : !ad.cell<tensor<128x160xf32>>
    """

    name = "ad.drop_products"


AD_OPS = [
    ZeroLikeOp,
    AccumOp,
    LoadOp,
    CellFromOp,
    ZeroCellOp,
    StackOp,
    PushOp,
    PopOp,
    AccumMatmulOp,
    AccumSliceOp,
    FlushProductsOp,
    DropProductsOp,
]
AD_TYPES = [CellType, StackType]

AD = Dialect("ad", AD_OPS, AD_TYPES)
