"""`lanterna-opt`: IR in, IR out, and every user-facing error it reports."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, i64
from xdsl.passes import ModulePass

from lanterna.backends import available_backends
from lanterna.ir import parse_module, print_ir
from lanterna.passes import available_passes, register_pass
from lanterna.tools.opt import main

INPUTS = Path(__file__).parents[1] / "passes" / "inputs"
CSE_DCE = INPUTS / "cse_dce.mlir"
CELLS = INPUTS / "cells.mlir"
MALFORMED = INPUTS / "malformed.mlir"
INVALID_RESET = INPUTS / "invalid_reset.mlir"
DENSE_STEP = INPUTS / "dense_step.mlir"


@register_pass
@dataclass(frozen=True)
class CountOps(ModulePass):
    """Records how many ops of one dialect the module holds, as a module attribute."""

    name = "test-count-ops"
    dialect: str = "ln"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        n = sum(1 for o in op.walk() if o.name.startswith(self.dialect + "."))
        op.attributes["test.count"] = IntegerAttr(n, i64)


@register_pass
@dataclass(frozen=True)
class BreakReturn(ModulePass):
    """Erases every func.return, leaving blocks without a terminator."""

    name = "test-break-return"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for ret in [o for o in op.walk() if isinstance(o, func.ReturnOp)]:
            ret.detach()
            ret.erase()


@register_pass
@dataclass(frozen=True)
class Crash(ModulePass):
    """Fails the way a buggy pass does: with an unexpected Python exception."""

    name = "test-crash"
    kind: str = "runtime"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.kind == "recursion":
            raise RecursionError("maximum recursion depth exceeded")
        raise RuntimeError("boom")


def opt(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def reparse(text: str) -> ModuleOp:
    module = parse_module(text)
    module.verify()
    return module


# --- IR in, IR out -------------------------------------------------------------------------


def test_without_passes_the_module_round_trips(capsys):
    rc, out, err = opt(capsys, CSE_DCE)
    assert (rc, err) == (0, "")
    assert out == print_ir(parse_module(CSE_DCE.read_text())) + "\n"


def test_cse_merges_the_duplicated_add(capsys):
    rc, out, _ = opt(capsys, CSE_DCE, "-p", "cse")
    assert rc == 0
    assert out.count("ln.add") == 1
    assert "%z = ln.mul %x, %x" in out


def test_dce_removes_the_unused_exp_only(capsys):
    rc, out, _ = opt(capsys, CSE_DCE, "-p", "dce")
    assert rc == 0
    assert "ln.exp" not in out
    assert out.count("ln.add") == 2


def test_cse_dce_keeps_cells_and_continuations(capsys):
    rc, out, _ = opt(capsys, CSE_DCE, "-p", "cse,dce")
    assert rc == 0
    assert "ln.exp" not in out and out.count("ln.add") == 1
    # The cell is only written to, never read, yet ad.accum has an effect.
    assert "%cell = ad.zero_like %z" in out
    assert "ad.accum %cell, %z" in out
    for op in ("cont.reset", "cont.shift", "cont.resume", "cont.yield"):
        assert op in out
    reparse(out)


def test_cse_respects_cell_effects(capsys):
    rc, out, _ = opt(capsys, CELLS, "-p", "cse")
    assert rc == 0
    # Two cells of the same value are two cells.
    assert out.count("ad.zero_like %a") == 2
    # Loads around an accum into the cell stay apart; back-to-back loads merge.
    assert out.count("ad.load %c1") == 2
    assert "%t = ln.add %s, %l2 " in out


def test_user_pass_runs_by_name_with_an_option(capsys):
    assert "test-count-ops" in available_passes()
    rc, out, _ = opt(capsys, CSE_DCE, "-p", "test-count-ops")
    assert rc == 0 and "test.count = 4 : i64" in out  # 2 add, exp, mul
    rc, out, _ = opt(capsys, CSE_DCE, "-p", "test-count-ops{dialect=ad}")
    assert rc == 0 and "test.count = 2 : i64" in out  # zero_like, accum
    rc, out, _ = opt(capsys, CSE_DCE, "-p", "cse,dce,test-count-ops{dialect=ln}")
    assert rc == 0 and "test.count = 2 : i64" in out  # add, mul


def test_print_ir_after_all_has_a_header_per_pass(capsys):
    rc, out, err = opt(
        capsys, CSE_DCE, "-p", "cse,test-count-ops{dialect=cont}", "--print-ir-after-all"
    )
    assert rc == 0
    first = err.index("// -----// IR Dump After cse //----- //")
    second = err.index('// -----// IR Dump After test-count-ops{dialect="cont"} //----- //')
    assert first < second
    # reset, shift, resume and two yields
    assert "test.count" not in err[first:second] and "test.count = 5" in err[second:]
    # The dumps go to stderr; stdout holds only the result.
    assert out.count("builtin.module") == 1 and "IR Dump" not in out


def test_output_file(capsys, tmp_path):
    dest = tmp_path / "out.mlir"
    rc, out, _ = opt(capsys, CSE_DCE, "-p", "dce", "-o", dest)
    assert (rc, out) == (0, "")
    assert "ln.exp" not in dest.read_text()
    reparse(dest.read_text())


def test_generic_target_reparses_to_the_same_module(capsys):
    rc, out, _ = opt(capsys, CSE_DCE, "-p", "cse", "-t", "mlir-generic")
    assert rc == 0
    assert '"ln.add"(%a, %b)' in out and '"cont.reset"()' in out
    _, custom, _ = opt(capsys, CSE_DCE, "-p", "cse")
    assert print_ir(reparse(out)) + "\n" == custom


def test_cpp_target_prints_the_generated_source(capsys, monkeypatch):
    # The target is registered by the backends (lanterna.backends.targets); the tool
    # only looks it up by name.
    monkeypatch.setattr(sys, "stdin", io.StringIO(CSE_DCE.read_text()))
    rc, out, err = opt(capsys, "-", "-p", "cse,dce", "-t", "cpp")
    assert rc == 1 and err.startswith("<stdin>: error: target 'cpp': ")
    assert "no lowering for 'cont.reset'" in err
    monkeypatch.setattr(sys, "stdin", io.StringIO(CSE_DCE.read_text()))
    rc, out, err = opt(capsys, "-", "-p", "cse,dce,lower-continuations", "-t", "cpp")
    assert rc == 0, err
    assert '#include "lanterna_cpu.h"' in out and 'extern "C" int lanterna_entry' in out
    # cse merged the two adds: one add, then the product of the sum with itself.
    assert out.count("ln.add") == 1 and "ln.mul" in out and "ln.exp" not in out


def test_stdin(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(CSE_DCE.read_text()))
    rc, out, _ = opt(capsys, "-", "-p", "dce")
    assert rc == 0 and "ln.exp" not in out


def test_empty_input_is_an_empty_module(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("// nothing here\n"))
    rc, out, _ = opt(capsys, "-p", "cse")
    assert rc == 0 and out.startswith("builtin.module {")


# --- errors --------------------------------------------------------------------------------


def test_malformed_ir_points_at_file_line_col(capsys):
    rc, out, err = opt(capsys, MALFORMED, "-p", "cse")
    assert rc == 1 and out == ""
    assert err.startswith(f"{MALFORMED}:4:19: error: operand is used with type tensor<4xf32>")
    assert "%y = ln.add %x, %a" in err  # the offending line is quoted
    assert "Traceback" not in err


def test_malformed_ir_on_stdin_is_named_stdin(capsys, monkeypatch):
    text = "func.func @f(%a: tensor<3xf32>) {\n  %x = ln.exp %a : tensor<4xf32>\n}\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    rc, _, err = opt(capsys, "-")
    assert rc == 1
    assert err.startswith("<stdin>:2:15: error: operand is used with type tensor<4xf32>")
    assert "Traceback" not in err


def test_bad_attribute_in_ir_is_a_located_error(capsys, monkeypatch):
    text = 'func.func @f(%a: tensor<3xf32>) {\n  %c = "ad.zero_like"(%a) : (tensor<3xf32>) -> !ad.cell<i32>\n  func.return\n}\n'
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    rc, _, err = opt(capsys, "-")
    assert rc == 1
    assert err.startswith("<stdin>:2:57: error: !ad.cell holds a tensor type, got i32")


def test_ir_that_fails_a_verifier_names_the_op(capsys):
    rc, out, err = opt(capsys, INVALID_RESET)
    assert rc == 1 and out == ""
    assert err.startswith(
        f"{INVALID_RESET}:4:3: error: 'cont.reset': body yields (tensor<3xf32>) "
        "but the reset's result is (tensor<f32>)"
    )
    assert "Traceback" not in err


def test_verify_each_names_the_pass_that_broke_the_ir(capsys):
    rc, out, err = opt(capsys, CSE_DCE, "-p", "cse,test-break-return")
    assert rc == 1 and out == ""
    assert "the IR after pass 'test-break-return' does not verify" in err
    assert "Traceback" not in err
    rc, out, _ = opt(capsys, CSE_DCE, "-p", "cse,test-break-return", "--no-verify-each")
    assert rc == 0 and "func.return" not in out


def test_unknown_pass_lists_the_known_ones(capsys):
    rc, out, err = opt(capsys, CSE_DCE, "-p", "cse,no-such-pass")
    assert rc == 2 and out == ""
    assert "unknown pass 'no-such-pass'" in err
    for name in available_passes():
        assert name in err


def test_bad_pass_option(capsys):
    rc, _, err = opt(capsys, CSE_DCE, "-p", "test-count-ops{dialekt=ln}")
    assert rc == 2
    assert "bad options for pass 'test-count-ops'" in err
    assert 'dialect: str = "ln"' in err


def test_unknown_target(capsys):
    rc, _, err = opt(capsys, CSE_DCE, "-t", "fortran")
    assert rc == 2 and "unknown target 'fortran'; known targets: cpp, mlir, mlir-generic" in err


def test_missing_input_file(capsys, tmp_path):
    rc, _, err = opt(capsys, tmp_path / "absent.mlir")
    assert rc == 1 and "cannot read" in err and "absent.mlir" in err


# --- any input: a located error, never a traceback ----------------------------------------

VALID = b"func.func @f(%a: tensor<3xf32>) {\n  func.return\n}\n"


def opt_bytes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data: bytes, *argv: str
) -> tuple[int, str, Path]:
    """Run on a file holding `data`; returns the status, stderr and the file's path."""
    path = tmp_path / "in.mlir"
    path.write_bytes(data)
    rc, out, err = opt(capsys, path, *argv)
    assert out == "" or rc == 0
    assert "Traceback" not in err
    return rc, err, path


@pytest.mark.parametrize(
    "data, message",
    [
        (b"#", "Expected suffix identifier after '#'"),
        (b"\xef\xbb\xbf" + VALID, "unexpected character U+FEFF (byte order mark"),
        (b"\x00", "unexpected character control character U+0000"),
        (b'"', "unterminated string literal"),
        (b"^", "Expected suffix identifier after '^'"),
        (b"%", "Expected suffix identifier after '%'"),
        (b"@", "expected a symbol name after '@'"),
        (b"!", "Expected suffix identifier after '!'"),
    ],
)
def test_a_bad_first_character_is_a_located_error(capsys, tmp_path, data, message):
    rc, err, path = opt_bytes(capsys, tmp_path, data)
    assert rc == 1
    assert err.startswith(f"{path}:1:1: error: {message}")


def test_an_unterminated_string_fails_fast(capsys, tmp_path):
    # 28 characters took xDSL 0.75's lexer ~10 s, doubling with each one more.
    text = b'func.func @f() attributes {s = "' + b"a" * 28 + b"} {\n  func.return\n}\n"
    start = time.perf_counter()
    rc, err, path = opt_bytes(capsys, tmp_path, text, "-p", "cse")
    assert time.perf_counter() - start < 2.0
    assert rc == 1 and err.startswith(f"{path}:1:32: error: unterminated string literal")


def test_a_value_used_outside_the_region_defining_it(capsys, tmp_path):
    text = (
        b"func.func @f(%x: tensor<f64>, %c: i1) -> tensor<f64> {\n"
        b"  %s = ln.exp %b : tensor<f64>\n"
        b"  scf.if %c {\n"
        b"    %b = ln.tanh %x : tensor<f64>\n"
        b"    scf.yield\n"
        b"  }\n"
        b"  func.return %s : tensor<f64>\n"
        b"}\n"
    )
    # xDSL 0.75 accepted this and lanterna-opt printed it back with exit status 0.
    rc, err, path = opt_bytes(capsys, tmp_path, text, "-p", "cse")
    assert rc == 1
    assert err.startswith(
        f"{path}:2:3: error: value %b is defined inside a region that does not enclose this use"
    )


def test_deeply_nested_regions_are_a_located_error(capsys, tmp_path):
    region = '"scf.execute_region"() ({\n'
    text = "func.func @f() {\n" + region * 160 + "scf.yield\n}) : () -> ()\n" * 160 + "}\n"
    rc, err, path = opt_bytes(capsys, tmp_path, text.encode())
    assert rc == 1
    assert err.startswith(f"{path}:51:25: error: regions nest more than 50 deep")


def test_invalid_utf8_is_a_located_error(capsys, tmp_path):
    rc, err, path = opt_bytes(capsys, tmp_path, b"// caf\xc3\xa9\n// \xc3\xa9\xff\n")
    assert rc == 1 and err.startswith(f"{path}:2:5: error: invalid UTF-8 (byte 0xff)")


def test_an_op_missing_a_property_its_children_read(capsys, tmp_path):
    # xDSL verifies func.return before its func.func, and func.return's verifier
    # read the missing function_type: KeyError.
    text = b'"func.func"() <{sym_name = "f"}> ({\n  "func.return"() : () -> ()\n}) : () -> ()\n'
    rc, err, path = opt_bytes(capsys, tmp_path, text)
    assert rc == 1
    assert err.startswith(
        f"{path}:1:1: error: property 'function_type' expected in operation 'func.func'"
    )


SCF_WHILE = """func.func @f(%x: tensor<3xf32>, %c: i1) -> tensor<3xf32> {{
  %r = scf.while (%a = %x) : (tensor<3xf32>) -> ({result}) {{
    scf.condition(%c) %a : tensor<3xf32>
  }} do {{
  ^bb0{after}:
    scf.yield %x : tensor<3xf32>
  }}
  func.return %x : tensor<3xf32>
}}
"""


@pytest.mark.parametrize(
    "result, after, message",
    [
        # xDSL's scf.while verifier raises a bare Exception ...
        (
            "tensor<3xi32>",
            "(%b: tensor<3xf32>)",
            (
                "'scf.while' op does not verify: Block arguments with wrong type, "
                "expected tensor<3xi32>, got tensor<3xf32>"
            ),
        ),
        # ... and indexes past the block arguments it checks.
        (
            "tensor<3xf32>",
            "",
            (
                "'scf.while' op does not verify (its verifier raised IndexError: "
                "tuple index out of range)"
            ),
        ),
    ],
)
def test_an_xdsl_verifier_that_crashes_is_a_located_error(capsys, tmp_path, result, after, message):
    text = SCF_WHILE.format(result=result, after=after).encode()
    rc, err, path = opt_bytes(capsys, tmp_path, text)
    assert rc == 1
    assert err.startswith(f"{path}:2:3: error: {message}")


def test_a_crashing_pass_is_a_diagnostic_not_a_traceback(capsys, tmp_path):
    rc, err, path = opt_bytes(capsys, tmp_path, VALID, "-p", "cse,test-crash")
    assert rc == 1
    assert err.startswith(f"{path}: error: internal error: RuntimeError: boom")
    assert "while running pass 'test-crash'" in err
    assert "--show-traceback" in err
    with pytest.raises(RuntimeError, match="boom"):
        main([str(path), "-p", "test-crash", "--show-traceback"])


def test_recursion_in_a_pass_points_at_the_file(capsys, tmp_path):
    rc, err, path = opt_bytes(capsys, tmp_path, VALID, "-p", "test-crash{kind=recursion}")
    assert rc == 1
    assert err.startswith(f"{path}:1:1: error: the IR nests too deeply to process")


# --- listings ------------------------------------------------------------------------------


def test_list_passes(capsys):
    rc, out, _ = opt(capsys, "--list-passes")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0] == "passes:"
    for name in available_passes():
        assert any(line.split()[:1] == [name] for line in lines), name
    assert any("test-count-ops" in line and "Records how many ops" in line for line in lines)
    assert "options of 'test-count-ops': dialect: str = \"ln\"" in out
    pipelines = out[out.index("default pipelines:") : out.index("targets:")]
    for backend in available_backends():
        assert f"  {backend} " in pipelines, backend
    assert "targets: cpp, mlir, mlir-generic" in out


def test_help_lists_pass_names(capsys):
    rc, out, _ = opt(capsys, "--help")
    assert rc == 0
    assert "--print-ir-after-all" in out and "--no-verify-each" in out
    names = next(line for line in out.splitlines() if line.startswith("passes: "))
    assert ", ".join(sorted(available_passes())) in names
    assert "canonicalize, checkpoint, cse, dce" in names


# --- the installed entry points ------------------------------------------------------------


def console_script() -> Path:
    script = Path(sys.executable).parent / "lanterna-opt"
    assert script.exists(), f"{script} is missing: install the package (pip install -e .)"
    return script


def test_console_script(tmp_path):
    result = subprocess.run(
        [console_script(), CSE_DCE, "-p", "cse,dce"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ln.add") == 1 and "ln.exp" not in result.stdout

    bad = subprocess.run([console_script(), MALFORMED], capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert bad.stderr.startswith(f"{MALFORMED}:4:19: error:")
    assert "Traceback" not in bad.stderr

    # An error in the first token used to escape as a traceback.
    bom = tmp_path / "bom.mlir"
    bom.write_bytes(b"\xef\xbb\xbf" + CSE_DCE.read_bytes())
    bad = subprocess.run([console_script(), bom], capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert bad.stderr.startswith(f"{bom}:1:1: error: unexpected character U+FEFF")
    assert "Traceback" not in bad.stderr


def test_python_dash_m(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lanterna.tools.opt", "-", "-p", "dce"],
        input=CSE_DCE.read_text(),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "ln.exp" not in result.stdout and result.stderr == ""


# --- the cpu pipeline shows every decision (the README's example) ---------------------------


def test_cpu_pipeline_on_a_training_step_shows_buffer_and_blas_decisions(capsys):
    """After the cpu backend's pipeline the IR says which buffers die where, which
    results go straight to the outputs and which operand BLAS reads transposed;
    the emitter prints exactly that."""
    from lanterna.backends import get_backend
    from lanterna.ir.interpreter import Interpreter

    pipeline = "reverse-ad{argnums=0}," + get_backend("cpu").default_pipeline
    rc, out, err = opt(capsys, DENSE_STEP, "-p", pipeline, "--print-ir-after-all")
    assert rc == 0, err
    for name in ("absorb-transposes", "accumulate-products", "defer-products", "plan-buffers"):
        assert f"IR Dump After {name}" in err
    grad = out[out.index("@loss_grad") :]
    assert "%l = ln.sum %a {axes = array<i64: 0, 1>, buf.output = 0 : i64}" in grad
    assert "ln.matmul %x, %0 {transpose_a, buf.output = 1 : i64}" in grad
    assert "ln.transpose" not in grad
    assert grad.count("buf.release") == 3
    # The interpreter runs the planned IR (and would fail on a use after release).
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 16)).astype(np.float32)
    x = rng.standard_normal((4, 8)).astype(np.float32)
    loss, dw = Interpreter(reparse(out)).call("loss_grad", w, x)
    a = np.tanh(x @ w)
    np.testing.assert_allclose(loss, a.sum(), rtol=1e-5)
    np.testing.assert_allclose(dw, x.T @ (1 - a * a), rtol=1e-5)
    rc, cpp, err = opt(capsys, DENSE_STEP, "-p", pipeline, "-t", "cpp")
    assert rc == 0, err
    assert "lanterna::gemm(true, false, 8, 16, 4" in cpp
    assert "lanterna::output<float>(1, 128)" in cpp and "lanterna::output<float>(0, 1)" in cpp
