"""The C++ compiler driver: generated source text in, path of a cached shared object out.

This is the "compile" half of the cpu backend (the emitter renders IR to text; the
bridge loads and calls what this builds). Generated modules are plain C++17 with an
`extern "C"` entry point and no pybind11, so a cold compile takes a fraction of a
second; the cache (`cache.py`) makes warm ones a hash and a stat.

What goes into a module's cache key: the source, the runtime headers it includes
(`runtime/*.h`), the full compiler command line, the compiler's identity (`g++
--version`) and, because modules are built with `-march=native`, the CPU they are
built for, so a cache in a home directory shared between machines stays correct.

Debugging: `LANTERNA_DEBUG=1` in the environment (or `debug=True` here or on
`CpuBackend.compile`) prints, on stderr, the path of every generated source and of
the module built from it. Sources are always saved in the cache beside their module
(`<key>.cpp`), so a failing one can be recompiled by hand with the printed command.
They are written by every build and never read back: the compiler only ever sees
the text generated in this process, whatever was left on disk under that name.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import shlex
import subprocess
import sys
import sysconfig
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from lanterna.backends import cache, debug_enabled
from lanterna.backends.cpu_cpp import COMPILER, find_compiler
from lanterna.errors import CompileError

BASE_FLAGS = (
    "-std=c++17",
    "-O2",
    # Let -O2 vectorize loops that need a runtime alias check or a remainder
    # (all of ours), sqrt without errno and selects on float compares (generated
    # code reads neither errno nor the floating-point exception flags).
    "-fvect-cost-model=cheap",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-march=native",
    "-fPIC",
    "-shared",
)
RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"
# The portable scalar header `lanterna_cpu.h` includes (by a path relative to itself).
SCALAR_RUNTIME_DIR = Path(__file__).resolve().parents[1] / "c_like" / "runtime"
NAMESPACE = "cpu"

# A compiler log longer than this is cut in the exception (the full log is saved).
_LOG_HEAD_LINES = 60
_LOG_MAX_CHARS = 8000


def _debug(message: str) -> None:
    print(f"lanterna: {message}", file=sys.stderr, flush=True)


# --- the toolchain --------------------------------------------------------------------------


def require_compiler() -> str:
    path = find_compiler()
    if path is None:
        raise CompileError(
            f"no C++ compiler: '{COMPILER}' was not found on PATH. The cpu backend needs "
            "g++ with C++17 support (e.g. `apt-get install g++`); the 'interp' backend "
            "runs without one."
        )
    return path


@functools.cache
def compiler_identity(compiler: str) -> str:
    """`g++ --version` output; asked once per process and compiler."""
    try:
        out = subprocess.run(
            [compiler, "--version"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise CompileError(f"cannot run '{compiler} --version': {e}") from None
    return out.strip()


@functools.cache
def _cpu_identity(compiler: str) -> str:
    """What `-march=native` resolves to on this machine.

    On Linux the CPU model and feature flags from /proc/cpuinfo name it exactly (and
    reading them is far cheaper than asking the compiler); elsewhere, ask the compiler
    for its expanded target options.
    """
    try:
        with open("/proc/cpuinfo") as f:
            wanted = ("vendor_id", "model name", "flags", "cpu family", "model\t")
            lines = sorted({ln.strip() for ln in f if ln.startswith(wanted)})
        if lines:
            return "\n".join(lines)
    except OSError:
        pass
    out = subprocess.run(
        [compiler, "-march=native", "-Q", "--help=target"],
        check=False,
        capture_output=True,
        text=True,
    )
    return out.stdout


def _runtime_digest() -> str:
    """sha256 over the runtime headers: generated sources include them by name only."""
    h = hashlib.sha256()
    for root in (RUNTIME_DIR, SCALAR_RUNTIME_DIR):
        if root.is_dir():
            for header in sorted(root.rglob("*")):
                if header.is_file():
                    h.update(f"{root.parent.name}/{header.relative_to(root)}".encode() + b"\0")
                    h.update(header.read_bytes())
    return h.hexdigest()


@dataclass(frozen=True)
class BlasFlags:
    compile: tuple[str, ...]
    link: tuple[str, ...]


@functools.cache
def blas_flags() -> BlasFlags:
    """How to compile against and link the OpenBLAS of the `scipy-openblas32` package.

    Its symbols carry a `scipy_` prefix (`scipy_cblas_sgemm`); the rpath lets the
    module find the library without LD_LIBRARY_PATH.
    """
    try:
        import scipy_openblas32 as ob
    except ImportError:
        raise CompileError(
            "the cpu backend links BLAS from the 'scipy-openblas32' package, which is not "
            "installed (`pip install scipy-openblas32`)"
        ) from None
    libdir = ob.get_lib_dir()
    return BlasFlags(
        compile=(f"-I{ob.get_include_dir()}",),
        link=(f"-L{libdir}", f"-l{ob.get_library()}", f"-Wl,-rpath,{libdir}"),
    )


# --- compiling ------------------------------------------------------------------------------


def _trim_log(log: str, full_log: Path) -> str:
    """The head of a long compiler log: the first errors are the ones that explain it."""
    lines = log.rstrip().splitlines()
    head = "\n".join(lines[:_LOG_HEAD_LINES])
    if len(head) > _LOG_MAX_CHARS:
        head = head[:_LOG_MAX_CHARS]
    if len(head) < len("\n".join(lines)):
        head += f"\n... ({len(lines)} lines in all; full log: {full_log})"
    return head


def _run_compiler(cmd: list[str], log_path: Path, failure: str, source_path: str) -> None:
    """Run a compile; on failure keep its full log beside the entry and raise a
    CompileError that says `failure` and shows the head of the log."""
    result = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if result.returncode == 0:
        return
    log = result.stdout + result.stderr
    cache.write_atomic(log_path, (shlex.join(cmd) + "\n\n" + log).encode())
    raise CompileError(
        f"{failure} ({COMPILER} exited with {result.returncode}); command: {shlex.join(cmd)}",
        log=_trim_log(log, log_path),
        source_path=source_path,
    )


def module_key(compiler: str, source: str, head: Sequence[str], tail: Sequence[str]) -> str:
    """The cache key of a module: everything that decides what the compiler makes of it."""
    return cache.make_key(
        source,
        "\0".join(head),
        "\0".join(tail),
        compiler_identity(compiler),
        _cpu_identity(compiler),
        _runtime_digest(),
    )


@contextlib.contextmanager
def compiled(
    source: str,
    *,
    flags: Sequence[str] = (),
    extra_link: Sequence[str] = (),
    debug: bool | None = None,
) -> Iterator[Path]:
    """`compile_source`, holding the module in the cache for the `with` body (to load
    it): neither `python -m lanterna cache clear` nor eviction removes it meanwhile."""
    compiler = require_compiler()
    base = [*BASE_FLAGS, f"-I{RUNTIME_DIR}"]
    show = debug_enabled(debug)
    with contextlib.ExitStack() as stack:
        pch: list[str] = []
        if RUNTIME_INCLUDE in source:
            # Held while the module compiles: g++ reads the precompiled header then.
            pch = stack.enter_context(_precompiled(compiler, [*base, *flags]))
        head = [*base, *pch, *flags]
        tail = list(extra_link)
        key = module_key(compiler, source, head, tail)
        if show:
            _debug(f"generated source {cache.namespace_dir(NAMESPACE) / f'{key}.cpp'}")

        def build(out: Path) -> None:
            # Always the source generated here, never a file found on disk: a `<key>.cpp`
            # left there (edited, or planted before the key was built) is overwritten.
            src = out.parent / f"{key}.cpp"
            cache.write_atomic(src, source.encode())
            cmd = [compiler, *head, str(src), "-o", str(out), *tail]
            start = time.perf_counter()
            _run_compiler(cmd, out.parent / f"{key}.log", "C++ compilation failed", str(src))
            if show:
                _debug(f"compiled in {time.perf_counter() - start:.2f}s")

        path, built = stack.enter_context(cache.use(NAMESPACE, key, ".so", build))
        if show:
            _debug(f"module {path} ({'built' if built else 'from cache'})")
        yield path


def compile_source(
    source: str,
    *,
    flags: Sequence[str] = (),
    extra_link: Sequence[str] = (),
    debug: bool | None = None,
) -> Path:
    """Compile C++ `source` into a shared object and return its path in the cache.

    `flags` go before the source file (defines, include paths), `extra_link` after it
    (libraries). The runtime headers (`runtime/`) are always on the include path. A
    cached module with the same key is returned without running the compiler. A
    compiler failure raises `CompileError` with the compiler's log and the path of
    the saved source. To load the module, prefer `compiled`, which keeps it from being
    cleared or evicted before it is loaded.
    """
    with compiled(source, flags=flags, extra_link=extra_link, debug=debug) as path:
        return path


# --- the precompiled runtime header -----------------------------------------------------------

PCH_NAMESPACE = "pch"
RUNTIME_INCLUDE = '#include "lanterna_cpu.h"'  # how generated sources include the runtime
PCH_STUB = f"{RUNTIME_INCLUDE}\n".encode()
# How long a failure to precompile the header keeps it off before it is tried again: a
# failure may be passing (a full disk, a killed compiler), and each retry costs seconds.
PCH_RETRY_SECONDS = 3600.0
_pch_warned: set[str] = set()  # failure markers this process has warned about


def _warn_pch_off(failed: Path, since: float) -> None:
    if str(failed) in _pch_warned:
        return
    _pch_warned.add(str(failed))
    retry = time.strftime("%H:%M", time.localtime(since + PCH_RETRY_SECONDS))
    log = failed.with_suffix(".log")
    warnings.warn(
        f"lanterna: the runtime header could not be precompiled (log: {log}); modules "
        f"are compiled from its text, about half a second slower each, until {retry}, "
        f"when it is tried again (delete {failed} to try again now)",
        RuntimeWarning,
        stacklevel=4,
    )


def _pch_failed_recently(failed: Path) -> bool:
    """Whether a failure marker is there and young; an old one is removed (retry)."""
    try:
        st = os.lstat(failed)
    except FileNotFoundError:
        return False
    cache.check_file(failed, st)
    if time.time() - st.st_mtime >= PCH_RETRY_SECONDS:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(failed)
        _pch_warned.discard(str(failed))
        return False
    _warn_pch_off(failed, st.st_mtime)
    return True


@contextlib.contextmanager
def _precompiled(compiler: str, head: Sequence[str]) -> Iterator[list[str]]:
    """`precompiled_runtime`'s flags, with the header held in the cache for the body."""
    key = cache.make_key(
        b"precompiled lanterna_cpu.h",
        "\0".join(head),
        compiler_identity(compiler),
        _cpu_identity(compiler),
        _runtime_digest(),
    )
    folder = cache.namespace_dir(PCH_NAMESPACE)
    stub, failed = folder / f"{key}.h", folder / f"{key}.failed"
    if _pch_failed_recently(failed):
        yield []
        return

    def build(out: Path) -> None:
        # The stub is written on every build, never taken as found (see `compiled`).
        cache.write_atomic(out.parent / stub.name, PCH_STUB)
        cmd = [compiler, *head, "-x", "c++-header", str(stub), "-o", str(out)]
        _run_compiler(
            cmd, out.parent / f"{key}.log", "precompiling the runtime header failed", str(stub)
        )

    stack = contextlib.ExitStack()
    try:
        stack.enter_context(cache.use(PCH_NAMESPACE, key, ".h.gch", build))
    except CompileError:
        cache.write_atomic(failed, b"")
        _warn_pch_off(failed, time.time())
        yield []
        return
    with stack:
        # g++ reads the stub instead when the .gch does not fit the compile.
        cache.verify_text(stub, PCH_STUB)
        yield ["-include", str(stub)]


def precompiled_runtime(compiler: str, head: Sequence[str]) -> list[str]:
    """Flags that make the compiler read the runtime header precompiled: about half
    a second of every compile is parsing it (and the standard headers it pulls in).

    The header is precompiled once per machine and flag set, into the cache like
    the bridge, as `<key>.h.gch` beside a stub `<key>.h` that includes it; a module
    is compiled with `-include <key>.h`, which g++ reads from the .gch (or, should
    that not match, from the stub, which includes the header: the same program).
    Returns no flags when the header cannot be precompiled: that is remembered in
    `<key>.failed` for `PCH_RETRY_SECONDS`, with a warning (once per process), and
    tried again after. Only sources that include the runtime use it.
    """
    with _precompiled(compiler, head) as flags:
        return flags


def prebuild(*, debug: bool | None = None) -> None:
    """Build what a machine builds once, not per program: the bridge and the
    precompiled runtime header for the flags the cpu backend compiles with.
    Benchmarks call this first, so a program's cold compile time is its own."""
    build_bridge(debug=debug)
    base = [*BASE_FLAGS, f"-I{RUNTIME_DIR}"]
    precompiled_runtime(require_compiler(), [*base, *blas_flags().compile])


# --- the bridge -----------------------------------------------------------------------------

BRIDGE_SOURCE = Path(__file__).resolve().parent / "bridge.cpp"
BRIDGE_MODULE = "_lanterna_bridge"  # the name PYBIND11_MODULE gives it in bridge.cpp
_bridge_lock = threading.Lock()
_bridge: ModuleType | None = None


def _bridge_command_parts() -> tuple[list[str], list[str]]:
    import pybind11

    paths = sysconfig.get_paths()
    includes = dict.fromkeys([pybind11.get_include(), paths["include"], paths["platinclude"]])
    head = [
        "-std=c++17",
        "-O2",
        "-fPIC",
        "-shared",
        "-fvisibility=hidden",
        *(f"-I{inc}" for inc in includes),
    ]
    return head, ["-ldl"]


@contextlib.contextmanager
def _bridge_entry(*, debug: bool | None = None) -> Iterator[Path]:
    import pybind11

    compiler = require_compiler()
    head, tail = _bridge_command_parts()
    source = BRIDGE_SOURCE.read_bytes()
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    key = cache.make_key(
        source,
        "\0".join(head),
        "\0".join(tail),
        compiler_identity(compiler),
        sys.version,
        suffix,
        pybind11.__version__,
    )
    show = debug_enabled(debug)

    def build(out: Path) -> None:
        cmd = [compiler, *head, str(BRIDGE_SOURCE), "-o", str(out), *tail]
        start = time.perf_counter()
        _run_compiler(
            cmd,
            out.parent / f"{key}.log",
            "building the lanterna bridge failed",
            str(BRIDGE_SOURCE),
        )
        if show:
            _debug(f"built the bridge in {time.perf_counter() - start:.2f}s")

    with cache.use("bridge", key, suffix, build) as (path, _):
        yield path


def build_bridge(*, debug: bool | None = None) -> Path:
    """The path of the bridge extension for this Python, pybind11 and compiler, building
    it into the cache on first use (a few seconds, once per machine)."""
    with _bridge_entry(debug=debug) as path:
        return path


def load_bridge(*, debug: bool | None = None) -> ModuleType:
    """The bridge extension module, built if needed and imported once per process."""
    global _bridge
    with _bridge_lock:
        if _bridge is None:
            with _bridge_entry(debug=debug) as path:
                spec = importlib.util.spec_from_file_location(BRIDGE_MODULE, path)
                if spec is None or spec.loader is None:
                    raise CompileError(f"cannot import the lanterna bridge from {path}")
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            _bridge = module
        return _bridge
