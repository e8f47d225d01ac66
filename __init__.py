"""lanterna: differentiable programming for Python, compiled.

`import lanterna as ln` is the public API: the Python frontend's names (`ln.jit`,
`ln.grad`, the numpy-like ops, ...) and lanterna's errors. The frontend is imported on
the first use of one of its names (PEP 562), not by `import lanterna`, so importing a
lower layer alone (`import lanterna.ir`, `lanterna.passes`, `lanterna.backends`) does
not load the frontend.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lanterna.errors import CompileError as CompileError
from lanterna.errors import LanternaError as LanternaError
from lanterna.errors import PipelineError as PipelineError
from lanterna.errors import TraceError as TraceError

if TYPE_CHECKING:
    from lanterna.frontends.python import *

_FRONTEND = "lanterna.frontends.python"
_ERRORS = ["CompileError", "LanternaError", "PipelineError", "TraceError"]


def _public_names() -> list[str]:
    return _ERRORS + list(importlib.import_module(_FRONTEND).__all__)


def __getattr__(name: str) -> Any:
    if name == "__all__":
        return _public_names()
    # Dunder probes (`__path__`, `__wrapped__`, ...) from importers and inspectors must
    # not pay for the frontend.
    if not (name.startswith("__") and name.endswith("__")):
        frontend = importlib.import_module(_FRONTEND)
        if name in frontend.__all__:
            value = getattr(frontend, name)
            globals()[name] = value  # later lookups skip this function
            return value
        # Importing the frontend binds the subpackages it imported (`lanterna.backends`).
        if name in globals():
            return globals()[name]
    raise AttributeError(f"module 'lanterna' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted({*globals(), *_public_names()})
