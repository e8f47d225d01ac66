"""The xDSL context holding every dialect lanterna reads and writes, and text I/O.

IR is parsed and printed in MLIR's textual form. lanterna's own dialects (`ln`,
`cont`, `ad`, and `buf` for the buffer decisions of `plan-buffers`) sit beside the xDSL dialects it reuses: `builtin`, `func`, `scf`
and `arith`.
"""

from __future__ import annotations

import io

from xdsl.context import Context
from xdsl.dialects.arith import Arith
from xdsl.dialects.builtin import Builtin, ModuleOp
from xdsl.dialects.func import Func
from xdsl.dialects.scf import Scf
from xdsl.ir import Dialect, Operation
from xdsl.printer import Printer

from lanterna.ir.ad import AD
from lanterna.ir.buf import Buf
from lanterna.ir.cont import Cont
from lanterna.ir.ln import LN
from lanterna.ir.parsing import IRParser

DIALECTS: tuple[Dialect, ...] = (Builtin, Func, Scf, Arith, LN, Cont, AD, Buf)


def make_context() -> Context:
    """A fresh context with every dialect lanterna uses loaded."""
    ctx = Context()
    for dialect in DIALECTS:
        ctx.load_dialect(dialect)
    return ctx


def parse_module(text: str, name: str = "<string>", ctx: Context | None = None) -> ModuleOp:
    """Parse textual IR into a module (a bare list of ops is wrapped in one).

    Raises xDSL's `ParseError`, whose message carries `name:line:col`, for any
    input that is not valid IR (see `lanterna.ir.parsing` for what that adds to
    xDSL's own parser).
    """
    return IRParser(ctx or make_context(), text, name).parse_module()


def print_ir(op: Operation, generic: bool = False) -> str:
    """The textual form of an op (custom syntax unless `generic`)."""
    out = io.StringIO()
    Printer(stream=out, print_generic_format=generic).print_op(op)
    return out.getvalue()
