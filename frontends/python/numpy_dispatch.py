"""numpy functions on staged values: `np.sum(t)`, `np.exp(t)`, `ndarray + t` in a trace.

A `Tensor` takes part in numpy's dispatch protocols (NEP 13 `__array_ufunc__` and
NEP 18 `__array_function__`), so numpy hands every call with a staged argument
here instead of trying to convert it to an array. A function with an `ln`
counterpart runs that one: its arguments are bound by numpy's own signature and
passed on by name (numpy's first parameter, `a`, becomes the `ln` function's
first). Whatever `ln` cannot do -- an `out=` array to write into, an argument the
`ln` function lacks, a function `ln` does not have -- is a TraceError at the
user's line that names the `ln` function to use, or says there is none.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lanterna.errors import TraceError
from lanterna.frontends.python import ops
from lanterna.frontends.python.location import user_error

# numpy function name -> the name of its ln counterpart in `ops` (looked up when
# called: this module is imported while `ops` itself is).
FUNCTIONS: dict[str, str] = {
    "sum": "sum",
    "mean": "mean",
    "max": "max",
    "amax": "max",
    "dot": "dot",
    "where": "where",
    "reshape": "reshape",
    "transpose": "transpose",
    "concatenate": "concatenate",
    "stack": "stack",
    "take": "take",
    "broadcast_to": "broadcast_to",
    "expand_dims": "expand_dims",
    "zeros_like": "zeros_like",
    "ones_like": "ones_like",
    "astype": "astype",
}

# numpy ufunc name -> ln function name.
UFUNCS: dict[str, str] = {
    "add": "add",
    "subtract": "subtract",
    "multiply": "multiply",
    "divide": "divide",
    "true_divide": "divide",
    "power": "power",
    "negative": "negative",
    "absolute": "abs",
    "exp": "exp",
    "log": "log",
    "tanh": "tanh",
    "sqrt": "sqrt",
    "maximum": "maximum",
    "minimum": "minimum",
    "less": "less",
    "less_equal": "less_equal",
    "greater": "greater",
    "greater_equal": "greater_equal",
    "equal": "equal",
    "not_equal": "not_equal",
    "matmul": "matmul",
    "logical_and": "logical_and",
    "logical_or": "logical_or",
    "logical_not": "logical_not",
}

# Parameters ln spells differently from numpy, by numpy function (beyond the first).
_RENAMED: dict[str, dict[str, str]] = {"dot": {"b": "y"}}

# The reduction a ufunc method stands for (`np.add.reduce(t)`).
_REDUCTIONS = {"add": "ln.sum", "maximum": "ln.max"}

# What to write instead, for common numpy functions ln has no single op for.
_SPELLED: dict[str, str] = {
    "min": "-ln.max(-x)",
    "amin": "-ln.max(-x)",
    "clip": "ln.minimum(ln.maximum(x, lo), hi)",
    "square": "x * x",
    "squeeze": "ln.reshape",
    "ravel": "ln.reshape(x, (-1,))",
    "tensordot": "ln.dot or ln.matmul",
    "einsum": "ln.dot or ln.matmul",
}

_NO_VALUE = getattr(np, "_NoValue", None)
_UFUNC_DEFAULTS = {"where": True, "casting": "same_kind", "order": "K", "subok": True}


def _name(fn: Any) -> str:
    """`np.sum`, `np.linalg.norm`: the numpy function as a user writes it."""
    module = getattr(fn, "__module__", None) or "numpy"
    if module == "numpy" or module.startswith("numpy._"):
        module = "np"
    elif module.startswith("numpy."):
        module = "np" + module[len("numpy") :]
    return f"{module}.{fn.__name__}"


def _ln(table: dict[str, str], name: str) -> Callable[..., Any] | None:
    found = table.get(name)
    return None if found is None else getattr(ops, found)


def _missing(what: str) -> TraceError:
    short = what.rsplit(".", 1)[-1]
    hint = f"; write {_SPELLED[short]} instead" if short in _SPELLED else ""
    return user_error(
        f"{what} cannot run on a staged value (its value is only known when the compiled "
        f"function runs) and ln has no counterpart{hint}"
    )


def _out_error(what: str, ln_name: str) -> TraceError:
    return user_error(
        f"{what}(..., out=...) cannot write into an array while tracing (staged values are "
        f"immutable); use the value {ln_name} returns"
    )


def _is_default(value: Any, default: Any) -> bool:
    """Whether an argument the user passed leaves numpy's behaviour as its default does."""
    if value is _NO_VALUE or value is None:
        return True
    if default is inspect.Parameter.empty or default is _NO_VALUE:
        return False
    try:
        return type(value) is type(default) and bool(value == default)
    except (TypeError, ValueError):
        return False


def _call(what: str, ln_fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    try:
        inspect.signature(ln_fn).bind(*args, **kwargs)
    except TypeError as e:
        params = ", ".join(inspect.signature(ln_fn).parameters)
        raise user_error(f"{what}: {e} (ln.{ln_fn.__name__} takes {params})") from None
    return ln_fn(*args, **kwargs)


def array_function(fn: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """`fn(*args, **kwargs)` for a numpy function called with a staged argument.

    numpy's arguments are bound by its own signature: the first is passed on
    positionally, the others by name; `out=` and arguments the ln function does
    not take are errors unless they are numpy's defaults.
    """
    what = _name(fn)
    short = fn.__name__
    if what in ("np.shape", "np.ndim", "np.size"):
        # Static facts of a staged value are known while tracing.
        return _static(short, args, kwargs)
    ln_fn = _ln(FUNCTIONS, short) if what == f"np.{short}" else None
    if ln_fn is None:
        raise _missing(what)
    ln_name = f"ln.{ln_fn.__name__}"
    try:
        sig = inspect.signature(fn)
        bound = sig.bind(*args, **kwargs)
    except (TypeError, ValueError) as e:
        raise user_error(f"{what}: {e}") from None
    ln_params = inspect.signature(ln_fn).parameters
    renamed = _RENAMED.get(short, {})
    (_, first), *rest = bound.arguments.items()
    call_kwargs: dict[str, Any] = {}
    cast = None
    for name, value in rest:
        param = sig.parameters[name]
        target = renamed.get(name, name)
        if name == "out" and value is not None:
            raise _out_error(what, ln_name)
        if target in ln_params and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            call_kwargs[target] = value
        elif name == "dtype" and short in ("sum", "mean"):
            cast = value  # the accumulator's and the result's dtype: a cast first
        elif not _is_default(value, param.default):
            raise user_error(
                f"{what}: argument {name}={value!r} is not supported on staged values "
                f"({ln_name} takes {', '.join(ln_params)})"
            )
    if cast is not None:
        first = ops.astype(first, cast)
    return _call(what, ln_fn, [first], call_kwargs)


def _static(short: str, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    shape = tuple(args[0].shape)
    if short == "shape":
        return shape
    if short == "ndim":
        return len(shape)
    axis = args[1] if len(args) > 1 else kwargs.get("axis")
    return int(np.prod(shape)) if axis is None else shape[axis]


def array_ufunc(ufunc: np.ufunc, method: str, inputs: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """`ufunc(*inputs, **kwargs)` (or one of its methods) with a staged input."""
    what = f"np.{ufunc.__name__}"
    if method != "__call__":
        reduction = _REDUCTIONS.get(ufunc.__name__) if method == "reduce" else None
        hint = f"use {reduction}" if reduction else "ln has none"
        raise user_error(f"{what}.{method} cannot run on a staged value; {hint}")
    ln_fn = _ln(UFUNCS, ufunc.__name__)
    if ln_fn is None:
        raise _missing(what)
    ln_name = f"ln.{ln_fn.__name__}"
    out = kwargs.get("out")
    if out is not None and any(o is not None for o in out):
        raise _out_error(what, ln_name)
    for name, value in kwargs.items():
        if name != "out" and not _is_default(value, _UFUNC_DEFAULTS.get(name)):
            raise user_error(
                f"{what}: argument {name}={value!r} is not supported on staged values "
                f"(use {ln_name}, and ln.astype for another dtype)"
            )
    return _call(what, ln_fn, list(inputs), {})
