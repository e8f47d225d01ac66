"""Command-line tools, the top layer: they may import every other part of lanterna
and nothing imports them.

* `lanterna.tools.opt` -- `lanterna-opt`, passes over textual IR (like `mlir-opt`);
* `lanterna.tools.cache` -- `python -m lanterna cache ...`, the compile cache.
"""
