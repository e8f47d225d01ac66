"""The one registry of passes by name, pipeline strings, and running a pipeline.

A pass is an xDSL `ModulePass`: a frozen dataclass with a kebab-case `name`
whose fields are its options. Passes come from three places, all looked up by
the same names:

* xDSL's `canonicalize`, `cse`, `dce` and `licm`, reused as they are;
* lanterna's own passes, one module each under `lanterna/passes/`
  (`passes/lower_continuations.py` is `lower-continuations`), each registering
  itself with `@register_pass`; every module of this package is imported on the
  first lookup, so a new pass file needs no edit here;
* other packages, through the `lanterna.passes` entry-point group
  (`my-pass = "my_pkg.passes:MyPass"`); the group is read once, on the first
  lookup, and a plugin is imported only when its pass is first needed.

A pipeline is an MLIR-style string, parsed with xDSL's pipeline syntax:

    canonicalize,cse,my-pass{factor=2 verbose=true}

Each backend's default pipeline lives with the backend (`lanterna.backends`), and the
output targets `lanterna-opt -t` names with the backends too (`lanterna.backends.targets`):
this package imports no backend.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import pkgutil
import re
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import TextIO, TypeVar, get_type_hints, overload

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.transforms.canonicalize import CanonicalizePass
from xdsl.transforms.common_subexpression_elimination import CommonSubexpressionElimination
from xdsl.transforms.dead_code_elimination import DeadCodeElimination
from xdsl.transforms.loop_invariant_code_motion import LoopInvariantCodeMotionPass
from xdsl.utils.arg_spec import parse_pipeline as parse_pipeline_specs
from xdsl.utils.exceptions import ArgSpecParseError, DiagnosticException, VerifyException

from lanterna.errors import LanternaError, PipelineError
from lanterna.ir.context import make_context, print_ir

ENTRY_POINT_GROUP = "lanterna.passes"

# Modules of this package that are infrastructure, not passes.
_NOT_PASS_MODULES = frozenset({"registry", "__main__"})

_KEBAB = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")

PassT = TypeVar("PassT", bound=type[ModulePass])


class PassRegistry:
    """Pass classes by name.

    `builtin_package` names a package whose modules are imported before the
    first lookup (they register their passes as a side effect);
    `entry_point_group` names the entry-point group plugins are read from.
    The module-level functions below use one shared instance; tests may build
    their own.
    """

    def __init__(
        self,
        *,
        builtin_package: str | None = None,
        entry_point_group: str | None = ENTRY_POINT_GROUP,
    ):
        self._passes: dict[str, type[ModulePass]] = {}
        self._builtin_package = builtin_package
        self._group = entry_point_group
        self._builtins_imported = builtin_package is None
        self._importing = False
        # Entry points read from the group but not loaded yet; None until read.
        self._plugins: dict[str, EntryPoint] | None = None if entry_point_group else {}

    # --- registration ----------------------------------------------------------------------

    def register(self, cls: type[ModulePass], *, replace: bool = False) -> None:
        """Add a pass class under its `name`.

        Registering the same class twice is harmless; a different class under a
        taken name is an error unless `replace` is set.
        """
        if not (isinstance(cls, type) and issubclass(cls, ModulePass)):
            raise PipelineError(f"only ModulePass subclasses can be registered, got {cls!r}")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not _KEBAB.fullmatch(name):
            raise PipelineError(
                f"pass class {_qualname(cls)} needs a kebab-case `name` "
                f"(like 'lower-continuations'), got {name!r}"
            )
        old = self._passes.get(name)
        if old is not None and old is not cls and not replace:
            raise PipelineError(
                f"pass name '{name}' is taken by {_qualname(old)}; "
                f"cannot register {_qualname(cls)} under it"
            )
        self._passes[name] = cls

    # --- lookup ----------------------------------------------------------------------------

    def get(self, name: str) -> type[ModulePass]:
        """The pass class registered as `name`; PipelineError listing the known
        passes when there is none."""
        self._import_builtins()
        cls = self._passes.get(name)
        if cls is not None:
            return cls
        if name in self._read_plugins():
            return self._load_plugin(name)
        raise PipelineError(self._unknown_message([name]))

    def available(self) -> dict[str, type[ModulePass]]:
        """Every known pass by name, sorted by name (plugins are loaded)."""
        self._import_builtins()
        for name in list(self._read_plugins()):
            self._load_plugin(name)
        return dict(sorted(self._passes.items()))

    def names(self) -> list[str]:
        """Every known pass name, sorted, without loading any plugin."""
        self._import_builtins()
        return sorted({*self._passes, *self._read_plugins()})

    # --- pipelines -------------------------------------------------------------------------

    def parse_pipeline(self, text: str) -> list[ModulePass]:
        """Pass instances from an MLIR-style pipeline string; PipelineError on a
        syntax error, an unknown pass or bad options."""
        text = _drop_blanks_between_passes(text)
        try:
            specs = list(parse_pipeline_specs(text))
        except ArgSpecParseError as e:
            # ArgSpecParseError derives from BaseException: catch it by name.
            detail = str(e).removeprefix("Error parsing pass pipeline specification:\n")
            raise PipelineError(f"malformed pass pipeline:\n{detail.rstrip()}") from None
        self._import_builtins()
        known = {*self._passes, *self._read_plugins()}
        unknown = [s.name for s in specs if s.name not in known]
        if unknown:
            raise PipelineError(self._unknown_message(unknown))
        passes: list[ModulePass] = []
        for spec in specs:
            cls = self.get(spec.name)
            try:
                passes.append(cls.from_pass_spec(spec))
            except (ValueError, TypeError) as e:
                raise PipelineError(
                    f"bad options for pass '{spec.name}' in '{spec}': {e}\n"
                    f"  {describe_options(cls)}"
                ) from None
        return passes

    # --- internals -------------------------------------------------------------------------

    def _import_builtins(self) -> None:
        # The imported modules register their passes; one that looks a pass up
        # while being imported must not start the imports over.
        if self._builtins_imported or self._importing:
            return
        assert self._builtin_package is not None
        self._importing = True
        try:
            package = importlib.import_module(self._builtin_package)
            for info in pkgutil.iter_modules(package.__path__):
                if info.name not in _NOT_PASS_MODULES and not info.name.startswith("_"):
                    importlib.import_module(f"{self._builtin_package}.{info.name}")
            # Only now: a module that failed to import is retried (and fails
            # loudly again) on the next lookup instead of silently missing.
            self._builtins_imported = True
        finally:
            self._importing = False

    def _read_plugins(self) -> dict[str, EntryPoint]:
        """Entry points of the group not loaded yet, by name (read once)."""
        if self._plugins is None:
            assert self._group is not None
            found: dict[str, EntryPoint] = {}
            for ep in entry_points(group=self._group):
                if ep.name in found:
                    raise PipelineError(
                        f"two '{self._group}' entry points are named '{ep.name}': "
                        f"{_origin(found[ep.name])} and {_origin(ep)}"
                    )
                found[ep.name] = ep
            self._plugins = found
        return self._plugins

    def _load_plugin(self, name: str) -> type[ModulePass]:
        plugins = self._read_plugins()
        ep = plugins[name]
        try:
            cls = ep.load()
        except Exception as e:
            raise PipelineError(
                f"cannot load pass '{name}' from entry point {_origin(ep)}: {type(e).__name__}: {e}"
            ) from e
        if not (isinstance(cls, type) and issubclass(cls, ModulePass)):
            raise PipelineError(
                f"entry point {_origin(ep)} must name a ModulePass subclass, got {cls!r}"
            )
        if getattr(cls, "name", None) != name:
            raise PipelineError(
                f"entry point {_origin(ep)} is named '{name}' but its pass "
                f"{_qualname(cls)} is named {getattr(cls, 'name', None)!r}"
            )
        # Raises if another class holds the name (a clash with a built-in pass);
        # a plugin that registered itself on import is the same class: harmless.
        self.register(cls)
        del plugins[name]
        return cls

    def _unknown_message(self, unknown: Sequence[str]) -> str:
        known = self.names()
        lines = []
        for name in unknown:
            line = f"unknown pass '{name}'"
            close = difflib.get_close_matches(name, known, n=1)
            if close:
                line += f" (did you mean '{close[0]}'?)"
            lines.append(line)
        lines.append("known passes: " + ", ".join(known))
        return "\n".join(lines)


def _drop_blanks_between_passes(text: str) -> str:
    """Allow `"cse, dce"`: xDSL's pipeline syntax has no blanks between passes,
    while blanks inside `{...}` separate options and must stay."""
    out: list[str] = []
    depth = 0
    quoted = escaped = False
    for ch in text:
        if quoted and escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif not quoted and ch == "{":
            depth += 1
        elif not quoted and ch == "}":
            depth -= 1
        if ch.isspace() and depth == 0 and not quoted:
            continue
        out.append(ch)
    return "".join(out)


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _origin(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    where = f" in distribution '{dist.name}'" if dist is not None else ""
    return f"'{ep.name} = {ep.value}'{where}"


# xDSL's passes we reuse, described in words where their classes have no docstring.
_REUSED_SUMMARIES = {
    "cse": "Merges operations that compute the same value without side effects (xDSL).",
    "dce": "Removes operations with unused results and no side effects (xDSL).",
    "licm": "Hoists side-effect-free ops that depend on nothing in the loop out of scf.for (xDSL).",
}


def pass_summary(cls: type[ModulePass]) -> str:
    """The first line of the pass's own docstring."""
    doc = cls.__dict__.get("__doc__") or ""
    # A dataclass without a docstring gets its signature as __doc__: not a summary.
    if doc.startswith(f"{cls.__name__}("):
        doc = ""
    lines = [line.strip() for line in doc.strip().splitlines()]
    if lines and lines[0]:
        return lines[0]
    return _REUSED_SUMMARIES.get(cls.name, "(no description)")


def describe_options(cls: type[ModulePass]) -> str:
    """One line naming a pass's options as a pipeline spells them, with their
    types and defaults: `options of 'p': factor: int = 2, verbose: bool = false`."""
    hints = get_type_hints(cls)
    parts = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        t = hints.get(f.name, f.type)
        part = f"{f.name.replace('_', '-')}: {t.__name__ if isinstance(t, type) else t}"
        if f.default is not dataclasses.MISSING:
            part += f" = {_spell_option(f.default)}"
        parts.append(part.replace("typing.", ""))
    if not parts:
        return f"'{cls.name}' takes no options"
    return f"options of '{cls.name}': " + ", ".join(parts)


def _spell_option(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return ",".join(_spell_option(v) for v in value)
    return str(value)


# --- the shared registry and its functions -------------------------------------------------

_REGISTRY = PassRegistry(builtin_package=__package__)

for _xdsl_pass in (
    CanonicalizePass,
    CommonSubexpressionElimination,
    DeadCodeElimination,
    LoopInvariantCodeMotionPass,
):
    _REGISTRY.register(_xdsl_pass)


@overload
def register_pass(cls: PassT, /) -> PassT: ...
@overload
def register_pass(*, replace: bool = False) -> Callable[[PassT], PassT]: ...
def register_pass(
    cls: PassT | None = None, /, *, replace: bool = False
) -> PassT | Callable[[PassT], PassT]:
    """Class decorator: make a `ModulePass` runnable by its name.

        @register_pass
        @dataclass(frozen=True)
        class ScaleConstants(ModulePass):
            name = "scale-constants"
            factor: float = 2.0

    `@register_pass(replace=True)` overrides a pass registered under that name.
    """

    def decorate(c: PassT) -> PassT:
        _REGISTRY.register(c, replace=replace)
        return c

    return decorate(cls) if cls is not None else decorate


def get_pass(name: str) -> type[ModulePass]:
    """The pass class registered as `name`; PipelineError listing the known ones."""
    return _REGISTRY.get(name)


def available_passes() -> dict[str, type[ModulePass]]:
    """Every registered pass (lanterna's, xDSL's reused ones and plugins) by name."""
    return _REGISTRY.available()


def pass_names() -> list[str]:
    """Every registered pass name, sorted, without importing any plugin."""
    return _REGISTRY.names()


def parse_pipeline(text: str) -> list[ModulePass]:
    """Pass instances from a pipeline string such as `"cse,my-pass{opt=1 flag=true}"`.

    Raises PipelineError for a syntax error, an unknown pass (the message lists
    the known ones) or options the pass does not accept.
    """
    return _REGISTRY.parse_pipeline(text)


PrintAfterAll = Callable[[ModulePass, ModuleOp], None] | TextIO


def dump_header(p: ModulePass) -> str:
    """The line printed above the IR after pass `p` (mlir-opt's spelling)."""
    return f"// -----// IR Dump After {p} //----- //"


def run_pipeline(
    module: ModuleOp,
    passes: str | Iterable[ModulePass],
    *,
    verify_each: bool = True,
    print_after_all: PrintAfterAll | None = None,
    ctx: Context | None = None,
) -> ModuleOp:
    """Run `passes` (instances or a pipeline string) over `module`, in place.

    With `verify_each` the module is verified before the first pass and after
    every pass; a failure raises PipelineError naming the pass that broke it,
    with xDSL's `VerifyException` (whose notes show the annotated IR) as its
    cause. `print_after_all` is called with each pass and the module after it
    runs, or, if it is a stream, receives a header line and the IR. A pass that
    reports failure (a `DiagnosticException`) becomes a PipelineError naming it.
    Returns `module`.
    """
    pipeline = parse_pipeline(passes) if isinstance(passes, str) else list(passes)
    ctx = ctx if ctx is not None else make_context()
    if verify_each:
        verify_module(module, "the input to the pipeline does not verify")
    for p in pipeline:
        try:
            p.apply(ctx, module)
        except (DiagnosticException, LanternaError) as e:
            # A pass that rejects its input (ours raise LanternaError subclasses).
            raise PipelineError(f"pass '{p}' failed: {e}") from e
        except Exception as e:
            e.add_note(f"while running pass '{p}'")
            raise
        if print_after_all is not None:
            if callable(print_after_all):
                print_after_all(p, module)
            else:
                print_after_all.write(f"{dump_header(p)}\n{print_ir(module)}\n\n")
                print_after_all.flush()
        if verify_each:
            verify_module(module, f"the IR after pass '{p}' does not verify")
    return module


def verify_module(module: ModuleOp, what: str) -> None:
    """Verify `module`; a failure raises PipelineError saying `what` failed to verify."""
    try:
        module.verify()
    except VerifyException as e:
        raise PipelineError(f"{what}: {e}") from e
