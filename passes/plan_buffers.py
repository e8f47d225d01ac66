"""`plan-buffers`: where every tensor lives and when its buffer is given back.

The last pass of a backend's pipeline (after fusion, when the ops that will make
buffers are final). It writes its decisions down as `buf` ops and attributes
(ir/buf.py), so `lanterna-opt --print-ir-after-all` shows them and a backend
only prints them:

* **Releases.** A value whose op made a fresh buffer (`buf.storage`) is released
  (`buf.release %v`) right after the op of its defining block that holds its last
  use -- a use inside a region of a later op counts as a use by that op, and a use
  of a view of it (a reshape, ...) as a use of it. It is not released when
  anything may see the buffer later: a use that passes it on (a terminator --
  yield, return --, a call, a closure application or capture, a loop's initial
  value, a stack push, a cast) or a use inside a `cont.lambda` body.

      %t = ln.tanh %x : tensor<4xf32>          %t = ln.tanh %x : tensor<4xf32>
      %s = ln.sum %t {axes = ...} : ...   ->   %s = ln.sum %t {axes = ...} : ...
                                               buf.release %t : tensor<4xf32>

* **Takeovers.** `ad.cell_from %x` of a value whose fresh buffer has no other
  use, in the cell's own block, becomes `buf.take_cell %x` (the cell is made of
  `%x`'s buffer, no copy); the last `ad.load` of a cell defined in the load's
  block, every other use of the cell coming before it, becomes `buf.take_load`
  (the value is the cell's buffer, no copy). A takeover moves the buffer: the
  taken value is not released, its taker is, by the same rules.

* **Output slots.** In every function that no `func.call` in the module calls
  (the possible entries), each returned value made in the body block by an op
  with a fresh buffer, returned exactly once, gets `{buf.output = j}`: its op
  writes it straight into the caller's output #j.

`reuse=false` places no releases and no takeovers (every buffer lives until the
call ends, each cell and load is a copy), only the output slots: the baseline of
`benchmarks/bench_memory.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import builtin, func, scf
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.traits import IsTerminator

from lanterna.errors import PipelineError
from lanterna.ir import ad, buf, cont, ln
from lanterna.passes.registry import register_pass

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


@register_pass
@dataclass(frozen=True)
class PlanBuffers(ModulePass):
    """Place buffer releases, takeovers and output slots (see the module docstring)."""

    name = "plan-buffers"
    reuse: bool = True

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        for inner in op.walk():
            if isinstance(inner, cont.ShiftOp | cont.ResetOp):
                # A continuation may run code after its delimiter's last op: the
                # uses in the IR would not say when a buffer is dead.
                raise PipelineError(
                    f"plan-buffers runs after lower-continuations: '{inner.name}' is left"
                )
        called = buf.called_functions(op)
        for f in op.ops:
            if not isinstance(f, func.FuncOp) or not f.body.blocks:
                continue
            if self.reuse:
                blocks = _blocks(f)
                for block in blocks:
                    _place_takeovers(block)
                for block in blocks:
                    _place_releases(block)
            if f.sym_name.data not in called:
                _place_output_slots(f)
        buf.verify_output_slots(op)


def _blocks(op: Operation) -> list[Block]:
    """The blocks of `op`'s regions, nested ones included, except the scalar
    bodies of `ln.fused` (one element each, no buffers)."""
    out: list[Block] = []
    for region in op.regions:
        for block in region.blocks:
            out.append(block)
            for inner in block.ops:
                if not isinstance(inner, ln.FusedOp):
                    out.extend(_blocks(inner))
    return out


def _owned(v: SSAValue) -> bool:
    """Whether `v` holds a buffer its op made for it (or took over from one that did)."""
    owner = v.owner
    if not isinstance(owner, Operation):
        return False
    kind = buf.storage(owner)
    if kind is buf.Storage.TAKEN:
        return _owned(owner.operands[0])
    return kind is buf.Storage.FRESH


def _home(v: SSAValue) -> Block | None:
    owner = v.owner
    return owner if isinstance(owner, Block) else owner.parent_block()


def _ancestor_in(op: Operation, block: Block) -> Operation | None:
    """`op`, or the op of `block` whose regions hold it."""
    node: Operation | None = op
    while node is not None and node.parent_block() is not block:
        node = node.parent_op()
    return node


# --- takeovers ------------------------------------------------------------------------------


def _place_takeovers(block: Block) -> None:
    for op in list(block.ops):
        if isinstance(op, ad.CellFromOp):
            x = op.value
            if _owned(x) and x.has_one_use() and _home(x) is block:
                _replace(op, buf.TakeCellOp(x))
        elif isinstance(op, ad.LoadOp) and _final_load(op, block):
            _replace(op, buf.TakeLoadOp(op.cell))


def _replace(old: Operation, new: Operation) -> None:
    for a, b in zip(old.results, new.results, strict=True):
        b.name_hint = a.name_hint
    Rewriter.replace_op(old, new)


def _final_load(load: ad.LoadOp, block: Block) -> bool:
    """Whether nothing touches the cell after `load`: the cell is defined in the
    load's block (so no later loop iteration comes back to it) and every other
    use comes earlier in that block."""
    cell = load.cell
    if _home(cell) is not block:
        return False
    at = block.get_operation_index(load)
    for use in cell.uses:
        if use.operation is load:
            continue
        user = _ancestor_in(use.operation, block)
        if user is None or block.get_operation_index(user) > at:
            return False
    return True


# --- releases -------------------------------------------------------------------------------


def _place_releases(block: Block) -> None:
    ops = list(block.ops)
    position = {op: i for i, op in enumerate(ops)}
    releases: dict[int, list[SSAValue]] = {}
    for i, op in enumerate(ops):
        for r in op.results:
            if _owned(r):
                last = _last_use(r, block, position, i)
                if last is not None:
                    releases.setdefault(last, []).append(r)
    for i, values in releases.items():
        point = InsertPoint.after(ops[i])
        for r in values:
            release = buf.ReleaseOp(r)
            Rewriter.insert_op(release, point)
            point = InsertPoint.after(release)


def _last_use(v: SSAValue, block: Block, position: dict[Operation, int], start: int) -> int | None:
    """The position in `block` of the op holding the last use of `v` or of a view
    of it, or None when the buffer must outlive the block's code."""
    last = start
    family, seen = [v], {v}
    # A taker answers for what was done with the buffer before it took it over:
    # the taken value's other uses count (a call it was passed to, ...).
    source = v
    while isinstance(source.owner, Operation) and buf.storage(source.owner) is buf.Storage.TAKEN:
        source = source.owner.operands[0]
        family.append(source)
        seen.add(source)
    while family:
        value = family.pop()
        for use in value.uses:
            user = use.operation
            kind = buf.storage(user)
            if kind is buf.Storage.TAKEN and user.results[0] in seen:
                continue  # the takeover that led to `v`
            if kind is buf.Storage.TAKEN or isinstance(user, buf.ReleaseOp):
                return None  # the taker owns the buffer now; or released already
            if user.has_trait(IsTerminator) or isinstance(user, _PASSES_ON):
                return None
            if kind is buf.Storage.VIEW and use.index == 0:
                for view in user.results:
                    if view not in seen:
                        seen.add(view)
                        family.append(view)
            holder: Operation | None = user
            while holder is not None and holder.parent_block() is not block:
                holder = holder.parent_op()
                if isinstance(holder, cont.LambdaOp):
                    return None
            at = position.get(holder) if holder is not None else None
            if at is None:
                return None
            last = max(last, at)
    return last


# --- output slots ---------------------------------------------------------------------------


def _place_output_slots(f: func.FuncOp) -> None:
    block = f.body.block
    ret = block.last_op
    if not isinstance(ret, func.ReturnOp):
        return
    values = list(ret.operands)
    for j, v in enumerate(values):
        owner = v.owner
        if (
            values.count(v) == 1
            and isinstance(owner, Operation)
            and owner.parent_block() is block
            and len(owner.results) == 1
            and buf.storage(owner) is buf.Storage.FRESH
        ):
            buf.set_output_slot(owner, j)
