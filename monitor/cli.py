"""The `parcel-monitor` command line.

Each subcommand is a module of `monitor.commands` with a `register(subparsers)` function;
this file only wires them together and turns every `MonitorError` into a one-line reason
and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from monitor import __version__
from monitor.commands import COMMANDS
from monitor.errors import MonitorError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parcel-monitor",
        description="Per-parcel monitoring of agricultural parcels with Sentinel-1 and Sentinel-2.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in COMMANDS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except MonitorError as err:
        print(f"parcel-monitor {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"parcel-monitor {args.command}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
