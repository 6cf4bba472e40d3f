"""Random fields: spatially smooth (fractal) noise and fast per-pixel noise.

Everything here is plain numpy and vectorised; smooth fields are drawn on a coarse grid and
interpolated bilinearly, one axis at a time, so a 10980² field costs a few array passes.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]


def upsample(coarse: F32, factor: float, shape: tuple[int, int], offset: float = 0.0) -> F32:
    """Bilinear interpolation of `coarse` onto `shape`: output pixel (r, c) samples the coarse
    grid at ((r + 0.5) / factor - 0.5 + offset) along each axis (clamped at the edges)."""
    out_rows = _axis_weights(shape[0], factor, offset, coarse.shape[0])
    out_cols = _axis_weights(shape[1], factor, offset, coarse.shape[1])
    i0, i1, wr = out_rows
    j0, j1, wc = out_cols
    # columns first on the small grid, then rows on the big one: two gathers of whole rows
    half = coarse[:, j0] * (1.0 - wc) + coarse[:, j1] * wc
    out: F32 = half[i0]
    out *= (1.0 - wr)[:, None]
    out += half[i1] * wr[:, None]
    return out


def upsample2(coarse: F32, shape: tuple[int, int]) -> F32:
    """`upsample(coarse, 2.0, shape)` by slicing: a fine pixel is 3/4 of its coarse parent and
    1/4 of the neighbour on its side (edges clamped). Several times faster on full tiles."""
    rows = _double(coarse, axis=0)[: shape[0]]
    out: F32 = _double(np.ascontiguousarray(rows), axis=1)[:, : shape[1]]
    return out


def _double(a: F32, axis: int) -> F32:
    def at(array: F32, part: slice) -> F32:
        index: tuple[slice, ...] = (slice(None),) * axis + (part,)
        view: F32 = array[index]
        return view

    shape = list(a.shape)
    shape[axis] *= 2
    out = np.empty(shape, dtype=np.float32)
    quarter = np.float32(0.25) * a
    even, odd = at(out, slice(0, None, 2)), at(out, slice(1, None, 2))
    np.multiply(a, np.float32(0.75), out=even)
    np.multiply(a, np.float32(0.75), out=odd)
    at(even, slice(1, None))[...] += at(quarter, slice(None, -1))
    at(even, slice(0, 1))[...] += at(quarter, slice(0, 1))
    at(odd, slice(None, -1))[...] += at(quarter, slice(1, None))
    at(odd, slice(-1, None))[...] += at(quarter, slice(-1, None))
    return out


def _axis_weights(
    n: int, factor: float, offset: float, size: int
) -> tuple[NDArray[np.intp], NDArray[np.intp], F32]:
    pos = (np.arange(n, dtype=np.float64) + 0.5) / factor - 0.5 + offset
    pos = np.clip(pos, 0.0, size - 1.0)
    i0 = np.minimum(np.floor(pos).astype(np.intp), size - 1)
    i1 = np.minimum(i0 + 1, size - 1)
    return i0, i1, (pos - i0).astype(np.float32)


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
def _normal_table() -> F32:
    # 65 536 quantiles of N(0, 1): indexing it with random uint16 draws a normal variate
    # several times faster than numpy's generator, which matters on 10980² bands.
    from statistics import NormalDist

    dist = NormalDist()
    probs = (np.arange(65536) + 0.5) / 65536
    return np.array([dist.inv_cdf(float(p)) for p in probs], dtype=np.float32)


def quantile_noise(rng: np.random.Generator, shape: tuple[int, int], table: F32) -> F32:
    """Per-pixel variates of the distribution whose 65 536 quantiles are `table`."""
    count = shape[0] * shape[1]
    idx = np.frombuffer(rng.bytes(2 * count), dtype=np.uint16).reshape(shape)
    return table[idx]


def normal(rng: np.random.Generator, shape: tuple[int, int]) -> F32:
    """Standard normal per-pixel noise (float32)."""
    return quantile_noise(rng, shape, _normal_table())
