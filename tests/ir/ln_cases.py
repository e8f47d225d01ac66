"""The table of `ln` op cases shared by the IR tests.

test_ln_ops.py checks each case's syntax and `evaluate`, test_interpreter_ops.py
runs it through the reference interpreter. Tests are not a package, so
conftest.py loads this module by path and hands it out as the `ln_cases`
fixture; it also parametrizes `ln_case`/`ln_eval_case` (with `ftype`) over
`params()`.

A case lists the op's block arguments (shape, element type, how to sample them),
how to build the op from them, and a reference computed in float64 from the same
inputs. `F` stands for the float type under test; a case that uses it runs once
per float type.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, f32, f64, i1, i32, i64
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue

from lanterna.ir.ln import (
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
from lanterna.ir.types import tensor, to_numpy_dtype

F = "F"  # the float element type under test
ELEMENTS: dict[str, Attribute] = {"f32": f32, "f64": f64, "i32": i32, "i64": i64, "i1": i1}
RTOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}

Sampler = Callable[[np.random.Generator, tuple[int, ...], np.dtype], np.ndarray]


# --- samplers -----------------------------------------------------------------------------


def normal(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer):
        return rng.integers(-5, 6, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def positive(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return rng.uniform(0.5, 2.0, shape).astype(dtype)


def nonzero(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    sign = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    return (sign * rng.uniform(0.5, 2.0, shape)).astype(dtype)


def below(n: int) -> Sampler:
    """Indices in [0, n), with repeats likely."""

    def sample(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return rng.integers(0, n, shape).astype(dtype)

    return sample


def around(n: int) -> Sampler:
    """Indices in [-n, n): negative ones count from the end."""

    def sample(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return rng.integers(-n, n, shape).astype(dtype)

    return sample


def whole(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Integer-valued floats in [-3, 3]: exponents a negative base can take."""
    return rng.integers(-3, 4, shape).astype(dtype)


def any_seed(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return rng.integers(-(2**62), 2**62, shape).astype(dtype)


# --- the table ----------------------------------------------------------------------------


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

    def value(self, rng: np.random.Generator, ftype: Attribute) -> np.ndarray | np.generic:
        dtype = to_numpy_dtype(self.element_type(ftype))
        v = self.sample(rng, () if self.shape is None else self.shape, dtype)
        return v[()] if self.shape is None else v


@dataclass(frozen=True)
class Case:
    id: str
    op: type[Operation]
    args: tuple[Arg, ...]
    build: Callable[[list[SSAValue], Attribute], Operation]
    ref: Callable[..., np.ndarray | float | bool]
    floats: bool | None = None  # runs once per float type; default: when an arg uses F
    xfail: str | None = None  # a known bug, strictly expected to fail `evaluate`

    def float_types(self) -> list[Attribute]:
        floats = self.floats if self.floats is not None else any(a.element == F for a in self.args)
        return [f32, f64] if floats else [f32]


def a(*shape: int, element: str = F, sample: Sampler = normal) -> Arg:
    return Arg(tuple(shape), element, sample)


def softmax_ref(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def nll_ref(logp: np.ndarray, target: np.ndarray, mean: bool) -> float:
    total = -sum(logp[i, t] for i, t in enumerate(target))
    return total / len(target) if mean else total


def matmul_ref(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    spec = {
        (2, 2): "mk,kn->mn",
        (2, 1): "mk,k->m",
        (1, 2): "k,kn->n",
        (3, 3): "bmk,bkn->bmn",
        (3, 2): "bmk,kn->bmn",
    }[(x.ndim, y.ndim)]
    return np.einsum(spec, x, y)


def padded(x: np.ndarray, padding: tuple[int, int], fill: float) -> np.ndarray:
    n, c, h, w = x.shape
    ph, pw = padding
    out = np.full((n, c, h + 2 * ph, w + 2 * pw), fill)
    out[:, :, ph : ph + h, pw : pw + w] = x
    return out


def conv2d_ref(x: np.ndarray, w: np.ndarray, stride: tuple[int, int], padding: tuple[int, int]):
    xp = padded(x, padding, 0.0)
    n, o, (kh, kw), (sh, sw) = x.shape[0], w.shape[0], w.shape[2:], stride
    oh, ow = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    out = np.zeros((n, o, oh, ow))
    for b, f, i, j in itertools.product(range(n), range(o), range(oh), range(ow)):
        out[b, f, i, j] = np.sum(xp[b, :, i * sh : i * sh + kh, j * sw : j * sw + kw] * w[f])
    return out


def conv2d_input_grad_ref(g, w, x_shape, stride, padding) -> np.ndarray:
    """Every output entry's adjoint times the weight, added back over its window."""
    (sh, sw), (ph, pw), (kh, kw) = stride, padding, w.shape[2:]
    n, c, h, wd = x_shape
    out = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    for b, f, i, j in itertools.product(range(n), range(w.shape[0]), *map(range, g.shape[2:])):
        out[b, :, i * sh : i * sh + kh, j * sw : j * sw + kw] += g[b, f, i, j] * w[f]
    return out[:, :, ph : ph + h, pw : pw + wd]


def conv2d_weight_grad_ref(x, g, kernel, stride, padding) -> np.ndarray:
    """Every output entry's adjoint times its input window, summed."""
    xp = padded(x, padding, 0.0)
    (sh, sw), (kh, kw) = stride, kernel
    out = np.zeros((g.shape[1], x.shape[1], kh, kw))
    for b, f, i, j in itertools.product(range(x.shape[0]), range(g.shape[1]), *map(range, g.shape[2:])):
        out[f] += g[b, f, i, j] * xp[b, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
    return out


def pool_ref(x, kernel, stride, padding, reduce: str) -> np.ndarray:
    xp = padded(x, padding, -np.inf if reduce == "max" else 0.0)
    (kh, kw), (sh, sw) = kernel, stride
    oh, ow = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    out = np.zeros((*x.shape[:2], oh, ow))
    for b, c, i, j in itertools.product(range(x.shape[0]), range(x.shape[1]), range(oh), range(ow)):
        window = xp[b, c, i * sh : i * sh + kh, j * sw : j * sw + kw]
        out[b, c, i, j] = window.max() if reduce == "max" else window.sum() / (kh * kw)
    return out


def max_pool_grad_ref(x, g, kernel, stride, padding) -> np.ndarray:
    """Each window's entry of g, split evenly among the window's maxima."""
    xp = padded(x, padding, -np.inf)
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    out = np.zeros(xp.shape)
    for b, c, i, j in itertools.product(*(range(d) for d in g.shape)):
        window = xp[b, c, i * sh : i * sh + kh, j * sw : j * sw + kw]
        hits = window == window.max()
        out[b, c, i * sh : i * sh + kh, j * sw : j * sw + kw] += hits * g[b, c, i, j] / hits.sum()
    return out[:, :, ph : ph + x.shape[2], pw : pw + x.shape[3]]


def tied(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Few distinct values, so pooling windows hold tied maxima."""
    return rng.integers(0, 3, shape).astype(dtype)


MASK64 = 2**64 - 1


def splitmix64_int(z: int) -> int:
    """SplitMix64 on Python ints, written independently of the numpy version."""
    z = (z + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def dropout_ref(x: np.ndarray, seed: np.ndarray, rate: float) -> np.ndarray:
    s = int(seed) & MASK64
    flat = x.reshape(-1)
    out = np.zeros(flat.shape)
    for i, v in enumerate(flat):
        u = (splitmix64_int((s * 0x9E3779B97F4A7C15 + i) & MASK64) >> 40) / 2**24
        out[i] = v / (1 - rate) if u >= rate else 0.0
    return out.reshape(x.shape)


def scatter_add_ref(updates: np.ndarray, indices: np.ndarray, shape: tuple[int, ...]):
    out = np.zeros(shape)
    rows = updates.reshape((-1, *shape[1:]))
    for j, i in enumerate(indices.reshape(-1)):
        out[i] += rows[j]
    return out


# elementwise.py applies numpy ufuncs directly, and a ufunc over rank-0 arrays
# returns a numpy scalar rather than a 0-d array.

CONST = np.array([[1.5, -2.0, 0.25], [3.0, 0.5, -0.75]])

# One row per case; kept compact on purpose.
# fmt: off
CASES: list[Case] = [
    # constants
    Case("constant", ConstantOp, (), lambda v, f: ConstantOp.of(CONST.astype(to_numpy_dtype(f))),
         lambda: CONST, floats=True),
    Case("constant-i64", ConstantOp, (), lambda v, f: ConstantOp.of(np.array([3, -1], np.int64)),
         lambda: np.array([3, -1])),
    Case("zeros", ZerosOp, (), lambda v, f: ZerosOp(result_type=tensor((2, 3), f)),
         lambda: np.zeros((2, 3)), floats=True),
    Case("ones-rank0", OnesOp, (), lambda v, f: OnesOp(result_type=tensor((), f)),
         lambda: np.ones(()), floats=True),
    Case("full", FullOp, (), lambda v, f: FullOp(2.5, tensor((4,), f)),
         lambda: np.full((4,), 2.5), floats=True),
    # binary, with broadcasting and rank 0
    Case("add", AddOp, (a(2, 3), a(2, 3)), lambda v, f: AddOp(v[0], v[1]), lambda x, y: x + y),
    Case("add-bcast", AddOp, (a(4, 1, 3), a(2, 1)), lambda v, f: AddOp(v[0], v[1]),
         lambda x, y: x + y),
    Case("add-rank0", AddOp, (a(), a(2, 3)), lambda v, f: AddOp(v[0], v[1]), lambda x, y: x + y),
    Case("add-i32", AddOp, (a(3, element="i32"), a(2, 1, element="i32")),
         lambda v, f: AddOp(v[0], v[1]), lambda x, y: x + y),
    Case("sub", SubOp, (a(3), a(2, 3)), lambda v, f: SubOp(v[0], v[1]), lambda x, y: x - y),
    Case("mul", MulOp, (a(2, 3), a()), lambda v, f: MulOp(v[0], v[1]), lambda x, y: x * y),
    Case("mul-i64", MulOp, (a(4, element="i64"), a(4, element="i64")),
         lambda v, f: MulOp(v[0], v[1]), lambda x, y: x * y),
    Case("div", DivOp, (a(2, 3), a(3, sample=nonzero)), lambda v, f: DivOp(v[0], v[1]),
         lambda x, y: x / y),
    Case("maximum", MaximumOp, (a(2, 3), a(2, 1)), lambda v, f: MaximumOp(v[0], v[1]),
         lambda x, y: np.where(x > y, x, y)),
    Case("minimum", MinimumOp, (a(3), a(3)), lambda v, f: MinimumOp(v[0], v[1]),
         lambda x, y: np.where(x < y, x, y)),
    Case("lt", LtOp, (a(2, 3), a(3)), lambda v, f: LtOp(v[0], v[1]), lambda x, y: x < y),
    Case("le", LeOp, (a(3), a()), lambda v, f: LeOp(v[0], v[1]), lambda x, y: x <= y),
    Case("gt", GtOp, (a(2, 3), a(2, 3)), lambda v, f: GtOp(v[0], v[1]), lambda x, y: x > y),
    Case("ge", GeOp, (a(3, element="i32"), a(3, element="i32")),
         lambda v, f: GeOp(v[0], v[1]), lambda x, y: x >= y),
    Case("eq", EqOp, (a(4, element="i64"), a(1, element="i64")),
         lambda v, f: EqOp(v[0], v[1]), lambda x, y: x == y),
    Case("ne", NeOp, (a(2, 2), a(2, 2)), lambda v, f: NeOp(v[0], v[1]), lambda x, y: x != y),
    # unary
    Case("neg", NegOp, (a(2, 3),), lambda v, f: NegOp(v[0]), lambda x: -x),
    Case("neg-i32", NegOp, (a(5, element="i32"),), lambda v, f: NegOp(v[0]), lambda x: -x),
    Case("abs", AbsOp, (a(),), lambda v, f: AbsOp(v[0]), lambda x: np.where(x < 0, -x, x)),
    Case("exp", ExpOp, (a(2, 3),), lambda v, f: ExpOp(v[0]), np.exp),
    Case("exp-rank0", ExpOp, (a(),), lambda v, f: ExpOp(v[0]), np.exp),
    Case("log", LogOp, (a(4, sample=positive),), lambda v, f: LogOp(v[0]), np.log),
    Case("tanh", TanhOp, (a(2, 3),), lambda v, f: TanhOp(v[0]),
         lambda x: (np.exp(2 * x) - 1) / (np.exp(2 * x) + 1)),
    Case("sqrt", SqrtOp, (a(3, sample=positive),), lambda v, f: SqrtOp(v[0]), lambda x: x**0.5),
    Case("sigmoid", SigmoidOp, (a(2, 3),), lambda v, f: SigmoidOp(v[0]),
         lambda x: 1 / (1 + np.exp(-x))),
    Case("relu", ReluOp, (a(2, 3),), lambda v, f: ReluOp(v[0]), lambda x: x * (x > 0)),
    Case("pow", PowOp, (a(3, sample=positive),), lambda v, f: PowOp(v[0], 1.5),
         lambda x: np.exp(1.5 * np.log(x))),
    Case("power", PowerOp, (a(2, 3, sample=positive), a(3)),
         lambda v, f: PowerOp(v[0], v[1]), lambda x, y: np.exp(y * np.log(x))),
    # numpy's power: a negative base to an integer-valued exponent is real.
    Case("power-negative-base", PowerOp, (a(2, 3, sample=nonzero), a(2, 3, sample=whole)),
         lambda v, f: PowerOp(v[0], v[1]),
         lambda x, y: np.sign(x) ** np.abs(y) * np.abs(x) ** y),
    # select and cast
    Case("select", SelectOp, (a(2, 3, element="i1"), a(3), a()),
         lambda v, f: SelectOp(v[0], v[1], v[2]),
         lambda c, x, y: np.where(c, x + np.zeros((2, 3)), y)),
    Case("cast-f64", CastOp, (a(2, 3),), lambda v, f: CastOp(v[0], result_type=tensor((2, 3), f64)),
         lambda x: x),
    Case("cast-i32", CastOp, (a(4),), lambda v, f: CastOp(v[0], result_type=tensor((4,), i32)),
         lambda x: np.trunc(x)),
    Case("cast-from-i1", CastOp, (a(3, element="i1"),),
         lambda v, f: CastOp(v[0], result_type=tensor((3,), f)),
         lambda x: np.where(x, 1.0, 0.0), floats=True),
    # linalg
    Case("matmul-2x2", MatmulOp, (a(2, 3), a(3, 4)), lambda v, f: MatmulOp(v[0], v[1]), matmul_ref),
    Case("matmul-2x1", MatmulOp, (a(2, 3), a(3)), lambda v, f: MatmulOp(v[0], v[1]), matmul_ref),
    Case("matmul-1x2", MatmulOp, (a(3), a(3, 4)), lambda v, f: MatmulOp(v[0], v[1]), matmul_ref),
    Case("matmul-3x3", MatmulOp, (a(2, 3, 4), a(2, 4, 5)), lambda v, f: MatmulOp(v[0], v[1]),
         matmul_ref),
    Case("matmul-3x2", MatmulOp, (a(2, 3, 4), a(4, 5)), lambda v, f: MatmulOp(v[0], v[1]),
         matmul_ref),
    # reductions
    Case("sum-all", SumOp, (a(2, 3, 4),), lambda v, f: SumOp(v[0]), lambda x: x.sum()),
    Case("sum-axes", SumOp, (a(2, 3, 4),), lambda v, f: SumOp(v[0], axes=(-1, 0)),
         lambda x: x.sum(axis=(0, 2))),
    Case("sum-keepdims", SumOp, (a(2, 3),), lambda v, f: SumOp(v[0], axes=1, keepdims=True),
         lambda x: x.sum(axis=1, keepdims=True)),
    Case("sum-rank0", SumOp, (a(),), lambda v, f: SumOp(v[0]), lambda x: x),
    Case("sum-i64", SumOp, (a(3, 4, element="i64"),), lambda v, f: SumOp(v[0], axes=(0,)),
         lambda x: x.sum(axis=0)),
    Case("mean", MeanOp, (a(2, 3, 4),), lambda v, f: MeanOp(v[0], axes=(1,)),
         lambda x: x.sum(axis=1) / 3),
    Case("mean-all-keepdims", MeanOp, (a(2, 3),), lambda v, f: MeanOp(v[0], keepdims=True),
         lambda x: np.full((1, 1), x.sum() / 6)),
    Case("max", MaxOp, (a(2, 3, 4),), lambda v, f: MaxOp(v[0], axes=(0, 2)),
         lambda x: x.max(axis=(0, 2))),
    Case("max-i32", MaxOp, (a(3, 4, element="i32"),), lambda v, f: MaxOp(v[0], keepdims=True),
         lambda x: np.full((1, 1), x.max())),
    # shape
    Case("reshape", ReshapeOp, (a(2, 3, 4),), lambda v, f: ReshapeOp(v[0], tensor((6, 4), f)),
         lambda x: x.reshape(6, 4)),
    Case("reshape-rank0", ReshapeOp, (a(),), lambda v, f: ReshapeOp(v[0], (1, 1)),
         lambda x: x.reshape(1, 1)),
    Case("reshape-to-rank0", ReshapeOp, (a(1, 1, element="i32"),),
         lambda v, f: ReshapeOp(v[0], ()), lambda x: x.reshape(())),
    Case("transpose", TransposeOp, (a(2, 3, 4),), lambda v, f: TransposeOp(v[0], perm=(2, 0, 1)),
         lambda x: np.moveaxis(x, 2, 0)),
    Case("transpose-default", TransposeOp, (a(2, 3),), lambda v, f: TransposeOp(v[0]),
         lambda x: x.T),
    Case("transpose-rank0", TransposeOp, (a(),), lambda v, f: TransposeOp(v[0], perm=()),
         lambda x: x),
    Case("broadcast_to", BroadcastToOp, (a(3, 1),),
         lambda v, f: BroadcastToOp(v[0], tensor((2, 3, 4), f)),
         lambda x: x + np.zeros((2, 3, 4))),
    Case("broadcast_to-rank0", BroadcastToOp, (a(),), lambda v, f: BroadcastToOp(v[0], (2, 3)),
         lambda x: x + np.zeros((2, 3))),
    Case("concatenate", ConcatenateOp, (a(2, 3), a(2, 1), a(2, 2)),
         lambda v, f: ConcatenateOp(*v, axis=-1), lambda *xs: np.hstack(xs)),
    Case("concatenate-one", ConcatenateOp, (a(3, element="i64"),),
         lambda v, f: ConcatenateOp(v[0]), lambda x: x),
    Case("slice", SliceOp, (a(5, 4),), lambda v, f: SliceOp(v[0], (1, 0), (5, 3), (2, 1)),
         lambda x: x[[1, 3]][:, [0, 1, 2]]),
    Case("slice-empty", SliceOp, (a(5, 4),), lambda v, f: SliceOp(v[0], (2, 0), (2, 4)),
         lambda x: np.zeros((0, 4))),
    Case("slice-rank0", SliceOp, (a(),), lambda v, f: SliceOp(v[0], (), ()), lambda x: x),
    Case("gather", GatherOp, (a(5, 3), a(2, 4, element="i64", sample=below(5))),
         lambda v, f: GatherOp(v[0], v[1]),
         lambda t, i: np.array([[t[k] for k in row] for row in i])),
    Case("gather-i32-rank0", GatherOp, (a(5, 3), a(element="i32", sample=below(5))),
         lambda v, f: GatherOp(v[0], v[1]), lambda t, i: t[int(i)]),
    Case("gather-1d", GatherOp, (a(6), a(7, element="i64", sample=below(6))),
         lambda v, f: GatherOp(v[0], v[1]), lambda t, i: np.array([t[k] for k in i])),
    # Negative indices count from the end, as numpy's.
    Case("gather-negative", GatherOp, (a(5, 3), a(2, 4, element="i64", sample=around(5))),
         lambda v, f: GatherOp(v[0], v[1]),
         lambda t, i: np.array([[t[k + 5 if k < 0 else k] for k in row] for row in i])),
    Case("scatter_add-negative", ScatterAddOp,
         (a(2, 4, 3), a(2, 4, element="i64", sample=around(3))),
         lambda v, f: ScatterAddOp(v[0], v[1], tensor((3, 3), f)),
         lambda u, i: scatter_add_ref(u, i % 3, (3, 3))),
    Case("scatter_add", ScatterAddOp, (a(2, 4, 3), a(2, 4, element="i64", sample=below(3))),
         lambda v, f: ScatterAddOp(v[0], v[1], tensor((3, 3), f)),
         lambda u, i: scatter_add_ref(u, i, (3, 3))),
    Case("scatter_add-i32", ScatterAddOp,
         (a(6, element="i32"), a(6, element="i32", sample=below(2))),
         lambda v, f: ScatterAddOp(v[0], v[1], (2,)),
         lambda u, i: scatter_add_ref(u, i, (2,)).astype(np.int64)),
    Case("item", ItemOp, (a(),), lambda v, f: ItemOp(v[0]), lambda x: x[()]),
    Case("item-i1", ItemOp, (a(element="i1"),), lambda v, f: ItemOp(v[0]), lambda x: x[()]),
    Case("item-i64", ItemOp, (a(element="i64"),), lambda v, f: ItemOp(v[0]), lambda x: x[()]),
    Case("from_scalar", FromScalarOp, (Arg(None),), lambda v, f: FromScalarOp(v[0]),
         lambda s: np.array(s)),
    Case("from_scalar-i32", FromScalarOp, (Arg(None, "i32"),), lambda v, f: FromScalarOp(v[0]),
         lambda s: np.array(s)),
    # nn
    Case("softmax", SoftmaxOp, (a(3, 5),), lambda v, f: SoftmaxOp(v[0]),
         lambda x: softmax_ref(x, 1)),
    Case("softmax-axis0", SoftmaxOp, (a(4, 2, 3),), lambda v, f: SoftmaxOp(v[0], axis=0),
         lambda x: softmax_ref(x, 0)),
    Case("log_softmax", LogSoftmaxOp, (a(3, 5),), lambda v, f: LogSoftmaxOp(v[0]),
         lambda x: np.log(softmax_ref(x, 1))),
    Case("log_softmax-1d", LogSoftmaxOp, (a(6),), lambda v, f: LogSoftmaxOp(v[0], axis=0),
         lambda x: np.log(softmax_ref(x, 0))),
    Case("nll_loss", NllLossOp, (a(4, 5), a(4, element="i64", sample=below(5))),
         lambda v, f: NllLossOp(v[0], v[1]), lambda p, t: nll_ref(p, t, mean=True)),
    Case("nll_loss-sum", NllLossOp, (a(4, 5), a(4, element="i32", sample=below(5))),
         lambda v, f: NllLossOp(v[0], v[1], reduction="sum"),
         lambda p, t: nll_ref(p, t, mean=False)),
    Case("cross_entropy", CrossEntropyOp, (a(4, 5), a(4, element="i64", sample=below(5))),
         lambda v, f: CrossEntropyOp(v[0], v[1]),
         lambda z, t: nll_ref(np.log(softmax_ref(z, 1)), t, mean=True)),
    Case("cross_entropy-sum", CrossEntropyOp, (a(3, 2), a(3, element="i32", sample=below(2))),
         lambda v, f: CrossEntropyOp(v[0], v[1], reduction="sum"),
         lambda z, t: nll_ref(np.log(softmax_ref(z, 1)), t, mean=False)),
    Case("conv2d", Conv2dOp, (a(2, 3, 5, 5), a(4, 3, 3, 3)), lambda v, f: Conv2dOp(v[0], v[1]),
         lambda x, w: conv2d_ref(x, w, (1, 1), (0, 0))),
    Case("conv2d-stride-pad", Conv2dOp, (a(1, 2, 6, 5), a(3, 2, 3, 2)),
         lambda v, f: Conv2dOp(v[0], v[1], stride=(2, 1), padding=(1, 2)),
         lambda x, w: conv2d_ref(x, w, (2, 1), (1, 2))),
    Case("conv2d_input_grad", Conv2dInputGradOp, (a(2, 4, 3, 3), a(4, 3, 3, 3)),
         lambda v, f: Conv2dInputGradOp(v[0], v[1], tensor((2, 3, 5, 5), f)),
         lambda g, w: conv2d_input_grad_ref(g, w, (2, 3, 5, 5), (1, 1), (0, 0))),
    # Stride 2 along H with a remainder row no window reaches; padding along W.
    Case("conv2d_input_grad-stride-pad", Conv2dInputGradOp, (a(1, 3, 3, 6), a(3, 2, 3, 2)),
         lambda v, f: Conv2dInputGradOp(v[0], v[1], tensor((1, 2, 8, 5), f), stride=(2, 1),
                                        padding=(0, 1)),
         lambda g, w: conv2d_input_grad_ref(g, w, (1, 2, 8, 5), (2, 1), (0, 1))),
    Case("conv2d_weight_grad", Conv2dWeightGradOp, (a(2, 3, 5, 5), a(2, 4, 3, 3)),
         lambda v, f: Conv2dWeightGradOp(v[0], v[1], tensor((4, 3, 3, 3), f)),
         lambda x, g: conv2d_weight_grad_ref(x, g, (3, 3), (1, 1), (0, 0))),
    Case("conv2d_weight_grad-stride-pad", Conv2dWeightGradOp, (a(1, 2, 8, 5), a(1, 3, 3, 6)),
         lambda v, f: Conv2dWeightGradOp(v[0], v[1], tensor((3, 2, 3, 2), f), stride=(2, 1),
                                         padding=(0, 1)),
         lambda x, g: conv2d_weight_grad_ref(x, g, (3, 2), (2, 1), (0, 1))),
    Case("max_pool2d", MaxPool2dOp, (a(2, 3, 4, 6),), lambda v, f: MaxPool2dOp(v[0]),
         lambda x: pool_ref(x, (2, 2), (2, 2), (0, 0), "max")),
    Case("max_pool2d-pad", MaxPool2dOp, (a(1, 2, 5, 5),),
         lambda v, f: MaxPool2dOp(v[0], kernel=3, stride=(2, 1), padding=1),
         lambda x: pool_ref(x, (3, 3), (2, 1), (1, 1), "max")),
    Case("max_pool2d_grad", MaxPool2dGradOp, (a(2, 3, 4, 6), a(2, 3, 2, 3)),
         lambda v, f: MaxPool2dGradOp(v[0], v[1], kernel=2, stride=2),
         lambda x, g: max_pool_grad_ref(x, g, (2, 2), (2, 2), (0, 0))),
    Case("max_pool2d_grad-ties-overlap-pad", MaxPool2dGradOp,
         (a(1, 2, 5, 5, sample=tied), a(1, 2, 3, 5)),
         lambda v, f: MaxPool2dGradOp(v[0], v[1], kernel=3, stride=(2, 1), padding=1),
         lambda x, g: max_pool_grad_ref(x, g, (3, 3), (2, 1), (1, 1))),
    Case("avg_pool2d", AvgPool2dOp, (a(2, 3, 4, 6),), lambda v, f: AvgPool2dOp(v[0]),
         lambda x: pool_ref(x, (2, 2), (2, 2), (0, 0), "avg")),
    Case("avg_pool2d-pad", AvgPool2dOp, (a(1, 2, 5, 4),),
         lambda v, f: AvgPool2dOp(v[0], kernel=(3, 2), stride=1, padding=(1, 1)),
         lambda x: pool_ref(x, (3, 2), (1, 1), (1, 1), "avg")),
    Case("dropout", DropoutOp, (a(4, 8), a(element="i64", sample=any_seed)),
         lambda v, f: DropoutOp(v[0], v[1], rate=0.3), lambda x, s: dropout_ref(x, s, 0.3)),
    # fused: a body of elementwise ops on rank-0 tensors, operands broadcast
    Case("fused", FusedOp, (a(4, 3), a(3)),
         lambda v, f: FusedOp.of(v, tensor((4, 3), f), lambda xy: [
             s := MulOp(*xy), t := TanhOp(s), one := FullOp(1.0, tensor((), f)), SubOp(one, t)]),
         lambda x, y: 1 - np.tanh(x * y)),
    Case("fused-cast-select", FusedOp, (a(3, element="i32"), a(2, 1)),
         lambda v, f: FusedOp.of(v, tensor((2, 3), f), lambda xy: [
             c := CastOp(xy[0], result_type=tensor((), f)), s := AddOp(c, xy[1]),
             m := GtOp(s, xy[1]), SelectOp(m, s, xy[1])]),
         lambda x, y: np.maximum(x + y, y)),
    Case("fused-no-operands", FusedOp, (),
         lambda v, f: FusedOp.of(v, tensor((2,), f), lambda _: [
             o := OnesOp(result_type=tensor((), f)), ExpOp(o)]),
         lambda: np.full((2,), np.e), floats=True),
    Case("dropout-rank0-rate0", DropoutOp, (a(), a(element="i64", sample=any_seed)),
         lambda v, f: DropoutOp(v[0], v[1], rate=0.0), lambda x, s: dropout_ref(x, s, 0.0)),
]
# fmt: on


def params(evaluating: bool = False) -> list:
    return [
        pytest.param(
            case,
            ftype,
            id=f"{case.id}-{ftype}",
            marks=[pytest.mark.xfail(reason=case.xfail, strict=True)]
            if evaluating and case.xfail
            else [],
        )
        for case in CASES
        for ftype in case.float_types()
    ]


# --- helpers ------------------------------------------------------------------------------


def build_module(case: Case, ftype: Attribute) -> ModuleOp:
    """`func.func @f(args) -> results { %r = <op>(args); func.return %r }`."""
    arg_types = [arg.type(ftype) for arg in case.args]
    block = Block(arg_types=arg_types)
    op = case.build(list(block.args), ftype)
    block.add_ops([op, func.ReturnOp(*op.results)])
    result_types = [r.type for r in op.results]
    return ModuleOp([func.FuncOp("f", (arg_types, result_types), Region(block))])


def inputs(case: Case, ftype: Attribute) -> list:
    rng = np.random.default_rng(zlib.crc32(case.id.encode()))
    return [arg.value(rng, ftype) for arg in case.args]


def as_f64(v):
    """Float inputs widened to float64 for the reference; everything else unchanged."""
    arr = np.asarray(v)
    return arr.astype(np.float64) if np.issubdtype(arr.dtype, np.floating) else v


def assert_matches_reference(out: np.ndarray | np.generic, expected: np.ndarray) -> None:
    """Floats within a relative tolerance of the float64 reference (scaled by its
    magnitude for entries near zero); everything else exactly."""
    actual = np.asarray(out)
    assert actual.shape == expected.shape
    if np.issubdtype(actual.dtype, np.floating):
        rtol = RTOL[actual.dtype]
        scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)
    else:
        np.testing.assert_array_equal(actual, expected)
