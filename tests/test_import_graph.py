"""The layers point one way: frontend -> passes -> backends -> ir, tools above all.

Every module's imports (at the top, inside functions and under TYPE_CHECKING alike,
read with `ast`) stay within what its layer may use, and importing a lower layer
alone loads nothing above it (checked in a fresh interpreter).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Layer (a folder of the package) -> the lanterna packages its modules may import.
# `lanterna.errors` is the floor every layer stands on.
ALLOWED = {
    "ir": {"lanterna.ir", "lanterna.errors"},
    "backends": {"lanterna.backends", "lanterna.ir", "lanterna.errors"},
    "passes": {"lanterna.passes", "lanterna.ir", "lanterna.errors"},
    "frontends": {
        "lanterna.frontends",
        "lanterna.passes",
        "lanterna.backends",
        "lanterna.ir",
        "lanterna.errors",
    },
}


def lanterna_imports(path: Path, package: str | None = None) -> set[str]:
    """The `lanterna...` modules a file imports, anywhere in it (relative imports are
    resolved against `package`, by default the file's own)."""
    if package is None:
        package = ".".join(("lanterna", *path.relative_to(ROOT).parent.parts))
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
    return {m for m in found if m == "lanterna" or m.startswith("lanterna.")}


def within(module: str, allowed: set[str]) -> bool:
    return any(module == a or module.startswith(a + ".") for a in allowed)


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_what_is_below_it(layer: str):
    files = sorted((ROOT / layer).rglob("*.py"))
    assert files, layer
    wrong = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in files
        for module in lanterna_imports(path)
        if not within(module, ALLOWED[layer])
    }
    assert not wrong, f"{layer}/ imports outside its layer:\n" + "\n".join(sorted(wrong))


def test_errors_import_nothing_of_lanterna():
    assert lanterna_imports(ROOT / "errors.py") == set()


def test_the_check_sees_imports_inside_functions(tmp_path: Path):
    # The rule would be hollow if lazy imports escaped it.
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import lanterna.tools.opt\n"
        "def f():\n    from lanterna.passes import registry\n    from . import cache\n"
    )
    found = lanterna_imports(probe, "lanterna.backends")
    assert found == {"lanterna.tools.opt", "lanterna.passes", "lanterna.backends"}


def loaded_after(statement: str) -> list[str]:
    """The lanterna modules a fresh interpreter holds after running `statement`."""
    code = (
        f"import json, sys\n{statement}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'lanterna')))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def outside(modules: list[str], layers: set[str]) -> list[str]:
    allowed = {"lanterna", "lanterna.errors"} | {f"lanterna.{layer}" for layer in layers}
    return [m for m in modules if not within(m, allowed) and m != "lanterna"]


def test_importing_the_ir_loads_no_frontend_backend_or_pass():
    loaded = loaded_after("import lanterna.ir")
    assert "lanterna.ir.ln" in loaded
    assert outside(loaded, {"ir"}) == []


def test_importing_the_passes_loads_no_backend_or_frontend():
    loaded = loaded_after("import lanterna.passes; lanterna.passes.available_passes()")
    assert "lanterna.passes.reverse_ad" in loaded
    assert outside(loaded, {"ir", "passes"}) == []


def test_importing_lanterna_loads_the_frontend_on_first_use():
    assert outside(loaded_after("import lanterna"), set()) == []
    loaded = loaded_after("import lanterna as ln; ln.jit")
    assert "lanterna.frontends.python.api" in loaded
    assert not any(m.startswith("lanterna.tools") for m in loaded)
