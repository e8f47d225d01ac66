"""Indices at run time, on the interpreter and the cpu backend alike: negative ones
count from the end (numpy's rule) in gathers and their adjoint scatter-adds, and
one out of range raises `LanternaIndexError` (an `IndexError`) whose message names
the user's line, from the op's location in the IR."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import lanterna as ln
from lanterna.backends import get_backend
from lanterna.errors import LanternaIndexError
from lanterna.ir import parse_module

BACKENDS = [
    "interp",
    pytest.param(
        "cpu", marks=pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")
    ),
]


@pytest.fixture
def backend(request: pytest.FixtureRequest, cache_dir) -> str:
    return request.param


pytestmark = pytest.mark.parametrize("backend", BACKENDS, indirect=True)

W = np.arange(12.0).reshape(4, 3)


def test_staged_negative_indices_wrap(backend: str):
    f = ln.jit(lambda W, i: W[i], backend=backend)
    np.testing.assert_array_equal(f(W, np.array([1, -1])), W[[1, -1]])
    np.testing.assert_array_equal(f(W, np.array([-4, 3])), W[[0, 3]])
    take = ln.jit(lambda W, i: ln.take(W, i, axis=1), backend=backend)
    np.testing.assert_array_equal(take(W, np.array([[-1, 0], [2, -3]])), W[:, [[2, 0], [2, 0]]])


@pytest.mark.parametrize("bad", [4, -5])
def test_out_of_range_stays_an_error(backend: str, bad: int):
    f = ln.jit(lambda W, i: W[i], backend=backend)
    with pytest.raises(LanternaIndexError, match=f"index {bad} is out of range for a table of 4"):
        f(W, np.array([0, bad]))
    assert issubclass(LanternaIndexError, IndexError)


def test_gradients_through_wrapped_gathers(backend: str):
    def loss(W, i):
        return ln.sum(ln.tanh(W[i]) * W[i])

    i = np.array([-1, 3, 0, -4, 2])  # rows 3 and 0 twice each
    got = ln.jit(ln.grad(loss), backend=backend)(W / 10, i)
    # numpy's own gather wraps too: central differences of the same loss
    eps, w = 1e-6, W / 10
    want = np.zeros_like(w)
    for k in np.ndindex(w.shape):
        hi, lo = w.copy(), w.copy()
        hi[k] += eps
        lo[k] -= eps
        f_hi, f_lo = (np.sum(np.tanh(v[i]) * v[i]) for v in (hi, lo))
        want[k] = (f_hi - f_lo) / (2 * eps)
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9)


GATHER = """
func.func @f(%t: tensor<5x2xf64>, %i: tensor<3xi64>) -> tensor<3x2xf64> {
  %y = ln.gather %t, %i : tensor<5x2xf64>, tensor<3xi64> loc("model.py":12:7)
  func.return %y : tensor<3x2xf64>
}
"""

SCATTER = """
func.func @f(%u: tensor<3x2xf64>, %i: tensor<3xi64>) -> tensor<5x2xf64> {
  %y = ln.scatter_add %u, %i : tensor<3x2xf64>, tensor<3xi64> -> tensor<5x2xf64> loc("a \\"b\\".py":3:1)
  func.return %y : tensor<5x2xf64>
}
"""

LOSS = """
func.func @f(%p: tensor<2x3xf32>, %t: tensor<2xi32>) -> tensor<f32> {
  %l = ln.nll_loss %p, %t {reduction = "sum"} : tensor<2x3xf32>, tensor<2xi32> loc("train.py":40:3)
  func.return %l : tensor<f32>
}
"""


@pytest.mark.parametrize(
    "source, args, message",
    [
        (
            GATHER,
            (np.zeros((5, 2)), np.array([1, -6, 2])),
            "model.py:12: 'ln.gather': index -6 is out of range for a table of 5 rows",
        ),
        (
            SCATTER,
            (np.zeros((3, 2)), np.array([0, 5, 1])),
            "a \"b\".py:3: 'ln.scatter_add': index 5 is out of range for a result of 5 rows",
        ),
        (
            # Class targets do not wrap: -1 is no class.
            LOSS,
            (np.zeros((2, 3), np.float32), np.array([0, -1], np.int32)),
            "train.py:40: 'ln.nll_loss': index -1 is out of range for 3 classes",
        ),
    ],
    ids=["gather", "scatter_add", "nll_loss"],
)
def test_index_errors_name_the_ops_line(backend: str, source: str, args, message: str):
    f = get_backend(backend).compile(parse_module(source), "f")
    with pytest.raises(LanternaIndexError) as info:
        f(*args)
    assert str(info.value) == message


def test_the_adjoint_scatter_names_the_gathers_line(backend: str):
    source = """
    func.func @f(%t: tensor<5x2xf64>, %i: tensor<3xi64>) -> tensor<f64> {
      %y = ln.gather %t, %i : tensor<5x2xf64>, tensor<3xi64> loc("model.py":12:7)
      %s = ln.sum %y {axes = array<i64: 0, 1>} : tensor<3x2xf64>
      func.return %s : tensor<f64>
    }
    """
    from lanterna.passes import run_pipeline

    module = parse_module(source)
    run_pipeline(module, "reverse-ad{func=f argnums=0},lower-continuations,cse,dce")
    scatters = [op for op in module.walk() if op.name == "ln.scatter_add"]
    assert [str(op.location) for op in scatters] == ['loc("model.py":12:7)']
    grad = get_backend(backend).compile(module, "f_grad")
    _, dt = grad(np.ones((5, 2)), np.array([-1, 0, -1]))
    np.testing.assert_array_equal(dt, [[1, 1], [0, 0], [0, 0], [0, 0], [2, 2]])
    with pytest.raises(LanternaIndexError, match=r"^model\.py:12: 'ln\.gather': index 7 "):
        grad(np.ones((5, 2)), np.array([7, 0, 1]))


def test_traced_index_error_names_the_users_line(backend: str):
    import inspect

    f = ln.jit(lambda W, i: W[i], backend=backend)
    line = inspect.currentframe().f_lineno - 1
    with pytest.raises(
        LanternaIndexError, match=rf"test_index_errors\.py:{line}: 'ln\.gather': index 9 "
    ):
        f(W, np.array([9]))
    g = ln.jit(ln.grad(lambda W, i: ln.sum(W[i])), backend=backend)
    line = inspect.currentframe().f_lineno - 1
    with pytest.raises(LanternaIndexError, match=rf"test_index_errors\.py:{line}: "):
        g(W, np.array([9]))
