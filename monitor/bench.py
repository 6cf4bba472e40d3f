"""How fast one node processes a full-size Sentinel-2 tile acquisition, and what that means for
a country (`parcel-monitor bench`, `benchmarks/end_to_end_tile.py`).

`run_bench` simulates one full-tile date (cached under `work`) unless given a catalog, runs the
engine's per-acquisition steps on it one by one with a clock around each, and returns a
`BenchReport`: seconds, megapixels/s and parcels/s per stage, acquisitions/hour, peak memory,
and a `CountrySizing` of how many such nodes keep up with a country's tiles.

The acquisition goes through `Engine.process` itself, with the default model stages
(`monitor.stages.defaults`; none with `--no-models`), and the table shows the seconds it
clocked per stage (`AcquisitionResult.stage_seconds`: labels, read + mask + zonal statistics,
store, events, one row per model stage); the events go to Kafka the way the worker sends them
(`monitor.worker.EVENT_PRODUCER_SETTINGS`, one transaction). Each shipped model
(`monitor/artifacts/*.onnx`) is also timed apart on random inputs of its shapes, one batch item
per parcel: reference rows, out of the total, that show what a full run over every parcel costs
(a one-date bench gives the model stages little to do).

`--history-dates N` times a mid-season acquisition instead: the store first gets N earlier
acquisitions of the tile (synthetic, `monitor.bench_history`, made in a child process: only
their size is realistic; they are in the acquisition index with a clear reference date and
radar, so cloud removal reconstructs the timed date's cloudy parcels), the practice stage runs
on the last of them as the worker that processed it did (its memory of model outputs warm),
and the acquisition timed comes after them.

Every row also gives the peak resident memory of the process during its stage
(`monitor.peak_memory`: the kernel's high-water mark, reset per stage); the simulation and the
history run in child processes, whose peaks are their own.
"""

from __future__ import annotations

import math
import resource
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

from monitor.bench_history import HistoryJob, history_dates, history_in_child, warm_up
from monitor.catalog import read_catalog
from monitor.errors import BrokerError, ConfigError, ModelError
from monitor.heterogeneity import MIN_DATES
from monitor.infer import InferenceConfig, load_model
from monitor.parcels import load_parcels
from monitor.peak_memory import peak_rss
from monitor.pipeline import Engine, EngineConfig
from monitor.stac import Acquisition
from monitor.stages.defaults import StageOptions, default_stages
from monitor.stages.reconstruction import ReconstructionStage
from monitor.store import ObservationStore
from monitor.zonal import STAT_BANDS

FULL_TILE_PX: Final = 10980
GOAL_SECONDS: Final = 60.0
#: Random-input inference runs at most this long per model; the rest is extrapolated.
INFERENCE_BUDGET_S: Final = 10.0
#: Dynamic axes of a model input other than the batch axis (time steps, pixels) get this size.
DYNAMIC_AXIS_SIZE: Final = 32
#: Input bytes of one timed batch at most: a batch of 1024 cloud-removal tiles (128 x 128 px,
#: 10 planes) is 0.7 GB of input and took the bench past 20 GB of activations; the engine
#: runs that model 16 tiles at a time.
MAX_BATCH_INPUT_BYTES: Final = 16 * 2**20
_ONNX_DTYPES: Final = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchConfig:
    """What to measure: a simulated tile (default) or an item of a catalog, and where."""

    work: Path = Path("out/bench")
    tile_size: int = FULL_TILE_PX
    n_parcels: int = 200_000
    seed: int = 0
    catalog: Path | None = None
    parcels: Path | None = None
    id_column: str = "id_parcel"
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    #: ONNX models to time on random inputs; None: the shipped ones (`shipped_models()`).
    models: tuple[Path, ...] | None = None
    #: The default model stages the engine runs (None, `--no-models`: observations only).
    stages: StageOptions | None = field(default_factory=StageOptions)
    #: An existing broker; None starts a local one for the run when `kafka` is True.
    bootstrap: str | None = None
    kafka: bool = True
    #: Earlier acquisitions of the tile put in the store first (`monitor.bench_history`): the
    #: timed acquisition is then a mid-season one.
    history_dates: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.tile_size <= FULL_TILE_PX:
            raise ConfigError(f"--tile-size {self.tile_size}: must be 1 to {FULL_TILE_PX} px")
        if self.n_parcels < 1:
            raise ConfigError(f"--n-parcels {self.n_parcels}: must be at least 1")
        if self.catalog is not None and not self.catalog.is_dir():
            raise ConfigError(f"--catalog {self.catalog}: not a folder")
        if self.catalog is None and self.parcels is not None:
            raise ConfigError("--parcels goes with --catalog (a simulated tile has its own)")
        if self.bootstrap is not None and not self.kafka:
            raise ConfigError("--bootstrap and --no-kafka exclude each other")
        if self.history_dates < 0:
            raise ConfigError(f"--history-dates {self.history_dates}: must be 0 or more")


@dataclass(frozen=True)
class Stage:
    """One timed step. `once` steps happen per tile and parcel-set version, not per acquisition,
    and stay out of the acquisition total."""

    name: str
    seconds: float
    #: CPU seconds of this process (all threads): below `seconds` when others share the cores;
    #: None for the stages `Engine.process` clocks (wall time only).
    cpu_seconds: float | None
    pixels: int | None = None
    parcels: int | None = None
    once: bool = False
    note: str = ""
    #: Timed apart on random inputs, for reference: not a step of the acquisition.
    reference: bool = False
    #: Peak resident memory of the process during the stage (`monitor.peak_memory`).
    peak_rss_bytes: int | None = None

    @property
    def in_acquisition(self) -> bool:
        return not self.once and not self.reference

    @property
    def parcels_per_second(self) -> float | None:
        return None if self.parcels is None else self.parcels / max(self.seconds, 1e-9)


@dataclass(frozen=True)
class CountryAssumptions:
    """A country's acquisition load, France-like by default (3STR: ~60 MGRS tiles).

    Sentinel-2: each orbit track is revisited every 5 days by the two satellites, and a tile
    at mid-latitudes usually lies under two tracks (an acquisition every 2-3 days). Sentinel-1:
    ascending and descending tracks, each repeated every 6 days with two satellites. An S1
    product is costed as an S2 one: an upper bound (2 bands instead of 10 and a cloud mask).
    A pass over the country delivers about `burst_tiles` tiles within minutes; they should be
    processed within `burst_hours`.
    """

    tiles: int = 60
    s2_tracks_per_tile: float = 2.0
    s2_revisit_days: float = 5.0
    s1_tracks_per_tile: float = 2.0
    s1_revisit_days: float = 6.0
    burst_tiles: int = 30
    burst_hours: float = 1.0

    @property
    def s2_per_tile_day(self) -> float:
        return self.s2_tracks_per_tile / self.s2_revisit_days

    @property
    def s1_per_tile_day(self) -> float:
        return self.s1_tracks_per_tile / self.s1_revisit_days

    @property
    def acquisitions_per_day(self) -> float:
        return self.tiles * (self.s2_per_tile_day + self.s1_per_tile_day)


@dataclass(frozen=True)
class CountrySizing:
    """Nodes that keep up with a country, from the seconds one acquisition takes."""

    assumptions: CountryAssumptions
    acquisition_seconds: float

    @property
    def daily_node_seconds(self) -> float:
        return self.assumptions.acquisitions_per_day * self.acquisition_seconds

    @property
    def nodes_for_daily_load(self) -> int:
        return max(1, math.ceil(self.daily_node_seconds / 86_400))

    @property
    def nodes_for_burst(self) -> int:
        a = self.assumptions
        return max(1, math.ceil(a.burst_tiles * self.acquisition_seconds / (a.burst_hours * 3600)))

    @property
    def nodes(self) -> int:
        return max(self.nodes_for_daily_load, self.nodes_for_burst)

    def text(self) -> str:
        a = self.assumptions
        return "\n".join(
            [
                f"country sizing ({a.tiles} tiles; assumptions below):",
                f"  Sentinel-2: {a.s2_tracks_per_tile:g} orbit tracks per tile, each revisited "
                f"every {a.s2_revisit_days:g} days (2 satellites) -> "
                f"{a.s2_per_tile_day:.2f} acquisitions/tile/day",
                f"  Sentinel-1: {a.s1_tracks_per_tile:g} tracks (ascending, descending), "
                f"{a.s1_revisit_days:g}-day repeat -> {a.s1_per_tile_day:.2f} acquisitions/tile/day"
                ", each costed as an S2 one (upper bound)",
                f"  load: {a.acquisitions_per_day:.0f} acquisitions/day = "
                f"{self.daily_node_seconds / 3600:.1f} node-hours/day "
                f"({self.daily_node_seconds / 864:.1f} % of one node)",
                f"  a pass of {a.burst_tiles} tiles arriving together: "
                f"{a.burst_tiles * self.acquisition_seconds / 60:.0f} node-minutes "
                f"(done within {a.burst_hours:g} h on {self.nodes_for_burst} node(s))",
                f"  -> {self.nodes} such node(s) keep up with the country",
            ]
        )


@dataclass(frozen=True)
class BenchReport:
    """What `run_bench` measured on one acquisition."""

    source: str
    product_id: str
    shape: tuple[int, int]
    bands: tuple[str, ...]
    n_parcels: int
    n_events: int
    event_bytes: int
    backend: str
    kafka: str
    stages: tuple[Stage, ...]
    peak_rss_bytes: int
    notes: tuple[str, ...] = ()
    events_by_type: Mapping[str, int] = field(default_factory=dict)

    @property
    def acquisition_seconds(self) -> float:
        """Seconds of one acquisition: every stage but the `once` ones. Conservative: it counts
        loading the label raster from the disk cache, which a worker that already processed
        the tile skips (it keeps the raster in memory)."""
        return sum(s.seconds for s in self.stages if s.in_acquisition)

    @property
    def acquisition_cpu_seconds(self) -> float | None:
        """CPU seconds of the stages that have a CPU clock (the Kafka send, serialising)."""
        known = [s.cpu_seconds for s in self.stages if s.in_acquisition]
        return None if any(c is None for c in known) else sum(c for c in known if c is not None)

    @property
    def acquisition_peak_rss(self) -> int | None:
        """Peak RSS over the acquisition's stages (bytes), where measured."""
        peaks = [s.peak_rss_bytes for s in self.stages if s.in_acquisition]
        known = [p for p in peaks if p is not None]
        return max(known) if known else None

    @property
    def acquisitions_per_hour(self) -> float:
        return 3600 / max(self.acquisition_seconds, 1e-9)

    def sizing(self, assumptions: CountryAssumptions | None = None) -> CountrySizing:
        return CountrySizing(assumptions or CountryAssumptions(), self.acquisition_seconds)

    def text(self, assumptions: CountryAssumptions | None = None) -> str:
        """The report an operator reads: stage table, totals, country sizing."""
        height, width = self.shape
        pixels = height * width
        per_event = self.event_bytes / max(self.n_events, 1)
        lines = [
            f"acquisition {self.product_id} ({self.source})",
            f"grid {height} x {width} ({pixels / 1e6:.1f} Mpx), bands {', '.join(self.bands)}; "
            f"{self.n_parcels} parcels observed, {self.n_events} events ({per_event:.0f} B each)",
            f"inference backend: {self.backend}; Kafka: {self.kafka}",
            "",
            f"{'stage':<34}{'seconds':>9}{'CPU s':>8}{'Mpx/s':>9}{'parcels/s':>12}{'peak GiB':>10}",
        ]
        for stage in self.stages:
            flags = (
                "once per tile" if stage.once else "",
                "not in the total" if stage.reference else "",
            )
            note = ", ".join(n for n in (*flags, stage.note) if n)
            lines.append(
                _row(
                    stage.name,
                    stage.seconds,
                    stage.cpu_seconds,
                    stage.pixels,
                    stage.parcels,
                    note,
                    stage.peak_rss_bytes,
                )
            )
        total = self.acquisition_seconds
        small = pixels < FULL_TILE_PX**2
        lines += [
            "-" * 82,
            _row(
                "one acquisition",
                total,
                self.acquisition_cpu_seconds,
                pixels,
                self.n_parcels,
                "per-acquisition stages",
            ),
            f"acquisitions/hour: {self.acquisitions_per_hour:.0f}; "
            f"{total / GOAL_SECONDS:.2f}x the {GOAL_SECONDS:.0f} s goal for a full tile"
            + (f" (a full tile is {FULL_TILE_PX**2 / 1e6:.1f} Mpx)" if small else ""),
            f"peak memory (RSS of this process): {self.peak_rss_bytes / 2**30:.2f} GiB"
            + (
                f"; of the acquisition: {self.acquisition_peak_rss / 2**30:.2f} GiB"
                if self.acquisition_peak_rss
                else ""
            ),
        ]
        lines += [f"note: {note}" for note in self.notes]
        lines += ["", self.sizing(assumptions).text()]
        if small:
            lines.append("  (sized from this small grid's seconds: run a full tile for the answer)")
        return "\n".join(lines)


def _row(
    name: str,
    seconds: float,
    cpu: float | None,
    pixels: int | None,
    parcels: int | None,
    note: str,
    peak: int | None = None,
) -> str:
    per_s = max(seconds, 1e-9)
    return (
        f"{name:<34}{seconds:>9.2f}"
        + (f"{cpu:>8.2f}" if cpu is not None else f"{'-':>8}")
        + (f"{pixels / 1e6 / per_s:>9.1f}" if pixels is not None else f"{'-':>9}")
        + (f"{parcels / per_s:>12,.0f}" if parcels is not None else f"{'-':>12}")
        + (f"{peak / 2**30:>10.2f}" if peak is not None else f"{'-':>10}")
        + (f"  ({note})" if note else "")
    )


def _peak_rss_bytes() -> int:
    # ru_maxrss is in KiB on Linux (bytes on macOS, where this slightly overstates nothing).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class _Clock:
    """Collects stages in the order they ran."""

    def __init__(self, progress: Progress) -> None:
        self.stages: list[Stage] = []
        self.say = progress

    @contextmanager
    def stage(self, name: str, **details: Any) -> Iterator[dict[str, Any]]:
        """Time the block; it may fill in `pixels`, `parcels` or `note` in the yielded dict."""
        self.say(f"{name}...")
        extra: dict[str, Any] = dict(details)
        start, cpu = time.perf_counter(), time.process_time()
        with peak_rss() as peak:
            yield extra
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        extra.setdefault("peak_rss_bytes", peak.bytes)
        self.stages.append(Stage(name, seconds, cpu, **extra))


def simulated_tile(config: BenchConfig, progress: Progress) -> Path:
    """The cached simulated tile of `config` (one S2 date, no S1), simulated if missing.

    The simulation runs in a child process so that its memory peak is not the bench's.
    """
    out = config.work / f"sim-{config.tile_size}px-{config.n_parcels}p-seed{config.seed}"
    if (out / "catalog.json").is_file():  # written last: the simulation finished
        return out
    progress(f"simulating a {config.tile_size} px tile with {config.n_parcels} parcels in {out}")
    command = [
        sys.executable,
        "-m",
        "monitor.cli",
        "simulate",
        "--out",
        str(out),
        "--tile-size",
        str(config.tile_size),
        "--parcels",
        str(config.n_parcels),
        "--seed",
        str(config.seed),
        "--dates",
        "1",
        "--no-s1",
        "--no-clear-truth",
        "--overwrite",
        "--quiet",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
        reason = lines[-1].removeprefix("parcel-monitor simulate: error: ")
        raise ConfigError(f"cannot simulate the bench tile in {out}: {reason}")
    return out


def _pick_acquisition(root: Path) -> Acquisition:
    """The first Sentinel-2 item of a catalog (the bench's subject), else its first item."""
    catalog = read_catalog(root)
    if not catalog.entries:
        reasons = f": {catalog.rejected[0].reason}" if catalog.rejected else ""
        raise ConfigError(f"--catalog {root}: no usable STAC item{reasons}")
    s2 = [e for e in catalog.entries if e.acquisition.sensor == "S2"]
    return (s2 or list(catalog.entries))[0].acquisition


def run_bench(config: BenchConfig, progress: Progress | None = None) -> BenchReport:
    """Time every stage of one acquisition's path; see the module docstring."""
    with peak_rss() as peak:
        report = _run_bench(config, progress or (lambda _: None))
    # The stages reset the kernel's high-water mark: the outer block's peak is the run's.
    return replace(report, peak_rss_bytes=peak.bytes or _peak_rss_bytes())


def _run_bench(config: BenchConfig, say: Progress) -> BenchReport:
    config.work.mkdir(parents=True, exist_ok=True)
    if config.catalog is None:
        root = simulated_tile(config, say)
        parcels_path, id_column = root / "parcels.parquet", "id_parcel"
        source = f"simulated, {root}"
    else:
        root = config.catalog
        parcels_path = config.parcels or root / "parcels.parquet"
        id_column, source = config.id_column, f"catalog {root}"
        if not parcels_path.is_file():
            raise ConfigError(f"--parcels {parcels_path}: not found (needed with --catalog)")
    acq = _pick_acquisition(root)
    clock = _Clock(say)
    height, width = acq.shape
    pixels = height * width

    with clock.stage("parcels (load)", once=True) as out:
        parcels = load_parcels(parcels_path, id_column=id_column)
        out["parcels"] = len(parcels)
    with clock.stage("models (load)", once=True) as out:
        stages = [] if config.stages is None else default_stages(config.stages)
        out["note"] = ", ".join(stage.name for stage in stages) or "none (--no-models)"
    # Two engines over one fresh label cache: the first builds the label raster, the second
    # loads it as a restarted worker or one taking over the tile would.
    cache = config.work / "label-cache"
    shutil.rmtree(cache, ignore_errors=True)
    store_root = config.work / "store"
    shutil.rmtree(store_root, ignore_errors=True)  # no state of an earlier run's models
    store = ObservationStore(store_root)
    engine_config = EngineConfig(parcels, store, label_cache=cache)
    with clock.stage("labels (first build)", pixels=pixels, once=True) as out:
        out["parcels"] = Engine(engine_config).grid(acq).labels.n_parcels
    history_notes: list[str] = []
    if config.history_dates:
        dates = history_dates(acq, config.history_dates, store)
        job = HistoryJob(
            store=store_root,
            catalog=root,
            product_id=acq.product_id,
            parcels=parcels_path,
            id_column=id_column,
            label_cache=cache,
            rasters=config.work / "history-rasters" / root.name,
            n=config.history_dates,
        )
        say("history (synthetic, in a child process)...")
        run = history_in_child(job)
        clock.stages.append(
            Stage(
                "history (synthetic, not timed)",
                run.seconds,
                None,
                once=True,
                note=f"{config.history_dates} dates, {run.history.rows} rows, child process",
                peak_rss_bytes=run.peak_rss_bytes,
            )
        )
        with clock.stage("warm-up on the previous date", once=True) as out:
            grid = Engine(engine_config).grid(acq)
            ran = warm_up(stages, store, grid, dates[-2])
            del grid  # the timed engine loads its own, as a worker does
            out["note"] = f"not timed: {', '.join(ran) or 'no stage'} as a running worker did"
        acq = dates[-1]
        history_notes = [
            f"mid-season: the store held {config.history_dates} earlier synthetic acquisitions "
            "of the tile; only their size is realistic. Synthesised:",
            *(f"  {line}" for line in run.history.synthesised),
        ]
        if run.history.reference is None:
            history_notes.append("  no cloud-removal reference: that stage did not reconstruct")

    # The acquisition's path is `Engine.process` itself; its per-stage clocks fill the table.
    engine = Engine(replace(engine_config, stages=stages))
    start, cpu = time.perf_counter(), time.process_time()
    result = engine.process(acq)
    table = result.observations
    n = table.filter(pl.col("source") == "observed").height  # not the reconstructed rows
    seconds = dict(result.stage_seconds)
    bands = [name for name in acq.assets if name in STAT_BANDS or name == "SCL"]
    n_grid = engine.grid(acq).labels.n_parcels
    rows: list[tuple[str, str, dict[str, Any]]] = [
        ("labels", "labels (cached load)", {"pixels": pixels, "parcels": n_grid}),
        ("zonal", "read, mask, zonal statistics", {"pixels": pixels, "parcels": n}),
        ("store", "store write", {"parcels": n}),
        ("events", "events (build)", {"parcels": n}),
    ]
    for stage in stages:
        # Cloud removal works on pixels: its Mpx/s is over the grid (it runs on cloudy windows).
        per = {"pixels": pixels} if stage.name == ReconstructionStage.name else {}
        rows.append((stage.name, f"model: {stage.name}", {"parcels": n, **per}))
    peaks = result.stage_peak_rss
    for key, name, details in rows:
        clock.stages.append(
            Stage(name, seconds.pop(key), None, peak_rss_bytes=peaks.get(key), **details)
        )
    for key, value in seconds.items():  # a stage this table does not know yet
        clock.stages.append(Stage(key, value, None, peak_rss_bytes=peaks.get(key)))
    with clock.stage("events (serialise)", parcels=len(result.events)):
        records = result.events.records()
    acquisition_cpu = time.process_time() - cpu
    acquisition_wall = time.perf_counter() - start
    by_type = Counter(result.events.type_counts())
    del table

    kafka = _kafka_stage(config, records, clock) if config.kafka else "not used (--no-kafka)"
    models = shipped_models() if config.models is None else list(config.models)
    notes = _inference_stages(models, config.inference, n, clock)
    if history_notes:
        notes += history_notes
    else:
        notes.append(
            "model stages run on this acquisition's season so far: with one date, practices "
            "see a one-date series and heterogeneity only stores pixel sets (it needs "
            f"{MIN_DATES} dates; --history-dates N times a mid-season acquisition); the "
            "'model throughput' rows give a full run's cost"
        )
    notes.append(f"events by type: {', '.join(f'{t} {c}' for t, c in sorted(by_type.items()))}")
    notes.append(
        f"engine path measured as a whole: {acquisition_wall:.2f} s, {acquisition_cpu:.2f} CPU s"
    )
    return BenchReport(
        source=source,
        product_id=acq.product_id,
        shape=acq.shape,
        bands=tuple(bands),
        n_parcels=n,
        n_events=len(records),
        event_bytes=sum(len(value) for _, value in records),
        backend=config.inference.backend,
        kafka=kafka,
        stages=tuple(clock.stages),
        peak_rss_bytes=_peak_rss_bytes(),
        notes=tuple(notes),
        events_by_type=dict(sorted(by_type.items())),
    )


def _kafka_stage(config: BenchConfig, records: Sequence[tuple[bytes, bytes]], clock: _Clock) -> str:
    """Send the events in one transaction as the worker does; start a broker if none is given."""
    from monitor.broker import create_topics, start_broker, stop_broker

    data = config.work / "kafka"
    bootstrap = config.bootstrap
    if bootstrap is None:
        clock.say("starting a local Kafka broker...")
        bootstrap = start_broker(data, 0).bootstrap
        described = f"local broker {bootstrap} (started for the run)"
    else:
        described = f"broker {bootstrap}"
    try:
        topic = f"bench-events-{uuid.uuid4().hex[:8]}"
        create_topics(bootstrap, {topic: 6})
        _send_transaction(bootstrap, topic, records, clock)
    finally:
        if config.bootstrap is None:
            stop_broker(data)
    return described


def _send_transaction(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes]], clock: _Clock
) -> None:
    from kafka import KafkaProducer, TopicPartition
    from kafka.errors import KafkaError
    from kafka.structs import OffsetAndMetadata

    from monitor.worker import EVENT_PRODUCER_SETTINGS, send_events

    try:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            transactional_id=f"parcel-monitor-bench-{uuid.uuid4().hex[:8]}",
            acks="all",
            **EVENT_PRODUCER_SETTINGS,
        )
        try:
            producer.init_transactions()
            with clock.stage(
                "Kafka send + commit", parcels=len(records), note="parcels/s = events/s"
            ):
                producer.begin_transaction()
                send_events(producer, topic, records)
                # As the worker: the consumed offset commits with the events.
                offsets = {TopicPartition(topic, 0): OffsetAndMetadata(1, "", -1)}
                producer.send_offsets_to_transaction(offsets, "parcel-monitor-bench")
                producer.commit_transaction()
        finally:
            producer.close(timeout=10)
    except KafkaError as exc:
        raise BrokerError(f"Kafka at {bootstrap}: {exc}") from exc


def shipped_models() -> list[Path]:
    """The exported models shipped with the package (`monitor/artifacts/*.onnx`)."""
    folder = Path(str(files("monitor") / "artifacts"))
    return sorted(folder.glob("*.onnx")) if folder.is_dir() else []


def _inference_stages(
    models: Sequence[Path], inference: InferenceConfig, n_parcels: int, clock: _Clock
) -> list[str]:
    if not models:
        return [f"inference not measured: no model in {Path(str(files('monitor') / 'artifacts'))}"]
    notes = []
    for path in models:
        with clock.stage(f"model load: {path.stem}", once=True):
            model = load_model(path, inference)
        inputs, batch = representative_inputs(path, 1)
        per_item = sum(v.nbytes for v in inputs.values()) // max(batch, 1)
        fits = max(1, MAX_BATCH_INPUT_BYTES // max(per_item, 1))
        inputs, batch = representative_inputs(path, min(inference.max_batch, n_parcels, 1024, fits))
        model.run(inputs)  # warm-up: first-run allocations and kernel selection
        done, start, cpu = 0, time.perf_counter(), time.process_time()
        while done < n_parcels and time.perf_counter() - start < INFERENCE_BUDGET_S:
            model.run(inputs)
            done += batch
        # Scaled to one batch item per parcel when the budget ran out first.
        scale = n_parcels / done
        shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in inputs.items())
        clock.stages.append(
            Stage(
                f"model throughput: {path.stem}",
                (time.perf_counter() - start) * scale,
                (time.process_time() - cpu) * scale,
                parcels=n_parcels,
                note=f"{done} items timed" + (", extrapolated" if done < n_parcels else ""),
                reference=True,
            )
        )
        notes.append(f"{path.stem}: random inputs {shapes}, one batch item per parcel")
    return notes


def representative_inputs(path: Path, batch: int) -> tuple[dict[str, npt.NDArray[Any]], int]:
    """Random inputs of a model's declared shapes: the first axis (if dynamic) is `batch`,
    other dynamic axes `DYNAMIC_AXIS_SIZE`. Returns them and the batch size used."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"cannot read model {path}: {str(exc).splitlines()[0]}") from exc
    rng = np.random.default_rng(0)
    inputs: dict[str, npt.NDArray[Any]] = {}
    used = batch
    for spec in session.get_inputs():
        dims = [d if isinstance(d, int) and d > 0 else None for d in spec.shape]
        shape = [DYNAMIC_AXIS_SIZE if d is None else d for d in dims]
        if dims and dims[0] is None:
            shape[0] = batch
        elif shape:
            used = shape[0]  # a fixed batch axis
        dtype = _ONNX_DTYPES.get(spec.type)
        if dtype is None:
            raise ModelError(f"model {path.stem}: input {spec.name} has unsupported {spec.type}")
        if np.issubdtype(dtype, np.floating):
            inputs[spec.name] = rng.standard_normal(shape).astype(dtype)
        else:
            inputs[spec.name] = np.zeros(shape, dtype=dtype)
    return inputs, used
