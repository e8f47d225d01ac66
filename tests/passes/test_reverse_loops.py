"""`reverse-loops`: a differentiated scf.for becomes a forward loop that saves
what the adjoints read and a backward loop; the gradients stay the same."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from lanterna.ir import cont, parse_module, print_ir
from lanterna.passes import run_pipeline

from support import programs
from support.checks import finite_differences, ops_named, run
from support.programs import LOOP_PROGRAMS, Program, load

CPU_PIPELINE = "lower-continuations,elide-zero-adjoints,canonicalize,cse,licm,dce,fuse-elementwise"


def _rewritten_loops(module) -> int:
    """scf.for ops whose body still shifts (left for lower-continuations)."""
    return sum(
        1
        for op in module.walk()
        if op.name == "scf.for" and any(isinstance(o, cont.ShiftOp) for o in op.walk())
    )


@pytest.mark.parametrize("program", programs.params(LOOP_PROGRAMS))
def test_same_gradients_as_the_callback_form_and_finite_differences(program: Program):
    module = program.load()
    run_pipeline(module, program.reverse_ad)
    args = program.args()
    before = run(module, "f_grad", *args)
    run_pipeline(module, "reverse-loops")
    module.verify()
    after = run(module, "f_grad", *args)
    for b, a in zip(before, after):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    expected = finite_differences(lambda x, w: run(module, "f", x, w)[0], args)
    for g, e in zip(after[1:], expected):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-9)
    run_pipeline(module, CPU_PIPELINE)
    for b, a in zip(before, run(module, "f_grad", *args)):
        np.testing.assert_allclose(a, b, rtol=1e-13)


def test_loop_becomes_forward_and_backward_loops():
    module = load("ad_for.mlir")
    run_pipeline(module, "reverse-ad{argnums=0,1},reverse-loops")
    text = print_ir(module)
    assert _rewritten_loops(module) == 0, text
    grad = next(
        o for o in module.ops if getattr(o, "sym_name", None) and o.sym_name.data == "f_grad"
    )
    assert sum(op.name == "scf.for" for op in grad.walk()) == 2
    # Only what the adjoint rules read is saved: h (for w's adjoint) and tanh's
    # output; x and w live outside the loop, cells are rebuilt backward.
    assert "%h_saved = ad.stack : tensor<f64>" in text
    assert "%b_saved = ad.stack : tensor<f64>" in text
    assert ops_named(module, "ad.stack") == 2
    assert ops_named(module, "ad.push") == 2 and ops_named(module, "ad.pop") == 2
    run_pipeline(module, "lower-continuations")
    # No recursive closure is left: the stack does not grow with the trip count.
    assert ops_named(module, "cont.lambda") == 0, print_ir(module)


def test_nested_loops_save_the_inner_stacks():
    module = load("ad_nested_for.mlir")
    run_pipeline(module, "reverse-ad{argnums=0,1},reverse-loops")
    text = print_ir(module)
    assert _rewritten_loops(module) == 0
    assert "ad.stack : !ad.stack<tensor<3xf64>>" in text
    run_pipeline(module, "lower-continuations")
    assert ops_named(module, "cont.lambda") == 0


def test_a_loop_that_branches_is_left_to_lower_continuations():
    module = load("ad_for_if.mlir")
    run_pipeline(module, "reverse-ad{argnums=0,1}")
    before = print_ir(module)
    run_pipeline(module, "reverse-loops")
    assert print_ir(module) == before


@pytest.mark.parametrize("trips", [0, 1])
def test_short_loops(trips):
    text = str(load("ad_for.mlir")).replace("100 : index", f"{trips} : index")
    args = [np.array(0.3), np.array(0.8)]
    module = parse_module(text)
    run_pipeline(module, "reverse-ad{argnums=0,1}")
    before = run(module, "f_grad", *args)
    run_pipeline(module, "reverse-loops," + CPU_PIPELINE)
    for b, a in zip(before, run(module, "f_grad", *args)):
        np.testing.assert_allclose(a, b, rtol=1e-13)


def _reference(x: float, w: float, n: int) -> tuple[float, float, float]:
    """h <- tanh(h w) + x, differentiated by hand."""
    hs = [x]
    for _ in range(n):
        hs.append(np.tanh(hs[-1] * w) + x)
    h_bar, x_bar, w_bar = 1.0, 0.0, 0.0
    for i in reversed(range(n)):
        t = np.tanh(hs[i] * w)
        a_bar = h_bar * (1 - t * t)
        x_bar += h_bar
        w_bar += a_bar * hs[i]
        h_bar = a_bar * w
    return hs[-1], x_bar + h_bar, w_bar


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")
def test_cpu_runs_a_long_loop_without_growing_the_stack():
    """300,000 iterations: three times what the callback form runs even on its
    4 GiB rerun stack."""
    from lanterna.backends import get_backend

    n = 300_000
    module = parse_module(str(load("ad_for.mlir")).replace("100 : index", f"{n} : index"))
    run_pipeline(module, "reverse-ad{argnums=0,1},reverse-loops," + CPU_PIPELINE)
    assert ops_named(module, "cont.lambda") == 0
    got = get_backend("cpu").compile(module, "f_grad")(np.array(0.3), np.array(0.5))
    np.testing.assert_allclose([float(g) for g in got], _reference(0.3, 0.5, n), rtol=1e-9)
