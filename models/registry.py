"""The models parcel-monitor trains, and the interface each training module implements.

`parcel-monitor train|export|evaluate NAME` import `models.<NAME>_training` lazily (it needs
torch) and call its functions:

* `train(data_dir, out_dir, *, seed, epochs) -> Path`: trains on the simulated seasons under
  `data_dir` (simulating them first when the folder is empty), returns the checkpoint path.
* `export(checkpoint, onnx_path) -> None`: ONNX, opset >= 17, dynamic batch axis.
* `evaluate(onnx_path, data_dir) -> list[EvaluationRow]`: held-out metrics of the model and of
  its baselines, on simulated data and on the real samples in `examples/` where they apply.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

from monitor.errors import ConfigError

MODELS: tuple[str, ...] = ("practices", "heterogeneity", "cloud_removal")


@dataclass(frozen=True)
class EvaluationRow:
    """One line of an evaluation table: a method's metric on a dataset."""

    model: str
    dataset: str
    method: str
    metric: str
    value: float


class ModelRecipe(Protocol):
    def train(self, data_dir: Path, out_dir: Path, *, seed: int, epochs: int | None) -> Path: ...

    def export(self, checkpoint: Path, onnx_path: Path) -> None: ...

    def evaluate(self, onnx_path: Path, data_dir: Path) -> list[EvaluationRow]: ...


def recipe(name: str) -> ModelRecipe:
    """The training module of model `name` (imports torch)."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r} (known: {', '.join(MODELS)})")
    try:
        module = importlib.import_module(f"models.{name}_training")
    except ModuleNotFoundError as exc:
        if exc.name == "torch":
            raise ConfigError(
                "training needs PyTorch: pip install 'parcel-monitor[train]'"
            ) from exc
        raise
    return cast(ModelRecipe, module)
