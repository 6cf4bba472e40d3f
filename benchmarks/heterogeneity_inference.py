"""Heterogeneity inference throughput: end to end (`heterogeneity_probability` on a season of
pixel sets) next to the model alone on ONNX Runtime and on PyTorch eager, same inputs.

The input: `--parcels` parcels x `--dates` Sentinel-2 dates of NDVI pixel sets (random values,
some masked pixels and cloudy dates), as `s2_pixel_sets` gives them. Timed, best of 3:

* end to end with the shipped model (date selection, model inputs, batches, sigmoid) at the
  default batch size and at a few others (the batch size is the main lever: the model's
  [batch, 32 dates, 32 pixels, 32 features] activations must stay in cache);
* the model alone on the same model inputs, ONNX Runtime against PyTorch eager with the same
  weights (the trained checkpoint when there is one, else a seeded fresh model, exported to
  ONNX here), PyTorch on `--torch-device` (cpu by default; `cuda` on a GPU node).

    python -m benchmarks.heterogeneity_inference [--parcels 4096] [--dates 40] [--threads 2]
        [--torch-device cpu]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from benchmarks.timing import parcels_line, timed
from monitor.heterogeneity import (
    DEFAULT_BATCH,
    INPUT_NAMES,
    N_PIXELS,
    PixelSetSeries,
    heterogeneity_probability,
    model_inputs,
)
from monitor.infer import InferenceConfig, Model, load_model

CHECKPOINT = Path("data") / "checkpoints" / "heterogeneity.pt"
Inputs = dict[str, npt.NDArray[np.float32]]


def season(parcels: int, dates: int, rng: np.random.Generator) -> PixelSetSeries:
    """Random pixel sets of the real shapes: 10 % masked pixels, a quarter of the dates cloudy."""
    mask = rng.random((parcels, dates, N_PIXELS)) < 0.9
    ndvi = np.where(mask, rng.uniform(-0.2, 1.0, mask.shape), 0.0).astype(np.float32)
    valid = np.where(rng.random((parcels, dates)) < 0.75, 1.0, 0.1).astype(np.float32)
    days = np.sort(rng.choice(np.arange(32, 350), dates, replace=False)).astype(np.float32)
    std = rng.uniform(0.0, 0.2, (parcels, dates)).astype(np.float32)
    return PixelSetSeries(days, ndvi, mask, valid, std)


def batches(inputs: Inputs, batch: int) -> list[Inputs]:
    n = len(inputs["pixels"])
    return [{k: v[i : i + batch] for k, v in inputs.items()} for i in range(0, n, batch)]


def model_only(args: argparse.Namespace, inputs: Inputs) -> None:
    """ONNX Runtime against PyTorch eager, same weights, same batches."""
    try:
        import torch
    except ImportError:
        print("  PyTorch eager: torch is not installed (pip install -e '.[train]'), skipped")
        return
    if args.torch_device.startswith("cuda") and not torch.cuda.is_available():
        print(f"  PyTorch eager: no CUDA device for --torch-device {args.torch_device}, skipped")
        return
    from models.heterogeneity import HeterogeneityNet
    from models.heterogeneity_training import export, load_checkpoint

    torch.set_num_threads(args.threads)
    n = len(inputs["pixels"])
    parts = batches(inputs, DEFAULT_BATCH)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint
        if not checkpoint.is_file():
            torch.manual_seed(0)
            fresh = HeterogeneityNet()
            checkpoint = Path(tmp) / "heterogeneity.pt"
            torch.save({"state_dict": fresh.state_dict(), "config": fresh.config}, checkpoint)
        onnx_path = Path(tmp) / "heterogeneity.onnx"
        export(checkpoint, onnx_path)
        net = load_checkpoint(checkpoint).to(args.torch_device)
        session = load_model(onnx_path, InferenceConfig(threads=args.threads))

    def run_onnx() -> npt.NDArray[np.float32]:
        return np.concatenate([session.run(b)["logit"] for b in parts])

    device_parts = [
        [torch.from_numpy(b[k]).to(args.torch_device) for k in INPUT_NAMES] for b in parts
    ]

    def run_torch() -> npt.NDArray[np.float32]:
        with torch.inference_mode():
            out: npt.NDArray[np.float32] = torch.cat([net(*b) for b in device_parts]).cpu().numpy()
        return out

    weights = "trained checkpoint" if args.checkpoint.is_file() else "fresh model (seed 0)"
    print(f"the model alone ({weights}), batch {DEFAULT_BATCH}, same inputs:")
    ort_s, ort_cpu, ort_out = timed(run_onnx, warm_up=True)
    parcels_line(f"ONNX Runtime, {args.threads} threads", n, ort_s, ort_cpu)
    torch_s, torch_cpu, torch_out = timed(run_torch, warm_up=True)
    on_cpu = args.torch_device == "cpu"
    parcels_line(f"PyTorch eager, {args.torch_device}", n, torch_s, torch_cpu if on_cpu else None)
    diff = float(np.abs(ort_out - torch_out).max())
    print(
        f"  ONNX Runtime / PyTorch eager ({args.torch_device}): {torch_s / ort_s:.2f}x wall "
        f"clock; max |logit difference| {diff:.2e} ({diff <= 1e-4})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parcels", type=int, default=4096)
    parser.add_argument("--dates", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    parser.add_argument("--torch-device", default="cpu", help="cpu (default), cuda, cuda:1…")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    series = season(args.parcels, args.dates, np.random.default_rng(0))
    n = series.n_parcels
    print(
        f"heterogeneity: {n} parcels x {args.dates} dates x {N_PIXELS} pixels, "
        f"{args.threads} threads"
    )
    shipped: Model = load_model("heterogeneity", InferenceConfig(threads=args.threads))
    print("end to end (pixel sets in, probabilities out), shipped model:")
    reference = None
    for batch in sorted({DEFAULT_BATCH, 64, 1024, 4096}):
        wall, cpu, out = timed(
            lambda b=batch: heterogeneity_probability(series, shipped, batch=b), warm_up=True
        )
        default = " (default)" if batch == DEFAULT_BATCH else ""
        parcels_line(f"heterogeneity_probability, batch {batch}{default}", n, wall, cpu)
        reference = out if reference is None else reference
        assert np.allclose(out, reference, atol=1e-6, equal_nan=True), "batching changed results"
    model_only(args, model_inputs(series))
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
