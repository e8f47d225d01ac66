"""A differentiated loop is a chain of callbacks; very long ones must not crash.

The generated code checks its stack on every function and closure entry; when
the calling thread's stack runs out, the call is rerun on a thread with a large
stack. The recurrence in ad_for.mlir converges, so the gradients after 10,000
and 60,000 iterations are the same numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lanterna.backends.cpu_cpp.backend import CpuBackend
from lanterna.ir import parse_module
from lanterna.passes import run_pipeline

SOURCE = (Path(__file__).parents[2] / "passes" / "inputs" / "ad_for.mlir").read_text()


def gradients(iterations: int) -> tuple[np.ndarray, ...]:
    module = parse_module(SOURCE.replace("100 : index", f"{iterations} : index"))
    run_pipeline(module, "reverse-ad{func=f argnums=0,1}," + CpuBackend.default_pipeline)
    return CpuBackend().compile(module, "f_grad")(np.array(0.3), np.array(0.5))


def test_sixty_thousand_nested_callbacks_run_on_a_big_stack(cache_dir):
    short, long = gradients(10_000), gradients(60_000)
    for s, g in zip(short, long):
        assert np.isfinite(g)
        np.testing.assert_allclose(g, s, rtol=1e-12)
