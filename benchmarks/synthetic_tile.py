"""A full-size synthetic Sentinel-2 tile for benchmarks: field-like parcels and uint16 bands.

Parcels are quadrilaterals on a grid of variable row heights and column widths (7.5 to 40 px,
so about 0.5 to 16 ha at 10 m once the hedge gaps are taken off), corners jittered, so that
boundaries cut pixels at arbitrary angles as real parcels do. Deterministic for a seed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import shapely

PIXEL = 10.0
ORIGIN = (600_000.0, 5_800_020.0)  # upper-left corner of MGRS tile 31UFS


def transform(size: int) -> tuple[float, float, float, float, float, float]:
    """rasterio-order affine of a north-up 10 m grid at the tile origin."""
    return (PIXEL, 0.0, ORIGIN[0], 0.0, -PIXEL, ORIGIN[1])


def _edges(size: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    widths = rng.uniform(7.5, 40.0, size=size)
    edges = np.concatenate([[0.0], np.cumsum(widths)])
    return edges[edges < size - 7.0]


def field_parcels(size: int, seed: int = 0) -> npt.NDArray[np.object_]:
    """Field-like polygons (shapely array) covering a `size` x `size` 10 m grid."""
    rng = np.random.default_rng(seed)
    cols, rows = _edges(size, rng), _edges(size, rng)
    gx0, gy0 = np.meshgrid(cols[:-1], rows[:-1])
    gx1, gy1 = np.meshgrid(cols[1:], rows[1:])
    n = gx0.size
    gap = rng.uniform(1.0, 2.0, size=(n, 4))  # hedges, tracks and ditches between fields
    jitter = rng.uniform(-0.9, 0.9, size=(n, 4, 2))  # < gap: neighbours never overlap
    px = np.stack(
        [
            gx0.ravel() + gap[:, 0],
            gx1.ravel() - gap[:, 1],
            gx1.ravel() - gap[:, 1],
            gx0.ravel() + gap[:, 0],
        ],
        axis=1,
    )
    py = np.stack(
        [
            gy0.ravel() + gap[:, 2],
            gy0.ravel() + gap[:, 2],
            gy1.ravel() - gap[:, 3],
            gy1.ravel() - gap[:, 3],
        ],
        axis=1,
    )
    px = px + jitter[:, :, 0]
    py = py + jitter[:, :, 1]
    x = ORIGIN[0] + PIXEL * px
    y = ORIGIN[1] - PIXEL * py
    ring = np.stack([x, y], axis=2)
    ring = np.concatenate([ring, ring[:, :1]], axis=1)
    return np.asarray(shapely.polygons(ring), dtype=object)


def bands(size: int, n_bands: int, seed: int = 0) -> dict[str, npt.NDArray[np.uint16]]:
    """`n_bands` uint16 reflectance bands (x 1e4), nodata 0 in the same few pixels of each band
    (as at a swath edge)."""
    rng = np.random.default_rng(seed + 1)
    holes = rng.integers(0, size, 1000), rng.integers(0, size, 1000)
    names = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
    out: dict[str, npt.NDArray[np.uint16]] = {}
    for i in range(n_bands):
        name = names[i] if i < len(names) else f"X{i:02d}"
        band = rng.integers(1, 10_000, size=(size, size), dtype=np.uint16)
        band[holes] = 0
        out[name] = band
    return out
