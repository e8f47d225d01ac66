"""The reference interpreter executes every op it claims to, with the right values.

* every row of the op table (tests/support/op_cases.py: `ln` ops, `ad` cells and
  stacks, `ln.checkpoint`), as `func.func @f(operands) { ops }` run by
  `Interpreter.call`, against the numpy reference in f32 and f64;
* every `arith` op of interp_arith.ARITH_SEMANTICS against Python arithmetic:
  signed division truncates toward zero, integers wrap in two's complement,
  floats round to the result type;
* `scf.if`/`scf.for`/`scf.while` and `func.call`, without continuations
  (test_interpreter_cont.py covers those).
"""

from __future__ import annotations

import ctypes
import math
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from xdsl.dialects import arith
from xdsl.dialects.builtin import TensorType
from xdsl.ir import Attribute

from lanterna.ir import parse_module
from lanterna.ir.interp_arith import ARITH_SEMANTICS
from lanterna.ir.interpreter import Interpreter
from lanterna.ir.types import to_numpy_dtype

from support import op_cases
from support.checks import assert_matches_reference
from support.op_cases import OpCase


def run(src: str, *args: Any, fn: str = "f") -> tuple[Any, ...]:
    module = parse_module(src)
    module.verify()
    return Interpreter(module).call(fn, *args)


# --- the op table -------------------------------------------------------------------------


@pytest.mark.parametrize("case, ftype", op_cases.params("interpret"))
def test_op_case_runs_in_the_interpreter(case: OpCase, ftype: Attribute):
    module = op_cases.build_module(case, ftype)
    module.verify()
    args = op_cases.inputs(case, ftype)
    before = [np.copy(v) for v in args]
    (out,) = Interpreter(module).call("f", *args)
    expected = op_cases.reference(case, args)

    result_type = module.body.block.first_op.function_type.outputs.data[0]  # type: ignore[union-attr]
    if isinstance(result_type, TensorType):
        assert isinstance(out, np.ndarray)
        assert out.dtype == to_numpy_dtype(result_type.element_type)
        assert out.shape == tuple(result_type.get_shape())
    else:
        assert isinstance(out, np.generic), f"{case.op.name} returns a numpy scalar"
        assert out.dtype == to_numpy_dtype(result_type)
    assert_matches_reference(out, expected)
    for v, b in zip(args, before, strict=True):
        np.testing.assert_array_equal(v, b, err_msg="the interpreter modified an argument")


# --- arith --------------------------------------------------------------------------------

I32_MAX, I32_MIN = 2**31 - 1, -(2**31)
I64_MAX, I64_MIN = 2**63 - 1, -(2**63)
NAN = float("nan")


def wrap(value: int, t: str) -> int:
    """Two's-complement wrap-around, via C integer types."""
    return {"i32": ctypes.c_int32, "i64": ctypes.c_int64, "index": ctypes.c_int64}[t](value).value


def to_f32(x: float) -> float:
    """`x` rounded to the nearest float32 (round-half-even), via the C float type."""
    return struct.unpack("f", struct.pack("f", x))[0]


def div_trunc(a: int, b: int) -> int:
    return int(Fraction(a, b))  # int() of a Fraction truncates toward zero


def rem_trunc(a: int, b: int) -> int:
    return a - b * div_trunc(a, b)


def cmpf_ref(pred: str, a: float, b: float) -> bool:
    unordered = math.isnan(a) or math.isnan(b)
    relation = {"eq": a == b, "ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}
    if pred in ("false", "true"):
        return pred == "true"
    if pred in ("ord", "uno"):
        return unordered == (pred == "uno")
    if pred[0] == "o":
        return not unordered and relation[pred[1:]]
    return unordered or relation[pred[1:]]


@dataclass(frozen=True)
class ArithCase:
    """`%r = <body>` in `func.func @f(%a: A, %b: B) -> R`, its arguments and expected result."""

    op: type
    body: str  # the op's line, using %a and %b
    arg_types: tuple[str, ...]
    result_type: str
    args: tuple[Any, ...]
    expected: Any
    xfail: str | None = None  # a known interpreter bug, strictly expected to fail

    @property
    def id(self) -> str:
        args = ",".join(str(a) for a in self.args)
        return f"{self.body.split()[0]}-{self.result_type}({args})"

    @property
    def source(self) -> str:
        params = ", ".join(f"%{n}: {t}" for n, t in zip("abc", self.arg_types, strict=False))
        return (
            f"func.func @f({params}) -> {self.result_type} {{\n"
            f"  %r = {self.body}\n"
            f"  func.return %r : {self.result_type}\n"
            f"}}"
        )


def binary(
    op: type, name: str, t: str, a: Any, b: Any, expected: Any, xfail: str | None = None
) -> ArithCase:
    return ArithCase(op, f"arith.{name} %a, %b : {t}", (t, t), t, (a, b), expected, xfail)


def unary(op: type, name: str, t: str, a: Any, expected: Any) -> ArithCase:
    return ArithCase(op, f"arith.{name} %a : {t}", (t,), t, (a,), expected)


def cast(
    op: type, name: str, src: str, dst: str, a: Any, expected: Any, xfail: str | None = None
) -> ArithCase:
    return ArithCase(op, f"arith.{name} %a : {src} to {dst}", (src,), dst, (a,), expected, xfail)


def cmpi(pred: str, a: int, b: int) -> ArithCase:
    expected = {
        "eq": a == b, "ne": a != b, "slt": a < b, "sle": a <= b, "sgt": a > b, "sge": a >= b,
    }[pred]  # fmt: skip
    return ArithCase(arith.CmpiOp, f"arith.cmpi {pred}, %a, %b : i32", ("i32", "i32"), "i1",
                     (a, b), expected)  # fmt: skip


def cmpf(pred: str, a: float, b: float) -> ArithCase:
    return ArithCase(arith.CmpfOp, f"arith.cmpf {pred}, %a, %b : f64", ("f64", "f64"), "i1",
                     (a, b), cmpf_ref(pred, a, b))  # fmt: skip


DIVISIONS = [(7, 2), (-7, 2), (7, -2), (-7, -2), (6, 3), (-6, 3), (1, 5), (-1, 5), (0, -3)]
CMPF_PREDICATES = ["false", "oeq", "ogt", "oge", "olt", "ole", "one", "ord",
                   "ueq", "ugt", "uge", "ult", "ule", "une", "uno", "true"]  # fmt: skip
CMPF_PAIRS = [(1.0, 2.0), (2.0, 2.0), (3.0, 2.0), (NAN, 2.0), (1.0, NAN)]
F32_A, F32_B = to_f32(0.1), to_f32(3.3)

# fmt: off
ARITH_CASES: list[ArithCase] = [
    *[binary(arith.AddiOp, "addi", t, a, b, wrap(a + b, t)) for t, a, b in [
        ("i32", 2, -5), ("i32", I32_MAX, 1), ("i32", I32_MIN, -1), ("i64", I64_MAX, 1),
        ("index", 40, 2)]],
    *[binary(arith.SubiOp, "subi", t, a, b, wrap(a - b, t)) for t, a, b in [
        ("i32", 2, 5), ("i32", I32_MIN, 1), ("i64", I64_MIN, 1)]],
    *[binary(arith.MuliOp, "muli", t, a, b, wrap(a * b, t)) for t, a, b in [
        ("i32", -6, 7), ("i32", 65536, 65536), ("i32", I32_MAX, 2), ("i64", 2**32, 2**32),
        ("index", 3, -4)]],
    *[binary(arith.DivSIOp, "divsi", "i32", a, b, div_trunc(a, b)) for a, b in DIVISIONS],
    binary(arith.DivSIOp, "divsi", "i64", I64_MIN + 1, 2, div_trunc(I64_MIN + 1, 2)),
    *[binary(arith.RemSIOp, "remsi", "i32", a, b, int(math.fmod(a, b))) for a, b in DIVISIONS],
    *[binary(arith.FloorDivSIOp, "floordivsi", "i32", a, b, math.floor(Fraction(a, b)))
      for a, b in DIVISIONS],
    *[binary(arith.MaxSIOp, "maxsi", "i32", a, b, max(a, b)) for a, b in [(-3, 2), (I32_MIN, -1)]],
    *[binary(arith.MinSIOp, "minsi", "i64", a, b, min(a, b)) for a, b in [(-3, 2), (I64_MAX, 0)]],
    binary(arith.AndIOp, "andi", "i32", 0b1100, -4, 0b1100 & -4),
    binary(arith.AndIOp, "andi", "i1", True, False, False),
    binary(arith.OrIOp, "ori", "i32", 0b1010, 0b0101, 0b1111),
    binary(arith.OrIOp, "ori", "i1", True, False, True),
    binary(arith.XOrIOp, "xori", "i32", -1, 0b1010, -1 ^ 0b1010),
    binary(arith.XOrIOp, "xori", "i1", True, True, False),
    *[binary(arith.AddfOp, "addf", "f64", a, b, a + b) for a, b in [(0.1, 0.2), (1e308, 1e308)]],
    binary(arith.AddfOp, "addf", "f32", F32_A, F32_B, to_f32(F32_A + F32_B)),
    binary(arith.SubfOp, "subf", "f64", 0.3, 0.1, 0.3 - 0.1),
    binary(arith.SubfOp, "subf", "f32", F32_A, F32_B, to_f32(F32_A - F32_B)),
    binary(arith.MulfOp, "mulf", "f64", 0.1, 3.0, 0.1 * 3.0),
    binary(arith.MulfOp, "mulf", "f32", F32_A, F32_B, to_f32(F32_A * F32_B)),
    binary(arith.DivfOp, "divf", "f64", 1.0, 3.0, 1.0 / 3.0),
    binary(arith.DivfOp, "divf", "f32", F32_A, F32_B, to_f32(F32_A / F32_B)),
    unary(arith.NegfOp, "negf", "f64", 2.5, -2.5),
    unary(arith.NegfOp, "negf", "f32", 0.0, -0.0),
    *[binary(arith.MaximumfOp, "maximumf", "f64", a, b, e) for a, b, e in [
        (1.0, 2.0, 2.0), (-1.0, -2.0, -1.0), (NAN, 1.0, NAN), (1.0, NAN, NAN), (-0.0, 0.0, 0.0)]],
    binary(arith.MaximumfOp, "maximumf", "f64", 0.0, -0.0, 0.0),
    binary(arith.MaximumfOp, "maximumf", "f32", F32_A, F32_B, F32_B),
    *[binary(arith.MinimumfOp, "minimumf", "f64", a, b, e) for a, b, e in [
        (1.0, 2.0, 1.0), (NAN, 1.0, NAN), (0.0, -0.0, -0.0)]],
    binary(arith.MinimumfOp, "minimumf", "f64", -0.0, 0.0, -0.0),
    binary(arith.MinimumfOp, "minimumf", "f32", F32_A, F32_B, F32_A),
    *[cmpi(p, a, b) for p in ["eq", "ne", "slt", "sle", "sgt", "sge"]
      for a, b in [(-1, 2), (2, 2), (I32_MAX, I32_MIN)]],
    *[cmpf(p, a, b) for p in CMPF_PREDICATES for a, b in CMPF_PAIRS],
    ArithCase(arith.SelectOp, "arith.select %a, %b, %c : f64", ("i1", "f64", "f64"), "f64",
              (True, 1.5, -2.0), 1.5),
    ArithCase(arith.SelectOp, "arith.select %a, %b, %c : i32", ("i1", "i32", "i32"), "i32",
              (False, 7, -9), -9),
    cast(arith.IndexCastOp, "index_cast", "index", "i32", 2**40 + 5, 5),
    cast(arith.IndexCastOp, "index_cast", "index", "i32", -3, -3),
    cast(arith.IndexCastOp, "index_cast", "i32", "index", I32_MIN, I32_MIN),
    cast(arith.SIToFPOp, "sitofp", "i32", "f32", 2**24 + 1, to_f32(2**24 + 1)),
    cast(arith.SIToFPOp, "sitofp", "i64", "f64", -(2**53) - 1, float(-(2**53) - 1)),
    *[cast(arith.FPToSIOp, "fptosi", "f64", "i32", x, math.trunc(x)) for x in [2.7, -2.7, -0.5]],
    cast(arith.FPToSIOp, "fptosi", "f32", "i64", to_f32(-1e10), math.trunc(to_f32(-1e10))),
    cast(arith.ExtFOp, "extf", "f32", "f64", F32_A, F32_A),
    cast(arith.TruncFOp, "truncf", "f64", "f32", 0.1, to_f32(0.1)),
    cast(arith.TruncFOp, "truncf", "f64", "f32", 1e300, math.inf),
    cast(arith.ExtSIOp, "extsi", "i32", "i64", -5, -5),
    cast(arith.ExtSIOp, "extsi", "i1", "i32", False, 0),
    cast(arith.ExtSIOp, "extsi", "i1", "i32", True, -1),
    cast(arith.TruncIOp, "trunci", "i64", "i32", 2**32 + 2**31, I32_MIN),
    cast(arith.TruncIOp, "trunci", "i64", "i32", -1, -1),
]
# fmt: on


def assert_same_value(out: Any, expected: Any, result_type: str) -> None:
    if result_type == "i1":
        assert out is np.True_ or out is np.False_, f"{out!r} is not an i1 value"
        assert bool(out) == expected
        return
    dtype = {"i32": np.int32, "i64": np.int64, "index": np.int64, "f32": np.float32,
             "f64": np.float64}[result_type]  # fmt: skip
    assert type(out) is dtype, f"{out!r} is not a {np.dtype(dtype)} scalar"
    if isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(out)
    else:
        assert out == expected
        if isinstance(expected, float):
            assert math.copysign(1.0, out) == math.copysign(1.0, expected), "wrong sign of zero"


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            c,
            id=c.id,
            marks=[pytest.mark.xfail(reason=c.xfail, strict=True)] if c.xfail else [],
        )
        for c in ARITH_CASES
    ],
)
def test_arith_op(case: ArithCase):
    (out,) = run(case.source, *case.args)
    assert_same_value(out, case.expected, case.result_type)


def test_every_arith_op_has_a_case():
    covered = {c.op for c in ARITH_CASES} | {arith.ConstantOp}  # test_arith_constant
    missing = [op.name for op in ARITH_SEMANTICS if op not in covered]
    assert not missing, f"arith ops the interpreter runs without a case in ARITH_CASES: {missing}"


def test_arith_cases_are_what_they_claim():
    for case in ARITH_CASES:
        (op,) = [o for o in parse_module(case.source).walk() if o.name.startswith("arith.")]
        assert type(op) is case.op, case.id


@pytest.mark.parametrize(
    "value, t, expected",
    [
        ("-7 : i32", "i32", -7),
        ("2147483647 : i32", "i32", I32_MAX),
        ("-9223372036854775808 : i64", "i64", I64_MIN),
        ("12 : index", "index", 12),
        ("true", "i1", True),
        ("false", "i1", False),
        ("0.1 : f64", "f64", 0.1),
        ("0.1 : f32", "f32", to_f32(0.1)),
        ("-0.0 : f64", "f64", -0.0),
    ],
)
def test_arith_constant(value: str, t: str, expected: Any):
    src = f"func.func @f() -> {t} {{\n  %r = arith.constant {value}\n  func.return %r : {t}\n}}"
    (out,) = run(src)
    assert_same_value(out, expected, t)


def test_arith_dense_constant():
    src = """
    func.func @f() -> tensor<2x2xf32> {
      %r = arith.constant dense<[[1.5, -2.0], [0.1, 4.0]]> : tensor<2x2xf32>
      func.return %r : tensor<2x2xf32>
    }"""
    (out,) = run(src)
    assert out.dtype == np.float32
    assert out.tolist() == [[1.5, -2.0], [to_f32(0.1), 4.0]]


def test_division_by_zero_fails_loudly():
    with pytest.raises(ZeroDivisionError, match="arith.divsi"):
        run(binary(arith.DivSIOp, "divsi", "i32", 1, 0, None).source, 1, 0)
    with pytest.raises(ZeroDivisionError, match="arith.remsi"):
        run(binary(arith.RemSIOp, "remsi", "i32", 1, 0, None).source, 1, 0)


def test_unsigned_comparison_fails_loudly():
    src = """
    func.func @f(%a: i32, %b: i32) -> i1 {
      %r = arith.cmpi ult, %a, %b : i32
      func.return %r : i1
    }"""
    with pytest.raises(NotImplementedError, match="unsigned predicate"):
        run(src, 1, 2)


# --- scf and func -------------------------------------------------------------------------


@pytest.mark.parametrize("x, expected", [(3, 30), (-3, 3)])
def test_scf_if_takes_one_branch(x: int, expected: int):
    src = """
    func.func @f(%x: i64) -> i64 {
      %zero = arith.constant 0 : i64
      %pos = arith.cmpi sgt, %x, %zero : i64
      %r = scf.if %pos -> (i64) {
        %ten = arith.constant 10 : i64
        %m = arith.muli %x, %ten : i64
        scf.yield %m : i64
      } else {
        %n = arith.subi %zero, %x : i64
        scf.yield %n : i64
      }
      func.return %r : i64
    }"""
    assert run(src, x) == (expected,)


@pytest.mark.parametrize("lb, ub, step", [(0, 10, 1), (3, 20, 4), (5, 5, 1), (7, 2, 1)])
def test_scf_for_carries_iter_args(lb: int, ub: int, step: int):
    """Sum and count of i in range(lb, ub, step)."""
    src = """
    func.func @f(%lb: index, %ub: index, %st: index) -> (index, index) {
      %z = arith.constant 0 : index
      %one = arith.constant 1 : index
      %s, %n = scf.for %i = %lb to %ub step %st iter_args(%a = %z, %c = %z) -> (index, index) {
        %a2 = arith.addi %a, %i : index
        %c2 = arith.addi %c, %one : index
        scf.yield %a2, %c2 : index, index
      }
      func.return %s, %n : index, index
    }"""
    assert run(src, lb, ub, step) == (sum(range(lb, ub, step)), len(range(lb, ub, step)))


@pytest.mark.parametrize("a, b", [(48, 18), (17, 5), (9, 0)])
def test_scf_while_runs_until_the_condition_fails(a: int, b: int):
    """Euclid's algorithm."""
    src = """
    func.func @f(%a: i64, %b: i64) -> i64 {
      %zero = arith.constant 0 : i64
      %g, %h = scf.while (%x = %a, %y = %b) : (i64, i64) -> (i64, i64) {
        %more = arith.cmpi ne, %y, %zero : i64
        scf.condition(%more) %x, %y : i64, i64
      } do {
      ^bb0(%x: i64, %y: i64):
        %r = arith.remsi %x, %y : i64
        scf.yield %y, %r : i64, i64
      }
      func.return %g : i64
    }"""
    assert run(src, a, b) == (math.gcd(a, b),)


def test_func_call_recursion():
    src = """
    func.func @fact(%n: i64) -> i64 {
      %one = arith.constant 1 : i64
      %base = arith.cmpi sle, %n, %one : i64
      %r = scf.if %base -> (i64) {
        scf.yield %one : i64
      } else {
        %m = arith.subi %n, %one : i64
        %f = func.call @fact(%m) : (i64) -> i64
        %p = arith.muli %n, %f : i64
        scf.yield %p : i64
      }
      func.return %r : i64
    }
    func.func @f(%n: i64) -> (i64, i64) {
      %a = func.call @fact(%n) : (i64) -> i64
      %b = func.call @fact(%a) : (i64) -> i64
      func.return %a, %b : i64, i64
    }"""
    assert run(src, 3) == (6, 720)
    # 21! overflows i64 and wraps like the compiled code.
    assert run(src, 21, fn="fact") == (wrap(math.factorial(21), "i64"),)
