"""Training, export and evaluation of the practice detector (`models.practices.PracticeNet`).

Data: simulated seasons (`monitor.simulate`, 512 px, 300 parcels, 1 March - 31 October), each
replayed through the engine (`monitor.replay`) with the reconstruction stage on, into an
observation store, so the model trains on exactly what the engine produces: zonal statistics
with the SCL cloud mask and its misses, and the cloud-removal model's reconstructed rows.
Each season's observation table and practice truth are cached as Parquet under
`data_dir/practices/seed-N/` (rows, not tensors: the augmentations act on rows). Seeds
`TRAIN_SEEDS` train (the last one picks the epoch and thresholds), `EVAL_SEEDS` are held
out for `evaluate`.

Augmentations, drawn afresh each epoch per series, for real-data robustness: dropped dates and
a 10- or 15-day revisit, residual thin clouds the mask missed (NDVI pulled down, visible bands
up), date shifts of the whole season, gain and offset on NDVI, bands and backscatter, noise,
the Sentinel-1 rows or the band means dropped (NDVI-only tables), the reconstructed rows
dropped (the stage reads observed rows only by default), and, for most series, a cut at a
random day (the streaming case): a cut series' targets are only the practices it shows
`SUPPORT_DAYS` of aftermath for, so the model learns not to fire on a dip it cannot confirm.

Targets: a Gaussian (sigma `TARGET_SIGMA_DAYS`) around each true date, per practice; loss:
binary cross-entropy. Practices on under half a parcel's area are not targets. Thresholds:
per practice, the best mean of the whole-season and the streaming F1 on the validation season.

Evaluation: whole held-out seasons (as replayed, NDVI-only, degraded), the streaming case
(`streaming_events`: the season cut after each acquisition, events emitted once confirmed, as
`monitor.stages.practices.PracticeStage` does) at several confirmation delays, and the real
Slovenian NDVI series (plausibility: no truth there).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl
import torch

from models.practices import PracticeNet, PracticeProbabilities
from models.registry import EvaluationRow
from monitor.infer import Arrays, Backend, InferenceConfig, Model, load_model
from monitor.practices import (
    BIN_DAYS,
    DEFAULT_THRESHOLD,
    GRID_START_DOY,
    INPUT_NAME,
    N_BINS,
    OUTPUT_NAME,
    PRACTICES,
    PredictionMemo,
    detect_practices,
    ndvi_rule_events,
    series_tensor,
)

log = logging.getLogger(__name__)

SEASON: Final = 2025
TILE_SIZE: Final = 512
N_PARCELS: Final = 300
TRAIN_SEEDS: Final = tuple(range(1, 13))
EVAL_SEEDS: Final = (101, 102)
DEFAULT_EPOCHS: Final = 90
#: Share of augmented series cut at a random day, and the days of series a practice needs
#: after its date to be a target of a cut series (what the cut series can support).
CUT_FRACTION: Final = 0.6
SUPPORT_DAYS: Final = 8
COPIES: Final = 4  # augmented copies of each training series per epoch
TARGET_SIGMA_DAYS: Final = 4.0
MIN_AREA_FRACTION: Final = 0.5
TOLERANCE_DAYS: Final = 6
COLUMNS: Final = (
    "parcel_id",
    "acquired",
    "sensor",
    "product_id",
    "tile",
    "valid_fraction",
    "source",
    "NDVI_mean",
    "B02_mean",
    "B04_mean",
    "B08_mean",
    "B11_mean",
    "VV_mean",
    "VH_mean",
)
F32 = npt.NDArray[np.float32]


# ---------------------------------------------------------------------------------- data


def season_tables(data_dir: Path, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(observations, truth) of one simulated season, simulated and replayed when missing."""
    folder = data_dir / "practices" / f"seed-{seed}"
    observations, truth = folder / "observations.parquet", folder / "practices.parquet"
    if not (observations.is_file() and truth.is_file()):
        _simulate_and_replay(folder, seed)
    return pl.read_parquet(observations), pl.read_parquet(truth)


def _simulate_and_replay(folder: Path, seed: int) -> None:
    from monitor.replay import ReplayJob, run_replay
    from monitor.simulate import simulate_season
    from monitor.stages.defaults import StageOptions
    from monitor.store import ObservationStore

    started = time.perf_counter()
    sim, store = folder / "sim", folder / "store"
    for stale in (sim, store):
        shutil.rmtree(stale, ignore_errors=True)
    simulate_season(sim, TILE_SIZE, N_PARCELS, SEASON, seed, clear_truth=False)
    events = folder / "events.jsonl"
    events.unlink(missing_ok=True)
    # Reconstruction on (its rows come from the shipped cloud-removal model, as in the
    # engine); heterogeneity and practices off: they add nothing to the observation table.
    stages = StageOptions(practices=False, heterogeneity=False, reconstruction=True)
    job = ReplayJob(sim, sim / "parcels.parquet", store, events_out=events, stages=stages)
    run_replay(job)
    table = ObservationStore(store).scan().collect()
    table.select([c for c in COLUMNS if c in table.columns]).write_parquet(
        folder / "observations.parquet"
    )
    truth = pl.read_parquet(sim / "truth" / "practices.parquet").select(
        pl.col("id_parcel").alias("parcel_id"), "type", "date", "area_fraction"
    )
    truth.write_parquet(folder / "practices.parquet")
    # keep only the tables: the rasters are large and are not needed again
    shutil.rmtree(sim)
    shutil.rmtree(store)
    events.unlink(missing_ok=True)
    log.info("season seed %d simulated and replayed in %.0f s", seed, time.perf_counter() - started)


def _prefixed(df: pl.DataFrame, prefix: str) -> pl.DataFrame:
    return df.with_columns((pl.lit(prefix) + pl.col("parcel_id")).alias("parcel_id"))


def load_seasons(data_dir: Path, seeds: Sequence[int]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The observation tables and truths of several seasons, parcel ids prefixed `sN/`."""
    tables = [season_tables(data_dir, seed) for seed in seeds]
    observations = pl.concat(
        [_prefixed(obs, f"s{seed}/") for seed, (obs, _) in zip(seeds, tables, strict=True)],
        how="diagonal_relaxed",
    )
    truth = pl.concat(
        [_prefixed(t, f"s{seed}/") for seed, (_, t) in zip(seeds, tables, strict=True)]
    )
    return observations, truth.filter(pl.col("area_fraction") >= MIN_AREA_FRACTION)


def _ndvi(nir: pl.Expr, red: pl.Expr) -> pl.Expr:
    return (nir - red) / (nir + red)


def augment(
    observations: pl.DataFrame,
    truth: pl.DataFrame,
    rng: np.random.Generator,
    tag: str,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A perturbed copy of every series (ids prefixed `tag`), see the module docstring."""
    ids = observations.get_column("parcel_id").unique().sort()
    n = len(ids)

    def chance(p: float) -> npt.NDArray[np.bool_]:
        return rng.random(n) < p

    # what the table carries: everything, no S1, no band means, or NDVI only (as real
    # NDVI-only products and other countries' tables are)
    inputs = rng.random(n)
    ndvi_only = inputs < 0.45
    params = pl.DataFrame(
        {
            "parcel_id": ids,
            "shift": np.where(chance(0.6), rng.integers(-12, 13, n), 0),
            # most series end early: the stage sees the season grow one acquisition at a time
            "cut": np.where(chance(CUT_FRACTION), rng.uniform(75, 305, n), 999.0),
            "drop": np.where(chance(0.6), rng.uniform(0.0, 0.4, n), 0.0),
            # keep every 2nd or 3rd date: a 10- or 15-day revisit
            "revisit": np.where(chance(0.3), rng.choice([2, 3], n, p=[0.7, 0.3]), 1),
            "no_s1": ndvi_only | ((inputs >= 0.45) & (inputs < 0.55)),
            "no_bands": ndvi_only | ((inputs >= 0.55) & (inputs < 0.62)),
            "cloud": np.where(chance(0.6), rng.uniform(0.0, 0.15, n), 0.0),
            # the stage reads observed rows only by default; reconstructed rows are optional
            "no_rebuilt": chance(0.5),
            "ndvi_gain": rng.uniform(0.9, 1.1, n),
            "ndvi_offset": rng.uniform(-0.05, 0.05, n),
            "band_gain": rng.uniform(0.85, 1.15, n),
            "s1_offset": rng.normal(0.0, 1.0, n),
        }
    )
    rows = observations.height
    thin = rng.uniform(0.1, 0.5, rows)
    s2 = pl.col("sensor") == "S2"
    frame = (
        observations.join(params, on="parcel_id")
        .with_columns(
            pl.Series("u_drop", rng.random(rows)),
            pl.Series("u_cloud", rng.random(rows)),
            pl.Series("thin", thin),
            pl.Series("noise", rng.normal(0.0, 0.015, rows)),
            (pl.col("acquired") + pl.duration(days=pl.col("shift"))).alias("acquired"),
            pl.col("acquired").rank("dense").over("parcel_id", "sensor").alias("rank"),
        )
        .filter(pl.col("acquired").dt.ordinal_day() <= pl.col("cut"))
        .filter(~(s2 & (pl.col("u_drop") < pl.col("drop"))))
        .filter(~(s2 & (pl.col("rank") % pl.col("revisit") != 0)))
        .filter(~((pl.col("sensor") == "S1") & pl.col("no_s1")))
        .filter(~((pl.col("source") == "reconstructed") & pl.col("no_rebuilt")))
    )
    # Thin cloud the mask missed: reflectance pulled towards a bright, flat cloud spectrum.
    cloudy = s2 & (pl.col("valid_fraction") >= 0.5) & (pl.col("u_cloud") < pl.col("cloud"))
    a = pl.col("thin")
    hazed = {
        "B02_mean": pl.col("B02_mean") * (1 - a) + a * 0.30,
        "B04_mean": pl.col("B04_mean") * (1 - a) + a * 0.30,
        "B08_mean": pl.col("B08_mean") * (1 - a) + a * 0.33,
        "B11_mean": pl.col("B11_mean") * (1 - a) + a * 0.25,
    }
    ndvi_change = _ndvi(hazed["B08_mean"], hazed["B04_mean"]) - _ndvi(
        pl.col("B08_mean"), pl.col("B04_mean")
    )
    frame = frame.with_columns(
        pl.when(cloudy)
        .then(pl.col("NDVI_mean") + ndvi_change.fill_null(-0.3 * a))
        .otherwise(pl.col("NDVI_mean"))
        .alias("NDVI_mean"),
        *(pl.when(cloudy).then(e).otherwise(pl.col(c)).alias(c) for c, e in hazed.items()),
    )
    bands = ["B02_mean", "B04_mean", "B08_mean", "B11_mean"]
    frame = frame.with_columns(
        (pl.col("NDVI_mean") * pl.col("ndvi_gain") + pl.col("ndvi_offset") + pl.col("noise"))
        .clip(-1.0, 1.0)
        .alias("NDVI_mean"),
        *(
            pl.when(pl.col("no_bands"))
            .then(None)
            .otherwise(pl.col(b) * pl.col("band_gain"))
            .alias(b)
            for b in bands
        ),
        *(pl.col(b) + pl.col("s1_offset") for b in ("VV_mean", "VH_mean")),
        (pl.lit(tag) + pl.col("parcel_id")).alias("parcel_id"),
    )
    shifted = (
        truth.join(params.select("parcel_id", "shift", "cut"), on="parcel_id")
        .with_columns(pl.col("date") + pl.duration(days=pl.col("shift")))
        # a practice is a target once the cut series shows enough of its aftermath
        .filter(pl.col("date").dt.ordinal_day() <= pl.col("cut") - SUPPORT_DAYS)
        .select((pl.lit(tag) + pl.col("parcel_id")).alias("parcel_id"), "type", "date")
    )
    return frame.select(observations.columns), shifted


def targets(keys: pl.DataFrame, truth: pl.DataFrame) -> F32:
    """(series, practice, bin) Gaussian heat maps of the true dates of each series."""
    located = truth.join(
        keys.with_row_index("series").select("series", "parcel_id", "year"),
        left_on=["parcel_id", pl.col("date").dt.year()],
        right_on=["parcel_id", "year"],
    )
    out = np.zeros((keys.height, len(PRACTICES), N_BINS), dtype=np.float32)
    if located.is_empty():
        return out
    series = located.get_column("series").to_numpy().astype(np.int64)
    kind = (
        located.get_column("type")
        .replace_strict({p: i for i, p in enumerate(PRACTICES)}, return_dtype=pl.Int64)
        .to_numpy()
    )
    doy = located.get_column("date").dt.ordinal_day().to_numpy().astype(np.float32)
    centres = GRID_START_DOY + BIN_DAYS * np.arange(N_BINS, dtype=np.float32) + (BIN_DAYS - 1) / 2
    heat = np.exp(-0.5 * ((centres[None] - doy[:, None]) / TARGET_SIGMA_DAYS) ** 2)
    np.maximum.at(out, (series, kind), heat.astype(np.float32))
    return out


def _tensors(observations: pl.DataFrame, truth: pl.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
    tensor = series_tensor(observations)
    return torch.from_numpy(tensor.values), torch.from_numpy(targets(tensor.keys, truth))


# ------------------------------------------------------------------------------ training


def train(data_dir: Path, out_dir: Path, *, seed: int, epochs: int | None) -> Path:
    """Train on `TRAIN_SEEDS[:-1]`, pick the epoch and per-practice thresholds on the last."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    epochs = epochs or DEFAULT_EPOCHS
    data_dir.mkdir(parents=True, exist_ok=True)
    observations, truth = load_seasons(data_dir, TRAIN_SEEDS[:-1])
    val_obs, val_truth = load_seasons(data_dir, TRAIN_SEEDS[-1:])
    # validation: the season as replayed, and a perturbed copy of it
    val_aug = augment(val_obs, val_truth, np.random.default_rng(1), "v/")
    val_x, val_y = _tensors(
        pl.concat([val_obs, val_aug[0]], how="diagonal_relaxed"),
        pl.concat([val_truth.select(val_aug[1].columns), val_aug[1]]),
    )
    net = PracticeNet()
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    best, best_state = math.inf, net.state_dict()
    started = time.perf_counter()
    for epoch in range(epochs):
        lr = 3e-3 * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        for group in optimiser.param_groups:
            group["lr"] = lr
        copies = [augment(observations, truth, rng, f"e{k}/") for k in range(COPIES)]
        x, y = _tensors(
            pl.concat([observations, *(c[0] for c in copies)], how="diagonal_relaxed"),
            pl.concat([truth.select("parcel_id", "type", "date"), *(c[1] for c in copies)]),
        )
        net.train()
        order = torch.randperm(len(x))
        total = 0.0
        for start in range(0, len(x), 256):
            batch = order[start : start + 256]
            loss = loss_fn(net(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
        net.eval()
        with torch.no_grad():
            val = float(loss_fn(net(val_x), val_y))
        if val < best:
            best, best_state = val, {k: v.clone() for k, v in net.state_dict().items()}
        log.info(
            "epoch %d/%d: train %.4f, validation %.4f (%.0f s)",
            epoch + 1, epochs, total / len(x), val, time.perf_counter() - started,
        )  # fmt: skip
    net.load_state_dict(best_state)
    thresholds = _calibrate(net, val_obs, val_truth)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / "practices.pt"
    torch.save({"state_dict": net.state_dict(), "thresholds": thresholds}, checkpoint)
    (out_dir / "practices.json").write_text(
        json.dumps({"validation_bce": best, "thresholds": thresholds, "epochs": epochs}, indent=1)
    )
    return checkpoint


class _TorchModel:
    """A PyTorch network behind the runtime's `Model` interface (calibration only)."""

    name = "practices"
    backend: Backend = "onnxruntime"  # what the exported model will run on

    def __init__(self, net: PracticeNet) -> None:
        self.net = PracticeProbabilities(net).eval()

    @property
    def input_names(self) -> list[str]:
        return [INPUT_NAME]

    def run(self, inputs: Arrays) -> dict[str, npt.NDArray[Any]]:
        series = torch.from_numpy(np.ascontiguousarray(inputs[INPUT_NAME], dtype=np.float32))
        with torch.no_grad():
            return {OUTPUT_NAME: self.net(series).numpy()}


def _calibrate(net: PracticeNet, observations: pl.DataFrame, truth: pl.DataFrame) -> list[float]:
    """Per-practice thresholds maximising the mean of the whole-season event F1 and the
    streaming one (`streaming_events`, `CALIBRATION_CONFIRM_DAYS`) on the validation season,
    folded into the head's bias so that the exported model's 0.5 is each practice's best
    threshold. (Counting the NDVI-only F1 too pulls every threshold to 0.3 and costs ~8 points
    of streaming mowing precision.)"""
    model = _TorchModel(net)
    whole = _as_practices(detect_practices(observations, model=model, threshold=0.05))
    observed = observations.filter(pl.col("source") == "observed")
    memo = PredictionMemo()
    scores: dict[str, dict[float, float]] = {p: {} for p in PRACTICES}
    for threshold in CALIBRATION_THRESHOLDS:
        detector = model_detector(model, threshold, memo)
        streamed = streaming_events(observed, detector, CALIBRATION_CONFIRM_DAYS)
        kept = whole.filter(pl.col("confidence") >= threshold)
        for practice in PRACTICES:
            f1 = (_scores(kept, truth, practice)["F1"], _scores(streamed, truth, practice)["F1"])
            scores[practice][threshold] = sum(f1) / 2
            log.info("%s at %.4f: F1 whole %.4f, streaming %.4f", practice, threshold, *f1)
    chosen = []
    for practice in PRACTICES:
        # the lowest threshold as good as the best: ties keep recall on sparse real series
        top = max(scores[practice].values())
        best = min(t for t, f1 in scores[practice].items() if f1 >= top - CALIBRATION_TIE)
        log.info(
            "%s: threshold %.2f, validation F1 (mean) %.3f", practice, best, scores[practice][best]
        )
        chosen.append(round(best, 2))
    with torch.no_grad():
        bias = torch.tensor([math.log(t / (1 - t)) for t in chosen], dtype=torch.float32)
        net.head.bias -= bias  # type: ignore[operator]
    return chosen


def export(checkpoint: Path, onnx_path: Path) -> None:
    """ONNX (opset 17, dynamic batch): `series` (batch, channels, bins) -> `probability`."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    net = PracticeNet()
    net.load_state_dict(state["state_dict"])
    export_module(PracticeProbabilities(net).eval(), onnx_path)


def export_module(module: torch.nn.Module, onnx_path: Path) -> None:
    """Export a `PracticeProbabilities` module to ONNX (also used by the tests)."""
    from monitor.practices import CHANNELS

    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, len(CHANNELS), N_BINS)
    # The TorchScript exporter: a plain opset-17 graph of a static network, without the
    # onnxscript dependency of the torch.export-based one (hence its deprecation notices).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            (example,),
            str(onnx_path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


# ---------------------------------------------------------------------------- evaluation


def _as_practices(events: pl.DataFrame) -> pl.DataFrame:
    return events.select(
        "parcel_id",
        pl.col("type").str.strip_prefix("practice."),
        "date",
        "confidence",
    )


def match_events(
    predicted: pl.DataFrame, truth: pl.DataFrame, practice: str, tolerance: int = TOLERANCE_DAYS
) -> tuple[int, int, int, list[int]]:
    """Greedy one-to-one matching (closest first) of predicted and true dates of `practice`
    per parcel within `tolerance` days: (true positives, false positives, false negatives,
    date errors of the matches in days)."""
    pred = predicted.filter(pl.col("type") == practice).select("parcel_id", "date")
    true = truth.filter(pl.col("type") == practice).select("parcel_id", "date")
    pairs = (
        pred.with_row_index("p")
        .join(true.with_row_index("t"), on="parcel_id", suffix="_true")
        .with_columns((pl.col("date") - pl.col("date_true")).dt.total_days().abs().alias("err"))
        .filter(pl.col("err") <= tolerance)
        .sort("err", "p", "t")
    )
    used_p: set[int] = set()
    used_t: set[int] = set()
    errors = []
    for p, t, err in pairs.select("p", "t", "err").iter_rows():
        if p not in used_p and t not in used_t:
            used_p.add(p)
            used_t.add(t)
            errors.append(int(err))
    tp = len(errors)
    return tp, pred.height - tp, true.height - tp, errors


def _scores(predicted: pl.DataFrame, truth: pl.DataFrame, practice: str) -> dict[str, float]:
    tp, fp, fn, errors = match_events(predicted, truth, practice)
    return {
        "F1": 2 * tp / max(2 * tp + fp + fn, 1),
        "precision": tp / max(tp + fp, 1),
        "recall": tp / max(tp + fn, 1),
        "median_date_error_days": float(np.median(errors)) if errors else math.nan,
    }


def evaluate(onnx_path: Path, data_dir: Path) -> list[EvaluationRow]:
    """Event F1 (±6 days), precision, recall and median date error per practice on the held-out
    seasons (as replayed, observed rows only, NDVI only, and degraded: NDVI only, 30 % of dates
    dropped, 8 % residual thin clouds), and in streaming (`streaming_rows`), model against the
    NDVI drop-and-recovery rule; plus what the model finds on the real Slovenian NDVI series
    (no practice truth there: counts per land use)."""
    model = load_model(onnx_path, InferenceConfig())
    observations, truth = load_seasons(data_dir, EVAL_SEEDS)
    truth = truth.select("parcel_id", "type", "date")
    datasets = {
        "sim-heldout": observations,
        # what the stage reads by default: reconstructed rows left out
        "sim-heldout-observed": observations.filter(pl.col("source") == "observed"),
        "sim-heldout-ndvi-only": ndvi_only(observations),
        "sim-heldout-degraded": degrade(observations, np.random.default_rng(7)),
    }
    rows: list[EvaluationRow] = []
    for dataset, table in datasets.items():
        rows.extend(
            _score_rows(
                dataset, "model", _as_practices(detect_practices(table, model=model)), truth
            )
        )
        rows.extend(_score_rows(dataset, "ndvi-rule (drop>=0.15)", ndvi_rule_events(table), truth))
    rows.extend(streaming_rows(model, observations, truth, EVAL_SEEDS))
    rows.extend(slovenia_rows(model))
    return rows


STREAMING_CONFIRM_DAYS: Final = (6, 12, 18)
CALIBRATION_CONFIRM_DAYS: Final = 12
CALIBRATION_THRESHOLDS: Final = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
CALIBRATION_TIE: Final = 0.005  # mean F1s this close are a tie
#: The rule has no event ids: a redetection of the same practice this close to an emitted one
#: is the same event (the model's ids allow up to `MOVED_WINDOWS` 8-day windows, ~16 days).
RULE_SAME_EVENT_DAYS: Final = 16


def streaming_events(
    observations: pl.DataFrame,
    detect: Callable[[pl.DataFrame, set[str]], pl.DataFrame],
    confirm_days: int,
) -> pl.DataFrame:
    """The events a growing series emits, as `monitor.stages.practices.PracticeStage` does:
    the table is cut after each acquisition time, `detect(cut table, emitted ids)` runs on the
    rows acquired up to it, and the events dated at least `confirm_days` before the cut are
    emitted (their ids then suppress redetections). One season (tile) per table: the cuts are
    its acquisitions. Columns parcel_id, type (without `practice.`), date, emitted_at."""
    emitted: set[str] = set()
    out = []
    for cut in observations.get_column("acquired").unique().sort():
        found = detect(observations.filter(pl.col("acquired") <= cut), emitted)
        found = found.filter(pl.col("time") <= cut - timedelta(days=confirm_days))
        if found.height:
            emitted.update(found.get_column("event_id").to_list())
            out.append(_as_practices(found).with_columns(pl.lit(cut).alias("emitted_at")))
    if not out:
        return pl.DataFrame(
            schema={"parcel_id": pl.String, "type": pl.String, "date": pl.Date,
                    "confidence": pl.Float64, "emitted_at": pl.Datetime("us", "UTC")}
        )  # fmt: skip
    return pl.concat(out)


def model_detector(
    model: Model, threshold: float = DEFAULT_THRESHOLD, memo: PredictionMemo | None = None
) -> Callable[[pl.DataFrame, set[str]], pl.DataFrame]:
    """`detect_practices` with the ids already emitted and a memo, as the stage calls it."""
    memo = memo or PredictionMemo()

    def detect(table: pl.DataFrame, emitted: set[str]) -> pl.DataFrame:
        return detect_practices(table, model=model, threshold=threshold, emitted=emitted, memo=memo)

    return detect


def rule_detector() -> Callable[[pl.DataFrame, set[str]], pl.DataFrame]:
    """The NDVI rule in the stage's loop: its events get ids (parcel, type, date), and a
    redetection within `RULE_SAME_EVENT_DAYS` of an emitted event of the same parcel and type
    is dropped (the rule's date and mowing/harvest call can change as the series grows)."""

    def detect(table: pl.DataFrame, emitted: set[str]) -> pl.DataFrame:
        events = (
            ndvi_rule_events(table)
            .with_columns((pl.lit("practice.") + pl.col("type")).alias("type"))
            .with_columns(
                pl.concat_str(
                    "parcel_id", "type", pl.col("date").cast(pl.String), separator="|"
                ).alias("event_id"),
                pl.col("date").cast(pl.Datetime("us", "UTC")).alias("time"),
                pl.lit(1.0).alias("confidence"),
            )
        )
        if not emitted or events.is_empty():
            return events
        old = pl.DataFrame(
            [e.split("|") for e in emitted], schema=["parcel_id", "type", "old"], orient="row"
        ).with_columns(pl.col("old").str.to_date())
        near = (
            events.join(old, on=["parcel_id", "type"])
            .filter((pl.col("date") - pl.col("old")).dt.total_days().abs() <= RULE_SAME_EVENT_DAYS)
            .get_column("event_id")
        )
        return events.filter(~pl.col("event_id").is_in(near.implode()))

    return detect


def streaming_rows(
    model: Model, observations: pl.DataFrame, truth: pl.DataFrame, seeds: Sequence[int]
) -> list[EvaluationRow]:
    """Scores of the events emitted as each held-out season grows (`streaming_events`, per
    season, observed rows only as the stage reads them by default), at each of
    `STREAMING_CONFIRM_DAYS`, model against the NDVI rule."""
    observed = observations.filter(pl.col("source") == "observed")
    rows: list[EvaluationRow] = []
    for confirm in STREAMING_CONFIRM_DAYS:
        found: dict[str, list[pl.DataFrame]] = {"model": [], "ndvi-rule (drop>=0.15)": []}
        for seed in seeds:
            season = observed.filter(pl.col("parcel_id").str.starts_with(f"s{seed}/"))
            found["model"].append(streaming_events(season, model_detector(model), confirm))
            found["ndvi-rule (drop>=0.15)"].append(
                streaming_events(season, rule_detector(), confirm)
            )
        dataset = f"sim-heldout-streaming-confirm{confirm}"
        for method, frames in found.items():
            events = pl.concat(frames)
            rows.extend(_score_rows(dataset, method, events, truth))
    return rows


def _score_rows(
    dataset: str, method: str, events: pl.DataFrame, truth: pl.DataFrame
) -> list[EvaluationRow]:
    """Per practice scores; the rule cannot tell ploughing from harvest, so its unrecovered
    drops are scored as ploughings too."""
    rows = []
    for practice in PRACTICES:
        predicted = events
        if method.startswith("ndvi-rule") and practice == "ploughing":
            predicted = events.with_columns(pl.col("type").replace({"harvest": practice}))
        for metric, value in _scores(predicted, truth, practice).items():
            rows.append(EvaluationRow("practices", dataset, method, f"{practice} {metric}", value))
    return rows


def ndvi_only(observations: pl.DataFrame) -> pl.DataFrame:
    """The Sentinel-2 rows with NDVI as their only statistic."""
    return observations.filter(pl.col("sensor") == "S2").select(
        "parcel_id", "acquired", "sensor", "product_id", "tile", "valid_fraction", "source",
        "NDVI_mean",
    )  # fmt: skip


def degrade(observations: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """The held-out table as a harsher source would give it: NDVI only (no bands, no
    Sentinel-1), 30 % of the Sentinel-2 dates dropped, 8 % of the clear ones under thin cloud."""
    rows = observations.height
    s2 = pl.col("sensor") == "S2"
    thin = pl.Series("thin", rng.uniform(0.1, 0.5, rows))
    hazed = _ndvi(
        pl.col("B08_mean") * (1 - thin) + thin * 0.33, pl.col("B04_mean") * (1 - thin) + thin * 0.30
    )
    cloudy = pl.Series("cloudy", rng.random(rows) < 0.08)
    kept = pl.Series("kept", rng.random(rows) >= 0.3)
    return ndvi_only(
        observations.with_columns(
            pl.when(cloudy & s2)
            .then(pl.col("NDVI_mean") + hazed - _ndvi(pl.col("B08_mean"), pl.col("B04_mean")))
            .otherwise(pl.col("NDVI_mean"))
            .alias("NDVI_mean")
        )
        .filter(s2 & kept)
        .select(
            "parcel_id",
            "acquired",
            "sensor",
            "product_id",
            "tile",
            "valid_fraction",
            "source",
            "NDVI_mean",
        )
    )


SLOVENIA: Final = Path(__file__).parents[1] / "examples" / "slovenia-2015-2017"


def slovenia_observations(folder: Path = SLOVENIA) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The real Slovenian NDVI stack as an observation table (NDVI only: clear pixels are those
    of the stack's cloud mask), and the land use of its parcels (parcel_id, land_use)."""
    import pyogrio
    import rasterio
    import shapely
    from rasterio.features import rasterize

    meta, table = pyogrio.read_arrow(folder / "land_use_parcels.gpkg")
    parcels = pl.from_arrow(table)
    assert isinstance(parcels, pl.DataFrame)
    geometries = shapely.from_wkb(parcels.get_column(meta["geometry_name"] or "geom").to_list())
    land_use = parcels.select(
        pl.col("index").cast(pl.String).alias("parcel_id"),  # RABA_ID repeats
        pl.col("LULC_NAME").alias("land_use"),
    )
    frames = []
    labels = None
    for path in sorted((folder / "ndvi").glob("*.tif")):
        with rasterio.open(path) as src:
            ndvi, _, mask = src.read()
            if labels is None:
                shapes = zip(geometries, range(1, len(geometries) + 1), strict=True)
                labels = rasterize(shapes, out_shape=src.shape, transform=src.transform, fill=0)
        flat = labels.ravel()
        clear = (mask.ravel() == 0) & np.isfinite(ndvi.ravel())
        pixels = np.bincount(flat, minlength=len(geometries) + 1)[1:]
        valid = np.bincount(flat[clear], minlength=len(geometries) + 1)[1:]
        weights = ndvi.ravel()[clear]
        sums = np.bincount(flat[clear], weights=weights, minlength=len(geometries) + 1)[1:]
        stamp = path.stem.split("_")[-1]
        frames.append(
            pl.DataFrame(
                {
                    "parcel_id": land_use.get_column("parcel_id"),
                    "acquired": [datetime_of(stamp)] * len(geometries),
                    "sensor": "S2",
                    "product_id": path.stem,
                    "tile": "33TVL",
                    "pixel_count": pixels.astype(np.uint32),
                    "valid_count": valid.astype(np.uint32),
                    "valid_fraction": valid / np.maximum(pixels, 1),
                    "source": "observed",
                    "NDVI_mean": np.where(valid > 0, sums / np.maximum(valid, 1), np.nan),
                }
            ).filter(pl.col("pixel_count") > 0)
        )
    return pl.concat(frames), land_use


def datetime_of(stamp: str) -> datetime:
    """`20170705T100026` as a UTC datetime."""
    return datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)


def slovenia_rows(model: Model) -> list[EvaluationRow]:
    """Events the model and the NDVI rule find on the real Slovenian series, per land use
    (events per parcel-year in 2016-2017, and the share dated April-October)."""
    observations, land_use = slovenia_observations()
    rows = []
    found = {
        "model": _as_practices(detect_practices(observations, model=model)),
        "ndvi-rule (drop>=0.15)": ndvi_rule_events(observations),
    }
    for method, events in found.items():
        events = events.filter(pl.col("date").dt.year().is_in([2016, 2017])).join(
            land_use, on="parcel_id"
        )
        for use in ("grassland", "cultivated land", "forest"):
            n_parcels = land_use.filter(pl.col("land_use") == use).height * 2  # two years
            mine = events.filter(pl.col("land_use") == use)
            for practice in PRACTICES:
                count = mine.filter(pl.col("type") == practice).height
                rows.append(
                    EvaluationRow(
                        "practices", f"slovenia-real {use}", method,
                        f"{practice} per parcel-year", count / max(n_parcels, 1),
                    )
                )  # fmt: skip
            in_season = mine.filter(pl.col("date").dt.month().is_between(4, 10)).height
            rows.append(
                EvaluationRow(
                    "practices", f"slovenia-real {use}", method, "share Apr-Oct",
                    in_season / mine.height if mine.height else math.nan,
                )
            )  # fmt: skip
    return rows
