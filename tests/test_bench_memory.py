"""What the bench's memory figures rest on: per-block peak RSS, and the engine releasing the
raster bands no stage still to run reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from monitor.catalog import read_catalog
from monitor.parcels import load_parcels
from monitor.peak_memory import current_rss, peak_rss
from monitor.pipeline import Engine, EngineConfig
from monitor.simulate import simulate_season
from monitor.stages import StageInput, StageOutput
from monitor.store import ObservationStore

MIB = 2**20


def test_nested_blocks_each_get_their_own_peak() -> None:
    assert current_rss() is not None  # Linux: /proc/self/status
    with peak_rss() as outer:
        with peak_rss() as big:
            block = np.ones(200 * MIB // 8)  # 200 MiB, touched
            del block
        with peak_rss() as small:
            block = np.ones(10 * MIB // 8)
            del block
    assert big.bytes is not None
    assert small.bytes is not None
    assert outer.bytes is not None
    assert big.bytes - small.bytes > 150 * MIB  # the second block's mark was reset
    assert outer.bytes >= big.bytes  # the outer block keeps the inner peaks


class Seen:
    """A stage that records the raster bands it was given."""

    def __init__(self, name: str, bands: tuple[str, ...] | None) -> None:
        self.name = name
        if bands is not None:
            self.raster_bands = frozenset(bands)
        self.seen: list[tuple[set[str], bool]] = []

    def run(self, data: StageInput) -> StageOutput:
        self.seen.append((set(data.observed.rasters.bands), data.observed.valid is not None))
        return StageOutput()


@pytest.fixture(scope="module")
def tile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tile")
    simulate_season(root, 256, 40, 2025, 0, max_dates=1, s1=False, clear_truth=False)
    return root


def _run(tile: Path, tmp_path: Path, stages: list[Seen]) -> None:
    parcels = load_parcels(tile / "parcels.parquet")
    (entry,) = read_catalog(tile).entries
    store = ObservationStore(tmp_path / "store")
    result = Engine(EngineConfig(parcels, store, stages=stages)).process(entry.acquisition)
    assert set(result.stage_peak_rss) >= {"zonal", *(s.name for s in stages)}


def test_bands_no_later_stage_reads_are_released(tile: Path, tmp_path: Path) -> None:
    first, second, last = Seen("a", ("B04", "B08", "B11")), Seen("b", ("B04",)), Seen("c", ())
    _run(tile, tmp_path, [first, second, last])
    assert first.seen == [({"B04", "B08", "B11"}, True)]
    assert second.seen == [({"B04"}, True)]
    assert last.seen == [(set(), False)]  # nothing left to read: no mask either


def test_a_stage_that_does_not_say_keeps_every_band(tile: Path, tmp_path: Path) -> None:
    first, last = Seen("a", None), Seen("b", ())
    _run(tile, tmp_path, [first, last])
    assert {"B02", "B04", "B08", "B12", "SCL"} <= first.seen[0][0]
    assert first.seen[0][1]
    assert last.seen == [(set(), False)]
