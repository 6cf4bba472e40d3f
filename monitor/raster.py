"""Reading an acquisition's band assets onto its grid, with rasterio.

Every band comes back on the item's grid (`proj:shape`/`proj:transform`, normally 10 m) in its
native dtype. Coarser bands (Sentinel-2 20 m and 60 m) are upsampled by pixel replication
(nearest neighbour): bilinear would blur parcel edges and mix field and hedge pixels into
reflectances no sensor measured; nearest keeps every value a real measurement, and is the only
choice for class rasters such as SCL.

All files are opened and checked (exists, readable, CRS, grid, dtype, size) before any pixel is
allocated; the reads are full reads, so a truncated or corrupt tile fails here with `AssetError`
rather than later as silent zeros.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from monitor.errors import AssetError, ConfigError, CrsMismatch
from monitor.stac import Acquisition, Asset, Transform

DEFAULT_MAX_BYTES = 4 * 2**30
#: Class rasters, not measurements: an acquisition of nothing but these has no data.
CLASS_BANDS = frozenset({"SCL"})
# Sentinel-2 resolutions are 10, 20 and 60 m: a band may be 1, 2 or 6 times coarser than the grid.
NATIVE_FACTORS = (1, 2, 6)
# No directory listing per open (sidecar lookups cost a round trip on object storage); deflate
# tiles decoded on every core.
_GDAL_OPTIONS = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_NUM_THREADS": "ALL_CPUS"}
# Pixels per block of the "any valid pixel?" check.
_ANY_BLOCK_PIXELS = 1 << 20


@dataclass(frozen=True)
class Band:
    """One band on the acquisition grid, with what is needed to turn its numbers into values.

    Physical value = `data * scale + offset` where `data != nodata` (and is not NaN).
    `factor` is how many grid pixels one native pixel spans (1 = read as is, 2 = 20 m band).
    """

    name: str
    data: np.ndarray[Any, np.dtype[Any]]
    scale: float
    offset: float
    nodata: float | None
    unit: str | None
    factor: int

    def valid_mask(self) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """True where the pixel holds data (not nodata, not NaN)."""
        valid = np.ones(self.data.shape, dtype=bool)
        if self.data.dtype.kind == "f":
            valid &= ~np.isnan(self.data)
        if self.nodata is not None and not math.isnan(self.nodata):
            valid &= self.data != self.nodata
        return valid

    def has_valid(self) -> bool:
        """Whether any pixel holds data: `valid_mask().any()`, a block of rows at a time so
        that a band with data (the usual case) stops after its first block."""
        rows = max(1, _ANY_BLOCK_PIXELS // max(1, self.data.shape[-1]))
        for start in range(0, self.data.shape[0], rows):
            block = Band(
                self.name,
                self.data[start : start + rows],
                self.scale,
                self.offset,
                self.nodata,
                self.unit,
                self.factor,
            )
            if block.valid_mask().any():
                return True
        return False


@dataclass(frozen=True)
class AcquisitionRasters:
    """The bands of one acquisition read onto (a window of) its grid."""

    acquisition: Acquisition
    transform: Transform
    shape: tuple[int, int]
    bands: Mapping[str, Band]
    empty_bands: tuple[str, ...]
    """Bands holding no valid pixel at all (downstream: valid_count 0), not an error."""

    @property
    def arrays(self) -> dict[str, np.ndarray[Any, np.dtype[Any]]]:
        """Band name → array, in the order read."""
        return {name: band.data for name, band in self.bands.items()}


def read_acquisition(
    acq: Acquisition,
    bands: Sequence[str] | None = None,
    window: Window | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> AcquisitionRasters:
    """Read `bands` (default: every asset of `acq`) onto the item grid, or a `window` of it.

    `window` is in item-grid pixels (integer offsets and sizes). Refuses with `AssetError` a
    missing, unreadable, truncated or off-grid asset, more than `max_bytes` to allocate, or a
    whole acquisition whose every data band is nodata (one empty band among others is only
    listed in `empty_bands`), and with `CrsMismatch` a raster whose CRS is not the declared
    `proj:epsg`.
    """
    names = list(acq.assets) if bands is None else list(dict.fromkeys(bands))
    missing = [name for name in names if name not in acq.assets]
    if missing or not names:
        have = ", ".join(acq.assets)
        raise AssetError(f"item {acq.product_id!r}: no asset {missing or '(none asked)'} ({have})")
    row0, col0, height, width = _window_bounds(acq, window)
    with ExitStack() as stack, rasterio.Env(**_GDAL_OPTIONS):
        sources = {name: stack.enter_context(_open(acq, acq.assets[name])) for name in names}
        factors = {name: _check_grid(acq, acq.assets[name], src) for name, src in sources.items()}
        _check_size(acq, sources, height * width, max_bytes)
        out: dict[str, Band] = {}
        for name, src in sources.items():
            asset = acq.assets[name]
            data = _read(acq, asset, src, factors[name], (row0, col0, height, width))
            nodata = asset.nodata if asset.nodata is not None else src.nodatavals[0]
            out[name] = _to_db(
                Band(name, data, asset.scale, asset.offset, nodata, asset.unit, factors[name])
            )
    empty = tuple(name for name, band in out.items() if not band.has_valid())
    data_bands = [name for name in out if name not in CLASS_BANDS]
    if window is None and data_bands and set(data_bands) <= set(empty):
        raise AssetError(
            f"item {acq.product_id!r}: no valid pixel in any band ({', '.join(data_bands)}): "
            "every pixel is nodata"
        )
    a, b, c, d, e, f = acq.transform
    return AcquisitionRasters(
        acquisition=acq,
        transform=(a, b, c + a * col0, d, e, f + e * row0),
        shape=(height, width),
        bands=MappingProxyType(out),
        empty_bands=empty,
    )


def _label(acq: Acquisition, asset: Asset) -> str:
    return f"item {acq.product_id!r} asset {asset.key} ({asset.href})"


def _gdal_reason(exc: BaseException) -> str:
    """The first line of the GDAL message behind a rasterio error, short enough for one line."""
    # rasterio's "Read failed. See previous exception" hides GDAL's reason in the cause.
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    text = str(cause).strip() or str(exc).strip() or type(exc).__name__
    line = text.splitlines()[0]
    return line if len(line) <= 200 else line[:197] + "..."


def _window_bounds(acq: Acquisition, window: Window | None) -> tuple[int, int, int, int]:
    grid_h, grid_w = acq.shape
    if window is None:
        return 0, 0, grid_h, grid_w
    values = (window.row_off, window.col_off, window.height, window.width)
    if any(float(v) != int(v) for v in values):
        raise ConfigError(f"item {acq.product_id!r}: window {window} is not on whole pixels")
    row0, col0, height, width = (int(v) for v in values)
    if row0 < 0 or col0 < 0 or height <= 0 or width <= 0:
        raise ConfigError(f"item {acq.product_id!r}: empty or negative window {window}")
    if row0 + height > grid_h or col0 + width > grid_w:
        raise ConfigError(f"item {acq.product_id!r}: window {window} exceeds grid {acq.shape}")
    return row0, col0, height, width


def _open(acq: Acquisition, asset: Asset) -> Any:
    """Open an asset's dataset (a context manager), mapping every failure to `AssetError`."""
    if asset.is_local and not Path(asset.href).is_file():
        raise AssetError(f"{_label(acq, asset)}: file missing")
    try:
        # Georeferencing is checked explicitly below, with a better message than the warning.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(asset.href)
    except (RasterioError, OSError) as exc:
        raise AssetError(f"{_label(acq, asset)}: unreadable: {_gdal_reason(exc)}") from exc


def _check_grid(acq: Acquisition, asset: Asset, src: Any) -> int:
    """Check CRS, dtype and grid of an open asset; return its factor against the item grid."""
    label = _label(acq, asset)
    if src.count < 1:
        raise AssetError(f"{label}: no raster band in the file")
    epsg = src.crs.to_epsg() if src.crs is not None else None
    if epsg != acq.epsg:
        raise CrsMismatch(f"{label}: raster CRS {src.crs or 'none'} is not EPSG:{acq.epsg}")
    if asset.data_type is not None and src.dtypes[0] != asset.data_type:
        raise AssetError(f"{label}: data type {src.dtypes[0]} but the item says {asset.data_type}")
    file_transform = tuple(src.transform)[:6]
    file_shape = (src.height, src.width)
    if asset.transform is not None and asset.shape is not None:
        declared = (asset.transform, asset.shape)
        if file_shape != asset.shape or not _close(
            file_transform, asset.transform, 1e-3 * abs(asset.transform[0])
        ):
            raise AssetError(
                f"{label}: raster grid {file_shape} {file_transform} differs from "
                f"its declared proj:shape/proj:transform {declared}"
            )
    a, _, c, _, e, f = acq.transform
    fa, fb, fc, fd, fe, ff = file_transform
    factor = round(fa / a) if fa > 0 else 0
    aligned = (
        factor in NATIVE_FACTORS
        and fb == 0
        and fd == 0
        and _close((fa, fe), (a * factor, e * factor), 1e-6 * abs(a))
        # Sub-millimetre origins: float noise, not a shifted grid.
        and _close((fc, ff), (c, f), 1e-4 * abs(a))
    )
    expected = tuple(math.ceil(n / factor) for n in acq.shape) if aligned else None
    if not aligned or file_shape != expected:
        raise AssetError(
            f"{label}: raster grid {file_shape[0]}x{file_shape[1]} px of {fa:g} m at "
            f"({fc:g}, {ff:g}) does not match the item grid {acq.shape[0]}x{acq.shape[1]} px "
            f"of {a:g} m at ({c:g}, {f:g}) (allowed: the same extent at 1, 2 or 6 times the "
            "pixel size)"
        )
    return factor


def _close(left: Sequence[float], right: Sequence[float], tolerance: float) -> bool:
    """Equal within an absolute `tolerance` (in CRS units: metres for UTM)."""
    return all(abs(x - y) <= tolerance for x, y in zip(left, right, strict=True))


def _check_size(acq: Acquisition, sources: Mapping[str, Any], pixels: int, cap: int) -> None:
    total = 0
    for name, src in sources.items():
        itemsize = np.dtype(src.dtypes[0]).itemsize
        if acq.assets[name].unit == "linear":
            itemsize = max(itemsize, 4)  # converted to float32 dB
        total += pixels * itemsize
    if total > cap:
        raise AssetError(
            f"item {acq.product_id!r}: reading {len(sources)} bands needs {total / 2**30:.2f} GiB, "
            f"over the {cap / 2**30:.2f} GiB cap"
        )


def _read(
    acq: Acquisition,
    asset: Asset,
    src: Any,
    factor: int,
    window: tuple[int, int, int, int],
) -> np.ndarray[Any, np.dtype[Any]]:
    row0, col0, height, width = window
    # The native pixels covering the window, replicated `factor` times, then cropped. GDAL
    # reads them at native size; numpy replicates them (one copy): several times faster than
    # GDAL's nearest-neighbour `out_shape` for the 20 and 60 m bands.
    src_row0, src_col0 = row0 // factor, col0 // factor
    src_rows = math.ceil((row0 + height) / factor) - src_row0
    src_cols = math.ceil((col0 + width) / factor) - src_col0
    try:
        native = src.read(1, window=Window(src_col0, src_row0, src_cols, src_rows))
    except (RasterioError, OSError) as exc:
        raise AssetError(
            f"{_label(acq, asset)}: corrupt or truncated: {_gdal_reason(exc)}"
        ) from exc
    top, left = row0 - src_row0 * factor, col0 - src_col0 * factor
    if factor == 1:
        cropped: np.ndarray[Any, np.dtype[Any]] = native[top : top + height, left : left + width]
        return np.ascontiguousarray(cropped)
    # Fill the replicated grid through its (rows, factor, cols, factor) view, then crop.
    full = np.empty((src_rows * factor, src_cols * factor), dtype=native.dtype)
    full.reshape(src_rows, factor, src_cols, factor)[...] = native[:, None, :, None]
    if full.shape == (height, width):  # a whole grid of whole native pixels: no crop
        return full
    return np.ascontiguousarray(full[top : top + height, left : left + width])


def _to_db(band: Band) -> Band:
    """Linear backscatter → dB (float32, NaN where not valid or ≤ 0); other bands unchanged."""
    if band.unit != "linear":
        return band
    linear = band.data.astype(np.float64) * band.scale + band.offset
    valid = band.valid_mask() & (linear > 0)
    db = np.full(band.data.shape, np.nan, dtype=np.float32)
    db[valid] = 10.0 * np.log10(linear[valid])
    return Band(band.name, db, 1.0, 0.0, math.nan, "dB", band.factor)
