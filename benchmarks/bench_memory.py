"""Memory of a long differentiated sequence: callbacks vs `reverse-loops` vs `ln.checkpoint`.

Trains the LSTM character model (benchmarks/models/lstm.py sizes: hidden 50,
batch 20) on one sequence of 1,000 steps -- forward, backward and Adagrad update
in one compiled call (the model's own step; `Config(checkpoint=True)` puts each
time step in `ln.checkpoint`) -- in five variants, each in a process of its own:

* `callbacks`: the cpu pipeline without `reverse-loops`; the time loop is a
  chain of callbacks (a recursive closure), the paper's form;
* `reverse-loops`: the default pipeline; a forward loop saves what the adjoints
  read on stacks, a backward loop pops them;
* `checkpoint`: as `reverse-loops`, with each step's cell, output layer and loss
  in `ln.checkpoint`: only the step's inputs are saved, the rest is recomputed;
* `reverse-loops, no reuse` and `checkpoint, no reuse`: the same two with the
  arena's buffer reuse turned off (`plan-buffers{reuse=false}`).

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
from bench_passes import (  # this folder is on the path when run as a script
    load_model,
    no_reuse_pipeline,
)

HERE = Path(__file__).resolve().parent
VARIANTS = {
    # name: (without reverse-loops, checkpoint, buffer reuse)
    "callbacks": (True, False, True),
    "reverse-loops": (False, False, True),
    "checkpoint": (False, True, True),
    "reverse-loops, no reuse": (False, False, False),
    "checkpoint, no reuse": (False, True, False),
}


def _vm_stack_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmStk:"):
                return int(line.split()[1])
    return 0


def run_variant(name: str, quick: bool, seq: int, steps: int) -> dict[str, Any]:
    from lanterna.backends.cpu_cpp.backend import CpuBackend
    from lanterna.backends.cpu_cpp.driver import load_bridge, prebuild

    no_reverse, checkpoint, reuse = VARIANTS[name]
    prebuild()
    load_bridge()
    import lanterna as ln

    model = load_model("lstm")
    config = (
        model.Config.small(seq=seq, checkpoint=checkpoint)
        if quick
        else model.Config(batch=20, seq=seq, checkpoint=checkpoint)
    )
    passes = CpuBackend.default_pipeline.split(",")
    pipeline = ",".join(p for p in passes if not (no_reverse and p == "reverse-loops"))
    if not reuse:
        pipeline = no_reuse_pipeline(pipeline)
    # The model's own training step (its time steps in ln.checkpoint when asked),
    # compiled with this variant's pipeline.
    step = model.make_step(config, "cpu").__wrapped__
    jitted = ln.jit(step, backend="cpu", pipeline=pipeline)
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
