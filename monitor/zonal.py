"""One acquisition and a parcel set in, the parcel observation table of that acquisition out.

The steps of the engine's per-acquisition path that need no Kafka: reproject and clip the
parcels to the acquisition's grid, build (or load from the cache) the label raster, read the
bands with rasterio, mask clouds with the SCL when the item has one, and compute the zonal
statistics in one Rust pass. Parcels whose pixel centres all fall outside the grid (slivers
at the tile edge, parcels smaller than a pixel) get no row.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from monitor.kernels import DEFAULT_INVALID_SCL, validity_mask_from_scl, zonal_statistics
from monitor.labels import LabelRaster, build_label_raster, cached_label_raster
from monitor.observations import BANDS, validate_observations
from monitor.parcels import ParcelSet
from monitor.raster import AcquisitionRasters, read_acquisition
from monitor.stac import Acquisition

log = logging.getLogger(__name__)

#: Assets that are statistics bands; anything else (SCL, AOT, WVP, previews) is not.
STAT_BANDS = frozenset(BANDS) - {"NDVI"}


@dataclass(frozen=True)
class MaskConfig:
    """How the validity mask is made from the SCL: invalid classes and dilation in pixels."""

    invalid_classes: Sequence[int] = DEFAULT_INVALID_SCL
    dilation: int = 0


@dataclass(frozen=True)
class ParcelGrid:
    """Parcels of one grid: their ids (row order of the label raster) and the label raster."""

    ids: np.ndarray
    labels: LabelRaster


def grid_key(acq: Acquisition, parcels: ParcelSet, coverage: bool) -> str:
    """Cache key of a label raster: tile, grid (CRS, transform, shape), parcel-set version."""
    grid = f"{acq.epsg}|{acq.transform}|{acq.shape}|{coverage}".encode()
    digest = hashlib.sha256(grid + parcels.version.encode()).hexdigest()[:24]
    return f"{acq.tile}-{digest}"


def parcel_grid(
    acq: Acquisition,
    parcels: ParcelSet,
    *,
    cache_dir: Path | None = None,
    coverage: bool = False,
) -> ParcelGrid:
    """The parcels overlapping `acq`'s grid, in its CRS, with their label raster (cached)."""
    local = parcels.to_crs(acq.epsg)
    clipped, _ = local.clip_to_bounds(acq.bounds, tile=acq.tile, epsg=acq.epsg)
    height, width = acq.shape

    def build() -> LabelRaster:
        return build_label_raster(
            clipped.geometries, height, width, acq.transform, coverage=coverage
        )

    if cache_dir is None:
        labels = build()
    else:
        labels = cached_label_raster(cache_dir, grid_key(acq, clipped, coverage), build)
    return ParcelGrid(ids=clipped.ids, labels=labels)


@dataclass(frozen=True)
class Observation:
    """An acquisition's observation table with the rasters and validity mask behind it.

    The inference stages reuse the rasters (cloud removal, pixel sets) instead of reading the
    assets a second time; `valid` is None where the item has no SCL (Sentinel-1).
    """

    table: pl.DataFrame
    rasters: AcquisitionRasters
    valid: np.ndarray | None


def observe(
    acq: Acquisition,
    grid: ParcelGrid,
    *,
    mask: MaskConfig | None = None,
    weighted_mean: bool = False,
) -> pl.DataFrame:
    """The observation table of `acq` for the parcels of `grid` (one row per parcel)."""
    return observe_with_rasters(acq, grid, mask=mask, weighted_mean=weighted_mean).table


def observe_with_rasters(
    acq: Acquisition,
    grid: ParcelGrid,
    *,
    mask: MaskConfig | None = None,
    weighted_mean: bool = False,
) -> Observation:
    """`observe`, keeping the rasters read and the validity mask for the inference stages."""
    mask = mask or MaskConfig()
    names = [name for name in acq.assets if name in STAT_BANDS]
    with_scl = acq.sensor == "S2" and "SCL" in acq.assets
    rasters = read_acquisition(acq, [*names, "SCL"] if with_scl else names)
    if rasters.empty_bands:
        log.warning("%s: no valid pixel in %s", acq.product_id, ", ".join(rasters.empty_bands))
    valid = None
    if with_scl:
        scl = rasters.bands["SCL"].data
        valid = validity_mask_from_scl(scl, mask.invalid_classes, mask.dilation)
    bands = {name: rasters.bands[name] for name in names}
    stats = zonal_statistics(
        grid.labels,
        {name: band.data for name, band in bands.items()},
        valid,
        scales={name: band.scale for name, band in bands.items()},
        offsets={name: band.offset for name, band in bands.items()},
        nodata={name: band.nodata for name, band in bands.items()},
        ndvi=("B04", "B08") if {"B04", "B08"} <= bands.keys() else None,
        weighted_mean=weighted_mean,
    )
    stats = stats.filter(pl.col("pixel_count") > 0)
    skipped = grid.labels.n_parcels - stats.height
    if skipped:
        log.info("%s: %d parcels have no pixel centre on the grid", acq.product_id, skipped)
    index = stats.get_column("parcel_index").to_numpy()
    table = stats.drop("parcel_index").with_columns(
        pl.Series("parcel_id", grid.ids[index].astype(str)),
        pl.lit(acq.acquired).alias("acquired"),
        pl.lit(acq.sensor).alias("sensor"),
        pl.lit(acq.product_id).alias("product_id"),
        pl.lit(acq.tile).alias("tile"),
        pl.lit("observed").alias("source"),
    )
    return Observation(validate_observations(table), rasters, valid)
