"""Output targets: what `lanterna-opt -t NAME` prints a module as.

A target renders a whole module as text: textual IR (`mlir`, `mlir-generic`) or a
backend's generated source (`cpp`). Backends register theirs here; a target whose
renderer lives in a backend is registered by a small function that imports that
backend's emitter only when the target is used, so listing the targets (as
`lanterna-opt --help` does) imports no emitter.
"""

from __future__ import annotations

from collections.abc import Callable

from xdsl.dialects.builtin import ModuleOp

from lanterna.errors import PipelineError
from lanterna.ir.context import print_ir

Target = Callable[[ModuleOp], str]
"""Renders a module as text. It raises NotImplementedError or a LanternaError for a
module it cannot render (e.g. continuations left for a C++ target)."""

_TARGETS: dict[str, Target] = {}


def register_target(name: str, render: Target) -> None:
    """Make `render` selectable as `lanterna-opt -t NAME`."""
    old = _TARGETS.get(name)
    if old is not None and old is not render:
        raise PipelineError(f"target '{name}' is already registered")
    _TARGETS[name] = render


def get_target(name: str) -> Target:
    """The target registered as `name`; PipelineError listing the known ones."""
    try:
        return _TARGETS[name]
    except KeyError:
        raise PipelineError(
            f"unknown target '{name}'; known targets: {', '.join(available_targets())}"
        ) from None


def available_targets() -> list[str]:
    """Every registered target name, sorted."""
    return sorted(_TARGETS)


def _render_mlir(module: ModuleOp) -> str:
    return print_ir(module) + "\n"


def _render_mlir_generic(module: ModuleOp) -> str:
    return print_ir(module, generic=True) + "\n"


def _render_cpp(module: ModuleOp) -> str:
    from lanterna.backends.cpu_cpp import render_cpp

    return render_cpp(module)


register_target("mlir", _render_mlir)
register_target("mlir-generic", _render_mlir_generic)
register_target("cpp", _render_cpp)
