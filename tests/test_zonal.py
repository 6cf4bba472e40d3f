"""One acquisition to its observation table: the real samples, an independent numpy reference,
exactextract, real French LPIS parcels, and the `zonal` command's errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import rasterio
import rasterio.features
import shapely
from exactextract import exact_extract
from exactextract.feature import JSONFeatureSource
from exactextract.raster import NumPyRasterSource
from pyproj import Transformer
from sample_data import sample_dir

from monitor.cli import main
from monitor.errors import ParcelError
from monitor.observations import FIXED_COLUMNS
from monitor.parcels import load_parcels
from monitor.stac import read_item
from monitor.zonal import observe, parcel_grid

MOL = sample_dir() / "mol-2023"
SEGMENTS = MOL / "segments.gpkg"
RPG = sample_dir() / "rpg-2022-sample" / "PARCELLES_GRAPHIQUES.gpkg"
S2_ITEMS = sorted((MOL / "s2").glob("*/item.json"))
S1_ITEMS = sorted((MOL / "s1").glob("*/item.json"))
INVALID_SCL = (0, 1, 3, 8, 9, 10, 11)


@pytest.fixture(scope="module")
def segments():  # type: ignore[no-untyped-def]
    return load_parcels(SEGMENTS, id_column="segment_id")


def _reference(item: Path, parcels, band: str):  # type: ignore[no-untyped-def]
    """Per-parcel mean of `band` by rasterio + numpy alone (labels, SCL mask, nodata, scale)."""
    with rasterio.open(item.parent / f"{band}.tif") as src:
        data = src.read(1).astype(np.float64)
        nodata = src.nodata
        labels = rasterio.features.rasterize(
            ((g, i + 1) for i, g in enumerate(parcels.geometries)),
            out_shape=src.shape,
            transform=src.transform,
            all_touched=False,
            dtype="uint32",
        )
    valid = data != nodata if nodata is not None else np.isfinite(data)
    scl_path = item.parent / "SCL.tif"
    if scl_path.exists():
        with rasterio.open(scl_path) as scl:
            valid &= ~np.isin(scl.read(1), INVALID_SCL)
    means = {}
    for i, pid in enumerate(parcels.ids):
        sel = (labels == i + 1) & valid
        means[pid] = data[sel].mean() * 1e-4 if sel.any() else np.nan
    return means


@pytest.mark.parametrize("item", S2_ITEMS, ids=lambda p: p.parent.name)
def test_every_mol_s2_date_matches_a_numpy_reference(item: Path, segments) -> None:  # type: ignore[no-untyped-def]
    acq = read_item(item)
    table = observe(acq, parcel_grid(acq, segments))
    assert table.columns[: len(FIXED_COLUMNS)] == list(FIXED_COLUMNS)
    assert table.height == len(segments)
    expected = _reference(item, segments, "B04")
    got = dict(zip(table["parcel_id"], table["B04_mean"], strict=True))
    for pid, value in expected.items():
        if np.isnan(value):
            assert np.isnan(got[pid]), pid
        else:
            assert got[pid] == pytest.approx(value, rel=1e-9), pid


def test_clear_dates_see_more_than_cloudy_dates(segments) -> None:  # type: ignore[no-untyped-def]
    fractions = {}
    for item in S2_ITEMS:
        acq = read_item(item)
        table = observe(acq, parcel_grid(acq, segments))
        fractions[acq.acquired.date().isoformat()] = table["valid_fraction"].mean()
    # The README of the sample: only 04-05 and 04-15 are clear; 04-02, 04-07 ... are cloud.
    assert fractions["2023-04-15"] > 0.9
    assert fractions["2023-04-05"] > 0.9
    assert min(fractions.values()) < 0.2
    clear = read_item(MOL / "s2" / "S2_31UFS_20230415_L2A" / "item.json")
    table_ndvi = observe(clear, parcel_grid(clear, segments))
    assert table_ndvi["NDVI_mean"].is_between(-1, 1).all()
    assert table_ndvi["NDVI_mean"].median() > 0.3  # April vegetation around Mol


@pytest.mark.parametrize("item", S1_ITEMS[:3], ids=lambda p: p.parent.name)
def test_sentinel1_weighted_mean_equals_exactextract(item: Path, segments) -> None:  # type: ignore[no-untyped-def]
    acq = read_item(item)
    # Buffer the segments (which follow pixel edges) so boundary cells are partly covered.
    buffered = type(segments)(
        ids=segments.ids,
        geometries=shapely.buffer(segments.geometries, 4.3),
        crs=segments.crs,
        crops=None,
        version=segments.version + "-buffered",
    )
    table = observe(acq, parcel_grid(acq, buffered, coverage=True), weighted_mean=True)
    assert table["sensor"].unique().to_list() == ["S1"]
    assert table["VV_mean"].is_between(-30, 5).all()  # dB
    with rasterio.open(item.parent / "VV.tif") as src:
        vv = src.read(1)
        left, bottom, right, top = src.bounds
    features = JSONFeatureSource(
        [
            {"type": "Feature", "properties": {"pid": pid}, "geometry": shapely.geometry.mapping(g)}
            for pid, g in zip(buffered.ids, buffered.geometries, strict=True)
        ]
    )
    result = exact_extract(
        NumPyRasterSource(vv, left, bottom, right, top), features, ["mean"], include_cols=["pid"]
    )
    expected = {f["properties"]["pid"]: f["properties"]["mean"] for f in result}
    got = dict(zip(table["parcel_id"], table["VV_wmean"], strict=True))
    assert got.keys() == expected.keys()
    for pid, value in expected.items():
        assert got[pid] == pytest.approx(value, rel=1e-6), pid


def _item_over(path: Path, epsg: int, transform: rasterio.Affine, data: np.ndarray) -> Path:
    """A one-band (B04) Sentinel-2 STAC Item with its GeoTIFF, for parcels the samples miss."""
    path.mkdir(parents=True)
    with rasterio.open(
        path / "B04.tif",
        "w",
        driver="GTiff",
        height=data.shape[0],
        width=data.shape[1],
        count=1,
        dtype="uint16",
        crs=f"EPSG:{epsg}",
        transform=transform,
        nodata=0,
    ) as dst:
        dst.write(data, 1)
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "S2_31TDM_20220601_L2A",
        "geometry": None,
        "properties": {
            "datetime": "2022-06-01T10:50:00Z",
            "constellation": "sentinel-2",
            "s2:mgrs_tile": "31TDM",
            "proj:epsg": epsg,
            "proj:shape": list(data.shape),
            "proj:transform": list(transform)[:6],
        },
        "assets": {
            "B04": {
                "href": "./B04.tif",
                "raster:bands": [{"data_type": "uint16", "scale": 0.0001, "nodata": 0}],
            }
        },
        "links": [],
    }
    (path / "item.json").write_text(json.dumps(item))
    return path / "item.json"


def test_real_french_lpis_parcels_through_the_command(tmp_path: Path) -> None:
    rpg = load_parcels(RPG, id_column="id_parcel")
    target = rpg.ids[0]
    lambert93 = rpg.geometries[0]
    to_utm = Transformer.from_crs(2154, 32631, always_xy=True)
    utm = shapely.transform(lambert93, lambda c: np.column_stack(to_utm.transform(*c.T)))
    minx, miny, maxx, maxy = utm.bounds
    transform = rasterio.Affine(
        10, 0, np.floor(minx / 10) * 10 - 50, 0, -10, np.ceil(maxy / 10) * 10 + 50
    )
    height = int((transform.f - miny) // 10) + 6
    width = int((maxx - transform.c) // 10) + 6
    rows, cols = np.mgrid[0:height, 0:width]
    data = (1000 + rows * 7 + cols).astype(np.uint16)  # a ramp: the mean depends on the footprint
    item = _item_over(tmp_path / "item", 32631, transform, data)
    out = tmp_path / "obs.parquet"

    code = main(
        [
            "zonal",
            "--item",
            str(item),
            "--parcels",
            str(RPG),
            "--id-column",
            "id_parcel",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    table = pl.read_parquet(out)
    assert target in table["parcel_id"].to_list()
    row = table.filter(pl.col("parcel_id") == target).row(0, named=True)
    labels = rasterio.features.rasterize([(utm, 1)], out_shape=data.shape, transform=transform)
    assert row["pixel_count"] == int(labels.sum())
    assert row["pixel_count"] == pytest.approx(utm.area / 100, rel=0.1)
    assert row["B04_mean"] == pytest.approx(data[labels == 1].mean() * 1e-4, rel=1e-12)


def test_parcels_that_miss_the_tile_are_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "zonal",
            "--item",
            str(S2_ITEMS[0]),
            "--parcels",
            str(RPG),
            "--out",
            str(tmp_path / "x.parquet"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "no parcel" in err
    assert "31UFS" in err
    assert not (tmp_path / "x.parquet").exists()


def test_missing_item_and_bad_id_column_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "zonal",
                "--item",
                str(tmp_path / "nope.json"),
                "--parcels",
                str(SEGMENTS),
                "--out",
                str(tmp_path / "x.parquet"),
            ]
        )
        == 2
    )
    assert "nope.json" in capsys.readouterr().err
    assert (
        main(
            [
                "zonal",
                "--item",
                str(S2_ITEMS[0]),
                "--parcels",
                str(SEGMENTS),
                "--id-column",
                "no_such_column",
                "--out",
                str(tmp_path / "x.parquet"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "no_such_column" in err
    assert len(err.strip().splitlines()) == 1


def test_label_cache_is_reused_across_dates(tmp_path: Path, segments) -> None:  # type: ignore[no-untyped-def]
    first, second = (read_item(p) for p in S2_ITEMS[:2])
    grid_a = parcel_grid(first, segments, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.labels"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    grid_b = parcel_grid(second, segments, cache_dir=tmp_path)
    assert files[0].stat().st_mtime_ns == stamp
    assert np.array_equal(grid_a.labels.labels, grid_b.labels.labels)
    with pytest.raises(ParcelError):
        parcel_grid(first, load_parcels(RPG), cache_dir=tmp_path)
