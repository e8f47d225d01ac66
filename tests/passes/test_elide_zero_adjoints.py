"""`elide-zero-adjoints`: fresh cells start from their first contribution, cells
never written vanish, and every gradient is unchanged."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from lanterna.ir import parse_module, print_ir
from lanterna.passes import run_pipeline

from support import programs
from support.checks import ops_named, run
from support.programs import AD_PROGRAMS, Program, load

CELL = "!ad.cell<tensor<3xf64>>"


def elide(module):
    run_pipeline(module, "elide-zero-adjoints")
    module.verify()


@pytest.mark.parametrize("program", programs.params(AD_PROGRAMS))
def test_same_gradients_on_every_ad_input(program: Program):
    module = program.load()
    run_pipeline(module, f"{program.reverse_ad},lower-continuations")
    args = program.args()
    before = run(module, "f_grad", *args)
    cells_before = ops_named(module, "ad.zero_like")
    elide(module)
    assert ops_named(module, "ad.zero_like") < cells_before, print_ir(module)
    after = run(module, "f_grad", *args)
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_same_gradients_through_recursion_over_a_tree():
    module = load("ad_tree.mlir")
    run_pipeline(module, "reverse-ad{func=f argnums=0,1,2},lower-continuations")
    rng = np.random.default_rng(3)
    args = [rng.standard_normal(7), np.array(0.7), np.array(-1.3)]
    left = np.array([1, 3, 5, -1, -1, -1, -1])
    right = np.array([2, 4, 6, -1, -1, -1, -1])
    before = run(module, "f_grad", *args, left, right)
    elide(module)
    after = run(module, "f_grad", *args, left, right)
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_straight_line_adjoints_need_no_zero_buffers():
    """The worked example of DESIGN.md: only the parameters' cells, which the
    function returns through loads, remain -- each made from its contribution."""
    module = parse_module(
        """func.func @f(%x: tensor<f64>, %w: tensor<f64>) -> tensor<f64> {
             %t1 = ln.mul %x, %w : tensor<f64>, tensor<f64>
             %t2 = ln.tanh %t1 : tensor<f64>
             func.return %t2 : tensor<f64>
           }"""
    )
    run_pipeline(module, "reverse-ad{argnums=0,1},lower-continuations")
    x, w = np.array(0.3), np.array(-0.8)
    before = run(module, "f_grad", x, w)
    elide(module)
    grad = next(op for op in module.ops if op.sym_name.data == "f_grad")
    names = [op.name for op in grad.body.block.ops]
    assert "ad.zero_like" not in names and "ad.accum" not in names and "ad.load" not in names
    assert names == [
        "ln.mul", "ln.tanh", "ln.ones",                            # forward, seed
        "ln.full", "ln.mul", "ln.sub", "ln.mul",                   # tanh'
        "ln.mul", "ln.mul", "func.return",                         # mul'
    ]  # fmt: skip
    assert run(module, "f_grad", x, w) == before


def test_first_accum_becomes_cell_from():
    module = parse_module(
        f"""func.func @f(%v: tensor<3xf64>, %g: tensor<3xf64>) -> tensor<3xf64> {{
          %c = ad.zero_like %v {{origin = "v"}} : tensor<3xf64>
          %t = ln.tanh %g : tensor<3xf64>
          ad.accum %c, %t : {CELL}
          ad.accum %c, %g : {CELL}
          %d = ad.load %c : {CELL}
          func.return %d : tensor<3xf64>
        }}"""
    )
    v, g = np.array([1.0, 2.0, 3.0]), np.array([0.5, -0.25, 2.0])
    before = run(module, "f", v, g)
    elide(module)
    text = print_ir(module)
    assert 'ad.cell_from %t {origin = "v"} : tensor<3xf64>' in text
    assert f"ad.accum %c, %g : {CELL}" in text
    assert "ad.zero_like" not in text
    np.testing.assert_array_equal(run(module, "f", v, g)[0], before[0])


def test_cell_never_accumulated_loads_zeros():
    module = parse_module(
        f"""func.func @f(%v: tensor<3xf64>) -> tensor<3xf64> {{
          %c = ad.zero_like %v : tensor<3xf64>
          %d = ad.load %c : {CELL}
          %e = ln.add %d, %v : tensor<3xf64>, tensor<3xf64>
          func.return %e : tensor<3xf64>
        }}"""
    )
    v = np.array([1.0, 2.0, 3.0])
    elide(module)
    text = print_ir(module)
    assert "ad." not in text
    assert "ln.zeros : tensor<3xf64>" in text
    np.testing.assert_array_equal(run(module, "f", v)[0], v)


def keeps_zero_like(source: str, *args: np.ndarray) -> None:
    module = parse_module(source)
    before = run(module, "f", *args)
    elide(module)
    assert ops_named(module, "ad.zero_like") == 1, print_ir(module)
    assert ops_named(module, "ad.cell_from") == 0, print_ir(module)
    for b, a in zip(before, run(module, "f", *args)):
        np.testing.assert_array_equal(a, b)


def test_a_load_before_the_first_accum_keeps_the_zeros():
    keeps_zero_like(
        f"""func.func @f(%v: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>) {{
          %c = ad.zero_like %v : tensor<3xf64>
          %d0 = ad.load %c : {CELL}
          ad.accum %c, %v : {CELL}
          %d1 = ad.load %c : {CELL}
          func.return %d0, %d1 : tensor<3xf64>, tensor<3xf64>
        }}""",
        np.array([1.0, 2.0, 3.0]),
    )


def test_a_use_inside_a_region_before_the_first_accum_keeps_the_zeros():
    keeps_zero_like(
        f"""func.func @f(%v: tensor<3xf64>, %p: i1) -> tensor<3xf64> {{
          %c = ad.zero_like %v : tensor<3xf64>
          scf.if %p {{
            ad.accum %c, %v : {CELL}
            scf.yield
          }}
          ad.accum %c, %v : {CELL}
          %d = ad.load %c : {CELL}
          func.return %d : tensor<3xf64>
        }}""",
        np.array([1.0, 2.0, 3.0]),
        np.array(True),
    )


def test_a_cell_passed_to_a_closure_first_keeps_the_zeros():
    keeps_zero_like(
        f"""func.func @f(%v: tensor<3xf64>) -> tensor<3xf64> {{
          %c = ad.zero_like %v : tensor<3xf64>
          %add = cont.lambda (%cell: {CELL}) -> () {{
            ad.accum %cell, %v : {CELL}
            cont.yield
          }}
          cont.apply %add(%c) : !cont.closure<({CELL}) -> ()>
          ad.accum %c, %v : {CELL}
          %d = ad.load %c : {CELL}
          func.return %d : tensor<3xf64>
        }}""",
        np.array([1.0, 2.0, 3.0]),
    )


def test_loop_iterations_share_an_outer_cell_and_own_an_inner_one():
    """A cell made outside a loop and written in its body collects every
    iteration's contribution: it keeps its zeros. A cell made in the body is
    fresh in each iteration: its first accum initializes it."""
    source = f"""func.func @f(%v: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>) {{
      %lb = arith.constant 0 : index
      %ub = arith.constant 4 : index
      %st = arith.constant 1 : index
      %outer = ad.zero_like %v : tensor<3xf64>
      %r = scf.for %i = %lb to %ub step %st iter_args(%h = %v) -> (tensor<3xf64>) {{
        %inner = ad.zero_like %h : tensor<3xf64>
        ad.accum %inner, %h : {CELL}
        ad.accum %inner, %v : {CELL}
        %s = ad.load %inner : {CELL}
        ad.accum %outer, %s : {CELL}
        scf.yield %s : tensor<3xf64>
      }}
      %total = ad.load %outer : {CELL}
      func.return %r, %total : tensor<3xf64>, tensor<3xf64>
    }}"""
    module = parse_module(source)
    v = np.array([1.0, -2.0, 0.5])
    before = run(module, "f", v)
    np.testing.assert_array_equal(before[0], 5 * v)
    elide(module)
    text = print_ir(module)
    assert "%outer = ad.zero_like %v" in text
    assert "%inner = ad.cell_from %h" in text
    after = run(module, "f", v)
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_lanterna_opt_runs_it_by_name(tmp_path, capsys):
    from pathlib import Path

    from lanterna.tools.opt import main

    source = Path(__file__).parent / "inputs" / "ad_for.mlir"
    pipeline = "reverse-ad{func=f argnums=0,1},lower-continuations,elide-zero-adjoints"
    assert main([str(source), "-p", pipeline]) == 0
    text = capsys.readouterr().out
    assert "%a_bar" not in text and "%b_bar" not in text
    parse_module(text).verify()


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")
@pytest.mark.parametrize(
    "program", programs.params(programs.named("ad_for.mlir") + programs.named("ad_while.mlir"))
)
def test_cpu_backend_runs_cell_from(program: Program):
    from lanterna.backends import get_backend

    module = program.load()
    run_pipeline(module, f"{program.reverse_ad},lower-continuations")
    args = program.args()
    expected = run(module, "f_grad", *args)
    run_pipeline(module, "elide-zero-adjoints,cse,dce")
    compiled = get_backend("cpu").compile(module, "f_grad")
    for e, got in zip(expected, compiled(*args)):
        np.testing.assert_allclose(got, e, rtol=1e-12)


def test_cpu_backend_copies_into_cell_from():
    """The cell must not alias its initial value: accumulating into it later
    leaves the value itself unchanged."""
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    from lanterna.backends import get_backend

    module = parse_module(
        f"""func.func @f(%g: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>) {{
          %c = ad.cell_from %g : tensor<3xf64>
          ad.accum %c, %g : {CELL}
          %d = ad.load %c : {CELL}
          func.return %d, %g : tensor<3xf64>, tensor<3xf64>
        }}"""
    )
    g = np.array([1.0, 2.0, -3.0])
    d, g_out = get_backend("cpu").compile(module, "f")(g)
    np.testing.assert_array_equal(d, 2 * g)
    np.testing.assert_array_equal(g_out, g)
