"""The streaming worker: acquisitions from Kafka in, parcel events out, exactly once.

One worker is one member of a Kafka consumer group reading the `acquisitions` topic (key = MGRS
tile, so a tile's acquisitions come in order from one partition). For each poll it opens a
Kafka transaction, runs every message through the `Engine`, sends the parcel events (key =
parcel id, in whole record batches: `monitor.event_sender`) and, for messages that are at
fault, a dead letter; then it adds the consumed offsets to the transaction and commits. Events,
dead letters and offsets become visible together to `read_committed` consumers, or not at all.

What is the message's fault (dead-lettered, the worker goes on): any `MonitorError` except the
infrastructure ones, i.e. a malformed or non-STAC item, a missing or unreadable asset, an href
outside the allowed roots or relative (a Kafka message has no folder to resolve it against),
a CRS or grid without parcels, statistics that break the table or event contract. What is not
(`StoreError`, `BrokerError`, `ModelError`, Kafka errors, any other exception, i.e. a bug): the
transaction is aborted, the consumer goes back to the committed offsets and the batch is retried
with exponential backoff, forever; the partition waits rather than losing an acquisition.

Every wait on a broker is bounded (`kafka_call_seconds`): kafka-python's own transactional
calls wait for the coordinator without a limit, and hang for good when it crashed, so the worker
makes the same calls with a bounded wait. A call without a reply fails the batch as above, and
the producer is replaced by a new one with the same transactional id, which fences the old one
and ends its transaction on the broker before the consumer goes back to the committed offsets.

Each acquisition once: the worker keeps a ledger of the products whose events are committed,
a topic (`acquisitions.done`, key `TILE/PRODUCT_ID`, value a digest of the item) written in the
same transaction as the events and offsets, and read back (read_committed) whenever partitions
are assigned, so it also knows what other members committed. A message whose product is in the
ledger is skipped and its offset committed: the same item published twice, or a newer
reprocessing of a product id already processed, emits nothing more and leaves the store as it
is. The first committed version of a product is the one kept (store rows and events); a new
ESA processing baseline has a new product id and is a new product.

Zombie fencing: the producer's `transactional_id` is `parcel-monitor-{worker_name}`, stable
across restarts of one instance. A restarted instance aborts what its killed predecessor left
open at once, and an old instance still running with that name is fenced (its next
transactional call fails and it exits with an error). Two live instances must therefore never
share a `worker_name`. Offsets are committed with the consumer's group metadata (KIP-447), so a
worker that lost its partitions in a rebalance cannot commit them either. A fenced producer
may report the fence through a generic `KafkaError` ("...in an error state: ProducerFencedError")
from whatever transactional call comes next: the worker asks the producer's transaction state,
never builds a new producer over a fence, and stops.

Fault injection for the fault tests: with `PARCEL_MONITOR_EXIT_AFTER_STORE=N` in its
environment, the worker process exits at once (`os._exit(86)`) right after the store write of
its N-th acquisition, before the events are sent and the transaction commits: the crash between
store write and commit, as a real process exit.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import (
    AuthorizationError,
    InvalidProducerEpochError,
    KafkaError,
    ProducerFencedError,
)
from kafka.structs import OffsetAndMetadata

from monitor.errors import BrokerError, ConfigError, ModelError, MonitorError, StoreError

# Re-exported: the replay, the benchmarks and tests import both from here.
from monitor.event_sender import key_partitions as key_partitions
from monitor.event_sender import send_events as send_events
from monitor.kafka_config import KafkaSetting, client_settings, describe
from monitor.metrics import WorkerMetrics
from monitor.pipeline import AcquisitionResult, Engine
from monitor.stac import Acquisition, HrefPolicy

log = logging.getLogger(__name__)

#: `MonitorError`s that say the worker's surroundings failed, not the message.
INFRASTRUCTURE_ERRORS: tuple[type[MonitorError], ...] = (StoreError, BrokerError, ModelError)
#: Kafka errors after which this producer or consumer can never succeed: stop the worker.
FATAL_KAFKA_ERRORS: tuple[type[KafkaError], ...] = (
    ProducerFencedError,
    InvalidProducerEpochError,
    AuthorizationError,
)
#: Producer tuning of the events path (a `--kafka-config` file overrides it). Batched: an
#: acquisition's events leave in a few large requests.
EVENT_PRODUCER_SETTINGS: Mapping[str, KafkaSetting] = MappingProxyType(
    {
        "linger_ms": 20,
        "batch_size": 512 * 1024,
        # Above max_transaction_seconds plus one full-tile acquisition.
        "transaction_timeout_ms": 300_000,
    }
)
#: Environment variable of the store-write crash injection (see the module docstring).
EXIT_AFTER_STORE_ENV = "PARCEL_MONITOR_EXIT_AFTER_STORE"
EXIT_AFTER_STORE_CODE = 86
#: Longest wait for the ledger to be read up to its end before the batch is retried.
LEDGER_CATCH_UP_SECONDS = 60.0
#: Consumer settings of group membership, not for the ledger's group-less consumer.
_GROUP_KEYS = frozenset(
    {"session_timeout_ms", "heartbeat_interval_ms", "max_poll_interval_ms", "group_instance_id"}
)
_MAX_REASON = 500
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def is_message_fault(exc: BaseException) -> bool:
    """True when `exc` condemns the message (dead letter), False when a retry may succeed."""
    return isinstance(exc, MonitorError) and not isinstance(exc, INFRASTRUCTURE_ERRORS)


def dead_letter_reason(exc: BaseException) -> str:
    """The `reason` header of a dead letter: one line, bounded, URL credentials hidden."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = _URL_CREDENTIALS.sub("***@", text)
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def href_policy(asset_roots: Sequence[Path]) -> HrefPolicy:
    """Where a message's assets may be: under `asset_roots`, or any absolute path if none.

    A Kafka message has no folder, so relative hrefs are always refused.
    """
    return HrefPolicy(roots=tuple(asset_roots) or (Path("/"),))


@dataclass(frozen=True)
class WorkerConfig:
    """Where the worker reads and writes, and how it batches, waits and retries."""

    bootstrap: str
    group_id: str = "parcel-monitor"
    worker_name: str = field(default_factory=socket.gethostname)
    source_topic: str = "acquisitions"
    events_topic: str = "parcel-events"
    dlq_topic: str = "acquisitions.dlq"
    #: The ledger of products whose events are committed (see the module docstring).
    ledger_topic: str = "acquisitions.done"
    #: Stop after this many seconds without a new message, counted from the first partition
    #: assignment (None: run until stopped).
    exit_when_idle: float | None = None
    #: At most this many messages per poll and transaction.
    max_batch: int = 32
    #: No new message joins a transaction open for this long; the rest go to the next poll.
    max_transaction_seconds: float = 10.0
    poll_seconds: float = 0.5
    retry_backoff_seconds: tuple[float, float] = (1.0, 60.0)
    #: Longest wait for the reply to one transactional call (send offsets, commit, abort) or
    #: committed-offset fetch; past it the call counts as failed and the batch is retried.
    kafka_call_seconds: float = 30.0
    #: Extra kafka-python settings (TLS, SASL, tuning), see `monitor.kafka_config`.
    client_config: Mapping[str, KafkaSetting] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.worker_name or not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", self.worker_name):
            raise ConfigError(f"worker name {self.worker_name!r}: use 1-200 of A-Z a-z 0-9 . _ -")
        if self.max_batch < 1:
            raise ConfigError(f"max_batch must be at least 1, not {self.max_batch}")
        if self.exit_when_idle is not None and self.exit_when_idle < 0:
            raise ConfigError(f"exit_when_idle must not be negative, not {self.exit_when_idle}")
        if self.kafka_call_seconds <= 0:
            raise ConfigError(f"kafka_call_seconds must be positive, not {self.kafka_call_seconds}")

    @property
    def transactional_id(self) -> str:
        return f"parcel-monitor-{self.worker_name}"


@dataclass
class WorkerSummary:
    """What a worker committed (and how often it had to retry) during one run."""

    acquisitions: int = 0
    dead_letters: int = 0
    #: Messages skipped because their product's events were already committed.
    duplicates: int = 0
    parcels: int = 0
    events_by_type: Counter[str] = field(default_factory=Counter)
    transactions: int = 0
    aborted: int = 0
    retries: int = 0

    @property
    def events(self) -> int:
        return sum(self.events_by_type.values())

    def text(self) -> str:
        """A few lines for the end of a run."""
        by_type = ", ".join(f"{n} {t}" for t, n in sorted(self.events_by_type.items()))
        return "\n".join(
            [
                f"acquisitions processed: {self.acquisitions}",
                f"dead letters: {self.dead_letters}",
                f"duplicates skipped: {self.duplicates}",
                f"parcel observations: {self.parcels}",
                f"events: {self.events}" + (f" ({by_type})" if by_type else ""),
                f"transactions: {self.transactions} committed, {self.aborted} aborted, "
                f"{self.retries} retries",
            ]
        )


@dataclass
class _Tally:
    """What the open transaction carries; added to the summary and metrics on commit."""

    sensors: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    parcels: int = 0
    events: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    #: Ledger entries (key → item digest) of the products processed in this transaction.
    done: dict[str, str] = field(default_factory=dict)
    offsets: dict[TopicPartition, OffsetAndMetadata] = field(default_factory=dict)


def ledger_key(acq: Acquisition) -> str:
    """The ledger key of an acquisition: `TILE/PRODUCT_ID` (event ids hash both)."""
    return f"{acq.tile}/{acq.product_id}"


def fenced_error(exc: BaseException, producer: Any) -> BaseException | None:
    """The fatal Kafka error behind `exc`, or None when a retry may succeed.

    kafka-python raises the fence itself from some calls, and from others (`send`, `begin`,
    `abort` after the fence) a plain `KafkaError` saying the producer is in an error state:
    its transaction manager then holds the fatal error.
    """
    candidates: list[BaseException] = [exc]
    manager = getattr(producer, "_transaction_manager", None)
    if manager is not None and manager.has_fatal_error() and manager.last_error is not None:
        candidates.append(manager.last_error)
    return next((c for c in candidates if isinstance(c, FATAL_KAFKA_ERRORS)), None)


class _Ledger:
    """The committed products, read (read_committed) from the ledger topic."""

    def __init__(self, bootstrap: str, topic: str, settings: Mapping[str, KafkaSetting]) -> None:
        self.topic = topic
        self.done: dict[str, str] = {}
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            **settings,
        )
        self._assigned: list[TopicPartition] = []

    def catch_up(self, timeout_s: float = LEDGER_CATCH_UP_SECONDS) -> None:
        """Read the ledger up to its last stable offset (`BrokerError` after `timeout_s`)."""
        consumer = self._consumer
        partitions = consumer.partitions_for_topic(self.topic)
        if not partitions:  # not created yet: nothing was ever committed to it
            return
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        if tps != self._assigned:
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            self._assigned = tps
        end = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise BrokerError(f"ledger topic {self.topic}: not read to its end in {timeout_s}s")
            for batch in consumer.poll(timeout_ms=200).values():
                for record in batch:
                    if record.key is not None:
                        self.done[record.key.decode()] = (record.value or b"").decode()

    def close(self) -> None:
        self._consumer.close()


class _Rebalanced(Exception):
    """Partitions were revoked while a transaction was open: abort it, do not commit."""


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tells the worker about rebalances. Runs on kafka-python's IO thread: only sets flags."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._worker._on_revoked(revoked)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._worker._on_assigned(assigned)


class Worker:
    """A consumer-group member processing acquisitions with Kafka transactions.

    `run()` blocks until `stop()` (thread- and signal-safe), the idle timeout, or a fatal
    error (`BrokerError`, e.g. fenced by another instance with the same worker name).
    """

    def __init__(
        self, engine: Engine, config: WorkerConfig, metrics: WorkerMetrics | None = None
    ) -> None:
        self.engine = engine
        self.config = config
        self.metrics = metrics or WorkerMetrics()
        self.summary = WorkerSummary()
        self._stopping = threading.Event()
        self._revoked = threading.Event()
        self._consumer: Any = None
        self._producer: Any = None
        self._in_transaction = False
        # Set when a transactional call got no reply in time: the producer's state is unknown
        # and it is replaced, never reused (see `_recover`).
        self._producer_stuck = False
        # The idle clock starts when the group first assigns partitions (a join can wait a
        # whole session timeout for a dead member) and restarts on every reassignment.
        self._assigned_at: float | None = None
        self._last_message = 0.0
        self._ledger: _Ledger | None = None
        self._ledger_stale = threading.Event()
        self._stored = 0
        exit_after = os.environ.get(EXIT_AFTER_STORE_ENV, "")
        self._exit_after_store = int(exit_after) if exit_after.isdigit() else None

    def stop(self) -> None:
        """Ask the worker to finish the current message, commit, and return from `run`."""
        self._stopping.set()

    # -- lifecycle -------------------------------------------------------------------------

    def run(self) -> WorkerSummary:
        """Consume until stopped or idle; returns what was committed."""
        cfg = self.config
        log.info(
            "worker %s starting: group %s, %s -> %s (dead letters: %s), Kafka settings: %s",
            cfg.worker_name,
            cfg.group_id,
            cfg.source_topic,
            cfg.events_topic,
            cfg.dlq_topic,
            describe(cfg.client_config),
        )
        try:
            self._connect()
            self._loop()
        finally:
            self._close()
        log.info("worker %s stopped: %s", cfg.worker_name, self.summary.text().replace("\n", "; "))
        return self.summary

    def _connect(self) -> None:
        cfg = self.config
        consumer_settings, producer_settings = client_settings(cfg.client_config)
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=cfg.bootstrap,
                client_id=cfg.transactional_id,
                group_id=cfg.group_id,
                enable_auto_commit=False,
                isolation_level="read_committed",
                auto_offset_reset="earliest",
                **{"max_poll_records": cfg.max_batch, **consumer_settings},
            )
            self._consumer.subscribe([cfg.source_topic], listener=_Listener(self))
            ledger_settings = {k: v for k, v in consumer_settings.items() if k not in _GROUP_KEYS}
            self._ledger = _Ledger(cfg.bootstrap, cfg.ledger_topic, ledger_settings)
            self._producer = self._new_producer(producer_settings)
        except KafkaError as exc:
            raise BrokerError(f"worker {cfg.worker_name}: Kafka at {cfg.bootstrap}: {exc}") from exc

    def _new_producer(self, settings: Mapping[str, KafkaSetting]) -> Any:
        cfg = self.config
        producer = KafkaProducer(
            bootstrap_servers=cfg.bootstrap,
            client_id=cfg.transactional_id,
            transactional_id=cfg.transactional_id,
            acks="all",
            **{**EVENT_PRODUCER_SETTINGS, **settings},
        )
        try:
            # Aborts what a killed predecessor with this transactional id left open.
            producer.init_transactions()
        except BaseException:
            producer.close(timeout=5)
            raise
        return producer

    def _close(self) -> None:
        if self._producer is not None and self._in_transaction and not self._producer_stuck:
            try:
                self._abort()
            except (KafkaError, BrokerError) as exc:
                # What stays open is aborted by the next instance's init_transactions, or by
                # the broker after transaction_timeout_ms.
                log.warning("worker %s: abort at exit failed: %s", self.config.worker_name, exc)
                self._producer_stuck = True
        if self._consumer is not None:
            self._consumer.close()
        if self._ledger is not None:
            self._ledger.close()
        if self._producer is not None:
            self._drop_producer()

    # -- the loop --------------------------------------------------------------------------

    def _loop(self) -> None:
        cfg = self.config
        first_backoff, max_backoff = cfg.retry_backoff_seconds
        backoff = first_backoff
        recovering = False
        while not self._stopping.is_set():
            try:
                if recovering:
                    self._recover()
                    recovering = False
                got_messages = self._poll_and_process()
            except _Rebalanced:
                log.info("worker %s: partitions revoked mid-transaction, aborted", cfg.worker_name)
                recovering = True
                continue
            except Exception as exc:
                fatal = fenced_error(exc, self._producer)
                if fatal is not None:
                    raise BrokerError(
                        f"worker {cfg.worker_name} (transactional id {cfg.transactional_id}) "
                        f"cannot go on: {type(fatal).__name__}: {fatal}; is another instance "
                        "running with the same worker name?"
                    ) from exc
                # Not the message's fault: retry the batch from the committed offsets.
                log.error(
                    "worker %s: %s: %s; retrying in %.1fs",
                    cfg.worker_name,
                    type(exc).__name__,
                    dead_letter_reason(exc),
                    backoff,
                    exc_info=not isinstance(exc, MonitorError | KafkaError),
                )
                self.summary.retries += 1
                self.metrics.retries.inc()
                recovering = True
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, max_backoff)
                continue
            backoff = first_backoff
            if not got_messages and self._idle():
                log.info("worker %s: idle for %.0fs, exiting", cfg.worker_name, cfg.exit_when_idle)
                return

    def _idle(self) -> bool:
        limit, assigned_at = self.config.exit_when_idle, self._assigned_at
        if limit is None or assigned_at is None:
            return False
        return time.monotonic() - max(self._last_message, assigned_at) >= limit

    def _poll_and_process(self) -> bool:
        """Poll once and process what came in one transaction; False when nothing came."""
        polled = self._consumer.poll(timeout_ms=int(self.config.poll_seconds * 1000))
        self._revoked.clear()  # a rebalance inside poll leaves no transaction behind
        if not polled:
            return False
        self._last_message = time.monotonic()  # also when the batch then fails and is retried
        records = [record for tp in sorted(polled) for record in polled[tp]]
        self._catch_up_ledger()
        group = self._consumer.group_metadata()
        self._begin()
        tally = _Tally()
        started = time.monotonic()
        for index, record in enumerate(records):
            stop = self._stopping.is_set()
            if stop or time.monotonic() - started >= self.config.max_transaction_seconds:
                self._rewind(records[index:])
                break
            self._check_assignment()
            self._process(record, tally)
            tally.offsets[TopicPartition(record.topic, record.partition)] = OffsetAndMetadata(
                record.offset + 1, "", -1
            )
        self._commit(tally, group)
        return True

    def _catch_up_ledger(self) -> None:
        """Read what other members committed to the ledger since the last assignment."""
        if self._ledger is not None and self._ledger_stale.is_set():
            self._ledger_stale.clear()
            try:
                self._ledger.catch_up()
            except BaseException:
                self._ledger_stale.set()
                raise

    def _is_done(self, key: str, digest: str, record: Any, tally: _Tally) -> bool:
        """True (and logged) when the product's events are committed or in this transaction."""
        ledger = self._ledger.done if self._ledger is not None else {}
        seen = ledger.get(key, tally.done.get(key))
        if seen is None:
            return False
        what = "the same item" if seen == digest else "another version of the product"
        log.warning(
            "duplicate partition=%d offset=%d product=%s: %s was processed already; the first "
            "processed version is kept, skipped",
            record.partition,
            record.offset,
            key,
            what,
        )
        return True

    def _process(self, record: Any, tally: _Tally) -> None:
        """Send one message's events, or its dead letter, into the open transaction."""
        start = time.perf_counter()
        try:
            acq = self.engine.parse(record.value or b"", base=None)
            parse_seconds = time.perf_counter() - start
            key = ledger_key(acq)
            digest = hashlib.sha256(record.value or b"").hexdigest()[:32]
            if self._is_done(key, digest, record, tally):
                tally.duplicates += 1
                return
            result = self.engine.process(acq)
            self._stored += 1
            if self._exit_after_store == self._stored:
                log.error("%s=%d: exit after the store write", EXIT_AFTER_STORE_ENV, self._stored)
                os._exit(EXIT_AFTER_STORE_CODE)
            # Serialised before any send, so a failure cannot leave half an acquisition behind.
            values = result.events.records()
        except MonitorError as exc:
            if not is_message_fault(exc):
                raise
            self._dead_letter(record, exc)
            tally.dead_letters[type(exc).__name__] += 1
            return
        send_start = time.perf_counter()
        send_events(self._producer, self.config.events_topic, values)
        self._producer.send(self.config.ledger_topic, key=key.encode(), value=digest.encode())
        tally.done[key] = digest
        seconds = {"parse": parse_seconds, **result.stage_seconds}
        seconds["send"] = time.perf_counter() - send_start
        for stage, value_s in seconds.items():
            self.metrics.stage_seconds.labels(stage=stage).observe(value_s)
        self._tally_result(result, tally)
        log.info(
            "acquisition product_id=%s tile=%s sensor=%s partition=%d offset=%d parcels=%d "
            "events=%d %s total_s=%.3f",
            result.acquisition.product_id,
            result.acquisition.tile,
            result.acquisition.sensor,
            record.partition,
            record.offset,
            result.observations.height,
            len(result.events),
            " ".join(f"{stage}_s={value_s:.3f}" for stage, value_s in seconds.items()),
            time.perf_counter() - start,
        )

    @staticmethod
    def _tally_result(result: AcquisitionResult, tally: _Tally) -> None:
        tally.sensors[result.acquisition.sensor] += 1
        tally.parcels += result.observations.height
        tally.events.update(result.events.type_counts())

    def _dead_letter(self, record: Any, exc: MonitorError) -> None:
        reason = dead_letter_reason(exc)
        headers = [
            ("reason", reason.encode()),
            ("error", type(exc).__name__.encode()),
            ("source-topic", record.topic.encode()),
            ("source-partition", str(record.partition).encode()),
            ("source-offset", str(record.offset).encode()),
        ]
        self._producer.send(
            self.config.dlq_topic, key=record.key, value=record.value or b"", headers=headers
        )
        log.warning(
            "dead letter partition=%d offset=%d error=%s reason=%r",
            record.partition,
            record.offset,
            type(exc).__name__,
            reason,
        )

    # -- transactions ----------------------------------------------------------------------

    def _begin(self) -> None:
        self._producer.begin_transaction()
        self._in_transaction = True

    def _commit(self, tally: _Tally, group: Any) -> None:
        if not tally.offsets:  # stopped before the first message: nothing to commit
            self._abort()
            return
        self._check_assignment()
        self._await_reply(
            "send_offsets_to_transaction",
            lambda manager: manager.send_offsets_to_transaction(tally.offsets, group),
        )
        self._await_reply("commit_transaction", lambda manager: manager.begin_commit())
        self._in_transaction = False
        self.summary.transactions += 1
        self.metrics.transactions.labels(outcome="committed").inc()
        summary = self.summary
        summary.acquisitions += sum(tally.sensors.values())
        summary.dead_letters += sum(tally.dead_letters.values())
        summary.duplicates += tally.duplicates
        if self._ledger is not None:
            self._ledger.done.update(tally.done)
        self.metrics.duplicates.inc(tally.duplicates)
        summary.parcels += tally.parcels
        summary.events_by_type.update(tally.events)
        for sensor, n in tally.sensors.items():
            self.metrics.acquisitions.labels(sensor=sensor).inc(n)
        for error, n in tally.dead_letters.items():
            self.metrics.dead_letters.labels(error=error).inc(n)
        self.metrics.parcels.inc(tally.parcels)
        for type_, n in tally.events.items():
            self.metrics.events.labels(type=type_).inc(n)
        self._record_lag(tally.offsets)

    def _abort(self) -> None:
        self._in_transaction = False
        self._await_reply("abort_transaction", lambda manager: manager.begin_abort())
        self.summary.aborted += 1
        self.metrics.transactions.labels(outcome="aborted").inc()

    def _await_reply(self, call: str, start: Callable[[Any], Any]) -> None:
        """Run the producer's transactional `call` and wait at most `kafka_call_seconds`.

        kafka-python 3.0's `send_offsets_to_transaction`, `commit_transaction` and
        `abort_transaction` wait for the coordinator's reply without a limit, and a producer
        whose transaction coordinator crashed can wait forever. These are the same calls
        (`start` enqueues the request on the transaction manager, the sender thread sends
        it), with a bounded wait: on a timeout `BrokerError`, and the producer is replaced.
        """
        producer = self._producer
        result = start(producer._transaction_manager)
        producer._sender.wakeup()
        timeout_s = self.config.kafka_call_seconds
        if not result.wait(timeout_ms=int(timeout_s * 1000)):  # raises the call's own error
            self._producer_stuck = True
            raise BrokerError(
                f"worker {self.config.worker_name}: {call} got no reply from the transaction "
                f"coordinator in {timeout_s:g}s"
            )

    def _drop_producer(self) -> None:
        """Close the producer; one that got no reply is closed without waiting on it."""
        producer, self._producer = self._producer, None
        if self._producer_stuck:
            # Its unsent records belong to a transaction the next producer aborts: drop them.
            producer._sender.force_close()
        try:
            producer.close(timeout=5)
        except KafkaError as exc:  # flush timed out: the sender thread is stopped anyway
            log.warning("worker %s: producer closed uncleanly: %s", self.config.worker_name, exc)
            producer._sender.force_close()
        self._producer_stuck = False

    def _check_assignment(self) -> None:
        if self._revoked.is_set():
            raise _Rebalanced

    def _rewind(self, unprocessed: Sequence[Any]) -> None:
        """Make the next poll start at the first message this batch leaves out."""
        first: dict[TopicPartition, int] = {}
        for record in unprocessed:
            first.setdefault(TopicPartition(record.topic, record.partition), record.offset)
        for tp, offset in first.items():
            self._consumer.seek(tp, offset)

    def _recover(self) -> None:
        """Abort what is open and go back to the committed offsets of every partition held.

        A producer that got no reply in time, or cannot abort, is replaced by a new one with
        the same transactional id: its `init_transactions` fences the old one and finishes
        the open transaction on the broker (aborts it, or completes a commit the coordinator
        had already begun), so the offsets read next are the committed ones.
        """
        cfg = self.config
        if self._in_transaction and not self._producer_stuck:
            try:
                self._abort()
            except (KafkaError, BrokerError) as exc:
                if fenced_error(exc, self._producer) is not None:
                    raise  # fenced: a new producer would fence the instance that fenced this one
                log.warning("worker %s: abort failed (%s)", cfg.worker_name, exc)
                self._producer_stuck = True
        self._in_transaction = False
        if self._producer is not None and self._producer_stuck:
            log.warning(
                "worker %s: replacing the producer (transactional id %s): the new one fences "
                "it and ends its open transaction; resuming from the committed offsets",
                cfg.worker_name,
                cfg.transactional_id,
            )
            self._drop_producer()
        if self._producer is None:
            _, producer_settings = client_settings(cfg.client_config)
            self._producer = self._new_producer(producer_settings)
        timeout_ms = int(cfg.kafka_call_seconds * 1000)
        for tp in self._consumer.assignment():
            committed = self._consumer.committed(tp, timeout_ms=timeout_ms)
            if committed is None:
                self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, committed)
        # A commit that got no reply may have happened: its ledger entries are read back.
        self._ledger_stale.set()

    # -- rebalances (kafka-python's IO thread) and lag -------------------------------------

    def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._revoked.set()
        if revoked:
            log.info("worker %s: partitions revoked: %s", self.config.worker_name, _tps(revoked))
        for tp in revoked:
            try:
                self.metrics.lag.remove(tp.topic, str(tp.partition))
            except KeyError:
                continue

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        self._assigned_at = time.monotonic()
        self._ledger_stale.set()
        # Newly assigned partitions have no position yet: the consumer fetches their committed
        # offsets before the first fetch, so processing resumes where the group left off.
        log.info(
            "worker %s: partitions assigned, resuming from committed offsets: %s",
            self.config.worker_name,
            _tps(assigned),
        )

    def _record_lag(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        for tp, committed in offsets.items():
            try:
                end = self._consumer.highwater(tp)
            except KafkaError:  # revoked since the commit
                continue
            if end is not None:
                lag = max(end - committed.offset, 0)
                self.metrics.lag.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)


def _tps(partitions: set[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(partitions)) or "(none)"
