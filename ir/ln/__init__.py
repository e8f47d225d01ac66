"""The `ln` dialect: tensor ops on builtin tensor types with static shapes."""

from xdsl.ir import Dialect
from xdsl.irdl import IRDLOperation

from lanterna.ir.ln.base import LnOp
from lanterna.ir.ln.checkpoint import *  # noqa: F403
from lanterna.ir.ln.checkpoint import CHECKPOINT_OPS
from lanterna.ir.ln.elementwise import *  # noqa: F403
from lanterna.ir.ln.elementwise import ELEMENTWISE_OPS
from lanterna.ir.ln.fused import *  # noqa: F403
from lanterna.ir.ln.fused import FUSED_OPS, FusedYieldOp
from lanterna.ir.ln.linalg import *  # noqa: F403
from lanterna.ir.ln.linalg import LINALG_OPS
from lanterna.ir.ln.nn import *  # noqa: F403
from lanterna.ir.ln.nn import NN_OPS
from lanterna.ir.ln.reduce import *  # noqa: F403
from lanterna.ir.ln.reduce import REDUCE_OPS
from lanterna.ir.ln.shape import *  # noqa: F403
from lanterna.ir.ln.shape import SHAPE_OPS

# Every op but `ln.item` and `ln.from_scalar` (which bridge to scalars) is an LnOp.
# `ln.fused` is one too, with a body of elementwise ops (see fused.py).
LN_OPS: list[type[IRDLOperation]] = [
    *ELEMENTWISE_OPS,
    *LINALG_OPS,
    *REDUCE_OPS,
    *SHAPE_OPS,
    *NN_OPS,
    *FUSED_OPS,
]

# `ln.fused_yield` only ends an `ln.fused` body; it is no tensor op of its own.
# `ln.checkpoint` (and its terminator) is structure, like scf.if: no tensor op either.
LN = Dialect("ln", [*LN_OPS, FusedYieldOp, *CHECKPOINT_OPS], [])
