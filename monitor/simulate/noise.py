"""Random fields: spatially smooth (fractal) noise, and the table per-pixel noise is drawn from.

Smooth fields are drawn on a coarse grid and interpolated bilinearly (a Rust pass), so a
10980² field costs about one pass over memory; the rest is vectorised numpy.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numpy.typing import NDArray

from monitor import _core

F32 = NDArray[np.float32]


def upsample(coarse: F32, factor: float, shape: tuple[int, int], offset: float = 0.0) -> F32:
    """Bilinear interpolation of `coarse` onto `shape`: output pixel (r, c) samples the coarse
    grid at ((r + 0.5) / factor - 0.5 + offset) along each axis (clamped at the edges).
    One parallel pass in Rust (numpy's gathers of whole rows cost several passes)."""
    out = np.empty(shape, dtype=np.float32)
    _core.sim_upsample(np.ascontiguousarray(coarse, dtype=np.float32), factor, out, offset=offset)
    return out


def fractal(
    rng: np.random.Generator,
    shape: tuple[int, int],
    pixel_m: float,
    scales_m: tuple[float, ...],
    decay: float = 0.6,
) -> F32:
    """Sum of smooth octaves (feature sizes `scales_m`, metres; amplitudes ∝ decay^k),
    normalised to zero mean and unit variance."""
    out = np.zeros(shape, dtype=np.float32)
    amplitude = 1.0
    for scale in scales_m:
        factor = max(scale / pixel_m, 1.0)
        coarse_shape = (int(shape[0] / factor) + 3, int(shape[1] / factor) + 3)
        coarse = rng.standard_normal(coarse_shape, dtype=np.float32)
        layer = (
            upsample(coarse, factor, shape, offset=1.0)
            if factor > 1.0
            else coarse[: shape[0], : shape[1]]
        )
        out += np.float32(amplitude) * layer
        amplitude *= decay
    out -= out.mean(dtype=np.float64)
    std = float(out.std(dtype=np.float64))
    if std > 0:
        out /= np.float32(std)
    return out


@cache
def normal_table() -> F32:
    """65 536 quantiles of N(0, 1): a random uint16 index into it draws a normal variate (the
    render kernels draw per-pixel noise this way from a counter-based hash)."""
    from statistics import NormalDist

    dist = NormalDist()
    probs = (np.arange(65536) + 0.5) / 65536
    return np.array([dist.inv_cdf(float(p)) for p in probs], dtype=np.float32)
