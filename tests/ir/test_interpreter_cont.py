"""shift/reset semantics on the reference interpreter, written directly as IR.

Each program's answer is worked out by hand in its docstring: continuations
resumed once, never, twice; captured inside scf.if, scf.for, scf.while and a
callee, so the continuation crosses those boundaries; closures; deep recursion.
"""

from __future__ import annotations

import numpy as np
import pytest

from lanterna.ir import parse_module
from lanterna.ir.interpreter import Interpreter

K = "!cont.k<(f64) -> (f64)>"


def run(src: str, fn: str, *args):
    module = parse_module(src)
    module.verify()
    return Interpreter(module).call(fn, *args)


def test_continuation_not_resumed_aborts_to_reset():
    """The shift body's answer replaces the whole reset: the rest never runs."""
    src = f"""
    func.func @f(%x: f64) -> f64 {{
      %r = cont.reset -> (f64) {{
        %y = cont.shift %k : {K} {{
          %c = arith.constant 42.0 : f64
          cont.yield %c : f64
        }}
        %z = arith.mulf %y, %x : f64
        cont.yield %z : f64
      }}
      func.return %r : f64
    }}"""
    assert run(src, "f", 3.0) == (42.0,)


def test_continuation_resumed_once_runs_rest_then_returns():
    """resume k(x+1) runs `z = y * 10` and returns z to the shift body, which adds 1."""
    src = f"""
    func.func @f(%x: f64) -> f64 {{
      %r = cont.reset -> (f64) {{
        %y = cont.shift %k : {K} {{
          %one = arith.constant 1.0 : f64
          %v = arith.addf %x, %one : f64
          %a = cont.resume %k(%v) : {K}
          %b = arith.addf %a, %one : f64
          cont.yield %b : f64
        }}
        %ten = arith.constant 10.0 : f64
        %z = arith.mulf %y, %ten : f64
        cont.yield %z : f64
      }}
      func.return %r : f64
    }}"""
    assert run(src, "f", 2.0) == ((2.0 + 1) * 10 + 1,)


def test_continuation_resumed_twice_is_multi_shot():
    src = f"""
    func.func @f() -> f64 {{
      %r = cont.reset -> (f64) {{
        %y = cont.shift %k : {K} {{
          %c1 = arith.constant 1.0 : f64
          %c2 = arith.constant 2.0 : f64
          %a = cont.resume %k(%c1) : {K}
          %b = cont.resume %k(%c2) : {K}
          %s = arith.addf %a, %b : f64
          cont.yield %s : f64
        }}
        %ten = arith.constant 10.0 : f64
        %z = arith.mulf %y, %ten : f64
        cont.yield %z : f64
      }}
      func.return %r : f64
    }}"""
    assert run(src, "f") == (30.0,)


def test_shift_inside_scf_if_captures_rest_after_the_if():
    """Resuming with 3 and 4 runs `r + 1` after the if each time: 4 + 5."""
    src = f"""
    func.func @f(%c: i1) -> f64 {{
      %r = cont.reset -> (f64) {{
        %v = scf.if %c -> (f64) {{
          %y = cont.shift %k : {K} {{
            %c3 = arith.constant 3.0 : f64
            %c4 = arith.constant 4.0 : f64
            %a = cont.resume %k(%c3) : {K}
            %b = cont.resume %k(%c4) : {K}
            %s = arith.addf %a, %b : f64
            cont.yield %s : f64
          }}
          scf.yield %y : f64
        }} else {{
          %z = arith.constant 0.0 : f64
          scf.yield %z : f64
        }}
        %one = arith.constant 1.0 : f64
        %w = arith.addf %v, %one : f64
        cont.yield %w : f64
      }}
      func.return %r : f64
    }}"""
    assert run(src, "f", True) == (9.0,)
    assert run(src, "f", False) == (1.0,)


def test_shift_inside_scf_for_nests_iterations_as_callbacks():
    """Each iteration resumes the rest (later iterations + the end) and doubles
    what comes back: sum of ones over n iterations, doubled n times."""
    src = f"""
    func.func @f(%n: index) -> f64 {{
      %r = cont.reset -> (f64) {{
        %lb = arith.constant 0 : index
        %st = arith.constant 1 : index
        %z = arith.constant 0.0 : f64
        %acc = scf.for %i = %lb to %n step %st iter_args(%a = %z) -> (f64) {{
          %y = cont.shift %k : {K} {{
            %one = arith.constant 1.0 : f64
            %ans = cont.resume %k(%one) : {K}
            %two = arith.constant 2.0 : f64
            %d = arith.mulf %ans, %two : f64
            cont.yield %d : f64
          }}
          %a2 = arith.addf %a, %y : f64
          scf.yield %a2 : f64
        }}
        cont.yield %acc : f64
      }}
      func.return %r : f64
    }}"""
    assert run(src, "f", 3) == (3.0 * 2**3,)
    assert run(src, "f", 0) == (0.0,)


def test_loop_iteration_values_survive_later_iterations():
    """The code after resume in iteration i reads iteration i's own value of %sq,
    after iterations i+1.. have run: the result records them in reverse."""
    src = f"""
    func.func @f(%n: index) -> f64 {{
      %r = cont.reset -> (f64) {{
        %lb = arith.constant 0 : index
        %st = arith.constant 1 : index
        %z = arith.constant 0.0 : f64
        scf.for %i = %lb to %n step %st {{
          %ii = arith.index_cast %i : index to i64
          %fi = arith.sitofp %ii : i64 to f64
          %one = arith.constant 1.0 : f64
          %sq = arith.addf %fi, %one : f64
          %y = cont.shift %k : {K} {{
            %ans = cont.resume %k(%sq) : {K}
            %ten = arith.constant 10.0 : f64
            %t = arith.mulf %ans, %ten : f64
            %u = arith.addf %t, %sq : f64
            cont.yield %u : f64
          }}
          scf.yield
        }}
        cont.yield %z : f64
      }}
      func.return %r : f64
    }}"""
    # iterations record 1, 2, 3 on the way back: ((0*10+3)*10+2)*10+1
    assert run(src, "f", 3) == (321.0,)


def test_shift_inside_callee_crosses_the_return():
    """The continuation captured in @g includes returning to @f and `r + 1`."""
    src = f"""
    func.func @g(%x: f64) -> f64 {{
      %y = cont.shift %k : {K} {{
        %two = arith.constant 2.0 : f64
        %x2 = arith.mulf %x, %two : f64
        %a = cont.resume %k(%x) : {K}
        %b = cont.resume %k(%x2) : {K}
        %s = arith.addf %a, %b : f64
        cont.yield %s : f64
      }}
      func.return %y : f64
    }}
    func.func @f(%x: f64) -> f64 {{
      %r = cont.reset -> (f64) {{
        %v = func.call @g(%x) : (f64) -> f64
        %one = arith.constant 1.0 : f64
        %w = arith.addf %v, %one : f64
        cont.yield %w : f64
      }}
      func.return %r : f64
    }}"""
    assert run(src, "f", 5.0) == ((5.0 + 1) + (10.0 + 1),)


def test_shift_inside_scf_while_with_data_dependent_trip_count():
    """Double x until it passes 100; every iteration's shift adds 1 to the answer."""
    src = f"""
    func.func @f(%x: f64) -> f64 {{
      %r = cont.reset -> (f64) {{
        %out = scf.while (%v = %x) : (f64) -> (f64) {{
          %lim = arith.constant 100.0 : f64
          %c = arith.cmpf olt, %v, %lim : f64
          scf.condition(%c) %v : f64
        }} do {{
        ^bb0(%v: f64):
          %y = cont.shift %k : {K} {{
            %two = arith.constant 2.0 : f64
            %v2 = arith.mulf %v, %two : f64
            %a = cont.resume %k(%v2) : {K}
            %one = arith.constant 1.0 : f64
            %b = arith.addf %a, %one : f64
            cont.yield %b : f64
          }}
          scf.yield %y : f64
        }}
        cont.yield %out : f64
      }}
      func.return %r : f64
    }}"""
    # 3 -> 6 -> 12 -> 24 -> 48 -> 96 -> 192: six doublings, each adds 1
    assert run(src, "f", 3.0) == (192.0 + 6,)


def test_closure_captures_values_when_created():
    """Closures made in a loop keep their iteration's value; applied after the loop."""
    src = """
    func.func @f(%x: f64) -> f64 {
      %lb = arith.constant 0 : index
      %n = arith.constant 3 : index
      %st = arith.constant 1 : index
      %id = cont.lambda (%a: f64) -> (f64) {
        cont.yield %a : f64
      }
      %g = scf.for %i = %lb to %n step %st iter_args(%h = %id) -> (!cont.closure<(f64) -> (f64)>) {
        %ii = arith.index_cast %i : index to i64
        %fi = arith.sitofp %ii : i64 to f64
        %h2 = cont.lambda (%a: f64) -> (f64) {
          %b = cont.apply %h(%a) : !cont.closure<(f64) -> (f64)>
          %ten = arith.constant 10.0 : f64
          %c = arith.mulf %b, %ten : f64
          %d = arith.addf %c, %fi : f64
          cont.yield %d : f64
        }
        scf.yield %h2 : !cont.closure<(f64) -> (f64)>
      }
      %r = cont.apply %g(%x) : !cont.closure<(f64) -> (f64)>
      func.return %r : f64
    }"""
    assert run(src, "f", 7.0) == (7012.0,)


def test_recursive_closure():
    """A `rec` lambda calls itself: factorial."""
    src = """
    func.func @f(%n: i64) -> i64 {
      %fact = cont.lambda rec %self (%m: i64) -> (i64) {
        %one = arith.constant 1 : i64
        %le = arith.cmpi sle, %m, %one : i64
        %r = scf.if %le -> (i64) {
          scf.yield %one : i64
        } else {
          %m1 = arith.subi %m, %one : i64
          %s = cont.apply %self(%m1) : !cont.closure<(i64) -> (i64)>
          %p = arith.muli %m, %s : i64
          scf.yield %p : i64
        }
        cont.yield %r : i64
      }
      %r = cont.apply %fact(%n) : !cont.closure<(i64) -> (i64)>
      func.return %r : i64
    }"""
    assert run(src, "f", 10) == (3628800,)


def test_deep_recursion_does_not_hit_the_python_limit():
    src = """
    func.func @sum(%n: i64) -> i64 {
      %zero = arith.constant 0 : i64
      %done = arith.cmpi eq, %n, %zero : i64
      %r = scf.if %done -> (i64) {
        scf.yield %zero : i64
      } else {
        %one = arith.constant 1 : i64
        %m = arith.subi %n, %one : i64
        %s = func.call @sum(%m) : (i64) -> i64
        %t = arith.addi %n, %s : i64
        scf.yield %t : i64
      }
      func.return %r : i64
    }"""
    n = 20000
    assert run(src, "sum", n) == (n * (n + 1) // 2,)


def test_ten_thousand_nested_callbacks_in_a_loop():
    """A loop whose body shifts nests one callback per iteration."""
    src = f"""
    func.func @f(%n: index) -> f64 {{
      %r = cont.reset -> (f64) {{
        %lb = arith.constant 0 : index
        %st = arith.constant 1 : index
        %z = arith.constant 0.0 : f64
        scf.for %i = %lb to %n step %st {{
          %y = cont.shift %k : {K} {{
            %ans = cont.resume %k(%z) : {K}
            %one = arith.constant 1.0 : f64
            %b = arith.addf %ans, %one : f64
            cont.yield %b : f64
          }}
          scf.yield
        }}
        cont.yield %z : f64
      }}
      func.return %r : f64
    }}"""
    assert run(src, "f", 10000) == (10000.0,)


def test_adjoint_cells_in_a_shift():
    """The DESIGN's rewrite of `y = exp(x)`: d/dx exp(x) accumulated after resume."""
    kt = "!cont.k<(tensor<f64>, !ad.cell<tensor<f64>>) -> (tensor<f64>)>"
    src = f"""
    func.func @f(%x: tensor<f64>) -> (tensor<f64>, tensor<f64>) {{
      %xc = ad.zero_like %x : tensor<f64>
      %ans = cont.reset -> (tensor<f64>) {{
        %y, %yc = cont.shift %k : {kt} {{
          %v = ln.exp %x : tensor<f64>
          %c = ad.zero_like %v : tensor<f64>
          %a = cont.resume %k(%v, %c) : {kt}
          %g = ad.load %c : !ad.cell<tensor<f64>>
          %gx = ln.mul %g, %v : tensor<f64>, tensor<f64>
          ad.accum %xc, %gx : !ad.cell<tensor<f64>>
          cont.yield %a : tensor<f64>
        }}
        %one = ln.ones : tensor<f64>
        ad.accum %yc, %one : !ad.cell<tensor<f64>>
        cont.yield %y : tensor<f64>
      }}
      %dx = ad.load %xc : !ad.cell<tensor<f64>>
      func.return %ans, %dx : tensor<f64>, tensor<f64>
    }}"""
    val, grad = run(src, "f", np.float64(0.5))
    assert grad.shape == () and grad.dtype == np.float64
    np.testing.assert_allclose(val, np.exp(0.5))
    np.testing.assert_allclose(grad, np.exp(0.5))


def test_argument_shape_mismatch_is_reported():
    from lanterna.ir.interpreter import InterpreterError

    src = """
    func.func @f(%x: tensor<3xf32>) -> tensor<3xf32> {
      func.return %x : tensor<3xf32>
    }"""
    with pytest.raises(InterpreterError, match=r"expected shape \(3,\), got \(4,\)"):
        run(src, "f", np.zeros(4, np.float32))
