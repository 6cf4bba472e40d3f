"""`parcel-monitor bench`: seconds per stage of a full-size tile acquisition, and what it means
for a country."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.commands.model_flags import add_model_arguments, stage_options

if TYPE_CHECKING:
    from monitor.commands import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="throughput of this machine on a full Sentinel-2 tile, and nodes for a country",
        description=(
            "Simulates one full-size Sentinel-2 tile acquisition (10980 x 10980 px, 200 000 "
            "parcels; cached in --work) unless given a catalog, runs the whole per-acquisition "
            "path on it (`Engine.process`: label raster, read + cloud mask + zonal statistics, "
            "store, events, the model stages; then Kafka, and each model on random inputs) and "
            "prints seconds, megapixels/s and parcels/s per stage, acquisitions/hour, peak "
            "memory, and how many such nodes keep up with a country of ~60 tiles."
        ),
    )
    parser.add_argument(
        "--catalog", type=Path, metavar="DIR", help="measure the first S2 item of this catalog"
    )
    parser.add_argument(
        "--parcels",
        type=Path,
        metavar="FILE",
        help="parcel file of --catalog (default: DIR/parcels.parquet)",
    )
    parser.add_argument(
        "--id-column", default="id_parcel", help="parcel id column (default id_parcel)"
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("out/bench"),
        metavar="DIR",
        help="simulated tile cache, label cache, store and broker data (default out/bench)",
    )
    parser.add_argument(
        "--tile-size",
        type=int,
        default=10980,
        metavar="PX",
        help="side of the simulated tile (default 10980, a full MGRS tile)",
    )
    parser.add_argument(
        "--n-parcels",
        type=int,
        default=200_000,
        metavar="N",
        help="parcels of the simulated tile (default 200000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="simulation seed (default 0)")
    parser.add_argument(
        "--history-dates",
        type=int,
        default=0,
        metavar="N",
        help="first fill the store with N earlier (synthetic) acquisitions of the tile and time "
        "a mid-season one: the model stages' real cost (default 0)",
    )
    add_model_arguments(parser)
    kafka = parser.add_mutually_exclusive_group()
    kafka.add_argument("--bootstrap", metavar="HOST:PORT", help="send the events to this broker")
    kafka.add_argument(
        "--no-kafka",
        dest="kafka",
        action="store_false",
        help="skip the Kafka stage (default: start a local broker for it)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from monitor.bench import BenchConfig, run_bench
    from monitor.infer import InferenceConfig

    config = BenchConfig(
        work=args.work,
        tile_size=args.tile_size,
        n_parcels=args.n_parcels,
        seed=args.seed,
        catalog=args.catalog,
        parcels=args.parcels,
        id_column=args.id_column,
        inference=InferenceConfig(backend=args.backend),
        stages=stage_options(args),
        bootstrap=args.bootstrap,
        kafka=args.kafka,
        history_dates=args.history_dates,
    )

    def progress(message: str) -> None:
        print(f"bench: {message}", file=sys.stderr, flush=True)

    report = run_bench(config, progress)
    print(report.text())
    return 0
