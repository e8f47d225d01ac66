"""`Tensor`: the staged value Python code computes with while it is traced.

A Tensor wraps an SSA value of the function being traced (like LMS's `Rep[T]`)
and behaves like a numpy array with a static shape and dtype: its operators and
methods call the public ops (`ops.py`) and indexing (`indexing.py`), which emit
`ln` ops. Anything that needs its runtime value (a Python `if`, `float(t)`)
raises a TraceError that says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.ir import SSAValue

from lanterna.errors import TraceError
from lanterna.frontends.python.location import user_error
from lanterna.ir.types import elt, shape_of, to_numpy_dtype

if TYPE_CHECKING:
    from lanterna.frontends.python.tracing import Tracer


class Tensor:
    """A staged array: an SSA value of the function being traced.

    It behaves like a numpy array with a static shape and dtype: arithmetic,
    comparisons, `@`, indexing, reductions and `reshape`/`T`/`astype` emit `ln`
    ops. Its value is unknown while tracing, so converting it to a Python bool,
    int or float is an error.
    """

    __slots__ = ("tracer", "value")

    def __init__(self, value: SSAValue, tracer: Tracer):
        if not isinstance(value.type, TensorType):
            raise TypeError(f"a Tensor wraps a tensor-typed value, got {value.type}")
        self.value = value
        self.tracer = tracer

    # --- static facts ---------------------------------------------------------------------

    @property
    def type(self) -> TensorType:
        return self.value.type  # type: ignore[return-value]

    @property
    def shape(self) -> tuple[int, ...]:
        return shape_of(self.type)

    @property
    def dtype(self) -> np.dtype:
        return to_numpy_dtype(elt(self.type))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __repr__(self) -> str:
        name = self.value.name_hint or "?"
        return f"Tensor(%{name}, shape={self.shape}, dtype={self.dtype})"

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a rank-0 tensor")
        return self.shape[0]

    def __iter__(self) -> Iterator[Tensor]:
        # Iterating unrolls over the leading dimension, which is static.
        for i in range(len(self)):
            yield self[i]

    # --- what a staged value cannot do ------------------------------------------------------

    def __bool__(self) -> bool:
        # Where `if`/`while` are converted they do not get here; the error says why not.
        from lanterna.frontends.python.autograph_calls import staged_bool_error

        raise staged_bool_error(self._describe())

    def _concrete(self, what: str, hint: str = "") -> TraceError:
        return user_error(
            f"cannot convert a staged {self._describe()} to a Python {what} while tracing: "
            f"its value is only known when the compiled function runs{hint}"
        )

    def __float__(self) -> float:
        raise self._concrete("float")

    def __int__(self) -> int:
        raise self._concrete("int")

    def __index__(self) -> int:
        # Mostly met as `c[i]`: a numpy array indexed by a staged value.
        raise self._concrete(
            "int", "; to index a numpy array `c` with it, index an ln array: ln.asarray(c)[i]"
        )

    def __complex__(self) -> complex:
        raise self._concrete("complex")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        # numpy got here without dispatching to us: a staged value inside a list.
        raise user_error(
            f"cannot convert a staged {self._describe()} to a numpy array while tracing: its "
            "value is only known when the compiled function runs; call the ln function "
            "instead of numpy's (ln functions stack lists of staged values: ln.mean([x, y])), "
            "and index an ln array, not a numpy one, with it: ln.asarray(c)[i]"
        )

    def __setitem__(self, key: Any, value: Any) -> None:
        raise user_error(
            "staged tensors are immutable; build the new value instead "
            "(ln.where, ln.concatenate, ln.scatter_add)"
        )

    def _describe(self) -> str:
        return f"tensor of shape {self.shape} and dtype {self.dtype}"

    # --- arithmetic -------------------------------------------------------------------------

    def __add__(self, other: Any) -> Tensor:
        return _ops.add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return _ops.add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return _ops.subtract(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return _ops.subtract(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return _ops.multiply(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return _ops.multiply(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return _ops.divide(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return _ops.divide(other, self)

    def __pow__(self, other: Any) -> Tensor:
        return _ops.power(self, other)

    def __rpow__(self, other: Any) -> Tensor:
        return _ops.power(other, self)

    def __matmul__(self, other: Any) -> Tensor:
        return _ops.matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return _ops.matmul(other, self)

    def __neg__(self) -> Tensor:
        return _ops.negative(self)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return _ops.abs(self)

    # --- comparisons and logic (bool tensors) ----------------------------------------------

    def __lt__(self, other: Any) -> Tensor:
        return _ops.less(self, other)

    def __le__(self, other: Any) -> Tensor:
        return _ops.less_equal(self, other)

    def __gt__(self, other: Any) -> Tensor:
        return _ops.greater(self, other)

    def __ge__(self, other: Any) -> Tensor:
        return _ops.greater_equal(self, other)

    def __eq__(self, other: object) -> Tensor:  # type: ignore[override]
        return _ops.equal(self, other)

    def __ne__(self, other: object) -> Tensor:  # type: ignore[override]
        return _ops.not_equal(self, other)

    # Elementwise `==` makes staged values unhashable, as numpy arrays are.
    __hash__ = None  # type: ignore[assignment]

    def __and__(self, other: Any) -> Tensor:
        return _ops.logical_and(self, other)

    def __rand__(self, other: Any) -> Tensor:
        return _ops.logical_and(other, self)

    def __or__(self, other: Any) -> Tensor:
        return _ops.logical_or(self, other)

    def __ror__(self, other: Any) -> Tensor:
        return _ops.logical_or(other, self)

    def __invert__(self) -> Tensor:
        return _ops.logical_not(self)

    # --- array methods ----------------------------------------------------------------------

    def __getitem__(self, key: Any) -> Tensor:
        return _indexing.getitem(self, key)

    @property
    def T(self) -> Tensor:
        return _ops.transpose(self)

    def transpose(self, *axes: Any) -> Tensor:
        if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], tuple | list)):
            return _ops.transpose(self, axes[0])
        return _ops.transpose(self, axes or None)

    def reshape(self, *shape: Any) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], tuple | list):
            return _ops.reshape(self, shape[0])
        return _ops.reshape(self, shape)

    def astype(self, dtype: Any) -> Tensor:
        return _ops.astype(self, dtype)

    def sum(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _ops.sum(self, axis, keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _ops.mean(self, axis, keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _ops.max(self, axis, keepdims)

    # numpy hands its functions on Tensors to us: `np.exp(t)`, `np.sum(t)`, and
    # `ndarray + t`, which would otherwise build an object array of Tensors.
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return _numpy.array_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(
        self, func: Any, types: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        return _numpy.array_function(func, args, kwargs)


# The public ops and indexing are written against Tensor; imported last because
# they import this module.
from lanterna.frontends.python import indexing as _indexing
from lanterna.frontends.python import numpy_dispatch as _numpy
from lanterna.frontends.python import ops as _ops
