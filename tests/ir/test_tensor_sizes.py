"""Tensor types too large for int64 are rejected: by the verifier of every `ln` op
(operands and result), by the parser, when the frontend builds one, and by the cpu
emitter for an entry's own tensors. Before, a tensor of 2^64 elements verified and
the cpu backend summed it to 0.0 (its size literal overflowed)."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.utils.exceptions import ParseError, VerifyException

import lanterna as ln
from lanterna.backends.cpu_cpp.emitter import emit_module
from lanterna.errors import TraceError
from lanterna.ir import parse_module

HUGE = "tensor<4294967296x4294967296xf32>"  # 2^64 elements


def test_the_verifier_names_the_op_and_the_operand():
    # The generic syntax skips ln's parser, so the verifier is what sees the type.
    module = parse_module(
        f"""
        func.func @f(%x: {HUGE}) -> tensor<f32> {{
          %s = "ln.sum"(%x) <{{axes = array<i64: 0, 1>}}> : ({HUGE}) -> tensor<f32>
          func.return %s : tensor<f32>
        }}
        """
    )
    with pytest.raises(VerifyException, match=r"'ln\.sum': operand #0 tensor<4294967296x"):
        module.verify()


def test_the_verifier_checks_results():
    # Operands of 2^32 elements each, broadcast to a result of 2^64.
    col, row = "tensor<4294967296x1xf32>", "tensor<4294967296xf32>"
    module = parse_module(
        f"""
        func.func @f(%a: {col}, %b: {row}) -> {HUGE} {{
          %c = "ln.add"(%a, %b) : ({col}, {row}) -> {HUGE}
          func.return %c : {HUGE}
        }}
        """
    )
    with pytest.raises(VerifyException, match=r"'ln\.add': result tensor<4294967296x"):
        module.verify()


@pytest.mark.parametrize(
    "shape, element, what",
    [
        ("4294967296x4294967296", "f32", "18446744073709551616 elements of 4 bytes"),
        # 2^61 elements fit, their 2^64 bytes do not.
        ("2305843009213693952", "f64", "2305843009213693952 elements of 8 bytes"),
        # No elements, but strides past int64.
        ("0x4294967296x4294967296", "i1", "it has no elements, but its strides"),
    ],
)
def test_parsing_rejects_sizes_past_int64(shape: str, element: str, what: str):
    t = f"tensor<{shape}x{element}>"
    with pytest.raises(ParseError, match=f"'ln.neg': operand #0 {t} is too large: {what}"):
        parse_module(
            f"""
            func.func @f(%x: {t}) -> {t} {{
              %y = ln.neg %x : {t}
              func.return %y : {t}
            }}
            """
        )


def test_the_largest_sizes_still_verify():
    t = "tensor<1152921504606846975xf64>"  # (2^63 - 8) bytes
    parse_module(
        f"func.func @f(%x: {t}) -> {t} {{\n  %y = ln.neg %x : {t}\n  func.return %y : {t}\n}}"
    )


def test_the_frontend_reports_the_users_line():
    with pytest.raises(
        TraceError, match=r"test_tensor_sizes\.py:\d+: ln\.zeros: result .* too large"
    ):
        ln.zeros((2**32, 2**32))
    with pytest.raises(
        TraceError, match=r"test_tensor_sizes\.py:\d+: ln\.zeros: result .* too large"
    ):
        ln.jit(lambda: ln.zeros((2**32, 2**32)), backend="interp")()
    # A broadcast that outgrows its operands, while tracing.
    a, b = np.zeros((2, 1), np.float32), np.zeros(3, np.float32)
    f = ln.jit(lambda a, b: ln.broadcast_to(a, (2**40, 2**23)) + b, backend="interp")
    with pytest.raises(TraceError, match=r"too large"):
        f(a, b)


def test_the_cpu_emitter_checks_entry_tensors():
    # No ln op to verify: the tensor only passes through.
    module = parse_module(f"func.func @f(%x: {HUGE}) -> {HUGE} {{\n  func.return %x : {HUGE}\n}}")
    with pytest.raises(VerifyException, match=r"'@f': argument #0 tensor<4294967296x"):
        emit_module(module, "f")
