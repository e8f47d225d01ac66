"""`reverse-ad`: reverse mode as a purely local rewrite into delimited continuations.

For `func=f`, adds a function `@<out>` (default `f_grad`) returning f's results
followed by the adjoints of the arguments in `argnums`. Its body is f's body
inside a `cont.reset`, with every differentiable op `%y = OP(%a, %b)` rewritten
on its own into

    %y, %y_bar = cont.shift %k : !cont.k<(T, !ad.cell<T>) -> (answer)> {
      %v = OP(%a, %b)                      // forward
      %c = ad.zero_like %v                 // its adjoint cell
      %ans = cont.resume %k(%v, %c)        // the rest: forward AND backward
      %g = ad.load %c                      // y's adjoint is now complete
      <OP's adjoint rule: ad.accum into %a_bar, %b_bar>
      cont.yield %ans
    }

and the result's cell seeded with 1 (or, with `seed=true`, with cotangents
passed as trailing arguments: a VJP) just before the reset yields.

Every float tensor value that depends on a differentiated argument is a pair
(value, cell). Structural ops only carry the pairs: `scf.if` yields value and
cell, `scf.for`/`scf.while` carry both as iteration arguments, and a called
function is differentiated into a version taking and returning pairs, so
`func.call` (recursion included) needs no rule. Nothing here looks beyond the
op it rewrites; the continuation carries the rest. `lower-continuations` then
removes the shifts and resets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from xdsl.builder import Builder, InsertPoint
from xdsl.context import Context
from xdsl.dialects import builtin, func, scf
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.traits import IsTerminator

from lanterna.errors import LanternaError
from lanterna.ir import ad, cont
from lanterna.ir.ln.adjoint import AdjointBuilder, MissingAdjointRule, is_differentiable_type
from lanterna.ir.ln.base import LnOp
from lanterna.ir.ln.checkpoint import CheckpointOp
from lanterna.ir.ln.elementwise import OnesOp
from lanterna.ir.ln.shape import ItemOp
from lanterna.ir.types import shape_of
from lanterna.passes.registry import register_pass


class ADError(LanternaError):
    """The function cannot be differentiated as asked."""


@register_pass
@dataclass(frozen=True)
class ReverseAD(ModulePass):
    """Reverse mode: rewrite each differentiable op into a cont.shift that runs the
    rest of the program, then accumulates the op's adjoints."""

    name = "reverse-ad"

    func: str = ""
    """The function to differentiate (default: the module's only function)."""
    argnums: tuple[int, ...] = (0,)
    """Which arguments to return adjoints for."""
    seed: bool = False
    """Take one cotangent per result as trailing arguments instead of seeding 1."""
    out: str = ""
    """Name of the new function (default: `<func>_grad`)."""

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        root = _find_function(op, self.func)
        name = self.out or f"{root.sym_name.data}_grad"
        _Differentiator(op, root, tuple(self.argnums), self.seed, name).run()


def _find_function(module: builtin.ModuleOp, name: str) -> func.FuncOp:
    funcs = [o for o in module.ops if isinstance(o, func.FuncOp)]
    if not name:
        if len(funcs) != 1:
            raise ADError(
                f"reverse-ad: the module has {len(funcs)} functions; name one with func=..."
            )
        return funcs[0]
    for f in funcs:
        if f.sym_name.data == name:
            return f
    raise ADError(f"reverse-ad: no function @{name} in the module")


@dataclass
class _Scope:
    """Value and cell maps for one function being rewritten."""

    values: dict[SSAValue, SSAValue] = field(default_factory=dict)
    cells: dict[SSAValue, SSAValue] = field(default_factory=dict)

    def v(self, old: SSAValue) -> SSAValue:
        return self.values.get(old, old)


class _Differentiator:
    def __init__(
        self,
        module: builtin.ModuleOp,
        root: func.FuncOp,
        argnums: tuple[int, ...],
        seed: bool,
        out: str,
    ):
        self.module = module
        self.root = root
        self.argnums = argnums
        self.seed = seed
        self.out = out
        self.answer: list[Attribute] = list(root.function_type.outputs.data)
        self.root_answer = self.answer
        self.derived: dict[tuple[str, tuple[bool, ...], tuple[Attribute, ...]], func.FuncOp] = {}

    # --- the root function -------------------------------------------------------------

    def run(self) -> None:
        root, fname = self.root, self.root.sym_name.data
        ins = list(root.function_type.inputs.data)
        outs = self.answer
        for i in self.argnums:
            if not -len(ins) <= i < len(ins):
                raise ADError(
                    f"reverse-ad of @{fname}: argnum {i} is out of range for {len(ins)} arguments"
                )
            if not is_differentiable_type(ins[i]):
                raise ADError(
                    f"reverse-ad of @{fname}: argument {i} has type {ins[i]}; only float "
                    "tensors can be differentiated"
                )
        argnums = [i % len(ins) for i in self.argnums]
        if not self.seed:
            if len(outs) != 1 or not is_differentiable_type(outs[0]) or shape_of(outs[0]) != ():
                shown = ", ".join(map(str, outs)) or "nothing"
                raise ADError(
                    f"reverse-ad of @{fname}: the function must return one scalar float "
                    f"tensor (a loss), but it returns {shown}"
                )
        seeds = [t for t in outs if is_differentiable_type(t)] if self.seed else []
        grads = [ins[i] for i in argnums]
        if any(o.sym_name.data == self.out for o in self.module.ops if isinstance(o, func.FuncOp)):
            raise ADError(f"reverse-ad: a function @{self.out} already exists")

        entry = Block(arg_types=[*ins, *seeds])
        b = Builder(InsertPoint.at_end(entry))
        scope = _Scope()
        src = root.body.block
        for old, new in zip(src.args, entry.args):
            scope.values[old] = new
            new.name_hint = old.name_hint
        arg_cells = {}
        for i in argnums:
            cell = b.insert(ad.ZeroLikeOp(entry.args[i])).cell
            cell.name_hint = _bar(src.args[i])
            scope.cells[src.args[i]] = cell
            arg_cells[i] = cell
        seed_args = entry.args[len(ins) :]

        body = Block()
        reset = b.insert(cont.ResetOp(outs, body))

        def finish(bb: Builder, values: Sequence[SSAValue], sc: _Scope) -> None:
            ones: list[SSAValue] = list(seed_args)
            for old in values:
                if not is_differentiable_type(old.type):
                    continue
                s = ones.pop(0) if self.seed else bb.insert(OnesOp(result_type=old.type)).result
                cell = sc.cells.get(old)
                if cell is not None:
                    bb.insert(ad.AccumOp(cell, s))
            bb.insert(cont.YieldOp(*(sc.v(x) for x in values)))

        self.rewrite_block(src, body, scope, finish)
        loads = [b.insert(ad.LoadOp(arg_cells[i])).value for i in argnums]
        b.insert(func.ReturnOp(*reset.res, *loads))
        new = func.FuncOp(self.out, ([*ins, *seeds], [*outs, *grads]), Region(entry))
        self.module.body.block.insert_op_after(new, root)

    # --- blocks ----------------------------------------------------------------------------

    def rewrite_block(
        self,
        src: Block,
        dst: Block,
        scope: _Scope,
        terminator: Callable[[Builder, Sequence[SSAValue], _Scope], None],
    ) -> None:
        """Rewrite src's ops into dst; `terminator` replaces src's terminator."""
        b = Builder(InsertPoint.at_end(dst))
        for op in src.ops:
            if op is src.last_op and op.has_trait(IsTerminator):
                terminator(b, list(op.operands), scope)
            else:
                self.rewrite_op(op, b, scope)

    def rewrite_op(self, op: Operation, b: Builder, scope: _Scope) -> None:
        if isinstance(op, scf.IfOp):
            return self.rewrite_if(op, b, scope)
        if isinstance(op, scf.ForOp):
            return self.rewrite_for(op, b, scope)
        if isinstance(op, scf.WhileOp):
            return self.rewrite_while(op, b, scope)
        if isinstance(op, func.CallOp):
            return self.rewrite_call(op, b, scope)
        if isinstance(op, CheckpointOp):
            return self.rewrite_checkpoint(op, b, scope)
        if op.dialect_name() in ("cont", "ad"):
            raise ADError(
                f"reverse-ad: '{op.name}' in the input; differentiating IR that already "
                "contains continuations or adjoint cells is not supported"
            )
        if op.regions:
            raise ADError(f"reverse-ad: no rule to carry adjoints through '{op.name}'")
        if isinstance(op, ItemOp) and op.operands[0] in scope.cells:
            raise ADError(
                "reverse-ad: 'ln.item' of a differentiated float tensor would silently stop "
                "the gradient (scalars carry no adjoint); keep the value a rank-0 tensor"
            )
        if self.is_differentiable(op, scope):
            return self.emit_shift(op, b, scope)
        new = op.clone(value_mapper=dict(scope.values))
        b.insert(new)
        for old, nv in zip(op.results, new.results):
            scope.values[old] = nv

    def is_differentiable(self, op: Operation, scope: _Scope) -> bool:
        return (
            isinstance(op, LnOp)
            and is_differentiable_type(op.result.type)
            and any(o in scope.cells for o in op.operands)
        )

    # --- the local rewrite -------------------------------------------------------------

    def emit_shift(self, op: Operation, b: Builder, scope: _Scope) -> None:
        assert isinstance(op, LnOp)
        t = op.result.type
        kt = cont.ContinuationType([t, ad.CellType(t)], self.answer)
        body = Block(arg_types=[kt])
        body.args[0].name_hint = "k"
        shift = b.insert(cont.ShiftOp(kt, body))
        inner = Builder(InsertPoint.at_end(body))
        fwd = op.clone(value_mapper=dict(scope.values))
        v = inner.insert(fwd).results[0]
        c = inner.insert(ad.ZeroLikeOp(v)).cell
        ans = inner.insert(cont.ResumeOp(body.args[0], [v, c])).res
        g = inner.insert(ad.LoadOp(c)).value
        olds = list(op.operands)

        def accumulate(i: int, contribution: SSAValue) -> None:
            inner.insert(ad.AccumOp(scope.cells[olds[i]], contribution))

        def wants(i: int) -> bool:
            return olds[i] in scope.cells

        ab = AdjointBuilder(inner, list(fwd.operands), v, g, accumulate, wants)
        try:
            op.adjoint(ab)
        except MissingAdjointRule as e:
            raise ADError(f"reverse-ad: {e}") from None
        inner.insert(cont.YieldOp(*ans))
        y, ybar = shift.res
        y.name_hint = op.result.name_hint
        ybar.name_hint = _bar(op.result)
        scope.values[op.result] = y
        scope.cells[op.result] = ybar

    # --- pairs through structure ---------------------------------------------------------

    def cell_of(self, old: SSAValue, b: Builder, scope: _Scope) -> SSAValue:
        """The cell of a differentiable value, a fresh zero cell if it has none."""
        cell = scope.cells.get(old)
        if cell is None:
            cell = b.insert(ad.ZeroLikeOp(scope.v(old))).cell
        return cell

    def pairs(self, olds: Sequence[SSAValue], b: Builder, scope: _Scope) -> list[SSAValue]:
        """Values followed, for each differentiable one, by its cell."""
        out: list[SSAValue] = []
        for o in olds:
            out.append(scope.v(o))
            if is_differentiable_type(o.type):
                out.append(self.cell_of(o, b, scope))
        return out

    @staticmethod
    def pair_types(types: Sequence[Attribute]) -> list[Attribute]:
        out: list[Attribute] = []
        for t in types:
            out.append(t)
            if is_differentiable_type(t):
                out.append(ad.CellType(t))
        return out

    @staticmethod
    def unpair(olds: Sequence[SSAValue], news: Sequence[SSAValue], scope: _Scope) -> None:
        """Bind old values to new (value, cell) sequences from `pairs`."""
        it = iter(news)
        for o in olds:
            nv = next(it)
            nv.name_hint = o.name_hint
            scope.values[o] = nv
            if is_differentiable_type(o.type):
                cell = next(it)
                cell.name_hint = _bar(o)
                scope.cells[o] = cell

    def _yield_pairs(
        self, cls: type[Operation]
    ) -> Callable[[Builder, Sequence[SSAValue], _Scope], None]:
        def term(b: Builder, values: Sequence[SSAValue], scope: _Scope) -> None:
            b.insert(cls(*self.pairs(values, b, scope)))

        return term

    def rewrite_if(self, op: scf.IfOp, b: Builder, scope: _Scope) -> None:
        types = self.pair_types([r.type for r in op.output])
        then_block = Block()
        self.rewrite_block(op.true_region.block, then_block, scope, self._yield_pairs(scf.YieldOp))
        regions = [Region(then_block)]
        if op.false_region.blocks:
            else_block = Block()
            self.rewrite_block(
                op.false_region.block, else_block, scope, self._yield_pairs(scf.YieldOp)
            )
            regions.append(Region(else_block))
        else:
            regions.append(Region())
        new = b.insert(scf.IfOp(scope.v(op.cond), types, *regions))
        self.unpair(list(op.output), list(new.output), scope)

    def rewrite_for(self, op: scf.ForOp, b: Builder, scope: _Scope) -> None:
        inits = self.pairs(list(op.iter_args), b, scope)
        src = op.body.block
        body = Block(arg_types=[src.args[0].type, *self.pair_types([a.type for a in src.args[1:]])])
        scope.values[src.args[0]] = body.args[0]
        body.args[0].name_hint = src.args[0].name_hint
        self.unpair(list(src.args[1:]), list(body.args[1:]), scope)
        self.rewrite_block(src, body, scope, self._yield_pairs(scf.YieldOp))
        new = b.insert(
            scf.ForOp(scope.v(op.lb), scope.v(op.ub), scope.v(op.step), inits, Region(body))
        )
        self.unpair(list(op.res), list(new.res), scope)

    def rewrite_while(self, op: scf.WhileOp, b: Builder, scope: _Scope) -> None:
        inits = self.pairs(list(op.arguments), b, scope)
        before_src, after_src = op.before_region.block, op.after_region.block
        before = Block(arg_types=self.pair_types([a.type for a in before_src.args]))
        self.unpair(list(before_src.args), list(before.args), scope)

        def condition(bb: Builder, values: Sequence[SSAValue], sc: _Scope) -> None:
            cond, *rest = values
            bb.insert(scf.ConditionOp(sc.v(cond), *self.pairs(rest, bb, sc)))

        self.rewrite_block(before_src, before, scope, condition)
        after = Block(arg_types=self.pair_types([a.type for a in after_src.args]))
        self.unpair(list(after_src.args), list(after.args), scope)
        self.rewrite_block(after_src, after, scope, self._yield_pairs(scf.YieldOp))
        result_types = self.pair_types([r.type for r in op.res])
        new = b.insert(scf.WhileOp(inits, result_types, Region(before), Region(after)))
        self.unpair(list(op.res), list(new.res), scope)

    def rewrite_checkpoint(self, op: CheckpointOp, b: Builder, scope: _Scope) -> None:
        """A checkpointed region is one primitive: forward, the body run plainly;
        backward, the body run again, differentiated, in a reset of its own whose
        results' adjoints are seeded from the continuation's cells. Nothing the
        body computes is kept for the backward pass, only what it reads."""
        src = op.body.block
        reads = cont.free_operands(src.ops)
        if not any(v in scope.cells for v in reads):
            new = b.insert(op.clone(value_mapper=dict(scope.values)))
            for old, nv in zip(op.res, new.res):
                scope.values[old] = nv
            return
        outs = list(op.res)
        kt = cont.ContinuationType(self.pair_types([r.type for r in outs]), self.answer)
        body = Block(arg_types=[kt])
        body.args[0].name_hint = "k"
        shift = b.insert(cont.ShiftOp(kt, body))
        inner = Builder(InsertPoint.at_end(body))
        primal = dict(scope.values)
        for o in list(src.ops)[:-1]:
            new = inner.insert(o.clone(value_mapper=primal))
            primal.update(zip(o.results, new.results))
        term = src.last_op
        assert term is not None
        args: list[SSAValue] = []
        seeds: list[SSAValue] = []
        for old in term.operands:
            v = primal.get(old, old)
            args.append(v)
            if is_differentiable_type(old.type):
                cell = inner.insert(ad.ZeroLikeOp(v)).cell
                args.append(cell)
                seeds.append(cell)
        ans = inner.insert(cont.ResumeOp(body.args[0], args)).res

        def seed(bb: Builder, values: Sequence[SSAValue], sc: _Scope) -> None:
            it = iter(seeds)
            for old in values:
                if is_differentiable_type(old.type):
                    cell, target = next(it), sc.cells.get(old)
                    if target is not None:
                        bb.insert(ad.AccumOp(target, bb.insert(ad.LoadOp(cell)).value))
            bb.insert(cont.YieldOp())

        # The recomputation delimits its own continuations, with no answer.
        again = Block()
        inner.insert(cont.ResetOp([], again))
        outer_answer, self.answer = self.answer, []
        try:
            self.rewrite_block(src, again, _Scope(dict(scope.values), dict(scope.cells)), seed)
        finally:
            self.answer = outer_answer
        inner.insert(cont.YieldOp(*ans))
        self.unpair(outs, list(shift.res), scope)

    def rewrite_call(self, op: func.CallOp, b: Builder, scope: _Scope) -> None:
        active = tuple(a in scope.cells for a in op.arguments)
        if not any(active):
            new = b.insert(op.clone(value_mapper=dict(scope.values)))
            for old, nv in zip(op.res, new.res):
                scope.values[old] = nv
            return
        callee = self.derive(op.callee.string_value(), active)
        args: list[SSAValue] = []
        for a, has_cell in zip(op.arguments, active):
            args.append(scope.v(a))
            if has_cell:
                args.append(scope.cells[a])
        new = b.insert(
            func.CallOp(callee.sym_name.data, args, list(callee.function_type.outputs.data))
        )
        self.unpair(list(op.res), list(new.res), scope)

    def derive(self, name: str, active: tuple[bool, ...]) -> func.FuncOp:
        """The differentiated version of a callee for one activity pattern: the
        arguments that carry adjoints at the call come with their cells, the others
        (a frozen embedding table, indices) alone -- no zero cells for them. Results
        are returned as (value, cell) pairs."""
        key = (name, active, tuple(self.answer))
        found = self.derived.get(key)
        if found is not None:
            return found
        src_fn = _find_function(self.module, name)
        ins = list(src_fn.function_type.inputs.data)
        outs = list(src_fn.function_type.outputs.data)
        in_types: list[Attribute] = []
        for t, has_cell in zip(ins, active):
            in_types.append(t)
            if has_cell:
                in_types.append(ad.CellType(t))
        entry = Block(arg_types=in_types)
        # Named by which float arguments are active, when not all of them are.
        floats = [x for x, t in zip(active, ins) if is_differentiable_type(t)]
        suffix = "" if all(floats) else "_" + "".join("1" if x else "0" for x in floats)
        if self.answer != self.root_answer:
            suffix += "_recompute"  # called from a checkpoint's backward pass
        new_fn = func.FuncOp(
            f"{self.out}__{name}{suffix}", (in_types, self.pair_types(outs)), Region(entry)
        )
        # Registered before its body is built, so recursive calls find it.
        self.derived[key] = new_fn
        scope = _Scope()
        it = iter(entry.args)
        for old, has_cell in zip(src_fn.body.block.args, active):
            nv = next(it)
            nv.name_hint = old.name_hint
            scope.values[old] = nv
            if has_cell:
                cell = next(it)
                cell.name_hint = _bar(old)
                scope.cells[old] = cell
        self.rewrite_block(src_fn.body.block, entry, scope, self._yield_pairs(func.ReturnOp))
        self.module.body.block.add_op(new_fn)
        return new_fn


def _bar(v: SSAValue) -> str | None:
    return f"{v.name_hint}_bar" if v.name_hint else None
