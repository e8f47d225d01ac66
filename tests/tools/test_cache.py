"""`python -m lanterna cache ...` (`lanterna.tools.cache`, dispatched by `__main__.py`):
the same command line as before the tools moved, on an empty or a filled cache.
(tests/backends/cpu_cpp/test_cache.py runs it on entries the cpu driver built.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lanterna.backends import cache
from lanterna.tools import cache as cache_tool


def lanterna(*args: str, cache_dir: Path, module: str = "lanterna") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", cache.MAX_SIZE_ENV)}
    env["LANTERNA_CACHE_DIR"] = str(cache_dir)
    return subprocess.run(
        [sys.executable, "-m", module, *args], env=env, capture_output=True, text=True, check=False
    )


def test_cache_info_on_an_empty_cache(tmp_path: Path):
    info = lanterna("cache", "info", cache_dir=tmp_path / "c")
    assert info.returncode == 0, info.stderr
    assert info.stdout.splitlines() == [
        f"directory: {tmp_path / 'c'}",
        "entries:   0",
        "size:      0 B",
        (
            f"limit:     2.0 GiB (0% used; set by {cache.MAX_SIZE_ENV}; "
            "least recently used entries go first)"
        ),
    ]
    assert info.stderr == ""


def test_list_and_clear_an_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "c"
    monkeypatch.setenv("LANTERNA_CACHE_DIR", str(root))
    key = cache.make_key("test", "payload")
    with cache.use("cpu", key, ".so", lambda out: out.write_bytes(b"x" * 2048)) as (path, built):
        assert built and path.read_bytes() == b"x" * 2048

    info = lanterna("cache", "info", cache_dir=root)
    total = cache.info().total_bytes  # the entry and its sidecar
    assert 2048 < total < 4096
    assert "entries:   1 (1 cpu)" in info.stdout
    assert f"size:      {total / 1024:.1f} KiB" in info.stdout
    listed = lanterna("cache", "list", cache_dir=root)
    assert listed.returncode == 0
    assert listed.stdout.split() == [f"v{cache.FORMAT_VERSION}/cpu", "2.0", "KiB", path.name]
    cleared = lanterna("cache", "clear", cache_dir=root)
    assert cleared.returncode == 0 and cleared.stdout == f"removed 1 entries from {root}\n"
    assert not path.exists()


def test_usage_errors_and_help(tmp_path: Path):
    top = lanterna("--help", cache_dir=tmp_path)
    assert top.returncode == 0 and "usage: python -m lanterna [-h] COMMAND" in top.stdout
    assert "inspect or clear the compile cache" in top.stdout
    helped = lanterna("cache", "--help", cache_dir=tmp_path)
    assert helped.returncode == 0 and "usage: python -m lanterna cache [-h] ACTION" in helped.stdout
    assert "LANTERNA_CACHE_DIR" in helped.stdout
    missing = lanterna(cache_dir=tmp_path)
    assert missing.returncode == 2 and "required: COMMAND" in missing.stderr
    bad = lanterna("cache", "frobnicate", cache_dir=tmp_path)
    assert bad.returncode == 2 and "invalid choice: 'frobnicate'" in bad.stderr


def test_a_bad_setting_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("LANTERNA_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(cache.MAX_SIZE_ENV, "lots")
    assert cache_tool.main(["info"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"python -m lanterna: error: {cache.MAX_SIZE_ENV}='lots' is not a size")
    assert len(err.splitlines()) == 1


def test_the_tool_runs_on_its_own(tmp_path: Path):
    info = lanterna("info", cache_dir=tmp_path / "c", module="lanterna.tools.cache")
    assert info.returncode == 0, info.stderr
    assert info.stdout.startswith(f"directory: {tmp_path / 'c'}\nentries:   0\n")
