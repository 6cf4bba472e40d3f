"""The season, date by date: plan the acquisitions, then render and write each one.

Static things (layout, calendars, label rasters, texture) are built once; each date is then
rendered band by band and handed to two writer threads, so a full tile never holds more than
one date (and at most four bands queued for compression) in memory.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from monitor import _core
from monitor.errors import ConfigError
from monitor.simulate import noise, truth, writer
from monitor.simulate.covers import COVERS, INDEX, crop_shares
from monitor.simulate.fields import Layout, check_density, layout_fields
from monitor.simulate.grid import FULL_TILE_PX, TileGrid
from monitor.simulate.noise import F32
from monitor.simulate.phenology import draw_calendar
from monitor.simulate.preview import write_preview
from monitor.simulate.rasterize import rasterize_convex
from monitor.simulate.render import Landscape, WriteQueue, render_s1, render_s2
from monitor.simulate.sar import ORBITS, Orbit
from monitor.simulate.snow import visible_share
from monitor.simulate.spectra import BANDS_10M, BANDS_20M
from monitor.simulate.weather import cloud_cover_target, draw_weather

S2_REVISIT_DAYS = 5  # one track, two satellites alternating
S2_PLATFORMS = ("sentinel-2a", "sentinel-2b")
S2_TIME = time(10, 50)
S1_CYCLE_DAYS = 12  # one satellite's repeat cycle, in which each orbit of `sar.ORBITS` passes once
S1_PLATFORM = "sentinel-1a"
# real archives lose acquisitions: single ones (processing failures, a satellite manoeuvre)
# and, now and then, a run of them (an anomaly, a ground-segment outage)
_MISSING = {"S2": 0.05, "S1": 0.04}
_OUTAGE_P, _OUTAGE_DAYS = 0.4, (8, 22)
Progress = Callable[[int, int, str], None]

# independent random streams: one per purpose (and per date), so that adding a date or a
# band never changes what the others draw
_LAYOUT, _CALENDAR, _WEATHER, _PLAN, _TEXTURE, _S2, _S1, _SAR_STATIC, _PLAN_S1 = range(9)


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
    when: datetime
    platform: str
    cloud_cover: float = 0.0  # target share, S2 only
    orbit: Orbit | None = None  # S1 only

    @property
    def doy(self) -> float:
        return float(self.day.timetuple().tm_yday)


def _rng(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, index)))


def _acquired(days: list[date], miss: float, rng: np.random.Generator) -> NDArray[np.bool_]:
    """Which of the scheduled `days` the archive holds: single losses and maybe one outage."""
    kept = rng.random(len(days)) >= miss
    if days and rng.random() < _OUTAGE_P:
        first = days[0] + timedelta(days=int(rng.integers(0, max((days[-1] - days[0]).days, 1))))
        last = first + timedelta(days=int(rng.integers(*_OUTAGE_DAYS)))
        kept &= ~np.array([first <= d <= last for d in days])
    return kept


def plan_acquisitions(
    grid: TileGrid,
    start: date,
    end: date,
    seed: int,
    s1: bool,
    max_dates: int | None,
) -> list[PlannedAcquisition]:
    """The season's acquisitions in time order: S2 every 5 days (two satellites alternating)
    and S1 from four orbits (days 0, 2, 5 and 9 of a 12-day cycle, as over Mol), with
    missing acquisitions and outages as in real archives."""
    plans: list[PlannedAcquisition] = []
    rng = _rng(seed, _PLAN)
    slot0 = date(2015, 6, 27)  # a fixed epoch: which satellite flies a slot never depends on seed
    first = start + timedelta(days=int(rng.integers(0, S2_REVISIT_DAYS)))
    s2_days = [first + timedelta(days=k) for k in range(0, (end - first).days + 1, S2_REVISIT_DAYS)]
    covers = [cloud_cover_target(d.timetuple().tm_yday, rng) for d in s2_days]
    kept = _acquired(s2_days, _MISSING["S2"], rng)
    s2 = [(d, c) for d, c, k in zip(s2_days, covers, kept, strict=True) if k][:max_dates]
    for d, cover in s2:
        platform = S2_PLATFORMS[((d - slot0).days // S2_REVISIT_DAYS) % 2]
        item_id = f"S2_{grid.tile}_{d.strftime('%Y%m%d')}_L2A"
        when = datetime.combine(d, S2_TIME, UTC)
        plans.append(PlannedAcquisition("S2", d, item_id, when, platform, cover))
    if s1:
        rng = _rng(seed, _PLAN_S1)
        cycle0 = start - timedelta(days=int(rng.integers(0, S1_CYCLE_DAYS)))
        s1_days = sorted(
            (
                (cycle0 + timedelta(days=c + orbit.cycle_day), orbit)
                for c in range(0, (end - cycle0).days + 1, S1_CYCLE_DAYS)
                for orbit in ORBITS
                if start <= cycle0 + timedelta(days=c + orbit.cycle_day) <= end
            ),
            key=lambda pair: pair[0],
        )
        kept = _acquired([d for d, _ in s1_days], _MISSING["S1"], rng)
        for (d, orbit), k in zip(s1_days, kept, strict=True):
            if not k:
                continue
            item_id = f"S1_IW_GRD_{grid.tile}_{d.strftime('%Y%m%d')}"
            when = datetime.combine(d, orbit.overpass, UTC)
            plans.append(PlannedAcquisition("S1", d, item_id, when, S1_PLATFORM, orbit=orbit))
        if max_dates is not None:
            s1_plans = [p for p in plans if p.sensor == "S1"][:max_dates]
            plans = [p for p in plans if p.sensor == "S2"] + s1_plans
    plans.sort(key=lambda a: a.when)
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
    s2_rows: dict[str, list[Any]] = {k: [] for k in truth.S2_DATE_COLUMNS}
    s1_rows: dict[str, list[Any]] = {k: [] for k in truth.S1_DATE_COLUMNS}
    preview_path: Path | None = None
    with ThreadPoolExecutor(max_workers=2) as pool:
        queue = WriteQueue(pool)
        files = _write_static(out, land, season, start, end, queue)
        n_practices = int(_count_rows(out / "truth" / "practices.parquet"))
        report(1, total, "parcels")
        for done, plan in enumerate(plans, start=2):
            when = plan.when
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
                    plan.item_id,
                    when,
                    grid,
                    result.eo_cloud_cover,
                    BANDS_10M,
                    BANDS_20M,
                    plan.platform,
                    result.snow_cover,
                )
                row = {
                    "id": plan.item_id,
                    "datetime": when,
                    "platform": plan.platform,
                    "cloud_share": result.cloud_share,
                    "eo_cloud_cover": result.eo_cloud_cover,
                    "clear_truth": result.clear_truth,
                    "residual_cloud_share": result.residual_share,
                    "snow_share": result.snow_share,
                    "saturated_share": result.saturated_share,
                }
                for key, value in row.items():
                    s2_rows[key].append(value)
                if result.preview is not None:
                    preview_path = out / "preview" / f"{plan.item_id}.png"
                    write_preview(preview_path, *result.preview)
                s2_items.append(folder / "item.json")
            else:
                folder = out / "s1" / plan.item_id
                rng = _rng(seed, _S1, plan.day.toordinal())
                assert plan.orbit is not None
                radar = render_s1(land, plan.doy, plan.orbit, rng, folder, queue)
                item = writer.s1_item(
                    plan.item_id, when, grid, plan.platform, plan.orbit, radar.incidence_deg
                )
                row = {
                    "id": plan.item_id,
                    "datetime": when,
                    "soil_moisture": radar.soil_moisture,
                    "orbit_state": plan.orbit.state,
                    "relative_orbit": plan.orbit.relative_orbit,
                    "incidence_deg": round(radar.incidence_deg, 2),
                    "snow_share": radar.snow_share,
                    "wet_snow": radar.wet_snow,
                }
                for key, value in row.items():
                    s1_rows[key].append(value)
                s1_items.append(folder / "item.json")
            # the item is published only once its rasters are on disk
            queue.then(partial(writer.write_json, folder / "item.json", item))
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
    texture10 = _texture(layout, grid, label10, rng)
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
        visible_share(layout.unit_cover),
        moisture_factor,
        sar_offset,
    )


def _texture(
    layout: Layout, grid: TileGrid, label10: NDArray[np.int32], rng: np.random.Generator
) -> F32:
    """Within-field texture (~N(0, 1) for a typical field): smooth patches (drawn at 20 m,
    cheaper) and per-pixel grain, each scaled per unit by its cover's amplitudes and the
    parcel's own draw (a lognormal factor: some fields are even, some patchy)."""
    amplitudes = np.array([c.texture for c in COVERS], dtype=np.float64)[layout.unit_cover]
    n = layout.n_units
    patchy = (amplitudes[:, 0] * rng.lognormal(0.0, 0.3, n)).astype(np.float32)
    grainy = (amplitudes[:, 1] * rng.lognormal(0.0, 0.2, n)).astype(np.float32)
    patches = noise.fractal(rng, grid.shape(20), 20.0, (300.0, 80.0, 40.0), decay=0.8)
    texture = np.empty(grid.shape(10), dtype=np.float32)
    # one fused pass (upsample, gathers, grain drawn per pixel from a counter-based hash)
    _core.sim_texture(
        label10,
        patches,
        patchy,
        grainy,
        noise.normal_table(),
        int(rng.integers(0, 2**63)),
        texture,
    )
    return texture


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
    # four strided sums: several times faster than a mean over reshaped axes
    out: F32 = padded[0::2, 0::2] + padded[1::2, 0::2]
    out += padded[0::2, 1::2]
    out += padded[1::2, 1::2]
    out *= np.float32(0.25)
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
    # written while the first date renders
    queue.put(folder / "units.tif", land.label10, grid, 10, None, reuse=False, overviews=False)
    return [
        parcels,
        folder / "parcels.parquet",
        folder / "practices.parquet",
        folder / "units.parquet",
        folder / "units.tif",
    ]
