"""Shared fixtures of the IR tests: a parsing context that knows our dialects, and
the table of `ln` op cases (ln_cases.py).

A test that takes `ln_case` (or `ln_eval_case`) and `ftype` runs once per case of
the table and float type under test. `ln_eval_case` is for tests that execute the
op: a case with a known `evaluate` bug is expected to fail there (strict xfail).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from xdsl.context import Context
from xdsl.dialects.builtin import Builtin
from xdsl.dialects.func import Func

from lanterna.ir.ln import LN


def _load_ln_cases() -> ModuleType:
    # Tests are not a package and pytest imports them by path
    # (--import-mode=importlib), so the shared table is loaded by path too.
    path = Path(__file__).with_name("ln_cases.py")
    spec = importlib.util.spec_from_file_location("ln_cases", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look up their defining module
    spec.loader.exec_module(module)
    return module


LN_CASES = _load_ln_cases()


@pytest.fixture
def ln_cases() -> ModuleType:
    """The module ln_cases.py: `CASES`, `build_module`, `inputs`, references."""
    return LN_CASES


@pytest.fixture
def ln_ctx() -> Context:
    """A context with `builtin`, `func` and `ln` loaded."""
    ctx = Context()
    ctx.load_dialect(Builtin)
    ctx.load_dialect(Func)
    ctx.load_dialect(LN)
    return ctx


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for name, evaluating in (("ln_case", False), ("ln_eval_case", True)):
        if name in metafunc.fixturenames:
            metafunc.parametrize((name, "ftype"), LN_CASES.params(evaluating))
