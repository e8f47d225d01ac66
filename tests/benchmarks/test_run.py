"""The benchmark runner (benchmarks/run.py) in quick mode, so it never rots: every
model gets rows with finite times, and the losses of the frameworks that ran are
compared. No timing asserts."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "run.py"
MODELS = ("rnn", "lstm", "treelstm", "cnn")


def test_run_quick_all_models(tmp_path):
    # The shared compile cache keeps reruns fast; a cold one adds the C++ compiles.
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--model",
            "all",
            "--cache",
            "shared",
            "--out",
            str(tmp_path),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "results.md").read_text().startswith("# Benchmark results")
    for name in MODELS:
        rows = [r for r in result["rows"] if r["model"] == name]
        ours = [r for r in rows if r["framework"].startswith("lanterna")]
        assert {r["framework"] for r in ours} == {"lanterna cpu", "lanterna interp"}
        for r in ours:
            assert r["status"] == "ok", r
            assert math.isfinite(r["median_ms"]) and r["median_ms"] > 0
            assert math.isfinite(r["cold_s"]) and math.isfinite(r["final_loss"])
        for r in rows:  # a peer that is missing or does not apply says so
            assert r["status"] == "ok" or r["status"].startswith(("not installed", "n/a")), r
        key = next(k for k in result["agreement"] if k.startswith(name))
        agree = result["agreement"][key]
        # interp runs the same program as cpu; peers compute the same model in float32.
        assert agree is not None and agree["after_1_step"] < 1e-3, (key, agree)
        assert math.isfinite(agree["after_last_step"]), (key, agree)
