"""`ln` elementwise ops: constants, arithmetic with numpy broadcasting, unary math,
comparisons, select and cast.

Binary ops require equal element types (the frontend inserts `ln.cast` for mixed
Python code) and broadcast their shapes as numpy does:

    %c = ln.add %a, %b : tensor<4x3xf32>, tensor<3xf32>      // -> tensor<4x3xf32>
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, TensorType, i1
from xdsl.ir import Attribute
from xdsl.irdl import irdl_op_definition, operand_def, prop_def
from xdsl.utils.exceptions import VerifyException

from lanterna.ir.ln.base import LnOp, float_prop, get_float, want_arity, want_given
from lanterna.ir.types import (
    broadcast_shapes,
    elt,
    format_shape,
    is_bool,
    is_float,
    shape_of,
    tensor,
    to_numpy_dtype,
)

# --- constants ----------------------------------------------------------------------------


@irdl_op_definition
class ConstantOp(LnOp):
    """A tensor literal.

        %c = ln.constant {value = dense<[1.0, 2.0]> : tensor<2xf32>} : tensor<2xf32>
    """

    name = "ln.constant"
    RESULT_IN_SYNTAX: ClassVar[bool] = True
    value = prop_def(DenseIntOrFPElementsAttr)

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        want_arity(cls.name, operand_types, 0)
        rt = want_given(cls.name, result_type)
        value = props.get("value")
        if isinstance(value, DenseIntOrFPElementsAttr) and value.type != rt:
            raise VerifyException(f"'{cls.name}': value has type {value.type}, result is {rt}")
        return rt

    @staticmethod
    def of(array: np.ndarray) -> ConstantOp:
        from lanterna.ir.types import from_numpy_dtype

        arr = np.asarray(array)
        t = tensor(arr.shape, from_numpy_dtype(arr.dtype))
        flat = arr.reshape(-1)
        data = [bool(x) for x in flat] if arr.dtype == np.bool_ else flat.tolist()
        attr = DenseIntOrFPElementsAttr.from_list(t, data)
        return ConstantOp(result_type=t, value=attr)

    def evaluate(self):
        t = self.result.type
        dtype = to_numpy_dtype(elt(t))
        return np.asarray(self.value.get_values(), dtype=dtype).reshape(shape_of(t))


class _FillOp(LnOp):
    RESULT_IN_SYNTAX: ClassVar[bool] = True
    FILL: ClassVar[float] = 0.0

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        want_arity(cls.name, operand_types, 0)
        return want_given(cls.name, result_type)

    def fill_value(self) -> float:
        return self.FILL

    def evaluate(self):
        t = self.result.type
        return np.full(shape_of(t), self.fill_value(), dtype=to_numpy_dtype(elt(t)))


@irdl_op_definition
class ZerosOp(_FillOp):
    """A tensor of zeros.

        %z = ln.zeros : tensor<2x3xf32>
    """

    name = "ln.zeros"
    FILL: ClassVar[float] = 0.0


@irdl_op_definition
class OnesOp(_FillOp):
    """A tensor of ones.

        %o = ln.ones : tensor<2x3xf64>
    """

    name = "ln.ones"
    FILL: ClassVar[float] = 1.0


@irdl_op_definition
class FullOp(_FillOp):
    """A tensor filled with one value.

        %f = ln.full {value = 2.5 : f64} : tensor<4xf32>
    """

    name = "ln.full"
    value = prop_def(Attribute)

    def fill_value(self) -> float:
        return get_float(self.properties, "value")

    def __init__(self, value: float, result_type: Attribute):
        super().__init__(result_type=result_type, value=float_prop(value))


# --- broadcasting binary ops --------------------------------------------------------------


def broadcast_result(op_name: str, types: Sequence[Attribute], element: Attribute | None) -> TensorType:
    shape = broadcast_shapes(*(shape_of(t) for t in types))
    if shape is None:
        shapes = " and ".join(format_shape(shape_of(t)) for t in types)
        raise VerifyException(f"'{op_name}': operand shapes {shapes} do not broadcast")
    return tensor(shape, element if element is not None else elt(types[0]))


class BinaryOp(LnOp):
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)

    FLOAT_ONLY: ClassVar[bool] = False

    @classmethod
    def check_elements(cls, operand_types: Sequence[Attribute]) -> None:
        want_arity(cls.name, operand_types, 2)
        a, b = (elt(t) for t in operand_types)
        if a != b:
            raise VerifyException(
                f"'{cls.name}': operand element types differ: lhs {a}, rhs {b}"
            )
        if is_bool(a):
            raise VerifyException(f"'{cls.name}': lhs has element type i1; use a cast first")
        if cls.FLOAT_ONLY and not is_float(a):
            raise VerifyException(f"'{cls.name}': lhs must have a float element type, got {a}")

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        cls.check_elements(operand_types)
        return broadcast_result(cls.name, operand_types, None)

    @staticmethod
    def numpy_fn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def evaluate(self, a, b):
        # ufuncs return numpy scalars for 0-d inputs; keep arrays throughout.
        return np.asarray(self.numpy_fn(a, b))


@irdl_op_definition
class AddOp(BinaryOp):
    """Elementwise sum with broadcasting.

        %c = ln.add %a, %b : tensor<2x3xf32>, tensor<3xf32>
    """

    name = "ln.add"
    numpy_fn = staticmethod(np.add)

    def adjoint(self, ab):
        ab.accum(0, ab.grad)
        ab.accum(1, ab.grad)


@irdl_op_definition
class SubOp(BinaryOp):
    """Elementwise difference.  `%c = ln.sub %a, %b : tensor<3xf32>, tensor<3xf32>`"""

    name = "ln.sub"
    numpy_fn = staticmethod(np.subtract)

    def adjoint(self, ab):
        ab.accum(0, ab.grad)
        if ab.wants(1):
            ab.accum(1, ab.neg(ab.grad))


@irdl_op_definition
class MulOp(BinaryOp):
    """Elementwise product.  `%c = ln.mul %a, %b : tensor<3xf32>, tensor<f32>`"""

    name = "ln.mul"
    numpy_fn = staticmethod(np.multiply)

    def adjoint(self, ab):
        a, b = ab.operands
        if ab.wants(0):
            ab.accum(0, ab.mul(ab.grad, b))
        if ab.wants(1):
            ab.accum(1, ab.mul(ab.grad, a))


@irdl_op_definition
class DivOp(BinaryOp):
    """Elementwise true division of floats.  `%c = ln.div %a, %b : tensor<3xf64>, tensor<3xf64>`"""

    name = "ln.div"
    FLOAT_ONLY: ClassVar[bool] = True
    numpy_fn = staticmethod(np.divide)

    def adjoint(self, ab):
        _, b = ab.operands
        if ab.wants(0):
            ab.accum(0, ab.div(ab.grad, b))
        if ab.wants(1):
            # d(a/b)/db = -(a/b)/b
            ab.accum(1, ab.neg(ab.div(ab.mul(ab.grad, ab.result), b)))


@irdl_op_definition
class MaximumOp(BinaryOp):
    """Elementwise maximum.  `%c = ln.maximum %a, %b : tensor<3xf32>, tensor<3xf32>`"""

    name = "ln.maximum"
    numpy_fn = staticmethod(np.maximum)

    def adjoint(self, ab):
        # Ties send the whole adjoint to lhs (a subgradient).
        a, b = ab.operands
        _route_by_mask(ab, ab.emit(GeOp(a, b)))


@irdl_op_definition
class MinimumOp(BinaryOp):
    """Elementwise minimum.  `%c = ln.minimum %a, %b : tensor<3xf32>, tensor<3xf32>`"""

    name = "ln.minimum"
    numpy_fn = staticmethod(np.minimum)

    def adjoint(self, ab):
        a, b = ab.operands
        _route_by_mask(ab, ab.emit(LeOp(a, b)))


class CompareOp(BinaryOp):
    """Comparisons accept every element type but i1 and produce i1."""

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        cls.check_elements(operand_types)
        return broadcast_result(cls.name, operand_types, i1)


@irdl_op_definition
class LtOp(CompareOp):
    """`%m = ln.lt %a, %b : tensor<3xf32>, tensor<f32>` gives tensor<3xi1>."""

    name = "ln.lt"
    numpy_fn = staticmethod(np.less)


@irdl_op_definition
class LeOp(CompareOp):
    """`%m = ln.le %a, %b : tensor<3xf32>, tensor<3xf32>` gives tensor<3xi1>."""

    name = "ln.le"
    numpy_fn = staticmethod(np.less_equal)


@irdl_op_definition
class GtOp(CompareOp):
    """`%m = ln.gt %a, %b : tensor<3xf32>, tensor<3xf32>` gives tensor<3xi1>."""

    name = "ln.gt"
    numpy_fn = staticmethod(np.greater)


@irdl_op_definition
class GeOp(CompareOp):
    """`%m = ln.ge %a, %b : tensor<3xf32>, tensor<3xf32>` gives tensor<3xi1>."""

    name = "ln.ge"
    numpy_fn = staticmethod(np.greater_equal)


@irdl_op_definition
class EqOp(CompareOp):
    """`%m = ln.eq %a, %b : tensor<3xi64>, tensor<3xi64>` gives tensor<3xi1>."""

    name = "ln.eq"
    numpy_fn = staticmethod(np.equal)


@irdl_op_definition
class NeOp(CompareOp):
    """`%m = ln.ne %a, %b : tensor<3xf32>, tensor<3xf32>` gives tensor<3xi1>."""

    name = "ln.ne"
    numpy_fn = staticmethod(np.not_equal)


# --- unary ops ----------------------------------------------------------------------------


class UnaryOp(LnOp):
    x = operand_def(TensorType)

    FLOAT_ONLY: ClassVar[bool] = True

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        want_arity(cls.name, operand_types, 1)
        (t,) = operand_types
        e = elt(t)
        if is_bool(e) or (cls.FLOAT_ONLY and not is_float(e)):
            kind = "a float" if cls.FLOAT_ONLY else "a numeric"
            raise VerifyException(f"'{cls.name}': operand must have {kind} element type, got {e}")
        return t  # type: ignore[return-value]

    def evaluate(self, x):
        return np.asarray(self.apply(x))

    @staticmethod
    def apply(x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@irdl_op_definition
class NegOp(UnaryOp):
    """`%y = ln.neg %x : tensor<3xf32>`"""

    name = "ln.neg"
    FLOAT_ONLY: ClassVar[bool] = False
    apply = staticmethod(np.negative)

    def adjoint(self, ab):
        ab.accum(0, ab.neg(ab.grad))


@irdl_op_definition
class AbsOp(UnaryOp):
    """`%y = ln.abs %x : tensor<3xf32>`"""

    name = "ln.abs"
    FLOAT_ONLY: ClassVar[bool] = False
    apply = staticmethod(np.abs)

    def adjoint(self, ab):
        # sign(x) * g, with 0 at x == 0
        (x,) = ab.operands
        zero = ab.const(0.0, x)
        pos = ab.select(ab.emit(GtOp(x, zero)), ab.grad, zero)
        ab.accum(0, ab.select(ab.emit(LtOp(x, zero)), ab.neg(ab.grad), pos))


@irdl_op_definition
class ExpOp(UnaryOp):
    """`%y = ln.exp %x : tensor<3xf32>`"""

    name = "ln.exp"
    apply = staticmethod(np.exp)

    def adjoint(self, ab):
        ab.accum(0, ab.mul(ab.grad, ab.result))


@irdl_op_definition
class LogOp(UnaryOp):
    """`%y = ln.log %x : tensor<3xf32>`"""

    name = "ln.log"
    apply = staticmethod(np.log)

    def adjoint(self, ab):
        ab.accum(0, ab.div(ab.grad, ab.operands[0]))


@irdl_op_definition
class TanhOp(UnaryOp):
    """`%y = ln.tanh %x : tensor<3xf32>`"""

    name = "ln.tanh"
    apply = staticmethod(np.tanh)

    def adjoint(self, ab):
        y = ab.result
        one = ab.const(1.0, y)
        ab.accum(0, ab.mul(ab.grad, ab.sub(one, ab.mul(y, y))))


@irdl_op_definition
class SqrtOp(UnaryOp):
    """`%y = ln.sqrt %x : tensor<3xf32>`"""

    name = "ln.sqrt"
    apply = staticmethod(np.sqrt)

    def adjoint(self, ab):
        half = ab.const(0.5, ab.result)
        ab.accum(0, ab.div(ab.mul(ab.grad, half), ab.result))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # Split by sign so exp never overflows.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


@irdl_op_definition
class SigmoidOp(UnaryOp):
    """`%y = ln.sigmoid %x : tensor<3xf32>`, 1 / (1 + exp(-x))."""

    name = "ln.sigmoid"
    apply = staticmethod(_sigmoid)

    def adjoint(self, ab):
        y = ab.result
        one = ab.const(1.0, y)
        ab.accum(0, ab.mul(ab.grad, ab.mul(y, ab.sub(one, y))))


@irdl_op_definition
class ReluOp(UnaryOp):
    """`%y = ln.relu %x : tensor<3xf32>`, max(x, 0)."""

    name = "ln.relu"

    @staticmethod
    def apply(x):
        return np.maximum(x, np.zeros((), x.dtype))

    def adjoint(self, ab):
        (x,) = ab.operands
        zero = ab.const(0.0, x)
        ab.accum(0, ab.select(ab.emit(GtOp(x, zero)), ab.grad, zero))


@irdl_op_definition
class PowOp(UnaryOp):
    """`x ** exponent` for a scalar exponent known at compile time.

        %y = ln.pow %x {exponent = 2.0 : f64} : tensor<3xf32>
    """

    name = "ln.pow"
    exponent = prop_def(Attribute)

    def __init__(self, x, exponent: float):
        super().__init__(x, exponent=float_prop(exponent))

    def evaluate(self, x):
        p = get_float(self.properties, "exponent")
        return np.asarray(np.power(x, np.asarray(p, dtype=x.dtype)))

    def adjoint(self, ab):
        (x,) = ab.operands
        p = get_float(self.properties, "exponent")
        if p == 0:
            # x ** 0 is constant: its derivative is 0 everywhere, also at x = 0 where
            # 0 * x ** -1 would be 0 * inf = NaN (JAX and autograd give 0 too).
            ab.accum(0, ab.zeros_like(x))
            return
        dx = ab.const(p, x) if p - 1 == 0 else ab.mul(ab.const(p, x), ab.emit(PowOp(x, p - 1)))
        ab.accum(0, ab.mul(ab.grad, dx))


@irdl_op_definition
class PowerOp(BinaryOp):
    """`x ** y` for a tensor exponent, elementwise with broadcasting (floats only);
    `ln.pow` is the same with an exponent known at compile time. As numpy's
    `power`: a negative base with an integer-valued exponent gives the real
    result (`(-2) ** 3 = -8`), with any other exponent NaN.

        %z = ln.power %x, %y : tensor<3xf32>, tensor<f32>
    """

    name = "ln.power"
    FLOAT_ONLY: ClassVar[bool] = True
    numpy_fn = staticmethod(np.power)

    def adjoint(self, ab):
        # JAX's rules, each with the select that keeps the derivative finite where
        # the textbook formula multiplies 0 by an infinity:
        #   d/dx = y * x ** (y - 1), taken as 0 where y == 0 (x ** -1 is inf at 0);
        #   d/dy = x ** y * log(x), with log(1) in place of log(0): 0 where x == 0.
        x, y = ab.operands
        if ab.wants(0):
            zero = ab.const(0.0, y)
            slope = ab.mul(y, ab.emit(PowerOp(x, ab.sub(y, ab.const(1.0, y)))))
            dx = ab.select(ab.emit(EqOp(y, zero)), zero, slope)
            ab.accum(0, ab.mul(ab.grad, dx))
        if ab.wants(1):
            zero, one = ab.const(0.0, x), ab.const(1.0, x)
            safe_x = ab.select(ab.emit(EqOp(x, zero)), one, x)
            dy = ab.mul(ab.result, ab.emit(LogOp(safe_x)))
            ab.accum(1, ab.mul(ab.grad, dy))


# --- select and cast ----------------------------------------------------------------------


@irdl_op_definition
class SelectOp(LnOp):
    """`where(cond, a, b)` with broadcasting of all three operands.

        %r = ln.select %m, %a, %b : tensor<3xi1>, tensor<3xf32>, tensor<f32>
    """

    name = "ln.select"
    cond = operand_def(TensorType)
    on_true = operand_def(TensorType)
    on_false = operand_def(TensorType)

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        want_arity(cls.name, operand_types, 3)
        c, a, b = operand_types
        if not is_bool(elt(c)):
            raise VerifyException(f"'{cls.name}': cond must have element type i1, got {elt(c)}")
        if elt(a) != elt(b):
            raise VerifyException(
                f"'{cls.name}': on_true and on_false element types differ: {elt(a)} vs {elt(b)}"
            )
        return broadcast_result(cls.name, operand_types, elt(a))

    def evaluate(self, c, a, b):
        return np.asarray(np.where(c, a, b))

    def adjoint(self, ab):
        c, a, _ = ab.operands
        zero = ab.const(0.0, a)
        if ab.wants(1):
            ab.accum(1, ab.select(c, ab.grad, zero))
        if ab.wants(2):
            ab.accum(2, ab.select(c, zero, ab.grad))


@irdl_op_definition
class CastOp(LnOp):
    """Element type conversion (float<->float, int<->float, to and from i1).

        %y = ln.cast %x : tensor<3xf32> -> tensor<3xf64>
    """

    name = "ln.cast"
    RESULT_IN_SYNTAX: ClassVar[bool] = True
    x = operand_def(TensorType)

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        want_arity(cls.name, operand_types, 1)
        rt = want_given(cls.name, result_type)
        if shape_of(rt) != shape_of(operand_types[0]):
            raise VerifyException(
                f"'{cls.name}': result shape {format_shape(shape_of(rt))} differs from "
                f"operand shape {format_shape(shape_of(operand_types[0]))}"
            )
        return rt

    def evaluate(self, x):
        return x.astype(to_numpy_dtype(elt(self.result.type)))

    def adjoint(self, ab):
        # Only float -> float casts are differentiated (ints carry no adjoint).
        target = ab.operands[0].type
        ab.accum(0, ab.emit(CastOp(ab.grad, result_type=target)))


def _route_by_mask(ab, mask) -> None:
    """The adjoint of maximum/minimum: lhs where `mask`, rhs elsewhere."""
    zero = ab.const(0.0, ab.grad)
    if ab.wants(0):
        ab.accum(0, ab.select(mask, ab.grad, zero))
    if ab.wants(1):
        ab.accum(1, ab.select(mask, zero, ab.grad))


ELEMENTWISE_OPS = [
    ConstantOp,
    ZerosOp,
    OnesOp,
    FullOp,
    AddOp,
    SubOp,
    MulOp,
    DivOp,
    MaximumOp,
    MinimumOp,
    LtOp,
    LeOp,
    GtOp,
    GeOp,
    EqOp,
    NeOp,
    NegOp,
    AbsOp,
    ExpOp,
    LogOp,
    TanhOp,
    SqrtOp,
    SigmoidOp,
    ReluOp,
    PowOp,
    PowerOp,
    SelectOp,
    CastOp,
]
