"""Sentinel-1 backscatter (γ⁰, dB) of each unit: a water-cloud model over a rough, moist soil.

`sigma⁰ = C·(1 - τ²) + τ²·sigma⁰_soil`, `τ² = exp(-2·B·V / cosθ)` (Attema & Ulaby 1978, with the
vegetation term saturating at the crop's dense-canopy level C), V the vegetation water content
(kg/m²). The soil term rises with moisture (≈ +2.5 dB per 0.1
m³/m³) and roughness (a fresh furrow: ≈ +4 dB in VV); vegetation raises VH most. A mowing or a
harvest removes V, a ploughing raises roughness: SAR sees the practices through the clouds,
blurred by ~2 dB of speckle (the within-field spread of the real Mol γ⁰).

Calibrated on the real Mol April 2023 scenes (grassland and winter crops): VV median ≈ -12 dB
(5 %: -16, 95 %: -6), VH median ≈ -18.5 dB (5 %: -24, 95 %: -14).

Geometry: the tile is seen from four relative orbits of one satellite's 12-day cycle, two
ascending in the evening and two descending in the morning, as the real Mol stack shows (its
ten dates fall on days 0, 2, 5 and 9 of the cycle: orbits 88, 110, 161 and 37). Two tracks of
one direction see the tile from either side of their overlap: ~8° apart in incidence (tracks
~140 km apart at 51° N, 0.066°/km across the IW swath; every pixel stays within IW's
29-46°). The incidence enters the vegetation
attenuation (1/cos θ) and the soil term, which falls by ~0.25 dB per degree (bare soil, C
band), so the geometries differ by up to ~2 dB over soil and much less under a dense canopy.
Across the tile the incidence grows by ~7° towards far range (east when ascending, west when
descending).

Snow: dry snow is nearly transparent at C band (backscatter barely changes); wet snow absorbs
and lowers γ⁰ by several dB (Nagler & Rott 2000: the wet-snow threshold is -3 dB against a
snow-free reference), more in VV than in VH.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from functools import cache

import numpy as np
from numpy.typing import NDArray

from monitor.simulate.covers import COVERS
from monitor.simulate.grid import FULL_TILE_PX
from monitor.simulate.phenology import F64, SurfaceState

REFERENCE_INCIDENCE_DEG = 38.0  # mid-swath of IW: the geometry the model is calibrated at
SOIL_DB_PER_DEGREE = -0.25
ACROSS_TILE_DEG = 7.2  # IW spans 29-46° over 250 km of ground range: ~0.066°/km


@dataclass(frozen=True)
class Orbit:
    """A Sentinel-1 relative orbit that sees the tile."""

    relative_orbit: int
    state: str  # "ascending" or "descending" (STAC `sat:orbit_state`)
    centre_incidence_deg: float  # at the centre of the full MGRS tile
    overpass: time  # UTC
    cycle_day: int  # day of the 12-day repeat cycle on which it passes

    def incidence_deg(self, columns: int) -> NDArray[np.float64]:
        """Incidence angle along the first `columns` pixel columns of the tile (west to east):
        far range is east for an ascending (northbound, right-looking) pass, west for a
        descending one."""
        east = (np.arange(columns) + 0.5) / FULL_TILE_PX - 0.5  # -0.5 west edge, +0.5 east
        towards_far = east if self.state == "ascending" else -east
        out: NDArray[np.float64] = self.centre_incidence_deg + ACROSS_TILE_DEG * towards_far
        return out


# the four tracks over 31UFS (Mol), in the order of the cycle; the real stack's dates fall on
# days 0, 2, 5 and 9 of it (relative orbit numbers advance ~14.6 a day: 88 → 110 takes 1.5 days)
ORBITS = (
    Orbit(88, "ascending", 41.0, time(17, 30), 0),
    Orbit(110, "descending", 42.0, time(5, 50), 2),
    Orbit(161, "ascending", 33.0, time(17, 30), 5),
    Orbit(37, "descending", 34.0, time(5, 50), 9),
)
# wet snow's drop of γ⁰ (dB) where the ground is fully under snow; dry snow: none
WET_SNOW_DB = {"VV": -5.0, "VH": -3.5}
_B = {"VV": 0.25, "VH": 0.20}  # attenuation per kg/m² of vegetation water
_URBAN_DB = {"VV": -4.0, "VH": -12.0}
_WATER_DB = {"VV": -22.0, "VH": -29.0}
SPECKLE_LOOKS = 2.0  # per 20 m cell; interpolation to 10 m brings the spread to ~2 dB


def soil_db(moisture: F64, roughness: F64, pol: str) -> F64:
    vv: F64 = -21.5 + 25.0 * moisture + 9.0 * np.log10(np.maximum(roughness, 0.3))
    if pol == "VV":
        return vv
    out: F64 = vv - 9.0 + 3.0 * np.log10(np.maximum(roughness, 0.3))
    return out


def unit_backscatter(
    unit_cover: NDArray[np.int16],
    state: SurfaceState,
    moisture: F64,
    offset_db: F64,
    pol: str,
    incidence_deg: float = REFERENCE_INCIDENCE_DEG,
) -> F64:
    """Mean γ⁰ in dB per unit for `pol` ("VV" or "VH") seen at `incidence_deg`."""
    cos = np.cos(np.deg2rad(incidence_deg))
    tau2 = np.exp(-2.0 * _B[pol] * state.biomass / cos)
    canopy_db = np.array([c.canopy_db[0 if pol == "VV" else 1] for c in COVERS])[unit_cover]
    veg = 10.0 ** (canopy_db / 10.0) * (1.0 - tau2)
    tilt = SOIL_DB_PER_DEGREE * (incidence_deg - REFERENCE_INCIDENCE_DEG)
    soil = 10.0 ** ((soil_db(moisture, state.roughness, pol) + tilt) / 10.0)
    db = 10.0 * np.log10(veg + tau2 * soil)
    urban = np.array([c.urban for c in COVERS])[unit_cover]
    water = np.array([c.water for c in COVERS])[unit_cover]
    built = urban > 0.5
    db = np.where(built, _URBAN_DB[pol], db)
    db = np.where(water > 0.5, _WATER_DB[pol], db)
    out: F64 = db + offset_db
    return out


@cache
def speckle_table() -> NDArray[np.float32]:
    """65 536 quantiles of gamma speckle with `SPECKLE_LOOKS` looks, in dB."""
    rng = np.random.default_rng(0)  # a fixed sample: the table is part of the model
    sample = rng.gamma(SPECKLE_LOOKS, 1.0 / SPECKLE_LOOKS, 1 << 20)
    probs = (np.arange(65536) + 0.5) / 65536
    db = 10.0 * np.log10(np.quantile(sample, probs))
    # centred in dB, so that a field's mean γ⁰ in dB is the model's value
    table: NDArray[np.float32] = (db - db.mean()).astype(np.float32)
    return table
