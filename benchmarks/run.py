"""The benchmark runner: the paper's four models (benchmarks/models) trained
through lanterna and through the peers (benchmarks/peers), side by side in one run.

    python benchmarks/run.py [--model rnn|lstm|treelstm|cnn|all] [--quick] [--steps N]
                             [--threads 1|default|both] [--process row|shared]
                             [--framework NAME ...] [--out benchmarks/results]
    python benchmarks/run.py --row MODEL:SIZE:FRAMEWORK [--row ...] [--json-out FILE]

For every model, size and framework it times `steps` training steps from the
same initial weights (lanterna's init, converted) on the same batches and
reports the median time per step, the ratio to PyTorch eager, the first call
(trace + compile + run: "cold"), peak memory and the loss after the last step.
Losses are compared with lanterna cpu's: the largest relative difference is
reported per model. The CNN's dropout masks cannot be shared between
frameworks, so its agreement run has dropout off.

Processes. With `--process row` (the default, except with `--quick`) every row
runs in a process of its own (this script with `--row`), so its peak RSS
(`getrusage` maxrss) is its own: the table gives that peak and how much of it
came after the imports and the data, i.e. what building and training the model
added. With `--process shared` all rows of a thread setting share one process
and the memory columns are that process's peak so far and its growth during
the row (0 when an earlier row had reached higher). Timings come from the same
process either way.

Threads. `--threads 1` runs each benchmark process on one core: the process
restarts itself pinned to one core (`sched_setaffinity`, inherited by every
thread it starts: OpenBLAS's, torch's, XLA's, which no flag limits) with
OMP/OpenBLAS/MKL threads set to 1. `--threads default` leaves both alone;
`--threads both` runs the plan twice and reports both.

Peers are optional (`pip install -e .[bench]`): a missing one is a row saying
"not installed". DyNet is not in the extra, as it builds from source with Eigen
and a build environment that a plain `pip install` does not set: see
benchmarks/peers/dynet_models.py for the recipe. `--quick` runs tiny sizes for
3 steps in one process (what CI runs). Writes `results.json` (keyed by thread
setting), `results.md` (a section per thread setting) and, with matplotlib, one
PNG per model. Timings are compared within one run only.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
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
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

Step = Callable[[dict[str, Any]], float]
Prepare = Callable[[str], Any]


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


class LanternaBuilder:
    def __init__(self, backend: str) -> None:
        self.backend = backend

    def build(self, name: str, config: Any, state: Any) -> Step:
        model = load("lanterna_benchmark_models", name)
        jitted = model.make_step(config, self.backend)
        held = [state]

        def step(batch: dict[str, Any]) -> float:
            loss, held[0] = jitted(held[0], batch)
            return float(loss)

        return step


def lanterna(backend: str) -> Prepare:
    def prepare(name: str) -> LanternaBuilder:
        if backend == "cpu":
            from lanterna.backends.cpu_cpp.driver import load_bridge

            load_bridge()  # built beforehand (see compile_caches); loading it is not "cold"
        return LanternaBuilder(backend)

    return prepare


class TorchBuilder:
    def __init__(self, peer: ModuleType, compile: bool) -> None:
        self.peer, self.compile = peer, compile

    def build(self, name: str, config: Any, state: Any) -> Step:
        return self.peer.build(name, config, state, compile=self.compile)


def torch(compile: bool) -> Prepare:
    def prepare(name: str) -> TorchBuilder:
        if compile and name == "treelstm":
            raise NotApplicable("a new graph per tree shape")
        return TorchBuilder(_peer("torch_models", "torch"), compile)

    return prepare


def jax_prepare(name: str) -> ModuleType:
    return _peer("jax_models", "jax")


def numpy_prepare(name: str) -> ModuleType:
    if name != "rnn":
        raise NotApplicable("hand-written for the RNN only")
    return load("lanterna_benchmark_peers", "numpy_rnn")


def dynet_prepare(name: str) -> ModuleType:
    return _peer("dynet_models", "dynet")


# Each framework's `prepare(model name)` imports what its rows need (so a row's memory
# baseline includes it) and returns what builds the step, or raises NotInstalled or
# NotApplicable. The builder's `build(name, config, state)` makes the step; its
# `note(name)`, where it has one, says what the row does differently.
FRAMEWORKS: dict[str, Prepare] = {
    "lanterna cpu": lanterna("cpu"),
    "lanterna interp": lanterna("interp"),
    "pytorch eager": torch(compile=False),
    "torch.compile": torch(compile=True),
    "jax jit": jax_prepare,
    "numpy": numpy_prepare,
    "dynet": dynet_prepare,
}
REFERENCE, BASELINE = "lanterna cpu", "pytorch eager"
AGREE_RTOL = 1e-3


# --- sizes and rows -----------------------------------------------------------------------


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


DROPOUT_OFF = ", dropout off"


@dataclass(frozen=True)
class RowSpec:
    """One row to run: `MODEL:SIZE:FRAMEWORK` on the command line. A size ending in
    ", dropout off" is the CNN's agreement run: compared, not shown."""

    model: str
    size: str
    framework: str

    @classmethod
    def parse(cls, text: str) -> RowSpec:
        parts = text.split(":")
        if len(parts) != 3:
            raise argparse.ArgumentTypeError(f"{text!r}: expected MODEL:SIZE:FRAMEWORK")
        spec = cls(*parts)
        if spec.model not in MODELS:
            raise argparse.ArgumentTypeError(f"{text!r}: model is one of {', '.join(MODELS)}")
        if spec.framework not in FRAMEWORKS:
            raise argparse.ArgumentTypeError(
                f"{text!r}: framework is one of {', '.join(FRAMEWORKS)}"
            )
        return spec

    def __str__(self) -> str:
        return f"{self.model}:{self.size}:{self.framework}"

    def config(self, quick: bool) -> tuple[ModuleType, Any]:
        model = load("lanterna_benchmark_models", self.model)
        base = self.size.removesuffix(DROPOUT_OFF)
        sizes = dict(configs(self.model, model, quick))
        if base not in sizes:
            mode = "with" if quick else "without"
            raise SystemExit(f"{self}: {mode} --quick the sizes of {self.model} are {list(sizes)}")
        config = sizes[base]
        return model, replace(config, dropout=0.0) if base != self.size else config


def plan(names: tuple[str, ...], quick: bool, frameworks: list[str]) -> list[RowSpec]:
    specs = []
    for name in names:
        model = load("lanterna_benchmark_models", name)
        labels = [label for label, _ in configs(name, model, quick)]
        if name == "cnn":  # dropout masks differ between frameworks: compare without dropout
            labels.append(labels[-1] + DROPOUT_OFF)
        for label in labels:
            for fw in frameworks:
                if fw != "lanterna interp" or runs_interp(quick, name, label.split(",")[0]):
                    specs.append(RowSpec(name, label, fw))
    return specs


# --- measuring (in the benchmark process) -------------------------------------------------


@dataclass
class Row:
    model: str
    size: str
    framework: str
    status: str = "ok"
    median_ms: float | None = None
    cold_s: float | None = None
    # maxrss before the step is built (interpreter, imports, data) and after the last step
    setup_rss_mb: float | None = None
    peak_rss_mb: float | None = None
    final_loss: float | None = None
    ratio_to_eager: float | None = None
    note: str = ""
    losses: list[float] = field(default_factory=list)


def maxrss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kb / 1024.0


def measure(spec: RowSpec, quick: bool, steps: int) -> Row:
    """Times `steps` steps after the first (cold) one; all frameworks see the same
    initial state and batches (both made from seed 0)."""
    model, config = spec.config(quick)
    row = Row(spec.model, spec.size, spec.framework)
    try:
        builder = FRAMEWORKS[spec.framework](spec.model)
    except NotInstalled as e:
        row.status = f"not installed ({e})"
        return row
    except NotApplicable as e:
        row.status = f"n/a ({e})"
        return row
    rng = np.random.default_rng(0)
    state = model.init(rng, config)
    batches = list(_take(model.batches(rng, config), steps + 1))
    row.setup_rss_mb = maxrss_mb()
    row.note = builder.note(spec.model) if hasattr(builder, "note") else ""
    step = builder.build(spec.model, config, state)
    start = time.perf_counter()
    row.losses = [step(batches[0])]
    row.cold_s = time.perf_counter() - start
    times = []
    for batch in batches[1:]:
        start = time.perf_counter()
        row.losses.append(step(batch))
        times.append(time.perf_counter() - start)
    row.median_ms = 1e3 * statistics.median(times) if times else None
    row.peak_rss_mb = maxrss_mb()
    row.final_loss = row.losses[-1]
    return row


def _take(it: Iterator[Any], n: int) -> Iterator[Any]:
    for _, x in zip(range(n), it):
        yield x


def run_rows(specs: list[RowSpec], quick: bool, steps: int, threads: str) -> dict[str, Any]:
    """The benchmark process: each row in turn, in this process."""
    rows = []
    for i, spec in enumerate(specs):
        if len(specs) > 1:
            progress(i, len(specs), str(spec))
        try:
            row = measure(spec, quick, steps)
        except Exception as e:
            # A failing peer is a row saying why, not the end of the run; ours must not fail.
            if spec.framework.startswith("lanterna"):
                raise
            traceback.print_exc()
            row = Row(
                spec.model, spec.size, spec.framework, status=f"error: {type(e).__name__}: {e}"
            )
        rows.append(asdict(row))
    if len(specs) > 1:
        progress(len(specs), len(specs), "done")
    return {"process": process_info(threads), "rows": rows}


def process_info(threads: str) -> dict[str, str]:
    return {
        "threads": threads,
        "cores usable": str(len(os.sched_getaffinity(0))),
        **{var: os.environ.get(var, "unset") for var in THREAD_VARIABLES},
    }


def pin_to_one_core(argv: list[str]) -> None:
    """Restart this process on one core with the thread-count variables at 1, unless
    it already runs so. The restart makes every thread pool start inside the pin:
    OpenBLAS's started with numpy above, and a thread keeps the mask it was born with."""
    if len(os.sched_getaffinity(0)) == 1 and all(
        os.environ.get(var) == "1" for var in THREAD_VARIABLES
    ):
        return
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    env = {**os.environ, **dict.fromkeys(THREAD_VARIABLES, "1")}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *argv], env)


def progress(done: int, total: int, what: str) -> None:
    width = 30
    filled = width * done // max(total, 1)
    bar = "#" * filled + "." * (width - filled)
    end = "\n" if done == total else ""
    print(f"\r[{bar}] {done}/{total} {what:<48.48}", end=end, file=sys.stderr, flush=True)


# --- running the plan (in the parent) -----------------------------------------------------


def child_command(
    specs: list[RowSpec], args: argparse.Namespace, threads: str, out: Path
) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--threads", threads]
    cmd += ["--steps", str(args.steps), "--cache", "shared", "--json-out", str(out)]
    if args.quick:
        cmd.append("--quick")
    for spec in specs:
        cmd += ["--row", str(spec)]
    return cmd


def exit_reason(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"


def execute(specs: list[RowSpec], args: argparse.Namespace, threads: str) -> dict[str, Any]:
    """Every row in its own process (`--process row`) or all in one (`shared`)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        if args.process == "shared":
            proc = subprocess.run(child_command(specs, args, threads, out), check=False)
            if proc.returncode != 0:
                raise SystemExit(f"the benchmark process failed ({exit_reason(proc.returncode)})")
            return json.loads(out.read_text())
        rows, info = [], {}
        for i, spec in enumerate(specs):
            progress(i, len(specs), f"threads {threads}: {spec}")
            out.unlink(missing_ok=True)
            cmd = child_command([spec], args, threads, out)
            proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
            if proc.returncode == 0:
                child = json.loads(out.read_text())
                rows += child["rows"]
                info = child["process"]
                if child["rows"][0]["status"].startswith("error"):
                    print(proc.stderr, file=sys.stderr)
                continue
            print(proc.stderr, file=sys.stderr)
            if spec.framework.startswith("lanterna"):
                raise SystemExit(
                    f"{spec}: the benchmark process failed ({exit_reason(proc.returncode)})"
                )
            failed = Row(spec.model, spec.size, spec.framework)
            failed.status = f"error: the process failed ({exit_reason(proc.returncode)})"
            rows.append(asdict(failed))
        progress(len(specs), len(specs), "done")
        return {"process": info, "rows": rows}


def summarize(child: dict[str, Any]) -> dict[str, Any]:
    """The shown rows with their ratio to eager, and the losses' agreement."""
    rows = child["rows"]
    losses: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        if r["model"] != "cnn" or r["size"].endswith(DROPOUT_OFF):
            losses.setdefault(f"{r['model']} {r['size']}", {})[r["framework"]] = r["losses"]
    shown = [{k: v for k, v in r.items() if k != "losses"} for r in rows]
    shown = [r for r in shown if not r["size"].endswith(DROPOUT_OFF)]
    for r in shown:
        eager = next(
            (
                e
                for e in shown
                if (e["model"], e["size"], e["framework"]) == (r["model"], r["size"], BASELINE)
            ),
            None,
        )
        if r["median_ms"] is not None and eager is not None and eager["median_ms"]:
            r["ratio_to_eager"] = r["median_ms"] / eager["median_ms"]
    return {
        "process": child["process"],
        "rows": shown,
        "agreement": {key: agreement(by_fw) for key, by_fw in losses.items()},
    }


def agreement(by_framework: dict[str, list[float]]) -> dict[str, Any] | None:
    """How closely the other frameworks' losses follow lanterna cpu's, step by step:
    the largest relative difference after one step and after the last (and whose
    it is), and how many leading steps agree within `AGREE_RTOL`. Adagrad's first
    updates are nearly `lr * sign(g)`, so float rounding in tiny gradients can flip
    a step and the runs drift apart later; the leading steps show the models match."""
    ref = by_framework.get(REFERENCE)
    others = {fw: losses for fw, losses in by_framework.items() if fw != REFERENCE and losses}
    if not ref or not others:
        return None
    names = list(others)
    rel = np.array(
        [[abs(a - b) / max(abs(b), 1e-12) for a, b in zip(others[fw], ref)] for fw in names]
    )
    worst = rel.max(axis=0)
    leading = int(np.argmax(worst > AGREE_RTOL)) if (worst > AGREE_RTOL).any() else len(worst)
    return {
        "after_1_step": float(worst[min(1, len(worst) - 1)]),
        "after_last_step": float(worst[-1]),
        "farthest_after_last_step": names[int(rel[:, -1].argmax())] if worst[-1] > 0 else None,
        "steps_within_rtol": leading,
        "steps": len(worst),
        "compared": len(others),
    }


# --- the machine --------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """Read without importing the frameworks: the parent process stays light."""
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
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    for package in ("torch", "jax", "dynet", "xdsl"):
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = "not installed"
    return info


# --- reports ------------------------------------------------------------------------------

MEMORY = {
    "row": (
        "Peak RSS: the row's own process's peak resident set (getrusage maxrss): "
        "interpreter, the framework's import, the data and the training. +MB: that peak "
        "less the peak before the step was built (after the imports and the data), i.e. "
        "what building and training the model added. Compilers that run as processes of "
        "their own (lanterna's C++ compiler, inductor's workers) are not counted."
    ),
    "shared": (
        "Peak RSS: the peak so far of the one process that runs every row in turn "
        "(getrusage maxrss). +MB: its growth during the row, so 0 when an earlier row "
        "had already reached that peak."
    ),
}
THREADS = {
    "1": "each benchmark process pinned to one core, OMP/OpenBLAS/MKL threads 1",
    "default": "each framework's default thread count on all usable cores",
}


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
            f"{MEMORY[result['process']]} Loss: after the last step, from the same initial "
            "weights and batches in every framework."
        ),
    ]
    for threads, run in result["threads"].items():
        info = ", ".join(f"{k} {v}" for k, v in run["process"].items() if k != "threads")
        lines += ["", f"## Threads: {threads}", "", f"{THREADS[threads]} ({info}).", ""]
        lines += table(run)
    lines += ["", *result["notes"], ""]
    return "\n".join(lines)


def table(run: dict[str, Any]) -> list[str]:
    header = "model | size | framework | ms/step | vs eager | cold (s) | peak RSS MB | +MB | loss"
    lines = [f"| {header} | note |", "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in run["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['size']} | {r['framework']} | {r['status']} |||||||")
            continue
        ratio = fmt(r["ratio_to_eager"], ".2f")
        added = r["peak_rss_mb"] - r["setup_rss_mb"]
        lines.append(
            f"| {r['model']} | {r['size']} | {r['framework']} | {fmt(r['median_ms'], '.3f')} "
            f"| {ratio + 'x' if ratio else ''} | {fmt(r['cold_s'], '.2f')} "
            f"| {r['peak_rss_mb']:.0f} | {added:.1f} | {fmt(r['final_loss'], '.5g')} "
            f"| {r['note']} |"
        )
    lines += [
        "",
        (
            "Loss agreement with lanterna cpu (largest relative difference over the other "
            f"frameworks; steps counted from the first call; within rtol {AGREE_RTOL:g}):"
        ),
        "",
        "| run | frameworks | after 1 step | after last step (farthest) | leading within rtol |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, a in run["agreement"].items():
        if a is None:
            lines.append(f"| {key} | 0 | no peer to compare |||")
            continue
        farthest = f"({a['farthest_after_last_step']})" if a["farthest_after_last_step"] else ""
        lines.append(
            f"| {key} | {a['compared']} | {a['after_1_step']:.2e} | {a['after_last_step']:.2e} "
            f"{farthest} | {a['steps_within_rtol']} of {a['steps']} |"
        )
    return lines


def charts(result: dict[str, Any], out: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "PNG charts skipped: matplotlib is not installed."
    settings = list(result["threads"])
    rows = [
        (threads, r)
        for threads, run in result["threads"].items()
        for r in run["rows"]
        if r["median_ms"] is not None
    ]
    for name in dict.fromkeys(r["model"] for _, r in rows):
        mine = [(threads, r) for threads, r in rows if r["model"] == name]
        fig, ax = plt.subplots(figsize=(8, 0.4 * len(mine) + 1.2))
        labels = [
            f"{r['framework']} ({r['size']}"
            + (f", threads {threads})" if len(settings) > 1 else ")")
            for threads, r in mine
        ]
        ax.barh(labels, [r["median_ms"] for _, r in mine])
        ax.set_xscale("log")
        ax.set_xlabel("median ms per training step (log scale)")
        ax.set_title(f"{name}: {result['machine']['cpu']}, threads {' and '.join(settings)}")
        ax.invert_yaxis()
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=100)
        plt.close(fig)
    return "PNG charts: one per model, `<model>.png`."


# --- main ---------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", choices=(*MODELS, "all"), default="all")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 3 steps (for CI)")
    ap.add_argument("--steps", type=int, help="steps timed per row (default 20, 3 with --quick)")
    ap.add_argument("--threads", choices=("1", "default", "both"), default="default")
    ap.add_argument(
        "--process",
        choices=("row", "shared"),
        help="a process per row, so each has its own peak memory (default), or one\n"
        "process for all rows (default with --quick: quicker)",
    )
    ap.add_argument(
        "--framework",
        action="append",
        choices=tuple(FRAMEWORKS),
        help="run only these frameworks (repeatable; default: all)",
    )
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument(
        "--cache",
        choices=("fresh", "shared"),
        default="fresh",
        help="compile caches (lanterna's, torch.compile's): fresh empty ones, so 'cold'\n"
        "includes the compilers (default), or the ones in the environment, which makes\n"
        "reruns quick",
    )
    ap.add_argument(
        "--row",
        action="append",
        type=RowSpec.parse,
        metavar="MODEL:SIZE:FRAMEWORK",
        help="run just these rows in this process and write them as JSON (what the\n"
        "runner starts for each row); e.g. 'rnn:batch 1:dynet'",
    )
    ap.add_argument("--json-out", type=Path, help="with --row: the JSON file (default: stdout)")
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    args.steps = args.steps or (3 if args.quick else 20)
    args.process = args.process or ("shared" if args.quick else "row")
    if not args.row:
        return run(args)
    if args.threads == "both":
        raise SystemExit("--row runs under one thread setting: --threads 1 or default")
    if args.threads == "1":
        pin_to_one_core(argv)
    lanterna_cpu = any(spec.framework == "lanterna cpu" for spec in args.row)
    with compile_caches(args.cache, lanterna_cpu):
        return benchmark_rows(args)


@contextmanager
def compile_caches(kind: str, lanterna_cpu: bool) -> Iterator[None]:
    """`fresh`: empty caches for lanterna and torch.compile while the block runs, so
    "cold" includes the compilers; `shared`: the ones the environment names. The
    bridge to lanterna's generated code and its precompiled runtime header are built
    first either way: they are built once per machine, not per program, so they are
    not part of "cold"."""
    saved = {var: os.environ.get(var) for var in ("LANTERNA_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR")}
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "fresh":
            os.environ["LANTERNA_CACHE_DIR"] = tmp
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tmp) / "torchinductor")
        try:
            if lanterna_cpu:
                from lanterna.backends.cpu_cpp.driver import prebuild

                prebuild()
            yield
        finally:
            for var, value in saved.items():
                if value is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = value


def benchmark_rows(args: argparse.Namespace) -> int:
    result = run_rows(args.row, args.quick, args.steps, args.threads)
    text = json.dumps(result, indent=2) + "\n"
    if args.json_out:
        args.json_out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def run(args: argparse.Namespace) -> int:
    names = MODELS if args.model == "all" else (args.model,)
    specs = plan(names, args.quick, args.framework or list(FRAMEWORKS))
    lanterna_cpu = any(spec.framework == "lanterna cpu" for spec in specs)
    settings = ("1", "default") if args.threads == "both" else (args.threads,)
    result: dict[str, Any] = {
        "machine": machine(),
        "steps": args.steps,
        "quick": args.quick,
        "compile_cache": args.cache,
        "process": args.process,
        "threads": {},
        "notes": [],
    }
    for threads in settings:  # each setting compiles afresh: its cold times are its own
        with compile_caches(args.cache, lanterna_cpu):
            result["threads"][threads] = summarize(execute(specs, args, threads))
    args.out.mkdir(parents=True, exist_ok=True)
    result["notes"].append(charts(result, args.out))
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    report = markdown(result)
    (args.out / "results.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
