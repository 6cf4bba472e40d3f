"""Deleting a product removes everything the store holds of it, and only that: reprocessing the
product afterwards gives back the same store, byte for byte."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from monitor.acquisition_index import INDEX_DIR, AcquisitionIndex, IndexedAcquisition
from monitor.catalog import read_catalog
from monitor.parcels import load_parcels
from monitor.pipeline import Engine, EngineConfig
from monitor.simulate import simulate_season
from monitor.stac import Acquisition
from monitor.stages.defaults import default_stages
from monitor.store import MANIFEST, ObservationStore
from tests.test_store import T0, acquisition

GRID = (10.0, 0.0, 600000.0, 0.0, -10.0, 5700000.0)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def _of(files: dict[str, bytes], product_id: str) -> set[str]:
    return {name for name in files if Path(name).name.startswith(f"{product_id}.")}


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Acquisition]]:
    """A 256 px, 60-parcel spring processed with the default stages, in time order."""
    root = tmp_path_factory.mktemp("delete")
    simulate_season(
        root / "sim", 256, 60, 2025, seed=3, start=date(2025, 4, 1), end=date(2025, 5, 20)
    )
    catalog = read_catalog(root / "sim")
    acquisitions = sorted(
        (e.acquisition for e in catalog.entries), key=lambda a: (a.acquired, a.product_id)
    )
    # From the first S2 on: practices cannot yet read a store holding only S1 rows.
    first_s2 = next(i for i, a in enumerate(acquisitions) if a.sensor == "S2")
    acquisitions = acquisitions[first_s2:]
    engine = _engine(root / "sim", root / "store")
    for acq in acquisitions:
        engine.process(acq)
    return root, acquisitions


def _engine(sim: Path, store: Path) -> Engine:
    parcels = load_parcels(sim / "parcels.parquet")
    return Engine(EngineConfig(parcels, ObservationStore(store), stages=default_stages()))


def test_delete_removes_every_file_of_the_product_and_reprocessing_restores_them(
    processed: tuple[Path, list[Acquisition]], tmp_path: Path
) -> None:
    root, acquisitions = processed
    shutil.copytree(root / "store", tmp_path / "store")
    store = ObservationStore(tmp_path / "store")
    before = _files(store.root)
    # The product with the most files (rows, stage state, pixel sets, index entry), mid-season.
    middle = acquisitions[len(acquisitions) // 3 : -2]
    acq = max(middle, key=lambda a: len(_of(before, a.product_id)))
    mine = _of(before, acq.product_id)
    kinds = {name.split(".", 1)[1] for name in mine}
    assert {"observed.parquet", "pixelsets.npz", "json"} <= kinds
    assert {"practices.parquet", "heterogeneity.parquet"} <= kinds
    assert any(name.startswith(INDEX_DIR) for name in mine)

    season = store.season_of(acq.acquired)
    assert store.delete_product(acq.product_id, acq.tile, season) == len(mine)
    after = _files(store.root)
    assert not _of(after, acq.product_id)
    assert after == {k: v for k, v in before.items() if k not in mine}  # the others untouched
    assert not store.has_product(acq.product_id, acq.tile, season)
    assert store.delete_product(acq.product_id, acq.tile, season) == 0

    _engine(root / "sim", store.root).process(acq)
    assert _files(store.root) == before


def test_deleting_one_source_keeps_the_rest(
    processed: tuple[Path, list[Acquisition]], tmp_path: Path
) -> None:
    root, acquisitions = processed
    shutil.copytree(root / "store", tmp_path / "store")
    store = ObservationStore(tmp_path / "store")
    acq = next(a for a in acquisitions if a.sensor == "S2")
    season = store.season_of(acq.acquired)
    before = _of(_files(store.root), acq.product_id)
    assert store.delete_product(acq.product_id, acq.tile, season, "observed") == 1
    assert _of(_files(store.root), acq.product_id) == {
        n for n in before if not n.endswith(".observed.parquet")
    }


def test_every_kind_of_file_goes_and_other_products_stay(tmp_path: Path) -> None:
    store = ObservationStore(tmp_path)
    index = AcquisitionIndex(store.root / INDEX_DIR, store.season_of)
    for product in ("S2_A", "S2_B"):
        for source in ("observed", "reconstructed"):
            store.write_acquisition(acquisition(product, source=source))
        for kind in ("practices", "heterogeneity"):
            store.write_state(product, "31UFS", 2025, kind, pl.DataFrame({"event_id": ["e"]}))
        store.write_arrays(product, "31UFS", 2025, "pixelsets", {"ndvi": np.zeros(3)})
        entry = IndexedAcquisition(product, "S2", "31UFS", T0, 32631, GRID, (8, 8), {}, 1.0)
        kept = index.record(entry)
    before = _files(store.root)
    assert len(_of(before, "S2_A")) == 6
    assert store.delete_product("S2_A", "31UFS", 2025) == 6
    assert _files(store.root) == {k: v for k, v in before.items() if k not in _of(before, "S2_A")}
    left = AcquisitionIndex(index.root, store.season_of).entries("31UFS", 2025)
    assert [e.product_id for e in left] == ["S2_B"]
    assert kept.is_file()
