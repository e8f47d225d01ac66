"""The long-sequence memory benchmark (benchmarks/bench_memory.py) in quick mode, so it
never rots: every variant runs in its own process and reaches the same loss; the arena
byte counts are checked for what the variants guarantee. No timing asserts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "bench_memory.py"


def test_bench_memory_quick(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "memory.json").read_text())
    rows = {r["variant"]: r for r in data["rows"]}
    assert set(rows) == {
        "callbacks",
        "reverse-loops",
        "checkpoint",
        "reverse-loops, no reuse",
        "checkpoint, no reuse",
    }
    # Same weights, same sequence: every variant computes the same training step.
    losses = [r["final_loss"] for r in rows.values()]
    assert max(losses) - min(losses) <= 1e-4 * abs(losses[0])
    assert "reverse-loops" not in rows["callbacks"]["pipeline"]
    assert "reverse-loops" in rows["checkpoint"]["pipeline"]
    for r in rows.values():
        assert 0 < r["arena_fresh"] <= r["arena_requested"]
    for name in ("reverse-loops", "checkpoint"):
        off = rows[f"{name}, no reuse"]
        assert off["arena_fresh"] == off["arena_requested"]
        assert rows[name]["arena_fresh"] < off["arena_fresh"]
    # Checkpointing keeps only each step's inputs: a smaller footprint.
    assert rows["checkpoint"]["arena_fresh"] < rows["reverse-loops"]["arena_fresh"]
    assert "| checkpoint |" in (tmp_path / "memory.md").read_text()
