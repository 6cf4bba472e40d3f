"""Static int8 quantization of the exported practice detector for ONNX Runtime on CPU.

    python -m models.practices_int8 [--data data] [--fp32 FILE] [--out FILE]

`quantize_int8` takes the fp32 file (`monitor/artifacts/practices.onnx`) and quantizes it with
ONNX Runtime's `quantize_static`, as `models.cloud_removal_int8` does the cloud-removal
network: QDQ format, int8 weights per output channel, uint8 activations, MinMax ranges
calibrated on series the engine would feed the network (`monitor.practices.series_tensor` of a
simulated, replayed *training* season, never a held-out one: `models.practices_training`),
drawn with a fixed seed, so the same fp32 file and data give the same int8 file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from models.int8 import quantize_qdq, recipe_main
from monitor.errors import ModelError

Array = npt.NDArray[Any]

#: Seed of the calibration series' draw: fixed, so the int8 file is reproducible.
CALIBRATION_SEED: Final = 0
#: The training season the calibration series come from (`models.practices_training`).
CALIBRATION_SEASON: Final = 1
CALIBRATION_SERIES: Final = 384
CALIBRATION_BATCH: Final = 64
#: Operators quantized: the convolutions and the activations and residual sums between them
#: (their int8 versions spare a dequantize/quantize pair each): 1.6x the fp32 series per
#: CPU-second against 1.3x for the convolutions alone (card `practices.md`, "Int8 on CPU").
QUANTIZED_OPS: Final = ("Conv", "ConvTranspose", "Relu", "Add")
#: Layers kept fp32: the stem (its input mixes NDVI, reflectance, dB, masks and the day-of-year
#: encoding under one activation scale) and the head (its logits are the log-odds around the
#: per-practice thresholds folded into its bias); together ~15 % of the work.
KEEP_FP32: Final = ("/net/stem/Conv", "/net/head/Conv")


def calibration_series(
    data_dir: Path,
    *,
    seed: int = CALIBRATION_SEED,
    season: int = CALIBRATION_SEASON,
    n_series: int = CALIBRATION_SERIES,
) -> list[dict[str, Array]]:
    """Feeds (`series` -> `[CALIBRATION_BATCH, channels, bins]`) of `n_series` series drawn
    with `seed` from the simulated training season `season` under `data_dir` (simulated and
    replayed when missing), observed rows only as the stage reads them by default, and the
    same series with the reconstructed rows, half of each."""
    import polars as pl

    from models.practices_training import TRAIN_SEEDS, season_tables
    from monitor.practices import INPUT_NAME, series_tensor

    if season not in TRAIN_SEEDS:
        raise ModelError(f"calibration season {season} is not a training season {TRAIN_SEEDS}")
    observations, _ = season_tables(data_dir, season)
    observed = series_tensor(observations.filter(pl.col("source") == "observed")).values
    both = series_tensor(observations).values
    pool = np.concatenate([observed, both])
    if len(pool) == 0:
        raise ModelError(f"no calibration series in season {season} of {data_dir}")
    rng = np.random.default_rng(seed)
    picked = pool[rng.choice(len(pool), size=min(n_series, len(pool)), replace=False)]
    return [
        {INPUT_NAME: np.ascontiguousarray(picked[i : i + CALIBRATION_BATCH], dtype=np.float32)}
        for i in range(0, len(picked), CALIBRATION_BATCH)
    ]


def quantize_int8(
    fp32_path: Path,
    int8_path: Path,
    data_dir: Path,
    *,
    seed: int = CALIBRATION_SEED,
    keep_fp32: Sequence[str] = KEEP_FP32,
    op_types: Sequence[str] = QUANTIZED_OPS,
) -> None:
    """Writes the int8 (QDQ) version of the network `fp32_path` to `int8_path`, calibrated on
    `calibration_series(data_dir, seed=seed)`. `keep_fp32`: node names left fp32;
    `op_types`: the operators quantized."""
    quantize_qdq(
        fp32_path,
        int8_path,
        calibration_series(data_dir, seed=seed),
        keep_fp32=keep_fp32,
        op_types=op_types,
    )


if __name__ == "__main__":
    recipe_main(__doc__, "practices", quantize_int8)
