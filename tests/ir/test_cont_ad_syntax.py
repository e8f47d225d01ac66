"""The textual syntax of the `cont` and `ad` dialects, and the docstrings of every op.

Each case is a function written in canonical custom syntax: parsing and
printing it gives back the same text, its generic form prints and parses back
identically too, both forms describe the same IR, and the module verifies. A
coverage test fails when an op or type of `cont`/`ad` appears in no case.
"""

from __future__ import annotations

import io
import re
import textwrap
from dataclasses import dataclass

import pytest
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Attribute
from xdsl.parser import Parser
from xdsl.printer import Printer

from lanterna.ir import make_context, print_ir
from lanterna.ir.ad import AD, AD_OPS, AD_TYPES, CellType, StackType
from lanterna.ir.cont import CONT_OPS, CONT_TYPES, ClosureType, Cont, ContinuationType
from lanterna.ir.ln import LN


@dataclass(frozen=True)
class SyntaxCase:
    id: str
    source: str  # one func.func, exactly as the printer writes it inside a module
    shows: tuple[str, ...] = ()  # fragments the custom form must contain


K1 = "!cont.k<(tensor<f32>) -> (tensor<f32>)>"
K0 = "!cont.k<() -> ()>"
K2 = "!cont.k<(f32, f64) -> (f32, f64)>"
CELL = "!ad.cell<tensor<3xf32>>"

# fmt: off
CASES: list[SyntaxCase] = [
    SyntaxCase("reset-shift-resume", f"""\
func.func @f(%x: tensor<f32>) -> tensor<f32> {{
  %ans = cont.reset -> (tensor<f32>) {{
    %y = cont.shift %k: {K1} {{
      %v = ln.exp %x : tensor<f32>
      %a = cont.resume %k(%v) : {K1}
      cont.yield %a : tensor<f32>
    }}
    cont.yield %y : tensor<f32>
  }}
  func.return %ans : tensor<f32>
}}
""", ("cont.reset -> (tensor<f32>) {", "cont.resume %k(%v) :")),
    SyntaxCase("no-values", f"""\
func.func @f() {{
  cont.reset {{
    cont.shift %k: {K0} {{
      cont.resume %k() : {K0}
      cont.yield
    }}
    cont.yield
  }}
  func.return
}}
""", ("cont.reset {", "cont.resume %k() :", "cont.yield\n")),
    SyntaxCase("several-values", f"""\
func.func @f(%x: f32, %d: f64) -> (f32, f64) {{
  %r, %r_1 = cont.reset -> (f32, f64) {{
    %a, %b = cont.shift %k: {K2} {{
      %p, %q = cont.resume %k(%x, %d) : {K2}
      cont.yield %p, %q : f32, f64
    }}
    cont.yield %a, %b : f32, f64
  }}
  func.return %r, %r_1 : f32, f64
}}
""", ("cont.yield %p, %q : f32, f64",)),
    SyntaxCase("attributes", f"""\
func.func @f(%x: f32, %d: f64) -> f32 {{
  %r, %r_1 = cont.reset -> (f32, f64) attributes {{tag = "outer"}} {{
    %a, %b = cont.shift %k: {K2} attributes {{n = 1 : i64}} {{
      %p, %q = cont.resume %k(%x, %d) : {K2} {{resumed}}
      cont.yield %p, %q : f32, f64 {{last}}
    }}
    cont.yield %a, %b : f32, f64
  }}
  %f = cont.lambda (%y: f32) -> (f32) attributes {{name = "id"}} {{
    cont.yield %y : f32
  }}
  %z = cont.apply %f(%r) : !cont.closure<(f32) -> (f32)> {{inline}}
  func.return %z : f32
}}
""", ('attributes {tag = "outer"}', "attributes {n = 1 : i64}", "{resumed}", "{last}",
      'attributes {name = "id"}', "{inline}")),
    SyntaxCase("lambda-captures", """\
func.func @f(%w: tensor<3xf32>, %x: tensor<3xf32>) -> tensor<3xf32> {
  %f = cont.lambda (%v: tensor<3xf32>) -> (tensor<3xf32>) {
    %y = ln.mul %v, %w : tensor<3xf32>, tensor<3xf32>
    cont.yield %y : tensor<3xf32>
  }
  %y_1 = cont.apply %f(%x) : !cont.closure<(tensor<3xf32>) -> (tensor<3xf32>)>
  func.return %y_1 : tensor<3xf32>
}
""", ("cont.lambda (%v: tensor<3xf32>) -> (tensor<3xf32>) {",)),
    SyntaxCase("lambda-rec", """\
func.func @count(%n: index) -> index {
  %loop = cont.lambda rec %self (%i: index) -> (index) {
    %done = arith.cmpi sge, %i, %n : index
    %r = scf.if %done -> (index) {
      scf.yield %i : index
    } else {
      %c1 = arith.constant 1 : index
      %j = arith.addi %i, %c1 : index
      %r_1 = cont.apply %self(%j) : !cont.closure<(index) -> (index)>
      scf.yield %r_1 : index
    }
    cont.yield %r : index
  }
  %c0 = arith.constant 0 : index
  %r_2 = cont.apply %loop(%c0) : !cont.closure<(index) -> (index)>
  func.return %r_2 : index
}
""", ("cont.lambda rec %self (%i: index) -> (index) {",)),
    SyntaxCase("lambda-rec-attributes", """\
func.func @f() {
  %f = cont.lambda rec %self () -> () attributes {loop} {
    cont.apply %self() : !cont.closure<() -> ()>
    cont.yield
  }
  func.return
}
""", ("cont.lambda rec %self () -> () attributes {loop} {",)),
    SyntaxCase("closure-of-closure", """\
func.func @f(%x: f32) -> !cont.closure<() -> (f32)> {
  %mk = cont.lambda (%a: f32) -> (!cont.closure<() -> (f32)>) {
    %g = cont.lambda () -> (f32) {
      cont.yield %a : f32
    }
    cont.yield %g : !cont.closure<() -> (f32)>
  }
  %g_1 = cont.apply %mk(%x) : !cont.closure<(f32) -> (!cont.closure<() -> (f32)>)>
  func.return %g_1 : !cont.closure<() -> (f32)>
}
""", ("cont.lambda () -> (f32) {",)),
    SyntaxCase("cells", f"""\
func.func @f(%v: tensor<3xf32>, %g: tensor<3xf32>) -> tensor<3xf32> {{
  %c = ad.zero_like %v : tensor<3xf32>
  ad.accum %c, %g : {CELL}
  ad.accum %c, %v : {CELL}
  %d = ad.load %c : {CELL}
  func.return %d : tensor<3xf32>
}}
""", ("ad.zero_like %v : tensor<3xf32>", f"ad.accum %c, %g : {CELL}")),
    SyntaxCase("cells-attributes-rank0", """\
func.func @f(%v: tensor<f64>) -> tensor<f64> {
  %c = ad.zero_like %v {origin = "x"} : tensor<f64>
  ad.accum %c, %v {from = 0 : i64} : !ad.cell<tensor<f64>>
  %d = ad.load %c {final} : !ad.cell<tensor<f64>>
  func.return %d : tensor<f64>
}
""", ('{origin = "x"}', "{from = 0 : i64}", "{final}")),
    SyntaxCase("cell-from", f"""\
func.func @f(%g: tensor<3xf32>) -> tensor<3xf32> {{
  %c = ad.cell_from %g {{origin = "g"}} : tensor<3xf32>
  %d = ad.load %c : {CELL}
  func.return %d : tensor<3xf32>
}}
""", ('ad.cell_from %g {origin = "g"} : tensor<3xf32>',)),
    SyntaxCase("zero-cell-and-stacks", f"""\
func.func @f(%g: tensor<3xf32>, %i: index) -> (tensor<3xf32>, index) {{
  %c = ad.zero_cell {{origin = "g"}} : tensor<3xf32>
  ad.accum %c, %g : {CELL}
  %s = ad.stack : tensor<3xf32>
  %t = ad.stack : index
  %u = ad.stack : !ad.stack<tensor<3xf32>>
  ad.push %s, %g : !ad.stack<tensor<3xf32>>
  ad.push %t, %i {{n}} : !ad.stack<index>
  ad.push %u, %s : !ad.stack<!ad.stack<tensor<3xf32>>>
  %s2 = ad.pop %u : !ad.stack<!ad.stack<tensor<3xf32>>>
  %h = ad.pop %s2 : !ad.stack<tensor<3xf32>>
  %j = ad.pop %t {{n}} : !ad.stack<index>
  func.return %h, %j : tensor<3xf32>, index
}}
""", ('ad.zero_cell {origin = "g"} : tensor<3xf32>', "%u = ad.stack : !ad.stack<tensor<3xf32>>",
      "ad.push %t, %i {n} : !ad.stack<index>", "%h = ad.pop %s2 : !ad.stack<tensor<3xf32>>")),
    SyntaxCase("accumulation-forms", """\
func.func @f(%a: tensor<3x2xf32>, %b: tensor<4x3xf32>, %g: tensor<2x1xf32>) -> tensor<2x4xf32> {
  %c = ad.zero_cell : tensor<2x4xf32>
  ad.drop_products %c : !ad.cell<tensor<2x4xf32>>
  ad.accum_matmul %c, %a, %b {transpose_a, transpose_b} : !ad.cell<tensor<2x4xf32>>, tensor<3x2xf32>, tensor<4x3xf32>
  ad.accum_matmul %c, %a, %b {deferred, transpose_a, transpose_b, origin = "w"} : !ad.cell<tensor<2x4xf32>>, tensor<3x2xf32>, tensor<4x3xf32>
  ad.accum_slice %c, %g {axis = 1 : i64, offset = 3 : i64} : !ad.cell<tensor<2x4xf32>>, tensor<2x1xf32>
  ad.flush_products %c : !ad.cell<tensor<2x4xf32>>
  %d = ad.load %c : !ad.cell<tensor<2x4xf32>>
  func.return %d : tensor<2x4xf32>
}
""", (("ad.accum_matmul %c, %a, %b {transpose_a, transpose_b} : !ad.cell<tensor<2x4xf32>>, "
       "tensor<3x2xf32>, tensor<4x3xf32>"),
      ("ad.accum_slice %c, %g {axis = 1 : i64, offset = 3 : i64} : !ad.cell<tensor<2x4xf32>>, "
       "tensor<2x1xf32>"),
      "ad.flush_products %c : !ad.cell<tensor<2x4xf32>>",
      "ad.drop_products %c : !ad.cell<tensor<2x4xf32>>")),
    SyntaxCase("types-as-arguments", f"""\
func.func @f(%k: {K2}, %c: !cont.closure<(!ad.cell<tensor<2xf32>>) -> ()>, \
%e: !ad.cell<tensor<2x3xf64>>, %k0: {K0}) -> {K0} {{
  func.return %k0 : {K0}
}}
""", ("!cont.closure<(!ad.cell<tensor<2xf32>>) -> ()>",)),
]
# fmt: on


def print_attribute(attr: Attribute) -> str:
    out = io.StringIO()
    Printer(stream=out).print_attribute(attr)
    return out.getvalue()


def in_module(source: str) -> str:
    return "builtin.module {\n" + textwrap.indent(source, "  ") + "}"


def parse(ctx: Context, text: str) -> ModuleOp:
    return Parser(ctx, text).parse_module()


@pytest.fixture
def ctx() -> Context:
    return make_context()


# --- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_custom_form_round_trips(case: SyntaxCase, ctx: Context):
    module = parse(ctx, case.source)
    module.verify()
    text = print_ir(module)
    assert text == in_module(case.source), "the source is not in canonical form"
    for fragment in case.shows:
        assert fragment in text
    again = parse(ctx, text)
    again.verify()
    assert print_ir(again) == text


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_generic_form_round_trips(case: SyntaxCase, ctx: Context):
    generic = print_ir(parse(ctx, case.source), generic=True)
    module = parse(ctx, generic)
    module.verify()
    assert print_ir(module, generic=True) == generic
    # The generic form is the same IR as the custom one.
    assert print_ir(module) == in_module(case.source)


TYPES = [
    ("!cont.k<(tensor<f32>) -> (tensor<f32>)>", ContinuationType),
    ("!cont.k<() -> ()>", ContinuationType),
    ("!cont.k<(f32, index, i1) -> (f64, tensor<2x3xf32>)>", ContinuationType),
    ("!cont.closure<() -> (f32)>", ClosureType),
    ("!cont.closure<(!cont.k<(f32) -> (f32)>) -> (!cont.closure<() -> ()>)>", ClosureType),
    ("!ad.cell<tensor<3xf32>>", CellType),
    ("!ad.cell<tensor<f64>>", CellType),
    ("!ad.cell<tensor<2x1x4xi32>>", CellType),
    ("!ad.stack<tensor<2x3xf32>>", StackType),
    ("!ad.stack<!ad.stack<index>>", StackType),
]


@pytest.mark.parametrize("text, kind", TYPES, ids=[t for t, _ in TYPES])
def test_type_round_trips(text: str, kind: type[Attribute], ctx: Context):
    t = Parser(ctx, text).parse_type()
    assert isinstance(t, kind)
    assert print_attribute(t) == text
    assert Parser(ctx, print_attribute(t)).parse_type() == t


def test_type_parameters_are_exposed(ctx: Context):
    k = Parser(ctx, "!cont.k<(f32, f64) -> (i1)>").parse_type()
    assert isinstance(k, ContinuationType)
    assert [str(t) for t in k.inputs.data] == ["f32", "f64"]
    assert [str(t) for t in k.outputs.data] == ["i1"]
    cell = Parser(ctx, "!ad.cell<tensor<3xf32>>").parse_type()
    assert isinstance(cell, CellType) and str(cell.elem) == "tensor<3xf32>"


# --- coverage -----------------------------------------------------------------------------


def test_every_op_and_type_has_a_round_trip_case(ctx: Context):
    ops: set[type] = set()
    types: set[type] = {kind for _, kind in TYPES}
    for case in CASES:
        for op in parse(ctx, case.source).walk():
            ops.add(type(op))
            types.update(type(r.type) for r in op.results)
            for region in op.regions:
                for block in region.blocks:
                    types.update(type(a.type) for a in block.args)
    missing = [op.name for op in [*CONT_OPS, *AD_OPS] if op not in ops]
    missing += [t.name for t in [*CONT_TYPES, *AD_TYPES] if t not in types]
    assert not missing, f"no round-trip case in test_cont_ad_syntax.CASES for {missing}"


def test_case_ids_are_unique():
    assert len({c.id for c in CASES}) == len(CASES)


def ir_example(name: str) -> re.Pattern[str]:
    """IR using op `name`, `[%results =] name ...` or its generic form, on a line of
    its own or quoted in backticks."""
    return re.compile(rf'(^\s*|`)(%[\w#:, %]+=\s*)?"?{re.escape(name)}("|\s|$)', re.MULTILINE)


OPS_OF_OUR_DIALECTS = [op for d in (LN, Cont, AD) for op in d.operations]


@pytest.mark.parametrize("op", OPS_OF_OUR_DIALECTS, ids=[op.name for op in OPS_OF_OUR_DIALECTS])
def test_every_op_documents_an_ir_example(op: type):
    doc = op.__doc__ or ""
    assert ir_example(op.name).search(doc), (
        f"{op.__name__} ({op.name}): the docstring has no IR example using {op.name}"
    )
