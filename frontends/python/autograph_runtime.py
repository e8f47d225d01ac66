"""The runtime of rewritten control flow: what code converted by `autograph.py`
calls at trace time.

Each function decides, when it runs, between plain Python (a Python condition:
one branch runs, loops unroll) and the combinators of `control.py` (a staged
condition: `scf.if`, `scf.while`, `scf.for`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lanterna.frontends.python import control, pytree
from lanterna.frontends.python.control import Undefined, is_staged
from lanterna.frontends.python.location import user_error
from lanterna.frontends.python.tracing import Tensor, current_tracer, lift

# --- runtime: what converted code calls ----------------------------------------------------


def call(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
    """A call in converted code: while tracing, a user function it calls is converted
    too (`autograph_calls.converted`), so its `if`/`while` on staged values are staged."""
    if current_tracer() is not None:
        fn = autograph_calls.converted(fn)
    return fn(*args, **kwargs)


def state(local_vars: dict[str, Any], names: Sequence[str]) -> tuple[Any, ...]:
    """The current values of `names`; `Undefined` for those not bound yet."""
    return tuple(local_vars.get(n, Undefined(n, "is used before it is assigned")) for n in names)


def _staged_mode(x: Any) -> bool:
    return is_staged(x) and current_tracer() is not None


def if_stmt(
    test: Any,
    true_fn: Callable[..., Any],
    false_fn: Callable[..., Any],
    values: tuple[Any, ...],
    names: Sequence[str],
    returns: bool = False,
) -> Any:
    """An `if`: plain Python on a Python condition, an `scf.if` on a staged one.

    The branch functions take the variables the statement assigns and return
    their new values (or, with `returns`, the function's return value).
    """
    if not _staged_mode(test):
        return true_fn(*values) if test else false_fn(*values)
    if returns:
        (out,) = control.stage_if(
            test,
            lambda: [ret(true_fn(*values))],
            lambda: [ret(false_fn(*values))],
            [True],
            ["the values returned by the branches of this `if`"],
        )
        return out
    outs = control.stage_if(
        test,
        lambda: list(true_fn(*values)),
        lambda: list(false_fn(*values)),
        [False] * len(names),
        list(names),
    )
    return tuple(outs)


def if_exp(test: Any, true_fn: Callable[[], Any], false_fn: Callable[[], Any]) -> Any:
    """`a if test else b`."""
    if not _staged_mode(test):
        return true_fn() if test else false_fn()
    (out,) = control.stage_if(
        test, lambda: [true_fn()], lambda: [false_fn()], [True], ["the values of `a if c else b`"]
    )
    return out


def not_(x: Any) -> Any:
    return ~lift(x).astype(np.bool_) if _staged_mode(x) else not x


def and_(*operands: Callable[[], Any]) -> Any:
    """`a and b and ...`: short-circuits on Python values, `logical_and` on staged ones."""
    value = operands[0]()
    for operand in operands[1:]:
        if _staged_mode(value):
            value = lift(value).astype(np.bool_) & lift(operand()).astype(np.bool_)
        elif not value:
            return value
        else:
            value = operand()
    return value


def or_(*operands: Callable[[], Any]) -> Any:
    """`a or b or ...`: short-circuits on Python values, `logical_or` on staged ones."""
    value = operands[0]()
    for operand in operands[1:]:
        if _staged_mode(value):
            value = lift(value).astype(np.bool_) | lift(operand()).astype(np.bool_)
        elif value:
            return value
        else:
            value = operand()
    return value


def running(*flags: Any) -> Any:
    """Neither a `break` nor a `continue` happened: `not (f1 or f2 ...)`."""
    return not_(or_(*(lambda f=f: f for f in flags)))


def ret(value: Any) -> Any:
    """A returned value, checked for variables that have no value."""
    for leaf in pytree.tree_leaves(value):
        if isinstance(leaf, Undefined):
            raise leaf.error()
    return value


def py_test(test: Any, what: str) -> Any:
    """The condition of a statement that stays Python: it must not be staged."""
    if _staged_mode(test):
        raise user_error(f"{what} cannot be staged: its condition is a staged value")
    return test


def py_iter(iterable: Any, what: str) -> Any:
    if isinstance(iterable, StagedRange):
        raise user_error(f"{what} cannot be staged: its range has staged bounds")
    return iterable


class StagedRange:
    """`range(...)` with a staged bound: iterated by an `scf.for` (or `scf.while`)."""

    def __init__(self, start: Any, stop: Any, step: Any):
        self.start, self.stop, self.step = start, stop, step


def range_(*args: Any) -> range | StagedRange:
    if not any(isinstance(a, Tensor) for a in args):
        return range(*args)
    if len(args) == 1:
        return StagedRange(0, args[0], 1)
    start, stop, *rest = args
    step = rest[0] if rest else 1
    if not isinstance(step, int) or step <= 0:
        raise user_error("a staged `range` needs a positive Python int step")
    return StagedRange(start, stop, step)


def _carryable(v: Any) -> bool:
    if isinstance(v, Undefined):
        return False
    leaves = pytree.tree_leaves(v)
    return all(control._arraylike(x) for x in leaves)


class _Carry:
    """Splits loop state into carried values (arrays and numbers) and the rest
    (undefined before the loop, or other Python objects that must not change)."""

    def __init__(self, values: tuple[Any, ...], names: Sequence[str], what: str):
        self.values, self.names, self.what = values, names, what
        self.carried = [k for k, v in enumerate(values) if _carryable(v)]

    def full(self, carried: Sequence[Any]) -> tuple[Any, ...]:
        out = list(self.values)
        for k, v in zip(self.carried, carried):
            out[k] = v
        return tuple(out)

    def pick(self, out: Sequence[Any]) -> list[Any]:
        for k, v in enumerate(out):
            if (
                k not in self.carried
                and not isinstance(self.values[k], Undefined)
                and v is not self.values[k]
            ):
                raise user_error(
                    f"variable '{self.names[k]}' holds a {type(self.values[k]).__name__} and is "
                    f"changed inside a staged {self.what}; only arrays and numbers can be carried"
                )
        return [out[k] for k in self.carried]

    def result(self, carried: Sequence[Any]) -> tuple[Any, ...]:
        out = list(self.full(carried))
        for k, v in enumerate(self.values):
            if isinstance(v, Undefined):
                out[k] = Undefined(
                    self.names[k],
                    f"is assigned only inside a staged {self.what}; assign it before the loop "
                    "to use it after",
                )
        return tuple(out)


def while_stmt(
    test_fn: Callable[..., Any],
    body_fn: Callable[..., Any],
    values: tuple[Any, ...],
    names: Sequence[str],
) -> tuple[Any, ...]:
    """A `while` loop: Python iterations until its condition is staged, then an `scf.while`."""
    while True:
        test = test_fn(*values)
        if _staged_mode(test):
            break
        if not test:
            return values
        values = tuple(body_fn(*values))
    carry = _Carry(values, names, "`while` loop")
    out = control.stage_while(
        lambda c: test_fn(*carry.full(c)),
        lambda c: carry.pick(body_fn(*carry.full(c))),
        [values[k] for k in carry.carried],
        "while",
    )
    return carry.result(out)


def for_stmt(
    iterable: Any,
    extra_test: Callable[..., Any] | None,
    body_fn: Callable[..., Any],
    values: tuple[Any, ...],
    names: Sequence[str],
) -> tuple[Any, ...]:
    """A `for` loop. Over a `range` with staged bounds it is an `scf.for` (an
    `scf.while` when it has a `break`); otherwise it runs as Python, switching to
    an `scf.while` over the rest of a `range` once a `break` depends on staged values."""
    if isinstance(iterable, StagedRange):
        return _staged_range(iterable, extra_test, body_fn, values, names)
    for item in iterable:
        if extra_test is not None:
            go = extra_test(*values)
            if _staged_mode(go):
                if not isinstance(iterable, range):
                    raise user_error(
                        "a `break` that depends on a staged value cannot be staged in a `for` "
                        "over anything but range(...)"
                    )
                rest = StagedRange(item, iterable.stop, iterable.step)
                return _staged_range(rest, extra_test, body_fn, values, names)
            if not go:
                return values
        values = tuple(body_fn(item, *values))
    return values


def _staged_range(
    rng: StagedRange,
    extra_test: Callable[..., Any] | None,
    body_fn: Callable[..., Any],
    values: tuple[Any, ...],
    names: Sequence[str],
) -> tuple[Any, ...]:
    carry = _Carry(values, names, "`for` loop")
    init = [values[k] for k in carry.carried]
    if extra_test is None:
        out = control.stage_for(
            rng.start,
            rng.stop,
            rng.step,
            lambda i, c: carry.pick(body_fn(i, *carry.full(c))),
            init,
            "for",
        )
        return carry.result(out)
    step = rng.step

    def test(s: list[Any]) -> Any:
        i, c = s
        inside = i < rng.stop if step > 0 else i > rng.stop
        return and_(lambda: inside, lambda: extra_test(*carry.full(c)))

    def body(s: list[Any]) -> list[Any]:
        i, c = s
        return [i + step, carry.pick(body_fn(i, *carry.full(c)))]

    start = (
        lift(rng.start, np.int64)
        if not isinstance(rng.start, Tensor)
        else rng.start.astype(np.int64)
    )
    _, out = control.stage_while(test, body, [start, init], "for")
    return carry.result(out)


# Converting callees needs the rewriting, which imports this module.
from lanterna.frontends.python import autograph_calls
