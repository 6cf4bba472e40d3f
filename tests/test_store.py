"""The observation store: idempotent atomic writes, partition pruning, parcel history."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from monitor.errors import StoreError
from monitor.observations import validate_observations
from monitor.store import ObservationStore

T0 = datetime(2025, 3, 1, 10, 56, 19, tzinfo=UTC)


def acquisition(
    product_id: str,
    acquired: datetime = T0,
    *,
    n: int = 20,
    tile: str = "31UFS",
    sensor: str = "S2",
    source: str = "observed",
    seed: int = 0,
) -> pl.DataFrame:
    """Rows of one synthetic acquisition over parcels P000..P{n-1}, in shuffled order."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    pixels = rng.integers(10, 400, n)
    valid = (pixels * rng.random(n)).astype(np.int64)
    bands = ("VV", "VH") if sensor == "S1" else ("B04", "B08", "NDVI")
    return pl.DataFrame(
        {
            "parcel_id": [f"P{i:03d}" for i in order],
            "acquired": [acquired] * n,
            "sensor": [sensor] * n,
            "product_id": [product_id] * n,
            "tile": [tile] * n,
            "pixel_count": pixels,
            "valid_count": valid,
            "valid_fraction": valid / pixels,
            "source": [source] * n,
            **{f"{b}_{s}": rng.random(n) for b in bands for s in ("mean", "p50")},
        }
    )


@pytest.fixture
def store(tmp_path: Path) -> ObservationStore:
    return ObservationStore(tmp_path / "store")


def test_written_rows_read_back_with_season_partition(store: ObservationStore) -> None:
    df = acquisition("S2_A")
    result = store.write_acquisition(df)
    assert result.rows == 20
    assert result.replaced == 0
    [stored] = result.files
    assert stored.path == store.root / "tile=31UFS" / "season=2025" / "S2_A.observed.parquet"
    back = store.scan().collect()
    assert back.get_column("season").unique().to_list() == [2025]
    expected = validate_observations(df).sort("parcel_id")
    assert_frame_equal(back.drop("season").sort("parcel_id"), expected)


def test_rewriting_a_product_replaces_it(store: ObservationStore) -> None:
    store.write_acquisition(acquisition("S2_A", seed=1))
    newer = acquisition("S2_A", seed=2)
    result = store.write_acquisition(newer)
    assert result.replaced == 1
    back = store.scan().collect().drop("season").sort("parcel_id")
    assert back.height == 20
    assert_frame_equal(back, validate_observations(newer).sort("parcel_id"))
    assert len(store.products()) == 1


def test_reconstructed_rows_live_beside_observed_ones(store: ObservationStore) -> None:
    store.write_acquisition(acquisition("S2_A"))
    store.write_acquisition(acquisition("S2_A", source="reconstructed", seed=3))
    store.write_acquisition(acquisition("S2_A", seed=4))  # reprocessing the observed rows
    assert sorted(p.source for p in store.products()) == ["observed", "reconstructed"]
    counts = store.scan().group_by("source").len().collect()
    assert dict(counts.iter_rows()) == {"observed": 20, "reconstructed": 20}
    assert store.has_product("S2_A", "31UFS", 2025, "reconstructed")


def test_a_product_over_two_tiles_gives_one_file_per_tile(store: ObservationStore) -> None:
    df = pl.concat(
        [acquisition("S1_A", sensor="S1"), acquisition("S1_A", sensor="S1", tile="31UFT")]
    )
    result = store.write_acquisition(df)
    assert sorted(f.tile for f in result.files) == ["31UFS", "31UFT"]
    assert store.scan(tile="31UFT").collect().height == 20


def test_one_product_per_write(store: ObservationStore) -> None:
    with pytest.raises(StoreError, match="one product id"):
        store.write_acquisition(pl.concat([acquisition("S2_A"), acquisition("S2_B")]))
    with pytest.raises(StoreError, match="no rows"):
        store.write_acquisition(acquisition("S2_A", n=0))


@pytest.mark.parametrize("product_id", ["../escape", ".hidden", "a/b", "x y"])
def test_unsafe_product_ids_are_refused(store: ObservationStore, product_id: str) -> None:
    with pytest.raises(StoreError, match="product id"):
        store.write_acquisition(acquisition(product_id))


def test_invalid_tables_never_reach_the_store(store: ObservationStore) -> None:
    with pytest.raises(ValueError, match="valid_fraction"):
        store.write_acquisition(
            acquisition("S2_A").with_columns(pl.lit(2.0).alias("valid_fraction"))
        )
    assert store.products() == []


def test_concurrent_threads_writing_different_products(store: ObservationStore) -> None:
    frames = [acquisition(f"S2_{k}", T0 + timedelta(days=k), seed=k) for k in range(8)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(store.write_acquisition, frames))
    assert [p.product_id for p in store.products()] == [f"S2_{k}" for k in range(8)]
    assert store.scan().collect().height == 8 * 20


def _write_in_subprocess(root: str, k: int) -> int:
    df = acquisition(f"S1_{k}", T0 + timedelta(days=k), sensor="S1", seed=k)
    return ObservationStore(root).write_acquisition(df).rows


def test_concurrent_processes_writing_different_products(tmp_path: Path) -> None:
    root = str(tmp_path / "shared")
    ObservationStore(root)
    # spawn: forking a process that runs polars threads may deadlock.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        rows = list(pool.map(_write_in_subprocess, [root] * 4, range(4)))
    assert rows == [20] * 4
    store = ObservationStore(root)
    assert {p.product_id for p in store.products()} == {f"S1_{k}" for k in range(4)}
    assert store.scan().collect().height == 80
    assert not list(Path(root).rglob("*.tmp"))


def _leave_tmp(store: ObservationStore, age_seconds: float) -> Path:
    partition = store.root / "tile=31UFS" / "season=2025"
    partition.mkdir(parents=True, exist_ok=True)
    tmp = partition / ".S2_X.observed.parquet.0123abcd.tmp"
    tmp.write_bytes(b"PAR1 half a file")
    stamp = datetime.now().timestamp() - age_seconds
    os.utime(tmp, (stamp, stamp))
    return tmp


def test_crash_leftover_tmp_is_ignored_then_cleaned(store: ObservationStore) -> None:
    store.write_acquisition(acquisition("S2_A"))
    tmp = _leave_tmp(store, age_seconds=7200)
    assert [p.product_id for p in store.products()] == ["S2_A"]
    assert store.scan().collect().height == 20
    ObservationStore(store.root)
    assert not tmp.exists()


def test_young_tmp_of_a_live_writer_is_left_alone(store: ObservationStore) -> None:
    tmp = _leave_tmp(store, age_seconds=1)
    ObservationStore(store.root)
    assert tmp.exists()


def test_failed_write_keeps_the_old_file_and_leaves_no_tmp(
    store: ObservationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write_acquisition(acquisition("S2_A", seed=1))
    before = store.scan().collect()

    def disk_full(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(StoreError, match="No space left on device"):
        store.write_acquisition(acquisition("S2_A", seed=2))
    monkeypatch.undo()
    assert_frame_equal(store.scan().collect(), before)
    assert not list(store.root.rglob("*.tmp"))


def test_parcel_history_is_complete_and_sorted(store: ObservationStore) -> None:
    dates = [T0 + timedelta(days=d) for d in (30, 0, 300, 10, 400)]
    for k, day in enumerate(dates):
        store.write_acquisition(acquisition(f"S2_{k}", day, seed=k))
    store.write_acquisition(acquisition("S1_0", T0 + timedelta(days=5), sensor="S1"))
    history = store.parcel_history("P007")
    assert history.get_column("parcel_id").unique().to_list() == ["P007"]
    assert history.get_column("acquired").to_list() == sorted([*dates, T0 + timedelta(days=5)])
    assert history.get_column("acquired").is_sorted()
    # values are the ones written for that parcel and product
    written = validate_observations(acquisition("S2_2", dates[2], seed=2))
    expected = written.filter(pl.col("parcel_id") == "P007").get_column("NDVI_mean").item()
    row = history.filter(pl.col("product_id") == "S2_2")
    assert row.get_column("NDVI_mean").item() == expected
    assert row.get_column("season").item() == 2025
    # the S1 row has backscatter and no reflectance
    s1 = history.filter(pl.col("sensor") == "S1")
    assert s1.get_column("B04_mean").is_null().all()
    assert s1.get_column("VV_mean").is_not_null().all()
    assert store.parcel_history("P007", season=2026).height == 1
    assert store.parcel_history("nope").height == 0


def test_scan_prunes_partitions_without_opening_other_files(store: ObservationStore) -> None:
    store.write_acquisition(acquisition("S2_A"))
    store.write_acquisition(acquisition("S2_B", T0 + timedelta(days=365)))
    store.write_acquisition(acquisition("S2_C", tile="31UFT"))
    corrupt = store.root / "tile=32ULU" / "season=2025" / "S2_Z.observed.parquet"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"not parquet at all")
    assert store.scan(tile="31UFS", season=2026).collect().get_column("product_id").unique()[0] == (
        "S2_B"
    )
    assert store.scan(tile="31UFS").collect().height == 40
    assert store.scan(season=2025, tile="31UFT").collect().height == 20
    with pytest.raises(StoreError, match=r"corrupt observation file .*S2_Z\.observed\.parquet"):
        store.scan()
    assert store.delete_product("S2_Z", "32ULU", 2025) == 1
    assert store.scan().collect().height == 60


def test_hive_season_filter_reads_only_matching_files(store: ObservationStore) -> None:
    store.write_acquisition(acquisition("S2_A"))
    store.write_acquisition(acquisition("S2_B", T0 + timedelta(days=365)))
    plan = store.scan().filter(pl.col("season") == 2026).explain()
    assert "S2_B" in plan
    assert "S2_A" not in plan


def test_products_has_product_and_delete(store: ObservationStore) -> None:
    store.write_acquisition(acquisition("S2_A"))
    store.write_acquisition(acquisition("S2_A", source="reconstructed"))
    store.write_acquisition(acquisition("S2_B", T0 + timedelta(days=365)))
    assert [(p.product_id, p.season) for p in store.products(season=2026)] == [("S2_B", 2026)]
    assert store.has_product("S2_A", "31UFS", 2025)
    assert not store.has_product("S2_A", "31UFS", 2026)
    assert store.delete_product("S2_A", "31UFS", 2025, "reconstructed") == 1
    assert store.has_product("S2_A", "31UFS", 2025)
    assert store.delete_product("S2_A", "31UFS", 2025) == 1
    assert not store.has_product("S2_A", "31UFS", 2025)
    assert store.delete_product("S2_A", "31UFS", 2025) == 0


def test_empty_store_scans_to_an_empty_frame(store: ObservationStore) -> None:
    frame = store.scan().collect()
    assert frame.height == 0
    assert {"parcel_id", "acquired", "season"} <= set(frame.columns)
    assert store.parcel_history("P001").height == 0


def test_season_rule_is_configurable_and_recorded(tmp_path: Path) -> None:
    store = ObservationStore(tmp_path / "s", season_start_month=10)
    result = store.write_acquisition(acquisition("S2_A", datetime(2024, 11, 2, tzinfo=UTC)))
    assert result.files[0].season == 2025
    assert store.season_of(datetime(2025, 9, 30, tzinfo=UTC)) == 2025
    with pytest.raises(StoreError, match="season_start_month"):
        ObservationStore(tmp_path / "s")
    with pytest.raises(StoreError, match="month"):
        ObservationStore(tmp_path / "t", season_start_month=13)


def test_unusable_root_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create store"):
        ObservationStore(blocker / "store")
