"""The season, date by date: plan the acquisitions, then render and write each one.

Static things (layout, calendars, label rasters, texture) are built once; each date is then
rendered band by band and handed to a writer thread, so a full tile never holds more than one
date (and at most two bands queued for compression) in memory.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from monitor.errors import ConfigError
from monitor.simulate import clouds, noise, sar, truth, writer
from monitor.simulate.covers import INDEX, crop_shares
from monitor.simulate.fields import Layout, check_density, layout_fields
from monitor.simulate.grid import FULL_TILE_PX, TileGrid
from monitor.simulate.noise import F32
from monitor.simulate.phenology import Calendar, draw_calendar, surface_state
from monitor.simulate.preview import step_for, write_preview
from monitor.simulate.rasterize import rasterize_convex
from monitor.simulate.spectra import BANDS, BANDS_10M, BANDS_20M, unit_reflectance
from monitor.simulate.weather import Weather, cloud_cover_target, draw_weather

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
class Acquisition:
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
) -> list[Acquisition]:
    """S2 every ~5 days and S1 every ~6 days between `start` and `end`, with a few missing
    acquisitions (as in real archives), in time order."""
    rng = _rng(seed, _PLAN)
    plans: list[Acquisition] = []
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
            plans.append(Acquisition(sensor, d, item_id, cover if sensor == "S2" else 0.0))
    plans.sort(key=lambda a: (a.day, a.sensor != "S2"))
    return plans


@dataclass
class _Static:
    grid: TileGrid
    layout: Layout
    calendar: Calendar
    weather: Weather
    label10: NDArray[np.int32]
    label20: NDArray[np.int32]
    texture10: F32
    texture20: F32
    water20: NDArray[np.bool_]
    moisture_factor: NDArray[np.float64]
    sar_offset: dict[str, NDArray[np.float64]]


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

    static = _build_static(grid, n_parcels, shares, seed, start, end)
    layout, cal = static.layout, static.calendar
    files = _write_static(out, static, season, start, end)
    n_practices = int(_count_rows(out / "truth" / "practices.parquet"))
    report(1, total, "parcels")

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
        queue = _WriteQueue(pool)
        for done, plan in enumerate(plans, start=2):
            when = datetime.combine(plan.day, S2_TIME if plan.sensor == "S2" else S1_TIME, UTC)
            if plan.sensor == "S2":
                folder = out / "s2" / plan.item_id
                result = _render_s2(
                    static, plan, seed, folder, out, clear_truth, queue, plan.item_id == preview_id
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
                moisture = _render_s1(static, plan, seed, folder, queue)
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
    del cal
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
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(f"--out {str(out)!r} is not empty (pass --overwrite to replace it)")
        for name in ("s2", "s1", "truth", "preview"):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in ("parcels.parquet", "catalog.json"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _build_static(
    grid: TileGrid, n_parcels: int, shares: dict[str, float], seed: int, start: date, end: date
) -> _Static:
    layout = layout_fields(grid, n_parcels, shares, _rng(seed, _LAYOUT))
    cal = draw_calendar(layout.unit_cover, _rng(seed, _CALENDAR))
    weather = draw_weather(start.timetuple().tm_yday, end.timetuple().tm_yday, _rng(seed, _WEATHER))
    label10 = _rasterize(layout, grid, 10)
    label20 = _rasterize(layout, grid, 20)
    rng = _rng(seed, _TEXTURE)
    # within-field texture: smooth patches (drawn at 20 m, cheaper) plus per-pixel grain
    patches = noise.fractal(rng, grid.shape(20), 20.0, (300.0, 80.0, 40.0), decay=0.8)
    texture10 = noise.upsample(patches, 2.0, grid.shape(10))
    texture10 *= np.float32(0.8)
    texture10 += np.float32(0.6) * noise.normal(rng, grid.shape(10))
    del patches
    texture20 = _block_mean(texture10, grid.shape(20))
    water20 = (layout.unit_cover == INDEX["EAU"])[label20]
    moisture_factor = rng.uniform(0.75, 1.25, layout.n_units)
    sar_rng = _rng(seed, _SAR_STATIC)
    sar_offset = {pol: sar_rng.normal(0.0, 0.8, layout.n_units) for pol in ("VV", "VH")}
    return _Static(
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
    padded = np.pad(array, ((0, 2 * h - array.shape[0]), (0, 2 * w - array.shape[1])), mode="edge")
    out: F32 = padded.reshape(h, 2, w, 2).mean(axis=(1, 3), dtype=np.float32)
    return out


def _write_static(out: Path, static: _Static, season: int, start: date, end: date) -> list[Path]:
    layout, grid = static.layout, static.grid
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
    truth.write_parcels(folder / "parcels.parquet", layout, static.calendar, season)
    first, last = float(start.timetuple().tm_yday), float(end.timetuple().tm_yday)
    truth.write_practices(
        folder / "practices.parquet", layout, static.calendar, static.weather, season, first, last
    )
    truth.write_units(folder / "units.parquet", layout)
    writer.write_cog(folder / "units.tif", static.label10, grid, 10, None)
    return [
        parcels,
        folder / "parcels.parquet",
        folder / "practices.parquet",
        folder / "units.parquet",
        folder / "units.tif",
    ]


class _WriteQueue:
    """Compress and write bands on one background thread, at most two bands in flight."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool
        self._pending: list[Future[None]] = []

    def put(
        self, path: Path, array: NDArray[Any], grid: TileGrid, resolution: int, nodata: float | None
    ) -> None:
        while len(self._pending) >= 2:
            self._pending.pop(0).result()
        self._pending.append(
            self._pool.submit(writer.write_cog, path, array, grid, resolution, nodata)
        )

    def drain(self) -> None:
        while self._pending:
            self._pending.pop(0).result()


@dataclass(frozen=True)
class _S2Result:
    cloud_share: float
    eo_cloud_cover: float
    clear_truth: bool
    preview: tuple[NDArray[np.uint16], NDArray[np.int32], NDArray[np.uint8]] | None


def _to_uint16(reflectance: F32) -> NDArray[np.uint16]:
    reflectance *= np.float32(10000.0)
    reflectance += np.float32(0.5)
    np.clip(reflectance, 1.0, 65535.0, out=reflectance)  # 0 is nodata
    return reflectance.astype(np.uint16)


def _render_s2(
    static: _Static,
    plan: Acquisition,
    seed: int,
    folder: Path,
    out: Path,
    clear_truth: bool,
    queue: _WriteQueue,
    want_preview: bool,
) -> _S2Result:
    grid, layout = static.grid, static.layout
    rng = _rng(seed, _S2, plan.day.toordinal())
    state = surface_state(layout.unit_cover, static.calendar, plan.doy)
    moisture = static.weather.soil_moisture(plan.doy) * static.moisture_factor
    mean, slope = unit_reflectance(
        layout.unit_cover, state, static.calendar.soil_brightness, moisture
    )
    mean32, slope32 = mean.astype(np.float32), slope.astype(np.float32)
    sky = clouds.draw_sky(grid, plan.cloud_cover, rng)
    cloudy = sky.opacity is not None or sky.cirrus is not None
    write_truth = clear_truth and cloudy
    truth_folder = out / "truth" / "s2_clear" / plan.item_id
    step = step_for(grid.size)
    preview_rgb: dict[str, NDArray[np.uint16]] = {}

    for resolution, bands, labels, texture in (
        (10, BANDS_10M, static.label10, static.texture10),
        (20, BANDS_20M, static.label20, static.texture20),
    ):
        opacity, shadow, cirrus = sky.fields(grid, resolution)
        through = clouds.transmission(opacity, shadow)
        for band in bands:
            b = BANDS.index(band)
            surface = _surface(mean32[:, b], slope32[:, b], labels, texture, rng)
            observed = _to_uint16(clouds.observe(surface, band, sky, through, opacity, cirrus))
            queue.put(folder / f"{band}.tif", observed, grid, resolution, 0)
            if write_truth:
                queue.put(truth_folder / f"{band}.tif", _to_uint16(surface), grid, resolution, 0)
            if want_preview and band in ("B02", "B03", "B04"):
                preview_rgb[band] = observed[::step, ::step].copy()
            del surface, observed
        if resolution == 20:
            red = _surface(
                mean32[:, BANDS.index("B04")], slope32[:, BANDS.index("B04")], labels, texture, None
            )
            nir = _surface(
                mean32[:, BANDS.index("B08")], slope32[:, BANDS.index("B08")], labels, texture, None
            )
            red = clouds.observe(red, "B04", sky, through, opacity, cirrus)
            nir = clouds.observe(nir, "B08", sky, through, opacity, cirrus)
            scl = clouds.scene_classification(
                red, nir, static.water20, sky, opacity, shadow, cirrus, rng
            )
            queue.put(folder / "SCL.tif", scl, grid, 20, 0)
            if write_truth:
                queue.put(
                    truth_folder / "SKY.tif",
                    _sky_truth(grid, opacity, shadow, cirrus),
                    grid,
                    20,
                    None,
                )
            cloud_share = 0.0 if opacity is None else float((opacity > 0).mean())
            eo_cloud_cover = float(np.isin(scl, clouds.CLOUDY_CLASSES).mean() * 100.0)
            scl_small = scl
    preview = None
    if want_preview:
        rgb = np.stack([preview_rgb["B04"], preview_rgb["B03"], preview_rgb["B02"]])
        labels_small = static.label10[::step, ::step]
        rows = np.minimum(np.arange(rgb.shape[1]) * step // 2, scl_small.shape[0] - 1)
        cols = np.minimum(np.arange(rgb.shape[2]) * step // 2, scl_small.shape[1] - 1)
        preview = (rgb, labels_small, scl_small[np.ix_(rows, cols)])
    return _S2Result(cloud_share, eo_cloud_cover, write_truth, preview)


def _sky_truth(
    grid: TileGrid, opacity: F32 | None, shadow: F32 | None, cirrus: F32 | None
) -> NDArray[np.uint8]:
    """Bands: cloud opacity (%), shadow darkening (%), cirrus reflectance (x 1000)."""
    sky = np.zeros((3, *grid.shape(20)), dtype=np.uint8)
    for band, field, scale in ((0, opacity, 100), (1, shadow, 100), (2, cirrus, 1000)):
        if field is not None:
            sky[band] = np.clip(np.round(field * scale), 0, 255)
    return sky


def _surface(
    mean: F32, slope: F32, labels: NDArray[np.int32], texture: F32, rng: np.random.Generator | None
) -> F32:
    """Surface reflectance of one band: unit mean + texture along the unit's mixing line,
    plus sensor noise (0.002 + 1 % of the signal) when `rng` is given."""
    surface = mean[labels]
    surface += slope[labels] * texture
    if rng is not None:
        surface += noise.normal(rng, surface.shape) * (
            np.float32(0.002) + np.float32(0.01) * surface
        )
    np.maximum(surface, np.float32(0.0005), out=surface)
    return surface


def _render_s1(
    static: _Static, plan: Acquisition, seed: int, folder: Path, queue: _WriteQueue
) -> float:
    grid, layout = static.grid, static.layout
    rng = _rng(seed, _S1, plan.day.toordinal())
    state = surface_state(layout.unit_cover, static.calendar, plan.doy)
    regional = static.weather.soil_moisture(plan.doy)
    moisture = regional * static.moisture_factor
    for pol in ("VV", "VH"):
        db = sar.unit_backscatter(
            layout.unit_cover, state, moisture, static.sar_offset[pol], pol
        ).astype(np.float32)
        image = db[static.label10]
        image += static.texture10 * np.float32(0.5)
        speckle = noise.quantile_noise(rng, grid.shape(20), sar.speckle_table())
        image += noise.upsample(speckle, 2.0, grid.shape(10))
        queue.put(folder / f"{pol}.tif", image, grid, 10, None)
        del image
    return regional
