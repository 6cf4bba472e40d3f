"""Cloud removal as an engine stage: reconstructed parcel rows and `reconstruction` events.

For a Sentinel-2 acquisition at t whose parcels are partly or fully cloudy (observed
`valid_fraction` under `ReconstructionConfig.max_valid_fraction`), the stage fills their cloudy
pixels with the cloud-removal model (`monitor.cloud_removal.reconstruct`) from three earlier
acquisitions of the same tile and grid, found in the acquisition index
(`monitor.acquisition_index`, under the store root):

* t0: the last Sentinel-2 before t at least `min_clear_fraction` clear (over parcel pixels),
  at most `max_gap_days` earlier;
* the Sentinel-1 nearest to t, at most `max_s1_days` before it (never after: live, later ones
  have not arrived, and replay must give what live gives);
* the Sentinel-1 nearest to t0 (either side, within `max_s1_days`, not after t).

It then computes the parcels' statistics of B04, B08, B11 and NDVI over their observed clear
pixels plus the reconstructed ones with the Rust zonal kernel, writes them to the store as the
product's `reconstructed` file (atomic; reprocessing replaces it, and removes it when nothing is
reconstructed any more) and returns them with one `reconstruction` event per parcel.

Every acquisition (Sentinel-1 and Sentinel-2) is recorded in the index first, so later ones can
use it. Late arrivals: a Sentinel-1 that arrives after the Sentinel-2 it would serve does not
trigger a new reconstruction. The stage reconstructs with what has arrived: an acquisition's
events are emitted once, in the same Kafka transaction as its observation, and re-running
earlier products on every late radar item would make the event stream depend on arrival order
in a second way. Reprocessing that product (or a replay) picks the late radar up.

Where the model runs: the cloudy pixels of the parcels that need it (the target) are grouped in
blocks of at most `block_rows` rows over the target's bounding columns, each with `overlap`
rows of context; the reference rasters are read for the block only (windowed rasterio reads,
each band once, converted in one pass by `kernels.physical_values`); `reconstruct` then runs
the network on the tiling kernel's windows that hold a target pixel. A block's rows, context
included, hold a whole number of those windows (`tile` network pixels, overlapping by
`overlap`), so no window is run for a few rows at a block's edge: the network sees ~1.3x the
pixels it predicts instead of ~1.75x. The block's target pixels then go back into the bands
with their per-parcel sums in one Rust pass (`kernels.fill_back`). A reference without a valid
pixel in a block (e.g. radar not covering it) skips that block.

Resolution (`resolution_m`, default 20): at 20 m the network runs on 2 x 2 block means of its
inputs (`cloud_removal.coarse_inputs`: reflectance over the block's clear pixels, radar in
linear power; a block is predicted when any of its pixels is a target), a quarter of the
pixels, and each target pixel takes its own t0 plus its block's predicted change (detail
transfer, `kernels.detail_transfer`). The statistics stay on
the 10 m label grid, over the same pixels as at 10 m: a target pixel masked at t0 stays out.
Blocks start on even rows and columns, so the 2 x 2 cells do not depend on `block_rows`. Card
`cloud_removal.md` ("Resolution in the engine") gives the accuracy and speed of both.

Event confidence: `(observed + sum of exp(-sigma / SIGMA_REF)) / pixel_count`, where the sum runs
over the reconstructed pixels and sigma is the predicted standard deviation averaged over the
three bands; `SIGMA_REF` (0.02) is about the model's mean error on held-out data, so a pixel
predicted at typical error counts for about a third of an observed one. Evidence also names the
reference products and gives the observed and reconstructed shares and the mean sigma per band.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl
from rasterio.windows import Window

from monitor import __version__
from monitor.acquisition_index import INDEX_DIR, AcquisitionIndex, IndexedAcquisition
from monitor.cloud_removal import (
    BANDS,
    EXPORTED_TILE,
    POLARISATIONS,
    load_for_tile,
    reconstruct,
    s1_stack,
    s2_reflectance,
)
from monitor.errors import ConfigError
from monitor.events import STAT_PREFIX, EventBatch, ModelRef, observation_events
from monitor.infer import InferenceConfig, Model
from monitor.kernels import fill_back, validity_mask_from_scl, zonal_statistics
from monitor.model_io import TILE_MULTIPLE
from monitor.observations import validate_observations
from monitor.raster import AcquisitionRasters, read_acquisition
from monitor.stac import Acquisition
from monitor.stages import StageInput, StageOutput
from monitor.zonal import MaskConfig

log = logging.getLogger(__name__)

#: Predicted standard deviation (reflectance) at which a reconstructed pixel counts e⁻¹.
SIGMA_REF: Final = 0.02
#: Statistics copied into a reconstruction event's evidence (besides the stage's own).
EVIDENCE_STATS: Final = (
    "valid_fraction",
    "NDVI_mean",
    "NDVI_std",
    "B04_mean",
    "B08_mean",
    "B11_mean",
)

#: Network resolutions the stage offers (m); the grid's own comes first.
RESOLUTIONS_M: Final = (10, 20)
DEFAULT_RESOLUTION_M: Final = 20
#: Network window (px) on ONNX Runtime: with blocks of whole windows the network sees 1.14x
#: the pixels it predicts, against 1.31x with the exported 128 (each window has its overlap
#: to blend); ONNX Runtime's throughput per pixel is the same at 128, 256 and 512 (card).
DEFAULT_TILE: Final = 256

Float32Array = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class ReconstructionConfig:
    """When the stage reconstructs, from which references, and how it tiles the work."""

    #: Parcels whose observed valid fraction is below this get a reconstructed row.
    max_valid_fraction: float = 0.9
    #: A Sentinel-2 at least this clear (share of parcel pixels) can serve as t0.
    min_clear_fraction: float = 0.9
    #: t0 at most this many days before t (the model was trained on gaps of up to 30 days).
    max_gap_days: float = 30.0
    #: Sentinel-1 within this many days of t (before it) and of t0 (training used <= 4).
    max_s1_days: float = 4.0
    #: Pixel size (m) the network runs at: 10 (the grid's) or 20 (2 x 2 block means: a quarter
    #: of the work; each cloudy 10 m pixel gets its block's prediction, see the module doc).
    resolution_m: int = DEFAULT_RESOLUTION_M
    #: Rows of target pixels per block (memory: ~14 float32 planes of block x width).
    block_rows: int = 512
    #: Network window (network pixels): None = `DEFAULT_TILE` on ONNX Runtime (the network with
    #: free height and width, `cloud_removal.load_for_tile`), the exported 128 on TensorRT.
    tile: int | None = None
    overlap: int = 16
    batch: int = 16
    #: On ONNX Runtime, run the int8 network (`cloud_removal_int8.onnx`: 1.7-1.9x the pixels
    #: per CPU second, parcel-mean MAE +0.1 %; card "Int8 on CPU"); False: the fp32 one.
    #: TensorRT always builds from the fp32 file (its own `InferenceConfig.fp16`).
    int8: bool = True
    #: The SCL classes that make a t0 pixel unusable (the engine's default mask).
    mask: MaskConfig = field(default_factory=MaskConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    def __post_init__(self) -> None:
        for name in ("max_valid_fraction", "min_clear_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"reconstruction {name} must be in 0-1, got {value}")
        for name in ("max_gap_days", "max_s1_days"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"reconstruction {name} must be >= 0 days, got {value}")
        if self.block_rows < 1 or self.batch < 1:
            raise ConfigError("reconstruction block_rows and batch must be >= 1")
        if self.tile is not None and (self.tile % TILE_MULTIPLE or self.tile <= self.overlap):
            raise ConfigError(
                f"reconstruction tile must be a multiple of {TILE_MULTIPLE} above the overlap "
                f"{self.overlap}, got {self.tile}"
            )
        if self.resolution_m not in RESOLUTIONS_M:
            choices = " or ".join(str(r) for r in RESOLUTIONS_M)
            raise ConfigError(
                f"reconstruction resolution_m must be {choices} m, got {self.resolution_m!r}"
            )

    @property
    def network_tile(self) -> int:
        """The network window in use (see `tile`)."""
        if self.tile is not None:
            return self.tile
        return DEFAULT_TILE if self.inference.backend == "onnxruntime" else EXPORTED_TILE

    @property
    def coarsen(self) -> int:
        """Grid pixels per network pixel along each axis."""
        return self.resolution_m // RESOLUTIONS_M[0]


@dataclass(frozen=True)
class References:
    """The acquisitions a reconstruction of one Sentinel-2 date uses."""

    t0: IndexedAcquisition
    s1_t: IndexedAcquisition
    s1_t0: IndexedAcquisition

    @property
    def product_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e.product_id for e in (self.t0, self.s1_t, self.s1_t0)))


class ReconstructionStage:
    """The cloud-removal stage of the engine (see the module docstring)."""

    name = "reconstruction"
    raster_bands: Final = frozenset(BANDS)

    def __init__(self, config: ReconstructionConfig | None = None, model: Model | None = None):
        self.config = config or ReconstructionConfig()
        self._model = model

    def model(self) -> Model:
        """The cloud-removal network, loaded on first use."""
        if self._model is None:
            inference = self.config.inference
            int8 = self.config.int8 and inference.backend == "onnxruntime"
            self._model = load_for_tile(inference, self.config.network_tile, int8=int8)
        return self._model

    def run(self, data: StageInput) -> StageOutput:
        acq = data.acquisition
        index = AcquisitionIndex(data.store.root / INDEX_DIR, data.store.season_of)
        season = data.store.season_of(acq.acquired)
        index.record(IndexedAcquisition.of(acq, _clear_fraction(data)))
        if acq.sensor != "S2" or data.observed.valid is None:
            return StageOutput()
        rows, events = self._reconstruct(data, index)
        if rows is None:
            # Reprocessing must not leave the rows of an earlier run that no longer hold.
            data.store.delete_product(acq.product_id, acq.tile, season, "reconstructed")
            return StageOutput()
        data.store.write_acquisition(rows)
        return StageOutput(events, rows)

    def references(self, acq: Acquisition, index: AcquisitionIndex) -> References | None:
        """t0 and the two Sentinel-1 for `acq`, or None (logged) when one is missing."""
        cfg = self.config
        t0 = index.last_clear_s2(
            acq,
            min_clear_fraction=cfg.min_clear_fraction,
            max_gap_days=cfg.max_gap_days,
            bands=BANDS,
        )
        if t0 is None:
            log.info(
                "%s: no clear Sentinel-2 in the last %g days: not reconstructed",
                acq.product_id,
                cfg.max_gap_days,
            )
            return None
        s1_t = index.nearest_s1(acq, acq.acquired, max_days=cfg.max_s1_days, not_after=acq.acquired)
        s1_t0 = index.nearest_s1(acq, t0.acquired, max_days=cfg.max_s1_days, not_after=acq.acquired)
        if s1_t is None or s1_t0 is None:
            when = "t" if s1_t is None else f"t0 ({t0.product_id})"
            log.info(
                "%s: no Sentinel-1 within %g days of %s: not reconstructed",
                acq.product_id,
                cfg.max_s1_days,
                when,
            )
            return None
        return References(t0, s1_t, s1_t0)

    def _reconstruct(
        self, data: StageInput, index: AcquisitionIndex
    ) -> tuple[pl.DataFrame | None, EventBatch]:
        acq, cfg = data.acquisition, self.config
        table = data.observations.filter(
            (pl.col("source") == "observed") & (pl.col("valid_fraction") < cfg.max_valid_fraction)
        )
        missing = [b for b in BANDS if b not in data.observed.rasters.bands]
        if table.is_empty() or missing:
            if missing:
                log.info("%s: no %s: not reconstructed", acq.product_id, ", ".join(missing))
            return None, EventBatch.empty()
        refs = self.references(acq, index)
        if refs is None:
            return None, EventBatch.empty()
        labels = data.grid.labels.labels
        need = np.zeros(data.grid.labels.n_parcels + 1, dtype=bool)  # by label (parcel + 1)
        wanted = table.get_column("parcel_id").to_numpy().astype(str)
        need[1:] = np.isin(data.grid.ids.astype(str), wanted)
        rasters, scl_valid = data.observed.rasters, data.observed.valid
        if scl_valid is None:  # checked by `run`; Sentinel-2 items without SCL are not cloudy
            return None, EventBatch.empty()
        observed_valid = scl_valid & _has_data(rasters)
        target = need[labels] & ~observed_valid
        filled = _Filled(rasters, need.size)
        blocks = _blocks(target, cfg.block_rows, cfg.network_tile, cfg.overlap, cfg.coarsen)
        for rows, cols in blocks:
            self._fill_block(acq, refs, rows, cols, target, labels, filled)
        # Only the pixels actually rebuilt join the clear ones: a target pixel with no clear t0
        # (masked at t0 too) keeps its cloudy value and must stay out of the statistics.
        return self._rows(data, refs, need, observed_valid | filled.done, filled)

    def _fill_block(
        self,
        acq: Acquisition,
        refs: References,
        rows: tuple[int, int, int, int],
        cols: tuple[int, int],
        target: BoolArray,
        labels: npt.NDArray[np.uint32],
        filled: _Filled,
    ) -> None:
        """Reconstruct the target pixels of rows `core0:core1` (read with context rows
        `ctx0:ctx1`) and columns `c0:c1` into `filled`."""
        ctx0, core0, core1, ctx1 = rows
        c0, c1 = cols
        window = Window(c0, ctx0, c1 - c0, ctx1 - ctx0)
        t0 = read_acquisition(refs.t0.acquisition(), _with_scl(refs.t0), window)
        clear = None
        if "SCL" in t0.bands:
            clear = validity_mask_from_scl(t0.bands["SCL"].data, self.config.mask.invalid_classes)
        clear_t0 = s2_reflectance(t0, valid=clear)
        s1_t = s1_stack(read_acquisition(refs.s1_t.acquisition(), POLARISATIONS, window))
        s1_t0 = s1_stack(read_acquisition(refs.s1_t0.acquisition(), POLARISATIONS, window))
        empty = [
            e.product_id
            for e, s1 in ((refs.s1_t, s1_t), (refs.s1_t0, s1_t0))
            if np.isnan(s1).all(axis=(1, 2)).any()
        ]
        if empty or np.isnan(clear_t0).all():
            gone = ", ".join(empty) or refs.t0.product_id
            log.info(
                "%s: %s has no valid pixel in rows %d-%d: block not reconstructed",
                acq.product_id,
                gone,
                core0,
                core1,
            )
            return
        span = (slice(ctx0, ctx1), slice(c0, c1))
        # Only the target pixels of the output are kept, and the model never reads the
        # observation: the bands already converted (some pixels filled by the block above) do.
        observed = filled.reflectance[:, span[0], span[1]]
        gap = (acq.acquired - refs.t0.acquired) / timedelta(days=1)
        out = reconstruct(
            observed,
            clear_t0,
            s1_t,
            s1_t0,
            gap,
            ~target[span],
            day_of_year=acq.acquired.timetuple().tm_yday - 1,
            model=self.model(),
            tile=self.config.network_tile,
            overlap=self.config.overlap,
            batch=self.config.batch,
            coarsen=self.config.coarsen,
        )
        core_target = target[span].copy()  # the context rows are the next block's
        core_target[: core0 - ctx0] = False
        core_target[core1 - ctx0 :] = False
        filled.add((ctx0, c0), out.reflectance, out.uncertainty, core_target, labels[span])

    def _rows(
        self,
        data: StageInput,
        refs: References,
        need: BoolArray,
        valid: BoolArray,
        filled: _Filled,
    ) -> tuple[pl.DataFrame | None, EventBatch]:
        """Zonal statistics of the filled bands for the parcels with reconstructed pixels."""
        acq = data.acquisition
        stats = zonal_statistics(
            data.grid.labels, dict(zip(BANDS, filled.bands, strict=True)), valid
        )
        index = stats.get_column("parcel_index").to_numpy()
        keep = need[index + 1] & (filled.count[index + 1] > 0)
        if not keep.any():
            log.info("%s: no parcel pixel could be reconstructed", acq.product_id)
            return None, EventBatch.empty()
        kept = index[keep]
        rows = validate_observations(
            stats.filter(pl.Series(keep))
            .drop("parcel_index")
            .with_columns(
                pl.Series("parcel_id", data.grid.ids[kept].astype(str)),
                pl.lit(acq.acquired).alias("acquired"),
                pl.lit(acq.sensor).alias("sensor"),
                pl.lit(acq.product_id).alias("product_id"),
                pl.lit(acq.tile).alias("tile"),
                pl.lit("reconstructed").alias("source"),
            )
        )
        sigma = filled.sigma_sum[:, kept + 1] / filled.count[kept + 1]
        confidence = filled.confidence[kept + 1]
        # Named after the network that ran: `cloud_removal` or `cloud_removal_int8`.
        model = ModelRef(self.model().name, __version__)
        events = observation_events(rows, data.detected_at, model=model, stats=EVIDENCE_STATS)
        observed = data.observations.filter(pl.col("source") == "observed")
        fractions = (
            rows.select(pl.col("parcel_id").cast(pl.String))
            .join(
                observed.select(pl.col("parcel_id").cast(pl.String), "valid_fraction"),
                on="parcel_id",
                how="left",
                maintain_order="left",
            )
            .get_column("valid_fraction")
            .cast(pl.Float64)
        )
        pixels = rows.get_column("pixel_count").to_numpy()
        gap = (acq.acquired - refs.t0.acquired) / timedelta(days=1)
        share = fractions.fill_null(0.0).to_numpy() + confidence / pixels
        products = [acq.product_id, *(p for p in refs.product_ids if p != acq.product_id)]
        stat = STAT_PREFIX
        frame = events.frame.with_columns(
            pl.Series("confidence", np.minimum(1.0, share), dtype=pl.Float64),
            pl.concat_list([pl.lit(p, pl.String) for p in products]).alias("product_ids"),
            fractions.fill_null(float("nan")).alias(stat + "observed_fraction"),
            pl.Series(stat + "reconstructed_fraction", filled.count[kept + 1] / pixels),
            pl.lit(gap, pl.Float64).alias(stat + "gap_days"),
            *(pl.Series(f"{stat}{b}_uncertainty", sigma[j]) for j, b in enumerate(BANDS)),
        )
        return rows, EventBatch(frame)


class _Filled:
    """The bands of the acquisition with reconstructed pixels written in, and per-parcel sums
    (by label) of what was reconstructed."""

    def __init__(self, rasters: AcquisitionRasters, n_labels: int) -> None:
        self.reflectance = s2_reflectance(rasters)
        self.bands = list(self.reflectance)
        self.done = np.zeros(rasters.shape, dtype=bool)
        self.count = np.zeros(n_labels, dtype=np.float64)
        self.sigma_sum = np.zeros((len(BANDS), n_labels), dtype=np.float64)
        self.confidence = np.zeros(n_labels, dtype=np.float64)

    def add(
        self,
        at: tuple[int, int],
        reflectance: Float32Array,
        sigma: Float32Array,
        target: BoolArray,
        labels: npt.NDArray[np.uint32],
    ) -> None:
        """The finite `target` pixels of a block's output (placed at `at` = (row, col)) into
        the bands and the per-parcel sums (Rust, one pass)."""
        fill_back(
            self.reflectance,
            self.done,
            (self.count, self.sigma_sum, self.confidence),
            (reflectance, sigma),
            target,
            labels,
            at,
            SIGMA_REF,
        )


def _clear_fraction(data: StageInput) -> float | None:
    """Share of the parcel pixels seen clear (Sentinel-2; None for Sentinel-1)."""
    if data.acquisition.sensor != "S2" or data.observed.valid is None:
        return None
    observed = data.observations.filter(pl.col("source") == "observed")
    pixels = int(observed.get_column("pixel_count").sum())
    if pixels == 0:
        return float(data.observed.valid.mean())
    return int(observed.get_column("valid_count").sum()) / pixels


def _has_data(rasters: AcquisitionRasters) -> BoolArray:
    valid = np.ones(rasters.shape, dtype=bool)
    for name in BANDS:
        valid &= rasters.bands[name].valid_mask()
    return valid


def _with_scl(entry: IndexedAcquisition) -> tuple[str, ...]:
    return (*BANDS, "SCL") if "SCL" in entry.assets else BANDS


def _blocks(
    target: BoolArray, block_rows: int, tile: int, overlap: int, coarsen: int = 1
) -> list[tuple[tuple[int, int, int, int], tuple[int, int]]]:
    """Row blocks over the target's bounding columns: ((ctx0, core0, core1, ctx1), (c0, c1)).

    Cores tile the target's rows; context adds `overlap` grid rows each side; every span is
    widened to at least one network window (`tile` network pixels of `coarsen` grid pixels)
    where the grid allows. A block's rows hold a whole number n of the tiling kernel's windows
    (n (tile - overlap) + overlap network rows, context included: none is cut by the block's
    edge and run for a few rows), the largest n whose core fits in `block_rows`; a smaller
    `block_rows` gives cores of that many rows. Spans start on multiples of `coarsen`, so
    network pixels cover the same grid pixels whatever the blocks.
    """
    height, width = target.shape
    rows = np.flatnonzero(target.any(axis=1))
    cols = np.flatnonzero(target.any(axis=0))
    if rows.size == 0:
        return []
    window = tile * coarsen
    c0, c1 = _widen(int(cols[0]) - overlap, int(cols[-1]) + 1 + overlap, window, width)
    c0 -= c0 % coarsen
    step = (tile - overlap) * coarsen
    n = (block_rows + 2 * overlap - overlap * coarsen) // step
    core_rows = n * step + overlap * coarsen - 2 * overlap if n >= 1 else block_rows
    out = []
    first = int(rows[0]) - int(rows[0]) % coarsen
    for core0 in range(first, int(rows[-1]) + 1, core_rows):
        core1 = min(core0 + core_rows, int(rows[-1]) + 1)
        if not target[core0:core1, c0:c1].any():
            continue
        ctx0, ctx1 = _widen(core0 - overlap, core1 + overlap, window, height)
        ctx0 -= ctx0 % coarsen
        out.append(((ctx0, core0, core1, ctx1), (c0, c1)))
    return out


def _widen(start: int, stop: int, size: int, limit: int) -> tuple[int, int]:
    """`[start, stop)` clipped to `[0, limit)` and grown to `size` pixels where possible."""
    start, stop = max(0, start), min(limit, stop)
    missing = size - (stop - start)
    if missing > 0:
        start = max(0, start - missing // 2)
        stop = min(limit, start + size)
        start = max(0, stop - size)
    return start, stop


def reconstruction_stage(
    config: ReconstructionConfig | None = None, **options: Any
) -> ReconstructionStage:
    """The stage with the default configuration, or `config`, updated by `options`."""
    base = config or ReconstructionConfig()
    return ReconstructionStage(dataclasses.replace(base, **options) if options else base)
