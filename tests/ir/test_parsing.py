"""Parsing textual IR (`lanterna.ir.parsing`): what it adds to xDSL's parser."""

from __future__ import annotations

import time

import pytest
from xdsl.parser import Parser
from xdsl.utils.exceptions import ParseError
from xdsl.utils.mlir_lexer import MLIRLexer

from lanterna.ir import make_context, parse_module
from lanterna.ir.parsing import MAX_REGION_DEPTH, IRLexer


def parse_error(text: str) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse_module(text, "in.mlir")
    return info.value


def location(e: ParseError) -> tuple[int, int]:
    loc = e.span.get_location()
    return loc.line, loc.col


def func_with_attribute(value: str) -> str:
    return f"func.func @f() attributes {{s = {value}}} {{\n  func.return\n}}\n"


# --- string literals -----------------------------------------------------------------------


@pytest.mark.parametrize("n", [26, 200_000])
def test_an_unterminated_string_fails_fast(n):
    # xDSL 0.75's own lexer takes ~4 s at 26 characters, doubling with each one more.
    text = 'func.func @f() attributes {s = "' + "a" * n
    start = time.perf_counter()
    e = parse_error(text)
    elapsed = time.perf_counter() - start
    assert e.msg == "unterminated string literal"
    assert location(e) == (1, 32)
    assert elapsed < 1.0


@pytest.mark.parametrize(
    "literal",
    ['"' + "a" * 30 + "\n", '"' + "a" * 30 + "\\", '"' + "\\\\" * 30 + "\\n" * 30, '@"' + "b" * 30],
)
def test_every_unterminated_string_fails_fast(literal):
    start = time.perf_counter()
    e = parse_error(f"func.func @f() {{\n  func.return {literal}")
    assert time.perf_counter() - start < 1.0
    assert e.msg == "unterminated string literal"


def test_an_invalid_escape_is_named_at_its_position():
    start = time.perf_counter()
    e = parse_error(func_with_attribute('"' + "a" * 30 + '\\q"'))
    assert time.perf_counter() - start < 1.0
    assert e.msg.startswith("invalid escape sequence '\\q' in string literal")
    assert location(e) == (1, 32 + 31)


@pytest.mark.parametrize(
    "literal",
    ['""', '"plain"', '"tab\\there"', '"quote\\" and \\\\"', '"\\0A\\ff"', '"a\\"b"', '"\\""'],
)
def test_the_string_rule_matches_what_xdsls_does_on_valid_literals(literal):
    text = literal + " tail"
    ours = IRLexer._unescaped_characters_regex.match(text)
    theirs = MLIRLexer._unescaped_characters_regex.match(text)
    assert ours is not None and theirs is not None
    assert ours.group() == theirs.group() == literal
    text = func_with_attribute(literal)
    assert str(parse_module(text)) == str(Parser(make_context(), text).parse_module())


# --- lexer messages ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ("\ufefffunc.func @f() {\n  func.return\n}\n", "unexpected character U+FEFF (byte order"),
        ("\x00", "unexpected character control character U+0000"),
        ("#", "Expected suffix identifier after '#'"),
        ("%", "Expected suffix identifier after '%'"),
        ("^", "Expected suffix identifier after '^'"),
        ("!", "Expected suffix identifier after '!'"),
        ("@", "expected a symbol name after '@'"),
        ('"', "unterminated string literal"),
    ],
)
def test_a_bad_first_character_is_a_located_error(text, message):
    e = parse_error(text)
    assert e.msg.startswith(message)
    assert location(e) == (1, 1)


# --- value scopes --------------------------------------------------------------------------

HEAD = "func.func @f(%x: tensor<f64>, %c: i1) -> tensor<f64> {\n"


def scf_if(body: str) -> str:
    return f"  scf.if %c {{\n    {body}\n    scf.yield\n  }}\n"


def test_a_value_from_a_nested_region_is_not_visible_after_it():
    text = (
        HEAD
        + scf_if("%b = ln.exp %x : tensor<f64>")
        + "  %s = ln.mul %b, %x : tensor<f64>, tensor<f64>\n  func.return %s : tensor<f64>\n}\n"
    )
    e = parse_error(text)
    assert e.msg == (
        "value %b is not visible here: its definition (line 3) is inside a region that "
        "does not enclose this use"
    )
    assert location(e) == (6, 15)


def test_a_use_before_a_nested_definition_is_an_error_at_the_use():
    # xDSL 0.75 resolves the forward reference with the definition inside scf.if
    # and returns IR whose ln.exp reads a value from inside another op's region.
    text = (
        HEAD
        + "  %s = ln.exp %b : tensor<f64>\n"
        + scf_if("%b = ln.tanh %x : tensor<f64>")
        + "  func.return %s : tensor<f64>\n}\n"
    )
    e = parse_error(text)
    assert e.msg == "value %b is defined inside a region that does not enclose this use"
    assert location(e) == (2, 3)


def test_a_use_in_a_region_before_the_definition_after_it():
    text = (
        HEAD
        + scf_if("%s = ln.exp %b : tensor<f64>")
        + "  %b = ln.tanh %x : tensor<f64>\n  func.return %b : tensor<f64>\n}\n"
    )
    e = parse_error(text)
    assert e.msg == "value %b is used before it is defined"
    assert location(e) == (3, 5)


def test_an_operand_defined_inside_the_ops_own_region():
    # The fuzzer's find: xDSL 0.75 resolved the forward reference after scf.if had
    # read its operand, leaving a placeholder value that raised ValueError later.
    text = (
        "func.func @f(%x: tensor<f64>) -> tensor<f64> {\n"
        "  %r = scf.if %c -> (tensor<f64>) {\n"
        "    %m = ln.gt %x, %x : tensor<f64>, tensor<f64>\n"
        "    %c = ln.item %m : tensor<i1>\n"
        "    scf.yield %x : tensor<f64>\n"
        "  } else {\n"
        "    scf.yield %x : tensor<f64>\n"
        "  }\n"
        "  func.return %r : tensor<f64>\n"
        "}\n"
    )
    e = parse_error(text)
    assert e.msg == "value %c is defined inside a region of the op that uses it"
    assert location(e) == (2, 3)


def test_a_value_used_by_its_own_definition():
    e = parse_error(HEAD + "  %b = ln.exp %b : tensor<f64>\n  func.return %b : tensor<f64>\n}\n")
    assert e.msg == "value %b is used before it is defined"


def test_an_undefined_value_is_named_at_its_first_use():
    e = parse_error(HEAD + "  %b = ln.exp %y : tensor<f64>\n  func.return %z : tensor<f64>\n}\n")
    assert e.msg == "value %y is never defined; also undefined: %z"
    assert location(e) == (2, 15)


def test_values_of_enclosing_regions_and_graph_regions_are_visible():
    text = (
        HEAD
        + "  %a = ln.exp %x : tensor<f64>\n"
        + scf_if("%b = ln.add %a, %x : tensor<f64>, tensor<f64>")
        + "  func.return %a : tensor<f64>\n}\n"
        # A module body is a graph region: its ops may refer forward.
        + "%use = ln.exp %late : tensor<f64>\n"
        + "%late = ln.zeros : tensor<f64>\n"
    )
    module = parse_module(text)
    module.verify()
    use, late = list(module.ops)[1:]
    assert use.operands[0] is late.results[0]


# --- depth ---------------------------------------------------------------------------------


def nested_ifs(depth: int) -> str:
    body = "%y = ln.exp %x : tensor<f64>"
    for _ in range(depth):
        body = f"scf.if %c {{\n{body}\nscf.yield\n}}"
    return HEAD + body + "\nfunc.return %x : tensor<f64>\n}\n"


def test_regions_may_nest_up_to_the_limit():
    module = parse_module(nested_ifs(MAX_REGION_DEPTH - 1))  # the func body is one more
    module.verify()


@pytest.mark.parametrize("depth", [MAX_REGION_DEPTH, 200])
def test_deeper_regions_are_a_located_error(depth):
    e = parse_error(nested_ifs(depth))
    assert e.msg == f"regions nest more than {MAX_REGION_DEPTH} deep"
    assert location(e) == (MAX_REGION_DEPTH + 1, 11)  # the `{` of the first region too deep


@pytest.mark.parametrize("open_, close", [("[", "]"), ("{a = ", "}"), ("tuple<", ">")])
def test_deeply_nested_attributes_are_a_located_error(open_, close):
    value = open_ * 3000 + ("1" if open_ == "{a = " else "") + close * 3000
    if open_ == "tuple<":
        value = open_ * 3000 + "f32" + close * 3000
    e = parse_error(func_with_attribute(value))
    assert e.msg == "the input nests too deeply to parse (Python's recursion limit was reached)"
    assert location(e)[0] == 1


# --- values and labels xDSL 0.75 raises Python errors on -----------------------------------


@pytest.mark.parametrize(
    "literal, column",
    [("dense<[1.5e64, 2.0]> : tensor<2xf32>", 37), ("array<f32: 1.5e64>", 37)],
)
def test_a_float_too_large_for_its_type_is_a_located_error(literal, column):
    e = parse_error(func_with_attribute(literal))  # was OverflowError from struct.pack
    assert e.msg.startswith("a value of this literal does not fit its element type")
    assert location(e) == (1, column)


def test_an_integer_out_of_range_in_a_dense_literal_is_a_located_error():
    e = parse_error(func_with_attribute("dense<300> : tensor<2xi8>"))  # was ValueError
    assert e.msg.startswith("Integer value 300 is out of range for type i8")
    assert location(e) == (1, 37)


def test_a_dense_array_of_a_zero_width_type_is_a_located_error():
    e = parse_error(func_with_attribute("array<i0>"))  # was ZeroDivisionError
    assert e.msg == "a dense literal's element type must be at least one byte wide"
    assert location(e) == (1, 37)


def test_an_integer_type_wider_than_mlir_allows_fails_fast():
    # Checking 1 against i4294967296 built 2**4294967296: minutes and 512 MiB.
    start = time.perf_counter()
    e = parse_error(func_with_attribute("array<i4294967296: 1, 2>"))
    assert time.perf_counter() - start < 1.0
    assert e.msg == "integer bitwidth is limited to 16777215 bits"
    assert location(e) == (1, 38)


def test_a_numeric_block_label():
    # `^3` is a valid MLIR block label; xDSL 0.75 raised ValueError naming the block.
    module = parse_module("func.func @f() {\n^3:\n  func.return\n}\n")
    module.verify()
    (func,) = module.ops
    assert len(func.regions[0].blocks) == 1
