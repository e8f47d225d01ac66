"""The `buf` dialect: buffer decisions made explicit, for a backend to print.

Tensors are immutable values, and until `plan-buffers` (passes/plan_buffers.py)
the IR says nothing about where they live. That pass, the last of a backend's
pipeline, writes its decisions down with the ops and the attribute below; a
backend prints them and decides nothing about buffers itself.

* `buf.release %v`: from here on `%v`'s buffer may be reused for another value.
  `%v` (and every view of it) is not used after.

      %y = ln.tanh %x : tensor<3xf32>
      %z = ln.mul %y, %y : tensor<3xf32>, tensor<3xf32>
      buf.release %y : tensor<3xf32>

* `%c = buf.take_cell %x`: a cell that starts out holding `%x`, in `%x`'s own
  buffer (`ad.cell_from` without the copy). `%x` is not used after.

      %c = buf.take_cell %g : tensor<3xf32>          // !ad.cell<tensor<3xf32>>

* `%v = buf.take_load %c`: the cell's final value, in the cell's own buffer
  (`ad.load` without the copy). The cell is not used after.

      %v = buf.take_load %c : !ad.cell<tensor<3xf32>>

* `{buf.output = j : i64}` on the op making a result that the entry function
  returns as its result #j: the op writes that result straight into the caller's
  output #j instead of a buffer of its own that would be copied there.

      %l = ln.sum %p {axes = array<i64: 0>, buf.output = 0 : i64} : tensor<8xf32>
      func.return %l : tensor<f32>

  An attribute rather than an op: it changes where the producing op writes, so it
  belongs on that op, where a printer reads it without looking anywhere else (an
  op after the producer could only say so after the fact; a destination operand
  would have to be added to every tensor op). `verify_output_slots` checks it.

`storage(op)` says what buffer an op's result has: a fresh one, a view of its
operand's, static data, or none. It is a fact about the op, read by both the pass
and the backends' printers, so the two cannot disagree.
"""

from __future__ import annotations

from enum import Enum

from xdsl.dialects import arith, builtin, func
from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, IntegerAttr, IntegerType, TensorType
from xdsl.ir import Attribute, Block, Dialect, Operation, SSAValue
from xdsl.irdl import IRDLOperation, irdl_op_definition, operand_def, result_def, traits_def
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import MemoryAllocEffect, MemoryReadEffect, MemoryWriteEffect
from xdsl.utils.exceptions import VerifyException

from lanterna.ir import ad, ln
from lanterna.ir.ln.base import get_ints

# --- what buffer an op's result has ---------------------------------------------------------


class Storage(Enum):
    """Where an op's (first) result lives."""

    NONE = "none"  # no buffer of its own: scalars, cells' contents, call and region results
    FRESH = "fresh"  # a new buffer the op allocates for the result alone
    VIEW = "view"  # operand #0's buffer under another name (values are immutable)
    STATIC = "static"  # constant data, never freed
    TAKEN = "taken"  # operand #0's buffer, taken over (`buf.take_cell`, `buf.take_load`)


def storage(op: Operation) -> Storage:
    """What buffer `op`'s result has; see `Storage`."""
    if isinstance(op, TakeCellOp | TakeLoadOp):
        return Storage.TAKEN
    if isinstance(op, ad.ZeroLikeOp | ad.ZeroCellOp | ad.CellFromOp | ad.LoadOp):
        return Storage.FRESH  # a cell's buffer; a load is a snapshot copy
    if isinstance(op, ln.ConstantOp):
        return Storage.STATIC
    if isinstance(op, arith.ConstantOp):
        dense = isinstance(op.value, DenseIntOrFPElementsAttr)
        return Storage.STATIC if dense else Storage.NONE
    if op.dialect_name() != "ln" or isinstance(op, ln.CheckpointOp):
        return Storage.NONE
    if not op.results or not isinstance(op.results[0].type, TensorType):
        return Storage.NONE  # ln.item: a scalar
    if _is_view(op):
        return Storage.VIEW
    return Storage.FRESH


def _is_view(op: Operation) -> bool:
    if isinstance(op, ln.ReshapeOp):
        return True
    if isinstance(op, ln.TransposeOp):
        perm = list(get_ints(op.properties, "perm"))
        return perm == sorted(perm)
    if isinstance(op, ln.BroadcastToOp):
        return op.operands[0].type == op.results[0].type
    if isinstance(op, ln.SumOp | ln.MeanOp | ln.MaxOp):
        return not get_ints(op.properties, "axes")
    return False


# --- ops ------------------------------------------------------------------------------------


def _check_not_used_after(op: Operation, v: SSAValue, what: str) -> None:
    """`v` has no use after `op` in `op`'s block (a use in a later op's region counts)."""
    block = op.parent_block()
    if block is None:
        return
    at = block.get_operation_index(op)
    for use in v.uses:
        user: Operation | None = use.operation
        while user is not None and user.parent_block() is not block:
            user = user.parent_op()
        if user is not None and user is not op and block.get_operation_index(user) > at:
            raise VerifyException(
                f"'{op.name}': %{v.name_hint or '?'} is used by '{use.operation.name}' after {what}"
            )


def _parse_typed_operand(parser: Parser) -> tuple[SSAValue, dict[str, Attribute]]:
    operand = parser.parse_unresolved_operand()
    attrs = parser.parse_optional_attr_dict()
    parser.parse_punctuation(":")
    t = parser.parse_type()
    return parser.resolve_operand(operand, t), attrs


def _print_typed_operand(op: Operation, printer: Printer) -> None:
    printer.print_string(" ")
    printer.print_operand(op.operands[0])
    printer.print_op_attributes(op.attributes)
    printer.print_string(" : ")
    printer.print_attribute(op.operands[0].type)


@irdl_op_definition
class ReleaseOp(IRDLOperation):
    """From here on the buffer of `%v` (a tensor or a cell) may be reused.

    buf.release %v : tensor<3xf32>
    """

    name = "buf.release"
    value = operand_def(TensorType | ad.CellType)
    # No memory-effect trait: an op of unknown effects is never removed as dead.

    def __init__(self, value: SSAValue | Operation):
        super().__init__(operands=[SSAValue.get(value)])

    def verify_(self) -> None:
        _check_not_used_after(self, self.value, "its buffer is released")

    @classmethod
    def parse(cls, parser: Parser) -> ReleaseOp:
        value, attrs = _parse_typed_operand(parser)
        op = cls(value)
        op.attributes.update(attrs)
        return op

    def print(self, printer: Printer) -> None:
        _print_typed_operand(self, printer)


@irdl_op_definition
class TakeCellOp(IRDLOperation):
    """A cell holding `%x`, made of `%x`'s own buffer: `%x` is not used after.

    %c = buf.take_cell %x : tensor<3xf32>
    """

    name = "buf.take_cell"
    value = operand_def(TensorType)
    cell = result_def(ad.CellType)
    traits = traits_def(MemoryAllocEffect())

    def __init__(self, value: SSAValue | Operation):
        v = SSAValue.get(value)
        super().__init__(operands=[v], result_types=[ad.CellType(v.type)])

    def verify_(self) -> None:
        if self.cell.type != ad.CellType(self.value.type):
            raise VerifyException(
                f"'{self.name}': result {self.cell.type} must be !ad.cell<{self.value.type}>"
            )
        _check_not_used_after(self, self.value, "a cell took its buffer over")

    @classmethod
    def parse(cls, parser: Parser) -> TakeCellOp:
        pos = parser.pos
        value, attrs = _parse_typed_operand(parser)
        if not isinstance(value.type, TensorType):
            parser.raise_error(f"'{cls.name}' expects a tensor operand", pos, parser.pos)
        op = cls(value)
        op.attributes.update(attrs)
        return op

    def print(self, printer: Printer) -> None:
        _print_typed_operand(self, printer)


@irdl_op_definition
class TakeLoadOp(IRDLOperation):
    """The cell's final value, in the cell's own buffer: the cell is not used after.

    %v = buf.take_load %c : !ad.cell<tensor<3xf32>>
    """

    name = "buf.take_load"
    cell = operand_def(ad.CellType)
    value = result_def(TensorType)
    traits = traits_def(MemoryReadEffect(), MemoryWriteEffect())

    def __init__(self, cell: SSAValue | Operation):
        c = SSAValue.get(cell)
        assert isinstance(c.type, ad.CellType)
        super().__init__(operands=[c], result_types=[c.type.elem])

    def verify_(self) -> None:
        elem = self.cell.type.elem  # type: ignore[attr-defined]
        if self.value.type != elem:
            raise VerifyException(
                f"'{self.name}': result {self.value.type} does not match the cell's {elem}"
            )
        _check_not_used_after(self, self.cell, "its final value took its buffer over")

    @classmethod
    def parse(cls, parser: Parser) -> TakeLoadOp:
        pos = parser.pos
        cell, attrs = _parse_typed_operand(parser)
        if not isinstance(cell.type, ad.CellType):
            parser.raise_error(f"'{cls.name}' expects an !ad.cell operand", pos, parser.pos)
        op = cls(cell)
        op.attributes.update(attrs)
        return op

    def print(self, printer: Printer) -> None:
        _print_typed_operand(self, printer)


BUF_OPS = [ReleaseOp, TakeCellOp, TakeLoadOp]

Buf = Dialect("buf", BUF_OPS, [])


# --- output slots ---------------------------------------------------------------------------

OUTPUT = "buf.output"


def output_slot(op: Operation) -> int | None:
    """The entry result index `op` writes its result into, if it has an output slot."""
    attr = op.attributes.get(OUTPUT)
    return attr.value.data if isinstance(attr, IntegerAttr) else None


def set_output_slot(op: Operation, j: int) -> None:
    op.attributes[OUTPUT] = IntegerAttr(j, IntegerType(64))


def called_functions(module: builtin.ModuleOp) -> set[str]:
    """The names of the functions some `func.call` in the module calls."""
    return {op.callee.string_value() for op in module.walk() if isinstance(op, func.CallOp)}


def verify_output_slots(module: builtin.ModuleOp) -> None:
    """Check every `buf.output` attribute: it is an `i64` on an op with a fresh
    buffer (`storage`), in the body block of a function no call in the module
    calls (a second activation would write into the same outputs), whose
    `func.return` returns that op's result exactly once, at that index."""
    called = called_functions(module)
    for op in module.walk():
        if OUTPUT not in op.attributes:
            continue
        j = output_slot(op)
        where = f"'{op.name}' with {{{OUTPUT}}}"
        attr = op.attributes[OUTPUT]
        if j is None or not isinstance(attr, IntegerAttr) or attr.type != IntegerType(64):
            raise VerifyException(f"{where}: the slot must be an i64 integer, got {attr}")
        if storage(op) is not Storage.FRESH or len(op.results) != 1:
            raise VerifyException(f"{where}: only an op making one fresh buffer has a slot")
        f = op.parent_op()
        block = op.parent_block()
        if not isinstance(f, func.FuncOp) or block is not _body(f):
            raise VerifyException(f"{where}: the op is not in a function's body block")
        if f.sym_name.data in called:
            raise VerifyException(
                f"{where}: @{f.sym_name.data} is called in the module, so it has no outputs"
            )
        ret = block.last_op
        returned = list(ret.operands) if isinstance(ret, func.ReturnOp) else []
        r = op.results[0]
        if returned.count(r) != 1 or not 0 <= j < len(returned) or returned[j] is not r:
            raise VerifyException(
                f"{where}: @{f.sym_name.data} does not return the result once as result #{j}"
            )


def _body(f: func.FuncOp) -> Block | None:
    return f.body.blocks.first
