"""IR -> C++17 source for the cpu backend (the render step; compiling is `driver.py`).

`CpuEmitter` is the cpu subclass of the C-like core (`backends/c_like`): the core
names values, maps types, writes the structural ops and the elementwise loops; this
module supplies the cpu's spellings (the `lanterna_cpu.h` header, arena allocation,
`#pragma GCC ivdep`, the stack check, recursive closures, run-time errors), the
entry function behind

    extern "C" int lanterna_entry(void* const* inputs, void* const* outputs,
                                  char* err, size_t errlen);

and nothing else: which buffer is released when, which result is written straight
into an output and every BLAS decision are ops of the IR it is given (placed by
`plan-buffers` and the linalg passes). `emitter_ops.CPU_OPS` is its op table: the core's
elementwise lowerings plus the cpu kernels of `runtime/lanterna_cpu.h`.

Values: a tensor is a `const T*` into the per-call arena (immutable once made),
an `!ad.cell` is a `T*` (mutated in place by `ad.accum`), a closure is a
`std::function`, and scalars are C++ scalars.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import Attribute, Operation

from lanterna.backends.c_like.emitter import (
    LOOP_VARS,
    CLikeEmitter,
    EmittedModule,
    c_string,
)
from lanterna.ir.types import to_numpy_dtype

__all__ = ["IVDEP", "LOOP_VARS", "CpuEmitter", "EmittedModule", "Lowering", "emit_module"]

Lowering = Callable[["CpuEmitter", Operation], None]

# Before the innermost loop of each elementwise loop nest. A buffer is never part of
# another (a value either is another's whole buffer, as a reshape or a cell is, or
# shares nothing with it), so element i of a result depends on element i of its
# operands only: no dependency between iterations. Saying so spares the compiler
# the runtime overlap checks and the scalar copy of each loop it would otherwise
# emit, which is about a tenth of the generated code.
IVDEP = "#pragma GCC ivdep"


def emit_module(module: ModuleOp, entry: str) -> EmittedModule:
    """Render `module` as C++ with `@entry` behind `lanterna_entry`."""
    from lanterna.backends.cpu_cpp.emitter_ops import CPU_OPS

    return CpuEmitter(module, CPU_OPS).emit(entry)


class CpuEmitter(CLikeEmitter):
    """The cpu backend's C++ emitter: the C-like core with the cpu's spellings."""

    backend: ClassVar[str] = "cpu"
    header: ClassVar[str | None] = "lanterna_cpu.h"
    loop_pragma: ClassVar[str | None] = IVDEP
    stack_check: ClassVar[str | None] = "LANTERNA_STACK_CHECK();"

    # --- the core's hooks ------------------------------------------------------------------

    def fail(self, message: str) -> str:
        return f"throw lanterna::RuntimeError({c_string(message)});"

    def recursive_closure(self, signature: str) -> str:
        return f"lanterna::recursive<{signature}>"

    def stack_type(self, elem: str) -> str:
        return f"lanterna::Stack<{elem}>"

    def result_buffer(self, op: Operation) -> str:
        from lanterna.backends.cpu_cpp.emitter_ops import result

        return result(self, op)[0]

    def emit_entry(self, entry: str) -> None:
        ft = self.funcs[entry].function_type
        ins, outs = list(ft.inputs.data), list(ft.outputs.data)
        self.taken = set()
        # This module's own record of its last call (generated modules share the arena).
        self.line("static lanterna::ArenaStats arena_stats_;")
        self.line()
        self.line(
            'extern "C" int lanterna_entry(void* const* inputs, void* const* outputs, '
            "char* err, size_t errlen) {"
        )
        self.depth += 1
        with self.scope("return lanterna::run_entry(err, errlen, [&] {", "});"):
            args = []
            for i, t in enumerate(ins):
                name = self.fresh(f"in{i}")
                self.line(f"{self.ctype(t)} {name} = static_cast<{self.ctype(t)}>(inputs[{i}]);")
                args.append(name)
            call = f"{self.fn_names[entry]}({', '.join(args)})"
            if not outs:
                self.line(f"{call};")
                self.line("(void)outputs;")
            else:
                buffers = ", ".join(
                    f"lanterna::Buffer{{inputs[{i}], {_nbytes(t)}}}" for i, t in enumerate(ins)
                )
                bufs = self.fresh("input_buffers")
                self.line(
                    f"const std::array<lanterna::Buffer, {len(ins)}> {bufs} = {{{{{buffers}}}}};"
                )
                self.line(
                    f"lanterna::Destinations destinations_({bufs}.data(), {len(ins)}, outputs);"
                )
                result = self.fresh("result")
                self.line(f"auto {result} = {call};")
                staged = []
                for i, t in enumerate(outs):
                    value = result if len(outs) == 1 else f"std::get<{i}>({result})"
                    name = self.fresh(f"out{i}")
                    n = _numel(t)
                    self.line(f"{self.ctype(t)} {name} = lanterna::stage({value}, {n}, {bufs});")
                    staged.append((name, n))
                for i, (name, n) in enumerate(staged):
                    self.line(f"lanterna::store(outputs[{i}], {name}, {n});")
            self.line("arena_stats_ = lanterna::arena().stats();")
        self.depth -= 1
        self.line("}")
        self.line()
        self.line('extern "C" void lanterna_arena_stats(uint64_t* out) {')
        self.line("    const lanterna::ArenaStats& s = arena_stats_;")
        self.line("    out[0] = s.requested; out[1] = s.reused; out[2] = s.fresh; out[3] = s.held;")
        self.line("}")


def _numel(t: Attribute) -> int:
    assert isinstance(t, TensorType)
    return math.prod(t.get_shape())


def _nbytes(t: Attribute) -> int:
    assert isinstance(t, TensorType)
    return _numel(t) * to_numpy_dtype(t.element_type).itemsize
