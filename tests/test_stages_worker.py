"""Model events through the Kafka worker: read_committed, exactly once, even after a redo.

The bundled Mol season goes through a worker with the default stages; one acquisition fails
once *after* its stages wrote their state to the store (as a crash before the Kafka commit
would leave it). The transaction aborts, the worker redoes the batch, and a read_committed
consumer sees every event once: the same bytes as a file replay of the season.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer
from kafka_records import consume

from monitor.broker import create_topics
from monitor.events import EVENT_TYPES, ParcelEvent, rfc3339
from monitor.parcels import load_parcels
from monitor.pipeline import Engine, EngineConfig
from monitor.replay import ReplayJob, run_replay
from monitor.stac import read_item
from monitor.stages import InferenceStage, StageInput, StageOutput
from monitor.stages.defaults import default_stages
from monitor.store import ObservationStore
from monitor.worker import Worker, WorkerConfig, href_policy
from tests.sample_data import sample_dir, sample_path

MOL = sample_path("mol-2023")
PARCELS = MOL / "segments.gpkg"
MODEL_TYPES = tuple(t for t in EVENT_TYPES if t != "observation")


class FailsOnceAfter:
    """A real stage that raises once, after it ran (its state is in the store), on one product."""

    def __init__(self, stage: InferenceStage, product_id: str) -> None:
        self.stage = stage
        self.name = stage.name
        self.product_id = product_id
        self.failed = False

    def run(self, data: StageInput) -> StageOutput:
        output = self.stage.run(data)
        if data.acquisition.product_id == self.product_id and not self.failed:
            self.failed = True
            raise RuntimeError("worker lost before the Kafka commit")
        return output


def _message(path: Path) -> tuple[bytes, bytes]:
    item = json.loads(path.read_text())
    for asset in item["assets"].values():
        asset["href"] = str((path.parent / asset["href"]).resolve())
    return read_item(path).tile.encode(), json.dumps(item).encode()


@pytest.mark.kafka
def test_model_events_arrive_read_committed_exactly_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run_replay(
        ReplayJob(
            catalog=MOL,
            parcels=PARCELS,
            store=tmp_path / "replay-store",
            events_out=tmp_path / "events.jsonl",
            id_column="segment_id",
        )
    )
    expected = (tmp_path / "events.jsonl").read_bytes().splitlines()
    models = [ParcelEvent.from_json(line) for line in expected if b'"observation"' not in line]
    assert {e.type for e in models} & set(MODEL_TYPES)
    # Fail on the acquisition that detects the most practices.
    detecting = max({e.detected_at for e in models}, key=[e.detected_at for e in models].count)

    suffix = uuid.uuid4().hex[:8]
    source, events = f"acq-{suffix}", f"events-{suffix}"
    create_topics(kafka_bootstrap, {source: 3, events: 3, f"dlq-{suffix}": 1})
    items = sorted(MOL.glob("s[12]/*/item.json"), key=lambda p: read_item(p).acquired)
    products = {read_item(p).product_id: read_item(p).acquired for p in items}
    failing = next(p for p, t in products.items() if rfc3339(t) == detecting)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        for path in items:
            key, value = _message(path)
            producer.send(source, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close()

    # The last stage fails: every stage has written its state for the product by then.
    *first, last = default_stages()
    flaky = FailsOnceAfter(last, failing)
    stages = [*first, flaky]
    engine = Engine(
        EngineConfig(
            load_parcels(PARCELS, id_column="segment_id"),
            ObservationStore(tmp_path / "store"),
            href_policy=href_policy([sample_dir()]),
            stages=stages,
        )
    )
    config = WorkerConfig(
        kafka_bootstrap,
        group_id=f"group-{suffix}",
        worker_name=f"w-{suffix}",
        source_topic=source,
        events_topic=events,
        dlq_topic=f"dlq-{suffix}",
        exit_when_idle=3.0,
        retry_backoff_seconds=(0.2, 0.5),
    )
    summary = Worker(engine, config).run()
    assert flaky.failed
    assert summary.retries >= 1
    assert summary.aborted >= 1

    records = consume(kafka_bootstrap, events, len(expected), isolation_level="read_committed")
    values = [value for _, _, value in records]
    assert len(values) == len(expected)
    # detected_at is the acquisition time in both: the same events, byte for byte, once each.
    assert sorted(values) == sorted(expected)
    got = [ParcelEvent.from_json(v) for v in values if b'"observation"' not in v]
    assert sorted(e.event_id for e in got) == sorted(e.event_id for e in models)
