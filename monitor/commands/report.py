"""`parcel-monitor report`: one parcel's time series from the store, as a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.commands import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="draw a parcel's NDVI and backscatter time series (and its events) as a PNG",
        description=(
            "Reads one parcel's rows from the observation store and draws its season: "
            "Sentinel-2 NDVI (mean, p10-p90 band, cloud-masked dates marked, reconstructed "
            "values dashed), Sentinel-1 VV/VH in dB, and the parcel's heterogeneity and "
            "practice events from an events file as dated lines."
        ),
    )
    parser.add_argument("--store", type=Path, required=True, help="observation store folder")
    parser.add_argument("--parcel", required=True, metavar="ID", help="parcel id")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE.png", help="PNG to write")
    parser.add_argument("--events", type=Path, metavar="EVENTS.jsonl", help="events file")
    parser.add_argument("--season", type=int, help="season to draw (default: the latest)")
    parser.add_argument(
        "--cloud-threshold",
        type=float,
        default=0.5,
        help="valid pixel fraction under which an S2 date counts as cloud-masked (default 0.5)",
    )
    parser.add_argument("--width", type=int, default=1400, help="width in pixels (default 1400)")
    parser.add_argument("--height", type=int, default=900, help="height in pixels (default 900)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from monitor.errors import ConfigError
    from monitor.report import parcel_report
    from monitor.store import ObservationStore

    if not args.store.is_dir():
        raise ConfigError(f"store {args.store}: not a folder")
    if not 0.0 <= args.cloud_threshold <= 1.0:
        raise ConfigError(f"--cloud-threshold {args.cloud_threshold} is not in [0, 1]")
    if not (100 <= args.width <= 10_000 and 100 <= args.height <= 10_000):
        raise ConfigError(f"--width/--height {args.width}x{args.height}: 100 to 10000 pixels")
    summary = parcel_report(
        ObservationStore(args.store),
        args.parcel,
        args.out,
        events=args.events,
        season=args.season,
        cloud_threshold=args.cloud_threshold,
        size_px=(args.width, args.height),
    )
    print(
        f"parcel {summary.parcel_id} (tile {', '.join(summary.tiles)}, season {summary.season}): "
        f"{summary.clear_s2} clear + {summary.masked_s2} cloud-masked S2, {summary.s1} S1, "
        f"{summary.reconstructed} reconstructed, {summary.events} events -> {args.out}"
    )
    return 0
