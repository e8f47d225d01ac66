"""IR: the `ln`, `cont` and `ad` dialects on xDSL, type helpers, and the reference
interpreter that executes every level of the IR."""

from lanterna.ir.context import make_context, parse_module, print_ir

__all__ = ["make_context", "parse_module", "print_ir"]
