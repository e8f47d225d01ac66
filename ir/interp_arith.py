"""Reference semantics of the `arith` ops the interpreter supports.

Scalars are numpy scalars of the op's type (index and i64 -> int64, i32 -> int32,
i1 -> bool, f32/f64 -> float32/float64), so arithmetic wraps and rounds as
the compiled code's does. Each entry maps an op class to `fn(op, args) -> value`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from xdsl.dialects import arith
from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, FloatAttr, IntegerAttr
from xdsl.ir import Attribute, Operation

from lanterna.ir.types import to_numpy_dtype

ArithFn = Callable[[Operation, Sequence[Any]], Any]


def scalar(value: Any, t: Attribute) -> Any:
    """`value` as a numpy scalar of type `t`; integers wrap like two's complement."""
    dtype = to_numpy_dtype(t)
    if dtype.kind == "i":
        bits = dtype.itemsize * 8
        half = 1 << (bits - 1)
        return dtype.type(((int(value) + half) % (1 << bits)) - half)
    return dtype.type(value)


def _typed(fn: Callable[..., Any]) -> ArithFn:
    def run(op: Operation, args: Sequence[Any]) -> Any:
        with np.errstate(over="ignore"):
            return scalar(fn(*args), op.results[0].type)

    return run


def _constant(op: Operation, args: Sequence[Any]) -> Any:
    value = op.properties["value"]
    t = op.results[0].type
    if isinstance(value, IntegerAttr | FloatAttr):
        return scalar(value.value.data, t)
    if isinstance(value, DenseIntOrFPElementsAttr):
        shape = tuple(t.get_shape())  # type: ignore[attr-defined]
        return np.asarray(value.get_values(), dtype=to_numpy_dtype(t.element_type)).reshape(shape)  # type: ignore[attr-defined]
    raise NotImplementedError(f"arith.constant with value {value}")


def _div_trunc(a: Any, b: Any) -> Any:
    if b == 0:
        raise ZeroDivisionError("arith.divsi: division by zero")
    q = abs(int(a)) // abs(int(b))
    return q if (a < 0) == (b < 0) else -q


def _rem_trunc(a: Any, b: Any) -> Any:
    if b == 0:
        raise ZeroDivisionError("arith.remsi: division by zero")
    return int(a) - _div_trunc(a, b) * int(b)


def _floordiv(a: Any, b: Any) -> Any:
    if b == 0:
        raise ZeroDivisionError("arith.floordivsi: division by zero")
    return int(a) // int(b)


def _ieee_max(a: Any, b: Any) -> Any:
    """IEEE maximum: NaN wins, and +0 is greater than -0."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    if a == b:
        return b if math.copysign(1.0, a) < 0 else a
    return max(a, b)


_CMPI = {
    0: lambda a, b: a == b,
    1: lambda a, b: a != b,
    2: lambda a, b: a < b,
    3: lambda a, b: a <= b,
    4: lambda a, b: a > b,
    5: lambda a, b: a >= b,
}


def _cmpi(op: Operation, args: Sequence[Any]) -> Any:
    pred = op.properties["predicate"].value.data  # type: ignore[attr-defined]
    if pred not in _CMPI:
        raise NotImplementedError(f"arith.cmpi with unsigned predicate {pred}")
    return np.bool_(_CMPI[pred](*args))


_CMPF: dict[int, Callable[[Any, Any], bool]] = {
    0: lambda a, b: False,
    1: lambda a, b: a == b,
    2: lambda a, b: a > b,
    3: lambda a, b: a >= b,
    4: lambda a, b: a < b,
    5: lambda a, b: a <= b,
    6: lambda a, b: a != b and not (math.isnan(a) or math.isnan(b)),
    7: lambda a, b: not (math.isnan(a) or math.isnan(b)),
    8: lambda a, b: a == b or math.isnan(a) or math.isnan(b),
    9: lambda a, b: not a <= b,
    10: lambda a, b: not a < b,
    11: lambda a, b: not a >= b,
    12: lambda a, b: not a > b,
    13: lambda a, b: not a == b,
    14: lambda a, b: math.isnan(a) or math.isnan(b),
    15: lambda a, b: True,
}


def _cmpf(op: Operation, args: Sequence[Any]) -> Any:
    return np.bool_(_CMPF[op.properties["predicate"].value.data](*args))  # type: ignore[attr-defined]


ARITH_SEMANTICS: dict[type[Operation], ArithFn] = {
    arith.ConstantOp: _constant,
    arith.AddiOp: _typed(lambda a, b: a + b),
    arith.SubiOp: _typed(lambda a, b: a - b),
    arith.MuliOp: _typed(lambda a, b: a * b),
    arith.DivSIOp: _typed(_div_trunc),
    arith.RemSIOp: _typed(_rem_trunc),
    arith.FloorDivSIOp: _typed(_floordiv),
    arith.MaxSIOp: _typed(max),
    arith.MinSIOp: _typed(min),
    arith.AndIOp: _typed(lambda a, b: a & b),
    arith.OrIOp: _typed(lambda a, b: a | b),
    arith.XOrIOp: _typed(lambda a, b: a ^ b),
    arith.AddfOp: _typed(lambda a, b: a + b),
    arith.SubfOp: _typed(lambda a, b: a - b),
    arith.MulfOp: _typed(lambda a, b: a * b),
    arith.DivfOp: _typed(lambda a, b: a / b),
    arith.NegfOp: _typed(lambda a: -a),
    arith.MaximumfOp: _typed(lambda a, b: _ieee_max(a, b)),
    arith.MinimumfOp: _typed(lambda a, b: -_ieee_max(-a, -b)),
    arith.CmpiOp: _cmpi,
    arith.CmpfOp: _cmpf,
    arith.SelectOp: lambda op, args: args[1] if args[0] else args[2],
    arith.IndexCastOp: _typed(int),
    arith.SIToFPOp: _typed(float),
    arith.FPToSIOp: _typed(int),
    arith.ExtFOp: _typed(float),
    arith.TruncFOp: _typed(float),
    # i1 true is all ones: sign extension makes it -1.
    arith.ExtSIOp: _typed(lambda a: -int(a) if isinstance(a, bool | np.bool_) else int(a)),
    arith.TruncIOp: _typed(int),
}
