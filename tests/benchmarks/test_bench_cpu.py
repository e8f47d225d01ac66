"""The cpu micro-benchmark runs (quick mode) and writes its JSON; no timing asserts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "bench_cpu.py"


def test_bench_cpu_quick(tmp_path):
    out = tmp_path / "cpu.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "512x512 f32 matmul, lanterna" in proc.stdout
    data = json.loads(out.read_text())
    for key in ("cold_compile_s", "call_us_lanterna", "matmul512_gflops_lanterna"):
        assert data[key] > 0
