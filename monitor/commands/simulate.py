"""`parcel-monitor simulate`: write a synthetic season (STAC items, COGs, parcels, truth)."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.commands import Subparsers


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="simulate a season of Sentinel-1/2 acquisitions over synthetic parcels",
        description=(
            "Write a synthetic season shaped like real deliveries: Sentinel-2 L2A and Sentinel-1 "
            "GRD STAC items with COG assets, a GeoParquet parcel file and the ground truth "
            "(covers, practice dates, heterogeneity, clear-sky reflectance under clouds)."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--tile-size",
        type=int,
        default=512,
        metavar="PX",
        help="side of the simulated window of tile 31UFS, 10 m pixels "
        "(10980 = a full tile; default 512)",
    )
    parser.add_argument(
        "--parcels",
        type=int,
        default=300,
        metavar="N",
        help="number of declared parcels (default 300)",
    )
    parser.add_argument(
        "--season", type=int, default=2025, metavar="YEAR", help="year of the season (default 2025)"
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    parser.add_argument(
        "--start",
        type=_iso_date,
        metavar="YYYY-MM-DD",
        help="first day (default 1 March of the season)",
    )
    parser.add_argument(
        "--end",
        type=_iso_date,
        metavar="YYYY-MM-DD",
        help="last day (default 31 October of the season)",
    )
    parser.add_argument(
        "--dates", type=int, metavar="N", help="only the first N acquisitions of each sensor"
    )
    parser.add_argument(
        "--s1",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also simulate Sentinel-1 (default: yes)",
    )
    parser.add_argument(
        "--clear-truth",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write the clear-sky reflectance of cloudy dates (default: yes)",
    )
    parser.add_argument(
        "--crops",
        metavar="CODES",
        help="crop mix, e.g. 'PPH=3,BTH,MIS' (RPG codes; default: a Belgian mix)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a previous simulation in --out"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from monitor.simulate import simulate_season

    bar: tqdm | None = None

    def progress(done: int, total: int, label: str) -> None:
        nonlocal bar
        if bar is None:  # created once the arguments passed their checks
            bar = tqdm(total=total, disable=args.quiet, unit="item", desc="simulate")
        bar.n = done
        bar.set_postfix_str(label, refresh=False)
        bar.refresh()

    try:
        summary = simulate_season(
            args.out,
            tile_size=args.tile_size,
            n_parcels=args.parcels,
            season=args.season,
            seed=args.seed,
            start=args.start,
            end=args.end,
            max_dates=args.dates,
            s1=args.s1,
            clear_truth=args.clear_truth,
            crops=args.crops,
            overwrite=args.overwrite,
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    print(
        f"{summary.out}: {summary.n_parcels} parcels ({summary.n_heterogeneous} heterogeneous), "
        f"{len(summary.s2_items)} Sentinel-2 and {len(summary.s1_items)} Sentinel-1 items, "
        f"{summary.n_practices} practices"
        + (f"; preview {summary.preview}" if summary.preview else "")
    )
    return 0
