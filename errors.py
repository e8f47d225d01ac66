"""The errors lanterna raises for things a user or a pass author can get wrong.

Broken IR is not among them: IR invariants raise xDSL's `VerifyException` (see
the dialects in `lanterna.ir`), and malformed textual IR raises xDSL's
`ParseError`, which carries `file:line:col`. Everything here derives from
`LanternaError`, so `except lanterna.errors.LanternaError` catches exactly the
failures lanterna reports on purpose.
"""

from __future__ import annotations


class LanternaError(Exception):
    """Base class of every error lanterna raises on purpose."""


class TraceError(LanternaError):
    """A mistake in user code found while tracing it (shape mismatch, wrong dtype,
    non-scalar loss for `grad`, unsupported Python construct).

    It names the user's own source line: `str(err)` is `"file:line: message"`
    when the location is known, and the bare message otherwise.
    """

    def __init__(self, message: str, filename: str | None = None, lineno: int | None = None):
        super().__init__(message)
        self.message = message
        self.filename = filename
        self.lineno = lineno

    def __str__(self) -> str:
        if self.filename is None:
            return self.message
        if self.lineno is None:
            return f"{self.filename}: {self.message}"
        return f"{self.filename}:{self.lineno}: {self.message}"


class PipelineError(LanternaError):
    """A pass pipeline that cannot be built or run: an unknown pass name, bad pass
    options, a pass that failed, or IR that no longer verifies after a pass (the
    message names the pass)."""


class CompileError(LanternaError):
    """A backend compiler (g++, nvcc) rejected generated source.

    `log` is the compiler's output; `source_path` is where the generated source
    was saved, so it can be inspected and recompiled by hand.
    """

    def __init__(self, message: str, log: str = "", source_path: str | None = None):
        super().__init__(message)
        self.message = message
        self.log = log
        self.source_path = source_path

    def __str__(self) -> str:
        parts = [self.message]
        if self.source_path is not None:
            parts.append(f"generated source: {self.source_path}")
        if self.log:
            parts.append(f"compiler output:\n{self.log.rstrip()}")
        return "\n".join(parts)


class LanternaRuntimeError(LanternaError, RuntimeError):
    """Compiled code failed while running (the message comes from the generated code)."""


class LanternaIndexError(LanternaRuntimeError, IndexError):
    """Compiled code met an index out of range (a gather, a slice with a traced start)."""
