"""Similar-season positives (round 3): a second cover that shares the first's season, beyond
the structure a single cover shows, and the selection set built from them."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from models.heterogeneity_training import (
    MAX_GAP_GAIN,
    PATCH_AMPLITUDE,
    PATCH_OFFSET,
    PATCH_SHARE,
    PATCH_SHIFT_DAYS,
    SECOND_AMPLITUDE,
    SECOND_COVER,
    SECOND_OFFSET,
    SECOND_SHARE,
    SECOND_SHIFT_DAYS,
    STRUCTURE_KINDS,
    TARGET_PRIOR,
    Season,
    alter_patch,
    altered_cover_sets,
    gap_contrast,
    merge_sets,
    positive_counts,
    similar_cover_pairs,
    similar_validation,
    training_batch,
)
from monitor.heterogeneity import INPUT_NAMES, PixelSetSeries
from tests.pixel_set_seasons import DAYS, pixel_sets, profile


def _season(rng: np.random.Generator, n: int, heterogeneous: int = 0) -> Season:
    green = rng.uniform(90.0, 170.0, n)
    series = pixel_sets(rng, np.stack([profile(DAYS, g, g + 100.0) for g in green]), 0.03)
    crops = np.array(["BTH", "MIS", "PPH", "ORH", "J6S", "PTC"] * (n // 6 + 1))[:n]
    return Season(series, np.arange(n) < heterogeneous, crops)


def _moved_and_rest(before: PixelSetSeries, after: PixelSetSeries, p: int) -> tuple:
    moved = (after.ndvi[p] != before.ndvi[p]).any(axis=0) & after.mask[p].any(axis=0)
    keep_moved = after.mask[p] & moved[None, :]
    keep_rest = after.mask[p] & ~moved[None, :]
    patch = np.where(keep_moved, after.ndvi[p], 0.0).sum(1) / np.maximum(keep_moved.sum(1), 1)
    rest = np.where(keep_rest, after.ndvi[p], 0.0).sum(1) / np.maximum(keep_rest.sum(1), 1)
    ok = (keep_moved.sum(1) > 0) & (keep_rest.sum(1) > 0)
    return moved, patch[ok], rest[ok]


def test_second_cover_ranges_lie_beyond_the_single_cover_structure() -> None:
    assert SECOND_OFFSET[0] >= PATCH_OFFSET[1]
    assert SECOND_AMPLITUDE[1] <= PATCH_AMPLITUDE[0]
    assert SECOND_SHIFT_DAYS[0] >= PATCH_SHIFT_DAYS[1]
    assert SECOND_SHARE[0] >= PATCH_SHARE[0]


def test_offset_second_cover_differs_from_the_main_by_at_least_the_offset() -> None:
    rng = np.random.default_rng(0)
    n = 40
    series = pixel_sets(rng, np.stack([profile(DAYS, 120.0, 230.0)] * n), 0.03)
    kinds = np.full(n, STRUCTURE_KINDS.index("offset"))
    after = alter_patch(series, kinds, SECOND_COVER, rng)
    for p in range(n):
        moved, patch, rest = _moved_and_rest(series, after, p)
        if moved.sum() < 3:
            continue
        # mean over dates of the two populations' difference: the offset, up to sampling noise
        gap = abs(float(np.mean(patch - rest)))
        assert SECOND_OFFSET[0] - 0.03 < gap < SECOND_OFFSET[1] + 0.03


def test_amplitude_second_cover_keeps_at_most_its_share_of_the_rise() -> None:
    rng = np.random.default_rng(1)
    n = 40
    series = pixel_sets(rng, np.stack([profile(DAYS, 120.0, 230.0)] * n), 0.01)
    kinds = np.full(n, STRUCTURE_KINDS.index("amplitude"))
    after = alter_patch(series, kinds, SECOND_COVER, rng)
    ratios = []
    for p in range(n):
        moved, patch, rest = _moved_and_rest(series, after, p)
        if moved.sum() < 3:
            continue
        ratios.append((patch.max() - patch.min()) / (rest.max() - rest.min()))
    assert len(ratios) > n // 2
    assert max(ratios) < SECOND_AMPLITUDE[1] + 0.08
    assert min(ratios) > SECOND_AMPLITUDE[0] - 0.08


def test_altered_cover_sets_alter_the_intended_share_and_no_noise() -> None:
    rng = np.random.default_rng(2)
    n = 300
    series = pixel_sets(rng, np.stack([profile(DAYS, 110.0, 220.0)] * n), 0.03)
    rows = np.arange(n)
    after = altered_cover_sets(series, rows, rng)
    moved = (after.ndvi != series.ndvi).any(axis=1).sum(axis=1) / 32
    assert SECOND_SHARE[0] < moved.mean() < SECOND_SHARE[1]
    assert moved.max() <= SECOND_SHARE[1] + 0.3
    # every parcel moved as one population (no per-pixel noise): a moved pixel's change
    # is the same as the patch's on each date, up to the clip at the NDVI range
    change = after.ndvi - series.ndvi
    for p in range(20):
        cols = (change[p] != 0).any(axis=0)
        if cols.sum() >= 2:
            on = change[p][:, cols]
            both = after.mask[p][:, cols] & (np.abs(after.ndvi[p][:, cols]) < 1.0)
            spread = np.where(both, on - on[:, :1], 0.0)
            assert np.abs(spread[both.all(axis=1)]).max() < 1e-5


def test_similar_pairs_share_a_cover_group_and_are_distinct_parcels() -> None:
    rng = np.random.default_rng(3)
    season = _season(rng, 60)
    main, second = similar_cover_pairs(season, np.arange(60), 200, rng)
    assert (main != second).all()
    groups = {"PPH": "g", "PRL": "g", "J6S": "g", "BTH": "w", "ORH": "w"}
    a = [groups.get(c, c) for c in season.crop[main]]
    b = [groups.get(c, c) for c in season.crop[second]]
    assert a == b
    assert (season.crop[main] != season.crop[second]).any()  # not only same-crop pairs


def test_gap_contrast_brings_the_pair_difference_to_the_target() -> None:
    rng = np.random.default_rng(4)
    n = 30
    profiles = np.stack([profile(DAYS, 120.0, 230.0)] * n + [profile(DAYS, 130.0, 240.0)] * n)
    series = pixel_sets(rng, profiles, 0.03)
    main, second = np.arange(n), np.arange(n, 2 * n)
    target = rng.uniform(0.04, 0.1, n)
    contrast = gap_contrast(series, main, second, target)
    assert (contrast <= MAX_GAP_GAIN).all()
    merged = merge_sets(series, main, second, np.full(n, 1.0), contrast, rng)
    met = contrast < MAX_GAP_GAIN
    assert met.any()
    achieved = np.median(
        np.abs(
            merged.ndvi[met].mean(axis=2, where=merged.mask[met])
            - series.ndvi[main[met]].mean(axis=2, where=series.mask[main[met]])
        ),
        axis=1,
    )
    np.testing.assert_allclose(achieved, target[met], atol=0.01)


def test_similar_validation_prevalence_labels_and_determinism() -> None:
    rng = np.random.default_rng(5)
    seasons = [_season(rng, 190, heterogeneous=10), _season(rng, 190)]
    sets = similar_validation(seasons, seed=7)
    again = similar_validation(seasons, seed=7)
    other = similar_validation(seasons, seed=8)
    for season, (labels, series), (labels2, series2) in zip(seasons, sets, again, strict=True):
        homogeneous = int((~season.heterogeneous).sum())
        assert (~labels).sum() == homogeneous
        assert labels.sum() == round(homogeneous * TARGET_PRIOR / (1 - TARGET_PRIOR))
        assert labels[-labels.sum() :].all()
        assert series.n_parcels == len(labels)
        np.testing.assert_array_equal(labels, labels2)
        np.testing.assert_array_equal(series.ndvi, series2.ndvi)
    assert not np.array_equal(sets[0][1].ndvi, other[0][1].ndvi)


def test_training_batch_mixes_the_positive_kinds_at_two_thirds() -> None:
    assert sum(positive_counts(128)) == 128
    assert min(positive_counts(128)) > 0
    rng = np.random.default_rng(6)
    season = _season(rng, 120, heterogeneous=8)
    inputs, labels = training_batch(season, np.random.default_rng(9), size=96)
    inputs2, _ = training_batch(season, np.random.default_rng(9), size=96)
    assert labels.shape == (96,)
    assert labels.mean() == pytest.approx(2 / 3)
    for key in INPUT_NAMES:
        assert inputs[key].shape[0] == 96
        np.testing.assert_array_equal(inputs[key], inputs2[key])
