"""The benchmark runner (benchmarks/run.py) in quick mode, so it never rots: every
model gets rows with finite times, the losses of the frameworks that ran are
compared, a row run in a process of its own reports that process's memory, and
`--threads 1` pins it to one core. No timing asserts."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "run.py"
MODELS = ("rnn", "lstm", "treelstm", "cnn")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    # The shared compile cache keeps reruns fast; a cold one adds the C++ compiles.
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--cache", "shared", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def assert_ran(row: dict[str, Any]) -> None:
    assert row["status"] == "ok", row
    assert math.isfinite(row["median_ms"]) and row["median_ms"] > 0
    assert math.isfinite(row["cold_s"]) and math.isfinite(row["final_loss"])
    assert 0 < row["setup_rss_mb"] <= row["peak_rss_mb"], row


def test_run_quick_all_models(tmp_path):
    run("--model", "all", "--out", str(tmp_path))
    result = json.loads((tmp_path / "results.json").read_text())
    report = (tmp_path / "results.md").read_text()
    assert report.startswith("# Benchmark results") and "## Threads: default" in report
    assert result["process"] == "shared" and list(result["threads"]) == ["default"]
    by_threads = result["threads"]["default"]
    for name in MODELS:
        rows = [r for r in by_threads["rows"] if r["model"] == name]
        ours = [r for r in rows if r["framework"].startswith("lanterna")]
        assert {r["framework"] for r in ours} == {"lanterna cpu", "lanterna interp"}
        for r in ours:
            assert_ran(r)
        for r in rows:  # a peer that is missing or does not apply says so
            assert r["status"] == "ok" or r["status"].startswith(("not installed", "n/a")), r
        assert "dynet" in {r["framework"] for r in rows}
        key = next(k for k in by_threads["agreement"] if k.startswith(name))
        agree = by_threads["agreement"][key]
        # interp runs the same program as cpu; peers compute the same model in float32.
        assert agree is not None and agree["after_1_step"] < 1e-3, (key, agree)
        assert math.isfinite(agree["after_last_step"]), (key, agree)


def test_row_in_its_own_process_pinned_to_one_core(tmp_path):
    out = tmp_path / "row.json"
    run("--row", "rnn:tiny:lanterna cpu", "--threads", "1", "--json-out", str(out))
    result = json.loads(out.read_text())
    # The process restarted itself on one core with the thread variables at 1.
    assert result["process"]["cores usable"] == "1"
    assert result["process"]["OMP_NUM_THREADS"] == result["process"]["OPENBLAS_NUM_THREADS"] == "1"
    (row,) = result["rows"]
    assert (row["model"], row["size"], row["framework"]) == ("rnn", "tiny", "lanterna cpu")
    assert_ran(row)
    assert len(row["losses"]) == 4 and row["losses"][-1] == row["final_loss"]


def test_process_per_row_under_both_thread_settings(tmp_path):
    frameworks = ["--framework", "lanterna cpu", "--framework", "numpy"]
    run(
        "--model",
        "rnn",
        *frameworks,
        "--process",
        "row",
        "--threads",
        "both",
        "--out",
        str(tmp_path),
    )
    result = json.loads((tmp_path / "results.json").read_text())
    report = (tmp_path / "results.md").read_text()
    assert "## Threads: 1" in report and "## Threads: default" in report
    assert result["process"] == "row"
    assert result["threads"]["1"]["process"]["cores usable"] == "1"
    for threads in ("1", "default"):
        rows = result["threads"][threads]["rows"]
        assert [r["framework"] for r in rows] == ["lanterna cpu", "numpy"]
        for r in rows:
            assert_ran(r)
        agree = result["threads"][threads]["agreement"]["rnn tiny"]
        assert agree["compared"] == 1 and agree["after_last_step"] < 1e-3, agree


def test_dynet_rows_agree_with_lanterna_or_say_not_installed(tmp_path):
    """DyNet builds from source (see benchmarks/peers/dynet_models.py), so it is often
    missing; where it is there, its losses follow lanterna cpu's from the same
    weights for the first steps of every model."""
    out = tmp_path / "rows.json"
    sizes = {"rnn": "tiny", "lstm": "tiny", "treelstm": "tiny", "cnn": "tiny, dropout off"}
    specs = [f"{m}:{size}:{fw}" for m, size in sizes.items() for fw in ("lanterna cpu", "dynet")]
    run(*(arg for spec in specs for arg in ("--row", spec)), "--json-out", str(out))
    rows = json.loads(out.read_text())["rows"]
    for ours, dynet in zip(rows[::2], rows[1::2]):
        assert_ran(ours)
        if dynet["status"].startswith("not installed"):
            assert dynet["status"] == "not installed (dynet)"
            continue
        assert_ran(dynet)
        for a, b in zip(dynet["losses"], ours["losses"]):
            assert abs(a - b) <= 1e-4 * abs(b), (dynet["model"], dynet["losses"], ours["losses"])
