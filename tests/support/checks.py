"""Small helpers the IR, pass and backend tests share: run a function on the
reference interpreter, differentiate by central finite differences, count ops,
and compare a result with a float64 numpy reference."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp

from lanterna.ir.interpreter import Interpreter

# Relative tolerance of a result against its float64 reference, by result type.
RTOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}


def run(module: ModuleOp, fn: str, *args: Any) -> tuple[Any, ...]:
    """`fn(*args)` on the reference interpreter."""
    return Interpreter(module).call(fn, *args)


def finite_differences(
    f: Callable[..., Any], args: Sequence[np.ndarray], eps: float = 1e-6
) -> list[np.ndarray]:
    """Central differences of a scalar function in float64, one array per argument."""
    grads = []
    for i, a in enumerate(args):
        g = np.zeros_like(a, dtype=np.float64)
        for idx in np.ndindex(np.shape(a)):
            plus = [np.array(x, dtype=np.float64, copy=True) for x in args]
            minus = [np.array(x, dtype=np.float64, copy=True) for x in args]
            plus[i][idx] += eps
            minus[i][idx] -= eps
            g[idx] = (float(f(*plus)) - float(f(*minus))) / (2 * eps)
        grads.append(g)
    return grads


def ops_named(module: ModuleOp, name: str) -> int:
    """How many ops called `name` the module holds, nested ones included."""
    return sum(1 for op in module.walk() if op.name == name)


def function(module: ModuleOp, name: str) -> func.FuncOp:
    """The module's `func.func @name`."""
    return next(o for o in module.ops if isinstance(o, func.FuncOp) and o.sym_name.data == name)


def as_f64(v: Any) -> Any:
    """Float inputs widened to float64 for a reference; everything else unchanged."""
    arr = np.asarray(v)
    return arr.astype(np.float64) if np.issubdtype(arr.dtype, np.floating) else v


def assert_matches_reference(out: Any, expected: np.ndarray) -> None:
    """Floats within a relative tolerance of the float64 reference (scaled by its
    magnitude for entries near zero); everything else exactly."""
    actual = np.asarray(out)
    assert actual.shape == expected.shape
    if np.issubdtype(actual.dtype, np.floating):
        rtol = RTOL[actual.dtype]
        scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)
    else:
        np.testing.assert_array_equal(actual, expected)
