"""End-to-end training of the paper's four models (benchmarks/models) at small
sizes: on the interpreter and on the cpu backend each whole training step is one
compiled call, the loss falls, and both backends compute the same losses."""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

MODELS_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "models"
# xDSL installs a top-level `benchmarks` package, so ours is loaded under its own name.
PACKAGE = "lanterna_benchmark_models"


def load(name: str) -> ModuleType:
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, MODELS_DIR / "__init__.py", submodule_search_locations=[str(MODELS_DIR)]
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{PACKAGE}.{name}")


# model -> (steps, window): the loss is averaged over the first and the last `window` steps.
RUNS = {"rnn": (40, 5), "lstm": (40, 5), "treelstm": (40, 8), "cnn": (80, 10)}


def train(name: str, backend: str) -> tuple[list[float], object]:
    model = load(name)
    config = model.Config.small()
    rng = np.random.default_rng(0)
    state = model.init(rng, config)
    step = model.make_step(config, backend)
    data = model.batches(rng, config)
    steps, _ = RUNS[name]
    if name == "treelstm":
        # Trees differ in size, so the loss of one tree says little: cycle a fixed few.
        data = itertools.cycle(list(itertools.islice(data, 4)))
    losses = []
    for _ in range(steps):
        loss, state = step(state, next(data))
        losses.append(float(loss))
    assert step.trace_count == 1  # one compiled program for every step
    assert np.isfinite(losses).all()
    return losses, step


@pytest.mark.parametrize("name", sorted(RUNS))
def test_model_trains_on_interp_and_cpu_alike(name):
    runs = {backend: train(name, backend)[0] for backend in ("interp", "cpu")}
    _, window = RUNS[name]
    for backend, losses in runs.items():
        first, last = np.mean(losses[:window]), np.mean(losses[-window:])
        assert last < 0.9 * first, (backend, losses)
    np.testing.assert_allclose(runs["cpu"][:5], runs["interp"][:5], rtol=1e-3)


def lowered(name: str, **config_changes: object) -> str:
    model = load(name)
    config = model.Config.small(**config_changes)
    rng = np.random.default_rng(1)
    state = model.init(rng, config)
    return str(model.make_step(config, "interp").lower(state, next(model.batches(rng, config))))


@pytest.mark.parametrize("name", ["rnn", "lstm"])
def test_sequence_models_loop_instead_of_unrolling(name):
    short, long = lowered(name, seq=4), lowered(name, seq=12)
    assert "scf.for" in short
    # The program does not grow with the sequence: the loop body holds one cell.
    assert short.count("ln.tanh") == long.count("ln.tanh") > 0


def test_treelstm_is_one_recursive_function():
    ir = lowered("treelstm")
    body = ir.split("func.func @tree_node")[1].split("func.func @")[0]
    assert len(re.findall(r"func\.call @tree_node\(", body)) == 2
