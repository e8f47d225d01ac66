"""The one table of op records: every `ln` and `ad` op, read by every op test.

Each `OpCase` row says how to build an op from block arguments, the arguments
(shape, element type, sampler), an independent numpy reference, and which
arguments reverse mode differentiates. The suites that read it:

* tests/ir/test_ln_ops.py: prints and parses back (custom and generic form);
  `evaluate` agrees with the reference (rows that build one op with `evaluate`);
* tests/ir/test_interpreter_ops.py: the reference interpreter agrees;
* tests/ir/test_adjoint_rules.py: `reverse-ad` of `sum(op(args) * R)` agrees with
  central finite differences (rows with `grad_args()`), and every differentiable
  op's rule builds well-typed IR;
* tests/backends/cpu_cpp/test_emitter.py: the generated C++ agrees with the
  interpreter (all rows, a few dozen to a module, in f32 and f64);
* tests/ir/test_op_cases.py: every op of the `ln` and `ad` dialects has a row
  (or an entry with its reason in `NO_ROW`), and rows are what they claim;
* tests/passes/test_opt_fuzz.py: each row's IR seeds the `lanterna-opt` fuzzer.

Adding an op (or an attribute, a rank, an element type an op now takes): add
ONE row below, in the group of the op's dialect file:

    OpCase("softplus", SoftplusOp, (a(2, 3),), lambda v, f: SoftplusOp(v[0]),
           lambda x: np.log1p(np.exp(x))),

* `a(2, 3)` is a tensor argument of the float type under test (`F`); `a()` is rank
  0, `Arg(None)` a scalar. Give `element="i64"` for another element type and
  `sample=` a sampler of references.py: `positive` for log's domain, `nonzero`
  for divisors and kinks (abs, relu), `below(n)` / `ids(n, ...)` for indices.
  Samplers keep finite differences well-conditioned: a row differentiated there
  should not sit on a kink or a tie.
* `build(v, f)` gets the block arguments and the float type; it returns the op,
  or a list of ops whose last one gives the result (an `ad` op needs a cell:
  `accum_into(ad.ZeroLikeOp(v[0]), v[1])`). `op` names the op under test.
* `ref` is an independent numpy reference on float64 inputs (longer ones go in
  references.py).
* Reverse mode differentiates every float tensor argument when the result is a
  float tensor; `wrt=(0,)` picks some, `no_grad="why"` none, `fd_rtol=` loosens
  the comparison with finite differences. An op without an adjoint rule on
  purpose goes in `NO_ADJOINT`, with the reason.
* A known bug in one suite is a strict xfail naming it: `xfail={"cpu": "why"}`
  (suites: `SUITES`).

More rows for one op (shapes, attributes, element types) are welcome: each row
is checked by every suite.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest
from xdsl.dialects import arith, func
from xdsl.dialects.builtin import ModuleOp, TensorType, f32, f64, i1, i32, i64
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue

from lanterna.ir import ad, buf
from lanterna.ir.ln import (
    AbsOp,
    AddOp,
    AvgPool2dOp,
    BroadcastToOp,
    CastOp,
    CheckpointOp,
    CheckpointYieldOp,
    ConcatenateOp,
    ConstantOp,
    Conv2dInputGradOp,
    Conv2dOp,
    Conv2dWeightGradOp,
    CrossEntropyOp,
    DivOp,
    DropoutOp,
    EqOp,
    ExpOp,
    FromScalarOp,
    FullOp,
    FusedOp,
    GatherOp,
    GeOp,
    GtOp,
    ItemOp,
    LeOp,
    LogOp,
    LogSoftmaxOp,
    LtOp,
    MatmulOp,
    MaximumOp,
    MaxOp,
    MaxPool2dGradOp,
    MaxPool2dOp,
    MeanOp,
    MinimumOp,
    MulOp,
    NegOp,
    NeOp,
    NllLossOp,
    OnesOp,
    PowerOp,
    PowOp,
    ReluOp,
    ReshapeOp,
    ScatterAddOp,
    SelectOp,
    SigmoidOp,
    SliceOp,
    SoftmaxOp,
    SqrtOp,
    SubOp,
    SumOp,
    TanhOp,
    TransposeOp,
    ZerosOp,
)
from lanterna.ir.types import tensor, to_numpy_dtype

from support.checks import as_f64
from support.references import (
    Sampler,
    any_seed,
    around,
    below,
    conv2d_input_grad_ref,
    conv2d_ref,
    conv2d_weight_grad_ref,
    dropout_ref,
    matmul_ref,
    max_pool_grad_ref,
    nll_ref,
    nonzero,
    normal,
    pool_ref,
    positive,
    scatter_add_ref,
    softmax_ref,
    tied,
    whole,
)

F = "F"  # the float element type under test
ELEMENTS: dict[str, Attribute] = {"f32": f32, "f64": f64, "i32": i32, "i64": i64, "i1": i1}

# The suites reading the table, as named in `OpCase.xfail`.
SUITES = ("syntax", "evaluate", "interpret", "grad", "cpu")

Built = Operation | Sequence[Operation]


# --- the record -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Arg:
    """A block argument: a tensor of `shape`, or a scalar when `shape` is None."""

    shape: tuple[int, ...] | None
    element: str = F
    sample: Sampler = normal

    def element_type(self, ftype: Attribute) -> Attribute:
        return ftype if self.element == F else ELEMENTS[self.element]

    def type(self, ftype: Attribute) -> Attribute:
        e = self.element_type(ftype)
        return e if self.shape is None else tensor(self.shape, e)

    @property
    def is_float_tensor(self) -> bool:
        return self.shape is not None and self.element == F

    def value(self, rng: np.random.Generator, ftype: Attribute) -> np.ndarray | np.generic:
        dtype = to_numpy_dtype(self.element_type(ftype))
        v = self.sample(rng, () if self.shape is None else self.shape, dtype)
        return v[()] if self.shape is None else v


@dataclass(frozen=True)
class OpCase:
    """One row. `build(values, ftype)` makes the op (or a few ops, the last one's
    first result being the row's result) from the block arguments; `op` is the op
    under test, which the coverage test counts."""

    id: str
    op: type[Operation]
    args: tuple[Arg, ...]
    build: Callable[[list[SSAValue], Attribute], Built]
    ref: Callable[..., object]
    floats: bool | None = None  # runs once per float type; default: when an arg uses F
    wrt: tuple[int, ...] | None = None  # differentiated args; default: float tensor ones
    no_grad: str | None = None  # why reverse mode does not apply to this row
    fd_rtol: float = 1e-6  # finite differences against the adjoint
    xfail: Mapping[str, str] = field(default_factory=dict)  # suite -> known bug

    def float_types(self) -> list[Attribute]:
        floats = self.floats if self.floats is not None else any(a.element == F for a in self.args)
        return [f32, f64] if floats else [f32]

    def ops(self, values: Sequence[SSAValue], ftype: Attribute) -> list[Operation]:
        built = self.build(list(values), ftype)
        return [built] if isinstance(built, Operation) else list(built)

    def subject(self, ops: Sequence[Operation]) -> Operation:
        """The last built op of type `op`."""
        return next(o for o in reversed(ops) if isinstance(o, self.op))

    def grad_args(self) -> tuple[int, ...]:
        """The arguments the finite-difference suite differentiates (none: skipped).
        By default every float tensor argument, when the result (built in f64) is an
        f64 tensor."""
        if self.no_grad is not None or self.op in NO_ADJOINT:
            return ()
        if self.wrt is not None:
            return self.wrt
        ops = self.ops(Block(arg_types=[arg.type(f64) for arg in self.args]).args, f64)
        result = ops[-1].results[0].type
        if not isinstance(result, TensorType) or result.element_type != f64:
            return ()
        return tuple(i for i, arg in enumerate(self.args) if arg.is_float_tensor)


def a(*shape: int, element: str = F, sample: Sampler = normal) -> Arg:
    return Arg(tuple(shape), element, sample)


def ids(n: int, *shape: int, element: str = "i64") -> Arg:
    """Indices in [0, n) of the given shape."""
    return Arg(tuple(shape), element, below(n))


# --- builders of the rows with more than one op ---------------------------------------------


def item_arith(v: list[SSAValue], f: Attribute) -> list[Operation]:
    """Scalars out of two tensors, combined by `arith`, back into a tensor."""
    s, u = ItemOp(v[0]), ItemOp(v[1])
    p = arith.MulfOp(s, u)
    q = arith.MaximumfOp(p, s)
    return [s, u, p, q, FromScalarOp(q)]


def accum_into(cell: Operation, *values: SSAValue) -> list[Operation]:
    return [cell, *(ad.AccumOp(cell, v) for v in values), ad.LoadOp(cell)]


def accum_matmul(v: list[SSAValue], *, deferred: bool = False, **flags: bool) -> list[Operation]:
    """cell(c) += op(x) @ op(y), then load; a deferred product is flushed first."""
    c = ad.CellFromOp(v[0])
    ops: list[Operation] = [c, ad.AccumMatmulOp(c, v[1], v[2], deferred=deferred, **flags)]
    if deferred:
        ops.append(ad.FlushProductsOp(c))
    return [*ops, ad.LoadOp(c)]


def stack_round_trip(v: list[SSAValue], f: Attribute) -> list[Operation]:
    """Push x then y, pop y then x: `y - x` shows the order."""
    s = ad.StackOp(v[0].type)
    p, q = ad.PopOp(s), ad.PopOp(s)
    return [s, ad.PushOp(s, v[0]), ad.PushOp(s, v[1]), p, q, SubOp(p, q)]


def checkpointed(v: list[SSAValue], f: Attribute) -> CheckpointOp:
    t = TanhOp(v[0])
    m = MulOp(t, v[1])
    return CheckpointOp([m.results[0].type], Block([t, m, CheckpointYieldOp(m)]))


def fused_log_pow_sigmoid(v: list[SSAValue], f: Attribute) -> FusedOp:
    def body(xyn: Sequence[SSAValue]) -> list[Operation]:
        x, y, n = xyn
        scalar = tensor((), f)
        return [
            lg := LogOp(y), m := MulOp(x, lg), k := CastOp(n, result_type=scalar),
            h := FullOp(0.5, scalar), p := PowOp(k, 2.0), q := MulOp(p, h),
            g := GtOp(m, q), s := SelectOp(g, m, q), SigmoidOp(s),
        ]  # fmt: skip

    return FusedOp.of(v, tensor((2, 3), f), body)


def fused_log_pow_sigmoid_ref(x, y, n):
    m = x * np.log(y)
    q = 0.5 * n.astype(np.float64) ** 2
    return 1 / (1 + np.exp(-np.where(m > q, m, q)))


CONST = np.array([[1.5, -2.0, 0.25], [3.0, 0.5, -0.75]])
CELLS = "cells and stacks are the adjoint machinery: reverse-ad does not differentiate them"

# One row per case; kept compact on purpose.
# fmt: off
CASES: list[OpCase] = [
    # --- ln, elementwise.py: constants --------------------------------------------------------
    OpCase("constant", ConstantOp, (), lambda v, f: ConstantOp.of(CONST.astype(to_numpy_dtype(f))),
           lambda: CONST, floats=True),
    OpCase("constant-i64", ConstantOp, (),
           lambda v, f: ConstantOp.of(np.array([3, -1], np.int64)), lambda: np.array([3, -1])),
    OpCase("zeros", ZerosOp, (), lambda v, f: ZerosOp(result_type=tensor((2, 3), f)),
           lambda: np.zeros((2, 3)), floats=True),
    OpCase("ones-rank0", OnesOp, (), lambda v, f: OnesOp(result_type=tensor((), f)),
           lambda: np.ones(()), floats=True),
    OpCase("ones-i64", OnesOp, (), lambda v, f: OnesOp(result_type=tensor((3,), i64)),
           lambda: np.ones(3)),
    OpCase("full", FullOp, (), lambda v, f: FullOp(2.5, tensor((4,), f)),
           lambda: np.full((4,), 2.5), floats=True),
    # binary, with broadcasting and rank 0
    OpCase("add", AddOp, (a(2, 3), a(2, 3)), lambda v, f: AddOp(v[0], v[1]), lambda x, y: x + y),
    OpCase("add-bcast", AddOp, (a(4, 1, 3), a(2, 1)), lambda v, f: AddOp(v[0], v[1]),
           lambda x, y: x + y),
    OpCase("add-rank0", AddOp, (a(), a(2, 3)), lambda v, f: AddOp(v[0], v[1]), lambda x, y: x + y),
    OpCase("add-i32", AddOp, (a(3, element="i32"), a(2, 1, element="i32")),
           lambda v, f: AddOp(v[0], v[1]), lambda x, y: x + y),
    OpCase("sub-bcast", SubOp, (a(3), a(2, 3)), lambda v, f: SubOp(v[0], v[1]), lambda x, y: x - y),
    OpCase("mul-rank0", MulOp, (a(2, 3), a()), lambda v, f: MulOp(v[0], v[1]), lambda x, y: x * y),
    # The same value on both sides; the second argument is unused (its adjoint is 0).
    OpCase("mul-same", MulOp, (a(2, 3), a(2, 3)), lambda v, f: MulOp(v[0], v[0]),
           lambda x, y: x * x),
    OpCase("mul-i64", MulOp, (a(4, element="i64"), a(4, element="i64")),
           lambda v, f: MulOp(v[0], v[1]), lambda x, y: x * y),
    OpCase("div-bcast", DivOp, (a(2, 3), a(3, sample=nonzero)), lambda v, f: DivOp(v[0], v[1]),
           lambda x, y: x / y),
    OpCase("div-rank0", DivOp, (a(), a(2, 1, sample=nonzero)), lambda v, f: DivOp(v[0], v[1]),
           lambda x, y: x / y),
    OpCase("maximum-bcast", MaximumOp, (a(2, 3), a(2, 1)), lambda v, f: MaximumOp(v[0], v[1]),
           lambda x, y: np.where(x > y, x, y)),
    OpCase("minimum", MinimumOp, (a(3), a(3)), lambda v, f: MinimumOp(v[0], v[1]),
           lambda x, y: np.where(x < y, x, y)),
    OpCase("lt", LtOp, (a(2, 3), a(3)), lambda v, f: LtOp(v[0], v[1]), lambda x, y: x < y),
    OpCase("le", LeOp, (a(3), a()), lambda v, f: LeOp(v[0], v[1]), lambda x, y: x <= y),
    OpCase("gt", GtOp, (a(2, 3), a(2, 3)), lambda v, f: GtOp(v[0], v[1]), lambda x, y: x > y),
    OpCase("ge-i32", GeOp, (a(3, element="i32"), a(3, element="i32")),
           lambda v, f: GeOp(v[0], v[1]), lambda x, y: x >= y),
    OpCase("eq-i64", EqOp, (a(4, element="i64"), a(1, element="i64")),
           lambda v, f: EqOp(v[0], v[1]), lambda x, y: x == y),
    OpCase("ne", NeOp, (a(2, 2), a(2, 2)), lambda v, f: NeOp(v[0], v[1]), lambda x, y: x != y),
    # unary
    OpCase("neg", NegOp, (a(2, 3),), lambda v, f: NegOp(v[0]), lambda x: -x),
    OpCase("neg-i32", NegOp, (a(5, element="i32"),), lambda v, f: NegOp(v[0]), lambda x: -x),
    OpCase("abs", AbsOp, (a(2, 3, sample=nonzero),), lambda v, f: AbsOp(v[0]),
           lambda x: np.where(x < 0, -x, x)),
    OpCase("abs-rank0", AbsOp, (a(sample=nonzero),), lambda v, f: AbsOp(v[0]),
           lambda x: np.where(x < 0, -x, x)),
    OpCase("abs-i32", AbsOp, (a(4, element="i32"),), lambda v, f: AbsOp(v[0]),
           lambda x: np.where(x < 0, -x, x)),
    OpCase("exp", ExpOp, (a(2, 3),), lambda v, f: ExpOp(v[0]), np.exp),
    OpCase("exp-rank0", ExpOp, (a(),), lambda v, f: ExpOp(v[0]), np.exp),
    OpCase("log", LogOp, (a(4, sample=positive),), lambda v, f: LogOp(v[0]), np.log),
    OpCase("tanh", TanhOp, (a(2, 3),), lambda v, f: TanhOp(v[0]),
           lambda x: (np.exp(2 * x) - 1) / (np.exp(2 * x) + 1)),
    OpCase("sqrt", SqrtOp, (a(3, sample=positive),), lambda v, f: SqrtOp(v[0]),
           lambda x: x**0.5),
    OpCase("sigmoid", SigmoidOp, (a(2, 3),), lambda v, f: SigmoidOp(v[0]),
           lambda x: 1 / (1 + np.exp(-x))),
    OpCase("relu", ReluOp, (a(2, 3, sample=nonzero),), lambda v, f: ReluOp(v[0]),
           lambda x: x * (x > 0)),
    OpCase("pow", PowOp, (a(3, sample=positive),), lambda v, f: PowOp(v[0], 1.5),
           lambda x: np.exp(1.5 * np.log(x))),
    OpCase("pow-half", PowOp, (a(4, sample=positive),), lambda v, f: PowOp(v[0], 0.5),
           lambda x: np.exp(0.5 * np.log(x))),
    OpCase("pow-1", PowOp, (a(3),), lambda v, f: PowOp(v[0], 1.0), lambda x: x),
    OpCase("pow-3", PowOp, (a(2, 2),), lambda v, f: PowOp(v[0], 3.0), lambda x: x * x * x),
    OpCase("pow-0", PowOp, (a(3),), lambda v, f: PowOp(v[0], 0.0), lambda x: np.ones_like(x)),
    OpCase("power", PowerOp, (a(2, 3, sample=positive), a(3)),
           lambda v, f: PowerOp(v[0], v[1]), lambda x, y: np.exp(y * np.log(x))),
    OpCase("power-rank0-base", PowerOp, (a(sample=positive), a(2, 2)),
           lambda v, f: PowerOp(v[0], v[1]), lambda x, y: np.exp(y * np.log(x))),
    # numpy's power: a negative base to an integer-valued exponent is real. Its
    # derivative in the exponent (x**y log x) is not, so only the base is differentiated.
    OpCase("power-negative-base", PowerOp, (a(2, 3, sample=nonzero), a(2, 3, sample=whole)),
           lambda v, f: PowerOp(v[0], v[1]),
           lambda x, y: np.sign(x) ** np.abs(y) * np.abs(x) ** y, wrt=(0,)),
    # select and cast
    OpCase("select", SelectOp, (a(2, 3, element="i1"), a(3), a()),
           lambda v, f: SelectOp(v[0], v[1], v[2]),
           lambda c, x, y: np.where(c, x + np.zeros((2, 3)), y)),
    OpCase("cast-same-type", CastOp, (a(2, 3),),
           lambda v, f: CastOp(v[0], result_type=tensor((2, 3), f)), lambda x: x),
    OpCase("cast-f64", CastOp, (a(2, 3),),
           lambda v, f: CastOp(v[0], result_type=tensor((2, 3), f64)), lambda x: x),
    OpCase("cast-f32", CastOp, (a(5),),
           lambda v, f: CastOp(v[0], result_type=tensor((5,), f32)), lambda x: x),
    OpCase("cast-i32", CastOp, (a(4),), lambda v, f: CastOp(v[0], result_type=tensor((4,), i32)),
           lambda x: np.trunc(x)),
    OpCase("cast-from-i1", CastOp, (a(3, element="i1"),),
           lambda v, f: CastOp(v[0], result_type=tensor((3,), f)),
           lambda x: np.where(x, 1.0, 0.0), floats=True),
    OpCase("cast-from-i64", CastOp, (a(5, element="i64"),),
           lambda v, f: CastOp(v[0], result_type=tensor((5,), f)),
           lambda x: x.astype(np.float64), floats=True),
    OpCase("cast-to-i1", CastOp, (a(5, element="i32"),),
           lambda v, f: CastOp(v[0], result_type=tensor((5,), i1)), lambda x: x != 0),
    # --- ln, linalg.py: every supported rank pair ----------------------------------------------
    OpCase("matmul-2x2", MatmulOp, (a(2, 3), a(3, 4)), lambda v, f: MatmulOp(v[0], v[1]),
           matmul_ref),
    OpCase("matmul-2x1", MatmulOp, (a(2, 3), a(3)), lambda v, f: MatmulOp(v[0], v[1]), matmul_ref),
    OpCase("matmul-1x2", MatmulOp, (a(3), a(3, 4)), lambda v, f: MatmulOp(v[0], v[1]), matmul_ref),
    OpCase("matmul-3x3", MatmulOp, (a(2, 3, 4), a(2, 4, 5)), lambda v, f: MatmulOp(v[0], v[1]),
           matmul_ref),
    OpCase("matmul-3x2", MatmulOp, (a(2, 3, 4), a(4, 5)), lambda v, f: MatmulOp(v[0], v[1]),
           matmul_ref),
    OpCase("matmul-transpose_a", MatmulOp, (a(3, 2), a(3, 4)),
           lambda v, f: MatmulOp(v[0], v[1], transpose_a=True), lambda x, y: x.T @ y),
    OpCase("matmul-transpose_b", MatmulOp, (a(2, 3), a(4, 3)),
           lambda v, f: MatmulOp(v[0], v[1], transpose_b=True), lambda x, y: x @ y.T),
    OpCase("matmul-transpose_ab", MatmulOp, (a(3, 2), a(4, 3)),
           lambda v, f: MatmulOp(v[0], v[1], transpose_a=True, transpose_b=True),
           lambda x, y: x.T @ y.T),
    # --- ln, reduce.py ------------------------------------------------------------------------
    OpCase("sum-all", SumOp, (a(2, 3, 4),), lambda v, f: SumOp(v[0]), lambda x: x.sum()),
    OpCase("sum-axes", SumOp, (a(2, 3, 4),), lambda v, f: SumOp(v[0], axes=(-1, 0)),
           lambda x: x.sum(axis=(0, 2))),
    OpCase("sum-keepdims", SumOp, (a(2, 3),), lambda v, f: SumOp(v[0], axes=1, keepdims=True),
           lambda x: x.sum(axis=1, keepdims=True)),
    OpCase("sum-axes-keepdims", SumOp, (a(2, 3, 4),),
           lambda v, f: SumOp(v[0], axes=(0, 2), keepdims=True),
           lambda x: x.sum(axis=(0, 2), keepdims=True)),
    OpCase("sum-none", SumOp, (a(2, 3),), lambda v, f: SumOp(v[0], axes=()), lambda x: x),
    OpCase("sum-rank0", SumOp, (a(),), lambda v, f: SumOp(v[0]), lambda x: x),
    OpCase("sum-i64", SumOp, (a(3, 4, element="i64"),), lambda v, f: SumOp(v[0], axes=(0,)),
           lambda x: x.sum(axis=0)),
    OpCase("sum-i32", SumOp, (a(3, 4, element="i32"),), lambda v, f: SumOp(v[0], axes=(0,)),
           lambda x: x.sum(axis=0)),
    OpCase("mean", MeanOp, (a(2, 3, 4),), lambda v, f: MeanOp(v[0], axes=(1,)),
           lambda x: x.sum(axis=1) / 3),
    OpCase("mean-all-keepdims", MeanOp, (a(2, 3),), lambda v, f: MeanOp(v[0], keepdims=True),
           lambda x: np.full((1, 1), x.sum() / 6)),
    OpCase("mean-rank0", MeanOp, (a(),), lambda v, f: MeanOp(v[0]), lambda x: x),
    OpCase("max", MaxOp, (a(2, 3, 4),), lambda v, f: MaxOp(v[0], axes=(0, 2)),
           lambda x: x.max(axis=(0, 2))),
    OpCase("max-keepdims", MaxOp, (a(3, 4),), lambda v, f: MaxOp(v[0], axes=1, keepdims=True),
           lambda x: x.max(axis=1, keepdims=True)),
    OpCase("max-all", MaxOp, (a(3, 4),), lambda v, f: MaxOp(v[0]), lambda x: x.max()),
    OpCase("max-rank0", MaxOp, (a(),), lambda v, f: MaxOp(v[0]), lambda x: x),
    OpCase("max-i32", MaxOp, (a(3, 4, element="i32"),), lambda v, f: MaxOp(v[0], keepdims=True),
           lambda x: np.full((1, 1), x.max())),
    OpCase("max-i64-all", MaxOp, (a(3, 4, element="i64"),), lambda v, f: MaxOp(v[0]),
           lambda x: x.max()),
    # --- ln, shape.py -------------------------------------------------------------------------
    OpCase("reshape", ReshapeOp, (a(2, 3, 4),), lambda v, f: ReshapeOp(v[0], tensor((6, 4), f)),
           lambda x: x.reshape(6, 4)),
    OpCase("reshape-rank0", ReshapeOp, (a(),), lambda v, f: ReshapeOp(v[0], (1, 1)),
           lambda x: x.reshape(1, 1)),
    OpCase("reshape-to-rank0", ReshapeOp, (a(1, 1),), lambda v, f: ReshapeOp(v[0], ()),
           lambda x: x.reshape(())),
    OpCase("reshape-to-rank0-i32", ReshapeOp, (a(1, 1, element="i32"),),
           lambda v, f: ReshapeOp(v[0], ()), lambda x: x.reshape(())),
    OpCase("transpose", TransposeOp, (a(2, 3, 4),),
           lambda v, f: TransposeOp(v[0], perm=(2, 0, 1)), lambda x: np.moveaxis(x, 2, 0)),
    OpCase("transpose-default", TransposeOp, (a(2, 3),), lambda v, f: TransposeOp(v[0]),
           lambda x: x.T),
    OpCase("transpose-rank0", TransposeOp, (a(),), lambda v, f: TransposeOp(v[0], perm=()),
           lambda x: x),
    OpCase("broadcast_to", BroadcastToOp, (a(3, 1),),
           lambda v, f: BroadcastToOp(v[0], tensor((2, 3, 4), f)),
           lambda x: x + np.zeros((2, 3, 4))),
    OpCase("broadcast_to-rank0", BroadcastToOp, (a(),), lambda v, f: BroadcastToOp(v[0], (2, 3)),
           lambda x: x + np.zeros((2, 3))),
    OpCase("concatenate", ConcatenateOp, (a(2, 3), a(2, 1), a(2, 2)),
           lambda v, f: ConcatenateOp(*v, axis=-1), lambda *xs: np.hstack(xs)),
    OpCase("concatenate-axis0-repeat", ConcatenateOp, (a(1, 3), a(2, 3)),
           lambda v, f: ConcatenateOp(v[0], v[1], v[0], axis=0),
           lambda x, y: np.concatenate([x, y, x])),
    OpCase("concatenate-one", ConcatenateOp, (a(3),), lambda v, f: ConcatenateOp(v[0]),
           lambda x: x),
    OpCase("concatenate-one-i64", ConcatenateOp, (a(3, element="i64"),),
           lambda v, f: ConcatenateOp(v[0]), lambda x: x),
    OpCase("slice", SliceOp, (a(5, 4),), lambda v, f: SliceOp(v[0], (1, 0), (5, 3), (2, 1)),
           lambda x: x[1:5:2, 0:3]),
    OpCase("slice-steps", SliceOp, (a(7, 6, 2),),
           lambda v, f: SliceOp(v[0], (1, 2, 0), (7, 5, 2), (3, 2, 1)),
           lambda x: x[1:7:3, 2:5:2, 0:2]),
    OpCase("slice-step-to-end", SliceOp, (a(5, 3),),
           lambda v, f: SliceOp(v[0], (0, 0), (5, 3), (2, 2)), lambda x: x[::2, ::2]),
    OpCase("slice-whole", SliceOp, (a(3, 2),), lambda v, f: SliceOp(v[0], (0, 0), (3, 2)),
           lambda x: x),
    OpCase("slice-empty", SliceOp, (a(5, 4),), lambda v, f: SliceOp(v[0], (2, 0), (2, 4)),
           lambda x: np.zeros((0, 4))),
    OpCase("slice-rank0", SliceOp, (a(),), lambda v, f: SliceOp(v[0], (), ()), lambda x: x),
    OpCase("gather", GatherOp, (a(5, 3), ids(5, 2, 4)), lambda v, f: GatherOp(v[0], v[1]),
           lambda t, i: np.array([[t[k] for k in row] for row in i])),
    OpCase("gather-rank0-index-i32", GatherOp, (a(5, 3), ids(5, element="i32")),
           lambda v, f: GatherOp(v[0], v[1]), lambda t, i: t[int(i)]),
    OpCase("gather-1d", GatherOp, (a(6), ids(6, 7)), lambda v, f: GatherOp(v[0], v[1]),
           lambda t, i: np.array([t[k] for k in i])),
    # Negative indices count from the end, as numpy's.
    OpCase("gather-negative", GatherOp, (a(5, 3), Arg((2, 4), "i64", around(5))),
           lambda v, f: GatherOp(v[0], v[1]),
           lambda t, i: np.array([[t[k + 5 if k < 0 else k] for k in row] for row in i])),
    OpCase("gather-int-table", GatherOp, (a(6, element="i64"), ids(6, 3, element="i32")),
           lambda v, f: GatherOp(v[0], v[1]), lambda t, i: np.array([t[k] for k in i])),
    OpCase("scatter_add", ScatterAddOp, (a(2, 4, 3), ids(3, 2, 4)),
           lambda v, f: ScatterAddOp(v[0], v[1], tensor((3, 3), f)),
           lambda u, i: scatter_add_ref(u, i, (3, 3))),
    OpCase("scatter_add-negative", ScatterAddOp, (a(2, 4, 3), Arg((2, 4), "i64", around(3))),
           lambda v, f: ScatterAddOp(v[0], v[1], (3, 3)),
           lambda u, i: scatter_add_ref(u, i % 3, (3, 3))),
    OpCase("scatter_add-1d", ScatterAddOp, (a(6), ids(2, 6, element="i32")),
           lambda v, f: ScatterAddOp(v[0], v[1], (2,)),
           lambda u, i: scatter_add_ref(u, i, (2,))),
    OpCase("scatter_add-i32", ScatterAddOp, (a(6, element="i32"), ids(2, 6, element="i32")),
           lambda v, f: ScatterAddOp(v[0], v[1], (2,)),
           lambda u, i: scatter_add_ref(u, i, (2,)).astype(np.int64)),
    # ItemOp and FromScalarOp bridge to scalars, which carry no adjoint.
    OpCase("item", ItemOp, (a(),), lambda v, f: ItemOp(v[0]), lambda x: x[()]),
    OpCase("item-i1", ItemOp, (a(element="i1"),), lambda v, f: ItemOp(v[0]), lambda x: x[()]),
    OpCase("item-i64", ItemOp, (a(element="i64"),), lambda v, f: ItemOp(v[0]), lambda x: x[()]),
    OpCase("item-arith", ItemOp, (a(), a()), item_arith,
           lambda x, y: np.maximum(x * y, x), no_grad="scalars carry no adjoint"),
    OpCase("from_scalar", FromScalarOp, (Arg(None),), lambda v, f: FromScalarOp(v[0]),
           lambda s: np.array(s)),
    OpCase("from_scalar-i32", FromScalarOp, (Arg(None, "i32"),), lambda v, f: FromScalarOp(v[0]),
           lambda s: np.array(s)),
    # --- ln, nn.py ----------------------------------------------------------------------------
    OpCase("softmax", SoftmaxOp, (a(3, 5),), lambda v, f: SoftmaxOp(v[0]),
           lambda x: softmax_ref(x, 1)),
    OpCase("softmax-axis0", SoftmaxOp, (a(4, 2, 3),), lambda v, f: SoftmaxOp(v[0], axis=0),
           lambda x: softmax_ref(x, 0)),
    OpCase("softmax-middle-axis", SoftmaxOp, (a(3, 4, 2),), lambda v, f: SoftmaxOp(v[0], axis=1),
           lambda x: softmax_ref(x, 1)),
    OpCase("log_softmax", LogSoftmaxOp, (a(3, 5),), lambda v, f: LogSoftmaxOp(v[0]),
           lambda x: np.log(softmax_ref(x, 1))),
    OpCase("log_softmax-1d", LogSoftmaxOp, (a(6),), lambda v, f: LogSoftmaxOp(v[0], axis=0),
           lambda x: np.log(softmax_ref(x, 0))),
    OpCase("log_softmax-axis0", LogSoftmaxOp, (a(3, 4),), lambda v, f: LogSoftmaxOp(v[0], axis=0),
           lambda x: np.log(softmax_ref(x, 0))),
    OpCase("nll_loss", NllLossOp, (a(4, 5), ids(5, 4)), lambda v, f: NllLossOp(v[0], v[1]),
           lambda p, t: nll_ref(p, t, mean=True)),
    OpCase("nll_loss-sum", NllLossOp, (a(4, 5), ids(5, 4, element="i32")),
           lambda v, f: NllLossOp(v[0], v[1], reduction="sum"),
           lambda p, t: nll_ref(p, t, mean=False)),
    OpCase("cross_entropy", CrossEntropyOp, (a(4, 5), ids(5, 4)),
           lambda v, f: CrossEntropyOp(v[0], v[1]),
           lambda z, t: nll_ref(np.log(softmax_ref(z, 1)), t, mean=True)),
    OpCase("cross_entropy-sum", CrossEntropyOp, (a(3, 2), ids(2, 3, element="i32")),
           lambda v, f: CrossEntropyOp(v[0], v[1], reduction="sum"),
           lambda z, t: nll_ref(np.log(softmax_ref(z, 1)), t, mean=False)),
    OpCase("conv2d", Conv2dOp, (a(2, 3, 5, 5), a(4, 3, 3, 3)), lambda v, f: Conv2dOp(v[0], v[1]),
           lambda x, w: conv2d_ref(x, w, (1, 1), (0, 0))),
    OpCase("conv2d-stride-pad", Conv2dOp, (a(1, 2, 6, 5), a(3, 2, 3, 2)),
           lambda v, f: Conv2dOp(v[0], v[1], stride=(2, 1), padding=(1, 2)),
           lambda x, w: conv2d_ref(x, w, (2, 1), (1, 2))),
    # (7 + 2 - 3) / 2 leaves no remainder along H, 6 - 2 leaves one along W at stride 3.
    OpCase("conv2d-stride-remainder", Conv2dOp, (a(2, 1, 7, 6), a(2, 1, 3, 2)),
           lambda v, f: Conv2dOp(v[0], v[1], stride=(2, 3), padding=(1, 0)),
           lambda x, w: conv2d_ref(x, w, (2, 3), (1, 0))),
    # The only window along H sees padding alone: no adjoint reaches x there.
    OpCase("conv2d-window-in-padding", Conv2dOp, (a(1, 1, 1, 3), a(1, 1, 1, 1)),
           lambda v, f: Conv2dOp(v[0], v[1], stride=(10, 1), padding=(3, 0)),
           lambda x, w: conv2d_ref(x, w, (10, 1), (3, 0))),
    # The two halves of conv2d's adjoint are linear in both operands; their
    # adjoints are each other and conv2d (second order through convolutions).
    OpCase("conv2d_input_grad", Conv2dInputGradOp, (a(2, 4, 3, 3), a(4, 3, 3, 3)),
           lambda v, f: Conv2dInputGradOp(v[0], v[1], tensor((2, 3, 5, 5), f)),
           lambda g, w: conv2d_input_grad_ref(g, w, (2, 3, 5, 5), (1, 1), (0, 0))),
    # Stride 2 along H with a remainder row no window reaches; padding along W.
    OpCase("conv2d_input_grad-stride-pad", Conv2dInputGradOp, (a(1, 3, 3, 6), a(3, 2, 3, 2)),
           lambda v, f: Conv2dInputGradOp(v[0], v[1], tensor((1, 2, 8, 5), f), stride=(2, 1),
                                          padding=(0, 1)),
           lambda g, w: conv2d_input_grad_ref(g, w, (1, 2, 8, 5), (2, 1), (0, 1))),
    OpCase("conv2d_input_grad-pad-h", Conv2dInputGradOp, (a(1, 2, 3, 3), a(2, 3, 3, 2)),
           lambda v, f: Conv2dInputGradOp(v[0], v[1], tensor((1, 3, 6, 4), f), stride=(2, 1),
                                          padding=(1, 0)),
           lambda g, w: conv2d_input_grad_ref(g, w, (1, 3, 6, 4), (2, 1), (1, 0))),
    OpCase("conv2d_weight_grad", Conv2dWeightGradOp, (a(2, 3, 5, 5), a(2, 4, 3, 3)),
           lambda v, f: Conv2dWeightGradOp(v[0], v[1], tensor((4, 3, 3, 3), f)),
           lambda x, g: conv2d_weight_grad_ref(x, g, (3, 3), (1, 1), (0, 0))),
    OpCase("conv2d_weight_grad-stride-pad", Conv2dWeightGradOp, (a(1, 2, 8, 5), a(1, 3, 3, 6)),
           lambda v, f: Conv2dWeightGradOp(v[0], v[1], tensor((3, 2, 3, 2), f), stride=(2, 1),
                                           padding=(0, 1)),
           lambda x, g: conv2d_weight_grad_ref(x, g, (3, 2), (2, 1), (0, 1))),
    OpCase("conv2d_weight_grad-pad-h", Conv2dWeightGradOp, (a(1, 3, 6, 4), a(1, 2, 3, 3)),
           lambda v, f: Conv2dWeightGradOp(v[0], v[1], tensor((2, 3, 3, 2), f), stride=(2, 1),
                                           padding=(1, 0)),
           lambda x, g: conv2d_weight_grad_ref(x, g, (3, 2), (2, 1), (1, 0))),
    OpCase("max_pool2d", MaxPool2dOp, (a(2, 3, 4, 6),), lambda v, f: MaxPool2dOp(v[0]),
           lambda x: pool_ref(x, (2, 2), (2, 2), (0, 0), "max")),
    OpCase("max_pool2d-overlap-pad", MaxPool2dOp, (a(1, 2, 5, 5),),
           lambda v, f: MaxPool2dOp(v[0], kernel=3, stride=(2, 1), padding=1),
           lambda x: pool_ref(x, (3, 3), (2, 1), (1, 1), "max")),
    OpCase("max_pool2d-remainder", MaxPool2dOp, (a(1, 1, 5, 7),),
           lambda v, f: MaxPool2dOp(v[0], kernel=2, stride=(2, 3)),
           lambda x: pool_ref(x, (2, 2), (2, 3), (0, 0), "max")),
    OpCase("max_pool2d_grad", MaxPool2dGradOp, (a(2, 3, 4, 6), a(2, 3, 2, 3)),
           lambda v, f: MaxPool2dGradOp(v[0], v[1], kernel=2, stride=2),
           lambda x, g: max_pool_grad_ref(x, g, (2, 2), (2, 2), (0, 0))),
    OpCase("max_pool2d_grad-ties-overlap-pad", MaxPool2dGradOp,
           (a(1, 2, 5, 5, sample=tied), a(1, 2, 3, 5)),
           lambda v, f: MaxPool2dGradOp(v[0], v[1], kernel=3, stride=(2, 1), padding=1),
           lambda x, g: max_pool_grad_ref(x, g, (3, 3), (2, 1), (1, 1))),
    OpCase("avg_pool2d", AvgPool2dOp, (a(2, 3, 4, 6),), lambda v, f: AvgPool2dOp(v[0]),
           lambda x: pool_ref(x, (2, 2), (2, 2), (0, 0), "avg")),
    OpCase("avg_pool2d-pad", AvgPool2dOp, (a(1, 2, 5, 4),),
           lambda v, f: AvgPool2dOp(v[0], kernel=(3, 2), stride=1, padding=(1, 1)),
           lambda x: pool_ref(x, (3, 2), (1, 1), (1, 1), "avg")),
    OpCase("avg_pool2d-remainder", AvgPool2dOp, (a(1, 2, 7, 5),),
           lambda v, f: AvgPool2dOp(v[0], kernel=(3, 2), stride=(2, 2), padding=(1, 0)),
           lambda x: pool_ref(x, (3, 2), (2, 2), (1, 0), "avg")),
    OpCase("dropout", DropoutOp, (a(4, 8), a(element="i64", sample=any_seed)),
           lambda v, f: DropoutOp(v[0], v[1], rate=0.3), lambda x, s: dropout_ref(x, s, 0.3)),
    OpCase("dropout-rank0-rate0", DropoutOp, (a(), a(element="i64", sample=any_seed)),
           lambda v, f: DropoutOp(v[0], v[1], rate=0.0), lambda x, s: dropout_ref(x, s, 0.0)),
    # --- ln, fused.py: a body of elementwise ops on rank-0 tensors, operands broadcast --------
    OpCase("fused", FusedOp, (a(4, 3), a(3)),
           lambda v, f: FusedOp.of(v, tensor((4, 3), f), lambda xy: [
               s := MulOp(*xy), t := TanhOp(s), one := FullOp(1.0, tensor((), f)), SubOp(one, t)]),
           lambda x, y: 1 - np.tanh(x * y)),
    OpCase("fused-cast-select", FusedOp, (a(3, element="i32"), a(2, 1)),
           lambda v, f: FusedOp.of(v, tensor((2, 3), f), lambda xy: [
               c := CastOp(xy[0], result_type=tensor((), f)), s := AddOp(c, xy[1]),
               m := GtOp(s, xy[1]), SelectOp(m, s, xy[1])]),
           lambda x, y: np.maximum(x + y, y)),
    OpCase("fused-no-operands", FusedOp, (),
           lambda v, f: FusedOp.of(v, tensor((2,), f), lambda _: [
               o := OnesOp(result_type=tensor((), f)), ExpOp(o)]),
           lambda: np.full((2,), np.e), floats=True),
    OpCase("fused-log-pow-sigmoid", FusedOp,
           (a(2, 3), a(3, sample=positive), a(2, 1, element="i32", sample=below(4))),
           fused_log_pow_sigmoid, fused_log_pow_sigmoid_ref),
    # --- ln, checkpoint.py: a region recomputed by the backward pass --------------------------
    OpCase("checkpoint", CheckpointOp, (a(2, 3), a(3)), checkpointed,
           lambda x, w: np.tanh(x) * w),
    # --- ad: cells and stacks -------------------------------------------------------------------
    OpCase("zero_like-accum-load", ad.AccumOp, (a(2, 3), a(2, 3)),
           lambda v, f: accum_into(ad.ZeroLikeOp(v[0]), v[1], v[0]), lambda x, y: y + x,
           no_grad=CELLS),
    OpCase("cell_from", ad.CellFromOp, (a(3), a(3)),
           lambda v, f: accum_into(ad.CellFromOp(v[0]), v[1]), lambda x, y: x + y, no_grad=CELLS),
    OpCase("zero_cell", ad.ZeroCellOp, (a(2, 2),),
           lambda v, f: accum_into(ad.ZeroCellOp(v[0].type), v[0]), lambda x: x, no_grad=CELLS),
    OpCase("zero_cell-load", ad.LoadOp, (),
           lambda v, f: accum_into(ad.ZeroCellOp(tensor((3,), f))), lambda: np.zeros(3),
           floats=True, no_grad=CELLS),
    OpCase("stack-push-pop", ad.PopOp, (a(2, 3), a(2, 3)), stack_round_trip,
           lambda x, y: y - x, no_grad=CELLS),
    # --- ad: what the linalg passes make (accumulate-products, defer-products, ...) ---------
    OpCase("accum_matmul", ad.AccumMatmulOp, (a(2, 4), a(3, 2), a(3, 4)),
           lambda v, f: accum_matmul(v, transpose_a=True), lambda c, x, y: c + x.T @ y,
           no_grad=CELLS),
    OpCase("accum_matmul-transpose_b", ad.AccumMatmulOp, (a(2, 4), a(2, 3), a(4, 3)),
           lambda v, f: accum_matmul(v, transpose_b=True), lambda c, x, y: c + x @ y.T,
           no_grad=CELLS),
    OpCase("accum_matmul-deferred-flush", ad.FlushProductsOp, (a(2, 4), a(2, 3), a(3, 4)),
           lambda v, f: accum_matmul(v, deferred=True), lambda c, x, y: c + x @ y,
           no_grad=CELLS),
    OpCase("drop_products", ad.DropProductsOp, (a(2, 4), a(2, 4)),
           lambda v, f: [c := ad.CellFromOp(v[0]), ad.DropProductsOp(c), ad.AccumOp(c, v[1]),
                         ad.LoadOp(c)],
           lambda c, g: c + g, no_grad=CELLS),
    # --- buf: what plan-buffers places --------------------------------------------------------
    OpCase("take_cell-take_load", buf.TakeLoadOp, (a(2, 3), a(2, 3)),
           lambda v, f: [t := TanhOp(v[0]), c := buf.TakeCellOp(t), ad.AccumOp(c, v[1]),
                         buf.TakeLoadOp(c)],
           lambda x, y: np.tanh(x) + y, no_grad=CELLS),
    OpCase("release", buf.ReleaseOp, (a(2, 3), a(2, 3)),
           lambda v, f: [t := ExpOp(v[0]), m := MulOp(t, v[1]), buf.ReleaseOp(t), NegOp(m)],
           lambda x, y: -(np.exp(x) * y), no_grad=CELLS),
    OpCase("accum_slice", ad.AccumSliceOp, (a(2, 5), a(2, 2)),
           lambda v, f: [c := ad.CellFromOp(v[0]), ad.AccumSliceOp(c, v[1], axis=1, offset=3),
                         ad.LoadOp(c)],
           lambda c, g: np.concatenate([c[:, :3], c[:, 3:] + g], axis=1), no_grad=CELLS),
]
# fmt: on

# Ops with a float tensor result and a float tensor operand but no adjoint rule:
# their rows are not differentiated (test_adjoint_rules.py checks each is needed).
NO_ADJOINT: dict[type[Operation], str] = {
    # It is itself an adjoint (of max_pool2d); without a rule of its own, max
    # pooling has a first derivative but no second.
    MaxPool2dGradOp: "second order through max pooling is not supported",
    # Made by `fuse-elementwise`, which runs after `reverse-ad` on the adjoint
    # program: nothing differentiates a fused op.
    FusedOp: "fusion runs after reverse-ad",
}

# Ops of the `ln` and `ad` dialects with no row of their own, and why. An op built
# inside another row (a terminator such as `ln.fused_yield`) counts as covered.
NO_ROW: dict[type[Operation], str] = {}


def params(suite: str, cases: Sequence[OpCase] | None = None, per_float: bool = True) -> list:
    """`pytest.param(case, ftype)` for each case and float type (or `pytest.param(case)`
    when not `per_float`), a case with a known bug in `suite` a strict xfail."""
    out = []
    for case in CASES if cases is None else cases:
        marks = (
            [pytest.mark.xfail(reason=case.xfail[suite], strict=True)]
            if suite in case.xfail
            else []
        )
        if per_float:
            for ftype in case.float_types():
                out.append(pytest.param(case, ftype, id=f"{case.id}-{ftype}", marks=marks))
        else:
            out.append(pytest.param(case, id=case.id, marks=marks))
    return out


# --- building and running a row -------------------------------------------------------------


def build_module(case: OpCase, ftype: Attribute) -> ModuleOp:
    """`func.func @f(args) -> result { <ops>; func.return %result }`."""
    arg_types = [arg.type(ftype) for arg in case.args]
    block = Block(arg_types=arg_types)
    ops = case.ops(block.args, ftype)
    result = ops[-1].results[0]
    block.add_ops([*ops, func.ReturnOp(result)])
    return ModuleOp([func.FuncOp("f", (arg_types, [result.type]), Region(block))])


def inputs(case: OpCase, ftype: Attribute) -> list:
    """The row's arguments, drawn by each argument's sampler from a seed of the row's id."""
    rng = np.random.default_rng(zlib.crc32(case.id.encode()))
    return [arg.value(rng, ftype) for arg in case.args]


def reference(case: OpCase, args: Sequence[object]) -> np.ndarray:
    """The row's numpy reference on float64 copies of `args`."""
    return np.asarray(case.ref(*(as_f64(v) for v in args)))
