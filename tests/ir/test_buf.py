"""The `buf` dialect: syntax round trips, verifiers, `storage` (which ops make a
fresh buffer) and the output-slot check."""

from __future__ import annotations

import pytest
from xdsl.utils.exceptions import ParseError, VerifyException

from lanterna.ir import parse_module, print_ir
from lanterna.ir.buf import Storage, storage, verify_output_slots

T = "tensor<3xf32>"
CELL = f"!ad.cell<{T}>"

ROUND_TRIP = f"""builtin.module {{
  func.func @f(%x : {T}, %g : {T}) -> {T} {{
    %y = ln.tanh %x : {T}
    %c = buf.take_cell %y : {T}
    ad.accum %c, %g : {CELL}
    %v = buf.take_load %c : {CELL}
    %w = ln.mul %v, %v {{buf.output = 0 : i64}} : {T}, {T}
    buf.release %v : {T}
    func.return %w : {T}
  }}
}}
"""


def test_custom_syntax_round_trips_in_both_forms():
    module = parse_module(ROUND_TRIP)
    module.verify()
    verify_output_slots(module)
    text = print_ir(module)
    assert text.replace("%x: ", "%x : ").replace("%g: ", "%g : ") == ROUND_TRIP.rstrip("\n")
    generic = print_ir(module, generic=True)
    assert '"buf.take_cell"' in generic
    assert print_ir(parse_module(generic)) == text


def _body(lines: str, ret: str = "%x", results: str = T) -> str:
    return f"""
    func.func @f(%x: {T}, %g: {T}) -> ({results}) {{
      {lines}
      func.return {ret} : {results}
    }}
    """


@pytest.mark.parametrize(
    "lines,message",
    [
        (
            f"%y = ln.tanh %x : {T}\n buf.release %y : {T}\n %z = ln.neg %y : {T}",
            "'buf.release': %y is used by 'ln.neg' after its buffer is released",
        ),
        (
            f"%y = ln.tanh %x : {T}\n %c = buf.take_cell %y : {T}\n %z = ln.neg %y : {T}",
            "'buf.take_cell': %y is used by 'ln.neg' after a cell took its buffer over",
        ),
        (
            (
                f"%c = ad.cell_from %x : {T}\n %v = buf.take_load %c : {CELL}\n"
                f" ad.accum %c, %g : {CELL}"
            ),
            "'buf.take_load': %c is used by 'ad.accum' after its final value took its buffer",
        ),
        (
            f'%c = "buf.take_cell"(%x) : ({T}) -> !ad.cell<tensor<4xf32>>',
            "result !ad.cell<tensor<4xf32>> must be !ad.cell<tensor<3xf32>>",
        ),
        (
            f'%c = ad.cell_from %x : {T}\n %v = "buf.take_load"(%c) : ({CELL}) -> tensor<3xf64>',
            "'buf.take_load': result tensor<3xf64> does not match the cell's tensor<3xf32>",
        ),
        (
            (
                f"%y = ln.tanh %x : {T}\n"
                f" scf.if %b {{\n %z = ln.neg %y : {T}\n scf.yield\n }}\n buf.release %y : {T}"
            ),
            None,  # a use inside an earlier op's region comes before: fine
        ),
        (
            (
                f"%y = ln.tanh %x : {T}\n buf.release %y : {T}\n"
                f" scf.if %b {{\n %z = ln.neg %y : {T}\n scf.yield\n }}"
            ),
            "'buf.release': %y is used by 'ln.neg' after its buffer is released",
        ),
    ],
)
def test_verifiers(lines, message):
    module = parse_module(_body("%b = arith.constant true\n " + lines))
    if message is None:
        module.verify()
        return
    with pytest.raises(VerifyException, match=message.replace("(", r"\(").replace(")", r"\)")):
        module.verify()


@pytest.mark.parametrize(
    "line,message",
    [
        (f"%c = buf.take_cell %g : {CELL}", "'buf.take_cell' expects a tensor operand"),
        ("%v = buf.take_load %x : tensor<3xf32>", "'buf.take_load' expects an !ad.cell operand"),
        ("buf.release %b : i1", "operand"),
    ],
)
def test_operand_types_are_checked(line, message):
    text = f"""
    func.func @f(%x: {T}, %g: {CELL}) {{
      %b = arith.constant true
      {line}
      func.return
    }}
    """
    with pytest.raises((ParseError, VerifyException), match=message):
        parse_module(text).verify()


STORAGE = f"""
func.func @f(%x: tensor<2x3xf32>, %c: {CELL}) -> tensor<f32> {{
  %fresh = ln.tanh %x : tensor<2x3xf32>
  %view1 = ln.reshape %x : tensor<2x3xf32> -> tensor<3x2xf32>
  %view2 = ln.transpose %x {{perm = array<i64: 0, 1>}} : tensor<2x3xf32>
  %fresh2 = ln.transpose %x {{perm = array<i64: 1, 0>}} : tensor<2x3xf32>
  %view3 = ln.broadcast_to %x : tensor<2x3xf32> -> tensor<2x3xf32>
  %fresh3 = ln.broadcast_to %x : tensor<2x3xf32> -> tensor<4x2x3xf32>
  %view4 = ln.sum %x {{axes = array<i64>}} : tensor<2x3xf32>
  %fresh4 = ln.sum %x {{axes = array<i64: 0, 1>}} : tensor<2x3xf32>
  %static = ln.constant {{value = dense<1.0> : tensor<2xf32>}} : tensor<2xf32>
  %none = ln.item %fresh4 : tensor<f32>
  %fresh5 = ln.from_scalar %none : f32
  %fresh6 = ad.load %c : {CELL}
  %fresh7 = ad.zero_cell : {T}
  %taken = buf.take_load %c : {CELL}
  func.return %fresh4 : tensor<f32>
}}
"""


def test_storage_says_which_ops_make_a_fresh_buffer():
    module = parse_module(STORAGE)
    module.verify()
    f = next(iter(module.ops))
    kinds = {
        op.results[0].name_hint: storage(op)
        for op in f.walk()  # type: ignore[attr-defined]
        if op.results
    }
    for name, kind in kinds.items():
        expected = Storage(name.rstrip("0123456789"))
        assert kind is expected, name


@pytest.mark.parametrize(
    "text,message",
    [
        (
            _body(f"%y = ln.tanh %x {{buf.output = 1 : i64}} : {T}", ret="%y"),
            "does not return the result once as result #1",
        ),
        (
            _body(f"%y = ln.reshape %x {{buf.output = 0 : i64}} : {T} -> {T}", ret="%y"),
            "only an op making one fresh buffer has a slot",
        ),
        (
            _body(f'%y = ln.tanh %x {{buf.output = "a"}} : {T}', ret="%y"),
            "the slot must be an i64 integer",
        ),
        (
            _body(
                f"%y = ln.tanh %x {{buf.output = 0 : i64}} : {T}", ret="%y, %y", results=f"{T}, {T}"
            ),
            "does not return the result once",
        ),
        (
            _body(f"%y = ln.tanh %x {{buf.output = 0 : i64}} : {T}", ret="%y")
            + f"""func.func @g(%x: {T}) -> {T} {{
                %r = func.call @f(%x, %x) : ({T}, {T}) -> {T}
                func.return %r : {T}
              }}""",
            "@f is called in the module, so it has no outputs",
        ),
    ],
)
def test_output_slots_are_checked(text, message):
    module = parse_module(text)
    module.verify()
    with pytest.raises(VerifyException, match=message):
        verify_output_slots(module)
