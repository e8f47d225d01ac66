"""`python -m lanterna`: command-line tools that are not passes (those are `lanterna-opt`).

    python -m lanterna cache info     where the compile cache is, how many entries, how big,
                                      and its size limit
    python -m lanterna cache list     every built entry with its size
    python -m lanterna cache clear    remove every entry

The cache lives in `$LANTERNA_CACHE_DIR`, else `~/.cache/lanterna`; it is kept under
`$LANTERNA_CACHE_MAX_SIZE` (2G unless set) by removing the least recently used entries.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _cache_info() -> int:
    from lanterna.backends.cpu_cpp import cache

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


def _cache_list() -> int:
    from lanterna.backends.cpu_cpp import cache

    for entry in cache.entries():
        where = f"{entry.parent.parent.name}/{entry.parent.name}"
        print(f"{where:<12} {_size(entry.stat().st_size):>10}  {entry.name}")
    return 0


def _cache_clear() -> int:
    from lanterna.backends.cpu_cpp import cache

    def waiting() -> None:
        print("waiting for running lanterna compiles to finish...", file=sys.stderr, flush=True)

    removed = cache.clear(on_wait=waiting)
    print(f"removed {removed} entries from {cache.cache_dir()}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lanterna",
        description="lanterna command-line tools (passes over IR: see lanterna-opt).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cache_parser = commands.add_parser(
        "cache",
        help="inspect or clear the compile cache",
        description="The compile cache holds compiled modules and the pybind11 bridge. "
        "It lives in $LANTERNA_CACHE_DIR, else ~/.cache/lanterna, and is kept under "
        "$LANTERNA_CACHE_MAX_SIZE (e.g. 500M, 2G; 2G unless set) by removing the least "
        "recently used entries.",
    )
    actions = cache_parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser(
        "info", help="print the cache directory, entry count, total size and size limit"
    )
    actions.add_parser("list", help="print every built entry with its size")
    actions.add_parser(
        "clear",
        help="remove every entry (waits for running compiles; running programs are unaffected)",
    )
    args = parser.parse_args(argv)
    handlers = {"info": _cache_info, "list": _cache_list, "clear": _cache_clear}
    from lanterna.errors import LanternaError

    try:
        return handlers[args.action]()
    except LanternaError as e:
        print(f"python -m lanterna: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
