"""The pass-ablation benchmark (benchmarks/bench_passes.py) in quick mode, so it never
rots: one row per pipeline variant, positive op counts. No timing asserts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "bench_passes.py"
VARIANTS = {
    "default",
    "-reverse-loops",
    "-elide-zero-adjoints",
    "-canonicalize",
    "-cse",
    "-licm",
    "-dce",
    "-fuse-elementwise",
    "-absorb-transposes",
    "-accumulate-products",
    "-accumulate-pieces",
    "-defer-products",
    "-buffer-reuse",
}


def test_bench_passes_quick(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| default |" in proc.stdout
    data = json.loads((tmp_path / "passes.json").read_text())
    rows = {r["variant"]: r for r in data["rows"]}
    assert set(rows) == VARIANTS
    for row in rows.values():
        assert "lower-continuations" in row["pipeline"]
        assert row["ln_ops"] > 0 and row["total_ops"] > 0
        assert row["total_ops"] == row["ln_ops"] + row["ad_ops"] + row["cont_ops"]
        assert row["zero_like"] >= 0 and row["zero_like_bytes"] >= 0
        assert 0 < row["footprint_bytes"] <= row["requested_bytes"]
    # Removing a pass never leaves fewer zero-filled buffers than the full pipeline.
    assert rows["-elide-zero-adjoints"]["zero_like"] >= rows["default"]["zero_like"]
    # Without reuse every request takes fresh memory; with it, less. (Without
    # takeovers, cells and final loads copy: more is requested, too.)
    off = rows["-buffer-reuse"]
    assert "plan-buffers{reuse=false}" in off["pipeline"]
    assert off["footprint_bytes"] == off["requested_bytes"] >= rows["default"]["requested_bytes"]
    assert rows["default"]["footprint_bytes"] < off["footprint_bytes"]
    # Without reverse-loops the time loop is a recursive closure again.
    assert rows["-reverse-loops"]["cont_ops"] > 0 and rows["default"]["cont_ops"] == 0
    losses = [r["final_loss"] for r in rows.values()]
    assert max(losses) - min(losses) <= 1e-5 * abs(losses[0])  # float32, ops reordered
    assert (tmp_path / "passes.md").read_text().startswith("# ")
