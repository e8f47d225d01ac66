"""The error hierarchy: what each error says and carries."""

from __future__ import annotations

import pytest

from lanterna.errors import CompileError, LanternaError, PipelineError, TraceError


@pytest.mark.parametrize("cls", [TraceError, PipelineError, CompileError])
def test_one_base(cls):
    assert issubclass(cls, LanternaError) and issubclass(LanternaError, Exception)


def test_trace_error_names_the_users_line():
    e = TraceError("shapes (3,) and (4,) do not broadcast", filename="model.py", lineno=12)
    assert str(e) == "model.py:12: shapes (3,) and (4,) do not broadcast"
    assert (e.filename, e.lineno) == ("model.py", 12)
    assert str(TraceError("no location")) == "no location"
    assert str(TraceError("no line", filename="model.py")) == "model.py: no line"


def test_compile_error_carries_the_log_and_the_source():
    e = CompileError("g++ failed", log="x.cpp:1:1: error: boom\n", source_path="/tmp/x.cpp")
    assert (e.log, e.source_path) == ("x.cpp:1:1: error: boom\n", "/tmp/x.cpp")
    assert (
        str(e)
        == "g++ failed\ngenerated source: /tmp/x.cpp\ncompiler output:\nx.cpp:1:1: error: boom"
    )
