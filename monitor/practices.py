"""Practice detection: mowing, ploughing and harvest events from a parcel observation table.

`detect_practices(observations)` turns any table that follows the observation contract
(`monitor.observations`) into practice events, with the shipped `practices` model:

1. `series_tensor` resamples every parcel-year's irregular Sentinel-2 and Sentinel-1 rows onto
   a fixed day-of-year grid (`N_BINS` bins of `BIN_DAYS` days from `GRID_START_DOY`), with
   observed masks as channels: cloudy dates (low `valid_fraction`) are missing, not zeros, and
   gaps are bridged by linear interpolation. Vectorised (polars + numpy bincount), no Python
   loop per parcel.
2. The model gives per-bin probabilities of each practice (`PRACTICES`).
3. `decode_peaks` keeps local maxima above a threshold (non-maximum suppression per practice)
   and refines each date inside its bin with a parabola through the neighbouring bins.

Event ids hash (parcel, type, `WINDOW_DAYS`-day window of the date), so redetecting the same
practice as the series grows gives the same id; passing the ids already emitted (`emitted`)
also drops redetections whose date moved into a neighbouring window, so an event is emitted
once. `ndvi_rule_events` is the classic baseline (an NDVI drop of at least 0.15 between clear
observations, followed or not by a recovery).

Required columns: `parcel_id`, `acquired`, `sensor`, `valid_fraction`, `NDVI_mean`. Optional:
`B02_mean`, `B04_mean`, `B08_mean`, `B11_mean`, `VV_mean`, `VH_mean`, `source`, `product_id`,
`tile`; a missing optional column is fed to the model as its neutral value (the model was
trained with such channels dropped).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from monitor import __version__
from monitor.errors import ConfigError, ObservationError
from monitor.events import ModelRef, ParcelEvent, event_id_for, make_event
from monitor.infer import InferenceConfig, Model, load_model

F32 = npt.NDArray[np.float32]

PRACTICES: Final = ("mowing", "ploughing", "harvest")
EVENT_TYPES: Final = tuple(f"practice.{p}" for p in PRACTICES)

# The grid: 1 February to 17 December, 5-day bins (practices outside it are not sought).
GRID_START_DOY: Final = 32
BIN_DAYS: Final = 5
N_BINS: Final = 64
# Event ids hash the WINDOW_DAYS-day window (counted from GRID_START_DOY) holding the date.
WINDOW_DAYS: Final = 8

REQUIRED_COLUMNS: Final = ("parcel_id", "acquired", "sensor", "valid_fraction", "NDVI_mean")
# Model input channels, in order. Values are normalised as (x - centre) / scale.
S2_FEATURES: Final = ("NDVI_mean", "B02_mean", "B04_mean", "B08_mean", "B11_mean")
S1_FEATURES: Final = ("VV_mean", "VH_mean")
_S2_NORM: Final = ((0.5, 0.3), (0.06, 0.04), (0.08, 0.05), (0.28, 0.1), (0.2, 0.07))
_S1_NORM: Final = ((-13.0, 4.0), (-20.0, 4.0), (-7.0, 3.0))  # VV, VH, VH - VV (dB)
CHANNELS: Final = (
    "NDVI",
    "B02",
    "B04",
    "B08",
    "B11",
    "S2_observed",
    "S2_reconstructed",
    "VV",
    "VH",
    "VH_minus_VV",
    "S1_observed",
)
INPUT_NAME: Final = "series"
OUTPUT_NAME: Final = "probability"

MIN_VALID_FRACTION: Final = 0.5  # S2 rows with fewer clear pixels are treated as missing
DEFAULT_THRESHOLD: Final = 0.5
# Non-maximum suppression radius per practice, in bins (two mowings are >= ~25 days apart).
NMS_BINS: Final = {"mowing": 4, "ploughing": 5, "harvest": 6}
BATCH: Final = 4096  # series per model call
CHUNK: Final = 2048  # series per block of the grid resampling


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


def series_keys(observations: pl.DataFrame) -> tuple[pl.DataFrame, npt.NDArray[np.int64]]:
    """One row per parcel-year of the table (parcel_id, year, tile), in (parcel_id, year)
    order, and the index of each row's series. The tile of a parcel seen from two tiles is the
    smaller id."""
    tile = pl.col("tile") if "tile" in observations.columns else pl.lit("unknown").alias("tile")
    groups = (
        observations.select("parcel_id", pl.col("acquired").dt.year().alias("year"), tile)
        .with_row_index("row")
        .group_by("parcel_id", "year")
        .agg("row", pl.col("tile").min())
        .sort("parcel_id", "year")
    )
    rows = groups.get_column("row")
    series = np.empty(observations.height, dtype=np.int64)
    series[rows.explode().to_numpy()] = np.repeat(
        np.arange(groups.height), rows.list.len().to_numpy()
    )
    return groups.drop("row"), series


def _values(df: pl.DataFrame, column: str) -> npt.NDArray[np.float64]:
    series = df.get_column(column).cast(pl.Float64)  # to_numpy: nulls become NaN
    return series.to_numpy()


def _bin_means(
    flat: npt.NDArray[np.int64],
    rows: npt.NDArray[np.bool_],
    values: Sequence[npt.NDArray[np.float64]],
    size: int,
) -> tuple[F32, npt.NDArray[np.bool_]]:
    """Means per grid cell (flat index `flat`) of each of `values` over the rows selected by
    `rows` (the first of `values` must be finite there), NaN where a value is missing, and the
    cells that have rows."""
    index = flat[rows]
    counts = np.bincount(index, minlength=size)
    out = np.full((len(values), size), np.nan, dtype=np.float32)
    for i, column in enumerate(values):
        v = column[rows]
        ok = np.isfinite(v)
        if ok.all():
            n, weights = counts, v
        else:
            n = np.bincount(index, weights=ok, minlength=size)
            weights = np.where(ok, v, 0.0)
        sums = np.bincount(index, weights=weights, minlength=size)
        np.divide(sums, n, out=out[i], where=n > 0, casting="unsafe")
    return out, counts > 0


def _interpolate(values: F32, observed: npt.NDArray[np.bool_]) -> F32:
    """Linear interpolation of (features, series, bins) along bins between the bins where
    `observed` (series, bins), held constant before the first and after the last."""
    t = np.arange(N_BINS, dtype=np.int32)
    prev = np.maximum.accumulate(np.where(observed, t, -1), axis=1)
    nxt = np.minimum.accumulate(np.where(observed, t, N_BINS)[:, ::-1], axis=1)[:, ::-1]
    has_next = nxt < N_BINS
    p = np.where(prev >= 0, prev, nxt).clip(0, N_BINS - 1)
    q = np.where(has_next, nxt, p)
    weight = ((t - p) / np.maximum(q - p, 1)).astype(np.float32).ravel()
    # gather along the flattened (series, bin) axis: far faster than take_along_axis
    start = np.arange(len(observed), dtype=np.int64)[:, None] * N_BINS
    flat = values.reshape(len(values), -1)
    before, after = flat[:, (start + p).ravel()], flat[:, (start + q).ravel()]
    out: F32 = before + weight * (after - before)
    return out.reshape(values.shape)


def _fill_channels(
    x: F32,
    channels: Sequence[int],
    means: F32,
    seen: npt.NDArray[np.bool_],
    norm: Sequence[tuple[float, float]],
) -> None:
    """Write interpolated, normalised features (features, series x bins) into `x[:, channels]`;
    0, the neutral value, for a feature a series lacks (and where a band is missing on a date
    that has NDVI). Blocks of series keep the temporaries in cache."""
    centre = np.array([c for c, _ in norm], dtype=np.float32)[:, None, None]
    scale = np.array([s for _, s in norm], dtype=np.float32)[:, None, None]
    for start in range(0, len(x), CHUNK):
        stop = min(start + CHUNK, len(x))
        observed = seen[start * N_BINS : stop * N_BINS].reshape(-1, N_BINS)
        block = means[:, start * N_BINS : stop * N_BINS].reshape(len(means), -1, N_BINS)
        out = np.nan_to_num((_interpolate(block, observed) - centre) / scale, nan=0.0)
        out *= np.asarray(observed.any(axis=1), dtype=bool)[None, :, None]
        x[start:stop, channels] = out.swapaxes(0, 1)


def series_tensor(
    observations: pl.DataFrame, *, min_valid: float = MIN_VALID_FRACTION
) -> SeriesTensor:
    """Resample a parcel observation table onto the model's grid (see the module docstring)."""
    observations = prepare(observations)
    keys, series = series_keys(observations)
    n, size = keys.height, keys.height * N_BINS
    doy = observations.get_column("acquired").dt.ordinal_day().to_numpy().astype(np.int64)
    bins = (doy - GRID_START_DOY) // BIN_DAYS
    inside = (bins >= 0) & (bins < N_BINS)
    flat = series * N_BINS + np.clip(bins, 0, N_BINS - 1)
    source = pl.col("source") if "source" in observations.columns else pl.lit("observed")
    flags = observations.select(
        (pl.col("sensor") == "S2").alias("s2"),
        (pl.col("sensor") == "S1").alias("s1"),
        (source == "reconstructed").alias("rebuilt"),
    )
    is_s2, is_s1, rebuilt = (flags.get_column(c).to_numpy() for c in ("s2", "s1", "rebuilt"))
    x = np.zeros((n, len(CHANNELS), N_BINS), dtype=np.float32)

    present = [i for i, c in enumerate(S2_FEATURES) if c in observations.columns]
    s2_values = [_values(observations, S2_FEATURES[i]) for i in present]
    s2 = inside & is_s2 & np.isfinite(s2_values[0])  # NDVI: first, required
    clear = s2 & ~rebuilt & (_values(observations, "valid_fraction") >= min_valid)
    clear_means, clear_seen = _bin_means(flat, clear, s2_values, size)
    rebuilt_means, rebuilt_seen = _bin_means(flat, s2 & rebuilt, s2_values, size)
    # A bin takes its clear observations, else its reconstructed rows (flagged as such).
    use_rebuilt = rebuilt_seen & ~clear_seen
    means = np.where(use_rebuilt, rebuilt_means, clear_means)
    norm = [_S2_NORM[i] for i in present]
    _fill_channels(x, present, means, clear_seen | use_rebuilt, norm)
    x[:, CHANNELS.index("S2_observed")] = clear_seen.reshape(n, N_BINS)
    x[:, CHANNELS.index("S2_reconstructed")] = use_rebuilt.reshape(n, N_BINS)

    if all(c in observations.columns for c in S1_FEATURES):
        vv, vh = (_values(observations, c) for c in S1_FEATURES)
        s1 = inside & is_s1 & np.isfinite(vv) & np.isfinite(vh)
        s1_means, s1_seen = _bin_means(flat, s1, [vv, vh, vh - vv], size)
        first = CHANNELS.index("VV")
        _fill_channels(x, [first, first + 1, first + 2], s1_means, s1_seen, _S1_NORM)
        x[:, CHANNELS.index("S1_observed")] = s1_seen.reshape(n, N_BINS)
    return SeriesTensor(keys, x)


def decode_peaks(probability: F32, threshold: float) -> pl.DataFrame:
    """Local maxima of (series, practice, bin) probabilities above `threshold`, one per
    `NMS_BINS` radius: columns series, practice (index), bin (fractional: parabola through the
    neighbours), confidence."""
    frames = []
    for k, practice in enumerate(PRACTICES):
        p = probability[:, k]
        r = NMS_BINS[practice]
        padded = np.pad(p, ((0, 0), (r, r)), constant_values=-np.inf)
        before, after = (
            padded[:, r - 1 : r - 1 + N_BINS].copy(),
            padded[:, r + 1 : r + 1 + N_BINS].copy(),
        )
        for d in range(2, r + 1):
            np.maximum(before, padded[:, r - d : r - d + N_BINS], out=before)
            np.maximum(after, padded[:, r + d : r + d + N_BINS], out=after)
        # > everything before and >= everything after: one peak per plateau
        peak = (p >= threshold) & (p > before) & (p >= after)
        series, bins = np.nonzero(peak)
        centre = p[series, bins]
        left = p[series, np.maximum(bins - 1, 0)]
        right = p[series, np.minimum(bins + 1, N_BINS - 1)]
        curvature = left - 2 * centre + right
        safe = np.where(curvature < 0, curvature, -1.0)
        offset = np.where(curvature < 0, np.clip(0.5 * (left - right) / safe, -0.5, 0.5), 0.0)
        frames.append(
            pl.DataFrame(
                {
                    "series": series.astype(np.int64),
                    "practice": np.full(len(series), k, dtype=np.int64),
                    "bin": (bins + offset).astype(np.float64),
                    "confidence": centre.astype(np.float64),
                }
            )
        )
    return pl.concat(frames)


def _date_of(year: pl.Expr, doy: pl.Expr) -> pl.Expr:
    return pl.date(year, 1, 1) + pl.duration(days=doy - 1)


def _window_id(parcel: str, type_: str, year: int, window: int) -> str:
    start = datetime(year, 1, 1, tzinfo=UTC) + timedelta(GRID_START_DOY - 1 + window * WINDOW_DAYS)
    return event_id_for(parcel, type_, start, start + timedelta(WINDOW_DAYS))


def _event_frame(keys: pl.DataFrame, peaks: pl.DataFrame, model: ModelRef) -> pl.DataFrame:
    doy = (GRID_START_DOY + BIN_DAYS * pl.col("bin") + (BIN_DAYS - 1) / 2).round().cast(pl.Int32)
    events = (
        peaks.join(keys.with_row_index("series").cast({"series": pl.Int64}), on="series")
        .with_columns(
            pl.col("practice").replace_strict(dict(enumerate(EVENT_TYPES))).alias("type"),
            _date_of(pl.col("year"), doy).alias("date"),
            ((doy - GRID_START_DOY) // WINDOW_DAYS).alias("window"),
        )
        .with_columns(
            _date_of(pl.col("year"), GRID_START_DOY + pl.col("window") * WINDOW_DAYS)
            .cast(pl.Datetime("us", "UTC"))
            .alias("window_start"),
        )
        .with_columns(
            (pl.col("window_start") + pl.duration(days=WINDOW_DAYS)).alias("window_end"),
            pl.col("date").cast(pl.Datetime("us", "UTC")).alias("time"),
        )
    )
    ids = [
        _window_id(parcel, type_, year, window)
        for parcel, type_, year, window in events.select(
            "parcel_id", "type", "year", "window"
        ).iter_rows()
    ]
    return events.with_columns(
        pl.Series("event_id", ids, dtype=pl.String),
        pl.lit(model.name).alias("model"),
        pl.lit(model.version).alias("model_version"),
    )


def _already_emitted(events: pl.DataFrame, emitted: set[str]) -> pl.Series:
    """Whether each event, or the same practice in a neighbouring window, was emitted."""
    rows = events.select("parcel_id", "type", "year", "window").iter_rows()
    flags = [any(_window_id(p, t, y, w + d) in emitted for d in (0, -1, 1)) for p, t, y, w in rows]
    return pl.Series("emitted", flags, dtype=pl.Boolean)


def _with_evidence(events: pl.DataFrame, observations: pl.DataFrame) -> pl.DataFrame:
    """The clear S2 acquisitions just before and after each event (product ids and NDVI)."""
    product = pl.col("product_id") if "product_id" in observations.columns else pl.lit(None)
    clear = (
        observations.filter(
            (pl.col("sensor") == "S2") & (pl.col("valid_fraction") >= MIN_VALID_FRACTION)
        )
        .filter(pl.col("source") == "observed" if "source" in observations.columns else True)
        .select(
            "parcel_id",
            pl.col("acquired").alias("at"),
            product.cast(pl.String).alias("product"),
            pl.col("NDVI_mean").cast(pl.Float64).alias("ndvi"),
        )
        .drop_nulls("ndvi")
        .filter(pl.col("ndvi").is_not_nan())
        .sort("at")
    )
    ordered = events.sort("time")
    # both sides are sorted by time overall, hence within each parcel
    before, after = (
        ordered.join_asof(
            clear,
            left_on="time",
            right_on="at",
            by="parcel_id",
            strategy=strategy,
            allow_exact_matches=strategy == "forward",  # a same-day image is "after"
            check_sortedness=False,
        )
        for strategy in ("backward", "forward")
    )
    return ordered.with_columns(
        pl.concat_list(before.get_column("product"), after.get_column("product"))
        .list.drop_nulls()
        .alias("product_ids"),
        before.get_column("ndvi").alias("ndvi_before"),
        after.get_column("ndvi").alias("ndvi_after"),
    ).sort("parcel_id", "time", "type")


@cache
def _shipped_model() -> Model:
    return load_model("practices", InferenceConfig())


def predict(model: Model, values: F32) -> F32:
    """Per-bin practice probabilities (series, practice, bin), in batches."""
    out = np.empty((values.shape[0], len(PRACTICES), N_BINS), dtype=np.float32)
    for start in range(0, values.shape[0], BATCH):
        chunk = values[start : start + BATCH]
        out[start : start + len(chunk)] = model.run({INPUT_NAME: chunk})[OUTPUT_NAME]
    return out


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
) -> pl.DataFrame:
    """Practice events of every parcel of an observation table, one row each (`EVENT_COLUMNS`),
    sorted by parcel and date. Events whose id (or the same practice's id in a neighbouring
    window) is in `emitted` are left out: they were emitted from an earlier, shorter series."""
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"threshold {threshold} is not in (0, 1)")
    model = model or _shipped_model()
    observations = prepare(observations)
    tensor = series_tensor(observations)
    if tensor.keys.is_empty():
        return _empty_events()
    peaks = decode_peaks(predict(model, tensor.values), threshold)
    ref = ModelRef(model.name, __version__)
    events = _event_frame(tensor.keys, peaks, ref)
    if emitted:
        events = events.filter(~_already_emitted(events, emitted))
    if events.is_empty():
        return _empty_events()
    return _with_evidence(events, observations).select(EVENT_COLUMNS)


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
