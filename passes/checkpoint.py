"""`checkpoint`: wrap the bodies of loops in `ln.checkpoint`.

`ln.checkpoint` marks a region whose values the backward pass recomputes
instead of storing (ir/ln/checkpoint.py; `reverse-ad` differentiates it as
one primitive that runs its body again, differentiated, in the backward pass).
This pass places the marker for a whole program: run before `reverse-ad`, it
turns every `scf.for` body (not already inside a checkpoint) into

    %r = scf.for %i = %lb to %ub step %st iter_args(%h = %h0) -> (T) {
      %y = ln.checkpoint -> (T) {
        <the body>
        ln.checkpoint_yield %h2 : T
      }
      scf.yield %y : T
    }

so that, with `reverse-loops`, a differentiated loop saves only what each
iteration reads (its carried values and the arrays it indexes), not what it
computes: memory per iteration falls to the size of the loop state, for one
more forward computation of the body in the backward pass.

    lanterna-opt f.mlir -p "checkpoint,reverse-ad{argnums=0},reverse-loops,lower-continuations"

From Python, `ln.checkpoint(f)` places the marker around one function.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import builtin, func, scf
from xdsl.ir import Block, Operation
from xdsl.passes import ModulePass

from lanterna.ir.ln.checkpoint import CheckpointOp, CheckpointYieldOp
from lanterna.passes.registry import register_pass


@register_pass
@dataclass(frozen=True)
class Checkpoint(ModulePass):
    """Wrap every scf.for body in ln.checkpoint, so that reverse mode recomputes
    each iteration's values instead of storing them."""

    name = "checkpoint"

    func: str = ""
    """Only the loops of this function (default: every function)."""

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        for f in op.ops:
            if not isinstance(f, func.FuncOp) or (self.func and f.sym_name.data != self.func):
                continue
            for loop in [o for o in f.walk() if isinstance(o, scf.ForOp)]:
                if not _inside_checkpoint(loop):
                    _wrap(loop.body.block)


def _inside_checkpoint(op: Operation) -> bool:
    parent = op.parent_op()
    while parent is not None:
        if isinstance(parent, CheckpointOp):
            return True
        parent = parent.parent_op()
    return False


def _wrap(body: Block) -> None:
    term = body.last_op
    assert isinstance(term, scf.YieldOp)
    ops = list(body.ops)[:-1]
    if not ops:
        return
    inner = Block()
    for o in ops:
        o.detach()
        inner.add_op(o)
    inner.add_op(CheckpointYieldOp(*term.operands))
    marked = CheckpointOp([v.type for v in term.operands], inner)
    body.insert_op_before(marked, term)
    term.operands = list(marked.res)
