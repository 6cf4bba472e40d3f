"""Clouds, their shadows, thin cirrus and haze over one Sentinel-2 date, and the SCL they yield.

The sky is drawn at 60 m (clouds are smooth at that scale) and interpolated to 10 and 20 m:

- cloud opacity alpha: a fractal field thresholded so that the date's target share is cloudy,
  thickened with distance from the edge up to a per-date thickness (thin overcast days give
  SCL 8 everywhere, thick ones SCL 9, as on the real Mol dates);
- shadows: the same field shifted 0.5-2 km away from the sun (north-north-west at 10:50 UTC);
- cirrus: a broad, faint additive layer on some dates (SCL 10), and a uniform haze;
- haze patches: on a quarter of the dates that are not overcast, km-wide veils of thin haze
  over 5-30 % of the tile (+0.004-0.02 in blue, ∝ λ^-1.3) that Sen2Cor does not flag:
  residual clouds.

Top-of-canopy observation per band b:
`obs = surface · (1-alpha)^2.5 · (1 - shadow) + alpha · cloud_b + cirrus · cirrus_b + haze_b
+ patch · haze_b / haze_B02`.
The SCL follows Sen2Cor's logic with its known failures: thin cloud edges and haze patches pass
as vegetation or soil (residual clouds), some shadows are missed. Snow (SCL 11) is classed
where more than half a 20 m pixel is under snow and no cloud hides it; SCL 1 (saturated) where
the blue top-of-atmosphere reflectance passes the detector's saturation, in the cores of the
brightest clouds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from monitor.simulate import noise
from monitor.simulate.grid import TileGrid
from monitor.simulate.noise import F32

SKY_RES = 60
HAZE_SPECTRUM = np.array([1.0, 0.75, 0.6, 0.33, 0.5, 0.42, 0.38, 0.3, 0.1, 0.05])  # ∝ λ^-1.3
CIRRUS_SPECTRUM = np.array([1.1, 1.05, 1.0, 0.95, 1.0, 0.97, 0.96, 0.95, 0.6, 0.4])
_SCALES_M = (6000.0, 3000.0, 1500.0, 700.0, 350.0, 180.0)

# blue reflectance at which the L1C detector saturates (blue has the most sunlight)
SATURATION = 1.0
_HAZE_PATCH_P = 0.25

# SCL classes (Sen2Cor)
SATURATED = 1
SNOW = 11
DARK, SHADOW, VEGETATION, NOT_VEGETATED, WATER = 2, 3, 4, 5, 6
UNCLASSIFIED, CLOUD_MEDIUM, CLOUD_HIGH, CIRRUS = 7, 8, 9, 10
CLOUDY_CLASSES = (CLOUD_MEDIUM, CLOUD_HIGH, CIRRUS)


@dataclass(frozen=True)
class Sky:
    cover: float  # share of the tile under cloud (alpha > 0)
    opacity: F32 | None  # alpha at 60 m, None on a cloud-free date
    shadow: F32 | None
    cirrus: F32 | None
    patches: F32 | None  # undetected haze, blue reflectance at 60 m
    cloud_spectrum: NDArray[np.float64]  # reflectance of an opaque cloud, per band
    haze: NDArray[np.float64]  # additive haze per band
    medium_threshold: float  # alpha above which Sen2Cor says "cloud, medium probability"
    high_threshold: float

    def fields(
        self, grid: TileGrid, resolution: int
    ) -> tuple[F32 | None, F32 | None, F32 | None, F32 | None]:
        """(opacity, shadow, cirrus, haze patches) on the grid at `resolution` metres."""
        shape = grid.shape(resolution)
        factor = SKY_RES / resolution
        return tuple(  # type: ignore[return-value]
            None if f is None else np.clip(noise.upsample(f, factor, shape), 0.0, 1.0)
            for f in (self.opacity, self.shadow, self.cirrus, self.patches)
        )


def draw_sky(grid: TileGrid, cover: float, rng: np.random.Generator) -> Sky:
    """The sky of one date whose cloudy share is `cover` (see `weather.cloud_cover_target`)."""
    n = grid.shape(SKY_RES)[0]
    margin = int(np.ceil(2000 / SKY_RES)) + 1
    big = (n + 2 * margin, n + 2 * margin)
    thickness = float(rng.uniform(0.25, 1.0) if cover > 0.95 else rng.uniform(0.5, 1.0))
    opacity = shadow = None
    if cover > 0:
        field = noise.fractal(rng, big, SKY_RES, _SCALES_M, decay=0.65)
        inside = field[margin : margin + n, margin : margin + n]
        threshold = float(np.quantile(inside, 1.0 - cover))
        softness = float(rng.uniform(0.3, 0.8))
        alpha = thickness * (1.0 - np.exp(-np.maximum(field - threshold, 0.0) / softness))
        # overcast days: even the "gaps" stay under a thin deck
        if cover > 0.95:
            alpha = np.maximum(alpha, 0.6 * thickness * (alpha > 0))
        alpha = alpha.astype(np.float32)
        distance = rng.uniform(500.0, 2000.0) / SKY_RES
        azimuth = np.deg2rad(rng.uniform(320.0, 350.0))  # direction the shadow falls
        dx = round(float(distance * np.sin(azimuth)))
        dy = round(float(-distance * np.cos(azimuth)))
        shifted = np.roll(alpha, (dy, dx), axis=(0, 1))
        window = np.s_[margin : margin + n, margin : margin + n]
        opacity = np.ascontiguousarray(alpha[window])
        shadow = np.ascontiguousarray((0.75 * shifted[window]).astype(np.float32))
    cirrus = None
    if rng.random() < 0.2:
        strength = float(rng.uniform(0.008, 0.035))
        layer = noise.fractal(rng, (n, n), SKY_RES, (20000.0, 8000.0, 3000.0), decay=0.7)
        cirrus = np.clip(strength * (1.0 + 0.5 * layer), 0.0, None).astype(np.float32)
    patches = None
    if cover < 0.95 and rng.random() < _HAZE_PATCH_P:
        veil = noise.fractal(rng, (n, n), SKY_RES, (6000.0, 2500.0, 1000.0), decay=0.7)
        threshold = float(np.quantile(veil, 1.0 - rng.uniform(0.05, 0.3)))
        strength = float(rng.uniform(0.004, 0.02))
        patches = (strength * (1.0 - np.exp(-np.maximum(veil - threshold, 0.0) / 0.4))).astype(
            np.float32
        )
    level = rng.uniform(0.55, 1.1)
    swir = rng.uniform(0.3, 0.85)
    cloud_spectrum = level * np.array(
        [1.02, 1.0, 1.0, 1.03, 1.0, 1.01, 1.02, 1.03, swir, swir * rng.uniform(0.6, 0.8)]
    )
    jitter = float(rng.uniform(0.8, 1.25))
    return Sky(
        cover=cover,
        opacity=opacity,
        shadow=shadow,
        cirrus=cirrus,
        patches=patches,
        cloud_spectrum=cloud_spectrum,
        haze=rng.uniform(0.0, 0.006) * HAZE_SPECTRUM,
        medium_threshold=0.08 * jitter,
        high_threshold=0.35 * jitter,
    )


def transmission(opacity: F32 | None, shadow: F32 | None) -> F32 | None:
    """Share of the surface signal that reaches the sensor: through the cloud, out of shadow."""
    if opacity is None:
        return None
    t = (1.0 - opacity) ** np.float32(2.5)
    if shadow is not None:
        t *= 1.0 - shadow
    return t


def scene_classification(
    red: F32,
    nir: F32,
    water: NDArray[np.bool_],
    sky: Sky,
    opacity: F32 | None,
    shadow: F32 | None,
    cirrus: F32 | None,
    snow: F32 | None,
    saturated: NDArray[np.bool_] | None,
    rng: np.random.Generator,
) -> NDArray[np.uint8]:
    """Sen2Cor-like SCL at 20 m from the observed red/NIR, the true sky fields, the true snow
    fraction and the saturated pixels."""
    ndvi = (nir - red) / np.maximum(nir + red, np.float32(1e-6))
    scl = np.where(ndvi >= 0.55, VEGETATION, NOT_VEGETATED).astype(np.uint8)
    scl[water] = WATER
    scl[(nir < 0.04) & ~water] = DARK
    if snow is not None:
        scl[snow > 0.5] = SNOW
    if cirrus is not None:
        scl[cirrus >= 0.012] = CIRRUS
    if shadow is not None:
        scl[shadow >= 0.3] = SHADOW
    if opacity is not None:
        edge = (opacity >= 0.5 * sky.medium_threshold) & (opacity < sky.medium_threshold)
        flips = rng.random(opacity.shape, dtype=np.float32) < 0.2
        scl[edge & flips] = UNCLASSIFIED
        scl[opacity >= sky.medium_threshold] = CLOUD_MEDIUM
        scl[opacity >= sky.high_threshold] = CLOUD_HIGH
    if saturated is not None:
        scl[saturated] = SATURATED
    return scl
