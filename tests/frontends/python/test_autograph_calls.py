"""Python `if`/`while` on staged values inside functions that a jitted (or
differentiated) function calls: the callees are converted when called, as
tf.function's autograph does, and where they cannot be the error names them."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import lanterna as ln
from lanterna.frontends.python import autograph

X = np.array([0.3, -0.2, 0.4])


def line_of(marker: str) -> int:
    with open(__file__) as f:
        for i, line in enumerate(f.read().splitlines(), start=1):
            if line.rstrip().endswith(f"# {marker}"):
                return i
    raise AssertionError(marker)


def flip(x):
    if ln.sum(x) > 0:
        return x * 2.0
    return -x


def flip_ref(x):
    return x * 2.0 if x.sum() > 0 else -x


def grow(x):
    y = flip(x)
    while ln.sum(y * y) < 10.0:
        y = y * 1.5 + 0.1
    return y


def grow_ref(x):
    y = flip_ref(x)
    while (y * y).sum() < 10.0:
        y = y * 1.5 + 0.1
    return y


class Scaler:
    def __init__(self, limit):
        self.limit = limit

    def clip(self, x):
        if ln.max(x) > self.limit:
            x = x - self.limit
        return x

    def __call__(self, x):
        return self.clip(x) + 1.0


class DoubleScaler(Scaler):
    def clip(self, x):
        if self.limit > 0:  # a Python condition, still a branch of its own
            x = super().clip(x) * 2.0
        return x


def scaler_ref(x, limit, factor=1.0):
    return (x - limit if x.max() > limit else x) * factor + 1.0


INPUTS = [X, -X, np.array([3.0, 1.0, -0.5])]


@pytest.mark.parametrize("backend", ["interp", "cpu"])
def test_helpers_with_if_and_while_are_staged(backend):
    f = ln.jit(lambda x: grow(x) + flip(x), backend=backend)
    ir = str(f.lower(X))
    assert ir.count("scf.if") == 2 and ir.count("scf.while") == 1
    for x in INPUTS:
        np.testing.assert_allclose(f(x), grow_ref(x) + flip_ref(x), rtol=1e-6)


@pytest.mark.parametrize("backend", ["interp", "cpu"])
def test_methods_callable_objects_and_partials(backend):
    def f(x):
        return (
            Scaler(0.35)(x),
            DoubleScaler(0.35).clip(x) + 1.0,
            functools.partial(Scaler.clip, Scaler(0.0))(x) + 1.0,
        )

    jitted = ln.jit(f, backend=backend)
    assert str(jitted.lower(X)).count("scf.if") == 3
    for x in INPUTS:
        got = jitted(x)
        np.testing.assert_allclose(got[0], scaler_ref(x, 0.35), rtol=1e-6)
        np.testing.assert_allclose(got[1], scaler_ref(x, 0.35, 2.0), rtol=1e-6)
        np.testing.assert_allclose(got[2], scaler_ref(x, 0.0), rtol=1e-6)


def test_closures_decorated_helpers_and_lambdas():
    scale = 3.0

    def traced(fn):
        @functools.wraps(fn)
        def wrapper(*args):
            return fn(*args) + 0.0

        return wrapper

    @traced
    def scaled(x):
        return x * scale if ln.sum(x) > 0 else x / scale

    pick = lambda x: x if ln.sum(x) > 0 else -x
    first, second = (
        (lambda x: x if ln.sum(x) > 0 else 2 * x),
        (lambda x: -x if ln.sum(x) > 0 else x),
    )

    f = ln.jit(lambda x: (scaled(x), pick(x), first(x), second(x)), backend="interp")
    for x in INPUTS:
        pos = x.sum() > 0
        want = (
            x * 3.0 if pos else x / 3.0,
            x if pos else -x,
            x if pos else 2 * x,
            -x if pos else x,
        )
        for g, w in zip(f(x), want):
            np.testing.assert_allclose(g, w, rtol=1e-12)


def test_gradients_through_converted_helpers():
    def loss(x):
        return ln.sum(ln.tanh(grow(x)) * Scaler(0.1)(x))

    for x in INPUTS:
        report = ln.check_grads(loss, [x])
        assert report is not None and report.error < 1e-6
    # ln.grad of a lambda converts what the lambda calls, under an enclosing jit too.
    g = ln.jit(lambda x: ln.grad(lambda w: ln.sum(flip(w) * w))(x), backend="interp")
    for x in INPUTS:
        np.testing.assert_allclose(g(x), 4.0 * x if x.sum() > 0 else -2.0 * x, rtol=1e-12)


def test_a_helper_is_rewritten_once_per_code():
    ln.jit(lambda x: flip(x) + flip(x * 2.0), backend="interp")(X)
    entry = autograph.code_entry(flip.__code__)
    assert entry is not None and entry.converted is not None
    ln.jit(lambda x: flip(-x), backend="interp")(X)
    assert autograph.code_entry(flip.__code__) is entry


def test_helper_without_source_names_the_function_and_the_line():
    namespace: dict = {"ln": ln}
    source = "def nosource(x):\n    if ln.sum(x) > 0:\n        return x\n    return -x\n"
    exec(source, namespace)  # noqa: S102
    nosource = namespace["nosource"]

    def f(x):
        return nosource(x)

    with pytest.raises(ln.TraceError, match=r"'nosource' .* its source is not available") as info:
        ln.jit(f, backend="interp")(X)
    assert info.value.filename == "<string>" and info.value.lineno == 2


def test_helper_called_from_unconverted_code_says_to_decorate_it():
    def f(x):
        return next(map(flip, [x]))

    with pytest.raises(
        ln.TraceError,
        match=r"'flip' \(test_autograph_calls.py:\d+\) was called "
        r"from code lanterna does not convert .* @ln.function",
    ) as info:
        ln.jit(f, backend="interp")(X)
    assert info.value.filename == __file__ and info.value.lineno == flip.__code__.co_firstlineno + 1
    # As suggested: a staged function is converted wherever it is called from.
    staged = ln.function(flip)
    f2 = ln.jit(lambda x: next(map(staged, [x])), backend="interp")
    np.testing.assert_allclose(f2(X), flip_ref(X), rtol=1e-12)


def test_helper_that_cannot_be_converted_says_why():
    def h(x):
        for i in range(3):
            if i == 5:
                break
        else:
            pass
        if ln.sum(x) > 0:  # UNCONVERTIBLE
            return x
        return -x

    with pytest.raises(
        ln.TraceError, match=r"could not convert 'test_.*\.h' .*`break` and `else`"
    ) as info:
        ln.jit(lambda x: h(x), backend="interp")(X)
    assert info.value.lineno == line_of("UNCONVERTIBLE")


@pytest.mark.parametrize("backend", ["interp", "cpu"])
def test_functions_given_to_the_combinators_are_converted(backend):
    # Branches, loop bodies and checkpointed functions passed straight to
    # ln.cond / ln.while_loop / ln.fori_loop / ln.checkpoint stage their own
    # Python `if` on staged values.
    def body(i, y):
        return flip(y) + 0.1

    def keep_going(y):
        if ln.sum(y) > 100.0:
            return False
        return ln.sum(y * y) < 50.0

    def f(x):
        y = ln.cond(ln.sum(x) > 0, flip, lambda v: flip(-v), x)
        y = ln.fori_loop(0, 3, body, y)
        y = ln.while_loop(keep_going, lambda v: v * 1.5 + 0.1, y)
        return ln.checkpoint(flip)(y)

    def ref(x):
        y = flip_ref(x) if x.sum() > 0 else flip_ref(-x)
        for _ in range(3):
            y = flip_ref(y) + 0.1
        while not y.sum() > 100.0 and (y * y).sum() < 50.0:
            y = y * 1.5 + 0.1
        return flip_ref(y)

    for x in (X, -X):
        np.testing.assert_allclose(ln.jit(f, backend=backend)(x), ref(x), rtol=1e-12)
