"""Snow on the ground on one date: where it lies and how bright it is.

The regional share of open land under snow (`weather.Weather.snow_cover`) is spread as smooth
patches (drifts, melt starting on sunny slopes and fields) drawn at 60 m. A forest canopy hides
most of the snow under it, open water holds none. Snow is bright in the visible and NIR and
dark in the SWIR (B11, B12): the NDSI that Sen2Cor's snow class rests on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from monitor import _core
from monitor.simulate import noise
from monitor.simulate.covers import COVERS
from monitor.simulate.grid import TileGrid
from monitor.simulate.noise import F32

#                 B02    B03    B04    B08    B05    B06    B07    B8A    B11    B12
FRESH = np.array([0.86, 0.84, 0.81, 0.72, 0.80, 0.77, 0.75, 0.70, 0.07, 0.05])
_VISIBLE = {"FOR": 0.35, "URB": 0.6, "EAU": 0.0, "MRG": 0.8}
_RES = 60


@dataclass(frozen=True)
class Snow:
    share: float  # regional share of open land under snow
    field: F32  # snow fraction of open land at 60 m
    spectrum: NDArray[np.float64]  # reflectance of the snow pack per band (ageing darkens it)

    def fraction(
        self, grid: TileGrid, resolution: int, labels: NDArray[np.int32], visible: F32
    ) -> F32:
        """Share of each pixel under visible snow at `resolution` metres (`visible`: per unit,
        from `visible_share`)."""
        cover = np.empty(grid.shape(resolution), dtype=np.float32)
        # one fused Rust pass: upsample, clip, scale by the unit (numpy took four)
        _core.sim_snow_fraction(self.field, _RES / resolution, labels, visible, cover)
        return cover


def visible_share(unit_cover: NDArray[np.int16]) -> F32:
    """How much of the snow on the ground shows from above, per unit."""
    table = np.array([_VISIBLE.get(c.code, 1.0) for c in COVERS], dtype=np.float32)
    out: F32 = table[unit_cover]
    return out


def draw_snow(grid: TileGrid, share: float, rng: np.random.Generator) -> Snow | None:
    """The snow of one date whose regional snow cover is `share` (None when there is none)."""
    if share <= 0.01:
        return None
    n = grid.shape(_RES)[0]
    field = noise.fractal(rng, (n, n), _RES, (5000.0, 1500.0, 400.0), decay=0.7)
    threshold = float(np.quantile(field, 1.0 - min(share, 0.999)))
    cover = np.clip(0.5 + (field - threshold) / 0.6, 0.0, 1.0).astype(np.float32)
    age = float(rng.uniform(0.8, 1.0))
    spectrum = FRESH * np.where(np.arange(len(FRESH)) < 8, age, 1.0)
    return Snow(share, cover, spectrum)
