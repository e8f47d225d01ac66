"""Scalar `arith` ops in every C-like backend: one C expression each.

Loop bounds, indices and conditions are scalars; their ops are templates over the
operands' names, with integer arithmetic wrapping (and division by zero failing) as
`runtime/lanterna_scalar.h` does it, so the same text runs on a host or a device.
"""

from __future__ import annotations

from xdsl.dialects import arith
from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, FloatAttr, IntegerAttr
from xdsl.ir import Operation

from lanterna.backends.c_like.elementwise import literal
from lanterna.backends.c_like.emitter import CLikeEmitter, Lowering
from lanterna.ir import ln

# --- scalar ops ------------------------------------------------------------------------------


def _scalar(em: CLikeEmitter, op: Operation, expr: str) -> None:
    r = op.results[0]
    em.line(f"{em.ctype(r.type)} {em.define(r)} = {expr};")


def _arith_template(template: str) -> Lowering:
    def lower(em: CLikeEmitter, op: Operation) -> None:
        _scalar(
            em,
            op,
            template.format(*(em.ref(o) for o in op.operands), t=em.ctype(op.results[0].type)),
        )

    return lower


def _arith_constant(em: CLikeEmitter, op: Operation) -> None:
    value = op.properties["value"]
    t = op.results[0].type
    if isinstance(value, DenseIntOrFPElementsAttr):
        # A tensor constant: the backend's own lowering (static data, device memory).
        lower = em.ops.get(ln.ConstantOp)
        if lower is None:
            raise NotImplementedError(f"{em.backend} backend has no lowering for 'ln.constant'")
        lower(em, op)
        return
    assert isinstance(value, IntegerAttr | FloatAttr)
    _scalar(em, op, literal(em, value.value.data, t))


_CMPI = {
    0: "{0} == {1}",
    1: "{0} != {1}",
    2: "{0} < {1}",
    3: "{0} <= {1}",
    4: "{0} > {1}",
    5: "{0} >= {1}",
}
_CMPF = {
    0: "false",
    1: "{0} == {1}",
    2: "{0} > {1}",
    3: "{0} >= {1}",
    4: "{0} < {1}",
    5: "{0} <= {1}",
    6: "({0} < {1} || {0} > {1})",
    7: "!(std::isnan({0}) || std::isnan({1}))",
    8: "!({0} < {1} || {0} > {1})",
    9: "!({0} <= {1})",
    10: "!({0} < {1})",
    11: "!({0} >= {1})",
    12: "!({0} > {1})",
    13: "!({0} == {1})",
    14: "(std::isnan({0}) || std::isnan({1}))",
    15: "true",
}


def _cmp(em: CLikeEmitter, op: Operation) -> None:
    pred = op.properties["predicate"]
    assert isinstance(pred, IntegerAttr)
    table = _CMPF if isinstance(op, arith.CmpfOp) else _CMPI
    if pred.value.data not in table:
        raise NotImplementedError(
            f"{em.backend} backend has no lowering for '{op.name}' predicate {pred.value.data}"
        )
    _scalar(em, op, table[pred.value.data].format(*(em.ref(o) for o in op.operands)))


_CAST = "static_cast<{t}>({0})"

ARITH_OPS: dict[type[Operation], Lowering] = {
    arith.ConstantOp: _arith_constant,
    arith.AddiOp: _arith_template("lanterna::wrap_add({0}, {1})"),
    arith.SubiOp: _arith_template("lanterna::wrap_sub({0}, {1})"),
    arith.MuliOp: _arith_template("lanterna::wrap_mul({0}, {1})"),
    arith.DivSIOp: _arith_template("lanterna::div_trunc({0}, {1})"),
    arith.RemSIOp: _arith_template("lanterna::rem_trunc({0}, {1})"),
    arith.FloorDivSIOp: _arith_template("lanterna::div_floor({0}, {1})"),
    arith.MaxSIOp: _arith_template("lanterna::maximum({0}, {1})"),
    arith.MinSIOp: _arith_template("lanterna::minimum({0}, {1})"),
    arith.AndIOp: _arith_template("static_cast<{t}>({0} & {1})"),
    arith.OrIOp: _arith_template("static_cast<{t}>({0} | {1})"),
    arith.XOrIOp: _arith_template("static_cast<{t}>({0} ^ {1})"),
    arith.AddfOp: _arith_template("{0} + {1}"),
    arith.SubfOp: _arith_template("{0} - {1}"),
    arith.MulfOp: _arith_template("{0} * {1}"),
    arith.DivfOp: _arith_template("{0} / {1}"),
    arith.NegfOp: _arith_template("-{0}"),
    arith.MaximumfOp: _arith_template("lanterna::maximum({0}, {1})"),
    arith.MinimumfOp: _arith_template("lanterna::minimum({0}, {1})"),
    arith.CmpiOp: _cmp,
    arith.CmpfOp: _cmp,
    arith.SelectOp: _arith_template("{0} ? {1} : {2}"),
    arith.IndexCastOp: _arith_template(_CAST),
    arith.SIToFPOp: _arith_template(_CAST),
    arith.FPToSIOp: _arith_template(_CAST),
    arith.ExtFOp: _arith_template(_CAST),
    arith.TruncFOp: _arith_template(_CAST),
    arith.ExtSIOp: _arith_template(_CAST),
    arith.TruncIOp: _arith_template(_CAST),
}
