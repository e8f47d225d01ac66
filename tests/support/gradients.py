"""The op table's rows as gradient programs: `f(args) = sum(op(args) * R)` with R
a fixed random constant (so every output counts), differentiated by `reverse-ad`.
tests/ir/test_adjoint_rules.py checks them against finite differences on the
interpreter, tests/backends/cpu_cpp/test_gradients_cpu.py on the cpu backend."""

from __future__ import annotations

import zlib

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, f64
from xdsl.ir import Block, Region

from lanterna.ir.ln import ConstantOp, MulOp, SumOp
from lanterna.ir.types import shape_of

from support import op_cases
from support.op_cases import OpCase

# The rows whose float arguments reverse mode differentiates.
GRAD_CASES: list[OpCase] = [c for c in op_cases.CASES if c.grad_args()]


def build_loss(case: OpCase, weights: np.ndarray | None = None) -> ModuleOp:
    """`f(args) = sum(op(args) * R)` in float64; R is random unless given."""
    arg_types = [arg.type(f64) for arg in case.args]
    block = Block(arg_types=arg_types)
    ops = case.ops(block.args, f64)
    out = ops[-1].results[0]
    if weights is None:
        rng = np.random.default_rng(zlib.crc32(b"R" + case.id.encode()))
        weights = rng.standard_normal(shape_of(out.type))
    r = ConstantOp.of(weights)
    prod = MulOp(out, r)
    loss = SumOp(prod)
    block.add_ops([*ops, r, prod, loss, func.ReturnOp(loss)])
    f = func.FuncOp("f", (arg_types, [loss.result.type]), Region(block))
    return ModuleOp([f])


def loss_inputs(case: OpCase) -> list[np.ndarray]:
    """The row's arguments in float64 (integers keep their type)."""
    return [np.asarray(v) for v in op_cases.inputs(case, f64)]
