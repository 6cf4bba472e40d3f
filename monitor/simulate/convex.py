"""Many convex polygons at once, as padded vertex arrays, cut by half-planes in numpy.

The parcel layout cuts a full tile into ~250 000 cells by ~250 000 successive cuts; doing
those with shapely costs one GEOS call per piece. Here a batch of polygons is cut in a few
array passes (Sutherland-Hodgman against one line per polygon), and turned into shapely
polygons once at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import NDArray

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class Convex:
    """`len(count)` convex polygons; polygon i is `(x[i, :count[i]], y[i, :count[i]])`,
    counter-clockwise, not closed. Columns past `count` are padding (NaN)."""

    x: F64
    y: F64
    count: NDArray[np.int64]

    @classmethod
    def box(cls, xmin: float, ymin: float, xmax: float, ymax: float) -> Convex:
        x = np.array([[xmin, xmax, xmax, xmin]])
        y = np.array([[ymin, ymin, ymax, ymax]])
        return cls(x, y, np.array([4]))

    def __len__(self) -> int:
        return len(self.count)

    def take(self, index: NDArray[np.intp] | NDArray[np.bool_]) -> Convex:
        return Convex(self.x[index], self.y[index], self.count[index])

    def area(self) -> F64:
        x, y = np.nan_to_num(self.x), np.nan_to_num(self.y)
        nxt = self._next()
        xn, yn = np.take_along_axis(x, nxt, 1), np.take_along_axis(y, nxt, 1)
        valid = self._valid()
        out: F64 = 0.5 * np.where(valid, x * yn - xn * y, 0.0).sum(axis=1)
        return out

    def bounds(self) -> tuple[F64, F64, F64, F64]:
        return (
            np.nanmin(self.x, axis=1),
            np.nanmin(self.y, axis=1),
            np.nanmax(self.x, axis=1),
            np.nanmax(self.y, axis=1),
        )

    def clip(self, px: F64, py: F64, nx: F64, ny: F64, offset: F64) -> Convex:
        """Keep, of polygon i, the side where (p - (px, py))·(nx, ny) ≥ offset[i]."""
        valid = self._valid()
        d = (self.x - px[:, None]) * nx[:, None] + (self.y - py[:, None]) * ny[:, None]
        d = np.where(valid, d - offset[:, None], np.nan)
        nxt = self._next()
        dn = np.take_along_axis(d, nxt, 1)
        xn, yn = np.take_along_axis(self.x, nxt, 1), np.take_along_axis(self.y, nxt, 1)
        inside, inside_next = d >= 0, dn >= 0
        crossing = valid & (inside != inside_next)
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.where(crossing, d / (d - dn), 0.0)
        cx, cy = self.x + t * (xn - self.x), self.y + t * (yn - self.y)
        # candidates per edge: its start vertex (if kept), then the crossing (if any)
        keep = np.stack([valid & inside, crossing], axis=2).reshape(len(self), -1)
        cand_x = np.stack([self.x, cx], axis=2).reshape(len(self), -1)
        cand_y = np.stack([self.y, cy], axis=2).reshape(len(self), -1)
        order = np.argsort(~keep, axis=1, kind="stable")
        count = keep.sum(axis=1)
        width = max(int(count.max(initial=0)), 1)
        order = order[:, :width]
        pad = np.arange(width)[None, :] >= count[:, None]
        x = np.where(pad, np.nan, np.take_along_axis(cand_x, order, 1))
        y = np.where(pad, np.nan, np.take_along_axis(cand_y, order, 1))
        return Convex(x, y, np.where(count >= 3, count, 0))

    def to_shapely(self) -> NDArray[np.object_]:
        """Shapely polygons (empty where fewer than three vertices are left)."""
        n = len(self)
        out = np.full(n, shapely.Polygon(), dtype=object)
        ok = np.flatnonzero(self.count >= 3)
        if len(ok):
            sub = self.take(ok)
            closing = np.arange(sub.x.shape[1] + 1)[None, :]
            idx = np.where(closing < sub.count[:, None], closing, 0)  # close with vertex 0
            mask = closing <= sub.count[:, None]
            coords = np.stack(
                [np.take_along_axis(sub.x, idx, 1)[mask], np.take_along_axis(sub.y, idx, 1)[mask]],
                axis=1,
            )
            rings = np.concatenate([[0], np.cumsum(sub.count + 1)])
            polygons = np.arange(len(ok) + 1)
            out[ok] = shapely.from_ragged_array(
                shapely.GeometryType.POLYGON, coords, (rings, polygons)
            )
        return out

    def _valid(self) -> NDArray[np.bool_]:
        return np.arange(self.x.shape[1])[None, :] < self.count[:, None]

    def _next(self) -> NDArray[np.int64]:
        idx = np.arange(self.x.shape[1])[None, :] + 1
        nxt: NDArray[np.int64] = np.where(idx < self.count[:, None], idx, 0)
        return nxt


def concat(parts: list[Convex]) -> Convex:
    width = max(p.x.shape[1] for p in parts)

    def padded(a: F64) -> F64:
        return np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=np.nan)

    return Convex(
        np.concatenate([padded(p.x) for p in parts]),
        np.concatenate([padded(p.y) for p in parts]),
        np.concatenate([p.count for p in parts]),
    )
