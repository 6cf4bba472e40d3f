"""Parcel layout: a field-like partition of the tile, split recursively like a real landscape.

The tile is cut again and again, largest cell first, by slightly tilted lines that leave a gap
(a hedge, a farm track or a road) between the two sides. Cells become declared parcels, or
forest, built-up land and water where a smooth "landscape" field says so (so forests and
villages form clusters). About 5 % of the parcels are heterogeneous: a second cover fills one
side of a cut inside the declared polygon.

The label raster's unit 0 is the land between cells (cover MRG); units 1… are the cells, and
a heterogeneous parcel has two units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import NDArray

from monitor.errors import ConfigError
from monitor.simulate import noise
from monitor.simulate.convex import Convex, concat
from monitor.simulate.covers import COVERS, DECLARED, INDEX, MARGIN
from monitor.simulate.grid import TileGrid

MIN_PARCEL_HA = 0.5
MAX_PARCEL_HA = 20.0
HETEROGENEOUS_SHARE = 0.05
_DECLARED_SHARE = 0.82  # of the cells; the rest is forest, built-up land and water
_GAPS_M = (0.0, 3.0, 6.0, 10.0)  # boundary only, hedge, farm track, road
_GAP_P = (0.25, 0.45, 0.2, 0.1)


@dataclass(frozen=True)
class Layout:
    """Units (label-raster ids, index 0 = margin) and the declared parcels built from them."""

    unit_geometry: NDArray[np.object_]  # shapely polygons; [0] is None (the margin)
    unit_cover: NDArray[np.int16]  # index into covers.COVERS
    unit_parcel: NDArray[np.int32]  # parcel index, -1 for land no parcel declares
    parcel_geometry: NDArray[np.object_]
    parcel_id: list[str]
    parcel_code: list[str]  # declared crop code (the main cover)
    parcel_area_ha: NDArray[np.float64]
    parcel_second_cover: NDArray[np.int16]  # -1 unless heterogeneous
    parcel_second_fraction: NDArray[np.float64]

    @property
    def n_units(self) -> int:
        return len(self.unit_cover)

    @property
    def n_parcels(self) -> int:
        return len(self.parcel_id)


def check_density(grid: TileGrid, n_parcels: int) -> None:
    """Refuse parcel counts the tile cannot hold with parcels of realistic sizes."""
    if n_parcels < 1:
        raise ConfigError(f"--parcels must be at least 1, got {n_parcels}")
    if grid.size < 1:
        raise ConfigError(f"--tile-size must be at least 1 px, got {grid.size}")
    area_ha = grid.extent_m**2 / 1e4
    if area_ha < MIN_PARCEL_HA:
        raise ConfigError(
            f"tile of {grid.size} px ({area_ha:.2f} ha) is smaller than a parcel "
            f"(at least {MIN_PARCEL_HA} ha, i.e. a tile of at least 71 px)"
        )
    # cells average ≥ 1 ha so that nearly all of them reach the 0.5 ha minimum
    if area_ha * _DECLARED_SHARE / n_parcels < 2 * MIN_PARCEL_HA:
        most = int(area_ha * _DECLARED_SHARE / (2 * MIN_PARCEL_HA))
        raise ConfigError(
            f"{n_parcels} parcels do not fit a tile of {grid.size} px ({area_ha:.0f} ha): "
            f"at most {most} parcels of realistic size (≥ {MIN_PARCEL_HA} ha)"
        )


def layout_fields(
    grid: TileGrid, n_parcels: int, shares: dict[str, float], rng: np.random.Generator
) -> Layout:
    check_density(grid, n_parcels)
    area_ha = grid.extent_m**2 / 1e4
    # mean cell of ~6 ha at most: a sparse tile gets more forest, not 100 ha fields
    n_cells = max(int(np.ceil(n_parcels / _DECLARED_SHARE)), int(area_ha / 6.0), n_parcels + 1)
    convex = _split_cells(Convex.box(*grid.bounds), n_cells, rng)
    cells = convex.to_shapely()
    areas = shapely.area(cells) / 1e4
    centroids = shapely.get_coordinates(shapely.centroid(cells))

    landscape = _sample_landscape(grid, centroids, rng)
    fits = (areas >= MIN_PARCEL_HA) & (areas <= MAX_PARCEL_HA)
    # declared parcels go where the landscape is open and the cell has a field's size
    order = np.lexsort((landscape, ~fits))
    declared = np.zeros(len(cells), dtype=bool)
    declared[order[:n_parcels]] = True

    cover = np.empty(len(cells), dtype=np.int16)
    other = ~declared
    urban_score = rng.random(len(cells))
    cover[other] = INDEX["FOR"]
    cover[other & (urban_score < 0.12)] = INDEX["URB"]
    cover[other & (urban_score > 0.97)] = INDEX["EAU"]
    codes = list(shares)
    probs = np.array([shares[c] for c in codes])
    crop_of_parcel = rng.choice(len(codes), size=n_parcels, p=probs)
    parcel_cells = np.flatnonzero(declared)
    rng.shuffle(parcel_cells)  # parcel order independent of cell size
    cover[parcel_cells] = np.array([INDEX[codes[k]] for k in crop_of_parcel], dtype=np.int16)

    return _with_heterogeneous(cells, convex, cover, parcel_cells, codes, probs, grid, rng)


def _split_cells(tile: Convex, n_cells: int, rng: np.random.Generator) -> Convex:
    """Cut the tile into `n_cells` convex cells, largest first, leaving gaps between them."""
    cells = tile
    while len(cells) < n_cells:
        k = min(len(cells), n_cells - len(cells))
        biggest = np.argsort(-cells.area(), kind="stable")[:k]
        a, b = _cut(cells.take(biggest), rng)
        keep = np.ones(len(cells), dtype=bool)
        keep[biggest] = False
        cells = concat([cells.take(keep), a, b])
        cells = cells.take(cells.count >= 3)
    return cells


def _cut(polys: Convex, rng: np.random.Generator, gap: bool = True) -> tuple[Convex, Convex]:
    """Split each convex polygon by a tilted line across its longer side."""
    n = len(polys)
    xmin, ymin, xmax, ymax = polys.bounds()
    width, height = xmax - xmin, ymax - ymin
    across_x = width >= height  # the cut line crosses the longer side
    angle = rng.normal(0.0, np.deg2rad(7.0), n)
    # unit normal of the cut line: along x (vertical cut) or along y, tilted a little
    nx = np.where(across_x, np.cos(angle), np.sin(angle))
    ny = np.where(across_x, np.sin(angle), np.cos(angle))
    frac = rng.uniform(0.3, 0.7, n)
    px = np.where(across_x, xmin + frac * width, (xmin + xmax) / 2)
    py = np.where(across_x, (ymin + ymax) / 2, ymin + frac * height)
    half_gap = (rng.choice(_GAPS_M, size=n, p=_GAP_P) / 2) if gap else np.zeros(n)
    return polys.clip(px, py, nx, ny, half_gap), polys.clip(px, py, -nx, -ny, half_gap)


def _sample_landscape(
    grid: TileGrid, centroids: NDArray[np.float64], rng: np.random.Generator
) -> NDArray[np.float32]:
    """A smooth 'openness' field (km scales) sampled at the cell centroids; high = wooded."""
    pixel = 250.0
    n = max(int(np.ceil(grid.extent_m / pixel)), 2)
    field = noise.fractal(rng, (n, n), pixel, (8000.0, 3000.0, 1200.0), decay=0.7)
    x0, y0 = grid.origin
    cols = np.clip(((centroids[:, 0] - x0) / pixel).astype(np.intp), 0, n - 1)
    rows = np.clip(((y0 - centroids[:, 1]) / pixel).astype(np.intp), 0, n - 1)
    jitter = rng.normal(0.0, 0.35, len(centroids)).astype(np.float32)
    values: NDArray[np.float32] = field[rows, cols] + jitter
    return values


def _with_heterogeneous(
    cells: NDArray[np.object_],
    convex: Convex,
    cover: NDArray[np.int16],
    parcel_cells: NDArray[np.intp],
    codes: list[str],
    probs: NDArray[np.float64],
    grid: TileGrid,
    rng: np.random.Generator,
) -> Layout:
    """Build the units: every cell, with a second cover cut into ~5 % of the parcels."""
    n_parcels = len(parcel_cells)
    parcel_geometry = cells[parcel_cells]
    parcel_area = shapely.area(parcel_geometry) / 1e4
    n_het = round(HETEROGENEOUS_SHARE * n_parcels)
    big_enough = np.flatnonzero(parcel_area >= 1.0)
    het = np.sort(rng.choice(big_enough, size=min(n_het, len(big_enough)), replace=False))

    second_cover = np.full(n_parcels, -1, dtype=np.int16)
    second_fraction = np.zeros(n_parcels)
    unit_geometry = cells.copy()
    second_part = np.empty(0, dtype=object)
    if len(het):
        pieces = _cut(convex.take(parcel_cells[het]), rng, gap=False)
        a, b = (piece.to_shapely() for piece in pieces)
        small_is_a = shapely.area(a) < shapely.area(b)
        unit_geometry[parcel_cells[het]] = np.where(small_is_a, b, a)
        second_part = np.where(small_is_a, a, b)
        second_fraction[het] = shapely.area(second_part) / shapely.area(parcel_geometry[het])
        for p in het:
            second_cover[p] = INDEX[
                _other_crop(COVERS[cover[parcel_cells[p]]].code, codes, probs, rng)
            ]

    parcel_of_cell = np.full(len(cells), -1, dtype=np.int32)
    parcel_of_cell[parcel_cells] = np.arange(n_parcels, dtype=np.int32)
    return Layout(
        unit_geometry=np.concatenate([np.array([None], dtype=object), unit_geometry, second_part]),
        unit_cover=np.concatenate([[MARGIN], cover, second_cover[het]]).astype(np.int16),
        unit_parcel=np.concatenate([[-1], parcel_of_cell, het]).astype(np.int32),
        parcel_geometry=parcel_geometry,
        parcel_id=[f"{grid.tile}{i + 1:07d}" for i in range(n_parcels)],
        parcel_code=[COVERS[c].code for c in cover[parcel_cells]],
        parcel_area_ha=parcel_area,
        parcel_second_cover=second_cover,
        parcel_second_fraction=second_fraction,
    )


def _other_crop(
    main: str, codes: list[str], probs: NDArray[np.float64], rng: np.random.Generator
) -> str:
    """A second cover for a heterogeneous parcel: another crop of the mix (any other declared
    crop when the mix has a single one)."""
    others = [i for i, c in enumerate(codes) if c != main]
    if not others:
        pool = [c for c in DECLARED if c != main]
        return pool[int(rng.integers(len(pool)))]
    weights = probs[others] / probs[others].sum()
    return codes[int(rng.choice(others, p=weights))]
