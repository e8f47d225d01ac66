"""`lower-continuations`: removes every `cont.shift` and `cont.reset`.

The output is direct-style code a backend can emit; closures (`cont.lambda`,
`cont.apply`) may remain.

* **Straight-line code.** A shift whose continuation is the rest of its block
  and is resumed exactly once, directly in the shift's body, is inlined: the
  body's ops before the resume come first, then the rest of the block, then the
  body's ops after the resume. For a chain of such shifts -- what `reverse-ad`
  makes of straight-line code -- that is the forward ops in order followed by
  the adjoint code in reverse order: the classic adjoint program, derived.
* **Conditionals.** The rest of the block after an `scf.if` whose branches
  shift becomes one closure `kont`; each branch runs its own part, calls `kont`
  with its results, and what `kont` returns is the branch's answer. No code is
  duplicated.
* **Loops.** An `scf.for`/`scf.while` whose body shifts becomes a recursive
  closure: iteration i calls iteration i+1 as its continuation, and the exit
  calls `kont`.
* **Calls and recursion.** A function that shifts outside any reset of its own
  takes its continuation as an extra last parameter (CPS) and returns the
  answer; each call site passes the rest of its block as a closure.
* Any other shift (resumed twice, or with its continuation escaping) reifies its
  continuation as a closure and turns `cont.resume` into `cont.apply`.

Blocks are processed from a worklist: every block handled here ends in a
terminator that yields the *answer* of the enclosing delimited computation
(a reset body, a continuation closure, a CPS function body, or a branch of a
conditional built here), which is what makes the rewrites above local.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, builtin, func, scf
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass

from lanterna.errors import LanternaError
from lanterna.ir import cont
from lanterna.passes.registry import register_pass


class ContinuationError(LanternaError):
    """IR whose continuations this pass cannot eliminate."""


@register_pass
@dataclass(frozen=True)
class LowerContinuations(ModulePass):
    """Eliminate cont.shift/cont.reset: inline one-shot continuations, turn the
    rest of a block after control flow into closures, loops into recursive
    closures, and shifting functions into CPS functions."""

    name = "lower-continuations"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        _Lowering(op).run()


class _Lowering:
    def __init__(self, module: builtin.ModuleOp):
        self.module = module
        self.funcs = {f.sym_name.data: f for f in module.ops if isinstance(f, func.FuncOp)}
        self.cps: dict[str, list[Attribute]] = {}  # CPS function -> answer types
        self.passing: set[Operation] = set()  # calls already passing their continuation
        self.work: deque[Block] = deque()

    # --- analysis --------------------------------------------------------------------------

    def escaping_answer(self, region_op: Operation) -> list[Attribute] | None:
        """The answer type of a shift or CPS call in `region_op`'s regions outside
        any reset, or None when there is none."""
        for op in cont.walk_outside_resets(region_op):
            if isinstance(op, cont.ShiftOp):
                return list(op.k_type.outputs.data)
            if (
                isinstance(op, func.CallOp)
                and op.callee.string_value() in self.cps
                and op not in self.passing
            ):
                return self.cps[op.callee.string_value()]
        return None

    def find_cps_functions(self) -> None:
        changed = True
        while changed:
            changed = False
            for name, f in self.funcs.items():
                if name in self.cps or not f.body.blocks:
                    continue
                ans = self.escaping_answer(f)
                if ans is not None:
                    self.cps[name] = ans
                    changed = True

    def needs_cps(self, op: Operation) -> bool:
        if isinstance(op, func.CallOp):
            return op.callee.string_value() in self.cps and op not in self.passing
        if isinstance(op, scf.IfOp | scf.ForOp | scf.WhileOp):
            return self.escaping_answer(op) is not None
        if isinstance(op, cont.LambdaOp) and self.escaping_answer(op) is not None:
            raise ContinuationError(
                "lower-continuations: a cont.shift inside a cont.lambda body is not supported"
            )
        if (
            op.regions
            and not isinstance(op, cont.ResetOp | cont.LambdaOp)
            and self.escaping_answer(op) is not None
        ):
            raise ContinuationError(
                f"lower-continuations: cannot lower a cont.shift inside '{op.name}'"
            )
        return False

    # --- driver ----------------------------------------------------------------------------

    def run(self) -> None:
        self.find_cps_functions()
        for name, ans in self.cps.items():
            self.to_cps_signature(self.funcs[name], ans)
        for f in self.funcs.values():
            if not f.body.blocks:
                continue
            resets = [op for op in f.walk(reverse=False) if isinstance(op, cont.ResetOp)]
            # Innermost first: by then an outer reset's body has only its own shifts.
            for reset in reversed(resets):
                self.lower_reset(reset)
            if f.sym_name.data in self.cps:
                self.work.append(f.body.block)
                self.drain()
        for op in self.module.walk():
            if isinstance(op, cont.ShiftOp | cont.ResetOp | cont.ResumeOp):
                raise ContinuationError(
                    f"lower-continuations: '{op.name}' outside any cont.reset cannot be lowered"
                )

    def drain(self) -> None:
        while self.work:
            self.lower_block(self.work.popleft())

    def lower_reset(self, reset: cont.ResetOp) -> None:
        block = reset.body.block
        self.work.append(block)
        self.drain()
        term = block.last_op
        assert isinstance(term, cont.YieldOp)
        parent = reset.parent_block()
        assert parent is not None
        for op in list(block.ops):
            if op is term:
                break
            op.detach()
            parent.insert_op_before(op, reset)
        for r, v in zip(reset.res, term.values):
            r.replace_all_uses_with(v)
        _erase(reset)

    def to_cps_signature(self, f: func.FuncOp, answer: list[Attribute]) -> None:
        """`f(args) -> R` becomes `f(args, %ret: closure<(R) -> (answer)>) -> answer`."""
        results = list(f.function_type.outputs.data)
        ret_t = cont.ClosureType(results, answer)
        block = f.body.block
        ret = block.insert_arg(ret_t, len(block.args))
        ret.name_hint = "ret"
        for op in list(block.ops):
            if isinstance(op, func.ReturnOp):
                call = cont.ApplyOp(ret, list(op.arguments))
                block.insert_op_before(call, op)
                block.insert_op_before(func.ReturnOp(*call.res), op)
                _erase(op)
        f.function_type = builtin.FunctionType.from_lists(
            [*f.function_type.inputs.data, ret_t], answer
        )

    # --- one block -----------------------------------------------------------------------

    def lower_block(self, block: Block) -> None:
        posts: list[tuple[cont.ResumeOp, list[Operation], cont.YieldOp, cont.ShiftOp]] = []
        op = block.first_op
        while op is not None and op is not block.last_op:
            nxt = op.next_op
            if isinstance(op, cont.ShiftOp):
                resume = _one_shot_resume(op)
                if resume is None:
                    nxt = self.reify_shift(op, block)
                else:
                    posts.append(self.inline_pre(op, resume, block))
            elif self.needs_cps(op):
                self.split_at(op, block)
                break
            op = nxt
        term = block.last_op
        assert term is not None
        vals = list(term.operands)
        for resume, post, body_term, shift in reversed(posts):
            for r, v in zip(resume.res, vals):
                r.replace_all_uses_with(v)
            for p in post:
                p.detach()
                block.insert_op_before(p, term)
            vals = list(body_term.operands)
            _erase(shift, safe=False)
        term.operands = vals

    def inline_pre(
        self, shift: cont.ShiftOp, resume: cont.ResumeOp, block: Block
    ) -> tuple[cont.ResumeOp, list[Operation], cont.YieldOp, cont.ShiftOp]:
        """Move a one-shot shift's ops before the resume in front of it; the rest of
        its body runs after the rest of the block (see lower_block)."""
        body = shift.body.block
        for r, a in zip(shift.res, resume.args):
            r.replace_all_uses_with(a)
        pre: list[Operation] = []
        post: list[Operation] = []
        seen = False
        for inner in body.ops:
            if inner is resume:
                seen = True
            elif inner is not body.last_op:
                (post if seen else pre).append(inner)
        for p in [*pre, *post]:
            if isinstance(p, cont.ShiftOp) or self.needs_cps(p):
                raise ContinuationError(
                    "lower-continuations: a shift body that itself shifts is not supported"
                )
        for p in pre:
            p.detach()
            block.insert_op_before(p, shift)
        shift.detach()
        body_term = body.last_op
        assert isinstance(body_term, cont.YieldOp)
        return resume, post, body_term, shift

    def make_kont(self, after: Operation, block: Block, holes: Sequence[SSAValue]) -> cont.LambdaOp:
        """The rest of `block` after `after` as a closure over `holes` (which it
        receives as parameters); the block's terminator then yields the answer."""
        term = block.last_op
        assert term is not None
        answer = [v.type for v in term.operands]
        kblock = Block(arg_types=[h.type for h in holes])
        for h, a in zip(holes, kblock.args):
            a.name_hint = h.name_hint
            h.replace_all_uses_with(a)
        rest: list[Operation] = []
        node = after.next_op
        while node is not None and node is not term:
            rest.append(node)
            node = node.next_op
        for r in rest:
            r.detach()
            kblock.add_op(r)
        kblock.add_op(cont.YieldOp(*term.operands))
        kont = cont.LambdaOp(cont.ClosureType([h.type for h in kblock.args], answer), kblock)
        kont.res[0].name_hint = "kont"
        self.work.append(kblock)
        return kont

    def reify_shift(self, shift: cont.ShiftOp, block: Block) -> Operation | None:
        """General case: the continuation becomes a closure, resumes become applies.
        Returns the first op to process next (the shift body's inlined ops)."""
        kont = self.make_kont(shift, block, list(shift.res))
        block.insert_op_before(kont, shift)
        body = shift.body.block
        k = body.args[0]
        for use in list(k.uses):
            user = use.operation
            if not isinstance(user, cont.ResumeOp):
                raise ContinuationError(
                    f"lower-continuations: continuation used by '{user.name}', expected cont.resume"
                )
            apply = cont.ApplyOp(kont.res[0], list(user.args))
            user.parent_block().insert_op_before(apply, user)  # type: ignore[union-attr]
            for r, a in zip(user.res, apply.res):
                r.replace_all_uses_with(a)
            _erase(user)
        body_term = body.last_op
        assert isinstance(body_term, cont.YieldOp)
        first: Operation | None = None
        for inner in list(body.ops):
            if inner is body_term:
                break
            inner.detach()
            block.insert_op_before(inner, shift)
            first = first or inner
        term = block.last_op
        assert term is not None
        term.operands = list(body_term.operands)
        _erase(shift, safe=False)
        return first if first is not None else term

    # --- control flow whose regions shift -------------------------------------------------

    def split_at(self, op: Operation, block: Block) -> None:
        term = block.last_op
        assert term is not None
        answer = [v.type for v in term.operands]
        tail = op.next_op is term and list(term.operands) == list(op.results)
        if isinstance(op, scf.IfOp) and tail:
            # Its branches already yield the answer.
            for region in op.regions:
                if region.blocks:
                    self.work.append(region.block)
            return
        kont = self.make_kont(op, block, list(op.results))
        block.insert_op_before(kont, op)
        k = kont.res[0]
        if isinstance(op, scf.IfOp):
            new = self.if_to_cps(op, k, answer)
        elif isinstance(op, scf.ForOp):
            new = self.for_to_cps(op, k, answer)
        elif isinstance(op, scf.WhileOp):
            new = self.while_to_cps(op, k, answer)
        else:
            assert isinstance(op, func.CallOp)
            callee = op.callee.string_value()
            new = [func.CallOp(callee, [*op.arguments, k], self.cps[callee])]
            self.passing.add(new[0])
        for n in new:
            block.insert_op_before(n, op)
        _erase(op, safe=False)
        term.operands = list(new[-1].results)

    def if_to_cps(self, op: scf.IfOp, k: SSAValue, answer: list[Attribute]) -> list[Operation]:
        regions = [op.true_region, op.false_region]
        for region in regions:
            op.detach_region(region)
        if not regions[1].blocks:
            regions[1].add_block(Block([scf.YieldOp()]))
        for region in regions:
            _yield_through(region.block, k, scf.YieldOp)
            self.work.append(region.block)
        return [scf.IfOp(op.cond, answer, regions[0], regions[1])]

    def for_to_cps(self, op: scf.ForOp, k: SSAValue, answer: list[Attribute]) -> list[Operation]:
        iter_types = [a.type for a in op.iter_args]
        loop_t = cont.ClosureType([op.lb.type, *iter_types], answer)
        body = op.detach_region(op.body).block
        lam = Block(arg_types=[loop_t, op.lb.type, *iter_types])
        self_, i, *params = lam.args
        self_.name_hint = "loop"
        for old, new in zip(body.args, [i, *params]):
            new.name_hint = old.name_hint
            old.replace_all_uses_with(new)
        cmp = arith.CmpiOp(i, op.ub, "slt")
        # Iteration i: the body, then iteration i+1 as its continuation.
        step = Block()
        for inner in list(body.ops):
            inner.detach()
            step.add_op(inner)
        yield_op = step.last_op
        assert isinstance(yield_op, scf.YieldOp)
        nxt = arith.AddiOp(i, op.step)
        call = cont.ApplyOp(self_, [nxt.result, *yield_op.operands])
        step.insert_op_before(nxt, yield_op)
        step.insert_op_before(call, yield_op)
        step.insert_op_before(scf.YieldOp(*call.res), yield_op)
        _erase(yield_op)
        done = Block()
        exit_call = cont.ApplyOp(k, list(params))
        done.add_ops([exit_call, scf.YieldOp(*exit_call.res)])
        branch = scf.IfOp(cmp.result, answer, Region(step), Region(done))
        lam.add_ops([cmp, branch, cont.YieldOp(*branch.results)])
        loop = cont.LambdaOp(loop_t, lam, recursive=True)
        loop.res[0].name_hint = "loop"
        self.work.append(step)
        start = cont.ApplyOp(loop.res[0], [op.lb, *op.iter_args])
        return [loop, start]

    def while_to_cps(
        self, op: scf.WhileOp, k: SSAValue, answer: list[Attribute]
    ) -> list[Operation]:
        arg_types = [a.type for a in op.arguments]
        loop_t = cont.ClosureType(arg_types, answer)
        before_region, after_region = op.before_region, op.after_region
        before = op.detach_region(before_region).block
        after = op.detach_region(after_region).block
        lam = Block(arg_types=[loop_t, *arg_types])
        self_, *params = lam.args
        self_.name_hint = "loop"
        for old, new in zip(before.args, params):
            new.name_hint = old.name_hint
            old.replace_all_uses_with(new)
        for inner in list(before.ops):
            inner.detach()
            lam.add_op(inner)
        condition = lam.last_op
        assert isinstance(condition, scf.ConditionOp)
        # After region: runs with the condition's values, then loops.
        step = Block()
        for old, v in zip(after.args, condition.args):
            old.replace_all_uses_with(v)
        for inner in list(after.ops):
            inner.detach()
            step.add_op(inner)
        _yield_through(step, self_, scf.YieldOp)
        done = Block()
        exit_call = cont.ApplyOp(k, list(condition.args))
        done.add_ops([exit_call, scf.YieldOp(*exit_call.res)])
        branch = scf.IfOp(condition.condition, answer, Region(step), Region(done))
        lam.insert_op_before(branch, condition)
        lam.insert_op_before(cont.YieldOp(*branch.results), condition)
        _erase(condition)
        loop = cont.LambdaOp(loop_t, lam, recursive=True)
        loop.res[0].name_hint = "loop"
        self.work.append(lam)
        start = cont.ApplyOp(loop.res[0], list(op.arguments))
        return [loop, start]


def _erase(op: Operation, safe: bool = True) -> None:
    if op.parent is not None:
        op.detach()
    op.erase(safe_erase=safe)


def _yield_through(block: Block, k: SSAValue, yield_cls: type[Operation]) -> None:
    """Replace `yield %v` ending `block` with `%t = apply k(%v); yield %t`."""
    old = block.last_op
    assert old is not None
    call = cont.ApplyOp(k, list(old.operands))
    block.insert_op_before(call, old)
    block.insert_op_before(yield_cls(*call.res), old)
    _erase(old)


def _one_shot_resume(shift: cont.ShiftOp) -> cont.ResumeOp | None:
    """The single resume of the shift's continuation, if it is used exactly once
    and directly in the body's block."""
    k = shift.k
    uses = list(k.uses)
    if len(uses) != 1:
        return None
    user = uses[0].operation
    if isinstance(user, cont.ResumeOp) and user.parent_block() is shift.body.block and user.k is k:
        return user
    return None
