"""Type stubs of the compiled kernels (`rust_core`, built by maturin). Private: import the
typed facades in `monitor` instead. Checked against the compiled module by mypy stubtest."""

import os
from collections.abc import Callable
from typing import Any, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "LabelRaster",
    "PracticeGridInput",
    "__version__",
    "build_label_raster",
    "coarse_block_any",
    "coarse_block_mean",
    "coarse_detail_transfer",
    "encode_events",
    "encode_record_batches",
    "event_ids",
    "fill_back_block",
    "key_partitions",
    "physical_values",
    "pixel_set",
    "practice_decode_peaks",
    "practice_events_of_peaks",
    "practice_nearest_rows",
    "practice_row_kinds",
    "practice_string_ranks",
    "seal_record_batch",
    "sim_burn_edges",
    "sim_render_optical",
    "sim_render_radar",
    "sim_snow_fraction",
    "sim_texture",
    "sim_upsample",
    "tiling_extract",
    "tiling_stitch",
    "tiling_windows",
    "upsample_classes",
    "validity_mask_probability",
    "validity_mask_scl",
    "zonal_stats",
]
__version__: str

@final
class LabelRaster:
    @staticmethod
    def from_labels(
        labels: npt.NDArray[np.uint32], n_parcels: int, transform: tuple[float, ...] | list[float]
    ) -> LabelRaster: ...
    @staticmethod
    def load(path: str | os.PathLike[str]) -> LabelRaster: ...
    def save(self, path: str | os.PathLike[str]) -> None: ...
    @property
    def n_parcels(self) -> int: ...
    @property
    def shape(self) -> tuple[int, int]: ...
    @property
    def transform(self) -> list[float]: ...
    @property
    def has_coverage(self) -> bool: ...
    @property
    def labels(self) -> npt.NDArray[np.uint32]: ...
    @property
    def offsets(self) -> npt.NDArray[np.uint64]: ...
    @property
    def pixels(self) -> npt.NDArray[np.uint32]: ...
    @property
    def cov_offsets(self) -> npt.NDArray[np.uint64]: ...
    @property
    def cov_pixels(self) -> npt.NDArray[np.uint32]: ...
    @property
    def cov_fraction(self) -> npt.NDArray[np.float64]: ...
    @property
    def pixel_counts(self) -> npt.NDArray[np.uint64]: ...
    def parcel_pixels(self, p: int) -> npt.NDArray[np.uint32]: ...
    def coverage(self, p: int) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.float64]]: ...

def build_label_raster(
    coords: npt.NDArray[np.float64],
    ring_offsets: npt.NDArray[np.int64],
    polygon_offsets: npt.NDArray[np.int64],
    geometry_offsets: npt.NDArray[np.int64],
    height: int,
    width: int,
    transform: tuple[float, ...] | list[float],
    coverage: bool,
) -> LabelRaster: ...
def validity_mask_scl(
    scl: npt.NDArray[Any], invalid_classes: list[int], dilation: int
) -> npt.NDArray[np.bool_]: ...
def validity_mask_probability(
    prob: npt.NDArray[Any], threshold: float, dilation: int, nodata: float | None
) -> npt.NDArray[np.bool_]: ...
def upsample_classes(classes: npt.NDArray[Any], factor: int) -> npt.NDArray[Any]: ...
def zonal_stats(
    labels: LabelRaster,
    bands: list[npt.NDArray[Any]],
    valid: npt.NDArray[np.bool_] | None,
    scales: list[float],
    offsets: list[float],
    nodata: list[float | None],
    ndvi: tuple[int, int] | None,
    weighted_mean: bool,
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32], npt.NDArray[np.float64]]: ...
def pixel_set(
    labels: LabelRaster,
    bands: list[npt.NDArray[Any]],
    valid: npt.NDArray[np.bool_] | None,
    scales: list[float],
    offsets: list[float],
    nodata: list[float | None],
    n_samples: int,
    seed: int,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]: ...
def tiling_windows(
    height: int, width: int, tile: int, overlap: int
) -> list[tuple[int, int, int, int]]: ...
def tiling_extract(
    image: npt.NDArray[np.float32], tile: int, overlap: int
) -> npt.NDArray[np.float32]: ...
def tiling_stitch(
    tiles: npt.NDArray[np.float32], height: int, width: int, overlap: int
) -> npt.NDArray[np.float32]: ...
def coarse_block_mean(
    image: npt.NDArray[np.float32], factor: int, decibel: bool
) -> npt.NDArray[np.float32]: ...
def coarse_block_any(mask: npt.NDArray[np.bool_], factor: int) -> npt.NDArray[np.bool_]: ...
def coarse_detail_transfer(
    block_t0: npt.NDArray[np.float32],
    predicted: npt.NDArray[np.float32],
    sigma: npt.NDArray[np.float32],
    t0: npt.NDArray[np.float32],
    pixels: npt.NDArray[np.bool_],
    factor: int,
    reflectance: npt.NDArray[np.float32],
    uncertainty: npt.NDArray[np.float32],
) -> None: ...
def fill_back_block(
    bands: npt.NDArray[np.float32],
    done: npt.NDArray[np.bool_],
    count: npt.NDArray[np.float64],
    sigma_sum: npt.NDArray[np.float64],
    confidence: npt.NDArray[np.float64],
    reflectance: npt.NDArray[np.float32],
    sigma: npt.NDArray[np.float32],
    target: npt.NDArray[np.bool_],
    labels: npt.NDArray[np.uint32],
    row: int,
    col: int,
    sigma_ref: float,
) -> None: ...
def physical_values(
    raw: npt.NDArray[Any],
    scale: float,
    offset: float,
    nodata: float | None,
    out: npt.NDArray[np.float32],
    valid: npt.NDArray[np.bool_] | None = None,
) -> None: ...

# A float column in Arrow's chunks: each chunk's values, and its validity bitmap with the bit
# offset when some are null. The columns of one call are cut alike.
_FloatChunk = tuple[npt.NDArray[np.float64], tuple[npt.NDArray[np.uint8], int] | None]
_FloatColumn = list[_FloatChunk]

# A string column in Arrow's chunks: each chunk's string views (16 bytes a row), validity
# bitmap with its bit offset when some are null, and data buffers.
_StringColumn = list[
    tuple[
        npt.NDArray[np.uint8], tuple[npt.NDArray[np.uint8], int] | None, list[npt.NDArray[np.uint8]]
    ]
]

def practice_string_ranks(
    column: _StringColumn,
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint64]]: ...
def practice_row_kinds(
    sensor: npt.NDArray[np.uint8],
    source: npt.NDArray[np.uint8],
    valid_fraction: _FloatColumn,
    ndvi: _FloatColumn,
    s1: tuple[_FloatColumn, _FloatColumn] | None,
    min_valid: float,
    evidence_min_valid: float,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]: ...

@final
class PracticeGridInput:
    """Row columns and grid layout, built once; the grid whole or batch by batch."""

    def __new__(
        cls,
        parcel: npt.NDArray[np.uint32],
        n_parcels: int,
        micros: npt.NDArray[np.int64],
        kind: npt.NDArray[np.uint8],
        tile: npt.NDArray[np.uint32],
        s2: list[_FloatColumn],
        s1: tuple[_FloatColumn, _FloatColumn] | None,
        start_doy: int,
        bin_days: int,
        n_bins: int,
        n_channels: int,
        s2_channels: list[int],
        s2_norm: list[tuple[float, float]],
        s2_observed: int,
        s2_reconstructed: int,
        s1_channels: list[int] | tuple[int, int, int],
        s1_norm: list[tuple[float, float]] | tuple[tuple[float, float], ...],
        s1_observed: int,
    ) -> PracticeGridInput: ...
    def series_grid(
        self,
    ) -> tuple[
        npt.NDArray[np.uint32],
        npt.NDArray[np.int32],
        npt.NDArray[np.uint32],
        npt.NDArray[np.float32],
    ]: ...
    def grid_batches(
        self,
        batch: int,
        buffers: list[npt.NDArray[np.float32]],
        run: Callable[[int, int, int], object],
    ) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int32], npt.NDArray[np.uint32]]: ...

def practice_decode_peaks(
    probability: npt.NDArray[np.float32], threshold: float, radius: list[int]
) -> tuple[
    npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]
]: ...
def practice_nearest_rows(
    parcel: npt.NDArray[np.uint32],
    micros: npt.NDArray[np.int64],
    candidate: npt.NDArray[np.bool_],
    n_parcels: int,
    event_parcel: npt.NDArray[np.uint32],
    event_micros: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
def practice_events_of_peaks(
    series: npt.NDArray[np.int64],
    practice: npt.NDArray[np.int64],
    bin: npt.NDArray[np.float64],
    series_parcel: npt.NDArray[np.uint32],
    series_year: npt.NDArray[np.int32],
    parcel_ids: _StrColumn,
    types: _StrColumn,
    start_doy: int,
    bin_days: int,
    window_days: int,
    moved_windows: int,
    emitted: _StrColumn,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.int32], bytes]: ...

_StrColumn = tuple[bytes, npt.NDArray[np.int64]]

def event_ids(
    parcel: _StrColumn,
    kind: _StrColumn,
    start: _StrColumn,
    end: _StrColumn,
    product: _StrColumn,
    tile: _StrColumn,
) -> list[str]: ...
def encode_events(
    event_id: _StrColumn,
    kind: _StrColumn,
    parcel: _StrColumn,
    tile: _StrColumn,
    time: _StrColumn,
    detected_at: _StrColumn,
    model_name: _StrColumn,
    model_version: _StrColumn,
    schema_version: _StrColumn,
    confidence: npt.NDArray[np.float64],
    products: _StrColumn,
    product_ends: npt.NDArray[np.int64],
    window_start: _StrColumn,
    window_end: _StrColumn,
    has_window: npt.NDArray[np.bool_],
    stat_names: list[str],
    stat_values: npt.NDArray[np.float64],
    stat_present: npt.NDArray[np.bool_],
) -> list[tuple[bytes, bytes]]: ...
def sim_render_optical(
    labels: npt.NDArray[np.int32],
    mean: npt.NDArray[np.float32],
    slope: npt.NDArray[np.float32],
    texture: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32] | npt.NDArray[np.uint16],
    *,
    noise_seed: int | None = None,
    snow: npt.NDArray[np.float32] | None = None,
    snow_value: float = 0.0,
    through: npt.NDArray[np.float32] | None = None,
    opacity: npt.NDArray[np.float32] | None = None,
    cloud: float = 0.0,
    cirrus: npt.NDArray[np.float32] | None = None,
    cirrus_factor: float = 0.0,
    patches: npt.NDArray[np.float32] | None = None,
    haze_factor: float = 0.0,
    haze: float = 0.0,
    surface_out: npt.NDArray[np.uint16] | None = None,
    saturated: npt.NDArray[np.bool_] | None = None,
) -> None: ...
def sim_render_radar(
    labels: npt.NDArray[np.int32],
    db: npt.NDArray[np.float32],
    texture: npt.NDArray[np.float32],
    texture_db: float,
    ramp: npt.NDArray[np.float32],
    speckle_table: npt.NDArray[np.float32],
    seed: int,
    out: npt.NDArray[np.float32],
    *,
    extra_db: npt.NDArray[np.float32] | None = None,
    quantum: float = 64.0,
) -> None: ...
def encode_record_batches(
    records: list[tuple[bytes, bytes]],
    partitions: npt.NDArray[np.int64],
    n_partitions: int,
    max_batch_bytes: int,
    timestamp_ms: int,
) -> list[tuple[int, int, bytes]]: ...
def key_partitions(keys: list[bytes], n_partitions: int) -> npt.NDArray[np.int64]: ...
def seal_record_batch(
    batch: bytes,
    producer_id: int,
    producer_epoch: int,
    base_sequence: int,
    transactional: bool,
) -> bytearray: ...
def sim_upsample(
    coarse: npt.NDArray[np.float32],
    factor: float,
    out: npt.NDArray[np.float32],
    *,
    offset: float = 0.0,
) -> None: ...
def sim_snow_fraction(
    field: npt.NDArray[np.float32],
    factor: float,
    labels: npt.NDArray[np.int32],
    visible: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32],
) -> None: ...
def sim_burn_edges(
    ax: npt.NDArray[np.float64],
    ay: npt.NDArray[np.float64],
    bx: npt.NDArray[np.float64],
    by: npt.NDArray[np.float64],
    values: npt.NDArray[np.int32],
    out: npt.NDArray[np.int32],
) -> None: ...
def sim_texture(
    labels: npt.NDArray[np.int32],
    patches: npt.NDArray[np.float32],
    patchy: npt.NDArray[np.float32],
    grainy: npt.NDArray[np.float32],
    grain_table: npt.NDArray[np.float32],
    seed: int,
    out: npt.NDArray[np.float32],
) -> None: ...
