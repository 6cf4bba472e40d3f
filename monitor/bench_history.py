"""A synthetic season history for `parcel-monitor bench --history-dates N`.

The model stages' cost depends on how much of the season the store already holds: practice
detection reads every parcel's series so far, heterogeneity every earlier pixel-set file. A
one-date bench leaves them idle, so the bench can first fill the store with N earlier
acquisitions of the same tile and time the acquisition after them (mid-season).

The history is cheap to make and only its *size* is realistic: every date is derived from the
one simulated date's observation rows (parcels, pixel counts, statistics), written through the
store's public API (`write_acquisition`, `write_arrays`, `write_state`) with shifted acquisition
times; a third of the parcels is cloudy on each S2 date, the others get random clear values
(NDVI, band means, pixel sets). Dates alternate Sentinel-2 and Sentinel-1 every `STEP`, about
the rate of both sensors over a mid-latitude tile (~0.73 acquisitions a day); S1 rows carry
synthetic VV and VH backscatter. The practice and heterogeneity state files of the history are
empty (no event emitted before), so every detection counts as new: an upper bound on events. Nothing
goes into the cloud-removal stage's acquisition index (it needs rasters), so that stage finds no
reference and its mid-season cost is not measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from monitor.errors import ConfigError
from monitor.heterogeneity import DatePixelSets
from monitor.observations import band_stat_columns
from monitor.stac import Acquisition
from monitor.stages import InferenceStage, StageInput
from monitor.stages import heterogeneity as het
from monitor.stages import practices as prac
from monitor.stages.memory import write_state
from monitor.store import ObservationStore
from monitor.zonal import Observation, ParcelGrid, observe_with_rasters

#: Time between two history dates (S2 and S1 alternate).
STEP: Final = timedelta(hours=36)


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
    """What `fill_history` wrote, and the observation of the simulated date it came from."""

    store: ObservationStore
    rows: int
    observation: Observation


def fill_history(
    store: ObservationStore, grid: ParcelGrid, acq: Acquisition, dates: list[Acquisition]
) -> History:
    """Write the history `dates` (all but the timed last one) of `acq` into `store`. Reads
    `acq`'s rasters once for the rows and pixel sets it derives from."""
    observation = observe_with_rasters(acq, grid)
    base = observation.table
    data = StageInput(acq, grid, base, observation, store, "acquired")
    sets = het.pixel_sets_of(data)
    digest = het.grid_digest(grid)
    rng = np.random.default_rng(0)
    stats = band_stat_columns(base)
    empty_practices = pl.DataFrame(schema={k: prac.STATE_SCHEMA[k] for k in prac.STATE_SCHEMA})
    empty_het = pl.DataFrame(schema={k: het.STATE_SCHEMA[k] for k in het.STATE_SCHEMA})
    rows = 0
    for date in dates[:-1]:
        if date.sensor == "S2":
            table = _s2_rows(base, stats, date, rng)
            if sets is not None:
                store.write_arrays(
                    date.product_id,
                    date.tile,
                    store.season_of(date.acquired),
                    het.ARRAY_KIND,
                    het.quantise(_shifted(sets, date, rng), date.acquired, digest),
                )
        else:
            table = _s1_rows(base, date, rng)
        rows += store.write_acquisition(table).rows
        write_state(store, date, prac.STATE_KIND, empty_practices.drop("acquired"))
        if date.sensor == "S2":
            write_state(store, date, het.STATE_KIND, empty_het.drop("acquired"))
    return History(store, rows, observation)


def warm_up(
    stages: Sequence[InferenceStage], history: History, grid: ParcelGrid, previous: Acquisition
) -> list[str]:
    """Run the practice stage on the `previous` history date, as the worker that processed it
    did: what it keeps in memory between acquisitions of a tile (`PredictionMemo`) is then
    what a running worker holds. Returns the names of the stages run."""
    observed = history.observation
    data = StageInput(previous, grid, observed.table.clear(), observed, history.store, "acquired")
    ran = []
    for stage in stages:
        if isinstance(stage, prac.PracticeStage):
            stage.run(data)
            ran.append(stage.name)
    return ran


def _stamp(table: pl.DataFrame, date: Acquisition) -> pl.DataFrame:
    return table.with_columns(
        pl.lit(date.acquired).cast(pl.Datetime("us", "UTC")).alias("acquired"),
        pl.lit(date.product_id).alias("product_id"),
        pl.lit(date.sensor).alias("sensor"),
    )


def _s2_rows(
    base: pl.DataFrame, stats: list[str], date: Acquisition, rng: np.random.Generator
) -> pl.DataFrame:
    """The simulated date's rows with a third of the parcels cloudy (valid fraction 0) and the
    others clear, with synthetic band means (the simulated date itself may be cloudy)."""
    n = base.height
    clear: npt.NDArray[np.bool_] = rng.random(n) >= 1 / 3
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


def _shifted(sets: DatePixelSets, date: Acquisition, rng: np.random.Generator) -> DatePixelSets:
    """Synthetic pixel sets at `date`: two thirds of the parcels clear with every sample a
    pixel (random NDVI), the others cloudy (no pixel)."""
    n, samples = sets.ndvi.shape
    clear: npt.NDArray[np.bool_] = np.asarray(rng.random(n) >= 1 / 3)
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
