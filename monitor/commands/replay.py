"""`parcel-monitor replay`: a historical season from a STAC catalog through the engine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

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
            "the live worker: parcel statistics into the store, events into a JSON Lines file "
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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from monitor.catalog import read_catalog, time_range
    from monitor.errors import ConfigError
    from monitor.parcels import load_parcels
    from monitor.pipeline import Engine, EngineConfig
    from monitor.replay import EventPublisher, ReplayOutputs, replay_catalog, transactional_id
    from monitor.stac import HrefPolicy
    from monitor.store import ObservationStore

    if args.bootstrap is not None and not args.topic:
        raise ConfigError("--bootstrap needs --topic (the topic of the events)")
    if args.bootstrap is None and args.topic:
        raise ConfigError("--topic goes with --bootstrap; --events-out writes a file")
    when = time_range(args.start, args.end)
    parcels = load_parcels(args.parcels, id_column=args.id_column)
    policy = HrefPolicy(roots=(args.catalog,))
    catalog = read_catalog(args.catalog, when, policy=policy)
    store = ObservationStore(args.store)
    engine = Engine(EngineConfig(parcels, store, args.label_cache, href_policy=policy))
    run_id = {
        "catalog": str(args.catalog.resolve()),
        "parcels": parcels.version,
        "id_column": args.id_column,
        "store": str(args.store.resolve()),
        "from": args.start,
        "to": args.end,
        "sink": "file" if args.bootstrap is None else f"kafka:{args.topic}",
    }
    publisher = None
    if args.bootstrap is None:
        outputs = ReplayOutputs.to_file(args.events_out)
    else:
        outputs = ReplayOutputs.to_kafka(args.store, args.topic)
        publisher = EventPublisher(
            args.bootstrap, args.topic, transactional_id(args.store, args.topic)
        )
    try:
        summary = replay_catalog(
            catalog, engine, outputs, run_id, publisher=publisher, progress=sys.stderr.isatty()
        )
    except KeyboardInterrupt:
        print("replay interrupted: rerun the same command to resume", file=sys.stderr)
        raise
    finally:
        if publisher is not None:
            publisher.close()
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
