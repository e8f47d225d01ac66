"""`accumulate-products`: a matrix product added into a cell is computed into it.

Reverse mode adds a weight's gradient as `ad.accum %cell, %p` of a product
`%p = ln.matmul ...`; computed as written, the product is a buffer of its own
and the accum a second pass over it. When the product is used by that accum
alone, the pass makes the two one `ad.accum_matmul` (cell += op(a) @ op(b), a
GEMM with beta = 1), placed where the matmul was:

    %p = ln.matmul %x, %g {transpose_a} : tensor<5x3xf32>, tensor<5x4xf32>
    ...
    ad.accum %c, %p : !ad.cell<tensor<3x4xf32>>
->
    ad.accum_matmul %c, %x, %g {transpose_a} : !ad.cell<tensor<3x4xf32>>, tensor<5x3xf32>, tensor<5x4xf32>
    ...

Moving the addition earlier is sound when nothing can see the difference: the
accum is in the matmul's block, after it; the cell is defined before the matmul
(or outside its block); and no op between the two, nor any op nested in them,
uses the cell. Only matrix-matrix products (the forms BLAS takes with beta = 1).
Runs after `absorb-transposes`, so the flags are in place.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from lanterna.ir import ad, ln
from lanterna.ir.types import shape_of
from lanterna.passes.registry import register_pass


def accumulating_user(op: ln.MatmulOp) -> ad.AccumOp | None:
    """The `ad.accum` that is the only use of `op`'s result, when the product can
    be added into its cell right where `op` is (see the module docstring)."""
    use = op.results[0].get_unique_use()
    if use is None:
        return None
    accum = use.operation
    block = op.parent_block()
    if not isinstance(accum, ad.AccumOp) or use.index != 1 or accum.parent_block() is not block:
        return None
    assert block is not None
    cell = accum.cell
    owner = cell.owner
    made_here = isinstance(owner, Operation) and owner.parent_block() is block
    if made_here and block.get_operation_index(owner) > block.get_operation_index(op):
        return None
    between = op.next_op
    while between is not None and between is not accum:
        if any(cell in inner.operands for inner in between.walk()):
            return None
        between = between.next_op
    return accum if between is accum else None


@register_pass
@dataclass(frozen=True)
class AccumulateProducts(ModulePass):
    """Turn `ad.accum` of a matrix product used nowhere else into one
    `ad.accum_matmul` at the product's place."""

    name = "accumulate-products"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for mm in [o for o in op.walk() if isinstance(o, ln.MatmulOp)]:
            if not all(len(shape_of(o.type)) == 2 for o in mm.operands):
                continue
            accum = accumulating_user(mm)
            if accum is None:
                continue
            ta, tb = mm.transposes
            fused = ad.AccumMatmulOp(accum.cell, mm.lhs, mm.rhs, transpose_a=ta, transpose_b=tb)
            Rewriter.insert_op(fused, InsertPoint.before(mm))
            Rewriter.erase_op(accum)
            Rewriter.erase_op(mm)
