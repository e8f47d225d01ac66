"""lanterna: differentiable programming for Python, compiled."""

from lanterna.errors import CompileError, LanternaError, PipelineError, TraceError
from lanterna.frontends import python as _frontend
from lanterna.frontends.python import *

__all__ = ["CompileError", "LanternaError", "PipelineError", "TraceError"]
__all__ += _frontend.__all__
