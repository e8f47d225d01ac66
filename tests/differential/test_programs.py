"""Differential test: random `ln` programs give the same numbers every way they run.

hypothesis draws well-typed programs over the public API (generator.py:
elementwise ops with broadcasting, reductions, matmul, reshapes and slices,
gathers, where, softmax and losses, scatter_add, casts; `ln.cond`,
`ln.fori_loop`, `ln.while_loop`, Python `if`/`while`/`for` on staged values,
`@ln.function` and `@ln.checkpoint` helpers) and runs each eagerly, under `ln.jit`
on the interpreter and on the cpu backend, against numpy; gradients against each
other and against finite differences in float64 (harness.py). A failure is
shrunk to a short program and printed as a `Program(...)`: keep it as a plain
test calling `harness.check_program(Program(...), seed)`.

CI runs a fixed set of examples (derandomized, so every run checks the same
programs, and their modules come from the compile cache after the first run).
A longer run draws new programs each time:

    LANTERNA_DIFFERENTIAL_EXAMPLES=2000 python -m pytest tests/differential/test_programs.py

(about 1.5 s a program on one core, most of it compiling C++: two processes of
1,000 each took 25 minutes on two cores; the 80 CI programs take about 70 s from
a cold compile cache, 8 s from a warm one).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lanterna as ln

# tests/ is on pytest's pythonpath: this folder's helpers import as `differential.*`.
from differential import generator, harness

CI_EXAMPLES = 80
EXAMPLES = int(os.environ.get("LANTERNA_DIFFERENTIAL_EXAMPLES") or CI_EXAMPLES)
LONG_RUN = "LANTERNA_DIFFERENTIAL_EXAMPLES" in os.environ


# A program that runs longer than this is a failure (a hang is a bug too), so it
# is shrunk and printed like any other; the slowest seen take a few seconds.
TIME_LIMIT_S = 120


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise AssertionError(f"the program ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@settings(
    max_examples=EXAMPLES,
    derandomize=not LONG_RUN,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(program=generator.programs(), seed=st.integers(0, 2**32 - 1))
def test_random_programs_agree_everywhere(program, seed):
    with time_limit(TIME_LIMIT_S):
        harness.check_program(program, seed)


def test_the_check_catches_a_wrong_gradient(monkeypatch):
    """The harness itself: a lanterna loss with the right value at the test point
    but a gradient off by one (it adds sum(x0 - x0's value)) is reported."""
    program = generator.Program(
        source="def program(x0):\n    v1 = X.tanh(x0) * x0\n    return v1\n",
        inputs=(generator.Spec("x0", (3,), "float64"),),
    )
    at = harness.inputs(program, seed=0)[0]
    real = harness.loss_fn

    def skewed(program, namespace):
        loss = real(program, namespace)
        if namespace != "ln":
            return loss
        return lambda *args: loss(*args) + ln.sum(args[0] - at)

    monkeypatch.setattr(harness, "loss_fn", skewed)
    monkeypatch.setattr(harness, "_JITTED", {})
    try:
        harness.check_program(program, seed=0)
    except harness.Mismatch as e:
        assert "gradient w.r.t. x0 on interp vs finite differences" in str(e)
    else:
        raise AssertionError("a wrong gradient was not reported")


def test_the_check_catches_a_wrong_value(monkeypatch):
    """The harness itself: when numpy's meaning of `X.tanh` is off by 1e-3 relative,
    the lanterna results are reported as different."""
    program = generator.Program(
        source="def program(x0):\n    return X.tanh(x0) + 1.0\n",
        inputs=(generator.Spec("x0", (2, 2), "float32"),),
    )
    real = harness.reference

    def skewed(force64=False):
        ns = real(force64)
        ns.tanh = lambda x: real(force64).tanh(x) * 1.001
        return ns

    monkeypatch.setattr(harness, "reference", skewed)
    monkeypatch.setattr(harness, "_FUNCTIONS", {})
    try:
        harness.check_program(program, seed=3)
    except harness.Mismatch as e:
        assert "eager ln, output 0" in str(e)
    else:
        raise AssertionError("a wrong value was not reported")


def test_a_program_over_the_time_limit_fails():
    import time

    with pytest.raises(AssertionError, match="ran for more than 1 s"), time_limit(1):
        time.sleep(5)
