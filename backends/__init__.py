"""Backends: where a traced and transformed module runs -- the last stage of the pipeline.

This module is the contract between the frontend (and tools) and every backend, and
the registry of backends by name. It imports no backend: each is registered by the
import path of its class (or a factory) and built on first use, and its availability
is asked of a cheap check that imports nothing heavy either. So `import
lanterna.backends` costs no emitter, driver or compiler lookup.

A backend (`Backend`) states what it accepts and what it needs:

* `name`: the name it is registered under (`"interp"`, `"cpu"`);
* `default_pipeline`: the pass pipeline string `ln.jit` runs before compiling
  (empty when the backend runs every level of the IR, as the interpreter does);
* `available()` and `unavailable_reason()`: whether it can compile here, and if not,
  what is missing (e.g. no g++ on PATH);
* `compile(module, fn_name, *, donate=())`: an `Executable` for `@fn_name`. `donate`
  lists argument indices whose buffers results may take over; it is a permission,
  never a promise, so a backend that cannot reuse buffers accepts and ignores it.

An `Executable` is called with numpy arrays (one per argument of `@fn_name`), returns
a tuple of numpy arrays (one per result), and reports `memory_stats()`: what the last
call asked of the backend's memory, or `{}` on a backend that does not measure.

The emitters, compiler drivers and runtimes live in the subpackages
(`backends.cpu_cpp`); the services they share (the compile cache, `backends.cache`;
the output targets of `lanterna-opt -t`, `backends.targets`) live beside this module.
Layers point one way: backends import `lanterna.ir` and `lanterna.errors`, never
`lanterna.passes`, `lanterna.tools` or the frontend.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from lanterna.errors import LanternaError

if TYPE_CHECKING:
    import numpy as np
    from xdsl.dialects.builtin import ModuleOp


def debug_enabled(flag: bool | None = None) -> bool:
    """The one debug switch: an explicit `flag` wins, else `LANTERNA_DEBUG` is set and not 0."""
    if flag is not None:
        return flag
    return os.environ.get("LANTERNA_DEBUG", "") not in ("", "0")


# --- the contract -----------------------------------------------------------------------------


class Executable(Protocol):
    """One compiled function: numpy arrays in, a tuple of numpy arrays out."""

    def __call__(self, *arrays: Any) -> tuple[np.ndarray, ...]: ...

    def memory_stats(self) -> dict[str, int]:
        """Bytes the last finished call asked of the backend's memory, by kind (the cpu
        backend: its arena's `requested`, `reused`, `fresh`, `held`); `{}` when the
        backend does not measure."""
        ...


class Backend(Protocol):
    """What `ln.jit` and `lanterna-opt` ask of a backend (see the module docstring)."""

    name: str
    default_pipeline: str

    def available(self) -> bool:
        """Whether `compile` can work on this machine."""
        ...

    def unavailable_reason(self) -> str | None:
        """None when available, else what is missing, as a sentence fragment a user can
        act on (`"no C++ compiler (g++) found on PATH"`)."""
        ...

    def compile(
        self, module: ModuleOp, fn_name: str, *, donate: Sequence[int] = ()
    ) -> Executable: ...


BackendFactory = Callable[[], Backend]
"""Builds a backend; called once, on first use."""

AvailabilityCheck = Callable[[], "str | None"]
"""A backend's cheap `unavailable_reason`, callable without building the backend."""


@dataclass
class _Entry:
    # Both may be "module:attribute" import paths, resolved on first use.
    factory: BackendFactory | str
    check: AvailabilityCheck | str | None
    instance: Backend | None = None


_REGISTRY: dict[str, _Entry] = {}


class UnknownBackendError(LanternaError, ValueError):
    """A backend name nobody registered."""


def register_backend(
    name: str,
    factory: BackendFactory | str,
    *,
    check: AvailabilityCheck | str | None = None,
    replace: bool = False,
) -> None:
    """Make `factory()` the backend called `name` (built once, on first use).

    `factory` is a callable (a backend class is one) or the import path of one,
    `"package.module:Name"`, imported only when the backend is first used. `check`,
    a callable or import path of the same kind, answers `unavailable_reason` without
    building the backend; without it, asking builds the backend and asks it.
    """
    if name in _REGISTRY and not replace:
        raise ValueError(f"backend '{name}' is already registered")
    _REGISTRY[name] = _Entry(factory, check)


def available_backends() -> list[str]:
    """Every registered backend name, sorted (whether or not it can compile here:
    see `unavailable_reason`)."""
    return sorted(_REGISTRY)


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownBackendError(
            f"unknown backend '{name}'; known backends: {', '.join(available_backends())}"
        ) from None


def _resolve(target: Callable[[], Any] | str) -> Callable[[], Any]:
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


_CONTRACT = ("name", "default_pipeline", "available", "unavailable_reason", "compile")


def get_backend(name: str) -> Backend:
    """The backend registered as `name`; UnknownBackendError lists the known ones, and
    a backend that lacks a member of the contract is a LanternaError naming them."""
    entry = _entry(name)
    if entry.instance is None:
        backend = _resolve(entry.factory)()
        missing = [m for m in _CONTRACT if not hasattr(backend, m)]
        if missing:
            raise LanternaError(
                f"backend '{name}' ({type(backend).__qualname__}) does not implement the "
                f"backend contract: it has no {', '.join(missing)} (see lanterna.backends.Backend)"
            )
        entry.instance = backend
    return entry.instance


def unavailable_reason(name: str) -> str | None:
    """None when backend `name` can compile here, else what is missing. Uses the
    backend's registered cheap check when it has one, so nothing heavy is imported."""
    entry = _entry(name)
    if entry.check is not None:
        return _resolve(entry.check)()
    return get_backend(name).unavailable_reason()


_warned_unavailable = False


def default_backend() -> str:
    """`"cpu"`, or `"interp"` (with a warning, once) when the cpu backend is not
    available here (no C++ compiler)."""
    global _warned_unavailable
    reason = unavailable_reason("cpu")
    if reason is None:
        return "cpu"
    if not _warned_unavailable:
        import warnings

        warnings.warn(
            f"lanterna: {reason}; ln.jit falls back to the 'interp' backend "
            "(the reference interpreter)",
            RuntimeWarning,
            stacklevel=3,
        )
        _warned_unavailable = True
    return "interp"


register_backend("interp", "lanterna.backends.interp:InterpBackend")
register_backend(
    "cpu",
    "lanterna.backends.cpu_cpp.backend:CpuBackend",
    check="lanterna.backends.cpu_cpp:unavailable_reason",
)
