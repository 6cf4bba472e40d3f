"""Rendering one acquisition: the landscape's units, the sky and the sensor, band by band.

Each band is computed into reusable scratch buffers (a full tile's band is 480 MB of float32:
fresh allocations would cost page faults on every step), converted to the delivered dtype and
handed to a single writer thread, which compresses it while the next band is computed.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from monitor.simulate import clouds, noise, sar, writer
from monitor.simulate.fields import Layout
from monitor.simulate.grid import TileGrid
from monitor.simulate.noise import F32
from monitor.simulate.phenology import Calendar, surface_state
from monitor.simulate.preview import window_for
from monitor.simulate.spectra import BANDS, BANDS_10M, BANDS_20M, unit_reflectance
from monitor.simulate.weather import Weather

RED, NIR = BANDS.index("B04"), BANDS.index("B08")


@dataclass
class Landscape:
    """Everything that stays put over the season, built once."""

    grid: TileGrid
    layout: Layout
    calendar: Calendar
    weather: Weather
    label10: NDArray[np.int32]
    label20: NDArray[np.int32]
    texture10: F32  # within-field texture, ~N(0, 1)
    texture20: F32
    water20: NDArray[np.bool_]
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
    """Compress and write rasters on one background thread, at most two in flight.

    Output arrays come from `array()` and go back to a free list once written: a full tile's
    band is hundreds of MB, and reusing buffers spares the page faults of fresh ones.
    """

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool
        self._pending: list[tuple[Future[None], NDArray[Any] | None]] = []
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
    ) -> None:
        """Write `array` as a COG in the background; `reuse=False` for arrays the caller keeps."""
        while len(self._pending) >= 2:
            self._finish_oldest()
        future = self._pool.submit(writer.write_cog, path, array, grid, resolution, nodata)
        self._pending.append((future, array if reuse else None))

    def drain(self) -> None:
        while self._pending:
            self._finish_oldest()

    def _finish_oldest(self) -> None:
        future, array = self._pending.pop(0)
        future.result()
        if array is not None:
            self._free.append(array)
        del self._free[:-6]  # a few of each size is all the reuse there is


@dataclass(frozen=True)
class S2Result:
    cloud_share: float  # true share of the tile under cloud
    eo_cloud_cover: float  # % of SCL 8, 9, 10
    clear_truth: bool
    preview: tuple[NDArray[np.uint16], NDArray[np.int32], NDArray[np.uint8]] | None


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
    and the sky is not clear, its clear-sky reflectance and sky truth."""
    grid, layout = land.grid, land.layout
    state = surface_state(layout.unit_cover, land.calendar, day)
    moisture = land.weather.soil_moisture(day) * land.moisture_factor
    mean, slope = unit_reflectance(
        layout.unit_cover, state, land.calendar.soil_brightness, moisture
    )
    mean32, slope32 = np.asfortranarray(mean, np.float32), np.asfortranarray(slope, np.float32)
    sky = clouds.draw_sky(grid, cloud_cover, rng)
    write_truth = truth_folder is not None and (sky.opacity is not None or sky.cirrus is not None)
    view = window_for(grid.size)
    preview_rgb: dict[str, NDArray[np.uint16]] = {}
    scl = np.zeros((1, 1), dtype=np.uint8)
    cloud_share = 0.0

    for resolution, bands, labels, texture in (
        (10, BANDS_10M, land.label10, land.texture10),
        (20, BANDS_20M, land.label20, land.texture20),
    ):
        surface, work, spare = land.scratch(resolution)
        opacity, shadow, cirrus = sky.fields(grid, resolution)
        through = clouds.transmission(opacity, shadow)
        for band in bands:
            b = BANDS.index(band)
            _surface(mean32[:, b], slope32[:, b], labels, texture, rng, surface, work, spare)
            if write_truth:
                assert truth_folder is not None
                truth = _to_uint16(surface, work, queue.array(surface.shape, np.uint16))
                queue.put(truth_folder / f"{band}.tif", truth, grid, resolution, 0)
            clouds.observe(surface, b, sky, through, opacity, cirrus, work)
            observed = _to_uint16(surface, work, queue.array(surface.shape, np.uint16))
            queue.put(folder / f"{band}.tif", observed, grid, resolution, 0)
            if want_preview and band in ("B02", "B03", "B04"):
                preview_rgb[band] = observed[view, view].copy()
        if resolution == 20:
            red, nir = surface, spare  # the sky as Sen2Cor sees it, at 20 m
            _surface(mean32[:, RED], slope32[:, RED], labels, texture, None, red, work, work)
            clouds.observe(red, RED, sky, through, opacity, cirrus, work)
            _surface(mean32[:, NIR], slope32[:, NIR], labels, texture, None, nir, work, work)
            clouds.observe(nir, NIR, sky, through, opacity, cirrus, work)
            scl = clouds.scene_classification(
                red, nir, land.water20, sky, opacity, shadow, cirrus, rng
            )
            queue.put(folder / "SCL.tif", scl, grid, 20, 0)
            if write_truth:
                assert truth_folder is not None
                sky_truth = _sky_truth(grid, opacity, shadow, cirrus)
                queue.put(truth_folder / "SKY.tif", sky_truth, grid, 20, None)
            cloud_share = 0.0 if opacity is None else float((opacity > 0).mean())
        del opacity, shadow, cirrus, through
    eo_cloud_cover = float(np.isin(scl, clouds.CLOUDY_CLASSES).mean() * 100.0)
    preview = None
    if want_preview:
        rgb = np.stack([preview_rgb["B04"], preview_rgb["B03"], preview_rgb["B02"]])
        at20 = np.arange(view.start, view.stop) // 2  # the 20 m SCL under each 10 m pixel
        preview = (rgb, land.label10[view, view], scl[np.ix_(at20, at20)])
    return S2Result(cloud_share, eo_cloud_cover, write_truth, preview)


def render_s1(
    land: Landscape, day: float, rng: np.random.Generator, folder: Path, queue: WriteQueue
) -> float:
    """Write one Sentinel-1 GRD acquisition (VV, VH in dB); returns the regional moisture."""
    grid, layout = land.grid, land.layout
    state = surface_state(layout.unit_cover, land.calendar, day)
    regional = land.weather.soil_moisture(day)
    moisture = regional * land.moisture_factor
    _, work, _ = land.scratch(10)
    for pol in ("VV", "VH"):
        db = sar.unit_backscatter(layout.unit_cover, state, moisture, land.sar_offset[pol], pol)
        image = queue.array(grid.shape(10), np.float32)
        np.take(db.astype(np.float32), land.label10, out=image, mode="wrap")
        np.multiply(land.texture10, np.float32(0.5), out=work)
        image += work
        speckle = noise.quantile_noise(rng, grid.shape(20), sar.speckle_table())
        image += noise.upsample2(speckle, grid.shape(10))
        # 1/64 dB steps (far below the 2 dB speckle) let deflate halve the file
        image *= np.float32(64.0)
        np.round(image, out=image)
        image *= np.float32(1 / 64)
        queue.put(folder / f"{pol}.tif", image, grid, 10, None)
    return regional


def _surface(
    mean: F32,
    slope: F32,
    labels: NDArray[np.int32],
    texture: F32,
    rng: np.random.Generator | None,
    out: F32,
    work: F32,
    spare: F32,
) -> None:
    """Surface reflectance of one band into `out`: unit mean + texture along the unit's mixing
    line, plus sensor noise (0.002 + 1 % of the signal) when `rng` is given."""
    np.take(mean, labels, out=out, mode="wrap")  # labels are valid unit ids: no bounds check
    np.take(slope, labels, out=work, mode="wrap")
    work *= texture
    out += work
    if rng is not None:
        noise.uniform_into(rng, work)
        np.multiply(out, np.float32(0.01), out=spare)
        spare += np.float32(0.002)
        work *= spare
        out += work
    np.maximum(out, np.float32(0.0005), out=out)


def _to_uint16(reflectance: F32, work: F32, out: NDArray[np.uint16]) -> NDArray[np.uint16]:
    """Reflectance → uint16 x 10⁴ into `out` (0 is nodata, so the floor is 1)."""
    np.multiply(reflectance, np.float32(10000.0), out=work)
    np.clip(work, 1.0, 65535.0, out=work)
    np.rint(work, out=work)
    out[...] = work
    return out


def _sky_truth(
    grid: TileGrid, opacity: F32 | None, shadow: F32 | None, cirrus: F32 | None
) -> NDArray[np.uint8]:
    """Bands: cloud opacity (%), shadow darkening (%), cirrus reflectance (x 1000)."""
    sky = np.zeros((3, *grid.shape(20)), dtype=np.uint8)
    for band, layer, scale in ((0, opacity, 100), (1, shadow, 100), (2, cirrus, 1000)):
        if layer is not None:
            sky[band] = np.clip(np.round(layer * scale), 0, 255)
    return sky
