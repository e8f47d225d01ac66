"""The base class of every `ln` op: one custom syntax, type inference, semantics.

Every `ln` op prints as

    %r = ln.<name> %a, %b {prop = value, ...} : type(%a), type(%b)

and, when its result type cannot be derived from its operands and properties
(casts, reshapes, constants), as `... : operand types -> result type`. Parsing
infers the result type with the same rule the verifier checks, so a textual op
is either well typed or rejected at its own line and column.

An op class states, next to its IRDL fields:

* `infer_type(operand_types, props, result_type)` -- its type rule; raises
  `VerifyException` naming the op and the bad operand;
* `evaluate(*arrays)` -- its reference semantics in numpy (the interpreter
  calls it);
* `adjoint(ab)` -- its reverse-mode rule (see `lanterna.ir.ln.adjoint`).

Lowerings live with the backends, in op tables keyed by the op class (the element
expression of an elementwise op in `backends/c_like`, kernels in each backend's
own table); a test walks every op and fails when a backend has no lowering.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from xdsl.dialects.builtin import (
    DenseArrayBase,
    FileLineColLoc,
    FloatAttr,
    IntegerAttr,
    TensorType,
    UnitAttr,
    f64,
    i64,
)
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.irdl import IRDLOperation, VarOperandDef, result_def, traits_def
from xdsl.parser import Parser, UnresolvedOperand
from xdsl.pattern_rewriter import RewritePattern
from xdsl.printer import Printer
from xdsl.traits import ConditionallySpeculatable, HasCanonicalizationPatternsTrait, NoMemoryEffect
from xdsl.utils.exceptions import VerifyException

from lanterna.errors import LanternaIndexError
from lanterna.ir.ln.adjoint import AdjointBuilder, MissingAdjointRule
from lanterna.ir.types import check_size, expect_tensor, format_shape, shape_of

Props = Mapping[str, Attribute]


# --- property helpers -------------------------------------------------------------------


def ints_prop(values: Sequence[int]) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, [int(v) for v in values])


def float_prop(value: float) -> FloatAttr:
    return FloatAttr(float(value), f64)


def int_prop(value: int) -> IntegerAttr:
    return IntegerAttr(int(value), i64)


def get_ints(props: Props, name: str, default: Sequence[int] | None = None) -> tuple[int, ...]:
    attr = props.get(name)
    if attr is None:
        if default is None:
            raise VerifyException(f"missing property '{name}'")
        return tuple(default)
    if not isinstance(attr, DenseArrayBase):
        raise VerifyException(f"property '{name}' must be array<i64: ...>, got {attr}")
    return tuple(int(v) for v in attr.iter_values())


def get_float(props: Props, name: str, default: float | None = None) -> float:
    attr = props.get(name)
    if attr is None:
        if default is None:
            raise VerifyException(f"missing property '{name}'")
        return default
    if not isinstance(attr, FloatAttr | IntegerAttr):
        raise VerifyException(f"property '{name}' must be a number, got {attr}")
    return float(attr.value.data)


def get_int(props: Props, name: str, default: int | None = None) -> int:
    attr = props.get(name)
    if attr is None:
        if default is None:
            raise VerifyException(f"missing property '{name}'")
        return default
    if not isinstance(attr, IntegerAttr):
        raise VerifyException(f"property '{name}' must be an integer, got {attr}")
    return int(attr.value.data)


def get_flag(props: Props, name: str) -> bool:
    return isinstance(props.get(name), UnitAttr)


def source_line(op: Operation) -> str | None:
    """`file:line` of the user's code `op` was traced from, when its location says
    (the frontend records it on ops that can fail at run time)."""
    loc = op.location
    if isinstance(loc, FileLineColLoc):
        return f"{loc.filename.data}:{loc.line.data}"
    return None


def error_origin(op: Operation) -> str:
    """What a run-time error of `op` starts with: `file:line: 'ln.gather'`, without
    the line when `op` has none. Every backend names the op this way."""
    where = source_line(op)
    return f"'{op.name}'" if where is None else f"{where}: '{op.name}'"


def index_error(op: Operation, message: str) -> LanternaIndexError:
    """The error of an index out of range met by `op` while it runs (the cpu
    backend's runtime builds the same text, see `runtime/lanterna_cpu.h`)."""
    return LanternaIndexError(f"{error_origin(op)}: {message}")


def normalize_axis(op_name: str, axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise VerifyException(f"'{op_name}': axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


# --- the base class ---------------------------------------------------------------------


class LnCanonicalization(HasCanonicalizationPatternsTrait):
    """The `canonicalize` patterns of an `ln` op, kept in `ln/canonicalize.py`."""

    def get_patterns(self, op: type[Operation]) -> tuple[RewritePattern, ...]:
        # Imported here: the patterns build ops of the classes defined on top of this one.
        from lanterna.ir.ln.canonicalize import patterns_for

        return patterns_for(op)

    @classmethod
    def get_canonicalization_patterns(cls) -> tuple[RewritePattern, ...]:
        return ()


class LnSpeculatable(ConditionallySpeculatable):
    """`ln` ops compute a value and nothing else, so they may run where the
    program would not have run them (`licm` hoists them out of loops) -- except
    the ops that check indices at run time (`CHECKS_INDICES`): hoisted out of a
    loop that does not run, they could raise an IndexError the program never had."""

    @classmethod
    def is_speculatable(cls, op: Operation) -> bool:
        return not getattr(op, "CHECKS_INDICES", False)


class LnOp(IRDLOperation):
    """Shared syntax, verification and construction of `ln` ops."""

    # True when the result type is spelled out in the syntax (`-> type`).
    RESULT_IN_SYNTAX: ClassVar[bool] = False

    result = result_def(TensorType)
    traits = traits_def(NoMemoryEffect(), LnSpeculatable(), LnCanonicalization())
    # True for ops that raise IndexError on indices out of range (see LnSpeculatable).
    CHECKS_INDICES: ClassVar[bool] = False

    # --- the op's facts; subclasses override --------------------------------------------

    @classmethod
    def infer_type(
        cls, operand_types: Sequence[Attribute], props: Props, result_type: Attribute | None
    ) -> TensorType:
        """The result type, or VerifyException naming the op and the bad operand."""
        raise NotImplementedError(f"{cls.name} has no type rule")

    def evaluate(self, *args: np.ndarray) -> np.ndarray:
        """Reference semantics in numpy."""
        raise NotImplementedError(f"{self.name} has no reference semantics")

    def adjoint(self, ab: AdjointBuilder) -> None:
        """Reverse-mode rule: accumulate `ab.grad` pulled back into each operand
        (see `lanterna.ir.ln.adjoint`)."""
        raise MissingAdjointRule(f"'{self.name}' has no adjoint rule")

    # --- construction --------------------------------------------------------------------

    def __init__(
        self,
        *operands: SSAValue | IRDLOperation,
        result_type: Attribute | None = None,
        **props: Attribute,
    ):
        values = [SSAValue.get(o) for o in operands]
        rt = self.infer_type([v.type for v in values], props, result_type)
        # An inferred type can outgrow its operands' (a broadcast, a gather).
        check_size(self.name, "result", rt)
        super().__init__(operands=self._group_operands(values), result_types=[rt], properties=props)

    @classmethod
    def _group_operands(cls, values: list[SSAValue]) -> list[Any]:
        """Split a flat operand list into IRDL's per-definition groups."""
        defs = cls.get_irdl_definition().operands
        if defs and isinstance(defs[-1][1], VarOperandDef):
            # ln ops only use a trailing variadic group (concatenate).
            fixed = len(defs) - 1
            return [*values[:fixed], values[fixed:]]
        return list(values)

    # --- verification -----------------------------------------------------------------------

    def verify_(self) -> None:
        operand_types = [o.type for o in self.operands]
        for i, t in enumerate(operand_types):
            expect_tensor(self.name, f"operand #{i}", t)
        props = dict(self.properties)
        expect_tensor(self.name, "result", self.result.type)
        expected = self.infer_type(operand_types, props, self.result.type)
        if expected != self.result.type:
            raise VerifyException(
                f"'{self.name}': result type {self.result.type} does not match the "
                f"inferred type {expected}"
            )

    # --- syntax ----------------------------------------------------------------------------

    @classmethod
    def parse(cls, parser: Parser) -> LnOp:
        start = parser.pos
        unresolved, attrs, types = parse_operands_and_types(cls.name, parser)
        result_type: Attribute | None = None
        if cls.RESULT_IN_SYNTAX:
            if unresolved:
                parser.parse_punctuation("->")
            result_type = parser.parse_type()
        end = parser.pos
        operands = parser.resolve_operands(unresolved, types, end)
        prop_names = cls.get_irdl_definition().properties
        props = {k: v for k, v in attrs.items() if k in prop_names}
        others = {k: v for k, v in attrs.items() if k not in prop_names}
        try:
            for i, t in enumerate(types):
                expect_tensor(cls.name, f"operand #{i}", t)
            rt = cls.infer_type(types, props, result_type)
            check_size(cls.name, "result", rt)
        except VerifyException as e:
            parser.raise_error(str(e), start, end)
        return cls.create(
            operands=list(operands),  # `create` takes operands flat
            result_types=[rt],
            properties=props,
            attributes=others,
        )

    def print(self, printer: Printer) -> None:
        if self.operands:
            printer.print_string(" ")
            printer.print_list(self.operands, printer.print_operand)
        attrs = {**self.properties, **self.attributes}
        if attrs:
            printer.print_string(" ")
            printer.print_attr_dict(attrs)
        printer.print_string(" : ")
        if self.operands:
            printer.print_list([o.type for o in self.operands], printer.print_attribute)
        if self.RESULT_IN_SYNTAX:
            if self.operands:
                printer.print_string(" -> ")
            printer.print_attribute(self.result.type)


def parse_operands_and_types(
    op_name: str, parser: Parser
) -> tuple[list[UnresolvedOperand], dict[str, Attribute], list[Attribute]]:
    """`%a, %b {attrs} : type(%a), type(%b)`: the common head of `ln` syntax."""
    start = parser.pos
    unresolved: list[UnresolvedOperand] = []
    first = parser.parse_optional_unresolved_operand()
    if first is not None:
        unresolved.append(first)
        while parser.parse_optional_punctuation(",") is not None:
            unresolved.append(parser.parse_unresolved_operand())
    attrs = parser.parse_optional_attr_dict()
    parser.parse_punctuation(":")
    types: list[Attribute] = []
    if unresolved:
        types = parser.parse_comma_separated_list(parser.Delimiter.NONE, parser.parse_type)
        if len(types) != len(unresolved):
            parser.raise_error(
                f"'{op_name}' has {len(unresolved)} operands but {len(types)} types",
                start,
                parser.pos,
            )
    return unresolved, attrs, types


# --- small rule helpers shared by op families ---------------------------------------------


def want_arity(op_name: str, types: Sequence[Attribute], n: int) -> None:
    if len(types) != n:
        raise VerifyException(f"'{op_name}' expects {n} operands, got {len(types)}")


def want_given(op_name: str, result_type: Attribute | None) -> TensorType:
    """Ops whose result type is spelled out need it."""
    if result_type is None:
        raise VerifyException(f"'{op_name}' needs an explicit result type")
    return expect_tensor(op_name, "result", result_type)


def shape_mismatch(op_name: str, what: str, a: Attribute, b: Attribute) -> VerifyException:
    return VerifyException(
        f"'{op_name}': {what}: {a} ({format_shape(shape_of(a))}) vs {b} ({format_shape(shape_of(b))})"
    )
