"""The season simulator writes valid, consistent and deterministic deliveries."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely

from monitor.cli import main
from monitor.errors import ConfigError
from monitor.simulate import SimulationSummary, simulate_season

SIZE, PARCELS, SEED = 256, 60, 7


@pytest.fixture(scope="module")
def season(tmp_path_factory: pytest.TempPathFactory) -> SimulationSummary:
    # May-July: first mowings, the winter-cereal harvests and the ploughings after them
    out = tmp_path_factory.mktemp("season")
    return simulate_season(
        out, SIZE, PARCELS, 2025, SEED, start=date(2025, 5, 1), end=date(2025, 7, 31)
    )


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def _items(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*/item.json"))]


def test_s2_items_are_shaped_like_the_real_samples(season: SimulationSummary) -> None:
    items = _items(season.out / "s2")
    # every 5 days over 3 months (18), less what the archive lost (single ones, an outage)
    assert len(items) == len(season.s2_items) >= 11
    for item in items:
        props = item["properties"]
        assert item["id"] == f"S2_31UFS_{props['datetime'][:10].replace('-', '')}_L2A"
        assert props["constellation"] == "sentinel-2"
        assert props["grid:code"] == "MGRS-31UFS"
        assert props["s2:mgrs_tile"] == "31UFS"
        assert props["proj:epsg"] == 32631
        assert props["proj:shape"] == [SIZE, SIZE]
        assert props["proj:transform"] == [10.0, 0.0, 600000.0, 0.0, -10.0, 5700000.0]
        assert props["datetime"].endswith("Z")
        assert set(item["assets"]) == {
            *("B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12"),
            "SCL",
        }
        folder = season.out / "s2" / item["id"]
        for key, asset in item["assets"].items():
            assert asset["href"] == f"./{key}.tif"
            with rasterio.open(folder / asset["href"]) as src:
                band = asset["raster:bands"][0]
                assert src.dtypes[0] == band["data_type"]
                assert src.crs.to_epsg() == 32631
                assert src.profile["compress"] == "zstd"
                assert src.overviews(1) or src.width <= 512
                assert src.profile["tiled"]
                if key == "SCL":
                    assert src.dtypes[0] == "uint8"
                else:
                    assert band == {
                        "data_type": "uint16",
                        "scale": 0.0001,
                        "offset": 0.0,
                        "nodata": 0,
                    }
                    assert src.nodata == 0
                transform = asset.get("proj:transform", props["proj:transform"])
                shape = asset.get("proj:shape", props["proj:shape"])
                assert list(src.transform)[:6] == transform
                assert [src.height, src.width] == shape
                assert src.res == (
                    (10.0, 10.0) if key in ("B02", "B03", "B04", "B08") else (20.0, 20.0)
                )


def test_s1_items_carry_db_backscatter(season: SimulationSummary) -> None:
    items = _items(season.out / "s1")
    # every 5 or 7 days over 3 months (15), less what the archive lost
    assert len(items) == len(season.s1_items) >= 9
    for item in items:
        assert item["properties"]["constellation"] == "sentinel-1"
        assert item["id"].startswith("S1_IW_GRD_31UFS_")
        for pol in ("VV", "VH"):
            asset = item["assets"][pol]
            assert asset["raster:bands"][0] == {"data_type": "float32", "unit": "dB"}
            db = _read(season.out / "s1" / item["id"] / f"{pol}.tif")
            assert db.dtype == np.float32
            assert np.isfinite(db).all()
            assert -35 < np.median(db) < 0
    dates = {
        d["id"]: d for d in pq.read_table(season.out / "truth" / "s1_dates.parquet").to_pylist()
    }
    states = set()
    for item in items:
        props, truth = item["properties"], dates[item["id"]]
        # four tracks: two descending in the morning, two ascending in the evening, as over Mol
        time, orbits = {"descending": ("05:50", (37, 110)), "ascending": ("17:30", (88, 161))}[
            props["sat:orbit_state"]
        ]
        assert props["datetime"][11:16] == time
        assert props["sat:relative_orbit"] in orbits
        assert props["platform"] == "sentinel-1a"
        assert truth["orbit_state"] == props["sat:orbit_state"]
        assert truth["incidence_deg"] == props["view:incidence_angle"]
        assert 29 < props["view:incidence_angle"] < 46  # the IW swath
        states.add(props["sat:orbit_state"])
    assert states == {"ascending", "descending"}


def test_catalog_links_every_item(season: SimulationSummary) -> None:
    catalog = json.loads((season.out / "catalog.json").read_text())
    assert catalog["type"] == "Catalog"
    hrefs = {link["href"] for link in catalog["links"] if link["rel"] == "item"}
    expected = {
        "./" + p.relative_to(season.out).as_posix() for p in season.s2_items + season.s1_items
    }
    assert hrefs == expected


def test_parcels_are_geoparquet_with_realistic_fields(season: SimulationSummary) -> None:
    table = pq.read_table(season.out / "parcels.parquet")
    geo = json.loads(table.schema.metadata[b"geo"])
    column = geo["columns"]["geometry"]
    assert geo["version"] == "1.0.0"
    assert geo["primary_column"] == "geometry"
    assert column["encoding"] == "WKB"
    assert column["geometry_types"] == ["Polygon"]
    assert column["crs"]["id"] == {"authority": "EPSG", "code": 32631}
    assert table.column_names == ["id_parcel", "code_cultu", "surf_parc", "geometry"]
    assert table.num_rows == PARCELS
    ids = table.column("id_parcel").to_pylist()
    assert len(set(ids)) == PARCELS
    geoms = shapely.from_wkb(table.column("geometry").to_pylist())
    assert shapely.is_valid(geoms).all()
    area = shapely.area(geoms) / 1e4
    assert np.allclose(area, table.column("surf_parc").to_numpy(), atol=1e-3)
    assert area.min() >= 0.5
    assert area.max() <= 20.0
    tile = shapely.box(600000, 5700000 - SIZE * 10, 600000 + SIZE * 10, 5700000)
    assert shapely.within(geoms, tile).all()
    # fields do not overlap one another
    assert shapely.area(shapely.union_all(geoms)) == pytest.approx(area.sum() * 1e4, rel=1e-6)
    codes = set(table.column("code_cultu").to_pylist())
    assert {"PPH", "BTH", "MIS"} <= codes


def test_truth_tables_follow_the_documented_schema(season: SimulationSummary) -> None:
    parcels = pq.read_table(season.out / "truth" / "parcels.parquet")
    assert parcels.column_names == [
        "id_parcel", "declared_code", "cover", "second_cover", "second_fraction",
        "heterogeneous", "area_ha", "sowing", "green_up", "senescence", "harvest", "mowings",
    ]  # fmt: skip
    rows = parcels.to_pylist()
    hetero = [r for r in rows if r["heterogeneous"]]
    assert len(hetero) == round(0.05 * PARCELS)
    for r in hetero:
        assert r["second_cover"] not in (None, r["cover"])
        assert 0.2 < r["second_fraction"] < 0.5
    for r in rows:
        if r["cover"] in ("PPH", "PRL"):
            assert 1 <= r["mowings"] <= 4
            assert r["harvest"] is None
        if r["cover"] in ("BTH", "MIS"):
            assert r["harvest"] is not None
            assert r["mowings"] == 0
    s2_dates = pq.read_table(season.out / "truth" / "s2_dates.parquet")
    assert s2_dates.column_names == [
        "id", "datetime", "platform", "cloud_share", "eo_cloud_cover", "clear_truth",
        "residual_cloud_share", "snow_share", "saturated_share",
    ]  # fmt: skip
    assert set(s2_dates.column("platform").to_pylist()) == {"sentinel-2a", "sentinel-2b"}
    s1_dates = pq.read_table(season.out / "truth" / "s1_dates.parquet")
    assert s1_dates.column_names == [
        "id", "datetime", "soil_moisture", "orbit_state", "relative_orbit", "incidence_deg",
        "snow_share", "wet_snow",
    ]  # fmt: skip
    practices = pq.read_table(season.out / "truth" / "practices.parquet").to_pylist()
    assert {p["type"] for p in practices} == {"mowing", "harvest", "ploughing"}
    assert all(date(2025, 5, 1) <= p["date"] <= date(2025, 7, 31) for p in practices)
    assert {p["id_parcel"] for p in practices} <= {r["id_parcel"] for r in rows}
    mowing_drop = [p["ndvi_before"] - p["ndvi_after"] for p in practices if p["type"] == "mowing"]
    assert mowing_drop
    assert 0.1 <= np.median(mowing_drop) <= 0.45
    assert min(mowing_drop) > 0.05


def _clear_sky(season: SimulationSummary, item_id: str, band: str) -> np.ndarray:
    truth = season.out / "truth" / "s2_clear" / item_id / f"{band}.tif"
    source = truth if truth.exists() else season.out / "s2" / item_id / f"{band}.tif"
    return _read(source).astype(np.float64) / 1e4


def test_scl_marks_clouds_where_reflectance_is_bright(season: SimulationSummary) -> None:
    seen_cloud = seen_clear = False
    for item in _items(season.out / "s2"):
        folder = season.out / "s2" / item["id"]
        scl = _read(folder / "SCL.tif")
        blue20 = _read(folder / "B02.tif")[::2, ::2] / 1e4
        cloudy = np.isin(scl, (8, 9, 10))
        assert item["properties"]["eo:cloud_cover"] == pytest.approx(cloudy.mean() * 100, abs=0.01)
        if (scl == 9).sum() > 100:
            assert np.median(blue20[scl == 9]) > 0.25
            seen_cloud = True
        if (scl == 4).sum() > 100:
            assert np.median(blue20[scl == 4]) < 0.05
            seen_clear = True
    assert seen_cloud
    assert seen_clear


def test_clear_truth_equals_the_observation_under_a_clear_sky(season: SimulationSummary) -> None:
    dates = pq.read_table(season.out / "truth" / "s2_dates.parquet").to_pylist()
    partly = [d for d in dates if d["clear_truth"] and 0.1 < d["cloud_share"] < 0.9]
    assert partly, "a 3-month season has partly cloudy dates"
    checked = 0
    for d in partly:
        folder = season.out / "s2" / d["id"]
        truth = season.out / "truth" / "s2_clear" / d["id"]
        with rasterio.open(truth / "SKY.tif") as src:
            sky = src.read().max(axis=0)
        # SKY is at 20 m: keep 10 m pixels a whole 20 m pixel away from any cloud edge
        near = sky.copy()
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1)):
            near = np.maximum(near, np.roll(sky, (dy, dx), axis=(0, 1)))
        free = np.repeat(np.repeat(near == 0, 2, 0), 2, 1)
        with rasterio.open(truth / "SKY.tif") as src:
            cloud = np.repeat(np.repeat(src.read(1), 2, 0), 2, 1)
        observed = _read(folder / "B04.tif").astype(np.int32)
        clear = _read(truth / "B04.tif").astype(np.int32)
        thick = cloud >= 50
        # under a clear sky only the haze (at most 0.006) separates them
        if free.sum() > 100:
            checked += 1
            assert np.abs(observed - clear)[free].max() <= 65
        if thick.any():
            assert np.median((observed - clear)[thick]) > 1500
    assert checked


def test_practices_show_in_ndvi_and_backscatter(season: SimulationSummary) -> None:
    units = _read(season.out / "truth" / "units.tif")
    unit_table = pq.read_table(season.out / "truth" / "units.parquet").to_pylist()
    s2 = pq.read_table(season.out / "truth" / "s2_dates.parquet").to_pylist()
    s1 = pq.read_table(season.out / "truth" / "s1_dates.parquet").to_pylist()
    practices = pq.read_table(season.out / "truth" / "practices.parquet").to_pylist()
    ndvi = {}
    for d in s2:
        red, nir = (_clear_sky(season, d["id"], b) for b in ("B04", "B08"))
        ndvi[d["datetime"].date()] = (nir - red) / (nir + red)
    vh = {d["datetime"].date(): _read(season.out / "s1" / d["id"] / "VH.tif") for d in s1}
    vv = {d["datetime"].date(): _read(season.out / "s1" / d["id"] / "VV.tif") for d in s1}

    def change(series: dict, practice: dict, days: int) -> float | None:
        part = [
            u["unit"]
            for u in unit_table
            if u["id_parcel"] == practice["id_parcel"] and u["cover"] == practice["cover"]
        ]
        mask = np.isin(units, part)
        before = [d for d in series if 0 < (practice["date"] - d).days <= days]
        after = [d for d in series if 0 < (d - practice["date"]).days <= days]
        if not before or not after or mask.sum() < 20:
            return None
        return float(series[min(after)][mask].mean() - series[max(before)][mask].mean())

    mowing_drops = [change(ndvi, p, 6) for p in practices if p["type"] == "mowing"]
    mowing_drops = [c for c in mowing_drops if c is not None]
    assert len(mowing_drops) >= 5
    assert np.mean(np.array(mowing_drops) < -0.05) >= 0.8
    # a dry cereal's harvest moves NDVI little (~0.05: straw replaces a senescent crop)
    harvest_drops = [change(ndvi, p, 6) for p in practices if p["type"] == "harvest"]
    harvest_drops = [c for c in harvest_drops if c is not None]
    assert len(harvest_drops) >= 3
    assert np.mean(np.array(harvest_drops) < 0) >= 0.8
    vh_changes = [change(vh, p, 7) for p in practices if p["type"] == "harvest"]
    vh_changes = [c for c in vh_changes if c is not None]
    assert len(vh_changes) >= 3
    assert np.mean(vh_changes) < -1.0  # biomass removed: volume scattering falls
    vv_changes = [change(vv, p, 7) for p in practices if p["type"] == "ploughing"]
    vv_changes = [c for c in vv_changes if c is not None]
    assert len(vv_changes) >= 3
    assert np.mean(vv_changes) > 1.0  # a rough furrowed surface backscatters more


def test_preview_is_a_picture(season: SimulationSummary) -> None:
    assert season.preview is not None
    assert season.preview.suffix == ".png"
    from matplotlib.image import imread

    image = imread(season.preview)
    assert image.shape[0] >= SIZE
    assert image.shape[2] in (3, 4)
    assert image[..., :3].std() > 0.05


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        simulate_season(tmp_path / name, 128, 8, 2025, seed, start=date(2025, 6, 1), max_dates=2)
        runs[name] = _digest(tmp_path / name)
    assert len(runs["a"]) > 20
    assert runs["a"] == runs["b"]
    assert runs["a"]["parcels.parquet"] != runs["c"]["parcels.parquet"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--parcels", "0"], "--parcels must be at least 1"),
        (["--tile-size", "5", "--parcels", "1"], "smaller than a parcel"),
        (["--tile-size", "128", "--parcels", "500"], "do not fit"),
        (["--crops", "PPH,XYZ"], "unknown crop code 'XYZ'"),
        (["--start", "2025-08-01", "--end", "2025-07-01"], "is after --end"),
        (["--start", "2024-05-01"], "outside season 2025"),
        (["--dates", "0"], "--dates must be at least 1"),
        (["--tile-size", "20000"], "larger than an MGRS tile"),
    ],
)
def test_bad_arguments_get_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    base = ["simulate", "--out", str(tmp_path / "out"), "--tile-size", "128", "--parcels", "10"]
    assert main([*base, *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_unwritable_output_gets_a_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        simulate_season(blocker, 128, 5, 2025, 1, max_dates=1)
    with pytest.raises(ConfigError, match="--out"):
        simulate_season(blocker / "below", 128, 5, 2025, 1, max_dates=1)


def test_refuses_to_mix_with_a_previous_run(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        simulate_season(tmp_path, 128, 5, 2025, 1, max_dates=1)


def test_command_line_writes_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = ["simulate", "--out", str(out), "--tile-size", "128", "--parcels", "6", "--dates", "1"]
    assert main([*args, "--no-s1", "--quiet", "--crops", "PPH=2,MIS"]) == 0
    assert "6 parcels" in capsys.readouterr().out
    assert len(list((out / "s2").iterdir())) == 1
    assert not (out / "s1").exists()
    codes = set(pq.read_table(out / "parcels.parquet").column("code_cultu").to_pylist())
    assert codes <= {"PPH", "MIS"}


def test_scanline_labels_equal_rasterio(tmp_path: Path) -> None:
    from rasterio.features import rasterize

    from monitor.simulate.covers import crop_shares
    from monitor.simulate.fields import layout_fields
    from monitor.simulate.grid import TileGrid
    from monitor.simulate.rasterize import rasterize_convex

    grid = TileGrid(300)
    layout = layout_fields(grid, 120, crop_shares(None), np.random.default_rng(5))
    units = np.arange(layout.n_units, dtype=np.int32)
    for resolution in (10, 20):
        ours = rasterize_convex(
            layout.unit_geometry[1:], units[1:], grid.shape(resolution), grid.transform(resolution)
        )
        reference = rasterize(
            zip(layout.unit_geometry[1:], units[1:], strict=True),
            out_shape=grid.shape(resolution),
            transform=grid.transform(resolution),
            dtype="int32",
        )
        assert (ours == reference).mean() > 0.9999
        assert len(np.unique(ours)) > 100


def test_convex_cuts_agree_with_shapely() -> None:
    from monitor.simulate.convex import Convex

    rng = np.random.default_rng(9)
    cells = Convex.box(0.0, 0.0, 1000.0, 600.0)
    cells = Convex(np.repeat(cells.x, 50, 0), np.repeat(cells.y, 50, 0), np.repeat(cells.count, 50))
    for _ in range(4):  # successive cuts: pieces grow extra vertices
        n = len(cells)
        px, py = rng.uniform(0, 1000, n), rng.uniform(0, 600, n)
        angle = rng.uniform(0, 2 * np.pi, n)
        nx, ny, offset = np.cos(angle), np.sin(angle), rng.uniform(0, 5, n)
        clipped = cells.clip(px, py, nx, ny, offset)
        before = cells.to_shapely()
        # the kept side as a big shapely half-plane square
        far = 1e5
        ox, oy = px + offset * nx, py + offset * ny
        squares = shapely.polygons(
            np.stack(
                [
                    np.stack([ox + far * ny, oy - far * nx], -1),
                    np.stack([ox + far * (ny + nx), oy + far * (ny - nx)], -1),
                    np.stack([ox + far * (nx - ny), oy + far * (ny + nx)], -1),
                    np.stack([ox - far * ny, oy + far * nx], -1),
                ],
                axis=1,
            )
        )
        expected = shapely.area(shapely.intersection(before, squares))
        assert np.allclose(clipped.area(), expected, rtol=1e-6, atol=1e-3)
        assert np.allclose(shapely.area(clipped.to_shapely()), expected, rtol=1e-6, atol=1e-3)
        keep = clipped.count >= 3
        cells = clipped.take(keep) if keep.sum() > 10 else cells


def test_scl_misses_some_thin_clouds_like_sen2cor(season: SimulationSummary) -> None:
    missed = cloudy = 0
    for row in pq.read_table(season.out / "truth" / "s2_dates.parquet").to_pylist():
        if not row["clear_truth"]:
            continue
        with rasterio.open(season.out / "truth" / "s2_clear" / row["id"] / "SKY.tif") as src:
            opacity = src.read(1)
        scl = _read(season.out / "s2" / row["id"] / "SCL.tif")
        under_cloud = opacity > 0
        cloudy += int(under_cloud.sum())
        missed += int((under_cloud & np.isin(scl, (4, 5))).sum())
    # residual clouds exist (thin edges classed as vegetation or soil) but stay a minority
    assert cloudy > 0
    assert 0.005 < missed / cloudy < 0.3


def test_residual_clouds_are_flagged_in_the_sky_truth(season: SimulationSummary) -> None:
    residual_dates = 0
    for row in pq.read_table(season.out / "truth" / "s2_dates.parquet").to_pylist():
        if not row["clear_truth"]:
            assert row["residual_cloud_share"] == 0
            continue
        with rasterio.open(season.out / "truth" / "s2_clear" / row["id"] / "SKY.tif") as src:
            assert src.count == 6
            assert not src.overviews(1)  # truth: a COG without overviews
            opacity, _, cirrus, haze, _, residual = src.read()
        scl = _read(season.out / "s2" / row["id"] / "SCL.tif")
        # flagged where the SCL calls clear (dark, vegetation, soil, water) a pixel that cloud,
        # cirrus or haze covers (SKY is rounded: ≥ 1 % opacity, ≥ 0.001 cirrus, ≥ 0.0025 haze)
        clear = np.isin(scl, (2, 4, 5, 6))
        assert not (residual.astype(bool) & ~clear).any()
        hidden = (opacity >= 1) | (cirrus >= 1) | (haze >= 3)
        assert residual[hidden & clear].all()
        assert row["residual_cloud_share"] == pytest.approx(residual.mean(), abs=1e-9)
        residual_dates += residual.any()
    assert residual_dates >= 2


@pytest.fixture(scope="module")
def year(tmp_path_factory: pytest.TempPathFactory) -> SimulationSummary:
    # ten months of S2 on a small window: snow in winter, now and then a saturated cloud core
    out = tmp_path_factory.mktemp("year")
    return simulate_season(
        out, 128, 10, 2025, 8, start=date(2025, 1, 1), end=date(2025, 10, 31), s1=False
    )


def test_snow_lies_in_winter_bright_in_the_visible_dark_in_the_swir(
    year: SimulationSummary,
) -> None:
    snowy = 0
    for row in pq.read_table(year.out / "truth" / "s2_dates.parquet").to_pylist():
        folder = year.out / "s2" / row["id"]
        scl = _read(folder / "SCL.tif")
        item = json.loads((folder / "item.json").read_text())
        assert item["properties"]["eo:snow_cover"] == pytest.approx(
            (scl == 11).mean() * 100, abs=0.01
        )
        if row["snow_share"] == 0:
            assert not (scl == 11).any()
            continue
        assert row["datetime"].month in (1, 2, 3, 11, 12)
        snow = scl == 11
        if snow.sum() < 50:
            continue
        snowy += 1
        green = _read(folder / "B03.tif")[::2, ::2][snow] / 1e4
        swir = _read(folder / "B11.tif")[snow] / 1e4
        ndsi = (green - swir) / (green + swir)
        assert np.median(ndsi) > 0.6  # Sen2Cor's snow test: NDSI > 0.4
        assert np.median(green) > 0.3
        with rasterio.open(year.out / "truth" / "s2_clear" / row["id"] / "SKY.tif") as src:
            assert (src.read(5)[snow] > 50).all()  # the true snow fraction
    assert snowy >= 1


def test_saturation_is_rare_and_where_the_blue_is_brightest(year: SimulationSummary) -> None:
    saturated = pixels = 0
    for row in pq.read_table(year.out / "truth" / "s2_dates.parquet").to_pylist():
        folder = year.out / "s2" / row["id"]
        scl = _read(folder / "SCL.tif")
        blue = _read(folder / "B02.tif")
        full = blue == 65535  # what L2A writes where the detector saturated
        at10 = np.repeat(np.repeat(scl == 1, 2, 0), 2, 1)
        assert (full == at10).all()
        assert row["saturated_share"] == pytest.approx((scl == 1).mean(), abs=1e-9)
        if (scl == 1).any():
            with rasterio.open(year.out / "truth" / "s2_clear" / row["id"] / "SKY.tif") as src:
                assert src.read(1)[scl == 1].min() >= 80  # in the thickest cloud cores
        saturated += int((scl == 1).sum())
        pixels += scl.size
    assert 0 < saturated / pixels < 0.005


def test_incidence_changes_backscatter_over_soil_more_than_under_a_canopy() -> None:
    from monitor.simulate.covers import INDEX
    from monitor.simulate.phenology import SurfaceState
    from monitor.simulate.sar import ORBITS, unit_backscatter

    covers = np.array([INDEX["MIS"], INDEX["FOR"]], dtype=np.int16)
    state = SurfaceState(
        green=np.array([0.0, 0.9]),
        residue=np.zeros(2),
        yellow=np.zeros(2),
        biomass=np.array([0.0, 12.0]),
        roughness=np.array([1.3, 1.3]),
    )
    moisture, offset = np.full(2, 0.25), np.zeros(2)
    near, far = (
        unit_backscatter(covers, state, moisture, offset, "VV", angle) for angle in (36.0, 41.0)
    )
    soil, canopy = near - far
    assert 0.8 < soil < 2.0  # bare soil: ~0.25 dB per degree
    assert abs(canopy) < soil / 2
    # far range is east on an ascending pass, west on a descending one
    ascending, descending = ORBITS[:2]
    assert ascending.incidence_deg(10980)[-1] > ascending.incidence_deg(10980)[0]
    assert descending.incidence_deg(10980)[-1] < descending.incidence_deg(10980)[0]
