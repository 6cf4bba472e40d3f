"""The per-acquisition path of the engine, shared by the Kafka worker and replay.

`Engine.process` takes one acquisition message (a STAC Item) and does, in order: validate the
item, read and mask its rasters, compute the zonal statistics of the parcels on its grid, write
them to the store (atomic and idempotent per product id), run the inference stage, and return
the events to emit. Memory: a full tile's rasters are the bulk of it, so before each stage the
bands no stage still to run reads are released (`rasters_for`), and each stage's peak RSS is
recorded beside its seconds. It does not talk to Kafka: the worker wraps it in a transaction, replay
writes its events to a file. Every failure that is the message's fault raises a
`MonitorError` whose text is the one-line reason a dead letter carries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import polars as pl

from monitor.events import EventBatch, observation_events
from monitor.parcels import ParcelSet
from monitor.peak_memory import peak_rss
from monitor.stac import Acquisition, HrefPolicy, parse_item
from monitor.stages import InferenceStage, StageInput
from monitor.store import ObservationStore
from monitor.zonal import MaskConfig, Observation, ParcelGrid, observe_with_rasters, parcel_grid

log = logging.getLogger(__name__)

#: `detected_at` of events: the acquisition time (deterministic: replay and reprocessing give
#: byte-identical events) or a clock (the live worker's wall clock).
DetectedAt = Literal["acquired"] | Callable[[], datetime]


@dataclass(frozen=True)
class EngineConfig:
    """What one engine instance needs; built once per worker or replay run."""

    parcels: ParcelSet
    store: ObservationStore
    label_cache: Path | None = None
    mask: MaskConfig = field(default_factory=MaskConfig)
    href_policy: HrefPolicy = field(default_factory=HrefPolicy)
    detected_at: DetectedAt = "acquired"
    #: The models' steps, run in this order after the observed rows are stored.
    stages: Sequence[InferenceStage] = ()


@dataclass(frozen=True)
class AcquisitionResult:
    """What processing one acquisition produced, with the seconds spent per stage and the
    peak resident memory of the process during each (bytes; `monitor.peak_memory`, absent
    where the platform does not tell)."""

    acquisition: Acquisition
    observations: pl.DataFrame
    events: EventBatch
    stage_seconds: Mapping[str, float]
    stage_peak_rss: Mapping[str, int] = field(default_factory=dict)


class _StageClock:
    """Seconds and peak RSS per stage of one acquisition."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_rss: dict[str, int] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        with peak_rss() as peak:
            yield
        self.seconds[name] = time.perf_counter() - start
        if peak.bytes is not None:
            self.peak_rss[name] = peak.bytes


class Engine:
    """Processes acquisitions one at a time; keeps each grid's label raster between them."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._grids: dict[tuple[Any, ...], ParcelGrid] = {}

    def parse(self, payload: bytes | str | Mapping[str, Any], base: Path | None) -> Acquisition:
        """Validate an acquisition message (raises `InvalidAcquisition` / `AssetError`)."""
        return parse_item(payload, base=base, policy=self.config.href_policy)

    def grid(self, acq: Acquisition) -> ParcelGrid:
        """The parcels and label raster of `acq`'s grid, built once per grid and reused."""
        key = (acq.tile, acq.epsg, acq.transform, acq.shape)
        grid = self._grids.get(key)
        if grid is None:
            grid = parcel_grid(acq, self.config.parcels, cache_dir=self.config.label_cache)
            self._grids[key] = grid
        return grid

    def process(self, acq: Acquisition) -> AcquisitionResult:
        """Observe, store and turn into events one validated acquisition."""
        stage = _StageClock()
        with stage("labels"):
            grid = self.grid(acq)

        with stage("zonal"):
            observation = observe_with_rasters(acq, grid, mask=self.config.mask)
            table = observation.table

        with stage("store"):
            self.config.store.write_acquisition(table)

        with stage("events"):
            detected_at = self.config.detected_at
            stamp: datetime | Literal["acquired"] = (
                "acquired" if detected_at == "acquired" else detected_at()
            )
            batches = [observation_events(table, stamp)]

        stages = list(self.config.stages)
        for i, model in enumerate(stages):
            observation = rasters_for(stages[i:], observation)
            with stage(model.name):
                data = StageInput(acq, grid, table, observation, self.config.store, stamp)
                output = model.run(data)
                del data  # the stage's working set, not carried into the next one
                batches.append(output.events)
                if output.rows is not None:
                    table = pl.concat([table, output.rows], how="diagonal_relaxed")
        del observation  # the rasters: not held while the events are joined
        events = EventBatch.concat(batches)
        log.info(
            "%s: %d parcels, %d events (%s)",
            acq.product_id,
            table.height,
            len(events),
            ", ".join(f"{k} {v:.2f}s" for k, v in stage.seconds.items()),
        )
        return AcquisitionResult(acq, table, events, stage.seconds, stage.peak_rss)


def rasters_for(stages: Sequence[InferenceStage], observation: Observation) -> Observation:
    """`observation` with only the raster bands that `stages` read (and the validity mask only
    if they read a band), so a full tile's other bands are freed before they run (10 S2 bands
    are 2.4 GB). A stage says what it reads with a `raster_bands` attribute (band names; empty:
    none); one without it keeps every band."""
    wanted: set[str] = set()
    for model in stages:
        bands = getattr(model, "raster_bands", None)
        if bands is None:
            return observation
        wanted.update(bands)
    rasters = observation.rasters
    if rasters.bands.keys() <= wanted:
        return observation
    kept = {name: band for name, band in rasters.bands.items() if name in wanted}
    valid = observation.valid if wanted else None
    return replace(observation, rasters=replace(rasters, bands=kept), valid=valid)
