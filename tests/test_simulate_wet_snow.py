"""Wet snow in the simulated Sentinel-1: the same landscape, date, orbit and speckle rendered
with a melting (wet) and a freezing (dry) snow pack, written as GeoTIFFs and read back."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
import rasterio

from monitor.simulate.covers import crop_shares
from monitor.simulate.grid import TileGrid
from monitor.simulate.render import Landscape, S1Result, WriteQueue, render_s1
from monitor.simulate.sar import ORBITS, WET_SNOW_DB
from monitor.simulate.season import _build_landscape
from monitor.simulate.weather import Weather

DAY = 40  # 9 February: winter
QUANTUM_DB = 1 / 64  # the radar kernel's rounding step


def _with_snow(land: Landscape, before: float, on_day: float) -> Landscape:
    """`land` whose regional snow cover is `before` the day before DAY and `on_day` on it."""
    snow = np.zeros_like(land.weather.snow)
    i = DAY - land.weather.first_day
    snow[i - 1], snow[i] = before, on_day
    return dataclasses.replace(
        land, weather=Weather(land.weather.first_day, land.weather.moisture, snow)
    )


def _render(land: Landscape, folder: Path) -> tuple[S1Result, dict[str, np.ndarray]]:
    folder.mkdir()
    with ThreadPoolExecutor(2) as pool:
        queue = WriteQueue(pool)
        result = render_s1(land, DAY, ORBITS[0], np.random.default_rng(7), folder, queue)
        queue.drain()
    bands = {}
    for pol in ("VV", "VH"):
        with rasterio.open(folder / f"{pol}.tif") as src:
            bands[pol] = src.read(1)
    return result, bands


def test_wet_snow_lowers_backscatter_by_at_most_its_full_cover_drop(tmp_path: Path) -> None:
    land = _build_landscape(
        TileGrid(256), 30, crop_shares(None), 3, date(2025, 1, 1), date(2025, 3, 31)
    )
    wet, wet_db = _render(_with_snow(land, 0.9, 0.8), tmp_path / "wet")  # melting
    dry, dry_db = _render(_with_snow(land, 0.7, 0.8), tmp_path / "dry")  # fresh snow
    assert wet.wet_snow
    assert not dry.wet_snow
    assert wet.snow_share == dry.snow_share > 0.3
    for pol, full_drop in WET_SNOW_DB.items():
        change = wet_db[pol] - dry_db[pol]
        # never brighter, never more than the drop under full cover
        assert change.max() <= QUANTUM_DB
        assert change.min() >= full_drop - QUANTUM_DB
        # in proportion to the snow cover: the mean drop is about cover x full drop (the
        # pixels' cover varies around the regional share; some fields hide their snow)
        assert full_drop * 0.9 < change.mean() < full_drop * 0.2
        # pixels without snow (the cover is patchy) keep their backscatter
        assert (np.abs(change) <= QUANTUM_DB).mean() > 0.05
    # one snow fraction per pixel scales both polarisations' drops
    ratio = WET_SNOW_DB["VH"] / WET_SNOW_DB["VV"]
    vv_change, vh_change = wet_db["VV"] - dry_db["VV"], wet_db["VH"] - dry_db["VH"]
    assert np.abs(vh_change - ratio * vv_change).max() <= 2 * QUANTUM_DB
