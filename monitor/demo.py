"""The main job end to end on a local default: what `make demo` runs.

Starts a real local Kafka broker, publishes a season's STAC Items (the bundled real Mol sample,
or a freshly simulated season), runs one worker of the consumer group until it is idle, reads
the events back as a downstream system would (read_committed), prints them by type, and draws
the time series of the best-observed parcel with its practice and heterogeneity events (from
`model-events.jsonl`, the models' events as read back). Everything lands under one output
folder; the broker is stopped at the end whatever happens.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from monitor.errors import ConfigError

SAMPLE = Path(__file__).parents[1] / "examples" / "mol-2023"


@dataclass(frozen=True)
class DemoInputs:
    catalog: Path
    parcels: Path
    id_column: str


def sample_inputs() -> DemoInputs:
    """The bundled real sample: 12 Sentinel-2 and 10 Sentinel-1 acquisitions, 42 segments."""
    if not SAMPLE.is_dir():
        raise ConfigError(f"the bundled sample {SAMPLE} is missing (run from a source checkout)")
    return DemoInputs(SAMPLE, SAMPLE / "segments.gpkg", "segment_id")


def simulated_inputs(out: Path, tile_size: int, n_parcels: int, seed: int) -> DemoInputs:
    """A simulated season (one MGRS tile corner), made once and reused."""
    from monitor.simulate import simulate_season

    season = out / f"season-{tile_size}px-{n_parcels}-seed{seed}"
    if not (season / "catalog.json").is_file():
        print(f"simulating a season: {tile_size}x{tile_size} px, {n_parcels} parcels ...")
        simulate_season(season, tile_size, n_parcels, 2025, seed, overwrite=True)
    return DemoInputs(season, season / "parcels.parquet", "id_parcel")


def _read_events(
    bootstrap: str, topic: str, expected: int, timeout_s: float, models_out: Path
) -> Counter[str]:
    """Event types as a downstream consumer sees them (committed transactions only); the
    models' events (all but observations) also go to the JSON Lines file `models_out`."""
    import json

    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        consumer_timeout_ms=2000,
    )
    types: Counter[str] = Counter()
    deadline = time.monotonic() + timeout_s
    try:
        with models_out.open("wb") as fh:
            while sum(types.values()) < expected and time.monotonic() < deadline:
                for message in consumer:
                    kind = json.loads(message.value)["type"]
                    types[kind] += 1
                    if kind != "observation":
                        fh.write(message.value + b"\n")
    finally:
        consumer.close()
    return types


def run_demo(out: Path, inputs: DemoInputs, *, idle_seconds: float = 5.0) -> int:
    """Broker, publish, worker until idle, events read back, report. Returns the exit code."""
    from monitor.broker import start_broker
    from monitor.catalog import iter_catalog
    from monitor.events import EVENT_TYPES
    from monitor.parcels import load_parcels
    from monitor.pipeline import Engine, EngineConfig
    from monitor.publish import publish_acquisitions
    from monitor.report import parcel_report
    from monitor.stages.defaults import default_stages
    from monitor.store import ObservationStore
    from monitor.worker import Worker, WorkerConfig, href_policy

    started = time.perf_counter()
    # A fresh broker and store each run, so the figures describe this run alone.
    for stale in ("kafka", "store"):
        shutil.rmtree(out / stale, ignore_errors=True)
    entries = iter_catalog(inputs.catalog)
    print(f"catalog {inputs.catalog}: {len(entries)} acquisitions")
    print("starting a local Kafka broker (KRaft) ...")
    broker = start_broker(out / "kafka", 0)
    try:
        published = publish_acquisitions(entries, broker.bootstrap)
        tiles = ", ".join(f"{t}: {n}" for t, n in published.per_tile.items())
        print(
            f"published {sum(published.per_tile.values())} STAC Items to 'acquisitions' ({tiles})"
        )
        store = ObservationStore(out / "store")
        engine = Engine(
            EngineConfig(
                parcels=load_parcels(inputs.parcels, id_column=inputs.id_column),
                store=store,
                label_cache=out / "labels",
                href_policy=href_policy([inputs.catalog.resolve()]),
                detected_at=lambda: datetime.now(UTC),
                stages=default_stages(),
            )
        )
        print(f"running a worker until it has been idle for {idle_seconds:g} s ...")
        worker = Worker(engine, WorkerConfig(broker.bootstrap, exit_when_idle=idle_seconds))
        summary = worker.run()
        print(summary.text())
        model_events = out / "model-events.jsonl"
        seen = _read_events(broker.bootstrap, "parcel-events", summary.events, 60, model_events)
        print(f"read back with read_committed: {sum(seen.values())} events, by type:")
        for kind in EVENT_TYPES:
            print(f"  {kind:<20}{seen.get(kind, 0):>8}")
    finally:
        broker.stop()
    clearest = (
        store.scan()
        .filter(pl.col("sensor") == "S2")
        .group_by("parcel_id")
        .agg(pl.col("valid_fraction").sum())
        .sort(["valid_fraction", "parcel_id"], descending=[True, False])
        .first()
        .collect()
    )
    if clearest.height:
        parcel = str(clearest.item(0, "parcel_id"))
        picture = out / f"report-{parcel}.png"
        parcel_report(store, parcel, picture, events=model_events)
        print(f"time series of parcel {parcel}: {picture}")
    print(f"store: {out / 'store'}; done in {time.perf_counter() - started:.0f} s")
    return 0 if sum(seen.values()) == summary.events else 1
