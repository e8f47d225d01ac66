"""Elementwise ops in every C-like backend: expression templates and their loop nests.

An elementwise op is a template over its operands' elements (`{0}`, `{1}`, ...),
written with the scalar functions of `runtime/lanterna_scalar.h`. There is one
rendering: an `ElementRegion` (tensors read, one scalar stand-in for an element of
each, the ops computing one element of the result) is rendered as one loop nest over
the result with broadcasting resolved into static index arithmetic. An `ln.fused`
op is a region of many ops; a standalone elementwise op is a region of one op whose
stand-ins are its operands, so its loads are written inline.

The loop nest is flat when every operand has the result's shape or one element,
nested with static broadcast indices otherwise; the backend's `loop_pragma` goes
before the innermost loop. A device backend reuses `loop_indices` and
`element_statements` inside a kernel instead of `element_loop`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, TensorType
from xdsl.ir import Attribute, Operation, SSAValue

from lanterna.backends.c_like.emitter import CLikeEmitter, Lowering
from lanterna.ir import ad, ln
from lanterna.ir.ln.base import get_float
from lanterna.ir.types import is_float

# --- shapes and literals --------------------------------------------------------------------


def shape(v: SSAValue | Attribute) -> tuple[int, ...]:
    t = v.type if isinstance(v, SSAValue) else v
    if isinstance(t, ad.CellType):
        t = t.elem
    assert isinstance(t, TensorType)
    return tuple(t.get_shape())


def numel(v: SSAValue | Attribute) -> int:
    return math.prod(shape(v))


def element(v: SSAValue) -> Attribute:
    t = v.type
    if isinstance(t, ad.CellType):
        t = t.elem
    assert isinstance(t, TensorType)
    return t.element_type


def strides(dims: Sequence[int]) -> list[int]:
    out, acc = [], 1
    for d in reversed(dims):
        out.append(acc)
        acc *= d
    return out[::-1]


def literal(em: CLikeEmitter, value: float | bool, t: Attribute) -> str:
    """A C literal of scalar type `t` holding exactly `value`."""
    c = em.scalar_type(t)
    if c == "bool":
        return "true" if value else "false"
    if c in ("float", "double"):
        v = float(value)
        if math.isnan(v):
            return f"std::numeric_limits<{c}>::quiet_NaN()"
        if math.isinf(v):
            return ("-" if v < 0 else "") + f"std::numeric_limits<{c}>::infinity()"
        if c == "float":
            text = str(np.float32(v))
            return text + ("f" if any(ch in text for ch in ".e") else ".0f")
        text = repr(v)
        return text if any(ch in text for ch in ".e") else text + ".0"
    v = int(value)
    bits = 32 if c == "int32_t" else 64
    if v == -(1 << (bits - 1)):
        return f"({v + 1} - 1)"
    return f"{v}" if bits == 32 else f"INT64_C({v})"


def fill_literal(em: CLikeEmitter, op: Operation) -> str:
    """The literal a fill op (`zeros`, `ones`, `full`) fills with."""
    if isinstance(op, ln.FullOp):
        value: float = get_float(op.properties, "value")
    else:
        value = 1.0 if isinstance(op, ln.OnesOp) else 0.0
    e = element(op.results[0])
    if is_float(e):
        return literal(em, value, e)
    if em.scalar_type(e) == "bool":
        return literal(em, value != 0, e)
    return literal(em, int(value), e)  # numpy truncates toward zero


# --- expression templates -------------------------------------------------------------------


def same(template: str) -> tuple[str, str]:
    return (template, template)


# Expression templates per op: (float template, integer template).
BINARY: dict[type[Operation], tuple[str, str]] = {
    ln.AddOp: ("{0} + {1}", "lanterna::wrap_add({0}, {1})"),
    ln.SubOp: ("{0} - {1}", "lanterna::wrap_sub({0}, {1})"),
    ln.MulOp: ("{0} * {1}", "lanterna::wrap_mul({0}, {1})"),
    ln.DivOp: ("{0} / {1}", "{0} / {1}"),
    ln.PowerOp: same("lanterna::pow({0}, {1})"),  # floats only
    ln.MaximumOp: same("lanterna::maximum({0}, {1})"),
    ln.MinimumOp: same("lanterna::minimum({0}, {1})"),
    ln.LtOp: same("{0} < {1}"),
    ln.LeOp: same("{0} <= {1}"),
    ln.GtOp: same("{0} > {1}"),
    ln.GeOp: same("{0} >= {1}"),
    ln.EqOp: same("{0} == {1}"),
    ln.NeOp: same("{0} != {1}"),
}

UNARY: dict[type[Operation], tuple[str, str]] = {
    ln.NegOp: ("-{0}", "lanterna::wrap_neg({0})"),
    ln.AbsOp: same("lanterna::abs_of({0})"),
    ln.ExpOp: same("lanterna::exp({0})"),
    ln.LogOp: same("lanterna::log({0})"),
    ln.TanhOp: same("lanterna::tanh({0})"),
    ln.SqrtOp: same("lanterna::sqrt({0})"),
    ln.SigmoidOp: same("lanterna::sigmoid({0})"),
    ln.ReluOp: same("lanterna::relu({0})"),
}


def _pick(templates: tuple[str, str], op: Operation) -> str:
    return templates[0] if is_float(element(op.operands[0])) else templates[1]


def element_expr(em: CLikeEmitter, op: Operation, args: Sequence[str]) -> str:
    """The expression of one element of elementwise `op`, given its operands' elements."""
    kind = type(op)
    if kind in BINARY:
        return _pick(BINARY[kind], op).format(*args)
    if kind in UNARY:
        return _pick(UNARY[kind], op).format(*args)
    if isinstance(op, ln.PowOp):
        p = literal(em, get_float(op.properties, "exponent"), element(op.operands[0]))
        return f"lanterna::pow({args[0]}, {p})"
    if isinstance(op, ln.SelectOp):
        return f"{args[0]} ? {args[1]} : {args[2]}"
    if isinstance(op, ln.CastOp):
        return f"static_cast<{em.scalar_type(element(op.results[0]))}>({args[0]})"
    if isinstance(op, ln.ZerosOp | ln.OnesOp | ln.FullOp):
        return fill_literal(em, op)
    if isinstance(op, ln.ConstantOp):
        value = op.properties["value"]
        assert isinstance(value, DenseIntOrFPElementsAttr)
        return literal(em, value.get_values()[0], element(op.results[0]))
    raise NotImplementedError(f"{em.backend} backend cannot fuse '{op.name}'")


# --- regions and loop nests -----------------------------------------------------------------


@dataclass
class ElementRegion:
    """What one loop nest computes: `params[i]` stands for one element of `inputs[i]`
    (or is `inputs[i]` itself, when the region has no scalar of its own: the load is
    then written inline), `body` computes `value`, one element of `result`."""

    inputs: Sequence[SSAValue]
    params: Sequence[SSAValue]
    body: Sequence[Operation]
    value: SSAValue
    result: SSAValue

    @staticmethod
    def of_fused(op: Operation) -> ElementRegion:
        assert isinstance(op, ln.FusedOp)
        block = op.body.block
        body = [inner for inner in block.ops if not isinstance(inner, ln.FusedYieldOp)]
        term = block.last_op
        assert isinstance(term, ln.FusedYieldOp)
        return ElementRegion(list(op.inputs), list(block.args), body, term.value, op.results[0])

    @staticmethod
    def of_op(op: Operation) -> ElementRegion:
        """A standalone elementwise op as a region of one op."""
        operands = list(op.operands)
        return ElementRegion(operands, operands, [op], op.results[0], op.results[0])


def broadcast_index(loops: Sequence[str], dims: Sequence[int]) -> str:
    """The flat index into a row-major tensor of shape `dims` broadcast to the loop nest."""
    rank = len(loops)
    aligned = (1,) * (rank - len(dims)) + tuple(dims)
    terms = []
    for d, (extent, stride) in enumerate(zip(aligned, strides(aligned), strict=True)):
        if extent != 1:
            terms.append(loops[d] if stride == 1 else f"{loops[d]} * {stride}")
    return " + ".join(terms) or "0"


@dataclass
class LoopIndices:
    """The loop nest over a result: counters with their extents, the index of each
    input's element and of the result's."""

    loops: list[str]
    extents: list[int]
    inputs: dict[SSAValue, str]
    result: str


def loop_indices(out: Sequence[int], inputs: Sequence[SSAValue]) -> LoopIndices:
    """One flat loop when every input has the result's shape or one element (no index
    arithmetic), else one loop per dimension with static broadcast indices."""
    n = math.prod(out)
    if all(shape(o) == tuple(out) or numel(o) == 1 for o in inputs):
        index = {o: "i_" if shape(o) == tuple(out) and n != 1 else "0" for o in inputs}
        return LoopIndices(["i_"], [n], index, "i_")
    loops = [f"i{d}_" for d in range(len(out))]
    index = {o: broadcast_index(loops, shape(o)) for o in inputs}
    return LoopIndices(loops, list(out), index, broadcast_index(loops, out))


def element_statements(
    em: CLikeEmitter, region: ElementRegion, idx: LoopIndices, y: str
) -> list[str]:
    """The statements computing element `idx.result` of `region.result` into buffer `y`.
    A region's own scalars are named constants; loads of a region without scalars,
    and the value of its one op, are written inline."""
    exprs: dict[SSAValue, str] = {}
    out: list[str] = []
    for p, o in zip(region.params, region.inputs, strict=True):
        load = f"{em.ref(o)}[{idx.inputs[o]}]"
        if p is o:
            exprs[p] = load
        elif p.uses:
            out.append(f"const {em.scalar_type(element(p))} {em.define(p)} = {load};")
            exprs[p] = em.ref(p)
    for inner in region.body:
        r = inner.results[0]
        expr = element_expr(em, inner, [exprs[a] for a in inner.operands])
        if r is region.result:  # a region of one op: its value is the store
            exprs[r] = expr
            continue
        if not r.uses:  # pure: nothing to compute
            continue
        c = em.scalar_type(element(r))
        out.append(f"const {c} {em.define(r)} = {expr};  // {inner.name}")
        exprs[r] = em.ref(r)
    out.append(f"{y}[{idx.result}] = {exprs[region.value]};")
    return out


def element_loop(em: CLikeEmitter, region: ElementRegion, y: str) -> None:
    """Write the loop nest computing `region` into buffer `y`."""
    idx = loop_indices(shape(region.result), region.inputs)
    headers = [f"for (int64_t {i} = 0; {i} < {n}; ++{i})" for i, n in zip(idx.loops, idx.extents)]
    for header in headers[:-1]:
        em.line(header)
        em.depth += 1
    if em.loop_pragma:
        em.line(em.loop_pragma)
    body = element_statements(em, region, idx, y)
    if len(body) == 1 and len(headers) == 1:
        em.line(f"{headers[-1]} {body[0]}")
    elif len(body) == 1:  # the statement is long with its broadcast indices
        em.line(headers[-1])
        em.depth += 1
        em.line(body[0])
        em.depth -= 1
    else:
        with em.scope(headers[-1] + " {"):
            for statement in body:
                em.line(statement)
    em.depth -= len(headers) - 1


def lower_elementwise(em: CLikeEmitter, op: Operation) -> None:
    """A standalone elementwise op: a one-op region."""
    element_loop(em, ElementRegion.of_op(op), em.result_buffer(op))


def lower_fused(em: CLikeEmitter, op: Operation) -> None:
    """`ln.fused`: one loop nest over the result; the body computes one element in scalars."""
    element_loop(em, ElementRegion.of_fused(op), em.result_buffer(op))


ELEMENT_OPS: dict[type[Operation], Lowering] = {
    **{op: lower_elementwise for op in BINARY},
    **{op: lower_elementwise for op in UNARY},
    ln.PowOp: lower_elementwise,
    ln.SelectOp: lower_elementwise,
    ln.CastOp: lower_elementwise,
    ln.FusedOp: lower_fused,
}
