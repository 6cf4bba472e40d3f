"""The heterogeneity stage: a `heterogeneity` event once a season when a parcel looks mixed.

Per Sentinel-2 acquisition, `HeterogeneityStage`:

1. draws the NDVI pixel sets of every parcel of the grid from the rasters and SCL mask the
   engine already read (`pixel_sets_of`, the same draw as `monitor.heterogeneity.s2_pixel_sets`
   through `ndvi_sample`, without reading the assets again; the valid fraction and NDVI
   spread come from the acquisition's observation rows);
2. stores them in the store as `<product>.pixelsets.npz` (NDVI as int16 x 10⁴ with a padding
   sentinel, fractions as float16: ~13 MB for 200 000 parcels). Every later step reads the
   stored, quantised values, also for this date, so a redo or a replay gives the same bytes;
3. runs the model on the parcels that are due (below) over the season so far and emits a
   `heterogeneity` event for each parcel whose probability reaches `DECISION_THRESHOLD`. The
   event id hashes parcel and season window (one id per parcel and season); the parcels flagged
   are remembered per product in `<product>.heterogeneity.parquet`, and, as for practices, an
   acquisition consults only the files of the other products acquired before it.

Why a cadence: the model runs ~500-800 parcels/s per core, so scoring a full tile (200 000
parcels) on every acquisition would take minutes, far over the one-minute budget of an
acquisition on 2 cores. Heterogeneity is a property of the season, not of the day, so each
parcel is scored at most once every `every_days` days: its phase (a CRC32 of its id modulo
`every_days`) spreads the parcels evenly over the acquisitions, and it is scored on the first
acquisition after each of its phase days. With S2 every 5 days and `every_days=30`, one
acquisition scores about a sixth of the parcels (~33 000 of 200 000, ~1 minute at 540/s on one
core); parcels already flagged, with fewer than `MIN_DATES` usable dates, or with no new usable
date in the last `every_days` days (same inputs, same answer) are skipped.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

from monitor import __version__
from monitor.errors import ConfigError
from monitor.events import EventBatch, ModelRef, ParcelEvent, make_event
from monitor.heterogeneity import (
    DECISION_THRESHOLD,
    MIN_DATES,
    N_PIXELS,
    DatePixelSets,
    PixelSetSeries,
    heterogeneity_probability,
    ndvi_sample,
    std_rule_score,
)
from monitor.infer import Model
from monitor.stac import Acquisition
from monitor.stages import StageInput, StageOutput
from monitor.stages.memory import state_before, write_state
from monitor.store import ObservationStore
from monitor.zonal import ParcelGrid

log = logging.getLogger(__name__)

STATE_KIND: Final = "heterogeneity"
ARRAY_KIND: Final = "pixelsets"
DEFAULT_EVERY_DAYS: Final = 30
#: Flagged parcels of a product (its state file).
STATE_SCHEMA: Final[dict[str, pl.DataType]] = {
    "event_id": pl.String(),
    "parcel_id": pl.String(),
    "probability": pl.Float64(),
    "acquired": pl.Datetime("us", "UTC"),
}
_SCORE_SCHEMA: Final[dict[str, pl.DataType]] = {
    "parcel_id": pl.String(),
    "probability": pl.Float64(),
    "usable_dates": pl.Int64(),
    "ndvi_std_mean": pl.Float64(),
}
_NDVI_SCALE: Final = 10_000
_PADDING: Final = np.iinfo(np.int16).min
_BANDS: Final = ("B04", "B08")


@dataclass(frozen=True)
class StoredDate:
    """One stored acquisition's pixel sets, quantised as written."""

    product_id: str
    acquired: datetime
    arrays: dict[str, npt.NDArray[Any]]


def pixel_sets_of(data: StageInput, n_samples: int = N_PIXELS) -> DatePixelSets | None:
    """NDVI pixel sets of every parcel of the grid (grid order) from the rasters already read;
    None for an acquisition without B04, B08 and an SCL mask (Sentinel-1)."""
    acq, observed = data.acquisition, data.observed
    bands = observed.rasters.bands
    if acq.sensor != "S2" or observed.valid is None or not set(_BANDS) <= bands.keys():
        return None
    chosen = {name: bands[name] for name in _BANDS}
    ndvi, keep = ndvi_sample(data.grid.labels, chosen, observed.valid, acq, n_samples=n_samples)
    # Valid fraction and NDVI spread per parcel: the observation rows (parcels with pixels).
    rows = data.observations.filter(
        (pl.col("source") == "observed") & (pl.col("product_id") == acq.product_id)
    )
    index = _grid_index(data.grid, rows.get_column("parcel_id"))
    valid_fraction = np.zeros(len(data.grid.ids), dtype=np.float32)
    ndvi_std = np.full(len(data.grid.ids), np.nan, dtype=np.float32)
    valid_fraction[index] = rows.get_column("valid_fraction").to_numpy()
    if "NDVI_std" in rows.columns:
        ndvi_std[index] = rows.get_column("NDVI_std").cast(pl.Float32).to_numpy()
    return DatePixelSets(
        day_of_year=float(acq.acquired.timetuple().tm_yday),
        ndvi=ndvi,
        mask=keep,
        valid_fraction=valid_fraction,
        ndvi_std=ndvi_std,
    )


def _grid_index(grid: ParcelGrid, parcel_ids: pl.Series) -> npt.NDArray[np.intp]:
    order = pl.DataFrame({"parcel_id": grid.ids.astype(str)}).with_row_index("index")
    found = pl.DataFrame({"parcel_id": parcel_ids.cast(pl.String)}).join(
        order, on="parcel_id", how="left", maintain_order="left"
    )
    return found.get_column("index").to_numpy().astype(np.intp)


def grid_digest(grid: ParcelGrid) -> npt.NDArray[np.uint8]:
    """SHA-256 of the grid's parcel ids in order: stored pixel sets of another parcel set (a
    new declaration version) do not line up and are left out."""
    text = "\x1f".join(grid.ids.astype(str).tolist()).encode("utf-8")
    return np.frombuffer(hashlib.sha256(text).digest(), dtype=np.uint8).copy()


def quantise(
    sets: DatePixelSets, acquired: datetime, digest: npt.NDArray[np.uint8]
) -> dict[str, npt.NDArray[Any]]:
    """The stored form of a date's pixel sets."""
    scaled = np.rint(np.clip(sets.ndvi, -1.0, 1.0) * _NDVI_SCALE).astype(np.int16)
    return {
        "ndvi": np.where(sets.mask, scaled, _PADDING).astype(np.int16),
        "valid_fraction": sets.valid_fraction.astype(np.float16),
        "ndvi_std": sets.ndvi_std.astype(np.float16),
        "day_of_year": np.array(sets.day_of_year, dtype=np.float32),
        "acquired_us": np.array(_microseconds(acquired), dtype=np.int64),
        "grid": digest,
    }


def _microseconds(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def stack_dates(dates: list[StoredDate], rows: npt.NDArray[np.intp]) -> PixelSetSeries:
    """The season series of the parcels `rows` (grid order) from stored dates (time order)."""
    ndvi = np.stack([d.arrays["ndvi"][rows] for d in dates], axis=1)
    mask = ndvi != _PADDING
    return PixelSetSeries(
        day_of_year=np.array([float(d.arrays["day_of_year"]) for d in dates], dtype=np.float32),
        ndvi=np.where(mask, ndvi.astype(np.float32) / _NDVI_SCALE, 0.0).astype(np.float32),
        mask=mask,
        valid_fraction=np.stack([d.arrays["valid_fraction"][rows] for d in dates], axis=1).astype(
            np.float32
        ),
        ndvi_std=np.stack([d.arrays["ndvi_std"][rows] for d in dates], axis=1).astype(np.float32),
    )


def parcel_phases(ids: npt.NDArray[Any], every_days: int) -> npt.NDArray[np.int64]:
    """Each parcel's phase in days (0..every_days-1): stable across processes and versions."""
    return np.array(
        [zlib.crc32(str(p).encode("utf-8")) % every_days for p in ids.tolist()], dtype=np.int64
    )


class HeterogeneityStage:
    """Pixel sets per S2 acquisition into the store; `heterogeneity` events at a cadence."""

    name = "heterogeneity"
    raster_bands: Final = frozenset(_BANDS)

    def __init__(
        self,
        model: Model,
        *,
        every_days: int = DEFAULT_EVERY_DAYS,
        threshold: float = DECISION_THRESHOLD,
    ) -> None:
        if every_days < 1:
            raise ConfigError(f"heterogeneity every_days {every_days}: must be at least 1")
        if not 0.0 < threshold < 1.0:
            raise ConfigError(f"heterogeneity threshold {threshold} is not in (0, 1)")
        self.model = model
        self.every_days = every_days
        self.threshold = threshold
        self._grid_cache: dict[int, tuple[ParcelGrid, npt.NDArray[np.uint8], Any]] = {}

    def _grid_info(self, grid: ParcelGrid) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
        cached = self._grid_cache.get(id(grid))
        if cached is None or cached[0] is not grid:
            cached = (grid, grid_digest(grid), parcel_phases(grid.ids, self.every_days))
            self._grid_cache[id(grid)] = cached
        return cached[1], cached[2]

    def run(self, data: StageInput) -> StageOutput:
        sets = pixel_sets_of(data)
        if sets is None:
            return StageOutput()
        acq, store = data.acquisition, data.store
        season = store.season_of(acq.acquired)
        digest, phases = self._grid_info(data.grid)
        current = StoredDate(acq.product_id, acq.acquired, quantise(sets, acq.acquired, digest))
        store.write_arrays(acq.product_id, acq.tile, season, ARRAY_KIND, current.arrays)

        earlier = self._earlier_dates(store, acq, season, digest)
        due = self._due(acq, phases, earlier[-1].acquired if earlier else None, store, season)
        flagged = state_before(store, acq, STATE_KIND, STATE_SCHEMA)["parcel_id"]
        ids = data.grid.ids.astype(str)
        candidates = np.flatnonzero(due & ~np.isin(ids, flagged.to_numpy()))
        found = self._score([*earlier, current], candidates, ids, acq)
        stamp = data.detected_time
        events = self._events(found, acq, store.season_window(season), stamp)
        state = found.select(
            pl.Series("event_id", [e.event_id for e in events], dtype=pl.String),
            "parcel_id",
            "probability",
        )
        write_state(store, acq, STATE_KIND, state)
        if events:
            log.info("%s: %d heterogeneous parcels", acq.product_id, len(events))
        return StageOutput(events=EventBatch.from_events(events))

    def _earlier_dates(
        self, store: ObservationStore, acq: Acquisition, season: int, digest: npt.NDArray[Any]
    ) -> list[StoredDate]:
        """The stored dates of the other products of the tile and season before `acq`."""
        out = []
        here = (_microseconds(acq.acquired), acq.product_id)
        for product_id, path in store.state_files(acq.tile, season, ARRAY_KIND).items():
            if product_id == acq.product_id:
                continue
            head = store.read_arrays(path, ("acquired_us", "grid"))
            if (int(head["acquired_us"]), product_id) >= here:
                continue
            if not np.array_equal(head["grid"], digest):
                log.warning("%s: pixel sets of another parcel set, left out", path.name)
                continue
            names = ("ndvi", "valid_fraction", "ndvi_std", "day_of_year", "acquired_us")
            arrays = store.read_arrays(path, names)
            moment = datetime.fromtimestamp(
                int(arrays["acquired_us"]) / 1e6, tz=acq.acquired.tzinfo
            )
            out.append(StoredDate(product_id, moment, arrays))
        return sorted(out, key=lambda d: (d.acquired, d.product_id))

    def _due(
        self,
        acq: Acquisition,
        phases: npt.NDArray[np.int64],
        previous: datetime | None,
        store: ObservationStore,
        season: int,
    ) -> npt.NDArray[np.bool_]:
        """Parcels with a phase day in (previous S2 acquisition, this one]."""
        if previous is None:
            return np.ones(len(phases), dtype=bool)
        start = store.season_window(season)[0].date().toordinal()
        now = acq.acquired.date().toordinal() - start
        before = previous.date().toordinal() - start
        n = self.every_days
        due: npt.NDArray[np.bool_] = (now - phases) // n > (before - phases) // n
        return due

    def _score(
        self,
        dates: list[StoredDate],
        candidates: npt.NDArray[np.intp],
        ids: npt.NDArray[Any],
        acq: Acquisition,
    ) -> pl.DataFrame:
        """Probabilities of the candidates with new evidence; the rows that reach the threshold."""
        empty = pl.DataFrame(schema=_SCORE_SCHEMA)
        if len(candidates) == 0:
            return empty
        series = stack_dates(dates, candidates)
        usable = series.usable()
        start = acq.acquired.toordinal() - self.every_days
        recent = np.array([d.acquired.toordinal() > start for d in dates])
        scored = (usable.sum(axis=1) >= MIN_DATES) & usable[:, recent].any(axis=1)
        rows = np.flatnonzero(scored)
        if len(rows) == 0:
            return empty
        part = series.take(rows)
        probability = heterogeneity_probability(part, self.model)
        hit = probability >= self.threshold
        if not hit.any():
            return empty
        chosen = part.take(np.flatnonzero(hit))
        return pl.DataFrame(
            {
                "parcel_id": ids[candidates[rows[hit]]].tolist(),
                "probability": probability[hit],
                "usable_dates": chosen.usable().sum(axis=1).astype(np.int64),
                "ndvi_std_mean": std_rule_score(chosen),
            },
            schema=_SCORE_SCHEMA,
        )

    def _events(
        self,
        found: pl.DataFrame,
        acq: Acquisition,
        window: tuple[datetime, datetime],
        stamp: datetime,
    ) -> list[ParcelEvent]:
        model = ModelRef(self.model.name, __version__)
        return [
            make_event(
                "heterogeneity",
                row["parcel_id"],
                acq.tile,
                acq.acquired,
                stamp,
                min(max(row["probability"], 0.0), 1.0),
                model,
                [acq.product_id],
                {
                    "probability": row["probability"],
                    "usable_dates": float(row["usable_dates"]),
                    "ndvi_std_mean": row["ndvi_std_mean"],
                },
                window=window,
            )
            for row in found.iter_rows(named=True)
        ]
