"""`parcel-monitor demo`: the main job end to end on a local default (what `make demo` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.commands import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="local broker, publish a season, one worker until idle, events and a report",
        description=(
            "Starts a local Kafka broker, publishes the bundled real sample (or a simulated "
            "season with --simulate), runs a worker until idle, reads the events back and "
            "draws the best-observed parcel's time series."
        ),
    )
    parser.add_argument("--out", type=Path, default=Path("out") / "demo", help="output folder")
    parser.add_argument(
        "--simulate", action="store_true", help="use a simulated season instead of the sample"
    )
    parser.add_argument("--tile-size", type=int, default=512, help="with --simulate (pixels)")
    parser.add_argument("--parcels", type=int, default=300, help="with --simulate")
    parser.add_argument("--seed", type=int, default=0, help="with --simulate")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from monitor.demo import run_demo, sample_inputs, simulated_inputs

    inputs = (
        simulated_inputs(args.out, args.tile_size, args.parcels, args.seed)
        if args.simulate
        else sample_inputs()
    )
    return run_demo(args.out, inputs)
