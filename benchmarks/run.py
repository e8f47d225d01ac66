"""The benchmark runner: the paper's four models (benchmarks/models) trained
through lanterna and through the peers (benchmarks/peers), side by side in one run.

    python benchmarks/run.py [--model rnn|lstm|treelstm|cnn|all] [--quick] [--steps N]
                             [--threads 1|default] [--out benchmarks/results]

For every model, batch size and framework it times `steps` training steps from
the same initial weights (lanterna's init, converted) on the same batches and
reports the median time per step, the ratio to PyTorch eager, the first call
(trace + compile + run: "cold"), the growth of the process's peak RSS
(`resource.getrusage` maxrss; 0 when the row stayed under an earlier peak) and
the loss after the last step. Losses are compared with lanterna cpu's: the
largest relative difference is reported per model. The CNN's dropout masks
cannot be shared between frameworks, so its agreement run has dropout off.

Peers are optional (`pip install -e .[bench]`): a missing one is a row saying
"not installed". `--quick` runs tiny sizes for 3 steps (what CI runs).
Writes `results.json`, `results.md` and, with matplotlib, one PNG per model.
Timings are compared within one run only; pin to one core with `taskset -c 0`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
MODELS = ("rnn", "lstm", "treelstm", "cnn")
# xDSL installs a top-level `benchmarks` package, so ours are loaded under their own names.
PACKAGES = {
    "lanterna_benchmark_models": HERE / "models",
    "lanterna_benchmark_peers": HERE / "peers",
}

Step = Callable[[dict[str, Any]], float]


def load(package: str, name: str) -> ModuleType:
    if package not in sys.modules:
        folder = PACKAGES[package]
        spec = importlib.util.spec_from_file_location(
            package, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {folder}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{package}.{name}")


# --- frameworks ---------------------------------------------------------------------------


class NotInstalled(Exception):
    pass


class NotApplicable(Exception):
    pass


def _peer(module: str, requires: str) -> ModuleType:
    if importlib.util.find_spec(requires) is None:
        raise NotInstalled(requires)
    return load("lanterna_benchmark_peers", module)


def lanterna_step(backend: str) -> Callable[..., Step]:
    def build(name: str, model: ModuleType, config: Any, state: Any) -> Step:
        jitted = model.make_step(config, backend)
        held = [state]

        def step(batch: dict[str, Any]) -> float:
            loss, held[0] = jitted(held[0], batch)
            return float(loss)

        return step

    return build


def torch_step(compile: bool) -> Callable[..., Step]:
    def build(name: str, model: ModuleType, config: Any, state: Any) -> Step:
        peer = _peer("torch_models", "torch")
        if compile and name == "treelstm":
            raise NotApplicable("a new graph per tree shape")
        return peer.build(name, config, state, compile=compile)

    return build


def jax_step(name: str, model: ModuleType, config: Any, state: Any) -> Step:
    return _peer("jax_models", "jax").build(name, config, state)


def numpy_step(name: str, model: ModuleType, config: Any, state: Any) -> Step:
    if name != "rnn":
        raise NotApplicable("hand-written for the RNN only")
    return load("lanterna_benchmark_peers", "numpy_rnn").build(name, config, state)


FRAMEWORKS: dict[str, Callable[..., Step]] = {
    "lanterna cpu": lanterna_step("cpu"),
    "lanterna interp": lanterna_step("interp"),
    "pytorch eager": torch_step(compile=False),
    "torch.compile": torch_step(compile=True),
    "jax jit": jax_step,
    "numpy": numpy_step,
}
REFERENCE, BASELINE = "lanterna cpu", "pytorch eager"
AGREE_RTOL = 1e-3


# --- sizes --------------------------------------------------------------------------------


def configs(name: str, model: ModuleType, quick: bool) -> list[tuple[str, Any]]:
    """(label, config) pairs: the paper's batch sizes, or tiny ones with --quick."""
    if quick:
        return [("tiny", model.Config.small())]
    if name in ("rnn", "lstm"):
        return [(f"batch {b}", model.Config(batch=b)) for b in (1, 20)]
    if name == "cnn":
        return [(f"batch {b}", model.Config(batch=b)) for b in (100, 1)]
    return [("1 tree", model.Config())]


def runs_interp(quick: bool, name: str, label: str) -> bool:
    """The interpreter runs the small sizes only: at the paper's sizes it takes minutes."""
    return quick or (name in ("rnn", "lstm") and label == "batch 1")


# --- measuring ----------------------------------------------------------------------------


@dataclass
class Row:
    model: str
    size: str
    framework: str
    status: str = "ok"
    median_ms: float | None = None
    cold_s: float | None = None
    peak_rss_mb: float | None = None
    final_loss: float | None = None
    ratio_to_eager: float | None = None


def maxrss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kb / 1024.0


def measure(
    name: str, model: ModuleType, config: Any, framework: str, steps: int
) -> tuple[Row, list[float]]:
    """Times `steps` steps after the first (cold) one; all frameworks see the same
    initial state and batches (both made from seed 0)."""
    rng = np.random.default_rng(0)
    state = model.init(rng, config)
    batches = list(_take(model.batches(rng, config), steps + 1))
    row = Row(name, "", framework)
    rss0 = maxrss_mb()
    try:
        step = FRAMEWORKS[framework](name, model, config, state)
        start = time.perf_counter()
        losses = [step(batches[0])]
        row.cold_s = time.perf_counter() - start
    except NotInstalled as e:
        row.status = f"not installed ({e})"
        return row, []
    except NotApplicable as e:
        row.status = f"n/a ({e})"
        return row, []
    times = []
    for batch in batches[1:]:
        start = time.perf_counter()
        losses.append(step(batch))
        times.append(time.perf_counter() - start)
    row.median_ms = 1e3 * statistics.median(times) if times else None
    row.peak_rss_mb = maxrss_mb() - rss0
    row.final_loss = losses[-1]
    return row, losses


def _take(it: Iterator[Any], n: int) -> Iterator[Any]:
    for _, x in zip(range(n), it):
        yield x


def agreement(by_framework: dict[str, list[float]]) -> dict[str, Any] | None:
    """How closely the other frameworks' losses follow lanterna cpu's, step by step:
    the largest relative difference after one step and after the last, and how
    many leading steps agree within `AGREE_RTOL`. Adagrad's first updates are
    nearly `lr * sign(g)`, so float rounding in tiny gradients can flip a step
    and the runs drift apart later; the leading steps show the models match."""
    ref = by_framework.get(REFERENCE)
    others = [losses for fw, losses in by_framework.items() if fw != REFERENCE and losses]
    if not ref or not others:
        return None
    rel = np.array([[abs(a - b) / max(abs(b), 1e-12) for a, b in zip(o, ref)] for o in others])
    worst = rel.max(axis=0)
    leading = int(np.argmax(worst > AGREE_RTOL)) if (worst > AGREE_RTOL).any() else len(worst)
    return {
        "after_1_step": float(worst[min(1, len(worst) - 1)]),
        "after_last_step": float(worst[-1]),
        "steps_within_rtol": leading,
        "steps": len(worst),
        "compared": len(others),
    }


def progress(done: int, total: int, what: str) -> None:
    width = 30
    filled = width * done // max(total, 1)
    bar = "#" * filled + "." * (width - filled)
    end = "\n" if done == total else ""
    print(f"\r[{bar}] {done}/{total} {what:<48.48}", end=end, file=sys.stderr, flush=True)


# --- the machine --------------------------------------------------------------------------


def machine(threads: str) -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu
            )
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "cores usable": str(len(os.sched_getaffinity(0))),
        "threads": threads,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    for package in ("torch", "jax", "xdsl"):
        try:
            info[package] = str(importlib.import_module(package).__version__)
        except ImportError:
            info[package] = "not installed"
    return info


def set_threads(threads: str) -> None:
    """One thread everywhere we can say so before the frameworks load. XLA has no
    such flag: pin the process (`taskset -c 0`) to hold JAX to one core."""
    if threads == "1":
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = "1"


# --- reports ------------------------------------------------------------------------------


def fmt(x: float | None, spec: str) -> str:
    return "" if x is None else format(x, spec)


def markdown(result: dict[str, Any]) -> str:
    lines = ["# Benchmark results", "", "Machine:", ""]
    lines += [f"- {k}: {v}" for k, v in result["machine"].items()]
    lines += [
        "",
        (
            f"Steps timed per row: {result['steps']} (after the first, cold call). "
            "Time: median per training step. Cold: first call, including trace and compile "
            f"(compile caches of lanterna and torch.compile: {result['compile_cache']}). "
            "Peak RSS: growth of the process's maxrss (getrusage) during the row, so 0 when "
            "an earlier row had already reached that peak. Loss: after the last step, from "
            "the same initial weights and batches in every framework."
        ),
        "",
        "| model | size | framework | ms/step | vs eager | cold (s) | peak RSS +MB | loss |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['size']} | {r['framework']} | {r['status']} ||||| ")
            continue
        ratio = fmt(r["ratio_to_eager"], ".2f")
        lines.append(
            f"| {r['model']} | {r['size']} | {r['framework']} | {fmt(r['median_ms'], '.3f')} "
            f"| {ratio + 'x' if ratio else ''} | {fmt(r['cold_s'], '.2f')} "
            f"| {fmt(r['peak_rss_mb'], '.1f')} | {fmt(r['final_loss'], '.5g')} |"
        )
    lines += [
        "",
        (
            "Loss agreement with lanterna cpu (largest relative difference over the other "
            f"frameworks; steps counted from the first call; within rtol {AGREE_RTOL:g}):"
        ),
        "",
        "| run | frameworks | after 1 step | after last step | leading steps within rtol |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, a in result["agreement"].items():
        if a is None:
            lines.append(f"| {key} | 0 | no peer to compare |||")
            continue
        lines.append(
            f"| {key} | {a['compared']} | {a['after_1_step']:.2e} | {a['after_last_step']:.2e} "
            f"| {a['steps_within_rtol']} of {a['steps']} |"
        )
    lines += ["", *result["notes"], ""]
    return "\n".join(lines)


def charts(result: dict[str, Any], out: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "PNG charts skipped: matplotlib is not installed."
    for name in {r["model"] for r in result["rows"]}:
        rows = [r for r in result["rows"] if r["model"] == name and r["median_ms"] is not None]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(8, 0.4 * len(rows) + 1.2))
        labels = [f"{r['framework']} ({r['size']})" for r in rows]
        ax.barh(labels, [r["median_ms"] for r in rows])
        ax.set_xscale("log")
        ax.set_xlabel("median ms per training step (log scale)")
        ax.set_title(f"{name}: {result['machine']['cpu']}, threads {result['machine']['threads']}")
        ax.invert_yaxis()
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=100)
        plt.close(fig)
    return "PNG charts: one per model, `<model>.png`."


# --- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", choices=(*MODELS, "all"), default="all")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 3 steps (for CI)")
    ap.add_argument("--steps", type=int, help="steps timed per row (default 20, 3 with --quick)")
    ap.add_argument("--threads", choices=("1", "default"), default="default")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument(
        "--cache",
        choices=("fresh", "shared"),
        default="fresh",
        help="compile caches (lanterna's, torch.compile's): fresh empty ones, so 'cold'\n"
        "includes the compilers (default), or the user's, which makes reruns quick",
    )
    args = ap.parse_args(argv)
    set_threads(args.threads)
    if args.cache == "fresh":
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["LANTERNA_CACHE_DIR"] = tmp
            from lanterna.backends.cpu_cpp.driver import load_bridge

            load_bridge()  # built once per machine, not per program: not part of "cold"
            # torch.compile keeps its own cache of compiled graphs: start it empty too.
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tmp) / "torchinductor")
            return run(args)
    return run(args)


def run(args: argparse.Namespace) -> int:
    steps = args.steps or (3 if args.quick else 20)
    names = MODELS if args.model == "all" else (args.model,)

    # (model, module, size label, config, framework, losses compared); the dropout-off
    # runs are compared, not timed.
    plan = []
    for name in names:
        model = load("lanterna_benchmark_models", name)
        for label, config in configs(name, model, args.quick):
            for fw in FRAMEWORKS:
                if fw != "lanterna interp" or runs_interp(args.quick, name, label):
                    plan.append((name, model, label, config, fw, name != "cnn"))
        if name == "cnn":  # dropout masks differ between frameworks: compare without dropout
            label, config = configs(name, model, args.quick)[-1]
            for fw in FRAMEWORKS:
                if fw != "lanterna interp" or runs_interp(args.quick, name, label):
                    off = replace(config, dropout=0.0)
                    plan.append((name, model, f"{label}, dropout off", off, fw, True))

    rows: list[Row] = []
    losses: dict[str, dict[str, list[float]]] = {}
    for i, (name, model, label, config, fw, compared) in enumerate(plan):
        progress(i, len(plan), f"{name} {label} {fw}")
        try:
            row, run_losses = measure(name, model, config, fw, steps)
        except Exception as e:
            # A failing peer is a row saying why, not the end of the run; ours must not fail.
            if fw.startswith("lanterna"):
                raise
            traceback.print_exc()
            row, run_losses = Row(name, "", fw, status=f"error: {type(e).__name__}: {e}"), []
        row.size = label
        if compared:
            losses.setdefault(f"{name} {label}", {})[fw] = run_losses
        if "dropout off" not in label:
            rows.append(row)
    progress(len(plan), len(plan), "done")

    for r in rows:
        eager = next(
            (e for e in rows if (e.model, e.size, e.framework) == (r.model, r.size, BASELINE)), None
        )
        if r.median_ms is not None and eager is not None and eager.median_ms:
            r.ratio_to_eager = r.median_ms / eager.median_ms

    agree = {key: agreement(by_fw) for key, by_fw in losses.items()}

    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "machine": machine(args.threads),
        "steps": steps,
        "quick": args.quick,
        "compile_cache": args.cache,
        "rows": [asdict(r) for r in rows],
        "agreement": agree,
        "notes": [],
    }
    result["notes"].append(charts(result, args.out))
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    report = markdown(result)
    (args.out / "results.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
