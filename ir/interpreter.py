"""The reference interpreter: executes IR at every level, with numpy.

It is the semantic oracle of the project: passes are tested by running the IR
before and after them, backends by comparing against it.

It is an abstract machine with an explicit continuation, not a recursive
evaluator, for two reasons:

* `cont.shift` must capture "the rest of the computation up to the nearest
  reset" across `scf.if`/`scf.for`/`scf.while` bodies, closures and function
  calls. With the continuation as data that is a pointer copy.
* deep programs (recursion depth in the thousands, long loops whose bodies
  shift, which the continuation form turns into nested callbacks) must not hit
  Python's recursion limit. Here the stack is a heap-allocated linked list.

State: `k`, the current continuation, a linked list `(frame, rest)` of
immutable frames ending at the innermost delimiter, and `mk`, the
meta-continuation: the stack of continuations saved by `cont.reset` and
`cont.resume`. A frame receives the values delivered to it (the results of
the region that just finished) and returns the next state. Capturing `k` in a
shift is O(1); resuming a continuation twice is safe because frames are never
mutated (values defined after the shift point are rebound on each resume; SSA
dominance means nothing before that point reads them).

Environments are per region activation with a parent link (lexical scope), so
the backward half of loop iteration i -- which runs after iterations i+1..n --
still sees iteration i's values. Closures capture the values their body uses
when they are created.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from xdsl.dialects import builtin, func, scf
from xdsl.ir import Block, Operation, Region, SSAValue

from lanterna.errors import LanternaRuntimeError
from lanterna.ir import ad, buf, cont, ln
from lanterna.ir.interp_arith import ARITH_SEMANTICS
from lanterna.ir.ln import LN_OPS
from lanterna.ir.types import to_numpy_dtype

Values = Sequence[Any]


class InterpreterError(Exception):
    """The IR could not be executed (missing semantics, bad arguments)."""


# --- runtime objects ----------------------------------------------------------------------


class Env:
    """The values of one region activation, with a link to the enclosing one."""

    __slots__ = ("parent", "vals")

    def __init__(self, parent: Env | None = None):
        self.vals: dict[SSAValue, Any] = {}
        self.parent = parent

    def get(self, v: SSAValue) -> Any:
        e: Env | None = self
        while e is not None:
            try:
                value = e.vals[v]
            except KeyError:
                e = e.parent
                continue
            if type(value) is GivenAway:
                raise InterpreterError(value.message)
            return value
        raise InterpreterError(f"value %{v.name_hint or '?'} is used before it is defined")

    def give_away(self, v: SSAValue, message: str) -> None:
        """Poison `v` where it is bound: a later use raises `message`."""
        e: Env | None = self
        while e is not None:
            if v in e.vals:
                e.vals[v] = GivenAway(message)
                return
            e = e.parent

    def bind(self, names: Sequence[SSAValue], values: Values) -> None:
        if len(names) != len(values):
            raise InterpreterError(f"{len(values)} values delivered for {len(names)} results")
        for n, v in zip(names, values):
            self.vals[n] = v


class GivenAway:
    """What a value is bound to once `buf.release` or a `buf.take_*` took its
    buffer: reading it is an error of the pass that placed the buf op."""

    __slots__ = ("message",)

    def __init__(self, message: str):
        self.message = message


class Cell:
    """An adjoint cell (`!ad.cell<T>`). `pending` holds the products logged for it
    (`ad.accum_matmul {deferred}`) and not yet added in by `ad.flush_products`."""

    __slots__ = ("pending", "value")

    def __init__(self, value: np.ndarray):
        self.value = value
        self.pending: list[np.ndarray] = []

    def __repr__(self) -> str:
        return f"Cell({self.value!r})"


class Stack:
    """A stack of values (`!ad.stack<T>`), shared by every holder of the value."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[Any] = []

    def __repr__(self) -> str:
        return f"Stack({len(self.items)} items)"


class Continuation:
    """A captured delimited continuation: frames up to the reset."""

    __slots__ = ("frames",)

    def __init__(self, frames: Any):
        self.frames = frames


class Closure:
    """A `cont.lambda` value: its op and the captured environment."""

    __slots__ = ("env", "op")

    def __init__(self, op: cont.LambdaOp, env: Env):
        self.op = op
        self.env = env


# State after a step: (k, mk, values delivered to k's first frame).
State = tuple[Any, Any, Values]


# --- frames -------------------------------------------------------------------------------


class BlockFrame:
    """Run a block from op `idx`; first bind the delivered values to `bind`."""

    __slots__ = ("bind", "env", "idx", "ops")

    def __init__(
        self, ops: tuple[Operation, ...], idx: int, env: Env, bind: Sequence[SSAValue] = ()
    ):
        self.ops = ops
        self.idx = idx
        self.env = env
        self.bind = bind

    def step(self, m: Interpreter, vals: Values, k: Any, mk: Any) -> State:
        env = self.env
        if self.bind:
            env.bind(self.bind, vals)
        ops = self.ops
        idx = self.idx
        simple = m.simple
        while True:
            op = ops[idx]
            fn = simple.get(type(op))
            if fn is not None:
                args = [env.get(o) for o in op.operands]
                res = fn(op, args)
                if op.results:
                    env.vals[op.results[0]] = res
                idx += 1
                continue
            ctl = m.control.get(type(op))
            if ctl is None:
                raise InterpreterError(f"the interpreter has no semantics for '{op.name}'")
            if type(op) in TERMINATORS:
                return ctl(m, op, env, k, mk)
            after = (BlockFrame(ops, idx + 1, env, op.results), k)
            return ctl(m, op, env, after, mk)


def enter(region: Region, env: Env, args: Values, k: Any) -> Any:
    """Push a frame that runs the region's (single) block with its arguments bound."""
    block = region.block
    inner = Env(env)
    inner.bind(block.args, args)
    return (BlockFrame(_ops(block), 0, inner), k)


def _ops(block: Block) -> tuple[Operation, ...]:
    # Cached on the block for this run; `Interpreter.__init__` clears it, so IR
    # rewritten between runs is seen afresh.
    ops = block.__dict__.get("_lanterna_ops")
    if ops is None:
        ops = tuple(block.ops)
        block.__dict__["_lanterna_ops"] = ops
    return ops


class ForFrame:
    """Receives the yield of iteration `i` of an `scf.for`."""

    __slots__ = ("env", "i", "op", "step_", "ub")

    def __init__(self, op: scf.ForOp, env: Env, i: Any, ub: Any, step_: Any):
        self.op, self.env, self.i, self.ub, self.step_ = op, env, i, ub, step_

    def step(self, m: Interpreter, vals: Values, k: Any, mk: Any) -> State:
        nxt = self.i + self.step_
        if nxt < self.ub:
            frame = ForFrame(self.op, self.env, nxt, self.ub, self.step_)
            return enter(self.op.body, self.env, [nxt, *vals], (frame, k)), mk, ()
        return k, mk, vals


class WhileFrame:
    """Receives `scf.condition` (before=True) or the `scf.yield` of the after region."""

    __slots__ = ("before", "env", "op")

    def __init__(self, op: scf.WhileOp, env: Env, before: bool):
        self.op, self.env, self.before = op, env, before

    def step(self, m: Interpreter, vals: Values, k: Any, mk: Any) -> State:
        if self.before:
            cond, *args = vals
            if not cond:
                return k, mk, args
            frame = WhileFrame(self.op, self.env, False)
            return enter(self.op.after_region, self.env, args, (frame, k)), mk, ()
        frame = WhileFrame(self.op, self.env, True)
        return enter(self.op.before_region, self.env, vals, (frame, k)), mk, ()


# --- control ops --------------------------------------------------------------------------
# A control handler gets the continuation *after* the op (for terminators: the
# continuation of the enclosing region) and returns the next state.


def _deliver(m: Interpreter, op: Operation, env: Env, k: Any, mk: Any) -> State:
    return k, mk, [env.get(o) for o in op.operands]


def _call(m: Interpreter, op: func.CallOp, env: Env, k: Any, mk: Any) -> State:
    callee = m.function(op.callee.string_value())
    args = [env.get(o) for o in op.arguments]
    return enter(callee.body, Env(), args, k), mk, ()


def _if(m: Interpreter, op: scf.IfOp, env: Env, k: Any, mk: Any) -> State:
    region = op.true_region if env.get(op.cond) else op.false_region
    if not region.blocks:
        return k, mk, ()
    return enter(region, env, (), k), mk, ()


def _inline(m: Interpreter, op: Operation, env: Env, k: Any, mk: Any) -> State:
    """A region run once in place (`ln.checkpoint`): its yield gives the results."""
    return enter(op.regions[0], env, (), k), mk, ()


def _for(m: Interpreter, op: scf.ForOp, env: Env, k: Any, mk: Any) -> State:
    lb, ub, st = env.get(op.lb), env.get(op.ub), env.get(op.step)
    inits = [env.get(o) for o in op.iter_args]
    if st <= 0:
        raise InterpreterError(f"scf.for step must be positive, got {st}")
    if not lb < ub:
        return k, mk, inits
    return enter(op.body, env, [lb, *inits], (ForFrame(op, env, lb, ub, st), k)), mk, ()


def _while(m: Interpreter, op: scf.WhileOp, env: Env, k: Any, mk: Any) -> State:
    inits = [env.get(o) for o in op.arguments]
    return enter(op.before_region, env, inits, (WhileFrame(op, env, True), k)), mk, ()


def _condition(m: Interpreter, op: scf.ConditionOp, env: Env, k: Any, mk: Any) -> State:
    return k, mk, [env.get(op.condition), *(env.get(a) for a in op.args)]


def _reset(m: Interpreter, op: cont.ResetOp, env: Env, k: Any, mk: Any) -> State:
    # The body runs on an empty continuation; what it yields pops back to `k`.
    return enter(op.body, env, (), None), (k, mk), ()


def _shift(m: Interpreter, op: cont.ShiftOp, env: Env, k: Any, mk: Any) -> State:
    # `k` is the rest of the computation up to the delimiter; the body runs in
    # its place, still inside the delimiter, so its answer is the reset's.
    return enter(op.body, env, [Continuation(k)], None), mk, ()


def _resume(m: Interpreter, op: cont.ResumeOp, env: Env, k: Any, mk: Any) -> State:
    captured = env.get(op.k)
    args = [env.get(a) for a in op.args]
    return captured.frames, (k, mk), args


def _lambda(m: Interpreter, op: cont.LambdaOp, env: Env, k: Any, mk: Any) -> State:
    captured = Env()
    for v in m.free_values(op):
        captured.vals[v] = env.get(v)
    return k, mk, [Closure(op, captured)]


def _apply(m: Interpreter, op: cont.ApplyOp, env: Env, k: Any, mk: Any) -> State:
    closure = env.get(op.fn)
    args = [env.get(a) for a in op.args]
    if closure.op.recursive:
        args = [closure, *args]
    return enter(closure.op.body, closure.env, args, k), mk, ()


def _give_away(env: Env, op: Operation, v: SSAValue) -> None:
    """Poison `v` and its views (`buf.storage`) in `env`: the buffer is gone."""
    what = f"'{op.name} %{v.name_hint or '?'}'"
    family = [v]
    while family:
        value = family.pop()
        name = f"%{value.name_hint or '?'}"
        env.give_away(value, f"{name} is used after {what} gave its buffer away")
        for use in value.uses:
            user = use.operation
            if use.index == 0 and buf.storage(user) is buf.Storage.VIEW:
                family.extend(user.results)


def _release(m: Interpreter, op: buf.ReleaseOp, env: Env, k: Any, mk: Any) -> State:
    env.get(op.value)  # a second release is a use after the first
    _give_away(env, op, op.value)
    return k, mk, ()


def _take_cell(m: Interpreter, op: buf.TakeCellOp, env: Env, k: Any, mk: Any) -> State:
    x = env.get(op.value)
    _give_away(env, op, op.value)
    return k, mk, [Cell(np.asarray(x))]


def _take_load(m: Interpreter, op: buf.TakeLoadOp, env: Env, k: Any, mk: Any) -> State:
    cell = env.get(op.cell)
    _give_away(env, op, op.cell)
    return k, mk, [cell.value]


# --- simple ops ---------------------------------------------------------------------------


def _evaluate(op: Operation, args: Values) -> Any:
    result = op.evaluate(*args)  # type: ignore[attr-defined]
    t = op.results[0].type
    if isinstance(t, builtin.TensorType):
        return np.asarray(result, dtype=to_numpy_dtype(t.element_type))
    return result


def _zero_like(op: Operation, args: Values) -> Cell:
    return Cell(np.zeros_like(args[0]))


def _accum(op: Operation, args: Values) -> None:
    cell, g = args
    # Not in place: values loaded earlier stay immutable.
    cell.value = np.asarray(cell.value + g)


def _cell_from(op: Operation, args: Values) -> Cell:
    # No copy needed: `_accum` never writes into the array a cell holds.
    return Cell(np.asarray(args[0]))


def _load(op: Operation, args: Values) -> Any:
    if args[0].pending:
        raise InterpreterError(
            f"'ad.load' of a cell with {len(args[0].pending)} deferred product(s) not added "
            "in: an 'ad.flush_products' of the cell is missing before the load"
        )
    return args[0].value


def _zero_cell(op: Operation, args: Values) -> Cell:
    t = op.results[0].type
    assert isinstance(t, ad.CellType) and isinstance(t.elem, builtin.TensorType)
    return Cell(np.zeros(t.elem.get_shape(), dtype=to_numpy_dtype(t.elem.element_type)))


def _new_stack(op: Operation, args: Values) -> Stack:
    return Stack()


def _push(op: Operation, args: Values) -> None:
    args[0].items.append(args[1])


def _pop(op: Operation, args: Values) -> Any:
    items = args[0].items
    if not items:
        raise LanternaRuntimeError("'ad.pop' of an empty stack")
    return items.pop()


def _cast(op: Operation, args: Values) -> Any:
    return args[0]


def _accum_matmul(op: Operation, args: Values) -> None:
    cell, a, b = args
    assert isinstance(op, ad.AccumMatmulOp)
    ta, tb = op.transposes
    product = np.matmul(a.T if ta else a, b.T if tb else b)
    if op.is_deferred:
        cell.pending.append(product)
    else:
        cell.value = np.asarray(cell.value + product)


def _accum_slice(op: Operation, args: Values) -> None:
    cell, piece = args
    assert isinstance(op, ad.AccumSliceOp)
    axis, offset = op.range
    index = [slice(None)] * piece.ndim
    index[axis] = slice(offset, offset + piece.shape[axis])
    value = cell.value.copy()  # values loaded earlier stay immutable
    value[tuple(index)] += piece
    cell.value = value


def _flush_products(op: Operation, args: Values) -> None:
    cell = args[0]
    for product in cell.pending:
        cell.value = np.asarray(cell.value + product)
    cell.pending = []


def _drop_products(op: Operation, args: Values) -> None:
    args[0].pending = []


SimpleFn = Callable[[Operation, Values], Any]
ControlFn = Callable[..., State]

SIMPLE: dict[type[Operation], SimpleFn] = {
    **{op: _evaluate for op in LN_OPS},
    **ARITH_SEMANTICS,
    ad.ZeroLikeOp: _zero_like,
    ad.AccumOp: _accum,
    ad.LoadOp: _load,
    ad.CellFromOp: _cell_from,
    ad.ZeroCellOp: _zero_cell,
    ad.StackOp: _new_stack,
    ad.PushOp: _push,
    ad.PopOp: _pop,
    ad.AccumMatmulOp: _accum_matmul,
    ad.AccumSliceOp: _accum_slice,
    ad.FlushProductsOp: _flush_products,
    ad.DropProductsOp: _drop_products,
    builtin.UnrealizedConversionCastOp: _cast,
}

CONTROL: dict[type[Operation], ControlFn] = {
    func.CallOp: _call,
    func.ReturnOp: _deliver,
    scf.IfOp: _if,
    scf.ForOp: _for,
    scf.WhileOp: _while,
    scf.YieldOp: _deliver,
    scf.ConditionOp: _condition,
    cont.ResetOp: _reset,
    cont.ShiftOp: _shift,
    cont.ResumeOp: _resume,
    cont.YieldOp: _deliver,
    cont.LambdaOp: _lambda,
    cont.ApplyOp: _apply,
    ln.CheckpointOp: _inline,
    ln.CheckpointYieldOp: _deliver,
    buf.ReleaseOp: _release,
    buf.TakeCellOp: _take_cell,
    buf.TakeLoadOp: _take_load,
}

TERMINATORS = frozenset(
    {func.ReturnOp, scf.YieldOp, scf.ConditionOp, cont.YieldOp, ln.CheckpointYieldOp}
)


# --- the machine --------------------------------------------------------------------------


class Interpreter:
    """Runs the functions of one module.

    Interpreter(module).call("f", x, w)  # -> tuple of numpy arrays
    """

    def __init__(self, module: builtin.ModuleOp):
        self.module = module
        self.simple = SIMPLE
        self.control = CONTROL
        self._functions: dict[str, func.FuncOp] = {}
        self._free: dict[cont.LambdaOp, tuple[SSAValue, ...]] = {}
        for op in module.ops:
            if isinstance(op, func.FuncOp):
                self._functions[op.sym_name.data] = op
        for op in module.walk():
            for region in op.regions:
                for block in region.blocks:
                    block.__dict__.pop("_lanterna_ops", None)

    def function(self, name: str) -> func.FuncOp:
        try:
            fn = self._functions[name]
        except KeyError:
            raise InterpreterError(f"no function @{name} in the module") from None
        if not fn.body.blocks:
            raise InterpreterError(f"@{name} is a declaration without a body")
        return fn

    def free_values(self, op: Operation) -> tuple[SSAValue, ...]:
        """The values defined outside `op` that its regions use."""
        free = self._free.get(op)  # type: ignore[arg-type]
        if free is None:
            seen: dict[SSAValue, None] = {}
            for inner in op.walk():
                if inner is op:
                    continue
                for v in inner.operands:
                    if not _defined_within(v, op):
                        seen[v] = None
            free = tuple(seen)
            self._free[op] = free  # type: ignore[index]
        return free

    def call(self, name: str, *args: Any) -> tuple[Any, ...]:
        fn = self.function(name)
        inputs = fn.function_type.inputs.data
        if len(args) != len(inputs):
            raise InterpreterError(f"@{name} takes {len(inputs)} arguments, {len(args)} given")
        converted = [_convert_arg(name, i, a, t) for i, (a, t) in enumerate(zip(args, inputs))]
        # IEEE results, quietly, as compiled code gives them: an inf or NaN that a
        # select then discards (the adjoint of `ln.power` at 0) is no event.
        with np.errstate(all="ignore"):
            result = self.run(enter(fn.body, Env(), converted, None))
        outputs = fn.function_type.outputs.data
        return tuple(_convert_result(r, t) for r, t in zip(result, outputs))

    def run(self, k: Any, vals: Values = ()) -> Values:
        mk: Any = None
        while True:
            if k is None:
                if mk is None:
                    return vals
                k, mk = mk
                continue
            frame, k = k
            k, mk, vals = frame.step(self, vals, k, mk)


def _defined_within(v: SSAValue, op: Operation) -> bool:
    owner = v.owner
    node: Operation | None = owner if isinstance(owner, Operation) else owner.parent_op()
    while node is not None:
        if node is op:
            return True
        node = node.parent_op()
    return False


def _convert_result(value: Any, t: Any) -> Any:
    if isinstance(t, builtin.TensorType):
        return np.asarray(value, dtype=to_numpy_dtype(t.element_type))
    return value


def _convert_arg(fname: str, i: int, value: Any, t: Any) -> Any:
    if isinstance(t, builtin.TensorType):
        dtype = to_numpy_dtype(t.element_type)
        arr = np.asarray(value)
        shape = tuple(t.get_shape())
        if arr.shape != shape:
            raise InterpreterError(
                f"@{fname} argument #{i}: expected shape {shape}, got {arr.shape}"
            )
        if arr.dtype != dtype:
            if not np.can_cast(arr.dtype, dtype, casting="same_kind"):
                raise InterpreterError(
                    f"@{fname} argument #{i}: expected dtype {dtype}, got {arr.dtype}"
                )
            arr = arr.astype(dtype)
        return arr
    if isinstance(
        t, builtin.IndexType | builtin.IntegerType | builtin.Float32Type | builtin.Float64Type
    ):
        return to_numpy_dtype(t).type(value)
    return value
