"""Typed entry points to the Rust kernels: validity masks, zonal statistics, pixel sets, tiling.

Use these functions, not `monitor._core`: they check their input and raise
`monitor.errors.KernelError` with a one-line message naming the offending band or argument.
Bands are passed as 2-D arrays (uint8, uint16, int16, float32 or float64) and borrowed by Rust
without copying; the kernels release the GIL, run in parallel and stop on Ctrl-C.

Grids: every raster of one call is on the same grid as the `LabelRaster`. The Sentinel-2 SCL
is delivered at 20 m while the bands used for statistics are at 10 m: the reader resamples SCL to
the 10 m grid with nearest neighbour (`upsample_nearest(scl, 2)` for a whole tile) before calling
`validity_mask_from_scl`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import polars as pl

from monitor import _core
from monitor._core import LabelRaster
from monitor.errors import KernelError

__all__ = [
    "DEFAULT_INVALID_SCL",
    "DEFAULT_NDVI_BANDS",
    "ZONAL_STATS",
    "LabelRaster",
    "PixelSets",
    "Window",
    "block_any",
    "block_mean",
    "detail_transfer",
    "extract_tiles",
    "fill_back",
    "physical_values",
    "pixel_sets",
    "stitch",
    "tile_windows",
    "upsample_nearest",
    "validity_mask_from_probability",
    "validity_mask_from_scl",
    "zonal_statistics",
]

#: SCL classes masked by default: 0 no data, 1 saturated/defective, 3 cloud shadow,
#: 8 cloud medium probability, 9 cloud high probability, 10 thin cirrus, 11 snow/ice.
DEFAULT_INVALID_SCL: tuple[int, ...] = (0, 1, 3, 8, 9, 10, 11)

#: (red, near infrared) band names of Sentinel-2 used for NDVI.
DEFAULT_NDVI_BANDS: tuple[str, str] = ("B04", "B08")

#: Statistics computed per band, in column order (`{BAND}_{stat}`).
ZONAL_STATS: tuple[str, ...] = ("mean", "std", "min", "max", "p10", "p50", "p90")

_BAND_DTYPES = (np.uint8, np.uint16, np.int16, np.float32, np.float64)
_CLASS_DTYPES = (np.uint8, np.uint16)

PerBand = float | Mapping[str, float] | None
PerBandNodata = float | Mapping[str, float | None] | None


class Window(NamedTuple):
    """A tiling window: top-left pixel and the part of the window inside the grid."""

    row: int
    col: int
    height: int
    width: int


class PixelSets(NamedTuple):
    """Sampled pixels `[P, S, B]` (scaled, float32) and `mask [P, S]` (True = real pixel)."""

    values: npt.NDArray[np.float32]
    mask: npt.NDArray[np.bool_]


def validity_mask_from_scl(
    scl: npt.NDArray[np.generic],
    invalid_classes: Sequence[int] = DEFAULT_INVALID_SCL,
    dilation: int = 0,
) -> npt.NDArray[np.bool_]:
    """Valid-pixel mask (True = usable) from a Sentinel-2 scene classification raster.

    A pixel is invalid when its class is in `invalid_classes`; other classes, unknown ones
    included, are valid. The invalid area is then dilated by `dilation` pixels with a square
    structuring element of side `2 * dilation + 1` (Chebyshev distance), which also drops cloud
    and shadow fringes. `scl` is uint8 or uint16, already on the bands' grid (see module doc).
    """
    scl = _raster2d(scl, "SCL raster", _CLASS_DTYPES)
    classes = [int(c) for c in invalid_classes]
    if any(not 0 <= c <= 65535 for c in classes):
        raise KernelError(f"invalid SCL classes must be in 0..65535, got {classes}")
    return _core.validity_mask_scl(scl, classes, _non_negative(dilation, "dilation"))


def validity_mask_from_probability(
    prob: npt.NDArray[np.generic],
    threshold: float,
    dilation: int = 0,
    nodata: float | None = None,
) -> npt.NDArray[np.bool_]:
    """Valid-pixel mask (True = usable) from a cloud-probability raster (e.g. s2cloudless).

    Invalid where `prob > threshold`, where the value is NaN or equals `nodata`; the invalid
    area is dilated as in `validity_mask_from_scl`.
    """
    prob = _raster2d(prob, "probability raster", _BAND_DTYPES)
    if np.isnan(threshold):
        raise KernelError("probability threshold is NaN")
    return _core.validity_mask_probability(
        prob, float(threshold), _non_negative(dilation, "dilation"), _opt_float(nodata)
    )


def upsample_nearest(classes: npt.NDArray[np.generic], factor: int) -> npt.NDArray[np.generic]:
    """Repeats each pixel of a uint8/uint16 class raster in a `factor x factor` block."""
    classes = _raster2d(classes, "class raster", _CLASS_DTYPES)
    if factor < 1:
        raise KernelError(f"upsampling factor must be >= 1, got {factor}")
    return _core.upsample_classes(classes, int(factor))


def zonal_statistics(
    labels: LabelRaster,
    bands: Mapping[str, npt.NDArray[np.generic]],
    valid: npt.NDArray[np.generic] | None = None,
    *,
    scales: PerBand = None,
    offsets: PerBand = None,
    nodata: PerBandNodata = None,
    ndvi: tuple[str, str] | None = DEFAULT_NDVI_BANDS,
    weighted_mean: bool = False,
) -> pl.DataFrame:
    """Per-parcel statistics of every band, in one parallel pass (bands are not copied).

    Columns: `parcel_index, pixel_count, valid_count, valid_fraction`, then for each band (in
    mapping order) and for `NDVI`, `{NAME}_{stat}` for stat in `ZONAL_STATS`, and
    `{NAME}_wmean` when `weighted_mean`.

    * `pixel_count`: pixels whose centre lies in the parcel.
    * valid pixel: a member pixel that is True in `valid` (when given) and holds data in every
      band of the call (not NaN, not equal to that band's `nodata`). All statistics of a row
      describe the same valid pixels. `valid_fraction = valid_count / pixel_count` (0 for a
      parcel without pixels).
    * values are scaled, `raw * scale + offset` (S2 L2A: scale 1e-4 and offset 0 or -0.1 gives
      reflectance in 0-1); `scales`/`offsets`/`nodata` are one value for all bands or a mapping
      by band name (default scale 1, offset 0, no nodata value; NaN is always nodata); scales
      must be > 0.
    * `std` is the population standard deviation (ddof 0); `p10/p50/p90` use numpy's default
      linear interpolation. Statistics are NaN for a parcel without valid pixels.
    * NDVI = (nir - red) / (nir + red) of the scaled `ndvi = (red, nir)` bands, per valid pixel;
      pixels with nir + red <= 0 are left out of the NDVI statistics only. Computed when both
      bands are present (`ndvi=None` turns it off; a pair other than the default must exist).
    * `wmean`: coverage-weighted mean, sum(f * v) / sum(f) over the cells the parcel covers with
      exact fractions f (label raster built with coverage), valid by the same rule; equals
      exactextract's `mean` when nothing is masked.
    """
    names = list(bands)
    arrays = [_band(bands[name], name, labels.shape) for name in names]
    ndvi_pair = _ndvi_indices(ndvi, names)
    if weighted_mean and not labels.has_coverage:
        raise KernelError("weighted_mean needs a label raster built with coverage fractions")
    pixel_count, valid_count, values = _core.zonal_stats(
        labels,
        arrays,
        _valid_mask(valid, labels.shape),
        _per_band(scales, names, 1.0, "scales"),
        _per_band(offsets, names, 0.0, "offsets"),
        _per_band_nodata(nodata, names),
        ndvi_pair,
        weighted_mean,
    )
    valid_fraction = np.divide(
        valid_count,
        pixel_count,
        out=np.zeros(len(pixel_count), dtype=np.float64),
        where=pixel_count > 0,
    )
    columns: dict[str, npt.NDArray[np.generic]] = {
        "parcel_index": np.arange(len(pixel_count), dtype=np.uint32),
        "pixel_count": pixel_count,
        "valid_count": valid_count,
        "valid_fraction": valid_fraction,
    }
    stats = ZONAL_STATS + (("wmean",) if weighted_mean else ())
    outputs = names + (["NDVI"] if ndvi_pair is not None else [])
    for o, name in enumerate(outputs):
        for s, stat in enumerate(stats):
            columns[f"{name}_{stat}"] = values[:, o * len(stats) + s]
    return pl.DataFrame(columns)


def pixel_sets(
    labels: LabelRaster,
    bands: Mapping[str, npt.NDArray[np.generic]],
    valid: npt.NDArray[np.generic] | None = None,
    *,
    n_samples: int,
    seed: int = 0,
    scales: PerBand = None,
    offsets: PerBand = None,
    nodata: PerBandNodata = None,
) -> PixelSets:
    """`n_samples` valid pixels per parcel across the bands (in mapping order), for PSE-TAE.

    Valid pixels as in `zonal_statistics`; values scaled the same way. A parcel with more
    valid pixels than `n_samples` gets a uniform draw without replacement (listed in pixel
    order); one with fewer gets all of them followed by zero padding, `mask` False on the
    padding. Draws depend only on `seed` and the parcel index: same seed, same sets.
    """
    if n_samples < 1:
        raise KernelError(f"n_samples must be >= 1, got {n_samples}")
    if not 0 <= seed < 2**64:
        raise KernelError(f"seed must be in 0..2**64, got {seed}")
    names = list(bands)
    if not names:
        raise KernelError("pixel sets need at least one band")
    arrays = [_band(bands[name], name, labels.shape) for name in names]
    values, mask = _core.pixel_set(
        labels,
        arrays,
        _valid_mask(valid, labels.shape),
        _per_band(scales, names, 1.0, "scales"),
        _per_band(offsets, names, 0.0, "offsets"),
        _per_band_nodata(nodata, names),
        int(n_samples),
        int(seed),
    )
    return PixelSets(values, mask)


def tile_windows(height: int, width: int, tile: int, overlap: int) -> list[Window]:
    """Windows of side `tile` overlapping by `overlap` that cover a `height x width` grid.

    Row-major order. Windows start every `tile - overlap` pixels and the last one along each
    axis is shifted inward to end on the edge, so all are full-size when the grid is at least
    `tile` on that axis; on a smaller axis there is one window, clipped to the grid
    (`Window.height`/`width` give the part inside; tiles are zero padded at the bottom/right).
    """
    _tile_args(tile, overlap)
    for value, what in ((height, "height"), (width, "width")):
        if value < 1:
            raise KernelError(f"grid {what} must be >= 1, got {value}")
    return [Window(*w) for w in _core.tiling_windows(height, width, tile, overlap)]


def extract_tiles(
    image: npt.NDArray[np.generic], tile: int, overlap: int
) -> npt.NDArray[np.float32]:
    """Cuts a `[C, H, W]` image into float32 tiles `[n, C, tile, tile]` along `tile_windows`."""
    _tile_args(tile, overlap)
    if image.ndim != 3:
        raise KernelError(f"image must be [C, H, W], got shape {image.shape}")
    data = np.ascontiguousarray(image, dtype=np.float32)
    return _core.tiling_extract(data, tile, overlap)


def stitch(
    tiles: npt.NDArray[np.generic], height: int, width: int, overlap: int
) -> npt.NDArray[np.float32]:
    """Blends per-window outputs `[n, C, T, T]` (in `tile_windows` order) into `[C, H, W]`.

    Each window is weighted by a separable linear ramp over the overlap (flat inside, never 0)
    and the result is the weighted average, so seams vanish and identical tiles give back the
    exact image.
    """
    if tiles.ndim != 4 or tiles.shape[2] != tiles.shape[3]:
        raise KernelError(f"tiles must be [n, C, T, T], got shape {tiles.shape}")
    tile = int(tiles.shape[2])
    expected = len(tile_windows(height, width, tile, overlap))
    if tiles.shape[0] != expected:
        raise KernelError(
            f"got {tiles.shape[0]} tiles, a {height}x{width} grid with tile {tile} and "
            f"overlap {overlap} has {expected} windows"
        )
    data = np.ascontiguousarray(tiles, dtype=np.float32)
    return _core.tiling_stitch(data, height, width, overlap)


def block_mean(
    image: npt.NDArray[np.generic], factor: int, *, decibel: bool = False
) -> npt.NDArray[np.float32]:
    """Mean of the finite values of each `factor` x `factor` block of `image [C, H, W]`:
    `[C, ceil(H/f), ceil(W/f)]`, NaN where a block has none; partial edge blocks are completed
    by replicating the last row/column (numpy's `edge` padding). `decibel`: the mean is taken
    in linear power (`10^(x/10)`) and returned in dB."""
    if not isinstance(image, np.ndarray) or image.ndim != 3:
        raise KernelError(f"image must be a [C, H, W] array, got {_shape_of(image)}")
    data = np.ascontiguousarray(image, dtype=np.float32)
    return _core.coarse_block_mean(data, _factor(factor), decibel)


def block_any(mask: npt.NDArray[np.bool_], factor: int) -> npt.NDArray[np.bool_]:
    """`[ceil(H/f), ceil(W/f)]`: True where any pixel of the block of `mask [H, W]` is."""
    return _core.coarse_block_any(_bool2d(mask, "mask"), _factor(factor))


def detail_transfer(
    block_t0: npt.NDArray[np.float32],
    predicted: npt.NDArray[np.float32],
    sigma: npt.NDArray[np.float32],
    t0: npt.NDArray[np.float32],
    pixels: npt.NDArray[np.bool_],
    factor: int,
    reflectance: npt.NDArray[np.float32],
    uncertainty: npt.NDArray[np.float32],
) -> None:
    """Where `pixels [H, W]` is True, writes `t0 + (predicted - block_t0)` of the pixel's block
    (the change counted 0 where it is not finite) into `reflectance`, and the block's `sigma`
    into `uncertainty`; other pixels are left as they are. Pixel arrays `[C, H, W]`, block
    arrays `[C, ceil(H/f), ceil(W/f)]`, all float32 and C-contiguous (the outputs are written
    in place)."""
    for name, out in (("reflectance", reflectance), ("uncertainty", uncertainty)):
        if not isinstance(out, np.ndarray) or out.dtype != np.float32:
            raise KernelError(f"{name} must be a float32 array, got {_shape_of(out)}")
    _core.coarse_detail_transfer(
        np.ascontiguousarray(block_t0, dtype=np.float32),
        np.ascontiguousarray(predicted, dtype=np.float32),
        np.ascontiguousarray(sigma, dtype=np.float32),
        np.ascontiguousarray(t0, dtype=np.float32),
        _bool2d(pixels, "pixels"),
        _factor(factor),
        reflectance,
        uncertainty,
    )


def fill_back(
    bands: npt.NDArray[np.float32],
    done: npt.NDArray[np.bool_],
    sums: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]],
    block: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
    target: npt.NDArray[np.bool_],
    labels: npt.NDArray[np.uint32],
    at: tuple[int, int],
    sigma_ref: float,
) -> None:
    """Writes a block's reconstructed pixels back, in one pass: where `target [h, w]` is True
    and the block's `(reflectance, sigma)` (`[C, h, w]`) are finite in every band, sets the
    pixel in `bands [C, H, W]` and `done [H, W]` at offset `at = (row, col)`, and adds it to
    the per-label `sums = (count [n], sigma_sum [C, n], confidence [n])` by its `labels` value
    (confidence: `exp(-mean sigma over the bands / sigma_ref)`). Outputs in place (C-contiguous;
    float32 bands, float64 sums)."""
    count, sigma_sum, confidence = sums
    reflectance, sigma = block
    _core.fill_back_block(
        bands,
        done,
        count,
        sigma_sum,
        confidence,
        np.ascontiguousarray(reflectance, dtype=np.float32),
        np.ascontiguousarray(sigma, dtype=np.float32),
        _bool2d(target, "target"),
        np.ascontiguousarray(labels, dtype=np.uint32),
        int(at[0]),
        int(at[1]),
        float(sigma_ref),
    )


def physical_values(
    raw: npt.NDArray[np.generic],
    scale: float,
    offset: float,
    nodata: float | None,
    out: npt.NDArray[np.float32],
    valid: npt.NDArray[np.bool_] | None = None,
) -> None:
    """Writes `raw * scale + offset` (float32 arithmetic, as numpy's) of a 2-D band into `out`
    (float32, same shape, C-contiguous), NaN where the raw value is NaN or `nodata`, or where
    `valid` (same shape) is False: one pass instead of numpy's five."""
    band = _raster2d(raw, "raw band", _BAND_DTYPES)
    if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != band.shape:
        got = _shape_of(out)
        raise KernelError(f"out must be a float32 array of shape {band.shape}, got {got}")
    mask = None if valid is None else _bool2d(valid, "valid")
    _core.physical_values(band, float(scale), float(offset), _opt_float(nodata), out, mask)


def _bool2d(mask: npt.NDArray[np.bool_], what: str) -> npt.NDArray[np.bool_]:
    _raster2d(mask, what, (np.bool_,))
    return np.ascontiguousarray(mask, dtype=np.bool_)


def _factor(factor: int) -> int:
    if factor < 1:
        raise KernelError(f"block factor must be >= 1, got {factor}")
    return int(factor)


def _shape_of(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__


def _raster2d(
    array: npt.NDArray[np.generic], what: str, dtypes: tuple[type[np.generic], ...]
) -> npt.NDArray[np.generic]:
    if not isinstance(array, np.ndarray):
        raise KernelError(f"{what} must be a numpy array, got {type(array).__name__}")
    if array.ndim != 2:
        raise KernelError(f"{what} must be 2-D, got shape {array.shape}")
    if array.dtype.type not in dtypes:
        allowed = ", ".join(np.dtype(d).name for d in dtypes)
        raise KernelError(f"{what} has dtype {array.dtype}, expected one of {allowed}")
    return np.ascontiguousarray(array)


def _band(
    array: npt.NDArray[np.generic], name: str, shape: tuple[int, int]
) -> npt.NDArray[np.generic]:
    band = _raster2d(array, f"band {name}", _BAND_DTYPES)
    if band.shape != shape:
        raise KernelError(f"band {name} has shape {band.shape}, the label raster {shape}")
    return band


def _valid_mask(
    valid: npt.NDArray[np.generic] | None, shape: tuple[int, int]
) -> npt.NDArray[np.bool_] | None:
    if valid is None:
        return None
    if not isinstance(valid, np.ndarray) or valid.shape != shape:
        got = valid.shape if isinstance(valid, np.ndarray) else type(valid).__name__
        raise KernelError(f"valid mask must have the label raster's shape {shape}, got {got}")
    if valid.dtype != np.bool_:
        if not np.issubdtype(valid.dtype, np.integer):
            raise KernelError(f"valid mask must be bool or integer, got {valid.dtype}")
        valid = valid != 0
    return np.ascontiguousarray(valid, dtype=np.bool_)


def _ndvi_indices(ndvi: tuple[str, str] | None, names: list[str]) -> tuple[int, int] | None:
    if ndvi is None:
        return None
    red, nir = ndvi
    if red not in names or nir not in names:
        if tuple(ndvi) == DEFAULT_NDVI_BANDS:
            return None  # default pair: NDVI only when the bands are there
        missing = red if red not in names else nir
        raise KernelError(f"NDVI band {missing} is not among the bands {names}")
    if red == nir:
        raise KernelError(f"NDVI needs two different bands, got {red} twice")
    if "NDVI" in names:
        raise KernelError("a band is named NDVI, which clashes with the computed NDVI columns")
    return names.index(red), names.index(nir)


def _per_band(value: PerBand, names: list[str], default: float, what: str) -> list[float]:
    if value is None:
        values = [default] * len(names)
    elif isinstance(value, Mapping):
        _check_known(value, names, what)
        values = [float(value.get(name, default)) for name in names]
    else:
        values = [float(value)] * len(names)
    for name, v in zip(names, values, strict=True):
        if not np.isfinite(v) or (what == "scales" and v <= 0):
            rule = "finite and > 0" if what == "scales" else "finite"
            raise KernelError(f"{what} of band {name} must be {rule}, got {v}")
    return values


def _per_band_nodata(value: PerBandNodata, names: list[str]) -> list[float | None]:
    if isinstance(value, Mapping):
        _check_known(value, names, "nodata")
        return [_opt_float(value.get(name)) for name in names]
    return [_opt_float(value)] * len(names)


def _check_known(value: Mapping[str, object], names: list[str], what: str) -> None:
    unknown = [key for key in value if key not in names]
    if unknown:
        raise KernelError(f"{what} given for unknown band {unknown[0]} (bands: {names})")


def _opt_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _non_negative(value: int, what: str) -> int:
    if value < 0:
        raise KernelError(f"{what} must be >= 0, got {value}")
    return int(value)


def _tile_args(tile: int, overlap: int) -> None:
    if tile < 1:
        raise KernelError(f"tile size must be >= 1, got {tile}")
    if not 0 <= overlap < tile:
        raise KernelError(f"overlap must be in 0..{tile - 1} for tile {tile}, got {overlap}")
