"""`absorb-transposes`: matrix products read a transposed operand in place.

A 2-D `ln.transpose {perm = [1, 0]}` whose every user is a matrix-matrix
`ln.matmul` is never built: each product reads the transpose's source with its
`transpose_a` / `transpose_b` flag toggled (BLAS's `trans` flag), and the
transpose, dead then, is erased.

    %t = ln.transpose %w {perm = array<i64: 1, 0>} : tensor<3x2xf32>
    %y = ln.matmul %t, %x : tensor<2x3xf32>, tensor<3x4xf32>
->
    %y = ln.matmul %w, %x {transpose_a} : tensor<3x2xf32>, tensor<3x4xf32>

Reverse mode makes these everywhere: the adjoint of `a @ b` is `g @ b^T` and
`a^T @ g`. A transpose some other op also reads is left as it is, products
included: it is built for that op anyway, and a product reading the built
matrix is as fast as one reading the source transposed. Runs after `cse`
(which merges the transposes of one value) and before `accumulate-products`.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, UnitAttr
from xdsl.ir import SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from lanterna.ir import ln
from lanterna.ir.ln.base import get_ints
from lanterna.ir.types import shape_of
from lanterna.passes.registry import register_pass

FLAGS = ("transpose_a", "transpose_b")


def _is_matrix_product(op: object) -> bool:
    return isinstance(op, ln.MatmulOp) and all(len(shape_of(o.type)) == 2 for o in op.operands)


def _absorbable(t: ln.TransposeOp) -> bool:
    """A matrix transpose read only by matrix-matrix products."""
    v: SSAValue = t.results[0]
    if len(shape_of(v.type)) != 2 or list(get_ints(t.properties, "perm")) != [1, 0]:
        return False
    return bool(v.uses) and all(_is_matrix_product(use.operation) for use in v.uses)


@register_pass
@dataclass(frozen=True)
class AbsorbTransposes(ModulePass):
    """Fold matrix transposes into the `transpose_a`/`transpose_b` flags of the
    matrix products that read them."""

    name = "absorb-transposes"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for t in [o for o in op.walk() if isinstance(o, ln.TransposeOp)]:
            if not _absorbable(t):
                continue
            source = t.operands[0]
            for use in list(t.results[0].uses):
                product = use.operation
                flag = FLAGS[use.index]
                if flag in product.properties:
                    del product.properties[flag]
                else:
                    product.properties[flag] = UnitAttr()
                product.operands[use.index] = source
            Rewriter.erase_op(t)
