"""Python control flow on staged values: rewriting a function's AST into calls
that choose, at trace time, between plain Python and the combinators.

`ln.jit` and `@ln.function` run their function through `convert`, which reads
its source (`inspect.getsource`), rewrites `if`/`elif`/`else`, `while`,
`for ... in ...`, `break`, `continue`, `return` inside branches, `a if c else b`
and `and`/`or`/`not` into calls of the runtime functions in `autograph_runtime.py`, and compiles the
result with the user's file name and line numbers (so a TraceError still names
the user's line). Each statement becomes functions of the variables it assigns:

    if x.sum() > 0:                 def if_true(y):  y = x * 2; return (y,)
        y = x * 2           ==>     def if_false(y): y = -x;    return (y,)
    else:                           (y,) = if_stmt(x.sum() > 0, if_true, if_false,
        y = -x                                     state(locals(), ('y',)), ('y',))

At trace time `if_stmt` looks at the condition: a Python value runs one branch,
as Python would (so Python control flow still unrolls); a staged value traces
both into an `scf.if` (`control.stage_if`). Loops run as Python loops until
their condition becomes staged, and from then on as `scf.while`/`scf.for`.

How the remaining statements are made to fit:

* `return` inside an `if`: the statements after the `if` are moved into the
  branches that can fall through, so both branches return and the `if` itself
  becomes `return if_stmt(...)`.
* `break`/`continue`: a flag variable is set instead, the statements after it
  are guarded by `if not flag`, and a loop's condition also tests the break flag.
* A variable with no value on some path is `control.Undefined`, and using it is
  a TraceError that says why (assigned in only one branch, or only inside a
  staged loop).
* What cannot be staged is left as Python, with its condition checked: a
  staged condition of an `if`/`while` that controls a `yield`, sits inside a
  `try`, or has a `return` inside a loop raises a TraceError naming the line.

Every call becomes `call(f, ...)`, which while tracing converts the user
function `f` it calls in turn (`autograph_calls.py`), so control flow in helpers,
methods and lambdas is staged too; a function is rewritten once per code object.
Functions whose source cannot be read (the REPL, `exec`) are left unchanged, and
a staged `if` in one is an error that names it (`autograph_calls.staged_bool_error`).
"""

from __future__ import annotations

import ast
import copy
import functools
import types
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lanterna.errors import TraceError
from lanterna.frontends.python import autograph_runtime
from lanterna.frontends.python.autograph_source import function_def
from lanterna.frontends.python.location import _is_internal

RUNTIME = "ln__ag"
_CONVERTED = "__ln_autograph__"

# --- the rewriting --------------------------------------------------------------------------


class ConversionError(TraceError):
    """A construct the rewriting cannot handle at all (found before tracing)."""


def _assigned(stmts: Iterable[ast.stmt]) -> list[str]:
    """Names bound by the statements in the current scope, in first-seen order."""
    found: dict[str, None] = {}

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found[node.name] = None
            for d in node.decorator_list:
                visit(d)
            return
        if isinstance(
            node, ast.Lambda | ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp
        ):
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            found[node.id] = None
        elif isinstance(node, ast.alias):
            found[(node.asname or node.name).split(".")[0]] = None
        elif isinstance(node, ast.ExceptHandler) and node.name:
            found[node.name] = None
        for child in ast.iter_child_nodes(node):
            visit(child)

    for s in stmts:
        visit(s)
    return list(found)


def _walk_scope(node: ast.AST, stop_at_loops: bool = False) -> Iterable[ast.AST]:
    """The nodes below `node` in the same function scope (optionally not entering loops)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        yield child
        if stop_at_loops and isinstance(child, ast.While | ast.For):
            continue
        yield from _walk_scope(child, stop_at_loops)


def _contains(
    nodes: Iterable[ast.AST], kinds: tuple[type, ...], stop_at_loops: bool = False
) -> bool:
    for n in nodes:
        if isinstance(n, kinds):
            return True
        if stop_at_loops and isinstance(n, ast.While | ast.For):
            continue
        if any(isinstance(m, kinds) for m in _walk_scope(n, stop_at_loops)):
            return True
    return False


def _always_returns(stmts: Sequence[ast.stmt]) -> bool:
    if not stmts:
        return False
    last = stmts[-1]
    if isinstance(last, ast.Return | ast.Raise):
        return True
    if isinstance(last, ast.If):
        return _always_returns(last.body) and _always_returns(last.orelse)
    return False


def _name(id_: str, store: bool = False) -> ast.Name:
    return ast.Name(id=id_, ctx=ast.Store() if store else ast.Load())


def _rt(attr: str) -> ast.Attribute:
    return ast.Attribute(value=_name(RUNTIME), attr=attr, ctx=ast.Load())


def _call(attr: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=_rt(attr), args=list(args), keywords=[])


def _strs(names: Sequence[str]) -> ast.Tuple:
    return ast.Tuple(elts=[ast.Constant(n) for n in names], ctx=ast.Load())


def _tuple(names: Sequence[str], store: bool = False) -> ast.Tuple:
    return ast.Tuple(
        elts=[_name(n, store) for n in names], ctx=ast.Store() if store else ast.Load()
    )


def _thunk(expr: ast.expr) -> ast.Lambda:
    return ast.Lambda(
        args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]),
        body=expr,
    )


def _def(name: str, params: Sequence[str], body: list[ast.stmt]) -> ast.FunctionDef:
    return ast.FunctionDef(
        name=name,
        args=ast.arguments(
            posonlyargs=[],
            args=[ast.arg(arg=p) for p in params],
            kwonlyargs=[],
            kw_defaults=[],
            defaults=[],
        ),
        body=body or [ast.Pass()],
        decorator_list=[],
        returns=None,
    )


# Builtins that look at their caller's frame, so they must be called from it directly.
_FRAME_BUILTINS = frozenset({"super", "locals", "globals", "vars", "eval", "exec", "dir"})


def _converts_call(node: ast.Call) -> bool:
    """Whether a call goes through `call` (which converts the user functions it calls)."""
    fn = node.func
    if isinstance(fn, ast.Name):
        return fn.id not in _FRAME_BUILTINS
    return not (
        isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name) and fn.value.id == RUNTIME
    )


def _state(names: Sequence[str]) -> ast.Call:
    locals_call = ast.Call(func=_name("locals"), args=[], keywords=[])
    return _call("state", locals_call, _strs(names))


class _Expressions(ast.NodeTransformer):
    """`a if c else b`, `and`, `or`, `not` as runtime calls (staged-aware), and calls
    through `call` (which converts the functions they call)."""

    def visit_IfExp(self, node: ast.IfExp) -> Any:
        self.generic_visit(node)
        return ast.copy_location(
            _call("if_exp", node.test, _thunk(node.body), _thunk(node.orelse)), node
        )

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        self.generic_visit(node)
        fn = "and_" if isinstance(node.op, ast.And) else "or_"
        return ast.copy_location(_call(fn, *(_thunk(v) for v in node.values)), node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            return ast.copy_location(_call("not_", node.operand), node)
        return node

    def visit_Call(self, node: ast.Call) -> Any:
        self.generic_visit(node)
        if not _converts_call(node):
            return node
        call = ast.Call(func=_rt("call"), args=[node.func, *node.args], keywords=node.keywords)
        return ast.copy_location(call, node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        return node


class _Converter:
    """Rewrites one function body; `unstaged` names why control flow here must stay Python."""

    def __init__(self, filename: str):
        self.filename = filename
        self.counter = 0

    def fresh(self, base: str) -> str:
        self.counter += 1
        return f"ln__{base}_{self.counter}"

    def error(self, node: ast.AST, message: str) -> ConversionError:
        return ConversionError(message, self.filename, getattr(node, "lineno", None))

    def expr(self, node: ast.expr) -> ast.expr:
        return _Expressions().visit(node)

    # --- functions ----------------------------------------------------------------------

    def function(self, fdef: ast.FunctionDef) -> ast.FunctionDef:
        generator = _contains(fdef.body, (ast.Yield, ast.YieldFrom))
        body = list(fdef.body)
        if (
            not generator
            and _contains(body, (ast.Return,), stop_at_loops=True)
            and not _always_returns(body)
        ):
            body.append(ast.copy_location(ast.Return(value=None), body[-1]))
        unstaged = (
            "an `if` or loop in a generator (a staged condition controlling a `yield`)"
            if generator
            else None
        )
        fdef.body = self.block(body, unstaged)
        return fdef

    # --- blocks -------------------------------------------------------------------------

    def block(self, stmts: Sequence[ast.stmt], unstaged: str | None) -> list[ast.stmt]:
        stmts = list(stmts)
        if unstaged is None:
            stmts = self.move_tails(stmts)
        out: list[ast.stmt] = []
        for s in stmts:
            out.extend(self.stmt(s, unstaged))
        return out

    def move_tails(self, stmts: list[ast.stmt]) -> list[ast.stmt]:
        """Move what follows an `if` that may return into its falling-through branches."""
        for i, s in enumerate(stmts):
            if (
                isinstance(s, ast.If)
                and _contains([s], (ast.Return,), stop_at_loops=True)
                and i + 1 < len(stmts)
            ):
                tail = stmts[i + 1 :]
                if not _always_returns(s.body):
                    s.body = self.move_tails(s.body + [copy.deepcopy(t) for t in tail])
                if not _always_returns(s.orelse):
                    s.orelse = self.move_tails(s.orelse + [copy.deepcopy(t) for t in tail])
                return stmts[: i + 1]
        return stmts

    def stmt(self, s: ast.stmt, unstaged: str | None) -> list[ast.stmt]:
        if isinstance(s, ast.FunctionDef):
            return [self.nested_function(s)]
        if isinstance(s, ast.If):
            return self.if_(s, unstaged)
        if isinstance(s, ast.While):
            return self.while_(s, unstaged)
        if isinstance(s, ast.For):
            return self.for_(s, unstaged)
        if isinstance(s, ast.Try):
            why = unstaged or "control flow inside a `try`"
            s.body = self.block(s.body, why)
            for h in s.handlers:
                h.body = self.block(h.body, why)
            s.orelse = self.block(s.orelse, why)
            s.finalbody = self.block(s.finalbody, why)
            return [s]
        if isinstance(s, ast.With):
            s.items = [ast.withitem(self.expr(w.context_expr), w.optional_vars) for w in s.items]
            s.body = self.block(s.body, unstaged)
            return [s]
        if isinstance(s, ast.Return) and s.value is not None and unstaged is None:
            s.value = ast.copy_location(_call("ret", self.expr(s.value)), s.value)
            return [s]
        return [self.expr(s)]  # type: ignore[arg-type]

    def nested_function(self, fdef: ast.FunctionDef) -> ast.FunctionDef:
        fdef.decorator_list = [self.expr(d) for d in fdef.decorator_list]
        return _Converter.function(self, fdef)

    # --- if -----------------------------------------------------------------------------

    def if_(self, s: ast.If, unstaged: str | None) -> list[ast.stmt]:
        if unstaged is None and _contains([s], (ast.Yield, ast.YieldFrom)):
            unstaged = "an `if` whose branches `yield`"
        if (
            unstaged is None
            and _contains([s], (ast.Return,))
            and not _contains([s], (ast.Return,), stop_at_loops=True)
        ):
            unstaged = "an `if` around a loop containing `return`"
        if unstaged is not None:
            s.test = _located(_call("py_test", self.expr(s.test), ast.Constant(unstaged)), s)
            s.body = self.block(s.body, unstaged)
            s.orelse = self.block(s.orelse, unstaged)
            return [s]
        returns = _contains([s], (ast.Return,), stop_at_loops=True)
        names = _assigned(s.body + s.orelse)
        t_name, f_name = self.fresh("if_true"), self.fresh("if_false")
        back = [] if returns else [ast.Return(value=_tuple(names))]
        t_def = _def(t_name, names, self.block(s.body, None) + back)
        f_def = _def(f_name, names, self.block(s.orelse, None) + back)
        call = _call(
            "if_stmt", self.expr(s.test), _name(t_name), _name(f_name), _state(names), _strs(names)
        )
        if returns:
            call.args.append(ast.Constant(True))
            tail: ast.stmt = ast.Return(value=call)
        elif names:
            tail = ast.Assign(targets=[_tuple(names, store=True)], value=call)
        else:
            tail = ast.Expr(value=call)
        return [_located(n, s) for n in (t_def, f_def, tail)]

    # --- loops --------------------------------------------------------------------------

    def python_loop(self, s: ast.While | ast.For, unstaged: str) -> list[ast.stmt]:
        if isinstance(s, ast.While):
            s.test = _located(_call("py_test", self.expr(s.test), ast.Constant(unstaged)), s)
        else:
            s.iter = _located(_call("py_iter", self.iter_expr(s.iter), ast.Constant(unstaged)), s)
        s.body = self.block(s.body, unstaged)
        s.orelse = self.block(s.orelse, unstaged)
        return [s]

    def iter_expr(self, it: ast.expr) -> ast.expr:
        if (
            isinstance(it, ast.Call)
            and isinstance(it.func, ast.Name)
            and it.func.id == "range"
            and not it.keywords
        ):
            return ast.copy_location(_call("range_", *(self.expr(a) for a in it.args)), it)
        return self.expr(it)

    def loop_unstaged(self, s: ast.While | ast.For, unstaged: str | None) -> str | None:
        if unstaged is not None:
            return unstaged
        if _contains(s.body, (ast.Yield, ast.YieldFrom)):
            return "a loop whose body `yield`s"
        if _contains(s.body, (ast.Return,)):
            return "a loop containing `return`"
        return None

    def jumps(self, s: ast.While | ast.For) -> tuple[list[ast.stmt], str | None, str | None]:
        """The loop body with `break`/`continue` turned into flags, and the flags."""
        has_break = _contains(s.body, (ast.Break,), stop_at_loops=True)
        has_cont = _contains(s.body, (ast.Continue,), stop_at_loops=True)
        brk = self.fresh("break") if has_break else None
        cont = self.fresh("continue") if has_cont else None
        if s.orelse and has_break:
            raise self.error(s, "a loop with both `break` and `else` is not supported")
        body = _lower_jumps(list(s.body), brk, cont)
        if cont is not None:
            body.insert(
                0, _located(ast.Assign(targets=[_name(cont, True)], value=ast.Constant(False)), s)
            )
        return body, brk, cont

    def while_(self, s: ast.While, unstaged: str | None) -> list[ast.stmt]:
        why = self.loop_unstaged(s, unstaged)
        if why is not None:
            return self.python_loop(s, why)
        body, brk, _ = self.jumps(s)
        names = _assigned(body)
        test = self.expr(s.test)
        if brk is not None:
            test = _call("and_", _thunk(_call("not_", _name(brk))), _thunk(test))
        t_name, b_name = self.fresh("while_test"), self.fresh("while_body")
        t_def = _def(t_name, names, [ast.Return(value=test)])
        b_def = _def(b_name, names, self.block(body, None) + [ast.Return(value=_tuple(names))])
        call = _call("while_stmt", _name(t_name), _name(b_name), _state(names), _strs(names))
        out: list[ast.stmt] = []
        if brk is not None:
            out.append(ast.Assign(targets=[_name(brk, True)], value=ast.Constant(False)))
        out += [
            t_def,
            b_def,
            ast.Assign(targets=[_tuple(names, store=True)], value=call)
            if names
            else ast.Expr(call),
        ]
        out = [_located(n, s) for n in out]
        return out + self.block(s.orelse, None)

    def for_(self, s: ast.For, unstaged: str | None) -> list[ast.stmt]:
        why = self.loop_unstaged(s, unstaged)
        if why is not None:
            return self.python_loop(s, why)
        body, brk, _ = self.jumps(s)
        if isinstance(s.target, ast.Name):
            target = s.target.id
        else:
            target = self.fresh("item")
            body.insert(0, _located(ast.Assign(targets=[s.target], value=_name(target)), s))
        names = [n for n in _assigned(body) if n != target]
        b_name = self.fresh("for_body")
        b_def = _def(
            b_name, [target, *names], self.block(body, None) + [ast.Return(value=_tuple(names))]
        )
        extra: ast.expr = ast.Constant(None)
        out: list[ast.stmt] = []
        if brk is not None:
            e_name = self.fresh("for_test")
            out.append(ast.Assign(targets=[_name(brk, True)], value=ast.Constant(False)))
            out.append(_def(e_name, names, [ast.Return(value=_call("not_", _name(brk)))]))
            extra = _name(e_name)
        call = _call(
            "for_stmt", self.iter_expr(s.iter), extra, _name(b_name), _state(names), _strs(names)
        )
        out += [
            b_def,
            ast.Assign(targets=[_tuple(names, store=True)], value=call)
            if names
            else ast.Expr(call),
        ]
        out = [_located(n, s) for n in out]
        return out + self.block(s.orelse, None)


def _located(node: ast.AST, at: ast.AST) -> Any:
    """`node` with every generated node under it (those without a location)
    placed on the line of the nearest located ancestor, `at` at the top."""

    def place(n: ast.AST, line: int, col: int) -> None:
        if "lineno" in n._attributes:
            if getattr(n, "lineno", None) is None:
                n.lineno, n.end_lineno = line, line  # type: ignore[attr-defined]
                n.col_offset, n.end_col_offset = col, col  # type: ignore[attr-defined]
            line, col = n.lineno, n.col_offset  # type: ignore[attr-defined]
        for child in ast.iter_child_nodes(n):
            place(child, line, col)

    place(node, at.lineno, at.col_offset)  # type: ignore[attr-defined]
    return node


def _lower_jumps(stmts: list[ast.stmt], brk: str | None, cont: str | None) -> list[ast.stmt]:
    """`break`/`continue` (not in nested loops) as flag assignments, with the
    statements after anything that may jump guarded by `if running(flags)`."""
    flags = [f for f in (brk, cont) if f is not None]
    out: list[ast.stmt] = []
    for i, s in enumerate(stmts):
        if isinstance(s, ast.Break | ast.Continue):
            flag = brk if isinstance(s, ast.Break) else cont
            assert flag is not None
            out.append(
                _located(ast.Assign(targets=[_name(flag, True)], value=ast.Constant(True)), s)
            )
            return out
        if isinstance(s, ast.If | ast.With | ast.Try) and _contains(
            [s], (ast.Break, ast.Continue), stop_at_loops=True
        ):
            if isinstance(s, ast.If):
                s.body = _lower_jumps(s.body, brk, cont)
                s.orelse = _lower_jumps(s.orelse, brk, cont)
            elif isinstance(s, ast.With):
                s.body = _lower_jumps(s.body, brk, cont)
            else:
                s.body = _lower_jumps(s.body, brk, cont)
                for h in s.handlers:
                    h.body = _lower_jumps(h.body, brk, cont)
            out.append(s)
            rest = _lower_jumps(stmts[i + 1 :], brk, cont)
            if rest:
                guard = ast.If(
                    test=_call("running", *(_name(f) for f in flags)), body=rest, orelse=[]
                )
                out.append(_located(guard, rest[0]))
            return out
        out.append(s)
    return out


# --- entry point ----------------------------------------------------------------------------


def _worth_converting(fdef: ast.FunctionDef) -> bool:
    """Control flow to rewrite, or calls (the callees may have some)."""
    return any(
        isinstance(n, ast.If | ast.While | ast.For | ast.IfExp | ast.BoolOp)
        or (isinstance(n, ast.Call) and _converts_call(n))
        for n in ast.walk(fdef)
    )


@dataclass
class _Code:
    """What converting one code object gave: the rewritten code (the code itself when
    there was nothing to rewrite or it is a rewriting's own), or why there is none."""

    code: types.CodeType
    converted: types.CodeType | None
    why: str | None = None
    error: ConversionError | None = None


# By id of the original code object (which the entry keeps alive): a function is
# rewritten once, however many function objects (closures) share its code.
_CODES: dict[int, _Code] = {}


def code_entry(code: types.CodeType) -> _Code | None:
    entry = _CODES.get(id(code))
    return entry if entry is not None and entry.code is code else None


def _register_rewritten(code: types.CodeType) -> None:
    """Mark a rewriting's code objects (nested ones too) as converted already."""
    _CODES[id(code)] = _Code(code, code)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _register_rewritten(const)


def convert_code(code: types.CodeType) -> _Code:
    entry = code_entry(code)
    if entry is None:
        try:
            entry = _rewrite(code)
        except ConversionError as e:
            entry = _Code(code, None, str(e.message), e)
        _CODES[id(code)] = entry
    return entry


def _explicit_super(fdef: ast.FunctionDef) -> None:
    """`super()` as `super(__class__, self)`: zero-argument `super` reads the first
    argument of the function it is called in, which in a branch moved into a
    function of its own is no longer `self`."""
    params = [*fdef.args.posonlyargs, *fdef.args.args]
    if not params:
        return
    for node in _walk_scope(fdef):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "super"
            and not node.args
            and not node.keywords
        ):
            node.args = [_name("__class__"), _name(params[0].arg)]


def _rewrite(code: types.CodeType) -> _Code:
    if _is_internal(code.co_filename):
        return _Code(code, code)
    fdef = function_def(code)
    if isinstance(fdef, str):
        return _Code(code, None, fdef)
    if not _worth_converting(fdef):
        return _Code(code, code)
    fdef.decorator_list = []
    if "__class__" in code.co_freevars:
        _explicit_super(fdef)
    new_def = _Converter(code.co_filename).function(fdef)
    # Defined under another name, so the function's own name (recursion) still
    # resolves as it did: to a global or to the original closure cell.
    new_def.name = "ln__converted"
    factory = _def(
        "ln__factory",
        [*code.co_freevars, RUNTIME],
        [new_def, ast.Return(value=_name(new_def.name))],
    )
    wrapper = ast.Module(body=[_located(factory, fdef)], type_ignores=[])
    ast.fix_missing_locations(wrapper)
    compiled = compile(wrapper, code.co_filename, "exec", dont_inherit=True)
    factory_code = next(c for c in compiled.co_consts if isinstance(c, types.CodeType))
    inner = next(
        c
        for c in factory_code.co_consts
        if isinstance(c, types.CodeType) and c.co_name == new_def.name
    )
    inner = inner.replace(co_name=code.co_name, co_qualname=code.co_qualname)
    _register_rewritten(inner)
    return _Code(code, inner)


def convert(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` with its control flow rewritten to dispatch at trace time, and its calls
    to convert the user functions they call; `fn` itself when its source is
    unavailable or there is nothing to rewrite. A construct the rewriting cannot
    handle is a ConversionError."""
    if not isinstance(fn, types.FunctionType) or getattr(fn, _CONVERTED, False):
        return fn
    entry = convert_code(fn.__code__)
    if entry.error is not None:
        raise entry.error
    if entry.converted is None or entry.converted is fn.__code__:
        return fn
    return rebuilt(fn, entry.converted)


def rebuilt(fn: types.FunctionType, inner: types.CodeType) -> types.FunctionType:
    """`fn` (its globals, closure, defaults) running the rewritten code `inner`."""
    cells = dict(zip(fn.__code__.co_freevars, fn.__closure__ or ()))
    cells[RUNTIME] = types.CellType(autograph_runtime)
    closure = tuple(cells[name] for name in inner.co_freevars)
    new = types.FunctionType(inner, fn.__globals__, fn.__name__, fn.__defaults__, closure)
    new.__kwdefaults__ = fn.__kwdefaults__
    functools.update_wrapper(new, fn)
    setattr(new, _CONVERTED, True)
    return new
