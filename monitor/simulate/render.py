"""Rendering one acquisition: the landscape's units, the sky and the sensor, band by band.

Each band is computed into reusable scratch buffers (a full tile's band is 480 MB of float32:
fresh allocations would cost page faults on every step), converted to the delivered dtype and
handed to the writer threads, which compress it while the next band is computed.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from monitor import _core
from monitor.simulate import clouds, sar, writer
from monitor.simulate.fields import Layout
from monitor.simulate.grid import TileGrid
from monitor.simulate.noise import F32
from monitor.simulate.phenology import Calendar, surface_state
from monitor.simulate.preview import window_for
from monitor.simulate.sar import Orbit
from monitor.simulate.snow import Snow, draw_snow
from monitor.simulate.spectra import BANDS, BANDS_10M, BANDS_20M, unit_reflectance
from monitor.simulate.weather import Weather

RED, NIR = BANDS.index("B04"), BANDS.index("B08")
SATURATED_VALUE = 65535  # what L2A products write where the detector saturated
RAMP_DB_PER_DEGREE = -0.15
TEXTURE_DB = 0.5  # dB of backscatter per unit of within-field texture


@dataclass
class Landscape:
    """Everything that stays put over the season, built once."""

    grid: TileGrid
    layout: Layout
    calendar: Calendar
    weather: Weather
    # unit of each pixel (int32: the render kernels' label type, half of intp's memory)
    label10: NDArray[np.int32]
    label20: NDArray[np.int32]
    texture10: F32  # within-field texture, ~N(0, 1)
    texture20: F32
    water20: NDArray[np.bool_]
    snow_visible: F32  # per unit: share of the snow on the ground seen from above
    moisture_factor: NDArray[np.float64]  # per unit: wetter or drier than the region
    sar_offset: dict[str, NDArray[np.float64]]  # per unit and polarisation, dB
    _scratch: dict[int, tuple[F32, F32, F32]] | None = None

    def scratch(self, resolution: int) -> tuple[F32, F32, F32]:
        """Three float32 work buffers of the grid at `resolution`, allocated once."""
        if self._scratch is None:
            self._scratch = {}
        if resolution not in self._scratch:
            shape = self.grid.shape(resolution)
            self._scratch[resolution] = tuple(  # type: ignore[assignment]
                np.empty(shape, dtype=np.float32) for _ in range(3)
            )
        return self._scratch[resolution]


class WriteQueue:
    """Compress and write rasters on the pool's background threads, at most `MAX_PENDING` in
    flight, and run follow-up actions (publishing an item) once the writes before them are done.

    Output arrays come from `array()` and go back to a free list once written: a full tile's
    band is hundreds of MB, and reusing buffers spares the page faults of fresh ones.
    """

    MAX_PENDING = 4  # with two writers: both busy while the main thread renders the next band

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool
        self._pending: list[
            tuple[Future[None] | None, NDArray[Any] | None, Callable[[], None] | None]
        ] = []
        self._free: list[NDArray[Any]] = []

    def array(self, shape: tuple[int, ...], dtype: type[np.generic]) -> NDArray[Any]:
        """An output buffer of that shape and dtype that no pending write is using."""
        for i, buffer in enumerate(self._free):
            if buffer.shape == shape and buffer.dtype == dtype:
                return self._free.pop(i)
        return np.empty(shape, dtype=dtype)

    def put(
        self,
        path: Path,
        array: NDArray[Any],
        grid: TileGrid,
        resolution: int,
        nodata: float | None,
        reuse: bool = True,
        overviews: bool = True,
    ) -> None:
        """Write `array` as a COG in the background; `reuse=False` for arrays the caller keeps,
        `overviews=False` for ground truth."""
        while sum(future is not None for future, _, _ in self._pending) >= self.MAX_PENDING:
            self._finish_oldest()
        future = self._pool.submit(
            writer.write_cog, path, array, grid, resolution, nodata, overviews
        )
        self._pending.append((future, array if reuse else None, None))

    def then(self, action: Callable[[], None]) -> None:
        """Run `action` (on this thread) once every write put so far is on disk."""
        self._pending.append((None, None, action))

    def drain(self) -> None:
        while self._pending:
            self._finish_oldest()

    def _finish_oldest(self) -> None:
        future, array, action = self._pending.pop(0)
        if future is not None:
            future.result()
        if array is not None:
            self._free.append(array)
            del self._free[:-6]  # a few of each size is all the reuse there is
        if action is not None:
            action()


@dataclass(frozen=True)
class S2Result:
    cloud_share: float  # true share of the tile under cloud
    eo_cloud_cover: float  # % of SCL 8, 9, 10
    snow_cover: float  # % of SCL 11
    clear_truth: bool
    residual_share: float  # share of the tile the SCL calls clear under cloud, cirrus or haze
    snow_share: float  # true share of the tile under snow (fraction-weighted)
    saturated_share: float  # share of SCL 1
    preview: tuple[NDArray[np.uint16], NDArray[np.int32], NDArray[np.uint8]] | None


@dataclass(frozen=True)
class SkyView:
    """The sky fields of one date on the 20 m grid (the kernels interpolate them to 10 m)."""

    through: F32 | None  # surface signal that reaches the sensor
    opacity: F32 | None
    cirrus: F32 | None
    patches: F32 | None

    def band(self, sky: clouds.Sky, b: int) -> dict[str, Any]:
        """The sky keyword arguments of `_core.sim_render_optical` for band index `b`."""
        return {
            "through": self.through,
            "opacity": self.opacity,
            "cloud": float(sky.cloud_spectrum[b]),
            "cirrus": self.cirrus,
            "cirrus_factor": float(clouds.CIRRUS_SPECTRUM[b]),
            "patches": self.patches,
            "haze_factor": float(clouds.HAZE_SPECTRUM[b]),
            "haze": float(sky.haze[b]),
        }


_CLEAR_CLASSES = (clouds.DARK, clouds.VEGETATION, clouds.NOT_VEGETATED, clouds.WATER)


def render_s2(
    land: Landscape,
    day: float,
    cloud_cover: float,
    rng: np.random.Generator,
    folder: Path,
    truth_folder: Path | None,
    queue: WriteQueue,
    want_preview: bool,
) -> S2Result:
    """Write one Sentinel-2 L2A acquisition (10 bands + SCL) and, when `truth_folder` is given
    and the sky is not clear (or snow lies), its clear-sky reflectance and sky truth."""
    grid, layout = land.grid, land.layout
    state = surface_state(layout.unit_cover, land.calendar, day)
    moisture = land.weather.soil_moisture(day) * land.moisture_factor
    mean, slope = unit_reflectance(
        layout.unit_cover, state, land.calendar.soil_brightness, moisture
    )
    mean32, slope32 = np.asfortranarray(mean, np.float32), np.asfortranarray(slope, np.float32)
    sky = clouds.draw_sky(grid, cloud_cover, rng)
    snow = draw_snow(grid, land.weather.snow_cover(day), rng)
    write_truth = truth_folder is not None and (
        sky.opacity is not None
        or sky.cirrus is not None
        or sky.patches is not None
        or snow is not None
    )
    view = window_for(grid.size)
    preview_rgb: dict[str, NDArray[np.uint16]] = {}

    # the 20 m view first: the SCL, and the pixels whose blue saturates the detector
    opacity, shadow, cirrus, patches = sky.fields(grid, 20)
    through = clouds.transmission(opacity, shadow)
    snow20 = None if snow is None else snow.fraction(grid, 20, land.label20, land.snow_visible)
    sky20 = SkyView(through, opacity, cirrus, patches)
    red, nir, work = land.scratch(20)
    _observed(land, mean32, slope32, RED, snow, snow20, sky, sky20, red)
    _observed(land, mean32, slope32, NIR, snow, snow20, sky, sky20, nir)
    saturated = None
    if opacity is not None:  # only cloud cores are bright enough
        blue = _observed(land, mean32, slope32, 0, snow, snow20, sky, sky20, work)
        saturated = blue >= np.float32(clouds.SATURATION)
        if not saturated.any():
            saturated = None
        del blue
    scl = clouds.scene_classification(
        red, nir, land.water20, sky, opacity, shadow, cirrus, snow20, saturated, rng
    )
    queue.put(folder / "SCL.tif", scl, grid, 20, 0, reuse=False)
    hidden = _sky_present(opacity, cirrus, patches)
    residual = None if hidden is None else hidden & np.isin(scl, _CLEAR_CLASSES)
    if write_truth:
        assert truth_folder is not None
        sky_truth = _sky_truth(grid, opacity, shadow, cirrus, patches, snow20, residual)
        queue.put(truth_folder / "SKY.tif", sky_truth, grid, 20, None, overviews=False)
    cloud_share = 0.0 if opacity is None else float((opacity > 0).mean())
    snow_share = 0.0 if snow20 is None else float(snow20.mean())
    residual_share = 0.0 if residual is None else float(residual.mean())
    del opacity, shadow, cirrus, patches, through, hidden, residual

    for resolution, bands, labels, texture in (
        (10, BANDS_10M, land.label10, land.texture10),
        (20, BANDS_20M, land.label20, land.texture20),
    ):
        fraction = snow20
        if snow is not None and resolution == 10:
            fraction = snow.fraction(grid, 10, labels, land.snow_visible)
        for band in bands:
            b = BANDS.index(band)
            shape = labels.shape
            truth = queue.array(shape, np.uint16) if write_truth else None
            observed = queue.array(shape, np.uint16)
            _core.sim_render_optical(
                labels,
                mean32[:, b],
                slope32[:, b],
                texture,
                observed,
                noise_seed=int(rng.integers(0, 2**63)),
                snow=fraction,
                snow_value=0.0 if snow is None else float(snow.spectrum[b]),
                surface_out=truth,
                saturated=saturated if band == "B02" else None,
                **sky20.band(sky, b),
            )
            if truth is not None:
                assert truth_folder is not None
                queue.put(truth_folder / f"{band}.tif", truth, grid, resolution, 0, overviews=False)
            queue.put(folder / f"{band}.tif", observed, grid, resolution, 0)
            if want_preview and band in ("B02", "B03", "B04"):
                preview_rgb[band] = observed[view, view].copy()
        del fraction
    counts = np.bincount(scl.ravel(), minlength=256) / scl.size
    eo_cloud_cover = float(counts[list(clouds.CLOUDY_CLASSES)].sum() * 100.0)
    preview = None
    if want_preview:
        rgb = np.stack([preview_rgb["B04"], preview_rgb["B03"], preview_rgb["B02"]])
        at20 = np.arange(view.start, view.stop) // 2  # the 20 m SCL under each 10 m pixel
        preview = (rgb, land.label10[view, view], scl[np.ix_(at20, at20)])
    return S2Result(
        cloud_share=cloud_share,
        eo_cloud_cover=eo_cloud_cover,
        snow_cover=float(counts[clouds.SNOW] * 100.0),
        clear_truth=write_truth,
        residual_share=residual_share,
        snow_share=snow_share,
        saturated_share=float(counts[clouds.SATURATED]),
        preview=preview,
    )


def _observed(
    land: Landscape,
    mean32: F32,
    slope32: F32,
    b: int,
    snow: Snow | None,
    fraction: F32 | None,
    sky: clouds.Sky,
    view: SkyView,
    out: F32,
) -> F32:
    """Noise-free top-of-atmosphere reflectance of band `b` at 20 m into `out`."""
    _core.sim_render_optical(
        land.label20,
        mean32[:, b],
        slope32[:, b],
        land.texture20,
        out,
        snow=fraction,
        snow_value=0.0 if snow is None else float(snow.spectrum[b]),
        **view.band(sky, b),
    )
    return out


def _sky_present(
    opacity: F32 | None, cirrus: F32 | None, patches: F32 | None
) -> NDArray[np.bool_] | None:
    """Where anything but the uniform haze stands between the surface and the sensor."""
    present: NDArray[np.bool_] | None = None
    for layer, floor in ((opacity, 0.0), (cirrus, 0.0), (patches, 0.0025)):
        if layer is not None:
            here = layer > floor
            present = here if present is None else present | here
    return present


@dataclass(frozen=True)
class S1Result:
    soil_moisture: float  # regional, m³/m³
    incidence_deg: float  # mean over the window
    snow_share: float  # true share of the tile under snow (fraction-weighted)
    wet_snow: bool  # the snow pack is wet (melting): it lowers γ⁰


def render_s1(
    land: Landscape,
    day: float,
    orbit: Orbit,
    rng: np.random.Generator,
    folder: Path,
    queue: WriteQueue,
) -> S1Result:
    """Write one Sentinel-1 GRD acquisition (VV, VH in dB) seen from `orbit`."""
    grid, layout = land.grid, land.layout
    state = surface_state(layout.unit_cover, land.calendar, day)
    regional = land.weather.soil_moisture(day)
    moisture = regional * land.moisture_factor
    snow = draw_snow(grid, land.weather.snow_cover(day), rng)
    wet = snow is not None and land.weather.snow_wet(day)
    # wet snow absorbs: γ⁰ drops in proportion to the pixel's snow cover (radar sees the snow
    # under a canopy about as much as the optical sensors do); dry snow is transparent
    fraction = None
    if snow is not None and wet:
        fraction = snow.fraction(grid, 10, land.label10, land.snow_visible)
    snow_share = 0.0 if snow is None else float(snow.field.mean())
    # units are seen at the window's mean incidence; across it the incidence drifts from
    # near to far range, ~0.15 dB less per degree
    incidence = orbit.incidence_deg(grid.size)
    mean_incidence = float(incidence.mean())
    ramp = ((incidence - mean_incidence) * RAMP_DB_PER_DEGREE).astype(np.float32)
    for pol in ("VV", "VH"):
        db = sar.unit_backscatter(
            layout.unit_cover, state, moisture, land.sar_offset[pol], pol, mean_incidence
        )
        image = queue.array(grid.shape(10), np.float32)
        extra = None if fraction is None else fraction * np.float32(sar.WET_SNOW_DB[pol])
        _core.sim_render_radar(
            land.label10,
            db.astype(np.float32),
            land.texture10,
            TEXTURE_DB,
            ramp,
            sar.speckle_table(),
            int(rng.integers(0, 2**63)),
            image,
            extra_db=extra,
            quantum=64.0,  # 1/64 dB steps (far below the 2 dB speckle) let deflate halve the file
        )
        queue.put(folder / f"{pol}.tif", image, grid, 10, None)
        del extra
    return S1Result(regional, mean_incidence, snow_share, wet)


def _sky_truth(
    grid: TileGrid,
    opacity: F32 | None,
    shadow: F32 | None,
    cirrus: F32 | None,
    patches: F32 | None,
    snow: F32 | None,
    residual: NDArray[np.bool_] | None,
) -> NDArray[np.uint8]:
    """Bands: cloud opacity (%), shadow darkening (%), cirrus reflectance (x 1000), haze
    patches (blue reflectance x 1000), snow (%), residual cloud (1: SCL says clear, it is not)."""
    sky = np.zeros((6, *grid.shape(20)), dtype=np.uint8)
    layers = ((opacity, 100), (shadow, 100), (cirrus, 1000), (patches, 1000), (snow, 100))
    for band, (layer, scale) in enumerate(layers):
        if layer is not None:
            sky[band] = np.clip(np.round(layer * scale), 0, 255)
    if residual is not None:
        sky[5] = residual
    return sky
