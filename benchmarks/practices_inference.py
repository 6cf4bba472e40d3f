"""Practice detection throughput: parcels per second, ONNX Runtime against PyTorch eager.

Both run the shipped model's weights on the same input tensor: 100 000 parcel-seasons built
from a simulated, replayed season (its 300 parcels repeated under new ids), on 2 threads.
Also timed: the resampling of the observation table onto the model's grid
(`series_tensor`) and the peak decoding, i.e. the whole of `detect_practices` but I/O.

    .venv/bin/python -m benchmarks.practices_inference [--parcels 100000] [--threads 2]

Prints wall-clock throughput and parcels per CPU-second, at the given threads and at one (on a
shared machine the wall clock understates what free cores do, and threads that wait for each
other make it worse), the ratio, and the largest difference between the two runtimes.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import polars as pl

T = TypeVar("T")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(what: Callable[[], T], repeat: int = 3) -> tuple[float, float, T]:
    """Best wall-clock seconds over `repeat` runs, the CPU seconds of that run, its result."""
    runs = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), _cpu()
        result = what()
        runs.append((time.perf_counter() - wall, _cpu() - cpu, result))
    return min(runs, key=lambda run: run[0])


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parcels", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=Path("data") / "sim")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import torch

    from models.practices import PracticeProbabilities, from_onnx
    from monitor.infer import InferenceConfig, artifact_path, load_model
    from monitor.practices import BATCH, DEFAULT_THRESHOLD, decode_peaks, predict, series_tensor

    table = observation_table(args.parcels, args.data)
    n = table.get_column("parcel_id").n_unique()
    print(f"{n} parcel-seasons, {table.height} observation rows, {args.threads} threads")

    prep_s, prep_cpu, tensor = timed(lambda: series_tensor(table))
    values = tensor.values
    print(
        f"grid resampling       {n / prep_s:>9,.0f} parcels/s  ({prep_s:.2f} s; "
        f"{n / prep_cpu:,.0f} parcels per CPU-second)"
    )

    net = PracticeProbabilities(from_onnx(str(artifact_path("practices")))).eval()

    def eager() -> np.typing.NDArray[np.float32]:
        with torch.inference_mode():
            parts = [net(torch.from_numpy(values[i : i + BATCH])) for i in range(0, n, BATCH)]
        return torch.cat(parts).numpy()

    results = {}
    for threads in sorted({args.threads, 1}, reverse=True):
        torch.set_num_threads(threads)
        session = load_model("practices", InferenceConfig(threads=threads))
        results[f"ONNX Runtime, {threads} thr"] = timed(lambda s=session: predict(s, values))
        results[f"PyTorch eager, {threads} thr"] = timed(eager)
    for name, (wall, cpu, _) in results.items():
        print(
            f"{name:<21} {n / wall:>9,.0f} parcels/s  ({wall:.2f} s; "
            f"{n / cpu:,.0f} parcels per CPU-second)"
        )
    ort_s, ort_cpu, ort_out = results[f"ONNX Runtime, {args.threads} thr"]
    torch_s, torch_cpu, torch_out = results[f"PyTorch eager, {args.threads} thr"]
    decode_s, _, peaks = timed(lambda: decode_peaks(ort_out, DEFAULT_THRESHOLD))
    print(f"peak decoding         {n / decode_s:>9,.0f} parcels/s  ({len(peaks)} events)")
    diff = float(np.abs(ort_out - torch_out).max())
    print(
        f"ONNX Runtime / PyTorch at {args.threads} threads: {torch_s / ort_s:.2f}x wall clock, "
        f"{torch_cpu / ort_cpu:.2f}x CPU time; outputs agree to {diff:.1e}"
    )
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
