"""The code in docs/ runs: `docs/writing-a-pass.md`'s pass and its test are
written out and their test passes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).parents[1] / "docs"
BLOCK = re.compile(r"```python\n# file: (\S+)\n(.*?)```", re.DOTALL)


def code_files(doc: Path) -> dict[str, str]:
    return {name: body for name, body in BLOCK.findall(doc.read_text())}


def test_writing_a_pass_example_runs(tmp_path: Path) -> None:
    files = code_files(DOCS / "writing-a-pass.md")
    assert set(files) == {"drop_zero_accums.py", "test_drop_zero_accums.py"}
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
