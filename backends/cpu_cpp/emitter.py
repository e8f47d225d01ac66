"""IR -> C++17 source for the cpu backend (the render step; compiling is `driver.py`).

`CpuEmitter` is the cpu subclass of the C-like core (`backends/c_like`): the core
names values, maps types, writes the structural ops and the elementwise loops; this
module supplies the cpu's spellings (the `lanterna_cpu.h` header, arena allocation,
`#pragma GCC ivdep`, the stack check, recursive closures, run-time errors), the
entry function behind

    extern "C" int lanterna_entry(void* const* inputs, void* const* outputs,
                                  char* err, size_t errlen);

and the buffer bookkeeping (which buffer is released when, which result is written
straight into an output). `emitter_ops.CPU_OPS` is its op table: the core's
elementwise lowerings plus the cpu kernels of `runtime/lanterna_cpu.h`.

Values: a tensor is a `const T*` into the per-call arena (immutable once made),
an `!ad.cell` is a `T*` (mutated in place by `ad.accum`), a closure is a
`std::function`, and scalars are C++ scalars.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any, ClassVar

from xdsl.dialects import builtin, func, scf
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import Attribute, Block, Operation, SSAValue
from xdsl.traits import IsTerminator

from lanterna.backends.c_like.emitter import (
    LOOP_VARS,
    CLikeEmitter,
    EmittedModule,
    c_string,
)
from lanterna.ir import ad, cont
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

    def __init__(self, module: ModuleOp, ops: dict[type[Operation], Lowering]):
        super().__init__(module, ops)
        # Buffer reuse: values whose buffer their op allocated, and values that
        # are another value's buffer under a new name.
        self.reuse = os.environ.get("LANTERNA_CPU_REUSE", "1") != "0"
        self.owned: set[SSAValue] = set()
        self.done: set[Operation] = set()  # ops another op's lowering already covered
        self.aliased_by: dict[SSAValue, list[SSAValue]] = {}
        # Facts about the whole module that a lowering computes once, by its own key.
        self.facts: dict[str, Any] = {}
        # Values the entry function returns, made in its body, by output index: their
        # op writes them straight into the caller's output buffer (`lanterna::output`).
        self.destinations: dict[SSAValue, int] = {}

    # --- buffers ----------------------------------------------------------------------------

    def owns(self, v: SSAValue) -> None:
        """`v`'s buffer was allocated by its op, for it alone."""
        self.owned.add(v)

    def aliases(self, v: SSAValue, src: SSAValue) -> None:
        """`v` is `src`'s buffer (a reshape): `src` lives as long as `v` does."""
        self.aliased_by.setdefault(src, []).append(v)

    def release_after_last_use(self, block: Block, marks: list[tuple[Operation, int]]) -> None:
        """Insert `lanterna::release` of each buffer the block's ops allocated, after
        the op of this block holding its last use, when nothing can see the buffer
        later: no use passes it on (a yield, a return, a call, a closure capture, a
        loop's initial value, a stack) and every use is in this block or in regions
        of its ops. The arena then hands the buffer to the next request of its size."""
        position = {op: i for i, (op, _) in enumerate(marks)}
        releases: dict[int, list[SSAValue]] = {}
        for i, (op, _) in enumerate(marks):
            for r in op.results:
                if r not in self.owned:
                    continue
                last = self._last_use(r, block, position, i)
                if last is not None:
                    releases.setdefault(last, []).append(r)
        indent = "    " * self.depth
        for i in sorted(releases, reverse=True):
            at = marks[i][1]
            lines = [
                f"{indent}lanterna::release({self.names[r]}, {_buffer_bytes(r.type)});"
                for r in releases[i]
            ]
            self.lines[at:at] = lines

    def _last_use(
        self, v: SSAValue, block: Block, position: dict[Operation, int], start: int
    ) -> int | None:
        last = start
        family, seen = [v], {v}
        while family:
            value = family.pop()
            for alias in self.aliased_by.get(value, []):
                if alias not in seen:
                    seen.add(alias)
                    family.append(alias)
            for use in value.uses:
                user = use.operation
                if user.has_trait(IsTerminator) or isinstance(user, _PASSES_ON):
                    return None
                while user.parent_block() is not block:
                    parent = user.parent_op()
                    if parent is None or isinstance(parent, cont.LambdaOp):
                        return None
                    user = parent
                at = position.get(user)
                if at is None:
                    return None
                last = max(last, at)
        return last

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

    def begin_function(self, f: func.FuncOp, entry: bool) -> None:
        self.destinations = self._destinations(f) if entry else {}

    def end_block(self, block: Block, marks: list[tuple[Operation, int]]) -> None:
        """Before a block's terminator: release the buffers that die in the block."""
        if self.reuse:
            self.release_after_last_use(block, marks)

    def _destinations(self, f: func.FuncOp) -> dict[SSAValue, int]:
        """The entry's results its body makes, each returned once, by output index,
        unless something in the module calls the entry (a second activation would
        write into the same outputs)."""
        name = f.sym_name.data
        for op in self.module.walk():
            if isinstance(op, func.CallOp) and op.callee.string_value() == name:
                return {}
        ret = f.body.block.last_op
        if not isinstance(ret, func.ReturnOp):
            return {}
        values = list(ret.operands)
        return {
            v: j
            for j, v in enumerate(values)
            if values.count(v) == 1
            and isinstance(v.owner, Operation)
            and v.owner.parent_block() is f.body.block
        }

    def emit_entry(self, entry: str) -> None:
        self.destinations = {}
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


# Ops that hand an operand's buffer on to something that outlives them.
_PASSES_ON = (
    func.CallOp,
    cont.ApplyOp,
    cont.LambdaOp,
    scf.ForOp,
    scf.WhileOp,
    ad.PushOp,
    builtin.UnrealizedConversionCastOp,
)


def _buffer_bytes(t: Attribute) -> int:
    if isinstance(t, ad.CellType):
        t = t.elem
    return _nbytes(t)


def _numel(t: Attribute) -> int:
    assert isinstance(t, TensorType)
    return math.prod(t.get_shape())


def _nbytes(t: Attribute) -> int:
    assert isinstance(t, TensorType)
    return _numel(t) * to_numpy_dtype(t.element_type).itemsize
