"""Fixtures shared by the test suite.

The Kafka fixtures run a real broker (see `monitor.broker`); tests using them are marked
`@pytest.mark.kafka`. The first run resolves the broker's jars with Maven (a minute or two).
"""

from __future__ import annotations

import subprocess
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.kafka_workers import Topics

from monitor.broker import BrokerHandle, ClusterHandle, start_broker, start_cluster, stop_broker

# Two faults of kafka-python 3.0.12 (the latest) that the suite, which turns warnings into
# errors, lets by: it loads its protocol schemas with importlib.resources.read_text, deprecated
# since Python 3.11, and it drops without closing the socket of a connection the peer refused
# (a broker that is down), which never got connected, hence the `0.0.0.0` laddr.
KAFKA_PYTHON_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    (r"(read|open)_text is deprecated", DeprecationWarning, "DeprecationWarning"),
    (
        r"Exception ignored in. <socket.socket fd=\d+, [^>]*laddr=\('0\.0\.0\.0', \d+\)>",
        pytest.PytestUnraisableExceptionWarning,
        "pytest.PytestUnraisableExceptionWarning",
    ),
)


def pytest_configure(config: pytest.Config) -> None:
    for message, category, category_name in KAFKA_PYTHON_WARNINGS:
        # For each test's warning filters, and, as pytest's final garbage collection (which
        # finds those sockets, kept alive by captured log records) runs outside them, for the
        # session's too.
        config.addinivalue_line("filterwarnings", f"ignore:{message}:{category_name}")
        warnings.filterwarnings("ignore", message, category)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerHandle]:
    """One single-node broker for the whole session, with the default topics (6 partitions)."""
    data_dir = tmp_path_factory.mktemp("kafka")
    broker = start_broker(data_dir, 0)
    try:
        yield broker
    finally:
        stop_broker(data_dir)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: BrokerHandle) -> str:
    """`127.0.0.1:PORT` of the session broker, for `bootstrap_servers`."""
    return kafka_broker.bootstrap


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    """A three-node cluster (replication factor 3, min.insync.replicas 2) for fault tests."""
    data_dir = tmp_path_factory.mktemp("kafka-cluster")
    cluster = start_cluster(data_dir, 3)
    try:
        yield cluster
    finally:
        stop_broker(data_dir)


@pytest.fixture
def topics(kafka_bootstrap: str) -> Topics:
    """A test's own source, events, dead-letter and ledger topics on the session broker."""
    # Imported here: kafka-python must load after pytest_configure has set the warning filters.
    from tests.kafka_workers import new_topics

    return new_topics(kafka_bootstrap)


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
