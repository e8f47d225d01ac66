"""What each optional pass of the cpu pipeline buys on the LSTM training step.

Compiles the LSTM character model's training step (benchmarks/models/lstm.py,
forward + backward + Adagrad update in one call) with the cpu backend's default
pipeline, and with that pipeline less one optional pass at a time
(`lower-continuations` is required and always runs), and with the default
pipeline but buffer reuse off (`-buffer-reuse`: `plan-buffers{reuse=false}`,
which still writes results into the outputs). For every variant:

* ops in the compiled module after the pipeline, by dialect (`ln`, `ad`, `cont`);
  ops inside an `ln.fused` body are not counted (they are one kernel), so the
  fused op itself counts once;
* `ad.zero_like`/`ad.zero_cell` ops left (zero-filled buffers) and their bytes
  (elements x element size, summed), a proxy for the bytes allocated for adjoints;
* bytes allocated per step, from the arena of the compiled step: requested by all
  allocations, and the footprint (what the step took from the arena's chunks,
  after buffer reuse);
* median ms per training step (the variants take their steps in turn), and the loss after the last step (all variants
  start from the same weights and see the same batches).

    python benchmarks/bench_passes.py [--quick] [--steps N] [--batch B] [--out DIR]

Paper sizes: hidden 50, sequence 20, batch 20 (`--batch 1` for the other one);
`--quick` runs tiny sizes for 3 steps (what CI runs). Writes `passes.json` and
`passes.md` into DIR (default benchmarks/results). Ratios compare within one run.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
# xDSL installs a top-level `benchmarks` package, so ours are loaded under their own name.
MODELS_PACKAGE = "lanterna_benchmark_models"
REQUIRED = ("lower-continuations",)
# Passes measured by a variant of their own instead of by their removal: without
# `plan-buffers` nothing is released nor written into the outputs; `-buffer-reuse`
# turns off the releases alone.
OWN_VARIANT = ("plan-buffers",)
DIALECTS = ("ln", "ad", "cont")


def load_model(name: str) -> Any:
    if MODELS_PACKAGE not in sys.modules:
        folder = HERE / "models"
        spec = importlib.util.spec_from_file_location(
            MODELS_PACKAGE, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {folder}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[MODELS_PACKAGE] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{MODELS_PACKAGE}.{name}")


def no_reuse_pipeline(pipeline: str) -> str:
    """`pipeline` with buffer reuse off: its `plan-buffers` told `reuse=false`."""
    passes = [p.strip() for p in pipeline.split(",") if p.strip()]
    return ",".join("plan-buffers{reuse=false}" if p == "plan-buffers" else p for p in passes)


def variants(default: str) -> list[tuple[str, str]]:
    """(label, pipeline): the default, then the default without each optional pass."""
    passes = [p.strip() for p in default.split(",") if p.strip()]
    out = [("default", ",".join(passes))]
    for p in passes:
        if p.split("{", 1)[0] in REQUIRED + OWN_VARIANT:
            continue
        out.append((f"-{p}", ",".join(q for q in passes if q != p)))
    return out


# --- static measures ----------------------------------------------------------------------


def _inside_fused(op: Any) -> bool:
    parent = op.parent_op()
    while parent is not None:
        if parent.name == "ln.fused":
            return True
        parent = parent.parent_op()
    return False


def _bytes(ty: Any) -> int:
    """Bytes of one value of type `ty` (a tensor, a scalar, or an `!ad.cell` of a
    tensor); 0 when unknown."""
    if ty.name == "ad.cell":
        ty = ty.elem
    elem = getattr(ty, "element_type", ty)
    width = getattr(elem, "bitwidth", None)
    if width is None:
        width = getattr(getattr(elem, "width", None), "data", None)
    if width is None:
        return 0
    shape = ty.get_shape() if hasattr(ty, "get_shape") else ()
    return math.prod(shape) * max(1, (int(width) + 7) // 8)


def static_counts(module: Any) -> dict[str, int]:
    ops: Counter[str] = Counter()
    fused_inner = 0
    zero_like = zero_bytes = 0
    for op in module.walk():
        dialect = op.name.split(".", 1)[0]
        if dialect not in DIALECTS:
            continue
        if _inside_fused(op):
            fused_inner += 1
            continue
        ops[dialect] += 1
        if op.name in ("ad.zero_like", "ad.zero_cell"):
            zero_like += 1
            zero_bytes += sum(_bytes(r.type) for r in op.results)
    return {
        **{f"{d}_ops": ops[d] for d in DIALECTS},
        "total_ops": sum(ops.values()),
        "fused_inner_ops": fused_inner,
        "zero_like": zero_like,
        "zero_like_bytes": zero_bytes,
    }


# --- one variant --------------------------------------------------------------------------


class Variant:
    """One pipeline variant: its static counts, its compiled step and its own state
    (every variant starts from the same weights and sees the same batches)."""

    def __init__(self, model: Any, config: Any, pipeline: str, steps: int):
        import lanterna as ln
        from lanterna.passes import run_pipeline

        # make_step returns the jitted step; the Python function under it is `__wrapped__`.
        step_fn = model.make_step(config, "cpu").__wrapped__
        self.jitted = ln.jit(step_fn, backend="cpu", pipeline=pipeline)
        rng = np.random.default_rng(0)
        self.state = model.init(rng, config)
        self.batches = [b for _, b in zip(range(steps + 1), model.batches(rng, config))]

        module = self.jitted.lower(self.state, self.batches[0]).module
        run_pipeline(module, pipeline)
        self.row: dict[str, Any] = static_counts(module)
        start = time.perf_counter()
        self.step(0)
        self.row["cold_s"] = time.perf_counter() - start
        self.times: list[float] = []

    def step(self, i: int) -> None:
        loss, self.state = self.jitted(self.state, self.batches[i])
        self.loss = float(loss)

    def timed_step(self, i: int) -> None:
        start = time.perf_counter()
        self.step(i)
        self.times.append(time.perf_counter() - start)

    def result(self) -> dict[str, Any]:
        ms = 1e3 * statistics.median(self.times) if self.times else None
        stats = self.jitted.memory_stats()
        return {
            **self.row,
            "requested_bytes": stats["requested"],
            "footprint_bytes": stats["fresh"],
            "median_ms": ms,
            "final_loss": self.loss,
        }


# --- report -------------------------------------------------------------------------------


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "-"
    return f"{value / base:.2f}x"


def table(rows: list[dict[str, Any]]) -> str:
    base = rows[0]
    head = (
        "| variant | ln ops | ad ops | cont ops | total (vs default) | zero-filled "
        "| zero-filled KiB (vs default) | KiB allocated/step (vs default) "
        "| footprint KiB (vs default) | ms/step (vs default) | final loss |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        ms = r["median_ms"]
        lines.append(
            f"| {r['variant']} | {r['ln_ops']} | {r['ad_ops']} | {r['cont_ops']} "
            f"| {r['total_ops']} ({_ratio(r['total_ops'], base['total_ops'])}) "
            f"| {r['zero_like']} "
            f"| {r['zero_like_bytes'] / 1024:.1f} ({_ratio(r['zero_like_bytes'], base['zero_like_bytes'])}) "
            f"| {r['requested_bytes'] / 1024:.1f} ({_ratio(r['requested_bytes'], base['requested_bytes'])}) "
            f"| {r['footprint_bytes'] / 1024:.1f} ({_ratio(r['footprint_bytes'], base['footprint_bytes'])}) "
            f"| {'-' if ms is None else f'{ms:.3f}'} ({_ratio(ms, base['median_ms'])}) "
            f"| {r['final_loss']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 3 steps (for CI)")
    ap.add_argument(
        "--steps", type=int, help="steps timed per variant (default 20, 3 with --quick)"
    )
    ap.add_argument("--batch", type=int, default=20, help="batch size at paper sizes (default 20)")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="where to write passes.*")
    args = ap.parse_args(argv)
    steps = args.steps or (3 if args.quick else 20)

    from lanterna.backends.cpu_cpp.backend import CpuBackend
    from lanterna.backends.cpu_cpp.driver import load_bridge, prebuild

    prebuild()  # once per machine; not part of any variant
    load_bridge()
    model = load_model("lstm")
    config = model.Config.small() if args.quick else model.Config(batch=args.batch)
    size = f"hidden {config.hidden}, seq {config.seq}, batch {config.batch}, vocab {config.vocab}"

    built = [
        (label, pipeline, Variant(model, config, pipeline, steps))
        for label, pipeline in variants(CpuBackend.default_pipeline)
    ]
    no_reuse = no_reuse_pipeline(CpuBackend.default_pipeline)
    built.append(("-buffer-reuse", no_reuse, Variant(model, config, no_reuse, steps)))
    # Round-robin over the variants, one step each, so drift in the machine's speed
    # falls on all of them alike.
    for i in range(1, steps + 1):
        for _, _, v in built:
            v.timed_step(i)
    rows = [{"variant": label, "pipeline": pipeline, **v.result()} for label, pipeline, v in built]

    text = table(rows)
    print(
        f"LSTM training step ({size}); {steps} steps timed per variant (round-robin) after a cold one"
    )
    print(text)

    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "model": "lstm",
        "size": size,
        "quick": args.quick,
        "steps": steps,
        "default_pipeline": CpuBackend.default_pipeline,
        "rows": rows,
    }
    (args.out / "passes.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "passes.md").write_text(
        "# Optional passes of the cpu pipeline on the LSTM training step\n\n"
        f"Model size: {size}. Median of {steps} steps per variant (taken round-robin over\nthe variants), after a cold (compile) call.\n"
        "Each variant is the default pipeline with one optional pass removed; op counts are\n"
        "taken after the pipeline (ops inside `ln.fused` bodies not counted); zero-filled is\n"
        "the number of `ad.zero_like`/`ad.zero_cell` ops left and their bytes. Allocated/step\n"
        "is what one step's allocations requested from the arena; footprint is what the step\n"
        "took from the arena's chunks after buffer reuse. `-buffer-reuse` is the default\n"
        "pipeline with `plan-buffers{reuse=false}` (no releases, no takeovers).\n"
        "Ratios are to the default pipeline, within this run.\n\n"
        f"Default pipeline: `{CpuBackend.default_pipeline}`\n\n" + text + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
