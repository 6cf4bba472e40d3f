"""A synthetic season history for `parcel-monitor bench --history-dates N`.

The model stages' cost depends on how much of the season the store already holds: practice
detection reads every parcel's series so far, heterogeneity every earlier pixel-set file, cloud
removal the rasters of a clear reference date and two radar dates. A one-date bench leaves them
idle, so the bench can first fill the store with N earlier acquisitions of the same tile and
time the acquisition after them (mid-season).

The history is cheap to make and only its *size* is realistic: every date is derived from the
one simulated date's observation rows (parcels, pixel counts, statistics), written through the
store's public API (`write_acquisition`, `write_arrays`, `write_state`) with shifted acquisition
times; a third of the parcels is cloudy on each S2 date, the others get random clear values
(NDVI, band means, pixel sets). Dates alternate Sentinel-2 and Sentinel-1 every `STEP`, about
the rate of both sensors over a mid-latitude tile (~0.73 acquisitions a day); S1 rows carry
synthetic VV and VH backscatter. The practice and heterogeneity state files of the history are
empty (no event emitted before), so every detection counts as new: an upper bound on events.

Every date also goes into the acquisition index, as the reconstruction stage records it, so that
stage finds its references and does its real work on the timed date's cloudy parcels:

* the last S2 date of the history is the clear reference (t0): all its parcels clear, its
  B04/B08/B11 assets those of the simulated date, with a synthetic all-clear SCL raster;
* the other S2 dates point at the simulated date's assets (two thirds clear: never a t0);
* every S1 date points at one synthetic VV/VH pair (int16 dB x 100, following B08 of the
  simulated date, VH 6 dB under VV).

`make_history` runs in a child process (`history_in_child`): its memory is not the bench's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl
import rasterio
from rasterio.windows import Window

from monitor.acquisition_index import INDEX_DIR, AcquisitionIndex, IndexedAcquisition
from monitor.catalog import read_catalog
from monitor.cloud_removal import BANDS as RECONSTRUCTED_BANDS
from monitor.errors import ConfigError
from monitor.heterogeneity import DatePixelSets
from monitor.observations import band_stat_columns
from monitor.parcels import load_parcels
from monitor.peak_memory import peak_rss
from monitor.pipeline import Engine, EngineConfig
from monitor.raster import AcquisitionRasters
from monitor.stac import Acquisition, Asset
from monitor.stages import InferenceStage, StageInput
from monitor.stages import heterogeneity as het
from monitor.stages import practices as prac
from monitor.stages.memory import write_state
from monitor.store import ObservationStore
from monitor.zonal import Observation, ParcelGrid, observe_with_rasters

#: Time between two history dates (S2 and S1 alternate).
STEP: Final = timedelta(hours=36)
#: Synthetic SCL class of the reference date (vegetation: clear).
_CLEAR_SCL: Final = 4
#: Synthetic backscatter: int16 dB x 100.
_DB_SCALE: Final = 0.01
_DB_NODATA: Final = -32768
_ROWS_PER_WRITE: Final = 512


def history_dates(acq: Acquisition, n: int, store: ObservationStore) -> list[Acquisition]:
    """The N history acquisitions (oldest first, starting at `acq`'s own date) and, last,
    the acquisition to time, `n * STEP` after `acq`. Raises `ConfigError` when they would
    leave `acq`'s season."""
    dates = [
        replace(
            acq,
            acquired=acq.acquired + k * STEP,
            product_id=f"BENCH-HISTORY-{k:03d}-{'S2' if k % 2 == 0 else 'S1'}",
            sensor="S2" if k % 2 == 0 else "S1",
        )
        for k in range(n)
    ]
    timed = replace(acq, acquired=acq.acquired + n * STEP, product_id=f"{acq.product_id}-T{n}")
    if store.season_of(timed.acquired) != store.season_of(acq.acquired):
        raise ConfigError(
            f"--history-dates {n}: {n} dates after {acq.acquired:%Y-%m-%d} leave its season"
        )
    return [*dates, timed]


@dataclass(frozen=True)
class History:
    """What `fill_history` wrote."""

    rows: int
    #: The clear S2 reference date (t0) of the timed acquisition, if the history has one.
    reference: str | None
    #: What was synthesised, one line each, for the bench's notes.
    synthesised: tuple[str, ...]


def fill_history(
    store: ObservationStore,
    grid: ParcelGrid,
    acq: Acquisition,
    dates: list[Acquisition],
    rasters: Path,
) -> History:
    """Write the history `dates` (all but the timed last one) of `acq` into `store` and its
    acquisition index; synthetic reference rasters go under `rasters`. Reads `acq`'s rasters
    once for the rows and pixel sets it derives from."""
    observation = observe_with_rasters(acq, grid)
    base = observation.table
    data = StageInput(acq, grid, base, observation, store, "acquired")
    sets = het.pixel_sets_of(data)
    del data, observation  # the rasters: the history needs only rows and pixel sets
    digest = het.grid_digest(grid)
    rng = np.random.default_rng(0)
    stats = band_stat_columns(base)
    empty_practices = pl.DataFrame(schema={k: prac.STATE_SCHEMA[k] for k in prac.STATE_SCHEMA})
    empty_het = pl.DataFrame(schema={k: het.STATE_SCHEMA[k] for k in het.STATE_SCHEMA})
    history = dates[:-1]
    s2 = [d for d in history if d.sensor == "S2"]
    reference = s2[-1] if s2 and set(RECONSTRUCTED_BANDS) <= acq.assets.keys() else None
    radar = "B08" in acq.assets and any(d.sensor == "S1" for d in history)
    s1_assets = _s1_rasters(acq, rasters) if radar else {}
    t0_assets = _clear_reference(acq, rasters) if reference is not None else {}
    index = AcquisitionIndex(store.root / INDEX_DIR, store.season_of)
    rows = 0
    for date in history:
        if date.sensor == "S2":
            clear = date is reference
            table = _s2_rows(base, stats, date, rng, all_clear=clear)
            if sets is not None:
                store.write_arrays(
                    date.product_id,
                    date.tile,
                    store.season_of(date.acquired),
                    het.ARRAY_KIND,
                    het.quantise(_shifted(sets, date, rng, clear), date.acquired, digest),
                )
            assets = t0_assets if clear else acq.assets
            clear_fraction: float | None = _clear_share(table)
        else:
            table = _s1_rows(base, date, rng)
            assets, clear_fraction = s1_assets, None
        rows += store.write_acquisition(table).rows
        index.record(IndexedAcquisition.of(replace(date, assets=assets), clear_fraction))
        write_state(store, date, prac.STATE_KIND, empty_practices.drop("acquired"))
        if date.sensor == "S2":
            write_state(store, date, het.STATE_KIND, empty_het.drop("acquired"))
    n_s1 = len(history) - len(s2)
    synthesised = [
        f"{len(history)} dates ({len(s2)} S2, {n_s1} S1), {rows} rows, every "
        f"{STEP.total_seconds() / 3600:g} h from "
        f"{acq.acquired:%Y-%m-%d}: the simulated date's parcels with random values, S2 dates a "
        "third cloudy, no event emitted before; all in the acquisition index",
    ]
    if reference is not None:
        synthesised.append(
            f"cloud-removal reference t0 {reference.product_id}: all parcels clear, B04/B08/B11 "
            "of the simulated date with a synthetic all-clear SCL"
        )
    if s1_assets:
        synthesised.append(
            "every S1 date: one synthetic VV/VH raster pair (dB following B08, VH = VV - 6 dB)"
        )
    return History(rows, None if reference is None else reference.product_id, tuple(synthesised))


def _clear_share(table: pl.DataFrame) -> float:
    pixels = int(table.get_column("pixel_count").sum())
    return int(table.get_column("valid_count").sum()) / max(pixels, 1)


@dataclass(frozen=True)
class HistoryJob:
    """What `make_history` needs, as paths (it runs in a fresh process)."""

    store: Path
    catalog: Path
    product_id: str
    parcels: Path
    id_column: str
    label_cache: Path
    rasters: Path
    n: int


@dataclass(frozen=True)
class HistoryRun:
    """`History` with the seconds and peak memory of the process that made it."""

    history: History
    seconds: float
    peak_rss_bytes: int | None


def make_history(job: HistoryJob) -> HistoryRun:
    """Fill `job.store` with the history of the catalog item `job.product_id`."""
    start = time.perf_counter()
    with peak_rss() as peak:
        store = ObservationStore(job.store)
        (acq,) = [
            e.acquisition
            for e in read_catalog(job.catalog).entries
            if e.acquisition.product_id == job.product_id
        ]
        parcels = load_parcels(job.parcels, id_column=job.id_column)
        grid = Engine(EngineConfig(parcels, store, label_cache=job.label_cache)).grid(acq)
        history = fill_history(store, grid, acq, history_dates(acq, job.n, store), job.rasters)
    return HistoryRun(history, time.perf_counter() - start, peak.bytes)


def history_in_child(job: HistoryJob) -> HistoryRun:
    """`make_history` in a child process (`python -m monitor.bench_history JOB`): its memory
    peak is not the parent's. Raises `ConfigError` with the child's last error line."""
    fields = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(job).items()}
    command = [sys.executable, "-m", "monitor.bench_history", json.dumps(fields)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
        raise ConfigError(f"cannot synthesise the bench history in {job.store}: {lines[-1]}")
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    history = History(raw["rows"], raw["reference"], tuple(raw["synthesised"]))
    return HistoryRun(history, raw["seconds"], raw["peak_rss_bytes"])


def warm_up(
    stages: Sequence[InferenceStage],
    store: ObservationStore,
    grid: ParcelGrid,
    previous: Acquisition,
) -> list[str]:
    """Run the practice stage on the `previous` history date, as the worker that processed it
    did: what it keeps in memory between acquisitions of a tile (`PredictionMemo`) is then
    what a running worker holds. Returns the names of the stages run."""
    season = store.season_of(previous.acquired)
    rows = (
        store.scan(previous.tile, season)
        .filter(pl.col("product_id") == previous.product_id)
        .drop("season")
        .collect()
    )
    # The practice stage reads the store, not the rasters: the observation has none.
    rasters = AcquisitionRasters(previous, previous.transform, previous.shape, {}, ())
    data = StageInput(previous, grid, rows, Observation(rows, rasters, None), store, "acquired")
    ran = []
    for stage in stages:
        if isinstance(stage, prac.PracticeStage):
            stage.run(data)
            ran.append(stage.name)
    return ran


def _s1_rasters(acq: Acquisition, folder: Path) -> dict[str, Asset]:
    """The synthetic VV/VH pair on `acq`'s grid (written once per grid), as assets."""
    assets = {
        name: Asset(
            name,
            str(folder / f"{name}.tif"),
            scale=_DB_SCALE,
            nodata=float(_DB_NODATA),
            unit="dB",
            data_type="int16",
        )
        for name in ("VV", "VH")
    }
    if all(Path(a.href).is_file() for a in assets.values()):
        return assets
    folder.mkdir(parents=True, exist_ok=True)
    nir = acq.assets["B08"]
    with rasterio.open(nir.href) as src:
        profile = _profile(src, "int16", _DB_NODATA)
        tmp = {name: folder / f".{name}.tif.tmp" for name in assets}
        with (
            rasterio.open(tmp["VV"], "w", **profile) as vv,
            rasterio.open(tmp["VH"], "w", **profile) as vh,
        ):
            for window in _row_windows(src.height, src.width):
                raw = src.read(1, window=window)
                reflectance = raw.astype(np.float32) * nir.scale + nir.offset
                db = np.clip(-22.0 + 30.0 * reflectance, -30.0, 0.0)
                missing = raw == nir.nodata if nir.nodata is not None else np.zeros_like(raw, bool)
                for out, shift in ((vv, 0.0), (vh, -6.0)):
                    values = np.rint((db + shift) / _DB_SCALE).astype(np.int16)
                    out.write(
                        np.where(missing, _DB_NODATA, values).astype(np.int16), 1, window=window
                    )
    for name, path in tmp.items():
        path.replace(folder / f"{name}.tif")  # complete files only under the final names
    return assets


def _clear_reference(acq: Acquisition, folder: Path) -> dict[str, Asset]:
    """`acq`'s reflectance assets with a synthetic all-clear SCL (on the SCL's own grid)."""
    assets = {name: acq.assets[name] for name in RECONSTRUCTED_BANDS}
    scl = acq.assets.get("SCL")
    if scl is None:
        return assets
    path = folder / "SCL-clear.tif"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / ".SCL-clear.tif.tmp"
        with rasterio.open(scl.href) as src:
            profile = _profile(src, "uint8", 0)
            with rasterio.open(tmp, "w", **profile) as out:
                for window in _row_windows(src.height, src.width):
                    block = np.full((window.height, window.width), _CLEAR_SCL, dtype=np.uint8)
                    out.write(block, 1, window=window)
        tmp.replace(path)
    assets["SCL"] = replace(scl, href=str(path))
    return assets


def _profile(src: rasterio.io.DatasetReader, dtype: str, nodata: int) -> dict[str, object]:
    return {
        "driver": "GTiff",
        "dtype": dtype,
        "count": 1,
        "width": src.width,
        "height": src.height,
        "crs": src.crs,
        "transform": src.transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": _ROWS_PER_WRITE,
        "blockysize": _ROWS_PER_WRITE,
        "compress": "zstd",
    }


def _row_windows(height: int, width: int) -> list[Window]:
    return [
        Window(0, row, width, min(_ROWS_PER_WRITE, height - row))
        for row in range(0, height, _ROWS_PER_WRITE)
    ]


def _stamp(table: pl.DataFrame, date: Acquisition) -> pl.DataFrame:
    return table.with_columns(
        pl.lit(date.acquired).cast(pl.Datetime("us", "UTC")).alias("acquired"),
        pl.lit(date.product_id).alias("product_id"),
        pl.lit(date.sensor).alias("sensor"),
    )


def _s2_rows(
    base: pl.DataFrame,
    stats: list[str],
    date: Acquisition,
    rng: np.random.Generator,
    *,
    all_clear: bool = False,
) -> pl.DataFrame:
    """The simulated date's rows with a third of the parcels cloudy (valid fraction 0; none if
    `all_clear`) and the others clear, with synthetic band means (the simulated date itself
    may be cloudy)."""
    n = base.height
    clear: npt.NDArray[np.bool_] = (rng.random(n) >= 1 / 3) | all_clear
    ndvi = rng.uniform(0.2, 0.8, n)
    typical = {"B02_mean": 0.06, "B04_mean": 0.08, "B08_mean": 0.28, "B11_mean": 0.2}
    means = {
        column: np.where(clear, value * rng.uniform(0.9, 1.1, n), np.nan)
        for column, value in typical.items()
        if column in stats
    }
    return _stamp(base, date).with_columns(
        pl.Series("NDVI_mean", np.where(clear, ndvi, np.nan)),
        *(pl.Series(column, values) for column, values in means.items()),
        pl.Series("valid_fraction", clear.astype(np.float64)),
        pl.when(pl.Series(clear)).then(pl.col("pixel_count")).otherwise(0).alias("valid_count"),
    )


def _s1_rows(base: pl.DataFrame, date: Acquisition, rng: np.random.Generator) -> pl.DataFrame:
    """One row per parcel with synthetic VV / VH backscatter (dB) and no S2 statistic."""
    n = base.height
    vv = rng.normal(-12.0, 2.0, n)
    vh = vv - 7.0 + rng.normal(0.0, 1.0, n)
    fixed = ["parcel_id", "tile", "pixel_count", "source"]
    return _stamp(base.select(fixed), date).with_columns(
        pl.col("pixel_count").alias("valid_count"),
        pl.lit(1.0).alias("valid_fraction"),
        pl.Series("VV_mean", vv),
        pl.Series("VH_mean", vh),
        pl.Series("VV_std", np.abs(rng.normal(1.5, 0.3, n))),
        pl.Series("VH_std", np.abs(rng.normal(1.5, 0.3, n))),
    )


def _shifted(
    sets: DatePixelSets, date: Acquisition, rng: np.random.Generator, all_clear: bool
) -> DatePixelSets:
    """Synthetic pixel sets at `date`: two thirds of the parcels (all if `all_clear`) clear
    with every sample a pixel (random NDVI), the others cloudy (no pixel)."""
    n, samples = sets.ndvi.shape
    clear: npt.NDArray[np.bool_] = np.asarray(rng.random(n) >= 1 / 3) | all_clear
    mask = np.repeat(clear[:, None], samples, axis=1)
    ndvi = rng.uniform(0.1, 0.9, (n, samples)).astype(np.float32)
    return replace(
        sets,
        day_of_year=float(date.acquired.timetuple().tm_yday),
        ndvi=np.where(mask, ndvi, 0.0).astype(np.float32),
        mask=mask,
        valid_fraction=clear.astype(np.float32),
        ndvi_std=np.where(clear, ndvi.std(axis=1), np.nan).astype(np.float32),
    )


def _main(argv: list[str]) -> None:
    raw = json.loads(argv[0])
    job = HistoryJob(
        store=Path(raw["store"]),
        catalog=Path(raw["catalog"]),
        product_id=str(raw["product_id"]),
        parcels=Path(raw["parcels"]),
        id_column=str(raw["id_column"]),
        label_cache=Path(raw["label_cache"]),
        rasters=Path(raw["rasters"]),
        n=int(raw["n"]),
    )
    run = make_history(job)
    result = {**asdict(run.history), "seconds": run.seconds, "peak_rss_bytes": run.peak_rss_bytes}
    print(json.dumps(result))


if __name__ == "__main__":
    _main(sys.argv[1:])
