"""`ln` data movement: reshape, transpose, broadcast, concatenate, slice,
gather/scatter-add, and the bridges between rank-0 tensors and scalars.

None of these ops computes new values except `ln.scatter_add`, which adds.
Every `evaluate` here returns a fresh array, never a view of an input, so the
interpreter may update results in place (adjoint cells do).

    %y = ln.reshape %x : tensor<2x3xf32> -> tensor<6xf32>
    %e = ln.gather %table, %ids : tensor<100x16xf32>, tensor<4x7xi64>   // tensor<4x7x16xf32>
    %s = ln.item %loss : tensor<f32>                                    // f32

Their adjoints are data movement too, exact in any precision: the inverse
reshape or permutation, a sum over broadcast dimensions, slices of the adjoint
for a concatenation, zeros around (and between) the entries of a slice,
scatter-add for gather and gather for scatter-add. Index operands carry no
adjoint.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, cast

import numpy as np
from xdsl.dialects.builtin import DenseArrayBase, IntegerAttr, TensorType
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    irdl_op_definition,
    operand_def,
    prop_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

from lanterna.ir.ln.adjoint import AdjointBuilder
from lanterna.ir.ln.base import (
    LnOp,
    Props,
    get_int,
    get_ints,
    index_error,
    int_prop,
    ints_prop,
    normalize_axis,
    want_arity,
    want_given,
)
from lanterna.ir.ln.elementwise import ZerosOp
from lanterna.ir.types import (
    ELEMENT_TYPES,
    broadcast_shapes,
    elt,
    expect_tensor,
    format_shape,
    is_bool,
    is_int,
    shape_of,
    tensor,
    to_numpy_dtype,
)

TypeOrShape = Attribute | Sequence[int]


def _result_type(x: SSAValue, result_type: TypeOrShape) -> Attribute:
    """A result type given as a type, or as a shape keeping the operand's element type."""
    if isinstance(result_type, Attribute):
        return result_type
    return tensor(result_type, elt(x.type))


def check_indices(
    op: Operation, indices: np.ndarray, size: int, what: str, *, wrap: bool = True
) -> np.ndarray:
    """`indices` into an extent of `size`, negative ones counted from the end as
    numpy counts them (`wrap`), or raise LanternaIndexError naming the user's line,
    the op and the first index outside [-size, size) (outside [0, size) without
    `wrap`); `what` names the extent, e.g. "a table of 5 rows"."""
    low = -size if wrap else 0
    bad = (indices < low) | (indices >= size)
    if np.any(bad):
        first = int(indices[bad].flat[0])
        raise index_error(op, f"index {first} is out of range for {what}")
    if wrap and indices.size and indices.min() < 0:
        return np.where(indices < 0, indices + size, indices)
    return indices


# --- reshape, transpose, broadcast ------------------------------------------------------------


@irdl_op_definition
class ReshapeOp(LnOp):
    """The same elements in row-major order under a new static shape.

    %y = ln.reshape %x : tensor<2x3xf32> -> tensor<3x2xf32>
    """

    name = "ln.reshape"
    RESULT_IN_SYNTAX: ClassVar[bool] = True
    x = operand_def(TensorType)

    def __init__(self, x: SSAValue | IRDLOperation, result_type: TypeOrShape):
        value = SSAValue.get(x)
        super().__init__(value, result_type=_result_type(value, result_type))

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        want_arity(cls.name, operand_types, 1)
        rt = want_given(cls.name, result_type)
        (t,) = operand_types
        if elt(rt) != elt(t):
            raise VerifyException(
                f"'{cls.name}': result element type {elt(rt)} differs from operand {t}"
            )
        n_in, n_out = math.prod(shape_of(t)), math.prod(shape_of(rt))
        if n_in != n_out:
            raise VerifyException(
                f"'{cls.name}': operand {t} has {n_in} elements but result {rt} has {n_out}"
            )
        return rt

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(shape_of(self.result.type)).copy()

    def adjoint(self, ab: AdjointBuilder) -> None:
        ab.accum(0, ab.emit(ReshapeOp(ab.grad, ab.operands[0].type)))


@irdl_op_definition
class TransposeOp(LnOp):
    """Permute dimensions: result dimension i is operand dimension perm[i].

    %y = ln.transpose %x {perm = array<i64: 2, 0, 1>} : tensor<2x3x4xf32>  // tensor<4x2x3xf32>
    """

    name = "ln.transpose"
    x = operand_def(TensorType)
    perm = prop_def(DenseArrayBase)

    def __init__(self, x: SSAValue | IRDLOperation, perm: Sequence[int] | None = None):
        """`perm=None` reverses the dimensions, as numpy's `transpose` does."""
        value = SSAValue.get(x)
        if perm is None:
            rank = len(shape_of(expect_tensor(self.name, "operand", value.type)))
            perm = tuple(reversed(range(rank)))
        super().__init__(value, perm=ints_prop(perm))

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        want_arity(cls.name, operand_types, 1)
        (t,) = operand_types
        shape = shape_of(t)
        perm = get_ints(props, "perm")
        if sorted(perm) != list(range(len(shape))):
            raise VerifyException(
                f"'{cls.name}': perm {format_shape(perm)} is not a permutation of the "
                f"{len(shape)} dimensions of {t}"
            )
        return tensor([shape[p] for p in perm], elt(t))

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        return np.transpose(x, get_ints(self.properties, "perm")).copy()

    def adjoint(self, ab: AdjointBuilder) -> None:
        perm = get_ints(self.properties, "perm")
        inverse = [0] * len(perm)
        for i, p in enumerate(perm):
            inverse[p] = i
        ab.accum(0, ab.emit(TransposeOp(ab.grad, inverse)))


@irdl_op_definition
class BroadcastToOp(LnOp):
    """Broadcast to a result shape by numpy's rules (align right, stretch 1s, add
    leading dimensions).

        %y = ln.broadcast_to %x : tensor<3xf32> -> tensor<2x3xf32>
    """

    name = "ln.broadcast_to"
    RESULT_IN_SYNTAX: ClassVar[bool] = True
    x = operand_def(TensorType)

    def __init__(self, x: SSAValue | IRDLOperation, result_type: TypeOrShape):
        value = SSAValue.get(x)
        super().__init__(value, result_type=_result_type(value, result_type))

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        want_arity(cls.name, operand_types, 1)
        rt = want_given(cls.name, result_type)
        (t,) = operand_types
        if elt(rt) != elt(t):
            raise VerifyException(
                f"'{cls.name}': result element type {elt(rt)} differs from operand {t}"
            )
        src, dst = shape_of(t), shape_of(rt)
        if len(src) > len(dst) or broadcast_shapes(src, dst) != dst:
            raise VerifyException(f"'{cls.name}': operand {t} does not broadcast to {rt}")
        return rt

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        return np.broadcast_to(x, shape_of(self.result.type)).copy()

    def adjoint(self, ab: AdjointBuilder) -> None:
        # `accum` sums over the broadcast dimensions.
        ab.accum(0, ab.grad)


# --- concatenate and slice ----------------------------------------------------------------


@irdl_op_definition
class ConcatenateOp(LnOp):
    """Join tensors of equal rank (>= 1) along `axis`; other dimensions must agree.

    %y = ln.concatenate %a, %b {axis = 1 : i64} : tensor<2x3xf32>, tensor<2x5xf32>
    // tensor<2x8xf32>
    """

    name = "ln.concatenate"
    inputs = var_operand_def(TensorType)
    axis = prop_def(IntegerAttr)

    def __init__(self, *xs: SSAValue | IRDLOperation, axis: int = 0):
        values = [SSAValue.get(x) for x in xs]
        if not values:
            raise VerifyException(f"'{self.name}' needs at least one operand")
        rank = len(shape_of(expect_tensor(self.name, "operand #0", values[0].type)))
        if rank == 0:
            raise VerifyException(f"'{self.name}': operands must have rank >= 1")
        props: dict[str, Attribute] = {"axis": int_prop(normalize_axis(self.name, axis, rank))}
        rt = self.infer_type([v.type for v in values], props, None)
        # IRDL construction takes the variadic group as one list.
        IRDLOperation.__init__(self, operands=[values], result_types=[rt], properties=props)

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        if not operand_types:
            raise VerifyException(f"'{cls.name}' needs at least one operand")
        first = operand_types[0]
        shape = list(shape_of(first))
        axis = get_int(props, "axis")
        if not 0 <= axis < len(shape):
            raise VerifyException(
                f"'{cls.name}': axis {axis} must be in [0, {len(shape)}) for operand #0 {first}"
            )
        for i, t in enumerate(operand_types[1:], start=1):
            if elt(t) != elt(first):
                raise VerifyException(
                    f"'{cls.name}': operand #{i} {t} has a different element type than "
                    f"operand #0 {first}"
                )
            s = shape_of(t)
            if len(s) != len(shape) or any(
                d != e for j, (d, e) in enumerate(zip(s, shape_of(first), strict=True)) if j != axis
            ):
                raise VerifyException(
                    f"'{cls.name}': operand #{i} {t} does not match operand #0 {first} "
                    f"outside axis {axis}"
                )
            shape[axis] += s[axis]
        return tensor(shape, elt(first))

    def evaluate(self, *xs: np.ndarray) -> np.ndarray:
        return np.concatenate(xs, axis=get_int(self.properties, "axis"))

    def adjoint(self, ab: AdjointBuilder) -> None:
        axis = get_int(self.properties, "axis")
        shape = shape_of(ab.grad.type)
        offset = 0
        for i, x in enumerate(ab.operands):
            extent = shape_of(x.type)[axis]
            if ab.wants(i):
                start = [offset if d == axis else 0 for d in range(len(shape))]
                stop = [offset + extent if d == axis else n for d, n in enumerate(shape)]
                ab.accum(i, ab.emit(SliceOp(ab.grad, start, stop)))
            offset += extent


@irdl_op_definition
class SliceOp(LnOp):
    """A static strided slice `x[start0:stop0:step0, start1:stop1:step1, ...]`.

    One entry per dimension; steps are positive and 0 <= start <= stop <= dim.

        %y = ln.slice %x {start = array<i64: 0, 1>, stop = array<i64: 4, 3>,
                          step = array<i64: 2, 1>} : tensor<4x3xf32>       // tensor<2x2xf32>
    """

    name = "ln.slice"
    x = operand_def(TensorType)
    start = prop_def(DenseArrayBase)
    stop = prop_def(DenseArrayBase)
    step = prop_def(DenseArrayBase)

    def __init__(
        self,
        x: SSAValue | IRDLOperation,
        start: Sequence[int],
        stop: Sequence[int],
        step: Sequence[int] | None = None,
    ):
        """`step=None` means a step of 1 in every dimension."""
        if step is None:
            step = [1] * len(start)
        super().__init__(x, start=ints_prop(start), stop=ints_prop(stop), step=ints_prop(step))

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        want_arity(cls.name, operand_types, 1)
        (t,) = operand_types
        shape = shape_of(t)
        start, stop, step = (get_ints(props, k) for k in ("start", "stop", "step"))
        for k, v in (("start", start), ("stop", stop), ("step", step)):
            if len(v) != len(shape):
                raise VerifyException(
                    f"'{cls.name}': {k} {format_shape(v)} needs one entry per dimension of {t}"
                )
        out = []
        for i, (a, b, s, d) in enumerate(zip(start, stop, step, shape, strict=True)):
            if s <= 0:
                raise VerifyException(f"'{cls.name}': step {s} in dimension {i} is not positive")
            if not 0 <= a <= b <= d:
                raise VerifyException(
                    f"'{cls.name}': range [{a}, {b}) in dimension {i} is not within [0, {d}] "
                    f"of {t} (need 0 <= start <= stop <= dim)"
                )
            out.append(len(range(a, b, s)))
        return tensor(out, elt(t))

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        start, stop, step = (get_ints(self.properties, k) for k in ("start", "stop", "step"))
        index = tuple(slice(a, b, s) for a, b, s in zip(start, stop, step, strict=True))
        # np.array, not .copy(): indexing a rank-0 array yields a numpy scalar.
        return np.array(x[index])

    def adjoint(self, ab: AdjointBuilder) -> None:
        g = ab.grad
        if 0 in shape_of(g.type):
            return  # an empty slice contributes nothing
        start, step = get_ints(self.properties, "start"), get_ints(self.properties, "step")
        for axis, size in enumerate(shape_of(ab.operands[0].type)):
            g = scatter_strided(ab, g, axis, size, start[axis], step[axis])
        ab.accum(0, g)


def scatter_strided(
    ab: AdjointBuilder, v: SSAValue, axis: int, size: int, start: int, step: int
) -> SSAValue:
    """`v` widened to `size` along `axis`: its entries land at start, start + step,
    ... and zeros fill the rest (the adjoint of a strided slice along one axis).

    Built from reshape, concatenate and slice only, so it is exact and every
    piece has an adjoint of its own: for step > 1, each entry gets step - 1 zeros
    appended (a new axis of length `step`, flattened), then the result is cut to
    fit and padded with zeros before and after.
    """
    shape = shape_of(v.type)
    n = shape[axis]
    if start == 0 and n == size:
        return v  # covers the whole axis; step is irrelevant when nothing is skipped
    e = elt(v.type)

    def zeros(extent: int) -> SSAValue:
        return ab.emit(ZerosOp(result_type=tensor((*shape[:axis], extent, *shape[axis + 1 :]), e)))

    if n == 0:
        return zeros(size)
    if step > 1 and n > 1:
        split = (*shape[: axis + 1], 1, *shape[axis + 1 :])
        gaps = tensor((*shape[: axis + 1], step - 1, *shape[axis + 1 :]), e)
        padded = (ab.emit(ReshapeOp(v, split)), ab.emit(ZerosOp(result_type=gaps)))
        spread = ab.emit(ConcatenateOp(*padded, axis=axis + 1))
        v = ab.emit(ReshapeOp(spread, (*shape[:axis], n * step, *shape[axis + 1 :])))
        # The last entry sits at start + (n - 1) * step < size; its trailing zeros may not fit.
        keep = min(n * step, size - start)
        if keep < n * step:
            lo = [0] * len(shape)
            hi = [keep if d == axis else x for d, x in enumerate(shape_of(v.type))]
            v = ab.emit(SliceOp(v, lo, hi))
    after = size - start - shape_of(v.type)[axis]
    pieces = [*([zeros(start)] if start else []), v, *([zeros(after)] if after else [])]
    return ab.emit(ConcatenateOp(*pieces, axis=axis)) if len(pieces) > 1 else v


# --- gather and scatter-add ---------------------------------------------------------------


def _check_index_type(op_name: str, t: Attribute) -> None:
    if not is_int(elt(t)):
        raise VerifyException(
            f"'{op_name}': indices {t} must have element type i32 or i64, got {elt(t)}"
        )


@irdl_op_definition
class GatherOp(LnOp):
    """Rows of `table` selected by an integer index array of any shape:
    `result[j...] = table[indices[j...]]`, so the result shape is
    `indices.shape + table.shape[1:]` (an embedding lookup).

        %e = ln.gather %table, %ids : tensor<10x4xf32>, tensor<2x3xi64>  // tensor<2x3x4xf32>

    Negative indices count from the end, as in numpy; one outside [-rows, rows)
    raises LanternaIndexError when the op runs.
    """

    name = "ln.gather"
    CHECKS_INDICES: ClassVar[bool] = True
    table = operand_def(TensorType)
    indices = operand_def(TensorType)

    def __init__(self, table: SSAValue | IRDLOperation, indices: SSAValue | IRDLOperation):
        super().__init__(table, indices)

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        want_arity(cls.name, operand_types, 2)
        table, indices = operand_types
        if not shape_of(table):
            raise VerifyException(f"'{cls.name}': table {table} must have rank >= 1")
        _check_index_type(cls.name, indices)
        return tensor(shape_of(indices) + shape_of(table)[1:], elt(table))

    def evaluate(self, table: np.ndarray, indices: np.ndarray) -> np.ndarray:
        n = table.shape[0]
        return table[check_indices(self, indices, n, f"a table of {n} rows")]

    def adjoint(self, ab: AdjointBuilder) -> None:
        # Rows looked up more than once receive the sum of their adjoints. The
        # scatter reads the same indices, so an index error there is this op's line.
        table, indices = ab.operands
        scatter = ScatterAddOp(ab.grad, indices, table.type)
        scatter.location = self.location
        ab.accum(0, ab.emit(scatter))


@irdl_op_definition
class ScatterAddOp(LnOp):
    """The dual of `ln.gather`: start from zeros of the result type and add row
    `updates[j...]` into `result[indices[j...]]`; repeated indices accumulate.
    `updates.shape` must be `indices.shape + result.shape[1:]`.

        %g = ln.scatter_add %d, %ids : tensor<2x3x4xf32>, tensor<2x3xi64> -> tensor<10x4xf32>

    Negative indices count from the end, as in numpy; one outside [-rows, rows)
    raises LanternaIndexError when the op runs.
    """

    name = "ln.scatter_add"
    CHECKS_INDICES: ClassVar[bool] = True
    RESULT_IN_SYNTAX: ClassVar[bool] = True
    updates = operand_def(TensorType)
    indices = operand_def(TensorType)

    def __init__(
        self,
        updates: SSAValue | IRDLOperation,
        indices: SSAValue | IRDLOperation,
        result_type: TypeOrShape,
    ):
        value = SSAValue.get(updates)
        super().__init__(value, indices, result_type=_result_type(value, result_type))

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        want_arity(cls.name, operand_types, 2)
        rt = want_given(cls.name, result_type)
        updates, indices = operand_types
        _check_index_type(cls.name, indices)
        if is_bool(elt(updates)):
            raise VerifyException(f"'{cls.name}': updates {updates} must be numeric, not i1")
        if elt(updates) != elt(rt):
            raise VerifyException(
                f"'{cls.name}': updates {updates} and result {rt} have different element types"
            )
        if not shape_of(rt):
            raise VerifyException(f"'{cls.name}': result {rt} must have rank >= 1")
        expected = shape_of(indices) + shape_of(rt)[1:]
        if shape_of(updates) != expected:
            raise VerifyException(
                f"'{cls.name}': updates {updates} must have shape {format_shape(expected)} "
                f"(indices shape + result shape[1:]) for indices {indices} and result {rt}"
            )
        return rt

    def evaluate(self, updates: np.ndarray, indices: np.ndarray) -> np.ndarray:
        t = self.result.type
        out = np.zeros(shape_of(t), dtype=to_numpy_dtype(elt(t)))
        n = out.shape[0]
        np.add.at(out, check_indices(self, indices, n, f"a result of {n} rows"), updates)
        return out

    def adjoint(self, ab: AdjointBuilder) -> None:
        gather = GatherOp(ab.grad, ab.operands[1])
        gather.location = self.location
        ab.accum(0, ab.emit(gather))


# --- scalars ------------------------------------------------------------------------------


def _expect_scalar(op_name: str, what: str, t: Attribute) -> Attribute:
    if t not in ELEMENT_TYPES:
        raise VerifyException(
            f"'{op_name}': {what} must be a scalar f32, f64, i32, i64 or i1, got {t}"
        )
    return t


class _ScalarBridgeOp(IRDLOperation):
    """Syntax shared by item/from_scalar: `%r = ln.<name> %v : <operand type>`; the
    result type follows from the operand type."""

    traits = traits_def(Pure())

    @classmethod
    def infer_type(
        cls, operand_types: Sequence[Attribute], props: Props, result_type: Attribute | None
    ) -> Attribute:
        raise NotImplementedError(f"{cls.name} has no type rule")

    def verify_(self) -> None:
        expected = self.infer_type([o.type for o in self.operands], {}, self.results[0].type)
        if expected != self.results[0].type:
            raise VerifyException(
                f"'{self.name}': result type {self.results[0].type} does not match the "
                f"inferred type {expected}"
            )

    @classmethod
    def parse(cls, parser: Parser) -> _ScalarBridgeOp:
        start = parser.pos
        unresolved = parser.parse_unresolved_operand()
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        t = parser.parse_type()
        end = parser.pos
        (operand,) = parser.resolve_operands([unresolved], [t], end)
        try:
            rt = cls.infer_type([t], {}, None)
        except VerifyException as e:
            parser.raise_error(str(e), start, end)
        return cls.create(operands=[operand], result_types=[rt], attributes=attrs)

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_operand(self.operands[0])
        if self.attributes:
            printer.print_string(" ")
            printer.print_attr_dict(self.attributes)
        printer.print_string(" : ")
        printer.print_attribute(self.operands[0].type)


@irdl_op_definition
class ItemOp(_ScalarBridgeOp):
    """The value of a rank-0 tensor as a scalar (for `arith`, `scf` and Python).

    %s = ln.item %t : tensor<f32>      // f32

    No adjoint rule: its result is a scalar, and scalars carry no adjoint (only
    float tensors do), so `reverse-ad` never differentiates through it.
    """

    name = "ln.item"
    x = operand_def(TensorType)
    result = result_def(Attribute)

    def __init__(self, x: SSAValue | IRDLOperation):
        value = SSAValue.get(x)
        super().__init__(operands=[value], result_types=[self.infer_type([value.type], {}, None)])

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        want_arity(cls.name, operand_types, 1)
        (t,) = operand_types
        expect_tensor(cls.name, "operand", t)
        if shape_of(t):
            raise VerifyException(f"'{cls.name}': operand must be a rank-0 tensor, got {t}")
        return elt(t)

    def evaluate(self, x: np.ndarray) -> np.generic:
        """A numpy scalar (`np.float32`, `np.float64`, `np.int32`, `np.int64` or
        `np.bool_`), not a 0-d array."""
        # Indexing a 0-d array with () yields its element as a numpy scalar.
        return cast(np.generic, x[()])


@irdl_op_definition
class FromScalarOp(_ScalarBridgeOp):
    """A rank-0 tensor holding a scalar.

    %t = ln.from_scalar %s : f64       // tensor<f64>

    No adjoint rule: its operand is a scalar, and scalars carry no adjoint, so
    there is nothing to accumulate into.
    """

    name = "ln.from_scalar"
    s = operand_def(Attribute)
    result = result_def(TensorType)

    def __init__(self, s: SSAValue | IRDLOperation):
        value = SSAValue.get(s)
        super().__init__(operands=[value], result_types=[self.infer_type([value.type], {}, None)])

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        want_arity(cls.name, operand_types, 1)
        return tensor((), _expect_scalar(cls.name, "operand", operand_types[0]))

    def evaluate(self, s: np.generic | float | bool) -> np.ndarray:
        """A 0-d array of the result's dtype."""
        return np.array(s, dtype=to_numpy_dtype(elt(self.result.type)))


SHAPE_OPS = [
    ReshapeOp,
    TransposeOp,
    BroadcastToOp,
    ConcatenateOp,
    SliceOp,
    GatherOp,
    ScatterAddOp,
    ItemOp,
    FromScalarOp,
]
