"""`fuse-elementwise`: chains of elementwise `ln` ops become one `ln.fused` op.

It runs after `reverse-ad,lower-continuations` (and best after `cse,dce`), on
the forward and the adjoint arithmetic alike: a chain such as the tanh adjoint

    %7 = ln.full {value = 1.0 : f64} : tensor<f64>
    %8 = ln.mul %b, %b : tensor<f64>, tensor<f64>
    %9 = ln.sub %7, %8 : tensor<f64>, tensor<f64>
    %10 = ln.mul %6, %9 : tensor<f64>, tensor<f64>

becomes one `ln.fused %6, %b` whose body computes `%6 * (1 - %b * %b)` on one
element; a backend emits it as one loop, so the intermediates never reach memory.
`ln.fused` has no adjoint rule, which is why the pass runs after `reverse-ad`.

Grouping is greedy, block by block (bodies of `scf`, `cont.lambda` and other
regions included): walking a block from its end, each elementwise op not yet
grouped roots a group, which then takes in every producer in the same block
whose results are used by the group alone. Fills and one-element constants
are copied into every group that reads them, whoever else does. The group
becomes one fused op at the root's place; since every member is pure and comes
before the root, moving the computation there keeps every operand defined. A
group of one op is left alone.

What fuses: arithmetic, comparisons, unary math, `select`, `cast`, fills
(`zeros`, `ones`, `full`), one-element constants and `broadcast_to` (which is
the identity element by element). A producer smaller than the group's result
(it broadcasts into it) would be recomputed for every element it is broadcast
to; it joins only if it is free to recompute (a fill, a constant, a
broadcast), otherwise it stays its own group and the fused op reads it.
Existing `ln.fused` ops are inlined into a group that consumes them, so
running the pass twice changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, ModuleOp
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass

from lanterna.ir import ln
from lanterna.ir.ln.fused import FusedOp, FusedYieldOp
from lanterna.ir.types import elt, shape_of, tensor, to_numpy_dtype
from lanterna.passes.registry import register_pass

# Ops that compute each element from the same element of their (broadcast) operands.
ELEMENTWISE: tuple[type[Operation], ...] = (
    ln.BinaryOp,  # arithmetic, maximum/minimum, comparisons
    ln.UnaryOp,  # neg, abs, exp, log, tanh, sqrt, sigmoid, relu, pow
    ln.SelectOp,
    ln.CastOp,
)
FILLS: tuple[type[Operation], ...] = (ln.ZerosOp, ln.OnesOp, ln.FullOp)


def _numel(v: SSAValue) -> int:
    return math.prod(shape_of(v.type))


def _is_small_constant(op: Operation) -> bool:
    return isinstance(op, ln.ConstantOp) and _numel(op.result) == 1


def is_fusible(op: Operation) -> bool:
    """Whether `op` may be a member of a fused group."""
    return isinstance(op, (*ELEMENTWISE, *FILLS, ln.BroadcastToOp, FusedOp)) or _is_small_constant(
        op
    )


def _is_source(op: Operation) -> bool:
    """A fill or a one-element constant: no operands, nothing to compute."""
    return isinstance(op, FILLS) or _is_small_constant(op)


def _free_to_recompute(op: Operation) -> bool:
    return isinstance(op, (*FILLS, ln.BroadcastToOp)) or _is_small_constant(op)


# --- grouping -------------------------------------------------------------------------------


def _group(root: Operation, block: Block, taken: set[Operation]) -> list[Operation]:
    """The members of the group rooted at `root`, in block order."""
    size = _numel(root.results[0])
    group = {root}
    work = [root]
    while work:
        op = work.pop()
        for v in op.operands:
            p = v.owner
            if (
                not isinstance(p, Operation)
                or p in group
                or p.parent_block() is not block
                or not is_fusible(p)
            ):
                continue
            if _is_source(p):
                # Copied into every group that reads it; the original stays for
                # other users.
                group.add(p)
                continue
            if p in taken or (_numel(p.results[0]) != size and not _free_to_recompute(p)):
                continue
            # Checked again from every member that uses `p`: the last one to be
            # visited sees all of them in the group.
            if all(use.operation in group for use in p.results[0].uses):
                group.add(p)
                work.append(p)
    return [op for op in block.ops if op in group]


def fuse_block(block: Block) -> int:
    """Fuse the elementwise chains of one block; the number of fused ops made."""
    taken: set[Operation] = set()
    made = 0
    for root in reversed(list(block.ops)):
        if root in taken or not is_fusible(root) or _free_to_recompute(root):
            continue
        members = _group(root, block, taken)
        taken.update(members)
        if len(members) < 2:
            continue
        _replace(members, block)
        made += 1
    return made


# --- rewriting ------------------------------------------------------------------------------


def _replace(members: list[Operation], block: Block) -> None:
    root = members[-1]
    inside = set(members)
    inputs: list[SSAValue] = []
    for op in members:
        for v in op.operands:
            if v.owner not in inside and v not in inputs:
                inputs.append(v)
    body = FusedOp.body_for(inputs)
    values: dict[SSAValue, SSAValue] = dict(zip(inputs, body.args, strict=True))
    for op in members:
        values[op.results[0]] = _copy_into(op, body, values)
    body.add_op(FusedYieldOp(values[root.results[0]]))
    fused = FusedOp(inputs, root.results[0].type, Region(body))
    fused.result.name_hint = root.results[0].name_hint
    block.insert_op_before(fused, root)
    root.results[0].replace_all_uses_with(fused.result)
    # Consumers first, so each producer has lost its uses in the group when it
    # is reached; a shared fill that other ops still read stays.
    for op in reversed(members):
        if not op.results[0].uses:
            block.erase_op(op)


def _copy_into(op: Operation, body: Block, values: dict[SSAValue, SSAValue]) -> SSAValue:
    """Rebuild `op` on rank-0 tensors at the end of `body`; the value it computes."""
    if isinstance(op, ln.BroadcastToOp):
        return values[op.operands[0]]
    if isinstance(op, FusedOp):
        return _inline(op, body, values)
    e = elt(op.results[0].type)
    scalar = tensor((), e)
    new: Operation
    if isinstance(op, ln.ConstantOp):
        attr = op.value
        assert isinstance(attr, DenseIntOrFPElementsAttr)
        new = ln.ConstantOp.of(np.asarray(attr.get_values()[0], dtype=to_numpy_dtype(e)))
    elif isinstance(op, FILLS):
        new = type(op).create(result_types=[scalar], properties=dict(op.properties))
    else:
        new = type(op).create(
            operands=[values[o] for o in op.operands],
            result_types=[scalar],
            properties=dict(op.properties),
            attributes=dict(op.attributes),
        )
    new.results[0].name_hint = op.results[0].name_hint
    body.add_op(new)
    return new.results[0]


def _inline(op: FusedOp, body: Block, values: dict[SSAValue, SSAValue]) -> SSAValue:
    inner = op.body.block
    local: dict[SSAValue, SSAValue] = {
        arg: values[v] for arg, v in zip(inner.args, op.inputs, strict=True)
    }
    for inner_op in inner.ops:
        if isinstance(inner_op, FusedYieldOp):
            return local[inner_op.value]
        new = inner_op.clone(value_mapper=dict(local))
        body.add_op(new)
        local.update(zip(inner_op.results, new.results, strict=True))
    raise AssertionError("a verified ln.fused body ends in ln.fused_yield")


@register_pass
@dataclass(frozen=True)
class FuseElementwise(ModulePass):
    """Fuses chains of elementwise ln ops into ln.fused ops (run after reverse-ad)."""

    name = "fuse-elementwise"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        blocks = [
            block
            for inner in op.walk()
            if not isinstance(inner, FusedOp)
            for region in inner.regions
            for block in region.blocks
        ]
        for block in blocks:
            fuse_block(block)
