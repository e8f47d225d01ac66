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
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.ir import Attribute, SSAValue
from xdsl.irdl import IRDLOperation, irdl_op_definition, operand_def
from xdsl.utils.exceptions import VerifyException

from lanterna.ir.ln.base import LnOp, Props, want_arity
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


LINALG_OPS = [MatmulOp]
