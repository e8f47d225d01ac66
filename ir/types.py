"""Type helpers shared by the dialects, the interpreter and the frontend.

lanterna's tensors are builtin `TensorType`s with static shapes and one of the
element types below. This module maps them to numpy dtypes and back, and holds
the shape arithmetic (broadcasting) that type inference and the reference
semantics share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from xdsl.dialects.builtin import (
    Float32Type,
    Float64Type,
    IndexType,
    IntegerType,
    TensorType,
    f32,
    f64,
    i1,
    i32,
    i64,
)
from xdsl.ir import Attribute
from xdsl.utils.exceptions import VerifyException

FLOAT_TYPES: tuple[Attribute, ...] = (f32, f64)
INT_TYPES: tuple[Attribute, ...] = (i32, i64)
ELEMENT_TYPES: tuple[Attribute, ...] = (f32, f64, i32, i64, i1)

_TO_NUMPY: dict[Attribute, np.dtype] = {
    f32: np.dtype(np.float32),
    f64: np.dtype(np.float64),
    i32: np.dtype(np.int32),
    i64: np.dtype(np.int64),
    i1: np.dtype(np.bool_),
}
_FROM_NUMPY: dict[np.dtype, Attribute] = {v: k for k, v in _TO_NUMPY.items()}


def to_numpy_dtype(element_type: Attribute) -> np.dtype:
    """The numpy dtype of an element type (index maps to int64)."""
    if isinstance(element_type, IndexType):
        return np.dtype(np.int64)
    try:
        return _TO_NUMPY[element_type]
    except KeyError:
        raise TypeError(f"lanterna has no numpy dtype for element type {element_type}") from None


def from_numpy_dtype(dtype: np.dtype | type) -> Attribute:
    """The element type of a numpy dtype; raises TypeError for unsupported ones."""
    dt = np.dtype(dtype)
    try:
        return _FROM_NUMPY[dt]
    except KeyError:
        raise TypeError(
            f"unsupported dtype {dt}; lanterna supports float32, float64, int32, int64 and bool"
        ) from None


def tensor(shape: Sequence[int], element_type: Attribute) -> TensorType:
    """A static-shaped tensor type."""
    return TensorType(element_type, list(shape))


def is_float(t: Attribute) -> bool:
    return isinstance(t, Float32Type | Float64Type)


def is_int(t: Attribute) -> bool:
    return isinstance(t, IntegerType) and t.width.data in (32, 64)


def is_bool(t: Attribute) -> bool:
    return t == i1


def shape_of(t: Attribute) -> tuple[int, ...]:
    assert isinstance(t, TensorType)
    return tuple(t.get_shape())


def elt(t: Attribute) -> Attribute:
    assert isinstance(t, TensorType)
    return t.element_type


def format_shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def broadcast_shapes(*shapes: Sequence[int]) -> tuple[int, ...] | None:
    """numpy's broadcasting of static shapes, or None when they do not broadcast."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[int] = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0}
        dims.discard(1)
        if len(dims) > 1:
            return None
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def expect_tensor(op_name: str, what: str, t: Attribute) -> TensorType:
    if not isinstance(t, TensorType):
        raise VerifyException(f"'{op_name}': {what} must be a ranked tensor, got {t}")
    if any(d < 0 for d in t.get_shape()):
        raise VerifyException(f"'{op_name}': {what} must have a static shape, got {t}")
    if t.element_type not in ELEMENT_TYPES:
        raise VerifyException(
            f"'{op_name}': {what} has unsupported element type {t.element_type} "
            "(expected f32, f64, i32, i64 or i1)"
        )
    check_size(op_name, what, t)
    return t


# Backends index and size buffers with int64 (C++ `int64_t`, numpy's intp).
INT64_MAX = (1 << 63) - 1


def check_size(op_name: str, what: str, t: TensorType) -> None:
    """Reject a tensor type whose element count, byte size or strides do not fit in
    int64: generated code would compute them with overflowing literals. A zero
    extent does not excuse the others, as strides are products of them."""
    shape = t.get_shape()
    extent = 1
    for d in shape:
        extent *= max(d, 1)
    itemsize = to_numpy_dtype(t.element_type).itemsize
    if extent * itemsize > INT64_MAX:
        count = math.prod(shape)
        size = (
            f"{count} elements of {itemsize} bytes are {count * itemsize} bytes"
            if count
            else f"it has no elements, but its strides reach {extent * itemsize} bytes"
        )
        raise VerifyException(
            f"'{op_name}': {what} {t} is too large: {size}, more than int64 holds ({INT64_MAX})"
        )
