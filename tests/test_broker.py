"""The local Kafka broker: a real Apache Kafka 4.x (KRaft) started from Maven Central jars.

Checks what the engine relies on: topics with the right partition counts, a round trip,
transactions (committed data and consumer offsets visible together, aborted data hidden),
storage that survives a restart, a three-node cluster that survives losing a node, and the
command line's contract.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata
from kafka_records import consume

from monitor.broker import (
    DEFAULT_TOPICS,
    BrokerHandle,
    ClusterHandle,
    broker_status,
    create_topics,
    ensure_jars,
    start_broker,
    stop_broker,
    topic_partitions,
)
from monitor.broker.node import NodeConfig, find_java, free_ports, new_cluster_id
from monitor.errors import BrokerError, ConfigError

CLI = [sys.executable, "-m", "monitor.cli"]


def _topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=300, check=False, env=env
    )


# --- without a broker -------------------------------------------------------------------------


def test_node_config_sets_single_node_transaction_settings(tmp_path: Path) -> None:
    config = NodeConfig(
        node_id=1,
        port=9092,
        controller_port=9093,
        voters=((1, 9093),),
        cluster_id=new_cluster_id(),
        partitions=6,
        replication=1,
        min_insync=1,
        heap="512m",
    )
    lines = set(config.server_properties(tmp_path).splitlines())
    for expected in (
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "offsets.topic.replication.factor=1",
        "group.initial.rebalance.delay.ms=0",
        "controller.quorum.voters=1@127.0.0.1:9093",
        "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
        "num.partitions=6",
    ):
        assert expected in lines
    assert NodeConfig.from_json(config.to_json()) == config


def test_cluster_ids_look_like_kafka_uuids() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")


def test_stop_and_status_of_an_unused_folder(tmp_path: Path) -> None:
    assert stop_broker(tmp_path) is False
    assert broker_status(tmp_path) == []
    done = _run_cli("broker", "status", "--data", str(tmp_path))
    assert done.returncode == 1
    assert "no Kafka broker was ever started" in done.stdout


def test_missing_maven_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no mvn on PATH
    with pytest.raises(BrokerError, match=r"Maven \('mvn'\) is not on PATH"):
        ensure_jars(tmp_path / "home")


def test_missing_java_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))  # no bin/java in it
    find_java.cache_clear()
    try:
        with pytest.raises(BrokerError, match=f"JAVA_HOME={tmp_path} has no bin/java"):
            find_java()
    finally:
        find_java.cache_clear()


def test_create_topics_checks_its_input_and_the_broker(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'empty' needs a name and at least 1 partition"):
        create_topics("127.0.0.1:9", {"empty": 0})
    (nobody,) = free_ports(1)
    with pytest.raises(BrokerError, match=f"no Kafka broker answers at 127.0.0.1:{nobody}"):
        create_topics(f"127.0.0.1:{nobody}", {"fine": 1}, timeout_s=1.0)


def test_cli_rejects_a_port_out_of_range(tmp_path: Path) -> None:
    done = _run_cli("broker", "start", "--port", "70000", "--data", str(tmp_path))
    assert done.returncode == 2
    assert "port 70000 is outside 1-65535" in done.stderr
    assert not (tmp_path / "broker.pid").exists()


# --- on the session broker --------------------------------------------------------------------


@pytest.mark.kafka
def test_default_topics_have_the_requested_partitions(kafka_bootstrap: str) -> None:
    assert topic_partitions(kafka_bootstrap, list(DEFAULT_TOPICS)) == dict.fromkeys(
        DEFAULT_TOPICS, 6
    )


@pytest.mark.kafka
def test_create_topics_is_idempotent(kafka_bootstrap: str) -> None:
    name = _topic("idempotent")
    assert create_topics(kafka_bootstrap, {name: 3}) == [name]
    assert create_topics(kafka_bootstrap, {name: 5}) == []
    assert topic_partitions(kafka_bootstrap, [name]) == {name: 3}


@pytest.mark.kafka
def test_produce_consume_round_trip(kafka_bootstrap: str) -> None:
    topic = _topic("round-trip")
    create_topics(kafka_bootstrap, {topic: 4})
    sent = {(f"tile-{i % 7}".encode(), f"item-{i}".encode()) for i in range(50)}
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        for key, value in sorted(sent):
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close()
    records = consume(kafka_bootstrap, topic, len(sent))
    assert {(key, value) for _, key, value in records} == sent
    assert len(records) == len(sent)
    # Keys keep their partition: the engine's per-tile ordering rests on this.
    partitions_of_key: dict[bytes, set[int]] = {}
    for partition, key, _ in records:
        partitions_of_key.setdefault(key, set()).add(partition)
    assert all(len(partitions) == 1 for partitions in partitions_of_key.values())
    assert len({partition for partition, _, _ in records}) > 1


@pytest.mark.kafka
def test_transactions_commit_with_offsets_and_hide_aborts(kafka_bootstrap: str) -> None:
    source, sink, group = _topic("tx-in"), _topic("tx-out"), _topic("tx-group")
    create_topics(kafka_bootstrap, {source: 2, sink: 2})
    plain = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for i in range(10):
        plain.send(source, key=f"k{i}".encode(), value=f"in-{i}".encode())
    plain.flush(timeout=30)
    plain.close()

    consumer = KafkaConsumer(
        source,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=_topic("tx-producer")
    )
    try:
        consumed: list[Any] = []
        deadline = time.monotonic() + 30
        while len(consumed) < 10 and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                consumed.extend(batch)
        assert len(consumed) == 10
        offsets = {}
        for message in consumed:
            partition = TopicPartition(message.topic, message.partition)
            offsets[partition] = OffsetAndMetadata(message.offset + 1, "", -1)

        producer.init_transactions()
        producer.begin_transaction()
        for message in consumed:
            producer.send(sink, key=message.key, value=b"out-" + message.value)
        producer.send_offsets_to_transaction(offsets, consumer.group_metadata())
        producer.commit_transaction()

        producer.begin_transaction()
        producer.send(sink, key=b"k0", value=b"aborted")
        producer.flush(timeout=30)  # the record reaches the log before the abort
        producer.abort_transaction()
    finally:
        producer.close()
        consumer.close()

    committed = consume(kafka_bootstrap, sink, 10, isolation_level="read_committed")
    assert sorted(value for _, _, value in committed) == sorted(
        f"out-in-{i}".encode() for i in range(10)
    )
    uncommitted = consume(kafka_bootstrap, sink, 11, isolation_level="read_uncommitted")
    assert b"aborted" in {value for _, _, value in uncommitted}

    # The consumed offsets were committed for the group together with the output.
    checker = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group)
    try:
        for partition, offset in offsets.items():
            assert checker.committed(partition) == offset.offset
    finally:
        checker.close()


@pytest.mark.kafka
def test_port_in_use_is_a_one_line_error(kafka_broker: BrokerHandle, tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match=f"port {kafka_broker.port} .* already in use"):
        start_broker(tmp_path / "api", kafka_broker.port)
    done = _run_cli(
        "broker", "start", "--port", str(kafka_broker.port), "--data", str(tmp_path / "cli")
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert f"port {kafka_broker.port} on 127.0.0.1 is already in use" in done.stderr


# --- brokers of their own ---------------------------------------------------------------------


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Path]:
    """A folder for a broker the test starts itself; whatever runs there is stopped after."""
    data_dir = tmp_path / "kafka"
    try:
        yield data_dir
    finally:
        stop_broker(data_dir, kill=True)


@pytest.mark.kafka
def test_restart_reuses_storage_and_keeps_data(own_broker: Path) -> None:
    broker = start_broker(own_broker, 0, partitions=2, topics=["kept"])
    meta = own_broker / "kafka-logs" / "meta.properties"
    formatted = meta.read_text()
    with pytest.raises(BrokerError, match="already runs"):
        start_broker(own_broker, 0)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    producer.send("kept", key=b"tile", value=b"before restart")
    producer.flush(timeout=30)
    producer.close()

    assert stop_broker(own_broker) is True
    assert not broker.is_running()
    assert not (own_broker / "broker.pid").exists()
    assert stop_broker(own_broker) is False

    again = start_broker(own_broker, broker.port, partitions=2, topics=["kept"])
    assert meta.read_text() == formatted  # not formatted a second time
    assert again.pid != broker.pid
    records = consume(again.bootstrap, "kept", 1)
    assert [(key, value) for _, key, value in records] == [(b"tile", b"before restart")]


@pytest.mark.kafka
def test_cli_start_status_stop(own_broker: Path) -> None:
    port = str(free_ports(1)[0])
    started = _run_cli("broker", "start", "--port", port, "--data", str(own_broker))
    assert started.returncode == 0, started.stderr
    assert f"running on 127.0.0.1:{port}" in started.stdout

    status = _run_cli("broker", "status", "--data", str(own_broker))
    assert status.returncode == 0
    assert f"node 1 on 127.0.0.1:{port}: running" in status.stdout
    # The broker outlived the command that started it and serves clients.
    assert topic_partitions(f"127.0.0.1:{port}", ["parcel-events"]) == {"parcel-events": 6}

    stopped = _run_cli("broker", "stop", "--data", str(own_broker))
    assert stopped.returncode == 0
    assert "Kafka stopped" in stopped.stdout
    status = _run_cli("broker", "status", "--data", str(own_broker))
    assert status.returncode == 1
    assert "stopped" in status.stdout


@pytest.mark.kafka
def test_concurrent_fetches_resolve_the_jars_once(tmp_path: Path) -> None:
    env = {**os.environ, "PARCEL_MONITOR_KAFKA_HOME": str(tmp_path)}
    fetches = [
        subprocess.Popen([*CLI, "broker", "fetch"], stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    outputs = [fetch.communicate(timeout=600)[0] for fetch in fetches]
    assert [fetch.returncode for fetch in fetches] == [0, 0]
    assert outputs[0] == outputs[1]
    (jars,) = [path for path in (tmp_path / "jars").iterdir() if path.is_dir()]
    assert (jars / ".complete").is_file()
    assert any(jars.glob("kafka_2.13-4.*.jar"))


# --- three nodes ------------------------------------------------------------------------------


def _wait_for_in_sync_replicas(bootstrap: str, topic: str, expected: list[int]) -> None:
    """Wait until each partition of `topic` has the expected number of in-sync replicas."""
    deadline = time.monotonic() + 60
    while True:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            (described,) = admin.describe_topics([topic])
        finally:
            admin.close()
        counts = [len(partition["isr_nodes"]) for partition in described["partitions"]]
        if counts == expected:
            return
        assert time.monotonic() < deadline, f"in-sync replicas of {topic}: {counts}"
        time.sleep(1)


@pytest.mark.kafka
@pytest.mark.slow
def test_cluster_survives_losing_a_node(kafka_cluster: ClusterHandle) -> None:
    topic = _topic("replicated")
    create_topics(kafka_cluster.bootstrap, {topic: 3}, replication=3)
    _wait_for_in_sync_replicas(kafka_cluster.bootstrap, topic, [3, 3, 3])

    kafka_cluster.stop_node(2, kill=True)  # a crash, not a clean shutdown
    assert not kafka_cluster.nodes[2].is_running()
    producer = KafkaProducer(
        bootstrap_servers=kafka_cluster.bootstrap, acks="all", request_timeout_ms=20000
    )
    try:
        futures = [
            producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode()) for i in range(30)
        ]
        producer.flush(timeout=60)
        assert all(future.get(timeout=30).offset >= 0 for future in futures)
    finally:
        producer.close()
    records = consume(kafka_cluster.bootstrap, topic, 30)
    assert len(records) == 30

    restarted = kafka_cluster.start_node(2)
    assert restarted.is_running()
    _wait_for_in_sync_replicas(kafka_cluster.bootstrap, topic, [3, 3, 3])
