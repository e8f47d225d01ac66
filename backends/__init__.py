"""Backends: where a traced and transformed module runs.

A backend is registered by name (`"interp"`, `"cpu"`) with
a factory that builds it on first use. A backend object has

* `default_pipeline`: the pass pipeline string `ln.jit` runs before compiling
  (empty when the backend runs every level of the IR, as the interpreter does);
* `compile(module, fn_name)`: a callable taking numpy arrays (one per argument of
  `@fn_name`) and returning a tuple of numpy arrays (one per result).

The emitters, compiler drivers and runtimes live in the subpackages
`backends.cpu_cpp` and `backends.cuda`; this module only knows their names.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from lanterna.errors import LanternaError

Executable = Callable[..., tuple[np.ndarray, ...]]


def debug_enabled(flag: bool | None = None) -> bool:
    """The one debug switch: an explicit `flag` wins, else `LANTERNA_DEBUG` is set and not 0."""
    if flag is not None:
        return flag
    return os.environ.get("LANTERNA_DEBUG", "") not in ("", "0")


class Backend(Protocol):
    default_pipeline: str

    def compile(self, module: ModuleOp, fn_name: str) -> Executable: ...


_FACTORIES: dict[str, Callable[[], Backend]] = {}
_INSTANCES: dict[str, Backend] = {}


class UnknownBackendError(LanternaError, ValueError):
    """`get_backend` was asked for a name nobody registered."""


def register_backend(name: str, factory: Callable[[], Backend], *, replace: bool = False) -> None:
    """Make `factory()` the backend called `name` (built once, on first use)."""
    if name in _FACTORIES and not replace:
        raise ValueError(f"backend '{name}' is already registered")
    _FACTORIES[name] = factory
    _INSTANCES.pop(name, None)


def available_backends() -> list[str]:
    return sorted(_FACTORIES)


def get_backend(name: str) -> Backend:
    """The backend registered as `name`; UnknownBackendError lists the known ones."""
    backend = _INSTANCES.get(name)
    if backend is None:
        try:
            factory = _FACTORIES[name]
        except KeyError:
            raise UnknownBackendError(
                f"unknown backend '{name}'; known backends: {', '.join(available_backends())}"
            ) from None
        backend = _INSTANCES[name] = factory()
    return backend


_warned_no_compiler = False


def default_backend() -> str:
    """`"cpu"`, or `"interp"` (with a warning, once) when no C++ compiler exists."""
    global _warned_no_compiler
    from lanterna.backends.cpu_cpp.driver import find_compiler

    if find_compiler() is not None:
        return "cpu"
    if not _warned_no_compiler:
        import warnings

        warnings.warn(
            "lanterna: no C++ compiler (g++) found; ln.jit falls back to the 'interp' "
            "backend (the reference interpreter)",
            RuntimeWarning,
            stacklevel=3,
        )
        _warned_no_compiler = True
    return "interp"


# --- the reference interpreter as a backend -----------------------------------------------


class _InterpretedFunction:
    """One function of a module, run by the reference interpreter."""

    def __init__(self, module: ModuleOp, fn_name: str):
        from lanterna.ir.interpreter import Interpreter

        self.interpreter = Interpreter(module)
        self.fn_name = fn_name

    def __call__(self, *arrays: Any) -> tuple[np.ndarray, ...]:
        results = self.interpreter.call(self.fn_name, *arrays)
        # A result that is an argument passed through must not alias the caller's array.
        return tuple(r.copy() if any(r is a for a in arrays) else r for r in results)


class InterpBackend:
    """Runs modules on the reference interpreter: no compilation, every IR level."""

    default_pipeline = ""

    def compile(self, module: ModuleOp, fn_name: str) -> Executable:
        return _InterpretedFunction(module, fn_name)


register_backend("interp", InterpBackend)

# Registers "cpu" (the import is cheap: it compiles nothing until a module is compiled).
import lanterna.backends.cpu_cpp  # noqa: F401
