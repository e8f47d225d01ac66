"""The installed package: `import lanterna` works from anywhere, and pyproject's
package list matches the folders that are packages."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Folders of the checkout that are not part of the installed package.
NOT_PACKAGED = {"tests", "benchmarks", "build", "dist", "__pycache__"}


def declared_packages() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]["packages"]


def package_folders() -> tuple[set[str], set[str]]:
    """(dotted names of folders with an __init__.py, folders with .py files but none)."""
    packages, orphans = set(), set()
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [
            d
            for d in dirs
            if d not in NOT_PACKAGED and not d.startswith(".") and not d.endswith(".egg-info")
        ]
        rel = Path(folder).relative_to(ROOT)
        name = ".".join(("lanterna", *rel.parts))
        if "__init__.py" in files:
            packages.add(name)
        elif any(f.endswith(".py") for f in files):
            orphans.add(name)
    return packages, orphans


def test_pyproject_lists_exactly_the_package_folders():
    declared = declared_packages()
    assert len(declared) == len(set(declared)), "a package is listed twice"
    packages, orphans = package_folders()
    assert set(declared) == packages
    # A folder of modules without __init__.py would silently not be installed.
    assert not orphans, f"folders with .py files but no __init__.py: {sorted(orphans)}"
    # Only `lanterna` becomes a top-level name in site-packages.
    assert {p.split(".")[0] for p in declared} == {"lanterna"}


def test_import_from_elsewhere(tmp_path):
    code = (
        "import importlib, lanterna\n"
        f"for name in {declared_packages()!r}:\n"
        "    importlib.import_module(name)\n"
        "print(lanterna.__file__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    where = Path(result.stdout.strip()).resolve()
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    assert where == ROOT / "__init__.py" or where.is_relative_to(site), where


def test_the_public_api_is_reached_through_the_root():
    import lanterna as ln
    from lanterna import jit
    from lanterna.frontends import python as frontend

    assert jit is ln.jit is frontend.jit
    assert ln.TraceError is __import__("lanterna.errors").errors.TraceError
    names = set(ln.__all__)
    assert set(frontend.__all__) <= names
    assert {"CompileError", "LanternaError", "PipelineError", "TraceError"} <= names
    assert names <= set(dir(ln))
    scope: dict = {}
    exec("from lanterna import *", scope)  # noqa: S102 -- the star import itself is tested
    assert scope["grad"] is frontend.grad and scope["tanh"] is frontend.tanh


def test_an_unknown_attribute_is_an_attribute_error_naming_it():
    import lanterna as ln

    with pytest.raises(AttributeError, match="module 'lanterna' has no attribute 'no_such_op'"):
        ln.no_such_op  # noqa: B018
    assert not hasattr(ln, "__wrapped__")
    assert getattr(ln, "no_such_op", None) is None
