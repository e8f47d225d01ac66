"""`lanterna-opt`: run passes over textual IR from the command line, like `mlir-opt`.

    lanterna-opt input.mlir -p "cse,dce"
    lanterna-opt - -p "canonicalize" --print-ir-after-all < input.mlir
    lanterna-opt input.mlir -t mlir-generic -o out.mlir

It parses the input with every lanterna dialect loaded, verifies it, runs the
pipeline (verifying after each pass unless `--no-verify-each`), and writes the
result through an output target (`-t`). Diagnostics go to stderr as
`file:line:col: error: message`; exit status 1 means the input or a pass
failed, 2 a bad command line (an unknown pass, bad options). No input makes it
print a Python traceback: an internal error (a bug in a pass or target) is a
diagnostic too, unless `--show-traceback` asks for the traceback.

Also runnable as `python -m lanterna.tools.opt`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import ParseError, VerifyException
from xdsl.utils.lexer import Span

from lanterna.backends import available_backends, get_backend
from lanterna.backends.targets import Target, available_targets, get_target
from lanterna.errors import LanternaError, PipelineError
from lanterna.ir.ad import AD
from lanterna.ir.cont import Cont
from lanterna.ir.context import make_context
from lanterna.ir.ln import LN
from lanterna.ir.parsing import IRParser
from lanterna.passes.registry import (
    available_passes,
    describe_options,
    parse_pipeline,
    pass_names,
    pass_summary,
    run_pipeline,
)

PROG = "lanterna-opt"

EXIT_OK = 0
EXIT_FAILED = 1  # the input does not parse or verify, or a pass failed
EXIT_USAGE = 2  # the command line names something unknown (argparse uses 2 too)

_OUR_DIALECTS = frozenset(d.name for d in (LN, Cont, AD))


def build_arg_parser() -> argparse.ArgumentParser:
    names = ", ".join(pass_names())
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Run lanterna passes over textual IR.",
        epilog=(
            f"passes: {names} (--list-passes describes them)\n"
            f"targets: {', '.join(available_targets())}"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("input", nargs="?", default="-", help="input IR file, or - for stdin")
    ap.add_argument(
        "-p",
        "--passes",
        default="",
        metavar="PIPELINE",
        help='passes to run, e.g. "canonicalize,cse,my-pass{opt=1 flag=true}"',
    )
    ap.add_argument(
        "--print-ir-after-all",
        action="store_true",
        help="print the IR to stderr after every pass, under a header naming the pass",
    )
    ap.add_argument(
        "--verify-each",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="verify the IR after every pass (default: on)",
    )
    ap.add_argument(
        "-t",
        "--target",
        default="mlir",
        help=f"output format: {', '.join(available_targets())} (default: mlir)",
    )
    ap.add_argument("-o", "--output", metavar="FILE", help="write the output here, not stdout")
    ap.add_argument(
        "--show-traceback",
        action="store_true",
        help="on an internal error, raise it with its Python traceback (for reporting bugs)",
    )
    ap.add_argument(
        "--list-passes",
        action="store_true",
        help="describe every registered pass and each backend's default pipeline, then exit",
    )
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Run `lanterna-opt` with `argv` (default: the process's arguments); returns
    the exit status."""
    try:
        args = build_arg_parser().parse_args(argv)
        if args.list_passes:
            sys.stdout.write(list_passes())
            return EXIT_OK
        passes = parse_pipeline(args.passes)
        target = get_target(args.target)
    except SystemExit as e:  # --help, or a usage error argparse already printed
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    except PipelineError as e:  # also a plugin that fails to load
        return _error(str(e), EXIT_USAGE)

    name = "<stdin>" if args.input == "-" else args.input
    try:
        return _run(args, passes, target, name)
    except Exception as e:
        # The tool boundary: whatever the input, the user gets a diagnostic, not a
        # traceback. Expected failures are reported with a location below; what
        # reaches here is a bug (in a pass, a verifier or a target) or an input
        # nested beyond Python's recursion limit.
        if args.show_traceback:
            raise
        return _diagnostic(_internal_error(name, e))


def _run(args: argparse.Namespace, passes: list[ModulePass], target: Target, name: str) -> int:
    try:
        text = _read_input(args.input)
    except OSError as e:
        return _error(f"cannot read '{name}': {e}", EXIT_FAILED)
    except UnicodeDecodeError as e:
        return _diagnostic(_format_decode_error(name, e))

    ctx = make_context()
    try:
        parser = IRParser(ctx, text, name)
        # xDSL rejects an input without ops; mlir-opt reads it as an empty module.
        module = ModuleOp([]) if parser.at_end() else parser.parse_module()
    except ParseError as e:
        return _diagnostic(_format_parse_error(e))

    try:
        _verify_input(module)
    except VerifyException as e:
        return _diagnostic(_format_verify_error(module, parser, e, name))

    try:
        run_pipeline(
            module,
            passes,
            verify_each=args.verify_each,
            print_after_all=sys.stderr if args.print_ir_after_all else None,
            ctx=ctx,
        )
    except PipelineError as e:
        return _diagnostic(f"{name}: error: {e}" + _notes(e.__cause__))

    try:
        output = target(module)
    except (NotImplementedError, LanternaError) as e:
        return _diagnostic(f"{name}: error: target '{args.target}': {e}")
    if args.output is None:
        sys.stdout.write(output)
        return EXIT_OK
    try:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(output)
    except OSError as e:
        return _error(f"cannot write '{args.output}': {e}", EXIT_FAILED)
    return EXIT_OK


def _verify_input(module: ModuleOp) -> None:
    """`module.verify()`, except that an op's own invariants are checked before the
    verifiers of the ops nested in it read them."""
    try:
        module.verify()
    except VerifyException:
        raise
    except Exception:
        # xDSL verifies nested ops before their parent, so the verifier of a child
        # can trip over a malformed parent (func.return reads the function_type of
        # a func.func that lacks it: KeyError). Parents first, the parent's own
        # verifier reports what is missing; if none does, the crash is a bug.
        for op in module.walk():
            _verify_op(op)
        raise


def _verify_op(op: Operation) -> None:
    """`op`'s own invariants. An xDSL verifier that fails with something other than
    VerifyException (scf.while raises a bare Exception for mismatched block
    arguments, and indexes past them) is reported as the op not verifying; one of
    lanterna's dialects doing so is a bug, left to surface as an internal error."""
    try:
        op.verify(verify_nested_ops=False)
    except VerifyException:
        raise
    except Exception as e:
        if op.dialect_name() in _OUR_DIALECTS:
            raise
        if type(e) is Exception:
            message = f"'{op.name}' op does not verify: {e}"
        else:
            message = (
                f"'{op.name}' op does not verify (its verifier raised {type(e).__name__}: {e})"
            )
        raise VerifyException(message) from e


def _read_input(path: str) -> str:
    """The input's text, decoded as strict UTF-8 (a bad byte raises UnicodeDecodeError
    with its offset, for a located diagnostic)."""
    if path != "-":
        with open(path, "rb") as f:
            return f.read().decode("utf-8")
    stdin = getattr(sys.stdin, "buffer", None)  # absent when stdin is replaced by a StringIO
    return stdin.read().decode("utf-8") if stdin is not None else sys.stdin.read()


def list_passes() -> str:
    """The text of `--list-passes`."""
    passes = available_passes()
    width = max(len(n) for n in passes)
    lines = ["passes:"]
    for name, cls in passes.items():
        lines.append(f"  {name:<{width}}  {pass_summary(cls)}")
        if dataclasses.fields(cls):
            lines.append(f"  {'':<{width}}  {describe_options(cls)}")
    lines.append("default pipelines:")
    pipelines = {b: get_backend(b).default_pipeline for b in available_backends()}
    bwidth = max((len(b) for b in pipelines), default=0)
    lines += [f"  {b:<{bwidth}}  {p or '(no passes)'}" for b, p in pipelines.items()]
    lines.append(f"targets: {', '.join(available_targets())}")
    return "\n".join(lines) + "\n"


# --- diagnostics ---------------------------------------------------------------------------


def _format_at(span: Span[str], message: str) -> str:
    """`file:line:col: error: message`, then the source line with carets under the span."""
    # print_with_context's first line is the bare location; the rest is the excerpt.
    excerpt = span.print_with_context(None).split("\n", 1)[1]
    return f"{span.get_location()}: error: {message}\n{excerpt}"


def _format_parse_error(e: ParseError) -> str:
    return _format_at(e.span, e.msg)  # type: ignore[arg-type]


def _format_decode_error(name: str, e: UnicodeDecodeError) -> str:
    data = bytes(e.object)
    line_start = data.rfind(b"\n", 0, e.start) + 1
    line = data.count(b"\n", 0, e.start) + 1
    # The bytes before the bad one on its line decode, so the column counts characters.
    col = len(data[line_start : e.start].decode("utf-8")) + 1
    return f"{name}:{line}:{col}: error: invalid UTF-8 (byte 0x{data[e.start]:02x})"


def _internal_error(name: str, e: Exception) -> str:
    if isinstance(e, RecursionError):
        # Parsing bounds nesting with a located error; this is a pass or target
        # recursing over IR that parsed, so the start of the file is all we know.
        return (
            f"{name}:1:1: error: the IR nests too deeply to process "
            "(Python's recursion limit was reached)" + _notes(e)
        )
    return (
        f"{name}: error: internal error: {type(e).__name__}: {e}"
        + _notes(e)
        + f"\n{PROG}: note: this is a bug in lanterna: rerun with --show-traceback "
        "for the traceback, and please report it with the input"
    )


def _format_verify_error(module: ModuleOp, parser: IRParser, e: VerifyException, name: str) -> str:
    op = _failing_op(module, str(e))
    span = parser.op_spans.get(op) if op is not None else None
    message = str(e)
    if op is not None and op.name not in message:
        message = f"'{op.name}' op {message}"
    if span is None:
        return f"{name}: error: {message}" + _notes(e)
    return _format_at(span, message)


def _failing_op(module: ModuleOp, message: str) -> Operation | None:
    """The op whose own verifier raises `message` (else the first that fails)."""
    first: Operation | None = None
    # Parents first, as `_verify_input` found the error: a child's verifier may
    # trip over its malformed parent.
    for op in module.walk():
        try:
            _verify_op(op)
        except VerifyException as e:
            if str(e) == message:
                return op
            first = first or op
    return first


def _notes(e: BaseException | None) -> str:
    """xDSL attaches the IR with the failing op marked as exception notes."""
    notes = getattr(e, "__notes__", None) or []
    return "".join("\n" + n.rstrip() for n in notes)


def _diagnostic(text: str) -> int:
    sys.stderr.write(text.rstrip() + "\n")
    return EXIT_FAILED


def _error(message: str, status: int) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
