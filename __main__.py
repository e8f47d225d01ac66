"""`python -m lanterna`: command-line tools that are not passes (those are `lanterna-opt`).

    python -m lanterna cache info     where the compile cache is, how many entries, how big
    python -m lanterna cache list     every built entry with its size
    python -m lanterna cache clear    remove every entry

The cache lives in `$LANTERNA_CACHE_DIR`, else `~/.cache/lanterna`.
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
    return 0


def _cache_list() -> int:
    from lanterna.backends.cpu_cpp import cache

    for entry in cache.entries():
        where = f"{entry.parent.parent.name}/{entry.parent.name}"
        print(f"{where:<12} {_size(entry.stat().st_size):>10}  {entry.name}")
    return 0


def _cache_clear() -> int:
    from lanterna.backends.cpu_cpp import cache

    removed = cache.clear()
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
        "It lives in $LANTERNA_CACHE_DIR, else ~/.cache/lanterna.",
    )
    actions = cache_parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("info", help="print the cache directory, entry count and total size")
    actions.add_parser("list", help="print every built entry with its size")
    actions.add_parser("clear", help="remove every entry (running processes are unaffected)")
    args = parser.parse_args(argv)
    handlers = {"info": _cache_info, "list": _cache_list, "clear": _cache_clear}
    return handlers[args.action]()


if __name__ == "__main__":
    sys.exit(main())
