"""`ln.jit(extra_passes=..., dump_ir=...)`: a user's own pass runs by name after
the backend's default pipeline, and the IR after every pass can be printed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

import lanterna as ln
from lanterna.ir import ad
from lanterna.passes import register_pass
from lanterna.tools.opt import main as lanterna_opt

SEEN: list[str] = []


@register_pass
@dataclass(frozen=True)
class CountCells(ModulePass):
    """Record how many adjoint cells a module makes (a user's test pass)."""

    name = "test-count-cells"
    tag: str = "x"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        n = sum(isinstance(o, ad.ZeroLikeOp | ad.CellFromOp) for o in op.walk())
        SEEN.append(f"{self.tag}:{n}")


def loss(x, w):
    return ln.sum(ln.tanh(x * w))


def test_extra_passes_run_after_the_default_pipeline(capsys):
    SEEN.clear()
    f = ln.jit(
        ln.grad(loss, argnums=(0, 1)), backend="interp", extra_passes=["test-count-cells{tag=user}"]
    )
    x, w = np.array([0.5, -1.0]), np.array([2.0, 0.25])
    gx, gw = f(x, w)
    t = np.tanh(x * w)
    np.testing.assert_allclose(gx, (1 - t * t) * w)
    np.testing.assert_allclose(gw, (1 - t * t) * x)
    assert SEEN and SEEN[0].startswith("user:")
    assert capsys.readouterr().err == ""


def test_a_string_names_one_extra_pass():
    SEEN.clear()
    f = ln.jit(loss, backend="interp", extra_passes="test-count-cells{tag=one}")
    f(np.ones(2), np.ones(2))
    assert SEEN == ["one:0"]


def test_default_pipeline_leaves_no_zero_filled_cells_for_straight_line_code():
    SEEN.clear()
    f = ln.jit(
        ln.grad(loss, argnums=(0, 1)),
        pipeline="lower-continuations,elide-zero-adjoints,canonicalize,cse,dce",
        backend="interp",
        extra_passes=["test-count-cells{tag=after}"],
    )
    f(np.ones(3), np.ones(3))
    assert SEEN == ["after:0"]


def test_dump_ir_prints_after_every_pass(capsys):
    f = ln.jit(
        loss, backend="interp", pipeline="cse", extra_passes=["test-count-cells"], dump_ir=True
    )
    f(np.ones(2), np.ones(2))
    err = capsys.readouterr().err
    assert err.count("// -----// IR Dump After") == 2
    assert "IR Dump After cse" in err and "IR Dump After test-count-cells" in err
    assert "ln.tanh" in err


def test_lanterna_opt_runs_a_user_pass_by_name(tmp_path: Path, capsys):
    src = tmp_path / "in.mlir"
    src.write_text(
        """func.func @f(%v: tensor<3xf64>) -> tensor<3xf64> {
          %c = ad.zero_like %v : tensor<3xf64>
          ad.accum %c, %v : !ad.cell<tensor<3xf64>>
          %d = ad.load %c : !ad.cell<tensor<3xf64>>
          func.return %d : tensor<3xf64>
        }"""
    )
    SEEN.clear()
    assert (
        lanterna_opt(
            [
                str(src),
                "-p",
                "test-count-cells{tag=opt},elide-zero-adjoints,test-count-cells{tag=opt2}",
            ]
        )
        == 0
    )
    assert SEEN == ["opt:1", "opt2:0"]
    assert "ad." not in capsys.readouterr().out


@register_pass
@dataclass(frozen=True)
class DropReturns(ModulePass):
    """Break the IR: delete every function's return (a faulty user pass)."""

    name = "test-drop-returns"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for f in op.ops:
            f.body.block.last_op.detach()


def test_a_pass_that_breaks_the_ir_is_caught_before_the_backend(monkeypatch):
    import pytest

    from lanterna.errors import PipelineError

    x = np.ones(3, np.float32)
    # The result is verified once, after the whole pipeline...
    monkeypatch.delenv("LANTERNA_DEBUG", raising=False)
    f = ln.jit(loss, backend="interp", extra_passes="test-drop-returns")
    with pytest.raises(PipelineError, match="after the pipeline .* does not verify"):
        f(x, x)
    # ...and when debugging, after each pass, naming the one that broke it.
    monkeypatch.setenv("LANTERNA_DEBUG", "1")
    f = ln.jit(loss, backend="interp", extra_passes="test-drop-returns")
    with pytest.raises(PipelineError, match="after pass 'test-drop-returns' does not verify"):
        f(x, x)
