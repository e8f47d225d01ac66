"""The compile cache: reuse across processes, concurrent builders, corrupt entries, the
directory's permissions, and `python -m lanterna cache`."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lanterna.backends.cpu_cpp import cache, driver

pytestmark = pytest.mark.skipif(
    shutil.which("g++") is None, reason="g++ is not on PATH: the cpu backend cannot compile"
)

# Compiles a source (read from argv[1]) and prints the module's path; with argv[2], waits
# for that file to exist first, so that two processes start compiling together.
COMPILE_SCRIPT = """
import os, sys, time
from pathlib import Path
from lanterna.backends.cpu_cpp import driver
go = sys.argv[2] if len(sys.argv) > 2 else None
while go and not os.path.exists(go):
    time.sleep(0.005)
print(driver.compile_source(Path(sys.argv[1]).read_text()))
"""

# Compiles the saxpy module, calls it through the bridge, and prints the sum of its result.
CALL_SCRIPT = """
import sys
import numpy as np
from pathlib import Path
from lanterna.backends.cpu_cpp import backend, driver
path = driver.compile_source(Path(sys.argv[1]).read_text())
f = backend.load(path, "saxpy", [((8,), np.float32)] * 2, [((8,), np.float32), ((3,), np.int64)])
out, _ = f(np.arange(8, dtype=np.float32), np.ones(8, dtype=np.float32))
print(path)
print(out.sum())
"""


def run_python(code: str, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out


def test_a_second_process_reuses_the_module(
    cache_dir: Path, tmp_path: Path, saxpy: str, logging_gxx
):
    src = tmp_path / "saxpy.cpp"
    src.write_text(saxpy)
    built = driver.compile_source(saxpy)
    out = finish(run_python(CALL_SCRIPT, str(src), env=logging_gxx.env)).split()
    assert out == [str(built), str(float(sum(2 * i + 1 for i in range(8))))]
    # It asked the compiler for its version (part of the key) but compiled nothing: not
    # the module and not the bridge.
    assert logging_gxx.log.read_text().strip() == "--version"
    assert logging_gxx.compiles() == []


def test_two_processes_compiling_the_same_module_both_succeed(
    cache_dir: Path, tmp_path: Path, saxpy: str, logging_gxx
):
    src = tmp_path / "fresh.cpp"
    src.write_text(saxpy + "\n// a module nobody compiled yet\n")
    go = tmp_path / "go"
    env = {**logging_gxx.env, "LANTERNA_TEST_GXX_DELAY": "0.5"}
    procs = [run_python(COMPILE_SCRIPT, str(src), str(go), env=env) for _ in range(2)]
    time.sleep(1.0)  # both interpreters are up and polling
    go.touch()
    paths = {finish(p).strip() for p in procs}
    assert len(paths) == 1
    path = Path(paths.pop())
    assert cache.is_valid(path)
    # The lock made the second process wait for the first one's build instead of redoing it.
    assert len(logging_gxx.compiles()) == 1
    assert not list(path.parent.glob(".*.tmp"))


def test_concurrent_builders_without_the_lock_still_leave_a_valid_entry(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    # Atomic rename alone must keep the entry whole even if the lock were not honoured
    # (say, a filesystem where flock is a no-op): simulate by building twice "at once".
    import contextlib

    monkeypatch.setattr(cache, "_locked", lambda path: contextlib.nullcontext())
    calls = []

    def build(out: Path) -> None:
        calls.append(out)
        if len(calls) == 1:  # a second builder finishes while the first is still working
            cache.get_or_build("test", "k", ".bin", build)
        out.write_bytes(b"payload %d" % len(calls))

    path, built = cache.get_or_build("test", "k", ".bin", build)
    assert built and cache.is_valid(path) and path.read_bytes() in (b"payload 1", b"payload 2")
    assert len(calls) == 2 and calls[0] != calls[1]


def test_a_truncated_entry_is_rebuilt(cache_dir: Path, saxpy: str, logging_gxx, tmp_path: Path):
    path = driver.compile_source(saxpy)
    good = path.read_bytes()
    with open(path, "r+b") as f:
        f.truncate(len(good) // 2)
    assert not cache.is_valid(path)
    src = tmp_path / "saxpy.cpp"
    src.write_text(saxpy)
    out = finish(run_python(CALL_SCRIPT, str(src), env=logging_gxx.env)).split()
    assert out[0] == str(path)
    assert len(logging_gxx.compiles()) == 1
    assert cache.is_valid(path) and path.stat().st_size == len(good)


def test_a_corrupt_sidecar_or_flipped_byte_means_a_rebuild(cache_dir: Path, saxpy: str):
    path = driver.compile_source(saxpy)
    sidecar = path.with_name(path.name + ".json")
    sidecar.write_text("{not json")
    assert not cache.is_valid(path)
    inode = path.stat().st_ino
    assert driver.compile_source(saxpy) == path
    assert cache.is_valid(path) and path.stat().st_ino != inode

    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert not cache.is_valid(path)
    driver.compile_source(saxpy)
    assert cache.is_valid(path)
    assert json.loads(sidecar.read_text())["size"] == path.stat().st_size


def test_a_failed_build_leaves_no_entry(cache_dir: Path):
    def build(out: Path) -> None:
        out.write_bytes(b"partial")
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError, match="compiler crashed"):
        cache.get_or_build("test", "k2", ".bin", build)
    folder = cache.namespace_dir("test")
    assert sorted(p.name for p in folder.iterdir()) == ["k2.lock"]


def test_cache_directory_is_private(cache_dir: Path, saxpy: str, monkeypatch: pytest.MonkeyPatch):
    driver.compile_source(saxpy)
    for folder in (cache_dir, cache_dir / "v1", cache_dir / "v1" / "cpu"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    owner = cache_dir.stat().st_uid
    monkeypatch.setattr(cache.os, "getuid", lambda: owner + 1)
    with pytest.raises(cache.CacheError, match="belongs to another user"):
        driver.compile_source(saxpy)


def test_default_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("LANTERNA_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache.cache_dir() == tmp_path / ".cache" / "lanterna"


def test_keys_separate_their_parts():
    assert cache.make_key("ab", "c") != cache.make_key("a", "bc")
    assert cache.make_key("x") == cache.make_key(b"x")


def lanterna_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lanterna", *args],
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )


def test_cache_cli_info_list_clear(cache_dir: Path, saxpy: str, tmp_path: Path):
    driver.compile_source(saxpy)
    other = cache_dir / "not-ours.txt"
    other.write_text("keep me")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["LANTERNA_CACHE_DIR"] = str(cache_dir)

    info = lanterna_cli("cache", "info", env=env)
    assert info.returncode == 0, info.stderr
    assert f"directory: {cache_dir}" in info.stdout
    assert "entries:   2 (1 bridge, 1 cpu)" in info.stdout
    assert "KiB" in info.stdout

    listed = lanterna_cli("cache", "list", env=env)
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 2

    cleared = lanterna_cli("cache", "clear", env=env)
    assert cleared.returncode == 0, cleared.stderr
    assert "removed 2 entries" in cleared.stdout
    assert other.read_text() == "keep me"  # only lanterna's own folders go
    after = lanterna_cli("cache", "info", env=env)
    assert "entries:   0" in after.stdout and "size:      0 B" in after.stdout

    helped = lanterna_cli("cache", "--help", env=env)
    assert helped.returncode == 0 and "LANTERNA_CACHE_DIR" in helped.stdout
    bad = lanterna_cli("cache", "frobnicate", env=env)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
