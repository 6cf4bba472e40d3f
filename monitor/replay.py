"""Replay a historical season: a catalog folder through the engine, in acquisition order.

The same `Engine` as the live worker, fed from a STAC catalog instead of Kafka. Events go to a
JSON Lines file (one canonical event per line) or to a Kafka topic (one transaction per
acquisition, key = parcel id, sent as the worker sends them: `monitor.worker.send_events`).
The models run as in the worker (`monitor.stages.defaults`, `ReplayJob.stages`; None: only
observations). With `detected_at="acquired"` the same inputs give the same events file byte
for byte, model events included: the stages' memory of what was emitted lives in the store per
product and is read as of each acquisition (see `monitor.stages.memory`).

Resuming: a checkpoint journal (JSON Lines: a header naming the run, then one line per
finished item) is appended and fsynced after each acquisition's events are durable: in file
mode after the acquisition's events went to the events file in one append + fsync, in Kafka
mode after its transaction committed. A restarted replay skips the items the journal names and
truncates the events and dead-letter files to the lengths the journal last recorded, dropping
whatever an interrupted acquisition had appended: nothing is duplicated. (In Kafka mode a crash
between a commit and its journal line republishes that one acquisition; event ids are
deterministic, so consumers can drop the repeats.)

Bad items (invalid STAC, missing assets, unreadable rasters) are dead letters: a line in
`dead-letters.jsonl` with the one-line reason, and the replay goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal

from monitor.catalog import Catalog, CatalogEntry, RejectedItem
from monitor.errors import (
    AssetError,
    BrokerError,
    ConfigError,
    CrsMismatch,
    InvalidAcquisition,
    KernelError,
    StoreError,
)
from monitor.events import EventBatch
from monitor.pipeline import AcquisitionResult, Engine
from monitor.stages.defaults import StageOptions

log = logging.getLogger(__name__)

CHECKPOINT_VERSION: Final = 1
DEAD_LETTERS_FILE: Final = "dead-letters.jsonl"
#: Failures that are the acquisition's fault: dead-lettered. Anything else (store, Kafka,
#: parcels) stops the replay, since every later acquisition would fail the same way.
MESSAGE_FAULTS: Final = (InvalidAcquisition, AssetError, CrsMismatch, KernelError)

Stage = Literal["validate", "process"]


@dataclass(frozen=True)
class DeadLetter:
    """An item the replay could not use, and why (one line)."""

    item: str  # path relative to the catalog folder
    product_id: str | None
    stage: Stage
    reason: str

    def to_json(self) -> bytes:
        body = {
            "item": self.item,
            "product_id": self.product_id,
            "stage": self.stage,
            "reason": self.reason,
        }
        return json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class ReplayOutputs:
    """Where a replay writes: events (a file, or None for Kafka), dead letters, checkpoint."""

    checkpoint: Path
    dead_letters: Path
    events: Path | None = None

    @classmethod
    def to_file(cls, events: Path) -> ReplayOutputs:
        """Events in `events`; `dead-letters.jsonl` and `<stem>.checkpoint.jsonl` beside it."""
        checkpoint = events.with_name(f"{events.stem}.checkpoint.jsonl")
        return cls(checkpoint, events.parent / DEAD_LETTERS_FILE, events)

    @classmethod
    def to_kafka(cls, store_root: Path, topic: str) -> ReplayOutputs:
        """Events on Kafka; dead letters and checkpoint in `STORE/_replay/<topic>/`."""
        folder = store_root / "_replay" / topic
        return cls(folder / "checkpoint.jsonl", folder / DEAD_LETTERS_FILE)


@dataclass(frozen=True)
class ReplaySummary:
    """What one replay run did (items finished by an earlier run are only counted as skipped)."""

    acquisitions: int
    skipped: int
    dead_letters: tuple[DeadLetter, ...]
    parcels: int  # distinct parcels observed
    parcel_rows: int  # parcel x acquisition rows observed
    events_by_type: Mapping[str, int]
    seconds: float

    @property
    def events(self) -> int:
        return sum(self.events_by_type.values())


class EventPublisher:
    """Events to a Kafka topic, one transaction per acquisition, key = parcel id.

    The transactional id is fixed per store and topic, so a restarted replay fences a previous
    one that is still alive, and a read_committed consumer never sees a partial acquisition.
    """

    def __init__(self, bootstrap: str, topic: str, transactional_id: str, timeout_s: float = 60):
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        from monitor.worker import EVENT_PRODUCER_SETTINGS

        self.topic = topic
        self._where = f"{topic!r} on {bootstrap}"
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap,
                transactional_id=transactional_id,
                acks="all",
                max_block_ms=int(timeout_s * 1000),
                **EVENT_PRODUCER_SETTINGS,
            )
            self._producer.init_transactions()
        except KafkaError as err:
            raise BrokerError(
                f"cannot start a transactional producer on {bootstrap}: {err}"
            ) from err

    def publish(self, events: EventBatch) -> None:
        """Send `events` in one transaction; return once it committed."""
        from kafka.errors import KafkaError

        from monitor.worker import send_events

        # Serialised before the transaction opens, as the worker does.
        records = events.records()
        try:
            self._producer.begin_transaction()
            send_events(self._producer, self.topic, records)
            self._producer.commit_transaction()
        except KafkaError as err:
            raise BrokerError(f"cannot publish events to {self._where}: {err}") from err

    def close(self) -> None:
        self._producer.close(timeout=30)


def transactional_id(store_root: Path, topic: str) -> str:
    """The replay producer's transactional id: one per store and topic."""
    digest = hashlib.sha256(str(store_root.resolve()).encode()).hexdigest()[:12]
    return f"parcel-monitor-replay-{topic}-{digest}"


@dataclass
class _Journal:
    """The checkpoint journal and the append-only outputs it vouches for."""

    outputs: ReplayOutputs
    done: set[str] = field(default_factory=set)  # product ids and "item:<path>" of rejects
    _files: dict[str, BinaryIO] = field(default_factory=dict)

    @classmethod
    def open(cls, outputs: ReplayOutputs, run: Mapping[str, Any]) -> _Journal:
        journal = cls(outputs)
        header = {"replay": dict(run), "version": CHECKPOINT_VERSION}
        lengths = journal._recover(header)
        paths = {**journal._logs(), "checkpoint": outputs.checkpoint}
        try:
            for name, path in paths.items():
                journal._files[name] = _open_truncated(path, lengths.get(name, 0))
            if lengths["checkpoint"] == 0:
                journal._append("checkpoint", [_canonical(header)])
        except BaseException:
            journal.close()
            raise
        return journal

    def _logs(self) -> dict[str, Path]:
        logs = {"dead_letters": self.outputs.dead_letters}
        if self.outputs.events is not None:
            logs["events"] = self.outputs.events
        return logs

    def _recover(self, header: dict[str, Any]) -> dict[str, int]:
        """Read the journal; return the lengths it vouches for (0 everywhere when new)."""
        path = self.outputs.checkpoint
        if not path.exists():
            for log_path in self._logs().values():
                if log_path.exists() and log_path.stat().st_size > 0:
                    raise ConfigError(
                        f"{log_path} exists but {path} does not: not a resumable replay; "
                        "delete it or write elsewhere"
                    )
            return {"checkpoint": 0}
        data = _read(path)
        # A line without its newline is a journal write cut short: that item did not finish.
        complete = data[: data.rfind(b"\n") + 1]
        lines = complete.splitlines()
        if not lines:
            return {"checkpoint": 0}
        found = _journal_line(path, 1, lines[0])
        if found != header:
            raise ConfigError(
                f"checkpoint {path} belongs to another replay ({found.get('replay')}); "
                "delete it with its outputs, or write elsewhere"
            )
        lengths = {"checkpoint": len(complete)}
        for number, line in enumerate(lines[1:], start=2):
            entry = _journal_line(path, number, line)
            try:
                key = str(entry["key"])
                lengths.update({name: int(size) for name, size in entry["lengths"].items()})
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise StoreError(f"checkpoint {path} line {number} is corrupt: {exc!r}") from exc
            self.done.add(key)
        return lengths

    def _append(self, name: str, lines: Sequence[bytes]) -> None:
        fh = self._files[name]
        try:
            fh.write(b"".join(line + b"\n" for line in lines))
            fh.flush()
            os.fsync(fh.fileno())
        except OSError as exc:
            raise StoreError(f"cannot append to {fh.name!r}: {exc.strerror or exc}") from exc

    def record(self, key: str, status: Literal["done", "dead"]) -> None:
        """Mark `key` finished, with the current lengths of the outputs (one durable line)."""
        lengths = {name: self._files[name].tell() for name in self._logs()}
        line = {"key": key, "lengths": lengths, "status": status}
        self._append("checkpoint", [_canonical(line)])
        self.done.add(key)

    def events(self, lines: Sequence[bytes]) -> None:
        self._append("events", lines)

    def dead_letter(self, letter: DeadLetter) -> None:
        self._append("dead_letters", [letter.to_json()])

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()


def _journal_line(path: Path, number: int, line: bytes) -> dict[str, Any]:
    try:
        entry = json.loads(line)
    except ValueError as exc:
        raise StoreError(f"checkpoint {path} line {number} is not JSON: {exc}") from exc
    if not isinstance(entry, dict):
        raise StoreError(f"checkpoint {path} line {number} is not a JSON object")
    return entry


def _canonical(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _open_truncated(path: Path, length: int) -> BinaryIO:
    """Open `path` for appending after cutting it to `length` bytes (what a checkpoint vouches)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        size = path.stat().st_size if path.exists() else 0
        if size < length:
            raise StoreError(
                f"{path} has {size} bytes, fewer than the {length} its checkpoint recorded: "
                "it was changed; delete it with its checkpoint to start over"
            )
        fh = path.open("ab")
        fh.truncate(length)
        fh.seek(length)
        return fh
    except OSError as exc:
        raise StoreError(f"cannot open {path}: {exc.strerror or exc}") from exc


def replay_catalog(
    catalog: Catalog,
    engine: Engine,
    outputs: ReplayOutputs,
    run: Mapping[str, Any],
    *,
    publisher: EventPublisher | None = None,
    progress: bool = False,
    on_acquisition: Callable[[AcquisitionResult], None] | None = None,
) -> ReplaySummary:
    """Process every item of `catalog` not yet finished, in acquisition order.

    `run` names the replay (catalog, parcels, range, sink...): a checkpoint of another run is
    refused. Events go to `outputs.events`, or to `publisher` when the outputs have no events
    file. `on_acquisition` is called after each acquisition is durably recorded.
    """
    from tqdm import tqdm

    if (outputs.events is None) == (publisher is None):
        raise ConfigError("a replay writes its events to a file or to Kafka, exactly one")
    start = time.perf_counter()
    journal = _Journal.open(outputs, run)
    letters: list[DeadLetter] = []
    by_type: Counter[str] = Counter()
    parcels: set[str] = set()
    processed = skipped = rows = 0
    work: list[CatalogEntry | RejectedItem] = [*catalog.rejected, *catalog.entries]
    bar = tqdm(total=len(work), unit="acq", disable=not progress, dynamic_ncols=True)
    try:
        for unit in work:
            key = _key(catalog, unit)
            bar.update(1)
            if key in journal.done:
                skipped += 1
                continue
            if isinstance(unit, RejectedItem):
                letter = DeadLetter(_relative(catalog, unit.path), None, "validate", unit.reason)
                _dead(journal, letter, key, letters)
                continue
            acq = unit.acquisition
            try:
                result = engine.process(acq)
            except MESSAGE_FAULTS as err:
                letter = DeadLetter(
                    _relative(catalog, unit.path), acq.product_id, "process", str(err)
                )
                _dead(journal, letter, key, letters)
                continue
            if publisher is not None:
                publisher.publish(result.events)
            else:
                journal.events(result.events.values())
            journal.record(key, "done")
            processed += 1
            rows += result.observations.height
            parcels.update(result.observations.get_column("parcel_id").to_list())
            by_type.update(result.events.type_counts())
            elapsed = time.perf_counter() - start
            bar.set_postfix_str(f"{rows / max(elapsed, 1e-9):,.0f} parcels/s", refresh=False)
            if on_acquisition is not None:
                on_acquisition(result)
    finally:
        bar.close()
        journal.close()
    return ReplaySummary(
        acquisitions=processed,
        skipped=skipped,
        dead_letters=tuple(letters),
        parcels=len(parcels),
        parcel_rows=rows,
        events_by_type=dict(sorted(by_type.items())),
        seconds=time.perf_counter() - start,
    )


def _key(catalog: Catalog, unit: CatalogEntry | RejectedItem) -> str:
    if isinstance(unit, RejectedItem):
        return f"item:{_relative(catalog, unit.path)}"
    return unit.acquisition.product_id


def _relative(catalog: Catalog, path: Path) -> str:
    root = catalog.root.resolve()
    resolved = path.resolve()
    return resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else str(path)


def _dead(journal: _Journal, letter: DeadLetter, key: str, letters: list[DeadLetter]) -> None:
    log.warning("dead letter %s: %s", letter.item, letter.reason)
    journal.dead_letter(letter)
    journal.record(key, "dead")
    letters.append(letter)


@dataclass(frozen=True)
class ReplayJob:
    """A replay as the command line states it: inputs, store, and one events destination."""

    catalog: Path
    parcels: Path
    store: Path
    events_out: Path | None = None
    bootstrap: str | None = None
    topic: str | None = None
    id_column: str = "id_parcel"
    label_cache: Path | None = None
    start: str | None = None  # --from, a date or RFC 3339 time
    end: str | None = None  # --to, inclusive
    #: The models that run after the observations (`--no-models`: none).
    stages: StageOptions | None = field(default_factory=StageOptions)

    def outputs(self) -> ReplayOutputs:
        if (self.events_out is None) == (self.bootstrap is None):
            raise ConfigError("a replay needs --events-out FILE or --bootstrap HOST:PORT")
        if self.bootstrap is not None and not self.topic:
            raise ConfigError("--bootstrap needs --topic (the topic of the events)")
        if self.bootstrap is None and self.topic:
            raise ConfigError("--topic goes with --bootstrap; --events-out writes a file")
        if self.events_out is not None:
            return ReplayOutputs.to_file(self.events_out)
        assert self.topic is not None
        return ReplayOutputs.to_kafka(self.store, self.topic)


def run_replay(
    job: ReplayJob,
    *,
    progress: bool = False,
    on_acquisition: Callable[[AcquisitionResult], None] | None = None,
) -> tuple[ReplaySummary, ReplayOutputs]:
    """Load the parcels and the catalog, open the store, and replay (resuming if interrupted)."""
    from monitor.catalog import read_catalog, time_range
    from monitor.parcels import load_parcels
    from monitor.pipeline import EngineConfig
    from monitor.stac import HrefPolicy
    from monitor.stages.defaults import default_stages
    from monitor.store import ObservationStore

    outputs = job.outputs()
    when = time_range(job.start, job.end)
    parcels = load_parcels(job.parcels, id_column=job.id_column)
    # The catalog's items may share assets anywhere in its folder, not only their own.
    policy = HrefPolicy(roots=(job.catalog,))
    catalog = read_catalog(job.catalog, when, policy=policy)
    store = ObservationStore(job.store)
    stages = [] if job.stages is None else default_stages(job.stages)
    engine = Engine(
        EngineConfig(parcels, store, job.label_cache, href_policy=policy, stages=stages)
    )
    run = {
        "catalog": str(job.catalog.resolve()),
        "parcels": parcels.version,
        "id_column": job.id_column,
        "store": str(job.store.resolve()),
        "from": job.start,
        "to": job.end,
        "sink": "file" if job.bootstrap is None else f"kafka:{job.topic}",
        "models": [stage.name for stage in stages],
    }
    publisher = None
    if job.bootstrap is not None and job.topic is not None:
        publisher = EventPublisher(job.bootstrap, job.topic, transactional_id(job.store, job.topic))
    try:
        summary = replay_catalog(
            catalog,
            engine,
            outputs,
            run,
            publisher=publisher,
            progress=progress,
            on_acquisition=on_acquisition,
        )
    finally:
        if publisher is not None:
            publisher.close()
    return summary, outputs
