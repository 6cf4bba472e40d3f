"""`parcel-monitor replay` on the bundled real season (Mol 2023: 12 S2 + 10 S1, 42 parcels).

What is checked: every acquisition gives one observation event per parcel, in acquisition
order; the events file is the same bytes across runs and across an interrupted + resumed run
(interrupted after a checkpoint, or between an acquisition's events and its checkpoint); bad
items become dead letters and the rest goes on; events to Kafka are seen once by a
read_committed consumer.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import polars as pl
import pytest
from kafka_records import consume

from monitor import replay as replay_module
from monitor.broker import create_topics
from monitor.catalog import iter_catalog
from monitor.cli import main
from monitor.errors import ConfigError, StoreError
from monitor.events import ParcelEvent
from monitor.pipeline import AcquisitionResult
from monitor.practices import EVENT_TYPES as PRACTICE_TYPES
from monitor.replay import ReplayJob, ReplaySummary, run_replay
from monitor.store import ObservationStore
from tests.sample_data import sample_path

MOL = sample_path("mol-2023")
PARCELS = MOL / "segments.gpkg"
N_PARCELS = 42
N_ACQUISITIONS = 22


class Interrupted(Exception):
    """Stands for a crash (kill, power cut) in the middle of a replay."""


def _job(folder: Path, catalog: Path = MOL, **options: str) -> ReplayJob:
    return ReplayJob(
        catalog=catalog,
        parcels=PARCELS,
        store=folder / "store",
        events_out=folder / "events.jsonl",
        id_column="segment_id",
        label_cache=folder / "labels",
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReplaySummary]:
    """One full replay of the sample season into a file; its folder and summary."""
    folder = tmp_path_factory.mktemp("full")
    summary, _ = run_replay(_job(folder))
    return folder, summary


def _events(path: Path) -> list[ParcelEvent]:
    return [ParcelEvent.from_json(line) for line in path.read_bytes().splitlines()]


def _observations(path: Path) -> list[ParcelEvent]:
    """The observation events of an events file (the models add their own)."""
    return [e for e in _events(path) if e.type == "observation"]


def test_every_acquisition_gives_an_event_per_parcel(
    full_run: tuple[Path, ReplaySummary],
) -> None:
    folder, summary = full_run
    every = _events(folder / "events.jsonl")
    events = [e for e in every if e.type == "observation"]
    assert len(events) == N_ACQUISITIONS * N_PARCELS
    assert summary.acquisitions == N_ACQUISITIONS
    assert summary.events_by_type["observation"] == N_ACQUISITIONS * N_PARCELS
    # The models' events come along (the default stages run in a replay).
    assert sum(summary.events_by_type.values()) == len(every)
    assert set(summary.events_by_type) <= {
        "observation",
        "reconstruction",
        "heterogeneity",
        *PRACTICE_TYPES,
    }
    assert summary.parcels == N_PARCELS
    assert summary.dead_letters == ()
    assert len({e.event_id for e in every}) == len(every)
    # In acquisition order: the events of one product are contiguous, products in catalog order.
    products: list[str] = []
    for event in events:
        (product,) = event.evidence.product_ids
        if not products or products[-1] != product:
            products.append(product)
        assert event.detected_at == event.time  # deterministic: stamped with the acquisition
    assert products == [acq.product_id for _, acq in iter_catalog(MOL)]
    # The store holds the same observations.
    stored = ObservationStore(folder / "store").scan().collect()
    assert stored.filter(pl.col("source") == "observed").height == N_ACQUISITIONS * N_PARCELS
    rebuilt = stored.filter(pl.col("source") == "reconstructed").height
    assert rebuilt == summary.events_by_type.get("reconstruction", 0)
    assert (folder / "dead-letters.jsonl").read_bytes() == b""


def test_two_runs_give_the_same_bytes(full_run: tuple[Path, ReplaySummary], tmp_path: Path) -> None:
    run_replay(_job(tmp_path))
    first = (full_run[0] / "events.jsonl").read_bytes()
    assert (tmp_path / "events.jsonl").read_bytes() == first


def test_a_finished_replay_reruns_as_a_no_op(full_run: tuple[Path, ReplaySummary]) -> None:
    folder, _ = full_run
    before = (folder / "events.jsonl").read_bytes()
    summary, _ = run_replay(_job(folder))
    assert summary.acquisitions == 0
    assert summary.skipped == N_ACQUISITIONS
    assert (folder / "events.jsonl").read_bytes() == before


def test_resume_after_an_interruption_between_acquisitions(
    full_run: tuple[Path, ReplaySummary], tmp_path: Path
) -> None:
    seen: list[str] = []

    def crash_after_seven(result: AcquisitionResult) -> None:
        seen.append(result.acquisition.product_id)
        if len(seen) == 7:
            raise Interrupted

    with pytest.raises(Interrupted):
        run_replay(_job(tmp_path), on_acquisition=crash_after_seven)
    partial = _observations(tmp_path / "events.jsonl")
    assert len(partial) == 7 * N_PARCELS

    summary, _ = run_replay(_job(tmp_path))
    assert summary.skipped == 7
    assert summary.acquisitions == N_ACQUISITIONS - 7
    assert (tmp_path / "events.jsonl").read_bytes() == (full_run[0] / "events.jsonl").read_bytes()


def test_resume_drops_the_events_of_an_unfinished_acquisition(
    full_run: tuple[Path, ReplaySummary], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A crash after the 10th acquisition's events reached the file, before its checkpoint.
    real_record = replay_module._Journal.record
    calls = 0

    def record(self: replay_module._Journal, key: str, status: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 10:
            raise Interrupted
        real_record(self, key, status)  # type: ignore[arg-type]

    monkeypatch.setattr(replay_module._Journal, "record", record)
    with pytest.raises(Interrupted):
        run_replay(_job(tmp_path))
    monkeypatch.undo()
    assert len(_observations(tmp_path / "events.jsonl")) == 10 * N_PARCELS
    # And a torn half line, as a kill in the middle of the append would leave.
    with (tmp_path / "events.jsonl").open("ab") as fh:
        fh.write(b'{"confidence":0.5,"detec')

    summary, _ = run_replay(_job(tmp_path))
    assert summary.skipped == 9
    assert (tmp_path / "events.jsonl").read_bytes() == (full_run[0] / "events.jsonl").read_bytes()


def test_a_checkpoint_of_another_replay_is_refused(
    full_run: tuple[Path, ReplaySummary], tmp_path: Path
) -> None:
    folder, _ = full_run
    with pytest.raises(ConfigError, match="belongs to another replay"):
        run_replay(_job(folder, start="2023-04-10"))
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"{}\n")
    with pytest.raises(ConfigError, match="not a resumable replay"):
        run_replay(_job(tmp_path))
    assert events.read_bytes() == b"{}\n"


def test_changed_events_or_checkpoint_files_are_refused(tmp_path: Path) -> None:
    run_replay(_job(tmp_path, end="2023-04-05"))
    events = tmp_path / "events.jsonl"
    events.write_bytes(events.read_bytes()[:100])
    with pytest.raises(StoreError, match="fewer than the"):
        run_replay(_job(tmp_path, end="2023-04-05"))
    checkpoint = tmp_path / "events.checkpoint.jsonl"
    with checkpoint.open("ab") as fh:
        fh.write(b"garbage\n")
    with pytest.raises(StoreError, match=r"line \d+ is not JSON"):
        run_replay(_job(tmp_path, end="2023-04-05"))


def test_time_range_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.jsonl"
    args = [
        "replay",
        str(MOL),
        "--parcels",
        str(PARCELS),
        "--id-column",
        "segment_id",
        "--store",
        str(tmp_path / "store"),
        "--events-out",
        str(events),
        "--from",
        "2023-04-10",
        "--to",
        "2023-04-17",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    products = {e.evidence.product_ids[0] for e in _events(events)}
    expected = {
        "S2_31UFS_20230410_L2A",
        "S1_IW_GRD_31UFS_20230412",
        "S2_31UFS_20230412_L2A",
        "S1_IW_GRD_31UFS_20230415",
        "S2_31UFS_20230415_L2A",
        "S1_IW_GRD_31UFS_20230417",
        "S2_31UFS_20230417_L2A",
    }
    assert products == expected
    assert len(_observations(events)) == len(expected) * N_PARCELS
    assert f"replayed {len(expected)} acquisitions" in out
    assert f"observation {len(expected) * N_PARCELS}" in out
    assert "0 dead letters" in out


def test_bad_items_are_dead_lettered_and_the_rest_replayed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = tmp_path / "catalog"
    shutil.copytree(MOL, catalog, ignore=shutil.ignore_patterns("*.gpkg"))
    (catalog / "s2" / "S2_31UFS_20230412_L2A" / "item.json").write_text('{"type": "Feat')
    # A raster that exists but is no GeoTIFF: found only when the engine reads it.
    (catalog / "s1" / "S1_IW_GRD_31UFS_20230420" / "VV.tif").write_bytes(b"not a tiff" * 50)
    out = tmp_path / "out"
    args = [
        "replay",
        str(catalog),
        "--parcels",
        str(PARCELS),
        "--id-column",
        "segment_id",
        "--store",
        str(out / "store"),
        "--events-out",
        str(out / "events.jsonl"),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "2 dead letters" in printed
    assert "s2/S2_31UFS_20230412_L2A/item.json: item payload: malformed JSON" in printed

    events = _observations(out / "events.jsonl")
    assert len(events) == (N_ACQUISITIONS - 2) * N_PARCELS
    products = {e.evidence.product_ids[0] for e in events}
    assert "S1_IW_GRD_31UFS_20230420" not in products
    letters = [json.loads(line) for line in (out / "dead-letters.jsonl").read_text().splitlines()]
    assert [(d["item"], d["stage"], d["product_id"]) for d in letters] == [
        ("s2/S2_31UFS_20230412_L2A/item.json", "validate", None),
        ("s1/S1_IW_GRD_31UFS_20230420/item.json", "process", "S1_IW_GRD_31UFS_20230420"),
    ]
    assert "VV" in letters[1]["reason"]

    # Rerunning neither retries nor repeats the dead letters.
    before = (out / "dead-letters.jsonl").read_bytes()
    assert main(args) == 0
    assert "replayed 0 acquisitions (22 done before)" in capsys.readouterr().out
    assert (out / "dead-letters.jsonl").read_bytes() == before


def test_events_file_or_kafka_exactly_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["replay", str(MOL), "--parcels", str(PARCELS), "--store", str(tmp_path)]
    assert main([*base, "--bootstrap", "127.0.0.1:9"]) == 2
    assert "--bootstrap needs --topic" in capsys.readouterr().err
    assert main([*base, "--events-out", str(tmp_path / "e.jsonl"), "--topic", "t"]) == 2
    assert "--topic goes with --bootstrap" in capsys.readouterr().err


@pytest.mark.kafka
def test_replay_to_kafka_delivers_every_event_once(
    kafka_bootstrap: str, full_run: tuple[Path, ReplaySummary], tmp_path: Path
) -> None:
    topic = f"parcel-events-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, {topic: 6})
    job = ReplayJob(
        catalog=MOL,
        parcels=PARCELS,
        store=tmp_path / "store",
        bootstrap=kafka_bootstrap,
        topic=topic,
        id_column="segment_id",
    )
    done = 0

    def crash_after_five(result: AcquisitionResult) -> None:
        nonlocal done
        done += 1
        if done == 5:
            raise Interrupted

    with pytest.raises(Interrupted):
        run_replay(job, on_acquisition=crash_after_five)
    summary, outputs = run_replay(job)
    assert summary.skipped == 5
    assert outputs.checkpoint.is_relative_to(tmp_path / "store")

    n_events = len(_events(full_run[0] / "events.jsonl"))  # observations and model events
    records = [
        (key, value)
        for _, key, value in consume(
            kafka_bootstrap, topic, n_events, isolation_level="read_committed"
        )
    ]
    assert len(records) == n_events
    events = [ParcelEvent.from_json(value) for _, value in records]
    assert all(key.decode() == e.parcel_id for (key, _), e in zip(records, events, strict=True))
    expected = {e.event_id: e.to_json() for e in _events(full_run[0] / "events.jsonl")}
    assert {e.event_id: e.to_json() for e in events} == expected
