"""Shared helpers for pass tests: parse inputs, run pipelines, check gradients
against central finite differences on the reference interpreter."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects.builtin import ModuleOp

from lanterna.ir import parse_module
from lanterna.ir.interpreter import Interpreter
from lanterna.passes import run_pipeline

INPUTS = Path(__file__).parent / "inputs"


def load(name: str) -> ModuleOp:
    path = INPUTS / name
    module = parse_module(path.read_text(), str(path))
    module.verify()
    return module


def run(module: ModuleOp, fn: str, *args: np.ndarray) -> tuple[np.ndarray, ...]:
    return Interpreter(module).call(fn, *args)


def finite_differences(
    f: Callable[..., np.ndarray], args: Sequence[np.ndarray], eps: float = 1e-6
) -> list[np.ndarray]:
    """Central differences of a scalar function in float64, one array per argument."""
    grads = []
    for i, a in enumerate(args):
        g = np.zeros_like(a, dtype=np.float64)
        for idx in np.ndindex(a.shape):
            plus = [np.array(x, dtype=np.float64, copy=True) for x in args]
            minus = [np.array(x, dtype=np.float64, copy=True) for x in args]
            plus[i][idx] += eps
            minus[i][idx] -= eps
            g[idx] = (float(f(*plus)) - float(f(*minus))) / (2 * eps)
        grads.append(g)
    return grads


def ops_named(module: ModuleOp, name: str) -> int:
    return sum(1 for op in module.walk() if op.name == name)


@pytest.fixture
def passes_lib():
    """The helpers above, for test modules (which are not importable by name)."""

    class Lib:
        pass

    lib = Lib()
    lib.load = load  # type: ignore[attr-defined]
    lib.run = run  # type: ignore[attr-defined]
    lib.run_pipeline = run_pipeline  # type: ignore[attr-defined]
    lib.finite_differences = finite_differences  # type: ignore[attr-defined]
    lib.ops_named = ops_named  # type: ignore[attr-defined]
    return lib
