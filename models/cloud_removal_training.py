"""Training, export and evaluation of the cloud-removal model (`models.cloud_removal`).

Data: simulated seasons (`monitor.simulate`), whose truth gives the clear-sky reflectance of
every Sentinel-2 date (`truth/s2_clear/<id>/` for dates with clouds, the item's own bands
otherwise). A training example is a pair of dates t0 < t at most `MAX_GAP_DAYS` apart: inputs
the clear-sky bands at t0, the Sentinel-1 acquisitions nearest to t and to t0 (within
`MAX_S1_OFFSET_DAYS`) and the gap; target the clear-sky bands at t. Random 64-px crops with
augmentations meant to survive the trip to real data: per-band gain and offset on the optical
bands (shared by t0 and t), per-polarisation dB offsets (shared, plus a smaller one per date:
real passes from different orbits differ by a dB or two), extra speckle, flips and rotations.

Evaluation (`evaluate`): MAE, PSNR, SSIM and spectral angle on held-out simulated seasons
(seeds never trained on) for the model, copy-last-clear and linear interpolation between the
clear dates around t; and on the real Mol sample (predict 2023-04-15 from 2023-04-05 and the
2023-04-15 Sentinel-1), where linear interpolation does not apply (no clear date after 04-15).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import rasterio
import torch

from models.cloud_removal import INPUT_NAMES, OUTPUT_NAMES, CloudRemovalNet, laplace_nll
from models.registry import EvaluationRow
from monitor.cloud_removal import BANDS
from monitor.errors import ModelError
from monitor.kernels import validity_mask_from_scl
from monitor.simulate import simulate_season

NAME = "cloud_removal"
TRAIN_SEEDS = (1, 2, 3, 4, 5, 6, 7, 8)
HELD_OUT_SEEDS = (101, 102, 103, 104)
TILE_SIZE, N_PARCELS = 512, 300
MAX_GAP_DAYS = 30
MAX_S1_OFFSET_DAYS = 4
T0_CLEAR_FRACTION = 0.9  # a date serves as t0 when the SCL passes this share (the engine's)
# Training also takes hazier t0 (masked pixels carry no loss): twice the date pairs.
TRAIN_T0_FRACTION = 0.5
CLOUDY_SHARE = 0.3  # an evaluation target is a date at least this cloudy
CROP = 64
BLOCK = 16  # about a small parcel (the engine test's are ~25 px across)
TILE = 128  # the shipped model's tile, `monitor.cloud_removal.reconstruct`'s default
BATCH = 16
STEPS_PER_EPOCH = 100
DEFAULT_EPOCHS = 10
WIDTH = 16
MOL = Path(__file__).resolve().parents[1] / "examples" / "mol-2023"
MOL_DAY = (date(2023, 4, 15) - date(2023, 1, 1)).days
SEGMENT = 8  # Mol has no parcels: square segments of 8 x 8 px stand in for them

Array = npt.NDArray[Any]


@dataclass(frozen=True)
class Season:
    """One simulated season in memory: S2 `[D, 3, H, W]` (clear-sky truth and as observed) and
    S1 `[E, 2, H, W]`; days are fractional days of the year (S1 and S2 pass at other hours)."""

    s2_days: Array
    s2: Array  # float32 clear-sky reflectance (the target)
    observed: Array  # float32 reflectance as delivered, 0 where the SCL rejects the pixel
    valid: Array  # bool [D, H, W]: what the SCL lets through (the engine's default mask)
    clear_fraction: Array  # share of valid pixels per date (the engine's t0 criterion)
    cloud_share: Array
    s1_days: Array
    s1: Array  # float32 dB


def _day(value: Any) -> float:
    """Fractional day of the year (1 January 00:00 = 0) of a date or datetime."""
    if not hasattr(value, "hour"):
        return float((value - date(value.year, 1, 1)).days)
    midnight = int((value.date() - date(value.year, 1, 1)).days)
    return midnight + float((value.hour * 3600 + value.minute * 60 + value.second) / 86400.0)


def _read_stack(folder: Path, names: tuple[str, ...], shape: tuple[int, int]) -> Array:
    """Bands of one acquisition folder onto the 10 m grid (20 m ones by pixel replication)."""
    out = np.empty((len(names), *shape), dtype=np.float32)
    for i, name in enumerate(names):
        with rasterio.open(folder / f"{name}.tif") as src:
            data = src.read(1)
        factor = shape[0] // data.shape[0]
        if factor > 1:
            data = data.repeat(factor, axis=0).repeat(factor, axis=1)
        out[i] = data[: shape[0], : shape[1]]
    return out


def load_season(folder: Path) -> Season:
    """Reads B04/B08/B11 of every S2 date (clear-sky truth, and as observed with its SCL) and
    VV/VH of every S1 date."""
    dates = pl.read_parquet(folder / "truth" / "s2_dates.parquet").sort("datetime")
    s1_dates = pl.read_parquet(folder / "truth" / "s1_dates.parquet").sort("datetime")
    shape = (TILE_SIZE, TILE_SIZE)
    n = dates.height
    clear = np.empty((n, len(BANDS), *shape), np.float32)
    observed = np.empty_like(clear)
    valid = np.empty((n, *shape), bool)
    for d, (pid, has_truth) in enumerate(zip(dates["id"], dates["clear_truth"], strict=True)):
        bands = _read_stack(folder / "s2" / pid, (*BANDS, "SCL"), shape)
        truth = folder / "truth" / "s2_clear" / pid
        clear[d] = _read_stack(truth, BANDS, shape) if has_truth else bands[: len(BANDS)]
        scl = bands[-1].astype(np.uint8)
        valid[d] = validity_mask_from_scl(scl) & (bands[: len(BANDS)] > 0).all(axis=0)
        valid[d] &= (bands[: len(BANDS)] < 65535).all(axis=0)
        observed[d] = np.where(valid[d], bands[: len(BANDS)], 0.0)
    s1 = np.stack([_read_stack(folder / "s1" / pid, ("VV", "VH"), shape) for pid in s1_dates["id"]])
    return Season(
        s2_days=np.array([_day(d) for d in dates["datetime"]]),
        s2=clear * np.float32(1e-4),
        observed=observed * np.float32(1e-4),
        valid=valid,
        clear_fraction=valid.mean(axis=(1, 2)),
        cloud_share=dates["cloud_share"].to_numpy(),
        s1_days=np.array([_day(d) for d in s1_dates["datetime"]]),
        s1=s1,
    )


def _nearest_s1(season: Season, day: float, not_after: float) -> int | None:
    """The S1 the engine picks: nearest to `day` within `MAX_S1_OFFSET_DAYS`, none after
    `not_after` (t: the live engine never waits for a later radar); ties to the earlier."""
    offsets = np.abs(season.s1_days - day)
    offsets[season.s1_days > not_after] = np.inf
    k = int(np.argmin(offsets))
    return k if offsets[k] <= MAX_S1_OFFSET_DAYS else None


def _season_dir(data_dir: Path, seed: int) -> Path:
    """The simulated season of `seed` under `data_dir`, simulated first when missing."""
    folder = data_dir / NAME / f"seed-{seed}"
    if not (folder / "truth" / "s2_dates.parquet").is_file():
        simulate_season(folder, TILE_SIZE, N_PARCELS, 2025, seed, overwrite=True)
    return folder


def _usable_t0(season: Season, fraction: float = T0_CLEAR_FRACTION) -> Array:
    """Dates clear enough (SCL) to serve as t0: in the engine by default."""
    return np.flatnonzero(season.clear_fraction >= fraction)


def training_pairs(season: Season) -> list[tuple[int, int, int, int]]:
    """(t0 index, t index, S1 index at t0, S1 index at t) for every usable date pair."""
    pairs = []
    for i in _usable_t0(season, TRAIN_T0_FRACTION):
        d0 = season.s2_days[i]
        for j, d in enumerate(season.s2_days):
            if not 0 < d - d0 <= MAX_GAP_DAYS:
                continue
            k0, k = _nearest_s1(season, d0, d), _nearest_s1(season, d, d)
            if k0 is not None and k is not None:
                pairs.append((int(i), j, k0, k))
    return pairs


def _batch(
    seasons: list[Season], pairs: list[list[tuple[int, int, int, int]]], rng: np.random.Generator
) -> tuple[torch.Tensor, ...]:
    s2_t0 = np.empty((BATCH, len(BANDS), CROP, CROP), np.float32)
    s2_next = np.zeros_like(s2_t0)
    target = np.empty_like(s2_t0)
    weight = np.empty_like(s2_t0)
    s1_t = np.empty((BATCH, 2, CROP, CROP), np.float32)
    s1_t0 = np.empty_like(s1_t)
    timing = np.zeros((BATCH, 3), np.float32)
    for b in range(BATCH):
        s = int(rng.integers(len(seasons)))
        season = seasons[s]
        i, j, k0, k = pairs[s][int(rng.integers(len(pairs[s])))]
        r, c = rng.integers(0, TILE_SIZE - CROP, size=2)
        window = np.s_[:, r : r + CROP, c : c + CROP]
        pixels = np.s_[r : r + CROP, c : c + CROP]
        gain = rng.uniform(0.85, 1.15, size=(len(BANDS), 1, 1))
        offset = rng.uniform(-0.01, 0.01, size=(len(BANDS), 1, 1))
        # t0 as the engine gives it: observed (residual haze included), 0 where masked; the
        # masked pixels come out NaN at run time, so they carry no loss.
        s2_t0[b] = (season.observed[i][window] * gain + offset) * season.valid[i][pixels]
        weight[b] = season.valid[i][pixels]
        target[b] = season.s2[j][window] * gain + offset
        day = season.s2_days[j]
        timing[b, 0], timing[b, 2] = day - season.s2_days[i], int(day)
        usable = _usable_t0(season, TRAIN_T0_FRACTION)
        ahead = season.s2_days[usable] - day
        after = usable[(ahead > 0) & (ahead <= MAX_GAP_DAYS)]
        if len(after) and rng.random() < 0.5:  # half the examples in reprocessing mode
            n = int(rng.choice(after))
            s2_next[b] = (season.observed[n][window] * gain + offset) * season.valid[n][pixels]
            timing[b, 1] = season.s2_days[n] - day
        shared = rng.uniform(-2.0, 2.0, size=(2, 1, 1))
        speckle = rng.uniform(0.0, 1.2)
        for out, idx in ((s1_t, k), (s1_t0, k0)):
            noise = rng.normal(0.0, speckle, size=(2, CROP, CROP))
            out[b] = season.s1[idx][window] + shared + rng.uniform(-1.5, 1.5, (2, 1, 1)) + noise
        flips = rng.integers(0, 2, size=2)
        turns = int(rng.integers(4))
        for arr in (s2_t0, s2_next, target, weight, s1_t, s1_t0):
            tile = arr[b]
            if flips[0]:
                tile = tile[:, ::-1]
            if flips[1]:
                tile = tile[:, :, ::-1]
            arr[b] = np.rot90(tile, turns, axes=(1, 2))
    return tuple(torch.from_numpy(a) for a in (s2_t0, s2_next, s1_t, s1_t0, timing, target, weight))


def _block_mean_error(
    reflectance: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Mean absolute error of `BLOCK`-px block means: the engine reports parcel means, where
    pixel noise averages out but a bias does not."""
    pooled = torch.nn.functional.avg_pool2d
    mass = pooled(weight, BLOCK)
    error = pooled((reflectance - target) * weight, BLOCK) / mass.clamp(min=1e-3)
    return (error.abs() * mass).sum() / mass.sum().clamp(min=1e-3)


def train(data_dir: Path, out_dir: Path, *, seed: int, epochs: int | None) -> Path:
    """Trains on the simulated seasons `TRAIN_SEEDS` and writes `out_dir/cloud_removal.pt`."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    seasons = [load_season(_season_dir(data_dir, s)) for s in TRAIN_SEEDS]
    pairs = [training_pairs(s) for s in seasons]
    print(f"{NAME}: {sum(len(p) for p in pairs)} date pairs from {len(seasons)} seasons")
    model = CloudRemovalNet(WIDTH)
    steps = (epochs or DEFAULT_EPOCHS) * STEPS_PER_EPOCH
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-3, total_steps=steps)
    start, running = time.monotonic(), 0.0
    for step in range(1, steps + 1):
        *inputs, target, weight = _batch(seasons, pairs, rng)
        reflectance, uncertainty = model(*inputs)
        # NLL trains both heads; the L1 term keeps the mean honest where the scale is large.
        # Pixels masked at t0 get no prediction at run time: no loss either.
        loss = (
            laplace_nll(reflectance, uncertainty, target, weight)
            + 10.0 * ((reflectance - target).abs() * weight).sum() / weight.sum().clamp(min=1.0)
            + 20.0 * _block_mean_error(reflectance, target, weight)
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        running += loss.item()
        if step % STEPS_PER_EPOCH == 0:
            mae = (((reflectance - target).abs() * weight).sum() / weight.sum()).item()
            print(
                f"step {step}/{steps} loss {running / STEPS_PER_EPOCH:.4f} batch MAE {mae:.4f} "
                f"({time.monotonic() - start:.0f} s)",
                flush=True,
            )
            running = 0.0
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / f"{NAME}.pt"
    torch.save({"width": WIDTH, "state_dict": model.state_dict()}, checkpoint)
    return checkpoint


def load_checkpoint(checkpoint: Path) -> CloudRemovalNet:
    """The trained network of a checkpoint written by `train`, in eval mode."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = CloudRemovalNet(int(saved["width"]))
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def export_model(model: CloudRemovalNet, onnx_path: Path, tile: int | None = TILE) -> None:
    """ONNX, opset 17, dynamic batch; tiles of `tile`² px, or any multiple of 8 when None.

    The shipped file has a fixed tile: TensorRT engines take a dynamic batch axis only.
    """
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    n, size = 2, tile or 64
    example = (
        torch.zeros(n, len(BANDS), size, size),
        torch.zeros(n, len(BANDS), size, size),
        torch.zeros(n, 2, size, size),
        torch.zeros(n, 2, size, size),
        torch.tensor([[10.0, 0.0, 100.0]] * n),
    )
    spatial = {0: "batch"} if tile else {0: "batch", 2: "height", 3: "width"}
    axes = dict.fromkeys(INPUT_NAMES[:4] + OUTPUT_NAMES, spatial) | {"timing": {0: "batch"}}
    # The TorchScript exporter: the torch.export one needs onnxscript, which we do not ship, and
    # gains nothing on a plain convolutional network. PyTorch >= 2.9 flags it and its internals
    # as deprecated, hence the filter around this call only.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model.eval(),
            example,
            str(onnx_path),
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def export(checkpoint: Path, onnx_path: Path) -> None:
    export_model(load_checkpoint(checkpoint), onnx_path)


# --- evaluation -----------------------------------------------------------------------------


def mae(pred: Array, truth: Array) -> float:
    return float(np.mean(np.abs(pred - truth)))


def psnr(pred: Array, truth: Array, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, peak = reflectance 1."""
    mse = float(np.mean((pred - truth) ** 2))
    return 10.0 * math.log10(peak**2 / max(mse, 1e-12))


def _gaussian_blur(image: Array, sigma: float = 1.5, radius: int = 5) -> Array:
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    out = image
    for axis in (-2, -1):
        padded = np.pad(out, [(0, 0)] * (out.ndim - 2) + [(radius, radius)] * 2, mode="reflect")
        acc = np.zeros_like(out)
        for k, w in enumerate(taps):
            sl = [slice(None)] * out.ndim
            sl[axis] = slice(k, k + out.shape[axis])
            other = -1 if axis == -2 else -2
            sl[other] = slice(radius, radius + out.shape[other])
            acc += w * padded[tuple(sl)]
        out = acc
    return out


def ssim(pred: Array, truth: Array, data_range: float = 1.0) -> float:
    """Mean structural similarity (Wang et al. 2004; Gaussian window, sigma 1.5), `[C, H, W]`."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    x, y = pred.astype(np.float64), truth.astype(np.float64)
    mx, my = _gaussian_blur(x), _gaussian_blur(y)
    vx = _gaussian_blur(x * x) - mx * mx
    vy = _gaussian_blur(y * y) - my * my
    cov = _gaussian_blur(x * y) - mx * my
    index = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(index.mean())


def spectral_angle(pred: Array, truth: Array) -> float:
    """Mean spectral angle (degrees) between predicted and true spectra `[C, H, W]`."""
    dot = np.sum(pred * truth, axis=0)
    norms = np.linalg.norm(pred, axis=0) * np.linalg.norm(truth, axis=0)
    cos = np.clip(dot / np.maximum(norms, 1e-12), -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)).mean())


METRICS = {"MAE": mae, "PSNR_dB": psnr, "SSIM": ssim, "SAM_deg": spectral_angle}


def _scores(pred: Array, truth: Array, keep: Array) -> dict[str, float]:
    """Metrics on the pixels `keep` (SSIM: on the whole image)."""
    return {
        name: fn(pred, truth) if name == "SSIM" else fn(pred[:, keep], truth[:, keep])
        for name, fn in METRICS.items()
    }


def _predict(
    onnx_path: Path,
    s2_t0: Array,
    s1_t: Array,
    s1_t0: Array,
    timing: tuple[float, float, int],
    s2_next: Array | None = None,
    coarsen: int = 1,
) -> Array:
    """The model's prediction everywhere (every pixel marked cloudy), through `reconstruct`."""
    from monitor.cloud_removal import reconstruct
    from monitor.infer import load_model

    gap, next_gap, day = timing
    model = load_model(onnx_path)
    valid = np.zeros(s2_t0.shape[1:], dtype=bool)
    observed = np.full_like(s2_t0, np.nan)
    result = reconstruct(
        observed,
        s2_t0,
        s1_t,
        s1_t0,
        gap,
        valid,
        day_of_year=day,
        next_clear=s2_next,
        next_gap_days=next_gap if s2_next is not None else None,
        model=model,
        coarsen=coarsen,
    )
    return result.reflectance


def evaluate_simulated(onnx_path: Path, data_dir: Path) -> dict[str, dict[str, list[float]]]:
    """Scores per method on every cloudy date of the held-out seasons with clear dates around.

    As in the engine: t0 is the last date before t that the SCL calls clear enough, given as
    observed (residual haze included, NaN where masked); the S1 are picked by the engine's
    rule. Scores on the pixels valid at t0 and at the next clear date (SSIM over the whole
    image, the other pixels set to the truth for every method alike).
    """
    scores: dict[str, dict[str, list[float]]] = {}
    for seed in HELD_OUT_SEEDS:
        season = load_season(_season_dir(data_dir, seed))
        usable = _usable_t0(season)
        for j in np.flatnonzero(season.cloud_share >= CLOUDY_SHARE):
            day = season.s2_days[j]
            before = [i for i in usable if 0 < day - season.s2_days[i] <= MAX_GAP_DAYS]
            after = [i for i in usable if 0 < season.s2_days[i] - day <= MAX_GAP_DAYS]
            if not before or not after:
                continue
            i0, i1 = before[-1], after[0]
            d0, d1 = season.s2_days[i0], season.s2_days[i1]
            k, k0 = _nearest_s1(season, day, day), _nearest_s1(season, d0, day)
            if k is None or k0 is None:
                continue
            weight = (day - d0) / (d1 - d0)
            truth = season.s2[j]
            keep = season.valid[i0] & season.valid[i1]
            t0 = np.where(season.valid[i0], season.observed[i0], np.nan)
            t1 = np.where(season.valid[i1], season.observed[i1], np.nan)
            args = (onnx_path, t0, season.s1[k], season.s1[k0])
            predictions = {
                "model (t0 only)": _predict(*args, (float(day - d0), 0.0, int(day))),
                "copy_last_clear": t0,
                "model (t0 + next clear)": _predict(
                    *args, (float(day - d0), float(d1 - day), int(day)), t1
                ),
                "linear_interpolation": (1 - weight) * t0 + weight * t1,
            }
            for method, pred in predictions.items():
                for metric, value in _scores(np.where(keep, pred, truth), truth, keep).items():
                    scores.setdefault(method, {}).setdefault(metric, []).append(value)
    return scores


def parcel_labels(folder: Path) -> Array:
    """`[H, W]` parcel number (1..n) of every pixel of a simulated season, 0 off parcels
    (`truth/units.tif`: a parcel may hold several cover units)."""
    units = pl.read_parquet(folder / "truth" / "units.parquet")
    with rasterio.open(folder / "truth" / "units.tif") as src:
        unit_raster = src.read(1)[:TILE_SIZE, :TILE_SIZE]
    ids = units.get_column("id_parcel")
    number = ids.rank("dense").fill_null(0).cast(pl.Int64).to_numpy()
    unit = units.get_column("unit").to_numpy()
    lookup = np.zeros(int(unit.max()) + 1, dtype=np.int64)
    lookup[unit] = number
    labels: Array = lookup[unit_raster]
    return labels


def _parcel_means(image: Array, labels: Array, n: int) -> tuple[Array, Array]:
    """`[B, n]` means of the finite pixels of each parcel, and their pixel counts `[n]`."""
    finite = np.isfinite(image).all(axis=0) & (labels > 0)
    where = labels[finite]
    count = np.bincount(where, minlength=n)
    sums = np.stack([np.bincount(where, weights=band[finite], minlength=n) for band in image])
    return sums / np.maximum(count, 1), count


def evaluate_parcel_means(onnx_path: Path, data_dir: Path) -> dict[str, list[float]]:
    """Parcel-mean MAE per held-out date: the engine reports parcel means, not pixels.

    The dates, t0 and radar of `evaluate_simulated`, every pixel treated as cloudy (a fully
    overcast date); each method's parcel mean over the pixels clear at t0 (those the engine
    reconstructs, and those copying t0 can use) against the true clear-sky mean over all the
    parcel's pixels, for the parcels with such a pixel. The model at 10 m and at 20 m
    (`reconstruct(..., coarsen=2)`, what `ReconstructionConfig.resolution_m=20` runs).
    """
    errors: dict[str, list[float]] = {}
    for seed in HELD_OUT_SEEDS:
        folder = _season_dir(data_dir, seed)
        season = load_season(folder)
        labels = parcel_labels(folder)
        n = int(labels.max()) + 1
        usable = _usable_t0(season)
        for j in np.flatnonzero(season.cloud_share >= CLOUDY_SHARE):
            day = season.s2_days[j]
            before = [i for i in usable if 0 < day - season.s2_days[i] <= MAX_GAP_DAYS]
            if not before:
                continue
            i0 = before[-1]
            d0 = season.s2_days[i0]
            k, k0 = _nearest_s1(season, day, day), _nearest_s1(season, d0, day)
            if k is None or k0 is None:
                continue
            t0 = np.where(season.valid[i0], season.observed[i0], np.nan)
            truth, _ = _parcel_means(season.s2[j], labels, n)
            args = (onnx_path, t0, season.s1[k], season.s1[k0], (float(day - d0), 0.0, int(day)))
            predictions = {
                "model 10 m": _predict(*args),
                "model 20 m": _predict(*args, coarsen=2),
                "copy_last_clear": t0,
            }
            for method, pred in predictions.items():
                means, count = _parcel_means(pred, labels, n)
                seen = count > 0
                seen[0] = False
                errors.setdefault(method, []).append(mae(means[:, seen], truth[:, seen]))
    return errors


def mol_pair() -> tuple[Array, Array, Array, Array, Array, float]:
    """The real Mol pair: (S2 04-05, S2 04-15, S1 04-15, S1 04-05, pixels clear on both, gap)."""
    from monitor.cloud_removal import s1_stack, s2_reflectance
    from monitor.kernels import validity_mask_from_scl
    from monitor.raster import read_acquisition
    from monitor.stac import read_item

    def read(kind: str, pid: str, bands: tuple[str, ...]) -> Any:
        return read_acquisition(read_item(MOL / kind / pid / "item.json"), bands)

    t0 = read("s2", "S2_31UFS_20230405_L2A", (*BANDS, "SCL"))
    t = read("s2", "S2_31UFS_20230415_L2A", (*BANDS, "SCL"))
    s1_t = s1_stack(read("s1", "S1_IW_GRD_31UFS_20230415", ("VV", "VH")))
    s1_t0 = s1_stack(read("s1", "S1_IW_GRD_31UFS_20230405", ("VV", "VH")))
    clear = validity_mask_from_scl(t0.bands["SCL"].data) & validity_mask_from_scl(
        t.bands["SCL"].data
    )
    return s2_reflectance(t0, BANDS), s2_reflectance(t, BANDS), s1_t, s1_t0, clear, 10.0


def evaluate_mol(onnx_path: Path) -> dict[str, dict[str, float]]:
    """Scores on the pixels clear on both real dates (SSIM over the whole image); the model at
    10 m and at 20 m, and the MAE of 8 x 8 px segment means (parcel-sized: 0.64 ha)."""
    s2_t0, s2_t, s1_t, s1_t0, clear, gap = mol_pair()
    if not clear.any():
        raise ModelError("the Mol pair has no pixel clear on both dates")
    args = (onnx_path, s2_t0, s1_t, s1_t0, (gap, 0.0, MOL_DAY))
    predictions = {
        "model (t0 only)": _predict(*args),
        "model (t0 only) 20 m": _predict(*args, coarsen=2),
        "copy_last_clear": s2_t0,
    }
    height, width = clear.shape
    rows, cols = np.indices((height, width))
    segments = 1 + (rows // SEGMENT) * (width // SEGMENT + 1) + cols // SEGMENT
    segments[~clear] = 0
    n = int(segments.max()) + 1
    truth_means, count = _parcel_means(s2_t, segments, n)
    seen = count > 0
    seen[0] = False
    out = {}
    for method, pred in predictions.items():
        scores = {
            "MAE": mae(pred[:, clear], s2_t[:, clear]),
            "PSNR_dB": psnr(pred[:, clear], s2_t[:, clear]),
            "SSIM": ssim(pred, s2_t),
            "SAM_deg": spectral_angle(pred[:, clear], s2_t[:, clear]),
            "segment_MAE": mae(_parcel_means(pred, segments, n)[0][:, seen], truth_means[:, seen]),
        }
        out[method] = scores
    return out


def evaluate(onnx_path: Path, data_dir: Path) -> list[EvaluationRow]:
    """Held-out simulated seasons and the real Mol pair, model against its baselines."""
    rows = []
    simulated = evaluate_simulated(onnx_path, data_dir)
    seeds = ",".join(str(s) for s in HELD_OUT_SEEDS)
    for method, metrics in simulated.items():
        for metric, values in metrics.items():
            dataset = f"sim seeds {seeds} (n={len(values)})"
            rows.append(EvaluationRow(NAME, dataset, method, metric, float(np.mean(values))))
    for method, values in evaluate_parcel_means(onnx_path, data_dir).items():
        dataset = f"sim seeds {seeds} parcel means (n={len(values)})"
        rows.append(EvaluationRow(NAME, dataset, method, "MAE", float(np.mean(values))))
    for method, scores in evaluate_mol(onnx_path).items():
        for metric, value in scores.items():
            rows.append(EvaluationRow(NAME, "mol-2023 04-05->04-15", method, metric, value))
    return rows
