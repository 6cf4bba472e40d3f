"""The streaming worker against a real Kafka broker and the bundled Mol sample.

End to end (22 acquisitions x 42 parcels), dead letters, a worker killed mid-transaction and
restarted, SIGTERM, plus the pieces that need no broker (settings file, error classes, metrics
endpoint). Each Kafka test uses its own topics and group, so tests do not see each other's data.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from monitor.broker import create_topics
from monitor.errors import (
    AssetError,
    BrokerError,
    ConfigError,
    CrsMismatch,
    InvalidAcquisition,
    ModelError,
    ParcelError,
    StoreError,
)
from monitor.kafka_config import client_settings, describe, read_kafka_config
from monitor.metrics import WorkerMetrics, serve
from monitor.parcels import ParcelSet, load_parcels
from monitor.pipeline import Engine, EngineConfig
from monitor.stac import read_item
from monitor.store import ObservationStore
from monitor.worker import (
    Worker,
    WorkerConfig,
    WorkerSummary,
    dead_letter_reason,
    href_policy,
    is_message_fault,
)
from tests.sample_data import sample_dir, sample_path

PARCELS = sample_path("mol-2023", "segments.gpkg")
ITEMS = sorted(sample_path("mol-2023").glob("s[12]/*/item.json"))
N_PARCELS = 42
CLI = [sys.executable, "-m", "monitor.cli"]
# A dead worker's partitions move on once its session expires: the broker's minimum, for speed.
FAST_SESSION = "session_timeout_ms=6000\nheartbeat_interval_ms=1000\n"


@dataclass(frozen=True)
class Topics:
    source: str
    events: str
    dlq: str


@pytest.fixture
def topics(kafka_bootstrap: str) -> Topics:
    suffix = uuid.uuid4().hex[:8]
    names = Topics(f"acq-{suffix}", f"events-{suffix}", f"dlq-{suffix}")
    create_topics(kafka_bootstrap, {names.source: 3, names.events: 3, names.dlq: 1})
    return names


@pytest.fixture(scope="module")
def parcels() -> ParcelSet:
    return load_parcels(PARCELS, id_column="segment_id")


def _absolute_item(path: Path, **hrefs: str) -> dict[str, Any]:
    """The item at `path` with absolute asset hrefs (a Kafka message has no folder)."""
    item: dict[str, Any] = json.loads(path.read_text())
    for key, asset in item["assets"].items():
        asset["href"] = hrefs.get(key, str((path.parent / asset["href"]).resolve()))
    return item


def _publish(bootstrap: str, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close()


def _item_message(path: Path) -> tuple[bytes, bytes]:
    """Key = MGRS tile, value = the item with absolute hrefs."""
    return read_item(path).tile.encode(), json.dumps(_absolute_item(path)).encode()


def _consumer(bootstrap: str, topic: str, isolation: str) -> tuple[Any, list[TopicPartition]]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level=isolation, enable_auto_commit=False
    )
    partitions = consumer.partitions_for_topic(topic)
    assert partitions, f"topic {topic} has no partitions"
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    return consumer, tps


def _end(bootstrap: str, topic: str, isolation: str) -> int:
    """Sum of the partition ends: the last stable offsets under read_committed."""
    consumer, tps = _consumer(bootstrap, topic, isolation)
    try:
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def _read(bootstrap: str, topic: str, isolation: str = "read_committed") -> list[Any]:
    """Every record of `topic` up to its current end (the last stable offset if committed)."""
    consumer, tps = _consumer(bootstrap, topic, isolation)
    try:
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def _check_events(records: Sequence[Any], products: set[str]) -> None:
    """Exactly one observation event per parcel and product, keyed by parcel id."""
    events = [json.loads(r.value) for r in records]
    assert len(events) == N_PARCELS * len(products)
    assert len({e["event_id"] for e in events}) == len(events)
    assert all(r.key == e["parcel_id"].encode() for r, e in zip(records, events, strict=True))
    assert {e["type"] for e in events} == {"observation"}
    per_product = Counter(e["evidence"]["product_ids"][0] for e in events)
    assert per_product == dict.fromkeys(products, N_PARCELS)
    assert len({e["parcel_id"] for e in events}) == N_PARCELS


def _stored_products(store: Path) -> list[str]:
    return sorted(p.product_id for p in ObservationStore(store).products())


def _worker(
    bootstrap: str, topics: Topics, store: Path, parcels: ParcelSet, **config: Any
) -> Worker:
    engine = Engine(
        EngineConfig(parcels, ObservationStore(store), href_policy=href_policy([sample_dir()]))
    )
    settings = {
        "group_id": f"group-{topics.source}",
        "worker_name": f"w-{topics.source}",
        "source_topic": topics.source,
        "events_topic": topics.events,
        "dlq_topic": topics.dlq,
        "exit_when_idle": 3.0,
        **config,
    }
    return Worker(engine, WorkerConfig(bootstrap, **settings))


# -- pieces that need no broker -----------------------------------------------------------------


def test_kafka_config_file_is_typed_and_split_per_client(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text(
        "# TLS + SASL\n"
        "security.protocol = SASL_SSL\n"
        "sasl_mechanism=PLAIN\n"
        "sasl_plain_username=monitor\n"
        "sasl_plain_password=s3cret=with=equals\n"
        "linger_ms=50\n"
        "session_timeout_ms=6000\n"
        "ssl_check_hostname=false\n"
    )
    settings = read_kafka_config(path)
    assert settings["security_protocol"] == "SASL_SSL"
    assert settings["sasl_plain_password"] == "s3cret=with=equals"
    assert settings["linger_ms"] == 50
    assert settings["ssl_check_hostname"] is False
    consumer, producer = client_settings(settings)
    assert "linger_ms" in producer
    assert "linger_ms" not in consumer
    assert "session_timeout_ms" in consumer
    assert "session_timeout_ms" not in producer
    assert consumer["sasl_plain_username"] == producer["sasl_plain_username"] == "monitor"
    shown = describe(settings)
    assert "s3cret" not in shown
    assert "sasl_plain_password=***" in shown


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("group_id=other", "set by the worker"),
        ("isolation_level=read_uncommitted", "set by the worker"),
        ("no_such_setting=1", "unknown Kafka client setting"),
        ("linger_ms=soon", "must be an integer"),
        ("ssl_check_hostname=maybe", "true or false"),
        ("sasl_plain_password", "expected key=value"),
        ("ssl_context=x", "Python object"),
    ],
)
def test_kafka_config_refusals_are_one_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "client.properties"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError, match=message) as caught:
        read_kafka_config(path)
    assert "\n" not in str(caught.value)


def test_bad_secret_value_is_not_shown(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text("sasl_plain_password\n")  # the '=' forgotten: the whole line is the secret
    with pytest.raises(ConfigError) as caught:
        read_kafka_config(path)
    assert "sasl_plain_password" not in str(caught.value)


def test_message_faults_versus_infrastructure_errors() -> None:
    for fault in (InvalidAcquisition("x"), AssetError("x"), CrsMismatch("x"), ParcelError("x")):
        assert is_message_fault(fault)
    for trouble in (StoreError("disk full"), BrokerError("x"), ModelError("x"), OSError("x")):
        assert not is_message_fault(trouble)
    assert not is_message_fault(KeyError("bug"))


def test_dead_letter_reason_is_one_bounded_line_without_credentials() -> None:
    err = AssetError("asset B04: href 'https://user:pw@host/b.tif'\nnot allowed " + "x" * 900)
    reason = dead_letter_reason(err)
    assert "\n" not in reason
    assert len(reason) <= 500
    assert "pw" not in reason
    assert "https://***@host/b.tif" in reason


def test_worker_config_refuses_bad_names_and_batches() -> None:
    with pytest.raises(ConfigError, match="worker name"):
        WorkerConfig("127.0.0.1:9", worker_name="a b")
    with pytest.raises(ConfigError, match="max_batch"):
        WorkerConfig("127.0.0.1:9", max_batch=0)
    assert WorkerConfig("127.0.0.1:9", worker_name="w1").transactional_id == "parcel-monitor-w1"


def test_relative_hrefs_are_refused_and_roots_enforced(tmp_path: Path) -> None:
    from monitor.stac import parse_item

    item = ITEMS[0].read_bytes()
    with pytest.raises(AssetError, match="relative href"):
        parse_item(item, base=None, policy=href_policy([]))
    absolute = json.dumps(_absolute_item(ITEMS[0])).encode()
    assert parse_item(absolute, base=None, policy=href_policy([])).assets
    with pytest.raises(AssetError, match="escapes the allowed roots"):
        parse_item(absolute, base=None, policy=href_policy([tmp_path]))


def test_metrics_endpoint_serves_on_localhost() -> None:
    metrics = WorkerMetrics()
    metrics.events.labels(type="observation").inc(3)
    server = serve(metrics, 0)
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            body = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'parcel_monitor_events_total{type="observation"} 3.0' in body
    assert "parcel_monitor_stage_seconds" in body


def test_run_refuses_a_bad_kafka_config_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "client.properties"
    config.write_text("transactional_id=mine\n")
    done = subprocess.run(
        [
            *CLI,
            "run",
            "--bootstrap",
            "127.0.0.1:9",
            "--parcels",
            str(PARCELS),
            "--store",
            str(tmp_path / "store"),
            "--kafka-config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"parcel-monitor run: error: {config}: transactional_id is set by the worker "
        "and cannot be overridden"
    )


# -- against the broker ---------------------------------------------------------------------------


@pytest.mark.kafka
def test_end_to_end_every_acquisition_once(
    kafka_bootstrap: str, topics: Topics, parcels: ParcelSet, tmp_path: Path
) -> None:
    _publish(kafka_bootstrap, topics.source, [_item_message(p) for p in ITEMS])
    worker = _worker(kafka_bootstrap, topics, tmp_path / "store", parcels)
    summary = worker.run()

    products = {read_item(p).product_id for p in ITEMS}
    assert len(products) == len(ITEMS) == 22
    _check_events(_read(kafka_bootstrap, topics.events), products)
    assert _stored_products(tmp_path / "store") == sorted(products)
    assert _read(kafka_bootstrap, topics.dlq) == []
    assert (summary.acquisitions, summary.dead_letters) == (22, 0)
    assert summary.parcels == 22 * N_PARCELS
    assert summary.events_by_type == {"observation": 22 * N_PARCELS}
    assert summary.aborted == summary.retries == 0

    registry = worker.metrics.registry
    processed = sum(
        registry.get_sample_value("parcel_monitor_acquisitions_processed_total", {"sensor": s}) or 0
        for s in ("S1", "S2")
    )
    assert processed == 22
    zonal = {"stage": "zonal"}
    assert registry.get_sample_value("parcel_monitor_stage_seconds_count", zonal) == 22
    events = registry.get_sample_value("parcel_monitor_events_total", {"type": "observation"})
    assert events == 22 * N_PARCELS


@pytest.mark.kafka
def test_bad_messages_are_dead_lettered_and_the_rest_processed(
    kafka_bootstrap: str, parcels: ParcelSet, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(f"acq-{suffix}", f"events-{suffix}", f"dlq-{suffix}")
    # One partition: the dead letters keep the order they were published in.
    create_topics(kafka_bootstrap, {topics.source: 1, topics.events: 1, topics.dlq: 1})
    s2, s1 = ITEMS[-1], ITEMS[0]
    missing = _absolute_item(s2, B04=str(sample_dir() / "mol-2023" / "gone" / "B04.tif"))
    outside = _absolute_item(s2, B04="/etc/hostname")
    no_parcels = _absolute_item(s2)
    no_parcels["properties"]["proj:epsg"] = 32633  # the grid lands far east of the parcels
    bad: list[tuple[bytes | None, bytes, type[Exception], str]] = [
        (b"31UFS", b'{"type": "Feature", "id": ', InvalidAcquisition, "malformed JSON"),
        (b"31UFS", b'{"type": "FeatureCollection"}', InvalidAcquisition, "not a STAC Item"),
        (b"31UFS", json.dumps(missing).encode(), AssetError, "file missing"),
        (b"31UFS", s2.read_bytes(), AssetError, "relative href './B01.tif'"),
        (None, json.dumps(outside).encode(), AssetError, "escapes the allowed roots"),
        (b"31UFS", json.dumps(no_parcels).encode(), ParcelError, "no parcel of"),
    ]
    messages = [_item_message(s1), *((k, v) for k, v, _, _ in bad), _item_message(s2)]
    _publish(kafka_bootstrap, topics.source, messages)

    worker = _worker(kafka_bootstrap, topics, tmp_path / "store", parcels)
    summary = worker.run()

    good = {read_item(s1).product_id, read_item(s2).product_id}
    _check_events(_read(kafka_bootstrap, topics.events), good)
    assert _stored_products(tmp_path / "store") == sorted(good)
    letters = _read(kafka_bootstrap, topics.dlq)
    assert len(letters) == len(bad)
    for offset, (letter, (key, value, error, reason)) in enumerate(
        zip(letters, bad, strict=True), start=1
    ):
        headers = {name: raw.decode() for name, raw in letter.headers}
        assert (letter.key, letter.value) == (key, value)
        assert headers["source-topic"] == topics.source
        assert (headers["source-partition"], headers["source-offset"]) == ("0", str(offset))
        assert headers["error"] == error.__name__
        assert reason in headers["reason"]
        assert "\n" not in headers["reason"]
    assert (summary.acquisitions, summary.dead_letters) == (2, len(bad))
    dead = worker.metrics.registry.get_sample_value(
        "parcel_monitor_acquisitions_dead_lettered_total", {"error": "AssetError"}
    )
    assert dead == 3


class _Background:
    """`Worker.run` in a thread, keeping its summary or its exception."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.summary: WorkerSummary | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.summary = self.worker.run()
        except BaseException as exc:
            self.error = exc

    def join(self) -> None:
        self.thread.join(timeout=120)
        assert not self.thread.is_alive(), "the worker did not stop"


@pytest.mark.kafka
def test_store_trouble_is_retried_not_dead_lettered(
    kafka_bootstrap: str, topics: Topics, parcels: ParcelSet, tmp_path: Path
) -> None:
    _publish(kafka_bootstrap, topics.source, [_item_message(p) for p in ITEMS])
    store = tmp_path / "store"
    ObservationStore(store)
    # A file where the tile's folder must go: every store write fails (a StoreError), as on
    # a full or unmounted disk, until it is removed.
    blocker = store / "tile=31UFS"
    blocker.write_text("not a folder")
    worker = _worker(kafka_bootstrap, topics, store, parcels, retry_backoff_seconds=(0.2, 0.5))
    running = _Background(worker)
    _wait_for(lambda: worker.summary.retries >= 2, "two retries")
    blocker.unlink()
    running.join()

    assert running.error is None
    assert running.summary is not None
    assert running.summary.dead_letters == 0
    assert running.summary.aborted >= 1
    assert _read(kafka_bootstrap, topics.dlq) == []
    products = {read_item(p).product_id for p in ITEMS}
    _check_events(_read(kafka_bootstrap, topics.events), products)
    assert _stored_products(store) == sorted(products)


@pytest.mark.kafka
@pytest.mark.slow  # timing-sensitive under heavy CPU load; run with `make test-slow`
def test_a_second_instance_with_the_same_name_fences_the_first(
    kafka_bootstrap: str, topics: Topics, parcels: ParcelSet, tmp_path: Path
) -> None:
    _publish(kafka_bootstrap, topics.source, [_item_message(p) for p in ITEMS] * 4)
    worker = _worker(kafka_bootstrap, topics, tmp_path / "store", parcels, max_batch=1)
    running = _Background(worker)
    _wait_for(lambda: worker.summary.transactions >= 1, "a committed transaction")
    # What a second `parcel-monitor run --worker-name` of the same name does first.
    newer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=worker.config.transactional_id
    )
    try:
        newer.init_transactions()
    finally:
        newer.close()
    running.join()

    assert isinstance(running.error, BrokerError)
    assert "same worker name" in str(running.error)
    # What the fenced worker committed is whole acquisitions, and nothing is left open.
    committed = _read(kafka_bootstrap, topics.events)
    per_product = Counter(json.loads(r.value)["evidence"]["product_ids"][0] for r in committed)
    assert committed
    assert all(n % N_PARCELS == 0 for n in per_product.values())
    assert len(committed) == N_PARCELS * worker.summary.acquisitions


def _start_worker(
    bootstrap: str, topics: Topics, tmp_path: Path, name: str, *extra: str
) -> subprocess.Popen[bytes]:
    config = tmp_path / "client.properties"
    config.write_text(FAST_SESSION)
    log = (tmp_path / f"{name}-{time.monotonic_ns()}.log").open("wb")
    command = [
        *CLI,
        "run",
        "--no-models",  # observation events only: their counts are what these tests check
        "--bootstrap",
        bootstrap,
        "--parcels",
        str(PARCELS),
        "--id-column",
        "segment_id",
        "--store",
        str(tmp_path / "store"),
        "--group",
        f"group-{topics.source}",
        "--worker-name",
        name,
        "--asset-root",
        str(sample_dir()),
        "--topic",
        topics.source,
        "--events-topic",
        topics.events,
        "--dlq-topic",
        topics.dlq,
        "--kafka-config",
        str(config),
        *extra,
    ]
    with log:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes a test started; killed at the end if still running."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def _wait_for(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _finish(proc: subprocess.Popen[bytes], timeout: float = 90.0) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"worker exited with {proc.returncode}"
    return out.decode()


@pytest.mark.kafka
def test_killed_worker_restarts_without_losing_or_duplicating(
    kafka_bootstrap: str,
    topics: Topics,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    _publish(kafka_bootstrap, topics.source, [_item_message(p) for p in ITEMS])
    first = _start_worker(kafka_bootstrap, topics, tmp_path, "crash", "--exit-when-idle", "120")
    processes.append(first)

    # Freeze the worker when the events log holds records of an open transaction (its end is
    # past the last stable offset), then kill it there: a crash in the middle of a transaction.
    def frozen_mid_transaction() -> bool:
        assert first.poll() is None, "the worker exited before it could be killed"
        if _end(kafka_bootstrap, topics.events, "read_uncommitted") == 0:
            return False
        first.send_signal(signal.SIGSTOP)
        written = _end(kafka_bootstrap, topics.events, "read_uncommitted")
        if _end(kafka_bootstrap, topics.events, "read_committed") < written:
            return True
        first.send_signal(signal.SIGCONT)
        return False

    _wait_for(frozen_mid_transaction, "an open transaction with events in the log")
    first.kill()
    first.wait(timeout=30)
    committed_before = len(_read(kafka_bootstrap, topics.events))
    assert committed_before < 22 * N_PARCELS

    second = _start_worker(kafka_bootstrap, topics, tmp_path, "crash", "--exit-when-idle", "3")
    processes.append(second)
    summary = _finish(second)

    products = {read_item(p).product_id for p in ITEMS}
    committed = _read(kafka_bootstrap, topics.events)
    _check_events(committed, products)
    # The killed transaction's events are in the log, aborted: read_committed hides them.
    assert len(_read(kafka_bootstrap, topics.events, "read_uncommitted")) > len(committed)
    assert _stored_products(tmp_path / "store") == sorted(products)
    redone = 22 - committed_before // N_PARCELS
    assert f"acquisitions processed: {redone}\n" in summary


@pytest.mark.kafka
def test_sigterm_commits_whole_acquisitions_and_exits_zero(
    kafka_bootstrap: str,
    topics: Topics,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    _publish(kafka_bootstrap, topics.source, [_item_message(p) for p in ITEMS])
    # One acquisition per transaction: the signal lands between or inside small transactions.
    worker = _start_worker(
        kafka_bootstrap, topics, tmp_path, "term", "--exit-when-idle", "120", "--max-batch", "1"
    )
    processes.append(worker)
    _wait_for(
        lambda: _end(kafka_bootstrap, topics.events, "read_committed") > 0,
        "the first committed events",
    )
    worker.send_signal(signal.SIGTERM)
    summary = _finish(worker, timeout=30)

    # Nothing left open: the log's end is stable, and what is committed is whole acquisitions.
    assert _end(kafka_bootstrap, topics.events, "read_committed") == _end(
        kafka_bootstrap, topics.events, "read_uncommitted"
    )
    committed = _read(kafka_bootstrap, topics.events)
    done = {json.loads(r.value)["evidence"]["product_ids"][0] for r in committed}
    _check_events(committed, done)
    assert done <= set(_stored_products(tmp_path / "store"))
    assert f"acquisitions processed: {len(done)}\n" in summary

    # A restart picks up after the committed offsets: every acquisition once in all.
    rest = _start_worker(kafka_bootstrap, topics, tmp_path, "term", "--exit-when-idle", "3")
    processes.append(rest)
    assert f"acquisitions processed: {22 - len(done)}\n" in _finish(rest)
    products = {read_item(p).product_id for p in ITEMS}
    _check_events(_read(kafka_bootstrap, topics.events), products)
    assert _stored_products(tmp_path / "store") == sorted(products)


@pytest.mark.kafka
@pytest.mark.slow
def test_a_second_worker_joining_mid_stream_changes_nothing(
    kafka_bootstrap: str, topics: Topics, parcels: ParcelSet, tmp_path: Path
) -> None:
    # Each item four times, for a stream long enough that the group rebalances inside it.
    copies = 4
    _publish(kafka_bootstrap, topics.source, [_item_message(p) for p in ITEMS] * copies)
    workers = [
        _worker(
            kafka_bootstrap, topics, tmp_path / "store", parcels, worker_name=f"w{i}", max_batch=1
        )
        for i in range(2)
    ]
    summaries: dict[str, WorkerSummary] = {}

    def run(worker: Worker) -> None:
        summaries[worker.config.worker_name] = worker.run()

    threads = [threading.Thread(target=run, args=(w,), daemon=True) for w in workers]
    threads[0].start()
    # One acquisition per transaction; the second member joins once two are committed, so
    # the group rebalances while the first worker is in the middle of the stream.
    _wait_for(lambda: workers[0].summary.transactions >= 2, "two committed transactions")
    threads[1].start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(summaries) == ["w0", "w1"]
    products = {read_item(p).product_id for p in ITEMS}
    events = [json.loads(r.value) for r in _read(kafka_bootstrap, topics.events)]
    # Every message's events once: each event id as many times as its item was published.
    assert len(events) == copies * len(ITEMS) * N_PARCELS
    assert set(Counter(e["event_id"] for e in events).values()) == {copies}
    assert {e["evidence"]["product_ids"][0] for e in events} == products
    assert _stored_products(tmp_path / "store") == sorted(products)
    assert sum(s.acquisitions for s in summaries.values()) == copies * len(ITEMS)
