"""The model flags shared by `run`, `replay` and `bench`: which stages run, on which backend."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.stages.defaults import StageOptions


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """`--no-models`, `--backend`, `--heterogeneity-every-days`, `--reconstruction-resolution`,
    `--reconstruction-precision` (read by `stage_options`)."""

    group = parser.add_argument_group("models (cloud removal, heterogeneity, practices)")
    group.add_argument(
        "--no-models",
        dest="models",
        action="store_false",
        help="observations only: no cloud removal, heterogeneity or practice model",
    )
    group.add_argument(
        "--backend",
        choices=("onnxruntime", "tensorrt"),
        default="onnxruntime",
        help="inference backend (default onnxruntime; tensorrt on a GPU node)",
    )
    group.add_argument(
        "--heterogeneity-every-days",
        type=int,
        default=30,
        metavar="DAYS",
        help="score each parcel's heterogeneity at most once every DAYS days (default 30)",
    )
    group.add_argument(
        "--reconstruction-resolution",
        type=int,
        choices=(10, 20),
        metavar="M",
        help="pixel size (m) cloud removal runs at: 10, or 20 on 2x2 block means, a quarter "
        "of the work (default: the stage's, ReconstructionConfig.resolution_m)",
    )
    group.add_argument(
        "--reconstruction-precision",
        choices=("int8", "fp32"),
        default="int8",
        help="cloud-removal network on ONNX Runtime: int8 (default, ~1.8x faster per CPU "
        "second, parcel means within 0.1 %% of fp32; model card) or fp32; TensorRT runs fp32",
    )


def stage_options(args: argparse.Namespace) -> StageOptions | None:
    """The models the command's flags ask for; None with --no-models."""
    from monitor.infer import InferenceConfig
    from monitor.stages.defaults import StageOptions
    from monitor.stages.reconstruction import DEFAULT_RESOLUTION_M

    if not args.models:
        return None
    resolution = args.reconstruction_resolution or DEFAULT_RESOLUTION_M
    return StageOptions(
        inference=InferenceConfig(backend=args.backend),
        heterogeneity_every_days=args.heterogeneity_every_days,
        reconstruction_resolution_m=resolution,
        reconstruction_int8=args.reconstruction_precision == "int8",
    )
