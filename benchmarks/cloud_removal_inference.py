"""Cloud removal throughput: ONNX Runtime against PyTorch eager, same weights, same inputs.

    python -m benchmarks.cloud_removal_inference [--tiles 32] [--tile 128] [--threads 2]

The shipped model (`monitor/artifacts/cloud_removal.onnx`) runs on `--tiles` tiles of
`--tile`² pixels in batches of 16, through ONNX Runtime (`monitor.cloud_removal.load_for_tile`:
the shipped file, with free height and width for tiles other than its 128) and through the
PyTorch network rebuilt from the same file's weights (needs the train extra), both on
`--threads` threads; best of `--repeats`. Reported: megapixels per second of each, their
ratio, and the largest difference between their outputs. Then the whole runtime path,
`monitor.cloud_removal.reconstruct` (tiling, model, stitching) on a fully cloudy
`--scene`² scene, on ONNX Runtime.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
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


def _best(run: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=32)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scene", type=int, default=1024)
    args = parser.parse_args()

    import torch

    from models.cloud_removal import INPUT_NAMES, from_onnx
    from monitor.cloud_removal import load_for_tile, reconstruct
    from monitor.infer import InferenceConfig, artifact_path

    path = artifact_path("cloud_removal")
    rng = np.random.default_rng(0)
    inputs = _inputs(args.tiles, args.tile, rng)
    batches = [
        {k: v[i : i + BATCH] for k, v in inputs.items()} for i in range(0, args.tiles, BATCH)
    ]
    megapixels = args.tiles * args.tile**2 / 1e6

    session = load_for_tile(InferenceConfig(threads=args.threads), args.tile)
    session.run(batches[0])  # warm-up
    ort_time, ort_out = _best(
        lambda: np.concatenate([session.run(b)["reflectance"] for b in batches]), args.repeats
    )

    torch.set_num_threads(args.threads)
    network = from_onnx(str(path))

    def torch_run() -> np.ndarray:
        with torch.inference_mode():
            outs = [
                network(*(torch.from_numpy(b[name]) for name in INPUT_NAMES))[0].numpy()
                for b in batches
            ]
        return np.concatenate(outs)

    torch_run()  # warm-up
    torch_time, torch_out = _best(torch_run, args.repeats)
    agree = float(np.abs(ort_out - torch_out).max())

    size = args.scene
    scene = _inputs(1, size, rng)
    cloudy = np.zeros((size, size), dtype=bool)
    observed = np.full((3, size, size), np.nan, np.float32)
    recon_time, _ = _best(
        lambda: reconstruct(
            observed,
            scene["s2_t0"][0],
            scene["s1_t"][0],
            scene["s1_t0"][0],
            10.0,
            cloudy,
            day_of_year=120,
            model=session,
            tile=args.tile,
        ),
        args.repeats,
    )

    print(f"cloud removal, {args.tiles} tiles of {args.tile}² px, {args.threads} threads")
    print(f"  onnxruntime       {megapixels / ort_time:8.3f} MP/s  ({ort_time:.3f} s)")
    print(f"  pytorch eager     {megapixels / torch_time:8.3f} MP/s  ({torch_time:.3f} s)")
    print(f"  ratio ort/torch   {torch_time / ort_time:8.2f}x")
    print(f"  max |ort - torch| {agree:.2e} (outputs agree: {agree < 1e-4})")
    print(
        f"  reconstruct, {size}² fully cloudy scene (tiling + onnxruntime + stitch): "
        f"{size * size / 1e6 / recon_time:.3f} MP/s ({recon_time:.2f} s)"
    )


if __name__ == "__main__":
    main()
