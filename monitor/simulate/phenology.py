"""Crop calendars and surface state per unit: green cover, residue, biomass, roughness.

`draw_calendar` draws, once per season, each unit's jittered green-up, senescence, sowing and
practice dates (mowing, harvest, ploughing). `surface_state` evaluates the state of every unit
on one day, vectorised over units:

- green cover follows a double logistic per crop; a harvest replaces it with stubble and slow
  volunteer regrowth; a ploughing buries residue and leaves bare, rough soil (a cover crop may
  follow); a mowing removes a share of the grass, which regrows in ~15-25 days;
- biomass (vegetation water content, kg/m²) follows the green cover with crop-specific maxima;
- roughness (soil rms height, cm) jumps at a ploughing and relaxes over weeks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from monitor.simulate.covers import COVERS, Cover

F64 = NDArray[np.float64]
MAX_MOWINGS = 4
PLOUGHED_ROUGHNESS = 3.5  # cm rms height of a fresh furrow
SEEDBED_ROUGHNESS = 0.9


@dataclass(frozen=True)
class Calendar:
    """Per-unit dates (day of year, NaN when the practice does not happen)."""

    sos: F64  # centre of green-up
    eos: F64  # centre of senescence
    spring_plough: F64
    sowing: F64  # seedbed preparation of spring crops (smooths the ploughed soil)
    harvest: F64
    plough: F64  # after harvest
    cover_crop: NDArray[np.bool_]  # a green cover sown after that ploughing
    mowing: F64  # (units, MAX_MOWINGS)
    mowing_cut: F64  # share of the green cover removed by each mowing
    mowing_recovery: F64  # days to regrow
    flowering: F64
    soil_brightness: F64  # soil colour of the unit (x the soil spectrum)

    def subset(self, units: NDArray[np.intp]) -> Calendar:
        """The calendars of `units` only, in that order."""
        return Calendar(**{k: v[units] for k, v in vars(self).items()})


def draw_calendar(unit_cover: NDArray[np.int16], rng: np.random.Generator) -> Calendar:
    n = len(unit_cover)
    nan = np.full(n, np.nan)
    cal = Calendar(
        sos=nan.copy(),
        eos=nan.copy(),
        spring_plough=nan.copy(),
        sowing=nan.copy(),
        harvest=nan.copy(),
        plough=nan.copy(),
        cover_crop=np.zeros(n, dtype=bool),
        mowing=np.full((n, MAX_MOWINGS), np.nan),
        mowing_cut=np.zeros((n, MAX_MOWINGS)),
        mowing_recovery=np.full((n, MAX_MOWINGS), 20.0),
        flowering=nan.copy(),
        soil_brightness=rng.uniform(0.8, 1.3, n),
    )
    for index, cover in enumerate(COVERS):
        units = np.flatnonzero(unit_cover == index)
        if len(units):
            _draw_cover(cal, units, cover, rng)
    # practices happen on whole days: an acquisition on that day already sees them
    for days in (cal.spring_plough, cal.sowing, cal.harvest, cal.plough, cal.mowing):
        np.round(days, out=days)
    return cal


def _draw_cover(
    cal: Calendar, units: NDArray[np.intp], cover: Cover, rng: np.random.Generator
) -> None:
    k = len(units)
    # one shared shift moves green-up, senescence and harvest together (an early farm is
    # early all season), plus smaller independent terms
    shift = rng.normal(0.0, cover.jitter, k)
    cal.sos[units] = cover.sos + shift + rng.normal(0.0, cover.jitter / 3, k)
    cal.eos[units] = cover.eos + shift + rng.normal(0.0, cover.jitter / 3, k)
    if cover.spring_plough is not None:
        cal.spring_plough[units] = cal.sos[units] - cover.spring_plough + rng.normal(0, 5, k)
        cal.sowing[units] = cal.spring_plough[units] + rng.uniform(3.0, 15.0, k)
    if cover.harvest is not None:
        harvest = cover.harvest + shift + rng.normal(0.0, cover.harvest_jitter, k)
        cal.harvest[units] = np.maximum(harvest, cal.eos[units] + 5.0)
        ploughed = rng.random(k) < cover.plough_after_harvest
        cal.plough[units] = np.where(ploughed, cal.harvest[units] + rng.uniform(5, 40, k), np.nan)
        cal.cover_crop[units] = ploughed & (rng.random(k) < 0.5)
    if cover.flowering is not None:
        cal.flowering[units] = cover.flowering + shift + rng.normal(0.0, 4.0, k)
    lo, hi = cover.mowings
    if hi > 0:
        count = rng.integers(lo, hi + 1, k)
        day = cover.first_mowing + shift + rng.normal(0.0, 8.0, k)
        for m in range(MAX_MOWINGS):
            on = count > m
            cal.mowing[units, m] = np.where(on, day, np.nan)
            cal.mowing_cut[units, m] = rng.uniform(0.35, 0.7, k)
            cal.mowing_recovery[units, m] = rng.uniform(15.0, 25.0, k)
            day = day + rng.uniform(30.0, 50.0, k)


@dataclass(frozen=True)
class SurfaceState:
    """Per-unit surface on one day: fractions of the pixel (they sum to ≤ 1, rest is soil)."""

    green: F64
    residue: F64  # straw, stubble, drying cut grass, dry standing crop
    yellow: F64  # flowers
    biomass: F64  # vegetation water content, kg/m²
    roughness: F64  # cm


def _sigmoid(x: F64) -> F64:
    out: F64 = 0.5 * (1.0 + np.tanh(0.5 * x))
    return out


def _after(day: float, when: F64) -> NDArray[np.bool_]:
    """True where the event happened on or before `day` (False where it never happens)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(when <= day)


def surface_state(unit_cover: NDArray[np.int16], cal: Calendar, day: float) -> SurfaceState:
    params = _cover_table(unit_cover)
    f_lo, f_max, f_end, r_up, r_down = (params[:, i] for i in range(5))
    residue_harvest, dry_standing, vwc_max, base_roughness = (params[:, i] for i in range(5, 9))
    up = _sigmoid((day - cal.sos) / r_up)
    down = _sigmoid((day - cal.eos) / r_down)
    green = f_lo + (f_max - f_lo) * up - (f_max - f_end) * down
    residue = dry_standing * (f_max - f_end) * down
    # spring crops: winter weeds and stubble until the spring ploughing
    before_plough = np.isfinite(cal.spring_plough) & ~_after(day, cal.spring_plough)
    green = np.where(before_plough, green + 0.12, green)
    residue = np.where(before_plough, residue + 0.3, residue)

    harvested = _after(day, cal.harvest)
    since_harvest = np.where(harvested, day - cal.harvest, 0.0)
    green = np.where(harvested, np.minimum(0.2, 0.004 * since_harvest) + 0.03, green)
    residue = np.where(harvested, residue_harvest, residue)
    ploughed = _after(day, cal.plough)
    since_plough = np.where(ploughed, day - cal.plough, 0.0)
    regrow = np.where(cal.cover_crop, 0.75 * _sigmoid((since_plough - 30.0) / 6.0), 0.0)
    green = np.where(ploughed, 0.01 + regrow, green)
    residue = np.where(ploughed, 0.0, residue)

    for m in range(MAX_MOWINGS):
        since = day - cal.mowing[:, m]
        with np.errstate(invalid="ignore"):
            active = (since >= 0) & (since < cal.mowing_recovery[:, m])
        left = np.clip(1.0 - np.where(active, since, 0.0) / cal.mowing_recovery[:, m], 0.0, 1.0)
        cut = np.where(active, cal.mowing_cut[:, m] * left**1.5, 0.0)
        lying = np.where(
            active, 0.6 * cal.mowing_cut[:, m] * np.exp(-np.where(active, since, 0.0) / 3.0), 0.0
        )
        residue = residue + lying * green
        green = green * (1.0 - cut)

    flowering = np.isfinite(cal.flowering)
    bloom = np.where(
        flowering, np.exp(-0.5 * ((day - np.nan_to_num(cal.flowering)) / 9.0) ** 2), 0.0
    )
    yellow = 0.55 * bloom * green
    green = green - 0.5 * yellow

    green = np.clip(green, 0.0, 1.0)
    residue = np.clip(residue, 0.0, 1.0 - green)
    yellow = np.clip(yellow, 0.0, 1.0 - green - residue)
    biomass = vwc_max * (np.clip(green + yellow, 0, 1) / np.maximum(f_max, 0.1)) ** 1.5
    biomass = biomass + 0.25 * vwc_max * np.where(harvested | ploughed, 0.0, residue) * dry_standing
    biomass = np.where(harvested & ~ploughed, np.minimum(biomass, 0.3) + 0.1, biomass)

    roughness = base_roughness.copy()
    spring = _after(day, cal.spring_plough)
    since_spring = np.where(spring, day - cal.spring_plough, 0.0)
    sown = _after(day, cal.sowing)
    roughness = np.where(spring & ~sown, PLOUGHED_ROUGHNESS - 0.02 * since_spring, roughness)
    since_sowing = np.where(sown, day - cal.sowing, 0.0)
    roughness = np.where(
        sown,
        SEEDBED_ROUGHNESS
        + (base_roughness - SEEDBED_ROUGHNESS) * (1 - np.exp(-since_sowing / 40.0)),
        roughness,
    )
    roughness = np.where(
        ploughed,
        base_roughness + (PLOUGHED_ROUGHNESS - base_roughness) * np.exp(-since_plough / 45.0),
        roughness,
    )
    return SurfaceState(green, residue, yellow, biomass, roughness)


def _cover_table(unit_cover: NDArray[np.int16]) -> F64:
    table = np.array(
        [
            [c.f_lo, c.f_max, c.f_end, c.r_up, c.r_down, c.residue_after_harvest,
             c.dry_standing, c.vwc_max, c.roughness]
            for c in COVERS
        ],
        dtype=np.float64,
    )  # fmt: skip
    out: F64 = table[unit_cover]
    return out
