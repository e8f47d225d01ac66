"""The `cont` dialect: delimited continuations (shift/reset) and first-class closures.

Reverse-mode AD rewrites every differentiable op into a `cont.shift` whose body
runs the forward op, resumes the captured continuation (the rest of the forward
pass *and* the backward pass), then applies the op's adjoint rule.
`lower-continuations` later removes every shift/reset; closures may remain and
the backends lower them.

    %ans = cont.reset -> tensor<f32> {
      %y = cont.shift %k : !cont.k<(tensor<f32>) -> (tensor<f32>)> {
        %v = ln.exp %x : tensor<f32>
        %a = cont.resume %k(%v) : !cont.k<(tensor<f32>) -> (tensor<f32>)>
        cont.yield %a : tensor<f32>
      }
      cont.yield %y : tensor<f32>
    }

Regions here are not isolated from above: bodies use SSA values of enclosing
scopes. A `cont.lambda` captures the values its body uses when it is created.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from xdsl.dialects.builtin import ArrayAttr, UnitAttr
from xdsl.ir import (
    Attribute,
    Block,
    Dialect,
    Operation,
    ParametrizedAttribute,
    Region,
    SSAValue,
    TypeAttribute,
)
from xdsl.irdl import (
    IRDLOperation,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    region_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.parser import AttrParser, Parser
from xdsl.printer import Printer
from xdsl.traits import IsTerminator, RecursiveMemoryEffect
from xdsl.utils.exceptions import VerifyException

# --- types --------------------------------------------------------------------------------


class _SignatureType(ParametrizedAttribute, TypeAttribute):
    """A type with a signature `(inputs) -> (outputs)`."""

    inputs: ArrayAttr[Attribute]
    outputs: ArrayAttr[Attribute]

    def __init__(self, inputs: Sequence[Attribute], outputs: Sequence[Attribute]):
        super().__init__(ArrayAttr(inputs), ArrayAttr(outputs))

    def print_parameters(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            with printer.in_parens():
                printer.print_list(self.inputs.data, printer.print_attribute)
            printer.print_string(" -> ")
            with printer.in_parens():
                printer.print_list(self.outputs.data, printer.print_attribute)

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> tuple[ArrayAttr, ArrayAttr]:
        with parser.in_angle_brackets():
            ins = parser.parse_comma_separated_list(parser.Delimiter.PAREN, parser.parse_type)
            parser.parse_punctuation("->")
            outs = parser.parse_comma_separated_list(parser.Delimiter.PAREN, parser.parse_type)
        return ArrayAttr(ins), ArrayAttr(outs)


@irdl_attr_definition
class ContinuationType(_SignatureType):
    """`!cont.k<(hole types) -> (answer types)>`: a captured continuation."""

    name = "cont.k"


@irdl_attr_definition
class ClosureType(_SignatureType):
    """`!cont.closure<(argument types) -> (result types)>`: a first-class function."""

    name = "cont.closure"


# --- syntax helpers -----------------------------------------------------------------------


def _print_types(printer: Printer, types: Sequence[Attribute]) -> None:
    with printer.in_parens():
        printer.print_list(types, printer.print_attribute)


def _parse_types(parser: Parser) -> list[Attribute]:
    return parser.parse_comma_separated_list(parser.Delimiter.PAREN, parser.parse_type)


def _parse_keyword_attrs(parser: Parser) -> dict[str, Attribute]:
    """`attributes {...}` before a region (a bare `{` would read as the region)."""
    d = parser.parse_optional_attr_dict_with_keyword()
    return dict(d.data) if d is not None else {}


def _print_call(printer: Printer, callee: SSAValue, args: Sequence[SSAValue]) -> None:
    printer.print_string(" ")
    printer.print_operand(callee)
    with printer.in_parens():
        printer.print_list(args, printer.print_operand)
    printer.print_string(" : ")
    printer.print_attribute(callee.type)


def _parse_call(
    parser: Parser, kind: type[_SignatureType]
) -> tuple[SSAValue, list[SSAValue], _SignatureType]:
    callee = parser.parse_unresolved_operand()
    args = parser.parse_comma_separated_list(
        parser.Delimiter.PAREN, parser.parse_unresolved_operand
    )
    parser.parse_punctuation(":")
    pos = parser.pos
    t = parser.parse_type()
    if not isinstance(t, kind):
        parser.raise_error(f"expected a !{kind.name}<...> type, got {t}", pos, parser.pos)
    resolved_callee = parser.resolve_operand(callee, t)
    if len(args) != len(t.inputs.data):
        parser.raise_error(
            f"{len(args)} arguments given to a !{kind.name}<...> taking {len(t.inputs.data)}",
            pos,
            parser.pos,
        )
    resolved = parser.resolve_operands(args, list(t.inputs.data), parser.pos)
    return resolved_callee, list(resolved), t


def _check_yield(
    op: IRDLOperation, region: Region, expected: Sequence[Attribute], what: str
) -> None:
    if len(region.blocks) != 1:
        raise VerifyException(f"'{op.name}': body must have exactly one block")
    term = region.block.last_op
    if not isinstance(term, YieldOp):
        raise VerifyException(f"'{op.name}': body must end with cont.yield")
    got = [v.type for v in term.values]
    if got != list(expected):
        raise VerifyException(
            f"'{op.name}': body yields ({', '.join(map(str, got))}) but {what} is "
            f"({', '.join(map(str, expected))})"
        )


# --- ops ----------------------------------------------------------------------------------


@irdl_op_definition
class YieldOp(IRDLOperation):
    """Ends the body of a reset, shift or lambda with its value(s).

    cont.yield %x : tensor<f32>
    """

    name = "cont.yield"
    values = var_operand_def()
    traits = traits_def(IsTerminator())

    assembly_format = "($values^ `:` type($values))? attr-dict"

    def __init__(self, *values: SSAValue | IRDLOperation):
        super().__init__(operands=[[SSAValue.get(v) for v in values]])

    def verify_(self) -> None:
        parent = self.parent_op()
        if not isinstance(parent, ResetOp | ShiftOp | LambdaOp):
            raise VerifyException(
                f"'{self.name}' must end the body of cont.reset, cont.shift or cont.lambda"
            )


@irdl_op_definition
class ResetOp(IRDLOperation):
    """Delimits a computation; its results are the body's answer.

    Every `cont.shift` executed while the body runs captures the continuation
    up to here.

        %ans = cont.reset -> (tensor<f32>) {
          ...
          cont.yield %l : tensor<f32>
        }
    """

    name = "cont.reset"
    res = var_result_def()
    body = region_def("single_block")
    traits = traits_def(RecursiveMemoryEffect())

    def __init__(self, result_types: Sequence[Attribute], body: Region | Block):
        region = body if isinstance(body, Region) else Region(body)
        super().__init__(result_types=[list(result_types)], regions=[region])

    def verify_(self) -> None:
        if self.body.block.args:
            raise VerifyException(f"'{self.name}': body takes no arguments")
        _check_yield(self, self.body, [r.type for r in self.res], "the reset's result")

    def print(self, printer: Printer) -> None:
        if self.res:
            printer.print_string(" -> ")
            _print_types(printer, [r.type for r in self.res])
        printer.print_op_attributes(self.attributes, print_keyword=True)
        printer.print_string(" ")
        printer.print_region(self.body, print_entry_block_args=False)

    @classmethod
    def parse(cls, parser: Parser) -> ResetOp:
        types: list[Attribute] = []
        if parser.parse_optional_punctuation("->") is not None:
            types = _parse_types(parser)
        attrs = _parse_keyword_attrs(parser)
        region = parser.parse_region()
        op = cls(types, region)
        op.attributes.update(attrs)
        return op


@irdl_op_definition
class ShiftOp(IRDLOperation):
    """Captures the continuation up to the nearest dynamically enclosing reset.

    The body receives it as its block argument `%k : !cont.k<(holes) -> (answer)>`
    and runs in place of the whole reset: what the body yields is the reset's
    answer. Resuming `%k` with values continues after the shift with the shift's
    results bound to them, until the reset, and returns the reset's answer.

        %y = cont.shift %k : !cont.k<(tensor<f32>) -> (tensor<f32>)> {
          %a = cont.resume %k(%x) : !cont.k<(tensor<f32>) -> (tensor<f32>)>
          cont.yield %a : tensor<f32>
        }
    """

    name = "cont.shift"
    res = var_result_def()
    body = region_def("single_block")
    traits = traits_def(RecursiveMemoryEffect())

    def __init__(self, k_type: ContinuationType, body: Region | Block):
        region = body if isinstance(body, Region) else Region(body)
        super().__init__(result_types=[list(k_type.inputs.data)], regions=[region])

    @property
    def k(self) -> SSAValue:
        return self.body.block.args[0]

    @property
    def k_type(self) -> ContinuationType:
        t = self.body.block.args[0].type
        assert isinstance(t, ContinuationType)
        return t

    def verify_(self) -> None:
        args = self.body.block.args
        if len(args) != 1 or not isinstance(args[0].type, ContinuationType):
            raise VerifyException(
                f"'{self.name}': body must take exactly one argument of type !cont.k<...>"
            )
        kt = args[0].type
        holes = [r.type for r in self.res]
        if holes != list(kt.inputs.data):
            raise VerifyException(
                f"'{self.name}': results ({', '.join(map(str, holes))}) must equal the "
                f"continuation's inputs ({', '.join(map(str, kt.inputs.data))})"
            )
        _check_yield(self, self.body, list(kt.outputs.data), "the continuation's answer")

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_block_argument(self.k, print_type=True)
        printer.print_op_attributes(self.attributes, print_keyword=True)
        printer.print_string(" ")
        printer.print_region(self.body, print_entry_block_args=False)

    @classmethod
    def parse(cls, parser: Parser) -> ShiftOp:
        pos = parser.pos
        arg = parser.parse_argument()
        if not isinstance(arg.type, ContinuationType):
            parser.raise_error(f"expected a !cont.k<...> type, got {arg.type}", pos, parser.pos)
        attrs = _parse_keyword_attrs(parser)
        region = parser.parse_region(arguments=[arg])
        op = cls(arg.type, region)
        op.attributes.update(attrs)
        return op


@irdl_op_definition
class ResumeOp(IRDLOperation):
    """Invokes a continuation: runs the rest of the delimited computation with the
    shift's results bound to the arguments, and returns the reset's answer.

        %a = cont.resume %k(%v) : !cont.k<(tensor<f32>) -> (tensor<f32>)>
    """

    name = "cont.resume"
    k = operand_def(ContinuationType)
    args = var_operand_def()
    res = var_result_def()

    def __init__(self, k: SSAValue, args: Sequence[SSAValue | IRDLOperation]):
        kt = k.type
        assert isinstance(kt, ContinuationType)
        super().__init__(
            operands=[k, [SSAValue.get(a) for a in args]],
            result_types=[list(kt.outputs.data)],
        )

    def verify_(self) -> None:
        _verify_call(self, self.k.type, self.args, self.res, "continuation")

    def print(self, printer: Printer) -> None:
        _print_call(printer, self.k, self.args)
        printer.print_op_attributes(self.attributes)

    @classmethod
    def parse(cls, parser: Parser) -> ResumeOp:
        k, args, _ = _parse_call(parser, ContinuationType)
        op = cls(k, args)
        op.attributes.update(parser.parse_optional_attr_dict())
        return op


@irdl_op_definition
class LambdaOp(IRDLOperation):
    """A first-class closure over the SSA values its body uses.

        %f = cont.lambda (%x: tensor<f32>) -> (tensor<f32>) {
          %y = ln.mul %x, %w : tensor<f32>, tensor<f32>
          cont.yield %y : tensor<f32>
        }

    With `rec %self`, the body's first argument is the closure itself, so it may
    call itself (loops become recursive closures):

        %f = cont.lambda rec %self (%i: index) -> () { ... }
    """

    name = "cont.lambda"
    res = var_result_def(ClosureType)
    body = region_def("single_block")
    recursive = opt_prop_def(UnitAttr)
    traits = traits_def(RecursiveMemoryEffect())

    def __init__(self, closure_type: ClosureType, body: Region | Block, recursive: bool = False):
        region = body if isinstance(body, Region) else Region(body)
        super().__init__(
            result_types=[[closure_type]],
            regions=[region],
            properties={"recursive": UnitAttr()} if recursive else {},
        )

    @property
    def closure_type(self) -> ClosureType:
        t = self.res[0].type
        assert isinstance(t, ClosureType)
        return t

    @property
    def params(self) -> Sequence[SSAValue]:
        args = self.body.block.args
        return args[1:] if self.recursive else args

    def verify_(self) -> None:
        if len(self.res) != 1:
            raise VerifyException(f"'{self.name}' has exactly one result")
        ct = self.closure_type
        args = list(self.body.block.args)
        if self.recursive:
            if not args or args[0].type != ct:
                raise VerifyException(
                    f"'{self.name}': a recursive lambda's first argument must have its own type {ct}"
                )
            args = args[1:]
        got = [a.type for a in args]
        if got != list(ct.inputs.data):
            raise VerifyException(
                f"'{self.name}': parameters ({', '.join(map(str, got))}) do not match "
                f"the closure type's inputs ({', '.join(map(str, ct.inputs.data))})"
            )
        _check_yield(self, self.body, list(ct.outputs.data), "the closure's result")

    def print(self, printer: Printer) -> None:
        block = self.body.block
        params = list(block.args)
        if self.recursive:
            printer.print_string(" rec ")
            printer.print_block_argument(params[0], print_type=False)
            params = params[1:]
        printer.print_string(" ")
        with printer.in_parens():
            printer.print_list(params, printer.print_block_argument)
        printer.print_string(" -> ")
        _print_types(printer, list(self.closure_type.outputs.data))
        printer.print_op_attributes(self.attributes, print_keyword=True)
        printer.print_string(" ")
        printer.print_region(self.body, print_entry_block_args=False)

    @classmethod
    def parse(cls, parser: Parser) -> LambdaOp:
        recursive = parser.parse_optional_keyword("rec") is not None
        self_arg = parser.parse_argument(expect_type=False) if recursive else None
        params = parser.parse_comma_separated_list(parser.Delimiter.PAREN, parser.parse_argument)
        parser.parse_punctuation("->")
        outs = _parse_types(parser)
        ct = ClosureType([p.type for p in params], outs)
        attrs = _parse_keyword_attrs(parser)
        args = [self_arg.resolve(ct)] if self_arg is not None else []
        region = parser.parse_region(arguments=[*args, *params])
        op = cls(ct, region, recursive)
        op.attributes.update(attrs)
        return op


@irdl_op_definition
class ApplyOp(IRDLOperation):
    """Calls a closure.

    %y = cont.apply %f(%x) : !cont.closure<(tensor<f32>) -> (tensor<f32>)>
    """

    name = "cont.apply"
    fn = operand_def(ClosureType)
    args = var_operand_def()
    res = var_result_def()

    def __init__(self, fn: SSAValue, args: Sequence[SSAValue | IRDLOperation]):
        ft = fn.type
        assert isinstance(ft, ClosureType)
        super().__init__(
            operands=[fn, [SSAValue.get(a) for a in args]],
            result_types=[list(ft.outputs.data)],
        )

    def verify_(self) -> None:
        _verify_call(self, self.fn.type, self.args, self.res, "closure")

    def print(self, printer: Printer) -> None:
        _print_call(printer, self.fn, self.args)
        printer.print_op_attributes(self.attributes)

    @classmethod
    def parse(cls, parser: Parser) -> ApplyOp:
        fn, args, _ = _parse_call(parser, ClosureType)
        op = cls(fn, args)
        op.attributes.update(parser.parse_optional_attr_dict())
        return op


def _verify_call(
    op: IRDLOperation,
    t: Attribute,
    args: Sequence[SSAValue],
    res: Sequence[SSAValue],
    what: str,
) -> None:
    assert isinstance(t, _SignatureType)
    got = [a.type for a in args]
    if got != list(t.inputs.data):
        raise VerifyException(
            f"'{op.name}': arguments ({', '.join(map(str, got))}) do not match the "
            f"{what}'s inputs ({', '.join(map(str, t.inputs.data))})"
        )
    results = [r.type for r in res]
    if results != list(t.outputs.data):
        raise VerifyException(
            f"'{op.name}': results ({', '.join(map(str, results))}) do not match the "
            f"{what}'s outputs ({', '.join(map(str, t.outputs.data))})"
        )


CONT_OPS = [ResetOp, ShiftOp, ResumeOp, YieldOp, LambdaOp, ApplyOp]
CONT_TYPES = [ContinuationType, ClosureType]

Cont = Dialect("cont", CONT_OPS, CONT_TYPES)


def walk_outside_resets(op: Operation) -> Iterator[Operation]:
    """The ops nested in `op`'s regions, not descending into `cont.reset`s: the
    ops whose shifts `op` itself delimits or lets escape."""
    stack = [inner for region in op.regions for block in region.blocks for inner in block.ops]
    while stack:
        inner = stack.pop()
        yield inner
        if isinstance(inner, ResetOp):
            continue
        for region in inner.regions:
            for block in region.blocks:
                stack.extend(block.ops)


def free_operands(ops: Iterable[Operation]) -> list[SSAValue]:
    """The values `ops` (nested ops included) read but do not define, in first-use
    order: what a region of them captures when it becomes one primitive (a loop or
    a checkpointed region under reverse mode)."""
    ops = list(ops)
    inside: set[SSAValue] = set()
    for op in ops:
        for inner in op.walk():
            inside.update(inner.results)
            for region in inner.regions:
                for block in region.blocks:
                    inside.update(block.args)
    return list(
        dict.fromkeys(
            o for op in ops for inner in op.walk() for o in inner.operands if o not in inside
        )
    )
