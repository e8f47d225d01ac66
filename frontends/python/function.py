"""`@ln.function`: staged functions, which may call themselves.

Calling a staged function while tracing emits a `func.call` to a `func.func`
that is traced once per signature into the trace's module. The signature is
the tree structure of the arguments, the shapes and dtypes of their array
leaves (which become the function's parameters) and the values of the other
leaves (Python numbers, strings: static, folded into the body). Because the
body is a function and not inlined, a function may call itself: recursion over
data, such as a tree given as index arrays, becomes one recursive `func.func`
instead of an unrolled computation, and one compiled program serves every tree.

    @ln.function
    def node(i, tree, params):
        if tree["left"][i] < 0:        # staged: an scf.if
            return leaf(i, tree, params)
        return combine(node(tree["left"][i], tree, params),
                       node(tree["right"][i], tree, params), params)

The result types of a recursive call are needed before the body that defines
them is traced. They are found by a probe: the body is traced once; a
recursive call whose result types are still unknown raises `RecursionProbe`,
and the innermost staged `if` around it (`control.stage_if`) carries on with
the results of its other branch alone. The base case of a recursion is such a
branch, so the probe ends with the function's result types; its IR is thrown
away and the body is traced again for real, now with every recursive call
typed. When every path recurses there is nothing to learn from, and the
function must declare its results: `@ln.function(result_shape=...)` with a tree
of `ln.ShapeDtypeStruct` (or a function of the arguments giving one).

Outside a trace a staged function is jitted on the default backend.
"""

from __future__ import annotations

import functools
import inspect
import threading
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Attribute

from lanterna.frontends.python import pytree
from lanterna.frontends.python.api import Jitted, _value_name, symbol_name
from lanterna.frontends.python.control import PROBES, RecursionProbe
from lanterna.frontends.python.location import user_error
from lanterna.frontends.python.tracing import (
    Tensor,
    Tracer,
    checked_dtype,
    const_key,
    current_tracer,
    lift,
    tracing,
)
from lanterna.ir.types import from_numpy_dtype, tensor

DEFAULT_BACKEND = "interp"


@dataclass(frozen=True)
class ShapeDtypeStruct:
    """The type of an array without its data: declares a staged function's results."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def __init__(self, shape: Any, dtype: Any):
        dims = (shape,) if isinstance(shape, int | np.integer) else tuple(shape)
        object.__setattr__(self, "shape", tuple(int(d) for d in dims))
        object.__setattr__(self, "dtype", checked_dtype(dtype))


@dataclass(eq=False)
class _Entry:
    """One signature of a staged function in one module."""

    symbol: str
    out_tree: pytree.TreeDef | None = None
    out_types: list[Attribute] | None = None
    done: bool = False


# Per module, so functions traced for one jit specialization are not reused in
# another's module.
_REGISTRY: weakref.WeakKeyDictionary[ModuleOp, dict[Hashable, _Entry]] = weakref.WeakKeyDictionary()


def _leaf_spec(leaf: Any, name: str) -> Hashable:
    if isinstance(leaf, Tensor):
        return ("array", leaf.shape, leaf.dtype)
    if isinstance(leaf, np.ndarray | np.generic):
        arr = np.asarray(leaf)
        return ("array", arr.shape, checked_dtype(arr.dtype))
    try:
        hash(leaf)
    except TypeError:
        raise user_error(
            f"staged function '{name}' got an unhashable {type(leaf).__name__} argument; "
            "arguments must be pytrees of arrays and hashable Python values"
        ) from None
    return ("static", const_key(leaf))


def _declared(
    spec: Any, args: tuple[Any, ...], kwargs: dict[str, Any], name: str
) -> tuple[pytree.TreeDef, list[Attribute]]:
    tree = spec(*args, **kwargs) if callable(spec) else spec
    leaves, treedef = pytree.flatten(tree)
    types = []
    for leaf in leaves:
        if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
            raise user_error(
                f"result_shape of '{name}' must be a tree of ln.ShapeDtypeStruct, got "
                f"{type(leaf).__name__}"
            )
        types.append(tensor(tuple(leaf.shape), from_numpy_dtype(checked_dtype(leaf.dtype))))
    return treedef, types


class StagedFunction:
    """A function traced into its own `func.func` (once per signature) and called."""

    def __init__(self, fn: Callable[..., Any], result_shape: Any = None):
        from lanterna.frontends.python.autograph import convert

        functools.update_wrapper(self, fn)
        self.fn = convert(fn)
        self.name = getattr(fn, "__name__", "fn")
        self.result_shape = result_shape
        self.trace_count = 0
        self._jitted: Jitted | None = None
        self._lock = threading.Lock()
        try:
            self._params = [
                p.name
                for p in inspect.signature(fn).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
        except (TypeError, ValueError):
            self._params = []

    def __repr__(self) -> str:
        return f"<ln.function {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tracer = current_tracer()
        if tracer is None:
            if self._jitted is None:
                with self._lock:  # one Jitted (one trace cache) when first called from threads
                    if self._jitted is None:
                        self._jitted = Jitted(self, backend=DEFAULT_BACKEND)
            return self._jitted(*args, **kwargs)
        leaves, treedef = pytree.flatten((args, kwargs))
        specs = tuple(_leaf_spec(leaf, self.name) for leaf in leaves)
        key = (id(self), treedef, specs)
        registry = _REGISTRY.setdefault(tracer.module, {})
        entry = registry.get(key)
        if entry is None:
            entry = registry[key] = _Entry(tracer.fresh_symbol(symbol_name(self.name)))
            if self.result_shape is not None:
                entry.out_tree, entry.out_types = _declared(
                    self.result_shape, args, kwargs, self.name
                )
            try:
                self._define(tracer, entry, leaves, treedef, specs)
            except BaseException:
                del registry[key]
                raise
        if entry.out_types is None:
            raise RecursionProbe(entry)
        assert entry.out_tree is not None
        dynamic = [lift(leaf).value for leaf, s in zip(leaves, specs) if s[0] == "array"]
        call = tracer.insert(func.CallOp(entry.symbol, dynamic, entry.out_types))
        return pytree.unflatten(entry.out_tree, [Tensor(r, tracer) for r in call.res])

    # --- tracing the body ---------------------------------------------------------------

    def _arg_names(self, treedef: pytree.TreeDef, leaves: list[Any]) -> list[str | None]:
        paths = pytree.leaf_paths(pytree.unflatten(treedef, [0] * len(leaves)))
        names = []
        for (group, where, *rest), leaf in zip(paths, leaves):
            if isinstance(leaf, Tensor | np.ndarray | np.generic):
                head = (
                    where
                    if group == 1
                    else (
                        self._params[where] if where < len(self._params) else f"arg{where}"  # type: ignore[operator,index]
                    )
                )
                names.append(_value_name([head, *rest]))
        return names

    def _define(
        self,
        caller: Tracer,
        entry: _Entry,
        leaves: list[Any],
        treedef: pytree.TreeDef,
        specs: tuple[Hashable, ...],
    ) -> None:
        arg_types = [
            tensor(s[1], from_numpy_dtype(s[2]))
            for s in specs
            if s[0] == "array"  # type: ignore[index]
        ]
        names = self._arg_names(treedef, leaves)
        # A probe, then the real trace: at most two rounds.
        for _ in range(2):
            self.trace_count += 1
            sub = Tracer(entry.symbol, arg_types, names, parent=caller)
            staged = iter(sub.args)
            inner = [next(staged) if s[0] == "array" else leaf for leaf, s in zip(leaves, specs)]
            args, kwargs = pytree.unflatten(treedef, inner)
            PROBES.frames.append(set())
            try:
                with tracing(sub):
                    out = self.fn(*args, **kwargs)
                    out_leaves, out_tree = pytree.flatten(out)
                    results = [lift(x) for x in out_leaves]
            except RecursionProbe as probe:
                if probe.owner is entry:
                    raise user_error(
                        f"cannot find the result types of the recursive staged function "
                        f"'{self.name}': every path through it calls itself. Give a base case "
                        "under a staged `if`, or declare them: "
                        "@ln.function(result_shape=ln.ShapeDtypeStruct(shape, dtype))"
                    ) from None
                raise
            finally:
                skipped = PROBES.frames.pop()
            types = [r.value.type for r in results]
            if skipped:
                others = [o for o in skipped if o is not entry]
                if others:
                    # This body depends on a caller still being probed: give up
                    # here and let that caller's `if` skip the call to us.
                    raise RecursionProbe(others[0])
                entry.out_tree, entry.out_types = out_tree, types
                continue
            if entry.out_types is not None and (
                out_tree != entry.out_tree or types != entry.out_types
            ):
                shown = ", ".join(map(str, types))
                want = ", ".join(map(str, entry.out_types))
                raise user_error(
                    f"staged function '{self.name}' returns ({shown}) {out_tree}, but its "
                    f"recursive calls expect ({want}) {entry.out_tree}"
                )
            entry.out_tree, entry.out_types = out_tree, types
            fn = sub.finish(results)
            caller.module.body.block.add_op(fn)
            entry.done = True
            return
        raise AssertionError(
            "a staged function's body was still a probe after its result types were known"
        )


def function(f: Callable[..., Any] | None = None, *, result_shape: Any = None) -> Any:
    """Make `f` a staged function; usable as `@function` and `@function(result_shape=...)`.

    `result_shape` (a tree of `ShapeDtypeStruct`, or a function of the
    arguments returning one) declares the results, for a recursive function
    whose result types cannot be found by probing its base case.
    """

    def wrap(fn: Callable[..., Any]) -> StagedFunction:
        return StagedFunction(fn, result_shape)

    return wrap if f is None else wrap(f)
