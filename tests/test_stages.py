"""The model stages in the engine, on a simulated season replayed with the default stages.

Checked against the simulator's ground truth: practice events near the true dates, heterogeneous
parcels flagged once. And the exactly-once rules: no event id twice in a season, redoing an
acquisition (a crash before the Kafka commit) emits the same events whatever the store already
holds, an interrupted and resumed replay writes the same bytes.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from monitor.catalog import read_catalog
from monitor.events import EVENT_TYPES, ParcelEvent, rfc3339
from monitor.parcels import load_parcels
from monitor.pipeline import AcquisitionResult, Engine, EngineConfig
from monitor.replay import ReplayJob, ReplaySummary, run_replay
from monitor.simulate import simulate_season
from monitor.stac import Acquisition
from monitor.stages.defaults import default_stages
from monitor.store import ObservationStore

TILE_PX = 256
N_PARCELS = 100
MODEL_TYPES = tuple(t for t in EVENT_TYPES if t != "observation")


class Interrupted(Exception):
    """Stands for a crash in the middle of a replay."""


@pytest.fixture(scope="module")
def season(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("season")
    simulate_season(root, TILE_PX, N_PARCELS, 2025, 0, overwrite=True, clear_truth=False)
    return root


def _job(season: Path, out: Path, **options: str) -> ReplayJob:
    return ReplayJob(
        catalog=season,
        parcels=season / "parcels.parquet",
        store=out / "store",
        events_out=out / "events.jsonl",
        label_cache=out / "labels",
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def replayed(season: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReplaySummary]:
    out = tmp_path_factory.mktemp("replayed")
    summary, _ = run_replay(_job(season, out))
    return out, summary


def _events(path: Path) -> list[ParcelEvent]:
    return [ParcelEvent.from_json(line) for line in path.read_bytes().splitlines()]


def _model_events(path: Path) -> list[ParcelEvent]:
    lines = path.read_bytes().splitlines()
    # A byte test skips the observation lines before any JSON parsing (most of the file).
    return [ParcelEvent.from_json(line) for line in lines if b'"type":"observation"' not in line]


def test_every_event_is_emitted_once(replayed: tuple[Path, ReplaySummary]) -> None:
    out, summary = replayed
    events = _events(out / "events.jsonl")
    assert len({e.event_id for e in events}) == len(events)
    assert summary.events_by_type == dict(sorted(Counter(e.type for e in events).items()))
    assert set(summary.events_by_type) == {"observation", *MODEL_TYPES}
    flagged = Counter(e.parcel_id for e in events if e.type == "heterogeneity")
    assert flagged
    assert max(flagged.values()) == 1  # once per parcel and season


def test_practice_events_match_the_true_practices(
    season: Path, replayed: tuple[Path, ReplaySummary]
) -> None:
    found = pl.DataFrame(
        [
            {"parcel_id": e.parcel_id, "type": e.type.removeprefix("practice."), "time": e.time}
            for e in _model_events(replayed[0] / "events.jsonl")
            if e.type.startswith("practice.")
        ]
    ).with_columns(pl.col("time").str.slice(0, 10).str.to_date().alias("found"))
    truth = pl.read_parquet(season / "truth" / "practices.parquet")
    for practice, min_recall in (("mowing", 0.6), ("harvest", 0.6), ("ploughing", 0.6)):
        true = truth.filter(pl.col("type") == practice).select("id_parcel", "date")
        near = (
            true.join(
                found.filter(pl.col("type") == practice),
                left_on="id_parcel",
                right_on="parcel_id",
                how="left",
            )
            .group_by("id_parcel", "date")
            .agg(((pl.col("found") - pl.col("date")).dt.total_days().abs() <= 6).any())
        )
        recall = near.get_column("found").fill_null(False).mean()
        assert isinstance(recall, float)
        assert true.height >= 10, practice
        assert recall >= min_recall, f"{practice}: {recall:.2f} of true dates found within 6 days"
        # And not a flood of false events: at most 1.5 per true practice.
        assert found.filter(pl.col("type") == practice).height <= 1.5 * true.height


def test_heterogeneous_parcels_are_flagged(
    season: Path, replayed: tuple[Path, ReplaySummary]
) -> None:
    flagged = {
        e.parcel_id
        for e in _model_events(replayed[0] / "events.jsonl")
        if e.type == "heterogeneity"
    }
    truth = pl.read_parquet(season / "truth" / "parcels.parquet")
    mixed = set(truth.filter(pl.col("heterogeneous")).get_column("id_parcel").to_list())
    assert mixed
    assert len(flagged & mixed) >= len(mixed) / 2  # recall
    assert len(flagged & mixed) >= len(flagged) / 2  # precision


def test_redoing_an_acquisition_emits_the_same_events(
    season: Path, replayed: tuple[Path, ReplaySummary]
) -> None:
    """A redo (crash after the store write, before the Kafka commit) over a store that holds
    the whole season gives, for each acquisition, the model events the replay emitted for it:
    its own state file does not count as emitted, later products' do not either."""
    out, _ = replayed
    by_time: dict[str, list[bytes]] = {}
    for event in _model_events(out / "events.jsonl"):
        by_time.setdefault(event.detected_at, []).append(event.to_json())
    store = ObservationStore(out / "store")
    engine = Engine(
        EngineConfig(
            load_parcels(season / "parcels.parquet"),
            store,
            out / "labels",
            stages=default_stages(),
        )
    )
    entries = read_catalog(season).entries
    busiest = sorted(entries, key=lambda e: -len(by_time.get(_stamp(e.acquisition), [])))[:3]
    assert by_time.get(_stamp(busiest[0].acquisition))
    states = len(list((out / "store").rglob("*.practices.parquet")))
    for entry in busiest:
        result = engine.process(entry.acquisition)
        redone = [e.to_json() for e in result.events if e.type in MODEL_TYPES]
        assert redone == by_time.get(_stamp(entry.acquisition), [])
    # Redoing replaced the state files, it did not add any.
    assert len(list((out / "store").rglob("*.practices.parquet"))) == states == len(entries)


def _stamp(acq: Acquisition) -> str:
    return rfc3339(acq.acquired)


@pytest.mark.slow  # the bundled Mol season checks the same in the default suite (test_replay)
def test_an_interrupted_and_resumed_replay_writes_the_same_bytes(
    season: Path, replayed: tuple[Path, ReplaySummary], tmp_path: Path
) -> None:
    """Replaying up to June, interrupted after 20 acquisitions and resumed, writes exactly the
    first part of the full season's events file (events are decided as of each acquisition)."""
    job = _job(season, tmp_path, end="2025-06-15")
    done = 0

    def crash_after_twenty(result: AcquisitionResult) -> None:
        nonlocal done
        done += 1
        if done == 20:
            raise Interrupted

    with pytest.raises(Interrupted):
        run_replay(job, on_acquisition=crash_after_twenty)
    summary, _ = run_replay(job)
    assert summary.skipped == 20
    part = (tmp_path / "events.jsonl").read_bytes()
    full = (replayed[0] / "events.jsonl").read_bytes()
    assert any(e.type in MODEL_TYPES for e in _events(tmp_path / "events.jsonl"))
    assert full.startswith(part)
    assert len(part) < len(full)


def test_a_season_that_opens_with_a_radar_date_runs_every_stage(
    season: Path, tmp_path: Path
) -> None:
    """A worker whose first acquisition of a tile is Sentinel-1 (no optical column in the store
    yet) runs the model stages instead of failing on the missing NDVI column."""
    entries = read_catalog(season).entries
    radar = next(e for e in entries if e.acquisition.sensor == "S1")
    optical = next(e for e in entries if e.acquisition.sensor == "S2")
    engine = Engine(
        EngineConfig(
            load_parcels(season / "parcels.parquet"),
            ObservationStore(tmp_path / "store"),
            tmp_path / "labels",
            stages=default_stages(),
        )
    )
    first = engine.process(radar.acquisition)
    assert set(first.events.type_counts()) == {"observation"}
    assert first.observations.height > 0
    assert engine.process(optical.acquisition).observations.height > 0
