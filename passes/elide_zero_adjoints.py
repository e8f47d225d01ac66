"""`elide-zero-adjoints`: no zero-filled adjoint buffers.

Reverse mode gives every differentiable value a cell made by `ad.zero_like`
(or `ad.zero_cell`, in the backward loops of `reverse-loops`) and adds each contribution into it with `ad.accum`. Most cells receive their
first contribution before anything else touches them, and many receive none:
allocating and zero-filling those buffers is the memory cost raised against
Lantern. Run after `lower-continuations` (where the adjoint code is direct
style), this pass rewrites

* a fresh cell whose first use, in its own block, is an `ad.accum` -- with no
  op in between using the cell, not even inside a region -- into
  `ad.cell_from` of the contribution, at the accum's place;
* a cell that is only ever loaded (never accumulated into, passed on or
  captured) away: its loads become `ln.zeros`;
* a cell made by `ad.cell_from` that is only ever loaded away: its loads are
  the value it was made from.

    %c = ad.zero_like %v : tensor<3xf32>        %c = ad.cell_from %g : tensor<3xf32>
    %t = ln.tanh %v : tensor<3xf32>        ->   ...
    ad.accum %c, %g : !ad.cell<...>

The conditions are local and conservative: a cell defined in one block and
first written in another (a loop iteration's closure, a branch) is left as it
is. Each execution of a block makes its own cells, so a cell made afresh in
each loop iteration is still fresh at each first accum.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import builtin
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from lanterna.ir import ad, ln
from lanterna.passes.registry import register_pass


@register_pass
@dataclass(frozen=True)
class ElideZeroAdjoints(ModulePass):
    """Turn the first accum into a fresh adjoint cell into its initialization and
    drop cells that are never accumulated into."""

    name = "elide-zero-adjoints"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        fresh = [o for o in op.walk() if isinstance(o, ad.ZeroLikeOp | ad.ZeroCellOp)]
        for zero in fresh:
            if _only_loaded(zero.cell):
                _drop_unwritten(zero)
                continue
            made = _initialize_at_first_accum(zero)
            if made is not None and _only_loaded(made.cell):
                _forward_initial_value(made)


def _only_loaded(cell: SSAValue) -> bool:
    return all(isinstance(use.operation, ad.LoadOp) for use in cell.uses)


def _loads(cell: SSAValue) -> list[ad.LoadOp]:
    loads = [use.operation for use in cell.uses]
    assert all(isinstance(load, ad.LoadOp) for load in loads)
    return loads  # type: ignore[return-value]


def _drop_unwritten(zero: ad.ZeroLikeOp | ad.ZeroCellOp) -> None:
    """A cell nothing is accumulated into holds zeros whenever it is loaded."""
    for load in _loads(zero.cell):
        zeros = ln.ZerosOp(result_type=load.value.type)
        Rewriter.insert_op(zeros, InsertPoint.before(load))
        load.value.replace_all_uses_with(zeros.result)
        Rewriter.erase_op(load)
    Rewriter.erase_op(zero)


def _forward_initial_value(made: ad.CellFromOp) -> None:
    """A cell made from a value and never accumulated into holds that value."""
    for load in _loads(made.cell):
        load.value.replace_all_uses_with(made.value)
        Rewriter.erase_op(load)
    Rewriter.erase_op(made)


def _uses(op: Operation, value: SSAValue) -> bool:
    """Whether `op` or any op nested in its regions has `value` as an operand."""
    return any(value in o.operands for o in op.walk())


def _initialize_at_first_accum(zero: ad.ZeroLikeOp | ad.ZeroCellOp) -> ad.CellFromOp | None:
    cell = zero.cell
    op = zero.next_op
    while op is not None:
        if isinstance(op, ad.AccumOp) and op.cell is cell and op.value is not cell:
            made = ad.CellFromOp(op.value)
            made.attributes.update(zero.attributes)
            Rewriter.insert_op(made, InsertPoint.before(op))
            # Every other use of the cell comes after the accum (none before it
            # in this block, and the cell is not visible outside it): the new
            # cell dominates them all.
            cell.replace_all_uses_with(made.cell)
            Rewriter.erase_op(op)
            Rewriter.erase_op(zero)
            return made
        if _uses(op, cell):
            return None
        op = op.next_op
    return None
