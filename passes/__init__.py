"""Passes over lanterna IR: one module per pass, the pass registry and pipeline
strings. The `lanterna-opt` command line that runs them is `lanterna.tools.opt`."""

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
