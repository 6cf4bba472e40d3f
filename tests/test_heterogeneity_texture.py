"""The heterogeneity model's independence from the level of within-parcel texture, the
training augmentations that go with it, and the shipped model on the real Slovenian check."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.heterogeneity import TEXTURE_FLOOR  # noqa: E402
from models.heterogeneity_training import (  # noqa: E402
    example_inputs,
    merge_sets,
    roc_auc,
    scale_texture,
    slovenia_merged,
    weaken_contrast,
)
from monitor.heterogeneity import (  # noqa: E402
    DECISION_THRESHOLD,
    PixelSetSeries,
    heterogeneity_probability,
)
from monitor.infer import load_model  # noqa: E402


def _set_means(ndvi: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask, ndvi, 0.0).sum(axis=2) / np.maximum(mask.sum(axis=2), 1)


def test_output_does_not_depend_on_the_level_of_a_strong_texture() -> None:
    # Every pixel's deviation from its set's mean halved, or doubled: with a texture far above
    # TEXTURE_FLOOR (std ~0.35 here) the shipped model's probabilities barely move (the floor
    # alone moves them by ~0.03), while moving the means changes them a lot. Near the floor
    # the level leaks through it (model card, known limits).
    rng = np.random.default_rng(7)
    inputs = example_inputs(16, rng)
    mask = inputs["pixel_mask"] > 0
    model = load_model("heterogeneity")

    def probability(pixels: np.ndarray) -> np.ndarray:
        logit = model.run(inputs | {"pixels": pixels[..., None]})["logit"]
        return np.asarray(1.0 / (1.0 + np.exp(-logit)))

    before = probability(inputs["pixels"][..., 0])
    for factor in (0.5, 2.0):
        after = probability(scale_texture(inputs["pixels"][..., 0], mask, np.full(16, factor)))
        np.testing.assert_allclose(after, before, atol=0.05)
    shifted = probability(inputs["pixels"][..., 0] * 0.5)
    assert np.abs(shifted - before).max() > 0.2
    assert TEXTURE_FLOOR < 0.01


def _sets(n: int, rng: np.random.Generator, centre: float) -> tuple[np.ndarray, np.ndarray]:
    mask = rng.random((n, 5, 32)) < 0.9
    ndvi = np.where(mask, centre + rng.normal(0.0, 0.05, mask.shape), 0.0).astype(np.float32)
    return ndvi, mask


def test_scale_texture_keeps_the_means_and_scales_the_spread() -> None:
    rng = np.random.default_rng(8)
    ndvi, mask = _sets(4, rng, 0.6)
    scaled = scale_texture(ndvi, mask, np.array([0.5, 1.0, 2.0, 0.25]))
    np.testing.assert_allclose(_set_means(scaled, mask), _set_means(ndvi, mask), atol=1e-6)
    spread = np.ma.masked_array(scaled, ~mask).std(axis=2) / np.ma.masked_array(ndvi, ~mask).std(
        axis=2
    )
    np.testing.assert_allclose(spread.mean(axis=1), [0.5, 1.0, 2.0, 0.25], rtol=1e-4)
    assert (scaled[~mask] == 0).all()


def test_weaken_contrast_keeps_that_share_of_the_difference_of_means() -> None:
    rng = np.random.default_rng(9)
    main, main_mask = _sets(3, rng, 0.8)
    second, second_mask = _sets(3, rng, 0.3)
    moved = weaken_contrast(main, main_mask, second, second_mask, np.array([0.0, 0.5, 1.0]))
    gap = _set_means(moved, second_mask) - _set_means(main, main_mask)
    before = _set_means(second, second_mask) - _set_means(main, main_mask)
    np.testing.assert_allclose(gap, before * np.array([0.0, 0.5, 1.0])[:, None], atol=1e-5)


def test_merged_sets_mix_two_parcels_and_count_dates_usable_for_both() -> None:
    rng = np.random.default_rng(10)
    ndvi, mask = _sets(2, rng, 0.8)
    ndvi[1] = np.where(mask[1], ndvi[1] - 0.6, 0.0)
    valid = np.array([[1.0, 1.0, 0.2, 1.0, 1.0], [1.0, 0.3, 1.0, 1.0, 1.0]], dtype=np.float32)
    days = np.arange(100, 150, 10, dtype=np.float32)
    series = PixelSetSeries(days, ndvi, mask, valid, np.zeros((2, 5), np.float32))
    merged = merge_sets(series, np.array([0]), np.array([1]), np.array([0.4]), np.array([1.0]), rng)
    assert merged.usable()[0].tolist() == [True, False, False, True, True]
    high = (merged.ndvi[0] > 0.5) & merged.mask[0]
    low = (merged.ndvi[0] < 0.5) & merged.mask[0]
    assert 0.2 < low.sum() / (low.sum() + high.sum()) < 0.6  # ~40 % of the second cover
    np.testing.assert_allclose(merged.ndvi_std[0], 0.3, atol=0.08)  # two populations 0.6 apart


def test_shipped_model_flags_some_real_merged_parcels_and_mostly_right_ones() -> None:
    # The real Slovenian check (model card): 58 parcels of real NDVI, 33 of them two real
    # land-use polygons merged. The earlier artifact flagged none of them at its threshold;
    # flagging all would be right for 57 % of the flags. The shipped model at the shipped
    # threshold must flag some, not all, and be right more often than that.
    flagged = right = total = 0
    for year in (2016, 2017):
        labels, series = slovenia_merged(year)
        probability = heterogeneity_probability(series)
        scored = ~np.isnan(probability)
        assert scored.sum() >= 50
        predicted = probability[scored] >= DECISION_THRESHOLD
        assert 0 < predicted.sum() < scored.sum(), year
        flagged += int(predicted.sum())
        right += int((predicted & labels[scored]).sum())
        total += int(scored.sum())
        assert roc_auc(labels[scored], probability[scored]) > 0.55, year
    assert right / flagged > 0.62
    assert flagged < 0.8 * total
