"""`defer-products` (cpu backend): small-rank products into a big cell are
logged and added in one product when the cell is read.

A weight used once per time step or tree node gets, at each use, a gradient
contribution x g^T of small rank k: with `ad.accum_matmul` each is one GEMM
that reads and writes the whole m x n cell. The cpu runtime can instead log
the k columns of op(a) and rows of op(b) (`lanterna::defer_product`) and add
everything logged in one GEMM when the cell is read (`flush_products`): one
pass over the cell instead of one per use. The trade is the log's memory and
copying (k * (m + n) elements per product) against the cell's traffic (m * n
per product), and it pays when the cell is too big to stay in the nearest
caches. So a product is deferred when

    m * n >= min_cell   and   log_factor * k * (m + n) <= m * n

and the pass then

* marks the `ad.accum_matmul` `{deferred}`;
* puts an `ad.flush_products %c` before every `ad.load` of a cell of a type some
  deferred product adds into (which cell a load reads is not always known here
  -- cells travel through loop arguments and closures -- so its type decides);
* puts an `ad.drop_products %c` after every new cell (`ad.zero_like`,
  `ad.cell_from`, `ad.zero_cell`) of such a type: the runtime keys its log by
  the cell's address, and a new cell may get the address of a dead cell whose
  log was never flushed.

    ad.accum_matmul %c, %h, %g {transpose_a} : !ad.cell<tensor<128x160xf32>>, ...
    %w = ad.load %c : !ad.cell<tensor<128x160xf32>>
->
    ad.accum_matmul %c, %h, %g {deferred, transpose_a} : !ad.cell<tensor<128x160xf32>>, ...
    ad.flush_products %c : !ad.cell<tensor<128x160xf32>>
    %w = ad.load %c : !ad.cell<tensor<128x160xf32>>

A backend without such a log (the interpreter keeps products pending until the
flush, and raises on a load without one) must run it not at all or in full.
Runs last but one in the cpu pipeline, after `accumulate-products` and
`accumulate-pieces` and before `plan-buffers`. Running it again adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, UnitAttr
from xdsl.ir import Attribute
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from lanterna.ir import ad
from lanterna.passes.registry import register_pass

# The smallest cell, in elements, worth deferring into: below it the cell stays
# in cache and a GEMM per product costs little.
DEFER_MIN_CELL = 1 << 14
# A product is logged when log_factor times its log is at most the cell's size.
DEFER_LOG_FACTOR = 8

NEW_CELLS = (ad.ZeroLikeOp, ad.CellFromOp, ad.ZeroCellOp)


@register_pass
@dataclass(frozen=True)
class DeferProducts(ModulePass):
    """Log small-rank `ad.accum_matmul`s into big cells; flush before loads and
    drop stale logs at new cells of those cells' types."""

    name = "defer-products"

    min_cell: int = DEFER_MIN_CELL
    log_factor: int = DEFER_LOG_FACTOR

    def defers(self, op: ad.AccumMatmulOp) -> bool:
        m, n, k = op.dims()
        return m * n >= self.min_cell and self.log_factor * k * (m + n) <= m * n

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        types: set[Attribute] = set()
        for acc in op.walk():
            if isinstance(acc, ad.AccumMatmulOp) and (acc.is_deferred or self.defers(acc)):
                acc.properties["deferred"] = UnitAttr()
                types.add(acc.cell.type)
        if not types:
            return
        for o in list(op.walk()):
            if isinstance(o, ad.LoadOp) and o.cell.type in types:
                before = o.prev_op
                if not (isinstance(before, ad.FlushProductsOp) and before.cell is o.cell):
                    Rewriter.insert_op(ad.FlushProductsOp(o.cell), InsertPoint.before(o))
            elif isinstance(o, NEW_CELLS) and o.results[0].type in types:
                after = o.next_op
                cell = o.results[0]
                if not (isinstance(after, ad.DropProductsOp) and after.cell is cell):
                    Rewriter.insert_op(ad.DropProductsOp(cell), InsertPoint.after(o))
