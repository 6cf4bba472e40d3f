"""`parcel-monitor report`: a parcel's season drawn from a store filled by a real replay."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from matplotlib.image import imread

from monitor.cli import main
from monitor.errors import EventError, ParcelError
from monitor.events import ModelRef, make_event
from monitor.replay import ReplayJob, run_replay
from monitor.report import parcel_events, parcel_report
from monitor.store import ObservationStore
from tests.sample_data import sample_path

MOL = sample_path("mol-2023")
PARCEL = "mol-2023-0003"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def season(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store and events file from replaying the sample season, plus practice events and
    reconstructed rows for the cloudy Sentinel-2 dates of one product."""
    folder = tmp_path_factory.mktemp("season")
    job = ReplayJob(
        catalog=MOL,
        parcels=MOL / "segments.gpkg",
        store=folder / "store",
        events_out=folder / "events.jsonl",
        id_column="segment_id",
        stages=None,  # observations only: the events and reconstructed rows are planted below
    )
    run_replay(job)
    model = ModelRef("practices", "test")
    with (folder / "events.jsonl").open("ab") as fh:
        for kind, day, parcel in [
            ("practice.mowing", 12, PARCEL),
            ("heterogeneity", 20, PARCEL),
            ("practice.harvest", 22, "mol-2023-0004"),  # another parcel: not drawn
        ]:
            moment = datetime(2023, 4, day, tzinfo=UTC)
            event = make_event(kind, parcel, "31UFS", moment, moment, 0.8, model, ["p"], {})
            fh.write(event.to_json() + b"\n")
    store = ObservationStore(folder / "store")
    cloudy = store.scan().filter(pl.col("product_id") == "S2_31UFS_20230420_L2A").collect()
    rebuilt = cloudy.drop("season").with_columns(
        source=pl.lit("reconstructed"),
        valid_fraction=pl.lit(1.0),
        NDVI_mean=pl.lit(0.65),
    )
    store.write_acquisition(rebuilt)
    return folder


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_report_draws_the_parcel_season(season: Path) -> None:
    out = season / "report.png"
    summary = parcel_report(
        ObservationStore(season / "store"),
        PARCEL,
        out,
        events=season / "events.jsonl",
        size_px=(1200, 800),
    )
    assert _png_size(out) == (1200, 800)
    assert out.stat().st_size > 30_000
    assert summary.tiles == ("31UFS",)
    assert summary.season == 2023
    assert summary.clear_s2 + summary.masked_s2 == 12
    assert summary.clear_s2 >= 1
    assert summary.s1 == 10
    assert summary.reconstructed == 1
    assert summary.events == 2
    # Not a blank canvas: the curves, bands and event lines colour many pixels.
    pixels = imread(out)[..., :3]
    coloured = np.abs(pixels - pixels.mean(axis=-1, keepdims=True)).max(axis=-1) > 0.15
    assert coloured.mean() > 0.005


def test_events_of_the_parcel_are_picked_from_the_file(season: Path) -> None:
    events = parcel_events(season / "events.jsonl", PARCEL)
    assert [(e.type, e.time[:10]) for e in events] == [
        ("practice.mowing", "2023-04-12"),
        ("heterogeneity", "2023-04-20"),
    ]


def test_a_broken_events_file_names_its_line(season: Path, tmp_path: Path) -> None:
    broken = tmp_path / "events.jsonl"
    broken.write_bytes(b'{"parcel_id": "mol-2023-0003", "type": "practice.mowing"}\n')
    with pytest.raises(EventError, match=r"events.jsonl line 1: parcel event"):
        parcel_events(broken, PARCEL)


def test_report_command(season: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = season / "cli.png"
    args = ["report", "--store", str(season / "store"), "--parcel", PARCEL, "--out", str(out)]
    assert main([*args, "--width", "900", "--height", "600"]) == 0
    assert _png_size(out) == (900, 600)
    printed = capsys.readouterr().out
    assert f"parcel {PARCEL} (tile 31UFS, season 2023)" in printed
    assert "0 events" in printed


def test_unknown_parcel_is_a_one_line_error(
    season: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "none.png"
    args = ["report", "--store", str(season / "store"), "--parcel", "no-such-parcel"]
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "parcel 'no-such-parcel' has no observations" in err
    assert not out.exists()


def test_a_season_without_the_parcel_is_refused(season: Path, tmp_path: Path) -> None:
    with pytest.raises(ParcelError, match="no observations in season 2022 \\(it has 2023\\)"):
        parcel_report(ObservationStore(season / "store"), PARCEL, tmp_path / "x.png", season=2022)
