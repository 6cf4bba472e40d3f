"""A full Sentinel-2 tile (10980², ~200 000 parcels) for one date: measured, not asserted."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import rasterio
from rasterio.windows import Window


@pytest.mark.slow
def test_full_tile_one_date(tmp_path: Path) -> None:
    out = tmp_path / "full"
    command = [
        sys.executable, "-m", "monitor.cli", "simulate", "--out", str(out),
        "--tile-size", "10980", "--parcels", "200000", "--dates", "1", "--quiet",
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_gib = usage.ru_maxrss / 2**20
    load = os.getloadavg()[0]
    # wall time depends on what else runs: CPU time and the load say how to read it
    print(f"\nfull tile, 200 000 parcels, one S2 + one S1 date: {seconds:.1f} s wall", end=", ")
    print(f"{usage.ru_utime + usage.ru_stime:.1f} s CPU, peak memory {peak_gib:.1f} GiB", end=", ")
    print(f"load average {load:.1f} on {os.cpu_count()} cores")

    assert pq.ParquetFile(out / "parcels.parquet").metadata.num_rows == 200_000
    (s2,) = (out / "s2").iterdir()
    item = json.loads((s2 / "item.json").read_text())
    assert item["properties"]["proj:shape"] == [10980, 10980]
    for band, side in (("B04", 10980), ("B11", 5490), ("SCL", 5490)):
        with rasterio.open(s2 / f"{band}.tif") as src:
            assert (src.height, src.width) == (side, side)
            assert src.overviews(1)  # a real COG: overviews for quick looks
            window = src.read(1, window=Window(side // 2, side // 2, 256, 256))
            assert window.min() >= 1 if band != "SCL" else window.max() <= 11
    (s1,) = (out / "s1").iterdir()
    with rasterio.open(s1 / "VH.tif") as src:
        vh = src.read(1, window=Window(5000, 5000, 512, 512))
        assert -30 < float(vh.mean()) < -8
