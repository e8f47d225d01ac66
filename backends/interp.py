"""The `"interp"` backend: the reference interpreter (`lanterna.ir.interpreter`) behind
the backend contract of `lanterna.backends`.

It compiles nothing and runs every level of the IR (continuations included), so its
default pipeline is empty and it is available wherever lanterna imports. `ln.jit`
falls back to it when the cpu backend is not available.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp


class InterpretedFunction:
    """One function of a module, run by the reference interpreter."""

    def __init__(self, module: ModuleOp, fn_name: str):
        from lanterna.ir.interpreter import Interpreter

        self.interpreter = Interpreter(module)
        self.fn_name = fn_name

    def __call__(self, *arrays: Any) -> tuple[np.ndarray, ...]:
        results = self.interpreter.call(self.fn_name, *arrays)
        # A result that is an argument passed through must not alias the caller's array.
        return tuple(r.copy() if any(r is a for a in arrays) else r for r in results)

    def memory_stats(self) -> dict[str, int]:
        """Always `{}`: numpy allocates every value and nothing counts it."""
        return {}


class InterpBackend:
    """Runs modules on the reference interpreter: no compilation, every IR level."""

    name = "interp"
    default_pipeline = ""

    def available(self) -> bool:
        return True

    def unavailable_reason(self) -> str | None:
        return None

    def compile(
        self, module: ModuleOp, fn_name: str, *, donate: Sequence[int] = ()
    ) -> InterpretedFunction:
        """An executable for `@fn_name`. `donate` is accepted and ignored, which is
        correct: donation permits results to take over an argument's buffer, it never
        requires it, and the interpreter never writes into its inputs (every op makes
        a new array; `ad.accum` replaces a cell's array instead of adding into it), so
        a donated argument is left as it was and the results are fresh arrays."""
        del donate
        return InterpretedFunction(module, fn_name)
