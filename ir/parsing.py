"""Parsing textual IR from any input: xDSL's parser with the guards lanterna needs.

Every place lanterna reads textual IR (`lanterna.ir.parse_module`, `lanterna-opt`)
goes through `IRParser`. It differs from xDSL 0.75's `Parser` where that one is
slow, crashes or accepts invalid IR on bad input:

- string literals are lexed in linear time. xDSL's string regex nests a `+`
  inside a `*`, so a literal without its closing quote backtracks exponentially
  (28 characters take ~10 s); a failed literal says whether the quote is missing
  or an escape is invalid;
- lexer messages name the offending character (`U+FEFF (byte order mark)`, not
  an invisible glyph) and fill in the placeholder xDSL leaves in
  `Expected suffix identifier after {first_char}`;
- a dense literal with a value its element type cannot hold is a ParseError at
  the literal, not xDSL's OverflowError or ValueError from packing it;
- integer types are at most `MAX_INTEGER_WIDTH` bits wide, as in MLIR;
- regions nest at most `MAX_REGION_DEPTH` deep, and deeper nesting of anything
  (types, attributes) that exhausts Python's recursion is a located ParseError,
  not a `RecursionError`;
- a value is only visible where MLIR's scoping makes it visible. xDSL resolves a
  forward reference with a definition found in any later region, so
  `%s = ln.exp %b` followed by a region that defines `%b` parses into IR that
  uses a value from inside another op's region; here it is an error at the use;
- a block label that is not a valid name hint (`^3`) no longer raises ValueError;
- an attribute that fails its own verifier while being parsed is a ParseError at
  its op, and the start of each op is remembered (`op_spans`) so that a later
  verifier failure can be reported at the op's line and column.
"""

from __future__ import annotations

import re
import struct
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from string import hexdigits

from xdsl.context import Context
from xdsl.dialects.builtin import (
    AnyDenseElement,
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    ModuleOp,
    RankedStructure,
)
from xdsl.ir import Block, Operation, Region, SSAValue, TypeAttribute
from xdsl.ir.core import AttributeInvT
from xdsl.irdl.dominance import DominanceInfo
from xdsl.parser import Parser
from xdsl.parser.core import ForwardDeclaredValue
from xdsl.parser.generic_parser import ParserState
from xdsl.utils.exceptions import MultipleSpansParseError, ParseError, VerifyException
from xdsl.utils.lexer import Input, Position, Span
from xdsl.utils.mlir_lexer import MLIRLexer, MLIRToken, MLIRTokenKind

MAX_REGION_DEPTH = 50
"""How deeply regions may nest. Deeper IR would exhaust Python's recursion limit in
the recursive verifier, printer and passes even where the parser could still read
it; lanterna's own programs nest a few levels per source-level loop or branch. At 50,
parsing in generic syntax, verifying, printing and the passes stay within Python's
default recursion limit even when called from a few hundred frames deep."""


MAX_INTEGER_WIDTH = 16_777_215
"""MLIR's limit on the width of an integer type. xDSL has none, and checking a
value against `i4294967296` builds the integer 2**4294967296 (minutes, 512 MiB)."""

_INTEGER_TYPE = re.compile(r"[su]?i([0-9]+)")


class IRLexer(MLIRLexer):
    """xDSL's MLIR lexer with a linear-time string literal rule and clearer messages."""

    # xDSL 0.75 spells this `"(?:[^"\\\n\v\f]+|\\(...))*"`: the `+` inside the `*`
    # lets a literal without a closing quote split its characters between the two
    # loops in 2^n ways before failing. Possessive loops never give characters
    # back, and each character can only start one alternative, so matching (and
    # failing) is linear.
    _unescaped_characters_regex = re.compile(r'"(?:[^"\\\n\v\f]++|\\(?:["nt\\]|[0-9A-Fa-f]{2}))*+"')

    def lex(self) -> MLIRToken:
        try:
            return super().lex()
        except ParseError as e:
            raise self._reworded(e) from None

    def _lex_string_literal(self, start_pos: Position) -> MLIRToken:
        if self._unescaped_characters_regex.match(self.input.content, start_pos) is None:
            raise self._string_error(start_pos)
        return super()._lex_string_literal(start_pos)

    def _string_error(self, start: Position) -> ParseError:
        """Why the literal opening at `start` does not match (a linear scan)."""
        text = self.input.content
        pos = start + 1
        while pos < len(text):
            c = text[pos]
            if c in "\n\v\f":
                break
            if c == "\\":
                escape = text[pos + 1 : pos + 3]
                if escape[:1] in ("", "\n", "\v", "\f"):
                    break  # a backslash at the end of the line or file
                if escape[0] in '"nt\\':
                    pos += 2
                    continue
                if len(escape) == 2 and all(h in hexdigits for h in escape):
                    pos += 3
                    continue
                return ParseError(
                    Span(pos, pos + 2, self.input),
                    f"invalid escape sequence '\\{_printable(escape[0])}' in string literal "
                    '(valid: \\", \\n, \\t, \\\\ and \\ followed by two hex digits)',
                )
            pos += 1
        return ParseError(Span(start, start + 1, self.input), "unterminated string literal")

    def _reworded(self, e: ParseError) -> ParseError:
        msg = e.msg
        if msg.startswith("Unexpected character: "):
            char = self.input.content[e.span.start]
            msg = f"unexpected character {_describe(char)}"
        elif "{first_char}" in msg:
            msg = msg.replace("{first_char}", f"'{self.input.content[e.span.start]}'")
        elif msg.startswith("Unexpected end of file after @"):
            msg = "expected a symbol name after '@'"
        else:
            return e
        return ParseError(e.span, msg)


def _describe(char: str) -> str:
    code = f"U+{ord(char):04X}"
    if char == "\ufeff":
        return f"{code} (byte order mark; save the file as UTF-8 without a BOM)"
    name = unicodedata.name(char, "")
    if unicodedata.category(char) == "Cc":
        return f"control character {code}"
    if char.isprintable() and not char.isspace():
        return f"'{char}' ({code}{' ' + name if name else ''})"
    return f"{code}{' (' + name + ')' if name else ''}"


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


class IRParser(Parser):
    """xDSL's `Parser` reading with `IRLexer`, bounded in depth, checking value scopes
    and recording where each op starts (`op_spans`)."""

    def __init__(self, ctx: Context, text: str, name: str = "<unknown>"):
        # xDSL's constructor lexes the first token with its own lexer, which is
        # already exponential on a file that starts with an open string: give it
        # nothing to lex, then install ours.
        super().__init__(ctx, "", name)
        self._parser_state = ParserState(IRLexer(Input(text, name)))
        self.op_spans: dict[Operation, Span[str]] = {}
        self._region_depth = 0
        # For naming undefined values at their first use, and saying when the
        # definition exists but in a region the use cannot see.
        self._first_use: dict[str, Span[str]] = {}
        self._definitions: dict[str, Span[str]] = {}
        # The names values had in the text: a value named `%0` has no name hint.
        self._value_names: dict[SSAValue, str] = {}

    def at_end(self) -> bool:
        """Whether nothing but whitespace and comments is left to parse."""
        return self._current_token.kind == MLIRTokenKind.EOF

    def parse_module(self, allow_implicit_module: bool = True) -> ModuleOp:
        try:
            module = super().parse_module(allow_implicit_module)
        except RecursionError:
            self.raise_error(
                "the input nests too deeply to parse (Python's recursion limit was reached)"
            )
        except ParseError as e:
            if e.msg.startswith("values used but not defined") and self.forward_ssa_references:
                raise self._undefined_value_error() from None
            raise
        self._check_value_scopes(module)
        return module

    def resolve_operand(
        self, operand: Parser.UnresolvedOperand, type: AttributeInvT
    ) -> SSAValue[AttributeInvT]:
        name = operand.operand_name
        if name not in self.ssa_values:
            self._first_use.setdefault(name, operand.span)
        value = super().resolve_operand(operand, type)
        if isinstance(value, ForwardDeclaredValue):
            self._value_names[value] = f"%{name}" + (f"#{operand.index}" if operand.index else "")
        return value

    def _register_ssa_definition(self, name: str, values: Sequence[SSAValue], span: Span) -> None:
        self._definitions.setdefault(name, span)
        for i, value in enumerate(values):
            self._value_names[value] = f"%{name}" if len(values) == 1 else f"%{name}#{i}"
        super()._register_ssa_definition(name, values, span)

    def _undefined_value_error(self) -> ParseError:
        """xDSL reports undefined values at the end of the file; name the first one
        at its first use instead, and why it is not visible if it is defined."""
        name = next(iter(self.forward_ssa_references))
        span = self._first_use.get(name, Span(0, 1, self.lexer.input))
        others = [f"%{n}" for n in self.forward_ssa_references if n != name]
        also = f"; also undefined: {', '.join(others)}" if others else ""
        where = self._definitions.get(name)
        if where is None:
            return ParseError(span, f"value %{name} is never defined{also}")
        line = where.get_location().line
        return ParseError(
            span,
            f"value %{name} is not visible here: its definition (line {line}) is inside "
            f"a region that does not enclose this use{also}",
        )

    def parse_operation(self) -> Operation:
        start = self.pos
        try:
            op = super().parse_operation()
        except VerifyException as e:
            raise ParseError(self._first_line(start), str(e)) from e
        self.op_spans[op] = self._first_line(start)
        return op

    def parse_optional_region(
        self, arguments: Sequence[Parser.Argument] | None = None
    ) -> Region | None:
        if self._current_token.kind != MLIRTokenKind.L_BRACE:
            return super().parse_optional_region(arguments)
        if self._region_depth >= MAX_REGION_DEPTH:
            self.raise_error(f"regions nest more than {MAX_REGION_DEPTH} deep")
        self._region_depth += 1
        try:
            return super().parse_optional_region(arguments)
        finally:
            self._region_depth -= 1

    def _parse_optional_integer_or_float_type(self) -> TypeAttribute | None:
        token = self._current_token
        if token.kind == MLIRTokenKind.BARE_IDENT:
            match = _INTEGER_TYPE.fullmatch(token.text)
            if match is not None and int(match.group(1)) > MAX_INTEGER_WIDTH:
                self.raise_error(
                    f"integer bitwidth is limited to {MAX_INTEGER_WIDTH} bits", token.span
                )
        return super()._parse_optional_integer_or_float_type()

    def _parse_block(self) -> Block:
        # xDSL 0.75's, except that a label that is not a valid name hint (`^3`, a
        # valid MLIR caret-id) is kept off the block instead of raising ValueError,
        # as xDSL already does for forward references to blocks.
        name_token = self._parse_token(MLIRTokenKind.CARET_IDENT, " in block definition")
        name = name_token.text[1:]
        if name not in self.blocks:
            block = Block()
            self.blocks[name] = (block, name_token.span)
        else:
            block, original_definition = self.blocks[name]
            if original_definition is not None:
                raise MultipleSpansParseError(
                    name_token.span,
                    f"re-declaration of block '{name}'",
                    "originally declared here:",
                    [(original_definition, None)],
                )
            self.forward_block_references.pop(name)
        if Block.is_valid_name(name) and not Block.is_default_block_name(name):
            block.name_hint = name
        self._parse_optional_block_arg_list(block)
        self.parse_punctuation(":")
        self._parse_block_body(block)
        return block

    def parse_dense_int_or_fp_elements_attr(
        self, type: RankedStructure[AnyDenseElement] | None
    ) -> DenseIntOrFPElementsAttr:
        with self._value_errors_located(self.pos):
            return super().parse_dense_int_or_fp_elements_attr(type)

    def _parse_builtin_densearray_attr(self) -> DenseArrayBase | None:
        with self._value_errors_located(self.pos):
            return super()._parse_builtin_densearray_attr()

    @contextmanager
    def _value_errors_located(self, start: Position) -> Iterator[None]:
        # xDSL packs dense literals with `struct` after checking only part of the
        # range: 1e64 as f32 raises OverflowError, 300 as i8 a ValueError, and an
        # i0 element (zero bytes) ZeroDivisionError.
        try:
            yield
        except (ValueError, OverflowError, ZeroDivisionError, struct.error) as e:
            message = str(e)
            if isinstance(e, OverflowError):
                message = f"a value of this literal does not fit its element type ({e})"
            elif isinstance(e, ZeroDivisionError):
                message = "a dense literal's element type must be at least one byte wide"
            raise ParseError(
                Span(start, max(self.pos, start + 1), self.lexer.input), message
            ) from e

    def _first_line(self, start: int) -> Span[str]:
        # Underline up to here, on the op's first line only: a region op spans many.
        src = self.lexer.input
        end = min(self.pos, src.get_end_of_line(start))
        return Span(start, max(end, start + 1), src)

    def _check_value_scopes(self, module: ModuleOp) -> None:
        """Raise a ParseError at the first op that uses a value it cannot see."""
        dominance: dict[Region, DominanceInfo] = {}
        for op in module.walk():
            for index, operand in enumerate(op.operands):
                if isinstance(operand, ForwardDeclaredValue):
                    # xDSL replaced the forward reference's uses when the value
                    # was defined, but this op did not exist yet: the definition
                    # is inside the op's own regions, parsed after its operands.
                    problem = "is defined inside a region of the op that uses it"
                else:
                    problem = _scope_problem(op, operand.owner, dominance)
                if problem is None:
                    continue
                name = self._value_names.get(operand, f"operand #{index}")
                span = self.op_spans.get(op)
                message = f"value {name} {problem}"
                if span is None:
                    self.raise_error(f"'{op.name}' op uses {message}", 0)
                raise ParseError(span, message)


def _scope_problem(
    user: Operation, owner: Operation | Block, dominance: dict[Region, DominanceInfo]
) -> str | None:
    """Why `user` may not use a value defined by `owner` (an op, or a block for a
    block argument), or None if it may."""
    def_block = owner if isinstance(owner, Block) else owner.parent_block()
    if def_block is None:
        return None  # a value of a detached op: not something text can produce
    def_region = def_block.parent
    # Climb from the user to its ancestor that sits in the defining region.
    at: Operation | None = user
    while at is not None and (block := at.parent_block()) is not None:
        if block.parent is def_region:
            break
        at = block.parent_op()
    else:
        return "is defined inside a region that does not enclose this use"
    assert block is not None
    if block is not def_block:
        assert def_region is not None
        info = dominance.setdefault(def_region, DominanceInfo(def_region))
        if not info.dominates(def_block, block):
            return "is defined in a block that does not dominate this use"
        return None
    if isinstance(owner, Block) or _is_graph_region(def_block):
        return None
    if owner is at or not owner.is_before_in_block(at):
        return "is used before it is defined"
    return None


def _is_graph_region(block: Block) -> bool:
    # As in MLIR, a module's body is a graph region: its ops may refer to each
    # other in any order. Every other region lanterna reads is an SSA CFG region.
    return isinstance(block.parent_op(), ModuleOp)


__all__ = ["MAX_INTEGER_WIDTH", "MAX_REGION_DEPTH", "IRLexer", "IRParser"]
