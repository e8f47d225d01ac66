"""The public array operations, named after numpy's: `ln.add`, `ln.sum`, `ln.matmul`, ...

Each function emits `ln` ops when called inside a trace (on `Tensor`s, numpy
data or Python scalars) and computes eagerly with the ops' own reference
semantics when called on numpy arrays outside one, so `ln.tanh(np.ones(3))`
works like numpy. Operands are promoted to a common dtype first (see
`tracing.result_dtype`); ops that need floats turn integer operands into floats.
An operand that is a list or tuple holding staged values is their stack, as
numpy makes an array of a list of arrays (`ln.mean([x, x + 2])`).

Where numpy's function has more cases than the `ln` op (matmul of vectors or
broadcast batches, take along any axis), the function composes ops.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lanterna.frontends.python.indexing import take_along
from lanterna.frontends.python.tracing import (
    Tensor,
    Value,
    apply,
    checked_dtype,
    default_float,
    default_int,
    dtype_of,
    is_scalar,
    user_error,
)
from lanterna.frontends.python.tracing import lift as _lift
from lanterna.frontends.python.tracing import promote as _promote
from lanterna.ir import ln
from lanterna.ir.types import broadcast_shapes, format_shape, from_numpy_dtype, tensor

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
bool_ = np.dtype(np.bool_)

Shape = int | Sequence[int]
Axes = int | Sequence[int] | None


def _shape(shape: Shape) -> tuple[int, ...]:
    return (int(shape),) if isinstance(shape, int | np.integer) else tuple(int(d) for d in shape)


def _shape_of(v: Any) -> tuple[int, ...]:
    return v.shape if isinstance(v, Tensor) else tuple(np.shape(v))


def _type(shape: Shape, dtype: Any) -> Any:
    return tensor(_shape(shape), from_numpy_dtype(checked_dtype(dtype)))


def is_staged_sequence(x: Any) -> bool:
    """A (nested) list or tuple holding a staged value."""
    return isinstance(x, list | tuple) and any(
        isinstance(e, Tensor) or is_staged_sequence(e) for e in x
    )


def array_like(x: Any) -> Any:
    """A list of staged values as numpy's array-like of them, their `stack` (so
    `ln.mean([x, x + 2])` works as `np.mean` does on arrays); else `x` itself."""
    return stack(x) if is_staged_sequence(x) else x


def lift(x: Any, dtype: Any = None) -> Value:
    """`tracing.lift`, with lists of staged values stacked (`array_like`)."""
    return _lift(array_like(x), dtype)


def promote(*xs: Any) -> list[Value]:
    """`tracing.promote`, with lists of staged values stacked (`array_like`)."""
    return _promote(*(array_like(x) for x in xs))


def _as_float(x: Any) -> Value:
    """`x` lifted, with integers and bools turned into the default float."""
    v = lift(x)
    return v if dtype_of(v).kind == "f" else astype(v, default_float())


# --- creation and conversion --------------------------------------------------------------


def asarray(x: Any, dtype: Any = None) -> Value:
    """`x` as a Tensor inside a trace (constants for numpy data), a numpy array outside."""
    return lift(x, dtype)


def astype(x: Any, dtype: Any) -> Value:
    """Convert the element type (`ln.cast`); a no-op when it already matches."""
    v = lift(x)
    dt = checked_dtype(dtype)
    if dtype_of(v) == dt:
        return v
    return apply(ln.CastOp, v, result_type=tensor(_shape_of(v), from_numpy_dtype(dt)))


cast = astype


def zeros(shape: Shape, dtype: Any = float32) -> Value:
    return apply(ln.ZerosOp, result_type=_type(shape, dtype))


def ones(shape: Shape, dtype: Any = float32) -> Value:
    return apply(ln.OnesOp, result_type=_type(shape, dtype))


def full(shape: Shape, fill_value: float, dtype: Any = float32) -> Value:
    return apply(ln.FullOp, value=float(fill_value), result_type=_type(shape, dtype))


def zeros_like(x: Any) -> Value:
    v = array_like(x)
    return zeros(_shape_of(v), dtype_of(v))


def ones_like(x: Any) -> Value:
    v = array_like(x)
    return ones(_shape_of(v), dtype_of(v))


# --- elementwise arithmetic ---------------------------------------------------------------


def _binary(op_cls: Callable[..., Any], x: Any, y: Any) -> Value:
    a, b = promote(x, y)
    return apply(op_cls, a, b)


def add(x: Any, y: Any) -> Value:
    return _binary(ln.AddOp, x, y)


def subtract(x: Any, y: Any) -> Value:
    return _binary(ln.SubOp, x, y)


def multiply(x: Any, y: Any) -> Value:
    return _binary(ln.MulOp, x, y)


def divide(x: Any, y: Any) -> Value:
    """True division; integer operands are divided as floats, as in numpy."""
    a, b = promote(x, y)
    if dtype_of(a).kind != "f":
        a, b = astype(a, default_float()), astype(b, default_float())
    return apply(ln.DivOp, a, b)


def maximum(x: Any, y: Any) -> Value:
    return _binary(ln.MaximumOp, x, y)


def minimum(x: Any, y: Any) -> Value:
    return _binary(ln.MinimumOp, x, y)


def _int_power(x: Value, n: int) -> Value:
    """x ** n for an integer tensor and a non-negative int, by repeated squaring."""
    result: Value = ones_like(x)
    base = x
    while n:
        if n & 1:
            result = multiply(result, base)
        n >>= 1
        if n:
            base = multiply(base, base)
    return result


def power(x: Any, y: Any) -> Value:
    """`x ** y`, as numpy's `power`. A Python-number exponent is a property of
    `ln.pow`; a tensor exponent makes an `ln.power` (a negative base to an
    integer-valued exponent is real; the gradients are 0 where JAX's are)."""
    if is_scalar(y) and not is_scalar(x):
        v = lift(x)
        if dtype_of(v).kind != "f":
            if isinstance(y, int) and not isinstance(y, bool) and y >= 0:
                return _int_power(v, y)
            v = astype(v, default_float())
        return apply(ln.PowOp, v, exponent=float(y))
    a, b = promote(x, y)
    if dtype_of(a).kind != "f":
        a, b = astype(a, default_float()), astype(b, default_float())
    return apply(ln.PowerOp, a, b)


def negative(x: Any) -> Value:
    return apply(ln.NegOp, lift(x))


def abs(x: Any) -> Value:
    return apply(ln.AbsOp, lift(x))


def exp(x: Any) -> Value:
    return apply(ln.ExpOp, _as_float(x))


def log(x: Any) -> Value:
    return apply(ln.LogOp, _as_float(x))


def tanh(x: Any) -> Value:
    return apply(ln.TanhOp, _as_float(x))


def sqrt(x: Any) -> Value:
    return apply(ln.SqrtOp, _as_float(x))


def sigmoid(x: Any) -> Value:
    return apply(ln.SigmoidOp, _as_float(x))


def relu(x: Any) -> Value:
    return apply(ln.ReluOp, _as_float(x))


# --- comparisons, logic and select ---------------------------------------------------------


def _compare(op_cls: Callable[..., Any], x: Any, y: Any) -> Value:
    a, b = promote(x, y)
    if dtype_of(a) == np.bool_:
        # The comparison ops take numbers; False < True as 0 < 1.
        a, b = astype(a, int32), astype(b, int32)
    return apply(op_cls, a, b)


def less(x: Any, y: Any) -> Value:
    return _compare(ln.LtOp, x, y)


def less_equal(x: Any, y: Any) -> Value:
    return _compare(ln.LeOp, x, y)


def greater(x: Any, y: Any) -> Value:
    return _compare(ln.GtOp, x, y)


def greater_equal(x: Any, y: Any) -> Value:
    return _compare(ln.GeOp, x, y)


def equal(x: Any, y: Any) -> Value:
    return _compare(ln.EqOp, x, y)


def not_equal(x: Any, y: Any) -> Value:
    return _compare(ln.NeOp, x, y)


def _as_bool(x: Any) -> Value:
    v = lift(x)
    return v if dtype_of(v) == np.bool_ else not_equal(v, 0)


def where(cond: Any, x: Any, y: Any) -> Value:
    """`x` where `cond` holds, else `y` (`ln.select`); all three broadcast."""
    a, b = promote(x, y)
    return apply(ln.SelectOp, _as_bool(cond), a, b)


def logical_and(x: Any, y: Any) -> Value:
    return where(x, _as_bool(y), False)


def logical_or(x: Any, y: Any) -> Value:
    return where(x, True, _as_bool(y))


def logical_not(x: Any) -> Value:
    return where(x, False, True)


# --- reductions ---------------------------------------------------------------------------


def _reduce_operand(x: Any) -> Value:
    v = lift(x)
    return astype(v, default_int()) if dtype_of(v) == np.bool_ else v


def sum(x: Any, axis: Axes = None, keepdims: bool = False) -> Value:
    return apply(ln.SumOp, _reduce_operand(x), axes=axis, keepdims=keepdims)


def mean(x: Any, axis: Axes = None, keepdims: bool = False) -> Value:
    return apply(ln.MeanOp, _as_float(x), axes=axis, keepdims=keepdims)


def max(x: Any, axis: Axes = None, keepdims: bool = False) -> Value:
    return apply(ln.MaxOp, _reduce_operand(x), axes=axis, keepdims=keepdims)


# --- linear algebra -----------------------------------------------------------------------


def matmul(x: Any, y: Any) -> Value:
    """numpy's `matmul`: `ln.matmul` for the rank pairs it takes, otherwise a
    composition (a dot product of vectors; batches flattened or broadcast)."""
    a, b = promote(x, y)
    if dtype_of(a).kind != "f":
        a, b = astype(a, default_float()), astype(b, default_float())
    sa, sb = _shape_of(a), _shape_of(b)
    if not sa or not sb:
        raise user_error(
            "ln.matmul: operands must have rank >= 1, got shapes "
            f"{format_shape(sa)} and {format_shape(sb)}"
        )
    k_a, k_b = sa[-1], sb[0] if len(sb) == 1 else sb[-2]
    if k_a != k_b:
        raise user_error(
            f"ln.matmul: contracting dimensions differ: lhs shape {format_shape(sa)} "
            f"has {k_a}, rhs shape {format_shape(sb)} has {k_b}"
        )
    ranks = (len(sa), len(sb))
    if ranks in ((2, 2), (2, 1), (1, 2), (3, 3), (3, 2)) and (ranks != (3, 3) or sa[0] == sb[0]):
        return apply(ln.MatmulOp, a, b)
    if ranks == (1, 1):
        return sum(multiply(a, b))
    if len(sb) <= 2:
        # Fold lhs batch dimensions into its rows: one 2-D product.
        rows = reshape(a, (math.prod(sa[:-1]), k_a))
        out = apply(ln.MatmulOp, rows, b)
        return reshape(out, sa[:-1] + sb[1:])
    if len(sa) == 1:
        return reshape(matmul(reshape(a, (1, k_a)), b), sb[:-2] + sb[-1:])
    batch = broadcast_shapes(sa[:-2], sb[:-2])
    if batch is None:
        raise user_error(
            f"ln.matmul: batch dimensions of shapes {format_shape(sa)} and "
            f"{format_shape(sb)} do not broadcast"
        )
    n = math.prod(batch)
    a3 = reshape(broadcast_to(a, batch + sa[-2:]), (n,) + sa[-2:])
    b3 = reshape(broadcast_to(b, batch + sb[-2:]), (n,) + sb[-2:])
    return reshape(apply(ln.MatmulOp, a3, b3), batch + (sa[-2], sb[-1]))


def dot(x: Any, y: Any) -> Value:
    """numpy's `dot`: a product with a 0-d operand, the inner product of vectors, and
    otherwise the sum over the last axis of `x` and the second-to-last of `y`
    (the only axis of a vector), `dot(a, b)[i, j, k, m] = sum(a[i, j, :] * b[k, :, m])`.

    The result has shape `x.shape[:-1] + y.shape[:-2] + y.shape[-1:]`; it is one
    2-D product of `x` folded into rows and `y` folded into columns. Integer and
    bool operands keep their dtype, as in numpy (a broadcast product and a sum).
    """
    a, b = promote(x, y)
    sa, sb = _shape_of(a), _shape_of(b)
    if dtype_of(a) == np.bool_:
        # numpy's bool dot is "any(a and b)": an integer dot that is nonzero.
        return not_equal(dot(astype(a, default_int()), astype(b, default_int())), 0)
    if not sa or not sb:
        return multiply(a, b)
    k = sa[-1]
    k_b = sb[0] if len(sb) == 1 else sb[-2]
    if k != k_b:
        axis_b = len(sb) - 2 if len(sb) > 1 else 0
        raise user_error(
            f"ln.dot: shapes {format_shape(sa)} and {format_shape(sb)} are not aligned: "
            f"{k} (last axis of the lhs) != {k_b} (axis {axis_b} of the rhs)"
        )
    # y's contracted axis to the front, the rest folded into columns in result order.
    if len(sb) > 2:
        b = transpose(b, (len(sb) - 2, *range(len(sb) - 2), len(sb) - 1))
    cols = sb[:-2] + sb[-1:] if len(sb) > 1 else ()
    rows = reshape(a, (math.prod(sa[:-1]), k))
    b2 = reshape(b, (k, math.prod(cols))) if cols else b
    if dtype_of(a).kind == "f":
        out = apply(ln.MatmulOp, rows, b2)
    else:
        # ln.matmul takes floats; integers are multiplied exactly and summed over k.
        prod = multiply(expand_dims(rows, -1), b2 if cols else expand_dims(b2, -1))
        out = sum(prod, axis=1)
    return reshape(out, sa[:-1] + cols)


# --- shapes -------------------------------------------------------------------------------


def reshape(x: Any, shape: Shape) -> Value:
    """Same elements under a new shape; one dimension may be -1 (inferred)."""
    v = lift(x)
    src = _shape_of(v)
    dims = list(_shape(shape))
    if dims.count(-1) > 1:
        raise user_error(f"reshape: only one dimension can be -1, got {format_shape(dims)}")
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        total = math.prod(src)
        if known == 0 or total % known:
            raise user_error(
                f"ln.reshape: cannot reshape shape {format_shape(src)} into {format_shape(dims)}"
            )
        dims[dims.index(-1)] = total // known
    if tuple(dims) == src:
        return v
    return apply(ln.ReshapeOp, v, result_type=tuple(dims))


def transpose(x: Any, axes: Sequence[int] | None = None) -> Value:
    """Permute dimensions (reverse them when `axes` is None)."""
    v = lift(x)
    rank = len(_shape_of(v))
    perm = tuple(reversed(range(rank))) if axes is None else tuple(int(a) for a in axes)
    if len(perm) == rank:
        perm = tuple(a % rank if -rank <= a < 0 else a for a in perm)
    if perm == tuple(range(rank)):
        return v
    return apply(ln.TransposeOp, v, perm=perm)


def broadcast_to(x: Any, shape: Shape) -> Value:
    v = lift(x)
    target = _shape(shape)
    if _shape_of(v) == target:
        return v
    return apply(ln.BroadcastToOp, v, result_type=target)


def expand_dims(x: Any, axis: int) -> Value:
    v = lift(x)
    s = list(_shape_of(v))
    s.insert(axis % (len(s) + 1), 1)
    return reshape(v, s)


def concatenate(xs: Sequence[Any], axis: int = 0) -> Value:
    if not len(xs):
        raise user_error("ln.concatenate needs at least one array")
    return apply(ln.ConcatenateOp, *promote(*xs), axis=axis)


def stack(xs: Sequence[Any], axis: int = 0) -> Value:
    if not len(xs):
        raise user_error("ln.stack needs at least one array")
    vs = promote(*xs)
    shapes = [_shape_of(v) for v in vs]
    if len(set(shapes)) > 1:
        listed = ", ".join(format_shape(s) for s in shapes)
        raise user_error(f"ln.stack: all arrays must have the same shape, got {listed}")
    return concatenate([expand_dims(v, axis) for v in vs], axis=axis)


def take(table: Any, indices: Any, axis: int | None = None) -> Value:
    """numpy's `take`: elements of `table` along `axis` selected by an integer index
    array (`ln.gather`); without `axis`, elements of the flattened `table`.

    An embedding lookup (rows of a matrix) is `take(table, ids, axis=0)`. Negative
    indices count from the end; staged indices are checked when the program runs,
    numpy ones now.
    """
    t = lift(table)
    if axis is None:
        return take_along(reshape(t, (-1,)), indices, 0)
    rank = len(_shape_of(t))
    if not -rank <= axis < rank:
        raise user_error(f"ln.take: axis {axis} is out of range for rank {rank}")
    return take_along(t, indices, axis % rank)


def scatter_add(updates: Any, indices: Any, shape: Shape) -> Value:
    """Zeros of `shape` with row `updates[j...]` added at row `indices[j...]` (the
    adjoint of `take`); an int `shape` is the number of rows."""
    u = lift(updates)
    idx = lift(indices)
    if isinstance(shape, int | np.integer):
        shape = (int(shape),) + _shape_of(u)[len(_shape_of(idx)) :]
    return apply(ln.ScatterAddOp, u, idx, result_type=_shape(shape))


# --- neural-network ops -------------------------------------------------------------------


def softmax(x: Any, axis: int = -1) -> Value:
    return apply(ln.SoftmaxOp, _as_float(x), axis=axis)


def log_softmax(x: Any, axis: int = -1) -> Value:
    return apply(ln.LogSoftmaxOp, _as_float(x), axis=axis)


def nll_loss(logp: Any, target: Any, reduction: str = "mean") -> Value:
    """Negative log-likelihood of integer class `target`s under [N, C] log-probabilities."""
    return apply(ln.NllLossOp, lift(logp), lift(target), reduction=reduction)


def cross_entropy(logits: Any, target: Any, reduction: str = "mean") -> Value:
    """`nll_loss(log_softmax(logits), target)` as one op."""
    return apply(ln.CrossEntropyOp, lift(logits), lift(target), reduction=reduction)


def conv2d(x: Any, w: Any, stride: Shape = 1, padding: Shape = 0) -> Value:
    """NCHW input, OIHW weight; see `ln.conv2d`."""
    a, b = promote(x, w)
    return apply(ln.Conv2dOp, a, b, stride=stride, padding=padding)


def max_pool2d(
    x: Any, kernel_size: Shape, stride: Shape | None = None, padding: Shape = 0
) -> Value:
    return apply(ln.MaxPool2dOp, lift(x), kernel=kernel_size, stride=stride, padding=padding)


def avg_pool2d(
    x: Any, kernel_size: Shape, stride: Shape | None = None, padding: Shape = 0
) -> Value:
    return apply(ln.AvgPool2dOp, lift(x), kernel=kernel_size, stride=stride, padding=padding)


def dropout(x: Any, rate: float, seed: Any) -> Value:
    """Inverted dropout with a deterministic mask from an integer `seed`."""
    s = lift(seed, np.int64)
    if _shape_of(s) != ():
        raise user_error(
            f"ln.dropout: seed must be a scalar, got shape {format_shape(_shape_of(s))}"
        )
    return apply(ln.DropoutOp, lift(x), s, rate=float(rate))


__all__ = [
    "abs",
    "add",
    "asarray",
    "astype",
    "avg_pool2d",
    "bool_",
    "broadcast_to",
    "cast",
    "concatenate",
    "conv2d",
    "cross_entropy",
    "divide",
    "dot",
    "dropout",
    "equal",
    "exp",
    "expand_dims",
    "float32",
    "float64",
    "full",
    "greater",
    "greater_equal",
    "int32",
    "int64",
    "less",
    "less_equal",
    "log",
    "log_softmax",
    "logical_and",
    "logical_not",
    "logical_or",
    "matmul",
    "max",
    "max_pool2d",
    "maximum",
    "mean",
    "minimum",
    "multiply",
    "negative",
    "nll_loss",
    "not_equal",
    "ones",
    "ones_like",
    "power",
    "relu",
    "reshape",
    "scatter_add",
    "sigmoid",
    "softmax",
    "sqrt",
    "stack",
    "subtract",
    "sum",
    "take",
    "tanh",
    "transpose",
    "where",
    "zeros",
    "zeros_like",
]  # fmt: skip
