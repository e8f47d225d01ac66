"""`ln.jit`: trace a Python function once per argument signature, compile, cache, run.

    @ln.jit
    def predict(params, x):
        return ln.tanh(x @ params["w"] + params["b"])

    predict({"w": w, "b": b}, x)          # traces, compiles, runs
    predict.lower({"w": w, "b": b}, x)    # the traced IR, as text via str()

Arguments are pytrees (`pytree.py`). Their numpy-array leaves become the
function's parameters; Python numbers stay Python numbers while tracing (so they
fold into the IR as constants and can drive Python control flow) and, like the
arguments named by `static_argnums`/`static_argnames`, are part of the cache key.
A new tree structure, shape, dtype or constant value means a new trace; constants
are keyed by type and bits (`tracing.const_key`), so `-0.0` is not `0.0` and a NaN
finds its trace.

Each jitted function keeps its most recently used `cache_maxsize` traces (an LRU
cache, like `functools.lru_cache`); an evicted signature is traced and compiled
again when it comes back (the compile is usually found in the backend's disk
cache). Calls from several threads share the cache: a signature is traced and
compiled once while the other threads that need it wait.

The traced module runs through the backend's pipeline (or `pipeline=`) and is
compiled by the backend (`lanterna.backends`). Outputs are pytrees too: staged
leaves become the function's results; leaves that are not staged (a Python
number, a numpy array) are returned as they are.
"""

from __future__ import annotations

import functools
import inspect
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from lanterna.backends import Backend, Executable, debug_enabled, default_backend, get_backend
from lanterna.frontends.python import pytree
from lanterna.frontends.python.autograph import convert
from lanterna.frontends.python.tracing import (
    Tensor,
    Tracer,
    check_owned,
    checked_dtype,
    const_key,
    current_tracer,
    is_scalar,
    tracing,
    user_error,
)
from lanterna.ir.context import print_ir
from lanterna.ir.types import from_numpy_dtype, tensor


def symbol_name(name: str) -> str:
    """A Python name as a function symbol: `<lambda>` becomes `lambda`."""
    cleaned = re.sub(r"\W+", "_", name).strip("_")
    if not cleaned:
        return "fn"
    return cleaned if not cleaned[0].isdigit() else f"fn_{cleaned}"


def _value_name(parts: Sequence[Any]) -> str | None:
    name = re.sub(r"\W+", "_", "_".join(str(p) for p in parts)).strip("_")
    return name if name and not name[0].isdigit() else None


# --- argument signatures ------------------------------------------------------------------


class ArraySpec(NamedTuple):
    """A numpy-array leaf: it becomes a parameter of the traced function. (A
    tuple: one is made for every array of every call.)"""

    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass(frozen=True)
class ConstSpec:
    """A Python-number leaf: folded into the trace, so its value is in the key, as
    `const_key` (type and bits: `1`, `1.0` and `True` trace differently, and so do
    `0.0` and `-0.0`)."""

    key: Hashable


@dataclass
class _Call:
    """One call's arguments split into the cache key and the runtime arrays."""

    key: Hashable
    arrays: list[np.ndarray]
    leaves: list[Any]
    specs: list[ArraySpec | ConstSpec]
    treedef: pytree.TreeDef
    static_args: dict[int, Any]
    static_kwargs: dict[str, Any]
    tree: Any  # the (args, kwargs) pytree; leaf paths are only needed when tracing
    dyn_positions: list[int]  # the positions in the call of the non-static arguments


@dataclass
class _Const:
    """An output leaf that was not staged: returned as is (a numpy array as a copy,
    so callers cannot change what later calls return)."""

    value: Any

    def get(self) -> Any:
        return self.value.copy() if isinstance(self.value, np.ndarray | np.generic) else self.value


@dataclass
class Traced:
    """One cache entry: the traced module and how to rebuild the outputs."""

    module: ModuleOp
    fn_name: str
    out_tree: pytree.TreeDef
    out_slots: list[int | _Const]
    donate: tuple[int, ...] = ()  # indices into the array arguments whose buffers results may reuse
    executable: Executable | None = field(default=None)
    # Held while compiling, so threads that find the entry new compile it once.
    compiling: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def outputs(self, results: Sequence[np.ndarray]) -> Any:
        leaves = [results[s] if isinstance(s, int) else s.get() for s in self.out_slots]
        return pytree.unflatten(self.out_tree, leaves)


@dataclass
class _Pending:
    """A trace in progress: other threads wanting the same key wait for `done`."""

    thread: int
    done: threading.Event = field(default_factory=threading.Event)


class Lowered:
    """The traced IR of one specialization of a jitted function."""

    def __init__(self, module: ModuleOp, fn_name: str):
        self.module = module
        self.fn_name = fn_name

    def as_text(self) -> str:
        return print_ir(self.module)

    def __str__(self) -> str:
        return self.as_text()


# --- jit ----------------------------------------------------------------------------------

DEFAULT_CACHE_MAXSIZE = 128
"""Traces kept per jitted function unless `cache_maxsize` says otherwise (the
default of `functools.lru_cache`)."""


class Jitted:
    """A function compiled on first call for each argument signature."""

    def __init__(
        self,
        fn: Callable[..., Any],
        backend: str | None = None,
        static_argnums: int | Sequence[int] = (),
        static_argnames: str | Sequence[str] = (),
        pipeline: str | None = None,
        donate_argnums: int | Sequence[int] = (),
        extra_passes: Sequence[str] = (),
        dump_ir: bool = False,
        cache_maxsize: int | None = DEFAULT_CACHE_MAXSIZE,
    ):
        functools.update_wrapper(self, fn)
        # Python `if`/`while`/`for` on staged values become control-flow ops.
        self.fn = convert(fn)
        self.fn_name = symbol_name(getattr(fn, "__name__", "fn"))
        self.backend_name = backend if backend is not None else default_backend()
        self.backend: Backend = get_backend(self.backend_name)
        nums = (static_argnums,) if isinstance(static_argnums, int) else static_argnums
        names = (static_argnames,) if isinstance(static_argnames, str) else static_argnames
        self.static_argnums = tuple(nums)
        self.static_argnames = frozenset(names)
        self.pipeline = pipeline
        self.extra_passes = (
            (extra_passes,) if isinstance(extra_passes, str) else tuple(extra_passes)
        )
        self.dump_ir = dump_ir
        donate = (donate_argnums,) if isinstance(donate_argnums, int) else donate_argnums
        self.donate_argnums = frozenset(donate)
        self.trace_count = 0
        if cache_maxsize is not None and (
            isinstance(cache_maxsize, bool) or not isinstance(cache_maxsize, int)
        ):
            raise TypeError(
                f"cache_maxsize of '{self.fn_name}' must be an int or None, got "
                f"{type(cache_maxsize).__name__}"
            )
        if cache_maxsize is not None and cache_maxsize < 1:
            raise ValueError(
                f"cache_maxsize of '{self.fn_name}' must be at least 1, got {cache_maxsize}"
            )
        self.cache_maxsize = cache_maxsize
        self._cache: OrderedDict[Hashable, Traced] = OrderedDict()  # least recently used first
        self._pending: dict[Hashable, _Pending] = {}
        self._lock = threading.Lock()  # guards _cache, _pending and trace_count
        try:
            self._params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            self._params = []

    def __repr__(self) -> str:
        return f"<ln.jit of {self.fn_name} on backend '{self.backend_name}'>"

    @property
    def cache_size(self) -> int:
        """How many signatures are traced and cached now (at most `cache_maxsize`)."""
        return len(self._cache)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if current_tracer() is not None:
            # A jitted function called while tracing is inlined into that trace.
            return self.fn(*args, **kwargs)
        call = self._split(args, kwargs)
        traced = self._get(call)
        executable = traced.executable
        if executable is None:
            with traced.compiling:
                if traced.executable is None:
                    traced.executable = self._compile(traced)
                executable = traced.executable
        self._last = traced
        return traced.outputs(executable(*call.arrays))

    def memory_stats(self) -> dict[str, int]:
        """Bytes the last call asked of the backend's memory (cpu: its arena):
        `requested` by all allocations, `reused` of those served by buffers freed
        earlier in the call, `fresh` (the call's footprint) and `held` (kept by
        the arena between calls). Empty on backends that do not measure."""
        last: Traced | None = getattr(self, "_last", None)
        if last is None or last.executable is None:
            return {}
        return last.executable.memory_stats()

    def lower(self, *args: Any, **kwargs: Any) -> Lowered:
        """The traced IR for these arguments (before any pass runs)."""
        traced = self._get(self._split(args, kwargs))
        return Lowered(traced.module.clone(), traced.fn_name)

    # --- specialization -----------------------------------------------------------------

    def _split(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Call:
        n = len(args)
        if self.static_argnums or self.static_argnames:
            static_pos = sorted({i % n for i in self.static_argnums if -n <= i < n})
            static_args = {i: args[i] for i in static_pos}
            dyn_args = tuple(a for i, a in enumerate(args) if i not in static_args)
            static_kwargs = {k: v for k, v in kwargs.items() if k in self.static_argnames}
            dyn_kwargs = {k: v for k, v in kwargs.items() if k not in self.static_argnames}
        else:  # the common case, kept cheap: this runs on every call
            static_args, static_kwargs, dyn_args, dyn_kwargs = {}, {}, args, kwargs
        statics: list[Hashable] = []
        for label, v in [*static_args.items(), *sorted(static_kwargs.items())]:
            try:
                hash(v)
            except TypeError:
                raise TypeError(
                    f"static argument {label!r} of '{self.fn_name}' must be hashable, "
                    f"got {type(v).__name__}"
                ) from None
            statics.append((label, const_key(v)))

        tree = (dyn_args, dyn_kwargs)
        leaves, treedef = pytree.flatten(tree)
        specs: list[ArraySpec | ConstSpec] = []
        arrays: list[np.ndarray] = []
        for leaf in leaves:
            if type(leaf) is np.ndarray:  # the common case, first
                specs.append(ArraySpec(leaf.shape, checked_dtype(leaf.dtype)))
                arrays.append(leaf)
                continue
            if isinstance(leaf, Tensor):
                raise user_error(
                    f"'{self.fn_name}' was called with a staged value outside of its trace"
                )
            if is_scalar(leaf):
                specs.append(ConstSpec(const_key(leaf)))
            elif isinstance(leaf, np.ndarray | np.generic):
                arr = np.asarray(leaf)
                specs.append(ArraySpec(arr.shape, checked_dtype(arr.dtype)))
                arrays.append(arr)
            else:
                raise TypeError(
                    f"'{self.fn_name}' got an argument leaf of type {type(leaf).__name__}; "
                    "arguments must be pytrees of numpy arrays and Python numbers "
                    "(pass other values with static_argnums / static_argnames)"
                )
        key = (treedef, tuple(specs), tuple(statics))
        return _Call(
            key,
            arrays,
            leaves,
            specs,
            treedef,
            static_args,
            static_kwargs,
            tree,
            [i for i in range(n) if i not in static_args],
        )

    def _get(self, call: _Call) -> Traced:
        """The cache entry for `call`, traced by the first thread that needs it."""
        key = call.key
        while True:
            with self._lock:
                traced = self._cache.get(key)
                if traced is not None:
                    self._cache.move_to_end(key)
                    return traced
                pending = self._pending.get(key)
                if pending is None:
                    pending = self._pending[key] = _Pending(threading.get_ident())
                    break
            if pending.thread == threading.get_ident():
                # Asked again while this thread traces it (`lower` from inside the
                # trace): waiting would wait for ourselves.
                return self._trace(call)
            # If that trace fails, the entry is still missing and this thread
            # traces it (and meets the error) itself.
            pending.done.wait()
        try:
            traced = self._trace(call)
            with self._lock:
                self._cache[key] = traced
                if self.cache_maxsize is not None and len(self._cache) > self.cache_maxsize:
                    self._cache.popitem(last=False)
            return traced
        finally:
            with self._lock:
                del self._pending[key]
            pending.done.set()

    def _arg_name(self, path: tuple[Hashable, ...], dyn_positions: list[int]) -> str | None:
        """`params_w` for leaf `params["w"]`: SSA names that say where an input came from."""
        group, where, *rest = path
        if group == 1:
            return _value_name([where, *rest])
        pos = dyn_positions[where]  # type: ignore[index]
        params = [p for p in self._params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if pos < len(params):
            return _value_name([params[pos].name, *rest])
        return _value_name(["arg", pos, *rest])

    def _trace(self, call: _Call) -> Traced:
        with self._lock:
            self.trace_count += 1
        arg_types, names = [], []
        paths = pytree.leaf_paths(call.tree)
        for spec, path in zip(call.specs, paths):
            if isinstance(spec, ArraySpec):
                arg_types.append(tensor(spec.shape, from_numpy_dtype(spec.dtype)))
                names.append(self._arg_name(path, call.dyn_positions))
        tracer = Tracer(self.fn_name, arg_types, names)
        staged = iter(tracer.args)
        leaves = [
            next(staged) if isinstance(spec, ArraySpec) else leaf
            for leaf, spec in zip(call.leaves, call.specs)
        ]
        dyn_args, dyn_kwargs = pytree.unflatten(call.treedef, leaves)
        args = list(dyn_args)
        for i in sorted(call.static_args):
            args.insert(i, call.static_args[i])
        with tracing(tracer):
            out = self.fn(*args, **dyn_kwargs, **call.static_kwargs)
            out_leaves, out_tree = pytree.flatten(out)
            results: list[Tensor] = []
            slots: list[int | _Const] = []
            for leaf in out_leaves:
                if isinstance(leaf, Tensor):
                    check_owned(tracer, leaf)
                    slots.append(len(results))
                    results.append(leaf)
                elif is_scalar(leaf) or isinstance(leaf, np.ndarray | np.generic):
                    slots.append(_Const(leaf))
                else:
                    raise user_error(
                        f"'{self.fn_name}' returned a {type(leaf).__name__}; outputs must be "
                        "pytrees of arrays and numbers"
                    )
        module = tracer.module
        main = tracer.finish(results)
        if module.body.block.first_op is None:
            module.body.block.add_op(main)
        else:
            module.body.block.insert_op_before(main, module.body.block.first_op)
        module.verify()
        donate = tuple(
            k
            for k, path in enumerate(
                p for p, s in zip(paths, call.specs) if isinstance(s, ArraySpec)
            )
            if path[0] == 0 and call.dyn_positions[path[1]] in self.donate_argnums  # type: ignore[index]
        )
        return Traced(module, self.fn_name, out_tree, slots, donate)

    def _compile(self, traced: Traced) -> Executable:
        module = traced.module.clone()
        pipeline = self.backend.default_pipeline if self.pipeline is None else self.pipeline
        pipeline = ",".join(p for p in (pipeline, *self.extra_passes) if p)
        if pipeline:
            from lanterna.passes import run_pipeline, verify_module

            # Verifying after every pass names the pass that broke the IR, at a tenth
            # of a second per compile or more: done when debugging or dumping IR;
            # otherwise the result is verified once.
            each = self.dump_ir or debug_enabled()
            run_pipeline(
                module,
                pipeline,
                verify_each=each,
                print_after_all=sys.stderr if self.dump_ir else None,
            )
            if not each:
                verify_module(module, f"the IR after the pipeline '{pipeline}' does not verify")
        return self.backend.compile(module, traced.fn_name, donate=traced.donate)


def jit(
    f: Callable[..., Any] | None = None,
    *,
    backend: str | None = None,
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
    pipeline: str | None = None,
    donate_argnums: int | Sequence[int] = (),
    extra_passes: Sequence[str] = (),
    dump_ir: bool = False,
    cache_maxsize: int | None = DEFAULT_CACHE_MAXSIZE,
) -> Any:
    """Compile `f` for the given backend; usable as `@jit` and `@jit(backend=...)`.

    The default backend is `"cpu"` (generated C++), or the reference interpreter
    `"interp"` when no C++ compiler is installed.

    `pipeline` replaces the backend's default pass pipeline (a pipeline string);
    `extra_passes` (pass names or specs such as `"my-pass{opt=1}"`) run after it.
    `dump_ir=True` prints the IR after every pass to stderr.
    `donate_argnums` names arguments whose arrays results may overwrite in place
    (e.g. parameters updated by a training step); the caller must not use them
    afterwards, as in JAX.
    `cache_maxsize` bounds how many argument signatures stay traced and compiled,
    dropping the least recently used (None: no bound), as `functools.lru_cache`.
    """

    def wrap(fn: Callable[..., Any]) -> Jitted:
        return Jitted(
            fn,
            backend,
            static_argnums,
            static_argnames,
            pipeline,
            donate_argnums,
            extra_passes,
            dump_ir,
            cache_maxsize,
        )

    return wrap if f is None else wrap(f)
