"""Cloud removal at run time: fill the cloudy pixels of a Sentinel-2 acquisition (no torch).

The shipped model (`monitor/artifacts/cloud_removal.onnx`, card `cloud_removal.md`; its int8
version `cloud_removal_int8.onnx`, which the engine's stage runs on ONNX Runtime) predicts the
reflectance of `BANDS` at date t from the last clear reflectance at t0, Sentinel-1 VV/VH at t
and near t0, and the gap t - t0, with a per-pixel standard deviation. `reconstruct` runs it
through the tiling kernel (`kernels.extract_tiles` / `stitch`, overlapping windows blended with
a linear ramp, so no seams), only on the windows that hold a pixel the validity mask rejects,
and keeps every valid pixel as observed (uncertainty 0 there). The per-pixel work around the
network is in Rust (`monitor.kernels`): band conversion (`physical_values`), the 2 x 2 block
means of the 20 m mode (`block_mean`, `block_any`) and its detail transfer back to the pixels
(`detail_transfer`), one pass each.

Typical use, per S2 acquisition at t with some invalid pixels (load the model once)::

    model = load_model("cloud_removal", config)
    t = read_acquisition(item_t, (*BANDS, "SCL"))
    valid = ...  # the validity mask the pipeline already computes for the zonal statistics
    out = reconstruct(s2_reflectance(t), clear_t0, s1_stack(s1_t), s1_stack(s1_t0),
                      gap_days, valid, day_of_year=doy, model=model)
    # out.reflectance / out.uncertainty [3, H, W]; out.reconstructed [H, W]

`clear_t0` is the per-tile last clear composite of `BANDS` (reflectance, NaN where none yet);
`s1_t`/`s1_t0` the Sentinel-1 acquisitions nearest to t and to the t0 of the composite. On
replay, pass the next clear composite too (`next_clear`, `next_gap_days`) for a better estimate.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

from monitor import kernels
from monitor.errors import ModelError
from monitor.infer import InferenceConfig, Model, artifact_path, load_model
from monitor.model_io import BANDS as BANDS
from monitor.model_io import POLARISATIONS as POLARISATIONS
from monitor.model_io import TILE_MULTIPLE
from monitor.raster import AcquisitionRasters

if TYPE_CHECKING:
    import onnx

MODEL_NAME = "cloud_removal"
#: Its static int8 quantization for ONNX Runtime on CPU (`models.cloud_removal_int8`), with
#: free height and width: what the engine's stage runs on ONNX Runtime by default.
INT8_MODEL_NAME = "cloud_removal_int8"
#: The window (px) the shipped ONNX file declares: its inputs are fixed at 128 x 128.
EXPORTED_TILE: Final = 128

Float32Array = npt.NDArray[np.float32]


class Reconstruction(NamedTuple):
    """`reflectance [B, H, W]` (observed where valid, predicted elsewhere, NaN where no
    prediction is possible) and `uncertainty [B, H, W]` (standard deviation; 0 where
    observed)."""

    reflectance: Float32Array
    uncertainty: Float32Array
    reconstructed: npt.NDArray[np.bool_]
    """True where the pixel comes from the model."""


#: Rows and columns of the rasters to convert (default: all of them).
Window = tuple[slice, slice]
_ALL: Window = (slice(None), slice(None))


def s2_reflectance(
    rasters: AcquisitionRasters,
    bands: tuple[str, ...] = BANDS,
    window: Window = _ALL,
    valid: npt.NDArray[np.bool_] | None = None,
) -> Float32Array:
    """`[B, H, W]` reflectance (scale and offset applied) of `bands` over `window` of the
    rasters, NaN where nodata or (given `valid [H, W]` of the window) not valid."""
    return _physical_stack(rasters, bands, window, valid)


def s1_stack(rasters: AcquisitionRasters) -> Float32Array:
    """`[2, H, W]` VV, VH backscatter in dB (the reader converts linear items), NaN where
    nodata."""
    return _physical_stack(rasters, POLARISATIONS, _ALL, None)


def _physical_stack(
    rasters: AcquisitionRasters,
    names: tuple[str, ...],
    window: Window,
    valid: npt.NDArray[np.bool_] | None,
) -> Float32Array:
    missing = [name for name in names if name not in rasters.bands]
    if missing:
        have = ", ".join(rasters.bands)
        raise ModelError(
            f"cloud removal needs band {missing[0]} of {rasters.acquisition.product_id!r} "
            f"(read: {have})"
        )
    raws = [rasters.bands[name].data[window] for name in names]
    out = np.empty((len(names), *raws[0].shape), dtype=np.float32)
    for plane, name, raw in zip(out, names, raws, strict=True):
        band = rasters.bands[name]
        kernels.physical_values(raw, band.scale, band.offset, band.nodata, plane, valid)
    return out


def load_for_tile(
    config: InferenceConfig, tile: int = EXPORTED_TILE, *, int8: bool = False
) -> Model:
    """The shipped network for windows of `tile` px (a multiple of 8); with `int8`, its int8
    version (`INT8_MODEL_NAME`, ONNX Runtime only).

    The network is fully convolutional (no normalisation layer, no fixed-size reshape), but
    the exported file declares 128 x 128 inputs. For another tile the file is loaded with the
    `onnx` package, its inputs' and outputs' height and width are made free, and that copy
    (the same graph and weights; the shipped file is not changed) goes to ONNX Runtime.
    TensorRT builds its engine for the exported tile only. The int8 file has free height and
    width already (card `cloud_removal.md`, "Int8 on CPU").
    """
    if tile < TILE_MULTIPLE or tile % TILE_MULTIPLE:
        raise ModelError(f"cloud removal tile must be a multiple of {TILE_MULTIPLE}, got {tile}")
    if int8:
        if config.backend != "onnxruntime":
            raise ModelError(
                f"the int8 cloud removal network runs on onnxruntime only, not {config.backend}"
            )
        return load_model(INT8_MODEL_NAME, config)
    if tile == EXPORTED_TILE:
        return load_model(MODEL_NAME, config)
    if config.backend != "onnxruntime":
        raise ModelError(
            f"cloud removal on {config.backend} runs {EXPORTED_TILE} px tiles only, got {tile}"
        )
    import onnx

    proto = free_spatial_dims(onnx.load(str(artifact_path(MODEL_NAME))))
    with tempfile.TemporaryDirectory(prefix="cloud-removal-") as folder:
        path = Path(folder) / f"{MODEL_NAME}.onnx"
        onnx.save(proto, str(path))
        return load_model(path, config)  # the session holds the model: the file may go


def free_spatial_dims(proto: onnx.ModelProto) -> onnx.ModelProto:
    """`proto` with the height and width of its 4-D inputs and outputs
    made free (`dim_param`), changed in place and returned."""
    for value in (*proto.graph.input, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4:  # [batch, channels, height, width]
            dims[2].dim_param, dims[3].dim_param = "height", "width"
    return proto


def reconstruct(
    observed: npt.NDArray[np.floating[Any]],
    clear_t0: npt.NDArray[np.floating[Any]],
    s1_t: npt.NDArray[np.floating[Any]],
    s1_t0: npt.NDArray[np.floating[Any]],
    gap_days: float,
    valid: npt.NDArray[np.bool_],
    *,
    day_of_year: int,
    next_clear: npt.NDArray[np.floating[Any]] | None = None,
    next_gap_days: float | None = None,
    model: Model | None = None,
    tile: int = 128,
    overlap: int = 16,
    batch: int = 16,
    coarsen: int = 1,
) -> Reconstruction:
    """Fill the pixels where `valid` is False with the model's prediction.

    `observed`, `clear_t0`: `[3, H, W]` reflectance of `BANDS` at t and at the last clear date
    t0; `s1_t`, `s1_t0`: `[2, H, W]` VV, VH in dB; `gap_days` = t - t0 (> 0); `valid [H, W]`:
    True where the observation at t is usable; `day_of_year` of t (1 January = 0).
    Reprocessing only: `next_clear [3, H, W]`, the next clear reflectance, `next_gap_days`
    after t (both or neither). Missing radar pixels (NaN) are filled with the band's median;
    pixels without a clear t0 (NaN) stay NaN, and where `next_clear` is NaN the t0-only
    prediction is used. `model`: default the shipped artifact on ONNX Runtime for `tile`
    (`load_for_tile`); a model given must take `tile` px windows. `coarsen` 2 runs the
    network on 2 x 2 block means (`coarse_inputs`: a quarter of the pixels) and gives each
    invalid pixel its own t0 plus its block's predicted change (and the block's uncertainty);
    pixels without a clear t0 stay NaN as at full resolution.
    """
    height, width = _check_inputs(observed, clear_t0, s1_t, s1_t0, gap_days, valid)
    if coarsen not in (1, 2):
        raise ModelError(f"cloud removal coarsen must be 1 or 2, got {coarsen}")
    if (next_clear is None) != (next_gap_days is None):
        raise ModelError("cloud removal: give next_clear and next_gap_days together")
    if next_clear is not None and next_gap_days is not None:
        if not isinstance(next_clear, np.ndarray) or next_clear.shape != clear_t0.shape:
            raise ModelError(f"cloud removal: next_clear must be [3, {height}, {width}]")
        if not np.isfinite(next_gap_days) or next_gap_days <= 0:
            raise ModelError(f"cloud removal: next_gap_days must be > 0, got {next_gap_days}")
    if tile < TILE_MULTIPLE or tile % TILE_MULTIPLE:
        raise ModelError(f"cloud removal tile must be a multiple of {TILE_MULTIPLE}, got {tile}")
    invalid = ~valid
    reflectance = observed.astype(np.float32, copy=True)
    uncertainty = np.zeros_like(reflectance)
    with_next = np.zeros_like(invalid)
    if next_clear is not None:
        with_next = invalid & ~np.isnan(next_clear).any(axis=0)
    runs = (
        (invalid & ~with_next, None, 0.0),  # streaming: the last clear date only
        (with_next, next_clear, next_gap_days or 0.0),  # reprocessing: both clear dates
    )
    for pixels, after, after_gap in runs:
        if not pixels.any():
            continue
        model = model or load_for_tile(InferenceConfig(), tile)
        timing = (float(gap_days), float(after_gap), float(day_of_year))
        inputs = (clear_t0, after, s1_t, s1_t0, pixels)
        if coarsen > 1:
            inputs = coarse_inputs(*inputs, factor=coarsen)
        predicted, sigma = _predict(model, *inputs, timing, tile, overlap, batch)
        if coarsen > 1:
            # The block's predicted change on top of the pixel's own t0 (detail transfer): a
            # block across a parcel edge would otherwise give the parcel its neighbour's mix.
            t0 = np.ascontiguousarray(clear_t0, dtype=np.float32)
            kernels.detail_transfer(
                inputs[0], predicted, sigma, t0, pixels, coarsen, reflectance, uncertainty
            )
        else:
            reflectance[:, pixels] = predicted[:, pixels]
            uncertainty[:, pixels] = sigma[:, pixels]
    no_t0 = invalid & np.isnan(clear_t0).any(axis=0)
    reflectance[:, no_t0] = np.nan
    uncertainty[:, no_t0] = np.nan
    return Reconstruction(reflectance, uncertainty, invalid)


CoarseInputs = tuple[
    npt.NDArray[np.floating[Any]],
    npt.NDArray[np.floating[Any]] | None,
    npt.NDArray[np.floating[Any]],
    npt.NDArray[np.floating[Any]],
    npt.NDArray[np.bool_],
]


def coarse_inputs(
    clear_t0: npt.NDArray[np.floating[Any]],
    next_clear: npt.NDArray[np.floating[Any]] | None,
    s1_t: npt.NDArray[np.floating[Any]],
    s1_t0: npt.NDArray[np.floating[Any]],
    invalid: npt.NDArray[np.bool_],
    *,
    factor: int = 2,
) -> CoarseInputs:
    """The model's inputs on `factor` x `factor` blocks (edges padded by replication).

    Reflectance: mean of the block's finite pixels (NaN when none); radar: mean in linear
    power, back to dB (averaging dB would bias dark targets); `invalid`: a block is to be
    predicted when any of its pixels is. Rust kernels (`kernels.block_mean`, `block_any`):
    one pass over each input.
    """
    return (
        kernels.block_mean(clear_t0, factor),
        None if next_clear is None else kernels.block_mean(next_clear, factor),
        kernels.block_mean(s1_t, factor, decibel=True),
        kernels.block_mean(s1_t0, factor, decibel=True),
        kernels.block_any(invalid, factor),
    )


def _predict(
    model: Model,
    clear_t0: npt.NDArray[np.floating[Any]],
    next_clear: npt.NDArray[np.floating[Any]] | None,
    s1_t: npt.NDArray[np.floating[Any]],
    s1_t0: npt.NDArray[np.floating[Any]],
    invalid: npt.NDArray[np.bool_],
    timing: tuple[float, float, float],
    tile: int,
    overlap: int,
    batch: int,
) -> tuple[Float32Array, Float32Array]:
    """Model output over the whole grid on the windows touching `invalid` (zeros elsewhere)."""
    height, width = invalid.shape
    # Grids smaller than a tile are edge-padded, not zero-padded: zeros are not radar.
    padded_h, padded_w = max(height, tile), max(width, tile)

    def windows_of(image: Float32Array) -> Float32Array:
        """`[n, C, tile, tile]`, contiguous per input: a batch of consecutive windows is a view
        the model reads as is."""
        if (padded_h, padded_w) != (height, width):
            pad = ((0, 0), (0, padded_h - height), (0, padded_w - width))
            image = np.pad(image, pad, "edge")
        return kernels.extract_tiles(image, tile, overlap)

    t0 = windows_of(_zero_nan(clear_t0))
    inputs = {
        "s2_t0": t0,
        "s2_next": t0 if next_clear is None else windows_of(_zero_nan(next_clear)),
        "s1_t": windows_of(_fill_radar(s1_t)),
        "s1_t0": windows_of(_fill_radar(s1_t0)),
    }
    windows = kernels.tile_windows(padded_h, padded_w, tile, overlap)
    wanted = [
        k
        for k, w in enumerate(windows)
        if invalid[w.row : w.row + w.height, w.col : w.col + w.width].any()
    ]
    n_bands = len(BANDS)
    reflectance = np.zeros((len(windows), n_bands, tile, tile), dtype=np.float32)
    uncertainty = np.zeros_like(reflectance)
    for start in range(0, len(wanted), batch):
        chosen = wanted[start : start + batch]
        run: slice | list[int] = chosen
        if chosen[-1] - chosen[0] == len(chosen) - 1:  # consecutive: views, no copies
            run = slice(chosen[0], chosen[-1] + 1)
        feed = {name: array[run] for name, array in inputs.items()}
        feed["timing"] = np.tile(np.asarray(timing, dtype=np.float32), (len(chosen), 1))
        result = model.run(feed)
        reflectance[run] = result["reflectance"]
        uncertainty[run] = result["uncertainty"]
    return (
        kernels.stitch(reflectance, padded_h, padded_w, overlap)[:, :height, :width],
        kernels.stitch(uncertainty, padded_h, padded_w, overlap)[:, :height, :width],
    )


def _zero_nan(a: npt.NDArray[np.floating[Any]]) -> Float32Array:
    out = a.astype(np.float32, copy=True)
    np.copyto(out, np.float32(0), where=np.isnan(out))
    return out


def _fill_radar(s1: npt.NDArray[np.floating[Any]]) -> Float32Array:
    out = s1.astype(np.float32, copy=True)
    for band, name in zip(out, POLARISATIONS, strict=True):
        missing = np.isnan(band)
        if missing.all():
            raise ModelError(f"Sentinel-1 {name} has no valid pixel: cannot reconstruct")
        if missing.any():
            band[missing] = np.median(band[~missing])
    return out


def _check_inputs(
    observed: npt.NDArray[Any],
    clear_t0: npt.NDArray[Any],
    s1_t: npt.NDArray[Any],
    s1_t0: npt.NDArray[Any],
    gap_days: float,
    valid: npt.NDArray[Any],
) -> tuple[int, int]:
    if not isinstance(valid, np.ndarray) or valid.ndim != 2 or valid.dtype != np.bool_:
        raise ModelError("cloud removal: valid must be a 2-D boolean array [H, W]")
    height, width = valid.shape
    expected = {
        "observed": (observed, len(BANDS)),
        "clear_t0": (clear_t0, len(BANDS)),
        "s1_t": (s1_t, len(POLARISATIONS)),
        "s1_t0": (s1_t0, len(POLARISATIONS)),
    }
    for name, (array, channels) in expected.items():
        if not isinstance(array, np.ndarray) or array.shape != (channels, height, width):
            got = array.shape if isinstance(array, np.ndarray) else type(array).__name__
            raise ModelError(
                f"cloud removal: {name} must be [{channels}, {height}, {width}], got {got}"
            )
    if not np.isfinite(gap_days) or gap_days <= 0:
        raise ModelError(f"cloud removal: gap_days must be > 0, got {gap_days}")
    return height, width
