"""The textual IR inputs of the pass tests, and the one list of differentiation
programs that the pass tests (reverse-ad, lower-continuations,
elide-zero-adjoints, fuse-elementwise, canonicalize) and the cpu emitter test run.

A `Program` is a file of tests/passes/inputs with a function `@f`, the point it
is run at and the arguments differentiated. To add one, write the file and add a
`Program` to `AD_PROGRAMS` (every pass test then checks it) or to the list of the
one suite it is for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects.builtin import ModuleOp

from lanterna.ir import parse_module

INPUTS = Path(__file__).parents[1] / "passes" / "inputs"


def load(name: str) -> ModuleOp:
    """A file of tests/passes/inputs, parsed and verified."""
    path = INPUTS / name
    module = parse_module(path.read_text(), str(path))
    module.verify()
    return module


@dataclass(frozen=True)
class Program:
    """`@f` of `file`, run at `point` (one value per argument, float64 unless it is
    an integer array), differentiated with respect to `argnums`."""

    file: str
    point: tuple
    argnums: tuple[int, ...] = (0, 1)

    @property
    def id(self) -> str:
        shown = ",".join(f"{v:g}" if np.ndim(v) == 0 else f"[{len(v)}]" for v in self.point)
        return f"{Path(self.file).stem}({shown})"

    @property
    def reverse_ad(self) -> str:
        """The pipeline element differentiating `@f` into `@f_grad`."""
        return f"reverse-ad{{func=f argnums={','.join(map(str, self.argnums))}}}"

    def load(self) -> ModuleOp:
        return load(self.file)

    def args(self) -> list[np.ndarray]:
        out = []
        for v in self.point:
            a = np.asarray(v)
            out.append(a if np.issubdtype(a.dtype, np.integer) else a.astype(np.float64))
        return out


def params(programs: list[Program]) -> list:
    """`pytest.param`s of `programs`, each named by its id."""
    return [pytest.param(p, id=p.id) for p in programs]


# Scalar control flow: an if taken both ways, a loop, a while, a call, a recursion.
# The reverse-ad, lower-continuations, elide-zero-adjoints and fuse-elementwise
# tests and the cpu emitter test all run every one of these.
AD_PROGRAMS: list[Program] = [
    Program("ad_if.mlir", (0.7, -1.3)),
    Program("ad_if.mlir", (-0.4, 0.9)),
    Program("ad_for.mlir", (0.3, 0.8)),
    Program("ad_while.mlir", (0.5, 1.7)),
    Program("ad_call.mlir", (0.6, 1.4)),
    Program("ad_recursive.mlir", (0.4, 1.1)),
]

# A recursion over a binary tree given as child-index arrays (-1: no child).
TREE = Program(
    "ad_tree.mlir",
    (
        [0.3, -0.2, 0.5, 0.1, 0.7, -0.4, 0.9],
        0.8,
        1.2,
        np.array([1, 3, 5, -1, -1, -1, -1], np.int64),
        np.array([2, 4, 6, -1, -1, -1, -1], np.int64),
    ),
)

# Loops `reverse-loops` rewrites: plain, nested over vectors, and one that branches.
LOOP_PROGRAMS: list[Program] = [
    Program("ad_for.mlir", (0.3, 0.8)),
    Program("ad_for.mlir", (-1.2, 1.9)),
    Program("ad_nested_for.mlir", ([0.3, -0.5, 0.9], [0.7, 1.1, -0.4])),
    Program("ad_for_if.mlir", (0.6, 0.4)),
    Program("ad_for_if.mlir", (-0.6, 0.9)),
]


def named(file: str) -> list[Program]:
    """The programs of `AD_PROGRAMS` read from `file`."""
    return [p for p in AD_PROGRAMS if p.file == file]
