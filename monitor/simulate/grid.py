"""The simulated tile's grid: a square window of a real MGRS tile in its UTM CRS."""

from __future__ import annotations

from dataclasses import dataclass

from affine import Affine

# 31UFS (Mol, Belgium, where the real samples come from): UTM 31N, upper-left corner of the
# 109.8 km MGRS tile as Sentinel-2 L2A products grid it.
DEFAULT_TILE = "31UFS"
DEFAULT_EPSG = 32631
DEFAULT_ORIGIN = (600000.0, 5700000.0)
FULL_TILE_PX = 10980


@dataclass(frozen=True)
class TileGrid:
    """`size` x `size` pixels of 10 m from `origin` (upper-left, metres) in `epsg`."""

    size: int
    tile: str = DEFAULT_TILE
    epsg: int = DEFAULT_EPSG
    origin: tuple[float, float] = DEFAULT_ORIGIN

    @property
    def extent_m(self) -> float:
        return self.size * 10.0

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in metres."""
        x0, y0 = self.origin
        return (x0, y0 - self.extent_m, x0 + self.extent_m, y0)

    def shape(self, resolution: int) -> tuple[int, int]:
        """Raster shape at `resolution` metres (10, 20 or 60); partial pixels round up."""
        n = -(-self.size * 10 // resolution)
        return (n, n)

    def transform(self, resolution: int) -> Affine:
        return Affine(
            float(resolution), 0.0, self.origin[0], 0.0, -float(resolution), self.origin[1]
        )
