"""The on-disk compile cache: built shared objects, keyed by a hash of what went into them.

A service shared by the backends: each compiler driver (`cpu_cpp/driver.py`) asks
`use` (or `get_or_build`) for an entry in its own namespace; it returns the path of a
verified file, building it at most once per key even when several processes ask at
the same moment. `python -m lanterna cache` (`lanterna.tools.cache`) lists and clears it.

Layout, under `cache_dir()` (`$LANTERNA_CACHE_DIR`, else `~/.cache/lanterna`):

    .lanterna.lock                      shared by every user of the cache, exclusive for clear
    v1/<namespace>/<key><suffix>        the built file (e.g. a `.so`)
    v1/<namespace>/<key><suffix>.json   its sidecar: the key, sha256 and size of the file
    v1/<namespace>/<key>.*              whatever the builder saved beside it (source, log)
    v1/<namespace>/<key>.lock           exclusive while the entry is built, shared while used

Rules that make this safe without a cache server:

* The cache holds code this process loads, so nobody but its owner may be able to
  write it: a folder or file that belongs to another user or that group or others may
  write is refused (`CacheError`, naming it and the fix), and no symbolic link inside
  the cache is followed (files are opened with O_NOFOLLOW, folders checked with
  lstat). This is the line that keeps other users out. Whoever can write the folder
  as its owner can replace an entry and its sidecar together, and could as well edit
  the user's shell profile: the checks below catch damage and mix-ups, not them.
* An entry is written to a temporary file in the same folder, fsynced, and moved
  into place with `os.replace`, so nobody ever sees half a file under the final name
  and a process that already mapped an older file keeps its inode.
* Before a path is handed out, the file is hashed and checked against its sidecar,
  which must name the same key: a truncated, corrupt or swapped entry (a crash, a
  full disk, a hand edit, another key's file and sidecar copied in) is rebuilt. The
  hash is taken once per process per file: later uses compare the file's inode, size
  and times (`_fingerprint`), which any replacement or write changes (a file hashed
  within `_RACY_SECONDS` of its last change is hashed again, as times tick coarsely).
  A generated source or stub beside an entry is written by every build, never read
  back to be compiled.
* Builders of one key are serialized by an flock on `<key>.lock`; the second one
  re-checks after taking the lock and finds the entry built. Users hold the same lock
  shared for as long as they use the path (to load it, or to compile with it), so
  eviction, which takes it exclusive without waiting, never removes an entry in use.
  `clear` takes the cache-wide lock exclusive, so it waits for running compiles
  instead of pulling their folder away; a build whose folder vanishes anyway (removed
  by hand) is retried.
* The cache is bounded (`max_bytes`, `$LANTERNA_CACHE_MAX_SIZE`, 2 GiB by default):
  after a build, the least recently used entries go until it fits. Temporary files
  left by a killed build are swept once they are an hour old.

The format version is part of every key and of the folder name, so a lanterna that
lays entries out differently never reads old ones; `clear()` removes all versions.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lanterna.errors import LanternaError

FORMAT_VERSION = 1
_VERSION_DIR = re.compile(r"^v\d+$")
ROOT_LOCK = ".lanterna.lock"
MAX_SIZE_ENV = "LANTERNA_CACHE_MAX_SIZE"
DEFAULT_MAX_BYTES = 2 << 30
# A temporary file this old belongs to a build that was killed (builds take seconds).
STALE_TEMP_SECONDS = 3600.0
# A file changed less than this long after it was hashed might change again without
# its times moving (they tick coarsely), so its hash is not remembered yet.
_RACY_SECONDS = 2.0
# Attempts at handing out an entry whose folder or file keeps vanishing under us.
_ATTEMPTS = 3


class CacheError(LanternaError):
    """The cache cannot be used safely or at all: a folder or file another user owns or
    may write, a symbolic link inside it, a path that is not a directory, no space."""


def cache_dir() -> Path:
    """The root of the cache: `$LANTERNA_CACHE_DIR`, else `~/.cache/lanterna` (not created)."""
    override = os.environ.get("LANTERNA_CACHE_DIR")
    if override:
        return Path(override).expanduser().resolve()
    return Path.home() / ".cache" / "lanterna"


def max_bytes() -> int | None:
    """The size cap of the cache in bytes (`$LANTERNA_CACHE_MAX_SIZE`: bytes, or a number
    with K, M, G or T, powers of 1024; `unlimited` for none), 2 GiB by default."""
    raw = os.environ.get(MAX_SIZE_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    if raw.lower() in ("unlimited", "none"):
        return None
    m = re.fullmatch(r"(\d+(?:\.\d*)?)\s*([kmgt]?)(?:i?b)?", raw, re.IGNORECASE)
    if m is None or float(m[1]) <= 0:
        raise CacheError(
            f"{MAX_SIZE_ENV}={raw!r} is not a size: write it in bytes or like 500M or 2G "
            "(powers of 1024), or 'unlimited'"
        )
    scale = 1024 ** ("kmgt".index(m[2].lower()) + 1) if m[2] else 1
    return int(float(m[1]) * scale)


# --- who may write the cache -----------------------------------------------------------------

_FIX_ROOT = "or set LANTERNA_CACHE_DIR to a directory only you can write"


def _check_owner(path: Path, st: os.stat_result, what: str, fix: str) -> None:
    """Refuse what another user owns or may write: they could plant code we would load."""
    if st.st_uid != os.getuid():
        raise CacheError(
            f"lanterna cache {what} {path} belongs to another user (uid {st.st_uid}), who "
            f"could plant code in it that this process would load; {fix}"
        )
    writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable:
        who = {stat.S_IWGRP: "its group", stat.S_IWOTH: "others"}.get(
            writable, "its group and others"
        )
        raise CacheError(
            f"lanterna cache {what} {path} is writable by {who} "
            f"(mode {stat.S_IMODE(st.st_mode):o}), who could plant code in it that this "
            f"process would load; {fix}"
        )


def _check_dir(path: Path, st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise CacheError(
            f"lanterna cache folder {path} is a symbolic link; links inside the cache are "
            f"never followed: remove it (`rm {path}`) {_FIX_ROOT}"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise CacheError(f"lanterna cache path {path} is not a directory: remove it {_FIX_ROOT}")
    _check_owner(path, st, "directory", f"run `chmod 700 {path}` {_FIX_ROOT}")


def check_file(path: Path, st: os.stat_result) -> None:
    """Refuse a file inside the cache that is a link, not a plain file, another user's,
    or writable by group or others (`st` from `os.lstat`)."""
    fix = f"remove it (`rm {path}`) or clear the cache (`python -m lanterna cache clear`)"
    if stat.S_ISLNK(st.st_mode):
        raise CacheError(
            f"lanterna cache file {path} is a symbolic link; links inside the cache are "
            f"never followed (one could point at code another user wrote): {fix}"
        )
    if not stat.S_ISREG(st.st_mode):
        raise CacheError(f"lanterna cache file {path} is not a regular file: {fix}")
    _check_owner(path, st, "file", fix)


def _private_dir(path: Path, *, root: bool = False) -> Path:
    """Create `path` (mode 0700) if needed and check that only we can write it. The root
    may be a link the user made (it is followed); folders inside the cache may not."""
    for _ in range(2):
        try:
            st = os.stat(path) if root else os.lstat(path)
        except FileNotFoundError:
            pass
        except NotADirectoryError:
            raise CacheError(
                f"lanterna cache path {path}: a parent of it is not a directory {_FIX_ROOT}"
            ) from None
        else:
            _check_dir(path, st)
            return path
        try:
            if root:
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
            else:
                os.mkdir(path, 0o700)
        except FileExistsError:
            continue  # made by someone else meanwhile (or a dangling link): look again
        except NotADirectoryError:
            raise CacheError(
                f"lanterna cache path {path}: a parent of it is not a directory {_FIX_ROOT}"
            ) from None
        except OSError as e:
            raise CacheError(
                f"cannot create the lanterna cache directory {path}: {e.strerror} {_FIX_ROOT}"
            ) from None
    st = os.stat(path) if root else os.lstat(path)
    _check_dir(path, st)
    return path


def root_dir() -> Path:
    """The cache root, created and checked."""
    return _private_dir(cache_dir(), root=True)


def namespace_dir(namespace: str) -> Path:
    """The folder of one kind of entry (`"cpu"`, `"bridge"`, ...), created on demand."""
    version = _private_dir(root_dir() / f"v{FORMAT_VERSION}")
    return _private_dir(version / namespace)


def _open_checked(path: Path, flags: int, mode: int = 0o600) -> int:
    """Open a file inside the cache without following a link, and check who may write it."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            check_file(path, os.lstat(path))  # raises: it is a link
        raise
    try:
        check_file(path, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


# --- keys, digests, sidecars -------------------------------------------------------------------


def make_key(*parts: str | bytes) -> str:
    """sha256 over the parts, length-prefixed so that ("ab", "c") != ("a", "bc")."""
    h = hashlib.sha256()
    h.update(f"lanterna-cache-v{FORMAT_VERSION}\0".encode())
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _key_of(name: str) -> str:
    """The key a file in a namespace folder belongs to (`.<key>.*.tmp` for temporaries)."""
    return name.lstrip(".").split(".", 1)[0]


def _fingerprint(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _fd_digest(fd: int) -> str:
    h = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, 1 << 20):
        h.update(chunk)
    return h.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _read_sidecar(path: Path) -> dict | None:
    try:
        fd = _open_checked(_sidecar(path), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        meta = json.loads(os.read(fd, 1 << 16))
    except ValueError:
        return None
    finally:
        os.close(fd)
    return meta if isinstance(meta, dict) else None


# path -> fingerprint of the file when this process last hashed it and found it whole.
_verified: dict[str, tuple[int, ...]] = {}


def _remember(path: Path, st: os.stat_result) -> None:
    if time.time() - st.st_ctime > _RACY_SECONDS:
        _verified[str(path)] = _fingerprint(st)


def _verify(path: Path, key: str) -> bool:
    """True when `path` is a file of ours that its sidecar describes as `key`'s entry.

    Raises `CacheError` for a link, or a file another user owns or may write; returns
    False for a missing, truncated or corrupt entry (which is then rebuilt).
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    check_file(path, st)
    if _verified.get(str(path)) == _fingerprint(st):
        return True
    meta = _read_sidecar(path)
    if meta is None or meta.get("key") != key or meta.get("size") != st.st_size:
        return False
    try:
        fd = _open_checked(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        digest = _fd_digest(fd)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    if digest != meta.get("sha256") or _fingerprint(after) != _fingerprint(st):
        return False
    _remember(path, st)
    return True


def is_valid(path: Path) -> bool:
    """True when `path` exists and matches the key, size and sha256 its sidecar records."""
    return _verify(path, _key_of(path.name))


def verify_text(path: Path, text: bytes) -> None:
    """Make the small file `path` hold exactly `text`: check it (once per process while
    it stays unchanged) and write it again when it differs or is missing."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        check_file(path, st)
        if _verified.get(str(path)) == _fingerprint(st):
            return
        with contextlib.suppress(FileNotFoundError):
            fd = _open_checked(path, os.O_RDONLY)
            try:
                same = os.read(fd, len(text) + 1) == text
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if same:
                _remember(path, st)
                return
    write_atomic(path, text)


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


def _commit(tmp: Path, path: Path, key: str) -> None:
    """Move a built temporary file into place, then record its key and digest."""
    # The builder's tool may have replaced the file we made (a linker writes a new one,
    # with the umask's mode): open what is there now, without following a link.
    fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            raise CacheError(f"the build of {path} did not leave a file of ours at {tmp}")
        os.fchmod(fd, 0o700)
        os.fsync(fd)
        digest = _fd_digest(fd)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    os.replace(tmp, path)
    # Written after the file: a crash between the two leaves a mismatch, hence a rebuild.
    meta = {"key": key, "sha256": digest, "size": size}
    write_atomic(_sidecar(path), json.dumps(meta).encode())
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- locks ---------------------------------------------------------------------------------------


def _lock(path: Path, *, shared: bool, wait: bool = True) -> int | None:
    """An fd holding an flock on `path` (created if missing), or None when `wait` is
    False and someone else holds it. Lock files of evicted entries are deleted by their
    holder, so after waiting, check that the file we locked is still the one there."""
    while True:
        fd = _open_checked(path, os.O_RDWR | os.O_CREAT)
        try:
            op = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
            fcntl.flock(fd, op if wait else op | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            current = os.lstat(path)
        except FileNotFoundError:
            current = None
        held = os.fstat(fd)
        if current is not None and current.st_ino == held.st_ino:
            return fd
        os.close(fd)


@contextlib.contextmanager
def _locked(path: Path, *, shared: bool = False) -> Iterator[None]:
    fd = _lock(path, shared=shared)
    assert fd is not None  # a waiting lock is always taken
    try:
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def _root_locked(*, shared: bool, on_wait: Callable[[], None] | None = None) -> Iterator[Path]:
    root = root_dir()
    lock = root / ROOT_LOCK
    fd = _lock(lock, shared=shared, wait=on_wait is None)
    if fd is None:
        assert on_wait is not None
        on_wait()
        fd = _lock(lock, shared=shared)
    assert fd is not None
    try:
        yield root
    finally:
        os.close(fd)


# --- handing out entries -------------------------------------------------------------------------


def _build(folder: Path, key: str, suffix: str, path: Path, build: Callable[[Path], None]) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=f"{suffix}.tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        build(tmp)
        _commit(tmp, path, key)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _acquire(
    namespace: str, key: str, suffix: str, build: Callable[[Path], None]
) -> tuple[int, Path, bool]:
    """Entry `key`, built if needed, with its lock held shared: (lock fd, path, built)."""
    built = False
    for attempt in range(_ATTEMPTS):
        folder = namespace_dir(namespace)
        _sweep_once(folder)
        path = folder / f"{key}{suffix}"
        lock = folder / f"{key}.lock"
        try:
            fd = _lock(lock, shared=True)
            assert fd is not None
            try:
                if _verify(path, key):
                    # The lock's mtime says when the entry was last used (for eviction).
                    with contextlib.suppress(OSError):
                        os.utime(fd)
                    if built:
                        enforce_limit()
                    return fd, path, built
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
            with _locked(lock):
                if not _verify(path, key):  # or another process built it while we waited
                    _build(folder, key, suffix, path, build)
                    built = True
        except Exception as e:
            # The folder was removed under us (by hand, or by a lanterna that did not
            # take the cache lock): make it again and retry. Anything else is real.
            if folder.is_dir() or attempt == _ATTEMPTS - 1:
                if isinstance(e, OSError):  # a read-only or full cache: say which entry
                    raise CacheError(f"cannot use the lanterna cache entry {path}: {e}") from e
                raise
    raise CacheError(
        f"the lanterna cache entry {folder / key}{suffix} was removed {_ATTEMPTS} times "
        "while this process was getting it; is something clearing the cache in a loop?"
    )


@contextlib.contextmanager
def use(
    namespace: str, key: str, suffix: str, build: Callable[[Path], None]
) -> Iterator[tuple[Path, bool]]:
    """The path of entry `key` and whether this call built it, held for the `with` body:
    neither `clear` nor eviction removes it until the body ends.

    `build(out)` must write the entry to `out` (a fresh path in the entry's folder) or
    raise; it runs at most once at a time per key across processes. Files it saves
    beside the entry should be named `<key>.*` so `clear()`, `info()` and eviction see
    them, and written with `write_atomic` each time (never read back unchecked).
    """
    with _root_locked(shared=True):
        fd, path, built = _acquire(namespace, key, suffix, build)
        try:
            yield path, built
        finally:
            os.close(fd)


def get_or_build(
    namespace: str, key: str, suffix: str, build: Callable[[Path], None]
) -> tuple[Path, bool]:
    """Like `use`, but lets go of the entry at once: the path stays valid unless the
    cache is cleared or the entry evicted before it is used."""
    with use(namespace, key, suffix, build) as found:
        return found


# --- upkeep: stale temporaries and the size cap ------------------------------------------------

_swept: set[str] = set()


def _sweep_once(folder: Path) -> None:
    """Remove temporary files that a killed build left behind, once per process and folder."""
    if str(folder) in _swept:
        return
    _swept.add(str(folder))
    sweep_temporaries(folder)


def sweep_temporaries(folder: Path, max_age: float = STALE_TEMP_SECONDS) -> int:
    """Delete `.<key>.*.tmp` files older than `max_age` seconds whose key nobody is
    building (its lock is free); returns how many went."""
    now = time.time()
    removed = 0
    with contextlib.suppress(FileNotFoundError), os.scandir(folder) as it:
        stale = [
            e
            for e in it
            if e.name.startswith(".")
            and e.name.endswith(".tmp")
            and now - e.stat(follow_symlinks=False).st_mtime > max_age
        ]
    for e in stale:
        fd = _lock(folder / f"{_key_of(e.name)}.lock", shared=False, wait=False)
        if fd is None:
            continue  # a build of that key is running: the file may be its own
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(e.path)
                removed += 1
        finally:
            os.close(fd)
    return removed


@dataclass
class _Group:
    """The files of one key in one namespace folder."""

    folder: Path
    key: str
    files: list[str]
    size: int
    last_used: float


def _groups(root: Path) -> tuple[list[_Group], int]:
    """Every key's files under the version folders, and the bytes of everything there."""
    groups: dict[tuple[Path, str], _Group] = {}
    total = 0
    for vdir in _version_dirs(root):
        with os.scandir(vdir) as namespaces:
            folders = [Path(e.path) for e in namespaces if e.is_dir(follow_symlinks=False)]
        for folder in folders:
            with os.scandir(folder) as it:
                for e in it:
                    try:
                        st = e.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    total += st.st_size
                    if e.name.startswith("."):
                        continue  # temporaries: swept by age, not evicted
                    key = _key_of(e.name)
                    g = groups.setdefault((folder, key), _Group(folder, key, [], 0, 0.0))
                    g.files.append(e.name)
                    g.size += st.st_size
                    g.last_used = max(g.last_used, st.st_mtime)
    return list(groups.values()), total


def _evict(group: _Group) -> bool:
    """Remove one key's files unless someone holds its lock; True when they went."""
    lock = group.folder / f"{group.key}.lock"
    fd = _lock(lock, shared=False, wait=False)
    if fd is None:
        return False  # being built, loaded or compiled with
    try:
        # The entry first, so a reader never finds a sidecar without it mattering; the
        # lock last, while we still hold it (see `_lock`).
        names = sorted(group.files, key=lambda n: (n.endswith(".lock"), n.endswith(".json")))
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(group.folder / name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
    finally:
        os.close(fd)
    return True


def enforce_limit(limit: int | None = None) -> int:
    """Evict least recently used entries until the cache fits `limit` (default
    `max_bytes()`), skipping entries in use; returns how many keys went."""
    if limit is None:
        limit = max_bytes()
        if limit is None:
            return 0
    groups, total = _groups(cache_dir())
    evicted = 0
    for group in sorted(groups, key=lambda g: g.last_used):
        if total <= limit:
            break
        if _evict(group):
            total -= group.size
            evicted += 1
    return evicted


# --- inspection (for `python -m lanterna cache`) -----------------------------------------


@dataclass(frozen=True)
class CacheInfo:
    path: Path
    entries: int  # built files with a sidecar (modules and bridges)
    total_bytes: int  # everything under the cache's version folders
    by_namespace: dict[str, int]
    limit_bytes: int | None  # the size cap (None: unlimited)


def _version_dirs(root: Path) -> Iterable[Path]:
    if not root.is_dir():
        return []
    return [
        p
        for p in root.iterdir()
        if _VERSION_DIR.match(p.name) and p.is_dir() and not p.is_symlink()
    ]


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
    _, total = _groups(root)
    by_ns: dict[str, int] = {}
    found = entries()
    for entry in found:
        by_ns[entry.parent.name] = by_ns.get(entry.parent.name, 0) + 1
    return CacheInfo(root, len(found), total, by_ns, max_bytes())


def clear(on_wait: Callable[[], None] | None = None) -> int:
    """Remove every entry (all format versions); returns how many built entries went.

    Only lanterna's own version folders are removed, never the rest of the directory:
    `LANTERNA_CACHE_DIR` may point somewhere that holds other files. It waits for
    running compiles to finish (calling `on_wait` first when it has to). Processes that
    already loaded an entry keep running; its file is gone for the next process.
    """
    if not cache_dir().is_dir():
        return 0
    with _root_locked(shared=False, on_wait=on_wait) as root:
        count = len(entries())
        for vdir in _version_dirs(root):
            shutil.rmtree(vdir)
    _verified.clear()
    _swept.clear()
    return count
