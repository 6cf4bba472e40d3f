"""The heterogeneity network's explicit spread-level features (the std rule's signal) and the
real-texture selection set they were measured on."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.heterogeneity import LEVEL_FLOOR, HeterogeneityNet  # noqa: E402
from models.heterogeneity_training import (  # noqa: E402
    Season,
    example_inputs,
    merged_validation,
    scale_texture,
)
from monitor.heterogeneity import INPUT_NAMES, PixelSetSeries  # noqa: E402


def _tensors(inputs: dict[str, np.ndarray]) -> list[torch.Tensor]:
    return [torch.from_numpy(inputs[k]) for k in INPUT_NAMES]


def test_season_level_is_the_log_of_the_mean_within_date_std_of_real_dates() -> None:
    rng = np.random.default_rng(3)
    inputs = example_inputs(3, rng)
    torch.manual_seed(0)
    net = HeterogeneityNet().eval()
    with torch.no_grad():
        _, level = net.pse(*_tensors(inputs)[:3])
    pixels = inputs["pixels"][..., 0]
    keep = inputs["pixel_mask"] > 0
    std = np.ma.masked_array(pixels, ~keep).std(axis=2).filled(0.0)  # [N, T]
    dates = inputs["date_mask"] > 0
    scale = (std * dates).sum(axis=1) / dates.sum(axis=1)
    expected = np.log(scale + LEVEL_FLOOR) - math.log(0.05)
    np.testing.assert_allclose(level.numpy()[:, 0], expected, atol=1e-3)


def test_only_the_level_variant_sees_the_level_of_a_strong_texture() -> None:
    # Deviations doubled: the variant without level features sees it only through the small
    # texture floor, the default one through its log features.
    rng = np.random.default_rng(4)
    inputs = example_inputs(8, rng)
    mask = inputs["pixel_mask"] > 0
    doubled = inputs | {"pixels": scale_texture(inputs["pixels"][..., 0], mask, np.full(8, 2.0))}
    doubled["pixels"] = doubled["pixels"][..., None]
    moves = {}
    for level in (False, True):
        torch.manual_seed(0)
        net = HeterogeneityNet(level=level).eval()
        with torch.no_grad():
            before = net(*_tensors(inputs)).numpy()
            after = net(*_tensors(doubled)).numpy()
        moves[level] = float(np.abs(after - before).mean())
    assert moves[True] > 5 * moves[False]


def _season(rng: np.random.Generator, n: int = 40) -> Season:
    mask = rng.random((n, 6, 32)) < 0.9
    centre = rng.uniform(0.3, 0.8, (n, 1, 1))
    ndvi = np.where(mask, centre + rng.normal(0.0, 0.04, mask.shape), 0.0).astype(np.float32)
    std = np.ma.masked_array(ndvi, ~mask).std(axis=2).filled(np.nan).astype(np.float32)
    series = PixelSetSeries(
        np.arange(100, 160, 10, dtype=np.float32),
        ndvi,
        mask,
        np.ones((n, 6), np.float32),
        std,
    )
    crops = np.array(["BTH", "MIS", "PPH", "ORH"] * (n // 4))
    return Season(series, np.zeros(n, bool), crops)


def test_real_texture_selection_set_scales_sets_and_zonal_std_alike() -> None:
    season = _season(np.random.default_rng(5))
    labels, plain = merged_validation(season, np.random.default_rng(6))
    labels2, doubled = merged_validation(season, np.random.default_rng(6), texture=(2.0, 2.0))
    assert (labels == labels2).all()
    assert labels.sum() >= 1
    np.testing.assert_allclose(doubled.ndvi_std, 2.0 * plain.ndvi_std, rtol=1e-5)
    spread = np.ma.masked_array(doubled.ndvi, ~doubled.mask).std(axis=2)
    before = np.ma.masked_array(plain.ndvi, ~plain.mask).std(axis=2)
    np.testing.assert_allclose(spread / before, 2.0, rtol=1e-4)
