"""Invalid `ln` IR is rejected with the documented diagnostic at the right line.

The cases live in invalid/ln.mlir; its header describes the convention.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from xdsl.context import Context
from xdsl.parser import Parser
from xdsl.utils.exceptions import ParseError, VerifyException

CASES_FILE = Path(__file__).parent / "invalid" / "ln.mlir"
SEPARATOR = re.compile(r"^// -----$", re.MULTILINE)
EXPECTED = re.compile(r"//\s*expected-error@\+(\d+)\s*\{\{(.*)\}\}")
OP_NAME = re.compile(r"'(ln\.\w+)'")


@dataclass(frozen=True)
class InvalidCase:
    name: str
    source: str  # the case, preceded by blank lines so line numbers are the file's
    first_line: int
    message: str
    line: int  # where the error belongs


def load_cases() -> list[InvalidCase]:
    text = CASES_FILE.read_text()
    cases = []
    offset = 1
    for chunk in SEPARATOR.split(text):
        lines = chunk.split("\n")
        expected = [(i, m) for i, line in enumerate(lines, start=1) if (m := EXPECTED.search(line))]
        if expected:
            assert len(expected) == 1, f"{CASES_FILE}:{offset}: one expected-error per case"
            ((i, m),) = expected
            name = re.search(r"func\.func @(\w+)", chunk)
            assert name, f"{CASES_FILE}:{offset}: a case is a func.func"
            source = "\n" * (offset - 1) + chunk
            line = offset - 1 + i + int(m.group(1))
            cases.append(InvalidCase(name.group(1), source, offset, m.group(2), line))
        offset += chunk.count("\n")
    return cases


CASES = load_cases()


def test_the_file_has_enough_cases():
    assert len(CASES) >= 12
    assert len({c.name for c in CASES}) == len(CASES), "case names must be unique"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_invalid_case(case: InvalidCase, ln_ctx: Context):
    where = f"{CASES_FILE}:{case.first_line} (@{case.name})"
    target = case.source.split("\n")[case.line - 1]
    try:
        module = Parser(ln_ctx, case.source, str(CASES_FILE)).parse_module()
        module.verify()
    except ParseError as e:
        assert case.message in e.msg, f"{where}: got {e.msg!r}"
        assert e.span.get_location().line == case.line, f"{where}: error at the wrong line\n{e}"
    except VerifyException as e:
        assert case.message in str(e), f"{where}: got {e}"
        op = OP_NAME.search(case.message)
        assert op, f"{where}: a verifier message names its op"
        assert f'"{op.group(1)}"' in target or f"{op.group(1)} " in target, (
            f"{where}: {op.group(1)} is not the op on the target line {target!r}"
        )
    else:
        pytest.fail(f"{where}: expected the error {case.message!r}, but the IR is valid")
