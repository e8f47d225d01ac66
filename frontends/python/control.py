"""Control-flow combinators: `ln.cond`, `ln.while_loop`, `ln.fori_loop`.

They follow JAX's signatures and work over pytrees. Inside a trace they emit
`scf.if`, `scf.while` and `scf.for`: the branch and loop functions are traced
into the op's regions by moving the tracer's insertion point there
(`Tracer.inserting_at`). Regions are not isolated, so a function may use any
staged value of the enclosing trace. Outside a trace they run as plain Python
on numpy values, like the eager ops.

    y = ln.cond(x.sum() > 0, lambda v: v * 2.0, lambda v: -v, x)
    x = ln.while_loop(lambda v: ln.sum(v * v) < 10.0, lambda v: v * 1.5, x)
    s = ln.fori_loop(0, n, lambda i, acc: acc + xs[i], 0.0)

Types are checked the way the IR needs them: the branches of a `cond` must give
the same tree of shapes and dtypes, and a loop's carried values must keep
theirs. Python numbers are weakly typed: they take the dtype of the value they
are joined with (the other branch, or what the loop body makes of them).

Staged functions (`function.py`) and the AST rewriting (`autograph.py`) build on
the `stage_if`/`stage_while`/`stage_for` functions here. A call to a recursive
staged function whose result types are not known yet raises `RecursionProbe`;
`stage_if` catches it in one branch and continues with the other branch's
results, which is how a recursive function's result types are found.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from xdsl.dialects import arith, scf
from xdsl.dialects.builtin import IndexType, i64
from xdsl.ir import Attribute, Block, Region, SSAValue
from xdsl.rewriter import InsertPoint

from lanterna.errors import LanternaError
from lanterna.frontends.python import pytree
from lanterna.frontends.python.location import user_error, user_frame
from lanterna.frontends.python.tracing import (
    Tensor,
    Tracer,
    current_tracer,
    is_scalar,
    lift,
    result_dtype,
)
from lanterna.ir.ln import CheckpointOp, CheckpointYieldOp, FromScalarOp, ItemOp
from lanterna.ir.types import from_numpy_dtype, tensor

# --- values that are not there ---------------------------------------------------------


class Undefined:
    """A variable with no value at this point (assigned in only one branch, or
    only later). Any use of it is a TraceError naming the variable."""

    __slots__ = ("name", "why")

    def __init__(self, name: str, why: str = "is not defined here"):
        self.name = name
        self.why = why

    def error(self) -> Exception:
        return user_error(f"variable '{self.name}' {self.why}")

    def __repr__(self) -> str:
        return f"<undefined {self.name}>"

    def __str__(self) -> str:
        raise self.error()

    def __getattr__(self, attr: str) -> Any:
        raise self.error()

    def __bool__(self) -> bool:
        raise self.error()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error()

    def __iter__(self) -> Any:
        raise self.error()


def _undefined_op(self: Undefined, *args: Any) -> Any:
    raise self.error()


for _name in [
    "add",
    "radd",
    "sub",
    "rsub",
    "mul",
    "rmul",
    "truediv",
    "rtruediv",
    "pow",
    "rpow",
    "matmul",
    "rmatmul",
    "neg",
    "pos",
    "abs",
    "lt",
    "le",
    "gt",
    "ge",
    "eq",
    "ne",
    "and",
    "rand",
    "or",
    "ror",
    "invert",
    "getitem",
    "len",
    "index",
    "float",
    "int",
]:
    setattr(Undefined, f"__{_name}__", _undefined_op)


# --- probing the result types of recursive staged functions ------------------------------


class RecursionProbe(BaseException):
    """A staged function was called while its own result types are still unknown.

    A BaseException, so a user's `except Exception` cannot swallow it on its way
    to the enclosing `stage_if`.
    """

    def __init__(self, owner: Any):
        super().__init__(owner)
        self.owner = owner


class _Probes(threading.local):
    def __init__(self) -> None:
        self.frames: list[set[Any]] = []


PROBES = _Probes()
"""One set per staged function being traced: the functions whose unknown
results made a branch of it be skipped (its body is then only a probe)."""


# --- helpers ------------------------------------------------------------------------------


def is_staged(x: Any) -> bool:
    return isinstance(x, Tensor)


def _tracer() -> Tracer:
    tracer = current_tracer()
    assert tracer is not None
    return tracer


def _describe(x: Any) -> str:
    if isinstance(x, Tensor):
        return f"tensor{list(x.shape)} of {x.dtype}"
    if isinstance(x, Undefined):
        return "nothing"
    if is_scalar(x):
        return f"Python {type(x).__name__}"
    if isinstance(x, np.ndarray | np.generic):
        return f"array{list(np.shape(x))} of {np.asarray(x).dtype}"
    return type(x).__name__


def _arraylike(x: Any) -> bool:
    return isinstance(x, Tensor | np.ndarray | np.generic) or is_scalar(x)


def predicate(pred: Any, what: str) -> SSAValue:
    """A staged rank-0 predicate as an `i1` (nonzero is true)."""
    t = lift(pred)
    if t.shape != ():
        raise user_error(f"{what}: the condition must be a scalar, got a tensor of shape {t.shape}")
    if t.dtype != np.bool_:
        t = t != 0
    return _tracer().insert(ItemOp(t.value)).results[0]


def to_index(x: Any, what: str) -> SSAValue:
    """A loop bound as an `index`: a Python int, or a staged rank-0 integer."""
    tracer = _tracer()
    if isinstance(x, int | np.integer) and not isinstance(x, bool):
        return tracer.insert(arith.ConstantOp.from_int_and_width(int(x), IndexType())).results[0]
    if isinstance(x, Tensor) and x.shape == () and x.dtype.kind in "iu":
        item = tracer.insert(ItemOp(x.value)).results[0]
        return tracer.insert(arith.IndexCastOp(item, IndexType())).results[0]
    raise user_error(
        f"{what}: a loop bound must be an int or a staged integer scalar, got {_describe(x)}"
    )


def index_tensor(i: SSAValue) -> Tensor:
    """An `index` as a staged rank-0 int64 tensor."""
    tracer = _tracer()
    as_i64 = tracer.insert(arith.IndexCastOp(i, i64)).results[0]
    return Tensor(tracer.insert(FromScalarOp(as_i64)).results[0], tracer)


# --- cond ---------------------------------------------------------------------------------


@dataclass
class _Traced:
    block: Block
    out: list[Any]  # one pytree per output item


def _trace_block(arg_types: Sequence[Attribute], fn: Callable[[Block], list[Any]]) -> _Traced:
    tracer = _tracer()
    block = Block(arg_types=arg_types)
    with tracer.inserting_at(InsertPoint.at_end(block)):
        out = fn(block)
    return _Traced(block, out)


def _shape(x: Any) -> tuple[int, ...]:
    return x.shape if is_staged(x) else tuple(np.shape(x))


def _join_leaf(a: Any, b: Any) -> tuple[str, Any]:
    """How two branch leaves become one value: ("same", v) passes `v` through,
    ("stage", dtype) makes it a result; "undefined" and "bad" cannot be joined."""
    if a is b:
        return "same", a
    if isinstance(a, Undefined) or isinstance(b, Undefined):
        return "undefined", None
    if not (_arraylike(a) and _arraylike(b)) or _shape(a) != _shape(b):
        return "bad", None
    if is_scalar(a) and is_scalar(b):
        if type(a) is type(b) and a == b:
            return "same", a
        return "stage", result_dtype(a, b)
    if is_scalar(a) or is_scalar(b):
        # A Python number takes the other side's dtype, unless it needs a wider kind.
        strong = b if is_scalar(a) else a
        dt = result_dtype(strong, a if is_scalar(a) else b)
        return ("stage", dt) if dt == np.dtype(strong.dtype) else ("bad", None)
    if np.dtype(a.dtype) != np.dtype(b.dtype):
        return "bad", None
    return "stage", np.dtype(a.dtype)


def stage_if(
    pred: Any,
    true_fn: Callable[[], list[Any]],
    false_fn: Callable[[], list[Any]],
    strict: Sequence[bool],
    labels: Sequence[str],
) -> list[Any]:
    """Emit an `scf.if` on a staged predicate; each branch function returns a list
    of output trees (one per item).

    An item whose branches disagree (structure, shape, dtype, or defined in only
    one) is a TraceError when `strict`, else the result is `Undefined`. Leaves
    that are the same object in both branches (a value from before the `if`,
    equal Python numbers) pass through without becoming results.
    """
    tracer = _tracer()
    cond = predicate(pred, "if")
    branches: list[_Traced | RecursionProbe] = []
    for fn in (true_fn, false_fn):
        try:
            branches.append(_trace_block([], lambda _b, fn=fn: list(fn())))
        except RecursionProbe as probe:
            branches.append(probe)
    t, f = branches
    if isinstance(t, RecursionProbe) and isinstance(f, RecursionProbe):
        raise t
    if isinstance(t, RecursionProbe) or isinstance(f, RecursionProbe):
        # Only a probe of a recursive function's result types: its IR is thrown
        # away, so the branch that did not recurse stands for both.
        probe = t if isinstance(t, RecursionProbe) else f
        ok = f if isinstance(t, RecursionProbe) else t
        assert isinstance(probe, RecursionProbe) and isinstance(ok, _Traced)
        if not PROBES.frames:
            raise probe
        PROBES.frames[-1].add(probe.owner)
        return ok.out

    results: list[Any] = []
    plans: list[tuple[pytree.TreeDef, list[tuple[str, Any]]] | str] = []
    for k, (ta, fa) in enumerate(zip(t.out, f.out)):
        la, da = pytree.flatten(ta)
        lb, db = pytree.flatten(fa)
        if da != db:
            if strict[k]:
                raise user_error(f"{labels[k]} differ between the branches: {da} and {db}")
            plans.append("has different structures in the two branches")
            continue
        joined = [_join_leaf(x, y) for x, y in zip(la, lb)]
        bad = [i for i, (kind, _) in enumerate(joined) if kind in ("bad", "undefined")]
        if not bad:
            plans.append((da, joined))
            continue
        undefined = joined[bad[0]][0] == "undefined"
        if strict[k]:
            if undefined:
                raise user_error(f"{labels[k]}: only one branch defines a value")
            raise user_error(
                f"{labels[k]} differ between the branches: {_describe(la[bad[0]])} and "
                f"{_describe(lb[bad[0]])}"
            )
        plans.append(
            "is defined in only one branch"
            if undefined
            else "has different types in the two branches"
        )

    def yielded(traced: _Traced) -> list[SSAValue]:
        vals: list[SSAValue] = []
        with tracer.inserting_at(InsertPoint.at_end(traced.block)):
            for plan, tree in zip(plans, traced.out):
                if isinstance(plan, str):
                    continue
                for (kind, dt), leaf in zip(plan[1], pytree.flatten(tree)[0]):
                    if kind == "stage":
                        vals.append(lift(leaf, dt).value)
            traced.block.add_op(scf.YieldOp(*vals))
        return vals

    yt = yielded(t)
    yielded(f)
    op = tracer.insert(scf.IfOp(cond, [v.type for v in yt], Region(t.block), Region(f.block)))
    outs = iter(op.results)
    frame = user_frame()
    where = f" of the `if` at {frame.f_code.co_filename}:{frame.f_lineno}" if frame else ""
    for k, plan in enumerate(plans):
        if isinstance(plan, str):
            results.append(Undefined(labels[k], f"{plan}{where}, so it has no value after it"))
            continue
        leaves = [
            value if kind == "same" else Tensor(next(outs), tracer) for kind, value in plan[1]
        ]
        results.append(pytree.unflatten(plan[0], leaves))
    return results


def _converted(fn: Any) -> Any:
    """`fn` with its own Python `if`/`while` on staged values staged, as every
    function that converted code calls is (see `autograph_calls`)."""
    # Imported here: autograph's runtime imports this module.
    from lanterna.frontends.python.autograph_calls import converted

    return converted(fn)


def cond(
    pred: Any, true_fn: Callable[..., Any], false_fn: Callable[..., Any], *operands: Any
) -> Any:
    """`true_fn(*operands)` if `pred` else `false_fn(*operands)`.

    With a staged `pred` (a rank-0 tensor; nonzero is true) both branches are
    traced into an `scf.if` and must return the same tree of shapes and dtypes.
    With a Python or numpy `pred` only the chosen branch runs.
    """
    if not is_staged(pred) or current_tracer() is None:
        return true_fn(*operands) if bool(np.asarray(pred)) else false_fn(*operands)
    true_fn, false_fn = _converted(true_fn), _converted(false_fn)
    (out,) = stage_if(
        pred,
        lambda: [true_fn(*operands)],
        lambda: [false_fn(*operands)],
        [True],
        ["the outputs of ln.cond"],
    )
    return out


# --- loops --------------------------------------------------------------------------------


@dataclass
class _Slot:
    """One loop-carried leaf: its type, and whether it started as a Python number
    (weak: its dtype may still follow what the body makes of it)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    weak: bool

    @property
    def type(self) -> Attribute:
        return tensor(self.shape, from_numpy_dtype(self.dtype))


class _Retry(Exception):
    pass


def _slots(leaves: Sequence[Any], what: str) -> list[_Slot]:
    slots = []
    for leaf in leaves:
        if isinstance(leaf, Undefined):
            raise leaf.error()
        if not _arraylike(leaf):
            raise user_error(
                f"{what}: a loop-carried value must be an array or number, got {_describe(leaf)}"
            )
        if is_staged(leaf):
            slots.append(_Slot(leaf.shape, leaf.dtype, False))
        elif is_scalar(leaf):
            slots.append(_Slot((), result_dtype(leaf), True))
        else:
            arr = np.asarray(leaf)
            slots.append(_Slot(arr.shape, arr.dtype, False))
    return slots


def _carry_out(out: Any, treedef: pytree.TreeDef, slots: list[_Slot], what: str) -> list[SSAValue]:
    """The body's new values, checked against the carried types, as SSA values."""
    leaves, out_def = pytree.flatten(out)
    if out_def != treedef:
        raise user_error(
            f"{what}: the body returns a structure {out_def}, but the loop carries {treedef}"
        )
    vals = []
    for leaf, slot in zip(leaves, slots):
        if isinstance(leaf, Undefined):
            raise leaf.error()
        shape = leaf.shape if is_staged(leaf) else np.shape(leaf)
        if not _arraylike(leaf) or shape != slot.shape:
            raise user_error(
                f"{what}: a loop-carried value changes from tensor{list(slot.shape)} of "
                f"{slot.dtype} to {_describe(leaf)}; it must keep its shape and dtype"
            )
        if is_staged(leaf) and leaf.dtype != slot.dtype:
            if slot.weak:
                slot.dtype, slot.weak = leaf.dtype, False
                raise _Retry()
            raise user_error(
                f"{what}: a loop-carried value changes from tensor{list(slot.shape)} of "
                f"{slot.dtype} to {_describe(leaf)}; it must keep its shape and dtype"
            )
        vals.append(lift(leaf, slot.dtype).value)
    return vals


def _settle_weak(
    slots: list[_Slot],
    init: Any,
    run_body: Callable[[SSAValue, Any], Any],
) -> None:
    """Give the loop's weak slots (Python numbers) the dtypes the body makes of
    them, by tracing the body once on the side with those numbers as they are
    (the JAX rule: `acc = 0.0; acc = acc + x` carries x's dtype)."""
    if not any(s.weak for s in slots):
        return
    tracer = _tracer()
    leaves, treedef = pytree.flatten(init)
    block = Block(arg_types=[IndexType(), *(s.type for s in slots)])
    state = [
        leaf if s.weak else Tensor(a, tracer) for leaf, s, a in zip(leaves, slots, block.args[1:])
    ]
    try:
        with tracer.inserting_at(InsertPoint.at_end(block)):
            out = run_body(block.args[0], pytree.unflatten(treedef, state))
    except LanternaError:
        return  # the real trace reports it
    out_leaves, out_def = pytree.flatten(out)
    if out_def != treedef:
        return
    for leaf, s in zip(out_leaves, slots):
        if s.weak and is_staged(leaf) and leaf.shape == s.shape:
            s.dtype = leaf.dtype


def _staged_loop(
    init: Any,
    what: str,
    emit: Callable[[pytree.TreeDef, list[_Slot]], list[SSAValue]],
    run_body: Callable[[SSAValue, Any], Any],
) -> Any:
    """Run `emit` (which builds the loop op and returns its results) until the
    carried types settle, then rebuild the tree of results."""
    tracer = _tracer()
    leaves, treedef = pytree.flatten(init)
    slots = _slots(leaves, what)
    _settle_weak(slots, init, run_body)
    for _ in range(len(slots) + 1):
        try:
            results = emit(treedef, slots)
            break
        except _Retry:
            continue
    return pytree.unflatten(treedef, [Tensor(r, tracer) for r in results])


def _inits(init: Any, slots: list[_Slot]) -> list[SSAValue]:
    return [lift(leaf, s.dtype).value for leaf, s in zip(pytree.flatten(init)[0], slots)]


def stage_while(
    cond_fn: Callable[[Any], Any], body_fn: Callable[[Any], Any], init: Any, what: str
) -> Any:
    """Emit an `scf.while` carrying the tree `init`."""
    tracer = _tracer()

    def emit(treedef: pytree.TreeDef, slots: list[_Slot]) -> list[SSAValue]:
        types = [s.type for s in slots]

        def before(block: Block) -> list[Any]:
            state = pytree.unflatten(treedef, [Tensor(a, tracer) for a in block.args])
            c = predicate(cond_fn(state), what)
            tracer.insert(scf.ConditionOp(c, *block.args))
            return []

        def after(block: Block) -> list[Any]:
            state = pytree.unflatten(treedef, [Tensor(a, tracer) for a in block.args])
            tracer.insert(scf.YieldOp(*_carry_out(body_fn(state), treedef, slots, what)))
            return []

        b = _trace_block(types, before)
        a = _trace_block(types, after)
        inits = _inits(init, slots)
        op = tracer.insert(scf.WhileOp(inits, types, Region(b.block), Region(a.block)))
        return list(op.results)

    return _staged_loop(init, what, emit, lambda _i, state: body_fn(state))


def stage_for(
    lower: Any, upper: Any, step: Any, body_fn: Callable[[Tensor, Any], Any], init: Any, what: str
) -> Any:
    """Emit an `scf.for` over `index` carrying the tree `init`; the body gets the
    counter as a rank-0 int64 tensor."""
    tracer = _tracer()
    lb, ub, st = (to_index(x, what) for x in (lower, upper, step))

    def emit(treedef: pytree.TreeDef, slots: list[_Slot]) -> list[SSAValue]:
        types = [s.type for s in slots]

        def body(block: Block) -> list[Any]:
            i = index_tensor(block.args[0])
            state = pytree.unflatten(treedef, [Tensor(a, tracer) for a in block.args[1:]])
            tracer.insert(scf.YieldOp(*_carry_out(body_fn(i, state), treedef, slots, what)))
            return []

        traced = _trace_block([IndexType(), *types], body)
        inits = _inits(init, slots)
        op = tracer.insert(scf.ForOp(lb, ub, st, inits, Region(traced.block)))
        return list(op.results)

    return _staged_loop(init, what, emit, lambda i, state: body_fn(index_tensor(i), state))


def while_loop(cond_fn: Callable[[Any], Any], body_fn: Callable[[Any], Any], init_val: Any) -> Any:
    """`while cond_fn(val): val = body_fn(val)`; returns the final `val`.

    Inside a trace it is an `scf.while`: the trip count may depend on the data,
    and `val` (a pytree) must keep its shapes and dtypes.
    """
    if current_tracer() is None:
        val = init_val
        while bool(np.asarray(cond_fn(val))):
            val = body_fn(val)
        return val
    return stage_while(_converted(cond_fn), _converted(body_fn), init_val, "ln.while_loop")


def fori_loop(lower: Any, upper: Any, body_fn: Callable[[Any, Any], Any], init_val: Any) -> Any:
    """`for i in range(lower, upper): val = body_fn(i, val)`; returns the final `val`.

    Inside a trace it is an `scf.for`; the bounds may be Python ints or staged
    integer scalars, and `i` is a staged rank-0 int64 tensor.
    """
    if current_tracer() is None:
        val = init_val
        for i in range(int(np.asarray(lower)), int(np.asarray(upper))):
            val = body_fn(np.asarray(i, np.int64), val)
        return val
    return stage_for(lower, upper, 1, _converted(body_fn), init_val, "ln.fori_loop")


# --- checkpoint ---------------------------------------------------------------------------


def checkpoint(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn`, marked to be recomputed in the backward pass instead of stored.

    Staged, `ln.checkpoint(fn)(*args)` traces `fn` into an `ln.checkpoint`
    region. Its forward pass is `fn` itself; when it is differentiated, none
    of the values `fn` computes are kept for the backward pass: it runs `fn`
    again there. Wrapping the body of a long loop trades one more forward
    computation of the body for memory: per iteration only the body's inputs
    are saved (see `reverse-loops`). Outside a trace it just calls `fn`.

        step = ln.checkpoint(lambda h, x: ln.tanh(h @ w + x))
        h = ln.fori_loop(0, n, lambda i, h: step(h, xs[i]), h0)
    """

    def checkpointed(*args: Any, **kwargs: Any) -> Any:
        tracer = current_tracer()
        if tracer is None:
            return fn(*args, **kwargs)
        block = Block()
        with tracer.inserting_at(InsertPoint.at_end(block)):
            out = _converted(fn)(*args, **kwargs)
            leaves, treedef = pytree.flatten(out)
            for leaf in leaves:
                if not (is_staged(leaf) or _arraylike(leaf)):
                    raise user_error(
                        "ln.checkpoint: the function must return arrays (a pytree of "
                        f"them), got {_describe(leaf)}"
                    )
            values = [lift(leaf).value for leaf in leaves]
            block.add_op(CheckpointYieldOp(*values))
        op = tracer.insert(CheckpointOp([v.type for v in values], block))
        return pytree.unflatten(treedef, [Tensor(r, tracer) for r in op.results])

    checkpointed.__name__ = getattr(fn, "__name__", "checkpointed")
    checkpointed.__doc__ = getattr(fn, "__doc__", None)
    checkpointed.__wrapped__ = fn  # type: ignore[attr-defined]
    return checkpointed
