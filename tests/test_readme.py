"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = (Path(__file__).parents[1] / "README.md").read_text()


def _block(after_heading: str) -> str:
    section = README.split(after_heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_quick_example_runs(tmp_path, capsys):
    path = tmp_path / "quick_example.py"
    path.write_text(_block("## Quick example"))
    exec(compile(path.read_text(), str(path), "exec"), {})
    assert "cont.shift" in capsys.readouterr().out


def test_recursive_tree_example_differentiates(tmp_path):
    # The snippet defines `node`; source must live in a file for the AST rewrite.
    code = "import numpy as np\nimport lanterna as ln\n" + _block("## Control flow, recursion")
    code += '''
def loss(params, tree):
    return ln.sum(node(ln.asarray(np.int64(0)), tree, params))

rng = np.random.default_rng(0)
params = {"embed": rng.standard_normal((10, 4)), "w": rng.standard_normal((4, 4)) * 0.5}
tree = {"left": np.array([1, -1, 3, -1, -1]), "right": np.array([2, -1, 4, -1, -1]),
        "word": np.array([0, 3, 0, 5, 7])}
report = ln.check_grads(lambda e, w: loss({"embed": e, "w": w}, tree), [params["embed"], params["w"]])
'''
    path = tmp_path / "tree_example.py"
    path.write_text(code)
    scope: dict = {}
    exec(compile(code, str(path), "exec"), scope)
    assert scope["report"].error < 1e-6
    assert np.isfinite(scope["report"].analytic)


def test_readme_names_only_registered_backends():
    # The README says only what works today: every backend it offers by name
    # (`backend="..."`) is one the registry knows, and no sentence claims a
    # lowering to a target that has no backend.
    from lanterna.backends import available_backends

    named = set(re.findall(r'backend="(\w+)"', README)) | set(
        re.findall(r"backend='(\w+)'", README)
    )
    named.discard("mine")  # the "Adding a backend" example registers its own
    assert named <= set(available_backends())
    if "cuda" not in available_backends():
        assert not re.search(r"(lowers?|compiles?)[^.]*\bCUDA\b", README, re.IGNORECASE)
