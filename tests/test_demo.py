"""The README's main job: `python -m lanterna.demo` trains and its loss falls."""

from __future__ import annotations

import lanterna.demo as demo


def test_demo_trains(capsys):
    assert demo.main(["--steps", "40"]) == 0
    out = capsys.readouterr().out
    first, last = (float(v) for v in out.rsplit("loss ", 1)[1].split(",")[0].split(" -> "))
    assert last < 0.8 * first
