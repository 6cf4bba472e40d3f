"""Reading assets onto the acquisition grid: real samples, resampling, and every bad raster."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window
from sample_data import sample_dir

from monitor.errors import AssetError, ConfigError, CrsMismatch
from monitor.raster import Band, read_acquisition
from monitor.stac import Acquisition, read_item

ITEMS = sorted(sample_dir().glob("*/s[12]/*/item.json"))
MOL_S2 = sample_dir() / "mol-2023" / "s2" / "S2_31UFS_20230405_L2A"  # a clear date
MOL_S1 = sample_dir() / "mol-2023" / "s1" / "S1_IW_GRD_31UFS_20230403"
ANTWERP_S2 = sample_dir() / "antwerp-2023q4" / "s2" / "S2_31UES_20231022_L2A"
MOL_ORIGIN = (643260.0, 5676480.0)


def write_tif(
    path: Path,
    data: np.ndarray[Any, Any],
    *,
    pixel: float = 10.0,
    origin: tuple[float, float] = MOL_ORIGIN,
    crs: str | None = "EPSG:32631",
    nodata: float | None = None,
) -> None:
    """A real tiled, deflated GeoTIFF like the samples."""
    height, width = data.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype=data.dtype,
        crs=crs,
        transform=Affine(pixel, 0.0, origin[0], 0.0, -pixel, origin[1]),
        nodata=nodata,
        tiled=True,
        blockxsize=16,
        blockysize=16,
        compress="deflate",
    ) as dst:
        dst.write(data, 1)


def read_tif(path: Path) -> np.ndarray[Any, Any]:
    with rasterio.open(path) as src:
        data: np.ndarray[Any, Any] = src.read(1)
    return data


def item_copy(
    source: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], None] | None = None
) -> Path:
    """Copy a sample acquisition folder under tmp_path, optionally editing its item."""
    folder = tmp_path / source.name
    shutil.copytree(source, folder)
    if edit is not None:
        item = json.loads((folder / "item.json").read_text())
        edit(item)
        (folder / "item.json").write_text(json.dumps(item))
    return folder


def acquisition(folder: Path) -> Acquisition:
    return read_item(folder / "item.json")


# --- the real samples ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ITEMS, ids=lambda p: p.parent.name)
def test_every_sample_acquisition_reads(path: Path) -> None:
    acq = read_item(path)
    rasters = read_acquisition(acq)
    assert rasters.shape == acq.shape
    assert rasters.transform == acq.transform
    assert list(rasters.bands) == list(acq.assets)
    native = np.uint16 if acq.sensor == "S2" else np.float32
    for name, band in rasters.bands.items():
        assert band.data.shape == acq.shape
        assert band.data.dtype == native
        assert band.factor == 1
        # Exactly the file's pixels: the grid of the samples is the item grid.
        np.testing.assert_array_equal(band.data, read_tif(path.parent / f"{name}.tif"))
    assert rasters.empty_bands == ()


def test_s2_reflectance_and_scl_are_plausible() -> None:
    rasters = read_acquisition(acquisition(MOL_S2))
    for name in ("B01", "B04", "B08", "B11"):
        band = rasters.bands[name]
        reflectance = band.data[band.valid_mask()] * band.scale + band.offset
        assert 0.0 <= np.median(reflectance) <= 0.6
    # Vegetation in April: NIR well above red.
    nir = rasters.bands["B08"].data.astype(float)
    red = rasters.bands["B04"].data.astype(float)
    assert np.median((nir - red) / (nir + red)) > 0.2
    scl = rasters.bands["SCL"].data
    assert scl.min() >= 0
    assert scl.max() <= 11


def test_s1_backscatter_is_in_db() -> None:
    rasters = read_acquisition(acquisition(MOL_S1))
    vv, vh = rasters.bands["VV"], rasters.bands["VH"]
    assert vv.unit == vh.unit == "dB"
    # Nodata falls back to the GeoTIFF's own (NaN) when the item does not declare one.
    assert vv.nodata is not None
    assert np.isnan(vv.nodata)
    for band, low, high in ((vv, -20.0, -5.0), (vh, -28.0, -12.0)):
        assert band.valid_mask().mean() > 0.95
        assert low < np.nanmedian(band.data) < high
        assert np.nanmin(band.data) > -70.0
        assert np.nanmax(band.data) < 25.0
    assert np.nanmedian(vh.data) < np.nanmedian(vv.data)  # cross-pol is weaker


def test_band_subset_and_window() -> None:
    acq = acquisition(MOL_S2)
    full = read_acquisition(acq)
    part = read_acquisition(acq, ["B08", "SCL"], Window(5, 3, 20, 30))
    assert list(part.bands) == ["B08", "SCL"]
    assert part.shape == (30, 20)
    assert part.transform == (10.0, 0.0, MOL_ORIGIN[0] + 50.0, 0.0, -10.0, MOL_ORIGIN[1] - 30.0)
    np.testing.assert_array_equal(part.bands["B08"].data, full.bands["B08"].data[3:33, 5:25])


# --- resampling coarser bands ---------------------------------------------------------------


def test_20m_scl_is_resampled_by_nearest(tmp_path: Path) -> None:
    real_scl = read_tif(MOL_S2 / "SCL.tif")
    scl20 = np.ascontiguousarray(real_scl[::2, ::2])  # 33x32 at 20 m
    grid20 = [20.0, 0.0, *MOL_ORIGIN[:1], 0.0, -20.0, MOL_ORIGIN[1]]

    def declare_20m(item: dict[str, Any]) -> None:
        item["assets"]["SCL"].update({"proj:shape": [33, 32], "proj:transform": grid20})

    folder = item_copy(MOL_S2, tmp_path, declare_20m)
    write_tif(folder / "SCL.tif", scl20, pixel=20.0)
    rasters = read_acquisition(acquisition(folder))
    scl = rasters.bands["SCL"]
    assert scl.factor == 2
    assert scl.data.dtype == np.uint16
    assert scl.data.shape == (66, 64)
    expected = np.repeat(np.repeat(scl20, 2, axis=0), 2, axis=1)
    np.testing.assert_array_equal(scl.data, expected)
    # Class values stay class values: nearest invents none.
    assert set(np.unique(scl.data)) == set(np.unique(scl20))
    # A window starting mid-pixel of the coarse band is the same crop.
    part = read_acquisition(acquisition(folder), ["SCL"], Window(5, 3, 21, 31))
    np.testing.assert_array_equal(part.bands["SCL"].data, expected[3:34, 5:26])


def test_20m_band_on_an_odd_sized_grid(tmp_path: Path) -> None:
    # Antwerp's grid is 52x46: at 20 m that is 26x23 pixels; no asset-level proj:* declared.
    folder = item_copy(ANTWERP_S2, tmp_path)
    b08 = read_tif(ANTWERP_S2 / "B08.tif")
    coarse = np.ascontiguousarray(b08[::2, ::2])
    assert coarse.shape == (26, 23)
    write_tif(folder / "B08.tif", coarse, pixel=20.0, origin=(587880.0, 5685430.0), nodata=0)
    band = read_acquisition(acquisition(folder), ["B08"]).bands["B08"]
    assert band.data.shape == (52, 46)
    np.testing.assert_array_equal(band.data, np.repeat(np.repeat(coarse, 2, 0), 2, 1)[:52, :46])


def test_60m_band(tmp_path: Path) -> None:
    folder = item_copy(MOL_S2, tmp_path)
    b01 = read_tif(MOL_S2 / "B01.tif")
    coarse = np.ascontiguousarray(b01[::6, ::6])  # 11x11 covers 66x64
    write_tif(folder / "B01.tif", coarse, pixel=60.0, nodata=0)
    band = read_acquisition(acquisition(folder), ["B01"]).bands["B01"]
    assert band.factor == 6
    np.testing.assert_array_equal(band.data, np.repeat(np.repeat(coarse, 6, 0), 6, 1)[:66, :64])


# --- values ---------------------------------------------------------------------------------


def test_linear_s1_is_converted_to_db(tmp_path: Path) -> None:
    def declare_linear(item: dict[str, Any]) -> None:
        item["assets"]["VV"]["raster:bands"][0].update({"unit": "linear", "nodata": 0})

    folder = item_copy(MOL_S1, tmp_path, declare_linear)
    db = read_tif(MOL_S1 / "VV.tif")
    linear = (10.0 ** (db / 10.0)).astype(np.float32)
    linear[:2, :] = 0.0  # nodata rows
    write_tif(folder / "VV.tif", linear)
    vv = read_acquisition(acquisition(folder), ["VV"]).bands["VV"]
    assert vv.unit == "dB"
    assert vv.data.dtype == np.float32
    assert np.isnan(vv.data[:2]).all()
    np.testing.assert_allclose(vv.data[2:], db[2:], atol=1e-4)


def test_band_entirely_nodata_is_reported_not_refused(tmp_path: Path) -> None:
    folder = item_copy(MOL_S2, tmp_path)
    write_tif(folder / "B04.tif", np.zeros((66, 64), np.uint16), nodata=0)
    rasters = read_acquisition(acquisition(folder))
    assert rasters.empty_bands == ("B04",)
    assert not rasters.bands["B04"].valid_mask().any()
    assert rasters.bands["B08"].valid_mask().all()


def test_acquisition_with_every_band_nodata_is_refused(tmp_path: Path) -> None:
    folder = item_copy(MOL_S2, tmp_path)
    acq = acquisition(folder)
    data_bands = [name for name in acq.assets if name != "SCL"]
    for name in data_bands:
        with rasterio.open(acq.assets[name].href) as src:
            shape, dtype = (src.height, src.width), src.dtypes[0]
        write_tif(folder / f"{name}.tif", np.zeros(shape, dtype), nodata=0)
    message = refused(folder, AssetError, "no valid pixel in any band")
    assert all(name in message for name in data_bands)
    # A window of an empty acquisition is only reported: a tile edge may be empty.
    part = read_acquisition(acquisition(folder), window=Window(0, 0, 8, 8))
    assert set(data_bands) <= set(part.empty_bands)


# --- bad rasters ----------------------------------------------------------------------------


def refused(folder: Path, error: type[Exception], match: str, **kwargs: Any) -> str:
    with pytest.raises(error, match=match) as exc:
        read_acquisition(acquisition(folder), **kwargs)
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path: Path) -> None:
    folder = item_copy(MOL_S2, tmp_path)
    (folder / "B08.tif").unlink()
    message = refused(folder, AssetError, "asset B08 .*: file missing")
    assert "S2_31UFS_20230405_L2A" in message


def test_not_a_geotiff(tmp_path: Path) -> None:
    folder = item_copy(MOL_S2, tmp_path)
    (folder / "B08.tif").write_text("this is not a raster\n")
    refused(folder, AssetError, "asset B08 .*: unreadable")


@pytest.mark.parametrize("kept", [0.3, 0.9])
def test_truncated_geotiff(tmp_path: Path, kept: float) -> None:
    folder = item_copy(MOL_S2, tmp_path)
    blob = (folder / "B04.tif").read_bytes()
    (folder / "B04.tif").write_bytes(blob[: int(len(blob) * kept)])
    refused(folder, AssetError, "asset B04 .*(corrupt or truncated|unreadable)")


def test_wrong_crs(tmp_path: Path) -> None:
    folder = item_copy(MOL_S2, tmp_path)
    write_tif(folder / "B04.tif", read_tif(MOL_S2 / "B04.tif"), crs="EPSG:32632")
    refused(folder, CrsMismatch, "asset B04 .*EPSG:32632 is not EPSG:32631")


def test_no_crs(tmp_path: Path) -> None:
    folder = item_copy(MOL_S2, tmp_path)
    write_tif(folder / "B04.tif", read_tif(MOL_S2 / "B04.tif"), crs=None)
    refused(folder, CrsMismatch, "asset B04 .*raster CRS none")


def test_raster_far_larger_than_declared(tmp_path: Path) -> None:
    folder = item_copy(MOL_S2, tmp_path)
    write_tif(folder / "B04.tif", np.zeros((2000, 2000), np.uint16))
    refused(folder, AssetError, "asset B04 .*2000x2000 px .* does not match the item grid 66x64")


def test_shifted_grid(tmp_path: Path) -> None:
    folder = item_copy(MOL_S2, tmp_path)
    shifted = (MOL_ORIGIN[0] + 5.0, MOL_ORIGIN[1])
    write_tif(folder / "B04.tif", read_tif(MOL_S2 / "B04.tif"), origin=shifted)
    refused(folder, AssetError, "asset B04 .*does not match the item grid")


def test_resolution_that_is_not_a_sentinel_factor(tmp_path: Path) -> None:
    folder = item_copy(MOL_S2, tmp_path)
    write_tif(folder / "B04.tif", np.ones((22, 22), np.uint16), pixel=30.0)
    refused(folder, AssetError, "asset B04 .*of 30 m")


def test_asset_grid_other_than_declared(tmp_path: Path) -> None:
    def declare_20m(item: dict[str, Any]) -> None:
        grid20 = [20.0, 0.0, *MOL_ORIGIN[:1], 0.0, -20.0, MOL_ORIGIN[1]]
        item["assets"]["B11"].update({"proj:shape": [33, 32], "proj:transform": grid20})

    folder = item_copy(MOL_S2, tmp_path, declare_20m)  # but B11.tif is still 10 m
    refused(folder, AssetError, "asset B11 .*differs from its declared proj:shape")


def test_data_type_other_than_declared(tmp_path: Path) -> None:
    folder = item_copy(MOL_S2, tmp_path)
    write_tif(folder / "B04.tif", read_tif(MOL_S2 / "B04.tif").astype(np.float32))
    refused(folder, AssetError, "asset B04 .*data type float32 but the item says uint16")


def test_allocation_cap(tmp_path: Path) -> None:
    # 5 bands x 66 x 64 px x 2 bytes = 42 240 bytes
    refused(MOL_S2, AssetError, "over the .* GiB cap", max_bytes=40_000)
    assert len(read_acquisition(acquisition(MOL_S2), max_bytes=42_240).bands) == 5


def test_unknown_band() -> None:
    refused(MOL_S2, AssetError, "no asset \\['B05'\\]", bands=["B04", "B05"])


@pytest.mark.parametrize(
    "window", [Window(0, 0, 65, 10), Window(-1, 0, 5, 5), Window(0.5, 0, 5, 5), Window(0, 0, 0, 4)]
)
def test_window_off_the_grid(window: Window) -> None:
    refused(MOL_S2, ConfigError, "window", window=window)


@pytest.mark.parametrize(("dtype", "nodata"), [(np.uint16, 0.0), (np.float32, math.nan)])
def test_has_valid_finds_a_single_pixel_in_the_last_block(dtype: type, nodata: float) -> None:
    data = np.full((3000, 1000), nodata, dtype=dtype)
    band = Band("B04", data, 1e-4, 0.0, nodata, None, 1)
    assert not band.has_valid()
    data[-1, -1] = 7
    assert band.has_valid()
    assert band.has_valid() == band.valid_mask().any()
