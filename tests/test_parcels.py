"""Parcel sets: the real LPIS samples load; every bad parcel file is refused or repaired."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pyogrio.raw
import pytest
import shapely
from sample_data import sample_dir
from shapely.geometry import LineString, Point, Polygon, box

from monitor.errors import CrsMismatch, ParcelError
from monitor.parcels import ParcelSet, load_parcels
from monitor.stac import read_item

RPG = sample_dir() / "rpg-2022-sample" / "PARCELLES_GRAPHIQUES.gpkg"
VLG = sample_dir() / "vlg-2023-sample" / "landbouwgebruikspercelen_2023.gpkg"
MOL = sample_dir() / "mol-2023" / "segments.gpkg"
SLOVENIA = sample_dir() / "slovenia-2015-2017" / "land_use_parcels.gpkg"
MOL_ITEM = sample_dir() / "mol-2023" / "s2" / "S2_31UFS_20230415_L2A" / "item.json"
ANTWERP_ITEM = sample_dir() / "antwerp-2023q4" / "s2" / "S2_31UES_20231002_L2A" / "item.json"

SAMPLES = [
    (RPG, "id_parcel", "code_cultu", 2154),
    (VLG, "REF_ID", "GWSCOD_H", 31370),
    (MOL, "segment_id", None, 32631),
    (SLOVENIA, "index", "LULC_NAME", 32633),
]


def write_gpkg(
    path: Path,
    ids: list[Any],
    geometries: list[Any],
    *,
    id_column: str = "id_parcel",
    crs: str = "EPSG:32631",
    layer: str = "parcels",
    append: bool = False,
) -> Path:
    """A real GeoPackage written by GDAL, with any geometries (None = null)."""
    wkb = np.array([None if g is None else shapely.to_wkb(g) for g in geometries], dtype=object)
    pyogrio.raw.write(
        path,
        wkb,
        [np.array(ids, dtype=object)],
        [id_column],
        driver="GPKG",
        geometry_type="Unknown",
        crs=crs,
        layer=layer,
        append=append,
    )
    return path


def write_geoparquet(path: Path, parcels: ParcelSet, column: dict[str, Any] | None = None) -> Path:
    """GeoParquet 1.0 as the simulator writes it: WKB column named in `geo`, PROJJSON CRS."""
    table = pa.table(
        {
            "id_parcel": pa.array(list(parcels.ids), pa.string()),
            "code_cultu": pa.nulls(len(parcels), pa.string())
            if parcels.crops is None
            else pa.array(list(parcels.crops), pa.string()),
            "geometry": pa.array(list(shapely.to_wkb(parcels.geometries)), pa.binary()),
        }
    )
    spec = {
        "encoding": "WKB",
        "geometry_types": ["Polygon", "MultiPolygon"],
        "crs": parcels.crs.to_json_dict(),
    }
    spec.update(column or {})
    geo = {"version": "1.0.0", "primary_column": "geometry", "columns": {"geometry": spec}}
    pq.write_table(table.replace_schema_metadata({b"geo": json.dumps(geo)}), path)
    return path


SQUARES = [box(i * 20.0, 0.0, i * 20.0 + 15.0, 15.0) for i in range(4)]


# --- the real samples ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "id_column", "crop_column", "epsg"), SAMPLES, ids=lambda v: str(v)
)
def test_real_samples_load(path: Path, id_column: str, crop_column: str | None, epsg: int) -> None:
    parcels = load_parcels(path, id_column=id_column, crop_column=crop_column)
    info = pyogrio.read_info(path)
    assert len(parcels) == info["features"]
    assert parcels.epsg == epsg
    assert parcels.source == str(path)
    raw_ids = pyogrio.raw.read_arrow(path, columns=[id_column])[1].column(id_column)
    assert list(parcels.ids) == [str(v) for v in raw_ids.to_pylist()]
    assert all(isinstance(v, str) for v in parcels.ids)
    assert len(set(parcels.ids)) == len(parcels)
    assert shapely.is_valid(parcels.geometries).all()
    assert set(shapely.get_type_id(parcels.geometries)) <= {3, 6}
    assert (shapely.area(parcels.geometries) > 0).all()
    assert (parcels.repaired, parcels.dropped) == (0, 0)
    if crop_column is None:
        assert parcels.crops is None
    else:
        assert parcels.crops is not None
        assert len(parcels.crops) == len(parcels)
    assert len(parcels.version) == 32


def test_rpg_crop_codes_are_french_crop_codes() -> None:
    parcels = load_parcels(RPG, crop_column="code_cultu")
    assert parcels.crops is not None
    # RPG crop codes are three upper-case letters or digits (PPH, BTH, MIS, ...).
    assert all(len(c) == 3 and c.isalnum() and c == c.upper() for c in parcels.crops)
    assert "PPH" in set(parcels.crops)  # permanent grassland is everywhere in France


def test_version_is_stable_and_content_based(tmp_path: Path) -> None:
    first, again = load_parcels(RPG), load_parcels(RPG)
    assert first.version == again.version
    assert first.version != load_parcels(VLG, id_column="REF_ID").version
    moved = [*SQUARES[:3], shapely.affinity.translate(SQUARES[3], 0.5)]
    a = load_parcels(write_gpkg(tmp_path / "a.gpkg", ["1", "2", "3", "4"], SQUARES))
    b = load_parcels(write_gpkg(tmp_path / "b.gpkg", ["1", "2", "3", "4"], moved))
    c = load_parcels(write_gpkg(tmp_path / "c.gpkg", ["1", "2", "3", "5"], SQUARES))
    d = load_parcels(
        write_gpkg(tmp_path / "d.gpkg", ["1", "2", "3", "4"], SQUARES, crs="EPSG:32632")
    )
    assert len({a.version, b.version, c.version, d.version}) == 4


# --- GeoParquet ---------------------------------------------------------------------------


def test_geoparquet_round_trip(tmp_path: Path) -> None:
    gpkg = load_parcels(RPG, crop_column="code_cultu")
    parquet = load_parcels(
        write_geoparquet(tmp_path / "rpg.parquet", gpkg), crop_column="code_cultu"
    )
    assert parquet.epsg == 2154
    np.testing.assert_array_equal(parquet.ids, gpkg.ids)
    assert parquet.crops is not None
    assert gpkg.crops is not None
    np.testing.assert_array_equal(parquet.crops, gpkg.crops)
    assert shapely.equals_exact(parquet.geometries, gpkg.geometries, tolerance=0).all()
    # Same content, same version, whatever the file format.
    assert parquet.version == gpkg.version


def test_geoparquet_integer_ids_become_strings(tmp_path: Path) -> None:
    table = pa.table({"id_parcel": [10, 20], "geometry": shapely.to_wkb(SQUARES[:2]).tolist()})
    geo = {
        "version": "1.0.0",
        "primary_column": "geometry",
        "columns": {"geometry": {"encoding": "WKB", "geometry_types": []}},
    }
    pq.write_table(table.replace_schema_metadata({b"geo": json.dumps(geo)}), tmp_path / "p.parquet")
    parcels = load_parcels(tmp_path / "p.parquet")
    assert list(parcels.ids) == ["10", "20"]
    # No crs in the metadata means OGC:CRS84 (GeoParquet 1.0).
    assert parcels.crs.to_string() == "OGC:CRS84"


def test_geoparquet_with_unknown_crs(tmp_path: Path) -> None:
    path = write_geoparquet(
        tmp_path / "p.parquet", load_parcels(MOL, id_column="segment_id"), {"crs": None}
    )
    with pytest.raises(ParcelError, match="unknown CRS"):
        load_parcels(path)


def test_geoparquet_with_native_encoding(tmp_path: Path) -> None:
    path = write_geoparquet(tmp_path / "p.parquet", load_parcels(RPG), {"encoding": "polygon"})
    with pytest.raises(ParcelError, match="encoding 'polygon', WKB expected"):
        load_parcels(path)


def test_plain_parquet_is_not_geoparquet(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id_parcel": ["1"]}), tmp_path / "plain.parquet")
    with pytest.raises(ParcelError, match="no GeoParquet 'geo' metadata"):
        load_parcels(tmp_path / "plain.parquet")


# --- reprojection and clipping ------------------------------------------------------------


def test_to_crs_reprojects_and_caches() -> None:
    rpg = load_parcels(RPG)
    utm = rpg.to_crs(32631)
    assert utm.epsg == 32631
    assert rpg.to_crs(32631) is utm
    assert utm.version != rpg.version
    np.testing.assert_array_equal(utm.ids, rpg.ids)
    # Both projections are conformal with small scale errors: areas agree within a few %.
    ratio = shapely.area(utm.geometries) / shapely.area(rpg.geometries)
    assert np.all(np.abs(ratio - 1.0) < 0.03)
    back = utm.to_crs(2154)
    assert shapely.equals_exact(back.geometries, rpg.geometries, tolerance=1e-3).all()


def test_to_crs_of_the_same_crs_is_identity() -> None:
    mol = load_parcels(MOL, id_column="segment_id")
    assert mol.to_crs(32631) is mol


def test_to_crs_unknown_code() -> None:
    with pytest.raises(CrsMismatch, match="EPSG:1"):
        load_parcels(MOL, id_column="segment_id").to_crs(1)


def test_clip_keeps_parcels_on_the_tile() -> None:
    mol = load_parcels(MOL, id_column="segment_id")
    acq = read_item(MOL_ITEM)
    clipped, kept = mol.clip_to_bounds(acq.bounds, tile=acq.tile, epsg=acq.epsg)
    assert clipped is mol
    np.testing.assert_array_equal(kept, np.arange(len(mol)))
    left, bottom, right, top = acq.bounds
    half = (left, bottom, (left + right) / 2, top)
    clipped, kept = mol.clip_to_bounds(half)
    expected = np.flatnonzero(shapely.intersects(mol.geometries, box(*half)))
    np.testing.assert_array_equal(kept, expected)
    assert 0 < len(clipped) < len(mol)
    np.testing.assert_array_equal(clipped.ids, mol.ids[expected])
    assert clipped.version != mol.version


def test_clip_with_no_overlap_names_file_and_tile() -> None:
    # The Flemish sample lies ~500 m from the Antwerp chip: a tile with none of these parcels.
    vlg = load_parcels(VLG, id_column="REF_ID").to_crs(32631)
    acq = read_item(ANTWERP_ITEM)
    with pytest.raises(ParcelError, match=f"no parcel of {VLG} overlaps tile 31UES"):
        vlg.clip_to_bounds(acq.bounds, tile=acq.tile, epsg=acq.epsg)


def test_clip_in_another_crs() -> None:
    acq = read_item(MOL_ITEM)
    with pytest.raises(CrsMismatch, match="EPSG:2154, the grid in EPSG:32631"):
        load_parcels(RPG).clip_to_bounds(acq.bounds, tile=acq.tile, epsg=acq.epsg)


# --- bad parcel files ---------------------------------------------------------------------


def test_missing_id_column_lists_the_columns() -> None:
    with pytest.raises(ParcelError, match=r"no column 'id_parcel' .*REF_ID") as exc:
        load_parcels(VLG)
    assert str(VLG) in str(exc.value)


def test_missing_crop_column() -> None:
    with pytest.raises(ParcelError, match="no column 'crop'"):
        load_parcels(RPG, crop_column="crop")


def test_duplicate_ids_in_a_real_file() -> None:
    # RABA_ID is the Slovenian land-use class, not a parcel id.
    with pytest.raises(ParcelError, match="duplicate RABA_ID '"):
        load_parcels(SLOVENIA, id_column="RABA_ID")


def test_duplicate_ids(tmp_path: Path) -> None:
    path = write_gpkg(tmp_path / "dup.gpkg", ["a", "b", "a", "c"], SQUARES)
    with pytest.raises(ParcelError, match="duplicate id_parcel 'a'"):
        load_parcels(path)


def test_null_id(tmp_path: Path) -> None:
    path = write_gpkg(tmp_path / "null.gpkg", ["a", None, "c", "d"], SQUARES)
    with pytest.raises(ParcelError, match="null id_parcel at row 1"):
        load_parcels(path)


def test_null_geometry(tmp_path: Path) -> None:
    path = write_gpkg(tmp_path / "null.gpkg", ["a", "b", "c"], [SQUARES[0], None, SQUARES[2]])
    with pytest.raises(ParcelError, match="parcel 'b' has no geometry"):
        load_parcels(path)


def test_invalid_geometry_is_repaired(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bowtie = Polygon([(0, 0), (10, 10), (10, 0), (0, 10), (0, 0)])
    assert not bowtie.is_valid
    path = write_gpkg(tmp_path / "bowtie.gpkg", ["a", "bow", "c"], [SQUARES[0], bowtie, SQUARES[2]])
    with caplog.at_level(logging.WARNING, logger="monitor.parcels"):
        parcels = load_parcels(path)
    assert parcels.repaired == 1
    assert len(parcels) == 3
    repaired = parcels.geometries[1]
    assert repaired.is_valid
    assert repaired.geom_type in {"Polygon", "MultiPolygon"}
    assert repaired.area == pytest.approx(50.0)  # the two triangles of the bow tie
    assert "repaired 1 invalid parcel geometries (e.g. 'bow')" in caplog.text


def test_collapsed_geometry_is_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    flat = Polygon([(0, 0), (5, 5), (10, 10), (0, 0)])  # zero area: nothing polygonal left
    path = write_gpkg(tmp_path / "flat.gpkg", ["a", "flat", "c"], [SQUARES[0], flat, SQUARES[2]])
    with caplog.at_level(logging.WARNING, logger="monitor.parcels"):
        parcels = load_parcels(path)
    assert list(parcels.ids) == ["a", "c"]
    assert (parcels.repaired, parcels.dropped) == (1, 1)


def test_empty_geometry_is_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_gpkg(tmp_path / "empty.gpkg", ["a", "e", "c"], [SQUARES[0], Polygon(), SQUARES[2]])
    with caplog.at_level(logging.WARNING, logger="monitor.parcels"):
        parcels = load_parcels(path)
    assert list(parcels.ids) == ["a", "c"]
    assert parcels.dropped == 1
    assert "dropped 1 empty parcel geometries (e.g. 'e')" in caplog.text


def test_only_empty_geometries(tmp_path: Path) -> None:
    path = write_gpkg(tmp_path / "empty.gpkg", ["a"], [Polygon()])
    with pytest.raises(ParcelError, match="no non-empty parcel"):
        load_parcels(path)


@pytest.mark.parametrize("geometry", [LineString([(0, 0), (5, 5)]), Point(1, 1)])
def test_non_polygon_geometry(tmp_path: Path, geometry: Any) -> None:
    path = write_gpkg(tmp_path / "line.gpkg", ["a", "x"], [SQUARES[0], geometry])
    with pytest.raises(ParcelError, match=f"parcel 'x' is a {geometry.geom_type}"):
        load_parcels(path)


def test_several_layers(tmp_path: Path) -> None:
    path = write_gpkg(tmp_path / "two.gpkg", ["a"], SQUARES[:1], layer="one")
    write_gpkg(path, ["b", "c"], SQUARES[:2], layer="two", append=True)
    with pytest.raises(ParcelError, match="2 layers"):
        load_parcels(path)
    assert list(load_parcels(path, layer="two").ids) == ["b", "c"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ParcelError, match="not found"):
        load_parcels(tmp_path / "nope.gpkg")


def test_unsupported_format(tmp_path: Path) -> None:
    (tmp_path / "parcels.shp").write_text("")
    with pytest.raises(ParcelError, match=r"unsupported format '\.shp'"):
        load_parcels(tmp_path / "parcels.shp")


def test_corrupt_geopackage(tmp_path: Path) -> None:
    (tmp_path / "bad.gpkg").write_text("not a database")
    with pytest.raises(ParcelError, match=r"bad\.gpkg: unreadable"):
        load_parcels(tmp_path / "bad.gpkg")
