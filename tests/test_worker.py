"""The streaming worker against a real Kafka broker and the bundled Mol sample.

End to end (22 acquisitions x 42 parcels), dead letters, fencing, SIGTERM, plus the pieces that
need no broker (settings file, error classes, metrics endpoint, secrets kept out of logs). The
fault tests (crashes, rebalances, a broker down, duplicates, backlog) are in `test_faults.py`.
Each Kafka test uses its own topics and group, so tests do not see each other's data.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from kafka import KafkaProducer

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
from tests.kafka_workers import (
    CLI,
    ITEMS,
    N_PARCELS,
    PARCELS,
    Topics,
    absolute_item,
    check_events,
    end,
    finish,
    item_message,
    new_topics,
    observation_products,
    product_ids,
    publish,
    read,
    season_messages,
    start_worker,
    stored_products,
    wait_for,
)
from tests.sample_data import sample_dir


@pytest.fixture(scope="module")
def parcels() -> ParcelSet:
    return load_parcels(PARCELS, id_column="segment_id")


def _worker(
    bootstrap: str,
    topics: Topics,
    store: Path,
    parcels: ParcelSet,
    roots: list[Path] | None = None,
    **config: Any,
) -> Worker:
    policy = href_policy(roots or [sample_dir()])
    engine = Engine(EngineConfig(parcels, ObservationStore(store), href_policy=policy))
    settings = {
        "group_id": f"group-{topics.source}",
        "worker_name": f"w-{topics.source}",
        "source_topic": topics.source,
        "events_topic": topics.events,
        "dlq_topic": topics.dlq,
        "ledger_topic": topics.ledger,
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
    with pytest.raises(ConfigError, match="kafka_call_seconds"):
        WorkerConfig("127.0.0.1:9", kafka_call_seconds=0)
    assert WorkerConfig("127.0.0.1:9", worker_name="w1").transactional_id == "parcel-monitor-w1"


def test_relative_hrefs_are_refused_and_roots_enforced(tmp_path: Path) -> None:
    from monitor.stac import parse_item

    item = ITEMS[0].read_bytes()
    with pytest.raises(AssetError, match="relative href"):
        parse_item(item, base=None, policy=href_policy([]))
    absolute = json.dumps(absolute_item(ITEMS[0])).encode()
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


def test_run_refuses_unusable_parcels_in_one_line(tmp_path: Path) -> None:
    parcels = tmp_path / "parcels.gpkg"
    parcels.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)  # a broken GeoPackage
    done = subprocess.run(
        [
            *CLI,
            "run",
            "--bootstrap",
            "127.0.0.1:9",
            "--parcels",
            str(parcels),
            "--store",
            str(tmp_path / "store"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("parcel-monitor run: error: ")
    assert str(parcels) in last


@pytest.mark.kafka
def test_secrets_stay_out_of_the_log_and_metrics_bind_to_localhost(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    secret = "Pa55-" + uuid.uuid4().hex
    config = tmp_path / "sasl.properties"
    # SASL settings go to the clients; this broker speaks plaintext, so the worker keeps
    # retrying its connection: the log then holds the settings and the connection errors.
    config.write_text(
        "security_protocol=SASL_PLAINTEXT\nsasl_mechanism=PLAIN\n"
        f"sasl_plain_username=monitor\nsasl_plain_password={secret}\n"
    )
    log = tmp_path / "worker.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                *CLI,
                "run",
                "--bootstrap",
                kafka_bootstrap,
                "--parcels",
                str(PARCELS),
                "--id-column",
                "segment_id",
                "--store",
                str(tmp_path / "store"),
                "--topic",
                topics.source,
                "--kafka-config",
                str(config),
                "--metrics-port",
                "0",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    processes.append(proc)
    wait_for(lambda: "Kafka settings" in log.read_text() or proc.poll() is not None, "start")
    time.sleep(5)  # let the clients try (and fail) to authenticate
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
    text = log.read_text()
    assert "sasl_plain_password=***" in text
    assert "sasl_plain_username=monitor" in text
    assert secret not in text
    assert "metrics on http://127.0.0.1:" in text


# -- against the broker ---------------------------------------------------------------------------


@pytest.mark.kafka
def test_end_to_end_every_acquisition_once(
    kafka_bootstrap: str, topics: Topics, parcels: ParcelSet, tmp_path: Path
) -> None:
    publish(kafka_bootstrap, topics.source, [item_message(p) for p in ITEMS])
    worker = _worker(kafka_bootstrap, topics, tmp_path / "store", parcels)
    summary = worker.run()

    products = {read_item(p).product_id for p in ITEMS}
    assert len(products) == len(ITEMS) == 22
    check_events(read(kafka_bootstrap, topics.events), products)
    assert stored_products(tmp_path / "store") == sorted(products)
    assert read(kafka_bootstrap, topics.dlq) == []
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


def _bad_rasters(folder: Path, s2: Path, s1: Path) -> dict[str, dict[str, Any]]:
    """Items whose rasters are bad, written under `folder` (an allowed asset root)."""
    folder.mkdir()
    truncated, corrupt = folder / "truncated-B04.tif", folder / "corrupt-B04.tif"
    data = (s2.parent / "B04.tif").read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    corrupt.write_bytes(b"II*\x00" + b"\x5a" * 4000)  # a TIFF signature, then garbage
    empty: dict[str, str] = {}
    for band in ("VV", "VH"):
        with rasterio.open(s1.parent / f"{band}.tif") as src:
            profile = src.profile
        path = folder / f"nodata-{band}.tif"
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.full((profile["height"], profile["width"]), np.nan, np.float32), 1)
        empty[band] = str(path)
    return {
        "truncated": absolute_item(s2, B04=str(truncated)),
        "corrupt": absolute_item(s2, B04=str(corrupt)),
        # Its own product id: the sample's S1 product is processed (and so skipped) before.
        "all nodata": {**absolute_item(s1, **empty), "id": "S1_IW_GRD_31UFS_NODATA"},
    }


def _edited(path: Path, edit: Any) -> dict[str, Any]:
    item = absolute_item(path)
    edit(item["properties"])
    return item


@pytest.mark.kafka
def test_bad_messages_are_dead_lettered_and_the_rest_processed(
    kafka_bootstrap: str, parcels: ParcelSet, tmp_path: Path
) -> None:
    # One partition: the dead letters keep the order they were published in.
    topics = new_topics(kafka_bootstrap, partitions=1)
    s2, s1 = ITEMS[-1], ITEMS[0]
    rasters = _bad_rasters(tmp_path / "assets", s2, s1)
    escaping = str(sample_dir() / "mol-2023" / ".." / ".." / ".." / ".." / "etc" / "passwd")
    x0 = absolute_item(s2)["properties"]["proj:transform"][2]

    def item(value: dict[str, Any]) -> bytes:
        return json.dumps(value).encode()

    # (key, value, error class, what the reason says): the bad-input catalogue.
    bad: list[tuple[bytes | None, bytes, type[Exception], str]] = [
        (b"31UFS", b'{"type": "Feature", "id": ', InvalidAcquisition, "malformed JSON"),
        (b"31UFS", b'{"type": "FeatureCollection"}', InvalidAcquisition, "not a STAC Item"),
        (b"31UFS", b"\xff\xfe not text", InvalidAcquisition, "not UTF-8"),
        (
            b"31UFS",
            item(absolute_item(s2, B04=str(sample_dir() / "mol-2023" / "gone" / "B04.tif"))),
            AssetError,
            "file missing",
        ),
        (b"31UFS", item(rasters["truncated"]), AssetError, "B04"),
        (b"31UFS", item(rasters["corrupt"]), AssetError, "unreadable"),
        (b"31UFS", s2.read_bytes(), AssetError, "relative href './B01.tif'"),
        (None, item(absolute_item(s2, B04="/etc/hostname")), AssetError, "escapes the allowed"),
        (b"31UFS", item(absolute_item(s2, B04=escaping)), AssetError, "escapes the allowed"),
        (
            b"31UFS",
            item(absolute_item(s2, B04="http://169.254.169.254/latest/meta-data")),
            AssetError,
            "href scheme 'http' not allowed",
        ),
        (
            b"31UFS",
            item(absolute_item(s2, B04="ftp://example.com/B04.tif")),
            AssetError,
            "href scheme 'ftp' not allowed",
        ),
        (
            b"31UFS",
            item(_edited(s2, lambda p: p.update({"proj:epsg": 32633}))),
            ParcelError,
            "no parcel of",
        ),
        # ETRS89 / UTM 31N: the parcels still overlap, the rasters' CRS is not the declared one.
        (
            b"31UFS",
            item(_edited(s2, lambda p: p.update({"proj:epsg": 25831}))),
            CrsMismatch,
            "is not EPSG:25831",
        ),
        (
            b"31UFS",
            item(_edited(s2, lambda p: p["proj:transform"].__setitem__(2, x0 + 200.0))),
            AssetError,
            "does not match the item grid",
        ),
        # The files are four times the declared grid: refused before any pixel is read.
        (
            b"31UFS",
            item(_edited(s2, lambda p: p.update({"proj:shape": [33, 32]}))),
            AssetError,
            "does not match the item grid",
        ),
        (b"31UFS", item(rasters["all nodata"]), AssetError, "no valid pixel in any band"),
        (
            b"31UFS",
            item(_edited(s2, lambda p: p.update({"datetime": "2999-01-01T00:00:00Z"}))),
            InvalidAcquisition,
            "is in the future",
        ),
        (
            b"31UFS",
            item(_edited(s2, lambda p: p.update({"datetime": "last tuesday"}))),
            InvalidAcquisition,
            "unparsable date",
        ),
        (
            b"31UFS",
            item(_edited(s2, lambda p: p.update({"constellation": "landsat-9"}))),
            InvalidAcquisition,
            "unknown sensor",
        ),
    ]
    messages = [item_message(s1), *((k, v) for k, v, _, _ in bad), item_message(s2)]
    publish(kafka_bootstrap, topics.source, messages)

    worker = _worker(
        kafka_bootstrap, topics, tmp_path / "store", parcels, roots=[sample_dir(), tmp_path]
    )
    summary = worker.run()

    good = {read_item(s1).product_id, read_item(s2).product_id}
    check_events(read(kafka_bootstrap, topics.events), good)
    assert stored_products(tmp_path / "store") == sorted(good)
    letters = read(kafka_bootstrap, topics.dlq)
    assert len(letters) == len(bad)
    for offset, (letter, (key, value, error, reason)) in enumerate(
        zip(letters, bad, strict=True), start=1
    ):
        headers = {name: raw.decode() for name, raw in letter.headers}
        assert (letter.key, letter.value) == (key, value)
        assert headers["source-topic"] == topics.source
        assert (headers["source-partition"], headers["source-offset"]) == ("0", str(offset))
        assert (headers["error"], reason) == (error.__name__, reason)
        assert reason in headers["reason"], headers["reason"]
        assert "\n" not in headers["reason"]
    assert (summary.acquisitions, summary.dead_letters) == (2, len(bad))
    dead = worker.metrics.registry.get_sample_value(
        "parcel_monitor_acquisitions_dead_lettered_total", {"error": "AssetError"}
    )
    assert dead == sum(error is AssetError for _, _, error, _ in bad)


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
    publish(kafka_bootstrap, topics.source, [item_message(p) for p in ITEMS])
    store = tmp_path / "store"
    ObservationStore(store)
    # A file where the tile's folder must go: every store write fails (a StoreError), as on
    # a full or unmounted disk, until it is removed.
    blocker = store / "tile=31UFS"
    blocker.write_text("not a folder")
    worker = _worker(kafka_bootstrap, topics, store, parcels, retry_backoff_seconds=(0.2, 0.5))
    running = _Background(worker)
    wait_for(lambda: worker.summary.retries >= 2, "two retries")
    blocker.unlink()
    running.join()

    assert running.error is None
    assert running.summary is not None
    assert running.summary.dead_letters == 0
    assert running.summary.aborted >= 1
    assert read(kafka_bootstrap, topics.dlq) == []
    products = {read_item(p).product_id for p in ITEMS}
    check_events(read(kafka_bootstrap, topics.events), products)
    assert stored_products(store) == sorted(products)


def _fence(bootstrap: str, worker: Worker) -> None:
    """What a second `parcel-monitor run` with the same worker name does first."""
    newer = KafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=worker.config.transactional_id
    )
    try:
        newer.init_transactions()
    finally:
        newer.close()


@pytest.mark.kafka
def test_a_fence_between_transactions_stops_the_worker(
    kafka_bootstrap: str, topics: Topics, parcels: ParcelSet, tmp_path: Path
) -> None:
    # The fence lands while the worker waits for messages. Its next transaction starts (a
    # client-side step), the first send finds the fence, and every later call fails with a
    # plain KafkaError ("in an error state"): the worker must still see a fence there, not
    # retry with a new producer, which would fence the newer instance in turn.
    worker = _worker(kafka_bootstrap, topics, tmp_path / "store", parcels, exit_when_idle=60.0)
    running = _Background(worker)
    wait_for(lambda: worker._assigned_at is not None, "the partition assignment")
    _fence(kafka_bootstrap, worker)
    publish(kafka_bootstrap, topics.source, [item_message(p) for p in ITEMS[:3]])
    running.join()

    assert isinstance(running.error, BrokerError)
    assert "same worker name" in str(running.error)
    assert "ProducerFenced" in str(running.error)
    assert worker.summary.retries == 0
    assert read(kafka_bootstrap, topics.events) == []


@pytest.mark.kafka
@pytest.mark.slow
def test_a_fence_mid_stream_stops_the_worker_with_whole_acquisitions(
    kafka_bootstrap: str, topics: Topics, parcels: ParcelSet, tmp_path: Path
) -> None:
    publish(kafka_bootstrap, topics.source, season_messages(4))
    worker = _worker(kafka_bootstrap, topics, tmp_path / "store", parcels, max_batch=1)
    running = _Background(worker)
    wait_for(lambda: worker.summary.transactions >= 1, "a committed transaction")
    _fence(kafka_bootstrap, worker)
    running.join()

    assert isinstance(running.error, BrokerError)
    assert "same worker name" in str(running.error)
    # What the fenced worker committed is whole acquisitions, and nothing is left open.
    committed = read(kafka_bootstrap, topics.events)
    assert committed
    check_events(committed, observation_products(committed))
    assert len(committed) == N_PARCELS * worker.summary.acquisitions


@pytest.mark.kafka
def test_sigterm_commits_whole_acquisitions_and_exits_zero(
    kafka_bootstrap: str,
    topics: Topics,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    publish(kafka_bootstrap, topics.source, [item_message(p) for p in ITEMS])
    # One acquisition per transaction: the signal lands between or inside small transactions.
    worker = start_worker(
        kafka_bootstrap, topics, tmp_path, "term", "--exit-when-idle", "120", "--max-batch", "1"
    )
    processes.append(worker)
    wait_for(
        lambda: end(kafka_bootstrap, topics.events, "read_committed") > 0,
        "the first committed events",
    )
    worker.send_signal(signal.SIGTERM)
    summary = finish(worker, timeout=30)

    # Nothing left open: the log's end is stable, and what is committed is whole acquisitions.
    assert end(kafka_bootstrap, topics.events, "read_committed") == end(
        kafka_bootstrap, topics.events, "read_uncommitted"
    )
    committed = read(kafka_bootstrap, topics.events)
    done = observation_products(committed)
    check_events(committed, done)
    assert done <= set(stored_products(tmp_path / "store"))
    assert f"acquisitions processed: {len(done)}\n" in summary

    # A restart picks up after the committed offsets: every acquisition once in all.
    rest = start_worker(kafka_bootstrap, topics, tmp_path, "term", "--exit-when-idle", "3")
    processes.append(rest)
    assert f"acquisitions processed: {22 - len(done)}\n" in finish(rest)
    products = {read_item(p).product_id for p in ITEMS}
    check_events(read(kafka_bootstrap, topics.events), products)
    assert stored_products(tmp_path / "store") == sorted(products)


@pytest.mark.kafka
@pytest.mark.slow
def test_a_second_worker_joining_mid_stream_changes_nothing(
    kafka_bootstrap: str, topics: Topics, parcels: ParcelSet, tmp_path: Path
) -> None:
    # Four tile streams of the season, long enough that the group rebalances inside it.
    messages = season_messages(4)
    publish(kafka_bootstrap, topics.source, messages)
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
    wait_for(lambda: workers[0].summary.transactions >= 2, "two committed transactions")
    threads[1].start()
    for thread in threads:
        thread.join(timeout=180)
    assert sorted(summaries) == ["w0", "w1"]
    products = product_ids(messages)
    check_events(read(kafka_bootstrap, topics.events), products)
    assert stored_products(tmp_path / "store") == sorted(products)
    assert sum(s.acquisitions for s in summaries.values()) == len(messages)
