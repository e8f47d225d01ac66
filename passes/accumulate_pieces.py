"""`accumulate-pieces`: a concatenation with zero pieces is added into a cell
piece by piece, and never built.

The adjoint of a slice is the slice's gradient padded with zeros to the shape
of what was sliced: `ln.concatenate` of the gradient and `ln.zeros` pieces,
accumulated into the sliced value's cell. Built as written, that is a buffer
the size of the whole value, mostly zeros, and a pass over all of it. When the
concatenation is used by that accum alone, the pass adds only its nonzero
pieces into their ranges of the cell:

    %z = ln.zeros : tensor<2x3xf32>
    %v = ln.concatenate %g, %z {axis = 1 : i64} : tensor<2x2xf32>, tensor<2x3xf32>
    ad.accum %c, %v : !ad.cell<tensor<2x5xf32>>
->
    ad.accum_slice %c, %g {axis = 1 : i64, offset = 0 : i64} : !ad.cell<tensor<2x5xf32>>, tensor<2x2xf32>

Zero pieces are `ln.zeros` and `ln.full` of 0; they are erased when nothing
else reads them. Float cells only (integers are not differentiated, and adding
into an integer cell wraps in the backends' own way).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from lanterna.ir import ad, ln
from lanterna.ir.ln.base import get_float, get_int
from lanterna.ir.types import elt, is_float, shape_of
from lanterna.passes.registry import register_pass


def is_zeros(v: SSAValue) -> bool:
    """Whether `v` is made by a fill of zeros."""
    op = v.owner
    if isinstance(op, ln.ZerosOp):
        return True
    if isinstance(op, ln.FullOp):
        return get_float(op.properties, "value") == 0.0
    return False


def _accumulated_concat(accum: ad.AccumOp) -> ln.ConcatenateOp | None:
    v = accum.value
    concat = v.owner
    if not isinstance(concat, ln.ConcatenateOp) or not is_float(elt(v.type)):
        return None
    if not any(is_zeros(x) for x in concat.operands) or v.get_unique_use() is None:
        return None
    return concat


@register_pass
@dataclass(frozen=True)
class AccumulatePieces(ModulePass):
    """Add the nonzero pieces of an accumulated concatenation with zero pieces
    into their ranges of the cell, one `ad.accum_slice` each."""

    name = "accumulate-pieces"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for accum in [o for o in op.walk() if isinstance(o, ad.AccumOp)]:
            concat = _accumulated_concat(accum)
            if concat is None:
                continue
            axis = get_int(concat.properties, "axis")
            offset = 0
            for piece in concat.operands:
                if not is_zeros(piece):
                    added = ad.AccumSliceOp(accum.cell, piece, axis, offset)
                    Rewriter.insert_op(added, InsertPoint.before(accum))
                offset += shape_of(piece.type)[axis]
            zeros = [p.owner for p in concat.operands if is_zeros(p)]
            Rewriter.erase_op(accum)
            Rewriter.erase_op(concat)
            for fill in dict.fromkeys(zeros):
                if not fill.results[0].uses:
                    Rewriter.erase_op(fill)
