"""The cpu backend's side of the backend contract: `name`, `available()`,
`compile(module, fn_name, *, donate=())` and the executable's `memory_stats()` (its
arena's byte counts, exact for a known program)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from lanterna.backends import get_backend
from lanterna.backends.cpu_cpp.backend import CompiledFunction, CpuBackend
from lanterna.ir import parse_module
from lanterna.ir.interpreter import Interpreter
from lanterna.passes import run_pipeline

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")

# a and b are intermediates in the arena; a dies at b (plan-buffers releases it), so
# c takes a's buffer back; d is written into the output.
CHAIN = """
func.func @f(%x: tensor<1000xf32>, %y: tensor<1000xf32>) -> tensor<1000xf32> {
  %a = ln.tanh %x : tensor<1000xf32>
  %b = ln.exp %a : tensor<1000xf32>
  %c = ln.tanh %b : tensor<1000xf32>
  %d = ln.mul %c, %y : tensor<1000xf32>, tensor<1000xf32>
  func.return %d : tensor<1000xf32>
}
"""
BUFFER = 4032  # 1000 float32, rounded up to the arena's 64-byte alignment

UPDATE = """
func.func @f(%p: tensor<4xf64>, %g: tensor<4xf64>) -> tensor<4xf64> {
  %q = ln.sub %p, %g : tensor<4xf64>, tensor<4xf64>
  func.return %q : tensor<4xf64>
}
"""


def test_cpu_names_itself_and_is_available_with_gxx():
    cpu = get_backend("cpu")
    assert isinstance(cpu, CpuBackend) and cpu.name == "cpu"
    assert cpu.available() is True and cpu.unavailable_reason() is None


def test_memory_stats_are_the_arenas_counts(cache_dir):
    module = parse_module(CHAIN)
    run_pipeline(module, "plan-buffers")
    compiled = CpuBackend().compile(module, "f")
    assert isinstance(compiled, CompiledFunction)
    x = np.linspace(-1, 1, 1000, dtype=np.float32)
    y = np.linspace(2, 3, 1000, dtype=np.float32)
    (out,) = compiled(x, y)
    (want,) = Interpreter(module).call("f", x, y)
    np.testing.assert_allclose(out, want, rtol=1e-6)
    stats = compiled.memory_stats()
    assert set(stats) == {"requested", "reused", "fresh", "held"}
    assert stats["requested"] == 3 * BUFFER  # a, b, c
    assert stats["reused"] == BUFFER  # c in a's buffer
    assert stats["fresh"] == 2 * BUFFER  # at most a and b at once
    assert stats["held"] >= stats["fresh"]
    # The counts are per call: the same call again asks for the same bytes.
    compiled(x, y)
    assert compiled.memory_stats() == stats


def test_donate_is_part_of_compile(cache_dir):
    compiled = CpuBackend().compile(parse_module(UPDATE), "f", donate=(0,))
    p = np.ones(4)
    (q,) = compiled(p, np.ones(4))
    assert q is p  # the donated argument's buffer holds the result
    np.testing.assert_array_equal(p, np.zeros(4))
