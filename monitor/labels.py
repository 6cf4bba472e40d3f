"""Parcel label rasters: which parcel each pixel of a grid belongs to, and how much of each
cell every parcel covers. Built once per tile grid and parcel-set version, then reused.

Rules (implemented in `rust_core`):

* A pixel belongs to a parcel when its centre lies inside the polygon (holes excluded), the rule
  of `rasterio.features.rasterize(..., all_touched=False)`; where parcels overlap, the first
  parcel in input order keeps the pixel.
* Coverage fractions are exact: `area(parcel ∩ cell) / area(cell)` for every cell a parcel
  touches, as exactextract computes them; overlapping parcels each keep their share.
* Parts outside the grid are clipped; an empty geometry (or `None`) gets no pixels.
* Invalid polygons are refused (`ParcelError` naming the parcel), not repaired: repairing
  silently changes a declared parcel, which the agency should decide (`shapely.make_valid`).
"""

import logging
import os
import re
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import shapely

from monitor import _core
from monitor._core import LabelRaster
from monitor.errors import AssetError, ConfigError, KernelError, ParcelError

__all__ = [
    "LabelRaster",
    "build_label_raster",
    "cached_label_raster",
    "load_label_raster",
    "save_label_raster",
]

log = logging.getLogger(__name__)

_POLYGON, _MULTIPOLYGON = 3, 6
_CACHE_KEY = re.compile(r"[A-Za-z0-9._-]{1,200}")


def build_label_raster(
    geometries: npt.ArrayLike,
    height: int,
    width: int,
    transform: Sequence[float],
    *,
    coverage: bool = True,
) -> LabelRaster:
    """Label raster of `geometries` (shapely Polygons/MultiPolygons, one per parcel, already in
    the grid's CRS) on a `height` x `width` grid with north-up `transform` (an `affine.Affine`
    or `[a, b, c, d, e, f]`); with exact coverage fractions unless `coverage=False`."""
    geoms = np.asarray(geometries, dtype=object)
    if geoms.ndim != 1:
        raise ParcelError(f"parcel geometries must be a 1-d array, got shape {geoms.shape}")
    six = _six_terms(transform)
    coords, ring_offsets, polygon_offsets, geometry_offsets = _ragged_multipolygons(geoms)
    try:
        return _core.build_label_raster(
            coords,
            ring_offsets,
            polygon_offsets,
            geometry_offsets,
            height,
            width,
            six,
            coverage,
        )
    except (ValueError, OverflowError) as e:
        raise KernelError(f"label raster: {e}") from e


def save_label_raster(raster: LabelRaster, path: str | os.PathLike[str]) -> None:
    """Writes `raster` to `path` atomically (temporary file in the same folder, then rename)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        raster.save(tmp)
        os.replace(tmp, target)
    except OSError as e:
        raise AssetError(f"cannot write label raster {target}: {e}") from e
    finally:
        tmp.unlink(missing_ok=True)


def load_label_raster(path: str | os.PathLike[str]) -> LabelRaster:
    """Reads a label raster written by `save_label_raster`; `AssetError` if it is missing,
    truncated or corrupt."""
    try:
        return LabelRaster.load(path)
    except OSError as e:
        raise AssetError(f"cannot read label raster {os.fspath(path)}: {e}") from e


def cached_label_raster(
    cache_dir: str | os.PathLike[str], key: str, build: Callable[[], LabelRaster]
) -> LabelRaster:
    """The label raster cached under `key` in `cache_dir`, or `build()`'s result, saved there.

    The key must identify grid and parcel-set version (e.g. `31UFS-rpg2023v2-cov`); letters,
    digits, `.`, `_` and `-` only. A cache file that cannot be read is rebuilt and replaced.
    """
    if _CACHE_KEY.fullmatch(key) is None:
        raise ConfigError(f"label cache key {key!r} must be 1-200 letters, digits, '.', '_' or '-'")
    path = Path(cache_dir) / f"{key}.labels"
    if path.exists():
        try:
            return load_label_raster(path)
        except AssetError as e:
            log.warning("rebuilding unreadable label cache %s: %s", path, e)
    raster = build()
    save_label_raster(raster, path)
    return raster


def _six_terms(transform: Sequence[float]) -> list[float]:
    """`[a, b, c, d, e, f]` of an `affine.Affine` (9 terms) or a 6-term sequence."""
    terms = [float(v) for v in transform]
    if len(terms) == 9 and terms[6:] == [0.0, 0.0, 1.0]:
        terms = terms[:6]
    if len(terms) != 6:
        raise KernelError(f"grid transform must have 6 terms [a, b, c, d, e, f], got {terms}")
    return terms


def _ragged_multipolygons(
    geoms: npt.NDArray[np.object_],
) -> tuple[
    npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]
]:
    """Coordinates and ring/polygon/geometry offsets of `geoms`, every geometry read as a
    MultiPolygon (the layout of `shapely.to_ragged_array` for MultiPolygons)."""
    type_ids = shapely.get_type_id(geoms)
    present = type_ids >= 0
    wrong = present & ~np.isin(type_ids, [_POLYGON, _MULTIPOLYGON])
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise ParcelError(f"parcel {i} is a {geoms[i].geom_type}, not a Polygon or MultiPolygon")
    invalid = present & ~shapely.is_valid(geoms)
    if invalid.any():
        i = int(np.flatnonzero(invalid)[0])
        reason = shapely.is_valid_reason(geoms[i])
        raise ParcelError(
            f"parcel {i} is an invalid polygon ({reason}); repair it first, e.g. with "
            "shapely.make_valid"
        )
    parts, owner = shapely.get_parts(geoms, return_index=True)
    keep = ~shapely.is_empty(parts)
    parts, owner = parts[keep], owner[keep]
    per_geometry = np.bincount(owner, minlength=len(geoms))
    geometry_offsets = np.concatenate([[0], np.cumsum(per_geometry)]).astype(np.int64)
    if len(parts) == 0:
        empty = np.zeros(1, dtype=np.int64)
        return np.zeros((0, 2), dtype=np.float64), empty, empty, geometry_offsets
    _, coords, (ring_offsets, polygon_offsets) = shapely.to_ragged_array(parts, include_z=False)
    return (
        np.ascontiguousarray(coords, dtype=np.float64),
        ring_offsets.astype(np.int64),
        polygon_offsets.astype(np.int64),
        geometry_offsets,
    )
