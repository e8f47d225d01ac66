"""`python -m lanterna cache ...`: inspect or clear the compile cache (`lanterna.backends.cache`).

    python -m lanterna cache info     where the compile cache is, how many entries, how big,
                                      and its size limit
    python -m lanterna cache list     every built entry with its size
    python -m lanterna cache clear    remove every entry

The cache lives in `$LANTERNA_CACHE_DIR`, else `~/.cache/lanterna`; it is kept under
`$LANTERNA_CACHE_MAX_SIZE` (2G unless set) by removing the least recently used entries.

`python -m lanterna` (`lanterna/__main__.py`) builds the command line from `HELP`,
`DESCRIPTION`, `add_arguments` and `run`; `main` runs this command on its own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lanterna.backends import cache
from lanterna.errors import LanternaError

PROG = "python -m lanterna"

HELP = "inspect or clear the compile cache"
DESCRIPTION = (
    "The compile cache holds compiled modules and the pybind11 bridge. "
    "It lives in $LANTERNA_CACHE_DIR, else ~/.cache/lanterna, and is kept under "
    "$LANTERNA_CACHE_MAX_SIZE (e.g. 500M, 2G; 2G unless set) by removing the least "
    "recently used entries."
)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _info() -> int:
    info = cache.info()
    print(f"directory: {info.path}")
    kinds = ", ".join(f"{n} {ns}" for ns, n in sorted(info.by_namespace.items()))
    print(f"entries:   {info.entries}" + (f" ({kinds})" if kinds else ""))
    print(f"size:      {_size(info.total_bytes)}")
    if info.limit_bytes is None:
        print(f"limit:     none ({cache.MAX_SIZE_ENV}=unlimited)")
    else:
        used = 100 * info.total_bytes / info.limit_bytes
        print(
            f"limit:     {_size(info.limit_bytes)} ({used:.0f}% used; set by "
            f"{cache.MAX_SIZE_ENV}; least recently used entries go first)"
        )
    return 0


def _list() -> int:
    for entry in cache.entries():
        where = f"{entry.parent.parent.name}/{entry.parent.name}"
        print(f"{where:<12} {_size(entry.stat().st_size):>10}  {entry.name}")
    return 0


def _clear() -> int:
    def waiting() -> None:
        print("waiting for running lanterna compiles to finish...", file=sys.stderr, flush=True)

    removed = cache.clear(on_wait=waiting)
    print(f"removed {removed} entries from {cache.cache_dir()}")
    return 0


_ACTIONS = {"info": _info, "list": _list, "clear": _clear}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `cache` command's own arguments: one action."""
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser(
        "info", help="print the cache directory, entry count, total size and size limit"
    )
    actions.add_parser("list", help="print every built entry with its size")
    actions.add_parser(
        "clear",
        help="remove every entry (waits for running compiles; running programs are unaffected)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the parsed action; a lanterna error (e.g. a bad cache setting) is one line on
    stderr and exit status 1."""
    try:
        return _ACTIONS[args.action]()
    except LanternaError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m lanterna.tools.cache ACTION`: this command alone."""
    parser = argparse.ArgumentParser(prog=f"{PROG} cache", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
