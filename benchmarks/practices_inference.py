"""Practice detection throughput: end to end (`detect_practices`: observation rows in, events
out) next to the model alone on ONNX Runtime and on PyTorch eager, same inputs.

The table: 100 000 parcel-seasons built from a simulated, replayed season (its 300 parcels
repeated under new ids). Timed, best of 3:

* `detect_practices` end to end (no event emitted before, then a third of them emitted; one
  run's system CPU-seconds and page faults: the kernel's share, fresh pages), and
  its steps: `prepare`, parcel ranks (parcel ids grouped by their bytes and ranked in Rust),
  the row columns (tile ranks, the feature columns' Arrow buffers, sensor and source codes,
  row kinds in Rust), both again at once as `detect_practices` runs them (the total counts
  this), then batch by batch on `--threads` threads the grid (rows onto the model's grid,
  Rust), the model and peak decoding, overlapped (the model's CPU-seconds counted apart), the
  events (dates, ids, suppression of emitted ones, order: one Rust pass) and their evidence
  rows (nearest clear images in Rust, product id lists from Arrow offsets);
* the model alone on that grid: ONNX Runtime at `--threads` intra-op threads, as `--threads`
  single-threaded calls at once (what `parcel-monitor detect` does) and at one thread;
  PyTorch eager (same weights) on `--torch-device` (cpu by default; `cuda` on a GPU node).

    .venv/bin/python -m benchmarks.practices_inference [--parcels 100000] [--threads 2]
        [--torch-device cpu]

Prints wall-clock parcels per second and parcels per CPU-second (on a shared machine the wall
clock understates what free cores do), the CPU-seconds of the model and of everything else,
and the largest difference between the runtimes.
"""

from __future__ import annotations

import argparse
import os
import resource
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt
import polars as pl

from benchmarks.timing import cpu_seconds, parcels_line, timed

if TYPE_CHECKING:
    from monitor.infer import Model

F32 = npt.NDArray[np.float32]
T = TypeVar("T")
# The parcel ranks and the row columns as `detect_practices` runs them: at once.
_AT_ONCE = "ranks + row columns, at once"


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


def _step(best: dict[str, tuple[float, float]], name: str, what: Callable[..., T], *args: Any) -> T:
    """`what(*args)`, its best wall-clock and CPU seconds so far kept in `best[name]`."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    out = what(*args)
    took = (time.perf_counter() - wall, cpu_seconds() - cpu)
    best[name] = min(best.get(name, took), took)
    return out


class _ModelClock:
    """A model whose `run` adds the CPU-seconds of the calling thread to `cpu` (exact for
    single-threaded sessions, which run the model on that thread)."""

    def __init__(self, model: Model) -> None:
        self.model, self.cpu = model, 0.0
        self.name, self.backend = model.name, model.backend
        self._lock = threading.Lock()

    @property
    def input_names(self) -> list[str]:
        return self.model.input_names

    def run(self, inputs: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        start = time.thread_time()
        out = self.model.run(inputs)
        with self._lock:
            self.cpu += time.thread_time() - start
        return out


def step_breakdown(table: pl.DataFrame, model: Model, n: int, workers: int) -> None:
    """The steps of `detect_practices`, timed one by one (best of 3 runs each): the same
    calls, through the module's private helpers, one after the other (the parcel ranks and
    the row columns also at once, as `detect_practices` runs them: the total counts that
    line, not the two apart). The grid, the model and peak decoding run
    batch by batch, overlapped: the model's share is the CPU time of the threads running it."""
    from monitor import __version__
    from monitor import practices as p
    from monitor.events import ModelRef

    best: dict[str, tuple[float, float]] = {}
    ref = ModelRef(model.name, __version__)
    model_cpu: list[float] = []
    for _ in range(3):
        clock = _ModelClock(model)
        observations = _step(best, "prepare (checks, UTC)", p.prepare, table)
        rows = _step(best, "parcel ranks", p._Rows.of, observations)
        grid = _step(
            best, "row columns (kinds, features)", p._grid_input, observations, p.MIN_VALID_FRACTION
        )
        _step(best, _AT_ONCE, p._row_inputs, observations)
        batches = "grid + model + peaks, by batch"
        found = _step(
            best, batches, p._grid_and_peaks, rows, grid, clock, p.DEFAULT_THRESHOLD, workers
        )
        model_cpu.append(clock.cpu)
        events = _step(
            best,
            "events (dates, ids, order)",
            p._event_frame,
            found.keys,
            found.parcel,
            rows.parcel_ids,
            found.peaks,
            ref,
            set(),
        )
        _step(best, "evidence rows", p._with_evidence, events, observations, rows, found.evidence)
    for name, (wall, cpu) in best.items():
        parcels_line(f"  {name}", n, wall, cpu)
        if name == batches:
            model = min(model_cpu)
            print(f"    of which the model: {model:.2f} CPU-s, the rest {cpu - model:.2f}")
    # detect_practices runs the ranks and the row columns at once: count them so
    apart = ("parcel ranks", "row columns (kinds, features)")
    steps = {k: v for k, v in best.items() if k not in apart}
    wall, cpu = (sum(t[i] for t in steps.values()) for i in (0, 1))
    parcels_line("  all steps", n, wall, cpu)
    print(f"  CPU-s per {n} parcel-seasons: model {model:.2f}, the rest {cpu - model:.2f}")


def kernel_share(what: Callable[[], object]) -> None:
    """Print one run's system CPU-seconds and minor page faults: fresh pages of large arrays
    (over glibc's 32 MB mmap ceiling each one is mapped anew and zeroed by the kernel) are a
    share of the CPU that no kernel of ours shows in a profile."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    what()
    after = resource.getrusage(resource.RUSAGE_SELF)
    faults = after.ru_minflt - before.ru_minflt
    print(f"    one run: {after.ru_stime - before.ru_stime:.2f} system CPU-s, {faults} page faults")


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
    from monitor.practices import detect_practices, load_practices_model, predict, series_tensor

    table = observation_table(args.parcels, args.data)
    n = table.get_column("parcel_id").n_unique()
    print(f"{n} parcel-seasons, {table.height} observation rows, {args.threads} threads")
    # what `parcel-monitor detect --threads N` runs: N single-threaded calls of the default
    # network (int8 on ONNX Runtime) at once
    one = load_practices_model(InferenceConfig(threads=1))
    session = load_practices_model(InferenceConfig(threads=args.threads))
    print(f"network: {one.name}")
    workers = args.threads

    print("end to end (observation rows in, events out):")
    wall, cpu, events = timed(lambda: detect_practices(table, model=one, workers=workers))
    parcels_line(f"detect_practices ({events.height} events)", n, wall, cpu)
    kernel_share(lambda: detect_practices(table, model=one, workers=workers))
    emitted = set(events.get_column("event_id").gather_every(3))
    wall, cpu, fresh = timed(
        lambda: detect_practices(table, model=one, emitted=emitted, workers=workers)
    )
    parcels_line(f"  a third emitted before ({fresh.height} new)", n, wall, cpu)
    wall, cpu, _ = timed(lambda: detect_practices(table, model=session))
    parcels_line(f"  model on {args.threads} intra-op threads", n, wall, cpu)
    print(f"step by step ({workers} model calls at once):")
    step_breakdown(table, one, n, workers)
    values = series_tensor(table).values
    # PyTorch runs the fp32 weights: compare it with the fp32 file, and int8 with both
    fp32 = load_model("practices", InferenceConfig(threads=args.threads))
    fp32_one = load_model("practices", InferenceConfig(threads=1))
    ort_s, ort_cpu, ort_out = timed(lambda: predict(fp32, values))

    print("the model alone, same input tensor:")
    parcels_line(f"ONNX Runtime fp32, {args.threads} intra-op threads", n, ort_s, ort_cpu)
    if args.threads != 1:
        wall, cpu, _ = timed(lambda: predict(fp32_one, values, workers=workers))
        parcels_line(f"ONNX Runtime fp32, {workers} x 1 thread", n, wall, cpu)
    wall, cpu, _ = timed(lambda: predict(fp32_one, values))
    parcels_line("ONNX Runtime fp32, 1 thread", n, wall, cpu)
    if one.name != fp32_one.name:
        wall, cpu, int8_out = timed(lambda: predict(one, values))
        parcels_line(f"ONNX Runtime {one.name}, 1 thread", n, wall, cpu)
        gap = float(np.abs(int8_out - ort_out).max())
        print(f"  {one.name} against fp32: probabilities agree to {gap:.1e} (max)")
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
