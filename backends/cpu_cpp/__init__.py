"""The cpu backend: generated C++17 compiled by g++, called through a pybind11 bridge.

`emitter` renders IR to C++ source, `driver` compiles it (and the bridge) into the
compile cache (`lanterna.backends.cache`), `backend` ties them into the `"cpu"`
backend. `lanterna.backends` registers it by import path; importing this package
loads none of those modules: it holds only what is asked before anything is
compiled -- where the compiler is (`find_compiler`, also used by the driver) and so
whether the backend is available -- and the `-t cpp` renderer, which imports the
emitter when called.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xdsl.dialects.builtin import ModuleOp

COMPILER = "g++"


def find_compiler() -> str | None:
    """The absolute path of g++ on PATH, or None."""
    return shutil.which(COMPILER)


def unavailable_reason() -> str | None:
    """None when the cpu backend can compile here, else what is missing."""
    if find_compiler() is None:
        return f"no C++ compiler ({COMPILER}) found on PATH"
    return None


def render_cpp(module: ModuleOp) -> str:
    """`lanterna-opt -t cpp`: the C++ for the module's entry function -- the last
    function no other function calls (e.g. `@f_grad` after `reverse-ad`)."""
    from xdsl.dialects import func

    from lanterna.backends.cpu_cpp.emitter import emit_module

    funcs = [op for op in module.ops if isinstance(op, func.FuncOp)]
    called = {
        op.callee.string_value() for f in funcs for op in f.walk() if isinstance(op, func.CallOp)
    }
    roots = [f for f in funcs if f.sym_name.data not in called]
    if not roots:
        raise NotImplementedError("the module has no function to use as the entry")
    return emit_module(module, roots[-1].sym_name.data).source
