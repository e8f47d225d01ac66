"""Tracing: running Python code over staged values to build a `func.func`.

This is the first stage of the pipeline. `ln.jit` creates a `Tracer` for a
function's argument types and calls the Python function with `Tensor`s, staged
values that stand for the function's arguments (like LMS's `Rep[T]`). Every
operation on a `Tensor` appends an `ln` op to the function body instead of
computing; Python control flow on Python values (a `for` over `range(n)`) simply
runs, so it unrolls.

Every op goes through `apply`, which either emits it into the active trace or,
when no trace is active and the operands are numpy arrays, builds it on
placeholder values and runs its reference semantics (`evaluate`): the public
ops in `ops.py` work eagerly on numpy arrays with the same type rules.

Mistakes in user code (shapes that do not broadcast, a staged value used as a
Python bool) raise `TraceError` naming the innermost stack frame outside
lanterna: the user's own file and line.
"""

from __future__ import annotations

import contextlib
import struct
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any

import numpy as np
from xdsl.builder import Builder
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.rewriter import InsertPoint
from xdsl.utils.exceptions import VerifyException

from lanterna.frontends.python.location import from_verify, user_error, user_location
from lanterna.frontends.python.tensor import Tensor
from lanterna.ir.ln import CastOp, ConstantOp
from lanterna.ir.types import from_numpy_dtype, tensor

# --- the tracer ---------------------------------------------------------------------------


class Tracer:
    """Builds the body of one `func.func` while Python code runs over `Tensor`s.

    Ops are inserted at `builder`'s insertion point; control-flow combinators
    move it into nested regions with `inserting_at`.
    """

    def __init__(
        self,
        name: str,
        arg_types: Sequence[Attribute],
        arg_names: Sequence[str | None] = (),
        parent: Tracer | None = None,
        captures: bool = False,
    ):
        # Functions traced on the side (a differentiated function, a staged callee)
        # join the root trace's module, so calls to them resolve.
        self.module: ModuleOp = parent.module if parent is not None else ModuleOp([])
        self.symbols: set[str] = parent.symbols if parent is not None else {name}
        self.name = name
        self.parent = parent
        # With `captures`, staged values of enclosing traces that the code uses (a
        # closure over them) become extra trailing parameters of this function, and
        # the caller passes `captured` for them. Only a function traced for one
        # call site may do this: a staged function (`function.py`) is reused at
        # other call sites, where those values are not in scope.
        self.captures = captures
        self.captured: list[Tensor] = []  # in the parent trace, one per extra parameter
        self._capture_args: dict[SSAValue, Tensor] = {}  # outer value -> its parameter
        self.block = Block(arg_types=arg_types)
        self.builder = Builder(InsertPoint.at_end(self.block))
        names = list(arg_names) + [None] * (len(arg_types) - len(arg_names))
        for arg, hint in zip(self.block.args, names):
            if hint is not None and SSAValue.is_valid_name(hint):
                arg.name_hint = hint
        self.args = [Tensor(a, self) for a in self.block.args]

    def insert(self, op: Operation) -> Operation:
        return self.builder.insert(op)

    def own(self, t: Tensor) -> Tensor:
        """`t` as a value of this trace: itself, or (with `captures`) the parameter
        that passes in a value of an enclosing trace. Otherwise a TraceError."""
        if t.tracer is self:
            return t
        inner = self._capture_args.get(t.value)
        if inner is not None:
            return inner
        if not self.captures or self.parent is None or not self.parent.encloses(t.tracer):
            check_owned(self, t)
        assert self.parent is not None
        outer = self.parent.own(t)  # the parent may have to capture it in turn
        arg = self.block.insert_arg(outer.value.type, len(self.block.args))
        inner = self._capture_args[t.value] = Tensor(arg, self)
        self.captured.append(outer)
        return inner

    def encloses(self, other: Tracer) -> bool:
        """Whether `other` is this trace or one it is nested in."""
        t: Tracer | None = self
        while t is not None and t is not other:
            t = t.parent
        return t is not None

    def fresh_symbol(self, base: str) -> str:
        """A function name not yet used in this trace's module."""
        name, n = base, 1
        while name in self.symbols:
            name, n = f"{base}_{n}", n + 1
        self.symbols.add(name)
        return name

    @contextlib.contextmanager
    def inserting_at(self, point: InsertPoint) -> Iterator[None]:
        saved = self.builder.insertion_point
        self.builder.insertion_point = point
        try:
            yield
        finally:
            self.builder.insertion_point = saved

    def finish(self, results: Sequence[Tensor]) -> func.FuncOp:
        """Close the body with `func.return` and wrap it in a `func.func`."""
        for r in results:
            check_owned(self, r)
        self.insert(func.ReturnOp(*(r.value for r in results)))
        inputs = [a.type for a in self.block.args]
        outputs = [r.value.type for r in results]
        return func.FuncOp(self.name, (inputs, outputs), Region(self.block))


class _TraceStack(threading.local):
    def __init__(self) -> None:
        self.tracers: list[Tracer] = []


_STACK = _TraceStack()


def current_tracer() -> Tracer | None:
    """The innermost active tracer, or None outside any trace."""
    return _STACK.tracers[-1] if _STACK.tracers else None


@contextlib.contextmanager
def tracing(tracer: Tracer) -> Iterator[Tracer]:
    """Make `tracer` the active one for the duration of the block."""
    _STACK.tracers.append(tracer)
    try:
        yield tracer
    finally:
        _STACK.tracers.pop()


def check_owned(tracer: Tracer, t: Tensor) -> None:
    if t.tracer is not tracer:
        raise user_error(
            f"a staged value from the trace of '{t.tracer.name}' was used in the trace of "
            f"'{tracer.name}'; staged values cannot escape the function they were traced in"
        )


# --- dtypes and lifting -------------------------------------------------------------------

Value = Any
"""A `Tensor` inside a trace, a numpy array outside one."""

# Python scalars are weakly typed (they take the other operand's dtype, as in JAX);
# alone inside a trace they default to these.
DEFAULT_FLOAT = np.dtype(np.float32)
DEFAULT_INT = np.dtype(np.int32)


def is_scalar(x: Any) -> bool:
    """A Python number (not a numpy scalar, which is typed like an array; note that
    `np.float64` subclasses `float`)."""
    return isinstance(x, bool | int | float) and not isinstance(x, np.generic)


def const_key(v: Hashable) -> Hashable:
    """A Python value folded into a trace, as a cache key: equal keys trace alike.

    `==` is not that: `0.0 == -0.0` though `1 / x` tells them apart, and
    `nan != nan`, so a NaN argument would never hit the cache. Floats are keyed
    by type and bits; `1`, `1.0` and `True` by their types; tuples element-wise.
    """
    if isinstance(v, float):
        return (type(v), struct.pack("<d", v))
    if isinstance(v, tuple):
        return (type(v), tuple(const_key(e) for e in v))
    return (type(v), v)


def dtype_of(x: Any) -> np.dtype:
    """The dtype an operand has when it is not a Python scalar."""
    if isinstance(x, Tensor):
        return x.dtype
    return np.asarray(x).dtype


_CHECKED: dict[Any, np.dtype] = {}


def checked_dtype(dtype: Any) -> np.dtype:
    """`dtype` as a numpy dtype lanterna supports, or a TraceError."""
    found = _CHECKED.get(dtype) if isinstance(dtype, np.dtype) else None
    if found is not None:
        return found
    try:
        dt = np.dtype(dtype)
        from_numpy_dtype(dt)
    except TypeError as e:
        raise user_error(str(e)) from None
    if isinstance(dtype, np.dtype):
        _CHECKED[dtype] = dt
    return dt


def default_float() -> np.dtype:
    """The float dtype integers become when an op needs a float."""
    return DEFAULT_FLOAT if current_tracer() is not None else np.dtype(np.float64)


def default_int() -> np.dtype:
    return DEFAULT_INT if current_tracer() is not None else np.dtype(np.int64)


def _kind(dt: np.dtype) -> int:
    return 0 if dt == np.bool_ else 1 if dt.kind in "iu" else 2


def result_dtype(*xs: Any) -> np.dtype:
    """The common dtype of operands.

    Outside a trace this is numpy's rule (`np.result_type`, where Python scalars
    are weak), so eager ops agree with numpy. Inside a trace it is JAX's: floats
    win over integers and integers over bools whatever their widths, the widest of
    the winning kind is taken, and Python scalars only raise the kind (an int
    tensor times 0.5 is float32).
    """
    if current_tracer() is None and not any(isinstance(x, Tensor) for x in xs):
        return checked_dtype(np.result_type(*(x if is_scalar(x) else np.asarray(x) for x in xs)))
    strong = [dtype_of(x) for x in xs if not is_scalar(x)]
    weak_kind = max((_kind(np.asarray(x).dtype) for x in xs if is_scalar(x)), default=0)
    if strong:
        kind = max(_kind(d) for d in strong)
        if weak_kind > kind:
            return DEFAULT_FLOAT if weak_kind == 2 else DEFAULT_INT
        return max((d for d in strong if _kind(d) == kind), key=lambda d: d.itemsize)
    return (np.dtype(np.bool_), DEFAULT_INT, DEFAULT_FLOAT)[weak_kind]


def lift(x: Any, dtype: Any = None) -> Value:
    """`x` as a value of the current mode, cast to `dtype` if given.

    Inside a trace: a Tensor (numpy data and Python scalars become `ln.constant`).
    Outside: a numpy array.
    """
    tracer = current_tracer()
    dt = None if dtype is None else checked_dtype(dtype)
    if isinstance(x, Tensor):
        if tracer is None:
            raise user_error(
                f"a staged value of '{x.tracer.name}' was used after its trace ended; "
                "return it from the traced function instead"
            )
        x = tracer.own(x)
        if dt is None or dt == x.dtype:
            return x
        return apply(CastOp, x, result_type=tensor(x.shape, from_numpy_dtype(dt)))
    if is_scalar(x) and dt is None:
        dt = result_dtype(x)
    try:
        arr = np.asarray(x, dtype=dt)
    except (TypeError, ValueError, OverflowError) as e:
        raise user_error(f"cannot convert {type(x).__name__} to an array: {e}") from None
    checked_dtype(arr.dtype)
    if tracer is None:
        return arr
    return Tensor(tracer.insert(ConstantOp.of(arr)).results[0], tracer)


def promote(*xs: Any) -> list[Value]:
    """The operands lifted to their common dtype (see `result_dtype`)."""
    dt = result_dtype(*xs)
    return [lift(x, dt) for x in xs]


# --- building ops -------------------------------------------------------------------------


def _placeholders(arrays: Sequence[np.ndarray]) -> tuple[SSAValue, ...]:
    types = [tensor(a.shape, from_numpy_dtype(a.dtype)) for a in arrays]
    return Block(arg_types=types).args


def apply(op_cls: Callable[..., Operation], *operands: Value, **kwargs: Any) -> Value:
    """Build `op_cls(*operands, **kwargs)` on lifted operands.

    Inside a trace the op is inserted and its result returned as a Tensor. Outside
    it is built on placeholders (so its type rule checks the call) and evaluated
    on the numpy operands. A type-rule failure becomes a TraceError at the user's
    line.
    """
    tracer = current_tracer()
    values = [lift(o) for o in operands]
    try:
        if tracer is not None:
            op = op_cls(*(v.value for v in values), **kwargs)
        else:
            op = op_cls(*_placeholders(values), **kwargs)
    except VerifyException as e:
        raise from_verify(e) from None
    if tracer is None:
        return np.asarray(op.evaluate(*values))  # type: ignore[attr-defined]
    if getattr(op, "CHECKS_INDICES", False):
        # An op that can meet a bad index when it runs names the user's line then.
        op.location = user_location()
    tracer.insert(op)
    return Tensor(op.results[0], tracer)
