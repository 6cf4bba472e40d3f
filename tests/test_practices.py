"""Practice detection: the network, its export, the shipped model on a simulated season, the
NDVI rule baseline, `parcel-monitor detect`, and no re-emission as a series grows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from models.practices import PracticeNet, PracticeProbabilities, from_onnx
from models.practices_training import TOLERANCE_DAYS, export_module, match_events
from monitor import _core, practices
from monitor.cli import main
from monitor.errors import ConfigError, KernelError, ModelError, ObservationError
from monitor.events import validate_event
from monitor.infer import InferenceConfig, artifact_path, load_model
from monitor.practices import (
    CHANNELS,
    GRID_START_DOY,
    INPUT_NAME,
    MOVED_WINDOWS,
    N_BINS,
    OUTPUT_NAME,
    PRACTICES,
    WINDOW_DAYS,
    PredictionMemo,
    detect_practices,
    ndvi_rule_events,
    practice_events,
    predict,
    series_tensor,
)
from monitor.store import ObservationStore

SEASON = 2025


@pytest.fixture(scope="module")
def season(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pl.DataFrame, pl.DataFrame]:
    """A small simulated season replayed into a store: (store, observations, truth)."""
    from monitor.replay import ReplayJob, run_replay
    from monitor.simulate import simulate_season

    root = tmp_path_factory.mktemp("practices")
    sim = root / "sim"
    simulate_season(sim, 256, 40, SEASON, seed=11, crops="PPH,PRL,BTH,MIS", clear_truth=False)
    store = root / "store"
    job = ReplayJob(sim, sim / "parcels.parquet", store, events_out=root / "events.jsonl")
    run_replay(job)
    observations = ObservationStore(store).scan().collect().drop("season")
    truth = pl.read_parquet(sim / "truth" / "practices.parquet").filter(
        pl.col("area_fraction") >= 0.5
    )
    truth = truth.select(pl.col("id_parcel").alias("parcel_id"), "type", "date")
    return store, observations, truth


def _row(parcel: str, day: date, ndvi: float, *, valid: float = 1.0, sensor: str = "S2") -> dict:
    moment = datetime(day.year, day.month, day.day, 10, 30, tzinfo=UTC)
    return {
        "parcel_id": parcel,
        "acquired": moment,
        "sensor": sensor,
        "product_id": f"{sensor}_{day:%Y%m%d}",
        "tile": "31UFS",
        "valid_fraction": valid,
        "source": "observed",
        "NDVI_mean": ndvi,
    }


def _series(parcel: str, start: date, ndvi: list[float], step: int = 5, **kw: float) -> list[dict]:
    return [_row(parcel, start + timedelta(days=step * i), v, **kw) for i, v in enumerate(ndvi)]


# -- the network -------------------------------------------------------------------------------


def test_forward_pass_has_one_logit_per_practice_and_bin() -> None:
    net = PracticeNet()
    series = torch.randn(5, len(CHANNELS), N_BINS)
    logits = net(series)
    assert logits.shape == (5, len(PRACTICES), N_BINS)
    probability = PracticeProbabilities(net)(series)
    assert probability.shape == logits.shape
    assert bool(((probability >= 0) & (probability <= 1)).all())


def test_onnx_runtime_matches_pytorch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = PracticeProbabilities(PracticeNet()).eval()
    path = tmp_path / "practices.onnx"
    export_module(module, path)
    model = load_model(path, InferenceConfig(threads=1))
    assert model.input_names == [INPUT_NAME]
    rng = np.random.default_rng(0)
    for batch in (1, 37):
        series = rng.normal(size=(batch, len(CHANNELS), N_BINS)).astype(np.float32)
        got = model.run({INPUT_NAME: series})[OUTPUT_NAME]
        with torch.no_grad():
            want = module(torch.from_numpy(series)).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    # and the weights read back from the ONNX file give the same network
    with torch.no_grad():
        again = PracticeProbabilities(from_onnx(str(path)))(torch.from_numpy(series)).numpy()
    np.testing.assert_allclose(again, want, atol=1e-6, rtol=0)


# -- the grid ------------------------------------------------------------------------------


def test_series_tensor_masks_clouds_and_interpolates_gaps() -> None:
    rows = [
        _row("a", date(SEASON, 4, 1), 0.2),
        _row("a", date(SEASON, 4, 11), 0.9, valid=0.1),  # cloudy: missing, not a value
        _row("a", date(SEASON, 4, 21), 0.6),
    ]
    tensor = series_tensor(pl.DataFrame(rows))
    assert tensor.keys.rows() == [("a", SEASON, "31UFS")]
    x = tensor.values[0]
    ndvi, observed = x[CHANNELS.index("NDVI")], x[CHANNELS.index("S2_observed")]
    seen = np.flatnonzero(observed)
    assert len(seen) == 2
    first, last = seen
    inside = ndvi[first : last + 1]
    assert np.all(np.diff(inside) > 0)  # a straight line from 0.2 to 0.6 across the cloud
    assert ndvi[0] == ndvi[first]
    assert ndvi[-1] == ndvi[last]
    # no Sentinel-1 columns: their channels are neutral and unobserved
    assert not x[CHANNELS.index("VV") : CHANNELS.index("S1_observed") + 1].any()


def test_reconstructed_rows_fill_only_masked_bins() -> None:
    rows = [_row("a", date(SEASON, 5, 1), 0.7), _row("a", date(SEASON, 5, 11), 0.2, valid=0.0)]
    rebuilt = [
        {**r, "source": "reconstructed", "NDVI_mean": 0.75}
        for r in (_row("a", date(SEASON, 5, 1), 0), _row("a", date(SEASON, 5, 11), 0))
    ]
    x = series_tensor(pl.DataFrame(rows + rebuilt)).values[0]
    flag, observed = x[CHANNELS.index("S2_reconstructed")], x[CHANNELS.index("S2_observed")]
    assert observed.sum() == 1
    assert flag.sum() == 1
    assert np.flatnonzero(flag)[0] > np.flatnonzero(observed)[0]


def _two_year_table() -> pl.DataFrame:
    rows = []
    for parcel, tile in (("b", "31UFS"), ("a", "31TCJ"), ("a", "31UFS"), ("c", None)):
        for year in (SEASON - 1, SEASON):
            ndvi = [0.3, 0.5, 0.8, 0.4, 0.7] if parcel != "c" else [0.6, 0.6, 0.2, 0.6, 0.6]
            for row in _series(parcel, date(year, 4, 1), ndvi, step=7):
                rows.append({**row, "tile": tile, "VV_mean": -12.0, "VH_mean": -19.0})
    s1 = {"sensor": "S1", "NDVI_mean": None, "tile": "31UFS", "VV_mean": -11.0, "VH_mean": -18.0}
    rows.append({**_row("a", date(SEASON, 5, 1), 0.9), **s1})
    return pl.DataFrame(rows)


def test_series_are_parcel_years_whatever_the_row_order() -> None:
    table = _two_year_table()
    tensor = series_tensor(table)
    # one series per parcel and year, sorted; a parcel seen from two tiles takes the smaller
    assert tensor.keys.rows() == [
        ("a", SEASON - 1, "31TCJ"), ("a", SEASON, "31TCJ"),
        ("b", SEASON - 1, "31UFS"), ("b", SEASON, "31UFS"),
        ("c", SEASON - 1, None), ("c", SEASON, None),
    ]  # fmt: skip
    shuffled = series_tensor(table.sample(fraction=1.0, shuffle=True, seed=1))
    assert shuffled.keys.equals(tensor.keys)
    np.testing.assert_array_equal(shuffled.values, tensor.values)
    # only the Sentinel-1 row feeds the S1 channels (S2 rows carrying VV do not)
    assert tensor.values[:, CHANNELS.index("S1_observed")].sum(axis=1).tolist() == [
        0,
        1,
        0,
        0,
        0,
        0,
    ]


def test_many_chunk_and_sliced_tables_give_the_same_tensor() -> None:
    # the kernel reads Arrow buffers: values and null bits, per chunk joined or offset
    table = _two_year_table()
    whole = series_tensor(table)
    chunked = pl.concat([table.slice(0, 7), table.slice(7)], rechunk=False)
    assert chunked.n_chunks() > 1
    np.testing.assert_array_equal(series_tensor(chunked).values, whole.values)
    offset = pl.concat([table.head(3), table], rechunk=True).slice(3)
    assert offset.get_column("NDVI_mean").to_arrow().offset == 3
    np.testing.assert_array_equal(series_tensor(offset).values, whole.values)


def test_ranks_in_parallel_pieces_match_a_sort_of_the_distinct_values() -> None:
    """Parcel ranks (grouped by their bytes in parallel parts, in Rust) against polars' sorted
    distinct values, on a column long enough for many parts: random, many-chunk and sliced,
    with nulls (ranked last), ids inline in their string views, short and long."""
    rng = np.random.default_rng(5)
    n = 300_000
    numbers = pl.Series("parcel_id", rng.integers(0, 7_000, n))
    for prefix in ("", "c1/31UFS", "FR-2025/parcelle-"):  # up to 12, 13-16, 17+ bytes
        ids = pl.lit(prefix) + numbers.cast(pl.String)
        ids = pl.select(ids.alias("parcel_id")).to_series()
        ids = ids.set(pl.Series(rng.random(n) < 0.01), None)
        many_chunks = pl.concat([ids.slice(0, 1), ids.slice(1, 99_999), ids.slice(100_000)])
        assert many_chunks.n_chunks() > 1
        sliced = pl.concat([ids.head(33), ids], rechunk=True).slice(33)
        for values in (ids, many_chunks, sliced):
            distinct, rank = practices._ranks(values)
            expected = values.unique().sort(nulls_last=True)
            assert distinct.equals(expected)
            assert rank.dtype == np.uint32
            assert distinct.gather(rank).equals(values)


def test_string_views_outside_their_buffers_are_a_one_line_error() -> None:
    ((views, validity, buffers),) = practices._string_views(pl.Series("p", ["a-long-parcel-id"]))
    with pytest.raises(KernelError, match="outside its buffers") as err:
        _core.practice_string_ranks([(views, validity, [buffers[0][:4]])])
    assert "\n" not in str(err.value)


def test_missing_required_column_is_a_one_line_error() -> None:
    table = pl.DataFrame(_series("a", date(SEASON, 4, 1), [0.5, 0.6])).drop("valid_fraction")
    with pytest.raises(ObservationError, match="missing column 'valid_fraction'") as err:
        series_tensor(table)
    assert "\n" not in str(err.value)


def test_bad_dtypes_are_refused_and_naive_times_taken_as_utc() -> None:
    table = pl.DataFrame(_series("a", date(SEASON, 4, 1), [0.5, 0.6, 0.7]))
    with pytest.raises(ObservationError, match="column 'NDVI_mean' has dtype String"):
        series_tensor(table.with_columns(pl.col("NDVI_mean").cast(pl.String)))
    with pytest.raises(ObservationError, match="column 'acquired' has dtype String"):
        series_tensor(table.with_columns(pl.col("acquired").cast(pl.String)))
    for column in ("parcel_id", "acquired"):
        holed = table.with_columns(pl.when(pl.col("NDVI_mean") > 0.55).then(pl.col(column)))
        with pytest.raises(ObservationError, match=f"column '{column}' has 1 null value"):
            series_tensor(holed)
    naive = table.with_columns(pl.col("acquired").dt.replace_time_zone(None))
    np.testing.assert_array_equal(series_tensor(naive).values, series_tensor(table).values)


# -- the baseline --------------------------------------------------------------------------


def test_ndvi_rule_finds_drops_with_and_without_recovery() -> None:
    mowed = _series("grass", date(SEASON, 5, 1), [0.8, 0.82, 0.55, 0.7, 0.8, 0.81])
    harvested = _series("wheat", date(SEASON, 7, 1), [0.7, 0.68, 0.3, 0.28, 0.3, 0.29])
    steady = _series("forest", date(SEASON, 5, 1), [0.85, 0.78, 0.84, 0.8, 0.86])
    cloud = [_row("grass", date(SEASON, 6, 20), 0.1, valid=0.2)]  # masked: not a drop
    events = ndvi_rule_events(pl.DataFrame(mowed + harvested + steady + cloud))
    assert events.rows() == [
        ("grass", "mowing", date(SEASON, 5, 8)),  # half-way between 6 and 11 May (rounded down)
        ("wheat", "harvest", date(SEASON, 7, 8)),
    ]


def test_event_matching_is_one_to_one_within_the_tolerance() -> None:
    truth = pl.DataFrame(
        {"parcel_id": ["a", "a", "b"], "type": "mowing",
         "date": [date(SEASON, 5, 10), date(SEASON, 6, 20), date(SEASON, 5, 10)]}
    )  # fmt: skip
    predicted = pl.DataFrame(
        {"parcel_id": ["a", "a", "a", "b"], "type": "mowing",
         "date": [date(SEASON, 5, 12), date(SEASON, 5, 9), date(SEASON, 7, 1),
                  date(SEASON, 5, 10) + timedelta(days=TOLERANCE_DAYS + 1)]}
    )  # fmt: skip
    tp, fp, fn, errors = match_events(predicted, truth, "mowing")
    assert (tp, fp, fn, errors) == (1, 3, 2, [1])


# -- the shipped model ---------------------------------------------------------------------


def test_shipped_model_finds_the_simulated_practices(
    season: tuple[Path, pl.DataFrame, pl.DataFrame],
) -> None:
    _, observations, truth = season
    events = detect_practices(observations)
    assert events.get_column("event_id").is_unique().all()
    predicted = events.select("parcel_id", pl.col("type").str.strip_prefix("practice."), "date")
    tp, fp, fn, _ = match_events(predicted, truth, "mowing")
    f1 = 2 * tp / (2 * tp + fp + fn)
    rule_tp, rule_fp, rule_fn, _ = match_events(ndvi_rule_events(observations), truth, "mowing")
    rule_f1 = 2 * rule_tp / (2 * rule_tp + rule_fp + rule_fn)
    # Held out, the model scores 0.88 on 600 parcels (model card); 0.7 leaves room for the
    # sampling noise of ~40 parcels while still failing a model no better than the NDVI rule
    # (0.27 held out).
    assert tp + fn >= 20
    assert f1 >= 0.7, (f1, tp, fp, fn)
    assert f1 > rule_f1 + 0.2
    # every event lies in the season and says where its evidence comes from
    assert events.get_column("date").dt.year().unique().to_list() == [SEASON]
    assert (events.get_column("product_ids").list.len() >= 1).all()
    for event in practice_events(events.head(20), datetime(SEASON, 11, 1, tzinfo=UTC)):
        validate_event(event.to_dict())


def test_detection_does_not_re_emit_as_the_series_grows(
    season: tuple[Path, pl.DataFrame, pl.DataFrame],
) -> None:
    _, observations, _ = season
    day = datetime(SEASON, 7, 15, tzinfo=UTC)
    first = detect_practices(observations.filter(pl.col("acquired") <= day))
    later = observations.filter(pl.col("acquired") <= day + timedelta(days=30))
    second = detect_practices(later)
    assert first.height >= 10
    key = ["parcel_id", "type"]
    window = (pl.col("date").dt.ordinal_day() - GRID_START_DOY) // WINDOW_DAYS
    near = (
        first.with_columns(window.alias("window"))
        .join(second.with_columns(window.alias("window")), on=key, suffix="_2")
        .filter((pl.col("window") - pl.col("window_2")).abs() <= MOVED_WINDOWS)
        .select("event_id", "event_id_2")
    )
    # The first run's events are found again (more data may overturn a few weak early calls:
    # ~5 % per month on the held-out seasons), most with their exact id.
    assert near.get_column("event_id").n_unique() >= 0.9 * first.height
    same = set(first.get_column("event_id")) & set(second.get_column("event_id"))
    assert len(same) >= 0.8 * first.height
    # told what was emitted, the second run emits only new events
    fresh = detect_practices(later, emitted=set(first.get_column("event_id")))
    assert not set(fresh.get_column("event_id")) & set(near.get_column("event_id_2"))
    assert fresh.height == second.height - near.get_column("event_id_2").n_unique()


def test_evidence_is_the_clear_images_around_the_event(
    season: tuple[Path, pl.DataFrame, pl.DataFrame],
) -> None:
    _, observations, _ = season
    events = detect_practices(observations).head(50)
    clear = observations.filter(
        (pl.col("sensor") == "S2")
        & (pl.col("valid_fraction") >= 0.5)
        & (pl.col("source") == "observed")
    )
    for event in events.iter_rows(named=True):
        rows = clear.filter(pl.col("parcel_id") == event["parcel_id"])
        before = rows.filter(pl.col("acquired") < event["time"]).sort("acquired").tail(1)
        after = rows.filter(pl.col("acquired") >= event["time"]).sort("acquired").head(1)
        assert event["product_ids"] == [*before["product_id"], *after["product_id"]]
        assert event["ndvi_before"] == (before["NDVI_mean"].item() if before.height else None)
        assert event["ndvi_after"] == (after["NDVI_mean"].item() if after.height else None)


# -- the command ---------------------------------------------------------------------------


def test_detect_command_writes_events(
    season: tuple[Path, pl.DataFrame, pl.DataFrame],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store, observations, _ = season
    table = tmp_path / "observations.parquet"
    observations.write_parquet(table)
    out = tmp_path / "events.parquet"
    assert main(["detect", "--observations", str(table), "--out", str(out)]) == 0
    events = pl.read_parquet(out)
    assert events.height > 0
    assert set(events.get_column("type")) <= {f"practice.{p}" for p in PRACTICES}
    assert f"{events.height} events" in capsys.readouterr().out
    # the store folder gives the same events
    again = tmp_path / "from-store.parquet"
    assert main(["detect", "--observations", str(store), "--out", str(again)]) == 0
    assert (
        pl.read_parquet(again)
        .get_column("event_id")
        .sort()
        .equals(events.get_column("event_id").sort())
    )


def test_detect_command_degrades_without_sentinel1_and_refuses_without_ndvi(
    season: tuple[Path, pl.DataFrame, pl.DataFrame],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, observations, _ = season
    no_s1 = tmp_path / "no-s1.parquet"
    observations.filter(pl.col("sensor") == "S2").drop(
        "VV_mean", "VH_mean", "B02_mean", "B11_mean", strict=False
    ).write_parquet(no_s1)
    out = tmp_path / "events.parquet"
    assert main(["detect", "--observations", str(no_s1), "--out", str(out)]) == 0
    assert pl.read_parquet(out).height > 0
    capsys.readouterr()
    broken = tmp_path / "no-ndvi.parquet"
    observations.drop("NDVI_mean").write_parquet(broken)
    assert main(["detect", "--observations", str(broken), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "missing column 'NDVI_mean'" in err


def test_shipped_artifact_is_small() -> None:
    assert artifact_path("practices").stat().st_size < 5_000_000


def test_model_outputs_do_not_depend_on_the_rest_of_the_batch() -> None:
    """What `PredictionMemo` relies on: a series predicted alone, or among others, gets the
    same bits from ONNX Runtime on CPU."""
    model = load_model("practices", InferenceConfig())
    values = np.random.default_rng(3).standard_normal((700, len(CHANNELS), N_BINS))
    values = values.astype(np.float32)
    full = predict(model, values)
    for rows in (np.arange(1), np.arange(5, 90), np.arange(699, 0, -7)):
        assert np.array_equal(predict(model, np.ascontiguousarray(values[rows])), full[rows])


def test_batches_run_at_once_give_the_same_outputs() -> None:
    model = load_model("practices", InferenceConfig(threads=1))
    values = np.random.default_rng(5).standard_normal((9000, len(CHANNELS), N_BINS))
    values = values.astype(np.float32)  # many batches
    assert np.array_equal(predict(model, values, workers=2), predict(model, values))
    with pytest.raises(ConfigError, match="workers 0"):
        predict(model, values, workers=0)


def test_memo_reuses_unchanged_series_and_gives_the_same_events(
    season: tuple[Path, pl.DataFrame, pl.DataFrame],
) -> None:
    _, observations, _ = season
    memo = PredictionMemo()
    day = datetime(SEASON, 7, 15, tzinfo=UTC)
    table = observations.filter(pl.col("acquired") <= day)
    assert detect_practices(table, memo=memo).equals(detect_practices(table))
    assert memo.predicted == series_tensor(table).keys.height  # an empty memo predicts all

    # A next S2 date that only half of the parcels see clear: only their series change.
    latest = table.filter(pl.col("sensor") == "S2").get_column("acquired").max()
    parcels = table.get_column("parcel_id").unique().sort()
    seen = parcels.head(len(parcels) // 2)
    extra = table.filter(pl.col("acquired") == latest, pl.col("parcel_id").is_in(seen))
    extra = extra.with_columns(
        pl.col("acquired") + timedelta(days=1),
        pl.col("product_id") + "-next",
        pl.lit(1.0).alias("valid_fraction"),
        pl.col("NDVI_mean").fill_null(0.5),
    )
    grown = pl.concat([table, extra])
    assert detect_practices(grown, memo=memo).equals(detect_practices(grown))
    assert 0 < memo.predicted <= len(seen)

    # A month more of both sensors, then the same table again: nothing left to predict.
    later = observations.filter(pl.col("acquired") <= day + timedelta(days=30))
    assert detect_practices(later, memo=memo).equals(detect_practices(later))
    assert detect_practices(later, memo=memo).equals(detect_practices(later))
    assert memo.predicted == 0


def test_detection_batch_by_batch_matches_the_whole_tensor(
    season: tuple[Path, pl.DataFrame, pl.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The grid filled batch by batch, overlapped with the model, gives the events of the
    whole tensor run through the model (what a memo does), on many-chunk and sliced tables,
    whatever the batches and the workers."""
    _, observations, _ = season
    model = load_model("practices", InferenceConfig(threads=1))
    chunked = pl.concat(
        [observations.slice(0, 1000), observations.slice(1000, 5), observations.slice(1005)],
        rechunk=False,
    )
    assert chunked.n_chunks() > 1
    sliced = pl.concat([observations.head(77), observations], rechunk=True).slice(77)
    assert sliced.get_column("NDVI_mean").to_arrow().offset == 77
    monkeypatch.setattr(practices, "CPU_BATCH", 7)  # many batches of 7 series
    for table in (chunked, sliced):
        whole = detect_practices(table, model=model, memo=PredictionMemo())
        assert whole.height > 10
        for workers in (1, 3):
            assert detect_practices(table, model=model, workers=workers).equals(whole)


class _BrokenModel:
    name = "practices"
    backend = "onnxruntime"

    @property
    def input_names(self) -> list[str]:
        return [INPUT_NAME]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise ModelError("model practices: broken")


def test_a_model_error_in_a_batch_is_raised_by_detection(
    season: tuple[Path, pl.DataFrame, pl.DataFrame],
) -> None:
    _, observations, _ = season
    for workers in (1, 2):
        with pytest.raises(ModelError, match="broken"):
            detect_practices(observations, model=_BrokenModel(), workers=workers)
    with pytest.raises(ConfigError, match="workers 0"):
        detect_practices(observations, workers=0)
