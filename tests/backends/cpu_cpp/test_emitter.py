"""The cpu emitter: generated C++ compiles cleanly and computes what the reference
interpreter computes, for every `ln` op and for the reverse-mode AD programs.

Modules are compiled here with a small local helper (g++ into tmp_path, loaded
with ctypes), independent of the backend's driver. Many ops share one module so
that the suite stays fast: each compile costs about half a second.
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
from xdsl.dialects.builtin import ModuleOp

from lanterna.backends.cpu_cpp.emitter import EmittedModule, emit_module
from lanterna.backends.cpu_cpp.emitter_ops import CPU_OPS
from lanterna.ir import parse_module
from lanterna.ir.interpreter import Interpreter
from lanterna.ir.ln import LN_OPS
from lanterna.passes import run_pipeline

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")

RUNTIME = Path(__file__).parents[3] / "backends" / "cpu_cpp" / "runtime"
INPUTS = Path(__file__).parents[2] / "passes" / "inputs"
AD_PIPELINE = "reverse-ad{{func=f argnums={}}},lower-continuations,cse,dce"


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


# --- every ln op, forward -------------------------------------------------------------------


@dataclass
class Case:
    """An op snippet: `%a`, `%b`, ... are the arguments, `%r` the result; `F` is the
    float type under test. An argument is (shape, kind) with kind F (floats), P
    (positive floats), W (integer-valued floats in [-3, 3]), B (bools), or an integer
    type with the exclusive bound of its values, e.g. "i64<5" (in [0, 5)) or "i64~5"
    (in [-5, 5))."""

    id: str
    args: list[tuple[str, str]]
    body: str
    result: str


def t(shape: str, e: str) -> str:
    return f"tensor<{shape}x{e}>" if shape else f"tensor<{e}>"


CASES = [
    Case(
        "add",
        [("4x3", "F"), ("3", "F")],
        "%r = ln.add %a, %b : tensor<4x3xF>, tensor<3xF>",
        "4x3xF",
    ),
    Case(
        "sub",
        [("2x1x3", "F"), ("4x1", "F")],
        "%r = ln.sub %a, %b : tensor<2x1x3xF>, tensor<4x1xF>",
        "2x4x3xF",
    ),
    Case("mul", [("5", "F"), ("", "F")], "%r = ln.mul %a, %b : tensor<5xF>, tensor<F>", "5xF"),
    Case(
        "div",
        [("3x2", "F"), ("3x2", "P")],
        "%r = ln.div %a, %b : tensor<3x2xF>, tensor<3x2xF>",
        "3x2xF",
    ),
    Case(
        "maximum",
        [("6", "F"), ("6", "F")],
        "%r = ln.maximum %a, %b : tensor<6xF>, tensor<6xF>",
        "6xF",
    ),
    Case(
        "minimum",
        [("2x3", "F"), ("1x3", "F")],
        "%r = ln.minimum %a, %b : tensor<2x3xF>, tensor<1x3xF>",
        "2x3xF",
    ),
    Case("lt", [("4", "F"), ("", "F")], "%r = ln.lt %a, %b : tensor<4xF>, tensor<F>", "4xi1"),
    Case(
        "le",
        [("4", "i32<3"), ("4", "i32<3")],
        "%r = ln.le %a, %b : tensor<4xi32>, tensor<4xi32>",
        "4xi1",
    ),
    Case(
        "gt", [("2x2", "F"), ("2", "F")], "%r = ln.gt %a, %b : tensor<2x2xF>, tensor<2xF>", "2x2xi1"
    ),
    Case(
        "ge",
        [("4", "i64<3"), ("4", "i64<3")],
        "%r = ln.ge %a, %b : tensor<4xi64>, tensor<4xi64>",
        "4xi1",
    ),
    Case(
        "eq",
        [("5", "i64<2"), ("5", "i64<2")],
        "%r = ln.eq %a, %b : tensor<5xi64>, tensor<5xi64>",
        "5xi1",
    ),
    Case("ne", [("3", "F"), ("3", "F")], "%r = ln.ne %a, %b : tensor<3xF>, tensor<3xF>", "3xi1"),
    Case(
        "iadd",
        [("3", "i32<100"), ("3", "i32<100")],
        "%r = ln.add %a, %b : tensor<3xi32>, tensor<3xi32>",
        "3xi32",
    ),
    Case(
        "imul",
        [("3", "i64<100"), ("", "i64<100")],
        "%r = ln.mul %a, %b : tensor<3xi64>, tensor<i64>",
        "3xi64",
    ),
    Case("neg", [("4", "F")], "%r = ln.neg %a : tensor<4xF>", "4xF"),
    Case("abs", [("4", "F")], "%r = ln.abs %a : tensor<4xF>", "4xF"),
    Case(
        "iabs",
        [("4", "i32<9")],
        "%t = ln.neg %a : tensor<4xi32>\n%r = ln.abs %t : tensor<4xi32>",
        "4xi32",
    ),
    Case("exp", [("4", "F")], "%r = ln.exp %a : tensor<4xF>", "4xF"),
    Case("log", [("4", "P")], "%r = ln.log %a : tensor<4xF>", "4xF"),
    Case("tanh", [("4", "F")], "%r = ln.tanh %a : tensor<4xF>", "4xF"),
    Case("sqrt", [("4", "P")], "%r = ln.sqrt %a : tensor<4xF>", "4xF"),
    Case("sigmoid", [("6", "F")], "%r = ln.sigmoid %a : tensor<6xF>", "6xF"),
    Case("relu", [("6", "F")], "%r = ln.relu %a : tensor<6xF>", "6xF"),
    Case("pow", [("4", "F")], "%r = ln.pow %a {exponent = 3.0 : f64} : tensor<4xF>", "4xF"),
    Case("pow_half", [("4", "P")], "%r = ln.pow %a {exponent = 0.5 : f64} : tensor<4xF>", "4xF"),
    Case(
        "power",
        [("2x3", "P"), ("3", "F")],
        "%r = ln.power %a, %b : tensor<2x3xF>, tensor<3xF>",
        "2x3xF",
    ),
    # A negative base to an integer-valued exponent is real, as in numpy.
    Case(
        "power_negative_base",
        [("6", "F"), ("6", "W")],
        "%r = ln.power %a, %b : tensor<6xF>, tensor<6xF>",
        "6xF",
    ),
    Case(
        "select",
        [("4x3", "B"), ("4x3", "F"), ("", "F")],
        "%r = ln.select %a, %b, %c : tensor<4x3xi1>, tensor<4x3xF>, tensor<F>",
        "4x3xF",
    ),
    Case("cast_int", [("5", "F")], "%r = ln.cast %a : tensor<5xF> -> tensor<5xi32>", "5xi32"),
    Case("cast_f64", [("5", "F")], "%r = ln.cast %a : tensor<5xF> -> tensor<5xf64>", "5xf64"),
    Case("cast_f32", [("5", "F")], "%r = ln.cast %a : tensor<5xF> -> tensor<5xf32>", "5xf32"),
    Case(
        "cast_from_int", [("5", "i64<50")], "%r = ln.cast %a : tensor<5xi64> -> tensor<5xF>", "5xF"
    ),
    Case("cast_bool", [("5", "B")], "%r = ln.cast %a : tensor<5xi1> -> tensor<5xF>", "5xF"),
    Case(
        "cast_to_bool", [("5", "i32<2")], "%r = ln.cast %a : tensor<5xi32> -> tensor<5xi1>", "5xi1"
    ),
    Case(
        "constant",
        [],
        "%r = ln.constant {value = dense<[[1.5, -2.0], [0.1, 4.0]]> : tensor<2x2xF>} : tensor<2x2xF>",
        "2x2xF",
    ),
    Case("zeros", [], "%r = ln.zeros : tensor<2x3xF>", "2x3xF"),
    Case("ones", [], "%r = ln.ones : tensor<3xi64>", "3xi64"),
    Case("full", [], "%r = ln.full {value = 2.5 : f64} : tensor<2xF>", "2xF"),
    Case("sum", [("3x4", "F")], "%r = ln.sum %a {axes = array<i64: 1>} : tensor<3x4xF>", "3xF"),
    Case(
        "sum_keep",
        [("2x3x4", "F")],
        "%r = ln.sum %a {axes = array<i64: 0, 2>, keepdims} : tensor<2x3x4xF>",
        "1x3x1xF",
    ),
    Case(
        "sum_all",
        [("2x3x4", "F")],
        "%r = ln.sum %a {axes = array<i64: 0, 1, 2>} : tensor<2x3x4xF>",
        "F",
    ),
    Case(
        "sum_int",
        [("3x4", "i32<50")],
        "%r = ln.sum %a {axes = array<i64: 0>} : tensor<3x4xi32>",
        "4xi32",
    ),
    Case(
        "mean",
        [("2x3x4", "F")],
        "%r = ln.mean %a {axes = array<i64: 0, 1>} : tensor<2x3x4xF>",
        "4xF",
    ),
    Case(
        "max",
        [("3x4", "F")],
        "%r = ln.max %a {axes = array<i64: 1>, keepdims} : tensor<3x4xF>",
        "3x1xF",
    ),
    Case(
        "max_int",
        [("3x4", "i64<99")],
        "%r = ln.max %a {axes = array<i64: 0, 1>} : tensor<3x4xi64>",
        "i64",
    ),
    Case(
        "matmul",
        [("2x3", "F"), ("3x4", "F")],
        "%r = ln.matmul %a, %b : tensor<2x3xF>, tensor<3x4xF>",
        "2x4xF",
    ),
    Case(
        "matvec",
        [("3x4", "F"), ("4", "F")],
        "%r = ln.matmul %a, %b : tensor<3x4xF>, tensor<4xF>",
        "3xF",
    ),
    Case(
        "vecmat",
        [("4", "F"), ("4x5", "F")],
        "%r = ln.matmul %a, %b : tensor<4xF>, tensor<4x5xF>",
        "5xF",
    ),
    Case(
        "bmm",
        [("2x3x4", "F"), ("2x4x5", "F")],
        "%r = ln.matmul %a, %b : tensor<2x3x4xF>, tensor<2x4x5xF>",
        "2x3x5xF",
    ),
    Case(
        "bmm_shared",
        [("2x3x4", "F"), ("4x5", "F")],
        "%r = ln.matmul %a, %b : tensor<2x3x4xF>, tensor<4x5xF>",
        "2x3x5xF",
    ),
    Case("reshape", [("2x6", "F")], "%r = ln.reshape %a : tensor<2x6xF> -> tensor<3x4xF>", "3x4xF"),
    Case(
        "transpose",
        [("2x3x4", "F")],
        "%r = ln.transpose %a {perm = array<i64: 2, 0, 1>} : tensor<2x3x4xF>",
        "4x2x3xF",
    ),
    Case(
        "broadcast",
        [("3x1", "F")],
        "%r = ln.broadcast_to %a : tensor<3x1xF> -> tensor<2x3x4xF>",
        "2x3x4xF",
    ),
    Case(
        "concatenate",
        [("2x3", "F"), ("2x2", "F"), ("2x1", "F")],
        "%r = ln.concatenate %a, %b, %c {axis = 1 : i64} : tensor<2x3xF>, tensor<2x2xF>, tensor<2x1xF>",
        "2x6xF",
    ),
    Case(
        "slice",
        [("5x4", "F")],
        "%r = ln.slice %a {start = array<i64: 1, 0>, stop = array<i64: 5, 3>, "
        "step = array<i64: 2, 2>} : tensor<5x4xF>",
        "2x2xF",
    ),
    Case(
        "gather",
        [("5x3", "F"), ("2x2", "i64<5")],
        "%r = ln.gather %a, %b : tensor<5x3xF>, tensor<2x2xi64>",
        "2x2x3xF",
    ),
    Case(
        "gather_i32",
        [("6", "i64<99"), ("3", "i32<6")],
        "%r = ln.gather %a, %b : tensor<6xi64>, tensor<3xi32>",
        "3xi64",
    ),
    Case(
        "gather_negative",
        [("5x3", "F"), ("2x4", "i64~5")],
        "%r = ln.gather %a, %b : tensor<5x3xF>, tensor<2x4xi64>",
        "2x4x3xF",
    ),
    Case(
        "scatter_add_negative",
        [("6x2", "F"), ("6", "i32~3")],
        "%r = ln.scatter_add %a, %b : tensor<6x2xF>, tensor<6xi32> -> tensor<3x2xF>",
        "3x2xF",
    ),
    Case(
        "scatter_add",
        [("4x3", "F"), ("4", "i64<3")],
        "%r = ln.scatter_add %a, %b : tensor<4x3xF>, tensor<4xi64> -> tensor<3x3xF>",
        "3x3xF",
    ),
    Case(
        "item",
        [("", "F"), ("", "F")],
        "%s = ln.item %a : tensor<F>\n%u = ln.item %b : tensor<F>\n"
        "%p = arith.mulf %s, %u : F\n%q = arith.maximumf %p, %s : F\n%r = ln.from_scalar %q : F",
        "F",
    ),
    Case("softmax", [("3x4", "F")], "%r = ln.softmax %a {axis = 1 : i64} : tensor<3x4xF>", "3x4xF"),
    Case(
        "softmax0",
        [("3x4x2", "F")],
        "%r = ln.softmax %a {axis = 1 : i64} : tensor<3x4x2xF>",
        "3x4x2xF",
    ),
    Case(
        "log_softmax",
        [("3x4", "F")],
        "%r = ln.log_softmax %a {axis = 0 : i64} : tensor<3x4xF>",
        "3x4xF",
    ),
    Case(
        "nll_mean",
        [("4x5", "F"), ("4", "i64<5")],
        '%r = ln.nll_loss %a, %b {reduction = "mean"} : tensor<4x5xF>, tensor<4xi64>',
        "F",
    ),
    Case(
        "nll_sum",
        [("4x5", "F"), ("4", "i32<5")],
        '%r = ln.nll_loss %a, %b {reduction = "sum"} : tensor<4x5xF>, tensor<4xi32>',
        "F",
    ),
    Case(
        "cross_entropy",
        [("4x5", "F"), ("4", "i64<5")],
        '%r = ln.cross_entropy %a, %b {reduction = "mean"} : tensor<4x5xF>, tensor<4xi64>',
        "F",
    ),
    Case(
        "conv2d",
        [("2x3x6x6", "F"), ("4x3x3x3", "F")],
        "%r = ln.conv2d %a, %b {stride = array<i64: 1, 1>, padding = array<i64: 1, 1>} "
        ": tensor<2x3x6x6xF>, tensor<4x3x3x3xF>",
        "2x4x6x6xF",
    ),
    Case(
        "conv2d_strided",
        [("1x2x7x6", "F"), ("3x2x3x2", "F")],
        "%r = ln.conv2d %a, %b {stride = array<i64: 2, 2>, padding = array<i64: 0, 1>} "
        ": tensor<1x2x7x6xF>, tensor<3x2x3x2xF>",
        "1x3x3x4xF",
    ),
    Case(
        "conv2d_input_grad",
        [("1x3x3x6", "F"), ("3x2x3x2", "F")],
        "%r = ln.conv2d_input_grad %a, %b {stride = array<i64: 2, 1>, padding = array<i64: 0, 1>} "
        ": tensor<1x3x3x6xF>, tensor<3x2x3x2xF> -> tensor<1x2x8x5xF>",
        "1x2x8x5xF",
    ),
    Case(
        "conv2d_weight_grad",
        [("2x2x8x5", "F"), ("2x3x3x6", "F")],
        "%r = ln.conv2d_weight_grad %a, %b {stride = array<i64: 2, 1>, padding = array<i64: 0, 1>} "
        ": tensor<2x2x8x5xF>, tensor<2x3x3x6xF> -> tensor<3x2x3x2xF>",
        "3x2x3x2xF",
    ),
    Case(
        "max_pool",
        [("2x2x6x6", "F")],
        "%r = ln.max_pool2d %a {kernel = array<i64: 2, 2>, stride = array<i64: 2, 2>, "
        "padding = array<i64: 0, 0>} : tensor<2x2x6x6xF>",
        "2x2x3x3xF",
    ),
    Case(
        "avg_pool",
        [("1x2x5x5", "F")],
        "%r = ln.avg_pool2d %a {kernel = array<i64: 3, 3>, stride = array<i64: 1, 1>, "
        "padding = array<i64: 1, 1>} : tensor<1x2x5x5xF>",
        "1x2x5x5xF",
    ),
    Case(
        "max_pool_grad",
        [("1x2x5x5", "F"), ("1x2x3x3", "F")],
        "%r = ln.max_pool2d_grad %a, %b {kernel = array<i64: 3, 3>, stride = array<i64: 2, 2>, "
        "padding = array<i64: 1, 1>} : tensor<1x2x5x5xF>, tensor<1x2x3x3xF>",
        "1x2x5x5xF",
    ),
    Case(
        "dropout",
        [("4x8", "F"), ("", "i64<1000")],
        "%r = ln.dropout %a, %b {rate = 0.3 : f64} : tensor<4x8xF>, tensor<i64>",
        "4x8xF",
    ),
    Case(
        "fused",
        [("2x3", "F"), ("3", "P"), ("2x1", "i32<4")],
        """%r = ln.fused %a, %b, %c : tensor<2x3xF>, tensor<3xF>, tensor<2x1xi32> -> tensor<2x3xF> {
        ^bb0(%x: tensor<F>, %y: tensor<F>, %n: tensor<i32>):
          %l = ln.log %y : tensor<F>
          %m = ln.mul %x, %l : tensor<F>, tensor<F>
          %k = ln.cast %n : tensor<i32> -> tensor<F>
          %h = ln.full {value = 0.5 : f64} : tensor<F>
          %p = ln.pow %k {exponent = 2.0 : f64} : tensor<F>
          %q = ln.mul %p, %h : tensor<F>, tensor<F>
          %g = ln.gt %m, %q : tensor<F>, tensor<F>
          %s = ln.select %g, %m, %q : tensor<i1>, tensor<F>, tensor<F>
          %t = ln.sigmoid %s : tensor<F>
          ln.fused_yield %t : tensor<F>
        }""",
        "2x3xF",
    ),
]


def case_module(cases: list[Case], ftype: str) -> tuple[str, list[tuple[str, str]]]:
    """One function `@ops` taking every case's arguments and returning every result."""
    params, results, lines, kinds = [], [], [], []
    for k, case in enumerate(cases):
        body = re.sub(r"%(\w+)", lambda m, k=k: f"%c{k}_{m.group(1)}", case.body)
        body = re.sub(r"\bF\b|(?<=x)F\b", ftype, body)
        for j, (shape, kind) in enumerate(case.args):
            e = ftype if kind in ("F", "P", "W") else "i1" if kind == "B" else kind[:3]
            params.append(f"%c{k}_{'abc'[j]}: {t(shape, e)}")
            kinds.append((shape, kind))
        lines.extend(body.splitlines())
        result = case.result.replace("F", ftype)
        results.append((f"%c{k}_r", f"tensor<{result}>"))
    text = (
        f"func.func @ops({', '.join(params)}) -> ({', '.join(rt for _, rt in results)}) {{\n  "
        + "\n  ".join(lines)
        + f"\n  func.return {', '.join(n for n, _ in results)} : {', '.join(rt for _, rt in results)}\n}}\n"
    )
    return text, kinds


def sample(rng: np.random.Generator, shape: str, kind: str, ftype: str) -> np.ndarray:
    dims = tuple(int(d) for d in shape.split("x")) if shape else ()
    fdt = np.float32 if ftype == "f32" else np.float64
    if kind == "F":
        return rng.normal(size=dims).astype(fdt)
    if kind == "P":
        return rng.uniform(0.5, 2.0, size=dims).astype(fdt)
    if kind == "W":
        return rng.integers(-3, 4, size=dims).astype(fdt)
    if kind == "B":
        return rng.uniform(size=dims) < 0.5
    name, low, bound = kind[:3], kind[3], int(kind[4:])
    values = rng.integers(-bound if low == "~" else 0, bound, size=dims)
    return values.astype(np.int32 if name == "i32" else np.int64)


@pytest.mark.parametrize("ftype", ["f32", "f64"])
def test_every_op_matches_the_interpreter(ftype: str, tmp_path: Path) -> None:
    text, kinds = case_module(CASES, ftype)
    module = parse_module(text)
    module.verify()
    rng = np.random.default_rng(7)
    args = [sample(rng, shape, kind, ftype) for shape, kind in kinds]
    compiled = build(module, "ops", tmp_path)
    got = compiled.run(*args)
    want = Interpreter(module).call("ops", *args)
    rtol, atol = (1e-5, 1e-6) if ftype == "f32" else (1e-10, 1e-12)
    for case, g, w in zip(CASES, got, want, strict=True):
        assert g.dtype == w.dtype, case.id
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=case.id)


def test_every_ln_op_has_a_case_and_a_lowering() -> None:
    covered = {op for c in CASES for op in re.findall(r"ln\.\w+", c.body)}
    for op in LN_OPS:
        assert op in CPU_OPS, f"cpu backend has no lowering for '{op.name}'"
        assert op.name in covered, f"no test case runs '{op.name}'"


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

AD_PROGRAMS = [
    ("ad_if.mlir", "0,1", (np.array(0.7), np.array(-1.3))),
    ("ad_if.mlir", "0,1", (np.array(-0.4), np.array(0.9))),
    ("ad_for.mlir", "0,1", (np.array(0.3), np.array(0.8))),
    ("ad_while.mlir", "0,1", (np.array(0.5), np.array(1.7))),
    ("ad_call.mlir", "0,1", (np.array(0.6), np.array(1.4))),
    ("ad_recursive.mlir", "0,1", (np.array(0.4), np.array(1.1))),
    (
        "ad_tree.mlir",
        "0,1",
        (
            np.array([0.3, -0.2, 0.5, 0.1, 0.7, -0.4, 0.9]),
            np.array(0.8),
            np.array(1.2),
            np.array([1, 3, 5, -1, -1, -1, -1], np.int64),
            np.array([2, 4, 6, -1, -1, -1, -1], np.int64),
        ),
    ),
]


def gradient_module(name: str, argnums: str) -> ModuleOp:
    module = parse_module((INPUTS / name).read_text())
    run_pipeline(module, AD_PIPELINE.format(argnums))
    return module


@pytest.mark.parametrize("name,argnums,args", AD_PROGRAMS, ids=[p[0] for p in AD_PROGRAMS])
def test_gradients_match_the_interpreter(name, argnums, args, tmp_path: Path) -> None:
    module = gradient_module(name, argnums)
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
    source = emit_module(gradient_module("ad_for.mlir", "0,1"), "f_grad").source
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
    module = gradient_module("ad_tree.mlir", "0,1")
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
    args = AD_PROGRAMS[-1][2]
    want = Interpreter(module).call("f_grad", *args)
    assert value == pytest.approx(float(want[0]), rel=1e-12)
    assert dw == pytest.approx(float(want[2]), rel=1e-12)
