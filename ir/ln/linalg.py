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

A matrix-matrix product may read an operand transposed: `{transpose_a}` and
`{transpose_b}` multiply op(a) @ op(b) with op(x) = x^T, the way BLAS's `trans`
flags read a matrix in place. The frontend never sets them; `absorb-transposes`
does, folding a 2-D `ln.transpose` into the products that read it.

    %c = ln.matmul %a, %b {transpose_b} : tensor<2x3xf32>, tensor<4x3xf32>  // tensor<2x4xf32>
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from xdsl.dialects.builtin import TensorType, UnitAttr
from xdsl.ir import Attribute, SSAValue
from xdsl.irdl import IRDLOperation, irdl_op_definition, operand_def, opt_prop_def
from xdsl.utils.exceptions import VerifyException

from lanterna.ir.ln.adjoint import AdjointBuilder
from lanterna.ir.ln.base import LnOp, Props, get_flag, want_arity
from lanterna.ir.ln.shape import ReshapeOp, TransposeOp
from lanterna.ir.types import elt, is_float, shape_of, tensor


def matmul_shape(
    op_name: str,
    a: Attribute,
    b: Attribute,
    transpose_a: bool = False,
    transpose_b: bool = False,
) -> tuple[int, ...]:
    """The result shape of `op(a) @ op(b)` for the supported rank pairs; a
    transposed operand must be a matrix, and so must the other one."""
    sa, sb = shape_of(a), shape_of(b)
    if (transpose_a or transpose_b) and (len(sa), len(sb)) != (2, 2):
        flags = " and ".join(
            f for f, on in (("transpose_a", transpose_a), ("transpose_b", transpose_b)) if on
        )
        raise VerifyException(f"'{op_name}': {flags} needs two matrices, got lhs {a} and rhs {b}")
    if transpose_a:
        sa = sa[::-1]
    if transpose_b:
        sb = sb[::-1]
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

        %d = ln.matmul %a, %b {transpose_a} : tensor<3x2xf32>, tensor<3x4xf32>  // tensor<2x4xf32>

    Both operands have the same float element type. `{transpose_a}` /
    `{transpose_b}` (matrices only) read that operand transposed.
    """

    name = "ln.matmul"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    transpose_a = opt_prop_def(UnitAttr)
    transpose_b = opt_prop_def(UnitAttr)

    def __init__(
        self,
        a: SSAValue | IRDLOperation,
        b: SSAValue | IRDLOperation,
        *,
        transpose_a: bool = False,
        transpose_b: bool = False,
    ):
        flags = {"transpose_a": transpose_a, "transpose_b": transpose_b}
        super().__init__(a, b, **{k: UnitAttr() for k, on in flags.items() if on})

    @property
    def transposes(self) -> tuple[bool, bool]:
        """Whether the product reads the lhs, the rhs transposed."""
        return get_flag(self.properties, "transpose_a"), get_flag(self.properties, "transpose_b")

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
        ta, tb = get_flag(props, "transpose_a"), get_flag(props, "transpose_b")
        return tensor(matmul_shape(cls.name, a, b, ta, tb), elt(a))

    def evaluate(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ta, tb = self.transposes
        return np.matmul(a.T if ta else a, b.T if tb else b)

    def adjoint(self, ab: AdjointBuilder) -> None:
        a, b = ab.operands
        g = ab.grad
        sa, sb = shape_of(a.type), shape_of(b.type)

        def mm(x: SSAValue, y: SSAValue, ta: bool = False, tb: bool = False) -> SSAValue:
            return ab.emit(MatmulOp(x, y, transpose_a=ta, transpose_b=tb))

        ta, tb = self.transposes
        if ta or tb:
            # C = op(A) @ op(B): d op(A) = g op(B)^T and d op(B) = op(A)^T g, read
            # through the flags; a transposed operand's adjoint is its op's transposed.
            if ab.wants(0):
                # dA = g @ op(B)^T, or (for A^T) op(B) @ g^T
                ab.accum(0, mm(b, g, tb, True) if ta else mm(g, b, False, not tb))
            if ab.wants(1):
                # dB = op(A)^T @ g, or (for B^T) g^T @ op(A)
                ab.accum(1, mm(g, a, True, ta) if tb else mm(a, g, not ta, False))
            return

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
