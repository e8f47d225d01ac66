"""The cpu backend's op table: how each `ln`, `ad` and `arith` op becomes C++.

Elementwise ops (and `ln.fused`) are the C-like core's (`c_like/elementwise.py`):
one loop nest over the result. Larger ops call templated kernels of
`runtime/lanterna_cpu.h` with static sizes; `CPU_OPS` is the whole table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from xdsl.dialects.builtin import (
    DenseIntOrFPElementsAttr,
    StringAttr,
)
from xdsl.ir import Operation, SSAValue

from lanterna.backends.c_like.arith import ARITH_OPS
from lanterna.backends.c_like.elementwise import (
    ELEMENT_OPS,
    element,
    fill_literal,
    literal,
    numel,
    shape,
    strides,
)
from lanterna.backends.c_like.emitter import c_string
from lanterna.backends.cpu_cpp.emitter import IVDEP, CpuEmitter, Lowering
from lanterna.ir import ad, buf, ln
from lanterna.ir.ln.base import error_origin, get_float, get_int, get_ints
from lanterna.ir.types import is_float, to_numpy_dtype

__all__ = ["CPU_OPS", "element", "fill_literal", "literal", "numel", "shape", "strides"]

# --- buffers --------------------------------------------------------------------------------


def result(em: CpuEmitter, op: Operation) -> tuple[str, str, int]:
    """Declare the op's result (a tensor or a cell) as a fresh buffer: (name, C
    element type, size). With an output slot (`{buf.output = j}`, placed by
    `plan-buffers`) the buffer is the caller's output #j."""
    _check_storage(em, op, buf.Storage.FRESH)
    r = op.results[0]
    c = em.scalar_type(element(r))
    n = numel(r)
    name = em.define(r)
    j = buf.output_slot(op)
    if j is None:
        em.line(f"{c}* {name} = lanterna::alloc<{c}>({n});")
    else:
        em.line(f"{c}* {name} = lanterna::output<{c}>({j}, {n});")
    return name, c, n


def alias(em: CpuEmitter, op: Operation, src: SSAValue) -> None:
    """Declare the op's result as `src`'s buffer under a new name."""
    _check_storage(em, op, buf.Storage.VIEW, buf.Storage.TAKEN)
    r = op.results[0]
    em.line(f"{em.ctype(r.type)} {em.define(r)} = {em.ref(src)};")


def _check_storage(em: CpuEmitter, op: Operation, *kinds: buf.Storage) -> None:
    """The lowering agrees with `buf.storage`, which `plan-buffers` planned by."""
    if buf.storage(op) not in kinds:
        raise NotImplementedError(
            f"{em.backend} backend: the lowering of '{op.name}' disagrees with "
            f"buf.storage ({buf.storage(op).value})"
        )


def arr(values: Sequence[int]) -> str:
    return "{" + ", ".join(str(v) for v in values) + "}"


def origin(op: Operation) -> str:
    """`error_origin(op)` as a C++ literal, for the runtime's error messages."""
    return c_string(error_origin(op))


# --- constants and fills -------------------------------------------------------------------


def _constant(em: CpuEmitter, op: Operation) -> None:
    r = op.results[0]
    value = op.properties["value"]
    assert isinstance(value, DenseIntOrFPElementsAttr)
    e = element(r)
    c = em.scalar_type(e)
    name = em.define(r)
    n = numel(r)
    values = list(value.get_values())
    if len(values) == 1 and n != 1:  # a splat
        values = values * n
    if n == 0:
        em.line(f"const {c}* {name} = lanterna::alloc<{c}>(0);")
        return
    data = em.fresh(name + "_data")
    em.line(f"static const {c} {data}[{n}] = {{{', '.join(literal(em, v, e) for v in values)}}};")
    em.line(f"const {c}* {name} = {data};")


def _fill(em: CpuEmitter, op: Operation) -> None:
    y, _, n = result(em, op)
    em.line(f"for (int64_t i_ = 0; i_ < {n}; ++i_) {y}[i_] = {fill_literal(em, op)};")


# --- reductions -----------------------------------------------------------------------------


def _reduce(em: CpuEmitter, op: Operation) -> None:
    x = op.operands[0]
    axes = get_ints(op.properties, "axes")
    dims = list(shape(x))
    c = em.scalar_type(element(x))
    if buf.storage(op) is buf.Storage.VIEW:  # no axes: the operand itself
        alias(em, op, x)
        return
    # Reduce runs of adjacent axes, last run first; each run is one [outer, n, inner] pass.
    runs: list[list[int]] = []
    for a in axes:
        if runs and runs[-1][-1] == a - 1:
            runs[-1].append(a)
        else:
            runs.append([a])
    kernel = "reduce_max" if isinstance(op, ln.MaxOp) else "reduce_sum"
    src = em.ref(x)
    hint = op.results[0].name_hint or op.name.split(".")[-1]
    for k, run in enumerate(reversed(runs)):
        outer = math.prod(dims[: run[0]])
        extent = math.prod(dims[run[0] : run[-1] + 1])
        inner = math.prod(dims[run[-1] + 1 :])
        for a in run:
            dims[a] = 1
        last = k == len(runs) - 1
        if last:
            # The result itself: a buffer of its own or the caller's output.
            dst, _, _ = result(em, op)
        else:
            dst = em.fresh(f"{hint}_part")
            em.line(f"{c}* {dst} = lanterna::alloc<{c}>({outer * inner});")
        args = f"{src}, {dst}, {outer}, {extent}, {inner}"
        if last and isinstance(op, ln.MeanOp):
            # The kernel divides the sum while it is still in double.
            args += f", {math.prod(shape(x)[a] for a in axes)}"
        em.line(f"lanterna::{kernel}({args});")
        src = dst


# --- linear algebra -------------------------------------------------------------------------


def _gemm_operands(
    em: CpuEmitter, a: SSAValue, b: SSAValue, ta: bool, tb: bool
) -> tuple[int, int, int, str]:
    """(m, n, k, the GEMM's operand arguments) of op(a) @ op(b), matrices stored
    row-major: a transposed operand is read through its `trans` flag."""
    (m, k), (_, n) = (shape(a)[::-1] if ta else shape(a)), (shape(b)[::-1] if tb else shape(b))
    lda, ldb = shape(a)[1], shape(b)[1]
    return m, n, k, f"{em.ref(a)}, {lda}, {em.ref(b)}, {ldb}"


def _flags(ta: bool, tb: bool) -> str:
    return f"{str(ta).lower()}, {str(tb).lower()}"


def _matmul(em: CpuEmitter, op: Operation) -> None:
    assert isinstance(op, ln.MatmulOp)
    a, b = op.operands
    sa, sb = shape(a), shape(b)
    if len(sa) == len(sb) == 2:
        ta, tb = op.transposes
        m, n, k, args = _gemm_operands(em, a, b, ta, tb)
        y, _, _ = result(em, op)
        em.line(f"lanterna::gemm({_flags(ta, tb)}, {m}, {n}, {k}, {args}, {y}, {n}, 0);")
        return
    y, _, _ = result(em, op)
    match len(sa), len(sb):
        case (2, 1):
            batch, m, k, n, a_stride, b_stride = 1, sa[0], sa[1], 1, 0, 0
        case (1, 2):
            batch, m, k, n, a_stride, b_stride = 1, 1, sa[0], sb[1], 0, 0
        case (3, 3):
            batch, m, k, n = sa[0], sa[1], sa[2], sb[2]
            a_stride, b_stride = m * k, k * n
        case (3, 2):
            # The batch shares b: fold it into the rows.
            batch, m, k, n, a_stride, b_stride = 1, sa[0] * sa[1], sa[2], sb[1], 0, 0
        case ranks:
            raise NotImplementedError(f"cpu backend: ln.matmul with operand ranks {ranks}")
    em.line(
        f"lanterna::matmul({em.ref(a)}, {a_stride}, {em.ref(b)}, {b_stride}, {y}, "
        f"{batch}, {m}, {n}, {k});"
    )


def _accum_matmul(em: CpuEmitter, op: Operation) -> None:
    """cell += op(a) @ op(b): one GEMM with beta 1, or logged (`{deferred}`)."""
    assert isinstance(op, ad.AccumMatmulOp)
    ta, tb = op.transposes
    m, n, k, args = _gemm_operands(em, op.lhs, op.rhs, ta, tb)
    cell = em.ref(op.cell)
    if op.is_deferred:
        em.line(f"lanterna::defer_product({cell}, {_flags(ta, tb)}, {m}, {n}, {k}, {args});")
        return
    em.line(f"lanterna::gemm({_flags(ta, tb)}, {m}, {n}, {k}, {args}, {cell}, {n}, 1);")


# --- data movement --------------------------------------------------------------------------


def copy_strided(
    em: CpuEmitter,
    c: str,
    dst: str,
    dst_strides: Sequence[int],
    dst_offset: int,
    src: str,
    src_strides: Sequence[int],
    src_offset: int,
    dims: Sequence[int],
) -> None:
    em.line(
        f"lanterna::copy_strided<{c}, {len(dims)}>({dst}, {arr(dst_strides)}, {dst_offset}, "
        f"{src}, {arr(src_strides)}, {src_offset}, {arr(dims)});"
    )


def _reshape(em: CpuEmitter, op: Operation) -> None:
    # Values are immutable, so a reshape shares its operand's buffer.
    alias(em, op, op.operands[0])


def _transpose(em: CpuEmitter, op: Operation) -> None:
    x = op.operands[0]
    perm = get_ints(op.properties, "perm")
    if list(perm) == sorted(perm):
        alias(em, op, x)
        return
    y, c, _ = result(em, op)
    out = shape(op.results[0])
    xs = strides(shape(x))
    copy_strided(em, c, y, strides(out), 0, em.ref(x), [xs[p] for p in perm], 0, out)


def _broadcast_to(em: CpuEmitter, op: Operation) -> None:
    x = op.operands[0]
    out = shape(op.results[0])
    src = shape(x)
    if src == out:
        alias(em, op, x)
        return
    y, c, _ = result(em, op)
    aligned = (1,) * (len(out) - len(src)) + src
    src_strides = [0 if d == 1 else s for d, s in zip(aligned, strides(aligned), strict=True)]
    copy_strided(em, c, y, strides(out), 0, em.ref(x), src_strides, 0, out)


def _slice(em: CpuEmitter, op: Operation) -> None:
    x = op.operands[0]
    start, step = get_ints(op.properties, "start"), get_ints(op.properties, "step")
    out = shape(op.results[0])
    xs = strides(shape(x))
    y, c, _ = result(em, op)
    offset = sum(a * s for a, s in zip(start, xs, strict=True))
    src_strides = [s * k for s, k in zip(xs, step, strict=True)]
    copy_strided(em, c, y, strides(out), 0, em.ref(x), src_strides, offset, out)


def _accum_slice(em: CpuEmitter, op: Operation) -> None:
    """cell[..., offset : offset + width, ...] += piece, along `axis`."""
    assert isinstance(op, ad.AccumSliceOp)
    cell = em.ref(op.cell)
    axis, offset = op.range
    out = shape(op.cell)
    outer, inner = math.prod(out[:axis]), math.prod(out[axis + 1 :])
    run = shape(op.piece)[axis] * inner
    em.line(
        f"for (int64_t o_ = 0; o_ < {outer}; ++o_) for (int64_t i_ = 0; i_ < {run}; ++i_) "
        f"{cell}[o_ * {out[axis] * inner} + {offset * inner} + i_] += "
        f"{em.ref(op.piece)}[o_ * {run} + i_];"
    )


def _concatenate(em: CpuEmitter, op: Operation) -> None:
    axis = get_int(op.properties, "axis")
    out = shape(op.results[0])
    out_strides = strides(out)
    y, c, _ = result(em, op)
    offset = 0
    for x in op.operands:
        dims = shape(x)
        copy_strided(
            em, c, y, out_strides, offset * out_strides[axis], em.ref(x), strides(dims), 0, dims
        )
        offset += dims[axis]


def _gather(em: CpuEmitter, op: Operation) -> None:
    table, indices = op.operands
    rows, *rest = shape(table)
    y, _, _ = result(em, op)
    em.line(
        f"lanterna::gather({em.ref(table)}, {em.ref(indices)}, {y}, {numel(indices)}, {rows}, "
        f"{math.prod(rest)}, {origin(op)});"
    )


def _scatter_add(em: CpuEmitter, op: Operation) -> None:
    updates, indices = op.operands
    rows, *rest = shape(op.results[0])
    y, _, _ = result(em, op)
    em.line(
        f"lanterna::scatter_add({em.ref(updates)}, {em.ref(indices)}, {y}, {numel(indices)}, "
        f"{rows}, {math.prod(rest)}, {origin(op)});"
    )


def _item(em: CpuEmitter, op: Operation) -> None:
    r = op.results[0]
    em.line(f"{em.ctype(r.type)} {em.define(r)} = {em.ref(op.operands[0])}[0];")


def _from_scalar(em: CpuEmitter, op: Operation) -> None:
    y, _, _ = result(em, op)
    em.line(f"{y}[0] = {em.ref(op.operands[0])};")


# --- nn -------------------------------------------------------------------------------------


def _softmax(em: CpuEmitter, op: Operation) -> None:
    x = op.operands[0]
    axis = get_int(op.properties, "axis")
    dims = shape(x)
    y, _, _ = result(em, op)
    log = "true" if isinstance(op, ln.LogSoftmaxOp) else "false"
    em.line(
        f"lanterna::softmax({em.ref(x)}, {y}, {math.prod(dims[:axis])}, {dims[axis]}, "
        f"{math.prod(dims[axis + 1 :])}, {log});"
    )


def _loss(em: CpuEmitter, op: Operation) -> None:
    scores, target = op.operands
    n, classes = shape(scores)
    reduction = op.properties["reduction"]
    assert isinstance(reduction, StringAttr)
    mean = "true" if reduction.data == "mean" else "false"
    y, c, _ = result(em, op)
    logp = em.ref(scores)
    if isinstance(op, ln.CrossEntropyOp):
        logp = em.fresh(f"{y}_logp")
        em.line(f"{c}* {logp} = lanterna::alloc<{c}>({n * classes});")
        em.line(f"lanterna::softmax({em.ref(scores)}, {logp}, {n}, {classes}, 1, true);")
    em.line(
        f"{y}[0] = lanterna::nll_loss({logp}, {em.ref(target)}, {n}, {classes}, {mean}, "
        f"{origin(op)});"
    )


def window(
    x: SSAValue, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int]
) -> str:
    n, c, h, w = shape(x)
    return f"lanterna::Window{arr([n, c, h, w, *kernel, *stride, *padding])}"


def _conv2d(em: CpuEmitter, op: Operation) -> None:
    x, w = op.operands
    o, _, kh, kw = shape(w)
    stride, padding = get_ints(op.properties, "stride"), get_ints(op.properties, "padding")
    y, _, _ = result(em, op)
    em.line(
        f"lanterna::conv2d({em.ref(x)}, {em.ref(w)}, {y}, {window(x, (kh, kw), stride, padding)}, {o});"
    )


def _conv2d_input_grad(em: CpuEmitter, op: Operation) -> None:
    g, w = op.operands
    o, _, kh, kw = shape(w)
    stride, padding = get_ints(op.properties, "stride"), get_ints(op.properties, "padding")
    win = window(op.results[0], (kh, kw), stride, padding)
    y, _, _ = result(em, op)
    em.line(f"lanterna::conv2d_input_grad({em.ref(g)}, {em.ref(w)}, {y}, {win}, {o});")


def _conv2d_weight_grad(em: CpuEmitter, op: Operation) -> None:
    x, g = op.operands
    o, _, kh, kw = shape(op.results[0])
    stride, padding = get_ints(op.properties, "stride"), get_ints(op.properties, "padding")
    y, _, _ = result(em, op)
    em.line(
        f"lanterna::conv2d_weight_grad({em.ref(x)}, {em.ref(g)}, {y}, "
        f"{window(x, (kh, kw), stride, padding)}, {o});"
    )


def _pool(em: CpuEmitter, op: Operation) -> None:
    x = op.operands[0]
    props = [get_ints(op.properties, k) for k in ("kernel", "stride", "padding")]
    y, _, _ = result(em, op)
    kernel = {ln.MaxPool2dOp: "max_pool2d", ln.AvgPool2dOp: "avg_pool2d"}[type(op)]
    em.line(f"lanterna::{kernel}({em.ref(x)}, {y}, {window(x, *props)});")


def _max_pool2d_grad(em: CpuEmitter, op: Operation) -> None:
    x, g = op.operands
    props = [get_ints(op.properties, k) for k in ("kernel", "stride", "padding")]
    y, _, _ = result(em, op)
    em.line(f"lanterna::max_pool2d_grad({em.ref(x)}, {em.ref(g)}, {y}, {window(x, *props)});")


def _dropout(em: CpuEmitter, op: Operation) -> None:
    x, seed = op.operands
    rate = repr(get_float(op.properties, "rate"))
    y, _, n = result(em, op)
    em.line(f"lanterna::dropout({em.ref(x)}, {em.ref(seed)}[0], {y}, {n}, {rate});")


# --- adjoint cells --------------------------------------------------------------------------


def _zero_like(em: CpuEmitter, op: Operation) -> None:
    r = op.results[0]
    c = em.scalar_type(element(r))
    em.line(f"{c}* {em.define(r)} = lanterna::zeros<{c}>({numel(r)});")


def _flush_products(em: CpuEmitter, op: Operation) -> None:
    em.line(f"lanterna::flush_products({em.ref(op.operands[0])});")


def _drop_products(em: CpuEmitter, op: Operation) -> None:
    em.line(f"lanterna::drop_products({em.ref(op.operands[0])});")


def _new_stack(em: CpuEmitter, op: Operation) -> None:
    r = op.results[0]
    em.line(f"{em.ctype(r.type)} {em.define(r)} = lanterna::new_stack<{em.ctype(r.type.elem)}>();")


def _push(em: CpuEmitter, op: Operation) -> None:
    em.line(f"{em.ref(op.operands[0])}->push_back({em.ref(op.operands[1])});")


def _pop(em: CpuEmitter, op: Operation) -> None:
    r = op.results[0]
    em.line(f"{em.ctype(r.type)} {em.define(r)} = lanterna::pop({em.ref(op.operands[0])});")


def _accum(em: CpuEmitter, op: Operation) -> None:
    cell, g = op.operands
    cell_name, g_name = em.ref(cell), em.ref(g)
    add = "{0} + {1}" if is_float(element(g)) else "lanterna::wrap_add({0}, {1})"
    em.line(IVDEP)
    em.line(
        f"for (int64_t i_ = 0; i_ < {numel(g)}; ++i_) {cell_name}[i_] = "
        f"{add.format(f'{cell_name}[i_]', f'{g_name}[i_]')};"
    )


def _load(em: CpuEmitter, op: Operation) -> None:
    # A snapshot: later accumulations must not change the loaded value.
    _copy(em, op, op.operands[0])


def _cell_from(em: CpuEmitter, op: Operation) -> None:
    # A fresh buffer: accumulations into the cell must not change the operand.
    _copy(em, op, op.operands[0])


def _copy(em: CpuEmitter, op: Operation, src: SSAValue) -> None:
    y, _, n = result(em, op)
    em.line(IVDEP)
    em.line(f"for (int64_t i_ = 0; i_ < {n}; ++i_) {y}[i_] = {em.ref(src)}[i_];")


# --- buffers (placed by plan-buffers) -------------------------------------------------------


def _take_cell(em: CpuEmitter, op: Operation) -> None:
    """The cell is the value's buffer, which nothing else sees any more."""
    r = op.results[0]
    ctype = em.ctype(r.type)
    em.line(f"{ctype} {em.define(r)} = const_cast<{ctype}>({em.ref(op.operands[0])});")


def _take_load(em: CpuEmitter, op: Operation) -> None:
    """The cell's last use: its buffer becomes the value, no copy."""
    alias(em, op, op.operands[0])


def _release(em: CpuEmitter, op: Operation) -> None:
    """The arena hands the buffer to the next request of its size."""
    v = op.operands[0]
    nbytes = numel(v) * to_numpy_dtype(element(v)).itemsize
    em.line(f"lanterna::release({em.ref(v)}, {nbytes});")


# --- the table ------------------------------------------------------------------------------

LN_TABLE: dict[type[Operation], Lowering] = {
    **ELEMENT_OPS,  # the elementwise ops and ln.fused
    ln.ConstantOp: _constant,
    ln.ZerosOp: _fill,
    ln.OnesOp: _fill,
    ln.FullOp: _fill,
    ln.SumOp: _reduce,
    ln.MeanOp: _reduce,
    ln.MaxOp: _reduce,
    ln.MatmulOp: _matmul,
    ln.ReshapeOp: _reshape,
    ln.TransposeOp: _transpose,
    ln.BroadcastToOp: _broadcast_to,
    ln.SliceOp: _slice,
    ln.ConcatenateOp: _concatenate,
    ln.GatherOp: _gather,
    ln.ScatterAddOp: _scatter_add,
    ln.ItemOp: _item,
    ln.FromScalarOp: _from_scalar,
    ln.SoftmaxOp: _softmax,
    ln.LogSoftmaxOp: _softmax,
    ln.NllLossOp: _loss,
    ln.CrossEntropyOp: _loss,
    ln.Conv2dOp: _conv2d,
    ln.Conv2dInputGradOp: _conv2d_input_grad,
    ln.Conv2dWeightGradOp: _conv2d_weight_grad,
    ln.MaxPool2dOp: _pool,
    ln.AvgPool2dOp: _pool,
    ln.MaxPool2dGradOp: _max_pool2d_grad,
    ln.DropoutOp: _dropout,
}

AD_TABLE: dict[type[Operation], Lowering] = {
    ad.ZeroLikeOp: _zero_like,
    ad.AccumOp: _accum,
    ad.LoadOp: _load,
    ad.AccumMatmulOp: _accum_matmul,
    ad.AccumSliceOp: _accum_slice,
    ad.FlushProductsOp: _flush_products,
    ad.DropProductsOp: _drop_products,
}

CPU_OPS: dict[type[Operation], Lowering] = {
    **LN_TABLE,
    **AD_TABLE,
    **ARITH_OPS,  # scalar arith: the C-like core's
    ad.CellFromOp: _cell_from,
    ad.ZeroCellOp: _zero_like,  # a zero buffer either way
    ad.StackOp: _new_stack,
    ad.PushOp: _push,
    ad.PopOp: _pop,
    buf.ReleaseOp: _release,
    buf.TakeCellOp: _take_cell,
    buf.TakeLoadOp: _take_load,
}
