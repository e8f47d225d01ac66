"""cpu backend micro-benchmarks, side by side in one run.

* cold compile: trace + passes + emit + g++ for a small function, with an empty
  compile cache (the pybind11 bridge and the precompiled runtime header are built
  beforehand: they are built once per machine, not per program), and a warm call
  through the cache;
* call overhead: a jitted function on 4-element arrays vs the same numpy code;
* a 512x512 float32 matmul through `ln.jit` vs numpy, in GFLOP/s.

    python benchmarks/bench_cpu.py [--quick] [--json results/cpu.json]

Numbers are medians; ratios compare within this run only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def median_time(fn: Callable[[], object], repeat: int, number: int) -> float:
    """Median over `repeat` runs of the mean time of `number` calls, in seconds."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - start) / number)
    return statistics.median(runs)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few repetitions (for CI)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON")
    args = ap.parse_args(argv)
    repeat, scale = (3, 1) if args.quick else (7, 10)

    import lanterna as ln
    from lanterna.backends.cpu_cpp.driver import load_bridge, prebuild

    load_bridge()  # once per machine; not part of a program's compile time
    results: dict[str, float] = {}

    # --- cold compile ----------------------------------------------------------------------
    def small(x, w):
        return ln.sum(ln.tanh(x * w) + x)

    x4, w4 = np.ones(4, np.float32), np.full(4, 0.5, np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        saved = os.environ.get("LANTERNA_CACHE_DIR")
        os.environ["LANTERNA_CACHE_DIR"] = tmp
        try:
            prebuild()  # the bridge and the precompiled runtime header: once per machine
            start = time.perf_counter()
            f = ln.jit(small, backend="cpu")
            f(x4, w4)
            results["cold_compile_s"] = time.perf_counter() - start
            start = time.perf_counter()
            ln.jit(small, backend="cpu")(x4, w4)  # new trace, cached module
            results["warm_compile_s"] = time.perf_counter() - start
        finally:
            if saved is None:
                del os.environ["LANTERNA_CACHE_DIR"]
            else:
                os.environ["LANTERNA_CACHE_DIR"] = saved

    # --- call overhead ---------------------------------------------------------------------
    f = ln.jit(small, backend="cpu")
    f(x4, w4)
    results["call_us_lanterna"] = 1e6 * median_time(lambda: f(x4, w4), repeat, 200 * scale)
    results["call_us_numpy"] = 1e6 * median_time(
        lambda: np.sum(np.tanh(x4 * w4) + x4), repeat, 200 * scale
    )

    # --- 512x512 matmul --------------------------------------------------------------------
    n = 512
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    mm = ln.jit(lambda a, b: a @ b, backend="cpu")
    np.testing.assert_allclose(mm(a, b), a @ b, rtol=1e-3, atol=1e-3)
    flop = 2 * n**3
    t_ln = median_time(lambda: mm(a, b), repeat, 2 * scale)
    t_np = median_time(lambda: a @ b, repeat, 2 * scale)
    results["matmul512_gflops_lanterna"] = flop / t_ln / 1e9
    results["matmul512_gflops_numpy"] = flop / t_np / 1e9

    rows = [
        ("cold compile of a small function (s)", results["cold_compile_s"], None),
        ("same function, cached module (s)", results["warm_compile_s"], None),
        ("call overhead, lanterna (us)", results["call_us_lanterna"], None),
        ("same computation in numpy (us)", results["call_us_numpy"], None),
        (
            "512x512 f32 matmul, lanterna (GFLOP/s)",
            results["matmul512_gflops_lanterna"],
            results["matmul512_gflops_lanterna"] / results["matmul512_gflops_numpy"],
        ),
        ("512x512 f32 matmul, numpy (GFLOP/s)", results["matmul512_gflops_numpy"], 1.0),
    ]
    print(f"machine: {machine()}")
    print(f"| {'measure':<42} | {'value':>10} | {'vs numpy':>8} |")
    print(f"|{'-' * 44}|{'-' * 12}|{'-' * 10}|")
    for name, value, ratio in rows:
        r = f"{ratio:.2f}x" if ratio is not None else ""
        print(f"| {name:<42} | {value:>10.3f} | {r:>8} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine(), **results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
