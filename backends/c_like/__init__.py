"""The C-like layer every C-family backend renders through; how to add a backend.

A backend that emits C, C++ or CUDA is a subclass of `CLikeEmitter` (`emitter.py`)
plus an op table of its kernels, not a copy of another backend. The core does what
is the same everywhere:

* names derived from SSA name hints (sanitized, unique, never a reserved word), the
  C type map, each op's statements under a comment naming the op;
* the structural ops (`STRUCTURAL_OPS`): functions and calls, `scf.if/for/while`,
  `cont.lambda/apply` closures, unrealized casts, `ln.checkpoint` inline;
* the elementwise ops and `ln.fused` (`elementwise.ELEMENT_OPS`): one expression
  template per op over `runtime/lanterna_scalar.h`, one loop-nest renderer (a
  standalone op is a one-op fused region), static broadcast indices;
* the module skeleton in named output streams joined in a declared order.

A subclass supplies, as class data:

* `backend`: its name, for error messages ("cuda backend has no lowering for ...");
* `header`: the runtime header the module includes (`"lanterna_cpu.h"`); that
  header includes `lanterna_scalar.h` (defining `LANTERNA_SCALAR_ERROR` first if
  integer division by zero should raise its own error);
* `streams`: the output streams in order; the core writes `"head"` (comment and
  include) and `"host"` (functions, entry). A device backend adds one, e.g.
  `("head", "kernels", "host")`, and writes a kernel with
  `with em.to_stream("kernels"): ...` from a lowering;
* `function_qualifier` (`"static"`), `loop_pragma` (`"#pragma GCC ivdep"` on cpu,
  none by default), `stack_check` (the first statement of every function and
  closure, none by default);

and as methods (the core raises `NotImplementedError` naming the backend when one
is needed and missing):

* `result_buffer(op)`: declare the buffer an elementwise loop writes, return its name;
* `fail(message)`: a statement raising a run-time error (`scf.for` with step <= 0);
* `recursive_closure(signature)`, `stack_type(elem)`: self-calling closures and
  `!ad.stack`, when its programs have them;
* `emit_entry(entry)`: the function the host calls (argument marshalling, error
  codes); `begin_function(f, entry)` and `end_block(block, marks)` are the points
  where it may keep its own books (the cpu backend places buffer releases there);
* its op table, `{op class: lowering(emitter, op)}`, passed to the constructor with
  `ELEMENT_OPS` included (or entries of its own for the ops it lowers differently:
  a CUDA backend reuses `elementwise.loop_indices` and `element_statements` inside
  a kernel). An op without a lowering fails naming the op and the backend.

Then `Emitter(module, OPS).emit(entry)` returns the source and the entry's tensor
signature (`EmittedModule`); compiling it is the backend's driver. The cpu backend
(`backends/cpu_cpp/emitter.py`, `emitter_ops.py`) is the worked example.
"""

from __future__ import annotations

from pathlib import Path

# `lanterna_scalar.h`: the portable element functions every C-like runtime includes.
RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"
