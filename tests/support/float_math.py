"""What the tests of every C-like backend's float math share: the inputs where
vectorizable approximations of exp, tanh and sigmoid go wrong, numpy's answers,
and how close an answer must be. The cpu tests run them through `ln.jit`, the
C-like tests through the scalar header alone. `FLOAT_MATH` is the shared instance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

SPECIAL = [np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-8, -1e-8, 0.62, 0.625, 0.63, -0.63, 1.0,
           8.9, 9.0, 9.5, 20.0, -20.0, 88.0, 88.7, 88.72, 88.73, 89.0, -87.3, -87.34, -88.0,
           -100.0, -104.0, 50.0, -50.0]  # fmt: skip


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return (1 / (1 + np.exp(-x.astype(np.float64)))).astype(np.float32)


@dataclass
class FloatMath:
    """float32 inputs (the special values, then normal spreads), numpy per function."""

    inputs: np.ndarray
    references: dict[str, Callable[[np.ndarray], np.ndarray]] = field(
        default_factory=lambda: {"exp": np.exp, "tanh": np.tanh, "sigmoid": _sigmoid}
    )

    def check(self, name: str, got: np.ndarray) -> None:
        with np.errstate(over="ignore"):
            want = self.references[name](self.inputs)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        finite = np.isfinite(want)
        # Two units in the last place; exp's results below 2^-126 are flushed to 0.
        np.testing.assert_allclose(got[finite], want[finite], rtol=3e-7, atol=1.2e-38)


def _inputs() -> np.ndarray:
    rng = np.random.default_rng(0)
    spread = np.concatenate([rng.normal(0, s, 4000) for s in (0.3, 3.0, 30.0)])
    return np.concatenate([np.array(SPECIAL), spread]).astype(np.float32)


FLOAT_MATH = FloatMath(_inputs())
