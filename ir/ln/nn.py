"""`ln` neural-network ops: softmax, losses, convolution, pooling and dropout.

These ops could be spelled with the generic ones, but each is one kernel in the
backends (and has a cheaper adjoint than its expansion), so they are primitives.
All take f32 or f64 data; class targets are i32 or i64; images are NCHW.

    %p = ln.log_softmax %x {axis = 1 : i64} : tensor<8x10xf32>
    // tensor<f32>:
    %l = ln.nll_loss %p, %t {reduction = "mean"} : tensor<8x10xf32>, tensor<8xi64>
    // tensor<8x16x32x32xf32>:
    %y = ln.conv2d %x, %w {stride = array<i64: 1, 1>, padding = array<i64: 1, 1>}
        : tensor<8x3x32x32xf32>, tensor<16x3x3x3xf32>

Adjoints. Convolution and average pooling are linear. The two halves of a
convolution's adjoint are ops of their own, `ln.conv2d_input_grad` (W^T @ g per
image, scattered back: col2im) and `ln.conv2d_weight_grad` (g @ im2col(x)^T
summed over images), so backends run each as one kernel instead of convolving
transposed, padded, dilated copies of the batch; their adjoints are each other
and `ln.conv2d`, so convolutions are differentiable any number of times. Max
pooling routes each window's adjoint to its maximum through one helper op,
`ln.max_pool2d_grad`, which a backend lowers as one kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from xdsl.dialects.builtin import (
    DenseArrayBase,
    FloatAttr,
    IntegerAttr,
    StringAttr,
    TensorType,
    i64,
)
from xdsl.ir import Attribute, SSAValue
from xdsl.irdl import IRDLOperation, irdl_op_definition, operand_def, prop_def
from xdsl.utils.exceptions import VerifyException

from lanterna.ir.ln.adjoint import AdjointBuilder
from lanterna.ir.ln.base import (
    LnOp,
    Props,
    float_prop,
    get_float,
    get_int,
    get_ints,
    int_prop,
    ints_prop,
    normalize_axis,
    want_arity,
    want_given,
)
from lanterna.ir.ln.elementwise import CastOp, ConstantOp, EqOp, ExpOp, OnesOp
from lanterna.ir.ln.reduce import SumOp, wide_sum
from lanterna.ir.ln.shape import ReshapeOp, check_indices
from lanterna.ir.types import (
    elt,
    expect_tensor,
    format_shape,
    is_float,
    is_int,
    shape_of,
    tensor,
    to_numpy_dtype,
)

Operand = SSAValue | IRDLOperation


def _want_float(op_name: str, what: str, t: Attribute) -> None:
    if not is_float(elt(t)):
        raise VerifyException(f"'{op_name}': {what} must have a float element type, got {t}")


def _want_rank(op_name: str, what: str, t: Attribute, rank: int) -> tuple[int, ...]:
    shape = shape_of(t)
    if len(shape) != rank:
        raise VerifyException(f"'{op_name}': {what} must have rank {rank}, got {t}")
    return shape


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    """An (H, W) pair from one int (both) or two."""
    if isinstance(value, int):
        return (value, value)
    a, b = value
    return (int(a), int(b))


def _pair_prop(op_name: str, props: Props, name: str, minimum: int) -> tuple[int, int]:
    v = get_ints(props, name)
    if len(v) != 2 or min(v) < minimum:
        raise VerifyException(
            f"'{op_name}': {name} {format_shape(v)} must be two integers >= {minimum}"
        )
    return v[0], v[1]


def _window_extent(
    op_name: str, x: Attribute, size: int, kernel: int, stride: int, pad: int, dim: str
) -> int:
    """Output extent of a sliding window; at least one window must fit."""
    padded = size + 2 * pad
    if padded < kernel:
        raise VerifyException(
            f"'{op_name}': kernel {dim} {kernel} exceeds the padded input {dim} {padded} of {x}"
        )
    return (padded - kernel) // stride + 1


def _windows(
    x: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    fill: float,
) -> np.ndarray:
    """[N, C, OH, OW, KH, KW] view of the padded input's windows."""
    (ph, pw), (sh, sw) = padding, stride
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    return sliding_window_view(xp, kernel, axis=(2, 3))[:, :, ::sh, ::sw]


# --- softmax ------------------------------------------------------------------------------


class _AxisOp(LnOp):
    """A float op normalizing along one axis (stored non-negative); shape-preserving."""

    x = operand_def(TensorType)
    axis = prop_def(IntegerAttr)

    def __init__(self, x: Operand, axis: int = -1):
        value = SSAValue.get(x)
        t = expect_tensor(self.name, "operand", value.type)
        rank = len(shape_of(t))
        if rank == 0:
            raise VerifyException(f"'{self.name}': operand must have rank >= 1, got {t}")
        super().__init__(value, axis=int_prop(normalize_axis(self.name, axis, rank)))

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        want_arity(cls.name, operand_types, 1)
        (t,) = operand_types
        _want_float(cls.name, "operand", t)
        shape = shape_of(t)
        axis = get_int(props, "axis")
        if not 0 <= axis < len(shape):
            raise VerifyException(
                f"'{cls.name}': axis {axis} must be in [0, {len(shape)}) for operand {t}"
            )
        if shape[axis] == 0:
            raise VerifyException(f"'{cls.name}': axis {axis} of operand {t} is empty")
        return t

    def axis_value(self) -> int:
        return get_int(self.properties, "axis")


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    # Shift by the maximum so exp never overflows.
    shifted = x - np.max(x, axis=axis, keepdims=True)
    total = wide_sum(np.exp(shifted), axis, keepdims=True)
    return shifted - np.log(total).astype(x.dtype)


@irdl_op_definition
class SoftmaxOp(_AxisOp):
    """exp(x) / sum(exp(x)) along `axis`, computed without overflow.

    %p = ln.softmax %x {axis = 1 : i64} : tensor<4x10xf32>
    """

    name = "ln.softmax"

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        axis = self.axis_value()
        e = np.exp(x - np.max(x, axis=axis, keepdims=True))
        return e / wide_sum(e, axis, keepdims=True).astype(x.dtype)

    def adjoint(self, ab: AdjointBuilder) -> None:
        # y * (g - sum(g * y)) along the axis
        y, g = ab.result, ab.grad
        dot = ab.emit(SumOp(ab.mul(g, y), axes=self.axis_value(), keepdims=True))
        ab.accum(0, ab.mul(y, ab.sub(g, dot)))


@irdl_op_definition
class LogSoftmaxOp(_AxisOp):
    """x - log(sum(exp(x))) along `axis`, computed without overflow.

    %p = ln.log_softmax %x {axis = 1 : i64} : tensor<4x10xf32>
    """

    name = "ln.log_softmax"

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        return _log_softmax(x, self.axis_value())

    def adjoint(self, ab: AdjointBuilder) -> None:
        # g - softmax(x) * sum(g) along the axis, with softmax(x) = exp(y)
        g = ab.grad
        total = ab.emit(SumOp(g, axes=self.axis_value(), keepdims=True))
        ab.accum(0, ab.sub(g, ab.mul(ab.emit(ExpOp(ab.result)), total)))


# --- losses -------------------------------------------------------------------------------


class _LossOp(LnOp):
    """Classification losses over a [N, C] float input and [N] integer class targets,
    reduced to a rank-0 tensor by "mean" (over N) or "sum". Subclasses define the
    two operands."""

    reduction = prop_def(StringAttr)
    CHECKS_INDICES: ClassVar[bool] = True

    REDUCTIONS: ClassVar[tuple[str, ...]] = ("mean", "sum")

    def __init__(self, scores: Operand, target: Operand, reduction: str = "mean"):
        super().__init__(scores, target, reduction=StringAttr(reduction))

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        want_arity(cls.name, operand_types, 2)
        scores, target = operand_types
        first = cls.get_irdl_definition().operands[0][0]
        _want_float(cls.name, first, scores)
        n, _ = _want_rank(cls.name, first, scores, 2)
        (m,) = _want_rank(cls.name, "target", target, 1)
        if not is_int(elt(target)):
            raise VerifyException(
                f"'{cls.name}': target {target} must have element type i32 or i64"
            )
        if m != n:
            raise VerifyException(
                f"'{cls.name}': target {target} has {m} entries but {first} {scores} has {n} rows"
            )
        reduction = props.get("reduction")
        if not isinstance(reduction, StringAttr) or reduction.data not in cls.REDUCTIONS:
            allowed = " or ".join(f'"{r}"' for r in cls.REDUCTIONS)
            raise VerifyException(f"'{cls.name}': reduction must be {allowed}, got {reduction}")
        return tensor((), elt(scores))

    def nll(self, logp: np.ndarray, target: np.ndarray) -> np.ndarray:
        n, c = logp.shape
        # Class targets do not wrap: -1 is no class (as in PyTorch), not the last one.
        check_indices(self, target, c, f"{c} classes", wrap=False)
        total = -wide_sum(logp[np.arange(n), target], 0)
        reduction = self.properties["reduction"]
        assert isinstance(reduction, StringAttr)
        if reduction.data == "mean":
            total = total / np.float64(n)
        return np.asarray(total, dtype=logp.dtype)

    def per_row_adjoint(self, ab: AdjointBuilder) -> SSAValue:
        """The adjoint of each row's loss: the result's, divided by N for "mean"."""
        reduction = self.properties["reduction"]
        assert isinstance(reduction, StringAttr)
        if reduction.data == "sum":
            return ab.grad
        n = shape_of(ab.operands[0].type)[0]
        return ab.div(ab.grad, ab.const(float(n), ab.grad))

    def one_hot(self, ab: AdjointBuilder) -> SSAValue:
        """[N, C] in the scores' element type: 1 at (i, target[i]), 0 elsewhere."""
        scores, target = ab.operands
        n, c = shape_of(scores.type)
        classes = np.arange(c, dtype=to_numpy_dtype(elt(target.type)))
        column = ab.emit(ReshapeOp(target, (n, 1)))
        hit = ab.emit(EqOp(column, ab.emit(ConstantOp.of(classes))))
        return ab.emit(CastOp(hit, result_type=scores.type))


@irdl_op_definition
class NllLossOp(_LossOp):
    """Negative log-likelihood of log-probabilities: -logp[i, target[i]], then mean or sum.

        %l = ln.nll_loss %logp, %t {reduction = "sum"} : tensor<8x10xf64>, tensor<8xi32>

    A target outside [0, C) raises LanternaIndexError when the op runs.
    """

    name = "ln.nll_loss"
    logp = operand_def(TensorType)
    target = operand_def(TensorType)

    def evaluate(self, logp: np.ndarray, target: np.ndarray) -> np.ndarray:
        return self.nll(logp, target)

    def adjoint(self, ab: AdjointBuilder) -> None:
        # -g (or -g / N) at each row's target, 0 elsewhere; targets get nothing.
        ab.accum(0, ab.mul(self.one_hot(ab), ab.neg(self.per_row_adjoint(ab))))


@irdl_op_definition
class CrossEntropyOp(_LossOp):
    """`nll_loss(log_softmax(logits, axis=1), target)`, in one numerically stable op.

    %l = ln.cross_entropy %z, %t {reduction = "mean"} : tensor<8x10xf32>, tensor<8xi64>
    """

    name = "ln.cross_entropy"
    logits = operand_def(TensorType)
    target = operand_def(TensorType)

    def evaluate(self, logits: np.ndarray, target: np.ndarray) -> np.ndarray:
        return self.nll(_log_softmax(logits, 1), target)

    def adjoint(self, ab: AdjointBuilder) -> None:
        # (softmax(logits) - one_hot(target)) * g, divided by N for "mean"
        probs = ab.emit(SoftmaxOp(ab.operands[0], axis=1))
        ab.accum(0, ab.mul(ab.sub(probs, self.one_hot(ab)), self.per_row_adjoint(ab)))


# --- convolution and pooling --------------------------------------------------------------


@irdl_op_definition
class Conv2dOp(LnOp):
    """2-D cross-correlation (what deep-learning frameworks call convolution) of an
    NCHW input with an OIHW weight; no bias, dilation 1, zero padding on each side.
    Output H = (H + 2 * padding[0] - KH) // stride[0] + 1, and W likewise.

        %y = ln.conv2d %x, %w {padding = array<i64: 0, 0>, stride = array<i64: 1, 1>}
               : tensor<2x3x8x8xf32>, tensor<4x3x3x3xf32>                 // tensor<2x4x6x6xf32>
    """

    name = "ln.conv2d"
    x = operand_def(TensorType)
    w = operand_def(TensorType)
    stride = prop_def(DenseArrayBase)
    padding = prop_def(DenseArrayBase)

    def __init__(
        self,
        x: Operand,
        w: Operand,
        stride: int | Sequence[int] = (1, 1),
        padding: int | Sequence[int] = (0, 0),
    ):
        super().__init__(x, w, stride=ints_prop(_pair(stride)), padding=ints_prop(_pair(padding)))

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        want_arity(cls.name, operand_types, 2)
        x, w = operand_types
        _want_float(cls.name, "input", x)
        n, c, h, wd = _want_rank(cls.name, "input", x, 4)
        o, cw, kh, kw = _want_rank(cls.name, "weight", w, 4)
        if elt(w) != elt(x):
            raise VerifyException(
                f"'{cls.name}': input {x} and weight {w} have different element types"
            )
        if cw != c:
            raise VerifyException(
                f"'{cls.name}': input {x} has {c} channels but weight {w} expects {cw}"
            )
        sh, sw = _pair_prop(cls.name, props, "stride", 1)
        ph, pw = _pair_prop(cls.name, props, "padding", 0)
        oh = _window_extent(cls.name, x, h, kh, sh, ph, "height")
        ow = _window_extent(cls.name, x, wd, kw, sw, pw, "width")
        return tensor((n, o, oh, ow), elt(x))

    def evaluate(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        stride = _pair(get_ints(self.properties, "stride"))
        padding = _pair(get_ints(self.properties, "padding"))
        cols = _windows(x, (w.shape[2], w.shape[3]), stride, padding, 0.0)
        # im2col: contract channels and the kernel window -> [N, OH, OW, O].
        out = np.tensordot(cols, w, axes=([1, 4, 5], [1, 2, 3]))
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))

    def adjoint(self, ab: AdjointBuilder) -> None:
        x, w = ab.operands
        stride = _pair(get_ints(self.properties, "stride"))
        padding = _pair(get_ints(self.properties, "padding"))
        if ab.wants(0):
            ab.accum(0, ab.emit(Conv2dInputGradOp(ab.grad, w, x.type, stride, padding)))
        if ab.wants(1):
            ab.accum(1, ab.emit(Conv2dWeightGradOp(x, ab.grad, w.type, stride, padding)))


class _Conv2dGradOp(LnOp):
    """Shared rule of the two halves of conv2d's adjoint: `g` [N, O, OH, OW], the
    adjoint of a conv2d result, and the conv2d's `stride` and `padding`; the result
    type is spelled out (stride remainders make it ambiguous otherwise)."""

    RESULT_IN_SYNTAX: ClassVar[bool] = True
    stride = prop_def(DenseArrayBase)
    padding = prop_def(DenseArrayBase)

    def __init__(
        self,
        a: Operand,
        b: Operand,
        result_type: Attribute,
        stride: int | Sequence[int] = (1, 1),
        padding: int | Sequence[int] = (0, 0),
    ):
        super().__init__(
            a,
            b,
            result_type=result_type,
            stride=ints_prop(_pair(stride)),
            padding=ints_prop(_pair(padding)),
        )

    @classmethod
    def conv_types(
        cls, a: Attribute, b: Attribute, result: Attribute
    ) -> tuple[Attribute, Attribute, Attribute]:
        """The (input, weight, conv2d result) types, from the operands and result."""
        raise NotImplementedError

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        want_arity(cls.name, operand_types, 2)
        rt = want_given(cls.name, result_type)
        x, w, g = cls.conv_types(*operand_types, rt)
        expected = Conv2dOp.infer_type([x, w], props, None)
        if g != expected:
            raise VerifyException(
                f"'{cls.name}': g {g} must be the type {expected} of conv2d of input {x} "
                f"and weight {w}"
            )
        return rt

    def window_args(self) -> tuple[tuple[int, int], tuple[int, int]]:
        return _pair(get_ints(self.properties, "stride")), _pair(
            get_ints(self.properties, "padding")
        )


@irdl_op_definition
class Conv2dInputGradOp(_Conv2dGradOp):
    """The adjoint of `ln.conv2d`'s input: `g` carried back through the weight `w`
    [O, C, KH, KW] to the input, of the result type [N, C, H, W]; rows and columns
    no window reached get zeros. Backends compute W^T @ g per image and scatter
    the columns back (col2im).

        %dx = ln.conv2d_input_grad %g, %w {padding = array<i64: 0, 0>, stride = array<i64: 1, 1>}
                : tensor<2x4x6x6xf32>, tensor<4x3x3x3xf32> -> tensor<2x3x8x8xf32>

    Linear in both operands: its adjoints are `ln.conv2d` (for g) and
    `ln.conv2d_weight_grad` (for w).
    """

    name = "ln.conv2d_input_grad"
    g = operand_def(TensorType)
    w = operand_def(TensorType)

    @classmethod
    def conv_types(cls, a, b, result):
        return result, b, a

    def evaluate(self, g: np.ndarray, w: np.ndarray) -> np.ndarray:
        (sh, sw), (ph, pw) = self.window_args()
        n, c, h, wd = shape_of(self.result.type)
        _, _, kh, kw = w.shape
        oh, ow = g.shape[2:]
        out = np.zeros((n, c, h + 2 * ph, wd + 2 * pw), dtype=g.dtype)
        for u in range(kh):
            for v in range(kw):
                part = np.einsum("noij,oc->ncij", g, w[:, :, u, v])
                out[:, :, u : u + (oh - 1) * sh + 1 : sh, v : v + (ow - 1) * sw + 1 : sw] += part
        return out[:, :, ph : ph + h, pw : pw + wd].copy()

    def adjoint(self, ab: AdjointBuilder) -> None:
        # dx is linear in g (the transpose of a conv2d) and in w.
        g, w = ab.operands
        stride, padding = self.window_args()
        if ab.wants(0):
            ab.accum(0, ab.emit(Conv2dOp(ab.grad, w, stride, padding)))
        if ab.wants(1):
            ab.accum(1, ab.emit(Conv2dWeightGradOp(ab.grad, g, w.type, stride, padding)))


@irdl_op_definition
class Conv2dWeightGradOp(_Conv2dGradOp):
    """The adjoint of `ln.conv2d`'s weight: the correlation of the input `x`
    [N, C, H, W] with `g`, summed over the batch, of the result type
    [O, C, KH, KW]. Backends compute g @ im2col(x)^T per image, accumulated.

        %dw = ln.conv2d_weight_grad %x, %g {padding = array<i64: 0, 0>, stride = array<i64: 1, 1>}
                : tensor<2x3x8x8xf32>, tensor<2x4x6x6xf32> -> tensor<4x3x3x3xf32>

    Linear in both operands: its adjoints are `ln.conv2d_input_grad` (for x) and
    `ln.conv2d` (for g).
    """

    name = "ln.conv2d_weight_grad"
    x = operand_def(TensorType)
    g = operand_def(TensorType)

    @classmethod
    def conv_types(cls, a, b, result):
        return a, result, b

    def evaluate(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        stride, padding = self.window_args()
        _, _, kh, kw = shape_of(self.result.type)
        cols = _windows(x, (kh, kw), stride, padding, 0.0)  # [N, C, OH, OW, KH, KW]
        return np.ascontiguousarray(np.einsum("ncijuv,noij->ocuv", cols, g)).astype(x.dtype)

    def adjoint(self, ab: AdjointBuilder) -> None:
        # dw is linear in x and in g: the adjoint of each is the other half.
        x, g = ab.operands
        stride, padding = self.window_args()
        if ab.wants(0):
            ab.accum(0, ab.emit(Conv2dInputGradOp(g, ab.grad, x.type, stride, padding)))
        if ab.wants(1):
            ab.accum(1, ab.emit(Conv2dOp(x, ab.grad, stride, padding)))


def _pooled_type(op_name: str, x: Attribute, props: Props) -> TensorType:
    """The type rule of 2-D pooling (see `_Pool2dOp`), for the input type `x`."""
    _want_float(op_name, "input", x)
    n, c, h, w = _want_rank(op_name, "input", x, 4)
    kh, kw = _pair_prop(op_name, props, "kernel", 1)
    sh, sw = _pair_prop(op_name, props, "stride", 1)
    ph, pw = _pair_prop(op_name, props, "padding", 0)
    if 2 * ph > kh or 2 * pw > kw:
        raise VerifyException(
            f"'{op_name}': padding {format_shape((ph, pw))} exceeds half the kernel "
            f"{format_shape((kh, kw))}"
        )
    oh = _window_extent(op_name, x, h, kh, sh, ph, "height")
    ow = _window_extent(op_name, x, w, kw, sw, pw, "width")
    return tensor((n, c, oh, ow), elt(x))


class _Pool2dOp(LnOp):
    """Shared rule of 2-D pooling over NCHW input: a KH x KW window moved by
    `stride`, after padding each side by `padding` (at most half the kernel, so
    every window overlaps the input)."""

    x = operand_def(TensorType)
    kernel = prop_def(DenseArrayBase)
    stride = prop_def(DenseArrayBase)
    padding = prop_def(DenseArrayBase)

    def __init__(
        self,
        x: Operand,
        kernel: int | Sequence[int] = (2, 2),
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = (0, 0),
    ):
        """`stride=None` moves the window by its own size."""
        k = _pair(kernel)
        s = k if stride is None else _pair(stride)
        super().__init__(
            x, kernel=ints_prop(k), stride=ints_prop(s), padding=ints_prop(_pair(padding))
        )

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        want_arity(cls.name, operand_types, 1)
        return _pooled_type(cls.name, operand_types[0], props)

    def window_args(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        return (
            _pair(get_ints(self.properties, "kernel")),
            _pair(get_ints(self.properties, "stride")),
            _pair(get_ints(self.properties, "padding")),
        )


@irdl_op_definition
class MaxPool2dOp(_Pool2dOp):
    """Maximum over each window; padding is -inf, so it never wins.

    // tensor<1x3x4x4xf32>:
    %y = ln.max_pool2d %x {kernel = array<i64: 2, 2>, stride = array<i64: 2, 2>,
        padding = array<i64: 0, 0>} : tensor<1x3x8x8xf32>
    """

    name = "ln.max_pool2d"

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        kernel, stride, padding = self.window_args()
        return _windows(x, kernel, stride, padding, -np.inf).max(axis=(4, 5))

    def adjoint(self, ab: AdjointBuilder) -> None:
        kernel, stride, padding = self.window_args()
        ab.accum(0, ab.emit(MaxPool2dGradOp(ab.operands[0], ab.grad, kernel, stride, padding)))


@irdl_op_definition
class AvgPool2dOp(_Pool2dOp):
    """Mean over each window. Padding counts as zeros and every window divides by
    the full kernel area KH * KW (PyTorch's `count_include_pad=True`).

    // tensor<1x3x8x8xf32>:
    %y = ln.avg_pool2d %x {kernel = array<i64: 3, 3>, stride = array<i64: 1, 1>,
        padding = array<i64: 1, 1>} : tensor<1x3x8x8xf32>
    """

    name = "ln.avg_pool2d"

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        kernel, stride, padding = self.window_args()
        total = _windows(x, kernel, stride, padding, 0.0).sum(axis=(4, 5))
        return total / x.dtype.type(kernel[0] * kernel[1])

    def adjoint(self, ab: AdjointBuilder) -> None:
        # Average pooling is a conv2d of each channel on its own with a kernel
        # of ones / (KH * KW): fold the channels into the batch.
        (x,) = ab.operands
        kernel, stride, padding = self.window_args()
        n, c, h, w = shape_of(x.type)
        _, _, oh, ow = shape_of(ab.grad.type)
        e = elt(x.type)
        g = ab.div(ab.grad, ab.const(float(kernel[0] * kernel[1]), ab.grad))
        g = ab.emit(ReshapeOp(g, (n * c, 1, oh, ow)))
        ones = ab.emit(OnesOp(result_type=tensor((1, 1, *kernel), e)))
        dx = ab.emit(Conv2dInputGradOp(g, ones, tensor((n * c, 1, h, w), e), stride, padding))
        ab.accum(0, ab.emit(ReshapeOp(dx, x.type)))


@irdl_op_definition
class MaxPool2dGradOp(LnOp):
    """The adjoint of `ln.max_pool2d` with the same properties: `g`, the adjoint of
    the pooled result, routed back to the input `x`. Each window's entry of `g` is
    split evenly among the window's elements equal to its maximum (a subgradient;
    without ties the whole entry goes to the argmax), and overlapping windows add.

        %dx = ln.max_pool2d_grad %x, %g {kernel = array<i64: 2, 2>,
            stride = array<i64: 2, 2>, padding = array<i64: 0, 0>}
            : tensor<1x3x8x8xf32>, tensor<1x3x4x4xf32>                 // tensor<1x3x8x8xf32>

    It has no adjoint of its own, so max pooling has no second derivative here.
    """

    name = "ln.max_pool2d_grad"
    x = operand_def(TensorType)
    g = operand_def(TensorType)
    kernel = prop_def(DenseArrayBase)
    stride = prop_def(DenseArrayBase)
    padding = prop_def(DenseArrayBase)

    def __init__(
        self,
        x: Operand,
        g: Operand,
        kernel: int | Sequence[int],
        stride: int | Sequence[int],
        padding: int | Sequence[int] = (0, 0),
    ):
        super().__init__(
            x,
            g,
            kernel=ints_prop(_pair(kernel)),
            stride=ints_prop(_pair(stride)),
            padding=ints_prop(_pair(padding)),
        )

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        want_arity(cls.name, operand_types, 2)
        x, g = operand_types
        pooled = _pooled_type(cls.name, x, props)
        if g != pooled:
            raise VerifyException(
                f"'{cls.name}': g {g} must have the type {pooled} of the pooled input {x}"
            )
        return x

    def evaluate(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        kernel = _pair(get_ints(self.properties, "kernel"))
        (sh, sw) = _pair(get_ints(self.properties, "stride"))
        (ph, pw) = _pair(get_ints(self.properties, "padding"))
        windows = _windows(x, kernel, (sh, sw), (ph, pw), -np.inf)  # [N, C, OH, OW, KH, KW]
        hit = windows == windows.max(axis=(4, 5), keepdims=True)
        share = g[..., None, None] / hit.sum(axis=(4, 5), keepdims=True).astype(g.dtype)
        routed = np.where(hit, share, g.dtype.type(0))
        n, c, h, w = x.shape
        oh, ow = g.shape[2:]
        out = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
        for u in range(kernel[0]):
            for v in range(kernel[1]):
                rows = slice(u, u + (oh - 1) * sh + 1, sh)
                cols = slice(v, v + (ow - 1) * sw + 1, sw)
                out[:, :, rows, cols] += routed[..., u, v]
        return out[:, :, ph : ph + h, pw : pw + w].copy()


# --- dropout ------------------------------------------------------------------------------

_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 (Steele, Lea and Flood 2014): the output of the generator whose
    state is `z`, elementwise over a uint64 array, in wrapping 64-bit arithmetic:

        z = z + 0x9E3779B97F4A7C15
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB
        return z ^ (z >> 31)

    The backends reproduce it bit for bit (so `ln.dropout` masks agree across
    backends); splitmix64(0) == 0xE220A8397B1DCDAF.
    """
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = z + _GOLDEN_GAMMA
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def dropout_keep(seed: int | np.integer | np.ndarray, size: int, rate: float) -> np.ndarray:
    """The keep mask of `ln.dropout` over `size` elements in row-major order:
    element i is kept iff u(seed, i) >= rate, where

        u(seed, i) = (splitmix64(uint64(seed) * 0x9E3779B97F4A7C15 + i) >> 40) / 2**24

    in wrapping uint64 arithmetic (a negative seed is taken as its two's
    complement); u lies in [0, 1) on a grid of 2**-24 and is compared in double
    precision.
    """
    s = np.asarray(seed, dtype=np.int64).reshape(()).view(np.uint64)
    with np.errstate(over="ignore"):
        z = s * _GOLDEN_GAMMA + np.arange(size, dtype=np.uint64)
    u = (splitmix64(z) >> np.uint64(40)).astype(np.float64) / float(2**24)
    return u >= rate


@irdl_op_definition
class DropoutOp(LnOp):
    """Inverted dropout with a deterministic mask: drop each element with
    probability `rate` and scale the kept ones by 1 / (1 - rate), so the
    expectation is unchanged. The mask depends only on the rank-0 i64 `seed`
    and the element's row-major position (see `dropout_keep`); the scale is
    computed in double precision, then rounded to the element type.

        %y = ln.dropout %x, %seed {rate = 5.000000e-01 : f64} : tensor<4x8xf32>, tensor<i64>
    """

    name = "ln.dropout"
    x = operand_def(TensorType)
    seed = operand_def(TensorType)
    rate = prop_def(FloatAttr)

    def __init__(self, x: Operand, seed: Operand, rate: float = 0.5):
        super().__init__(x, seed, rate=float_prop(rate))

    @classmethod
    def infer_type(cls, operand_types, props, result_type):
        want_arity(cls.name, operand_types, 2)
        x, seed = operand_types
        _want_float(cls.name, "operand", x)
        if seed != tensor((), i64):
            raise VerifyException(f"'{cls.name}': seed must be tensor<i64>, got {seed}")
        rate = get_float(props, "rate")
        if not 0.0 <= rate < 1.0:
            raise VerifyException(f"'{cls.name}': rate {rate} must be in [0, 1)")
        return x

    def evaluate(self, x: np.ndarray, seed: np.ndarray) -> np.ndarray:
        rate = get_float(self.properties, "rate")
        keep = dropout_keep(seed, x.size, rate).reshape(x.shape)
        scale = x.dtype.type(1.0 / (1.0 - rate))
        return np.where(keep, x * scale, x.dtype.type(0))

    def adjoint(self, ab: AdjointBuilder) -> None:
        # The mask depends only on the seed and the element's position, so
        # dropping the adjoint with the same seed and rate applies the same mask
        # and scale exactly. The seed is an integer and gets nothing.
        seed = ab.operands[1]
        ab.accum(0, ab.emit(DropoutOp(ab.grad, seed, rate=get_float(self.properties, "rate"))))


NN_OPS = [
    SoftmaxOp,
    LogSoftmaxOp,
    NllLossOp,
    CrossEntropyOp,
    Conv2dOp,
    Conv2dInputGradOp,
    Conv2dWeightGradOp,
    MaxPool2dOp,
    MaxPool2dGradOp,
    AvgPool2dOp,
    DropoutOp,
]
