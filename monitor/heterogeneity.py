"""Heterogeneity of declared parcels: the probability that a parcel holds more than one cover.

The model (`monitor/artifacts/heterogeneity.onnx`, PSE-TAE family, see its model card) looks at
NDVI pixel sets: per acquisition, `N_PIXELS` valid pixels drawn at random inside each parcel.
Feeding it takes three steps:

1. per Sentinel-2 acquisition, `s2_pixel_sets(acq, grid)` (or `ndvi_pixel_sets(labels, ndvi,
   valid, day)` for an NDVI raster) gives a `DatePixelSets` for every parcel of the grid;
2. `PixelSetSeries.stack(dates)` stacks the season so far, in acquisition order;
3. `heterogeneity_probability(series)` returns one probability per parcel (NaN for a parcel
   with fewer than `MIN_DATES` usable dates: no evidence yet); above `DECISION_THRESHOLD` the
   parcel is reported heterogeneous.

A date is usable for a parcel when at least `MIN_VALID_FRACTION` of its pixels and at least
`MIN_VALID_PIXELS` pixels are valid (cloud-free by the SCL); the model sees the last `N_DATES`
usable dates of each parcel. `season_pixel_sets(acquisitions, parcels)` does steps 1-2 for a
list of acquisitions of one grid. `std_rule_score(series)` is the operational baseline: the
mean over the same dates of the within-parcel NDVI standard deviation.

NDVI only, on purpose: it is the one band every archive and sample has (the real Slovenian check
is NDVI only), and the within-parcel spread of cover shows in it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from monitor.errors import ConfigError, ModelError
from monitor.infer import Model, load_model
from monitor.kernels import (
    LabelRaster,
    pixel_sets,
    validity_mask_from_scl,
    zonal_statistics,
)
from monitor.parcels import ParcelSet
from monitor.raster import Band, read_acquisition
from monitor.stac import Acquisition
from monitor.zonal import MaskConfig, ParcelGrid, grid_key, parcel_grid

F32 = npt.NDArray[np.float32]
Bool = npt.NDArray[np.bool_]

MODEL_NAME = "heterogeneity"
#: Dates the model sees per parcel (the last usable ones of the season so far).
N_DATES = 32
#: Pixels per set (per parcel and date).
N_PIXELS = 32
MIN_VALID_FRACTION = 0.5
MIN_VALID_PIXELS = 4
#: Fewer usable dates than this: no probability (NaN).
MIN_DATES = 3
#: Probability above which a parcel is reported heterogeneous: the best-F1 threshold, scored
#: monthly as the engine does, on validation seeds whose merged parcels have the between-cover
#: contrast measured on real fields, not the simulator's larger one (see the model card;
#: `parcel-monitor evaluate heterogeneity` prints it).
DECISION_THRESHOLD = 0.196
#: Parcels per model call. The model's activations are [batch, N_DATES, N_PIXELS, 32] floats:
#: at 256 parcels they stay in cache, at 4096 (the earlier default) they spill to memory and
#: ONNX Runtime runs ~3x slower per parcel (`benchmarks/heterogeneity_inference.py`).
DEFAULT_BATCH = 256
#: Model inputs, in the order of the ONNX graph.
INPUT_NAMES = ("pixels", "pixel_mask", "date_mask", "day_of_year")


@dataclass(frozen=True)
class DatePixelSets:
    """One acquisition, every parcel of its grid: NDVI pixel sets and the zonal NDVI spread."""

    day_of_year: float
    ndvi: F32  # [P, S], 0 on padding
    mask: Bool  # [P, S], True = real pixel
    valid_fraction: F32  # [P], valid pixels / pixels of the parcel
    ndvi_std: F32  # [P], std of NDVI over all valid pixels (NaN: none)


@dataclass(frozen=True)
class PixelSetSeries:
    """The season so far for P parcels: D dates of `DatePixelSets`, stacked in date order."""

    day_of_year: F32  # [D]
    ndvi: F32  # [P, D, S]
    mask: Bool  # [P, D, S]
    valid_fraction: F32  # [P, D]
    ndvi_std: F32  # [P, D]

    @classmethod
    def stack(cls, dates: Sequence[DatePixelSets]) -> PixelSetSeries:
        """Stack dates (in acquisition order) of the same parcels."""
        if not dates:
            raise ConfigError("heterogeneity needs at least one date of pixel sets")
        shapes = {d.ndvi.shape for d in dates}
        if len(shapes) != 1:
            raise ConfigError(f"pixel sets of different parcels or sizes: shapes {sorted(shapes)}")
        return cls(
            day_of_year=np.array([d.day_of_year for d in dates], dtype=np.float32),
            ndvi=np.stack([d.ndvi for d in dates], axis=1),
            mask=np.stack([d.mask for d in dates], axis=1),
            valid_fraction=np.stack([d.valid_fraction for d in dates], axis=1),
            ndvi_std=np.stack([d.ndvi_std for d in dates], axis=1),
        )

    @property
    def n_parcels(self) -> int:
        return int(self.ndvi.shape[0])

    def usable(self) -> Bool:
        """`[P, D]`: dates clear enough to count for each parcel."""
        usable: Bool = (self.valid_fraction >= MIN_VALID_FRACTION) & (
            self.mask.sum(axis=2) >= MIN_VALID_PIXELS
        )
        return usable

    def take(self, parcels: npt.NDArray[np.intp]) -> PixelSetSeries:
        """The series of a subset of parcels (row indices)."""
        return PixelSetSeries(
            self.day_of_year,
            self.ndvi[parcels],
            self.mask[parcels],
            self.valid_fraction[parcels],
            self.ndvi_std[parcels],
        )


def ndvi_pixel_sets(
    labels: LabelRaster,
    ndvi: npt.NDArray[np.floating[Any]],
    valid: npt.NDArray[np.bool_] | None,
    day_of_year: float,
    *,
    n_samples: int = N_PIXELS,
    seed: int = 0,
) -> DatePixelSets:
    """Pixel sets of an NDVI raster (NaN = no data) on the grid of `labels`."""
    bands = {"NDVI": np.asarray(ndvi, dtype=np.float32)}
    stats = zonal_statistics(labels, bands, valid, ndvi=None)
    sets = pixel_sets(labels, bands, valid, n_samples=n_samples, seed=seed)
    return DatePixelSets(
        day_of_year=float(day_of_year),
        ndvi=sets.values[:, :, 0],
        mask=sets.mask,
        valid_fraction=stats["valid_fraction"].to_numpy().astype(np.float32),
        ndvi_std=stats["NDVI_std"].to_numpy().astype(np.float32),
    )


def ndvi_sample(
    labels: LabelRaster,
    bands: Mapping[str, Band],
    valid: Bool,
    acq: Acquisition,
    *,
    n_samples: int = N_PIXELS,
) -> tuple[F32, Bool]:
    """NDVI of `n_samples` valid pixels per parcel from the B04 and B08 `bands` already read,
    and which samples hold a pixel. The draw is seeded by the acquisition day, so re-running
    (or the engine's stage, from the rasters it read) gives the same sets."""
    sets = pixel_sets(
        labels,
        {n: b.data for n, b in bands.items()},
        valid,
        n_samples=n_samples,
        seed=acq.acquired.toordinal(),
        scales={n: b.scale for n, b in bands.items()},
        offsets={n: b.offset for n, b in bands.items()},
        nodata={n: b.nodata for n, b in bands.items()},
    )
    red, nir = sets.values[..., 0], sets.values[..., 1]
    total = red + nir
    keep = sets.mask & (total > 0)  # NDVI is undefined there, as in the zonal statistics
    ndvi = np.where(keep, (nir - red) / np.where(keep, total, 1.0), 0.0).astype(np.float32)
    return ndvi, keep


def s2_pixel_sets(
    acq: Acquisition,
    grid: ParcelGrid,
    *,
    mask: MaskConfig | None = None,
    n_samples: int = N_PIXELS,
) -> DatePixelSets:
    """Pixel sets of a Sentinel-2 L2A acquisition (B04, B08, SCL) for the parcels of `grid`.

    The draw is seeded by the acquisition day, so re-running gives the same sets.
    """
    if acq.sensor != "S2" or not {"B04", "B08", "SCL"} <= acq.assets.keys():
        raise ConfigError(f"item {acq.product_id!r}: heterogeneity needs S2 B04, B08 and SCL")
    mask = mask or MaskConfig()
    rasters = read_acquisition(acq, ["B04", "B08", "SCL"])
    valid = validity_mask_from_scl(rasters.bands["SCL"].data, mask.invalid_classes, mask.dilation)
    bands = {name: rasters.bands[name] for name in ("B04", "B08")}
    stats = zonal_statistics(
        grid.labels,
        {n: b.data for n, b in bands.items()},
        valid,
        ndvi=("B04", "B08"),
        scales={n: b.scale for n, b in bands.items()},
        offsets={n: b.offset for n, b in bands.items()},
        nodata={n: b.nodata for n, b in bands.items()},
    )
    ndvi, keep = ndvi_sample(grid.labels, bands, valid, acq, n_samples=n_samples)
    return DatePixelSets(
        day_of_year=float(acq.acquired.timetuple().tm_yday),
        ndvi=ndvi,
        mask=keep,
        valid_fraction=stats["valid_fraction"].to_numpy().astype(np.float32),
        ndvi_std=stats["NDVI_std"].to_numpy().astype(np.float32),
    )


def season_pixel_sets(
    acquisitions: Sequence[Acquisition],
    parcels: ParcelSet,
    *,
    mask: MaskConfig | None = None,
    n_samples: int = N_PIXELS,
) -> tuple[npt.NDArray[np.object_], PixelSetSeries]:
    """Parcel ids and the stacked pixel sets of the S2 acquisitions (one grid) in time order.

    Other sensors are skipped; acquisitions on different grids (tiles) are refused: call once
    per tile.
    """
    s2 = sorted((a for a in acquisitions if a.sensor == "S2"), key=lambda a: a.acquired)
    if not s2:
        raise ConfigError("heterogeneity needs at least one Sentinel-2 acquisition")
    grid = parcel_grid(s2[0], parcels)
    key = grid_key(s2[0], parcels, False)
    for acq in s2[1:]:
        if grid_key(acq, parcels, False) != key:
            raise ConfigError(
                f"item {acq.product_id!r} is not on the grid of {s2[0].product_id!r}: "
                "build heterogeneity inputs one tile at a time"
            )
    dates = [s2_pixel_sets(acq, grid, mask=mask, n_samples=n_samples) for acq in s2]
    return grid.ids, PixelSetSeries.stack(dates)


def select_dates(usable: Bool, n_dates: int = N_DATES) -> tuple[Bool, npt.NDArray[np.intp]]:
    """Per parcel, the last `n_dates` usable dates: `keep [P, D]` and their slot `[P, D]`.

    Slots count the kept dates in time order from 0 (meaningful only where `keep`).
    """
    from_end = np.cumsum(usable[:, ::-1], axis=1)[:, ::-1]
    keep = usable & (from_end <= n_dates)
    slot = np.cumsum(keep, axis=1) - 1
    return keep, slot


def model_inputs(
    series: PixelSetSeries, usable: Bool | None = None, n_dates: int = N_DATES
) -> dict[str, F32]:
    """The model's input arrays for every parcel of `series` (dates: `select_dates`); sets
    of fewer than `N_PIXELS` pixels are padded (masked)."""
    n, _, s = series.ndvi.shape
    if s > N_PIXELS:
        raise ConfigError(f"pixel sets of {s} pixels: the model takes at most {N_PIXELS}")
    usable = series.usable() if usable is None else usable
    keep, slot = select_dates(usable, n_dates)
    pixels = np.zeros((n, n_dates, N_PIXELS, 1), dtype=np.float32)
    pixel_mask = np.zeros((n, n_dates, N_PIXELS), dtype=np.float32)
    date_mask = np.zeros((n, n_dates), dtype=np.float32)
    day_of_year = np.zeros((n, n_dates), dtype=np.float32)
    rows, cols = np.nonzero(keep)
    slots = slot[rows, cols]
    pixels[rows, slots, :s, 0] = series.ndvi[rows, cols]
    pixel_mask[rows, slots, :s] = series.mask[rows, cols]
    date_mask[rows, slots] = 1.0
    day_of_year[rows, slots] = series.day_of_year[cols]
    return {
        "pixels": pixels,
        "pixel_mask": pixel_mask,
        "date_mask": date_mask,
        "day_of_year": day_of_year,
    }


@functools.cache
def _shipped_model() -> Model:
    return load_model(MODEL_NAME)


def heterogeneity_probability(
    series: PixelSetSeries, model: Model | None = None, *, batch: int = DEFAULT_BATCH
) -> npt.NDArray[np.float64]:
    """P(parcel holds more than one cover) per parcel of `series`; NaN with < `MIN_DATES`
    usable dates. `model` defaults to the shipped ONNX artifact on ONNX Runtime."""
    model = model or _shipped_model()
    usable = series.usable()
    out = np.full(series.n_parcels, np.nan)
    enough = np.flatnonzero(np.minimum(usable.sum(axis=1), N_DATES) >= MIN_DATES)
    for start in range(0, len(enough), batch):
        rows = enough[start : start + batch]
        part = series.take(rows)
        result = model.run(model_inputs(part, usable[rows]))
        if "logit" not in result:
            raise ModelError(f"model {model.name} has no 'logit' output")
        out[rows] = 1.0 / (1.0 + np.exp(-result["logit"].astype(np.float64)))
    return out


def std_rule_score(series: PixelSetSeries, usable: Bool | None = None) -> npt.NDArray[np.float64]:
    """Operational homogeneity marker: mean within-parcel NDVI std over the dates the model
    would see (NaN with fewer than `MIN_DATES`). Higher = more likely heterogeneous."""
    usable = series.usable() if usable is None else usable
    keep, _ = select_dates(usable)
    std = np.where(keep, np.nan_to_num(series.ndvi_std.astype(np.float64)), 0.0)
    count = keep.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = std.sum(axis=1) / count
    return np.where(count >= MIN_DATES, score, np.nan)
