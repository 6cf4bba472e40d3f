"""`parcel-monitor detect`: practice events (mowing, ploughing, harvest) from an observation
table, whatever produced it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.commands import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="detect mowing, ploughing and harvest events in a parcel observation table",
        description=(
            "Runs the practice model over every parcel-year of an observation table (a Parquet "
            "file following the contract, or an observation store folder) and writes one row "
            "per event: event_id, parcel_id, tile, type, date, confidence, window, evidence. "
            "Needs parcel_id, acquired, sensor, valid_fraction and NDVI_mean; band means "
            "(B02, B04, B08, B11) and Sentinel-1 VV/VH are used when present."
        ),
    )
    parser.add_argument(
        "--observations", type=Path, required=True, metavar="TABLE.parquet",
        help="observation table (Parquet) or store folder",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, metavar="EVENTS.parquet")
    parser.add_argument(
        "--threshold", type=float, default=0.5,
        help="minimum event probability (default 0.5: the per-practice thresholds chosen on "
        "validation data are built into the model)",
    )  # fmt: skip
    parser.add_argument("--model", type=Path, metavar="MODEL.onnx", help="default: shipped")
    parser.add_argument(
        "--threads", type=int, default=0,
        help="model batches run at once, one ONNX Runtime thread each (0: one per usable core)",
    )  # fmt: skip
    parser.set_defaults(func=run)


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def run(args: argparse.Namespace) -> int:
    from monitor.errors import ConfigError, StoreError
    from monitor.infer import InferenceConfig, load_model
    from monitor.practices import detect_practices, load_practices_model, read_observations

    if not 0.0 < args.threshold < 1.0:
        raise ConfigError(f"--threshold {args.threshold} is not in (0, 1)")
    if not args.observations.exists():
        raise ConfigError(f"--observations {args.observations}: no such file or folder")
    if args.threads < 0:
        raise ConfigError(f"--threads {args.threads} is not >= 0")
    # Single-threaded sessions, several batches at once: fewer CPU-seconds than one session's
    # intra-op threads (`monitor.practices.predict`).
    config = InferenceConfig(threads=1)
    model = load_model(args.model, config) if args.model else load_practices_model(config)
    table = read_observations(args.observations)
    workers = args.threads or _usable_cores()
    events = detect_practices(table, model=model, threshold=args.threshold, workers=workers)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        events.write_parquet(args.out)
    except OSError as exc:
        raise StoreError(f"cannot write {args.out}: {exc.strerror or exc}") from exc
    counts = dict(events.group_by("type").len().iter_rows())
    summary = ", ".join(f"{t.split('.')[-1]} {counts.get(t, 0)}" for t in sorted(counts))
    parcels = table.get_column("parcel_id").n_unique()
    print(f"{events.height} events ({summary or 'none'}) over {parcels} parcels -> {args.out}")
    return 0
