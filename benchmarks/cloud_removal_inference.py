"""Cloud removal throughput: ONNX Runtime fp32 and int8 against PyTorch eager, same inputs.

    python -m benchmarks.cloud_removal_inference [--tiles 32] [--tile 128] [--threads 2]

The shipped model (`monitor/artifacts/cloud_removal.onnx`) runs on `--tiles` tiles of
`--tile`² pixels in batches of 16, through ONNX Runtime (`monitor.cloud_removal.load_for_tile`:
the shipped file, with free height and width for tiles other than its 128), through its int8
version (`cloud_removal_int8.onnx`, when shipped or given with `--int8`) and through the
PyTorch network rebuilt from the same file's weights (needs the train extra), all on
`--threads` threads; best of `--repeats`. Reported: megapixels per second (wall) and per CPU
second (the process's CPU time, every thread: what counts on a shared machine) of each, and the
largest difference between their outputs. Then the whole runtime path,
`monitor.cloud_removal.reconstruct` (tiling, model, stitching) on a fully cloudy
`--scene`² scene, on ONNX Runtime.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 16


def _inputs(n: int, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "s2_t0": rng.uniform(0.0, 0.5, (n, 3, size, size)).astype(np.float32),
        "s2_next": rng.uniform(0.0, 0.5, (n, 3, size, size)).astype(np.float32),
        "s1_t": rng.normal(-14.0, 4.0, (n, 2, size, size)).astype(np.float32),
        "s1_t0": rng.normal(-14.0, 4.0, (n, 2, size, size)).astype(np.float32),
        "timing": np.tile(np.array([[10.0, 0.0, 120.0]], np.float32), (n, 1)),
    }


def _best(run: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """Best wall seconds, best process CPU seconds, and the last result of `repeats` runs."""
    best, best_cpu, result = float("inf"), float("inf"), None
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = run()
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
    return best, best_cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=32)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scene", type=int, default=1024)
    parser.add_argument("--int8", type=Path, help="int8 file (default: the shipped one)")
    parser.add_argument("--no-torch", dest="torch", action="store_false")
    parser.add_argument(
        "--spinning",
        action="store_true",
        help="ONNX Runtime threads spin between runs (default: they sleep, as InferenceConfig)",
    )
    args = parser.parse_args()

    from monitor.cloud_removal import load_for_tile, reconstruct
    from monitor.infer import InferenceConfig, artifact_path, load_model

    rng = np.random.default_rng(0)
    inputs = _inputs(args.tiles, args.tile, rng)
    batches = [
        {k: v[i : i + BATCH] for k, v in inputs.items()} for i in range(0, args.tiles, BATCH)
    ]
    megapixels = args.tiles * args.tile**2 / 1e6
    config = InferenceConfig(threads=args.threads, spinning=args.spinning)
    sessions = {"onnxruntime fp32": load_for_tile(config, args.tile)}
    int8 = args.int8 or artifact_path("cloud_removal").with_name("cloud_removal_int8.onnx")
    if int8.is_file():
        sessions["onnxruntime int8"] = load_model(int8, config)

    def runner(model: Any) -> Callable[[], np.ndarray]:
        return lambda: np.concatenate([model.run(b)["reflectance"] for b in batches])

    runs = {name: runner(model) for name, model in sessions.items()}
    if args.torch:
        runs["pytorch eager"] = _torch_runner(batches, args.threads)
    times: dict[str, tuple[float, float]] = {}
    outputs: dict[str, np.ndarray] = {}
    for name, run in runs.items():
        run()  # warm-up
        times[name] = (float("inf"), float("inf"))
    for _ in range(args.repeats):  # interleaved: a change of load hits every runtime alike
        for name, run in runs.items():
            wall, cpu, outputs[name] = _best(run, 1)
            times[name] = (min(times[name][0], wall), min(times[name][1], cpu))

    size = args.scene
    scene = _inputs(1, size, rng)
    cloudy = np.zeros((size, size), dtype=bool)
    observed = np.full((3, size, size), np.nan, np.float32)
    whole: dict[str, tuple[float, float]] = {}
    for name, model in sessions.items():
        wall, cpu, _ = _best(
            lambda model=model: reconstruct(
                observed,
                scene["s2_t0"][0],
                scene["s1_t"][0],
                scene["s1_t0"][0],
                10.0,
                cloudy,
                day_of_year=120,
                model=model,
                tile=args.tile,
            ),
            args.repeats,
        )
        whole[name] = (wall, cpu)

    print(
        f"cloud removal, {args.tiles} tiles of {args.tile}² px, {args.threads} threads, "
        f"spinning {args.spinning}"
    )
    reference = outputs["onnxruntime fp32"]
    for name, (wall, cpu) in times.items():
        diff = float(np.abs(outputs[name] - reference).max())
        print(
            f"  {name:18s} {megapixels / wall:7.3f} MP/s  {megapixels / cpu:7.3f} MP/CPU-s  "
            f"({wall:.3f} s, {cpu:.3f} CPU s)  max |out - fp32| {diff:.2e}"
        )
    scene_mp = size * size / 1e6
    for name, (wall, cpu) in whole.items():
        print(
            f"  reconstruct, {size}² fully cloudy scene (tiling + {name} + stitch): "
            f"{scene_mp / wall:.3f} MP/s, {scene_mp / cpu:.3f} MP/CPU-s ({wall:.2f} s)"
        )


def _torch_runner(batches: list[dict[str, np.ndarray]], threads: int) -> Callable[[], np.ndarray]:
    """PyTorch eager on the shipped file's weights (needs the train extra)."""
    import torch

    from models.cloud_removal import INPUT_NAMES, from_onnx
    from monitor.infer import artifact_path

    torch.set_num_threads(threads)
    network = from_onnx(str(artifact_path("cloud_removal")))

    def run() -> np.ndarray:
        with torch.inference_mode():
            outs = [
                network(*(torch.from_numpy(b[name]) for name in INPUT_NAMES))[0].numpy()
                for b in batches
            ]
        return np.concatenate(outs)

    return run


if __name__ == "__main__":
    main()
