"""The cpu backend: generated C++17 compiled by g++, called through a pybind11 bridge.

`emitter` renders IR to C++ source, `driver` compiles it (and the bridge) into the
compile cache (`cache`), `backend` ties them into the `"cpu"` backend. Importing this
package only registers the backend; nothing is compiled until `compile` is called.
"""

from __future__ import annotations

from xdsl.dialects.builtin import ModuleOp

from lanterna.backends import Backend, register_backend
from lanterna.passes.registry import register_target


def _make_backend() -> Backend:
    from lanterna.backends.cpu_cpp.backend import CpuBackend

    return CpuBackend()


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


register_backend("cpu", _make_backend)
register_target("cpp", render_cpp)
