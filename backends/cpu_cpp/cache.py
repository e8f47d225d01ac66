"""The on-disk compile cache: built shared objects, keyed by a hash of what went into them.

The compiler drivers (`driver.py` here, and the CUDA one) ask `get_or_build` for an
entry; it returns the path of a verified file, building it at most once per key even
when several processes ask at the same moment.

Layout, under `cache_dir()` (`$LANTERNA_CACHE_DIR`, else `~/.cache/lanterna`):

    v1/<namespace>/<key><suffix>        the built file (e.g. a `.so`)
    v1/<namespace>/<key><suffix>.json   its sidecar: sha256 and size of the file
    v1/<namespace>/<key>.*              whatever the builder saved beside it (source, log)
    v1/<namespace>/<key>.lock           taken with flock while the entry is built

Rules that make this safe without a cache server:

* An entry is written to a temporary file in the same folder, fsynced, and moved
  into place with `os.replace`, so nobody ever sees half a file under the final name
  and a process that already mapped an older file keeps its inode.
* Builders of one key are serialized by an flock on `<key>.lock`; the second one
  re-checks after taking the lock and finds the entry built.
* Before a path is handed out, the file is checked against its sidecar; a truncated
  or corrupt entry (a crash, a full disk, a hand edit) is rebuilt.

The format version is part of every key and of the folder name, so a lanterna that
lays entries out differently never reads old ones; `clear()` removes all versions.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lanterna.errors import LanternaError

FORMAT_VERSION = 1
_VERSION_DIR = re.compile(r"^v\d+$")


class CacheError(LanternaError):
    """The cache directory cannot be used (wrong owner, not a directory, no space)."""


def cache_dir() -> Path:
    """The root of the cache: `$LANTERNA_CACHE_DIR`, else `~/.cache/lanterna` (not created)."""
    override = os.environ.get("LANTERNA_CACHE_DIR")
    if override:
        return Path(override).expanduser().resolve()
    return Path.home() / ".cache" / "lanterna"


def _ensure_private_dir(path: Path) -> Path:
    """Create `path` (mode 0700) if needed and refuse one another user owns: the cache
    holds code this process will load, so nobody else may be able to plant entries."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise CacheError(f"lanterna cache path {path} is not a directory")
    if st.st_uid != os.getuid():
        raise CacheError(
            f"lanterna cache directory {path} belongs to another user (uid {st.st_uid}); "
            "set LANTERNA_CACHE_DIR to a directory you own"
        )
    return path


def namespace_dir(namespace: str) -> Path:
    """The folder of one kind of entry (`"cpu"`, `"bridge"`, ...), created on demand."""
    root = _ensure_private_dir(cache_dir())
    return _ensure_private_dir(_ensure_private_dir(root / f"v{FORMAT_VERSION}") / namespace)


def make_key(*parts: str | bytes) -> str:
    """sha256 over the parts, length-prefixed so that ("ab", "c") != ("a", "bc")."""
    h = hashlib.sha256()
    h.update(f"lanterna-cache-v{FORMAT_VERSION}\0".encode())
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _file_digest(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def is_valid(path: Path) -> bool:
    """True when `path` exists and matches the size and sha256 its sidecar records."""
    try:
        with open(_sidecar(path)) as f:
            meta = json.load(f)
        if path.stat().st_size != meta["size"]:
            return False
        return _file_digest(path)[0] == meta["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _commit(tmp: Path, path: Path) -> None:
    """Move a built temporary file into place, then record its digest."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    digest, size = _file_digest(tmp)
    os.chmod(tmp, 0o700)
    os.replace(tmp, path)
    # Written after the file: a crash between the two leaves a mismatch, hence a rebuild.
    write_atomic(_sidecar(path), json.dumps({"sha256": digest, "size": size}).encode())
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def get_or_build(
    namespace: str, key: str, suffix: str, build: Callable[[Path], None]
) -> tuple[Path, bool]:
    """The path of entry `key`, and whether this call built it.

    `build(out)` must write the entry to `out` (a fresh path in the entry's folder) or
    raise; it runs at most once at a time per key across processes. Files it saves
    beside the entry should be named `<key>.*` so `clear()` and `info()` see them.
    """
    folder = namespace_dir(namespace)
    path = folder / f"{key}{suffix}"
    if is_valid(path):
        return path, False
    with _locked(folder / f"{key}.lock"):
        if is_valid(path):  # another process built it while we waited
            return path, False
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=f"{suffix}.tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            build(tmp)
            _commit(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return path, True


# --- inspection (for `python -m lanterna cache`) -----------------------------------------


@dataclass(frozen=True)
class CacheInfo:
    path: Path
    entries: int  # built files with a sidecar (modules and bridges)
    total_bytes: int  # everything under the cache's version folders
    by_namespace: dict[str, int]


def _version_dirs(root: Path) -> Iterable[Path]:
    if not root.is_dir():
        return []
    return [p for p in root.iterdir() if p.is_dir() and _VERSION_DIR.match(p.name)]


def entries() -> list[Path]:
    """Every built entry (the file a sidecar describes), across format versions."""
    found = []
    for vdir in _version_dirs(cache_dir()):
        for sidecar in sorted(vdir.glob("*/*.json")):
            entry = sidecar.with_name(sidecar.name.removesuffix(".json"))
            if entry.exists():
                found.append(entry)
    return found


def info() -> CacheInfo:
    root = cache_dir()
    total = 0
    for vdir in _version_dirs(root):
        for folder, _, files in os.walk(vdir):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(folder, name)).st_size
    by_ns: dict[str, int] = {}
    found = entries()
    for entry in found:
        by_ns[entry.parent.name] = by_ns.get(entry.parent.name, 0) + 1
    return CacheInfo(root, len(found), total, by_ns)


def clear() -> int:
    """Remove every entry (all format versions); returns how many built entries went.

    Only lanterna's own version folders are removed, never the rest of the directory:
    `LANTERNA_CACHE_DIR` may point somewhere that holds other files. Processes that
    already loaded an entry keep running; its file is gone for the next process.
    """
    count = len(entries())
    for vdir in _version_dirs(cache_dir()):
        shutil.rmtree(vdir)
    return count
