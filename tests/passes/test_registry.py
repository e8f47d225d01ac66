"""The pass registry: names, plugins, pipeline strings and running pipelines."""

from __future__ import annotations

import io
import pkgutil
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.transforms.canonicalize import CanonicalizePass
from xdsl.transforms.common_subexpression_elimination import CommonSubexpressionElimination
from xdsl.transforms.dead_code_elimination import DeadCodeElimination
from xdsl.utils.exceptions import PassFailedException

import lanterna.passes
from lanterna.backends import available_backends, get_backend
from lanterna.errors import LanternaError, PipelineError
from lanterna.ir import parse_module, print_ir
from lanterna.passes import (
    available_passes,
    get_pass,
    parse_pipeline,
    register_pass,
    registry,
    run_pipeline,
)
from lanterna.passes.registry import PassRegistry, dump_header
from lanterna.tools.opt import main

TESTS = Path(__file__).parent
SOURCE = """
func.func @f(%a: tensor<3xf32>, %b: tensor<3xf32>) -> tensor<3xf32> {
  %x = ln.add %a, %b : tensor<3xf32>, tensor<3xf32>
  %y = ln.add %a, %b : tensor<3xf32>, tensor<3xf32>
  %z = ln.mul %x, %y : tensor<3xf32>, tensor<3xf32>
  func.return %z : tensor<3xf32>
}
"""


@register_pass
@dataclass(frozen=True)
class OptionsPass(ModulePass):
    """A pass that only has options."""

    name = "test-registry-options"
    factor: int = 1
    flag: bool = False
    label: str = "none"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        pass


@dataclass(frozen=True)
class DropReturn(ModulePass):
    """Breaks the IR: erases every func.return (a block then lacks its terminator)."""

    name = "test-drop-return"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for ret in [o for o in op.walk() if isinstance(o, func.ReturnOp)]:
            ret.detach()
            ret.erase()


@dataclass(frozen=True)
class Refuses(ModulePass):
    name = "test-refuses"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        raise PassFailedException("nothing to do here")


@dataclass(frozen=True)
class Crashes(ModulePass):
    name = "test-crashes"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        raise RuntimeError("a bug in the pass")


# --- names ---------------------------------------------------------------------------------


def test_xdsl_passes_are_reused_by_name():
    passes = available_passes()
    assert passes["canonicalize"] is CanonicalizePass
    assert passes["cse"] is CommonSubexpressionElimination
    assert passes["dce"] is DeadCodeElimination
    assert get_pass("cse") is CommonSubexpressionElimination
    assert list(passes) == sorted(passes)


def test_get_unknown_pass_lists_known_ones():
    with pytest.raises(PipelineError) as e:
        get_pass("no-such-pass")
    assert "unknown pass 'no-such-pass'" in str(e.value)
    assert "canonicalize, " in str(e.value) and "dce" in str(e.value)


def test_every_module_of_the_passes_package_is_imported():
    available_passes()
    infrastructure = {"registry"}
    for info in pkgutil.iter_modules(lanterna.passes.__path__):
        if info.name not in infrastructure and not info.name.startswith("_"):
            assert f"lanterna.passes.{info.name}" in sys.modules, info.name


def test_lanterna_passes_live_in_files_named_after_them():
    # passes/lower_continuations.py is `lower-continuations`, and
    # tests/passes/test_lower_continuations.py tests it (IR in, IR out).
    for name, cls in available_passes().items():
        if not cls.__module__.startswith("lanterna."):
            continue
        stem = name.replace("-", "_")
        assert cls.__module__ == f"lanterna.passes.{stem}", (name, cls.__module__)
        assert (TESTS / f"test_{stem}.py").is_file(), f"no tests/passes/test_{stem}.py"


def test_registering_checks_the_class_and_its_name():
    reg = PassRegistry(entry_point_group=None)

    class NotAPass:
        name = "not-a-pass"

    with pytest.raises(PipelineError, match="ModulePass subclasses"):
        reg.register(NotAPass)  # type: ignore[arg-type]

    @dataclass(frozen=True)
    class BadName(ModulePass):
        name = "Bad_Name"

        def apply(self, ctx: Context, op: ModuleOp) -> None:
            pass

    with pytest.raises(PipelineError, match="kebab-case"):
        reg.register(BadName)


def test_a_taken_name_needs_replace():
    reg = PassRegistry(entry_point_group=None)
    reg.register(DropReturn)
    reg.register(DropReturn)  # the same class again is harmless

    @dataclass(frozen=True)
    class Other(ModulePass):
        name = "test-drop-return"

        def apply(self, ctx: Context, op: ModuleOp) -> None:
            pass

    with pytest.raises(PipelineError, match="is taken by"):
        reg.register(Other)
    reg.register(Other, replace=True)
    assert reg.get("test-drop-return") is Other


def test_errors_share_one_base():
    assert issubclass(PipelineError, LanternaError)


# --- plugins through entry points --------------------------------------------------------


def _install_plugin(root: Path, entry_points: str, module_source: str) -> None:
    """A minimal installed distribution: a module and a dist-info with entry points."""
    (root / "lanterna_test_plugin.py").write_text(textwrap.dedent(module_source))
    info = root / "lanterna_test_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lanterna-test-plugin\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


PLUGIN = """
    from dataclasses import dataclass
    from xdsl.passes import ModulePass

    @dataclass(frozen=True)
    class PluginPass(ModulePass):
        '''A pass from another package.'''
        name = "test-plugin-pass"
        level: int = 0

        def apply(self, ctx, op):
            op.attributes["test.level"] = __import__("xdsl").dialects.builtin.IntegerAttr(
                self.level, 64
            )

    class NotAPass:
        name = "test-not-a-pass"
"""


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lanterna_test_plugin", raising=False)
    yield tmp_path
    sys.modules.pop("lanterna_test_plugin", None)


def test_plugin_is_listed_without_loading_and_loaded_on_use(plugin_path):
    _install_plugin(
        plugin_path,
        """
        [lanterna.passes]
        test-plugin-pass = lanterna_test_plugin:PluginPass
        """,
        PLUGIN,
    )
    reg = PassRegistry()
    assert "test-plugin-pass" in reg.names()
    assert "lanterna_test_plugin" not in sys.modules
    (p,) = reg.parse_pipeline("test-plugin-pass{level=7}")
    assert type(p).__module__ == "lanterna_test_plugin"
    module = parse_module(SOURCE)
    run_pipeline(module, [p])
    assert "test.level = 7" in print_ir(module)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("test-plugin-pass = lanterna_test_plugin:Missing", "cannot load pass 'test-plugin-pass'"),
        ("test-not-a-pass = lanterna_test_plugin:NotAPass", "must name a ModulePass subclass"),
        ("other-name = lanterna_test_plugin:PluginPass", "is named 'other-name' but its pass"),
    ],
)
def test_bad_plugin_is_reported_by_name(plugin_path, entry, message):
    _install_plugin(plugin_path, f"[lanterna.passes]\n{entry}\n", PLUGIN)
    reg = PassRegistry()
    name = entry.split(" = ")[0]
    with pytest.raises(PipelineError, match=message) as e:
        reg.get(name)
    assert "lanterna_test_plugin" in str(e.value)


def test_plugin_clashing_with_a_registered_pass_is_an_error(plugin_path):
    _install_plugin(
        plugin_path,
        "[lanterna.passes]\ntest-plugin-pass = lanterna_test_plugin:PluginPass\n",
        PLUGIN,
    )
    reg = PassRegistry()

    @dataclass(frozen=True)
    class Squatter(ModulePass):
        name = "test-plugin-pass"

        def apply(self, ctx: Context, op: ModuleOp) -> None:
            pass

    reg.register(Squatter)
    with pytest.raises(PipelineError, match="is taken by"):
        reg.available()


def test_cli_reports_a_broken_plugin(plugin_path, monkeypatch, capsys):
    _install_plugin(
        plugin_path, "[lanterna.passes]\ntest-plugin-pass = lanterna_test_plugin:Missing\n", PLUGIN
    )
    monkeypatch.setattr(registry, "_REGISTRY", PassRegistry())
    assert main(["--list-passes"]) == 2
    err = capsys.readouterr().err
    assert "lanterna-opt: error: cannot load pass 'test-plugin-pass'" in err
    assert "Traceback" not in err


# --- pipeline strings ----------------------------------------------------------------------


def test_parse_pipeline_in_order():
    passes = parse_pipeline("canonicalize,cse,dce")
    assert [type(p) for p in passes] == [
        CanonicalizePass,
        CommonSubexpressionElimination,
        DeadCodeElimination,
    ]
    assert parse_pipeline("") == []
    assert [p.name for p in parse_pipeline(" cse , dce ")] == ["cse", "dce"]


def test_parse_pipeline_options():
    (p,) = parse_pipeline('test-registry-options{factor=3 flag=true label="a b"}')
    assert p == OptionsPass(factor=3, flag=True, label="a b")
    (q,) = parse_pipeline("test-registry-options")
    assert q == OptionsPass()
    # The pass prints back as a pipeline element that parses to an equal pass.
    assert parse_pipeline(str(p)) == [p]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("test-registry-options{size=3}", r'\["size"\] not found'),
        ("test-registry-options{factor=big}", "Incompatible types"),
        ("cse{x=1}", "'cse' takes no options"),
    ],
)
def test_bad_options_name_the_pass_and_its_options(text, message):
    with pytest.raises(PipelineError, match=message) as e:
        parse_pipeline(text)
    name = text.split("{")[0]
    assert f"bad options for pass '{name}'" in str(e.value)
    if name == "test-registry-options":
        assert "factor: int = 1" in str(e.value)


def test_unknown_pass_in_pipeline_lists_known_ones():
    with pytest.raises(PipelineError) as e:
        parse_pipeline("cse,csee,frobnicate")
    msg = str(e.value)
    assert "unknown pass 'csee' (did you mean 'cse'?)" in msg
    assert "unknown pass 'frobnicate'" in msg
    assert "known passes: absorb-transposes, accumulate-pieces, accumulate-products, " in msg
    assert "canonicalize, checkpoint, cse, dce, defer-products" in msg


def test_malformed_pipeline():
    with pytest.raises(PipelineError, match="malformed pass pipeline") as e:
        parse_pipeline("cse,,dce")
    assert "Expected pass name here" in str(e.value)


def test_every_backends_default_pipeline_parses():
    for name in available_backends():
        pipeline = get_backend(name).default_pipeline
        assert isinstance(pipeline, str), name
        parse_pipeline(pipeline)


# --- running -------------------------------------------------------------------------------


def test_run_pipeline_from_string():
    module = parse_module(SOURCE)
    assert run_pipeline(module, "cse") is module
    assert print_ir(module).count("ln.add") == 1


def test_print_after_all_callable_and_stream():
    seen = []
    run_pipeline(parse_module(SOURCE), "cse,dce", print_after_all=lambda p, m: seen.append(p.name))
    assert seen == ["cse", "dce"]

    out = io.StringIO()
    run_pipeline(parse_module(SOURCE), "cse,test-registry-options{factor=2}", print_after_all=out)
    text = out.getvalue()
    assert text.index(dump_header(parse_pipeline("cse")[0])) < text.index(
        "IR Dump After test-registry-options{factor=2}"
    )
    assert text.count("builtin.module") == 2


def test_verify_each_names_the_pass_that_broke_the_ir():
    with pytest.raises(PipelineError, match="after pass 'test-drop-return' does not verify"):
        run_pipeline(parse_module(SOURCE), [CommonSubexpressionElimination(), DropReturn()])
    # Without verification the broken IR goes through.
    run_pipeline(parse_module(SOURCE), [DropReturn()], verify_each=False)


def test_input_that_does_not_verify_is_not_blamed_on_a_pass():
    module = parse_module(SOURCE)
    DropReturn().apply(Context(), module)
    with pytest.raises(PipelineError, match="input to the pipeline does not verify"):
        run_pipeline(module, "cse")


def test_failing_pass_is_named():
    with pytest.raises(PipelineError, match="pass 'test-refuses' failed: nothing to do here"):
        run_pipeline(parse_module(SOURCE), [Refuses()])


def test_crashing_pass_keeps_its_traceback_and_is_named():
    with pytest.raises(RuntimeError, match="a bug in the pass") as e:
        run_pipeline(parse_module(SOURCE), [Crashes()])
    assert "while running pass 'test-crashes'" in e.value.__notes__
