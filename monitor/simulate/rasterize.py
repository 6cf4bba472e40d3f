"""Label raster of the simulator's units: a vectorised scanline fill of convex polygons.

Every unit is convex (cells are cut by straight lines), so a pixel row crosses a unit in one
span. For each edge and each pixel-centre row it spans we compute the crossing; the leftmost
and rightmost crossings of a (unit, row) bound the span; span starts and ends are written into
two rasters whose running sum along the row is the label. Same rule as
`rasterio.features.rasterize` (pixel centre inside), at a fraction of its per-shape cost,
which matters for 250 000 units on a 10980² grid.
"""

from __future__ import annotations

import numpy as np
import shapely
from affine import Affine
from numpy.typing import NDArray


def rasterize_convex(
    polygons: NDArray[np.object_],
    values: NDArray[np.int32],
    shape: tuple[int, int],
    transform: Affine,
) -> NDArray[np.int32]:
    """Burn `values[i]` into the pixels whose centre lies inside convex `polygons[i]` (0 else).

    `transform` must be north-up with square pixels; polygons must not overlap.
    """
    height, width = shape
    size, x0, y0 = transform.a, transform.c, transform.f
    coords, owner = shapely.get_coordinates(shapely.get_exterior_ring(polygons), return_index=True)
    # pixel units: column = (x - x0)/size, row = (y0 - y)/size; pixel centres at k + 0.5
    cx = (coords[:, 0] - x0) / size
    cy = (y0 - coords[:, 1]) / size
    same = owner[1:] == owner[:-1]  # consecutive vertices of one ring form an edge
    ax, ay, bx, by = cx[:-1][same], cy[:-1][same], cx[1:][same], cy[1:][same]
    edge_owner = owner[1:][same]
    top, bottom = np.minimum(ay, by), np.maximum(ay, by)
    # rows r whose centre r + 0.5 lies in [top, bottom): half-open, so a vertex counts once
    first = np.clip(np.ceil(top - 0.5), 0, height).astype(np.int64)
    last = np.clip(np.ceil(bottom - 0.5), 0, height).astype(np.int64)  # exclusive
    n_rows = np.maximum(last - first, 0)
    edge = np.repeat(np.arange(len(n_rows)), n_rows)
    row = first[edge] + (np.arange(len(edge)) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows))
    t = (row + 0.5 - ay[edge]) / (by[edge] - ay[edge])
    x = ax[edge] + t * (bx[edge] - ax[edge])
    unit = edge_owner[edge]
    # each (unit, row) has exactly two crossings: sort them and pair left with right
    key = unit * (height + 1) + row
    order = np.lexsort((x, key))
    key, x, unit, row = key[order], x[order], unit[order], row[order]
    left, right = x[0::2], x[1::2]
    unit, row = unit[0::2], row[0::2]
    start = np.clip(np.ceil(left - 0.5), 0, width).astype(np.int64)  # first centre ≥ left
    stop = np.clip(np.ceil(right - 0.5), 0, width).astype(np.int64)  # first centre ≥ right
    keep = stop > start
    start, stop, unit, row = start[keep], stop[keep], unit[keep], row[keep]
    value = values[unit].astype(np.int32)
    marks = np.zeros((height, width + 1), dtype=np.int32)
    marks[row, start] += value
    ends = np.zeros((height, width + 1), dtype=np.int32)
    ends[row, stop] = value
    marks -= ends
    del ends
    labels: NDArray[np.int32] = np.cumsum(marks[:, :width], axis=1, dtype=np.int32)
    return labels
