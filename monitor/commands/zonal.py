"""`parcel-monitor zonal`: the parcel observation table of one acquisition."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.commands import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "zonal",
        help="per-parcel statistics of one acquisition (STAC Item) as a Parquet table",
        description=(
            "Reads a STAC Item's assets, masks clouds with its SCL when present, and writes "
            "the parcel observation table of that acquisition (one row per parcel)."
        ),
    )
    parser.add_argument("--item", type=Path, required=True, help="STAC Item JSON file")
    parser.add_argument(
        "--parcels", type=Path, required=True, help="parcel file (GeoPackage or GeoParquet)"
    )
    parser.add_argument("--id-column", default="id_parcel", help="parcel id column")
    parser.add_argument("--out", type=Path, required=True, help="output Parquet file")
    parser.add_argument(
        "--dilation", type=int, default=0, help="grow the cloud mask by N pixels (default 0)"
    )
    parser.add_argument(
        "--weighted",
        action="store_true",
        help="add coverage-weighted means ({BAND}_wmean), exact boundary-pixel fractions",
    )
    parser.add_argument("--label-cache", type=Path, help="folder caching label rasters")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from monitor.parcels import load_parcels
    from monitor.stac import read_item
    from monitor.zonal import MaskConfig, observe, parcel_grid

    acq = read_item(args.item)
    parcels = load_parcels(args.parcels, id_column=args.id_column)
    grid = parcel_grid(acq, parcels, cache_dir=args.label_cache, coverage=args.weighted)
    table = observe(acq, grid, mask=MaskConfig(dilation=args.dilation), weighted_mean=args.weighted)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.write_parquet(args.out)
    valid = table.filter(table["valid_count"] > 0).height
    print(
        f"{acq.product_id}: {table.height} parcels ({valid} with valid pixels), "
        f"{len(table.columns)} columns -> {args.out}"
    )
    return 0
