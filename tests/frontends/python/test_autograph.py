"""Python `if`/`while`/`for`/`break`/`continue`/`return` inside @ln.jit: staged on
staged values, plain Python on Python values, errors at the user's line."""

from __future__ import annotations

import numpy as np
import pytest

import lanterna as ln
from lanterna.frontends.python.autograph import convert

RNG = np.random.default_rng(5)


def line_of(marker: str) -> int:
    with open(__file__) as f:
        for i, line in enumerate(f.read().splitlines(), start=1):
            if line.rstrip().endswith(f"# {marker}"):
                return i
    raise AssertionError(marker)


# --- if ---------------------------------------------------------------------------------------


@ln.jit
def piecewise(x):
    s = ln.sum(x)
    if s > 1.0:
        y = x * 2.0
    elif s > -1.0:
        y = x * x
    else:
        y = -x
    return y + 1.0


def test_if_elif_else_on_staged_values():
    ir = str(piecewise.lower(np.ones(2)))
    assert ir.count("scf.if") == 2
    for x in ([1.0, 2.0], [0.1, 0.2], [-3.0, 0.5]):
        x = np.array(x)
        s = x.sum()
        want = (x * 2 if s > 1 else x * x if s > -1 else -x) + 1
        np.testing.assert_allclose(piecewise(x), want)


def test_if_on_python_values_is_plain_python():
    @ln.jit(static_argnums=1)
    def f(x, mode):
        if mode == "double":
            x = x * 2.0
        else:
            x = x + 1.0
        return x

    assert "scf.if" not in str(f.lower(np.ones(2), "double"))
    np.testing.assert_allclose(f(np.ones(2), "double"), [2.0, 2.0])
    np.testing.assert_allclose(f(np.ones(2), "other"), [2.0, 2.0])


def test_return_inside_branches():
    @ln.jit
    def f(x):
        if x[0] > 0:
            if x[1] > 0:
                return x * 3.0
            x = x - 1.0
        elif x[1] > 0:
            return -x
        return x * 10.0

    def ref(x):
        if x[0] > 0:
            if x[1] > 0:
                return x * 3.0
            x = x - 1.0
        elif x[1] > 0:
            return -x
        return x * 10.0

    assert f.trace_count == 0
    for x in ([1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]):
        np.testing.assert_allclose(f(np.array(x)), ref(np.array(x)))
    assert f.trace_count == 1


def test_conditional_expression_and_boolean_operators():
    @ln.jit
    def f(x):
        y = x * 2.0 if (x[0] > 0 and not x[1] > 0) or x[2] > 5 else -x
        return y

    np.testing.assert_allclose(f(np.array([1.0, -1.0, 0.0])), [2.0, -2.0, 0.0])
    np.testing.assert_allclose(f(np.array([1.0, 1.0, 0.0])), [-1.0, -1.0, 0.0])
    np.testing.assert_allclose(f(np.array([-1.0, 1.0, 6.0])), [-2.0, 2.0, 12.0])


def test_variable_from_one_branch_used_after_is_an_error():
    @ln.jit
    def f(x):
        if x[0] > 0:
            y = x * 2.0
        return y  # ONLY_ONE

    with pytest.raises(ln.TraceError, match=r"'y' is defined in only one branch") as info:
        f(np.ones(2))
    assert info.value.filename == __file__ and info.value.lineno == line_of("ONLY_ONE")


def test_temporaries_of_one_branch_are_fine():
    @ln.jit
    def f(x):
        if x[0] > 0:
            t = x * 2.0
            x = t[:1] * t[1:]
        else:
            x = x[1:]
        return x

    np.testing.assert_allclose(f(np.array([1.0, 3.0])), [12.0])


def test_grad_through_python_if():
    @ln.jit
    def f(x, w):
        h = ln.tanh(x * w)
        if ln.sum(h) > 0:
            out = ln.sum(h * h)
        else:
            out = ln.sum(h) * 3.0
        return out

    x, w = RNG.standard_normal(4), RNG.standard_normal(4)
    ln.check_grads(f, [x, w])
    ln.check_grads(f, [x, -w])


# --- while ------------------------------------------------------------------------------------


@ln.jit
def until_norm(x, w):
    steps = 0
    while ln.sum(x * x) < 9.0:
        x = x * 1.3 + ln.tanh(x * w)
        steps = steps + 1
    return ln.sum(x * w), steps


def test_while_on_staged_condition():
    assert "scf.while" in str(until_norm.lower(np.ones(2), np.ones(2)))
    x, w = np.array([0.3, 0.1]), np.array([0.5, -0.2])
    _, steps = until_norm(x, w)
    v, n = x, 0
    while (v * v).sum() < 9.0:
        v, n = v * 1.3 + np.tanh(v * w), n + 1
    assert int(steps) == n > 3


def test_grad_through_python_while_with_data_dependent_trip_count():
    x, w = np.array([0.3, 0.1]), np.array([0.5, -0.2])
    ln.check_grads(lambda x, w: until_norm(x, w)[0], [x, w])


def test_while_on_python_values_unrolls():
    @ln.jit
    def f(x):
        n = 0
        while n < 3:
            x = x * 2.0
            n += 1
        return x

    assert "scf.while" not in str(f.lower(np.ones(2)))
    np.testing.assert_allclose(f(np.ones(2)), [8.0, 8.0])


def test_loop_temporary_used_after_a_staged_loop_is_an_error():
    @ln.jit
    def f(x):
        while ln.sum(x) < 10.0:
            t = x * 2.0
            x = t
        return t  # AFTER_LOOP

    with pytest.raises(ln.TraceError, match="only inside a staged `while` loop") as info:
        f(np.ones(2))
    assert info.value.lineno == line_of("AFTER_LOOP")


# --- for, break, continue ---------------------------------------------------------------------


@ln.jit
def partial_sum(xs, w):
    acc = ln.zeros_like(w)
    for i in range(xs.shape[0]):
        acc = ln.tanh(acc * w + xs[i])
        if ln.sum(acc * acc) > 1.0:
            break
    return ln.sum(acc * w)


def partial_sum_numpy(xs, w):
    acc = np.zeros_like(w)
    for i in range(xs.shape[0]):
        acc = np.tanh(acc * w + xs[i])
        if (acc * acc).sum() > 1.0:
            break
    return (acc * w).sum()


def test_break_out_of_for_on_a_staged_condition():
    xs, w = RNG.standard_normal((6, 2)) * 0.6, np.array([0.9, 1.1])
    assert float(partial_sum(xs, w)) == pytest.approx(partial_sum_numpy(xs, w), rel=1e-12)
    assert float(partial_sum(xs * 0.01, w)) == pytest.approx(
        partial_sum_numpy(xs * 0.01, w), rel=1e-12
    )


def test_grad_through_break():
    xs, w = RNG.standard_normal((6, 2)) * 0.6, np.array([0.9, 1.1])
    ln.check_grads(partial_sum, [xs, w])


def test_for_over_staged_range_and_continue():
    @ln.jit
    def f(xs, n):
        total = 0.0
        for i in range(n):
            if xs[i] < 0:
                continue
            total = total + xs[i] * xs[i]
        return total

    xs = np.array([1.0, -2.0, 3.0, -4.0, 5.0])
    ir = str(f.lower(xs, np.int64(3)))
    assert "scf.for" in ir
    assert float(f(xs, np.int64(3))) == 10.0
    assert float(f(xs, np.int64(5))) == 35.0
    assert f.trace_count == 1


def test_grad_through_for_over_staged_range():
    @ln.jit
    def f(xs, w, n):
        h = ln.zeros_like(w)
        for i in range(n[0]):
            h = ln.tanh(h * w + xs[i])
        return ln.sum(h)

    ln.check_grads(
        f, [RNG.standard_normal((4, 3)), RNG.standard_normal(3), np.array([3])], argnums=(0, 1)
    )


def test_staged_break_in_for_over_a_list_is_an_error():
    @ln.jit
    def f(x):
        for s in [1.0, 2.0, 3.0]:  # OVER_LIST
            x = x * s
            if ln.sum(x) > 4.0:
                break
        return x

    with pytest.raises(ln.TraceError, match="anything but range") as info:
        f(np.ones(2))
    assert info.value.lineno == line_of("OVER_LIST")


# --- what cannot be staged --------------------------------------------------------------------


def test_yield_under_staged_condition_is_an_error():
    def gen(x):
        if ln.sum(x) > 0:  # YIELD
            yield x
        yield -x

    g = convert(gen)

    @ln.jit
    def f(x):
        return next(iter(g(x)))

    with pytest.raises(ln.TraceError, match="yield") as info:
        f(np.ones(2))
    assert info.value.filename == __file__ and info.value.lineno == line_of("YIELD")


def test_try_around_staged_control_flow_is_an_error():
    @ln.jit
    def f(x):
        try:
            if x[0] > 0:  # TRY
                x = x * 2.0
        finally:
            pass
        return x

    with pytest.raises(ln.TraceError, match="try") as info:
        f(np.ones(2))
    assert info.value.lineno == line_of("TRY")


def test_functions_without_source_are_left_alone():
    fn = eval("lambda x: x + 1")
    assert convert(fn) is fn
    square = lambda x: x * x
    assert convert(square) is square


def test_converted_function_keeps_closure_and_name():
    scale = [2.0]

    def f(x):
        if x[0] > 0:
            x = x * scale[0]
        return x

    g = convert(f)
    assert g is not f and g.__name__ == "f"
    scale[0] = 5.0
    np.testing.assert_allclose(ln.jit(f)(np.ones(2)), [5.0, 5.0])


def test_grad_of_an_undecorated_function_with_python_control_flow():
    """ln.grad rewrites the function it differentiates, as ln.jit does."""

    def grow(x):
        y = x
        while ln.sum(y * y) < 10.0:
            y = y * 1.5 + 0.1
        if ln.sum(y) > 0:
            return ln.sum(ln.tanh(y))
        return ln.sum(y)

    report = ln.check_grads(grow, [np.array([0.3, 0.5])])
    assert report is not None and report.error < 1e-6
    _, vjp_fn = ln.vjp(grow, np.array([0.3, 0.5]))
    (g,) = vjp_fn(np.array(1.0))
    np.testing.assert_allclose(g, ln.grad(grow)(np.array([0.3, 0.5])), rtol=1e-12)
