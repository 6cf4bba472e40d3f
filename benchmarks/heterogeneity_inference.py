"""Heterogeneity inference throughput: ONNX Runtime against PyTorch eager, same inputs.

Both run the same weights (the trained checkpoint when there is one, else a seeded fresh
model), exported to ONNX here, on the same batches of model inputs of the real shapes
(`N_DATES` dates x `N_PIXELS` pixels), with the same number of CPU threads. Prints parcels per
second for each, the ratio, and whether the logits agree (max |difference|).

    python -m benchmarks.heterogeneity_inference [--parcels 8192] [--batch 1024] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from models.heterogeneity import HeterogeneityNet
from models.heterogeneity_training import example_inputs, export
from monitor.heterogeneity import INPUT_NAMES
from monitor.infer import InferenceConfig, load_model

CHECKPOINT = Path("data") / "checkpoints" / "heterogeneity.pt"
Inputs = dict[str, npt.NDArray[np.float32]]


def _best_rate(run: Callable[[Inputs], npt.NDArray[np.float32]], batches: list[Inputs]) -> float:
    """Parcels per second, best of 3 passes over all batches (after one warm-up batch)."""
    run(batches[0])
    n = sum(len(b["pixels"]) for b in batches)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for batch in batches:
            run(batch)
        best = min(best, time.perf_counter() - start)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parcels", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint
        if not checkpoint.is_file():
            torch.manual_seed(0)
            fresh = HeterogeneityNet()
            checkpoint = Path(tmp) / "heterogeneity.pt"
            torch.save({"state_dict": fresh.state_dict(), "config": fresh.config}, checkpoint)
        onnx_path = Path(tmp) / "heterogeneity.onnx"
        export(checkpoint, onnx_path)
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model = HeterogeneityNet(**state["config"])
        model.load_state_dict(state["state_dict"])
        model.eval()
        session = load_model(onnx_path, InferenceConfig(threads=args.threads))

        rng = np.random.default_rng(0)
        batches = [
            example_inputs(min(args.batch, args.parcels - start), rng)
            for start in range(0, args.parcels, args.batch)
        ]

        def run_torch(batch: Inputs) -> npt.NDArray[np.float32]:
            with torch.inference_mode():
                out = model(*(torch.from_numpy(batch[k]) for k in INPUT_NAMES))
            result: npt.NDArray[np.float32] = out.numpy()
            return result

        def run_onnx(batch: Inputs) -> npt.NDArray[np.float32]:
            result: npt.NDArray[np.float32] = session.run(batch)["logit"]
            return result

        difference = max(float(np.abs(run_torch(b) - run_onnx(b)).max()) for b in batches)
        torch_rate = _best_rate(run_torch, batches)
        onnx_rate = _best_rate(run_onnx, batches)

    print(
        f"heterogeneity inference: {args.parcels} parcels, batch {args.batch}, "
        f"{args.threads} threads, inputs [N, {batches[0]['pixels'].shape[1]} dates, "
        f"{batches[0]['pixels'].shape[2]} pixels, 1 band]"
    )
    print(f"  weights: {'trained checkpoint' if args.checkpoint.is_file() else 'fresh (seed 0)'}")
    print(f"  {'PyTorch eager':<16} {torch_rate:>12,.0f} parcels/s")
    print(f"  {'ONNX Runtime':<16} {onnx_rate:>12,.0f} parcels/s")
    print(f"  ratio ONNX Runtime / PyTorch: {onnx_rate / torch_rate:.2f}x")
    print(f"  outputs agree: max |logit difference| {difference:.2e} ({difference <= 1e-4})")


if __name__ == "__main__":
    main()
