"""Weather of the season: daily soil moisture from random rain, snow episodes, and each date's
cloudiness.

Soil moisture (m³/m³) dries out exponentially between rain events; it darkens bare soil in
Sentinel-2 and brightens it in Sentinel-1, so both sensors see the same rain. Snow falls on a
few winter days (Belgium: ~10-15 snowy days a year, mid-December to early March) and melts in
two to six days; `snow_cover` is the regional share of open land under snow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Weather:
    first_day: int  # day of year of moisture[0]
    moisture: NDArray[np.float64]  # regional surface soil moisture per day
    snow: NDArray[np.float64]  # regional share of open land under snow per day

    def soil_moisture(self, day: float) -> float:
        return float(self.moisture[self._index(day)])

    def snow_cover(self, day: float) -> float:
        return float(self.snow[self._index(day)])

    def snow_wet(self, day: float) -> bool:
        """Whether the snow pack is wet: it is melting (smaller than the day before)."""
        i = self._index(day)
        return i > 0 and bool(self.snow[i] < self.snow[i - 1])

    def _index(self, day: float) -> int:
        return int(np.clip(round(day) - self.first_day, 0, len(self.moisture) - 1))


def winter(day: NDArray[np.float64]) -> NDArray[np.float64]:
    """1 in mid-January, ~0.25 on 1 March and 1 December, ~0 from April to October."""
    from_mid_january = (day - 15.0 + 182.5) % 365.0 - 182.5
    out: NDArray[np.float64] = np.exp(-0.5 * (from_mid_january / 28.0) ** 2)
    return out


def draw_weather(first_day: int, last_day: int, rng: np.random.Generator) -> Weather:
    days = np.arange(first_day - 30, last_day + 1)
    # wetter soils in early spring and autumn, dry summer baseline
    season = 0.5 * (1 + np.cos(2 * np.pi * (days - 15) / 365.0))
    baseline = 0.10 + 0.12 * season
    rain = rng.random(len(days)) < 0.3
    amount = np.where(rain, rng.exponential(0.06, len(days)), 0.0)
    wet = np.zeros(len(days))
    level = 0.0
    for i, add in enumerate(amount):  # a few hundred days: the recursion is cheap
        level = level * np.exp(-1 / 4.0) + add
        wet[i] = level
    moisture = np.clip(baseline + wet, 0.05, 0.42)
    # snowfalls (drawn after the rain, so that the rain of a seed never changes)
    falls = rng.random(len(days)) < 0.07 * winter(days.astype(np.float64))
    depth = np.where(falls, rng.uniform(0.5, 1.2, len(days)), 0.0)
    melt = rng.uniform(0.15, 0.4, len(days))
    snow = np.zeros(len(days))
    level = 0.0
    for i in range(len(days)):
        level = max(level - melt[i], 0.0) + depth[i]
        snow[i] = min(level, 1.0)
    return Weather(first_day, moisture[30:], snow[30:])


def cloud_cover_target(day: float, rng: np.random.Generator) -> float:
    """Cloudy share of one Sentinel-2 date. Belgian skies: overcast half of the spring and
    autumn dates and a third of summer ones, clear a fifth to a third of them, the rest broken
    (the real Mol April 2023 had 2 clear dates out of 12)."""
    summer = float(np.exp(-0.5 * ((day - 200) / 40.0) ** 2))
    p_overcast = 0.5 - 0.18 * summer
    p_clear = 0.2 + 0.12 * summer
    u = rng.random()
    if u < p_overcast:
        return float(rng.uniform(0.97, 1.0))
    if u < p_overcast + p_clear:
        return float(rng.choice([0.0, rng.uniform(0.0, 0.03)]))
    return float(rng.uniform(0.05, 0.95))
