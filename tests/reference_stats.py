"""Plain numpy references for the Rust kernels, written for clarity, not speed.

Each function restates a kernel's documented definition with one Python loop per parcel (or
per pixel shift), so the tests compare two independent implementations.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

STATS = ("mean", "std", "min", "max", "p10", "p50", "p90")


def describe(values: npt.NDArray[np.float64]) -> dict[str, float]:
    """mean, population std, min, max, p10/p50/p90 (numpy linear); NaN when empty."""
    if values.size == 0:
        return dict.fromkeys(STATS, float("nan"))
    p10, p50, p90 = np.percentile(values, [10, 50, 90], method="linear")
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
        "p10": float(p10),
        "p50": float(p50),
        "p90": float(p90),
    }


def zonal_reference(
    labels: npt.NDArray[np.uint32],
    n_parcels: int,
    bands: Mapping[str, npt.NDArray[np.generic]],
    valid: npt.NDArray[np.bool_] | None,
    scales: Mapping[str, float],
    offsets: Mapping[str, float],
    nodata: Mapping[str, float | None],
    ndvi: tuple[str, str] | None,
) -> dict[str, npt.NDArray[np.float64]]:
    """Columns of `monitor.kernels.zonal_statistics`, one parcel at a time."""
    # A pixel is usable when valid in the mask and holding data in every band.
    usable = np.ones(labels.shape, dtype=bool) if valid is None else valid.copy()
    scaled = {}
    for name, band in bands.items():
        raw = band.astype(np.float64)
        usable &= ~np.isnan(raw)
        if nodata.get(name) is not None:
            usable &= raw != nodata[name]
        scaled[name] = raw * scales.get(name, 1.0) + offsets.get(name, 0.0)
    outputs = [*bands, "NDVI"] if ndvi else list(bands)
    columns: dict[str, list[float]] = {"pixel_count": [], "valid_count": [], "valid_fraction": []}
    columns.update({f"{o}_{s}": [] for o in outputs for s in STATS})
    for p in range(n_parcels):
        member = labels == p + 1
        ok = member & usable
        columns["pixel_count"].append(int(member.sum()))
        columns["valid_count"].append(int(ok.sum()))
        columns["valid_fraction"].append(ok.sum() / member.sum() if member.any() else 0.0)
        per_output = {name: scaled[name][ok] for name in bands}
        if ndvi:
            red, nir = per_output[ndvi[0]], per_output[ndvi[1]]
            keep = nir + red > 0
            per_output["NDVI"] = (nir[keep] - red[keep]) / (nir[keep] + red[keep])
        for name, values in per_output.items():
            for stat, value in describe(values).items():
                columns[f"{name}_{stat}"].append(value)
    return {name: np.asarray(values, dtype=np.float64) for name, values in columns.items()}


def dilate_reference(invalid: npt.NDArray[np.bool_], n: int) -> npt.NDArray[np.bool_]:
    """Chebyshev dilation by `n`: OR of every shift within n rows and n columns."""
    h, w = invalid.shape
    padded = np.zeros((h + 2 * n, w + 2 * n), dtype=bool)
    padded[n : n + h, n : n + w] = invalid
    out = np.zeros_like(invalid)
    for dr in range(2 * n + 1):
        for dc in range(2 * n + 1):
            out |= padded[dr : dr + h, dc : dc + w]
    return out
