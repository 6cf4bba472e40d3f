"""The season, date by date: plan the acquisitions, then render and write each one.

Static things (layout, calendars, label rasters, texture) are built once; each date is then
rendered band by band and handed to a writer thread, so a full tile never holds more than one
date (and at most two bands queued for compression) in memory.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from monitor.errors import ConfigError
from monitor.simulate import noise, truth, writer
from monitor.simulate.covers import INDEX, crop_shares
from monitor.simulate.fields import Layout, check_density, layout_fields
from monitor.simulate.grid import FULL_TILE_PX, TileGrid
from monitor.simulate.noise import F32
from monitor.simulate.phenology import draw_calendar
from monitor.simulate.preview import write_preview
from monitor.simulate.rasterize import rasterize_convex
from monitor.simulate.render import Landscape, WriteQueue, render_s1, render_s2
from monitor.simulate.spectra import BANDS_10M, BANDS_20M
from monitor.simulate.weather import cloud_cover_target, draw_weather

S2_REVISIT_DAYS = 5
S1_REVISIT_DAYS = 6
S2_TIME = time(10, 50)
S1_TIME = time(17, 30)
Progress = Callable[[int, int, str], None]

# independent random streams: one per purpose (and per date), so that adding a date or a
# band never changes what the others draw
_LAYOUT, _CALENDAR, _WEATHER, _PLAN, _TEXTURE, _S2, _S1, _SAR_STATIC = range(8)


@dataclass(frozen=True)
class SimulationSummary:
    """What a run wrote: counts, the item files (in time order) and the preview."""

    out: Path
    tile: str
    tile_size: int
    n_parcels: int
    n_heterogeneous: int
    n_practices: int
    s2_items: list[Path]
    s1_items: list[Path]
    preview: Path | None
    season: int
    seed: int
    files: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class PlannedAcquisition:
    """One acquisition of the season, before it is rendered."""

    sensor: str  # "S2" or "S1"
    day: date
    item_id: str
    cloud_cover: float = 0.0  # target share, S2 only

    @property
    def doy(self) -> float:
        return float(self.day.timetuple().tm_yday)


def _rng(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, index)))


def plan_acquisitions(
    grid: TileGrid,
    start: date,
    end: date,
    seed: int,
    s1: bool,
    max_dates: int | None,
) -> list[PlannedAcquisition]:
    """S2 every ~5 days and S1 every ~6 days between `start` and `end`, with a few missing
    acquisitions (as in real archives), in time order."""
    rng = _rng(seed, _PLAN)
    plans: list[PlannedAcquisition] = []
    for sensor, revisit, miss in (("S2", S2_REVISIT_DAYS, 0.06), ("S1", S1_REVISIT_DAYS, 0.04)):
        first = start + timedelta(days=int(rng.integers(0, revisit)))
        days = []
        day = first
        while day <= end:
            if rng.random() >= miss:
                days.append(day)
            day += timedelta(days=revisit)
        covers = [cloud_cover_target(d.timetuple().tm_yday, rng) for d in days]
        if max_dates is not None:
            days = days[:max_dates]
        if sensor == "S1" and not s1:
            continue
        for d, cover in zip(days, covers, strict=False):
            stamp = d.strftime("%Y%m%d")
            item_id = (
                f"S2_{grid.tile}_{stamp}_L2A"
                if sensor == "S2"
                else f"S1_IW_GRD_{grid.tile}_{stamp}"
            )
            plans.append(PlannedAcquisition(sensor, d, item_id, cover if sensor == "S2" else 0.0))
    plans.sort(key=lambda a: (a.day, a.sensor != "S2"))
    return plans


def simulate_season(
    out: Path | str,
    tile_size: int = 512,
    n_parcels: int = 300,
    season: int = 2025,
    seed: int = 0,
    *,
    start: date | None = None,
    end: date | None = None,
    max_dates: int | None = None,
    s1: bool = True,
    clear_truth: bool = True,
    crops: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> SimulationSummary:
    """Simulate a season over a `tile_size`² window of MGRS tile 31UFS and write it to `out`.

    Writes `parcels.parquet`, `s2/<id>/`, `s1/<id>/`, `truth/`, `preview/` and `catalog.json`
    (layout in the package docstring). Deterministic for a given `seed`.
    """
    out = Path(out)
    grid = TileGrid(tile_size)
    start, end = _season_window(season, start, end)
    if max_dates is not None and max_dates < 1:
        raise ConfigError(f"--dates must be at least 1, got {max_dates}")
    if tile_size > FULL_TILE_PX:
        raise ConfigError(
            f"--tile-size {tile_size} is larger than an MGRS tile ({FULL_TILE_PX} px)"
        )
    check_density(grid, n_parcels)
    shares = crop_shares(crops)
    _prepare_out(out, overwrite)

    plans = plan_acquisitions(grid, start, end, seed, s1, max_dates)
    total = len(plans) + 1
    report = progress or (lambda done, total, label: None)
    report(0, total, "layout")

    land = _build_landscape(grid, n_parcels, shares, seed, start, end)
    layout = land.layout

    s2_plans = [p for p in plans if p.sensor == "S2"]
    preview_id = min(s2_plans, key=lambda p: abs(p.cloud_cover - 0.4)).item_id if s2_plans else None
    s2_items: list[Path] = []
    s1_items: list[Path] = []
    s2_rows: dict[str, list[Any]] = {
        k: [] for k in ("id", "datetime", "cloud_share", "eo_cloud_cover", "clear_truth")
    }
    s1_rows: dict[str, list[Any]] = {k: [] for k in ("id", "datetime", "soil_moisture")}
    preview_path: Path | None = None
    with ThreadPoolExecutor(max_workers=1) as pool:
        queue = WriteQueue(pool)
        files = _write_static(out, land, season, start, end, queue)
        n_practices = int(_count_rows(out / "truth" / "practices.parquet"))
        report(1, total, "parcels")
        for done, plan in enumerate(plans, start=2):
            when = datetime.combine(plan.day, S2_TIME if plan.sensor == "S2" else S1_TIME, UTC)
            if plan.sensor == "S2":
                folder = out / "s2" / plan.item_id
                truth_folder = out / "truth" / "s2_clear" / plan.item_id if clear_truth else None
                rng = _rng(seed, _S2, plan.day.toordinal())
                result = render_s2(
                    land,
                    plan.doy,
                    plan.cloud_cover,
                    rng,
                    folder,
                    truth_folder,
                    queue,
                    plan.item_id == preview_id,
                )
                item = writer.s2_item(
                    plan.item_id, when, grid, result.eo_cloud_cover, BANDS_10M, BANDS_20M
                )
                s2_rows["id"].append(plan.item_id)
                s2_rows["datetime"].append(when)
                s2_rows["cloud_share"].append(result.cloud_share)
                s2_rows["eo_cloud_cover"].append(result.eo_cloud_cover)
                s2_rows["clear_truth"].append(result.clear_truth)
                if result.preview is not None:
                    preview_path = out / "preview" / f"{plan.item_id}.png"
                    write_preview(preview_path, *result.preview)
                s2_items.append(folder / "item.json")
            else:
                folder = out / "s1" / plan.item_id
                rng = _rng(seed, _S1, plan.day.toordinal())
                moisture = render_s1(land, plan.doy, rng, folder, queue)
                item = writer.s1_item(plan.item_id, when, grid)
                s1_rows["id"].append(plan.item_id)
                s1_rows["datetime"].append(when)
                s1_rows["soil_moisture"].append(moisture)
                s1_items.append(folder / "item.json")
            queue.drain()  # the item is published only once its rasters are on disk
            writer.write_json(folder / "item.json", item)
            report(done, total, plan.item_id)
        queue.drain()

    truth.write_table(out / "truth" / "s2_dates.parquet", s2_rows)
    truth.write_table(out / "truth" / "s1_dates.parquet", s1_rows)
    writer.write_catalog(
        out,
        s2_items + s1_items,
        f"parcel-monitor simulated season {season}, tile {grid.tile}, {tile_size} px, seed {seed}",
    )
    return SimulationSummary(
        out=out,
        tile=grid.tile,
        tile_size=tile_size,
        n_parcels=layout.n_parcels,
        n_heterogeneous=int((layout.parcel_second_cover >= 0).sum()),
        n_practices=n_practices,
        s2_items=s2_items,
        s1_items=s1_items,
        preview=preview_path,
        season=season,
        seed=seed,
        files=files,
    )


def _count_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def _season_window(season: int, start: date | None, end: date | None) -> tuple[date, date]:
    if not 2015 <= season <= 2100:
        raise ConfigError(f"--season must be a year of the Sentinel era (2015-2100), got {season}")
    start = start or date(season, 3, 1)
    end = end or date(season, 10, 31)
    for name, value in (("--start", start), ("--end", end)):
        if value.year != season:
            raise ConfigError(f"{name} {value.isoformat()} is outside season {season}")
    if start > end:
        raise ConfigError(f"--start {start.isoformat()} is after --end {end.isoformat()}")
    return start, end


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} exists and is not a folder")
    try:
        if out.is_dir() and any(out.iterdir()):
            if not overwrite:
                raise ConfigError(
                    f"--out {str(out)!r} is not empty (pass --overwrite to replace it)"
                )
            for name in ("s2", "s1", "truth", "preview"):
                shutil.rmtree(out / name, ignore_errors=True)
            for name in ("parcels.parquet", "catalog.json"):
                (out / name).unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {str(out)!r}: {exc.strerror or exc}") from exc


def _build_landscape(
    grid: TileGrid, n_parcels: int, shares: dict[str, float], seed: int, start: date, end: date
) -> Landscape:
    layout = layout_fields(grid, n_parcels, shares, _rng(seed, _LAYOUT))
    cal = draw_calendar(layout.unit_cover, _rng(seed, _CALENDAR))
    weather = draw_weather(start.timetuple().tm_yday, end.timetuple().tm_yday, _rng(seed, _WEATHER))
    label10 = _rasterize(layout, grid, 10)
    label20 = _rasterize(layout, grid, 20)
    rng = _rng(seed, _TEXTURE)
    # within-field texture: smooth patches (drawn at 20 m, cheaper) plus per-pixel grain
    patches = noise.fractal(rng, grid.shape(20), 20.0, (300.0, 80.0, 40.0), decay=0.8)
    texture10 = noise.upsample2(patches, grid.shape(10))
    texture10 *= np.float32(0.8)
    texture10 += np.float32(0.6) * noise.normal(rng, grid.shape(10))
    del patches
    texture20 = _block_mean(texture10, grid.shape(20))
    water20 = (layout.unit_cover == INDEX["EAU"])[label20]
    moisture_factor = rng.uniform(0.75, 1.25, layout.n_units)
    sar_rng = _rng(seed, _SAR_STATIC)
    sar_offset = {pol: sar_rng.normal(0.0, 0.8, layout.n_units) for pol in ("VV", "VH")}
    return Landscape(
        grid,
        layout,
        cal,
        weather,
        label10,
        label20,
        texture10,
        texture20,
        water20,
        moisture_factor,
        sar_offset,
    )


def _rasterize(layout: Layout, grid: TileGrid, resolution: int) -> NDArray[np.int32]:
    units = np.arange(layout.n_units, dtype=np.int32)
    return rasterize_convex(
        layout.unit_geometry[1:], units[1:], grid.shape(resolution), grid.transform(resolution)
    )


def _block_mean(array: F32, shape: tuple[int, int]) -> F32:
    """2x2 block means (edge rows/columns repeated when the side is odd)."""
    h, w = shape
    pad = ((0, 2 * h - array.shape[0]), (0, 2 * w - array.shape[1]))
    padded = np.pad(array, pad, mode="edge") if any(p for _, p in pad) else array
    out: F32 = padded.reshape(h, 2, w, 2).mean(axis=(1, 3), dtype=np.float32)
    return out


def _write_static(
    out: Path, land: Landscape, season: int, start: date, end: date, queue: WriteQueue
) -> list[Path]:
    layout, grid = land.layout, land.grid
    parcels = out / "parcels.parquet"
    writer.write_geoparquet(
        parcels,
        {
            "id_parcel": layout.parcel_id,
            "code_cultu": layout.parcel_code,
            "surf_parc": np.round(layout.parcel_area_ha, 4),
        },
        layout.parcel_geometry,
        grid.epsg,
    )
    folder = out / "truth"
    folder.mkdir(parents=True, exist_ok=True)
    truth.write_parcels(folder / "parcels.parquet", layout, land.calendar, season)
    first, last = float(start.timetuple().tm_yday), float(end.timetuple().tm_yday)
    truth.write_practices(
        folder / "practices.parquet", layout, land.calendar, land.weather, season, first, last
    )
    truth.write_units(folder / "units.parquet", layout)
    # written while the first date renders; the labels stay in use
    queue.put(folder / "units.tif", land.label10, grid, 10, None, reuse=False)
    return [
        parcels,
        folder / "parcels.parquet",
        folder / "practices.parquet",
        folder / "units.parquet",
        folder / "units.tif",
    ]
