"""Every differentiable `ln` op's adjoint rule, table-driven, against finite differences.

For each row of the op table (tests/support/op_cases.py) with arguments to
differentiate (`OpCase.grad_args()`), the test wraps the row's ops
(support/gradients.py) as

    f(args) = sum(op(args) * R)        (R a fixed random constant: every output counts)

runs `reverse-ad` on `f` for those arguments, executes `f_grad` on the reference
interpreter in float64, and compares each adjoint with central differences of `f`
itself, run on the same interpreter.

A second walk over the table checks that every op with a float tensor result and
a float tensor operand has an adjoint rule, unless it is listed in the table's
`NO_ADJOINT`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest
from xdsl.builder import Builder
from xdsl.dialects.builtin import ModuleOp, f32, f64
from xdsl.ir import Attribute, Block, Operation, SSAValue
from xdsl.rewriter import InsertPoint

from lanterna.ir import make_context, parse_module
from lanterna.ir.interpreter import Interpreter
from lanterna.ir.ln import LN_OPS, MaxOp, MaxPool2dOp
from lanterna.ir.ln.adjoint import AdjointBuilder, MissingAdjointRule, is_differentiable_type
from lanterna.ir.types import shape_of, tensor
from lanterna.passes.reverse_ad import ADError, ReverseAD

from support import op_cases
from support.checks import function
from support.gradients import GRAD_CASES, build_loss, loss_inputs
from support.op_cases import NO_ADJOINT, OpCase, a

EPS = 1e-6
ATOL = 1e-8

# --- helpers ------------------------------------------------------------------------------


def differentiate(case: OpCase, argnums: Sequence[int]) -> ModuleOp:
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


# --- gradients against finite differences -------------------------------------------------


@pytest.mark.parametrize("case", op_cases.params("grad", GRAD_CASES, per_float=False))
def test_adjoint_matches_finite_differences(case: OpCase):
    argnums = case.grad_args()
    module = differentiate(case, argnums)
    interp = Interpreter(module)
    args = loss_inputs(case)
    loss, *grads = interp.call("f_grad", *args)
    (expected_loss,) = interp.call("f", *args)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-12)
    assert len(grads) == len(argnums)
    for i, grad in zip(argnums, grads):
        assert grad.shape == args[i].shape and grad.dtype == np.float64
        np.testing.assert_allclose(
            grad,
            finite_differences(interp, args, i),
            rtol=case.fd_rtol,
            atol=ATOL,
            err_msg=f"{case.id}: adjoint of argument {i}",
        )


@pytest.mark.parametrize("case", op_cases.params("grad", GRAD_CASES, per_float=False))
def test_lower_continuations_keeps_every_rule_s_gradient(case: OpCase):
    """The adjoint program after `lower-continuations` computes the same numbers."""
    from lanterna.passes.lower_continuations import LowerContinuations

    module = differentiate(case, case.grad_args())
    args = loss_inputs(case)
    before = Interpreter(module).call("f_grad", *args)
    LowerContinuations().apply(make_context(), module)
    module.verify()
    assert not any(op.name in ("cont.shift", "cont.reset") for op in module.walk())
    after = Interpreter(module).call("f_grad", *args)
    for b, c in zip(before, after):
        np.testing.assert_array_equal(c, b)


@pytest.mark.parametrize(
    "case", op_cases.params("grad", [c for c in GRAD_CASES if len(c.grad_args()) > 1], False)
)
def test_adjoint_of_one_operand_alone(case: OpCase):
    """Rules skip the operands nobody differentiates (`ab.wants`) without changing
    the others' adjoints."""
    args = loss_inputs(case)
    argnums = case.grad_args()
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


def instances(cases: Sequence[OpCase]) -> list[tuple[OpCase, Attribute, Operation]]:
    """Each row's op under test, built in f32 and f64."""
    out = []
    for case in cases:
        for ftype in (f32, f64):
            args = Block(arg_types=[arg.type(ftype) for arg in case.args]).args
            out.append((case, ftype, case.subject(case.ops(args, ftype))))
    return out


def test_every_differentiable_op_has_an_adjoint_rule():
    lacking: list[str] = []
    graded = {c.op for c in GRAD_CASES}
    for case, ftype, op in instances(op_cases.CASES):
        if type(op) not in LN_OPS or not is_differentiable(op):
            continue
        if type(op) not in graded and type(op) not in NO_ADJOINT:
            lacking.append(f"{op.name} (no row differentiates it; from {case.id})")
            continue
        try:
            run_rule(op)
        except MissingAdjointRule:
            if type(op) not in NO_ADJOINT:
                lacking.append(f"{op.name} ({case.id}, {ftype})")
    assert not lacking, f"differentiable ops without an adjoint rule: {lacking}"


def test_exemptions_are_needed():
    """An exempt op that gains a rule (or stops being differentiable) leaves the list."""
    built = instances([c for c in op_cases.CASES if c.op in NO_ADJOINT])
    for exempt in NO_ADJOINT:
        ops = [op for _, _, op in built if type(op) is exempt and is_differentiable(op)]
        assert ops, f"no row makes {exempt.name} differentiable; drop its exemption"
        for op in ops:
            with pytest.raises(MissingAdjointRule):
                run_rule(op)


# Rows whose op under test has an adjoint rule of its own (not `ln.checkpoint`,
# which reverse-ad rewrites as structure).
RULE_CASES = [c for c, t, op in instances(GRAD_CASES) if t == f64 and is_differentiable(op)]


@pytest.mark.parametrize("ftype", [f32, f64])
def test_rules_build_well_typed_ir_for_each_float_type(ftype: Attribute):
    """Contributions have exactly the operand's type (after `accum`'s un-broadcast),
    and everything a rule builds verifies, in f32 as well as f64."""
    for case, t, op in instances(RULE_CASES):
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
    for case, _, op in instances(RULE_CASES):
        ints = {i for i, arg in enumerate(case.args) if not arg.is_float_tensor}
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
    np.testing.assert_allclose(grad, finite_differences(interp, args, 0), rtol=1e-6, atol=ATOL)

    for i in (1, 2, 3):
        with pytest.raises(ADError, match=f"argument {i} has type"):
            ReverseAD(func="f", argnums=(i,)).apply(make_context(), parse_module(source))


# --- the subgradient at ties ----------------------------------------------------------------


def grad_with_weights(case: OpCase, args: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    module = build_loss(case, weights)
    ReverseAD(func="f", argnums=(0,)).apply(make_context(), module)
    _, grad = Interpreter(module).call("f_grad", *args)
    return grad


def test_max_splits_the_adjoint_evenly_among_ties():
    case = OpCase("max-ties", MaxOp, (a(2, 3),), lambda v, f: MaxOp(v[0], axes=1), np.max)
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    grad = grad_with_weights(case, [x], np.array([1.0, 3.0]))
    np.testing.assert_allclose(grad, [[0.0, 0.5, 0.5], [1.0, 1.0, 1.0]], rtol=1e-15)


def test_max_pool2d_splits_the_adjoint_evenly_among_ties():
    case = OpCase(
        "max_pool2d-ties", MaxPool2dOp, (a(1, 1, 2, 4),), lambda v, f: MaxPool2dOp(v[0]), np.max
    )
    x = np.array([[[[5.0, 5.0, 1.0, 7.0], [5.0, 5.0, 7.0, 0.0]]]])
    grad = grad_with_weights(case, [x], np.array([[[[4.0, 2.0]]]]))
    np.testing.assert_allclose(grad, [[[[1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]]]], rtol=1e-15)
