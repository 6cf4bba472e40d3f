"""The parcel observation table: the contract between zonal statistics, the store and the models.

Long format, one row per parcel x acquisition x source. The fixed columns come first (see
`FIXED_SCHEMA`), then one Float64 column per band statistic named `{BAND}_{stat}`, e.g.
`B04_mean`, `NDVI_p50`, `VV_mean`. Reflectance is a float in 0-1, backscatter is in dB.

`validate_observations` is the gate every producer passes its frame through: it checks the
contract, casts to the canonical dtypes and orders the columns, so that every file of the store
has the same dtypes for the same column.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

import polars as pl

from monitor.errors import ObservationError

# Sentinel-2 MSI bands (L2A omits B10, but accepting it costs nothing and serves L1C users).
S2_BANDS: Final = (
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B8A",
    "B09",
    "B10",
    "B11",
    "B12",
)
S1_BANDS: Final = ("VV", "VH")
DERIVED_BANDS: Final = ("NDVI",)
BANDS: Final = S2_BANDS + S1_BANDS + DERIVED_BANDS

# Which sensor each band comes from (NDVI is derived from Sentinel-2 red and near infrared).
BAND_SENSOR: Final[dict[str, str]] = {
    **dict.fromkeys(S2_BANDS, "S2"),
    **dict.fromkeys(S1_BANDS, "S1"),
    "NDVI": "S2",
}

# `wmean` is the mean weighted by pixel coverage fraction; the others are over valid pixels.
STATS: Final = ("mean", "std", "min", "max", "p10", "p50", "p90", "wmean")

SENSORS: Final = ("S2", "S1")
SOURCES: Final = ("observed", "reconstructed")

FIXED_SCHEMA: Final[dict[str, pl.DataType]] = {
    "parcel_id": pl.String(),
    "acquired": pl.Datetime("us", "UTC"),
    "sensor": pl.String(),
    "product_id": pl.String(),
    "tile": pl.String(),
    "pixel_count": pl.UInt32(),
    "valid_count": pl.UInt32(),
    "valid_fraction": pl.Float64(),
    "source": pl.String(),
}
FIXED_COLUMNS: Final = tuple(FIXED_SCHEMA)
BAND_STAT_DTYPE: Final[pl.DataType] = pl.Float64()

# One row per (parcel, product, tile, source): an acquisition observes a parcel once per tile
# grid (a Sentinel-1 product spans several tiles, and parcels in the overlap of two tiles are
# in both), and may add one reconstructed row for it.
ROW_KEY: Final = ("parcel_id", "product_id", "tile", "source")

_BAND_STAT_RE: Final = re.compile(rf"^({'|'.join(BANDS)})_({'|'.join(STATS)})$")
_STRING_COLUMNS: Final = tuple(c for c, t in FIXED_SCHEMA.items() if t == pl.String())
_COUNT_COLUMNS: Final = ("pixel_count", "valid_count")


def band_stat_name(band: str, stat: str) -> str:
    """The column name of a band statistic, checked against the known bands and statistics."""
    name = f"{band}_{stat}"
    if _BAND_STAT_RE.match(name) is None:
        raise ObservationError(f"unknown band statistic {name!r} (band {band!r}, stat {stat!r})")
    return name


def parse_band_stat(column: str) -> tuple[str, str] | None:
    """`(band, stat)` for a band statistic column name, None for any other name."""
    match = _BAND_STAT_RE.match(column)
    return None if match is None else (match.group(1), match.group(2))


def band_stat_columns(df: pl.DataFrame | pl.LazyFrame) -> list[str]:
    """The band statistic columns of a frame, in the frame's order."""
    names = df.collect_schema().names() if isinstance(df, pl.LazyFrame) else df.columns
    return [c for c in names if _BAND_STAT_RE.match(c)]


def sort_band_stats(columns: Iterable[str]) -> list[str]:
    """Band statistics in band order, then statistic order (stable across producers)."""

    def key(column: str) -> tuple[int, int]:
        band, stat = parse_band_stat(column) or ("", "")
        return BANDS.index(band), STATS.index(stat)

    return sorted(columns, key=key)


def _cast_fixed(df: pl.DataFrame, column: str, target: pl.DataType) -> pl.Series:
    series = df.get_column(column)
    dtype = series.dtype
    if dtype == pl.Null:  # an empty column built from an empty list (nulls are refused earlier)
        return series.cast(target)
    if column == "acquired":
        if not isinstance(dtype, pl.Datetime):
            raise ObservationError(f"column 'acquired' has dtype {dtype}, expected a UTC Datetime")
        if dtype.time_zone is None:
            raise ObservationError("column 'acquired' is a naive Datetime, expected UTC")
        return series.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    if column in _COUNT_COLUMNS:
        if not dtype.is_integer():
            raise ObservationError(f"column {column!r} has dtype {dtype}, expected an integer")
        if (series < 0).any():
            raise ObservationError(f"column {column!r} has negative values")
    elif target == pl.String() and not isinstance(dtype, pl.String | pl.Categorical | pl.Enum):
        raise ObservationError(f"column {column!r} has dtype {dtype}, expected a string")
    elif target == pl.Float64() and not dtype.is_numeric():
        raise ObservationError(f"column {column!r} has dtype {dtype}, expected a float")
    try:
        return series.cast(target, strict=True)
    except pl.exceptions.InvalidOperationError as exc:
        raise ObservationError(f"column {column!r} cannot be cast to {target}") from exc


def _check_values(df: pl.DataFrame) -> None:
    for column, allowed in (("sensor", SENSORS), ("source", SOURCES)):
        bad = df.filter(~pl.col(column).is_in(allowed)).get_column(column).unique().sort()
        if len(bad):
            raise ObservationError(
                f"column {column!r} has values {bad.head(3).to_list()}, expected one of {allowed}"
            )
    fraction = df.get_column("valid_fraction")
    out_of_range = fraction.is_nan() | (fraction < 0.0) | (fraction > 1.0)
    if out_of_range.any():
        raise ObservationError(
            f"column 'valid_fraction' has {out_of_range.sum()} values outside [0, 1]"
        )
    over = (df.get_column("valid_count") > df.get_column("pixel_count")).sum()
    if over:
        raise ObservationError(f"column 'valid_count' exceeds 'pixel_count' in {over} rows")
    empty = (df.get_column("parcel_id").str.len_bytes() == 0) | (
        df.get_column("product_id").str.len_bytes() == 0
    )
    if empty.any():
        raise ObservationError(f"columns 'parcel_id'/'product_id' have {empty.sum()} empty values")
    duplicated = df.select(ROW_KEY).is_duplicated()
    if duplicated.any():
        first = df.filter(duplicated).row(0, named=True)
        raise ObservationError(
            f"{duplicated.sum()} rows share a (parcel_id, product_id, tile, source) key, e.g. "
            f"parcel {first['parcel_id']!r} product {first['product_id']!r} "
            f"tile {first['tile']!r} source {first['source']!r}"
        )


def validate_observations(df: pl.DataFrame) -> pl.DataFrame:
    """Check a parcel observation table against the contract; return it in canonical form.

    Canonical form: the fixed columns with the dtypes of `FIXED_SCHEMA` (`acquired` converted to
    UTC, microseconds), then the band statistics as Float64 in band and statistic order.
    Raises `ObservationError` with a one-line reason naming the offending column.
    """
    if not isinstance(df, pl.DataFrame):
        raise ObservationError(f"expected a polars DataFrame, got {type(df).__name__}")
    missing = [c for c in FIXED_COLUMNS if c not in df.columns]
    if missing:
        raise ObservationError(f"observation table is missing column {missing[0]!r}")
    extra = [c for c in df.columns if c not in FIXED_SCHEMA and _BAND_STAT_RE.match(c) is None]
    if extra:
        raise ObservationError(
            f"column {extra[0]!r} is neither a contract column nor a {{BAND}}_{{stat}} column"
        )
    columns: list[pl.Series] = []
    for column, target in FIXED_SCHEMA.items():
        nulls = df.get_column(column).null_count()
        if nulls:
            raise ObservationError(f"column {column!r} has {nulls} null values")
        columns.append(_cast_fixed(df, column, target))
    for column in sort_band_stats(band_stat_columns(df)):
        series = df.get_column(column)
        if not (series.dtype.is_numeric() or series.dtype == pl.Null):
            raise ObservationError(f"column {column!r} has dtype {series.dtype}, expected a float")
        columns.append(series.cast(BAND_STAT_DTYPE))
    out = pl.DataFrame(columns)
    _check_values(out)
    return out
