"""`plan-buffers`: releases after the last use, never where a use passes the
buffer on; takeovers of dying buffers; output slots for the entry's results --
and the meaning unchanged, with the interpreter checking every release."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects.builtin import ModuleOp

from lanterna.backends.cpu_cpp.backend import CpuBackend
from lanterna.errors import PipelineError
from lanterna.ir import parse_module, print_ir
from lanterna.ir.interpreter import Interpreter, InterpreterError
from lanterna.passes import run_pipeline

from support import programs

INPUTS = Path(__file__).parent / "inputs"
T = "tensor<4xf32>"


def plan(text: str, options: str = "") -> ModuleOp:
    module = parse_module(text)
    module.verify()
    run_pipeline(module, f"plan-buffers{options}")
    module.verify()
    return module


def ops(module: ModuleOp, fn: str = "f") -> list[str]:
    """The body of @fn, one op per line (`name operands {slot}`), nested ones included."""
    f = next(op for op in module.ops if op.sym_name.data == fn)  # type: ignore[attr-defined]
    out = []
    for op in f.body.walk():
        text = op.name + "".join(f" %{o.name_hint}" for o in op.operands)
        if "buf.output" in op.attributes:
            text += f" {{out {op.attributes['buf.output'].value.data}}}"  # type: ignore[attr-defined]
        out.append(text)
    return out


def released(module: ModuleOp) -> list[str]:
    return [line.split()[1][1:] for line in ops(module) if line.startswith("buf.release")]


def same_results(text: str, fn: str, *args: np.ndarray, options: str = "") -> ModuleOp:
    before = Interpreter(parse_module(text)).call(fn, *args)
    module = plan(text, options)
    after = Interpreter(module).call(fn, *args)
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    return module


STRAIGHT = f"""
func.func @f(%x: {T}) -> tensor<f32> {{
  %a = ln.tanh %x : {T}
  %b = ln.mul %a, %a : {T}, {T}
  %r = ln.reshape %b : {T} -> tensor<2x2xf32>
  %s = ln.sum %r {{axes = array<i64: 0, 1>}} : tensor<2x2xf32>
  func.return %s : tensor<f32>
}}
"""


def test_a_buffer_is_released_after_its_last_use_and_a_view_counts_as_a_use():
    module = same_results(STRAIGHT, "f", np.linspace(-1, 1, 4, dtype=np.float32))
    assert ops(module) == [
        "ln.tanh %x",
        "ln.mul %a %a",
        "buf.release %a",
        "ln.reshape %b",
        "ln.sum %r {out 0}",  # the returned sum is written into output 0
        "buf.release %b",  # after the last use of its view %r
        "func.return %s",
    ]


def test_the_pass_is_idempotent():
    once = plan(STRAIGHT)
    twice = parse_module(print_ir(once))
    run_pipeline(twice, "plan-buffers")
    assert print_ir(twice) == print_ir(once)


def test_reuse_off_places_output_slots_only():
    module = plan(STRAIGHT, "{reuse=false}")
    assert not any(line.startswith("buf.") for line in ops(module))
    assert "ln.sum %r {out 0}" in ops(module)


PASSED_ON = f"""
func.func @g(%v: {T}) -> {T} {{
  func.return %v : {T}
}}
func.func @f(%x: {T}) -> {T} {{
  %lb = arith.constant 0 : index
  %ub = arith.constant 2 : index
  %st = arith.constant 1 : index
  %called = ln.exp %x : {T}
  %c = func.call @g(%called) : ({T}) -> {T}
  %init = ln.tanh %x : {T}
  %inner = ln.neg %x : {T}
  %loop = scf.for %i = %lb to %ub step %st iter_args(%h = %init) -> ({T}) {{
    %t = ln.mul %h, %inner : {T}, {T}
    %u = ln.add %t, %t : {T}, {T}
    scf.yield %u : {T}
  }}
  %captured = ln.abs %x : {T}
  %fn = cont.lambda () -> ({T}) {{
    cont.yield %captured : {T}
  }}
  %got = cont.apply %fn() : !cont.closure<() -> ({T})>
  %stack = ad.stack : {T}
  %pushed = ln.sqrt %captured : {T}
  ad.push %stack, %pushed : !ad.stack<{T}>
  %s1 = ln.add %c, %loop : {T}, {T}
  %s2 = ln.add %s1, %got : {T}, {T}
  func.return %s2 : {T}
}}
"""


def test_no_release_where_a_use_passes_the_buffer_on():
    x = np.linspace(0.1, 1, 4, dtype=np.float32)
    module = same_results(PASSED_ON, "f", x)
    # Passed to a call, a loop's initial value, captured by a closure, pushed:
    # kept. Used inside the loop body only: released after the loop. Defined in
    # the body and not yielded: released there.
    assert sorted(released(module)) == ["inner", "s1", "t"]
    body = ops(module)
    assert body.index("buf.release %inner") == body.index("scf.yield %u") + 1
    assert body.index("buf.release %t") == body.index("ln.add %t %t") + 1
    # Only the entry (no call reaches it) gets output slots; @g is called.
    assert "ln.add %s1 %got {out 0}" in body
    assert not any("{out" in line for line in ops(module, "g"))


CELLS = f"""
func.func @f(%x: {T}, %g: {T}) -> ({T}, {T}) {{
  %y = ln.tanh %x : {T}
  %c = ad.cell_from %y : {T}
  ad.accum %c, %g : !ad.cell<{T}>
  %v = ad.load %c : !ad.cell<{T}>
  %w = ln.mul %v, %v : {T}, {T}
  %d = ad.cell_from %x : {T}
  %early = ad.load %d : !ad.cell<{T}>
  ad.accum %d, %early : !ad.cell<{T}>
  %late = ad.load %d : !ad.cell<{T}>
  %z = ln.add %late, %early : {T}, {T}
  func.return %w, %z : {T}, {T}
}}
"""


def test_takeovers_of_dying_buffers():
    x = np.linspace(-1, 1, 4, dtype=np.float32)
    module = same_results(CELLS, "f", x, x + 2)
    assert ops(module) == [
        "ln.tanh %x",
        "buf.take_cell %y",  # %y dies here: the cell is its buffer
        "ad.accum %c %g",
        "buf.take_load %c",  # the cell's last use: its buffer is the value
        "ln.mul %v %v {out 0}",
        "buf.release %v",
        "ad.cell_from %x",  # %x is the caller's: copied
        "ad.load %d",  # accumulated into later: a snapshot
        "ad.accum %d %early",
        "buf.take_load %d",
        "ln.add %late %early {out 1}",
        "buf.release %early",
        "buf.release %late",
        "func.return %w %z",
    ]


def test_no_takeover_of_a_value_used_twice_or_made_elsewhere():
    module = plan(
        f"""
        func.func @f(%x: {T}) -> {T} {{
          %y = ln.tanh %x : {T}
          %c = ad.cell_from %y : {T}
          %t = arith.constant true
          %r = scf.if %t -> ({T}) {{
            %d = ad.cell_from %y : {T}
            %v = ad.load %d : !ad.cell<{T}>
            scf.yield %v : {T}
          }} else {{
            scf.yield %x : {T}
          }}
          %e = ad.load %c : !ad.cell<{T}>
          %s = ln.add %r, %e : {T}, {T}
          func.return %s : {T}
        }}
        """
    )
    body = ops(module)
    assert body.count("ad.cell_from %y") == 2
    # In the branch %d dies at its load, whose value is yielded (kept).
    assert "buf.take_load %d" in body and "buf.release %v" not in body
    f = next(iter(module.ops))
    after_if = next(op for op in f.body.block.ops if op.name == "scf.if").next_op
    assert after_if is not None and after_if.name == "buf.release"
    assert after_if.operands[0].name_hint == "y"


def test_an_entry_returning_a_value_twice_or_an_argument_gets_no_slot_for_it():
    module = plan(
        f"""
        func.func @f(%x: {T}) -> ({T}, {T}, {T}, {T}) {{
          %y = ln.tanh %x : {T}
          %k = ln.constant {{value = dense<1.0> : {T}}} : {T}
          func.return %y, %y, %x, %k : {T}, {T}, {T}, {T}
        }}
        """
    )
    assert not any("{out" in line for line in ops(module))


def test_a_release_in_the_wrong_place_is_caught_by_the_interpreter():
    module = plan(STRAIGHT)
    f = next(iter(module.ops))
    (release_a,) = [op for op in f.walk() if op.name == "buf.release"][:1]
    # Move the release of %a before its use by ln.mul, bypassing the verifier.
    mul = next(op for op in f.walk() if op.name == "ln.mul")
    release_a.detach()
    f.body.block.insert_op_before(release_a, mul)
    with pytest.raises(InterpreterError, match=r"%a is used after 'buf.release %a'"):
        Interpreter(module).call("f", np.ones(4, np.float32))


def test_a_view_of_a_released_buffer_is_caught_too():
    module = parse_module(
        f"""
        func.func @f(%x: {T}) -> tensor<2x2xf32> {{
          %a = ln.tanh %x : {T}
          %r = ln.reshape %a : {T} -> tensor<2x2xf32>
          buf.release %a : {T}
          %b = ln.neg %r : tensor<2x2xf32>
          func.return %b : tensor<2x2xf32>
        }}
        """
    )
    module.verify()  # the verifier sees %a only, not its view
    with pytest.raises(InterpreterError, match=r"%r is used after 'buf.release %a'"):
        Interpreter(module).call("f", np.ones(4, np.float32))


LOOP_TAKES = f"""
func.func @f(%x: {T}) -> {T} {{
  %lb = arith.constant 0 : index
  %ub = arith.constant 2 : index
  %st = arith.constant 1 : index
  %a = ln.tanh %x : {T}
  %c = ad.cell_from %x : {T}
  %r = scf.for %i = %lb to %ub step %st iter_args(%h = %x) -> ({T}) {{
    %u = ln.mul %h, %a : {T}, {T}
    OP
    scf.yield %u : {T}
  }}
  func.return %r : {T}
}}
"""


@pytest.mark.parametrize(
    "op,message",
    [
        (f"buf.release %a : {T}", "%a is used after 'buf.release %a'"),
        (f"%d = buf.take_cell %a : {T}", "%a is used after 'buf.take_cell %a'"),
        (f"%v = buf.take_load %c : !ad.cell<{T}>", "%c is used after 'buf.take_load %c'"),
    ],
)
def test_a_buffer_given_away_in_a_loop_body_is_caught_in_the_next_iteration(op, message):
    """The verifier sees nothing wrong -- no use after the op in its block -- but
    the second iteration reads a buffer the first gave away."""
    module = parse_module(LOOP_TAKES.replace("OP", op))
    module.verify()
    with pytest.raises(InterpreterError, match=message):
        Interpreter(module).call("f", np.ones(4, np.float32))


def test_continuations_must_be_lowered_first():
    module = parse_module((INPUTS / "ad_if.mlir").read_text())
    run_pipeline(module, "reverse-ad{func=f argnums=0,1}")
    with pytest.raises(PipelineError, match="plan-buffers runs after lower-continuations"):
        run_pipeline(module, "plan-buffers")


# --- every differentiation program through the whole cpu pipeline ---------------------------

# The shared differentiation programs, plus the loops, a checkpoint and the tree.
PROGRAMS = [
    *programs.AD_PROGRAMS,
    *programs.LOOP_PROGRAMS,
    programs.Program("ad_checkpoint.mlir", ([0.3, -0.5, 0.9], [0.7, 1.1, -0.4])),
    programs.TREE,
]


def _without(pipeline: str, name: str) -> str:
    return ",".join(p for p in pipeline.split(",") if p != name)


@pytest.mark.parametrize("program", programs.params(PROGRAMS))
def test_the_cpu_pipeline_releases_safely(program):
    """Every release, takeover and slot the cpu pipeline places is checked by the
    interpreter, and the gradients are those of the pipeline without them."""
    grad = program.reverse_ad + ","
    plain = program.load()
    run_pipeline(plain, grad + _without(CpuBackend.default_pipeline, "plan-buffers"))
    planned = program.load()
    run_pipeline(planned, grad + CpuBackend.default_pipeline)
    planned.verify()
    assert any(op.name == "buf.release" for op in planned.walk()), print_ir(planned)
    args = program.args()
    want = Interpreter(plain).call("f_grad", *args)
    got = Interpreter(planned).call("f_grad", *args)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(g, w)
