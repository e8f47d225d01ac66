"""The cpu backend: generated C++17 compiled by g++, called through a pybind11 bridge.

`emitter` renders IR to C++ source, `driver` compiles it (and the bridge) into the
compile cache (`cache`), `backend` ties them into the `"cpu"` backend. Importing this
package only registers the backend; nothing is compiled until `compile` is called.
"""

from __future__ import annotations

from lanterna.backends import Backend, register_backend


def _make_backend() -> Backend:
    from lanterna.backends.cpu_cpp.backend import CpuBackend

    return CpuBackend()


register_backend("cpu", _make_backend)
