"""The `ln` dialect: tensor ops on builtin tensor types with static shapes."""

from xdsl.ir import Dialect

from lanterna.ir.ln.base import LnOp
from lanterna.ir.ln.elementwise import *  # noqa: F403
from lanterna.ir.ln.elementwise import ELEMENTWISE_OPS

LN_OPS: list[type[LnOp]] = [*ELEMENTWISE_OPS]

LN = Dialect("ln", LN_OPS, [])
