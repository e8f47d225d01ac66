"""The cpu emitter: generated C++ compiles cleanly and computes what the reference
interpreter computes, for every row of the op table (tests/support/op_cases.py)
and for the shared differentiation programs (tests/support/programs.py).

Modules are compiled here with a small local helper (g++ into tmp_path, loaded
with ctypes), independent of the backend's driver. Many rows share one module so
that the suite stays fast: each compile costs about a second.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType, f32, f64
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue

from lanterna.backends.cpu_cpp.emitter import EmittedModule, emit_module
from lanterna.backends.cpu_cpp.emitter_ops import CPU_OPS
from lanterna.ir import parse_module
from lanterna.ir.ad import AD_OPS
from lanterna.ir.interpreter import Interpreter
from lanterna.ir.ln import LN_OPS, FromScalarOp, ItemOp
from lanterna.ir.types import tensor
from lanterna.passes import run_pipeline

from support import op_cases, programs
from support.op_cases import OpCase
from support.programs import TREE, Program

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")

RUNTIME = Path(__file__).parents[3] / "backends" / "cpu_cpp" / "runtime"
AFTER_AD = "lower-continuations,cse,dce"


# --- a minimal compile-and-load helper ------------------------------------------------------


def blas_flags() -> tuple[list[str], list[str]]:
    openblas = pytest.importorskip("scipy_openblas32")
    lib = openblas.get_lib_dir()
    return [f"-I{openblas.get_include_dir()}"], [
        f"-L{lib}",
        f"-l{openblas.get_library()}",
        f"-Wl,-rpath,{lib}",
    ]


def compile_source(source: str, out: Path, extra: list[str], shared: bool = True) -> Path:
    cpp = out.with_suffix(".cpp")
    cpp.write_text(source)
    includes, libs = blas_flags()
    # Released buffers are filled with NaN bytes: a use after release shows.
    cmd = [
        "g++", "-std=c++17", "-Wall", "-Werror", "-DLANTERNA_POISON_RELEASED", *extra,
        f"-I{RUNTIME}", *includes, str(cpp), "-o", str(out), *libs,
    ]  # fmt: skip
    if shared:
        cmd[1:1] = ["-fPIC", "-shared"]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    assert done.returncode == 0, f"g++ failed:\n{done.stderr}\n--- source ---\n{source}"
    return out


@dataclass
class Compiled:
    emitted: EmittedModule
    lib: ctypes.CDLL

    def call(self, *args: np.ndarray) -> tuple[int, list[np.ndarray], str]:
        ins = [np.asarray(a, dtype=dt, order="C") for a, (_, dt) in zip(args, self.emitted.inputs)]
        for a, (shape, _) in zip(ins, self.emitted.inputs):
            assert a.shape == shape
        outs = [np.empty(shape, dtype=dt) for shape, dt in self.emitted.outputs]
        in_ptrs = (ctypes.c_void_p * max(len(ins), 1))(*[a.ctypes.data for a in ins])
        out_ptrs = (ctypes.c_void_p * max(len(outs), 1))(*[o.ctypes.data for o in outs])
        err = ctypes.create_string_buffer(512)
        code = self.lib.lanterna_entry(in_ptrs, out_ptrs, err, ctypes.c_size_t(512))
        return code, outs, err.value.decode()

    def run(self, *args: np.ndarray) -> list[np.ndarray]:
        code, outs, err = self.call(*args)
        assert code == 0, err
        return outs


def build(module: ModuleOp, entry: str, tmp_path: Path, name: str = "m") -> Compiled:
    emitted = emit_module(module, entry)
    path = compile_source(emitted.source, tmp_path / f"{name}.so", ["-O2"])
    lib = ctypes.CDLL(str(path))
    lib.lanterna_entry.restype = ctypes.c_int
    lib.lanterna_entry.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
    ]
    return Compiled(emitted, lib)


# --- every row of the op table, forward -------------------------------------------------------


def table_module(cases: list[OpCase], ftype: Attribute) -> tuple[ModuleOp, list[np.ndarray]]:
    """One function `@ops` taking every row's arguments and returning every row's
    result, with its inputs. Entry points take and return tensors only, so a scalar
    argument arrives as a rank-0 tensor read with `ln.item`, and a scalar result
    leaves through `ln.from_scalar`."""
    arg_types = [tensor((), t) if not isinstance(t := arg.type(ftype), TensorType) else t
                 for case in cases for arg in case.args]  # fmt: skip
    block = Block(arg_types=arg_types)
    params = iter(block.args)
    ops: list[Operation] = []
    results: list[SSAValue] = []
    inputs: list[np.ndarray] = []
    for case in cases:
        values: list[SSAValue] = []
        for arg in case.args:
            value: SSAValue = next(params)
            if arg.shape is None:
                ops.append(item := ItemOp(value))
                value = item.results[0]
            values.append(value)
        built = case.ops(values, ftype)
        ops += built
        result = built[-1].results[0]
        if not isinstance(result.type, TensorType):
            ops.append(wrap := FromScalarOp(result))
            result = wrap.results[0]
        results.append(result)
        inputs += [np.asarray(v) for v in op_cases.inputs(case, ftype)]
    block.add_ops([*ops, func.ReturnOp(*results)])
    fn = func.FuncOp("ops", (arg_types, [r.type for r in results]), Region(block))
    return ModuleOp([fn]), inputs


# g++ -O2 takes superlinear time in the size of one function: rows go into
# modules of at most this many (each compile still costs about a second).
ROWS_PER_MODULE = 40
ROWS = [case for case in op_cases.CASES if "cpu" not in case.xfail]
PARTS = [ROWS[i : i + ROWS_PER_MODULE] for i in range(0, len(ROWS), ROWS_PER_MODULE)]


def check_rows(cases: list[OpCase], ftype: Attribute, tmp_path: Path) -> None:
    module, args = table_module(cases, ftype)
    module.verify()
    compiled = build(module, "ops", tmp_path)
    got = compiled.run(*args)
    want = Interpreter(module).call("ops", *args)
    rtol, atol = (1e-5, 1e-6) if ftype == f32 else (1e-10, 1e-12)
    for case, g, w in zip(cases, got, want, strict=True):
        assert g.dtype == w.dtype, case.id
        # Sums of many terms round differently: near-zero entries get an absolute
        # tolerance scaled by the result's magnitude.
        scale = max(1.0, float(np.max(np.abs(w), initial=0.0)))
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol * scale, err_msg=case.id)


@pytest.mark.parametrize(
    "ftype, cases",
    [
        pytest.param(ftype, part, id=f"{ftype}-{part[0].id}..{part[-1].id}")
        for ftype in (f32, f64)
        for part in PARTS
    ],
)
def test_every_op_matches_the_interpreter(
    ftype: Attribute, cases: list[OpCase], tmp_path: Path
) -> None:
    check_rows(cases, ftype, tmp_path)


if len(ROWS) < len(op_cases.CASES):

    @pytest.mark.parametrize(
        "case", op_cases.params("cpu", [c for c in op_cases.CASES if c not in ROWS], False)
    )
    def test_known_cpu_bugs(case: OpCase, tmp_path: Path) -> None:
        """Rows with a known cpu bug, each alone, a strict xfail."""
        for ftype in case.float_types():
            (tmp_path / str(ftype)).mkdir()
            check_rows([case], ftype, tmp_path / str(ftype))


def test_every_ln_and_ad_op_has_a_lowering() -> None:
    # The op table (tests/support/op_cases.py) checks that every op has a row.
    for op in [*LN_OPS, *AD_OPS]:
        assert op in CPU_OPS, f"cpu backend has no lowering for '{op.name}'"


def test_dropout_mask_is_bit_exact(tmp_path: Path) -> None:
    src = """
    func.func @f(%x: tensor<1000xf32>, %s: tensor<i64>) -> tensor<1000xf32> {
      %y = ln.dropout %x, %s {rate = 0.5 : f64} : tensor<1000xf32>, tensor<i64>
      func.return %y : tensor<1000xf32>
    }
    """
    module = parse_module(src)
    compiled = build(module, "f", tmp_path)
    x = np.ones(1000, np.float32)
    for seed in (0, -3, 2**62):
        s = np.array(seed, np.int64)
        (got,) = compiled.run(x, s)
        (want,) = Interpreter(module).call("f", x, s)
        np.testing.assert_array_equal(got, want)


# --- reverse-mode programs ----------------------------------------------------------------------


def gradient_module(program: Program) -> ModuleOp:
    module = program.load()
    run_pipeline(module, f"{program.reverse_ad},{AFTER_AD}")
    return module


@pytest.mark.parametrize("program", programs.params([*programs.AD_PROGRAMS, TREE]))
def test_gradients_match_the_interpreter(program: Program, tmp_path: Path) -> None:
    module = gradient_module(program)
    args = program.args()
    compiled = build(module, "f_grad", tmp_path)
    got = compiled.run(*args)
    want = Interpreter(module).call("f_grad", *args)
    assert len(got) == len(want) == 3
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)
    # A second call reuses the arena and gives the same answer.
    again = compiled.run(*args)
    for g, a in zip(got, again, strict=True):
        np.testing.assert_array_equal(g, a)


def test_generated_code_is_named_after_the_ir(tmp_path: Path) -> None:
    source = emit_module(gradient_module(programs.named("ad_for.mlir")[0]), "f_grad").source
    assert "// %a = ln.mul %h, %w : tensor<f64>, tensor<f64>" in source
    assert re.search(r"double\* a = lanterna::alloc<double>\(1\);", source)
    assert "lanterna::recursive<" in source  # the loop became a recursive closure
    assert 'extern "C" int lanterna_entry(' in source


# --- errors -------------------------------------------------------------------------------------


def test_out_of_range_gather_returns_code_2(tmp_path: Path) -> None:
    src = """
    func.func @f(%t: tensor<5x2xf64>, %i: tensor<3xi64>) -> tensor<3x2xf64> {
      %y = ln.gather %t, %i : tensor<5x2xf64>, tensor<3xi64>
      func.return %y : tensor<3x2xf64>
    }
    """
    compiled = build(parse_module(src), "f", tmp_path)
    table = np.arange(10.0).reshape(5, 2)
    code, _, err = compiled.call(table, np.array([1, 7, 9], np.int64))
    assert code == 2
    assert err == "'ln.gather': index 7 is out of range for a table of 5 rows"
    # The module stays usable after an error.
    (ok,) = compiled.run(table, np.array([4, 0, 2], np.int64))
    np.testing.assert_array_equal(ok, table[[4, 0, 2]])


def test_out_of_range_target_names_the_loss(tmp_path: Path) -> None:
    src = """
    func.func @f(%p: tensor<2x3xf32>, %t: tensor<2xi32>) -> tensor<f32> {
      %l = ln.nll_loss %p, %t {reduction = "sum"} : tensor<2x3xf32>, tensor<2xi32>
      func.return %l : tensor<f32>
    }
    """
    compiled = build(parse_module(src), "f", tmp_path)
    code, _, err = compiled.call(np.zeros((2, 3), np.float32), np.array([0, -1], np.int32))
    assert (code, err) == (2, "'ln.nll_loss': index -1 is out of range for 3 classes")


def test_outputs_may_alias_inputs(tmp_path: Path) -> None:
    # f(x, y) = (y, x): with donated buffers, output 0 is x's buffer and output 1 is y's.
    src = """
    func.func @f(%x: tensor<3xf64>, %y: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>) {
      func.return %y, %x : tensor<3xf64>, tensor<3xf64>
    }
    """
    compiled = build(parse_module(src), "f", tmp_path)
    x, y = np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])
    in_ptrs = (ctypes.c_void_p * 2)(x.ctypes.data, y.ctypes.data)
    out_ptrs = (ctypes.c_void_p * 2)(x.ctypes.data, y.ctypes.data)
    err = ctypes.create_string_buffer(64)
    assert compiled.lib.lanterna_entry(in_ptrs, out_ptrs, err, 64) == 0
    np.testing.assert_array_equal(x, [4.0, 5.0, 6.0])
    np.testing.assert_array_equal(y, [1.0, 2.0, 3.0])


def test_missing_lowering_names_the_op_and_backend() -> None:
    src = """
    func.func @f(%x: tensor<f32>) -> tensor<f32> {
      %r = cont.reset -> (tensor<f32>) {
        cont.yield %x : tensor<f32>
      }
      func.return %r : tensor<f32>
    }
    """
    with pytest.raises(NotImplementedError, match="cpu backend has no lowering for 'cont.reset'"):
        emit_module(parse_module(src), "f")


def test_scalar_entry_arguments_are_rejected() -> None:
    src = """
    func.func @f(%x: f32) -> tensor<f32> {
      %t = ln.from_scalar %x : f32
      func.return %t : tensor<f32>
    }
    """
    with pytest.raises(NotImplementedError, match="argument #0 has type f32"):
        emit_module(parse_module(src), "f")


# --- sanitizers ---------------------------------------------------------------------------------

SANITIZER_MAIN = """
#include <cstdio>
#include <vector>
extern "C" int lanterna_entry(void* const*, void* const*, char*, size_t);
int main() {
    std::vector<double> feat = {0.3, -0.2, 0.5, 0.1, 0.7, -0.4, 0.9};
    double w = 0.8, u = 1.2;
    std::vector<long long> left = {1, 3, 5, -1, -1, -1, -1}, right = {2, 4, 6, -1, -1, -1, -1};
    double value = 0, dw = 0;
    std::vector<double> dfeat(7);
    void* ins[] = {feat.data(), &w, &u, left.data(), right.data()};
    void* outs[] = {&value, dfeat.data(), &dw};
    char err[256] = {0};
    for (int i = 0; i < 3; ++i)
        if (lanterna_entry(ins, outs, err, sizeof err) != 0) { std::puts(err); return 1; }
    left[0] = 9;  // now out of range: must fail cleanly, without leaks
    if (lanterna_entry(ins, outs, err, sizeof err) != 2) return 3;
    std::printf("%.17g %.17g\\n", value, dw);
    return 0;
}
"""


def test_generated_code_is_clean_under_asan_and_ubsan(tmp_path: Path) -> None:
    module = gradient_module(TREE)
    source = emit_module(module, "f_grad").source + SANITIZER_MAIN
    flags = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    exe = compile_source(source, tmp_path / "asan", flags, shared=False)
    done = subprocess.run(
        [str(exe)],
        check=False,
        capture_output=True,
        text=True,
        env={"ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "halt_on_error=1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "runtime error" not in done.stderr
    value, dw = (float(v) for v in done.stdout.split())
    want = Interpreter(module).call("f_grad", *TREE.args())
    assert value == pytest.approx(float(want[0]), rel=1e-12)
    assert dw == pytest.approx(float(want[2]), rel=1e-12)
