"""The input and output layout of the shipped models, shared by training and the runtime.

`models/` (PyTorch, training and export) and the engine (ONNX Runtime or TensorRT, no torch)
must agree on channel order, grid and band names; they both read them from here. This module
imports nothing, so a GPU node can load the PyTorch networks of `models/` to benchmark them
without the engine's raster and dataframe stack (`benchmarks/model_devices.py`).
"""

from __future__ import annotations

from typing import Final

# -- practice detection: a parcel-season on a grid of 5-day bins ------------------------------

PRACTICES: Final = ("mowing", "ploughing", "harvest")
# The grid: 1 February to 17 December, 5-day bins (practices outside it are not sought).
GRID_START_DOY: Final = 32
BIN_DAYS: Final = 5
N_BINS: Final = 64
#: Model input channels, in order.
CHANNELS: Final = (
    "NDVI",
    "B02",
    "B04",
    "B08",
    "B11",
    "S2_observed",
    "S2_reconstructed",
    "VV",
    "VH",
    "VH_minus_VV",
    "S1_observed",
)

# -- cloud removal: Sentinel-2 bands from Sentinel-1 and a clear date --------------------------

#: Sentinel-2 bands the model reads and predicts (red, NIR, SWIR 1), in channel order.
BANDS: Final[tuple[str, ...]] = ("B04", "B08", "B11")
#: Sentinel-1 polarisations, in channel order.
POLARISATIONS: Final[tuple[str, ...]] = ("VV", "VH")
#: The network halves the grid three times: tiles must be a multiple of this.
TILE_MULTIPLE: Final = 8
