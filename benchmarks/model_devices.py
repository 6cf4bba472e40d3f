"""Model throughput per device: the three networks on ONNX Runtime (CPU), PyTorch eager on the
CPU and on a GPU, and TensorRT where it imports — the same weights on the same inputs.

    python -m benchmarks.model_devices [--device cuda] [--threads N] [--seconds 3]

What an operator runs on a node to size it, and what the project runs on a lent GPU machine
(which has PyTorch and ONNX Runtime but no network, so no simulator data or Kafka: the inputs
are random tensors of the models' real shapes, which is all throughput depends on). Practice
detection and cloud removal rebuild their PyTorch networks from the shipped ONNX weights, so
the largest difference between runtimes is a correctness check; the heterogeneity export
folds its linear layers into anonymous constants, so its PyTorch twin has seeded weights of the
same architecture (throughput only). Every figure includes the copies from and to host numpy
arrays, as the engine pays them. Units: parcels/s (practices: parcel-seasons of 64 five-day
bins; heterogeneity: parcel-seasons of 32 dates x 32 pixels) and megapixels/s (cloud removal,
128x128 tiles of 3 bands).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Arrays = dict[str, npt.NDArray[np.float32]]
Runner = Callable[[Arrays], npt.NDArray[np.float32]]


@dataclass(frozen=True)
class Workload:
    """One model's benchmark: inputs of one batch, the unit one input item counts for."""

    name: str
    inputs: Arrays
    unit: str
    per_item: float  # units per batch item (1 parcel, or megapixels of a tile)


def practices_inputs(batch: int, rng: np.random.Generator) -> Arrays:
    from monitor.model_io import CHANNELS, N_BINS

    return {"series": rng.normal(0.0, 1.0, (batch, len(CHANNELS), N_BINS)).astype(np.float32)}


def heterogeneity_inputs(batch: int, rng: np.random.Generator) -> Arrays:
    dates, pixels = 32, 32
    date_mask = (rng.random((batch, dates)) < 0.7).astype(np.float32)
    return {
        "pixels": rng.uniform(0.0, 0.9, (batch, dates, pixels, 1)).astype(np.float32),
        "pixel_mask": np.ones((batch, dates, pixels), np.float32),
        "date_mask": date_mask,
        "day_of_year": np.sort(rng.uniform(60, 300, (batch, dates)), axis=1).astype(np.float32),
    }


def cloud_removal_inputs(batch: int, rng: np.random.Generator, size: int = 128) -> Arrays:
    shape3, shape2 = (batch, 3, size, size), (batch, 2, size, size)
    gap = rng.uniform(5, 40, (batch, 1))
    timing = np.concatenate([gap, np.zeros((batch, 1)), rng.uniform(60, 300, (batch, 1))], 1)
    return {
        "s2_t0": rng.uniform(0.0, 0.5, shape3).astype(np.float32),
        "s2_next": rng.uniform(0.0, 0.5, shape3).astype(np.float32),
        "s1_t": rng.normal(-14.0, 4.0, shape2).astype(np.float32),
        "s1_t0": rng.normal(-14.0, 4.0, shape2).astype(np.float32),
        "timing": timing.astype(np.float32),
    }


def torch_network(name: str) -> Any:
    """The PyTorch network of a shipped model (ONNX weights where they map back)."""
    import torch

    from monitor.infer import artifact_path

    path = str(artifact_path(name))
    if name == "practices":
        from models.practices import PracticeProbabilities, from_onnx

        return PracticeProbabilities(from_onnx(path)).eval()
    if name == "cloud_removal":
        from models.cloud_removal import from_onnx as cloud_from_onnx

        return cloud_from_onnx(path).eval()
    from models.heterogeneity import HeterogeneityNet

    torch.manual_seed(0)
    return HeterogeneityNet().eval()


def torch_runner(name: str, device: str, half: bool) -> Runner:
    """Run the PyTorch network on `device` (fp16 autocast when `half`), host arrays in/out."""
    import torch

    net = torch_network(name).to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def run(inputs: Arrays) -> npt.NDArray[np.float32]:
        tensors = [torch.from_numpy(v).to(device, non_blocking=True) for v in inputs.values()]
        with (
            torch.inference_mode(),
            torch.autocast(device.split(":")[0], torch.float16, enabled=half),
        ):
            out = net(*tensors)
        first = out[0] if isinstance(out, tuple) else out
        result: npt.NDArray[np.float32] = first.float().cpu().numpy()
        sync()
        return result

    return run


def model_runner(name: str, backend: str, threads: int, fp16: bool) -> Runner:
    """Run the shipped ONNX file through `monitor.infer` (ONNX Runtime or TensorRT)."""
    from monitor.infer import InferenceConfig, load_model

    model = load_model(name, InferenceConfig(backend=backend, threads=threads, fp16=fp16))  # type: ignore[arg-type]

    def run(inputs: Arrays) -> npt.NDArray[np.float32]:
        result: npt.NDArray[np.float32] = next(iter(model.run(inputs).values()))
        return result

    return run


def throughput(
    run: Runner, inputs: Arrays, seconds: float
) -> tuple[float, npt.NDArray[np.float32]]:
    """Batches per second over at least `seconds` (after one warm-up), and the last output."""
    out = run(inputs)
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or done < 3:
        out = run(inputs)
        done += 1
    return done / elapsed, out


def backends(args: argparse.Namespace) -> dict[str, Callable[[str], Runner]]:
    """Backend label -> runner factory, for what this machine has; says why others are out."""
    found: dict[str, Callable[[str], Runner]] = {
        f"ONNX Runtime CPU ({args.threads} thr)": lambda n: model_runner(
            n, "onnxruntime", args.threads, False
        )
    }
    try:
        import torch
    except ImportError:
        print("PyTorch: not installed (pip install '.[train]'), its rows are left out")
        return found
    torch.set_num_threads(args.threads)
    found[f"PyTorch eager CPU ({args.threads} thr)"] = lambda n: torch_runner(n, "cpu", False)
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            print(f"PyTorch: no CUDA device ({args.device}), GPU rows are left out")
            return found
        gpu = torch.cuda.get_device_name(args.device)
        found[f"PyTorch eager {gpu} fp32"] = lambda n: torch_runner(n, args.device, False)
        found[f"PyTorch eager {gpu} fp16"] = lambda n: torch_runner(n, args.device, True)
        try:
            import tensorrt  # noqa: F401
        except ImportError as exc:
            print(f"TensorRT: not importable ({exc}); its rows are left out")
        else:
            found["TensorRT fp32"] = lambda n: model_runner(n, "tensorrt", 0, False)
            found["TensorRT fp16"] = lambda n: model_runner(n, "tensorrt", 0, True)
    return found


def workloads(args: argparse.Namespace, gpu: bool) -> list[tuple[Workload, Workload]]:
    """(CPU-sized, GPU-sized) batches of each model; a GPU needs big batches to fill."""
    rng = np.random.default_rng(0)
    tile_mp = 128 * 128 / 1e6
    pairs = []
    for name, make, unit, per_item, cpu_batch, gpu_batch in (
        ("practices", practices_inputs, "parcels/s", 1.0, 4096, 65536),
        ("heterogeneity", heterogeneity_inputs, "parcels/s", 1.0, 512, 8192),
        ("cloud_removal", cloud_removal_inputs, "MP/s", tile_mp, 16, 128),
    ):
        if args.models and name not in args.models:
            continue
        big = gpu_batch if gpu else cpu_batch
        inputs = make(big, rng)
        small = {k: v[:cpu_batch] for k, v in inputs.items()}
        pairs.append(
            (
                Workload(name, small, unit, per_item * cpu_batch),
                Workload(name, inputs, unit, per_item * big),
            )
        )
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="PyTorch device for the GPU rows: cuda")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--models", nargs="*", help="practices heterogeneity cloud_removal")
    args = parser.parse_args()

    found = backends(args)
    gpu = args.device.startswith("cuda")
    for cpu_work, gpu_work in workloads(args, gpu):
        print(f"\n{cpu_work.name}")
        reference: npt.NDArray[np.float32] | None = None
        for label, factory in found.items():
            on_gpu = "CPU" not in label
            work = gpu_work if on_gpu else cpu_work
            try:
                run = factory(work.name)
                per_s, out = throughput(run, work.inputs, args.seconds)
            except Exception as exc:  # a backend failing must not hide the others' figures
                print(f"  {label:<44} failed: {str(exc).splitlines()[0]}")
                continue
            batch = len(next(iter(work.inputs.values())))
            head = out[: len(next(iter(cpu_work.inputs.values())))]
            if work.name == "heterogeneity" and not label.startswith("PyTorch"):
                agree = "shipped weights"  # its PyTorch twin has other (seeded) weights
            elif reference is None:
                reference = head
                agree = "reference"
            else:
                agree = f"max |diff| {float(np.abs(head - reference).max()):.1e}"
            rate = per_s * work.per_item
            print(f"  {label:<44} {rate:>12,.1f} {work.unit:<10} batch {batch:>6}  {agree}")
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
