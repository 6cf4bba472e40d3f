"""The engine's inference stages as shipped: which models run, in which order.

`default_stages` loads each model once (`monitor.infer.load_model`, on the configured backend)
and returns the stages for `EngineConfig.stages`, in the order they must run:

1. cloud removal (cloudy S2 acquisitions with a clear reference and radar near both dates):
   first, because the reconstructed rows it adds to the store feed practice detection;
2. heterogeneity (S2 acquisitions only: pixel sets, then the model at its cadence);
3. practices (every acquisition, S2 or S1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from monitor.heterogeneity import MODEL_NAME as HETEROGENEITY_MODEL
from monitor.infer import InferenceConfig, load_model
from monitor.practices import load_practices_model
from monitor.stages import InferenceStage
from monitor.stages.heterogeneity import DEFAULT_EVERY_DAYS, HeterogeneityStage
from monitor.stages.practices import PracticeStage
from monitor.stages.reconstruction import (
    DEFAULT_RESOLUTION_M,
    ReconstructionConfig,
    ReconstructionStage,
)


@dataclass(frozen=True)
class StageOptions:
    """Which shipped models run, and how (the command-line flags `--no-models`, `--backend`,
    `--heterogeneity-every-days`, `--reconstruction-resolution`, `--reconstruction-precision`)."""

    inference: InferenceConfig = field(default_factory=InferenceConfig)
    practices: bool = True
    heterogeneity: bool = True
    reconstruction: bool = True
    heterogeneity_every_days: int = DEFAULT_EVERY_DAYS
    #: `ReconstructionConfig.resolution_m`: the pixel size (m) cloud removal runs at.
    reconstruction_resolution_m: int = DEFAULT_RESOLUTION_M
    #: `ReconstructionConfig.int8`: the int8 cloud-removal network on ONNX Runtime.
    reconstruction_int8: bool = True


def default_stages(options: StageOptions | None = None) -> list[InferenceStage]:
    """The shipped models' stages, each model loaded once, in running order."""
    options = options or StageOptions()
    stages: list[InferenceStage] = []
    if options.reconstruction:
        # First: its reconstructed rows feed practices.
        config = ReconstructionConfig(
            inference=options.inference,
            resolution_m=options.reconstruction_resolution_m,
            int8=options.reconstruction_int8,
        )
        stages.append(ReconstructionStage(config))
    if options.heterogeneity:
        model = load_model(HETEROGENEITY_MODEL, options.inference)
        every = options.heterogeneity_every_days
        stages.append(HeterogeneityStage(model, every_days=every))
    if options.practices:
        stages.append(PracticeStage(load_practices_model(options.inference)))
    return stages
