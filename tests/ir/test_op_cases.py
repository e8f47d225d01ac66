"""The op table itself (tests/support/op_cases.py): every op of the `ln` and `ad`
and `buf`
dialects has a row, or an entry in `NO_ROW` saying why not, and every row builds
what it claims. The suites reading the table are listed in its docstring."""

from __future__ import annotations

import pytest
from xdsl.dialects.builtin import f32, f64
from xdsl.ir import Block

from lanterna.ir.ad import AD
from lanterna.ir.buf import Buf
from lanterna.ir.ln import LN

from support import op_cases
from support.op_cases import SUITES, OpCase

# The dialects whose every op needs a row (a new tensor-level dialect joins here).
DIALECTS = [LN, AD, Buf]


def built_op_types(case: OpCase) -> set[type]:
    """The types of every op a row builds, nested ones (region bodies) included."""
    out: set[type] = set()
    for ftype in case.float_types():
        args = Block(arg_types=[arg.type(ftype) for arg in case.args]).args
        for op in case.ops(args, ftype):
            out |= {type(o) for o in op.walk()}
    return out


def test_every_op_of_the_dialects_has_a_row():
    covered = {case.op for case in op_cases.CASES}
    built = set().union(*(built_op_types(case) for case in op_cases.CASES))
    missing = [
        op.name
        for dialect in DIALECTS
        for op in dialect.operations
        if op not in covered | built and op not in op_cases.NO_ROW
    ]
    assert not missing, f"ops without a row in tests/support/op_cases.py: {missing}"


def test_no_row_entries_are_needed():
    """An op that gains a row leaves `NO_ROW`."""
    covered = {case.op for case in op_cases.CASES}
    assert not covered & set(op_cases.NO_ROW)


def test_case_ids_are_unique():
    ids = [c.id for c in op_cases.CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


@pytest.mark.parametrize("case", op_cases.params("syntax", per_float=False))
def test_a_row_builds_the_op_it_names(case: OpCase):
    for ftype in (f32, f64):
        args = Block(arg_types=[arg.type(ftype) for arg in case.args]).args
        ops = case.ops(args, ftype)
        assert isinstance(case.subject(ops), case.op)
        for op in ops:
            op.verify()


def test_rows_name_known_suites_and_arguments():
    for case in op_cases.CASES:
        assert set(case.xfail) <= set(SUITES), case.id
        assert all(0 <= i < len(case.args) for i in case.grad_args()), case.id
        assert all(case.args[i].is_float_tensor for i in case.grad_args()), case.id
