"""Faults injected for real: killed workers, a crash between store write and commit, a group
that loses and gains members, a broker of a three-node cluster stopped, duplicated and
reprocessed acquisitions, a season's backlog.

Real `parcel-monitor run` processes (or in-process `Worker`s where the test needs the summary)
against real brokers on loopback, on the bundled Mol season (22 acquisitions x 42 parcels, or
four tile streams of it). Exactly once is checked by event ids (each once) and by observation
events per product (one per parcel), which stays true when inference stages add events; the
store by rows per product. Each test prints its figures (`pytest -s` shows them).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from monitor.broker import ClusterHandle
from monitor.parcels import load_parcels
from monitor.pipeline import Engine, EngineConfig
from monitor.stac import read_item
from monitor.store import ObservationStore
from monitor.worker import EXIT_AFTER_STORE_CODE, EXIT_AFTER_STORE_ENV, Worker, WorkerConfig
from monitor.worker import href_policy as worker_href_policy
from tests.kafka_workers import (
    ITEMS,
    N_PARCELS,
    PARCELS,
    Topics,
    absolute_item,
    check_events,
    check_store,
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
    transaction_coordinator,
    wait_for,
)
from tests.sample_data import sample_dir

ALL = {read_item(p).product_id for p in ITEMS}


def _report(fault: str, expected: int, records: list[object], duplicates: int, rows: int) -> None:
    print(
        f"\nFAULT {fault}: events expected {expected} (observations), seen {len(records)}, "
        f"duplicates {duplicates}, store rows {rows}"
    )


def _in_process_worker(bootstrap: str, topics: Topics, store: Path, name: str) -> Worker:
    parcels = load_parcels(PARCELS, id_column="segment_id")
    policy = worker_href_policy([sample_dir()])
    engine = Engine(EngineConfig(parcels, ObservationStore(store), href_policy=policy))
    config = WorkerConfig(
        bootstrap,
        group_id=f"group-{topics.source}",
        worker_name=name,
        source_topic=topics.source,
        events_topic=topics.events,
        dlq_topic=topics.dlq,
        ledger_topic=topics.ledger,
        exit_when_idle=3.0,
    )
    return Worker(engine, config)


@pytest.mark.kafka
def test_sigkill_mid_transaction_then_restart(
    kafka_bootstrap: str,
    topics: Topics,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    publish(kafka_bootstrap, topics.source, [item_message(p) for p in ITEMS])
    first = start_worker(kafka_bootstrap, topics, tmp_path, "crash", "--exit-when-idle", "120")
    processes.append(first)

    # Freeze the worker when the events log holds records of an open transaction (its end is
    # past the last stable offset), then kill it there: a crash in the middle of a transaction.
    def frozen_mid_transaction() -> bool:
        assert first.poll() is None, "the worker exited before it could be killed"
        if end(kafka_bootstrap, topics.events, "read_uncommitted") == 0:
            return False
        first.send_signal(signal.SIGSTOP)
        written = end(kafka_bootstrap, topics.events, "read_uncommitted")
        if end(kafka_bootstrap, topics.events, "read_committed") < written:
            return True
        first.send_signal(signal.SIGCONT)
        return False

    wait_for(frozen_mid_transaction, "an open transaction with events in the log")
    first.kill()
    first.wait(timeout=30)
    committed_before = observation_products(read(kafka_bootstrap, topics.events))
    assert len(committed_before) < len(ALL)

    second = start_worker(kafka_bootstrap, topics, tmp_path, "crash", "--exit-when-idle", "3")
    processes.append(second)
    summary = finish(second)

    committed = read(kafka_bootstrap, topics.events)
    found = check_events(committed, ALL)
    # The killed transaction's events are in the log, aborted: read_committed hides them.
    assert len(read(kafka_bootstrap, topics.events, "read_uncommitted")) > len(committed)
    rows = check_store(tmp_path / "store", ALL)
    assert f"acquisitions processed: {len(ALL) - len(committed_before)}\n" in summary
    _report("SIGKILL mid-transaction", len(ALL) * N_PARCELS, committed, found.duplicates, rows)


@pytest.mark.kafka
def test_crash_between_store_write_and_commit_is_redone_once(
    kafka_bootstrap: str,
    topics: Topics,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    publish(kafka_bootstrap, topics.source, [item_message(p) for p in ITEMS])
    # One acquisition per transaction; the process exits right after the 5th store write.
    first = start_worker(
        kafka_bootstrap,
        topics,
        tmp_path,
        "store-crash",
        "--exit-when-idle",
        "120",
        "--max-batch",
        "1",
        env={EXIT_AFTER_STORE_ENV: "5"},
    )
    processes.append(first)
    assert first.wait(timeout=120) == EXIT_AFTER_STORE_CODE
    committed_before = observation_products(read(kafka_bootstrap, topics.events))
    stored_before = set(stored_products(tmp_path / "store"))
    # Four committed, the fifth in the store only: its events and offset never committed.
    assert len(committed_before) == 4
    assert len(stored_before) == 5
    assert committed_before < stored_before

    second = start_worker(kafka_bootstrap, topics, tmp_path, "store-crash", "--exit-when-idle", "3")
    processes.append(second)
    summary = finish(second)

    committed = read(kafka_bootstrap, topics.events)
    found = check_events(committed, ALL)
    rows = check_store(tmp_path / "store", ALL)
    assert f"acquisitions processed: {len(ALL) - 4}\n" in summary
    _report("exit between store write and commit", len(ALL) * N_PARCELS, committed, 0, rows)
    assert found.duplicates == 0


@pytest.mark.kafka
def test_an_acquisition_published_twice_or_reprocessed_is_emitted_once(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    s2 = ITEMS[-1]
    # The same item twice in a row (one transaction), then the whole season.
    first_run = [item_message(s2), item_message(s2), *(item_message(p) for p in ITEMS)]
    publish(kafka_bootstrap, topics.source, first_run)
    summary = _in_process_worker(kafka_bootstrap, topics, store, "dup-1").run()
    assert (summary.acquisitions, summary.duplicates) == (len(ALL), 2)
    kept = ObservationStore(store).products()
    kept_bytes = {p.path.name: p.path.read_bytes() for p in kept}

    # Later, by another worker instance: the item again, and a newer processing of the same
    # product id whose reflectance scale differs (its observations would differ).
    newer = absolute_item(s2)
    newer["properties"]["processing:version"] = "99.0"
    newer["assets"]["B04"]["raster:bands"][0]["scale"] = 0.0002
    publish(
        kafka_bootstrap, topics.source, [item_message(s2), (b"31UFS", json.dumps(newer).encode())]
    )
    again = _in_process_worker(kafka_bootstrap, topics, store, "dup-2").run()
    assert (again.acquisitions, again.duplicates, again.events) == (0, 2, 0)

    committed = read(kafka_bootstrap, topics.events)
    found = check_events(committed, ALL)
    # The store keeps the first processed version, byte for byte.
    assert {p.path.name: p.path.read_bytes() for p in ObservationStore(store).products()} == (
        kept_bytes
    )
    rows = check_store(store, ALL)
    _report(
        "duplicate x3 + newer reprocessing x1",
        len(ALL) * N_PARCELS,
        committed,
        found.duplicates,
        rows,
    )


def _rss_kib(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


@pytest.mark.kafka
@pytest.mark.slow
def test_a_member_killed_and_a_third_added_mid_stream(
    kafka_bootstrap: str, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    topics = new_topics(kafka_bootstrap, partitions=6)
    messages = season_messages(4)
    publish(kafka_bootstrap, topics.source, messages)
    one = ("--exit-when-idle", "8", "--max-batch", "1")
    a = start_worker(kafka_bootstrap, topics, tmp_path, "a", *one)
    b = start_worker(kafka_bootstrap, topics, tmp_path, "b", *one)
    processes.extend([a, b])
    total = len(messages) * N_PARCELS
    wait_for(
        lambda: end(kafka_bootstrap, topics.events, "read_committed") >= total // 4,
        "a quarter of the events",
        timeout=180,
    )
    a.kill()
    a.wait(timeout=30)
    c = start_worker(kafka_bootstrap, topics, tmp_path, "c", *one)
    processes.append(c)
    finish(b, timeout=300)
    finish(c, timeout=300)

    products = product_ids(messages)
    committed = read(kafka_bootstrap, topics.events)
    found = check_events(committed, products)
    rows = check_store(tmp_path / "store", products)
    _report("member SIGKILLed + third joined", total, committed, found.duplicates, rows)


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_broker_of_three_stopped_and_restarted_during_processing(
    kafka_cluster: ClusterHandle, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    bootstrap = kafka_cluster.bootstrap
    topics = new_topics(bootstrap, partitions=3, replication=3)
    messages = season_messages(2)
    publish(bootstrap, topics.source, messages)
    worker = start_worker(
        bootstrap, topics, tmp_path, "cluster", "--exit-when-idle", "20", "--max-batch", "1"
    )
    processes.append(worker)
    total = len(messages) * N_PARCELS
    wait_for(lambda: end(bootstrap, topics.events, "read_committed") > 0, "first events", 180)
    # The crash of the worker's transaction coordinator: what hung kafka-python's calls.
    victim = transaction_coordinator(bootstrap, "parcel-monitor-cluster")
    # Read while every node is up: a client's first metadata request may go to the dead one.
    stopped_at = end(bootstrap, topics.events, "read_committed")
    kafka_cluster.stop_node(victim, kill=True)  # a crash: leaders and coordinators move
    time.sleep(10)
    kafka_cluster.start_node(victim)
    summary = finish(worker, timeout=400)

    products = product_ids(messages)
    committed = read(bootstrap, topics.events)
    found = check_events(committed, products)
    rows = check_store(tmp_path / "store", products)
    assert stopped_at < total
    # Acquisitions processed more than once: those of the transactions the crash cut short.
    log = "".join(p.read_text() for p in tmp_path.glob("cluster-*.log"))
    redone = len(re.findall(r"acquisition product_id=", log)) - len(messages)
    print(f"\n{summary.splitlines()[-1]}; acquisitions redone after a retry: {redone}")
    _report(
        f"broker {victim} of 3 (transaction coordinator) SIGKILLed 10 s",
        total,
        committed,
        found.duplicates,
        rows,
    )


def _raster_bytes(path: Path) -> int:
    """One acquisition's rasters as float64 arrays on its declared grid: every asset read."""
    acq = read_item(path)
    return acq.shape[0] * acq.shape[1] * len(acq.assets) * 8


@pytest.mark.kafka
@pytest.mark.slow
def test_a_season_backlog_in_order_per_tile_with_bounded_memory(
    kafka_bootstrap: str,
    topics: Topics,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    messages = season_messages(4)
    publish(kafka_bootstrap, topics.source, messages)  # the backlog is there before the worker
    worker = start_worker(kafka_bootstrap, topics, tmp_path, "backlog", "--exit-when-idle", "5")
    processes.append(worker)
    total = len(messages) * N_PARCELS
    peaks: list[tuple[int, int]] = []  # (committed events, peak RSS so far in KiB)

    def sample() -> None:
        while worker.poll() is None:
            try:
                hwm = _rss_kib(worker.pid, "VmHWM")
                done = end(kafka_bootstrap, topics.events, "read_committed")
            except (OSError, AssertionError):
                return
            peaks.append((done, hwm))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    finish(worker, timeout=400)
    sampler.join(timeout=30)

    products = product_ids(messages)
    committed = read(kafka_bootstrap, topics.events)
    found = check_events(committed, products)
    rows = check_store(tmp_path / "store", products)
    # In order per tile: the worker's processing log, grouped by tile, is each tile's stream
    # in acquisition time.
    log = "".join(p.read_text() for p in tmp_path.glob("backlog-*.log"))
    processed = re.findall(r"acquisition product_id=(\S+) tile=(\S+)", log)
    acquired: dict[str, list[tuple[str, str]]] = {}
    for key, value in messages:
        item = json.loads(value)
        acquired.setdefault(key.decode(), []).append((item["properties"]["datetime"], item["id"]))
    seen: dict[str, list[str]] = {}
    for product, tile in processed:
        seen.setdefault(tile, []).append(product)
    assert seen == {tile: [p for _, p in sorted(stream)] for tile, stream in acquired.items()}
    # Bounded memory: after the first quarter of the backlog the peak grows by less than a few
    # acquisitions' rasters plus an allowance for allocator slack; it never grows with the
    # backlog's length. The absolute bound allows for the interpreter and its libraries
    # (GDAL, Arrow, polars, kafka-python) beside the data.
    rasters_kib = max(_raster_bytes(path) for path in ITEMS) // 1024
    early = max((hwm for done, hwm in peaks if done <= total // 4), default=0)
    final = max(hwm for _, hwm in peaks)
    assert early > 0
    assert final - early <= 4 * rasters_kib + 16 * 1024
    assert final <= 4 * rasters_kib + 512 * 1024
    print(
        f"\nBACKLOG {len(messages)} acquisitions of at most {rasters_kib} KiB of rasters "
        f"(float64): worker peak RSS {early / 1024:.0f} MiB after a quarter, "
        f"{final / 1024:.0f} MiB at the end"
    )
    _report("season backlog", total, committed, found.duplicates, rows)
