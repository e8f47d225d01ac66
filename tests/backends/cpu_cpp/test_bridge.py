"""The pybind11 bridge: built once into the cache, checks arrays against the module's
signature, passes pointers, releases the GIL, maps error codes to exceptions."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lanterna.backends import cache
from lanterna.backends.cpu_cpp import driver

pytestmark = pytest.mark.skipif(
    shutil.which("g++") is None, reason="g++ is not on PATH: the cpu backend cannot compile"
)

SLEEPER = r"""
#include <cstddef>
#include <ctime>
extern "C" int lanterna_entry(void* const* in, void* const* out, char*, size_t) {
  struct timespec ts = {0, 300000000};  // 0.3 s without touching Python
  nanosleep(&ts, nullptr);
  *static_cast<double*>(out[0]) = *static_cast<const double*>(in[0]) + 1;
  return 0;
}
"""

SCALAR = (((), np.float64),)


def test_bridge_is_built_once_and_cached(cache_dir: Path):
    path = driver.build_bridge()
    assert path.parent == cache_dir / "v1" / "bridge" and cache.is_valid(path)
    mtime = path.stat().st_mtime_ns
    assert driver.build_bridge() == path and path.stat().st_mtime_ns == mtime
    assert driver.load_bridge() is driver.load_bridge()


def test_bridge_checks_arrays(cache_dir: Path, saxpy: str):
    bridge = driver.load_bridge()
    f32 = np.dtype(np.float32)
    mod = bridge.load(
        str(driver.compile_source(saxpy)),
        [((8,), f32), ((8,), f32)],
        [((8,), f32), ((3,), np.dtype(np.int64))],
    )
    assert (mod.num_inputs, mod.num_outputs) == (2, 2)
    a = np.zeros(8, np.float32)
    outs = [np.empty(8, np.float32), np.empty(3, np.int64)]
    bridge.call(mod, [a, a], outs)
    with pytest.raises(ValueError, match="expected 2 input arrays, got 1"):
        bridge.call(mod, [a], outs)
    with pytest.raises(TypeError, match="input 1 is not a numpy array"):
        bridge.call(mod, [a, [0.0] * 8], outs)
    with pytest.raises(TypeError, match="input 0 has dtype float64, expected float32"):
        bridge.call(mod, [a.astype(np.float64), a], outs)
    with pytest.raises(ValueError, match=r"input 1 has shape \(2, 4\), expected \(8,\)"):
        bridge.call(mod, [a, a.reshape(2, 4)], outs)
    with pytest.raises(ValueError, match="input 0 is not an aligned C-contiguous array"):
        bridge.call(mod, [np.zeros(16, np.float32)[::2], a], outs)
    readonly = np.empty(8, np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="output 0 is not writeable"):
        bridge.call(mod, [a, a], [readonly, outs[1]])


def test_module_without_entry_point(cache_dir: Path):
    path = driver.compile_source('extern "C" int something_else() { return 0; }\n')
    with pytest.raises(ValueError, match="has no 'lanterna_entry' symbol"):
        driver.load_bridge().load(str(path), [], [])
    with pytest.raises(ValueError, match="cannot load generated module"):
        driver.load_bridge().load(str(cache_dir / "missing.so"), [], [])


def test_gil_is_released_while_generated_code_runs(cache_dir: Path):
    from lanterna.backends.cpu_cpp import backend

    f = backend.load(driver.compile_source(SLEEPER), "sleeper", SCALAR, SCALAR)
    results: list[float] = []

    def work() -> None:
        results.append(float(f(np.float64(1.0))[0]))

    threads = [threading.Thread(target=work) for _ in range(4)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    assert results == [2.0] * 4
    # Holding the GIL would serialize the four 0.3 s calls (1.2 s).
    assert elapsed < 0.9, elapsed


def test_large_results_reuse_the_buffers_of_dropped_ones():
    import lanterna as ln

    bridge = driver.load_bridge()
    f = ln.jit(lambda w, g: w - 0.5 * g, backend="cpu")
    w = np.linspace(-1, 1, 300 * 100, dtype=np.float32).reshape(300, 100)
    g = np.ones_like(w)
    first = f(w, g)
    where = first.ctypes.data
    np.testing.assert_array_equal(first, w - 0.5 * g)
    del first  # its buffer goes back to the pool...
    second = f(w, g)  # ...and the next result of its size takes it
    assert second.ctypes.data == where
    np.testing.assert_array_equal(second, w - 0.5 * g)
    # A view keeps its array's buffer: the next result gets another one, and the
    # view's values stay.
    view = second[1:]
    del second
    third = f(g, w)
    assert third.ctypes.data != where
    np.testing.assert_array_equal(view, (w - 0.5 * g)[1:])
    np.testing.assert_array_equal(third, g - 0.5 * w)
    before = bridge.pooled_bytes()
    del view
    assert bridge.pooled_bytes() == before + w.nbytes


def test_small_results_are_plain_numpy_arrays():
    import lanterna as ln

    out = ln.jit(lambda x: x * 2, backend="cpu")(np.arange(4.0))
    assert out.base is None
    np.testing.assert_array_equal(out, [0.0, 2.0, 4.0, 6.0])
