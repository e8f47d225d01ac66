"""Every differentiable `ln` op's adjoint rule, table-driven, against finite differences.

A case builds one op from block arguments. The test wraps it as

    f(args) = sum(op(args) * R)        (R a fixed random constant: every output counts)

runs `reverse-ad` on `f` for all its float arguments, executes `f_grad` on the
reference interpreter in float64, and compares each adjoint with central
differences of `f` itself, run on the same interpreter.

A second table walk checks that every op of `LN_OPS` with a float tensor result
and a float tensor operand has an adjoint rule, unless it is listed in `EXEMPT`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pytest
from xdsl.builder import Builder
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType, f32, f64, i1, i32, i64
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.rewriter import InsertPoint

from lanterna.ir import make_context, parse_module
from lanterna.ir.interpreter import Interpreter
from lanterna.ir.ln import (
    LN_OPS,
    AbsOp,
    AddOp,
    AvgPool2dOp,
    BroadcastToOp,
    CastOp,
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
from lanterna.ir.ln.adjoint import AdjointBuilder, MissingAdjointRule, is_differentiable_type
from lanterna.ir.types import shape_of, tensor, to_numpy_dtype
from lanterna.passes.reverse_ad import ADError, ReverseAD

EPS = 1e-6
RTOL = 1e-6
ATOL = 1e-8

# Ops with a float tensor result and a float tensor operand but no adjoint rule.
EXEMPT: dict[type[Operation], str] = {
    # It is itself an adjoint (of max_pool2d); without a rule of its own, max
    # pooling has a first derivative but no second.
    MaxPool2dGradOp: "second order through max pooling is not supported",
    # Made by `fuse-elementwise`, which runs after `reverse-ad` on the adjoint
    # program: nothing differentiates a fused op.
    FusedOp: "fusion runs after reverse-ad",
}

F = "F"  # the float element type under test
ELEMENTS: dict[str, Attribute] = {"f32": f32, "f64": f64, "i32": i32, "i64": i64, "i1": i1}

Sampler = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]


# --- samplers: float64 values, kept away from kinks and ties ------------------------------


def normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape)


def positive(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.uniform(0.5, 2.0, shape)


def nonzero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Magnitudes in [0.2, 2]: far from the kink of abs and relu at 0."""
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0) * rng.uniform(0.2, 2.0, shape)


def mask(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.random(shape) < 0.5


def below(n: int) -> Sampler:
    """Indices in [0, n), with repeats likely."""

    def sample(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return rng.integers(0, n, shape)

    return sample


def around(n: int) -> Sampler:
    """Indices in [-n, n): negative ones count from the end."""

    def sample(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return rng.integers(-n, n, shape)

    return sample


def seed(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(-(2**62), 2**62, shape)


# --- the table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Arg:
    shape: tuple[int, ...]
    element: str = F
    sample: Sampler = normal

    def type(self, ftype: Attribute) -> TensorType:
        return tensor(self.shape, ftype if self.element == F else ELEMENTS[self.element])

    @property
    def is_float(self) -> bool:
        return self.element == F


@dataclass(frozen=True)
class Case:
    id: str
    op: type[Operation]
    args: tuple[Arg, ...]
    build: Callable[[list[SSAValue], Attribute], Operation]

    def float_args(self) -> tuple[int, ...]:
        return tuple(i for i, a in enumerate(self.args) if a.is_float)


def a(*shape: int, element: str = F, sample: Sampler = normal) -> Arg:
    return Arg(tuple(shape), element, sample)


def ids(n: int, *shape: int, element: str = "i64") -> Arg:
    return Arg(tuple(shape), element, below(n))


# fmt: off
CASES: list[Case] = [
    # elementwise, with broadcasting and rank 0
    Case("add", AddOp, (a(2, 3), a(2, 3)), lambda v, f: AddOp(v[0], v[1])),
    Case("add-bcast", AddOp, (a(4, 1, 3), a(2, 1)), lambda v, f: AddOp(v[0], v[1])),
    Case("add-rank0", AddOp, (a(), a(2, 3)), lambda v, f: AddOp(v[0], v[1])),
    Case("sub-bcast", SubOp, (a(3), a(2, 3)), lambda v, f: SubOp(v[0], v[1])),
    Case("mul-rank0", MulOp, (a(2, 3), a()), lambda v, f: MulOp(v[0], v[1])),
    Case("mul-same", MulOp, (a(2, 3), a(2, 3)), lambda v, f: MulOp(v[0], v[0])),
    Case("div-bcast", DivOp, (a(2, 3), a(3, sample=nonzero)), lambda v, f: DivOp(v[0], v[1])),
    Case("div-rank0", DivOp, (a(), a(2, 1, sample=nonzero)), lambda v, f: DivOp(v[0], v[1])),
    Case("maximum-bcast", MaximumOp, (a(2, 3), a(2, 1)), lambda v, f: MaximumOp(v[0], v[1])),
    Case("minimum", MinimumOp, (a(3), a(3)), lambda v, f: MinimumOp(v[0], v[1])),
    Case("neg", NegOp, (a(2, 3),), lambda v, f: NegOp(v[0])),
    Case("abs", AbsOp, (a(2, 3, sample=nonzero),), lambda v, f: AbsOp(v[0])),
    Case("exp", ExpOp, (a(2, 3),), lambda v, f: ExpOp(v[0])),
    Case("exp-rank0", ExpOp, (a(),), lambda v, f: ExpOp(v[0])),
    Case("log", LogOp, (a(4, sample=positive),), lambda v, f: LogOp(v[0])),
    Case("tanh", TanhOp, (a(2, 3),), lambda v, f: TanhOp(v[0])),
    Case("sqrt", SqrtOp, (a(3, sample=positive),), lambda v, f: SqrtOp(v[0])),
    Case("sigmoid", SigmoidOp, (a(2, 3),), lambda v, f: SigmoidOp(v[0])),
    Case("relu", ReluOp, (a(2, 3, sample=nonzero),), lambda v, f: ReluOp(v[0])),
    Case("pow", PowOp, (a(3, sample=positive),), lambda v, f: PowOp(v[0], 1.5)),
    Case("pow-1", PowOp, (a(3),), lambda v, f: PowOp(v[0], 1.0)),
    Case("pow-3", PowOp, (a(2, 2),), lambda v, f: PowOp(v[0], 3.0)),
    Case("pow-0", PowOp, (a(3),), lambda v, f: PowOp(v[0], 0.0)),
    Case("power", PowerOp, (a(2, 3, sample=positive), a(3)), lambda v, f: PowerOp(v[0], v[1])),
    Case("power-rank0-base", PowerOp, (a(sample=positive), a(2, 2)),
         lambda v, f: PowerOp(v[0], v[1])),
    Case("select", SelectOp, (a(2, 3, element="i1", sample=mask), a(3), a()),
         lambda v, f: SelectOp(v[0], v[1], v[2])),
    Case("cast", CastOp, (a(2, 3),), lambda v, f: CastOp(v[0], result_type=tensor((2, 3), f))),
    # linalg: every supported rank pair
    Case("matmul-2x2", MatmulOp, (a(2, 3), a(3, 4)), lambda v, f: MatmulOp(v[0], v[1])),
    Case("matmul-2x1", MatmulOp, (a(2, 3), a(3)), lambda v, f: MatmulOp(v[0], v[1])),
    Case("matmul-1x2", MatmulOp, (a(3), a(3, 4)), lambda v, f: MatmulOp(v[0], v[1])),
    Case("matmul-3x3", MatmulOp, (a(2, 3, 4), a(2, 4, 5)), lambda v, f: MatmulOp(v[0], v[1])),
    Case("matmul-3x2", MatmulOp, (a(2, 3, 4), a(4, 5)), lambda v, f: MatmulOp(v[0], v[1])),
    # reductions
    Case("sum-all", SumOp, (a(2, 3, 4),), lambda v, f: SumOp(v[0])),
    Case("sum-axes", SumOp, (a(2, 3, 4),), lambda v, f: SumOp(v[0], axes=(-1, 0))),
    Case("sum-keepdims", SumOp, (a(2, 3),), lambda v, f: SumOp(v[0], axes=1, keepdims=True)),
    Case("sum-none", SumOp, (a(2, 3),), lambda v, f: SumOp(v[0], axes=())),
    Case("sum-rank0", SumOp, (a(),), lambda v, f: SumOp(v[0])),
    Case("mean", MeanOp, (a(2, 3, 4),), lambda v, f: MeanOp(v[0], axes=(1,))),
    Case("mean-all-keepdims", MeanOp, (a(2, 3),), lambda v, f: MeanOp(v[0], keepdims=True)),
    Case("mean-rank0", MeanOp, (a(),), lambda v, f: MeanOp(v[0])),
    Case("max", MaxOp, (a(2, 3, 4),), lambda v, f: MaxOp(v[0], axes=(0, 2))),
    Case("max-keepdims", MaxOp, (a(3, 4),), lambda v, f: MaxOp(v[0], axes=1, keepdims=True)),
    Case("max-all", MaxOp, (a(3, 4),), lambda v, f: MaxOp(v[0])),
    Case("max-rank0", MaxOp, (a(),), lambda v, f: MaxOp(v[0])),
    # shape
    Case("reshape", ReshapeOp, (a(2, 3, 4),), lambda v, f: ReshapeOp(v[0], (6, 4))),
    Case("reshape-rank0", ReshapeOp, (a(),), lambda v, f: ReshapeOp(v[0], (1, 1))),
    Case("reshape-to-rank0", ReshapeOp, (a(1, 1),), lambda v, f: ReshapeOp(v[0], ())),
    Case("transpose", TransposeOp, (a(2, 3, 4),), lambda v, f: TransposeOp(v[0], perm=(2, 0, 1))),
    Case("transpose-default", TransposeOp, (a(2, 3),), lambda v, f: TransposeOp(v[0])),
    Case("transpose-rank0", TransposeOp, (a(),), lambda v, f: TransposeOp(v[0], perm=())),
    Case("broadcast_to", BroadcastToOp, (a(3, 1),), lambda v, f: BroadcastToOp(v[0], (2, 3, 4))),
    Case("broadcast_to-rank0", BroadcastToOp, (a(),), lambda v, f: BroadcastToOp(v[0], (2, 3))),
    Case("concatenate", ConcatenateOp, (a(2, 3), a(2, 1), a(2, 2)),
         lambda v, f: ConcatenateOp(*v, axis=-1)),
    Case("concatenate-axis0-repeat", ConcatenateOp, (a(1, 3), a(2, 3)),
         lambda v, f: ConcatenateOp(v[0], v[1], v[0], axis=0)),
    Case("concatenate-one", ConcatenateOp, (a(3),), lambda v, f: ConcatenateOp(v[0])),
    Case("slice", SliceOp, (a(5, 4),), lambda v, f: SliceOp(v[0], (1, 0), (5, 3), (2, 1))),
    Case("slice-steps", SliceOp, (a(7, 6, 2),),
         lambda v, f: SliceOp(v[0], (1, 2, 0), (7, 5, 2), (3, 2, 1))),
    Case("slice-step-to-end", SliceOp, (a(5, 3),),
         lambda v, f: SliceOp(v[0], (0, 0), (5, 3), (2, 2))),
    Case("slice-whole", SliceOp, (a(3, 2),), lambda v, f: SliceOp(v[0], (0, 0), (3, 2))),
    Case("slice-empty", SliceOp, (a(5, 4),), lambda v, f: SliceOp(v[0], (2, 0), (2, 4))),
    Case("slice-rank0", SliceOp, (a(),), lambda v, f: SliceOp(v[0], (), ())),
    Case("gather", GatherOp, (a(5, 3), ids(5, 2, 4)), lambda v, f: GatherOp(v[0], v[1])),
    Case("gather-rank0-index", GatherOp, (a(5, 3), ids(5, element="i32")),
         lambda v, f: GatherOp(v[0], v[1])),
    Case("gather-1d", GatherOp, (a(6), ids(6, 7)), lambda v, f: GatherOp(v[0], v[1])),
    Case("gather-negative", GatherOp, (a(5, 3), Arg((2, 4), "i64", around(5))),
         lambda v, f: GatherOp(v[0], v[1])),
    Case("scatter_add-negative", ScatterAddOp, (a(2, 4, 3), Arg((2, 4), "i64", around(3))),
         lambda v, f: ScatterAddOp(v[0], v[1], (3, 3))),
    Case("scatter_add", ScatterAddOp, (a(2, 4, 3), ids(3, 2, 4)),
         lambda v, f: ScatterAddOp(v[0], v[1], (3, 3))),
    Case("scatter_add-1d", ScatterAddOp, (a(6), ids(2, 6, element="i32")),
         lambda v, f: ScatterAddOp(v[0], v[1], (2,))),
    # nn
    Case("softmax", SoftmaxOp, (a(3, 5),), lambda v, f: SoftmaxOp(v[0])),
    Case("softmax-axis0", SoftmaxOp, (a(4, 2, 3),), lambda v, f: SoftmaxOp(v[0], axis=0)),
    Case("log_softmax", LogSoftmaxOp, (a(3, 5),), lambda v, f: LogSoftmaxOp(v[0])),
    Case("log_softmax-1d", LogSoftmaxOp, (a(6),), lambda v, f: LogSoftmaxOp(v[0], axis=0)),
    Case("nll_loss", NllLossOp, (a(4, 5), ids(5, 4)), lambda v, f: NllLossOp(v[0], v[1])),
    Case("nll_loss-sum", NllLossOp, (a(4, 5), ids(5, 4, element="i32")),
         lambda v, f: NllLossOp(v[0], v[1], reduction="sum")),
    Case("cross_entropy", CrossEntropyOp, (a(4, 5), ids(5, 4)),
         lambda v, f: CrossEntropyOp(v[0], v[1])),
    Case("cross_entropy-sum", CrossEntropyOp, (a(3, 2), ids(2, 3, element="i32")),
         lambda v, f: CrossEntropyOp(v[0], v[1], reduction="sum")),
    Case("conv2d", Conv2dOp, (a(2, 3, 5, 5), a(4, 3, 3, 3)), lambda v, f: Conv2dOp(v[0], v[1])),
    Case("conv2d-stride-pad", Conv2dOp, (a(1, 2, 6, 5), a(3, 2, 3, 2)),
         lambda v, f: Conv2dOp(v[0], v[1], stride=(2, 1), padding=(1, 2))),
    # (7 + 2 - 3) / 2 leaves no remainder along H, 6 - 2 leaves one along W at stride 3.
    Case("conv2d-stride-remainder", Conv2dOp, (a(2, 1, 7, 6), a(2, 1, 3, 2)),
         lambda v, f: Conv2dOp(v[0], v[1], stride=(2, 3), padding=(1, 0))),
    # The only window along H sees padding alone: no adjoint reaches x there.
    Case("conv2d-window-in-padding", Conv2dOp, (a(1, 1, 1, 3), a(1, 1, 1, 1)),
         lambda v, f: Conv2dOp(v[0], v[1], stride=(10, 1), padding=(3, 0))),
    # The two halves of conv2d's adjoint are linear in both operands; their
    # adjoints are each other and conv2d (second order through convolutions).
    Case("conv2d_input_grad", Conv2dInputGradOp, (a(1, 2, 3, 3), a(2, 3, 3, 2)),
         lambda v, f: Conv2dInputGradOp(v[0], v[1], tensor((1, 3, 6, 4), f), stride=(2, 1),
                                        padding=(1, 0))),
    Case("conv2d_weight_grad", Conv2dWeightGradOp, (a(1, 3, 6, 4), a(1, 2, 3, 3)),
         lambda v, f: Conv2dWeightGradOp(v[0], v[1], tensor((2, 3, 3, 2), f), stride=(2, 1),
                                         padding=(1, 0))),
    Case("max_pool2d", MaxPool2dOp, (a(2, 3, 4, 6),), lambda v, f: MaxPool2dOp(v[0])),
    Case("max_pool2d-overlap-pad", MaxPool2dOp, (a(1, 2, 5, 5),),
         lambda v, f: MaxPool2dOp(v[0], kernel=3, stride=(2, 1), padding=1)),
    Case("max_pool2d-remainder", MaxPool2dOp, (a(1, 1, 5, 7),),
         lambda v, f: MaxPool2dOp(v[0], kernel=2, stride=(2, 3))),
    Case("avg_pool2d", AvgPool2dOp, (a(2, 3, 4, 6),), lambda v, f: AvgPool2dOp(v[0])),
    Case("avg_pool2d-pad", AvgPool2dOp, (a(1, 2, 5, 4),),
         lambda v, f: AvgPool2dOp(v[0], kernel=(3, 2), stride=1, padding=(1, 1))),
    Case("avg_pool2d-remainder", AvgPool2dOp, (a(1, 2, 7, 5),),
         lambda v, f: AvgPool2dOp(v[0], kernel=(3, 2), stride=(2, 2), padding=(1, 0))),
    Case("dropout", DropoutOp, (a(4, 8), a(element="i64", sample=seed)),
         lambda v, f: DropoutOp(v[0], v[1], rate=0.3)),
    Case("dropout-rank0-rate0", DropoutOp, (a(), a(element="i64", sample=seed)),
         lambda v, f: DropoutOp(v[0], v[1], rate=0.0)),
]

# Instances of the ops that have no gradient case, to show they are not
# differentiable: no operand, an i1 result, or a scalar on one side.
NON_DIFFERENTIABLE: list[Case] = [
    Case("constant", ConstantOp, (), lambda v, f: ConstantOp.of(np.ones(2, to_numpy_dtype(f)))),
    Case("zeros", ZerosOp, (), lambda v, f: ZerosOp(result_type=tensor((2,), f))),
    Case("ones", OnesOp, (), lambda v, f: OnesOp(result_type=tensor((2,), f))),
    Case("full", FullOp, (), lambda v, f: FullOp(2.0, tensor((2,), f))),
    *(Case(op.name, op, (a(3), a(3)), lambda v, f, op=op: op(v[0], v[1]))
      for op in (LtOp, LeOp, GtOp, GeOp, EqOp, NeOp)),
    Case("cast-to-int", CastOp, (a(3),), lambda v, f: CastOp(v[0], result_type=tensor((3,), i64))),
    Case("cast-from-int", CastOp, (a(3, element="i32"),),
         lambda v, f: CastOp(v[0], result_type=tensor((3,), f))),
    # ItemOp and FromScalarOp bridge to scalars, which carry no adjoint.
    Case("item", ItemOp, (a(),), lambda v, f: ItemOp(v[0])),
    Case("from_scalar", FromScalarOp, (), lambda v, f: FromScalarOp(float_scalar(f))),
    # Exempt (see EXEMPT): listed here only so the walk builds an instance.
    Case("fused", FusedOp, (a(3), a(3)),
         lambda v, f: FusedOp.of(v, tensor((3,), f), lambda xy: [MulOp(*xy)])),
    Case("max_pool2d_grad", MaxPool2dGradOp, (a(1, 1, 4, 4), a(1, 1, 2, 2)),
         lambda v, f: MaxPool2dGradOp(v[0], v[1], kernel=2, stride=2)),
]
# fmt: on


def float_scalar(ftype: Attribute) -> SSAValue:
    return Block(arg_types=[ftype]).args[0]


# --- helpers ------------------------------------------------------------------------------


def build_loss(case: Case, weights: np.ndarray | None = None) -> ModuleOp:
    """`f(args) = sum(op(args) * R)` in float64; R is random unless given."""
    arg_types = [arg.type(f64) for arg in case.args]
    block = Block(arg_types=arg_types)
    op = case.build(list(block.args), f64)
    shape = shape_of(op.results[0].type)
    if weights is None:
        rng = np.random.default_rng(zlib.crc32(b"R" + case.id.encode()))
        weights = rng.standard_normal(shape)
    r = ConstantOp.of(weights)
    prod = MulOp(op, r)
    loss = SumOp(prod)
    block.add_ops([op, r, prod, loss, func.ReturnOp(loss)])
    f = func.FuncOp("f", (arg_types, [loss.result.type]), Region(block))
    return ModuleOp([f])


def inputs(case: Case) -> list[np.ndarray]:
    rng = np.random.default_rng(zlib.crc32(case.id.encode()))
    out = []
    for arg in case.args:
        v = np.asarray(arg.sample(rng, arg.shape))
        dtype = np.float64 if arg.is_float else to_numpy_dtype(ELEMENTS[arg.element])
        out.append(v.astype(dtype))
    return out


def differentiate(case: Case, argnums: Sequence[int]) -> ModuleOp:
    module = build_loss(case)
    ReverseAD(func="f", argnums=tuple(argnums)).apply(make_context(), module)
    module.verify()
    return module


def finite_differences(interp: Interpreter, args: list[np.ndarray], i: int) -> np.ndarray:
    """d f / d args[i] by central differences."""
    grad = np.zeros_like(args[i])
    for j in np.ndindex(args[i].shape):
        values = []
        for delta in (EPS, -EPS):
            moved = [x.copy() for x in args]
            moved[i][j] += delta
            (loss,) = interp.call("f", *moved)
            values.append(float(loss))
        grad[j] = (values[0] - values[1]) / (2 * EPS)
    return grad


def function(module: ModuleOp, name: str) -> func.FuncOp:
    return next(o for o in module.ops if isinstance(o, func.FuncOp) and o.sym_name.data == name)


def case_params(cases: Sequence[Case]) -> list:
    return [pytest.param(c, id=c.id) for c in cases]


# --- gradients against finite differences -------------------------------------------------


def test_case_ids_are_unique():
    names = [c.id for c in CASES + NON_DIFFERENTIABLE]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("case", case_params(CASES))
def test_adjoint_matches_finite_differences(case: Case):
    argnums = case.float_args()
    module = differentiate(case, argnums)
    interp = Interpreter(module)
    args = inputs(case)
    loss, *grads = interp.call("f_grad", *args)
    (expected_loss,) = interp.call("f", *args)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-12)
    assert len(grads) == len(argnums)
    for i, grad in zip(argnums, grads):
        assert grad.shape == args[i].shape and grad.dtype == np.float64
        np.testing.assert_allclose(
            grad,
            finite_differences(interp, args, i),
            rtol=RTOL,
            atol=ATOL,
            err_msg=f"{case.id}: adjoint of argument {i}",
        )


@pytest.mark.parametrize("case", case_params(CASES))
def test_lower_continuations_keeps_every_rule_s_gradient(case: Case):
    """The adjoint program after `lower-continuations` computes the same numbers."""
    from lanterna.passes.lower_continuations import LowerContinuations

    module = differentiate(case, case.float_args())
    args = inputs(case)
    before = Interpreter(module).call("f_grad", *args)
    LowerContinuations().apply(make_context(), module)
    module.verify()
    assert not any(op.name in ("cont.shift", "cont.reset") for op in module.walk())
    after = Interpreter(module).call("f_grad", *args)
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", case_params([c for c in CASES if len(c.float_args()) > 1]))
def test_adjoint_of_one_operand_alone(case: Case):
    """Rules skip the operands nobody differentiates (`ab.wants`) without changing
    the others' adjoints."""
    args = inputs(case)
    argnums = case.float_args()
    _, *together = Interpreter(differentiate(case, argnums)).call("f_grad", *args)
    for i, expected in zip(argnums, together):
        module = differentiate(case, (i,))
        assert len(function(module, "f_grad").function_type.outputs.data) == 2
        _, alone = Interpreter(module).call("f_grad", *args)
        np.testing.assert_allclose(alone, expected, rtol=1e-12, atol=1e-15)


# --- every differentiable op has a rule -----------------------------------------------------


@dataclass
class Recorded:
    """What a rule accumulated, by operand index."""

    contributions: dict[int, list[SSAValue]]
    body: Block


def run_rule(op: Operation) -> Recorded:
    """Call `op.adjoint` in isolation: every float operand is wanted, the result's
    adjoint is a block argument, and contributions are recorded, not stored."""
    body = Block(arg_types=[op.results[0].type])
    recorded = Recorded({}, body)
    builder = Builder(InsertPoint.at_end(body))

    def accumulate(i: int, contribution: SSAValue) -> None:
        recorded.contributions.setdefault(i, []).append(contribution)

    def wants(i: int) -> bool:
        return is_differentiable_type(op.operands[i].type)

    ab = AdjointBuilder(builder, list(op.operands), op.results[0], body.args[0], accumulate, wants)
    op.adjoint(ab)  # type: ignore[attr-defined]
    return recorded


def is_differentiable(op: Operation) -> bool:
    return is_differentiable_type(op.results[0].type) and any(
        is_differentiable_type(o.type) for o in op.operands
    )


def instances(cases: Sequence[Case]) -> list[tuple[Case, Attribute, Operation]]:
    out = []
    for case in cases:
        for ftype in (f32, f64):
            args = Block(arg_types=[arg.type(ftype) for arg in case.args]).args
            out.append((case, ftype, case.build(list(args), ftype)))
    return out


def test_every_op_is_classified():
    covered = {c.op for c in CASES + NON_DIFFERENTIABLE}
    missing = [op.name for op in LN_OPS if op not in covered]
    assert not missing, f"ops in LN_OPS with no case in test_adjoint_rules: {missing}"


def test_every_differentiable_op_has_an_adjoint_rule():
    lacking: list[str] = []
    for case, ftype, op in instances(CASES + NON_DIFFERENTIABLE):
        if not is_differentiable(op):
            continue
        if type(op) not in {c.op for c in CASES} and type(op) not in EXEMPT:
            lacking.append(f"{op.name} (no gradient case; from {case.id})")
            continue
        try:
            run_rule(op)
        except MissingAdjointRule:
            if type(op) not in EXEMPT:
                lacking.append(f"{op.name} ({case.id}, {ftype})")
    assert not lacking, f"differentiable ops without an adjoint rule: {lacking}"


def test_exemptions_are_needed():
    """An exempt op that gains a rule (or stops being differentiable) leaves the list."""
    for case, _, op in instances(NON_DIFFERENTIABLE):
        if type(op) in EXEMPT:
            assert is_differentiable(op), f"{op.name} is not differentiable; drop its exemption"
            with pytest.raises(MissingAdjointRule):
                run_rule(op)


def test_gradient_cases_are_differentiable():
    for case, _, op in instances(CASES):
        assert is_differentiable(op), f"{case.id}: {op.name} is not differentiable here"


@pytest.mark.parametrize("ftype", [f32, f64])
def test_rules_build_well_typed_ir_for_each_float_type(ftype: Attribute):
    """Contributions have exactly the operand's type (after `accum`'s un-broadcast),
    and everything a rule builds verifies, in f32 as well as f64."""
    for case, t, op in instances(CASES):
        if t != ftype:
            continue
        recorded = run_rule(op)
        for new in recorded.body.ops:
            new.verify()
        for i, values in recorded.contributions.items():
            for v in values:
                assert v.type == op.operands[i].type, f"{case.id}: operand {i}"
        wanted = {i for i, o in enumerate(op.operands) if is_differentiable_type(o.type)}
        if 0 in shape_of(op.results[0].type):
            # An empty result has nothing to pull back.
            assert set(recorded.contributions) <= wanted, case.id
        else:
            assert set(recorded.contributions) == wanted, case.id


# --- integer operands ---------------------------------------------------------------------


def test_integer_operands_get_no_adjoint():
    """Indices, targets and seeds reach rules as operands without cells: the rules
    accumulate nothing into them, and the function still differentiates."""
    for case, _, op in instances(CASES):
        ints = {i for i, arg in enumerate(case.args) if not arg.is_float}
        if ints:
            assert not ints & set(run_rule(op).contributions), case.id

    source = """
    func.func @f(%table: tensor<5x3xf64>, %ids: tensor<4xi64>, %seed: tensor<i64>,
                 %t: tensor<4xi32>) -> tensor<f64> {
      %e = ln.gather %table, %ids : tensor<5x3xf64>, tensor<4xi64>
      %d = ln.dropout %e, %seed {rate = 0.5 : f64} : tensor<4x3xf64>, tensor<i64>
      %s = ln.scatter_add %d, %ids : tensor<4x3xf64>, tensor<4xi64> -> tensor<5x3xf64>
      %z = ln.slice %s {start = array<i64: 0, 0>, stop = array<i64: 4, 3>,
                        step = array<i64: 1, 1>} : tensor<5x3xf64>
      %p = ln.log_softmax %z {axis = 1 : i64} : tensor<4x3xf64>
      %l1 = ln.nll_loss %p, %t {reduction = "mean"} : tensor<4x3xf64>, tensor<4xi32>
      %l2 = ln.cross_entropy %z, %t {reduction = "sum"} : tensor<4x3xf64>, tensor<4xi32>
      %l = ln.add %l1, %l2 : tensor<f64>, tensor<f64>
      func.return %l : tensor<f64>
    }
    """
    module = parse_module(source)
    ReverseAD(func="f", argnums=(0,)).apply(make_context(), module)
    module.verify()
    outputs = list(function(module, "f_grad").function_type.outputs.data)
    assert outputs == [tensor((), f64), tensor((5, 3), f64)]
    rng = np.random.default_rng(0)
    args = [
        rng.standard_normal((5, 3)),
        np.array([0, 3, 3, 1], np.int64),
        np.array(11, np.int64),
        np.array([2, 0, 1, 2], np.int32),
    ]
    interp = Interpreter(module)
    _, grad = interp.call("f_grad", *args)
    np.testing.assert_allclose(grad, finite_differences(interp, args, 0), rtol=RTOL, atol=ATOL)

    for i in (1, 2, 3):
        with pytest.raises(ADError, match=f"argument {i} has type"):
            ReverseAD(func="f", argnums=(i,)).apply(make_context(), parse_module(source))


# --- the subgradient at ties ----------------------------------------------------------------


def grad_with_weights(case: Case, args: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    module = build_loss(case, weights)
    ReverseAD(func="f", argnums=(0,)).apply(make_context(), module)
    _, grad = Interpreter(module).call("f_grad", *args)
    return grad


def test_max_splits_the_adjoint_evenly_among_ties():
    case = Case("max-ties", MaxOp, (a(2, 3),), lambda v, f: MaxOp(v[0], axes=1))
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    grad = grad_with_weights(case, [x], np.array([1.0, 3.0]))
    np.testing.assert_allclose(grad, [[0.0, 0.5, 0.5], [1.0, 1.0, 1.0]], rtol=1e-15)


def test_max_pool2d_splits_the_adjoint_evenly_among_ties():
    case = Case("max_pool2d-ties", MaxPool2dOp, (a(1, 1, 2, 4),), lambda v, f: MaxPool2dOp(v[0]))
    x = np.array([[[[5.0, 5.0, 1.0, 7.0], [5.0, 5.0, 7.0, 0.0]]]])
    grad = grad_with_weights(case, [x], np.array([[[[4.0, 2.0]]]]))
    np.testing.assert_allclose(grad, [[[[1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]]]], rtol=1e-15)
