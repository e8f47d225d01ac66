"""The C++ compiler driver and the cpu backend's callable, on hand-written modules that
follow the generated-code contract (`extern "C" int lanterna_entry(...)`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects.builtin import ModuleOp

from lanterna.backends import cache, get_backend
from lanterna.backends.cpu_cpp import backend, driver
from lanterna.errors import CompileError, LanternaError, LanternaRuntimeError

pytestmark = pytest.mark.skipif(
    shutil.which("g++") is None, reason="g++ is not on PATH: the cpu backend cannot compile"
)

F8 = ((8,), np.float32)
SAXPY_SIG = ([F8, F8], [F8, ((3,), np.int64)])


def load_saxpy(source: str, **kw) -> backend.CompiledFunction:
    return backend.load(driver.compile_source(source), "saxpy", *SAXPY_SIG, **kw)


def test_compile_and_call_without_copies(cache_dir: Path, saxpy: str):
    f = load_saxpy(saxpy)
    a = np.arange(8, dtype=np.float32)
    b = np.full(8, 0.5, dtype=np.float32)
    out, where = f(a, b)
    np.testing.assert_array_equal(out, a * 2 + b)
    # The module read the caller's arrays and wrote into the array that was returned.
    assert where[0] == a.ctypes.data and where[1] == b.ctypes.data
    assert where[2] == out.ctypes.data
    assert out.flags.owndata and out.flags.writeable
    # Each call gets fresh outputs.
    out2, _ = f(a, b)
    assert not np.shares_memory(out, out2)


def test_arguments_are_converted_only_when_needed(cache_dir: Path, saxpy: str):
    f = load_saxpy(saxpy)
    strided = np.arange(16, dtype=np.float32)[::2]
    doubles = np.ones(8, dtype=np.float64)
    out, where = f(strided, doubles)
    np.testing.assert_array_equal(out, strided * 2 + 1)
    assert where[0] != strided.ctypes.data and where[1] != doubles.ctypes.data
    out, _ = f(list(range(8)), np.zeros(8, np.float32))  # ints widen to float32
    np.testing.assert_array_equal(out, np.arange(8) * 2)


def test_bad_arguments_are_reported(cache_dir: Path, saxpy: str):
    f = load_saxpy(saxpy)
    a = np.zeros(8, np.float32)
    with pytest.raises(TypeError, match="takes 2 arrays, got 1"):
        f(a)
    with pytest.raises(
        ValueError, match=r"argument 1 of 'saxpy' has shape \(3,\), expected \(8,\)"
    ):
        f(a, np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="argument 0 .* dtype complex64, expected float32"):
        f(a.astype(np.complex64), a)


def test_runtime_errors_become_python_exceptions(cache_dir: Path, saxpy: str):
    f = load_saxpy(saxpy)
    a = np.arange(8, dtype=np.float32)
    with pytest.raises(IndexError, match="index -3 is out of range for axis 0 of size 8") as e:
        f(a - 3, a)
    assert isinstance(e.value, LanternaError)
    with pytest.raises(LanternaRuntimeError, match="value too large") as e2:
        f(a + 2000, a)
    assert isinstance(e2.value, RuntimeError) and not isinstance(e2.value, IndexError)


def test_donated_argument_becomes_the_result(cache_dir: Path, saxpy: str):
    f = load_saxpy(saxpy, donate=(0,))
    assert f.donated == {0: 0}
    w = np.arange(8, dtype=np.float32)
    out, where = f(w, np.ones(8, np.float32))
    assert out is w and where[2] == where[0] == w.ctypes.data
    np.testing.assert_array_equal(w, np.arange(8) * 2 + 1)
    # A read-only argument cannot be given away: the result gets its own buffer.
    ro = np.arange(8, dtype=np.float32)
    ro.flags.writeable = False
    out, _ = f(ro, np.ones(8, np.float32))
    assert out is not ro and not np.shares_memory(out, ro)
    with pytest.raises(ValueError, match="donate index 5 is out of range"):
        load_saxpy(saxpy, donate=(5,))


def test_compiler_error_names_message_and_saved_source(cache_dir: Path):
    source = 'extern "C" int lanterna_entry(void* const* i, void* const* o, char* e, unsigned long n) {\n  return 0 +;\n}\n'
    with pytest.raises(CompileError) as e:
        driver.compile_source(source)
    err = e.value
    assert "C++ compilation failed" in str(err)
    assert "expected primary-expression" in err.log and "expected primary-expression" in str(err)
    assert err.source_path is not None and err.source_path in str(err)
    assert Path(err.source_path).read_text() == source
    assert "Traceback" not in str(err)
    # Nothing half-built is left behind as an entry or a temporary file.
    assert [p.parent.name for p in cache.entries()] == ["bridge"]
    assert not list(Path(err.source_path).parent.glob(".*.tmp"))


def test_long_compiler_log_is_trimmed_and_saved(cache_dir: Path):
    source = "\n".join(f"int f{i}() {{ return undefined_{i}; }}" for i in range(200))
    with pytest.raises(CompileError) as e:
        driver.compile_source(source)
    log = e.value.log
    assert "undefined_0" in log and "undefined_199" not in log
    assert "full log:" in log
    full = Path(log.rsplit("full log: ", 1)[1].rstrip(")"))
    assert "undefined_199" in full.read_text()


def test_flags_are_part_of_the_key(cache_dir: Path, saxpy: str):
    plain = driver.compile_source(saxpy)
    assert driver.compile_source(saxpy) == plain
    assert driver.compile_source(saxpy, flags=("-DLANTERNA_TEST=1",)) != plain
    assert driver.compile_source(saxpy + "\n// changed\n") != plain


def test_blas_links(cache_dir: Path):
    source = r"""
#include <cstddef>
#include <cblas.h>
extern "C" int lanterna_entry(void* const* in, void* const* out, char*, size_t) {
  scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 4, 3, 5, 1.0f,
                    static_cast<const float*>(in[0]), 5, static_cast<const float*>(in[1]), 3,
                    0.0f, static_cast<float*>(out[0]), 3);
  return 0;
}
"""
    blas = driver.blas_flags()
    path = driver.compile_source(source, flags=blas.compile, extra_link=blas.link)
    f = backend.load(
        path, "mm", [((4, 5), np.float32), ((5, 3), np.float32)], [((4, 3), np.float32)]
    )
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 5), dtype=np.float32)
    b = rng.standard_normal((5, 3), dtype=np.float32)
    (c,) = f(a, b)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-5)


def test_debug_switch_prints_the_source_path(
    cache_dir: Path, saxpy: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
):
    path = driver.compile_source(saxpy)
    assert capfd.readouterr().err == ""
    monkeypatch.setenv("LANTERNA_DEBUG", "1")
    driver.compile_source(saxpy)
    err = capfd.readouterr().err
    assert f"generated source {path.with_suffix('.cpp')}" in err
    assert f"module {path} (from cache)" in err
    driver.compile_source(saxpy, debug=False)
    assert capfd.readouterr().err == ""


def test_cpu_backend_is_registered_and_needs_a_compiler_only_to_compile(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    cpu = get_backend("cpu")
    assert cpu.default_pipeline == (
        "reverse-loops,lower-continuations,elide-zero-adjoints,canonicalize,cse,licm,dce,"
        "fuse-elementwise,absorb-transposes,accumulate-products,accumulate-pieces,defer-products,"
            "plan-buffers"
    )
    monkeypatch.setenv("PATH", str(cache_dir))  # no g++ there
    with pytest.raises(CompileError, match="no C\\+\\+ compiler: 'g\\+\\+' was not found on PATH"):
        cpu.compile(ModuleOp([]), "f")


def test_runtime_header_is_precompiled_once_per_flag_set(cache_dir: Path):
    blas = driver.blas_flags()
    head = [*driver.BASE_FLAGS, f"-I{driver.RUNTIME_DIR}", *blas.compile]
    compiler = driver.require_compiler()
    flags = driver.precompiled_runtime(compiler, head)
    assert flags[0] == "-include"
    stub = Path(flags[1])
    gch = stub.with_name(stub.name + ".gch")
    assert gch.is_file() and stub.read_text() == '#include "lanterna_cpu.h"\n'
    built = gch.stat().st_mtime_ns
    assert driver.precompiled_runtime(compiler, head) == flags
    assert gch.stat().st_mtime_ns == built  # taken from the cache, not rebuilt
    # Modules compiled through it are the same programs.
    f = get_backend("cpu").compile(_tanh_module(), "f")
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    np.testing.assert_allclose(f(x)[0], np.tanh(x), rtol=1e-6)


def test_a_header_that_cannot_be_precompiled_is_read_as_text(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    compiler = driver.require_compiler()
    head = ["-fno-such-option-anywhere"]
    attempts = count_header_compiles(monkeypatch)
    with pytest.warns(RuntimeWarning, match="could not be precompiled") as caught:
        assert driver.precompiled_runtime(compiler, head) == []
    (failed,) = (cache_dir / "v1" / "pch").glob("*.failed")
    log = failed.with_suffix(".log")
    assert f"log: {log}" in str(caught[0].message) and f"delete {failed}" in str(caught[0].message)
    assert "-fno-such-option-anywhere" in log.read_text()
    # Remembered: not tried again, and not warned about again, in this process.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert driver.precompiled_runtime(compiler, head) == []
    assert len(attempts) == 1
    # Another process is told once why its compiles are slower.
    monkeypatch.setattr(driver, "_pch_warned", set())
    with pytest.warns(RuntimeWarning, match="tried again"):
        assert driver.precompiled_runtime(compiler, head) == []
    assert len(attempts) == 1
    # Once the marker is old, it is tried again (and fails again, with a fresh marker).
    old = time.time() - driver.PCH_RETRY_SECONDS - 1
    os.utime(failed, (old, old))
    with pytest.warns(RuntimeWarning, match="could not be precompiled"):
        assert driver.precompiled_runtime(compiler, head) == []
    assert len(attempts) == 2 and time.time() - failed.stat().st_mtime < 60


def count_header_compiles(monkeypatch: pytest.MonkeyPatch, fail_first: int = 0) -> list[list[str]]:
    """Record each run of the compiler on the runtime header; fail the first `fail_first`
    of them as a killed compiler would."""
    calls: list[list[str]] = []
    real = subprocess.run

    def run(cmd, *args, **kwargs):
        if "c++-header" in cmd:
            calls.append(cmd)
            if len(calls) <= fail_first:
                return subprocess.CompletedProcess(cmd, -9, "", "g++: fatal error: Killed\n")
        return real(cmd, *args, **kwargs)

    monkeypatch.setattr(driver.subprocess, "run", run)
    return calls


def test_a_passing_failure_to_precompile_does_not_disable_it_for_good(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    compiler = driver.require_compiler()
    head = [*driver.BASE_FLAGS, f"-I{driver.RUNTIME_DIR}", *driver.blas_flags().compile]
    attempts = count_header_compiles(monkeypatch, fail_first=1)
    with pytest.warns(RuntimeWarning, match="could not be precompiled"):
        assert driver.precompiled_runtime(compiler, head) == []
    (failed,) = (cache_dir / "v1" / "pch").glob("*.failed")
    old = time.time() - driver.PCH_RETRY_SECONDS - 1
    os.utime(failed, (old, old))
    flags = driver.precompiled_runtime(compiler, head)
    assert flags[0] == "-include" and len(attempts) == 2 and not failed.exists()


def test_the_header_stub_on_disk_is_never_trusted(cache_dir: Path):
    compiler = driver.require_compiler()
    head = [*driver.BASE_FLAGS, f"-I{driver.RUNTIME_DIR}", *driver.blas_flags().compile]
    stub = Path(driver.precompiled_runtime(compiler, head)[1])
    gch = stub.with_name(stub.name + ".gch")
    planted = '#include "lanterna_cpu.h"\n#define tanhf(x) (x)\n'
    # Edited beside a built header: written again before it is used.
    stub.write_text(planted)
    assert driver.precompiled_runtime(compiler, head) == ["-include", str(stub)]
    assert stub.read_bytes() == driver.PCH_STUB
    # Planted for a header not built yet: the build writes its own.
    gch.unlink()
    stub.write_text(planted)
    assert driver.precompiled_runtime(compiler, head) == ["-include", str(stub)]
    assert stub.read_bytes() == driver.PCH_STUB and cache.is_valid(gch)


def _tanh_module() -> ModuleOp:
    from lanterna.ir import parse_module

    return parse_module(
        "func.func @f(%x: tensor<7xf32>) -> tensor<7xf32> {\n"
        "  %y = ln.tanh %x : tensor<7xf32>\n"
        "  func.return %y : tensor<7xf32>\n"
        "}"
    )
