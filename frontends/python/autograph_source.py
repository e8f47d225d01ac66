"""Reading back the source of a function to rewrite (`autograph.py`).

A `def` is read with `inspect` from its code object (not the function, which
`inspect` would follow through `__wrapped__` to the function a decorator wraps).
A lambda has no source of its own: it is found in the syntax tree of its file,
as the one lambda on its first line whose parameters match, told apart from
look-alikes on the same line by where its body starts (the code's instruction
positions). Either way the result is a `def` with the file's line numbers, or
the reason there is none.
"""

from __future__ import annotations

import ast
import copy
import inspect
import linecache
import textwrap
import tokenize
import types

_NO_SOURCE = "its source is not available"

# filename -> (source text, its syntax tree); reparsed when linecache's text changes.
_MODULES: dict[str, tuple[str, ast.Module]] = {}


def function_def(code: types.CodeType) -> ast.FunctionDef | str:
    """The `def` (a lambda as one) that compiled to `code`, or why there is none."""
    if code.co_name == "<lambda>":
        return _lambda_def(code)
    try:
        module = ast.parse(textwrap.dedent(inspect.getsource(code)))
    except (OSError, TypeError, SyntaxError, IndexError, tokenize.TokenError):
        # No source to read, or a file name that is not this function's source
        # (code compiled from a string).
        return _NO_SOURCE
    if not module.body or not isinstance(module.body[0], ast.FunctionDef):
        return "its source is not a `def`"
    fdef = module.body[0]
    if fdef.name != code.co_name:
        return "its source is not a `def`"
    ast.increment_lineno(module, code.co_firstlineno - 1)
    return fdef


def _module(filename: str) -> ast.Module | None:
    text = "".join(linecache.getlines(filename))
    if not text:
        return None
    cached = _MODULES.get(filename)
    if cached is not None and cached[0] == text:
        return cached[1]
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    _MODULES[filename] = (text, tree)
    return tree


def _params(args: ast.arguments) -> tuple[str, ...]:
    """Parameter names in `co_varnames` order: positional, keyword-only, *args, **kwargs."""
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    names += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    return tuple(names)


def _lambda_def(code: types.CodeType) -> ast.FunctionDef | str:
    tree = _module(code.co_filename)
    if tree is None:
        return _NO_SOURCE
    n_params = code.co_argcount + code.co_kwonlyargcount
    n_params += bool(code.co_flags & inspect.CO_VARARGS) + bool(
        code.co_flags & inspect.CO_VARKEYWORDS
    )
    params = code.co_varnames[:n_params]
    found = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Lambda)
        and n.lineno == code.co_firstlineno
        and _params(n.args) == params
    ]
    if len(found) > 1:
        # The first instruction (RESUME) is placed at the lambda, the others in its body.
        starts = [(p[0], p[2]) for p in list(code.co_positions())[1:] if None not in (p[0], p[2])]
        start = min(starts, default=None)
        found = [n for n in found if (n.body.lineno, n.body.col_offset) == start]
    if len(found) != 1:
        return "its source could not be told apart from other lambdas on its line"
    lam = copy.deepcopy(found[0])
    fdef = ast.FunctionDef(
        name=code.co_name,
        args=lam.args,
        body=[ast.copy_location(ast.Return(value=lam.body), lam.body)],
        decorator_list=[],
        returns=None,
    )
    return ast.copy_location(fdef, lam)
