"""Every `ln` op, table-driven: built with its Python constructor, it prints and
parses back identically in custom and generic form, and its `evaluate` agrees with
an independent numpy reference in f32 and f64.

The table is tests/support/op_cases.py, shared with the interpreter, adjoint and
emitter tests; its rows for `ad` ops and `ln.checkpoint` take the round trip too.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pytest
from xdsl.dialects.builtin import f32, f64, i64
from xdsl.ir import Attribute, Block, Operation, SSAValue
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.utils.exceptions import VerifyException

from lanterna.errors import LanternaIndexError
from lanterna.ir import make_context
from lanterna.ir.ln import (
    DropoutOp,
    GatherOp,
    ItemOp,
    MaxOp,
    MeanOp,
    NllLossOp,
    ScatterAddOp,
    SumOp,
)
from lanterna.ir.ln.nn import splitmix64
from lanterna.ir.types import tensor, to_numpy_dtype

from support import op_cases
from support.checks import assert_matches_reference
from support.op_cases import OpCase
from support.references import splitmix64_int


def render(op: Operation, generic: bool) -> str:
    out = io.StringIO()
    Printer(stream=out, print_generic_format=generic).print_op(op)
    return out.getvalue()


def evaluates(case: OpCase) -> bool:
    """A row that builds one op with an `evaluate` (not the `ad` ops, not regions)."""
    ops = case.ops(Block(arg_types=[arg.type(f32) for arg in case.args]).args, f32)
    return len(ops) == 1 and hasattr(ops[0], "evaluate")


# --- the table ----------------------------------------------------------------------------


@pytest.mark.parametrize("case, ftype", op_cases.params("syntax"))
def test_print_parse_round_trip(case: OpCase, ftype: Attribute):
    ctx = make_context()
    module = op_cases.build_module(case, ftype)
    module.verify()
    op_name = case.op.name
    for generic in (False, True):
        text = render(module, generic)
        assert (f'"{op_name}"' if generic else f"{op_name} ") in text
        parsed = Parser(ctx, text).parse_module()
        parsed.verify()
        assert render(parsed, generic) == text
    # Both forms describe the same IR.
    from_generic = Parser(ctx, render(module, True)).parse_module()
    assert render(from_generic, False) == render(module, False)


@pytest.mark.parametrize(
    "case, ftype", op_cases.params("evaluate", [c for c in op_cases.CASES if evaluates(c)])
)
def test_evaluate_matches_reference(case: OpCase, ftype: Attribute):
    module = op_cases.build_module(case, ftype)
    op = next(o for o in module.walk() if isinstance(o, case.op))
    args = op_cases.inputs(case, ftype)
    # Operands are block arguments, maybe not all of them, maybe one twice.
    operands = [args[o.index] for o in op.operands]  # type: ignore[attr-defined]
    out = op.evaluate(*operands)  # type: ignore[attr-defined]
    expected = op_cases.reference(case, args)

    result_type = op.results[0].type
    if case.op is ItemOp:
        assert isinstance(out, np.generic), "ln.item evaluates to a numpy scalar"
        assert out.dtype == to_numpy_dtype(result_type)
    else:
        assert isinstance(out, np.ndarray)
        assert out.dtype == to_numpy_dtype(result_type.element_type)
        assert out.shape == tuple(result_type.get_shape())
        for v in args:
            assert not np.shares_memory(out, v), "evaluate must not return a view of an input"
    assert_matches_reference(out, expected)


# --- op-specific behaviour the table cannot express ---------------------------------------


def block_args(*types: Attribute) -> Sequence[SSAValue]:
    return Block(arg_types=types).args


def test_reduction_axes_are_canonical():
    (x,) = block_args(tensor((2, 3, 4), f32))
    assert tuple(SumOp(x, axes=(-1, 0)).axes.iter_values()) == (0, 2)
    assert tuple(MeanOp(x).axes.iter_values()) == (0, 1, 2)
    assert MaxOp(x, axes=1).result.type == tensor((2, 4), f32)
    with pytest.raises(VerifyException, match="repeat an axis"):
        SumOp(x, axes=(1, -2))
    with pytest.raises(VerifyException, match="axis 3 is out of range for rank 3"):
        SumOp(x, axes=3)


@pytest.mark.parametrize(
    "build, shapes, message",
    [
        (GatherOp, ((5, 2), (3,)), "'ln.gather': index 5 is out of range for a table of 5 rows"),
        # Negative indices count from the end: -5 is row 0, -6 is out of range.
        (GatherOp, ((5, 2), (3,)), "'ln.gather': index -6 is out of range for a table of 5 rows"),
        (
            lambda u, i: ScatterAddOp(u, i, (4, 2)),
            ((3, 2), (3,)),
            "'ln.scatter_add': index 9 is out of range for a result of 4 rows",
        ),
        (
            lambda u, i: ScatterAddOp(u, i, (4, 2)),
            ((3, 2), (3,)),
            "'ln.scatter_add': index -5 is out of range for a result of 4 rows",
        ),
        (NllLossOp, ((3, 4), (3,)), "'ln.nll_loss': index 4 is out of range for 4 classes"),
        # Class targets do not wrap.
        (NllLossOp, ((3, 4), (3,)), "'ln.nll_loss': index -1 is out of range for 4 classes"),
    ],
)
def test_indices_are_checked_when_evaluating(build, shapes, message):
    lhs, idx = block_args(tensor(shapes[0], f64), tensor(shapes[1], i64))
    op = build(lhs, idx)
    bad = int(message.split("index ")[1].split(" ")[0])
    indices = np.array([0, bad, 1], dtype=np.int64)
    with pytest.raises(LanternaIndexError, match="^" + message.replace("(", r"\(") + "$"):
        op.evaluate(np.ones(shapes[0]), indices)


def test_gather_and_scatter_add_wrap_negative_indices():
    table, idx = block_args(tensor((5, 2), f64), tensor((4,), i64))
    rows = np.arange(10.0).reshape(5, 2)
    indices = np.array([-1, -5, 4, 0], dtype=np.int64)
    np.testing.assert_array_equal(GatherOp(table, idx).evaluate(rows, indices), rows[[4, 0, 4, 0]])
    updates, idx = block_args(tensor((4, 2), f64), tensor((4,), i64))
    got = ScatterAddOp(updates, idx, (5, 2)).evaluate(np.ones((4, 2)), indices)
    np.testing.assert_array_equal(got, [[2, 2], [0, 0], [0, 0], [0, 0], [2, 2]])


def test_splitmix64_known_values():
    # The published first output of SplitMix64 seeded with 0.
    assert int(splitmix64(np.uint64(0))) == 0xE220A8397B1DCDAF
    z = np.array([1, 2**63, 2**64 - 1, 0x0123456789ABCDEF], dtype=np.uint64)
    assert [int(v) for v in splitmix64(z)] == [splitmix64_int(int(v)) for v in z]


def test_dropout_keeps_about_one_minus_rate_and_depends_on_seed():
    x, seed = block_args(tensor((100, 100), f64), tensor((), i64))
    op = DropoutOp(x, seed, rate=0.25)
    ones = np.ones((100, 100))
    a1 = op.evaluate(ones, np.array(7, np.int64))
    a2 = op.evaluate(ones, np.array(7, np.int64))
    b = op.evaluate(ones, np.array(8, np.int64))
    assert np.array_equal(a1, a2)
    assert not np.array_equal(a1, b)
    assert set(np.unique(a1)) == {0.0, 1 / 0.75}
    assert 0.72 < np.mean(a1 != 0) < 0.78
