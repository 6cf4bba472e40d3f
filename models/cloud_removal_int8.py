"""Static int8 quantization of the exported cloud-removal network for ONNX Runtime on CPU.

    python -m models.cloud_removal_int8 [--data data] [--fp32 FILE] [--out FILE]

`quantize_int8` takes the fp32 file (`monitor/artifacts/cloud_removal.onnx`), frees its height
and width (the network is fully convolutional), and quantizes it with ONNX Runtime's
`quantize_static`: QDQ format, int8 weights per output channel, uint8 activations (the
u8 x s8 kernels that use AVX-512 VNNI), ranges calibrated on windows the engine would feed the
network, taken from simulated *training* seasons (never the held-out ones) with a fixed seed,
so the same fp32 file and data give the same int8 file.

Calibration windows are built as the stage builds them (`monitor.cloud_removal`): t0 is the
observed image of a date the SCL passes for >= 90 % of the pixels, 0 where masked; the radar
is the engine's pick (nearest within 4 days, never after t); half the windows carry a next
clear date (reprocessing), the other half repeat t0 with a next gap of 0 (streaming).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.cloud_removal import INPUT_NAMES
from models.cloud_removal_training import (
    MAX_GAP_DAYS,
    TRAIN_SEEDS,
    _nearest_s1,
    _season_dir,
    _usable_t0,
    load_season,
)
from models.int8 import quantize_qdq, recipe_main
from monitor.cloud_removal import free_spatial_dims
from monitor.errors import ModelError

Array = npt.NDArray[Any]

#: Seed of the calibration windows' draw: fixed, so the int8 file is reproducible.
CALIBRATION_SEED = 0
#: Training seasons the calibration windows come from.
CALIBRATION_SEASONS = TRAIN_SEEDS[:2]
CALIBRATION_WINDOWS = 64
CALIBRATION_TILE = 128
#: Operators quantized: the convolutions and the activations and pools between them (their
#: int8 versions spare a dequantize/quantize pair each). The concatenations of the skip
#: connections stay fp32: int8 would give both inputs one scale (1.6x the mean error).
QUANTIZED_OPS = ("Conv", "ConvTranspose", "LeakyRelu", "MaxPool")
#: Layers kept fp32: the first convolution (its input mixes reflectance, dB and timing
#: channels of different ranges under one activation scale: 2x the mean error) and the 1 x 1
#: head (its output is the reflectance correction and the uncertainty; ~0.3 % of the work).
KEEP_FP32 = ("/enc1/enc1.0/Conv", "/head/Conv")


def calibration_windows(
    data_dir: Path,
    *,
    seed: int = CALIBRATION_SEED,
    seasons: Sequence[int] = CALIBRATION_SEASONS,
    n_windows: int = CALIBRATION_WINDOWS,
    tile: int = CALIBRATION_TILE,
) -> list[dict[str, Array]]:
    """`n_windows` single-window feeds (`INPUT_NAMES` -> `[1, C, tile, tile]`, timing `[1, 3]`)
    drawn with `seed` from the simulated seasons `seasons` under `data_dir` (simulated first
    when missing)."""
    rng = np.random.default_rng(seed)
    loaded = [load_season(_season_dir(data_dir, s)) for s in seasons]
    cases = []
    for s, season in enumerate(loaded):
        usable = _usable_t0(season)
        for j, day in enumerate(season.s2_days):
            before = [i for i in usable if 0 < day - season.s2_days[i] <= MAX_GAP_DAYS]
            after = [i for i in usable if 0 < season.s2_days[i] - day <= MAX_GAP_DAYS]
            if not before:
                continue
            i0 = int(before[-1])
            k, k0 = _nearest_s1(season, day, day), _nearest_s1(season, season.s2_days[i0], day)
            if k is not None and k0 is not None:
                cases.append((s, i0, j, k, k0, int(after[0]) if after else None))
    if not cases:
        raise ModelError(f"no calibration date pair in the seasons {list(seasons)} of {data_dir}")
    feeds = []
    for w in range(n_windows):
        s, i0, j, k, k0, i1 = cases[int(rng.integers(len(cases)))]
        season = loaded[s]
        height, width = season.valid.shape[1:]
        r, c = (int(x) for x in rng.integers(0, (height - tile + 1, width - tile + 1)))
        window = np.s_[:, r : r + tile, c : c + tile]
        day = season.s2_days[j]
        t0 = season.observed[i0][window]  # 0 where the SCL masks it, as the engine feeds it
        timing = [day - season.s2_days[i0], 0.0, float(int(day))]
        s2_next = t0
        if i1 is not None and w % 2:
            s2_next = season.observed[i1][window]
            timing[1] = season.s2_days[i1] - day
        arrays = (t0, s2_next, season.s1[k][window], season.s1[k0][window])
        feed = {
            name: a[None].astype(np.float32)
            for name, a in zip(INPUT_NAMES[:4], arrays, strict=True)
        }
        feed["timing"] = np.asarray([timing], dtype=np.float32)
        feeds.append(feed)
    return feeds


def quantize_int8(
    fp32_path: Path,
    int8_path: Path,
    data_dir: Path,
    *,
    seed: int = CALIBRATION_SEED,
    keep_fp32: Sequence[str] = KEEP_FP32,
    op_types: Sequence[str] = QUANTIZED_OPS,
) -> None:
    """Writes the int8 (QDQ) version of the network `fp32_path` to `int8_path`, with free
    height and width, calibrated on `calibration_windows(data_dir, seed=seed)`.
    `keep_fp32`: node names left fp32; `op_types`: the operators quantized."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="cloud-removal-int8-") as folder:
        free = Path(folder) / "free.onnx"
        onnx.save(free_spatial_dims(onnx.load(str(fp32_path))), str(free))
        quantize_qdq(
            free,
            int8_path,
            calibration_windows(data_dir, seed=seed),
            keep_fp32=keep_fp32,
            op_types=op_types,
        )


if __name__ == "__main__":
    recipe_main(__doc__, "cloud_removal", quantize_int8)
