"""The cpu backend's op table: how each `ln`, `ad` and `arith` op becomes C++.

Elementwise ops are a table from op to an expression template over the
operands' elements (`{0}`, `{1}`, ...), rendered as one loop over the result
with broadcasting resolved into static index arithmetic. Larger ops call
templated kernels of `runtime/lanterna_cpu.h` with static sizes. The CUDA
emitter reuses these tables and overrides the entries it lowers differently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from xdsl.dialects import arith
from xdsl.dialects.builtin import (
    DenseIntOrFPElementsAttr,
    FloatAttr,
    IntegerAttr,
    StringAttr,
    TensorType,
)
from xdsl.ir import Attribute, Operation, SSAValue, Use

from lanterna.backends.cpu_cpp.emitter import CEmitter, Lowering
from lanterna.ir import ad, buf, ln
from lanterna.ir.ln.base import error_origin, get_float, get_int, get_ints
from lanterna.ir.types import is_float, to_numpy_dtype

# --- shapes and literals --------------------------------------------------------------------


def shape(v: SSAValue | Attribute) -> tuple[int, ...]:
    t = v.type if isinstance(v, SSAValue) else v
    if isinstance(t, ad.CellType):
        t = t.elem
    assert isinstance(t, TensorType)
    return tuple(t.get_shape())


def numel(v: SSAValue | Attribute) -> int:
    return math.prod(shape(v))


def element(v: SSAValue) -> Attribute:
    t = v.type
    if isinstance(t, ad.CellType):
        t = t.elem
    assert isinstance(t, TensorType)
    return t.element_type


def strides(dims: Sequence[int]) -> list[int]:
    out, acc = [], 1
    for d in reversed(dims):
        out.append(acc)
        acc *= d
    return out[::-1]


def literal(em: CEmitter, value: float | bool, t: Attribute) -> str:
    """A C++ literal of scalar type `t` holding exactly `value`."""
    c = em.scalar_type(t)
    if c == "bool":
        return "true" if value else "false"
    if c in ("float", "double"):
        v = float(value)
        if math.isnan(v):
            return f"std::numeric_limits<{c}>::quiet_NaN()"
        if math.isinf(v):
            return ("-" if v < 0 else "") + f"std::numeric_limits<{c}>::infinity()"
        if c == "float":
            import numpy as np

            text = str(np.float32(v))
            return text + ("f" if any(ch in text for ch in ".e") else ".0f")
        text = repr(v)
        return text if any(ch in text for ch in ".e") else text + ".0"
    v = int(value)
    bits = 32 if c == "int32_t" else 64
    if v == -(1 << (bits - 1)):
        return f"({v + 1} - 1)"
    return f"{v}" if bits == 32 else f"INT64_C({v})"


def result(em: CEmitter, op: Operation) -> tuple[str, str, int]:
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


def alias(em: CEmitter, op: Operation, src: SSAValue) -> None:
    """Declare the op's result as `src`'s buffer under a new name."""
    _check_storage(em, op, buf.Storage.VIEW, buf.Storage.TAKEN)
    r = op.results[0]
    em.line(f"{em.ctype(r.type)} {em.define(r)} = {em.ref(src)};")


def _uses(v: SSAValue) -> list[Use]:
    """`v`'s uses but its `buf.release`, for the lowerings that look at how a
    value is used (interim, while they decide on their own)."""
    return [use for use in v.uses if not isinstance(use.operation, buf.ReleaseOp)]


def _unique_use(v: SSAValue) -> Use | None:
    uses = _uses(v)
    return uses[0] if len(uses) == 1 else None


def _check_storage(em: CEmitter, op: Operation, *kinds: buf.Storage) -> None:
    """The lowering agrees with `buf.storage`, which `plan-buffers` planned by."""
    if buf.storage(op) not in kinds:
        raise NotImplementedError(
            f"{em.backend} backend: the lowering of '{op.name}' disagrees with "
            f"buf.storage ({buf.storage(op).value})"
        )


def arr(values: Sequence[int]) -> str:
    return "{" + ", ".join(str(v) for v in values) + "}"


def c_string(text: str) -> str:
    """`text` as a C++ string literal: printable ASCII as it is, every other byte
    of its UTF-8 (quotes, backslashes, newlines of a file name) as an octal escape,
    which, unlike `\\x`, cannot run into the characters after it."""
    chars = []
    for byte in text.encode():
        ch = chr(byte)
        chars.append(ch if 32 <= byte < 127 and ch not in '"\\?' else f"\\{byte:03o}")
    return '"' + "".join(chars) + '"'


def origin(op: Operation) -> str:
    """`error_origin(op)` as a C++ literal, for the runtime's error messages."""
    return c_string(error_origin(op))


# --- elementwise ----------------------------------------------------------------------------

# Before the innermost loop of each elementwise loop nest. A buffer is never part of
# another (a value either is another's whole buffer, as a reshape or a cell is, or
# shares nothing with it), so element i of a result depends on element i of its
# operands only: no dependency between iterations. Saying so spares the compiler
# the runtime overlap checks and the scalar copy of each loop it would otherwise
# emit, which is about a tenth of the generated code.
IVDEP = "#pragma GCC ivdep"


def elementwise(em: CEmitter, op: Operation, template: str, operands: Sequence[SSAValue]) -> None:
    """One loop over the result; operands broadcast numpy-style."""
    out = shape(op.results[0])
    y, _, n = result(em, op)
    if all(shape(o) == out or numel(o) == 1 for o in operands):
        args = [f"{em.ref(o)}[{'i_' if shape(o) == out and n != 1 else '0'}]" for o in operands]
        em.line(IVDEP)
        em.line(f"for (int64_t i_ = 0; i_ < {n}; ++i_) {y}[i_] = {template.format(*args)};")
        return
    rank = len(out)
    loops = [f"i{d}_" for d in range(rank)]

    def index(dims: Sequence[int]) -> str:
        aligned = (1,) * (rank - len(dims)) + tuple(dims)
        terms = []
        for d, (extent, stride) in enumerate(zip(aligned, strides(aligned), strict=True)):
            if extent != 1:
                terms.append(loops[d] if stride == 1 else f"{loops[d]} * {stride}")
        return " + ".join(terms) or "0"

    for d, extent in enumerate(out):
        if d == rank - 1:
            em.line(IVDEP)
        em.line(f"for (int64_t {loops[d]} = 0; {loops[d]} < {extent}; ++{loops[d]})")
        em.depth += 1
    args = [f"{em.ref(o)}[{index(shape(o))}]" for o in operands]
    em.line(f"{y}[{index(out)}] = {template.format(*args)};")
    em.depth -= rank


def same(template: str) -> tuple[str, str]:
    return (template, template)


# Expression templates per op: (float template, integer template).
BINARY: dict[type[Operation], tuple[str, str]] = {
    ln.AddOp: ("{0} + {1}", "lanterna::wrap_add({0}, {1})"),
    ln.SubOp: ("{0} - {1}", "lanterna::wrap_sub({0}, {1})"),
    ln.MulOp: ("{0} * {1}", "lanterna::wrap_mul({0}, {1})"),
    ln.DivOp: ("{0} / {1}", "{0} / {1}"),
    ln.PowerOp: same("std::pow({0}, {1})"),  # floats only
    ln.MaximumOp: same("lanterna::maximum({0}, {1})"),
    ln.MinimumOp: same("lanterna::minimum({0}, {1})"),
    ln.LtOp: same("{0} < {1}"),
    ln.LeOp: same("{0} <= {1}"),
    ln.GtOp: same("{0} > {1}"),
    ln.GeOp: same("{0} >= {1}"),
    ln.EqOp: same("{0} == {1}"),
    ln.NeOp: same("{0} != {1}"),
}

UNARY: dict[type[Operation], tuple[str, str]] = {
    ln.NegOp: ("-{0}", "lanterna::wrap_neg({0})"),
    ln.AbsOp: same("lanterna::abs_of({0})"),
    ln.ExpOp: same("lanterna::exp({0})"),
    ln.LogOp: same("std::log({0})"),
    ln.TanhOp: same("lanterna::tanh({0})"),
    ln.SqrtOp: same("std::sqrt({0})"),
    ln.SigmoidOp: same("lanterna::sigmoid({0})"),
    ln.ReluOp: same("lanterna::relu({0})"),
}


def _pick(templates: tuple[str, str], op: Operation) -> str:
    return templates[0] if is_float(element(op.operands[0])) else templates[1]


def _binary(em: CEmitter, op: Operation) -> None:
    elementwise(em, op, _pick(BINARY[type(op)], op), list(op.operands))


def _unary(em: CEmitter, op: Operation) -> None:
    elementwise(em, op, _pick(UNARY[type(op)], op), list(op.operands))


def _pow(em: CEmitter, op: Operation) -> None:
    p = literal(em, get_float(op.properties, "exponent"), element(op.operands[0]))
    elementwise(em, op, f"std::pow({{0}}, {p})", list(op.operands))


def _select(em: CEmitter, op: Operation) -> None:
    elementwise(em, op, "{0} ? {1} : {2}", list(op.operands))


def _cast(em: CEmitter, op: Operation) -> None:
    c = em.scalar_type(element(op.results[0]))
    elementwise(em, op, f"static_cast<{c}>({{0}})", list(op.operands))


def _constant(em: CEmitter, op: Operation) -> None:
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


def fill_literal(em: CEmitter, op: Operation) -> str:
    """The C++ literal a fill op (`zeros`, `ones`, `full`) fills with."""
    if isinstance(op, ln.FullOp):
        value: float = get_float(op.properties, "value")
    else:
        value = 1.0 if isinstance(op, ln.OnesOp) else 0.0
    e = element(op.results[0])
    if is_float(e):
        return literal(em, value, e)
    if em.scalar_type(e) == "bool":
        return literal(em, value != 0, e)
    return literal(em, int(value), e)  # numpy truncates toward zero


def _fill(em: CEmitter, op: Operation) -> None:
    y, _, n = result(em, op)
    em.line(f"for (int64_t i_ = 0; i_ < {n}; ++i_) {y}[i_] = {fill_literal(em, op)};")


# --- fused elementwise ----------------------------------------------------------------------


def element_expr(em: CEmitter, op: Operation, args: Sequence[str]) -> str:
    """The C++ expression of one element of elementwise `op`, given its operands' elements."""
    kind = type(op)
    if kind in BINARY:
        return _pick(BINARY[kind], op).format(*args)
    if kind in UNARY:
        return _pick(UNARY[kind], op).format(*args)
    if isinstance(op, ln.PowOp):
        p = literal(em, get_float(op.properties, "exponent"), element(op.operands[0]))
        return f"std::pow({args[0]}, {p})"
    if isinstance(op, ln.SelectOp):
        return f"{args[0]} ? {args[1]} : {args[2]}"
    if isinstance(op, ln.CastOp):
        return f"static_cast<{em.scalar_type(element(op.results[0]))}>({args[0]})"
    if isinstance(op, ln.ZerosOp | ln.OnesOp | ln.FullOp):
        return fill_literal(em, op)
    if isinstance(op, ln.ConstantOp):
        value = op.properties["value"]
        assert isinstance(value, DenseIntOrFPElementsAttr)
        return literal(em, value.get_values()[0], element(op.results[0]))
    raise NotImplementedError(f"{em.backend} backend cannot fuse '{op.name}'")


def broadcast_index(loops: Sequence[str], dims: Sequence[int]) -> str:
    """The flat index into a row-major tensor of shape `dims` broadcast to the loop nest."""
    rank = len(loops)
    aligned = (1,) * (rank - len(dims)) + tuple(dims)
    terms = []
    for d, (extent, stride) in enumerate(zip(aligned, strides(aligned), strict=True)):
        if extent != 1:
            terms.append(loops[d] if stride == 1 else f"{loops[d]} * {stride}")
    return " + ".join(terms) or "0"


def _fused(em: CEmitter, op: Operation) -> None:
    """One loop nest over the result; the body computes one element in scalars."""
    assert isinstance(op, ln.FusedOp)
    out = shape(op.results[0])
    y, _, n = result(em, op)
    block = op.body.block
    if all(shape(o) == out or numel(o) == 1 for o in op.inputs):
        loops = ["i_"]
        index = {o: "i_" if shape(o) == out and n != 1 else "0" for o in op.inputs}
        out_index = "i_"
        headers = [f"for (int64_t i_ = 0; i_ < {n}; ++i_)"]
    else:
        loops = [f"i{d}_" for d in range(len(out))]
        index = {o: broadcast_index(loops, shape(o)) for o in op.inputs}
        out_index = broadcast_index(loops, out)
        headers = [f"for (int64_t {i} = 0; {i} < {d}; ++{i})" for i, d in zip(loops, out)]
    for header in headers[:-1]:
        em.line(header)
        em.depth += 1
    em.line(IVDEP)
    with em.scope(headers[-1] + " {"):
        for arg, o in zip(block.args, op.inputs, strict=True):
            if arg.uses:
                c = em.scalar_type(element(arg))
                em.line(f"const {c} {em.define(arg)} = {em.ref(o)}[{index[o]}];")
        for inner in block.ops:
            if isinstance(inner, ln.FusedYieldOp):
                em.line(f"{y}[{out_index}] = {em.ref(inner.value)};")
                break
            r = inner.results[0]
            if not r.uses:  # pure: nothing to compute
                continue
            expr = element_expr(em, inner, [em.ref(a) for a in inner.operands])
            c = em.scalar_type(element(r))
            em.line(f"const {c} {em.define(r)} = {expr};  // {inner.name}")
    em.depth -= len(headers) - 1


# --- reductions -----------------------------------------------------------------------------


def _reduce(em: CEmitter, op: Operation) -> None:
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


def _absorbed_transpose(v: SSAValue) -> SSAValue | None:
    """The source of `v` when `v` is a matrix transpose whose every user is a
    matrix-matrix `ln.matmul`: the product reads the source transposed (BLAS's
    trans flag) and the transpose is never materialized."""
    op = v.owner
    if not isinstance(op, ln.TransposeOp) or len(shape(v)) != 2:
        return None
    if list(get_ints(op.properties, "perm")) != [1, 0] or not v.uses:
        return None
    for use in _uses(v):
        user = use.operation
        if not isinstance(user, ln.MatmulOp) or any(len(shape(o)) != 2 for o in user.operands):
            return None
    return op.operands[0]


def _accumulating_user(op: Operation) -> Operation | None:
    """The `ad.accum` that is the only use of `op`'s result, when the product can
    be added into its cell right where `op` is: the accum comes later in the same
    block, the cell exists already, and nothing in between touches the cell."""
    (r,) = op.results
    use = _unique_use(r)
    if use is None:
        return None
    accum = use.operation
    block = op.parent_block()
    if (
        not isinstance(accum, ad.AccumOp)
        or accum.value is not r
        or accum.parent_block() is not block
    ):
        return None
    cell = accum.cell
    owner = cell.owner
    made_here = isinstance(owner, Operation) and owner.parent_block() is block
    if made_here and block.get_operation_index(owner) > block.get_operation_index(op):
        return None
    between = op.next_op
    while between is not None and between is not accum:
        if any(cell in inner.operands for inner in between.walk()):
            return None
        between = between.next_op
    return accum if between is accum else None


# Products of rank k into an m x n cell are logged and added in one product when
# the cell is read (the runtime's "deferred products") when the log of each is
# small next to the cell and the cell is too big to stay in the nearest caches:
# a weight used once per tree node or time step then gets its gradient in one
# pass instead of one read-modify-write per use.
DEFER_MIN_CELL = 1 << 14  # elements


def _defers(op: Operation) -> ad.AccumOp | None:
    """The accum of a matrix product `op` whose addition into the cell is logged."""
    sa, sb = shape(op.operands[0]), shape(op.operands[1])
    if not len(sa) == len(sb) == 2:
        return None
    m, k, n = sa[0], sa[1], sb[1]
    if m * n < DEFER_MIN_CELL or 8 * k * (m + n) > m * n:
        return None
    return _accumulating_user(op)


def _deferred(em: CEmitter) -> dict[Operation, ad.AccumOp]:
    """The module's matrix products whose addition into a cell is logged, with
    their accums (found once per module)."""
    found = em.facts.get("deferred")
    if found is None:
        found = em.facts["deferred"] = {
            op: accum
            for op in em.module.walk()
            if isinstance(op, ln.MatmulOp) and (accum := _defers(op)) is not None
        }
    return found


def deferred_cells(em: CEmitter) -> set[Attribute]:
    """The cell types some product is logged for: a load of such a cell adds the
    log in first, and a new cell of such a type drops a dead cell's log."""
    cells = em.facts.get("deferred_cells")
    if cells is None:
        cells = em.facts["deferred_cells"] = {a.cell.type for a in _deferred(em).values()}
    return cells


def _matmul(em: CEmitter, op: Operation) -> None:
    a, b = op.operands
    sa, sb = shape(a), shape(b)
    if len(sa) == len(sb) == 2:
        m, k, n = sa[0], sa[1], sb[1]
        ta, tb = _absorbed_transpose(a), _absorbed_transpose(b)
        lhs, lda = (ta, m) if ta is not None else (a, k)
        rhs, ldb = (tb, k) if tb is not None else (b, n)
        deferred = _deferred(em).get(op)
        if deferred is not None:
            em.define(op.results[0])
            em.done.add(deferred)
            em.line(
                f"lanterna::defer_product({em.ref(deferred.cell)}, "
                f"{str(ta is not None).lower()}, {str(tb is not None).lower()}, {m}, {n}, {k}, "
                f"{em.ref(lhs)}, {lda}, {em.ref(rhs)}, {ldb});"
            )
            return
        accum = _accumulating_user(op)
        if accum is not None:
            # C += A @ B straight into the cell: no product buffer, no second pass.
            em.define(op.results[0])
            em.done.add(accum)
            y, beta = em.ref(accum.operands[0]), 1
        else:
            y, _, _ = result(em, op)
            beta = 0
        em.line(
            f"lanterna::gemm({str(ta is not None).lower()}, {str(tb is not None).lower()}, "
            f"{m}, {n}, {k}, {em.ref(lhs)}, {lda}, {em.ref(rhs)}, {ldb}, {y}, {n}, {beta});"
        )
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


# --- data movement --------------------------------------------------------------------------


def copy_strided(
    em: CEmitter,
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


def _reshape(em: CEmitter, op: Operation) -> None:
    # Values are immutable, so a reshape shares its operand's buffer.
    alias(em, op, op.operands[0])


def _transpose(em: CEmitter, op: Operation) -> None:
    x = op.operands[0]
    perm = get_ints(op.properties, "perm")
    if list(perm) == sorted(perm):
        alias(em, op, x)
        return
    if _absorbed_transpose(op.results[0]) is not None:
        # Its products read `x` transposed; `x` lives as long as they do.
        em.define(op.results[0])
        em.aliases(op.results[0], x)
        return
    y, c, _ = result(em, op)
    out = shape(op.results[0])
    xs = strides(shape(x))
    copy_strided(em, c, y, strides(out), 0, em.ref(x), [xs[p] for p in perm], 0, out)


def _broadcast_to(em: CEmitter, op: Operation) -> None:
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


def _slice(em: CEmitter, op: Operation) -> None:
    x = op.operands[0]
    start, step = get_ints(op.properties, "start"), get_ints(op.properties, "step")
    out = shape(op.results[0])
    xs = strides(shape(x))
    y, c, _ = result(em, op)
    offset = sum(a * s for a, s in zip(start, xs, strict=True))
    src_strides = [s * k for s, k in zip(xs, step, strict=True)]
    copy_strided(em, c, y, strides(out), 0, em.ref(x), src_strides, offset, out)


def _is_zeros(v: SSAValue) -> bool:
    op = v.owner
    if isinstance(op, ln.ZerosOp):
        return True
    if isinstance(op, ln.FullOp):
        return get_float(op.properties, "value") == 0.0
    return False


def _accumulated_concat(v: SSAValue) -> ad.AccumOp | None:
    """The `ad.accum` of `v` when `v` is a concatenation with zero pieces (what a
    slice's adjoint makes) used by that accum only: the accum adds the nonzero
    pieces into their ranges of the cell and the concatenation is never built."""
    op = v.owner
    if not isinstance(op, ln.ConcatenateOp) or not any(_is_zeros(x) for x in op.operands):
        return None
    use = _unique_use(v)
    if use is None or not isinstance(use.operation, ad.AccumOp) or use.index != 1:
        return None
    if not is_float(element(v)):
        return None
    return use.operation


def _accum_pieces(em: CEmitter, op: Operation, concat: Operation) -> None:
    """`cell += concatenate(pieces)`, piece by piece, skipping the zero ones."""
    cell = em.ref(op.operands[0])
    axis = get_int(concat.properties, "axis")
    out = shape(concat.results[0])
    outer, inner = math.prod(out[:axis]), math.prod(out[axis + 1 :])
    offset = 0
    for x in concat.operands:
        width = shape(x)[axis]
        if not _is_zeros(x):
            run = width * inner
            em.line(
                f"for (int64_t o_ = 0; o_ < {outer}; ++o_) for (int64_t i_ = 0; i_ < {run}; ++i_) "
                f"{cell}[o_ * {out[axis] * inner} + {offset * inner} + i_] += "
                f"{em.ref(x)}[o_ * {run} + i_];"
            )
        offset += width


def _concatenate(em: CEmitter, op: Operation) -> None:
    if _accumulated_concat(op.results[0]) is not None:
        # Added piece by piece where it is accumulated; its pieces live until then.
        em.define(op.results[0])
        for x in op.operands:
            em.aliases(op.results[0], x)
        return
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


def _gather(em: CEmitter, op: Operation) -> None:
    table, indices = op.operands
    rows, *rest = shape(table)
    y, _, _ = result(em, op)
    em.line(
        f"lanterna::gather({em.ref(table)}, {em.ref(indices)}, {y}, {numel(indices)}, {rows}, "
        f"{math.prod(rest)}, {origin(op)});"
    )


def _scatter_add(em: CEmitter, op: Operation) -> None:
    updates, indices = op.operands
    rows, *rest = shape(op.results[0])
    y, _, _ = result(em, op)
    em.line(
        f"lanterna::scatter_add({em.ref(updates)}, {em.ref(indices)}, {y}, {numel(indices)}, "
        f"{rows}, {math.prod(rest)}, {origin(op)});"
    )


def _item(em: CEmitter, op: Operation) -> None:
    r = op.results[0]
    em.line(f"{em.ctype(r.type)} {em.define(r)} = {em.ref(op.operands[0])}[0];")


def _from_scalar(em: CEmitter, op: Operation) -> None:
    y, _, _ = result(em, op)
    em.line(f"{y}[0] = {em.ref(op.operands[0])};")


# --- nn -------------------------------------------------------------------------------------


def _softmax(em: CEmitter, op: Operation) -> None:
    x = op.operands[0]
    axis = get_int(op.properties, "axis")
    dims = shape(x)
    y, _, _ = result(em, op)
    log = "true" if isinstance(op, ln.LogSoftmaxOp) else "false"
    em.line(
        f"lanterna::softmax({em.ref(x)}, {y}, {math.prod(dims[:axis])}, {dims[axis]}, "
        f"{math.prod(dims[axis + 1 :])}, {log});"
    )


def _loss(em: CEmitter, op: Operation) -> None:
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


def _conv2d(em: CEmitter, op: Operation) -> None:
    x, w = op.operands
    o, _, kh, kw = shape(w)
    stride, padding = get_ints(op.properties, "stride"), get_ints(op.properties, "padding")
    y, _, _ = result(em, op)
    em.line(
        f"lanterna::conv2d({em.ref(x)}, {em.ref(w)}, {y}, {window(x, (kh, kw), stride, padding)}, {o});"
    )


def _conv2d_input_grad(em: CEmitter, op: Operation) -> None:
    g, w = op.operands
    o, _, kh, kw = shape(w)
    stride, padding = get_ints(op.properties, "stride"), get_ints(op.properties, "padding")
    win = window(op.results[0], (kh, kw), stride, padding)
    y, _, _ = result(em, op)
    em.line(f"lanterna::conv2d_input_grad({em.ref(g)}, {em.ref(w)}, {y}, {win}, {o});")


def _conv2d_weight_grad(em: CEmitter, op: Operation) -> None:
    x, g = op.operands
    o, _, kh, kw = shape(op.results[0])
    stride, padding = get_ints(op.properties, "stride"), get_ints(op.properties, "padding")
    y, _, _ = result(em, op)
    em.line(
        f"lanterna::conv2d_weight_grad({em.ref(x)}, {em.ref(g)}, {y}, "
        f"{window(x, (kh, kw), stride, padding)}, {o});"
    )


def _pool(em: CEmitter, op: Operation) -> None:
    x = op.operands[0]
    props = [get_ints(op.properties, k) for k in ("kernel", "stride", "padding")]
    y, _, _ = result(em, op)
    kernel = {ln.MaxPool2dOp: "max_pool2d", ln.AvgPool2dOp: "avg_pool2d"}[type(op)]
    em.line(f"lanterna::{kernel}({em.ref(x)}, {y}, {window(x, *props)});")


def _max_pool2d_grad(em: CEmitter, op: Operation) -> None:
    x, g = op.operands
    props = [get_ints(op.properties, k) for k in ("kernel", "stride", "padding")]
    y, _, _ = result(em, op)
    em.line(f"lanterna::max_pool2d_grad({em.ref(x)}, {em.ref(g)}, {y}, {window(x, *props)});")


def _dropout(em: CEmitter, op: Operation) -> None:
    x, seed = op.operands
    rate = repr(get_float(op.properties, "rate"))
    y, _, n = result(em, op)
    em.line(f"lanterna::dropout({em.ref(x)}, {em.ref(seed)}[0], {y}, {n}, {rate});")


# --- adjoint cells --------------------------------------------------------------------------


def _zero_like(em: CEmitter, op: Operation) -> None:
    r = op.results[0]
    c = em.scalar_type(element(r))
    em.line(f"{c}* {em.define(r)} = lanterna::zeros<{c}>({numel(r)});")
    _new_cell(em, r)


def _new_cell(em: CEmitter, cell: SSAValue) -> None:
    if cell.type in deferred_cells(em):
        em.line(f"lanterna::drop_products({em.ref(cell)});")


def _new_stack(em: CEmitter, op: Operation) -> None:
    r = op.results[0]
    em.line(f"{em.ctype(r.type)} {em.define(r)} = lanterna::new_stack<{em.ctype(r.type.elem)}>();")


def _push(em: CEmitter, op: Operation) -> None:
    em.line(f"{em.ref(op.operands[0])}->push_back({em.ref(op.operands[1])});")


def _pop(em: CEmitter, op: Operation) -> None:
    r = op.results[0]
    em.line(f"{em.ctype(r.type)} {em.define(r)} = lanterna::pop({em.ref(op.operands[0])});")


def _accum(em: CEmitter, op: Operation) -> None:
    if op in em.done:
        return  # added in by the op that made the value (a matmul)
    cell, g = op.operands
    if _accumulated_concat(g) is op:
        _accum_pieces(em, op, g.owner)
        return
    cell_name, g_name = em.ref(cell), em.ref(g)
    add = "{0} + {1}" if is_float(element(g)) else "lanterna::wrap_add({0}, {1})"
    em.line(IVDEP)
    em.line(
        f"for (int64_t i_ = 0; i_ < {numel(g)}; ++i_) {cell_name}[i_] = "
        f"{add.format(f'{cell_name}[i_]', f'{g_name}[i_]')};"
    )


def _load(em: CEmitter, op: Operation) -> None:
    if op.operands[0].type in deferred_cells(em):
        em.line(f"lanterna::flush_products({em.ref(op.operands[0])});")
    # A snapshot: later accumulations must not change the loaded value.
    _copy(em, op, op.operands[0])


def _cell_from(em: CEmitter, op: Operation) -> None:
    # A fresh buffer: accumulations into the cell must not change the operand.
    _copy(em, op, op.operands[0])
    _new_cell(em, op.results[0])


def _copy(em: CEmitter, op: Operation, src: SSAValue) -> None:
    y, _, n = result(em, op)
    em.line(IVDEP)
    em.line(f"for (int64_t i_ = 0; i_ < {n}; ++i_) {y}[i_] = {em.ref(src)}[i_];")


# --- buffers (placed by plan-buffers) -------------------------------------------------------


def _take_cell(em: CEmitter, op: Operation) -> None:
    """The cell is the value's buffer, which nothing else sees any more."""
    r = op.results[0]
    em.line(
        f"{em.ctype(r.type)} {em.define(r)} = const_cast<{em.ctype(r.type)}>({em.ref(op.operands[0])});"
    )
    _new_cell(em, r)


def _take_load(em: CEmitter, op: Operation) -> None:
    """The cell's last use: its buffer becomes the value, no copy."""
    if op.operands[0].type in deferred_cells(em):
        em.line(f"lanterna::flush_products({em.ref(op.operands[0])});")
    alias(em, op, op.operands[0])


def _release(em: CEmitter, op: Operation) -> None:
    """The arena hands the buffer to the next request of its size."""
    v = op.operands[0]
    if v in em.borrowed:
        # Interim: a value without a buffer (see `CEmitter.aliases`); the releases
        # of the buffers it read were waiting for it.
        for src in map(_viewed, em.borrowed.pop(v)):
            waiting = em.waiting.get(src)
            if waiting is not None:
                waiting.discard(v)
                if not waiting:
                    del em.waiting[src]
                    _print_release(em, src)
        return
    if isinstance(v.owner, ln.MatmulOp) and any(u.operation in em.done for u in v.uses):
        return  # interim: a product added straight into its cell has no buffer
    borrowers = {b for b, sources in em.borrowed.items() if v in map(_viewed, sources)}
    if borrowers:
        em.waiting[v] = borrowers
        return
    _print_release(em, v)


def _viewed(v: SSAValue) -> SSAValue:
    """The value whose buffer `v` is, through views (`buf.storage`)."""
    while isinstance(v.owner, Operation) and buf.storage(v.owner) is buf.Storage.VIEW:
        v = v.owner.operands[0]
    return v


def _print_release(em: CEmitter, v: SSAValue) -> None:
    nbytes = numel(v) * to_numpy_dtype(element(v)).itemsize
    em.line(f"lanterna::release({em.ref(v)}, {nbytes});")


# --- arith ----------------------------------------------------------------------------------


def _scalar(em: CEmitter, op: Operation, expr: str) -> None:
    r = op.results[0]
    em.line(f"{em.ctype(r.type)} {em.define(r)} = {expr};")


def _arith_template(template: str) -> Lowering:
    def lower(em: CEmitter, op: Operation) -> None:
        _scalar(
            em,
            op,
            template.format(*(em.ref(o) for o in op.operands), t=em.ctype(op.results[0].type)),
        )

    return lower


def _arith_int_or_float(int_template: str, float_template: str) -> Lowering:
    def lower(em: CEmitter, op: Operation) -> None:
        t = op.results[0].type
        template = float_template if is_float(t) else int_template
        _scalar(em, op, template.format(*(em.ref(o) for o in op.operands), t=em.ctype(t)))

    return lower


def _arith_constant(em: CEmitter, op: Operation) -> None:
    value = op.properties["value"]
    t = op.results[0].type
    if isinstance(value, DenseIntOrFPElementsAttr):
        _constant(em, op)
        return
    assert isinstance(value, IntegerAttr | FloatAttr)
    _scalar(em, op, literal(em, value.value.data, t))


_CMPI = {
    0: "{0} == {1}",
    1: "{0} != {1}",
    2: "{0} < {1}",
    3: "{0} <= {1}",
    4: "{0} > {1}",
    5: "{0} >= {1}",
}
_CMPF = {
    0: "false",
    1: "{0} == {1}",
    2: "{0} > {1}",
    3: "{0} >= {1}",
    4: "{0} < {1}",
    5: "{0} <= {1}",
    6: "({0} < {1} || {0} > {1})",
    7: "!(std::isnan({0}) || std::isnan({1}))",
    8: "!({0} < {1} || {0} > {1})",
    9: "!({0} <= {1})",
    10: "!({0} < {1})",
    11: "!({0} >= {1})",
    12: "!({0} > {1})",
    13: "!({0} == {1})",
    14: "(std::isnan({0}) || std::isnan({1}))",
    15: "true",
}


def _cmp(em: CEmitter, op: Operation) -> None:
    pred = op.properties["predicate"]
    assert isinstance(pred, IntegerAttr)
    table = _CMPF if isinstance(op, arith.CmpfOp) else _CMPI
    if pred.value.data not in table:
        raise NotImplementedError(
            f"cpu backend has no lowering for '{op.name}' predicate {pred.value.data}"
        )
    _scalar(em, op, table[pred.value.data].format(*(em.ref(o) for o in op.operands)))


_CAST = "static_cast<{t}>({0})"

ARITH_OPS: dict[type[Operation], Lowering] = {
    arith.ConstantOp: _arith_constant,
    arith.AddiOp: _arith_template("lanterna::wrap_add({0}, {1})"),
    arith.SubiOp: _arith_template("lanterna::wrap_sub({0}, {1})"),
    arith.MuliOp: _arith_template("lanterna::wrap_mul({0}, {1})"),
    arith.DivSIOp: _arith_template("lanterna::div_trunc({0}, {1})"),
    arith.RemSIOp: _arith_template("lanterna::rem_trunc({0}, {1})"),
    arith.FloorDivSIOp: _arith_template("lanterna::div_floor({0}, {1})"),
    arith.MaxSIOp: _arith_template("std::max({0}, {1})"),
    arith.MinSIOp: _arith_template("std::min({0}, {1})"),
    arith.AndIOp: _arith_template("static_cast<{t}>({0} & {1})"),
    arith.OrIOp: _arith_template("static_cast<{t}>({0} | {1})"),
    arith.XOrIOp: _arith_template("static_cast<{t}>({0} ^ {1})"),
    arith.AddfOp: _arith_template("{0} + {1}"),
    arith.SubfOp: _arith_template("{0} - {1}"),
    arith.MulfOp: _arith_template("{0} * {1}"),
    arith.DivfOp: _arith_template("{0} / {1}"),
    arith.NegfOp: _arith_template("-{0}"),
    arith.MaximumfOp: _arith_template("lanterna::maximum({0}, {1})"),
    arith.MinimumfOp: _arith_template("lanterna::minimum({0}, {1})"),
    arith.CmpiOp: _cmp,
    arith.CmpfOp: _cmp,
    arith.SelectOp: _arith_template("{0} ? {1} : {2}"),
    arith.IndexCastOp: _arith_template(_CAST),
    arith.SIToFPOp: _arith_template(_CAST),
    arith.FPToSIOp: _arith_template(_CAST),
    arith.ExtFOp: _arith_template(_CAST),
    arith.TruncFOp: _arith_template(_CAST),
    arith.ExtSIOp: _arith_template(_CAST),
    arith.TruncIOp: _arith_template(_CAST),
}

# --- the table ------------------------------------------------------------------------------

LN_TABLE: dict[type[Operation], Lowering] = {
    **{op: _binary for op in BINARY},
    **{op: _unary for op in UNARY},
    ln.PowOp: _pow,
    ln.SelectOp: _select,
    ln.CastOp: _cast,
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
    ln.FusedOp: _fused,
}

AD_TABLE: dict[type[Operation], Lowering] = {
    ad.ZeroLikeOp: _zero_like,
    ad.AccumOp: _accum,
    ad.LoadOp: _load,
}

CPU_OPS: dict[type[Operation], Lowering] = {
    **LN_TABLE,
    **AD_TABLE,
    **ARITH_OPS,
    ad.CellFromOp: _cell_from,
    ad.ZeroCellOp: _zero_like,  # a zero buffer either way
    ad.StackOp: _new_stack,
    ad.PushOp: _push,
    ad.PopOp: _pop,
    buf.ReleaseOp: _release,
    buf.TakeCellOp: _take_cell,
    buf.TakeLoadOp: _take_load,
}
