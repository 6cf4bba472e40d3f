"""The store's per-product stage state: tables and arrays beside the observation files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from monitor.errors import StoreError
from monitor.store import ObservationStore

SCHEMA: dict[str, pl.DataType] = {"event_id": pl.String(), "parcel_id": pl.String()}


def _ids(*ids: str) -> pl.DataFrame:
    return pl.DataFrame({"event_id": list(ids), "parcel_id": [f"p{i}" for i in ids]})


def test_writing_a_product_state_again_replaces_it(tmp_path: Path) -> None:
    store = ObservationStore(tmp_path)
    store.write_state("A", "31UFS", 2025, "practices", _ids("1", "2"))
    store.write_state("A", "31UFS", 2025, "practices", _ids("3"))
    store.write_state("B", "31UFS", 2025, "practices", _ids("4"))
    state = store.read_state("31UFS", 2025, "practices", SCHEMA)
    assert sorted(state["event_id"].to_list()) == ["3", "4"]
    assert dict(zip(state["event_id"], state["product_id"], strict=True)) == {"3": "A", "4": "B"}
    assert list(store.state_files("31UFS", 2025, "practices")) == ["A", "B"]
    # State files are not observation files: scans and product listings ignore them.
    assert store.products() == []
    assert not list(tmp_path.rglob(".*.tmp"))


def test_a_product_reads_the_state_of_the_others_only(tmp_path: Path) -> None:
    store = ObservationStore(tmp_path)
    store.write_state("A", "31UFS", 2025, "practices", _ids("1"))
    store.write_state("B", "31UFS", 2025, "practices", _ids("2"))
    store.write_state("C", "31UFS", 2024, "practices", _ids("3"))  # another season
    others = store.read_state("31UFS", 2025, "practices", SCHEMA, exclude="B")
    assert others["event_id"].to_list() == ["1"]
    empty = store.read_state("31UFS", 2023, "practices", SCHEMA)
    assert empty.is_empty()
    assert empty.columns == ["event_id", "parcel_id", "product_id"]


def test_arrays_round_trip_and_are_replaced(tmp_path: Path) -> None:
    store = ObservationStore(tmp_path)
    first = {"ndvi": np.arange(6, dtype=np.int16).reshape(2, 3), "day": np.array(60.0)}
    store.write_arrays("A", "31UFS", 2025, "pixelsets", first)
    second = {"ndvi": np.full((2, 3), 7, dtype=np.int16), "day": np.array(61.0)}
    path = store.write_arrays("A", "31UFS", 2025, "pixelsets", second)
    assert store.state_files("31UFS", 2025, "pixelsets") == {"A": path}
    read = store.read_arrays(path, ["ndvi"])
    assert read["ndvi"].dtype == np.int16
    np.testing.assert_array_equal(read["ndvi"], second["ndvi"])


def test_unknown_kinds_and_corrupt_files_are_refused(tmp_path: Path) -> None:
    store = ObservationStore(tmp_path)
    with pytest.raises(StoreError, match="unknown stage state kind 'observed'"):
        store.write_state("A", "31UFS", 2025, "observed", _ids("1"))
    with pytest.raises(StoreError, match="not a safe file name"):
        store.write_state("../A", "31UFS", 2025, "practices", _ids("1"))
    path = store.write_state("A", "31UFS", 2025, "practices", _ids("1"))
    path.write_bytes(b"not parquet")
    with pytest.raises(StoreError, match=r"corrupt state file .*A\.practices\.parquet"):
        store.read_state("31UFS", 2025, "practices", SCHEMA)
    arrays = store.write_arrays("A", "31UFS", 2025, "pixelsets", {"x": np.zeros(2)})
    with pytest.raises(StoreError, match="corrupt state file"):
        store.read_arrays(arrays, ["missing"])


def test_season_window_follows_the_season_rule(tmp_path: Path) -> None:
    calendar = ObservationStore(tmp_path / "a")
    start, end = calendar.season_window(2025)
    assert (start.isoformat(), end.isoformat()) == (
        "2025-01-01T00:00:00+00:00",
        "2026-01-01T00:00:00+00:00",
    )
    harvest_year = ObservationStore(tmp_path / "b", season_start_month=10)
    start, end = harvest_year.season_window(2025)
    assert (start.month, start.year, end.year) == (10, 2024, 2025)
    assert harvest_year.season_of(start) == 2025
