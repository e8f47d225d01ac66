"""Locating the user's line: where a `TraceError` points.

Mistakes in traced code are reported at the innermost stack frame outside
lanterna (and outside the libraries it calls into), so the message names the
user's own file and line, e.g. `model.py:12: ln.add: operand shapes (2, 3) and
(4,) do not broadcast`.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import sys
from types import FrameType

import numpy as np
import xdsl
from xdsl.dialects.builtin import (
    FileLineColLoc,
    IntAttr,
    LocationAttr,
    StringAttr,
    UnknownLoc,
)
from xdsl.utils.exceptions import VerifyException

from lanterna.errors import TraceError

_PKG_ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
# The repository root is the package, so tests and benchmarks live under it too:
# only these folders and files are lanterna's own code.
_INTERNAL_PREFIXES = tuple(
    os.path.join(_PKG_ROOT, d) + os.sep for d in ("ir", "passes", "backends", "frontends")
)
_INTERNAL_FILES = frozenset(os.path.join(_PKG_ROOT, f) for f in ("__init__.py", "errors.py"))
# Libraries that may sit between user code and ours (numpy calling `Tensor.sum`).
_LIBRARY_PREFIXES = tuple(
    os.path.dirname(os.path.realpath(m.__file__)) + os.sep
    for m in (np, xdsl)
    if m.__file__ is not None
)


# Asked for every frame of the stack on each lookup (and each index-checking op
# records its line while tracing): the answer per file name is kept.
@functools.lru_cache(maxsize=4096)
def _is_internal(filename: str) -> bool:
    path = os.path.realpath(filename)
    return (
        path in _INTERNAL_FILES
        or path.startswith(_INTERNAL_PREFIXES)
        or path.startswith(_LIBRARY_PREFIXES)
    )


def user_frame() -> FrameType | None:
    """The innermost stack frame outside lanterna (and the libraries it calls)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and _is_internal(frame.f_code.co_filename):
        frame = frame.f_back
    return frame


def user_location() -> LocationAttr:
    """The user's current line as the location of an op being traced, so that an
    error the op meets when it runs names that line (see `ln.base.index_error`)."""
    frame = user_frame()
    if frame is None:
        return UnknownLoc()
    at = frame.f_lasti // 2  # code units are two bytes
    position = next(itertools.islice(frame.f_code.co_positions(), at, None), None)
    column = 0 if position is None or position[2] is None else position[2] + 1  # 1-based
    return FileLineColLoc(
        StringAttr(frame.f_code.co_filename), IntAttr(frame.f_lineno), IntAttr(column)
    )


def user_error(message: str) -> TraceError:
    """A TraceError for `message` located at the user's current line."""
    frame = user_frame()
    if frame is None:
        return TraceError(message)
    return TraceError(message, frame.f_code.co_filename, frame.f_lineno)


_QUOTED_OP = re.compile(r"^'([\w.]+)'")


def from_verify(e: VerifyException) -> TraceError:
    # Verifiers say `'ln.add': ...`; in a user-facing message the quotes are noise.
    return user_error(_QUOTED_OP.sub(r"\1", str(e)))
