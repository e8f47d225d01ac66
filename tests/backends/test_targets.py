"""Output targets (`lanterna.backends.targets`): what `lanterna-opt -t NAME` prints.
They are registered beside the backends, and a backend's target imports its emitter
only when it renders."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lanterna.backends.targets import available_targets, get_target, register_target
from lanterna.errors import PipelineError
from lanterna.ir import parse_module, print_ir

SOURCE = """
func.func @f(%a: tensor<3xf32>, %b: tensor<3xf32>) -> tensor<3xf32> {
  %x = ln.add %a, %b : tensor<3xf32>, tensor<3xf32>
  %y = ln.tanh %x : tensor<3xf32>
  func.return %y : tensor<3xf32>
}
"""


def test_the_registered_targets():
    # No `cuda` until a cuda backend exists to render it.
    assert available_targets() == ["cpp", "mlir", "mlir-generic"]


def test_ir_targets():
    module = parse_module(SOURCE)
    assert get_target("mlir")(module) == print_ir(module) + "\n"
    generic = get_target("mlir-generic")(module)
    assert generic.startswith('"builtin.module"()')
    assert print_ir(parse_module(generic)) == print_ir(module)


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(PipelineError, match="unknown target 'nope'; known targets: cpp, mlir"):
        get_target("nope")


def test_a_name_is_taken_once():
    render = get_target("mlir")
    register_target("mlir", render)  # the same renderer again: harmless
    with pytest.raises(PipelineError, match="target 'mlir' is already registered"):
        register_target("mlir", lambda module: "")


def test_cpp_renders_the_entry_function():
    source = get_target("cpp")(parse_module(SOURCE))
    assert '#include "lanterna_cpu.h"' in source
    assert 'extern "C" int lanterna_entry' in source
    assert "ln.tanh" in source  # each statement names the op it comes from


def test_the_cpp_target_needs_lowered_continuations():
    module = parse_module(
        """
func.func @f(%a: tensor<3xf32>) -> tensor<3xf32> {
  %r = cont.reset -> (tensor<3xf32>) {
    cont.yield %a : tensor<3xf32>
  }
  func.return %r : tensor<3xf32>
}
"""
    )
    with pytest.raises(NotImplementedError, match="no lowering for 'cont.reset'"):
        get_target("cpp")(module)


def test_listing_targets_imports_no_emitter():
    code = (
        "import sys\n"
        "from lanterna.backends.targets import available_targets\n"
        "available_targets()\n"
        "print(sorted(m for m in sys.modules if m.startswith('lanterna.backends')))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert eval(out) == ["lanterna.backends", "lanterna.backends.targets"]
