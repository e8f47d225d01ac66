"""`ln` linear algebra: matrix products.

`ln.matmul` follows numpy's `matmul` for the operand ranks the backends lower to
one (batched) GEMM call:

    lhs         rhs         result
    [M, K]      [K, N]      [M, N]
    [M, K]      [K]         [M]
    [K]         [K, N]      [N]
    [B, M, K]   [B, K, N]   [B, M, N]
    [B, M, K]   [K, N]      [B, M, N]

Other rank pairs (vector dot products, batch broadcasting) are rejected by the
type rule; the frontend spells them with `ln.mul`, `ln.sum` and `ln.broadcast_to`.

The adjoint of each supported pair is again matmuls of supported pairs, with
`ln.transpose` and `ln.reshape` (vectors become one-row or one-column matrices,
and a 3-D lhs against a shared 2-D rhs folds its batch into the rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.ir import Attribute, SSAValue
from xdsl.irdl import IRDLOperation, irdl_op_definition, operand_def
from xdsl.utils.exceptions import VerifyException

from lanterna.ir.ln.adjoint import AdjointBuilder
from lanterna.ir.ln.base import LnOp, Props, want_arity
from lanterna.ir.ln.shape import ReshapeOp, TransposeOp
from lanterna.ir.types import elt, is_float, shape_of, tensor


def matmul_shape(op_name: str, a: Attribute, b: Attribute) -> tuple[int, ...]:
    """The result shape of `a @ b` for the supported rank pairs."""
    sa, sb = shape_of(a), shape_of(b)
    ranks = (len(sa), len(sb))
    if ranks not in ((2, 2), (2, 1), (1, 2), (3, 3), (3, 2)):
        raise VerifyException(
            f"'{op_name}': unsupported operand ranks {ranks[0]} and {ranks[1]} "
            f"(lhs {a}, rhs {b}); supported are 2x2, 2x1, 1x2, 3x3 and 3x2"
        )
    k_lhs = sa[-1]
    k_rhs = sb[0] if len(sb) == 1 else sb[-2]
    if k_lhs != k_rhs:
        raise VerifyException(
            f"'{op_name}': lhs {a} and rhs {b} have incompatible contracting "
            f"dimensions {k_lhs} and {k_rhs}"
        )
    if ranks == (3, 3) and sa[0] != sb[0]:
        raise VerifyException(
            f"'{op_name}': lhs {a} and rhs {b} have different batch dimensions {sa[0]} and {sb[0]}"
        )
    rows = sa[:-1]
    cols = sb[-1:] if len(sb) >= 2 else ()
    return (*rows, *cols)


@irdl_op_definition
class MatmulOp(LnOp):
    """Matrix product with numpy `matmul` semantics (see the module docstring).

        %c = ln.matmul %a, %b : tensor<2x3xf32>, tensor<3x4xf32>      // tensor<2x4xf32>
        %y = ln.matmul %w, %x : tensor<8x2x3xf64>, tensor<3x5xf64>    // tensor<8x2x5xf64>

    Both operands have the same float element type.
    """

    name = "ln.matmul"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)

    def __init__(self, a: SSAValue | IRDLOperation, b: SSAValue | IRDLOperation):
        super().__init__(a, b)

    @classmethod
    def infer_type(
        cls, operand_types: Sequence[Attribute], props: Props, result_type: Attribute | None
    ) -> TensorType:
        want_arity(cls.name, operand_types, 2)
        a, b = operand_types
        if not is_float(elt(a)):
            raise VerifyException(f"'{cls.name}': lhs must have a float element type, got {elt(a)}")
        if elt(a) != elt(b):
            raise VerifyException(
                f"'{cls.name}': operand element types differ: lhs {elt(a)}, rhs {elt(b)}"
            )
        return tensor(matmul_shape(cls.name, a, b), elt(a))

    def evaluate(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.matmul(a, b)

    def adjoint(self, ab: AdjointBuilder) -> None:
        a, b = ab.operands
        g = ab.grad
        sa, sb = shape_of(a.type), shape_of(b.type)

        def mm(x: SSAValue, y: SSAValue) -> SSAValue:
            return ab.emit(MatmulOp(x, y))

        def t(x: SSAValue) -> SSAValue:
            """Swap the last two dimensions."""
            rank = len(shape_of(x.type))
            return ab.emit(TransposeOp(x, (*range(rank - 2), rank - 1, rank - 2)))

        def as_shape(x: SSAValue, *shape: int) -> SSAValue:
            return ab.emit(ReshapeOp(x, shape))

        match len(sa), len(sb):
            case (2, 2) | (3, 3):
                # [B,]M,K @ [B,]K,N: da = g @ b^T, db = a^T @ g
                if ab.wants(0):
                    ab.accum(0, mm(g, t(b)))
                if ab.wants(1):
                    ab.accum(1, mm(t(a), g))
            case (3, 2):
                # B,M,K @ K,N: the batch shares b, so db sums over it: fold B into M.
                (bs, m, k), (_, n) = sa, sb
                if ab.wants(0):
                    ab.accum(0, mm(g, t(b)))
                if ab.wants(1):
                    ab.accum(1, mm(t(as_shape(a, bs * m, k)), as_shape(g, bs * m, n)))
            case (2, 1):
                # M,K @ K: da is the outer product g b^T, db = a^T @ g
                (m, k) = sa
                if ab.wants(0):
                    ab.accum(0, mm(as_shape(g, m, 1), as_shape(b, 1, k)))
                if ab.wants(1):
                    ab.accum(1, mm(t(a), g))
            case (1, 2):
                # K @ K,N: da = b @ g, db is the outer product a g^T
                (k, n) = sb
                if ab.wants(0):
                    ab.accum(0, mm(b, g))
                if ab.wants(1):
                    ab.accum(1, mm(as_shape(a, k, 1), as_shape(g, 1, n)))
            case ranks:
                raise AssertionError(f"'{self.name}': the type rule admitted ranks {ranks}")


LINALG_OPS = [MatmulOp]
