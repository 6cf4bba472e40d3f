"""Hand-made NDVI pixel-set seasons for the heterogeneity recipe's tests: double-logistic
profiles (the simulator's crop shape) seen through 32 sampled pixels with Gaussian texture."""

from __future__ import annotations

import numpy as np

from monitor.heterogeneity import PixelSetSeries

DAYS = np.arange(60, 305, 5, dtype=np.float32)


def profile(days: np.ndarray, green_up: float, senescence: float) -> np.ndarray:
    """A double-logistic NDVI season, like the simulator's crops."""
    rise = 1.0 / (1.0 + np.exp(-(days - green_up) / 8.0))
    fall = 1.0 / (1.0 + np.exp((days - senescence) / 8.0))
    return np.asarray(0.15 + 0.7 * rise * fall)


def pixel_sets(rng: np.random.Generator, profiles: np.ndarray, texture: float) -> PixelSetSeries:
    """One parcel per row of `profiles [P, len(DAYS)]`: 32 pixels of std `texture` around it,
    5 % of them masked, every date fully valid."""
    n, d = profiles.shape
    mask = rng.random((n, d, 32)) < 0.95
    noisy = profiles[:, :, None] + rng.normal(0.0, texture, (n, d, 32))
    ndvi = np.where(mask, noisy, 0.0).astype(np.float32)
    std = np.ma.masked_array(ndvi, ~mask).std(axis=2).filled(np.nan).astype(np.float32)
    return PixelSetSeries(DAYS, ndvi, mask, np.ones((n, d), np.float32), std)
