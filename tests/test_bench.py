"""`parcel-monitor bench` on a small simulated tile: the stage table, the sizing, the errors."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from monitor.acquisition_index import INDEX_DIR, AcquisitionIndex
from monitor.bench import BenchConfig, CountryAssumptions, CountrySizing, run_bench
from monitor.cli import main
from monitor.errors import ConfigError
from monitor.store import ObservationStore

STAGES = (
    "parcels (load)",
    "labels (first build)",
    "models (load)",
    "labels (cached load)",
    "read, mask, zonal statistics",
    "store write",
    "events (build)",
    "model: heterogeneity",
    "model: practices",
    "events (serialise)",
)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench")


def test_bench_prints_every_stage_and_the_sizing(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "--work", str(work), "--tile-size", "256", "--n-parcels", "40", "--no-kafka"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for stage in STAGES:
        assert re.search(rf"^{re.escape(stage)}.*\s\d+\.\d\d\b", out, re.MULTILINE), stage
    assert "Kafka send" not in out
    assert "Kafka: not used" in out
    assert "grid 256 x 256" in out
    assert re.search(r"acquisitions/hour: \d+", out)
    assert re.search(r"-> \d+ such node\(s\) keep up", out)
    assert "peak memory" in out
    # The tile was simulated once and is reused.
    assert (work / "sim-256px-40p-seed0" / "catalog.json").is_file()


def test_report_counts_parcels_and_events(work: Path) -> None:
    report = run_bench(BenchConfig(work=work, tile_size=256, n_parcels=40, kafka=False))
    assert report.shape == (256, 256)
    assert 0 < report.n_parcels <= 40
    assert report.n_events >= report.n_parcels
    assert report.events_by_type["observation"] == report.n_parcels
    assert report.n_events == sum(report.events_by_type.values())
    assert report.event_bytes > 100 * report.n_events
    assert {"B04", "B08", "SCL"} <= set(report.bands)
    once = {s.name for s in report.stages if s.once}
    assert {"parcels (load)", "labels (first build)"} <= once
    per_acquisition = [s for s in report.stages if not s.once and not s.reference]
    assert {"model: heterogeneity", "model: practices"} <= {s.name for s in per_acquisition}
    assert report.acquisition_seconds == pytest.approx(sum(s.seconds for s in per_acquisition))
    zonal = next(s for s in report.stages if s.name == "read, mask, zonal statistics")
    assert zonal.pixels == 256 * 256
    assert zonal.parcels == report.n_parcels


def test_bench_on_a_catalog(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = work / "sim-256px-40p-seed0"
    if not catalog.is_dir():
        run_bench(BenchConfig(work=work, tile_size=256, n_parcels=40, kafka=False))
    argv = ["bench", "--work", str(work / "run"), "--catalog", str(catalog), "--no-kafka"]
    assert main(argv) == 0
    assert f"catalog {catalog}" in capsys.readouterr().out


def test_sizing_scales_with_acquisition_seconds() -> None:
    country = CountryAssumptions(tiles=60, burst_tiles=30, burst_hours=1.0)
    fast = CountrySizing(country, acquisition_seconds=60.0)
    assert country.acquisitions_per_day == pytest.approx(60 * (2 / 5 + 2 / 6))
    assert fast.nodes == 1
    slow = CountrySizing(country, acquisition_seconds=600.0)
    # 30 tiles x 600 s = 5 h of work to finish within 1 h.
    assert slow.nodes_for_burst == 5
    assert slow.nodes == 5


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--tile-size", "0"], "--tile-size 0"),
        (["--tile-size", "20000"], "--tile-size 20000"),
        (["--n-parcels", "0"], "--n-parcels 0"),
        (["--catalog", "/nonexistent/catalog"], "--catalog /nonexistent/catalog: not a folder"),
        (["--parcels", "p.parquet"], "--parcels goes with --catalog"),
        (["--tile-size", "64", "--n-parcels", "100000"], "cannot simulate the bench tile"),
    ],
)
def test_bad_arguments_give_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], reason: str
) -> None:
    assert main(["bench", "--work", str(tmp_path), "--no-kafka", *args]) == 2
    *progress, last = capsys.readouterr().err.strip().splitlines()
    assert last.startswith("parcel-monitor bench: error: ")
    assert reason in last
    assert all(line.startswith("bench: ") for line in progress)


def test_empty_catalog_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "catalog"
    empty.mkdir()
    (empty / "parcels.parquet").write_bytes(b"")
    with pytest.raises(ConfigError, match="no usable STAC item"):
        run_bench(BenchConfig(work=tmp_path / "work", catalog=empty, kafka=False))


def test_kafka_options_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--bootstrap", "127.0.0.1:9092", "--no-kafka"])
    assert exc.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


def _tiny_model(path: Path) -> Path:
    """A real ONNX model, (batch, 8) float -> (batch, 2), with a dynamic batch axis."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.ones((8, 2), dtype=np.float32), name="w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_inference_is_timed_per_model(work: Path, tmp_path: Path) -> None:
    model = _tiny_model(tmp_path / "tiny.onnx")
    config = BenchConfig(work=work, tile_size=256, n_parcels=40, kafka=False, models=(model,))
    report = run_bench(config)
    load = next(s for s in report.stages if s.name == "model load: tiny")
    assert load.once
    stage = next(s for s in report.stages if s.name == "model throughput: tiny")
    assert stage.reference
    assert stage.parcels == report.n_parcels
    assert stage.seconds > 0
    assert any("tiny: random inputs x [" in note for note in report.notes)
    assert "model throughput: tiny" in report.text()


@pytest.mark.kafka
def test_bench_sends_the_events_to_kafka(
    work: Path, kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "--work", str(work), "--tile-size", "256", "--n-parcels", "40"]
    assert main([*argv, "--bootstrap", kafka_bootstrap]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^Kafka send \+ commit\s+\d+\.\d\d", out, re.MULTILINE)
    assert f"Kafka: broker {kafka_bootstrap}" in out


def test_history_dates_time_a_mid_season_acquisition(tmp_path: Path) -> None:
    work = tmp_path / "history"
    config = BenchConfig(work=work, tile_size=256, n_parcels=40, kafka=False, history_dates=6)
    report = run_bench(config)
    assert report.product_id.endswith("-T6")
    history = next(s for s in report.stages if s.name.startswith("history"))
    assert history.once
    assert "6 dates" in history.note
    assert any("mid-season" in note for note in report.notes)
    store = ObservationStore(work / "store")
    products = {p.product_id for p in store.products()}
    assert len(products) == 7
    assert report.product_id in products
    sensors = store.scan().select("sensor").unique().collect().get_column("sensor").to_list()
    assert sorted(sensors) == ["S1", "S2"]
    # The S2 history dates and the timed one left pixel sets for heterogeneity.
    assert len(store.state_files("31UFS", 2025, "pixelsets")) == 4
    # Every date is in the acquisition index: cloud removal found its references and rebuilt
    # the cloudy parcels of the timed date (the simulated date is overcast).
    index = AcquisitionIndex(store.root / INDEX_DIR, store.season_of).entries("31UFS", 2025)
    assert len(index) == 7
    assert any("reference t0 BENCH-HISTORY-004-S2" in note for note in report.notes)
    assert report.events_by_type.get("reconstruction", 0) > 0
    reconstructed = store.scan().filter(pl.col("source") == "reconstructed").collect()
    assert set(reconstructed.get_column("product_id")) == {report.product_id}
    assert report.n_parcels == report.events_by_type["observation"]
    # Peak memory per stage, and the run's peak is the largest.
    peaks = [s.peak_rss_bytes for s in report.stages if not s.reference]
    assert all(p is not None and p > 0 for p in peaks)
    assert report.peak_rss_bytes >= max(p for p in peaks if p is not None)


def test_negative_history_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--history-dates -1"):
        BenchConfig(work=tmp_path, history_dates=-1)
