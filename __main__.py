"""`python -m lanterna COMMAND ...`: the command-line tools that are not passes (those
are `lanterna-opt`). Each command is a module of `lanterna.tools`; this file only
dispatches to them.

    python -m lanterna cache info|list|clear    the compile cache (lanterna.tools.cache)
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Command name -> the module that implements it (`HELP`, `DESCRIPTION`, `add_arguments`, `run`).
COMMANDS = {"cache": "lanterna.tools.cache"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lanterna",
        description="lanterna command-line tools (passes over IR: see lanterna-opt).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        tool = importlib.import_module(module_name)
        sub = commands.add_parser(name, help=tool.HELP, description=tool.DESCRIPTION)
        tool.add_arguments(sub)
        sub.set_defaults(run=tool.run)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
