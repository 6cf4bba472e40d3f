"""Practice detection: mowing, ploughing and harvest events from a parcel observation table.

`detect_practices(observations)` turns any table that follows the observation contract
(`monitor.observations`) into practice events, with the shipped `practices` model:

1. `series_tensor` resamples every parcel-year's irregular Sentinel-2 and Sentinel-1 rows onto
   a fixed day-of-year grid (`N_BINS` bins of `BIN_DAYS` days from `GRID_START_DOY`), with
   observed masks as channels: cloudy dates (low `valid_fraction`) are missing, not zeros, and
   gaps are bridged by linear interpolation. Parcel ids are ranked in Rust from their Arrow
   string views (`rust_core/src/practice_strings.rs`); the feature columns are read in place
   from their Arrow chunks, and the per-row work (row kinds, binning, means, interpolation)
   runs in the Rust kernels of `rust_core/src/practice_grid.rs`, in parallel.
2. The model gives per-bin probabilities of each practice (`PRACTICES`). `detect_practices`
   never builds the whole grid: threads fill it batch by batch into reused buffers, each
   running the model and step 3 on its batch while another fills the next.
3. `decode_peaks` keeps local maxima above a threshold (non-maximum suppression per practice)
   and refines each date inside its bin with a parabola through the neighbouring bins (in the
   same kernel module, as is the search for each event's evidence rows).
4. Each peak's date, id window and id, the suppression of already emitted events and the
   output order come from one pass of `rust_core/src/practice_events.rs`.

Incremental use: call `detect_practices` on the season so far after each acquisition, passing
the ids already emitted; the cost is one pass over the table's rows plus the model.

Event ids hash (parcel, type, `WINDOW_DAYS`-day window of the date), so redetecting the same
practice as the series grows gives the same id; passing the ids already emitted (`emitted`)
also drops redetections whose date moved into a window up to `MOVED_WINDOWS` away, so an
event is emitted once. `ndvi_rule_events` is the classic baseline (an NDVI drop of at least
0.15 between clear observations, followed or not by a recovery).

Required columns: `parcel_id`, `acquired`, `sensor`, `valid_fraction`, `NDVI_mean`. Optional:
`B02_mean`, `B04_mean`, `B08_mean`, `B11_mean`, `VV_mean`, `VH_mean`, `source`, `product_id`,
`tile`; a missing optional column is fed to the model as its neutral value (the model was
trained with such channels dropped).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from monitor import __version__, _core
from monitor.errors import ConfigError, ObservationError
from monitor.events import ModelRef, ParcelEvent, make_event
from monitor.events import _strings as _text_column  # (UTF-8 bytes, ends): what kernels take
from monitor.infer import InferenceConfig, Model, load_model
from monitor.model_io import BIN_DAYS as BIN_DAYS
from monitor.model_io import CHANNELS as CHANNELS
from monitor.model_io import GRID_START_DOY as GRID_START_DOY
from monitor.model_io import N_BINS as N_BINS
from monitor.model_io import PRACTICES as PRACTICES

F32 = npt.NDArray[np.float32]
# An Arrow validity bitmap with the bit of the chunk's first row (None: no nulls).
_Bitmap = tuple[npt.NDArray[np.uint8], int] | None
# A float column as the kernels read it: per Arrow chunk, its values and bitmap.
_FloatColumn = list[tuple[npt.NDArray[np.float64], _Bitmap]]
# A string column as the kernels read it: per Arrow chunk, its string views (16 bytes a
# row), bitmap and data buffers.
_StringColumn = list[tuple[npt.NDArray[np.uint8], _Bitmap, list[npt.NDArray[np.uint8]]]]

EVENT_TYPES: Final = tuple(f"practice.{p}" for p in PRACTICES)

# Event ids hash the WINDOW_DAYS-day window (counted from GRID_START_DOY) holding the date.
WINDOW_DAYS: Final = 8
# A redetection whose date moved this many windows (up to 16-23 days) is the same practice:
# with missing acquisitions and outages a date can move that far as the series grows, and two
# true mowings are rarely closer than ~25 days (the model's suppression radius is 20).
MOVED_WINDOWS: Final = 2

REQUIRED_COLUMNS: Final = ("parcel_id", "acquired", "sensor", "valid_fraction", "NDVI_mean")
# Values of the model's input channels (`CHANNELS`) are normalised as (x - centre) / scale.
S2_FEATURES: Final = ("NDVI_mean", "B02_mean", "B04_mean", "B08_mean", "B11_mean")
S1_FEATURES: Final = ("VV_mean", "VH_mean")
_S2_NORM: Final = ((0.5, 0.3), (0.06, 0.04), (0.08, 0.05), (0.28, 0.1), (0.2, 0.07))
_S1_NORM: Final = ((-13.0, 4.0), (-20.0, 4.0), (-7.0, 3.0))  # VV, VH, VH - VV (dB)
INPUT_NAME: Final = "series"
OUTPUT_NAME: Final = "probability"
MODEL_NAME: Final = "practices"
#: Its static int8 quantization for ONNX Runtime on CPU (`models.practices_int8`): 1.6x the
#: series per CPU-second at the same event F1 (card `practices.md`, "Int8 on CPU").
INT8_MODEL_NAME: Final = "practices_int8"

MIN_VALID_FRACTION: Final = 0.5  # S2 rows with fewer clear pixels are treated as missing
DEFAULT_THRESHOLD: Final = 0.5
# Non-maximum suppression radius per practice, in bins (two mowings are >= ~25 days apart).
NMS_BINS: Final = {"mowing": 4, "ploughing": 5, "harvest": 6}
BATCH: Final = 4096  # series per model call on an accelerator (TensorRT)
# Series per ONNX Runtime (CPU) call: a batch's activations stay in cache. CPU-seconds of the
# shipped model per 100 000 series, 1 thread: 0.74 at 512, 0.76 at 2048, 0.85 at 4096.
CPU_BATCH: Final = 512
# Threads filling grid batches (one fills while another runs the model), whatever `workers`.
_FILL_THREADS: Final = 2
_MEMO_CHUNK: Final = 1024  # series compared at a time by `PredictionMemo`
# The missing tile of the grid kernel (rust_core/src/practice_grid.rs).
_NO_TILE: Final = 2**32 - 1
# Sensor and source codes of `_core.practice_row_kinds` (0: anything else).
_SENSOR_S2, _SENSOR_S1 = 1, 2
_SOURCE_OBSERVED, _SOURCE_REBUILT = 1, 2
_VIEW: Final = 16  # bytes of an Arrow string view
_MICROS_PER_DAY: Final = 86_400_000_000
_ID_DIGITS: Final = 32  # hex digits of an event id (`monitor.events.event_id_for`)


@dataclass(frozen=True)
class SeriesTensor:
    """The model input of a table: one row of `keys` (parcel_id, year, tile) per series."""

    keys: pl.DataFrame
    values: F32  # (series, len(CHANNELS), N_BINS)


def check_columns(columns: Sequence[str]) -> None:
    """Raise `ObservationError` naming the first required column that is missing."""
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ObservationError(
            f"observation table is missing column {missing[0]!r} "
            f"(practice detection needs {', '.join(REQUIRED_COLUMNS)})"
        )


def prepare(observations: pl.DataFrame) -> pl.DataFrame:
    """Check the columns practice detection reads; `acquired` in UTC (naive times are taken
    as UTC). Raises `ObservationError` naming the offending column."""
    check_columns(observations.columns)
    schema = observations.schema
    acquired = schema["acquired"]
    if not isinstance(acquired, pl.Datetime):
        raise ObservationError(f"column 'acquired' has dtype {acquired}, expected a Datetime")
    for column in ("parcel_id", "sensor"):
        if schema[column] not in (pl.String, pl.Categorical):
            raise ObservationError(
                f"column {column!r} has dtype {schema[column]}, expected a string"
            )
    for column in ("parcel_id", "acquired"):
        nulls = observations.get_column(column).null_count()
        if nulls:
            raise ObservationError(f"column {column!r} has {nulls} null value(s)")
    numeric = ["valid_fraction", *S2_FEATURES, *S1_FEATURES]
    for column in (c for c in numeric if c in schema):
        if not (schema[column].is_numeric() or schema[column] == pl.Null):
            raise ObservationError(
                f"column {column!r} has dtype {schema[column]}, expected a float"
            )
    utc = (
        pl.col("acquired").dt.replace_time_zone("UTC")
        if acquired.time_zone is None
        else pl.col("acquired").dt.convert_time_zone("UTC")
    )
    return observations.with_columns(
        utc.dt.cast_time_unit("us"), pl.col("parcel_id", "sensor").cast(pl.String)
    )


def _bitmap(array: pa.Array) -> _Bitmap:
    """An Arrow chunk's validity bitmap, in place, with the bit of its first row."""
    validity = array.buffers()[0]
    return None if validity is None else (np.frombuffer(validity, np.uint8), array.offset)


def _string_views(values: pl.Series) -> _StringColumn:
    """A string column as the kernels read it, in place: each chunk's Arrow string views,
    bitmap and data buffers (polars holds strings as views: no copy)."""
    # through a frame: `Series.to_arrow` would join the chunks into one copy
    frame = values.cast(pl.String).to_frame().to_arrow(compat_level=pl.CompatLevel.newest())
    chunks: _StringColumn = []
    for array in frame.column(0).chunks:
        assert array.type == pa.string_view(), array.type  # what polars exports
        _, views, *data = array.buffers()
        offset, n = array.offset, len(array)
        held = np.frombuffer(views, np.uint8) if views is not None else np.empty(0, np.uint8)
        buffers = [np.frombuffer(b, np.uint8) for b in data if b is not None]
        chunks.append((held[_VIEW * offset : _VIEW * (offset + n)], _bitmap(array), buffers))
    return chunks


def _ranks(values: pl.Series) -> tuple[pl.Series, npt.NDArray[np.uint32]]:
    """The distinct values of a string column, sorted (nulls last), and each row's rank
    among them: grouped by their exact bytes in Rust, in parallel."""
    rank, first = _core.practice_string_ranks(_string_views(values))
    return values.gather(first), rank


def _feature_values(df: pl.DataFrame, columns: Sequence[str]) -> list[_FloatColumn]:
    """Columns as the kernels read them, in place: each chunk's Arrow float64 values and
    bitmap, all columns cut alike (one Arrow table). A NaN-filled float64 copy of the 7
    features cost ~0.4 CPU-s per 8 M rows, half of them null."""
    table = df.select(pl.col(columns).cast(pl.Float64)).to_arrow()
    out: list[_FloatColumn] = []
    for column in table.columns:
        chunks: _FloatColumn = []
        for array in column.chunks:
            offset, n = array.offset, len(array)
            values = np.frombuffer(array.buffers()[1], dtype=np.float64, count=offset + n)
            chunks.append((values[offset:], _bitmap(array)))
        out.append(chunks)
    return out


def _code(column: str, codes: dict[str, int]) -> pl.Expr:
    """A string column as small codes (0: any other value, or null)."""
    code = pl.lit(0, dtype=pl.UInt8)
    for value, number in codes.items():
        code = pl.when(pl.col(column) == value).then(pl.lit(number, dtype=pl.UInt8)).otherwise(code)
    return code.alias(column)


def _row_flags(
    observations: pl.DataFrame,
    valid: _FloatColumn,
    ndvi: _FloatColumn,
    s1: tuple[_FloatColumn, _FloatColumn] | None,
    min_valid: float,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """Per row, what it feeds (`KIND_*` in rust_core/src/practice_grid.rs): a clear S2
    observation (enough valid pixels, NDVI finite), a reconstructed S2 row, an S1 row with
    finite VV and VH (when `s1` is given), or nothing; and whether it may be an event's
    evidence (an observed S2 row with enough valid pixels and an NDVI). Sensor and source
    become codes in polars (one select: both at once), the rest is one Rust pass."""
    codes = [_code("sensor", {"S2": _SENSOR_S2, "S1": _SENSOR_S1})]
    if "source" in observations.columns:
        codes.append(
            _code("source", {"observed": _SOURCE_OBSERVED, "reconstructed": _SOURCE_REBUILT})
        )
    coded = observations.select(codes)
    sensor = coded.get_column("sensor").to_numpy()
    if "source" in coded.columns:
        source = coded.get_column("source").to_numpy()
    else:
        source = np.full(observations.height, _SOURCE_OBSERVED, dtype=np.uint8)
    return _core.practice_row_kinds(sensor, source, valid, ndvi, s1, min_valid, MIN_VALID_FRACTION)


@dataclass(frozen=True)
class _Rows:
    """The rows of a prepared table as the kernels take them."""

    parcel_ids: pl.Series  # distinct, sorted
    parcel: npt.NDArray[np.uint32]  # each row's rank in parcel_ids
    micros: npt.NDArray[np.int64]  # acquired, microseconds since the epoch (UTC)

    def grid_args(self) -> dict[str, Any]:
        """The grid kernels' keyword arguments these rows give."""
        return {"parcel": self.parcel, "n_parcels": len(self.parcel_ids), "micros": self.micros}

    @classmethod
    def of(cls, observations: pl.DataFrame) -> _Rows:
        parcel_ids, parcel = _ranks(observations.get_column("parcel_id"))
        micros = observations.get_column("acquired").to_physical().to_numpy()
        return cls(parcel_ids, parcel, np.ascontiguousarray(micros, dtype=np.int64))


def _tile_ranks(tile: pl.Series) -> tuple[pl.Series, npt.NDArray[np.uint32]]:
    """`_ranks` of the tile column; a table of one tile (the engine's) is told at once, and
    its ranks are zeros the kernels read from the zero page (writing 4 bytes a row into
    fresh pages costs more than the ranking)."""
    first = tile.head(1)
    if len(first) and tile.null_count() == 0 and (tile == first.item()).all():
        return first, np.zeros(len(tile), dtype=np.uint32)
    return _ranks(tile)


@dataclass(frozen=True)
class _GridInput:
    """The row columns of a prepared table as the grid kernels take them (`args`: their
    keyword arguments but the parcel ranks and times, `_Rows.grid_args`), the tile ids, and
    which rows may be an event's evidence."""

    tiles: pl.Series
    args: dict[str, Any]
    evidence: npt.NDArray[np.bool_]


def _grid_input(observations: pl.DataFrame, min_valid: float) -> _GridInput:
    """`_GridInput` of prepared rows."""
    if "tile" in observations.columns:
        tiles, tile = _tile_ranks(observations.get_column("tile"))
        if tiles.null_count():  # sorted last: a row without a tile does not count
            tile[tile == len(tiles) - 1] = _NO_TILE
    else:
        tiles, tile = pl.Series("tile", ["unknown"]), np.zeros(observations.height, np.uint32)
    present = [i for i, c in enumerate(S2_FEATURES) if c in observations.columns]
    with_s1 = all(c in observations.columns for c in S1_FEATURES)
    s1_columns = list(S1_FEATURES) if with_s1 else []
    valid, *features = _feature_values(
        observations, ["valid_fraction", *[S2_FEATURES[i] for i in present], *s1_columns]
    )
    s2 = features[: len(present)]
    s1 = (features[-2], features[-1]) if with_s1 else None
    kind, evidence = _row_flags(observations, valid, s2[0], s1, min_valid)
    args = {
        "kind": kind,
        "tile": tile,
        "s2": s2,
        "s1": s1,
        "start_doy": GRID_START_DOY,
        "bin_days": BIN_DAYS,
        "n_bins": N_BINS,
        "n_channels": len(CHANNELS),
        "s2_channels": present,
        "s2_norm": [_S2_NORM[i] for i in present],
        "s2_observed": CHANNELS.index("S2_observed"),
        "s2_reconstructed": CHANNELS.index("S2_reconstructed"),
        "s1_channels": [CHANNELS.index(c) for c in ("VV", "VH", "VH_minus_VV")],
        "s1_norm": list(_S1_NORM),
        "s1_observed": CHANNELS.index("S1_observed"),
    }
    return _GridInput(tiles, args, evidence)


def _row_inputs(observations: pl.DataFrame) -> tuple[_Rows, _GridInput]:
    """`_Rows` and `_GridInput` of prepared rows, the parcel ranks computed beside the other
    row columns (both mostly in Rust or polars, the GIL released)."""
    with ThreadPoolExecutor(1) as pool:
        ranked = pool.submit(_Rows.of, observations)
        grid = _grid_input(observations, MIN_VALID_FRACTION)
        return ranked.result(), grid


def _series_keys(
    parcel_ids: pl.Series,
    tiles: pl.Series,
    parcel: npt.NDArray[np.uint32],
    year: npt.NDArray[np.int32],
    series_tile: npt.NDArray[np.uint32],
) -> pl.DataFrame:
    """`SeriesTensor.keys` of the grid kernels' series (parcel rank, year, tile rank)."""
    tile_index = pl.Series(series_tile, dtype=pl.UInt32)
    return pl.DataFrame(
        {
            "parcel_id": parcel_ids.gather(parcel),
            "year": pl.Series(year, dtype=pl.Int32),
            # a series none of whose rows has a tile has none
            "tile": tiles.gather(tile_index.set(tile_index == _NO_TILE, None)),
        }
    )


def _grid_kernel(rows: _Rows, grid: _GridInput) -> _core.PracticeGridInput:
    """The grid kernels' input: the rows and the layout, checked once."""
    return _core.PracticeGridInput(**rows.grid_args(), **grid.args)


def _series_tensor(
    rows: _Rows, grid: _GridInput
) -> tuple[SeriesTensor, npt.NDArray[np.uint32], npt.NDArray[np.bool_]]:
    """The model input of prepared rows, each series' parcel rank, and which rows may be an
    event's evidence."""
    parcel, year, series_tile, values = _grid_kernel(rows, grid).series_grid()
    keys = _series_keys(rows.parcel_ids, grid.tiles, parcel, year, series_tile)
    return SeriesTensor(keys, values), parcel, grid.evidence


@dataclass(frozen=True)
class _Detected:
    """What `_grid_and_peaks` finds: the series' keys and parcel ranks, the peaks of their
    probabilities (`decode_peaks`) and which rows may be an event's evidence."""

    keys: pl.DataFrame
    parcel: npt.NDArray[np.uint32]
    peaks: pl.DataFrame
    evidence: npt.NDArray[np.bool_]


def _grid_and_peaks(
    rows: _Rows, grid: _GridInput, model: Model, threshold: float, workers: int
) -> _Detected:
    """The grid, the model and peak decoding, batch by batch (`_batch(model)`): each of
    `max(workers, 2)` threads fills a batch into its own reused buffer (Rust, GIL released),
    then runs the model and decodes the batch's peaks, while another fills the next one; at
    most `workers` model calls run at once (one on TensorRT). The same batches as `predict`
    over the whole tensor, so the same bits, without the whole tensor ever in memory (its
    first touch cost ~0.17 CPU-s per 100 000 series) and with both cores busy."""
    if workers < 1:
        raise ConfigError(f"workers {workers} is not >= 1")
    gate = threading.BoundedSemaphore(workers if model.backend == "onnxruntime" else 1)
    batch = _batch(model)
    shape = (batch, len(CHANNELS), N_BINS)
    buffers = [np.empty(shape, dtype=np.float32) for _ in range(max(workers, _FILL_THREADS))]
    radius = [NMS_BINS[p] for p in PRACTICES]
    found: dict[int, tuple[npt.NDArray[Any], ...]] = {}

    def run(index: int, first: int, n: int) -> None:
        with gate:
            probability = model.run({INPUT_NAME: buffers[index][:n]})[OUTPUT_NAME]
        probability = np.ascontiguousarray(probability, dtype=np.float32)
        series, *rest = _core.practice_decode_peaks(probability, threshold, radius)
        found[first] = (series + first, *rest)

    parcel, year, series_tile = _grid_kernel(rows, grid).grid_batches(batch, buffers, run)
    # Batches in series order, then stably by practice: `decode_peaks`'s order over the whole.
    parts = [found[first] for first in sorted(found)]
    series, practice, bins, confidence = (
        np.concatenate([p[i] for p in parts]) if parts else np.empty(0, dtype)
        for i, dtype in enumerate((np.int64, np.int64, np.float64, np.float64))
    )
    order = np.argsort(practice, kind="stable")
    peaks = pl.DataFrame(
        {
            "series": series[order],
            "practice": practice[order],
            "bin": bins[order],
            "confidence": confidence[order],
        }
    )
    keys = _series_keys(rows.parcel_ids, grid.tiles, parcel, year, series_tile)
    return _Detected(keys, parcel, peaks, grid.evidence)


def series_tensor(
    observations: pl.DataFrame, *, min_valid: float = MIN_VALID_FRACTION
) -> SeriesTensor:
    """Resample a parcel observation table onto the model's grid (see the module docstring)."""
    observations = prepare(observations)
    return _series_tensor(_Rows.of(observations), _grid_input(observations, min_valid))[0]


def decode_peaks(probability: F32, threshold: float) -> pl.DataFrame:
    """Local maxima of (series, practice, bin) probabilities above `threshold`, one per
    `NMS_BINS` radius: columns series, practice (index), bin (fractional: parabola through the
    neighbours), confidence."""
    radius = [NMS_BINS[p] for p in PRACTICES]
    series, practice, bins, confidence = _core.practice_decode_peaks(
        np.ascontiguousarray(probability, dtype=np.float32), threshold, radius
    )
    return pl.DataFrame(
        {"series": series, "practice": practice, "bin": bins, "confidence": confidence}
    )


def _moments(days: npt.NDArray[np.int32]) -> pl.Series:
    """Midnight UTC of day counts since 1970-01-01."""
    micros = days.astype(np.int64) * _MICROS_PER_DAY
    return pl.Series(micros).cast(pl.Datetime("us", "UTC"))


def _event_frame(
    keys: pl.DataFrame,
    series_parcel: npt.NDArray[np.uint32],
    parcel_ids: pl.Series,
    peaks: pl.DataFrame,
    model: ModelRef,
    emitted: set[str],
) -> pl.DataFrame:
    """The events of the peaks, sorted by parcel, time and type, with their ids, less those
    emitted before (`MOVED_WINDOWS`): `EVENT_COLUMNS` but the evidence, and each event's
    parcel rank. Dates, windows, ids, suppression and order come from one kernel pass."""
    series, practice = peaks.get_column("series").to_numpy(), peaks.get_column("practice")
    peak, day, window_start, ids = _core.practice_events_of_peaks(
        series,
        practice.to_numpy(),
        peaks.get_column("bin").to_numpy(),
        series_parcel,
        keys.get_column("year").to_numpy(),
        _text_column(parcel_ids),
        _text_column(pl.Series(EVENT_TYPES)),
        GRID_START_DOY,
        BIN_DAYS,
        WINDOW_DAYS,
        MOVED_WINDOWS,
        _text_column(pl.Series(list(emitted), dtype=pl.String)),
    )
    series = series[peak]
    parcel_rank = series_parcel[series]
    event_id = pl.Series(np.frombuffer(ids, dtype=f"S{_ID_DIGITS}"), dtype=pl.Binary)
    return pl.DataFrame(
        {
            "event_id": event_id.cast(pl.String),
            "parcel_rank": parcel_rank,
            "parcel_id": parcel_ids.gather(parcel_rank),
            "tile": keys.get_column("tile").gather(series),
            "type": pl.Series(EVENT_TYPES).gather(practice.gather(peak)),
            "date": pl.Series(day).cast(pl.Date),
            "time": _moments(day),
            "confidence": peaks.get_column("confidence").gather(peak),
            "window_start": _moments(window_start),
            "window_end": _moments(window_start + WINDOW_DAYS),
        }
    ).with_columns(
        pl.lit(model.name, dtype=pl.String).alias("model"),
        pl.lit(model.version, dtype=pl.String).alias("model_version"),
    )


def _with_evidence(
    events: pl.DataFrame,
    observations: pl.DataFrame,
    rows: _Rows,
    candidate: npt.NDArray[np.bool_],
) -> pl.DataFrame:
    """The clear S2 acquisitions just before and after each event (product ids and NDVI):
    the latest strictly before its date, the earliest on or after it (a same-day image is
    "after"), among the parcel's `candidate` rows (`_row_flags`) of every year."""
    before, after = _core.practice_nearest_rows(
        rows.parcel,
        rows.micros,
        candidate,
        len(rows.parcel_ids),
        events.get_column("parcel_rank").to_numpy(),
        np.ascontiguousarray(events.get_column("time").to_physical().to_numpy(), np.int64),
    )
    product = (
        observations.get_column("product_id").cast(pl.String)
        if "product_id" in observations.columns
        else pl.repeat(None, observations.height, dtype=pl.String, eager=True)
    )
    ndvi_values = observations.get_column("NDVI_mean").cast(pl.Float64)

    def at(values: pl.Series, index: npt.NDArray[np.int64]) -> pl.Series:
        positions = pl.Series(index)
        return values.gather(positions.set(positions < 0, None))

    return events.with_columns(
        _non_null_pairs(at(product, before), at(product, after)).alias("product_ids"),
        at(ndvi_values, before).alias("ndvi_before"),
        at(ndvi_values, after).alias("ndvi_after"),
    )


def _non_null_pairs(first: pl.Series, second: pl.Series) -> pl.Series:
    """Per row, the list of its `first` and `second` values less the nulls: what
    `concat_list(first, second).list.drop_nulls()` gives, built from Arrow offsets in ~1/20
    of its time."""
    n = len(first)
    interleaved = np.arange(2 * n).reshape(2, n).T.ravel()
    both = pl.concat([first, second]).gather(interleaved)
    kept = both.is_not_null().to_numpy()
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(kept.reshape(n, 2).sum(axis=1), out=offsets[1:])
    values = both.filter(pl.Series(kept)).to_arrow()
    return pl.Series(pa.LargeListArray.from_arrays(pa.array(offsets), values))


def load_practices_model(config: InferenceConfig | None = None) -> Model:
    """The shipped practice detector on `config`'s backend: the int8 file (`INT8_MODEL_NAME`)
    on ONNX Runtime, the fp32 one (`MODEL_NAME`) on TensorRT, which builds its own engine."""
    config = config or InferenceConfig()
    return load_model(INT8_MODEL_NAME if config.backend == "onnxruntime" else MODEL_NAME, config)


@cache
def _shipped_model() -> Model:
    return load_practices_model()


def _batch(model: Model) -> int:
    """Series per model call: `CPU_BATCH` on ONNX Runtime, `BATCH` on TensorRT."""
    return CPU_BATCH if model.backend == "onnxruntime" else BATCH


def predict(model: Model, values: F32, *, workers: int = 1) -> F32:
    """Per-bin practice probabilities (series, practice, bin), in batches (`_batch`),
    `workers` batches at once. ONNX Runtime sessions run concurrently (the GIL is released)
    and a series' output does not depend on its batch, so the result is the same;
    single-threaded sessions on N workers cost ~30 % fewer CPU-seconds than one session with
    N intra-op threads (measured on the shipped model, 2 cores: the model's small
    convolutions sync often)."""
    if workers < 1:
        raise ConfigError(f"workers {workers} is not >= 1")
    out = np.empty((values.shape[0], len(PRACTICES), N_BINS), dtype=np.float32)
    batch = _batch(model)

    def run(start: int) -> None:
        chunk = values[start : start + batch]
        out[start : start + len(chunk)] = model.run({INPUT_NAME: chunk})[OUTPUT_NAME]

    starts = range(0, values.shape[0], batch)
    if workers == 1 or len(starts) < 2 or model.backend != "onnxruntime":
        for start in starts:
            run(start)
    else:
        with ThreadPoolExecutor(min(workers, len(starts))) as pool:
            list(pool.map(run, starts))  # list(): re-raises a batch's error here
    return out


class PredictionMemo:
    """The model outputs of the series a `detect_practices` call predicted last, reused by the
    next call for every series whose input is bitwise the same (same parcel, year and tile).

    Between two acquisitions of a tile most series do not change (a parcel under clouds on an
    S2 date gets no clear row), so re-detecting the season after each acquisition runs the
    model on the changed series only. The answer is the same as without the memo as long as a
    series' output does not depend on the other series of its batch: true of ONNX Runtime on
    CPU (checked bitwise in the tests), not promised by TensorRT, so only `onnxruntime` models
    use it. A memo serves one model (another model starts it afresh) and holds about
    ((channels + practices) x bins x 4) bytes per series: ~70 MB for a full tile.
    """

    def __init__(self) -> None:
        self._model: Model | None = None
        self._keys = pl.DataFrame()
        self._values: F32 = np.empty((0, len(CHANNELS), N_BINS), dtype=np.float32)
        self._probability: F32 = np.empty((0, len(PRACTICES), N_BINS), dtype=np.float32)
        #: Series predicted by the last call (the others came from the memo).
        self.predicted = 0

    def predict(self, model: Model, tensor: SeriesTensor, *, workers: int = 1) -> F32:
        """`predict(model, tensor.values)`, running the model only on new or changed series."""
        if model.backend != "onnxruntime":
            self.predicted = tensor.values.shape[0]
            return predict(model, tensor.values, workers=workers)
        values = np.ascontiguousarray(tensor.values, dtype=np.float32)
        same = np.zeros(values.shape[0], dtype=bool)
        old = np.zeros(values.shape[0], dtype=np.int64)
        if model is self._model and self._keys.height:
            found = (
                tensor.keys.join(
                    self._keys.with_row_index("old"),
                    on=["parcel_id", "year", "tile"],
                    how="left",
                    nulls_equal=True,
                    maintain_order="left",
                )
                .get_column("old")
                .cast(pl.Int64)
            )
            have = found.is_not_null().to_numpy()
            old = found.fill_null(0).to_numpy()
            # Bitwise: NaN equals NaN, -0.0 differs from 0.0 (the model may tell them apart).
            now = values.view(np.uint32).reshape(len(values), -1)
            before = self._values.view(np.uint32).reshape(len(self._values), -1)
            for start in range(0, len(now), _MEMO_CHUNK):  # small temporaries, cache-sized
                rows = slice(start, start + _MEMO_CHUNK)
                same[rows] = have[rows] & (now[rows] == before[old[rows]]).all(axis=1)
        probability = np.empty((values.shape[0], len(PRACTICES), N_BINS), dtype=np.float32)
        probability[same] = self._probability[old[same]]
        changed = np.flatnonzero(~same)
        if len(changed):
            changed_values = np.ascontiguousarray(values[changed])
            probability[changed] = predict(model, changed_values, workers=workers)
        self._model, self._keys = model, tensor.keys
        self._values, self._probability = values, probability
        self.predicted = len(changed)
        return probability


EVENT_COLUMNS: Final = (
    "event_id",
    "parcel_id",
    "tile",
    "type",
    "date",
    "time",
    "confidence",
    "window_start",
    "window_end",
    "model",
    "model_version",
    "product_ids",
    "ndvi_before",
    "ndvi_after",
)


def detect_practices(
    observations: pl.DataFrame,
    *,
    model: Model | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    emitted: set[str] | None = None,
    memo: PredictionMemo | None = None,
    workers: int = 1,
) -> pl.DataFrame:
    """Practice events of every parcel of an observation table, one row each (`EVENT_COLUMNS`),
    sorted by parcel and date. Events whose id (or the same practice's id up to
    `MOVED_WINDOWS` windows away) is in `emitted` are left out: they were emitted from an
    earlier, shorter series. With a `memo`, series unchanged since the memo's last call reuse
    its model outputs. `workers`: model batches run at once (see `predict`)."""
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"threshold {threshold} is not in (0, 1)")
    model = model or _shipped_model()
    observations = prepare(observations)
    rows, grid = _row_inputs(observations)
    if memo is None:
        found = _grid_and_peaks(rows, grid, model, threshold, workers)
    else:
        tensor, parcel_rank, candidate = _series_tensor(rows, grid)
        probability = memo.predict(model, tensor, workers=workers)
        peaks = decode_peaks(probability, threshold)
        found = _Detected(tensor.keys, parcel_rank, peaks, candidate)
    if found.keys.is_empty():
        return _empty_events()
    model_ref = ModelRef(model.name, __version__)
    events = _event_frame(
        found.keys, found.parcel, rows.parcel_ids, found.peaks, model_ref, emitted or set()
    )
    if events.is_empty():
        return _empty_events()
    return _with_evidence(events, observations, rows, found.evidence).select(EVENT_COLUMNS)


def _empty_events() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "event_id": pl.String,
            "parcel_id": pl.String,
            "tile": pl.String,
            "type": pl.String,
            "date": pl.Date,
            "time": pl.Datetime("us", "UTC"),
            "confidence": pl.Float64,
            "window_start": pl.Datetime("us", "UTC"),
            "window_end": pl.Datetime("us", "UTC"),
            "model": pl.String,
            "model_version": pl.String,
            "product_ids": pl.List(pl.String),
            "ndvi_before": pl.Float64,
            "ndvi_after": pl.Float64,
        }
    )


def practice_events(events: pl.DataFrame, detected_at: datetime) -> list[ParcelEvent]:
    """The `ParcelEvent`s of a `detect_practices` frame (same ids), stamped `detected_at`."""
    out = []
    for row in events.iter_rows(named=True):
        out.append(
            make_event(
                row["type"],
                row["parcel_id"],
                row["tile"],
                row["time"],
                detected_at,
                min(max(row["confidence"], 0.0), 1.0),
                ModelRef(row["model"], row["model_version"]),
                row["product_ids"],
                {"ndvi_before": row["ndvi_before"], "ndvi_after": row["ndvi_after"]},
                window=(row["window_start"], row["window_end"]),
            )
        )
    return out


def ndvi_rule_events(
    observations: pl.DataFrame,
    *,
    drop: float = 0.15,
    recovery_days: int = 45,
    min_valid: float = MIN_VALID_FRACTION,
) -> pl.DataFrame:
    """The NDVI drop-and-recovery baseline: an event where NDVI falls by at least `drop`
    between two consecutive clear Sentinel-2 observations (dated half-way between them; drops
    within 15 days of a kept one are the same event). If NDVI regains half the drop within
    `recovery_days` it is a mowing, otherwise a harvest. Columns: parcel_id, type, date."""
    observations = prepare(observations)
    source_ok = pl.col("source") == "observed" if "source" in observations.columns else True
    clear = (
        observations.filter(
            (pl.col("sensor") == "S2") & (pl.col("valid_fraction") >= min_valid) & source_ok
        )
        .select(
            "parcel_id",
            pl.col("acquired").dt.date().alias("day"),
            pl.col("NDVI_mean").cast(pl.Float64).alias("ndvi"),
        )
        .drop_nulls()
        .filter(pl.col("ndvi").is_not_nan())
        .group_by("parcel_id", "day")
        .agg(pl.col("ndvi").mean())
        .sort("parcel_id", "day")
    )
    steps = clear.with_columns(
        pl.col("ndvi").shift(1).over("parcel_id").alias("prev_ndvi"),
        pl.col("day").shift(1).over("parcel_id").alias("prev_day"),
    ).filter((pl.col("prev_ndvi") - pl.col("ndvi")) >= drop)
    steps = steps.with_columns(
        (pl.col("prev_day") + (pl.col("day") - pl.col("prev_day")) / 2).dt.date().alias("date"),
        (pl.col("prev_ndvi") - pl.col("ndvi")).alias("size"),
    ).with_columns(pl.col("date").shift(1).over("parcel_id").alias("prev_event"))
    steps = steps.filter(
        pl.col("prev_event").is_null()
        | ((pl.col("date") - pl.col("prev_event")).dt.total_days() > 15)
    )
    later = (
        steps.select("parcel_id", "day", "ndvi", "size", "date")
        .join(clear.rename({"day": "later_day", "ndvi": "later_ndvi"}), on="parcel_id")
        .filter(
            (pl.col("later_day") > pl.col("day"))
            & ((pl.col("later_day") - pl.col("day")).dt.total_days() <= recovery_days)
        )
    )
    recovered = (
        later.filter(pl.col("later_ndvi") >= pl.col("ndvi") + pl.col("size") / 2)
        .select("parcel_id", "date")
        .unique()
        .with_columns(pl.lit(True).alias("recovered"))
    )
    return (
        steps.select("parcel_id", "date")
        .join(recovered, on=["parcel_id", "date"], how="left")
        .select(
            "parcel_id",
            pl.when(pl.col("recovered"))
            .then(pl.lit("mowing"))
            .otherwise(pl.lit("harvest"))
            .alias("type"),
            "date",
        )
        .sort("parcel_id", "date")
    )


def read_observations(path: Path) -> pl.DataFrame:
    """An observation table from a Parquet file or an `ObservationStore` folder."""
    import json

    from monitor.errors import StoreError
    from monitor.store import MANIFEST, ObservationStore

    try:
        if path.is_dir():
            if not (path / MANIFEST).is_file():
                raise StoreError(f"{path} is a folder but not an observation store (no {MANIFEST})")
            month = json.loads((path / MANIFEST).read_text()).get("season_start_month", 1)
            store = ObservationStore(path, season_start_month=month)
            return store.scan().collect().drop("season", strict=False)
        return pl.read_parquet(path)
    except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
        if isinstance(exc, StoreError):
            raise
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreError(f"cannot read observations {path}: {reason}") from exc
