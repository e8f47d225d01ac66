"""Invalid IR is rejected with the documented diagnostic at the right line.

Every `*.mlir` file in invalid/ is a list of cases, one per dialect (ln.mlir,
cont.mlir, ad.mlir); the header of each file describes the convention.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from xdsl.parser import Parser
from xdsl.utils.exceptions import ParseError, VerifyException

from lanterna.ir import make_context

CASES_DIR = Path(__file__).parent / "invalid"
SEPARATOR = re.compile(r"^// -----$", re.MULTILINE)
EXPECTED = re.compile(r"//\s*expected-error@\+(\d+)\s*\{\{(.*)\}\}")
# What a verifier message is about: an op, quoted (`'ln.add': ...`), or a type
# whose parameters are wrong (`!ad.cell holds ...`), which fails while parsing
# but without a location.
SUBJECT = re.compile(r"'(\w+\.\w+)'|(![\w]+\.\w+)")

# Each dialect's file must keep at least this many cases.
MIN_CASES = {"ln.mlir": 12, "cont.mlir": 6, "ad.mlir": 6}


@dataclass(frozen=True)
class InvalidCase:
    file: Path
    name: str
    source: str  # the case, preceded by blank lines so line numbers are the file's
    first_line: int
    message: str
    line: int  # where the error belongs

    @property
    def id(self) -> str:
        return f"{self.file.stem}:{self.name}"


def load_cases(path: Path) -> list[InvalidCase]:
    text = path.read_text()
    cases = []
    offset = 1
    for chunk in SEPARATOR.split(text):
        lines = chunk.split("\n")
        expected = [(i, m) for i, line in enumerate(lines, start=1) if (m := EXPECTED.search(line))]
        if expected:
            assert len(expected) == 1, f"{path}:{offset}: one expected-error per case"
            ((i, m),) = expected
            name = re.search(r"func\.func @(\w+)", chunk)
            assert name, f"{path}:{offset}: a case is a func.func"
            source = "\n" * (offset - 1) + chunk
            line = offset - 1 + i + int(m.group(1))
            cases.append(InvalidCase(path, name.group(1), source, offset, m.group(2), line))
        offset += chunk.count("\n")
    return cases


FILES = sorted(CASES_DIR.glob("*.mlir"))
CASES = [case for path in FILES for case in load_cases(path)]


def test_every_dialect_has_its_file():
    assert [f.name for f in FILES] == sorted(MIN_CASES)


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_the_file_has_enough_cases(path: Path):
    cases = load_cases(path)
    assert len(cases) >= MIN_CASES[path.name]
    assert len({c.name for c in cases}) == len(cases), "case names must be unique"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_invalid_case(case: InvalidCase):
    where = f"{case.file}:{case.first_line} (@{case.name})"
    target = case.source.split("\n")[case.line - 1]
    try:
        module = Parser(make_context(), case.source, str(case.file)).parse_module()
        module.verify()
    except ParseError as e:
        assert case.message in e.msg, f"{where}: got {e.msg!r}"
        assert e.span.get_location().line == case.line, f"{where}: error at the wrong line\n{e}"
    except VerifyException as e:
        assert case.message in str(e), f"{where}: got {e}"
        subject = SUBJECT.search(case.message)
        assert subject, f"{where}: a verifier message names its op or type"
        op, type_name = subject.groups()
        if op is not None:
            written = rf'"{re.escape(op)}"|{re.escape(op)}(\s|$)'
        else:
            written = rf"{re.escape(type_name)}<"
        assert re.search(written, target), (
            f"{where}: {op or type_name} is not on the target line {target!r}"
        )
    else:
        pytest.fail(f"{where}: expected the error {case.message!r}, but the IR is valid")
