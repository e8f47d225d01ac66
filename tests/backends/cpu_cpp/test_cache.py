"""The compile cache: reuse across processes, concurrent builders, corrupt entries, the
permissions of its folders and files, planted entries, a clear during a compile, stale
temporary files, the size cap, and `python -m lanterna cache`."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lanterna.backends import cache
from lanterna.backends.cpu_cpp import backend, driver

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

# The same, compiled and loaded the way the backend does: held in the cache until loaded.
HELD_CALL_SCRIPT = CALL_SCRIPT.replace(
    "path = driver.compile_source(Path(sys.argv[1]).read_text())\nf = ",
    "with driver.compiled(Path(sys.argv[1]).read_text()) as path:\n    f = ",
)
assert "driver.compiled" in HELD_CALL_SCRIPT


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


# --- who may write the cache (issue 12, items 9 and 10) -------------------------------------

SAXPY_TIMES_3 = ("a[i] * 2 + b[i]", "a[i] * 3 + b[i]")


def saxpy_result(path: Path) -> np.ndarray:
    f = backend.load(
        path, "saxpy", [((8,), np.float32)] * 2, [((8,), np.float32), ((3,), np.int64)]
    )
    return f(np.arange(8, dtype=np.float32), np.ones(8, dtype=np.float32))[0]


@pytest.mark.parametrize("where", ["", "v1", "v1/cpu"])
@pytest.mark.parametrize("mode", [0o770, 0o703])
def test_a_folder_others_may_write_is_refused(cache_dir: Path, saxpy: str, where: str, mode: int):
    driver.compile_source(saxpy)
    folder = cache_dir / where
    os.chmod(folder, mode)
    try:
        with pytest.raises(cache.CacheError) as e:
            driver.compile_source(saxpy)
        who = "its group" if mode & 0o020 else "others"
        assert f"directory {folder} is writable by {who}" in str(e.value)
        assert f"chmod 700 {folder}" in str(e.value) and "LANTERNA_CACHE_DIR" in str(e.value)
    finally:
        os.chmod(folder, 0o700)
    assert driver.compile_source(saxpy).is_file()  # fixed as the message says: used again


def test_an_entry_others_may_write_or_own_is_refused(cache_dir: Path, saxpy: str):
    path = driver.compile_source(saxpy)
    for victim in (path, path.with_name(path.name + ".json")):
        os.chmod(victim, 0o622)
        with pytest.raises(cache.CacheError, match="writable by its group and others") as e:
            driver.compile_source(saxpy)
        assert f"file {victim}" in str(e.value) and f"rm {victim}" in str(e.value)
        os.chmod(victim, 0o600)
    # Another user's file: checked on the stat result, so that this runs as any user.
    st = os.lstat(path)
    theirs = os.stat_result((st.st_mode, *st[1:4], st.st_uid + 1, *st[5:]))
    with pytest.raises(cache.CacheError, match=f"file {path} belongs to another user"):
        cache.check_file(path, theirs)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_an_entry_another_user_owns_is_refused_end_to_end(cache_dir: Path, saxpy: str):
    path = driver.compile_source(saxpy)
    os.chown(path, 12345, 12345)
    with pytest.raises(cache.CacheError, match="belongs to another user \\(uid 12345\\)"):
        driver.compile_source(saxpy)


def test_a_linked_entry_with_a_matching_sidecar_is_never_loaded(cache_dir: Path, saxpy: str):
    mine = driver.compile_source(saxpy)
    other = driver.compile_source(saxpy.replace(*SAXPY_TIMES_3))
    sidecar = mine.with_name(mine.name + ".json")
    mine.unlink()
    mine.symlink_to(other)
    shutil.copy(other.with_name(other.name + ".json"), sidecar)
    with pytest.raises(cache.CacheError, match=f"file {mine} is a symbolic link"):
        driver.compile_source(saxpy)
    # A linked sidecar, or folder, is refused too.
    mine.unlink()
    shutil.copy(other, mine)
    sidecar.unlink()
    sidecar.symlink_to(other.with_name(other.name + ".json"))
    with pytest.raises(cache.CacheError, match=f"file {sidecar} is a symbolic link"):
        driver.compile_source(saxpy)
    sidecar.unlink()
    bridge = cache_dir / "v1" / "bridge"
    bridge.rename(cache_dir / "elsewhere")
    bridge.symlink_to(cache_dir / "elsewhere")
    with pytest.raises(cache.CacheError, match=f"folder {bridge} is a symbolic link"):
        driver.build_bridge()


def test_another_keys_entry_and_sidecar_copied_in_are_rebuilt(cache_dir: Path, saxpy: str):
    mine = driver.compile_source(saxpy)
    other = driver.compile_source(saxpy.replace(*SAXPY_TIMES_3))
    shutil.copy(other, mine)
    shutil.copy(other.with_name(other.name + ".json"), mine.with_name(mine.name + ".json"))
    assert not cache.is_valid(mine)  # the sidecar names the other key
    path = driver.compile_source(saxpy)
    assert path == mine and cache.is_valid(mine)
    np.testing.assert_array_equal(saxpy_result(path), np.arange(8) * 2 + 1)


def test_a_planted_source_is_never_compiled(cache_dir: Path, saxpy: str):
    path = driver.compile_source(saxpy)
    source = path.with_suffix(".cpp")
    assert source.read_text() == saxpy
    # The key is not built (or its entry went), and a different source waits under its name.
    path.unlink()
    source.write_text(saxpy.replace(*SAXPY_TIMES_3))
    assert driver.compile_source(saxpy) == path
    assert source.read_text() == saxpy
    np.testing.assert_array_equal(saxpy_result(path), np.arange(8) * 2 + 1)


def test_a_file_is_hashed_once_per_process_and_a_replacement_is_caught(
    cache_dir: Path, saxpy: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(cache, "_RACY_SECONDS", 0.0)  # remember files hashed just now
    path = driver.compile_source(saxpy)
    hashed = []
    real = cache._fd_digest
    monkeypatch.setattr(cache, "_fd_digest", lambda fd: hashed.append(fd) or real(fd))
    driver.compile_source(saxpy)
    driver.compile_source(saxpy)
    assert hashed == []
    # Replaced by another file (a new inode): hashed again, found wrong, rebuilt.
    other = driver.compile_source(saxpy.replace(*SAXPY_TIMES_3))
    tmp = path.with_name("planted")
    shutil.copy(other, tmp)
    os.replace(tmp, path)
    hashed.clear()
    assert driver.compile_source(saxpy) == path
    assert len(hashed) >= 2  # the planted file, then the rebuilt one
    np.testing.assert_array_equal(saxpy_result(path), np.arange(8) * 2 + 1)


# --- a cache used while it is cleared, killed builds, odd paths (item 11) ----------------------


def test_clear_waits_for_a_running_compile(
    cache_dir: Path, tmp_path: Path, saxpy: str, logging_gxx
):
    src = tmp_path / "slow.cpp"
    src.write_text(saxpy + "\n// compiled slowly\n")
    env = {**logging_gxx.env, "LANTERNA_CACHE_DIR": str(cache_dir)}
    env["LANTERNA_TEST_GXX_DELAY"] = "2"
    compiling = run_python(HELD_CALL_SCRIPT, str(src), env=env)
    deadline = time.monotonic() + 60
    while not logging_gxx.compiles():  # g++ started (and sleeps before compiling)
        assert compiling.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    cleared = lanterna_cli("cache", "clear", env=env)
    out = finish(compiling).split()
    assert out[1] == str(float(sum(2 * i + 1 for i in range(8))))
    assert cleared.returncode == 0, cleared.stderr
    assert "waiting for running lanterna compiles to finish" in cleared.stderr
    assert "removed 2 entries" in cleared.stdout  # the bridge and the module just built
    assert not Path(out[0]).exists() and cache.entries() == []


def test_a_build_whose_folder_is_removed_by_hand_is_retried(cache_dir: Path):
    calls = []

    def build(out: Path) -> None:
        calls.append(out)
        if len(calls) == 1:
            shutil.rmtree(cache_dir / "v1")  # `rm -rf` while the compiler runs
        out.write_bytes(b"payload")

    path, built = cache.get_or_build("test", "k", ".bin", build)
    assert built and len(calls) == 2 and path.read_bytes() == b"payload"
    assert cache.is_valid(path)


def test_stale_temporary_files_are_swept(cache_dir: Path, monkeypatch: pytest.MonkeyPatch):
    folder = cache.namespace_dir("test")
    old = time.time() - 2 * cache.STALE_TEMP_SECONDS
    stale = folder / ".k1.a8Xq.so.tmp"
    young = folder / ".k2.Zr3e.so.tmp"
    building = folder / ".k3.Pq0w.so.tmp"
    for f in (stale, young, building):
        f.write_bytes(b"x" * 1000)
    os.utime(stale, (old, old))
    os.utime(building, (old, old))
    held = cache._lock(folder / "k3.lock", shared=False)  # k3 is being built right now
    try:
        monkeypatch.setattr(cache, "_swept", set())
        cache.get_or_build("test", "k4", ".bin", lambda out: out.write_bytes(b"4"))
    finally:
        assert held is not None
        os.close(held)
    assert not stale.exists() and young.exists() and building.exists()


def test_a_cache_path_that_is_a_file_is_a_clear_error(
    tmp_path: Path, saxpy: str, monkeypatch: pytest.MonkeyPatch
):
    plain = tmp_path / "a-file"
    plain.write_text("")
    for root, says in ((plain, "is not a directory"), (plain / "sub", "a parent of it is not")):
        monkeypatch.setenv("LANTERNA_CACHE_DIR", str(root))
        with pytest.raises(cache.CacheError, match=says) as e:
            driver.compile_source(saxpy)
        assert str(root) in str(e.value) and "LANTERNA_CACHE_DIR" in str(e.value)
    monkeypatch.setenv("LANTERNA_CACHE_DIR", str(tmp_path / "c"))
    cache.namespace_dir("test")
    (tmp_path / "c" / "v1" / "test").rmdir()
    (tmp_path / "c" / "v1" / "test").write_text("")
    with pytest.raises(cache.CacheError, match="v1/test is not a directory"):
        cache.get_or_build("test", "k", ".bin", lambda out: out.write_bytes(b""))


# --- the size cap (item 12) -------------------------------------------------------------------


def payload(n: int) -> Callable[[Path], None]:
    return lambda out: out.write_bytes(b"x" * n)


def age(folder: Path, key: str, seconds_ago: float) -> None:
    """Make every file of `key` look last used `seconds_ago`."""
    when = time.time() - seconds_ago
    for f in folder.glob(f"{key}.*"):
        os.utime(f, (when, when))


def test_the_least_recently_used_entries_go_beyond_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("LANTERNA_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("LANTERNA_CACHE_MAX_SIZE", "3500")
    folder = cache.namespace_dir("test")
    for i, key in enumerate(("k1", "k2", "k3")):
        cache.get_or_build("test", key, ".bin", payload(1000))
        age(folder, key, 300 - 100 * i)
    assert cache.info().total_bytes < 3500
    cache.get_or_build("test", "k1", ".bin", payload(1000))  # used: now the newest
    cache.get_or_build("test", "k4", ".bin", payload(1000))
    assert sorted(p.name for p in cache.entries()) == ["k1.bin", "k3.bin", "k4.bin"]
    assert not list(folder.glob("k2*"))  # its sidecar and lock went with it
    assert cache.info().total_bytes <= 3500


def test_an_entry_in_use_is_not_evicted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LANTERNA_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("LANTERNA_CACHE_MAX_SIZE", "2500")
    folder = cache.namespace_dir("test")
    cache.get_or_build("test", "k1", ".bin", payload(1000))
    age(folder, "k1", 600)
    with cache.use("test", "k1", ".bin", payload(1000)) as (held, built):
        assert not built
        age(folder, "k1", 600)
        cache.get_or_build("test", "k2", ".bin", payload(1000))
        age(folder, "k2", 300)
        cache.get_or_build("test", "k3", ".bin", payload(1000))
        # k1 is the oldest, but held: k2 went instead.
        assert held.read_bytes() == b"x" * 1000
        assert sorted(p.name for p in cache.entries()) == ["k1.bin", "k3.bin"]
    cache.get_or_build("test", "k4", ".bin", payload(1000))
    assert sorted(p.name for p in cache.entries()) == ["k3.bin", "k4.bin"]


def test_the_cap_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("LANTERNA_CACHE_MAX_SIZE", raising=False)
    assert cache.max_bytes() == 2 << 30
    for text, expected in (
        ("1500", 1500),
        ("500M", 500 << 20),
        ("1.5g", 3 << 29),
        ("64KiB", 64 << 10),
        ("unlimited", None),
    ):
        monkeypatch.setenv("LANTERNA_CACHE_MAX_SIZE", text)
        assert cache.max_bytes() == expected, text
    for bad in ("lots", "-5", "0", "3X"):
        monkeypatch.setenv("LANTERNA_CACHE_MAX_SIZE", bad)
        with pytest.raises(cache.CacheError, match="LANTERNA_CACHE_MAX_SIZE=.* is not a size"):
            cache.max_bytes()


def test_cache_info_shows_the_cap(cache_dir: Path, saxpy: str):
    driver.compile_source(saxpy)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["LANTERNA_CACHE_DIR"] = str(cache_dir)
    env.pop("LANTERNA_CACHE_MAX_SIZE", None)
    info = lanterna_cli("cache", "info", env=env)
    assert "limit:     2.0 GiB (0% used; set by LANTERNA_CACHE_MAX_SIZE" in info.stdout
    env["LANTERNA_CACHE_MAX_SIZE"] = "10M"
    info = lanterna_cli("cache", "info", env=env)
    used = 100 * cache.info().total_bytes / (10 << 20)
    assert f"limit:     10.0 MiB ({used:.0f}% used;" in info.stdout
    env["LANTERNA_CACHE_MAX_SIZE"] = "lots"
    bad = lanterna_cli("cache", "info", env=env)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "error: LANTERNA_CACHE_MAX_SIZE='lots' is not a size" in bad.stderr
