"""A picture of one Sentinel-2 date for a person: true colour, parcel outlines, cloud mask.

Tiles larger than 1024 px show their central 1024 x 1024 px (10 km) at full resolution.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from monitor.simulate.clouds import CIRRUS, CLOUD_HIGH, CLOUD_MEDIUM, SHADOW

MAX_PX = 1024


def window_for(size: int) -> slice:
    """The rows (and columns) shown: the whole tile, or its central `MAX_PX` at full
    resolution, where parcels can still be told apart."""
    start = max(0, (size - MAX_PX) // 2)
    return slice(start, start + min(size, MAX_PX))


def write_preview(
    path: Path,
    rgb: NDArray[np.uint16],  # (3, h, w) B04 B03 B02 at the preview's scale
    labels: NDArray[np.int32],  # (h, w) parcel units at the same scale
    scl: NDArray[np.uint8],  # (h, w) SCL at the same scale
) -> None:
    """RGB stretched to 0-0.25 reflectance; parcel edges in yellow; SCL clouds tinted cyan,
    cirrus light blue, cloud shadows magenta."""
    from matplotlib.image import imsave

    image = np.clip(rgb.astype(np.float32) / 2500.0, 0.0, 1.0).transpose(1, 2, 0) ** (1 / 1.6)
    tints = {
        CLOUD_HIGH: (0.0, 1.0, 1.0, 0.55),
        CLOUD_MEDIUM: (0.0, 0.8, 1.0, 0.4),
        CIRRUS: (0.6, 0.8, 1.0, 0.3),
        SHADOW: (1.0, 0.0, 1.0, 0.45),
    }
    for cls, (r, g, b, a) in tints.items():
        mask = scl == cls
        image[mask] = (1 - a) * image[mask] + a * np.array([r, g, b], dtype=np.float32)
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    image[edge] = (1.0, 0.85, 0.0)
    zoom = max(1, 512 // max(image.shape[:2]))  # small test tiles: enlarge for the eye
    image = image.repeat(zoom, axis=0).repeat(zoom, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    imsave(path, (image * 255).astype(np.uint8))
