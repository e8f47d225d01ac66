"""Converting the functions that converted code calls (autograph's `converted_call`).

`ln.jit` rewrites the function it is given (`autograph.convert`); the functions
that function calls are rewritten when they are called while tracing. Every call
in converted code goes through `autograph_runtime.call`, which runs the function
`converted` returns here: a plain Python function of the user's (a `def` whose
source can be read, in neither lanterna, the standard library nor an installed
package) is rewritten once, cached by its code, and rebuilt around the caller's
function object (its globals and closure); a method, a `functools.partial` or an
object with a user-defined `__call__` is converted through the function it calls.
Anything else (builtins, classes, library functions) runs as it is.

A staged value used as a Python bool where nothing was converted raises
`staged_bool_error`: it names the function, why it was not converted, and what to
do instead.
"""

from __future__ import annotations

import functools
import os
import sysconfig
import types
from typing import Any

from lanterna.errors import TraceError
from lanterna.frontends.python import autograph  # a module: it is importing this one
from lanterna.frontends.python.location import user_error, user_frame

_LIBRARY_DIRS = tuple(
    {
        os.path.realpath(path) + os.sep
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (path := sysconfig.get_paths().get(key))
    }
)
_IS_LIBRARY: dict[str, bool] = {}


def _is_library(filename: str) -> bool:
    """Code of the standard library or an installed package (not converted)."""
    found = _IS_LIBRARY.get(filename)
    if found is None:
        found = _IS_LIBRARY[filename] = os.path.realpath(filename).startswith(_LIBRARY_DIRS)
    return found


def _function(fn: types.FunctionType) -> types.FunctionType:
    code = fn.__code__
    entry = autograph.code_entry(code)
    if entry is None:
        if _is_library(code.co_filename):
            return fn
        entry = autograph.convert_code(code)
    if entry.converted is None or entry.converted is code:
        return fn
    return autograph.rebuilt(fn, entry.converted)


def converted(fn: Any) -> Any:
    """What a call of `fn` in converted code runs while tracing."""
    if isinstance(fn, types.FunctionType):
        return _function(fn)
    if isinstance(fn, types.MethodType):
        f = fn.__func__
        g = _function(f) if isinstance(f, types.FunctionType) else f
        return fn if g is f else types.MethodType(g, fn.__self__)
    if isinstance(fn, functools.partial):
        g = converted(fn.func)
        return fn if g is fn.func else functools.partial(g, *fn.args, **fn.keywords)
    call = next(
        (c.__dict__["__call__"] for c in type(fn).__mro__ if "__call__" in c.__dict__), None
    )
    if isinstance(call, types.FunctionType):
        g = _function(call)
        return fn if g is call else types.MethodType(g, fn)
    return fn


def staged_bool_error(what: str) -> TraceError:
    """The error for a staged value used as a Python bool, at the user's line."""
    base = f"the truth value of a staged {what} is not known while tracing"
    frame = user_frame()
    code = frame.f_code if frame is not None else None
    entry = autograph.code_entry(code) if code is not None else None
    if code is None or (entry is not None and entry.converted is code):
        # Converted code stages `if`/`while`/`and`/`or`; this is something else.
        return user_error(
            f"{base}; `if`/`while` on it are staged, but `bool(x)`, `assert x` and chained "
            "comparisons (`a < x < b`) are not: use ln.where, ln.logical_and, ln.cond or "
            "ln.while_loop"
        )
    name = f"'{code.co_qualname}' ({os.path.basename(code.co_filename)}:{code.co_firstlineno})"
    if entry is not None and entry.error is not None:
        why = f"lanterna could not convert {name}: {entry.why}"
    elif entry is not None and entry.converted is None:
        why = f"lanterna does not convert {name}: {entry.why}; write it as a `def` in a file"
    elif _is_library(code.co_filename):
        why = f"lanterna does not convert {name}: it is library code"
    else:
        why = (
            f"{name} was called from code lanterna does not convert (a library, a builtin "
            "such as map); call it from the jitted function or "
            "decorate it with @ln.function"
        )
    return user_error(
        f"{base}: Python `if`/`while` on staged values is staged only in converted code, "
        f"and {why}, or use ln.cond / ln.while_loop / ln.where"
    )
