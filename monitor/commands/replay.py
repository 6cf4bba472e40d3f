"""`parcel-monitor replay`: a historical season from a STAC catalog through the engine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.commands.model_flags import add_model_arguments, stage_options
from monitor.commands.publish import add_time_range_arguments

if TYPE_CHECKING:
    from monitor.commands import Subparsers
    from monitor.replay import ReplaySummary


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="run a season's STAC catalog through the engine, in acquisition order, resumably",
        description=(
            "Processes every STAC Item of CATALOG_DIR in acquisition order with the engine of "
            "the live worker: parcel statistics into the store, the models' events (cloud "
            "removal, heterogeneity, practices) with the observation events into a JSON Lines file "
            "or a Kafka topic. Deterministic (detected_at = acquisition time) and resumable: "
            "rerun the same command after an interruption. Bad items become dead letters "
            "(dead-letters.jsonl beside the events) and the replay goes on."
        ),
    )
    parser.add_argument("catalog", type=Path, metavar="CATALOG_DIR", help="folder of STAC Items")
    parser.add_argument(
        "--parcels", type=Path, required=True, help="parcel file (GeoPackage or GeoParquet)"
    )
    parser.add_argument("--id-column", default="id_parcel", help="parcel id column")
    parser.add_argument("--store", type=Path, required=True, help="observation store folder")
    parser.add_argument("--label-cache", type=Path, help="folder caching label rasters")
    add_time_range_arguments(parser)
    sink = parser.add_mutually_exclusive_group(required=True)
    sink.add_argument("--events-out", type=Path, metavar="FILE", help="events JSON Lines file")
    sink.add_argument("--bootstrap", metavar="HOST:PORT", help="Kafka broker for the events")
    parser.add_argument("--topic", help="events topic (with --bootstrap)")
    add_model_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from monitor.replay import ReplayJob, run_replay

    job = ReplayJob(
        catalog=args.catalog,
        parcels=args.parcels,
        store=args.store,
        events_out=args.events_out,
        bootstrap=args.bootstrap,
        topic=args.topic,
        id_column=args.id_column,
        label_cache=args.label_cache,
        start=args.start,
        end=args.end,
        stages=stage_options(args),
    )
    try:
        summary, outputs = run_replay(job, progress=sys.stderr.isatty())
    except KeyboardInterrupt:
        print("replay interrupted: rerun the same command to resume", file=sys.stderr)
        raise
    _print_summary(summary, outputs.events or f"topic {args.topic!r}", outputs.dead_letters)
    return 0


def _print_summary(summary: ReplaySummary, events_to: object, dead_letters: Path) -> None:
    rate = summary.events / summary.seconds if summary.seconds > 0 else 0.0
    print(
        f"replayed {summary.acquisitions} acquisitions ({summary.skipped} done before) "
        f"in {summary.seconds:.2f}s: {summary.parcels} parcels, "
        f"{summary.parcel_rows} parcel observations"
    )
    by_type = ", ".join(f"{kind} {count}" for kind, count in summary.events_by_type.items())
    print(f"{summary.events} events ({by_type or 'none'}) -> {events_to}, {rate:,.0f} events/s")
    print(f"{len(summary.dead_letters)} dead letters", end="")
    print(f" -> {dead_letters}" if summary.dead_letters else "")
    for letter in summary.dead_letters:
        print(f"  {letter.item}: {letter.reason}")
