"""`reverse-loops`: a differentiated `scf.for` becomes a forward loop and a backward loop.

After `reverse-ad`, a loop whose body shifts is, operationally, a chain of
nested callbacks: iteration i runs its forward part, resumes the rest of the
program (iterations i+1.. and everything after the loop), then runs its
adjoint part. Lowered as such (`lower-continuations` turns the loop into a
recursive closure) the stack grows with the trip count. This pass runs between
the two and turns such a loop into one `cont.shift` -- the loop becomes a
single primitive, like any op:

    %r, %r_bar = cont.shift %k {
      %s = ad.stack : T                        // one per value the adjoints need
      %f = scf.for %i = %lb to %ub step %st iter_args(%x = %x0) {
        <forward parts of the body's shifts, in order>
        ad.push %s, %v                         // what the backward part reads
        scf.yield %x'
      }
      %c = ad.zero_cell : T                    // the cells of the loop's results
      %ans = cont.resume %k(%f, %c)            // the rest of the program
      %d = scf.for %i = %lb to %ub step %st iter_args(%d = %c) {
        %v = ad.pop %s
        %e = ad.zero_cell : T                  // adjoint of this iteration's input
        <adjoint parts of the body's shifts, in reverse order>
        scf.yield %e
      }
      ad.accum %x0_bar, ad.load %d             // into the cell of the initial value
      cont.yield %ans
    }

The forward loop carries values only. Cells are not saved: a cell made in an
iteration is made afresh at the start of its backward iteration (all of its
contributions come from that iteration's adjoint part or, for a carried
value, from the next iteration's, which the backward loop carries), so the
stacks hold only forward values the adjoint rules read. Loops are rewritten
innermost first, so a nested loop is already one shift when its parent is
rewritten, and the parent's stacks hold the inner loop's stacks.

A loop is left to `lower-continuations` (a recursive closure) when its body is
not a straight chain of one-shot shifts and plain ops: a branch or an
`scf.while` that shifts, a call to a function that shifts, or a cell passed
through an op this pass does not know. `scf.while` loops are not rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.builder import Builder, InsertPoint
from xdsl.context import Context
from xdsl.dialects import builtin, func, scf
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass

from lanterna.ir import ad, cont
from lanterna.passes.registry import register_pass


@register_pass
@dataclass(frozen=True)
class ReverseLoops(ModulePass):
    """Turn each differentiated scf.for into a forward loop that saves what the
    adjoints need and a backward loop, instead of a chain of callbacks."""

    name = "reverse-loops"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        shifting = _shifting_functions(op)
        loops = [o for o in op.walk() if isinstance(o, scf.ForOp)]
        # Pre-order reversed: inner loops before the loops that hold them.
        for loop in reversed(loops):
            plan = _analyze(loop, shifting)
            if plan is not None:
                _rewrite(loop, plan)


# --- analysis -----------------------------------------------------------------------------


def _shifting_functions(module: builtin.ModuleOp) -> set[str]:
    """Functions that shift outside a reset of their own, directly or by a call."""
    funcs = {f.sym_name.data: f for f in module.ops if isinstance(f, func.FuncOp)}
    out: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, f in funcs.items():
            if name not in out and any(
                _shifts_here(o, out) for body in f.regions for b in body.blocks for o in b.ops
            ):
                out.add(name)
                changed = True
    return out


def _shifts_here(op: Operation, shifting: set[str]) -> bool:
    return isinstance(op, cont.ShiftOp) or (
        isinstance(op, func.CallOp) and op.callee.string_value() in shifting
    )


def _shifts(op: Operation, shifting: set[str]) -> bool:
    """Whether op or anything in it (outside nested resets) shifts; a reset
    delimits its own shifts."""
    if isinstance(op, cont.ResetOp):
        return False
    return _shifts_here(op, shifting) or any(
        _shifts_here(o, shifting) for o in cont.walk_outside_resets(op)
    )


def _is_cell(v: SSAValue) -> bool:
    return isinstance(v.type, ad.CellType)


@dataclass
class _Shift:
    op: cont.ShiftOp
    resume: cont.ResumeOp
    pre: list[Operation]
    post: list[Operation]


@dataclass
class _Plan:
    answer: list[Attribute]
    steps: list[Operation | _Shift]  # the body's ops, shifts split into their parts
    # Cells made in an iteration (in order), and each shift result's resume argument.
    made: dict[SSAValue, None] = field(default_factory=dict)
    alias: dict[SSAValue, SSAValue] = field(default_factory=dict)


def _one_shot(shift: cont.ShiftOp) -> _Shift | None:
    """The shift as (forward part, resume, adjoint part) when its continuation is
    resumed exactly once, directly in its body, and the body yields the answer."""
    body = shift.body.block
    k = shift.k
    uses = list(k.uses)
    if len(uses) != 1:
        return None
    resume = uses[0].operation
    if not isinstance(resume, cont.ResumeOp) or resume.parent_block() is not body:
        return None
    term = body.last_op
    if not isinstance(term, cont.YieldOp) or list(term.values) != list(resume.res):
        return None
    ops = list(body.ops)[:-1]
    at = ops.index(resume)
    pre, post = ops[:at], ops[at + 1 :]
    answers = set(resume.res)
    for p in post:
        if any(o in answers for inner in p.walk() for o in inner.operands):
            return None
    return _Shift(shift, resume, pre, post)


def _forward_op_ok(op: Operation, plan: _Plan) -> bool:
    """A forward op either makes a cell (it moves to the backward part) or does
    not touch cells at all."""
    if isinstance(op, ad.ZeroLikeOp | ad.ZeroCellOp):
        plan.made[op.results[0]] = None
        return True
    return not any(_is_cell(v) for inner in op.walk() for v in [*inner.operands, *inner.results])


def _analyze(loop: scf.ForOp, shifting: set[str]) -> _Plan | None:
    body = loop.body.block
    ops = list(body.ops)
    term = ops.pop()
    if not isinstance(term, scf.YieldOp) or not any(_shifts(o, shifting) for o in ops):
        return None
    plan = _Plan(answer=[], steps=[])
    for op in ops:
        if not isinstance(op, cont.ShiftOp):
            if _shifts(op, shifting) or not _forward_op_ok(op, plan):
                return None
            plan.steps.append(op)
            continue
        parts = _one_shot(op)
        if parts is None:
            return None
        if any(_shifts(p, shifting) for p in [*parts.pre, *parts.post]):
            return None
        if not all(_forward_op_ok(p, plan) for p in parts.pre):
            return None
        for r, a in zip(op.res, parts.resume.args):
            if _is_cell(r) and a not in plan.made:
                return None
            plan.alias[r] = a
        plan.answer = list(op.k_type.outputs.data)
        plan.steps.append(parts)
    # The cells the yield hands to the next iteration must be ones this pass
    # can rebuild: made in the iteration or the iteration's own.
    own = {*body.args, *plan.made}
    for v in term.operands:
        if _is_cell(v) and plan.alias.get(v, v) not in own:
            return None
    return plan


# --- rewriting ----------------------------------------------------------------------------


def _rewrite(loop: scf.ForOp, plan: _Plan) -> None:
    body = loop.body.block
    term = body.last_op
    assert isinstance(term, scf.YieldOp)
    iv, *carried = body.args
    inits = list(loop.iter_args)
    cell_positions = [p for p, a in enumerate(carried) if _is_cell(a)]
    value_positions = [p for p, a in enumerate(carried) if not _is_cell(a)]

    def canon(v: SSAValue) -> SSAValue:
        return plan.alias.get(v, v)

    # What the adjoint parts read from the iteration: saved on stacks.
    posts = [op for step in plan.steps if isinstance(step, _Shift) for op in step.post]
    needed = [canon(v) for v in cont.free_operands(posts)]
    saved = list(dict.fromkeys(v for v in needed if not _is_cell(v) and body.is_ancestor(v.owner)))

    k_type = cont.ContinuationType([r.type for r in loop.res], plan.answer)
    shift_body = Block(arg_types=[k_type])
    k = shift_body.args[0]
    k.name_hint = "k"
    b = Builder(InsertPoint.at_end(shift_body))
    stacks = {v: b.insert(ad.StackOp(v.type)).stack for v in saved}
    for v, s in stacks.items():
        s.name_hint = f"{v.name_hint}_saved" if v.name_hint else "saved"

    # The forward loop: values only.
    fwd_body = Block(arg_types=[iv.type, *(carried[p].type for p in value_positions)])
    fmap: dict[SSAValue, SSAValue] = {iv: fwd_body.args[0]}
    for p, arg in zip(value_positions, fwd_body.args[1:]):
        fmap[carried[p]] = arg
    for old, new in fmap.items():
        new.name_hint = old.name_hint
    fb = Builder(InsertPoint.at_end(fwd_body))

    def forward(op: Operation) -> None:
        if isinstance(op, ad.ZeroLikeOp | ad.ZeroCellOp):
            return
        new = fb.insert(op.clone(value_mapper=fmap))
        fmap.update(zip(op.results, new.results))

    for step in plan.steps:
        if isinstance(step, _Shift):
            for op in step.pre:
                forward(op)
            for r, a in zip(step.op.res, step.resume.args):
                if not _is_cell(r):
                    fmap[r] = fmap.get(a, a)
        else:
            forward(step)
    for v, s in stacks.items():
        fb.insert(ad.PushOp(s, fmap.get(v, v)))
    fb.insert(scf.YieldOp(*(fmap.get(term.operands[p], term.operands[p]) for p in value_positions)))
    fwd = b.insert(
        scf.ForOp(
            loop.lb, loop.ub, loop.step, [inits[p] for p in value_positions], Region(fwd_body)
        )
    )

    # The rest of the program runs with the loop's results and fresh cells for them.
    finals: list[SSAValue] = []
    final_cells: list[SSAValue] = []
    fwd_results = iter(fwd.res)
    for p, r in enumerate(loop.res):
        if _is_cell(r):
            cell = b.insert(ad.ZeroCellOp(r.type.elem)).cell  # type: ignore[attr-defined]
            cell.name_hint = r.name_hint
            finals.append(cell)
            final_cells.append(cell)
        else:
            nv = next(fwd_results)
            nv.name_hint = r.name_hint
            finals.append(nv)
    ans = b.insert(cont.ResumeOp(k, finals)).res

    # The backward loop carries the cells of the iteration's outputs.
    bwd_body = Block(arg_types=[iv.type, *(c.type for c in final_cells)])
    outs = list(bwd_body.args[1:])
    bb = Builder(InsertPoint.at_end(bwd_body))
    bmap: dict[SSAValue, SSAValue] = {}
    for v in reversed(saved):
        popped = bb.insert(ad.PopOp(stacks[v])).value
        popped.name_hint = v.name_hint
        bmap[v] = popped
    yielded: dict[SSAValue, list[SSAValue]] = {}
    for out, p in zip(outs, cell_positions):
        out.name_hint = carried[p].name_hint
        yielded.setdefault(canon(term.operands[p]), []).append(out)
    own_cells = [*plan.made, *(carried[p] for p in cell_positions)]
    for cell in dict.fromkeys(own_cells):
        if cell in yielded:
            first, *more = yielded[cell]
            for other in more:
                bb.insert(ad.AccumOp(first, bb.insert(ad.LoadOp(other)).value))
            bmap[cell] = first
        else:
            fresh = bb.insert(ad.ZeroCellOp(cell.type.elem)).cell  # type: ignore[attr-defined]
            fresh.name_hint = cell.name_hint
            bmap[cell] = fresh
    for r, a in plan.alias.items():
        bmap[r] = bmap.get(a, a)
    for step in reversed(plan.steps):
        if isinstance(step, _Shift):
            for op in step.post:
                new = bb.insert(op.clone(value_mapper=bmap))
                bmap.update(zip(op.results, new.results))
    bb.insert(scf.YieldOp(*(bmap[carried[p]] for p in cell_positions)))
    bwd = b.insert(scf.ForOp(loop.lb, loop.ub, loop.step, final_cells, Region(bwd_body)))

    # The first iteration's input cells are the loop's initial cells.
    for p, d in zip(cell_positions, bwd.res):
        b.insert(ad.AccumOp(inits[p], b.insert(ad.LoadOp(d)).value))
    b.insert(cont.YieldOp(*ans))

    shift = cont.ShiftOp(k_type, shift_body)
    parent = loop.parent_block()
    assert parent is not None
    parent.insert_op_before(shift, loop)
    for old, new in zip(loop.res, shift.res):
        new.name_hint = old.name_hint
        old.replace_all_uses_with(new)
    loop.detach()
    loop.erase()
