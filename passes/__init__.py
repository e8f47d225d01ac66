"""Passes over lanterna IR: one module per pass, the pass registry, pipeline
strings, and the `lanterna-opt` command-line driver (`passes/opt_main.py`)."""

from lanterna.passes.registry import (
    available_passes,
    get_pass,
    parse_pipeline,
    register_pass,
    run_pipeline,
    verify_module,
)

__all__ = [
    "available_passes",
    "get_pass",
    "parse_pipeline",
    "register_pass",
    "run_pipeline",
    "verify_module",
]
