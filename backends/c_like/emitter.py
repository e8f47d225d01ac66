"""The C-like emitter core: IR -> C++-family source, shared by every C-like backend.

Input is IR after `lower-continuations` (and the backend's own passes): `func.func`s
holding `ln`, `ad`, `arith`, `scf`, `func` and `cont.lambda/apply/yield` ops. This
module knows what is the same in every C-like backend and nothing of any runtime:

* names: derived from SSA name hints, sanitized, unique, never a reserved word;
* the type map: a tensor is `const T*`, an `!ad.cell` is `T*`, a closure is a
  `std::function`, several results are a `std::tuple`, scalars are C scalars;
* statements, each op's preceded by a comment naming the op it comes from;
* the structural ops (`func.call`, `scf.if/for/while`, `cont.lambda/apply`,
  unrealized casts, `ln.checkpoint` inline) in `STRUCTURAL_OPS`;
* output streams: named lists of lines (`"head"` and `"host"` here; a CUDA emitter
  adds `"kernels"`), joined in the order the subclass declares in `streams`;
* the module skeleton: the head (a comment, the runtime header), forward
  declarations, every function the entry reaches, then the subclass's entry.

What differs between backends is a hook of `CLikeEmitter` (see the package docstring
for the list); the element-expression templates and the elementwise loop nests are
`elementwise.py`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from xdsl.dialects import builtin, func, scf
from xdsl.dialects.builtin import (
    DenseIntOrFPElementsAttr,
    Float32Type,
    Float64Type,
    IndexType,
    IntegerType,
    ModuleOp,
    TensorType,
)
from xdsl.ir import Attribute, Block, Operation, SSAValue
from xdsl.traits import IsTerminator
from xdsl.utils.exceptions import VerifyException

from lanterna.ir import ad, buf, cont, ln
from lanterna.ir.types import check_size, to_numpy_dtype

# A lowering writes the C of one op through the emitter it is given.
Lowering = Callable[[Any, Operation], None]

_RESERVED = (
    "alignas alignof and and_eq asm auto bitand bitor bool break case catch char char16_t "
    "char32_t class compl const constexpr const_cast continue decltype default delete do "
    "double dynamic_cast else enum explicit export extern false float for friend goto if "
    "inline int long mutable namespace new noexcept not not_eq nullptr operator or or_eq "
    "private protected public register reinterpret_cast return short signed sizeof static "
    "static_assert static_cast struct switch template this thread_local throw true try "
    "typedef typeid typename union unsigned using virtual void volatile wchar_t while xor "
    "xor_eq int8_t int16_t int32_t int64_t uint8_t uint16_t uint32_t uint64_t size_t std "
    "lanterna inputs outputs err errlen main NULL"
)
C_KEYWORDS = frozenset(_RESERVED.split())
# Loop counters of generated loops; SSA names never take them.
LOOP_VARS = tuple(f"i{d}_" for d in range(16)) + ("i_",)


@dataclass
class EmittedModule:
    """A rendered module: the source and the entry's tensor signature."""

    source: str
    inputs: list[tuple[tuple[int, ...], np.dtype]]
    outputs: list[tuple[tuple[int, ...], np.dtype]]


def sanitize(hint: str) -> str:
    """`hint` as a C identifier: other characters become `_`, a leading digit gets a `v`."""
    name = re.sub(r"\W", "_", hint)
    if not name or name[0].isdigit():
        name = "v" + name
    return name


def c_string(text: str) -> str:
    """`text` as a C string literal: printable ASCII as it is, every other byte
    of its UTF-8 (quotes, backslashes, newlines of a file name) as an octal escape,
    which, unlike `\\x`, cannot run into the characters after it."""
    chars = []
    for byte in text.encode():
        ch = chr(byte)
        chars.append(ch if 32 <= byte < 127 and ch not in '"\\?' else f"\\{byte:03o}")
    return '"' + "".join(chars) + '"'


class CLikeEmitter:
    """The C-like core; a backend subclasses it and supplies the hooks below."""

    # --- what a subclass supplies: data ---------------------------------------------------

    backend: ClassVar[str] = "c-like"  # named in every error message
    header: ClassVar[str | None] = None  # the runtime header the module includes
    # The output streams, in the order the module joins them. The core writes the
    # head comment and includes to "head", functions and the entry to "host".
    streams: ClassVar[tuple[str, ...]] = ("head", "host")
    function_qualifier: ClassVar[str] = "static"  # before each generated function
    loop_pragma: ClassVar[str | None] = None  # before the innermost elementwise loop
    stack_check: ClassVar[str | None] = None  # first statement of each function and closure

    def __init__(self, module: ModuleOp, ops: dict[type[Operation], Lowering]):
        self.module = module
        self.ops: dict[type[Operation], Lowering] = {**STRUCTURAL_OPS, **ops}
        self.funcs = {f.sym_name.data: f for f in module.ops if isinstance(f, func.FuncOp)}
        self.out: dict[str, list[str]] = {name: [] for name in self.streams}
        self.stream = "host"
        self.depth = 0
        self.names: dict[SSAValue, str] = {}
        self.taken: set[str] = set()
        self.global_names: set[str] = set(C_KEYWORDS) | set(LOOP_VARS)
        self.fn_names = {name: self._global_name("fn_" + sanitize(name)) for name in self.funcs}

    # --- what a subclass supplies: spellings ----------------------------------------------

    def fail(self, message: str) -> str:
        """A statement that stops the call with run-time error `message`."""
        raise NotImplementedError(f"{self.backend} backend has no spelling for a run-time error")

    def recursive_closure(self, signature: str) -> str:
        """The callable that makes a self-calling closure of `signature` (the result type,
        then the parameter types) from a lambda taking itself first, as in
        `<this>([=](const F& self, ...) -> R {...})`."""
        raise NotImplementedError(f"{self.backend} backend has no recursive closures")

    def stack_type(self, elem: str) -> str:
        """The C type of an `!ad.stack` of `elem`s."""
        raise NotImplementedError(f"{self.backend} backend has no stacks")

    def result_buffer(self, op: Operation) -> str:
        """Declare a fresh buffer for the tensor result of `op` (an elementwise loop
        writes it) and return its name."""
        raise NotImplementedError(f"{self.backend} backend cannot allocate '{op.name}'")

    def emit_entry(self, entry: str) -> None:
        """Write the function the host calls, which runs `@entry` (after the functions)."""
        raise NotImplementedError(f"{self.backend} backend has no entry point")

    # --- names ----------------------------------------------------------------------------

    def _global_name(self, base: str) -> str:
        name, n = base, 0
        while name in self.global_names:
            n += 1
            name = f"{base}_{n}"
        self.global_names.add(name)
        return name

    def fresh(self, hint: str) -> str:
        """A new local identifier based on `hint`, unique in the current function."""
        base = sanitize(hint)
        name, n = base, 0
        while name in self.taken or name in self.global_names:
            n += 1
            name = f"{base}_{n}"
        self.taken.add(name)
        return name

    def define(self, v: SSAValue, hint: str | None = None) -> str:
        """Name a value at its definition."""
        if hint is None:
            hint = v.name_hint
        if hint is None:
            # Unnamed values (`%0`) are named after their op: `%3 = ln.mul` -> `mul`.
            owner = v.owner
            hint = owner.name.split(".")[-1] if isinstance(owner, Operation) else "arg"
        name = self.fresh(hint)
        self.names[v] = name
        return name

    def ref(self, v: SSAValue) -> str:
        try:
            return self.names[v]
        except KeyError:
            raise NotImplementedError(
                f"{self.backend} backend: value %{v.name_hint or '?'} is used before it is emitted"
            ) from None

    # --- types ----------------------------------------------------------------------------

    def scalar_type(self, t: Attribute) -> str:
        if isinstance(t, Float32Type):
            return "float"
        if isinstance(t, Float64Type):
            return "double"
        if isinstance(t, IndexType):
            return "int64_t"
        if isinstance(t, IntegerType):
            width = t.width.data
            if width == 1:
                return "bool"
            if width in (32, 64):
                return f"int{width}_t"
        raise NotImplementedError(f"{self.backend} backend has no C type for {t}")

    def ctype(self, t: Attribute) -> str:
        if isinstance(t, TensorType):
            return f"const {self.scalar_type(t.element_type)}*"
        if isinstance(t, ad.CellType):
            assert isinstance(t.elem, TensorType)
            return f"{self.scalar_type(t.elem.element_type)}*"
        if isinstance(t, ad.StackType):
            return self.stack_type(self.ctype(t.elem))
        if isinstance(t, cont.ClosureType):
            params = ", ".join(self.ctype(a) for a in t.inputs.data)
            return f"std::function<{self.results_type(list(t.outputs.data))}({params})>"
        return self.scalar_type(t)

    def results_type(self, types: Sequence[Attribute]) -> str:
        if not types:
            return "void"
        if len(types) == 1:
            return self.ctype(types[0])
        return f"std::tuple<{', '.join(self.ctype(t) for t in types)}>"

    # --- output ---------------------------------------------------------------------------

    @property
    def lines(self) -> list[str]:
        """The current stream's lines (lowerings may insert into it)."""
        return self.out[self.stream]

    @contextmanager
    def to_stream(self, name: str) -> Iterator[None]:
        """Write to stream `name` (at depth 0) for the body, then back where it was."""
        if name not in self.out:
            raise NotImplementedError(f"{self.backend} backend has no output stream '{name}'")
        stream, depth = self.stream, self.depth
        self.stream, self.depth = name, 0
        try:
            yield
        finally:
            self.stream, self.depth = stream, depth

    def render(self) -> str:
        """The streams joined in their declared order."""
        return "".join(line + "\n" for name in self.streams for line in self.out[name])

    def line(self, text: str = "") -> None:
        self.lines.append("    " * self.depth + text if text else "")

    @contextmanager
    def scope(self, header: str, footer: str = "}") -> Iterator[None]:
        self.line(header)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            self.line(footer)

    def describe(self, op: Operation) -> str:
        """One line naming the op, its operands, properties and operand types."""
        lhs = ", ".join("%" + self.names.get(r, r.name_hint or "?") for r in op.results)
        text = f"{lhs} = {op.name}" if lhs else op.name
        if op.operands:
            text += " " + ", ".join(
                "%" + self.names.get(o, o.name_hint or "?") for o in op.operands
            )
        props = {
            k: v
            for k, v in op.properties.items()
            if not (k == "value" and isinstance(v, DenseIntOrFPElementsAttr))
        }
        if props:
            text += " {" + ", ".join(f"{k} = {v}" for k, v in props.items()) + "}"
        if op.operands:
            text += " : " + ", ".join(str(o.type) for o in op.operands)
        elif op.results:
            text += " : " + ", ".join(str(r.type) for r in op.results)
        text = text.replace("\n", " ")
        return text if len(text) <= 150 else text[:147] + "..."

    # --- ops and regions ------------------------------------------------------------------

    def emit_op(self, op: Operation) -> None:
        lower = self.ops.get(type(op))
        if lower is None:
            raise NotImplementedError(f"{self.backend} backend has no lowering for '{op.name}'")
        start, depth = len(self.lines), self.depth
        lower(self, op)
        # The comment goes after lowering so that it shows the names just given.
        self.lines.insert(start, "    " * depth + "// " + self.describe(op))
        for r in op.results:
            if not r.uses and r in self.names:
                self.line(f"(void){self.names[r]};")

    def emit_block(self, block: Block, on_exit: Callable[[Operation], None]) -> None:
        """Emit a block's ops; its terminator is handed to `on_exit`."""
        for op in block.ops:
            if op is block.last_op and op.has_trait(IsTerminator):
                self.line("// " + self.describe(op))
                on_exit(op)
            else:
                self.emit_op(op)

    def function_prologue(self) -> None:
        if self.stack_check:
            self.line(self.stack_check)

    def bind_args(self, args: Sequence[SSAValue], sources: Sequence[str]) -> None:
        """Declare block arguments as copies of `sources` (skipping unused ones)."""
        for a, src in zip(args, sources, strict=True):
            if a.uses:
                self.line(f"{self.ctype(a.type)} {self.define(a)} = {src};")

    def assign(self, targets: Sequence[str | None], values: Sequence[SSAValue]) -> None:
        for t, v in zip(targets, values, strict=True):
            if t is not None:
                self.line(f"{t} = {self.ref(v)};")

    def returns(self, values: Sequence[SSAValue]) -> None:
        if not values:
            self.line("return;")
        elif len(values) == 1:
            self.line(f"return {self.ref(values[0])};")
        else:
            self.line(f"return std::make_tuple({', '.join(self.ref(v) for v in values)});")

    def bind_call(self, results: Sequence[SSAValue], call: str) -> None:
        """`call` is a call expression returning `results` (void, one, or a tuple)."""
        if not results:
            self.line(f"{call};")
        elif len(results) == 1:
            r = results[0]
            self.line(f"{self.ctype(r.type)} {self.define(r)} = {call};")
        else:
            packed = self.fresh("results")
            self.line(f"auto {packed} = {call};")
            for i, r in enumerate(results):
                self.line(f"{self.ctype(r.type)} {self.define(r)} = std::get<{i}>({packed});")

    # --- the module -----------------------------------------------------------------------

    def reachable(self, entry: str) -> list[str]:
        """The functions `entry` calls, transitively, in module order."""
        seen = {entry}
        work = [entry]
        while work:
            f = self.funcs[work.pop()]
            for op in f.walk():
                if isinstance(op, func.CallOp):
                    callee = op.callee.string_value()
                    if callee not in self.funcs:
                        raise NotImplementedError(
                            f"{self.backend} backend: call to unknown function @{callee}"
                        )
                    if callee not in seen:
                        seen.add(callee)
                        work.append(callee)
        return [name for name in self.funcs if name in seen]

    def signature(self, name: str, params: Sequence[str] | None = None) -> str:
        f = self.funcs[name]
        ft = f.function_type
        types = [self.ctype(t) for t in ft.inputs.data]
        args = types if params is None else [f"{t} {p}" for t, p in zip(types, params, strict=True)]
        ret = self.results_type(list(ft.outputs.data))
        head = f"{self.function_qualifier} {ret}" if self.function_qualifier else ret
        return f"{head} {self.fn_names[name]}({', '.join(args)})"

    def emit_function(self, name: str) -> None:
        f = self.funcs[name]
        if not f.body.blocks:
            raise NotImplementedError(f"{self.backend} backend: @{name} has no body")
        self.taken = set()
        block = f.body.block
        params = [self.define(a) for a in block.args]
        with self.scope(self.signature(name, params) + " {"):
            self.function_prologue()
            self.emit_block(block, lambda term: self.returns(list(term.operands)))
        self.line()

    def emit_head(self, entry: str) -> None:
        with self.to_stream("head"):
            self.line(f"// Generated by lanterna's {self.backend} backend from @{entry}.")
            if self.header:
                self.line(f'#include "{self.header}"')
            self.line()

    def emit(self, entry: str) -> EmittedModule:
        if entry not in self.funcs:
            raise NotImplementedError(f"{self.backend} backend: no function @{entry} in the module")
        ft = self.funcs[entry].function_type
        inputs = [self.entry_tensor(entry, "argument", i, t) for i, t in enumerate(ft.inputs.data)]
        outputs = [self.entry_tensor(entry, "result", i, t) for i, t in enumerate(ft.outputs.data)]
        self.emit_head(entry)
        self.line("namespace {")
        self.line()
        names = self.reachable(entry)
        self.check_output_slots(entry, names)
        for name in names:
            self.line(self.signature(name) + ";")
        self.line()
        for name in names:
            self.emit_function(name)
        self.line("}  // namespace")
        self.line()
        self.emit_entry(entry)
        return EmittedModule(self.render(), inputs, outputs)

    def check_output_slots(self, entry: str, names: Sequence[str]) -> None:
        """Output slots (`{buf.output}`, placed by `plan-buffers`) are valid and
        only in the entry, whose results they are."""
        try:
            buf.verify_output_slots(self.module)
        except VerifyException as e:
            raise NotImplementedError(f"{self.backend} backend: {e}") from None
        for name in names:
            if name != entry and any(
                buf.output_slot(op) is not None for op in self.funcs[name].walk()
            ):
                raise NotImplementedError(
                    f"{self.backend} backend: @{name} has output slots but is not the entry"
                )

    def entry_tensor(
        self, entry: str, what: str, i: int, t: Attribute
    ) -> tuple[tuple[int, ...], np.dtype]:
        if not isinstance(t, TensorType):
            raise NotImplementedError(
                f"{self.backend} backend: @{entry} {what} #{i} has type {t}; the entry "
                "function takes and returns tensors only"
            )
        # A function whose tensors only pass through has no ln op to verify their size.
        check_size(f"@{entry}", f"{what} #{i}", t)
        return tuple(t.get_shape()), to_numpy_dtype(t.element_type)


# --- structural ops ------------------------------------------------------------------------


def _call(em: CLikeEmitter, op: Operation) -> None:
    assert isinstance(op, func.CallOp)
    callee = em.fn_names[op.callee.string_value()]
    em.bind_call(list(op.results), f"{callee}({', '.join(em.ref(a) for a in op.arguments)})")


def _apply(em: CLikeEmitter, op: Operation) -> None:
    assert isinstance(op, cont.ApplyOp)
    em.bind_call(list(op.res), f"{em.ref(op.fn)}({', '.join(em.ref(a) for a in op.args)})")


def _lambda(em: CLikeEmitter, op: Operation) -> None:
    assert isinstance(op, cont.LambdaOp)
    ct = op.closure_type
    fn_type = em.ctype(ct)
    ret = em.results_type(list(ct.outputs.data))
    name = em.define(op.res[0])
    block = op.body.block
    params = [f"{em.ctype(a.type)} {em.define(a)}" for a in op.params]
    if op.recursive:
        self_name = em.define(block.args[0])
        signature = ", ".join([ret, *(em.ctype(t) for t in ct.inputs.data)])
        header = (
            f"{fn_type} {name} = {em.recursive_closure(signature)}("
            f"[=](const {fn_type}& {self_name}{''.join(', ' + p for p in params)}) -> {ret} {{"
        )
        footer = "});"
    else:
        header = f"{fn_type} {name} = [=]({', '.join(params)}) -> {ret} {{"
        footer = "};"
    with em.scope(header, footer):
        em.function_prologue()
        em.emit_block(block, lambda term: em.returns(list(term.operands)))


def _if(em: CLikeEmitter, op: Operation) -> None:
    assert isinstance(op, scf.IfOp)
    targets: list[str | None] = []
    for r in op.results:
        name = em.define(r)
        em.line(f"{em.ctype(r.type)} {name}{{}};")
        targets.append(name if r.uses else None)

    def branch(term: Operation) -> None:
        em.assign(targets, list(term.operands))

    with em.scope(f"if ({em.ref(op.cond)}) {{"):
        em.emit_block(op.true_region.block, branch)
    if op.false_region.blocks and len(op.false_region.block.ops) > 0:
        em.lines[-1] = em.lines[-1] + " else {"
        em.depth += 1
        em.emit_block(op.false_region.block, branch)
        em.depth -= 1
        em.line("}")


def _inline(em: CLikeEmitter, op: Operation) -> None:
    """A region run once in place (`ln.checkpoint` outside differentiation)."""
    targets: list[str | None] = []
    for r in op.results:
        name = em.define(r)
        em.line(f"{em.ctype(r.type)} {name}{{}};")
        targets.append(name if r.uses else None)
    with em.scope("{"):
        em.emit_block(op.regions[0].block, lambda term: em.assign(targets, list(term.operands)))


def _for(em: CLikeEmitter, op: Operation) -> None:
    assert isinstance(op, scf.ForOp)
    carried = []
    for r, init in zip(op.results, op.iter_args, strict=True):
        name = em.define(r)
        em.line(f"{em.ctype(r.type)} {name} = {em.ref(init)};")
        carried.append(name)
    lb, ub, st = em.ref(op.lb), em.ref(op.ub), em.ref(op.step)
    em.line(f"if ({st} <= 0) {em.fail('scf.for: step must be positive')}")
    block = op.body.block
    iv = block.args[0]
    iv_name = em.define(iv)
    with em.scope(
        f"for ({em.ctype(iv.type)} {iv_name} = {lb}; {iv_name} < {ub}; {iv_name} += {st}) {{"
    ):
        em.bind_args(block.args[1:], carried)
        em.emit_block(block, lambda term: em.assign(carried, list(term.operands)))


def _while(em: CLikeEmitter, op: Operation) -> None:
    assert isinstance(op, scf.WhileOp)
    before, after = op.before_region.block, op.after_region.block
    state = []
    for a, init in zip(before.args, op.arguments, strict=True):
        name = em.fresh((a.name_hint or "state") + "_next")
        em.line(f"{em.ctype(a.type)} {name} = {em.ref(init)};")
        state.append(name)
    targets: list[str | None] = []
    for r in op.results:
        name = em.define(r)
        em.line(f"{em.ctype(r.type)} {name}{{}};")
        targets.append(name if r.uses else None)

    def condition(term: Operation) -> None:
        assert isinstance(term, scf.ConditionOp)
        with em.scope(f"if (!{em.ref(term.condition)}) {{"):
            em.assign(targets, list(term.args))
            em.line("break;")
        em.bind_args(after.args, [em.ref(a) for a in term.args])

    with em.scope("while (true) {"):
        em.bind_args(before.args, state)
        em.emit_block(before, condition)
        em.emit_block(after, lambda term: em.assign(state, list(term.operands)))


def _unrealized_cast(em: CLikeEmitter, op: Operation) -> None:
    for r, o in zip(op.results, op.operands, strict=True):
        em.line(f"{em.ctype(r.type)} {em.define(r)} = {em.ref(o)};")


STRUCTURAL_OPS: dict[type[Operation], Lowering] = {
    func.CallOp: _call,
    cont.ApplyOp: _apply,
    cont.LambdaOp: _lambda,
    scf.IfOp: _if,
    ln.CheckpointOp: _inline,
    scf.ForOp: _for,
    scf.WhileOp: _while,
    builtin.UnrealizedConversionCastOp: _unrealized_cast,
}
