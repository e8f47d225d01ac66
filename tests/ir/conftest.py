"""Shared fixtures of the IR tests: a parsing context that knows our dialects."""

from __future__ import annotations

import pytest
from xdsl.context import Context
from xdsl.dialects.builtin import Builtin
from xdsl.dialects.func import Func

from lanterna.ir.ln import LN


@pytest.fixture
def ln_ctx() -> Context:
    """A context with `builtin`, `func` and `ln` loaded."""
    ctx = Context()
    ctx.load_dialect(Builtin)
    ctx.load_dialect(Func)
    ctx.load_dialect(LN)
    return ctx
