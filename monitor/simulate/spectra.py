"""Surface reflectance of each unit: a linear mix of endmember spectra.

A pixel is green vegetation, residue (straw, dry plants), flowers, bare soil (darker when wet),
built surface, water and canopy shade in the proportions `phenology.surface_state` gives.
Endmembers are typical Sentinel-2 L2A values, checked against the clear Mol dates (dense
grass: B04 ≈ 0.03, B08 ≈ 0.45, B11 ≈ 0.16; sandy soil: B04 ≈ 0.1-0.19, B11 ≈ 0.2-0.38).

Within-parcel texture moves pixels along the green-vegetation/soil mixing line: a pixel's
reflectance is `mean[unit] + slope[unit] · texture[pixel]`, two lookups per band.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from monitor.simulate.covers import COVERS
from monitor.simulate.phenology import F64, SurfaceState

BANDS_10M = ("B02", "B03", "B04", "B08")
BANDS_20M = ("B05", "B06", "B07", "B8A", "B11", "B12")
BANDS = BANDS_10M + BANDS_20M
#                       B02    B03    B04    B08    B05    B06    B07    B8A    B11    B12
GREEN = np.array([0.028, 0.060, 0.024, 0.500, 0.100, 0.350, 0.450, 0.510, 0.160, 0.070])
SOIL = np.array([0.075, 0.100, 0.130, 0.210, 0.155, 0.180, 0.195, 0.225, 0.300, 0.250])
RESIDUE = np.array([0.075, 0.105, 0.130, 0.275, 0.170, 0.220, 0.250, 0.290, 0.370, 0.280])
YELLOW = np.array([0.040, 0.115, 0.095, 0.400, 0.160, 0.300, 0.370, 0.410, 0.200, 0.110])
URBAN = np.array([0.085, 0.095, 0.105, 0.135, 0.115, 0.125, 0.130, 0.140, 0.160, 0.145])
WATER = np.array([0.045, 0.050, 0.032, 0.012, 0.025, 0.016, 0.013, 0.011, 0.006, 0.004])
# how much a wet soil darkens, per unit of volumetric moisture above 0.05 (SWIR most)
WET_DARKENING = np.array([0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 1.3, 1.3])
NIR, RED = BANDS.index("B08"), BANDS.index("B04")


def _cover_column(attr: str, unit_cover: NDArray[np.int16]) -> F64:
    values = np.array([getattr(c, attr) for c in COVERS], dtype=np.float64)
    out: F64 = values[unit_cover]
    return out


def unit_reflectance(
    unit_cover: NDArray[np.int16],
    state: SurfaceState,
    soil_brightness: F64,
    soil_moisture: F64,
) -> tuple[F64, F64]:
    """(mean, slope), each (units, 10 bands): the unit's mean reflectance and how a unit of
    texture changes it (a shift of the green fraction, or of brightness for built land)."""
    urban = _cover_column("urban", unit_cover)
    water = _cover_column("water", unit_cover)
    shade = _cover_column("shade", unit_cover)
    land = 1.0 - urban - water
    green = state.green * land
    residue = state.residue * land
    yellow = state.yellow * land
    soil_share = np.clip(land - green - residue - yellow, 0.0, 1.0)
    wet = np.clip(soil_moisture - 0.05, 0.0, 0.5)[:, None] * WET_DARKENING
    soil = SOIL * soil_brightness[:, None] * (1.0 - wet)
    mean = (
        green[:, None] * GREEN
        + residue[:, None] * RESIDUE
        + yellow[:, None] * YELLOW
        + soil_share[:, None] * soil
        + urban[:, None] * URBAN
        + water[:, None] * WATER
    ) * (1.0 - shade[:, None])
    # texture: ±sigma of green cover, largest for half-covered fields; brightness for built land
    sigma = (0.04 + 0.35 * green * (1.0 - green)) * land
    slope = (
        sigma[:, None] * (GREEN - soil) * (1.0 - shade[:, None]) + (0.25 * urban)[:, None] * URBAN
    )
    return mean, slope


def ndvi(reflectance: F64) -> F64:
    nir, red = reflectance[..., NIR], reflectance[..., RED]
    out: F64 = (nir - red) / np.maximum(nir + red, 1e-6)
    return out
