"""Memory of a long differentiated sequence: callbacks vs `reverse-loops` vs `ln.checkpoint`.

Trains the LSTM character model (benchmarks/models/lstm.py sizes: hidden 50,
batch 20) on one sequence of 1,000 steps -- forward, backward and Adagrad update
in one compiled call -- in five variants, each in a process of its own:

* `callbacks`: the cpu pipeline without `reverse-loops`; the time loop is a
  chain of callbacks (a recursive closure), the paper's form;
* `reverse-loops`: the default pipeline; a forward loop saves what the adjoints
  read on stacks, a backward loop pops them;
* `checkpoint`: as `reverse-loops`, with each step's cell, output layer and loss
  in `ln.checkpoint`: only the step's inputs are saved, the rest is recomputed;
* `reverse-loops, no reuse` and `checkpoint, no reuse`: the same two with the
  arena's buffer reuse turned off (LANTERNA_CPU_REUSE=0).

For each: the arena's footprint for the call (`fresh`: bytes it had to take
from its chunks, i.e. the most the call's tensors needed at once, to 64-byte
alignment), the bytes requested by all allocations, the main thread's stack
high-water mark (VmStk), the growth of the process's peak RSS over the call,
and the median time per step.

    python benchmarks/bench_memory.py [--quick] [--seq N] [--steps N] [--out DIR]

`--quick` runs tiny sizes (what CI runs). Writes memory.json and memory.md.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
MODELS_PACKAGE = "lanterna_benchmark_models"
VARIANTS = {
    # name: (without reverse-loops, checkpoint, buffer reuse)
    "callbacks": (True, False, True),
    "reverse-loops": (False, False, True),
    "checkpoint": (False, True, True),
    "reverse-loops, no reuse": (False, False, False),
    "checkpoint, no reuse": (False, True, False),
}


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


def _vm_stack_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmStk:"):
                return int(line.split()[1])
    return 0


def make_step(model: Any, config: Any, checkpoint: bool, pipeline: str) -> Any:
    """The model's training step, with each time step optionally checkpointed."""
    import lanterna as ln

    def loss_fn(params: Any, h0: Any, c0: Any, inputs: Any, targets: Any) -> Any:
        vocab = params["out"]["b"].shape[0]
        one_hot = np.eye(vocab, dtype=np.float32)

        def step(h: Any, c: Any, x: Any, y: Any) -> Any:
            h, c = ln.nn.lstm_cell(params["cell"], ln.take(one_hot, x), h, c)
            logits = ln.nn.linear(params["out"], h)
            return h, c, ln.cross_entropy(logits, y, reduction="sum")

        cell = ln.checkpoint(step) if checkpoint else step

        def body(t: Any, carry: Any) -> Any:
            h, c, loss = carry
            h, c, term = cell(h, c, inputs[t], targets[t])
            return h, c, loss + term

        h, c, loss = ln.fori_loop(0, inputs.shape[0], body, (h0, c0, 0.0))
        return loss / inputs.shape[1], (h, c)

    opt = ln.optim.adagrad(config.lr)

    def lstm_step(state: Any, batch: Any) -> Any:
        (loss, (h, c)), g = ln.value_and_grad(loss_fn, has_aux=True)(
            state["params"], state["h"], state["c"], batch["inputs"], batch["targets"]
        )
        g = ln.optim.clip_by_value(g, config.clip)
        params, opt_state = opt.update(g, state["opt"], state["params"])
        return loss, {"params": params, "opt": opt_state, "h": h, "c": c}

    return ln.jit(lstm_step, backend="cpu", pipeline=pipeline)


def run_variant(name: str, quick: bool, seq: int, steps: int) -> dict[str, Any]:
    from lanterna.backends.cpu_cpp.backend import CpuBackend
    from lanterna.backends.cpu_cpp.driver import load_bridge

    no_reverse, checkpoint, reuse = VARIANTS[name]
    os.environ["LANTERNA_CPU_REUSE"] = "1" if reuse else "0"
    load_bridge()
    model = load_model("lstm")
    config = model.Config.small(seq=seq) if quick else model.Config(batch=20, seq=seq)
    passes = CpuBackend.default_pipeline.split(",")
    pipeline = ",".join(p for p in passes if not (no_reverse and p == "reverse-loops"))
    jitted = make_step(model, config, checkpoint, pipeline)
    rng = np.random.default_rng(0)
    state = model.init(rng, config)
    batches = [b for _, b in zip(range(steps + 1), model.batches(rng, config))]
    module = jitted.lower(state, batches[0]).module  # traced here, not in the timed call
    del module
    stack0 = _vm_stack_kib()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    loss, state = jitted(state, batches[0])
    cold = time.perf_counter() - start
    times = []
    for b in batches[1:]:
        start = time.perf_counter()
        loss, state = jitted(state, b)
        times.append(time.perf_counter() - start)
    stats = jitted.memory_stats()
    return {
        "variant": name,
        "pipeline": pipeline,
        "checkpoint": checkpoint,
        "buffer_reuse": reuse,
        "seq": seq,
        "arena_fresh": stats["fresh"],
        "arena_requested": stats["requested"],
        "arena_reused": stats["reused"],
        "stack_kib": _vm_stack_kib(),
        "stack_growth_kib": _vm_stack_kib() - stack0,
        "rss_growth_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0,
        "cold_s": cold,
        "median_ms": 1e3 * statistics.median(times) if times else None,
        "final_loss": float(loss),
    }


def _mib(b: float) -> str:
    return f"{b / 2**20:.1f}"


def table(rows: list[dict[str, Any]]) -> str:
    base = next(r for r in rows if r["variant"] == "callbacks")
    head = (
        "| variant | arena footprint MiB (vs callbacks) | requested MiB | stack KiB "
        "| peak RSS growth MiB | ms/step | final loss |"
    )
    lines = [head, "|" + "---|" * 7]
    for r in rows:
        ratio = r["arena_fresh"] / base["arena_fresh"] if base["arena_fresh"] else 0
        ms = "-" if r["median_ms"] is None else f"{r['median_ms']:.1f}"
        lines.append(
            f"| {r['variant']} | {_mib(r['arena_fresh'])} ({ratio:.2f}x) "
            f"| {_mib(r['arena_requested'])} | {r['stack_kib']} "
            f"| {r['rss_growth_kib'] / 1024:.1f} | {ms} | {r['final_loss']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (for CI)")
    ap.add_argument("--seq", type=int, help="sequence length (default 1000, 50 with --quick)")
    ap.add_argument("--steps", type=int, help="timed steps after the cold one (default 5, 1 quick)")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="where to write memory.*")
    ap.add_argument("--variant", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    ap.add_argument("--json-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    seq = args.seq or (50 if args.quick else 1000)
    steps = args.steps if args.steps is not None else (1 if args.quick else 5)

    if args.variant:  # a child: one variant in this process
        row = run_variant(args.variant, args.quick, seq, steps)
        args.json_out.write_text(json.dumps(row))
        return 0

    rows = []
    args.out.mkdir(parents=True, exist_ok=True)
    for name in VARIANTS:
        out = args.out / f".memory-{os.getpid()}.json"
        cmd = [sys.executable, __file__, "--variant", name, "--json-out", str(out)]
        cmd += ["--seq", str(seq), "--steps", str(steps)] + (["--quick"] if args.quick else [])
        print(f"running {name} ...", flush=True)
        subprocess.run(cmd, check=True)
        rows.append(json.loads(out.read_text()))
        out.unlink()
    size = "hidden 16, batch 2 (quick)" if args.quick else "hidden 50, batch 20"
    text = table(rows)
    print(f"LSTM training step, one sequence of {seq} steps ({size})")
    print(text)
    result = {"model": "lstm", "seq": seq, "size": size, "quick": args.quick, "rows": rows}
    (args.out / "memory.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "memory.md").write_text(
        f"# Memory of a {seq}-step differentiated sequence\n\n"
        f"LSTM character model ({size}), forward + backward + update in one call; each\n"
        "variant in its own process. Arena footprint: the bytes the call's tensors took\n"
        "from the arena's chunks (the most needed at once); requested: all allocations;\n"
        "stack: the main thread's stack high-water mark (VmStk); peak RSS growth: over\n"
        "the cold call (compile included). Ratios are to the callback form.\n\n" + text + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
