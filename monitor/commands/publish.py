"""`parcel-monitor publish`: send a folder of STAC Items to the `acquisitions` topic."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.commands import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "publish",
        help="send a catalog's STAC Items to Kafka (key = MGRS tile), in acquisition order",
        description=(
            "Finds the STAC Items of CATALOG_DIR (through its catalog.json, or every item.json "
            "below it), validates all of them first (one bad item: nothing is sent), makes "
            "their asset hrefs absolute, and produces them in acquisition order with key = "
            "MGRS tile, acks=all."
        ),
    )
    parser.add_argument("catalog", type=Path, metavar="CATALOG_DIR", help="folder of STAC Items")
    parser.add_argument("--bootstrap", required=True, metavar="HOST:PORT", help="Kafka broker")
    parser.add_argument("--topic", default="acquisitions", help="topic (default acquisitions)")
    add_time_range_arguments(parser)
    parser.set_defaults(func=run)


def add_time_range_arguments(parser: argparse.ArgumentParser) -> None:
    """`--from`/`--to`, shared with `replay`."""
    parser.add_argument(
        "--from", dest="start", metavar="DATE", help="first acquisition day (or RFC 3339 time)"
    )
    parser.add_argument(
        "--to", dest="end", metavar="DATE", help="last acquisition day, inclusive (or time)"
    )


def run(args: argparse.Namespace) -> int:
    from monitor.catalog import iter_catalog, time_range
    from monitor.publish import publish_acquisitions

    when = time_range(args.start, args.end)
    entries = iter_catalog(args.catalog, when.start, when.end)
    summary = publish_acquisitions(entries, args.bootstrap, args.topic)
    for tile, count in summary.per_tile.items():
        print(f"{tile}: {count} acquisitions")
    print(
        f"published {summary.total} acquisitions to {summary.topic!r} on {args.bootstrap} "
        f"in {summary.seconds:.2f}s"
    )
    return 0
