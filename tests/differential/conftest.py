"""The differential test's modules, loaded by path (tests are not a package):
`generator` (random programs) and `harness` (running and comparing them).

Test files import them as `differential_generator` / `differential_harness`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _load(name: str) -> None:
    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"differential_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look up their defining module
    spec.loader.exec_module(module)


for _name in ("generator", "harness"):
    if f"differential_{_name}" not in sys.modules:
        _load(_name)
