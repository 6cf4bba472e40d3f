"""Training, export and evaluation of the heterogeneity model (`models.heterogeneity`).

Data: simulated seasons (`monitor.simulate`, 1024 px, 1200 parcels, S2 only) under
`DATA/heterogeneity/seed-N/`, turned into NDVI pixel sets by the runtime's own code
(`monitor.heterogeneity.season_pixel_sets`) and cached next to each season. Seeds `TRAIN_SEEDS`
train, `VALIDATION_SEEDS` choose the thresholds, `HELD_OUT_SEEDS` are only evaluated on. A
season is simulated once: delete `DATA/heterogeneity/` after a simulator change.

Only ~5 % of simulated parcels are heterogeneous, so each batch is balanced: a third
homogeneous parcels, two thirds positives (`POSITIVE_MIX`): the simulator's heterogeneous
parcels; merges of two homogeneous parcels of different crops (`merge_sets`; a date counts when
it is usable for both) with the difference of their means cut to a random share
(`CONTRAST_RANGE`, around the measured real share `REAL_CONTRAST`); and, as the real merged
pairs look, positives whose two covers share a season: merges of similar covers
(`similar_merges`: one grassland/fallow or winter-cereal group, or one crop on two parcels) at
a real-sized difference of means (`REAL_GAP`), and a cover beside an altered copy of itself
(`altered_cover_sets`: lower peak, phenology shift or level offset beyond what one cover's
structure shows).

Real within-field structure (`structure_sets`) on `STRUCTURED_SHARE` of every kind of parcel:
a patch of the pixels follows the same cover's temporal profile with a lower peak, shifted
phenology, an offset or more noise, as headlands, wet or sandy patches, uneven emergence and
tree rows make real single covers look; the simulator's fields are too clean for that, so
without it a model learns that any sub-population means two covers.

Augmentations, for real archives rather than the simulator: the within-parcel spread scaled per
parcel (`TEXTURE_RANGE`), random season prefixes ("season so far", at least 6 dates), dropped
dates, residual clouds and haze the SCL missed (part of a set pulled towards cloud NDVI), NDVI
gain/offset jitter per series and per date, pixel noise, sets of few pixels (small parcels),
day-of-year shifts (other latitudes and years).

The exported model is a stack (`models.heterogeneity.StackedHeterogeneity`): after training,
`fit_stack` fits `a·net_logit + b·log(spread level) + c` by logistic regression on
`similar_validation` of `FIT_SEEDS` (neither trained on nor the selection set), one row per
parcel and engine check, so the spread level the network's normalisation hides (the std rule's
signal) is put back in the same graph. `BASE_CHECKPOINT` stacks a given network instead of
training one.

Evaluation (`evaluate`): F1 and ROC AUC of the model and of the within-parcel std rule on
held-out seeds (end of season, season so far at 1 July, and as the engine flags: scored every
`CHECK_EVERY_DAYS` over the season, flagged once when any score reaches the threshold) and on
real Slovenian NDVI with merged adjacent land-use parcels. The thresholds of both methods are
chosen for best F1 as the engine flags on `similar_validation` of `VALIDATION_SEEDS` (neither
trained nor tested on): structured homogeneous parcels and similar-season positives, on which
the std rule scores what it scores on the real check. Recipe variants are compared by
`validation_summary` (validation seeds only); the real Slovenian check is a test set: nothing
is trained, tuned or selected on it.
"""

from __future__ import annotations

import logging
import math
import re
import time
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import rasterio
import shapely
import torch
from torch import nn

from models.heterogeneity import HeterogeneityNet, StackedHeterogeneity
from models.heterogeneity_stack import fit_logistic, log_loss, stack_features
from models.registry import EvaluationRow
from monitor.catalog import read_catalog
from monitor.errors import ConfigError, ModelError
from monitor.heterogeneity import (
    INPUT_NAMES,
    N_DATES,
    N_PIXELS,
    PixelSetSeries,
    heterogeneity_probability,
    model_inputs,
    ndvi_pixel_sets,
    season_pixel_sets,
    std_rule_score,
)
from monitor.infer import load_model
from monitor.labels import build_label_raster
from monitor.parcels import load_parcels
from monitor.simulate import simulate_season
from monitor.stages.heterogeneity import DEFAULT_EVERY_DAYS

log = logging.getLogger(__name__)

NAME = "heterogeneity"
TRAIN_SEEDS = tuple(range(16))
HELD_OUT_SEEDS = (1000, 1001, 1002, 1003)
#: Seeds never trained on whose seasons choose the decision thresholds.
VALIDATION_SEEDS = (500, 501, 502, 503)
#: Seeds never trained on nor selected on whose `similar_validation` fits the stack's
#: coefficients (`fit_stack`), built with its own draw (`FIT_SET_SEED`).
FIT_SEEDS = (504, 505, 506, 507)
FIT_SET_SEED = 5
#: The stack's base network: None trains it (`train_network`); a checkpoint path loads it.
BASE_CHECKPOINT: Path | None = None
#: The engine scores a parcel about once a month (`monitor.stages.heterogeneity`).
CHECK_EVERY_DAYS = DEFAULT_EVERY_DAYS
TILE_SIZE = 1024
N_PARCELS = 1200
DEFAULT_EPOCHS = 10
#: The explicit spread-level features (`HeterogeneityNet(level=True)`) stay off: on the
#: similar-season selection set the variant without them scored as high (0.811 vs 0.811) and
#: with structured parcels higher (model card).
LEVEL_FEATURES = False
STEPS_PER_EPOCH = 200
BATCH = 192
SLOVENIA = Path(__file__).parents[1] / "examples" / "slovenia-2015-2017"
MID_SEASON_DOY = 182  # 1 July
#: Heterogeneous share of a training batch (two thirds) and of simulated seasons: the trained
#: logit is shifted from the first prior to the second, so probabilities mean what they say
#: at a realistic prevalence.
BATCH_PRIOR = 2 / 3
TARGET_PRIOR = 0.05

#: Per-parcel factor on the within-parcel spread in training batches (log-uniform): spans the
#: real fields measured (model card: median within-parcel std of real Slovenian and Mol fields
#: is 0.8-1.5 times the simulator's), so the model cannot lean on one archive's texture level.
TEXTURE_RANGE = (0.7, 1.6)
#: Share of the between-cover difference of means kept in a synthetic positive (log-uniform):
#: the real merged parcels' range (`REAL_CONTRAST`; 0.3-0.6 measured) with margin both sides.
CONTRAST_RANGE = (0.2, 0.8)
#: The measured real/simulated texture ratio (model card): the selection set's homogeneous and
#: merged parcels get a texture factor drawn uniformly in it (`merged_validation`).
REAL_TEXTURE = (0.8, 1.5)
#: Real between-cover contrast over the simulator's (model card, measured): adjacent real
#: Slovenian polygons of different land use differ in mean NDVI by 0.08-0.10 (median over
#: dates), adjacent simulated parcels of different crops by 0.20.
REAL_CONTRAST = 0.4
#: Share of parcels given real within-field structure (`structure_sets`) in training batches
#: (every kind of parcel) and of homogeneous parcels in the structured selection set: real
#: single covers show sub-populations (headlands, wet or sandy patches, tree rows, uneven
#: emergence) that the simulator's fields lack. At 0.75 the selection set's homogeneous
#: parcels score the real ones' std rule (median 0.047-0.049 on seeds 500-501; real
#: 0.048-0.057), its merged parcels the real merged ones' (0.068-0.073; real 0.064-0.073).
STRUCTURED_SHARE = 0.75
#: Share of a structured parcel's pixels in its altered patch (uniform).
PATCH_SHARE = (0.05, 0.4)
#: The patch's peak over the parcel's (wet or sandy patch; uniform), phenology shift in days
#: (uneven emergence, headland; either sign), constant NDVI offset (either sign), extra pixel
#: noise std (tree-row edge). Sized so the std rule on structured homogeneous simulated
#: parcels spans the real homogeneous 0.048-0.057 (model card) from the simulator's 0.038.
PATCH_AMPLITUDE = (0.55, 0.85)
PATCH_SHIFT_DAYS = (5.0, 15.0)
PATCH_OFFSET = (0.03, 0.09)
PATCH_NOISE = (0.04, 0.1)
STRUCTURE_KINDS = ("amplitude", "phenology", "offset", "noise")

#: Positives that look like the real check's merges (model card, "Attempts to close the real-
#: data gap"): real adjacent covers there (grassland, shrubland, forest, cultivated land) share
#: a season and differ mostly in level, by 0.06-0.12 NDVI (median over dates, p25-p75 of the
#: real pairs 0.064-0.116), where simulated merges are two crops of distinct temporal shapes.
#: Covers of one group (or one crop on two parcels: other mowing, harvest or emergence dates)
#: make `similar_cover_pairs`; their difference of means is brought to `REAL_GAP`, set on the
#: std rule only: at the measured 0.06-0.12 the selection set's similar merges scored a std rule
#: of 0.074 (real merged parcels 0.064-0.073) and its AUC 0.78 (real 0.72); at 0.04-0.10 they
#: score 0.066 and the AUC 0.744 full season, 0.722 monthly (real 0.726/0.720, 0.707/0.721).
SIMILAR_COVERS = (frozenset({"PPH", "PRL", "J6S"}), frozenset({"BTH", "ORH"}))
REAL_GAP = (0.04, 0.1)
#: At most this gain on a similar pair's own difference of means (a near-identical pair stays
#: a hard positive rather than its noise being blown up).
MAX_GAP_GAIN = 3.0
#: The second cover of `altered_cover_sets`: on 10-50 % of the pixels (the real check's
#: smaller piece is >= 10 % of the union), the first's profile with its rise kept at 0.3-0.55
#: (structure: 0.55-0.85), read 15-35 days off (structure: 5-15) or offset by 0.09-0.15
#: (structure: 0.03-0.09; real pairs differ by 0.06-0.12).
SECOND_SHARE = (0.1, 0.5)
SECOND_AMPLITUDE = (0.3, 0.55)
SECOND_SHIFT_DAYS = (15.0, 35.0)
SECOND_OFFSET = (0.09, 0.15)
#: Shares of a training batch's positives (two thirds of it): the simulator's heterogeneous
#: parcels, merges of two different crops (`CONTRAST_RANGE`), merges of similar covers
#: (`similar_cover_pairs`), a cover and its altered self (`altered_cover_sets`). Two thirds of
#: positives share a season, as every real merged pair measured does; one third keeps the
#: two-crop case that declared parcels also show.
POSITIVE_MIX = (1 / 6, 1 / 6, 1 / 3, 1 / 3)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Season:
    """One simulated season as training material: pixel sets and truth per parcel."""

    series: PixelSetSeries
    heterogeneous: npt.NDArray[np.bool_]
    crop: npt.NDArray[np.str_]


# ---------------------------------------------------------------- data


def season_folder(data_dir: Path, seed: int) -> Path:
    return Path(data_dir) / NAME / f"seed-{seed}"


def load_season(data_dir: Path, seed: int) -> Season:
    """The pixel sets of one simulated season (simulated and cached on first use)."""
    folder = season_folder(data_dir, seed)
    cache = folder / "heterogeneity_sets.npz"
    if not (folder / "catalog.json").is_file():
        log.info("simulating season seed %d", seed)
        simulate_season(
            folder,
            TILE_SIZE,
            N_PARCELS,
            season=2018 + seed % 8,
            seed=seed,
            s1=False,
            clear_truth=False,
            overwrite=True,
        )
    if not cache.is_file():
        catalog = read_catalog(folder)
        parcels = load_parcels(folder / "parcels.parquet")
        ids, series = season_pixel_sets([e.acquisition for e in catalog.entries], parcels)
        truth = pl.read_parquet(folder / "truth" / "parcels.parquet")
        by_id = {
            row[0]: row[1:]
            for row in truth.select("id_parcel", "heterogeneous", "declared_code").iter_rows()
        }
        np.savez(
            cache,
            day_of_year=series.day_of_year,
            ndvi=series.ndvi,
            mask=series.mask,
            valid_fraction=series.valid_fraction,
            ndvi_std=series.ndvi_std,
            heterogeneous=np.array([by_id[i][0] for i in ids], dtype=bool),
            crop=np.array([by_id[i][1] for i in ids], dtype=str),
        )
    with np.load(cache) as z:
        series = PixelSetSeries(
            z["day_of_year"], z["ndvi"], z["mask"], z["valid_fraction"], z["ndvi_std"]
        )
        return Season(series, z["heterogeneous"], z["crop"])


# ---------------------------------------------------------------- batches

_SERIES_ARRAYS = ("ndvi", "mask", "valid_fraction", "ndvi_std")


def training_batch(
    season: Season, rng: np.random.Generator, size: int = BATCH
) -> tuple[dict[str, npt.NDArray[np.float32]], npt.NDArray[np.float32]]:
    """A balanced, augmented batch (model inputs, labels) from one season: a third
    homogeneous parcels, two thirds positives of the `POSITIVE_MIX` kinds."""
    s = season.series
    negatives = np.flatnonzero(~season.heterogeneous)
    n_neg = size - 2 * (size // 3)
    n_sim, n_diff, n_similar, n_altered = positive_counts(size - n_neg)
    pos = rng.choice(np.flatnonzero(season.heterogeneous), n_sim)
    neg = rng.choice(negatives, n_neg)
    main, second = different_crop_pairs(season, negatives, n_diff, rng)
    contrast = _log_uniform(rng, CONTRAST_RANGE, n_diff)
    merged = merge_sets(s, main, second, rng.uniform(0.15, 0.5, n_diff), contrast, rng)
    similar = similar_merges(season, negatives, n_similar, rng)
    altered = altered_cover_sets(s, rng.choice(negatives, n_altered), rng)
    batch = _concat(s, [s.take(neg), s.take(pos), merged, similar, altered])
    # real within-field structure on a share of every kind of parcel, negatives included
    batch = structure_sets(batch, random_structure(size, STRUCTURED_SHARE, rng), rng)
    labels = np.concatenate([np.zeros(n_neg), np.ones(size - n_neg)])
    factor = _log_uniform(rng, TEXTURE_RANGE, size)
    ndvi = scale_texture(batch.ndvi, batch.mask, factor)
    ndvi, mask, usable, shift = augment(ndvi, batch.mask, batch.usable(), rng)
    batch = PixelSetSeries(s.day_of_year, ndvi, mask, batch.valid_fraction, batch.ndvi_std)
    # the output ignores masked dates, so slots that no parcel of the batch fills are cut
    inputs = model_inputs(batch, usable, n_dates=N_DATES)
    used = max(1, int(inputs["date_mask"].sum(axis=1).max()))
    inputs = {k: v[:, :used] for k, v in inputs.items()}
    jitter = rng.integers(-2, 3, inputs["day_of_year"].shape)
    inputs["day_of_year"] = np.where(
        inputs["date_mask"] > 0, np.clip(inputs["day_of_year"] + shift[:, None] + jitter, 1, 366), 0
    ).astype(np.float32)
    return inputs, labels.astype(np.float32)


def positive_counts(n: int) -> tuple[int, int, int, int]:
    """`n` positives split by `POSITIVE_MIX` (simulated, different crops, similar covers,
    altered cover)."""
    edges = np.round(np.cumsum((0.0, *POSITIVE_MIX)) * n).astype(int)
    a, b, c, d = np.diff(edges).tolist()
    return a, b, c, d


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> F64:
    values: F64 = np.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]), n))
    return values


def different_crop_pairs(
    season: Season, candidates: npt.NDArray[np.intp], n: int, rng: np.random.Generator
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """`n` pairs of `candidates` rows, the second redrawn where the crops match (rarely
    still the same after that: kept)."""
    main = rng.choice(candidates, n)
    second = rng.choice(candidates, n)
    same = season.crop[main] == season.crop[second]
    second[same] = rng.choice(candidates, int(same.sum()))
    return main, second


def similar_cover_pairs(
    season: Season, candidates: npt.NDArray[np.intp], n: int, rng: np.random.Generator
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """`n` pairs of distinct `candidates` rows whose covers share a season: one
    `SIMILAR_COVERS` group, or the same crop (a main row with no partner is redrawn)."""
    group = np.array([_cover_group(c) for c in season.crop[candidates]])
    keys, counts = np.unique(group, return_counts=True)
    pairable = np.isin(group, keys[counts >= 2])
    if not pairable.any():
        raise ModelError("no two parcels of similar covers to merge")
    main = rng.choice(candidates[pairable], n)
    row_group = dict(zip(candidates.tolist(), group.tolist(), strict=True))
    second = np.empty(n, dtype=np.intp)
    for i, m in enumerate(main.tolist()):
        mates = candidates[(group == row_group[m]) & (candidates != m)]
        second[i] = rng.choice(mates)
    return main, second


def _cover_group(crop: str) -> str:
    for covers in SIMILAR_COVERS:
        if crop in covers:
            return "+".join(sorted(covers))
    return crop


def gap_contrast(
    series: PixelSetSeries,
    main: npt.NDArray[np.intp],
    second: npt.NDArray[np.intp],
    target: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """The `merge_sets` contrast that brings each pair's difference of date means (median of
    |difference| over the dates usable for both) to `target`, at most `MAX_GAP_GAIN`."""
    gap = np.abs(
        _date_means(series.ndvi[second], series.mask[second])
        - _date_means(series.ndvi[main], series.mask[main])
    )[:, :, 0]
    usable = series.usable()
    both = usable[main] & usable[second]
    median = np.array([np.median(g[b]) if b.any() else 0.0 for g, b in zip(gap, both, strict=True)])
    with np.errstate(divide="ignore"):
        gain = np.where(median > 0, target / np.maximum(median, 1e-9), MAX_GAP_GAIN)
    contrast: F64 = np.minimum(gain, MAX_GAP_GAIN)
    return contrast


def similar_merges(
    season: Season, candidates: npt.NDArray[np.intp], n: int, rng: np.random.Generator
) -> PixelSetSeries:
    """`n` merges of two similar covers (`similar_cover_pairs`), second cover on
    `SECOND_SHARE` of the pixels, difference of means drawn in `REAL_GAP`."""
    s = season.series
    main, second = similar_cover_pairs(season, candidates, n, rng)
    contrast = gap_contrast(s, main, second, rng.uniform(REAL_GAP[0], REAL_GAP[1], n))
    share = rng.uniform(SECOND_SHARE[0], SECOND_SHARE[1], n)
    return merge_sets(s, main, second, share, contrast, rng)


def _concat(series: PixelSetSeries, parts: list[PixelSetSeries]) -> PixelSetSeries:
    return PixelSetSeries(
        series.day_of_year,
        *(np.concatenate([getattr(p, k) for p in parts]) for k in _SERIES_ARRAYS),
    )


def merge_sets(
    series: PixelSetSeries,
    main: npt.NDArray[np.intp],
    second: npt.NDArray[np.intp],
    share: npt.NDArray[np.float64],
    contrast: npt.NDArray[np.float64],
    rng: np.random.Generator,
) -> PixelSetSeries:
    """Parcels made of two (rows `main`, `second`): the second cover on `share` of each set's
    pixels, its date means moved towards the main's to keep `contrast` of the difference
    (`weaken_contrast`). A date counts where it is usable for both (`valid_fraction`: the
    smaller); `ndvi_std` is the std of the merged set."""
    n_px = series.ndvi.shape[2]
    order = rng.permutation(n_px)
    main_ndvi, main_mask = series.ndvi[main], series.mask[main]
    second_ndvi = series.ndvi[second][:, :, order]
    second_mask = series.mask[second][:, :, order]
    second_ndvi = weaken_contrast(main_ndvi, main_mask, second_ndvi, second_mask, contrast)
    take = rng.random((len(main), 1, n_px)) < share[:, None, None]
    ndvi = np.where(take, second_ndvi, main_ndvi)
    mask = np.where(take, second_mask, main_mask)
    return PixelSetSeries(
        series.day_of_year,
        ndvi,
        mask,
        np.minimum(series.valid_fraction[main], series.valid_fraction[second]),
        _set_std(ndvi, mask),
    )


@dataclass(frozen=True)
class PatchRanges:
    """How a patch of a set departs from its own cover (`alter_patch`); each a (low, high)
    range drawn uniformly per parcel."""

    share: tuple[float, float]  # share of the set's pixels in the patch
    amplitude: tuple[float, float]  # patch's rise above the season's low, over the cover's
    shift_days: tuple[float, float]  # phenology read this many days earlier or later
    offset: tuple[float, float]  # constant NDVI offset, either sign
    noise: tuple[float, float]  # extra pixel noise std


#: Real within-field structure of ONE cover (`structure_sets`: a negative).
STRUCTURE = PatchRanges(PATCH_SHARE, PATCH_AMPLITUDE, PATCH_SHIFT_DAYS, PATCH_OFFSET, PATCH_NOISE)
#: A second cover that follows the first's season (`altered_cover_sets`: a positive): beyond
#: every `STRUCTURE` range, so what separates it from a structured single cover is the size
#: and consistency of the second population, as on the real check.
SECOND_COVER = PatchRanges(
    SECOND_SHARE, SECOND_AMPLITUDE, SECOND_SHIFT_DAYS, SECOND_OFFSET, (0.0, 0.0)
)


def structure_sets(
    series: PixelSetSeries, kinds: npt.NDArray[np.int64], rng: np.random.Generator
) -> PixelSetSeries:
    """Real within-field structure on one cover: per parcel (`kinds`: index into
    `STRUCTURE_KINDS`, -1 = left as is) a patch of `PATCH_SHARE` of the pixels whose NDVI
    follows the SAME cover's temporal profile, altered as real fields alter it: peak lowered
    (`amplitude`: the profile's rise above its lowest date mean scaled), phenology shifted
    (`phenology`: the profile read some days earlier or later), a constant `offset`, or noisier
    pixels (`noise`). Each pixel keeps its own texture; `ndvi_std` becomes the set's std where
    a parcel changed. A second cover differs in temporal shape, a structured one does not."""
    return alter_patch(series, kinds, STRUCTURE, rng)


def altered_cover_sets(
    series: PixelSetSeries, rows: npt.NDArray[np.intp], rng: np.random.Generator
) -> PixelSetSeries:
    """Positives whose second cover shares the first's season: the sets of `rows` with
    `SECOND_SHARE` of their pixels on the same profile with a lower peak, a phenology shift or
    a level offset beyond `STRUCTURE`'s ranges (one kind per parcel, noise excluded), as a
    meadow beside shrubs or a late-mown strip of grass look on real images."""
    kinds = rng.integers(0, STRUCTURE_KINDS.index("noise"), len(rows)).astype(np.int64)
    return alter_patch(series.take(rows), kinds, SECOND_COVER, rng)


def alter_patch(
    series: PixelSetSeries,
    kinds: npt.NDArray[np.int64],
    ranges: PatchRanges,
    rng: np.random.Generator,
) -> PixelSetSeries:
    """Per parcel (`kinds`: index into `STRUCTURE_KINDS`, -1 = left as is) a patch of the
    set's pixels moved off the cover's own date means as `ranges` says (`structure_sets`)."""
    n, d, s = series.ndvi.shape
    ndvi, mask = series.ndvi.astype(np.float64), series.mask
    mean = _date_means(series.ndvi, mask)[:, :, 0].astype(np.float64)  # [P, D]
    usable = series.usable()
    delta = np.zeros((n, d))
    amplitude, phenology, offset, noise = (kinds == k for k in range(len(STRUCTURE_KINDS)))
    sign = rng.choice([-1.0, 1.0], n)
    low = np.array([m[u].min() if u.any() else 0.0 for m, u in zip(mean, usable, strict=True)])
    factor = rng.uniform(ranges.amplitude[0], ranges.amplitude[1], (n,))
    delta[amplitude] = ((factor - 1.0)[:, None] * (mean - low[:, None]))[amplitude]
    shift = sign * rng.uniform(ranges.shift_days[0], ranges.shift_days[1], n)
    days = series.day_of_year.astype(np.float64)
    for p in np.flatnonzero(phenology & (usable.sum(axis=1) >= 2)):
        u = usable[p]
        delta[p] = np.interp(days - shift[p], days[u], mean[p, u]) - mean[p]
    delta[offset] = (sign * rng.uniform(ranges.offset[0], ranges.offset[1], n))[offset, None]
    jitter = (
        rng.normal(0.0, 1.0, (n, d, s))
        * (noise * rng.uniform(ranges.noise[0], ranges.noise[1], n))[:, None, None]
    )
    patch = (rng.random((n, 1, s)) < rng.uniform(ranges.share[0], ranges.share[1], (n, 1, 1))) & (
        kinds >= 0
    )[:, None, None]
    altered = np.clip(ndvi + delta[:, :, None] + jitter, -1.0, 1.0)
    out = np.where(patch & mask, altered, ndvi).astype(np.float32)
    out = np.where(mask, out, 0.0).astype(np.float32)
    changed = kinds >= 0
    std = series.ndvi_std.copy()
    std[changed] = _set_std(out[changed], mask[changed])
    return PixelSetSeries(series.day_of_year, out, mask, series.valid_fraction, std)


def random_structure(n: int, share: float, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """Per parcel, a `STRUCTURE_KINDS` index for `share` of them (uniform), else -1."""
    kinds = rng.integers(0, len(STRUCTURE_KINDS), n)
    return np.where(rng.random(n) < share, kinds, -1).astype(np.int64)


def _set_std(ndvi: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_]) -> F32:
    """`[P, D]` population std of the real pixels of each set (NaN where none)."""
    mean = _date_means(ndvi, mask)
    count = mask.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(mask, (ndvi - mean) ** 2, 0.0).sum(axis=2) / count
    return np.where(count > 0, np.sqrt(var), np.nan).astype(np.float32)


def merged_validation(
    season: Season,
    rng: np.random.Generator,
    contrast: float = REAL_CONTRAST,
    texture: tuple[float, float] | None = None,
    structured: float = 0.0,
) -> tuple[npt.NDArray[np.bool_], PixelSetSeries]:
    """The real check's construction on a simulated season, at real contrast: its homogeneous
    parcels, plus merges of two of them of different crops (second cover on 10-50 %, between-
    cover difference cut to `contrast`) at the `TARGET_PRIOR` prevalence. The simulator's own
    heterogeneous parcels (full simulated contrast) are left out. With `texture`, every
    parcel's spread (sets and zonal std) is scaled by a factor drawn uniformly in that range;
    with `structured`, that share of the homogeneous parcels gets real within-field structure
    (`structure_sets`): merged parcels stay as built, since at real contrast they already
    score the real merged parcels' std rule (model card)."""
    s = season.series
    homogeneous = np.flatnonzero(~season.heterogeneous)
    n = round(len(homogeneous) * TARGET_PRIOR / (1.0 - TARGET_PRIOR))
    main, second = different_crop_pairs(season, homogeneous, n, rng)
    merged = merge_sets(s, main, second, rng.uniform(0.1, 0.5, n), np.full(n, contrast), rng)
    parts = (s.take(homogeneous), merged)
    series = PixelSetSeries(
        s.day_of_year,
        *(np.concatenate([getattr(p, k) for p in parts]) for k in _SERIES_ARRAYS),
    )
    labels = np.concatenate([np.zeros(len(homogeneous), bool), np.ones(n, bool)])
    if structured > 0.0:
        kinds = random_structure(len(labels), structured, rng)
        series = structure_sets(series, np.where(labels, -1, kinds), rng)
    if texture is not None:
        factor = rng.uniform(*texture, len(labels))
        series = PixelSetSeries(
            series.day_of_year,
            scale_texture(series.ndvi, series.mask, factor),
            series.mask,
            series.valid_fraction,
            (series.ndvi_std * factor[:, None]).astype(np.float32),
        )
    return labels, series


def _date_means(ndvi: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_]) -> F32:
    """`[P, D, 1]` mean of the real pixels of each set (0 where none)."""
    count = np.maximum(mask.sum(axis=2, keepdims=True), 1)
    means: F32 = (np.where(mask, ndvi, 0.0).sum(axis=2, keepdims=True) / count).astype(np.float32)
    return means


def scale_texture(
    ndvi: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_], factor: npt.NDArray[np.float64]
) -> npt.NDArray[np.float32]:
    """Every pixel's deviation from its set's mean times `factor [P]` (per parcel): within-
    parcel spread, texture and cover contrast alike, at another level; means unchanged."""
    mean = _date_means(ndvi, mask)
    scaled = mean + factor[:, None, None] * (ndvi - mean)
    return np.where(mask, scaled, 0.0).astype(np.float32)


def weaken_contrast(
    main: npt.NDArray[np.float32],
    main_mask: npt.NDArray[np.bool_],
    second: npt.NDArray[np.float32],
    second_mask: npt.NDArray[np.bool_],
    contrast: npt.NDArray[np.float64],
) -> npt.NDArray[np.float32]:
    """The `second` cover's sets moved towards the `main` cover's date means, keeping
    `contrast [P]` (0-1) of the difference of the means: subtle cover differences."""
    gap = _date_means(second, second_mask) - _date_means(main, main_mask)
    moved = second - (1.0 - contrast[:, None, None]) * gap
    return np.where(second_mask, moved, 0.0).astype(np.float32)


def augment(
    ndvi: npt.NDArray[np.float32],
    mask: npt.NDArray[np.bool_],
    usable: npt.NDArray[np.bool_],
    rng: np.random.Generator,
) -> tuple[
    npt.NDArray[np.float32], npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.int64]
]:
    """Real-archive robustness (module docstring); returns new arrays and day shifts."""
    n, d, s = ndvi.shape
    # season so far: a random prefix; dropped dates
    end = rng.integers(min(6, d), d + 1, n)
    usable = usable & (np.arange(d)[None, :] < end[:, None])
    usable &= rng.random((n, d)) >= rng.uniform(0.0, 0.4, (n, 1))
    # residual clouds / haze on some dates: part of the set pulled towards cloud NDVI
    hit = (rng.random((n, d)) < 0.08)[:, :, None] & (
        rng.random((n, d, s)) < rng.uniform(0.1, 0.8, (n, d, 1))
    )
    cloud = rng.uniform(-0.05, 0.15, (n, d, 1)).astype(np.float32)
    opacity = rng.uniform(0.3, 1.0, (n, d, 1)).astype(np.float32)
    ndvi = np.where(hit, ndvi + opacity * (cloud - ndvi), ndvi)
    # calibration differences between archives, atmosphere per date, pixel noise
    gain = rng.uniform(0.85, 1.15, (n, 1, 1))
    offset = rng.uniform(-0.05, 0.05, (n, 1, 1)) + rng.normal(0.0, 0.02, (n, d, 1))
    ndvi = (ndvi * gain + offset + rng.normal(0.0, 0.01, (n, d, s))).astype(np.float32)
    # small parcels: only a few pixels per set
    few = rng.random(n) < 0.3
    keep_px = np.where(few, rng.integers(4, s + 1, n), s)
    mask = mask & (np.arange(s)[None, None, :] < keep_px[:, None, None])
    ndvi = np.where(mask, np.clip(ndvi, -1.0, 1.0), 0.0).astype(np.float32)
    usable &= mask.sum(axis=2) >= 4
    shift = rng.integers(-20, 21, size=(n,))
    return ndvi, mask, usable, shift


# ---------------------------------------------------------------- train / export


def train(data_dir: Path, out_dir: Path, *, seed: int, epochs: int | None) -> Path:
    """The stacked model: the network (trained on `TRAIN_SEEDS`, or `BASE_CHECKPOINT`), then
    the stack's coefficients fitted on `FIT_SEEDS` (`fit_stack`); returns the checkpoint."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    if BASE_CHECKPOINT is None:
        net = train_network(data_dir, seed=seed, epochs=epochs)
    else:
        net = load_network(BASE_CHECKPOINT)
    fitting = [load_season(data_dir, s) for s in FIT_SEEDS]
    coefficients, losses = fit_stack(net, fitting)
    log.info("stack %s, fitting-set log-loss %s", coefficients, losses)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / f"{NAME}.pt"
    state = {"state_dict": net.state_dict(), "config": net.config, "stack": list(coefficients)}
    torch.save(state, checkpoint)
    return checkpoint


def train_network(data_dir: Path, *, seed: int, epochs: int | None) -> HeterogeneityNet:
    """The network alone, trained on `TRAIN_SEEDS` (simulated first when missing)."""
    rng = np.random.default_rng(seed)
    seasons = [load_season(data_dir, s) for s in TRAIN_SEEDS]
    model = HeterogeneityNet(level=LEVEL_FEATURES)
    epochs = epochs or DEFAULT_EPOCHS
    steps = epochs * STEPS_PER_EPOCH
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    loss_fn = nn.BCEWithLogitsLoss()
    started = time.monotonic()
    running = 0.0
    for step in range(1, steps + 1):
        season = seasons[int(rng.integers(len(seasons)))]
        inputs, labels = training_batch(season, rng)
        logits = model(*(torch.from_numpy(inputs[k]) for k in INPUT_NAMES))
        loss = loss_fn(logits, torch.from_numpy(labels))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        running += loss.item()
        if step % STEPS_PER_EPOCH == 0:
            elapsed = time.monotonic() - started
            print(
                f"epoch {step // STEPS_PER_EPOCH}/{epochs} loss {running / STEPS_PER_EPOCH:.4f}"
                f" {elapsed:.0f}s",
                flush=True,
            )
            running = 0.0
    calibrate_prior(model)
    return model.eval()


def fit_stack(
    net: HeterogeneityNet, seasons: list[Season], seed: int = FIT_SET_SEED
) -> tuple[tuple[float, float, float], dict[str, float]]:
    """The stack's (a, b, c), fitted on `similar_validation` of `seasons` (in the recipe
    `FIT_SEEDS`: neither trained on nor the selection set), one row per parcel and engine
    check; and the fitting set's log-loss of the network alone and of the stack."""
    features, labels = [], []
    for truth, series in similar_validation(seasons, seed=seed):
        for cut in _check_cuts(series):
            rows, f = stack_features(net, cut)
            features.append(f)
            labels.append(truth[rows])
    x, y = np.concatenate(features), np.concatenate(labels)
    a, b, c = fit_logistic(x, y)
    losses = {
        "network": log_loss(x[:, 0], y),
        "stack": log_loss(a * x[:, 0] + b * x[:, 1] + c, y),
    }
    return (a, b, c), losses


def calibrate_prior(model: HeterogeneityNet) -> None:
    """Shift the output bias from `BATCH_PRIOR` to `TARGET_PRIOR` (Bayes prior correction)."""
    shift = _log_odds(TARGET_PRIOR) - _log_odds(BATCH_PRIOR)
    last = model.decoder[-1]
    if not isinstance(last, nn.Linear):
        raise ModelError("the decoder must end with a linear layer")
    with torch.no_grad():
        last.bias.add_(shift)


def _log_odds(p: float) -> float:
    return math.log(p / (1.0 - p))


def load_network(checkpoint: Path) -> HeterogeneityNet:
    """The network of a checkpoint (a stack's base, or a network alone)."""
    return _network(torch.load(checkpoint, map_location="cpu", weights_only=True))


def _network(state: dict[str, Any]) -> HeterogeneityNet:
    model = HeterogeneityNet(**state["config"])
    model.load_state_dict(state["state_dict"])
    return model.eval()


def load_checkpoint(checkpoint: Path) -> nn.Module:
    """The exported module: the stack when the checkpoint has its coefficients."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    net = _network(state)
    if "stack" not in state:
        return net
    a, b, c = (float(v) for v in state["stack"])
    return StackedHeterogeneity(net, (a, b, c)).eval()


def example_inputs(n: int, rng: np.random.Generator) -> dict[str, npt.NDArray[np.float32]]:
    """Random inputs of the real shapes (some padded pixels and dates)."""
    pixel_mask = (rng.random((n, N_DATES, N_PIXELS)) < 0.8).astype(np.float32)
    date_mask = (rng.random((n, N_DATES)) < 0.7).astype(np.float32)
    date_mask[:, 0] = 1.0
    return {
        "pixels": rng.uniform(-0.2, 1.0, (n, N_DATES, N_PIXELS, 1)).astype(np.float32),
        "pixel_mask": pixel_mask,
        "date_mask": date_mask,
        "day_of_year": rng.integers(1, 366, (n, N_DATES)).astype(np.float32),
    }


def export(checkpoint: Path, onnx_path: Path) -> None:
    """ONNX, opset 17, dynamic batch axis; inputs `INPUT_NAMES`, output `logit [N]`."""
    model = load_checkpoint(checkpoint)
    sample = example_inputs(2, np.random.default_rng(0))
    args = tuple(torch.from_numpy(sample[k]) for k in INPUT_NAMES)
    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        args,
        str(onnx_path),
        input_names=list(INPUT_NAMES),
        output_names=["logit"],
        opset_version=17,
        dynamic_shapes=tuple({0: torch.export.Dim.DYNAMIC} for _ in INPUT_NAMES),
        external_data=False,
    )


# ---------------------------------------------------------------- metrics


def roc_auc(labels: npt.NDArray[np.bool_], scores: F64) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if not n_pos or not n_neg:
        raise ModelError("AUC needs both positives and negatives")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]  # average rank of ties
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def f1_score(labels: npt.NDArray[np.bool_], predicted: npt.NDArray[np.bool_]) -> float:
    tp = int((labels & predicted).sum())
    denominator = int(labels.sum()) + int(predicted.sum())
    return 2.0 * tp / denominator if denominator else 0.0


def best_f1_threshold(labels: npt.NDArray[np.bool_], scores: F64) -> float:
    """The score threshold (predict `score >= t`) with the best F1."""
    candidates = np.unique(scores)
    f1 = [f1_score(labels, scores >= t) for t in candidates]
    return float(candidates[int(np.argmax(f1))])


# ---------------------------------------------------------------- evaluation


Models = dict[str, Path]


def _scores(series: PixelSetSeries, models: Models) -> dict[str, F64]:
    scores = {m: heterogeneity_probability(series, load_model(p)) for m, p in models.items()}
    scores["std rule"] = std_rule_score(series)
    return scores


def _until(series: PixelSetSeries, day_of_year: int) -> PixelSetSeries:
    d = int((series.day_of_year <= day_of_year).sum())
    return PixelSetSeries(
        series.day_of_year[:d],
        series.ndvi[:, :d],
        series.mask[:, :d],
        series.valid_fraction[:, :d],
        series.ndvi_std[:, :d],
    )


def _rows(
    dataset: str,
    labels: npt.NDArray[np.bool_],
    scores: dict[str, F64],
    thresholds: dict[str, float],
) -> list[EvaluationRow]:
    rows = [
        EvaluationRow(NAME, dataset, "-", "parcels", float(len(labels))),
        EvaluationRow(NAME, dataset, "-", "heterogeneous", float(labels.sum())),
    ]
    for method, score in scores.items():
        predicted = score >= thresholds[method]
        rows.append(EvaluationRow(NAME, dataset, method, "F1", f1_score(labels, predicted)))
        rows.append(EvaluationRow(NAME, dataset, method, "flagged", float(predicted.sum())))
        rows.append(
            EvaluationRow(NAME, dataset, method, "true flagged", float((predicted & labels).sum()))
        )
        rows.append(EvaluationRow(NAME, dataset, method, "AUC", roc_auc(labels, score)))
    return rows


def _check_cuts(series: PixelSetSeries) -> list[PixelSetSeries]:
    """The season so far at each engine check: every `CHECK_EVERY_DAYS` from the first date."""
    days = series.day_of_year
    cuts = np.arange(days[0] + CHECK_EVERY_DAYS, days[-1] + CHECK_EVERY_DAYS, CHECK_EVERY_DAYS)
    return [_until(series, int(cut)) for cut in cuts]


def _checked(series: PixelSetSeries, models: Models) -> dict[str, F64]:
    """Scores as the engine flags: the highest of the scores of the season so far at each
    check (`_check_cuts`; NaN where never scored)."""
    scored = [_scores(cut, models) for cut in _check_cuts(series)]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: never enough dates
        return {m: np.nanmax(np.vstack([s[m] for s in scored]), axis=0) for m in scored[0]}


Labelled = tuple[npt.NDArray[np.bool_], PixelSetSeries]


def _labelled(seasons: list[Season]) -> list[Labelled]:
    return [(season.heterogeneous, season.series) for season in seasons]


def _pooled(
    sets: list[Labelled], models: Models, until: int | None = None, *, checked: bool = False
) -> tuple[npt.NDArray[np.bool_], dict[str, F64]]:
    labels: list[npt.NDArray[np.bool_]] = []
    pooled: dict[str, list[F64]] = {}
    for truth, series in sets:
        if checked:
            scores = _checked(series, models)
        else:
            scores = _scores(series if until is None else _until(series, until), models)
        ok = np.logical_and.reduce([~np.isnan(s) for s in scores.values()])
        labels.append(truth[ok])
        for m, s in scores.items():
            pooled.setdefault(m, []).append(s[ok])
    return np.concatenate(labels), {m: np.concatenate(s) for m, s in pooled.items()}


def validation_summary(onnx_path: Path, data_dir: Path) -> dict[str, float]:
    """Model selection figures, on `VALIDATION_SEEDS` only (ROC AUC): plain seasons, merged
    at real contrast, merged at real contrast with the real texture ratio (`REAL_TEXTURE`),
    merged at real contrast with structured parcels (`structured_validation`), and the
    similar-season set (`similar_validation`, the selection and threshold set), full season;
    the last three also as the engine flags."""
    models = {"model": Path(onnx_path)}
    validation = [load_season(data_dir, s) for s in VALIDATION_SEEDS]
    rng = np.random.default_rng(0)
    real_like = [merged_validation(season, rng) for season in validation]
    textured = [merged_validation(s, rng, texture=REAL_TEXTURE) for s in validation]
    structured = structured_validation(validation)
    similar = similar_validation(validation)
    out: dict[str, float] = {}
    for key, sets, checked in (
        ("plain", _labelled(validation), False),
        ("real-contrast", real_like, False),
        ("real-contrast-texture", textured, False),
        ("real-contrast-texture-monthly", textured, True),
        ("real-contrast-structured", structured, False),
        ("real-contrast-structured-monthly", structured, True),
        ("similar-season", similar, False),
        ("similar-season-monthly", similar, True),
    ):
        labels, scores = _pooled(sets, models, checked=checked)
        for m, score in scores.items():
            out[f"{key} {m}"] = round(roc_auc(labels, score), 4)
    return out


def structured_validation(
    seasons: list[Season], seed: int = 1, share: float = STRUCTURED_SHARE
) -> list[Labelled]:
    """The threshold and selection set: `merged_validation` of `seasons` at real contrast,
    `share` of its homogeneous parcels with real within-field structure."""
    rng = np.random.default_rng(seed)
    return [merged_validation(s, rng, structured=share) for s in seasons]


def similar_validation(
    seasons: list[Season], seed: int = 3, share: float = STRUCTURED_SHARE
) -> list[Labelled]:
    """The selection and threshold set of similar-season positives: each season's homogeneous
    parcels, `share` of them structured (`structure_sets`), and at the `TARGET_PRIOR`
    prevalence positives whose two covers share a season, half `similar_merges`, half
    `altered_cover_sets` (left as built, like the real merged parcels)."""
    rng = np.random.default_rng(seed)
    out: list[Labelled] = []
    for season in seasons:
        s = season.series
        homogeneous = np.flatnonzero(~season.heterogeneous)
        n = round(len(homogeneous) * TARGET_PRIOR / (1.0 - TARGET_PRIOR))
        similar = similar_merges(season, homogeneous, n // 2, rng)
        altered = altered_cover_sets(s, rng.choice(homogeneous, n - n // 2), rng)
        negatives = structure_sets(
            s.take(homogeneous), random_structure(len(homogeneous), share, rng), rng
        )
        labels = np.concatenate([np.zeros(len(homogeneous), bool), np.ones(n, bool)])
        out.append((labels, _concat(s, [negatives, similar, altered])))
    return out


def evaluate(onnx_path: Path, data_dir: Path, previous: Path | None = None) -> list[EvaluationRow]:
    """Held-out F1/AUC of the model, of `previous` (another artifact, when given) and of the
    std rule. Thresholds: best F1 as the engine flags on `similar_validation` of
    `VALIDATION_SEEDS` (structured homogeneous parcels, similar-season positives; neither
    trained nor tested on), fixed before any real score is computed; both real Slovenian
    years are held out (never trained or tuned on). Slovenia 2015 (July-September only) is a
    diagnostic, full season only."""
    onnx_path = Path(onnx_path)
    models: Models = {"PSE-TAE": onnx_path}
    if previous is not None:
        models["previous"] = Path(previous)
    for path in models.values():
        if not path.is_file():
            raise ModelError(f"no model {path}: run parcel-monitor export {NAME}")
    validation = [load_season(data_dir, s) for s in VALIDATION_SEEDS]
    rng = np.random.default_rng(0)
    fit_labels, fit_scores = _pooled(similar_validation(validation), models, checked=True)
    thresholds = {m: best_f1_threshold(fit_labels, s) for m, s in fit_scores.items()}
    rows = [
        EvaluationRow(NAME, "sim-validation-similar-season (thresholds)", m, "threshold", t)
        for m, t in thresholds.items()
    ]
    rows += _rows(
        "sim-validation-similar-season-monthly-checks", fit_labels, fit_scores, thresholds
    )
    plain_labels, plain_scores = _pooled(_labelled(validation), models, checked=True)
    rows += [
        EvaluationRow(NAME, "sim-validation (best-F1 threshold, not used)", m, "threshold", t)
        for m, t in ((m, best_f1_threshold(plain_labels, s)) for m, s in plain_scores.items())
    ]
    held_out = [load_season(data_dir, s) for s in HELD_OUT_SEEDS]
    sets = _labelled(held_out)
    rows += _rows("sim-held-out-monthly-checks", *_pooled(sets, models, checked=True), thresholds)
    rows += _rows("sim-held-out", *_pooled(sets, models), thresholds)
    rows += _rows("sim-held-out-to-1-July", *_pooled(sets, models, MID_SEASON_DOY), thresholds)
    merged = [merged_validation(season, rng) for season in held_out]
    rows += _rows(
        "sim-held-out-merged-real-contrast-monthly-checks",
        *_pooled(merged, models, checked=True),
        thresholds,
    )
    rows += _rows(
        "sim-held-out-merged-real-contrast-structured-monthly-checks",
        *_pooled(structured_validation(held_out, seed=2), models, checked=True),
        thresholds,
    )
    rows += _rows(
        "sim-held-out-similar-season-monthly-checks",
        *_pooled(similar_validation(held_out, seed=4), models, checked=True),
        thresholds,
    )
    for year in (2016, 2017):
        real = [slovenia_merged(year)]
        rows += _rows(f"slovenia-merged-{year}", *_pooled(real, models), thresholds)
        rows += _rows(
            f"slovenia-merged-{year}-monthly-checks",
            *_pooled(real, models, checked=True),
            thresholds,
        )
    rows += _rows(
        "slovenia-merged-2015-jul-sep (diagnostic)",
        *_pooled([slovenia_merged(2015)], models),
        thresholds,
    )
    return rows


# ---------------------------------------------------------------- real data check


_SLOVENIA_DATE = re.compile(r"_(\d{8})T\d{6}\.tif$")
MIN_PIECE_PX = 10
MIN_PARCEL_PX = 30
MIN_SECOND_SHARE = 0.1


def slovenia_pairs() -> tuple[list[tuple[int, ...]], list[bool]]:
    """Declared parcels made of the real Slovenian land-use polygons: single polygons
    (homogeneous) and unions of two adjacent polygons of different land use (heterogeneous),
    kept when large enough (`MIN_PARCEL_PX`, each piece `MIN_PIECE_PX`, the smaller piece at
    least `MIN_SECOND_SHARE` of the union). Polygons without land use are left out."""
    parcels = load_parcels(
        SLOVENIA / "land_use_parcels.gpkg", id_column="index", crop_column="LULC_NAME"
    )
    if parcels.crops is None:
        raise ConfigError("the Slovenian sample has no LULC_NAME column")
    px = shapely.area(parcels.geometries) / 100.0  # ~10 m pixels
    known = np.array([c != "" for c in parcels.crops])
    singles: list[tuple[int, ...]] = [
        (int(i),) for i in np.flatnonzero(known & (px >= MIN_PARCEL_PX))
    ]
    groups: list[tuple[int, ...]] = singles
    labels = [False] * len(groups)
    tree = shapely.STRtree(parcels.geometries)
    left, right = tree.query(parcels.geometries, predicate="dwithin", distance=1.0)
    for a, b in zip(left.tolist(), right.tolist(), strict=True):
        if a >= b or not (known[a] and known[b]) or parcels.crops[a] == parcels.crops[b]:
            continue
        small, total = min(px[a], px[b]), px[a] + px[b]
        if small >= MIN_PIECE_PX and total >= MIN_PARCEL_PX and small / total >= MIN_SECOND_SHARE:
            groups.append((a, b))
            labels.append(True)
    return groups, labels


def slovenia_merged(year: int) -> tuple[npt.NDArray[np.bool_], PixelSetSeries]:
    """Labels and pixel-set series (1 March - 31 October of `year`) of `slovenia_pairs`.

    A polygon belongs to several merged parcels, so the parcels are rasterized in rounds
    of disjoint groups, one label raster per round."""
    parcels = load_parcels(SLOVENIA / "land_use_parcels.gpkg", id_column="index")
    groups, labels = slovenia_pairs()
    rounds: list[list[int]] = []
    used: list[set[int]] = []
    for g, members in enumerate(groups):
        for r, taken in enumerate(used):
            if not taken & set(members):
                rounds[r].append(g)
                taken.update(members)
                break
        else:
            rounds.append([g])
            used.append(set(members))
    files = sorted(
        (p for p in (SLOVENIA / "ndvi").glob("*.tif") if _in_season(p, year)),
        key=lambda p: p.name,
    )
    if not files:
        raise ConfigError(f"no Slovenian NDVI date in the {year} season")
    with rasterio.open(files[0]) as src:
        height, width, transform = src.height, src.width, list(src.transform)[:6]
    rasters = [
        build_label_raster(
            [shapely.union_all(parcels.geometries[list(groups[g])]) for g in members],
            height,
            width,
            transform,
            coverage=False,
        )
        for members in rounds
    ]
    dates = []
    for path in files:
        with rasterio.open(path) as src:
            ndvi, cloud = src.read(1), src.read(3)
        day = _file_date(path)
        valid = (cloud == 0) & np.isfinite(ndvi)
        dates.append(
            [
                ndvi_pixel_sets(lab, ndvi, valid, day.timetuple().tm_yday, seed=day.toordinal())
                for lab in rasters
            ]
        )
    parts = [PixelSetSeries.stack([d[r] for d in dates]) for r in range(len(rounds))]
    order = np.argsort(np.concatenate([np.array(m) for m in rounds]))
    series = PixelSetSeries(
        parts[0].day_of_year,
        np.concatenate([p.ndvi for p in parts])[order],
        np.concatenate([p.mask for p in parts])[order],
        np.concatenate([p.valid_fraction for p in parts])[order],
        np.concatenate([p.ndvi_std for p in parts])[order],
    )
    return np.array(labels, dtype=bool), series


def _file_date(path: Path) -> date:
    match = _SLOVENIA_DATE.search(path.name)
    if match is None:
        raise ConfigError(f"{path.name}: no acquisition date in the name")
    text = match.group(1)
    return date(int(text[:4]), int(text[4:6]), int(text[6:]))


def _in_season(path: Path, year: int) -> bool:
    day = _file_date(path)
    return day.year == year and 3 <= day.month <= 10
