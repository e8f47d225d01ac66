"""Fixtures for the cpu backend tests: a private compile cache per test, with the
pybind11 bridge built once per session and copied in (it takes seconds to build)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from lanterna.backends import cache
from lanterna.backends.cpu_cpp import driver

# out[i] = in0[i] * 2 + in1[i] over float32[8]; out1 records the pointers it was given,
# so a test can tell whether arrays were passed through or copied.
SAXPY = r"""
#include <cstddef>
#include <cstdint>
#include <cstdio>
extern "C" int lanterna_entry(void* const* inputs, void* const* outputs, char* err,
                              size_t errlen) {
  const float* a = static_cast<const float*>(inputs[0]);
  const float* b = static_cast<const float*>(inputs[1]);
  float* out = static_cast<float*>(outputs[0]);
  int64_t* where = static_cast<int64_t*>(outputs[1]);
  for (int i = 0; i < 8; ++i) {
    if (a[i] < 0) {
      std::snprintf(err, errlen, "index %d is out of range for axis 0 of size 8", (int)a[i]);
      return 2;
    }
    if (a[i] > 1000) {
      std::snprintf(err, errlen, "value too large");
      return 1;
    }
    out[i] = a[i] * 2 + b[i];
  }
  where[0] = reinterpret_cast<int64_t>(inputs[0]);
  where[1] = reinterpret_cast<int64_t>(inputs[1]);
  where[2] = reinterpret_cast<int64_t>(outputs[0]);
  return 0;
}
"""


@pytest.fixture(scope="session")
def bridge_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache directory holding a built bridge (built once per test session)."""
    root = tmp_path_factory.mktemp("bridge-cache")
    if shutil.which("g++") is None:
        return root
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LANTERNA_CACHE_DIR", str(root))
        driver.build_bridge()
    return root


@pytest.fixture
def cache_dir(tmp_path: Path, bridge_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """LANTERNA_CACHE_DIR for this test, with the session's bridge already in it."""
    root = tmp_path / "cache"
    src = bridge_cache / f"v{cache.FORMAT_VERSION}" / "bridge"
    if src.is_dir():
        dst = root / f"v{cache.FORMAT_VERSION}" / "bridge"
        shutil.copytree(src, dst)
        for folder in (root, dst.parent, dst):
            os.chmod(folder, 0o700)
    monkeypatch.setenv("LANTERNA_CACHE_DIR", str(root))
    return root


@pytest.fixture
def saxpy() -> str:
    return SAXPY


@dataclass
class LoggingCompiler:
    """An environment whose `g++` logs each command line, then runs the real one."""

    env: dict[str, str]
    log: Path

    def compiles(self) -> list[str]:
        """The logged command lines that compiled something (not `--version`)."""
        if not self.log.exists():
            return []
        return [line for line in self.log.read_text().splitlines() if "-shared" in line]


@pytest.fixture
def logging_gxx(tmp_path: Path) -> LoggingCompiler:
    """`LANTERNA_TEST_GXX_DELAY` seconds of sleep before each compile widen race windows."""
    real = shutil.which("g++")
    assert real is not None
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "gxx.log"
    wrapper = bindir / "g++"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{log}"\n'
        'case "$*" in *-shared*) sleep "${LANTERNA_TEST_GXX_DELAY:-0}";; esac\n'
        f'exec "{real}" "$@"\n'
    )
    wrapper.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)
    return LoggingCompiler(env, log)
