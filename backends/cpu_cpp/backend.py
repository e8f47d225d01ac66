"""The cpu backend: IR -> C++ (emitter) -> cached shared object (driver) -> a Python callable
(through the bridge).

    backend = get_backend("cpu")
    f = backend.compile(module, "step", donate=(0,))
    new_w, loss = f(w, x)      # new_w is written into w's buffer

The callable takes numpy arrays, one per argument of the function, converts an
argument only when it is not already a C-contiguous array of the declared dtype,
allocates the results as numpy arrays that the generated code writes into, and
returns them. Nothing is copied on the way in or out otherwise. Large results take
their buffer from the bridge's pool, where dropped results' buffers go back (see
POOLED_MIN): a training loop's new state reuses the pages of the state before.

Donation: an argument listed in `donate` gives its buffer to the first result of the
same shape and dtype not already given one; that result *is* the argument's array
after the call (its old contents are gone). This is for in-place parameter updates.
The generated code must then be correct when that output aliases that input, which
holds for elementwise updates (each element is read before it is written) but not for
every op; donate only arrays whose result is computed elementwise from them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from lanterna.backends import cpu_cpp
from lanterna.backends.cpu_cpp import driver


@dataclass(frozen=True)
class Spec:
    shape: tuple[int, ...]
    dtype: np.dtype

    def describe(self) -> str:
        return f"{self.dtype}{list(self.shape)}"


def _specs(pairs: Iterable[tuple[Sequence[int], Any]]) -> list[Spec]:
    return [Spec(tuple(int(d) for d in shape), np.dtype(dt)) for shape, dt in pairs]


def _donation_map(inputs: list[Spec], outputs: list[Spec], donate: Sequence[int]) -> dict[int, int]:
    """output index -> donated input index, pairing each donated input with the first
    free output of identical shape and dtype."""
    n = len(inputs)
    pairs: dict[int, int] = {}
    for raw in donate:
        i = raw + n if -n <= raw < 0 else raw
        if not 0 <= i < n:
            raise ValueError(f"donate index {raw} is out of range for {n} arguments")
        for j, out in enumerate(outputs):
            if j not in pairs and out == inputs[i]:
                pairs[j] = i
                break
    return pairs


# Results of at least this many bytes take their buffer from the bridge's pool:
# freed results of the same size, already mapped, instead of fresh pages from the
# C library (which maps and unmaps buffers this large on every call, a page
# fault per 4 KiB). Below it, numpy's own allocation is as fast.
POOLED_MIN = 1 << 16


class CompiledFunction:
    """One compiled function of a module: call it with numpy arrays."""

    def __init__(
        self,
        handle: Any,
        bridge: Any,
        name: str,
        inputs: list[Spec],
        outputs: list[Spec],
        donated: dict[int, int],
    ):
        self.handle = handle
        self._call = bridge.call
        self.name = name
        self.inputs = inputs
        self.outputs = outputs
        self.donated = donated  # output index -> input index
        # How each result array is made: large ones from the bridge's pool of freed
        # result buffers (see POOLED_MIN), the rest by numpy.
        self._empty = [
            bridge.empty if s.dtype.itemsize * math.prod(s.shape) >= POOLED_MIN else np.empty
            for s in outputs
        ]

    def __repr__(self) -> str:
        ins = ", ".join(s.describe() for s in self.inputs)
        outs = ", ".join(s.describe() for s in self.outputs)
        return f"<lanterna cpu function {self.name}({ins}) -> ({outs})>"

    def _argument(self, i: int, value: Any) -> np.ndarray:
        spec = self.inputs[i]
        if (
            type(value) is np.ndarray
            and value.dtype == spec.dtype
            and value.flags.c_contiguous
            and value.flags.aligned
        ):
            arr = value
        else:
            arr = np.asarray(value)
            # Convert float64 -> float32 and the like, never float -> int silently.
            if not np.can_cast(arr.dtype, spec.dtype, casting="same_kind"):
                raise TypeError(
                    f"argument {i} of '{self.name}' has dtype {arr.dtype}, expected {spec.dtype}"
                )
            arr = np.require(arr, dtype=spec.dtype, requirements=("C", "A"))
        if arr.shape != spec.shape:
            raise ValueError(
                f"argument {i} of '{self.name}' has shape {arr.shape}, expected {spec.shape}"
            )
        return arr

    def __call__(self, *args: Any) -> tuple[np.ndarray, ...]:
        if len(args) != len(self.inputs):
            raise TypeError(f"'{self.name}' takes {len(self.inputs)} arrays, got {len(args)}")
        arrays = [self._argument(i, a) for i, a in enumerate(args)]
        results = []
        for j, spec in enumerate(self.outputs):
            i = self.donated.get(j)
            # A donated argument that had to be converted is a private copy: reusing it
            # would not update the caller's array, but it is still a free buffer.
            if i is not None and arrays[i].flags.writeable:
                results.append(arrays[i])
            else:
                results.append(self._empty[j](spec.shape, spec.dtype))
        self._call(self.handle, arrays, results)
        return tuple(results)

    def memory_stats(self) -> dict[str, int]:
        """Bytes the last finished call asked of its arena: `requested` by all its
        allocations, `reused` of those served by buffers released earlier in the
        call, `fresh` (its footprint: what the call needed at most at once, to
        alignment) and `held` (the arena's chunks, kept between calls)."""
        return dict(self.handle.arena_stats())


class CpuBackend:
    """Compiles modules to C++ with g++ and runs them through the pybind11 bridge."""

    name = "cpu"
    default_pipeline = (
        "reverse-loops,lower-continuations,elide-zero-adjoints,canonicalize,cse,licm,dce,"
        "fuse-elementwise,absorb-transposes,accumulate-products,accumulate-pieces,defer-products,"
        "plan-buffers"
    )

    def available(self) -> bool:
        return cpu_cpp.unavailable_reason() is None

    def unavailable_reason(self) -> str | None:
        """None when g++ is on PATH, else that it is missing."""
        return cpu_cpp.unavailable_reason()

    def compile(
        self,
        module: ModuleOp,
        fn_name: str,
        *,
        donate: Sequence[int] = (),
        debug: bool | None = None,
    ) -> CompiledFunction:
        """Compile `@fn_name` of `module`; `donate` lists argument indices whose buffers
        results may reuse (see the module docstring); `debug` overrides LANTERNA_DEBUG.
        Raises CompileError when there is no compiler or the compiler fails."""
        from lanterna.backends.cpu_cpp.emitter import emit_module

        driver.require_compiler()
        emitted = emit_module(module, fn_name)
        blas = driver.blas_flags()
        with driver.compiled(
            emitted.source, flags=blas.compile, extra_link=blas.link, debug=debug
        ) as path:
            # Loaded while the cache holds it: a concurrent clear or eviction waits.
            return load(path, fn_name, emitted.inputs, emitted.outputs, donate=donate, debug=debug)


def load(
    path: Any,
    name: str,
    inputs: Iterable[tuple[Sequence[int], Any]],
    outputs: Iterable[tuple[Sequence[int], Any]],
    *,
    donate: Sequence[int] = (),
    debug: bool | None = None,
) -> CompiledFunction:
    """Load a compiled module (from `driver.compile_source`) with its signature: lists of
    (shape, dtype) for the entry point's inputs and outputs, in order."""
    in_specs, out_specs = _specs(inputs), _specs(outputs)
    bridge = driver.load_bridge(debug=debug)
    handle = bridge.load(
        str(path),
        [(s.shape, s.dtype) for s in in_specs],
        [(s.shape, s.dtype) for s in out_specs],
    )
    donated = _donation_map(in_specs, out_specs, donate)
    return CompiledFunction(handle, bridge, name, in_specs, out_specs, donated)
