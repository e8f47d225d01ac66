"""`lower-continuations`: no shift or reset survives, and the meaning is kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lanterna.ir import parse_module, print_ir
from lanterna.passes import run_pipeline

from support import programs
from support.checks import finite_differences, function, ops_named, run
from support.programs import AD_PROGRAMS, Program, load


@pytest.mark.parametrize("program", programs.params(AD_PROGRAMS))
def test_same_gradients_before_and_after(program: Program):
    module = program.load()
    run_pipeline(module, program.reverse_ad)
    assert ops_named(module, "cont.shift") > 0
    args = program.args()
    before = run(module, "f_grad", *args)
    run_pipeline(module, "lower-continuations")
    for name in ("cont.shift", "cont.reset", "cont.resume"):
        assert ops_named(module, name) == 0, print_ir(module)
    after = run(module, "f_grad", *args)
    for b, a in zip(before, after):
        np.testing.assert_allclose(a, b, rtol=1e-13)


def test_straight_line_becomes_the_classic_adjoint_program():
    """DESIGN's worked example: forward ops in order, then adjoints in reverse."""
    module = parse_module(
        """func.func @f(%x: tensor<f64>, %w: tensor<f64>) -> tensor<f64> {
             %t1 = ln.mul %x, %w : tensor<f64>, tensor<f64>
             %t2 = ln.tanh %t1 : tensor<f64>
             func.return %t2 : tensor<f64>
           }"""
    )
    run_pipeline(module, "reverse-ad{argnums=0,1},lower-continuations")
    grad = function(module, "f_grad")
    names = [op.name for op in grad.body.block.ops]
    assert names == [
        "ad.zero_like", "ad.zero_like",            # x_bar, w_bar
        "ln.mul", "ad.zero_like",                  # t1, t1_bar
        "ln.tanh", "ad.zero_like",                 # t2, t2_bar
        "ln.ones", "ad.accum",                     # seed the loss
        "ad.load", "ln.full", "ln.mul", "ln.sub", "ln.mul", "ad.accum",   # tanh'
        "ad.load", "ln.mul", "ad.accum", "ln.mul", "ad.accum",            # mul'
        "ad.load", "ad.load", "func.return",
    ]  # fmt: skip
    assert ops_named(module, "cont.lambda") == 0


def test_if_shares_one_continuation_closure():
    module = load("ad_if.mlir")
    run_pipeline(module, "reverse-ad{argnums=0,1},lower-continuations")
    text = print_ir(module)
    # The rest after the if is one closure, applied from both branches.
    assert ops_named(module, "cont.lambda") == 1
    assert text.count("cont.apply %kont(") == 2


def test_loop_becomes_a_recursive_closure():
    module = load("ad_for.mlir")
    run_pipeline(module, "reverse-ad{argnums=0,1},lower-continuations")
    text = print_ir(module)
    assert "cont.lambda rec %loop" in text
    assert "scf.for" not in print_ir(function(module, "f_grad"))


def test_callee_takes_its_continuation():
    module = load("ad_recursive.mlir")
    run_pipeline(module, "reverse-ad{func=f argnums=0,1},lower-continuations")
    text = print_ir(module)
    assert "%ret: !cont.closure<(tensor<f64>, !ad.cell<tensor<f64>>) -> (tensor<f64>)>" in text


def test_multi_shot_continuation_is_reified_as_a_closure():
    k = "!cont.k<(f64) -> (f64)>"
    module = parse_module(
        f"""func.func @f() -> f64 {{
          %r = cont.reset -> (f64) {{
            %y = cont.shift %k : {k} {{
              %c1 = arith.constant 1.0 : f64
              %c2 = arith.constant 2.0 : f64
              %a = cont.resume %k(%c1) : {k}
              %b = cont.resume %k(%c2) : {k}
              %s = arith.addf %a, %b : f64
              cont.yield %s : f64
            }}
            %ten = arith.constant 10.0 : f64
            %z = arith.mulf %y, %ten : f64
            cont.yield %z : f64
          }}
          func.return %r : f64
        }}"""
    )
    before = run(module, "f")
    run_pipeline(module, "lower-continuations")
    assert ops_named(module, "cont.shift") == 0
    assert ops_named(module, "cont.apply") == 2
    assert run(module, "f") == before == (30.0,)


def test_long_loop_runs_without_python_recursion():
    text = str(load("ad_for.mlir")).replace("100 : index", "5000 : index")
    module = parse_module(text)
    run_pipeline(module, "reverse-ad{argnums=0,1},lower-continuations")
    _, dx, dw = run(module, "f_grad", np.array(0.3), np.array(0.5))
    assert np.isfinite(dx) and np.isfinite(dw)


def test_recursive_tree_gradients_before_and_after():
    """Recursion over a tree given as index arrays: one function serves any shape."""
    module = load("ad_tree.mlir")
    run_pipeline(module, "reverse-ad{func=f argnums=0,1,2}")
    rng = np.random.default_rng(1)
    feat, w, u = rng.standard_normal(7), np.array(0.7), np.array(-1.3)
    # ((3 4) (5 6)) rooted at 0 with inner nodes 1, 2; and a left-leaning shape
    trees = [
        (np.array([1, 3, 5, -1, -1, -1, -1]), np.array([2, 4, 6, -1, -1, -1, -1])),
        (np.array([1, 2, 3, -1, -1, -1, -1]), np.array([6, 5, 4, -1, -1, -1, -1])),
    ]
    for left, right in trees:
        before = run(module, "f_grad", feat, w, u, left, right)
        expected = finite_differences(
            lambda a, b, c, left=left, right=right: run(module, "f", a, b, c, left, right)[0],
            [feat, w, u],
        )
        for g, e in zip(before[1:], expected):
            np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-9)
    run_pipeline(module, "lower-continuations")
    assert ops_named(module, "cont.shift") == 0
    for left, right in trees:
        after = run(module, "f_grad", feat, w, u, left, right)
        expected = finite_differences(
            lambda a, b, c, left=left, right=right: run(module, "f", a, b, c, left, right)[0],
            [feat, w, u],
        )
        for g, e in zip(after[1:], expected):
            np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-9)


def test_lanterna_opt_runs_both_passes_on_text(tmp_path, capsys):
    from lanterna.tools.opt import main

    out = tmp_path / "out.mlir"
    rc = main(
        [
            str(Path(__file__).parent / "inputs" / "ad_for.mlir"),
            "-p",
            "reverse-ad{func=f argnums=0,1},lower-continuations",
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    text = out.read_text()
    assert "@f_grad" in text and "cont.lambda rec" in text
    assert "cont.shift" not in text and "cont.reset" not in text
    module = parse_module(text)
    module.verify()
