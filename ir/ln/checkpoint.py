"""`ln.checkpoint`: a region whose values the backward pass recomputes instead of storing.

    %h2, %c2 = ln.checkpoint -> (tensor<1x50xf32>, tensor<1x50xf32>) {
      %z = ln.matmul %h, %w : tensor<1x50xf32>, tensor<50x200xf32>
      ...
      ln.checkpoint_yield %h1, %c1 : tensor<1x50xf32>, tensor<1x50xf32>
    }

Run forward, it is its body inline: the results are the yielded values. The
body may use values from outside. Differentiated (`reverse-ad`), it is one
primitive: the forward pass runs the body plainly and keeps none of its
intermediates; the backward pass runs the body again, differentiated, and
seeds its results' adjoints. What the backward pass holds on to is what the
body reads from outside, not what it computes -- with `reverse-loops`, a loop
whose body is checkpointed saves only the body's inputs per iteration.

`ln.checkpoint(f)` in the Python frontend traces `f` into one of these;
the `checkpoint` pass wraps loop bodies in them.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.ir import Attribute, Block, Region, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    irdl_op_definition,
    region_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import HasParent, IsTerminator
from xdsl.utils.exceptions import VerifyException


@irdl_op_definition
class CheckpointOp(IRDLOperation):
    """A region recomputed in the backward pass instead of stored (see the module doc).

    %y = ln.checkpoint -> (tensor<3xf32>) {
      %t = ln.tanh %x : tensor<3xf32>
      ln.checkpoint_yield %t : tensor<3xf32>
    }
    """

    name = "ln.checkpoint"
    res = var_result_def()
    body = region_def("single_block")

    def __init__(self, result_types: Sequence[Attribute], body: Region | Block):
        if isinstance(body, Block):
            body = Region(body)
        super().__init__(result_types=[list(result_types)], regions=[body])

    def verify_(self) -> None:
        term = self.body.block.last_op
        if not isinstance(term, CheckpointYieldOp):
            raise VerifyException("'ln.checkpoint': the body must end in ln.checkpoint_yield")
        got = [v.type for v in term.values]
        want = [r.type for r in self.res]
        if got != want:
            shown = ", ".join(map(str, got)) or "nothing"
            raise VerifyException(
                f"'ln.checkpoint': the body yields ({shown}) but the op has results "
                f"({', '.join(map(str, want))})"
            )
        if self.body.block.args:
            raise VerifyException("'ln.checkpoint': the body takes no arguments")

    @classmethod
    def parse(cls, parser: Parser) -> CheckpointOp:
        types: list[Attribute] = []
        if parser.parse_optional_punctuation("->") is not None:
            types = parser.parse_comma_separated_list(parser.Delimiter.PAREN, parser.parse_type)
        attrs = parser.parse_optional_attr_dict_with_keyword()
        region = parser.parse_region()
        op = cls(types, region)
        if attrs is not None:
            op.attributes.update(attrs.data)
        return op

    def print(self, printer: Printer) -> None:
        if self.res:
            printer.print_string(" -> (")
            printer.print_list([r.type for r in self.res], printer.print_attribute)
            printer.print_string(")")
        if self.attributes:
            printer.print_op_attributes(self.attributes, print_keyword=True)
        printer.print_string(" ")
        printer.print_region(self.body, print_entry_block_args=False)


@irdl_op_definition
class CheckpointYieldOp(IRDLOperation):
    """Ends an `ln.checkpoint` body with the region's results.

    ln.checkpoint_yield %t : tensor<3xf32>
    """

    name = "ln.checkpoint_yield"
    values = var_operand_def()
    traits = traits_def(IsTerminator(), HasParent(CheckpointOp))

    def __init__(self, *values: SSAValue | IRDLOperation):
        super().__init__(operands=[[SSAValue.get(v) for v in values]])

    @classmethod
    def parse(cls, parser: Parser) -> CheckpointYieldOp:
        unresolved = parser.parse_optional_undelimited_comma_separated_list(
            parser.parse_optional_unresolved_operand, parser.parse_unresolved_operand
        )
        values: list[SSAValue] = []
        if unresolved:
            parser.parse_punctuation(":")
            types = parser.parse_comma_separated_list(parser.Delimiter.NONE, parser.parse_type)
            if len(types) != len(unresolved):
                parser.raise_error(f"{len(unresolved)} values but {len(types)} types")
            values = [parser.resolve_operand(u, t) for u, t in zip(unresolved, types)]
        return cls(*values)

    def print(self, printer: Printer) -> None:
        if self.values:
            printer.print_string(" ")
            printer.print_list(self.values, printer.print_operand)
            printer.print_string(" : ")
            printer.print_list([v.type for v in self.values], printer.print_attribute)


CHECKPOINT_OPS: list[type[IRDLOperation]] = [CheckpointOp, CheckpointYieldOp]
