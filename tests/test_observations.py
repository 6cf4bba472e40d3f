"""The parcel observation table contract: what validation accepts, casts and refuses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from monitor.errors import MonitorError, ObservationError
from monitor.observations import (
    FIXED_COLUMNS,
    FIXED_SCHEMA,
    band_stat_columns,
    band_stat_name,
    parse_band_stat,
    validate_observations,
)


def observations(n: int = 4, **overrides: object) -> pl.DataFrame:
    """A valid Sentinel-2 observation table of n parcels from one product."""
    columns: dict[str, object] = {
        "parcel_id": [f"P{i}" for i in range(n)],
        "acquired": [datetime(2025, 6, 1, 10, 56, 19, tzinfo=UTC)] * n,
        "sensor": ["S2"] * n,
        "product_id": ["S2B_MSIL2A_20250601T105619_T31UFS"] * n,
        "tile": ["31UFS"] * n,
        "pixel_count": [100 + i for i in range(n)],
        "valid_count": [50 + i for i in range(n)],
        "valid_fraction": [(50 + i) / (100 + i) for i in range(n)],
        "source": ["observed"] * n,
        "NDVI_mean": np.linspace(0.1, 0.8, n),
        "B04_std": np.linspace(0.01, 0.02, n).astype(np.float32),
        "B04_mean": np.linspace(0.05, 0.1, n),
    }
    columns.update(overrides)
    return pl.DataFrame(columns)


def test_valid_table_is_cast_to_canonical_dtypes_and_order() -> None:
    out = validate_observations(observations())
    assert out.columns == [*FIXED_COLUMNS, "B04_mean", "B04_std", "NDVI_mean"]
    for column, dtype in FIXED_SCHEMA.items():
        assert out.schema[column] == dtype, column
    assert out.schema["B04_std"] == pl.Float64
    assert out.get_column("B04_std")[0] == pytest.approx(0.01, rel=1e-6)


def test_acquired_in_another_zone_becomes_the_same_instant_in_utc() -> None:
    paris = pl.Series([datetime(2025, 6, 1, 12, 56, 19)] * 4).dt.replace_time_zone("Europe/Paris")
    out = validate_observations(observations(acquired=paris.dt.cast_time_unit("ns")))
    assert out.get_column("acquired")[0] == datetime(2025, 6, 1, 10, 56, 19, tzinfo=UTC)
    assert out.schema["acquired"] == pl.Datetime("us", "UTC")


def test_same_parcel_and_product_may_have_an_observed_and_a_reconstructed_row() -> None:
    df = observations(2, parcel_id=["P0", "P0"], source=["observed", "reconstructed"])
    assert validate_observations(df).height == 2


def test_a_parcel_in_two_tiles_may_be_observed_once_per_tile_by_one_product() -> None:
    df = observations(2, parcel_id=["P0", "P0"], tile=["31UFS", "31UFT"])
    assert validate_observations(df).height == 2


def _drop(column: str) -> Callable[[pl.DataFrame], pl.DataFrame]:
    return lambda df: df.drop(column)


def _set(column: str, values: object) -> Callable[[pl.DataFrame], pl.DataFrame]:
    return lambda df: df.with_columns(pl.Series(column, values))


BAD_TABLES = [
    *[pytest.param(_drop(c), c, id=f"missing-{c}") for c in FIXED_COLUMNS],
    pytest.param(_set("pixel_count", ["1", "2", "3", "4"]), "pixel_count", id="count-as-string"),
    pytest.param(_set("valid_count", [1.0, 2.0, 3.0, 4.0]), "valid_count", id="count-as-float"),
    pytest.param(_set("pixel_count", [-1, 200, 200, 200]), "pixel_count", id="negative-count"),
    pytest.param(_set("parcel_id", [1, 2, 3, 4]), "parcel_id", id="id-as-int"),
    pytest.param(_set("parcel_id", ["P0", None, "P2", "P3"]), "parcel_id", id="null-id"),
    pytest.param(_set("parcel_id", ["P0", "", "P2", "P3"]), "parcel_id", id="empty-id"),
    pytest.param(_set("acquired", [datetime(2025, 6, 1)] * 4), "acquired", id="naive-time"),
    pytest.param(_set("acquired", ["2025-06-01T10:56:19Z"] * 4), "acquired", id="time-as-str"),
    pytest.param(_set("sensor", ["S2", "S3", "S2", "S2"]), "sensor", id="unknown-sensor"),
    pytest.param(_set("source", ["observed", "guessed"] * 2), "source", id="unknown-source"),
    pytest.param(_set("valid_fraction", [0.5, 1.5, 0.5, 0.5]), "valid_fraction", id="over-1"),
    pytest.param(_set("valid_fraction", [0.5, -0.1, 0.5, 0.5]), "valid_fraction", id="under-0"),
    pytest.param(_set("valid_fraction", [0.5, float("nan"), 0.5, 0.5]), "valid_fraction", id="nan"),
    pytest.param(_set("valid_fraction", ["a"] * 4), "valid_fraction", id="fraction-as-str"),
    pytest.param(_set("valid_count", [500, 50, 50, 50]), "valid_count", id="valid-over-pixels"),
    pytest.param(_set("B04_median", [0.1] * 4), "B04_median", id="unknown-stat"),
    pytest.param(_set("B13_mean", [0.1] * 4), "B13_mean", id="unknown-band"),
    pytest.param(_set("b04_mean", [0.1] * 4), "b04_mean", id="lowercase-band"),
    pytest.param(_set("cloudy", [True] * 4), "cloudy", id="stray-column"),
    pytest.param(_set("NDVI_mean", ["high"] * 4), "NDVI_mean", id="stat-as-str"),
    pytest.param(_set("parcel_id", ["P0", "P0", "P2", "P3"]), "parcel_id", id="duplicate-key"),
]


@pytest.mark.parametrize(("spoil", "column"), BAD_TABLES)
def test_bad_tables_are_refused_naming_the_column(
    spoil: Callable[[pl.DataFrame], pl.DataFrame], column: str
) -> None:
    with pytest.raises(ObservationError, match=column) as exc:
        validate_observations(spoil(observations()))
    message = str(exc.value)
    assert "\n" not in message


def test_duplicate_key_message_names_the_parcel_and_product() -> None:
    df = observations(3, parcel_id=["A", "B", "A"])
    with pytest.raises(ObservationError, match=r"parcel 'A' product 'S2B_MSIL2A"):
        validate_observations(df)


def test_non_frame_is_refused() -> None:
    with pytest.raises(ObservationError, match="polars DataFrame"):
        validate_observations({"parcel_id": ["a"]})  # type: ignore[arg-type]


def test_observation_error_is_a_value_error_and_a_monitor_error() -> None:
    assert issubclass(ObservationError, ValueError)
    assert issubclass(ObservationError, MonitorError)


def test_empty_table_is_valid() -> None:
    assert validate_observations(observations(0)).height == 0


def test_band_stat_helpers() -> None:
    df = observations().with_columns(pl.lit(-12.0).alias("VV_p90"))
    assert band_stat_columns(df) == ["NDVI_mean", "B04_std", "B04_mean", "VV_p90"]
    assert band_stat_columns(df.lazy()) == band_stat_columns(df)
    assert parse_band_stat("B8A_p10") == ("B8A", "p10")
    assert parse_band_stat("NDVI_wmean") == ("NDVI", "wmean")
    assert parse_band_stat("valid_fraction") is None
    assert parse_band_stat("B04_mean_x") is None
    assert band_stat_name("VH", "p50") == "VH_p50"
    with pytest.raises(ObservationError, match="B4_mean"):
        band_stat_name("B4", "mean")
