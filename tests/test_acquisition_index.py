"""The acquisition index: entries survive a round trip, replace per product, and the reference
queries (last clear Sentinel-2, nearest Sentinel-1) follow their rules."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import pytest

from monitor.acquisition_index import AcquisitionIndex, IndexedAcquisition
from monitor.errors import StoreError
from monitor.stac import Acquisition, Asset, Sensor

T = datetime(2025, 6, 20, 10, 50, tzinfo=UTC)
GRID = (10.0, 0.0, 600000.0, 0.0, -10.0, 5700000.0)


def _entry(
    product_id: str,
    sensor: Sensor,
    days: float,
    clear: float | None = None,
    transform: tuple[float, float, float, float, float, float] = GRID,
) -> IndexedAcquisition:
    keys = ("VV", "VH") if sensor == "S1" else ("B04", "B08", "B11", "SCL")
    assets = {
        k: Asset(
            k, f"/data/{product_id}/{k}.tif", scale=1e-4, nodata=0.0 if sensor == "S2" else math.nan
        )
        for k in keys
    }
    return IndexedAcquisition(
        product_id,
        sensor,
        "31UFS",
        T + timedelta(days=days),
        32631,
        transform,
        (64, 64),
        MappingProxyType(assets),
        clear,
    )


def _target(days: float = 0.0) -> Acquisition:
    return _entry("S2_T", "S2", days, 0.2).acquisition()


@pytest.fixture
def index(tmp_path: Path) -> AcquisitionIndex:
    return AcquisitionIndex(tmp_path / "_acquisitions", lambda moment: moment.year)


def test_an_entry_round_trips_through_its_file(index: AcquisitionIndex) -> None:
    entry = _entry("S1_A", "S1", -2)
    path = index.record(entry)
    assert path.name == "S1_A.json"
    assert "tile=31UFS/season=2025" in path.as_posix()
    (back,) = index.entries("31UFS", 2025)
    assert back.product_id == "S1_A"
    assert back.acquired == entry.acquired
    assert back.transform == GRID
    assert back.shape == (64, 64)
    assert back.clear_fraction is None
    assert back.assets["VV"].href == "/data/S1_A/VV.tif"
    nodata = back.assets["VV"].nodata
    assert nodata is not None
    assert math.isnan(nodata)
    acq = back.acquisition()
    assert acq.sensor == "S1"
    assert acq.bounds == entry.acquisition().bounds


def test_recording_a_product_again_replaces_its_entry(index: AcquisitionIndex) -> None:
    index.record(_entry("S2_A", "S2", -5, 0.4))
    index.record(_entry("S2_A", "S2", -5, 0.97))
    entries = index.entries("31UFS", 2025)
    assert [(e.product_id, e.clear_fraction) for e in entries] == [("S2_A", 0.97)]
    assert not list(index.root.rglob(".*.tmp"))


def test_a_corrupt_entry_is_refused_with_its_path(index: AcquisitionIndex) -> None:
    path = index.record(_entry("S2_A", "S2", -5, 0.97))
    path.write_text('{"version": 1, "product_id": "S2_A"}')
    with pytest.raises(StoreError, match=r"S2_A\.json"):
        index.entries("31UFS", 2025)


def test_last_clear_s2_is_the_latest_clear_one_before_t_on_the_grid(
    index: AcquisitionIndex,
) -> None:
    shifted = (10.0, 0.0, 600640.0, 0.0, -10.0, 5700000.0)
    for entry in (
        _entry("S2_old", "S2", -20, 0.99),
        _entry("S2_clear", "S2", -10, 0.95),
        _entry("S2_cloudy", "S2", -5, 0.3),
        _entry("S2_other_grid", "S2", -3, 1.0, transform=shifted),
        _entry("S2_later", "S2", 5, 1.0),
        _entry("S2_T", "S2", 0, 1.0),  # the acquisition itself never serves as its own t0
    ):
        index.record(entry)
    options = {"bands": ("B04", "B08", "B11")}
    found = index.last_clear_s2(_target(), min_clear_fraction=0.9, max_gap_days=30, **options)
    assert found is not None
    assert found.product_id == "S2_clear"
    found = index.last_clear_s2(_target(), min_clear_fraction=0.98, max_gap_days=30, **options)
    assert found is not None
    assert found.product_id == "S2_old"
    assert (
        index.last_clear_s2(_target(), min_clear_fraction=0.98, max_gap_days=15, **options) is None
    )
    assert (
        index.last_clear_s2(_target(), min_clear_fraction=0.9, max_gap_days=30, bands=("B02",))
        is None
    )


def test_nearest_s1_never_after_the_limit(index: AcquisitionIndex) -> None:
    for entry in (_entry("S1_m4", "S1", -4), _entry("S1_p1", "S1", 1), _entry("S1_m13", "S1", -13)):
        index.record(entry)
    acq = _target()
    near_t = index.nearest_s1(acq, acq.acquired, max_days=6, not_after=acq.acquired)
    assert near_t is not None
    assert near_t.product_id == "S1_m4"
    assert index.nearest_s1(acq, acq.acquired, max_days=3, not_after=acq.acquired) is None
    t0 = T - timedelta(days=10)
    near_t0 = index.nearest_s1(acq, t0, max_days=6, not_after=acq.acquired)
    assert near_t0 is not None
    assert near_t0.product_id == "S1_m13"
