"""`ln.fused` on the cpu backend: one loop nest per fused op, and the interpreter's
numbers, for hand-written fused ops and for gradient programs after
`fuse-elementwise`."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from lanterna.backends.cpu_cpp.backend import CpuBackend
from lanterna.backends.cpu_cpp.emitter import emit_module
from lanterna.ir import parse_module
from lanterna.ir.interpreter import Interpreter
from lanterna.passes import run_pipeline

from support import programs

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")

INPUTS = Path(__file__).parents[2] / "passes" / "inputs"
AD_PIPELINE = "reverse-ad{{func=f argnums={}}},lower-continuations,cse,dce"
RTOL = ATOL = 1e-12

# A two-layer perceptron's loss, with bias broadcasts and a data-dependent mask.
MLP = """
func.func @f(%w1: tensor<4x16xf64>, %b1: tensor<16xf64>, %w2: tensor<16x3xf64>,
             %b2: tensor<3xf64>, %x: tensor<8x4xf64>, %y: tensor<8x3xf64>) -> tensor<f64> {
  %h0 = ln.matmul %x, %w1 : tensor<8x4xf64>, tensor<4x16xf64>
  %h1 = ln.add %h0, %b1 : tensor<8x16xf64>, tensor<16xf64>
  %h2 = ln.tanh %h1 : tensor<8x16xf64>
  %h3 = ln.relu %h2 : tensor<8x16xf64>
  %o0 = ln.matmul %h3, %w2 : tensor<8x16xf64>, tensor<16x3xf64>
  %o1 = ln.add %o0, %b2 : tensor<8x3xf64>, tensor<3xf64>
  %o2 = ln.sigmoid %o1 : tensor<8x3xf64>
  %d = ln.sub %o2, %y : tensor<8x3xf64>, tensor<8x3xf64>
  %sq = ln.mul %d, %d : tensor<8x3xf64>, tensor<8x3xf64>
  %half = ln.full {value = 0.5 : f64} : tensor<f64>
  %hs = ln.mul %sq, %half : tensor<8x3xf64>, tensor<f64>
  %l = ln.mean %hs {axes = array<i64: 0, 1>} : tensor<8x3xf64>
  func.return %l : tensor<f64>
}
"""


def fused_and_reference(text: str, pipeline: str, fn: str, *args: np.ndarray):
    module = parse_module(text)
    run_pipeline(module, pipeline)
    expected = Interpreter(module).call(fn, *args)
    run_pipeline(module, "fuse-elementwise")
    fused_expected = Interpreter(module).call(fn, *args)
    for a, b in zip(fused_expected, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    return module, expected


def assert_close(got, expected) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == e.dtype and g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL)


def test_a_fused_op_is_one_loop_nest(cache_dir):
    text = """
    func.func @g(%a: tensor<4x3xf64>, %b: tensor<3xf64>, %c: tensor<4x1xi64>) -> tensor<4x3xf64> {
      %r = ln.fused %a, %b, %c : tensor<4x3xf64>, tensor<3xf64>, tensor<4x1xi64> -> tensor<4x3xf64> {
      ^bb0(%x: tensor<f64>, %y: tensor<f64>, %n: tensor<i64>):
        %e = ln.exp %y : tensor<f64>
        %m = ln.mul %x, %e : tensor<f64>, tensor<f64>
        %k = ln.cast %n : tensor<i64> -> tensor<f64>
        %s = ln.sub %m, %k : tensor<f64>, tensor<f64>
        %z = ln.zeros : tensor<f64>
        %p = ln.maximum %s, %z : tensor<f64>, tensor<f64>
        ln.fused_yield %p : tensor<f64>
      }
      func.return %r : tensor<4x3xf64>
    }
    """
    module = parse_module(text)
    run_pipeline(module, "plan-buffers")  # places the output slot
    source = emit_module(module, "g").source
    body = source.split("static const double* fn_g(")[2].split("return r;")[0]
    # Two nested loops over 4x3, one store, and no buffer but the result.
    assert len(re.findall(r"\bfor \(", body)) == 2, body
    # (The entry writes its result straight into the caller's output.)
    assert body.count("lanterna::output<double>(0, 12)") == 1, body
    assert "lanterna::alloc" not in body, body
    assert "r[i0_ * 3 + i1_] = p;" in body, body
    assert "const double y = b[i1_];" in body and "const int64_t n = c[i0_];" in body, body
    rng = np.random.default_rng(3)
    args = (rng.standard_normal((4, 3)), rng.standard_normal(3), rng.integers(0, 3, (4, 1)))
    got = CpuBackend().compile(module, "g")(*args)
    assert_close(got, Interpreter(module).call("g", *args))


@pytest.mark.parametrize("program", programs.params(programs.AD_PROGRAMS))
def test_fused_gradient_programs_match_the_interpreter(cache_dir, program):
    args = program.args()
    argnums = ",".join(map(str, program.argnums))
    module, expected = fused_and_reference(
        (programs.INPUTS / program.file).read_text(), AD_PIPELINE.format(argnums), "f_grad", *args
    )
    assert "ln.fused" in str(module)
    assert_close(CpuBackend().compile(module, "f_grad")(*args), expected)


def test_fused_mlp_gradient_matches_the_interpreter(cache_dir):
    rng = np.random.default_rng(4)
    shapes = [(4, 16), (16,), (16, 3), (3,), (8, 4), (8, 3)]
    args = [rng.standard_normal(s) * 0.5 for s in shapes]
    module, expected = fused_and_reference(MLP, AD_PIPELINE.format("0,1,2,3"), "f_grad", *args)
    grad = next(op for op in module.ops if op.sym_name.data == "f_grad")
    assert sum(1 for op in grad.walk() if op.name == "ln.fused") >= 4
    assert_close(CpuBackend().compile(module, "f_grad")(*args), expected)
