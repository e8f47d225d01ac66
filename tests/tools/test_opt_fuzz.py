"""Fuzzing `lanterna-opt` with mutated IR: whatever the bytes, it exits with status 0,
1 or 2 within 10 s, never with a traceback or an internal error.

Seeds are every `.mlir` file under tests/, the IR of each op case of
tests/support/op_cases.py and a few traced programs (a gradient, loops, a branch), each
in custom and generic syntax. A case picks a seed, applies one to six mutations
(bit flips, byte changes, deletions, duplications, splices from another seed,
truncation, insertions of text the lexer treats specially) and runs the result
in-process through a random pipeline and output target. Beyond the exit status,
an input it accepts must print IR that parses and verifies again, and an input
it rejects must get a diagnostic that starts with the file's name.

CI runs `DEFAULT_EXAMPLES` cases in well under a minute; set
`LANTERNA_FUZZ_EXAMPLES=20000` for a long run (hypothesis prints the shrunk
failing input; add it to `REGRESSIONS`).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType, ModuleType

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="the fuzz test needs hypothesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lanterna as ln
from lanterna.backends import available_backends, get_backend
from lanterna.ir import parse_module, print_ir
from lanterna.tools.opt import PROG, main

TESTS = Path(__file__).parents[1]
DEFAULT_EXAMPLES = 500
EXAMPLES = int(os.environ.get("LANTERNA_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
TIME_LIMIT_S = 10


# --- seeds ---------------------------------------------------------------------------------


def _ln_cases() -> ModuleType:
    # The shared op table, tests/support/op_cases.py.
    return importlib.import_module("support.op_cases")


def _traced() -> list[str]:
    def loss(w, x):
        h = ln.tanh(x @ w)
        return ln.sum(h * h)

    def loops(x, n):
        i = 0
        while i < n:
            x = x * 2.0
            i += 1
        if ln.sum(x) > 0:
            x = ln.exp(x) + 1
        return x

    def rnn(w, xs):
        h = xs[0]
        for t in range(3):
            h = ln.tanh(h @ w + xs[t])
        return ln.mean(h)

    w = np.ones((3, 4), np.float32)
    x = np.ones((2, 3), np.float32)
    v = np.ones(3, np.float32)
    return [
        ln.jit(ln.grad(loss)).lower(w, x).as_text(),
        ln.jit(loops).lower(v, np.int32(3)).as_text(),
        ln.jit(ln.grad(rnn))
        .lower(np.ones((3, 3), np.float32), np.ones((3, 3), np.float32))
        .as_text(),
    ]


def _seeds() -> list[bytes]:
    texts = [p.read_text() for p in sorted(TESTS.rglob("*.mlir"))]
    cases = _ln_cases()
    for case in cases.CASES:
        module = cases.build_module(case, case.float_types()[0])
        texts += [print_ir(module), print_ir(module, generic=True)]
    for text in _traced():
        texts += [text, print_ir(parse_module(text), generic=True)]
    return [t.encode() for t in texts]


SEEDS = _seeds()

# Text the lexer and parser treat specially, to land more mutations on their edges.
SPECIAL = [
    b'"', b"\\", b"{", b"}", b"(", b")", b"<", b">", b"[", b"]", b"%", b"^", b"#", b"@",
    b"!", b":", b",", b"=", b"->", b"...", b"//", b"{-#", b"#-}", b"\n", b"\x00",
    b"\xef\xbb\xbf", b"\xff", b"0x", b"-1", b"0", b"1e999", b"nan", b"99999999999999999999",
    b"?", b"*", b"x", b"tensor<", b"%0", b"^bb1:", b"dense<", b"array<i64: ",
]  # fmt: skip

PIPELINES = [
    "",
    "canonicalize",
    "cse,dce",
    "licm",
    "fuse-elementwise",
    "checkpoint",
    "reverse-loops,lower-continuations",
    "elide-zero-adjoints,canonicalize",
    *{get_backend(b).default_pipeline for b in available_backends()},
]
TARGETS = ["mlir", "mlir-generic", "cpp"]


# --- mutations -----------------------------------------------------------------------------


NUMBER = re.compile(rb"-?[0-9]+")
OP_NAME = re.compile(rb"\b(?:ln|ad|cont|scf|func|arith)\.[a-z_0-9]+")
ELEMENT_TYPE = re.compile(rb"\b(?:f16|f32|f64|i1|i8|i32|i64|index)\b")
OP_NAMES = sorted({m.group() for seed in SEEDS for m in OP_NAME.finditer(seed)})
NUMBERS = [b"0", b"1", b"-1", b"2", b"3", b"7", b"64", b"4294967296", b"9223372036854775807",
           b"99999999999999999999", b"1.5", b"-0.0"]  # fmt: skip
ELEMENT_TYPES = [b"f16", b"f32", b"f64", b"i1", b"i8", b"i32", b"i64", b"index"]

# Byte-level mutations reach the lexer and parser; token-level ones keep the text
# well formed more often, and so reach the verifiers, passes and targets.
BYTE_KINDS = ["flip", "byte", "delete", "duplicate", "splice", "truncate", "special"]
TOKEN_KINDS = ["number", "op", "type", "drop-line", "copy-line", "swap-lines"]


def _replace_match(
    draw: st.DrawFn, data: bytearray, pattern: re.Pattern[bytes], choices: list[bytes]
) -> None:
    matches = list(pattern.finditer(data))
    if matches:
        m = draw(st.sampled_from(matches))
        data[m.start() : m.end()] = draw(st.sampled_from(choices))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kinds = draw(st.sampled_from([TOKEN_KINDS, TOKEN_KINDS, BYTE_KINDS]))
        kind = draw(st.sampled_from(kinds))
        pos = draw(st.integers(0, len(data)))
        size = draw(st.integers(1, 64))
        if kind == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif kind == "delete":
            del data[pos : pos + size]
        elif kind == "duplicate":
            data[pos:pos] = data[pos : pos + size]
        elif kind == "splice":
            other = draw(st.sampled_from(SEEDS))
            at = draw(st.integers(0, len(other)))
            data[pos : pos + draw(st.integers(0, 64))] = other[at : at + size]
        elif kind == "truncate":
            del data[pos:]
        elif kind == "special":
            data[pos:pos] = draw(st.sampled_from(SPECIAL)) * draw(st.sampled_from([1, 1, 2, 40]))
        elif kind == "number":
            _replace_match(draw, data, NUMBER, NUMBERS)
        elif kind == "op":
            _replace_match(draw, data, OP_NAME, OP_NAMES)
        elif kind == "type":
            _replace_match(draw, data, ELEMENT_TYPE, ELEMENT_TYPES)
        else:
            lines = data.split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if kind == "drop-line":
                del lines[i]
            elif kind == "copy-line":
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            data[:] = b"\n".join(lines)
    return bytes(data)


pipelines = st.one_of(
    st.sampled_from(PIPELINES),
    # Now and then a damaged pipeline, for the usage errors (exit status 2).
    st.text(alphabet='abcdefghijklmnopqrstuvwxyz-,{}=" 0123456789', max_size=30),
)


# --- running lanterna-opt ------------------------------------------------------------------


class _TimedOut(BaseException):
    """Raised by the alarm; a BaseException so lanterna-opt's boundary does not catch it."""


@contextlib.contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    def expire(signum: int, frame: FrameType | None) -> None:
        raise _TimedOut

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_opt(argv: list[str]) -> tuple[int, str, str, float]:
    """lanterna-opt in-process: exit status, stdout, stderr and seconds taken."""
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            with _time_limit(TIME_LIMIT_S):
                rc = main(argv)
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else -1
        except _TimedOut:
            rc = -1
            err.write(f"[over {TIME_LIMIT_S} s]")
    return rc, out.getvalue(), err.getvalue(), time.perf_counter() - start


def check(path: Path, data: bytes, pipeline: str, target: str, verify_each: bool) -> int:
    """Run lanterna-opt on `data` and check the outcome; returns the exit status."""
    path.write_bytes(data)
    argv = [str(path), "-p", pipeline, "-t", target]
    if not verify_each:
        argv.append("--no-verify-each")
    rc, out, err, seconds = run_opt(argv)
    what = f"lanterna-opt {' '.join(argv[1:])} on {data!r}\n-> status {rc}; stderr:\n{err}"
    assert seconds < TIME_LIMIT_S, f"took {seconds:.1f} s: {what}"
    assert rc in (0, 1, 2), what
    assert "Traceback" not in err and "internal error" not in err, what
    if rc == 2:
        assert err.startswith((f"{PROG}: error:", "usage:")), what
    elif rc == 1:
        assert err.startswith(f"{path}:") and out == "", what
    else:
        assert err == "", what
        if target != "cpp":
            try:
                parse_module(out).verify()
            except Exception as e:
                raise AssertionError(f"the output does not parse back: {e}\n{what}\n{out}") from e
    return rc


@pytest.fixture(scope="module")
def input_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "input.mlir"


@settings(
    max_examples=EXAMPLES,
    deadline=None,  # the 10 s limit is checked per run above
    derandomize=EXAMPLES == DEFAULT_EXAMPLES,  # the same cases on every CI run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    data=mutated(),
    pipeline=pipelines,
    target=st.sampled_from(TARGETS),
    verify_each=st.booleans(),
)
def test_mutated_ir(input_path, data, pipeline, target, verify_each):
    check(input_path, data, pipeline, target, verify_each)


def test_seeds_are_accepted(input_path):
    # Mutations should start from IR that lanterna-opt reads: every seed but the
    # test files that are invalid on purpose.
    rejected = {seed for seed in SEEDS if check(input_path, seed, "", "mlir", True) != 0}
    invalid = [p for p in TESTS.rglob("*.mlir") if p.parent.name == "invalid"]
    invalid += [TESTS / "passes" / "inputs" / n for n in ("malformed.mlir", "invalid_reset.mlir")]
    assert rejected == {p.read_bytes() for p in invalid}


# Inputs the fuzzer found (reduced by hand): (bytes, pipeline, target). Each was a
# Python exception or a hang before the fix named beside it.
REGRESSIONS: list[tuple[bytes, str, str]] = [
    # A func.func without function_type: func.return's verifier ran first and raised
    # KeyError (lanterna-opt now verifies parents before their nested ops).
    (
        b'"func.func"() <{sym_name = "f"}> ({\n  "func.return"() : () -> ()\n}) : () -> ()\n',
        "",
        "mlir",
    ),
    # A numeric block label: ValueError from xDSL's block name hint.
    (b"func.func @f() {\n^3:\n  func.return\n}\n", "cse", "cpp"),
    # A dense literal out of range for f32: OverflowError from struct.pack.
    (
        (
            b"func.func @f() -> tensor<2xf32> {\n  %0 = ln.constant {value = dense<[1.5e+64, 2.0]>"
            b" : tensor<2xf32>} : tensor<2xf32>\n  func.return %0 : tensor<2xf32>\n}\n"
        ),
        "",
        "mlir",
    ),
    # scf.while whose result types differ from the after block's arguments: xDSL's
    # verifier raises a bare Exception (now reported at the op).
    (
        (
            b"func.func @f(%x: tensor<3xf32>, %c: i1) -> tensor<3xf32> {\n"
            b"  %r = scf.while (%a = %x) : (tensor<3xf32>) -> (tensor<i0>) {\n"
            b"    scf.condition(%c) %a : tensor<3xf32>\n"
            b"  } do {\n  ^bb0(%b: tensor<3xf32>):\n    scf.yield %b : tensor<3xf32>\n  }\n"
            b"  func.return %x : tensor<3xf32>\n}\n"
        ),
        "",
        "mlir",
    ),
    # scf.if whose condition is defined inside its own region: a placeholder for
    # the forward reference stayed as its operand (ValueError: no owner).
    (
        (
            b"func.func @f(%x: tensor<f64>) -> tensor<f64> {\n"
            b"  %r = scf.if %c -> (tensor<f64>) {\n"
            b"    %m = ln.gt %x, %x : tensor<f64>, tensor<f64>\n"
            b"    %c = ln.item %m : tensor<i1>\n    scf.yield %x : tensor<f64>\n"
            b"  } else {\n    scf.yield %x : tensor<f64>\n  }\n"
            b"  func.return %r : tensor<f64>\n}\n"
        ),
        "cse",
        "mlir",
    ),
    # A dense array of i0: ZeroDivisionError in xDSL's DenseArrayBase.verify.
    (
        (
            b"func.func @f(%0: tensor<f32>) -> tensor<f32> {\n  %1 = ln.slice %0 {start = "
            b"array<i64>, stop = array<i0>, step = array<i64>} : tensor<f32>\n"
            b"  func.return %1 : tensor<f32>\n}\n"
        ),
        "canonicalize",
        "mlir-generic",
    ),
    # An i4294967296 element type: minutes building 2**4294967296 to range-check 1.
    (b"func.func @f() attributes {a = array<i4294967296: 1, 2>} {\n func.return\n}\n", "", "mlir"),
]


@pytest.mark.parametrize("data, pipeline, target", REGRESSIONS)
def test_regressions(input_path, data, pipeline, target):
    check(input_path, data, pipeline, target, True)
