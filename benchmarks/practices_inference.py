"""Practice detection throughput: end to end (`detect_practices`: observation rows in, events
out) next to the model alone on ONNX Runtime and on PyTorch eager, same inputs.

The table: 100 000 parcel-seasons built from a simulated, replayed season (its 300 parcels
repeated under new ids). Timed, best of 3:

* `detect_practices` end to end, and its parts: the resampling of the rows onto the model's
  grid (`series_tensor`), the model, and the peak decoding;
* the model alone on that grid: ONNX Runtime at `--threads` and at one thread, PyTorch eager
  (same weights) on `--torch-device` (cpu by default; `cuda` on a GPU node).

    .venv/bin/python -m benchmarks.practices_inference [--parcels 100000] [--threads 2]
        [--torch-device cpu]

Prints wall-clock parcels per second and parcels per CPU-second (on a shared machine the wall
clock understates what free cores do), and the largest difference between the runtimes.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from benchmarks.timing import parcels_line, timed

F32 = npt.NDArray[np.float32]


def observation_table(parcels: int, data_dir: Path) -> pl.DataFrame:
    """`parcels` parcel-seasons: a held-out simulated season's series under new ids."""
    from models.practices_training import EVAL_SEEDS, season_tables

    season, _ = season_tables(data_dir, EVAL_SEEDS[0])
    ids = season.get_column("parcel_id").unique().sort()
    copies = -(-parcels // len(ids))
    frames = [
        season.with_columns((pl.lit(f"c{k}/") + pl.col("parcel_id")).alias("parcel_id"))
        for k in range(copies)
    ]
    table = pl.concat(frames)
    keep = table.get_column("parcel_id").unique().sort().head(parcels)
    return table.filter(pl.col("parcel_id").is_in(keep.implode()))


def torch_eager(values: F32, device: str, threads: int) -> Callable[[], F32] | None:
    """A closure running the shipped weights on PyTorch eager over `values`, or None (and
    why, in one line) when PyTorch or the device is missing."""
    try:
        import torch
    except ImportError:
        print("  PyTorch eager: torch is not installed (pip install -e '.[train]'), skipped")
        return None
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(f"  PyTorch eager: no CUDA device for --torch-device {device}, skipped")
        return None
    from models.practices import PracticeProbabilities, from_onnx
    from monitor.infer import artifact_path
    from monitor.practices import BATCH

    torch.set_num_threads(threads)
    net = PracticeProbabilities(from_onnx(str(artifact_path("practices")))).eval().to(device)
    inputs = torch.from_numpy(values).to(device)

    def run() -> F32:
        with torch.inference_mode():
            parts = [net(inputs[i : i + BATCH]) for i in range(0, len(inputs), BATCH)]
            out: F32 = torch.cat(parts).cpu().numpy()
        return out

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parcels", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=Path("data") / "sim")
    parser.add_argument("--torch-device", default="cpu", help="cpu (default), cuda, cuda:1…")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("RAYON_NUM_THREADS", str(args.threads))

    from monitor.infer import InferenceConfig, load_model
    from monitor.practices import (
        DEFAULT_THRESHOLD,
        decode_peaks,
        detect_practices,
        predict,
        series_tensor,
    )

    table = observation_table(args.parcels, args.data)
    n = table.get_column("parcel_id").n_unique()
    print(f"{n} parcel-seasons, {table.height} observation rows, {args.threads} threads")
    session = load_model("practices", InferenceConfig(threads=args.threads))

    print("end to end (observation rows in, events out):")
    wall, cpu, events = timed(lambda: detect_practices(table, model=session))
    parcels_line(f"detect_practices ({events.height} events)", n, wall, cpu)
    wall, cpu, tensor = timed(lambda: series_tensor(table))
    parcels_line("  of which grid resampling", n, wall, cpu)
    values = tensor.values
    ort_s, ort_cpu, ort_out = timed(lambda: predict(session, values))
    parcels_line("  of which the model", n, ort_s, ort_cpu)
    wall, cpu, _ = timed(lambda: decode_peaks(ort_out, DEFAULT_THRESHOLD))
    parcels_line("  of which peak decoding", n, wall, cpu)

    print("the model alone, same input tensor:")
    parcels_line(f"ONNX Runtime, {args.threads} threads", n, ort_s, ort_cpu)
    if args.threads != 1:
        one = load_model("practices", InferenceConfig(threads=1))
        wall, cpu, _ = timed(lambda: predict(one, values))
        parcels_line("ONNX Runtime, 1 thread", n, wall, cpu)
    eager = torch_eager(values, args.torch_device, args.threads)
    if eager is not None:
        torch_s, torch_cpu, torch_out = timed(eager)
        on_cpu = args.torch_device == "cpu"
        parcels_line(
            f"PyTorch eager, {args.torch_device}", n, torch_s, torch_cpu if on_cpu else None
        )
        diff = float(np.abs(ort_out - torch_out).max())
        print(
            f"  ONNX Runtime / PyTorch eager ({args.torch_device}): {torch_s / ort_s:.2f}x "
            f"wall clock; outputs agree to {diff:.1e}"
        )
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
