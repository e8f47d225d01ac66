"""`Tensor.__getitem__`: numpy basic indexing plus one integer index array.

An index expression is lowered to at most one op of each kind, in this order:

1. `ln.slice` for the integers and slices (an integer `i` is the slice `i:i+1`);
2. a reversal (`ln.gather` with constant indices) per dimension with a negative step;
3. `ln.gather` for an index array (a staged integer tensor, a numpy integer array
   or a list of ints), moved to its dimension with `ln.transpose`;
4. `ln.reshape` to drop the integer-indexed dimensions and add the `None` ones;
5. `ln.transpose` when numpy's rule moves the index array's dimensions to the front.

Boolean masks are not supported: their result shape depends on the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lanterna.frontends.python.tracing import Tensor, Value, apply, lift, user_error
from lanterna.ir.ln import GatherOp, ReshapeOp, SliceOp, TransposeOp


@dataclass
class _Dim:
    """What the index expression does to one dimension of the operand."""

    start: int
    stop: int
    step: int  # positive; `reverse` flips the selected elements afterwards
    reverse: bool = False
    drop: bool = False  # an integer index


def _as_index_array(item: Any) -> Tensor | np.ndarray | None:
    """The index array an item denotes, or None when it is a basic index."""
    if isinstance(item, Tensor):
        return item
    if isinstance(item, list):
        item = _array_like(item)
        if isinstance(item, Tensor):
            return item
        item = np.asarray(item)
    if isinstance(item, np.ndarray) and item.ndim > 0:
        return item
    return None


def _array_like(item: Any) -> Any:
    """A list holding staged values as their stack (numpy's array-like); else `item`."""
    from lanterna.frontends.python import ops  # which imports this module

    return ops.array_like(item)


def _as_int(item: Any) -> int | None:
    if isinstance(item, bool | np.bool_):
        return None
    if isinstance(item, int | np.integer):
        return int(item)
    if isinstance(item, np.ndarray) and item.ndim == 0 and item.dtype.kind in "iu":
        return int(item)
    return None


def _static_indices(idx: np.ndarray, n: int, axis: int) -> np.ndarray:
    if idx.dtype.kind not in "iu":
        what = "boolean masks are" if idx.dtype == np.bool_ else f"dtype {idx.dtype} is"
        raise user_error(f"index arrays must be integers; {what} not supported")
    if idx.size and (idx.min() < -n or idx.max() >= n):
        bad = idx[(idx < -n) | (idx >= n)].flat[0]
        raise user_error(f"index {bad} is out of bounds for axis {axis} with size {n}")
    return np.where(idx < 0, idx + n, idx).astype(np.int64)


def _expand(key: tuple[Any, ...], rank: int) -> list[Any]:
    """`key` with its Ellipsis (or the implicit trailing one) replaced by slices."""
    n_ellipsis = sum(1 for k in key if k is Ellipsis)
    if n_ellipsis > 1:
        raise user_error("an index can only have a single ellipsis ('...')")
    consumed = sum(1 for k in key if k is not None and k is not Ellipsis)
    if consumed > rank:
        raise user_error(f"too many indices for a tensor of rank {rank}: {consumed} were given")
    fill = [slice(None)] * (rank - consumed)
    if n_ellipsis == 0:
        return [*key, *fill]
    at = key.index(Ellipsis)
    return [*key[:at], *fill, *key[at + 1 :]]


def _gather_along(x: Value, indices: Value, axis: int) -> Value:
    """`take(x, indices, axis)`: the index dimensions replace dimension `axis`."""
    if axis == 0:
        return apply(GatherOp, x, indices)
    rank = x.ndim
    front = [axis, *(d for d in range(rank) if d != axis)]
    g = apply(GatherOp, apply(TransposeOp, x, perm=front), indices)
    k = indices.ndim
    back = [*(k + j for j in range(axis)), *range(k), *(k + j for j in range(axis, rank - 1))]
    return apply(TransposeOp, g, perm=back) if back != list(range(len(back))) else g


def take_along(x: Value, indices: Any, axis: int) -> Value:
    """Gather along any axis (a Tensor in a trace, numpy arrays eagerly). Staged
    indices are checked when the program runs; numpy ones are bounds-checked and
    wrapped (negative counts from the end) now."""
    indices = _array_like(indices)
    if not isinstance(indices, Tensor):
        indices = lift(_static_indices(np.asarray(indices), x.shape[axis], axis))
    elif indices.dtype.kind not in "iu":
        raise user_error(f"index arrays must be integers, got a staged {indices.dtype} tensor")
    return _gather_along(x, indices, axis)


def getitem(x: Tensor, key: Any) -> Tensor:
    items = _expand(key if isinstance(key, tuple) else (key,), x.ndim)
    dims: list[_Dim] = []
    out_shape: list[int] = []  # the result shape, index-array dimensions included
    array: tuple[Any, int, int] | None = None  # (index array, its input dim, its output position)
    advanced: list[int] = []  # positions in `items` of integers and the index array
    for pos, item in enumerate(items):
        if item is None:
            out_shape.append(1)
            continue
        d = len(dims)
        n = x.shape[d]
        idx = _as_index_array(item)
        i = _as_int(item)
        if idx is not None:
            if array is not None:
                raise user_error("indexing with more than one index array is not supported")
            array = (idx, d, len(out_shape))
            advanced.append(pos)
            shape = idx.shape
            out_shape.extend(shape)
            dims.append(_Dim(0, n, 1))
        elif i is not None:
            if not -n <= i < n:
                raise user_error(f"index {i} is out of bounds for axis {d} with size {n}")
            i %= n
            advanced.append(pos)
            dims.append(_Dim(i, i + 1, 1, drop=True))
        elif isinstance(item, slice):
            r = range(*item.indices(n))
            out_shape.append(len(r))
            if not r:
                dims.append(_Dim(0, 0, 1))
            elif r.step > 0:
                dims.append(_Dim(r.start, r[-1] + 1, r.step))
            else:
                dims.append(_Dim(r[-1], r[0] + 1, -r.step, reverse=True))
        else:
            raise user_error(
                f"unsupported index {item!r} of type {type(item).__name__}: use ints, "
                "static slices, None, ..., or one integer index array"
            )

    y: Value = x
    if any((dm.start, dm.stop, dm.step) != (0, n, 1) for dm, n in zip(dims, x.shape)):
        y = apply(
            SliceOp,
            y,
            start=[dm.start for dm in dims],
            stop=[dm.stop for dm in dims],
            step=[dm.step for dm in dims],
        )
    for d, dm in enumerate(dims):
        if dm.reverse:
            n = y.shape[d]
            y = _gather_along(y, lift(np.arange(n - 1, -1, -1, dtype=np.int64)), d)
    if array is not None:
        idx, d, _ = array
        y = take_along(y, idx, d)
    if y.shape != tuple(out_shape):
        y = apply(ReshapeOp, y, result_type=tuple(out_shape))

    # numpy puts the index array's dimensions first when the integers and the array
    # are not next to each other in the index.
    if array is not None and advanced != list(range(advanced[0], advanced[-1] + 1)):
        _, _, at = array
        k = len(array[0].shape)
        if at:
            rank = len(out_shape)
            perm = [*range(at, at + k), *range(at), *range(at + k, rank)]
            y = apply(TransposeOp, y, perm=perm)
    return y
