"""The engine's inference stage: models that run after an acquisition's observations are stored.

Each stage is one model's step on one acquisition (cloud removal, heterogeneity, practices).
`Engine.process` runs them in order after it has written the acquisition's observed rows to the
store, so a stage sees the parcel's history including this acquisition. A stage may write its
own files of the same product to the store (reconstructed rows, the memory of events already
emitted): every store write is keyed by product id and replaces, so when the worker crashes
before its Kafka transaction commits, redoing the acquisition rewrites the same files and
emits the same events once. A stage returns the events it wants emitted; a stage raising a
`MonitorError` fails the acquisition (dead letter), anything else is a bug and propagates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

import polars as pl

from monitor.events import EventBatch
from monitor.stac import Acquisition
from monitor.store import ObservationStore
from monitor.zonal import Observation, ParcelGrid


@dataclass(frozen=True)
class StageInput:
    """What a stage gets for one acquisition.

    `observations` holds the rows of this acquisition already in the store (observed rows,
    plus the rows earlier stages added, such as reconstructed ones); `observed` keeps the
    rasters and validity mask they were computed from, so no stage reads the assets again.
    `detected_at` is the timestamp events carry: "acquired" (deterministic replay) or the
    worker's clock.
    """

    acquisition: Acquisition
    grid: ParcelGrid
    observations: pl.DataFrame
    observed: Observation
    store: ObservationStore
    detected_at: datetime | Literal["acquired"]

    @property
    def detected_time(self) -> datetime:
        """`detected_at` as a time: the acquisition's in replay mode, else the clock's."""
        return self.acquisition.acquired if self.detected_at == "acquired" else self.detected_at


@dataclass(frozen=True)
class StageOutput:
    """A stage's result: events to emit and observation rows it added to the store."""

    events: EventBatch = field(default_factory=EventBatch.empty)
    rows: pl.DataFrame | None = None


class InferenceStage(Protocol):
    """One model's step on an acquisition; `name` labels its timings and metrics. A stage may
    also declare `raster_bands` (a frozenset of band names it reads from `StageInput.observed`):
    the engine then frees the bands no later stage reads before it runs (`pipeline.rasters_for`);
    one that does not declare it keeps every band alive."""

    name: str

    def run(self, data: StageInput) -> StageOutput:
        """Run on one stored acquisition; return what to emit (and rows written, if any)."""
        ...
