"""The acquisition message: real STAC Items parse, every bad item is refused in one line."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sample_data import sample_dir

from monitor.errors import AssetError, InvalidAcquisition, MonitorError
from monitor.stac import Acquisition, HrefPolicy, parse_item, read_item

ITEMS = sorted(sample_dir().glob("*/s[12]/*/item.json"))
MOL_S2 = sample_dir() / "mol-2023" / "s2" / "S2_31UFS_20230405_L2A"
MOL_S1 = sample_dir() / "mol-2023" / "s1" / "S1_IW_GRD_31UFS_20230403"


def load(folder: Path) -> dict[str, Any]:
    item: dict[str, Any] = json.loads((folder / "item.json").read_text())
    return item


def refused(item: object, match: str, base: Path = MOL_S2) -> str:
    """Parse `item`, expecting InvalidAcquisition matching `match`; return the message."""
    with pytest.raises(InvalidAcquisition, match=match) as exc:
        parse_item(item, base=base)  # type: ignore[arg-type]
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_the_samples_are_bundled() -> None:
    # 12 + 10 Mol dates and 19 Antwerp dates (examples/README.md).
    assert len(ITEMS) == 41


@pytest.mark.parametrize("path", ITEMS, ids=lambda p: p.parent.name)
def test_every_sample_item_parses(path: Path) -> None:
    acq = read_item(path)
    raw = json.loads(path.read_text())
    assert acq.product_id == raw["id"] == path.parent.name
    assert acq.sensor == path.parent.name[:2]
    assert acq.tile == raw["properties"]["grid:code"].removeprefix("MGRS-")
    assert acq.tile in {"31UFS", "31UES"}
    assert acq.epsg == 32631
    assert acq.acquired.tzinfo is not None
    assert acq.acquired.utcoffset() == timedelta(0)
    # Product ids carry the acquisition date: the two must agree.
    assert acq.acquired.strftime("%Y%m%d") in acq.product_id
    assert acq.shape == tuple(raw["properties"]["proj:shape"])
    assert acq.transform == tuple(raw["properties"]["proj:transform"])
    for key, asset in acq.assets.items():
        assert Path(asset.href) == (path.parent / f"{key}.tif").resolve()
        assert Path(asset.href).is_file()
    if acq.sensor == "S2":
        assert "SCL" in acq.assets
        assert "AOT" not in acq.assets  # not a band the engine uses
        assert all(acq.assets[b].scale == pytest.approx(1e-4) for b in acq.assets if b != "SCL")
        assert acq.assets["SCL"].scale == 1.0
    else:
        assert set(acq.assets) == {"VV", "VH"}
        assert {a.unit for a in acq.assets.values()} == {"dB"}


def test_bounds_follow_the_grid() -> None:
    acq = read_item(MOL_S2 / "item.json")
    assert acq.bounds == (643260.0, 5676480.0 - 660.0, 643260.0 + 640.0, 5676480.0)


def test_bytes_text_and_mapping_give_the_same_acquisition() -> None:
    text = (MOL_S2 / "item.json").read_text()
    parsed = [parse_item(p, base=MOL_S2) for p in (text, text.encode(), json.loads(text))]
    assert parsed[0] == parsed[1] == parsed[2]


def test_offset_datetime_is_converted_to_utc() -> None:
    item = load(MOL_S2)
    item["properties"]["datetime"] = "2023-04-05T12:50:00+02:00"
    acq = parse_item(item, base=MOL_S2)
    assert acq.acquired == datetime(2023, 4, 5, 10, 50, tzinfo=UTC)


def test_tile_from_s2_mgrs_tile_alone() -> None:
    item = load(MOL_S2)
    del item["properties"]["grid:code"]
    assert parse_item(item, base=MOL_S2).tile == "31UFS"


def test_asset_level_grid_is_kept() -> None:
    item = load(MOL_S2)
    item["assets"]["B11"]["proj:shape"] = [33, 32]
    item["assets"]["B11"]["proj:transform"] = [20.0, 0.0, 643260.0, 0.0, -20.0, 5676480.0]
    acq = parse_item(item, base=MOL_S2)
    assert acq.assets["B11"].shape == (33, 32)
    assert acq.assets["B11"].transform == (20.0, 0.0, 643260.0, 0.0, -20.0, 5676480.0)
    assert acq.assets["B04"].shape is None


# --- bad messages -------------------------------------------------------------------------


def test_malformed_json() -> None:
    refused(b'{"type": "Feature", "id": ', "malformed JSON")


def test_not_utf8() -> None:
    refused(b"\xff\xfe{}", "not UTF-8")


def test_json_that_is_not_an_object() -> None:
    refused(b"[1, 2, 3]", "JSON object is expected")


def test_not_a_stac_item() -> None:
    refused({"type": "FeatureCollection", "features": []}, "not a STAC Item")


def test_plain_geojson_feature_is_not_a_stac_item() -> None:
    item = load(MOL_S2)
    del item["stac_version"]
    refused(item, r"'S2_31UFS_20230405_L2A': stac_version")


def test_missing_datetime() -> None:
    item = load(MOL_S2)
    del item["properties"]["datetime"]
    message = refused(item, "properties.datetime: missing")
    assert "S2_31UFS_20230405_L2A" in message


def test_unparsable_datetime() -> None:
    item = load(MOL_S2)
    item["properties"]["datetime"] = "5th of April"
    refused(item, "properties.datetime: unparsable")


def test_datetime_without_time_zone() -> None:
    item = load(MOL_S2)
    item["properties"]["datetime"] = "2023-04-05T10:50:00"
    refused(item, "no time zone")


def test_datetime_in_the_future() -> None:
    item = load(MOL_S2)
    item["properties"]["datetime"] = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    refused(item, "in the future")


def test_small_clock_skew_is_tolerated() -> None:
    item = load(MOL_S2)
    now = datetime(2023, 4, 5, 10, 49, tzinfo=UTC)  # a minute before the stamped time
    assert parse_item(item, base=MOL_S2, now=now).acquired > now
    with pytest.raises(InvalidAcquisition, match="future"):
        parse_item(item, base=MOL_S2, now=now, clock_skew=timedelta(0))


@pytest.mark.parametrize("field", ["proj:epsg", "proj:transform", "proj:shape"])
def test_missing_projection_field(field: str) -> None:
    item = load(MOL_S2)
    del item["properties"][field]
    refused(item, f"'S2_31UFS_20230405_L2A': properties.{field}")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("proj:transform", [10.0, 0.0, 643260.0, 0.0, -10.0]),
        ("proj:transform", [10.0, 1.0, 643260.0, 0.0, -10.0, 5676480.0]),
        ("proj:transform", [0.0, 0.0, 643260.0, 0.0, -10.0, 5676480.0]),
        ("proj:shape", [66, 0]),
        ("proj:shape", [66.5, 64]),
        # Far larger than any tile: refused before a label raster of that size is allocated.
        ("proj:shape", [1_000_000, 1_000_000]),
        ("proj:epsg", "32631"),
    ],
)
def test_unusable_projection_field(field: str, value: object) -> None:
    item = load(MOL_S2)
    item["properties"][field] = value
    refused(item, f"properties.{field}")


def test_no_usable_band_s2() -> None:
    item = load(MOL_S2)
    item["assets"] = {k: v for k, v in item["assets"].items() if k in {"SCL", "AOT"}}
    refused(item, "assets: no usable S2 band")


def test_no_usable_band_s1() -> None:
    item = load(MOL_S1)
    item["assets"] = {"HH": item["assets"]["VV"]}
    refused(item, "assets: no usable S1 band", base=MOL_S1)


def test_unknown_sensor() -> None:
    item = load(MOL_S2)
    item["properties"]["constellation"] = "landsat-8"
    refused(item, "unknown sensor 'landsat-8'")


def test_sensor_from_platform() -> None:
    item = load(MOL_S1)
    del item["properties"]["constellation"]
    item["properties"]["platform"] = "sentinel-1a"
    assert parse_item(item, base=MOL_S1).sensor == "S1"


def test_s1_band_without_declared_unit() -> None:
    item = load(MOL_S1)
    del item["assets"]["VH"]["raster:bands"][0]["unit"]
    refused(item, r"assets.VH.raster:bands\[0\].unit", base=MOL_S1)


def test_tile_ids_that_disagree() -> None:
    item = load(MOL_S2)
    item["properties"]["s2:mgrs_tile"] = "31UES"
    refused(item, "disagrees")


def test_missing_tile() -> None:
    item = load(MOL_S2)
    del item["properties"]["grid:code"], item["properties"]["s2:mgrs_tile"]
    refused(item, "no MGRS tile id")


def test_product_id_with_a_path_separator() -> None:
    item = load(MOL_S2)
    item["id"] = "../S2_evil"
    refused(item, "unusable product id")


# --- asset hrefs --------------------------------------------------------------------------


def with_href(href: str) -> dict[str, Any]:
    item = load(MOL_S2)
    item["assets"]["B04"]["href"] = href
    return item


def test_path_escaping_the_item_folder() -> None:
    with pytest.raises(AssetError, match="escapes the allowed roots") as exc:
        parse_item(with_href("../../etc/passwd"), base=MOL_S2)
    assert "B04" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_absolute_path_outside_the_roots() -> None:
    with pytest.raises(AssetError, match="escapes"):
        parse_item(with_href("/etc/passwd"), base=MOL_S2)


def test_file_url_outside_the_roots() -> None:
    with pytest.raises(AssetError, match="escapes"):
        parse_item(with_href("file:///etc/passwd"), base=MOL_S2)


def test_symlink_pointing_outside(tmp_path: Path) -> None:
    folder = tmp_path / "item"
    folder.mkdir()
    (folder / "B04.tif").symlink_to(MOL_S2 / "B04.tif")
    with pytest.raises(AssetError, match="escapes"):
        parse_item(with_href("./B04.tif"), base=folder)


def test_file_url_inside_the_folder() -> None:
    acq = parse_item(with_href((MOL_S2 / "B04.tif").as_uri()), base=MOL_S2)
    assert acq.assets["B04"].href == str(MOL_S2 / "B04.tif")


def test_configured_roots_allow_absolute_paths(tmp_path: Path) -> None:
    href = str(MOL_S2 / "B04.tif")
    item = with_href(href)
    for key in ("B01", "B08", "B11", "SCL"):
        item["assets"][key]["href"] = str(MOL_S2 / f"{key}.tif")
    # No item folder (a message from Kafka): absolute paths need a configured root.
    with pytest.raises(AssetError, match="no allowed root"):
        parse_item(item, base=None)
    policy = HrefPolicy(roots=(sample_dir(),))
    assert parse_item(item, base=None, policy=policy).assets["B04"].href == href
    with pytest.raises(AssetError, match="escapes"):
        parse_item(item, base=None, policy=HrefPolicy(roots=(tmp_path,)))


def test_relative_href_without_base() -> None:
    with pytest.raises(AssetError, match="no item folder"):
        parse_item(load(MOL_S2), base=None)


def test_remote_scheme_refused_by_default() -> None:
    with pytest.raises(AssetError, match="scheme 'https' not allowed"):
        parse_item(with_href("https://example.com/B04.tif"), base=MOL_S2)


def test_remote_scheme_allowed_when_configured() -> None:
    policy = HrefPolicy(schemes=frozenset({"file", "https"}))
    acq = parse_item(with_href("https://example.com/B04.tif"), base=MOL_S2, policy=policy)
    assert acq.assets["B04"].href == "https://example.com/B04.tif"
    assert not acq.assets["B04"].is_local


@pytest.mark.parametrize("href", ["ftp://example.com/B04.tif", "gs://bucket/B04.tif"])
def test_unexpected_scheme(href: str) -> None:
    with pytest.raises(AssetError, match="not allowed"):
        parse_item(with_href(href), base=MOL_S2)


def test_policy_refuses_unknown_schemes() -> None:
    with pytest.raises(AssetError, match="ftp"):
        HrefPolicy(schemes=frozenset({"ftp"}))


# --- property: anything in, Acquisition or InvalidAcquisition out ---------------------------

_MISSING = object()
_BASE_ITEM = load(MOL_S2)
_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=8,
)
_dates = st.datetimes(timezones=st.sampled_from([None, UTC])).map(lambda d: d.isoformat())
_transforms = st.lists(st.floats(allow_nan=True) | st.integers(), min_size=5, max_size=9)
_shapes = st.lists(st.integers(-2, 20_000), min_size=1, max_size=3)


def _maybe(valid: object, *alternatives: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the valid value (so that whole items sometimes parse), else anything."""
    others = st.one_of(st.just(_MISSING), _json, *alternatives)
    return st.integers(0, 9).flatmap(lambda n: st.just(valid) if n < 8 else others)


@st.composite
def stac_like(draw: st.DrawFn, hrefs: st.SearchStrategy[str]) -> dict[str, Any]:
    """A STAC Item whose every field is kept, dropped or replaced by arbitrary JSON."""
    base = _BASE_ITEM
    props = base["properties"]
    fields: dict[str, st.SearchStrategy[Any]] = {
        "datetime": _maybe(props["datetime"], _dates),
        "proj:epsg": _maybe(32631, st.integers()),
        "proj:transform": _maybe(props["proj:transform"], _transforms),
        "proj:shape": _maybe(props["proj:shape"], _shapes),
        "constellation": _maybe("sentinel-2", st.sampled_from(["sentinel-1", "Sentinel-2B"])),
        "grid:code": _maybe("MGRS-31UFS", st.text(max_size=10).map("MGRS-{}".format)),
        "s2:mgrs_tile": _maybe("31UFS"),
    }
    drawn = {key: draw(strategy) for key, strategy in fields.items()}
    properties = {key: value for key, value in drawn.items() if value is not _MISSING}
    assets: dict[str, Any] = {}
    for key in draw(
        st.lists(st.sampled_from(["B04", "B8A", "SCL", "VV", "VH", "AOT"]), min_size=1, max_size=4)
    ):
        band = {
            "data_type": draw(_maybe("uint16")),
            "scale": draw(_maybe(0.0001)),
            "nodata": draw(_maybe(0, st.sampled_from(["nan", "-inf", "none"]))),
            "unit": draw(_maybe("dB", st.sampled_from(["linear", "DB", "natural"]))),
        }
        band = {k: v for k, v in band.items() if v is not _MISSING}
        asset = {"href": draw(hrefs), "raster:bands": draw(_maybe([band]))}
        asset = draw(_maybe({k: v for k, v in asset.items() if v is not _MISSING}))
        if asset is not _MISSING:
            assets[key] = asset
    item = copy.deepcopy(base)
    item["properties"] = properties
    item["assets"] = assets
    for key in ("type", "stac_version", "id", "properties", "assets"):
        value = draw(_maybe(item[key]))
        if value is _MISSING:
            del item[key]
        else:
            item[key] = value
    return item


_local_hrefs = st.sampled_from(
    ["./B04.tif", "B08.tif", "sub/SCL.tif", (MOL_S2 / "B01.tif").as_uri()]
)


def outcome(item: dict[str, Any], refusals: tuple[type[Exception], ...]) -> Acquisition | Exception:
    """The parsed item, or the refusal (only `refusals` are caught: anything else fails)."""
    try:
        return parse_item(item, base=MOL_S2)
    except refusals as exc:
        return exc


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stac_like(_local_hrefs))
def test_any_stac_like_dict_parses_or_is_refused(item: dict[str, Any]) -> None:
    result = outcome(item, (InvalidAcquisition,))
    if isinstance(result, Acquisition):
        assert result.sensor in {"S2", "S1"}
        assert result.assets
    else:
        assert "\n" not in str(result)


@settings(max_examples=150, deadline=None)
@given(stac_like(st.text(max_size=40)))
def test_any_href_resolves_or_is_refused(item: dict[str, Any]) -> None:
    """Arbitrary hrefs may also raise AssetError (escape, scheme) — and nothing else."""
    result = outcome(item, (InvalidAcquisition, AssetError))
    if isinstance(result, Acquisition):
        for asset in result.assets.values():
            assert Path(asset.href).resolve().is_relative_to(MOL_S2.resolve())
    else:
        assert "\n" not in str(result)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_any_payload_parses_or_is_refused(payload: bytes | str) -> None:
    with pytest.raises(InvalidAcquisition):
        parse_item(payload, base=MOL_S2)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from monitor.parcels import load_parcels
    from monitor.pipeline import Engine, EngineConfig
    from monitor.store import ObservationStore

    parcels = load_parcels(sample_dir() / "mol-2023" / "segments.gpkg", id_column="segment_id")
    store = ObservationStore(tmp_path_factory.mktemp("store"))
    return Engine(EngineConfig(parcels, store, href_policy=HrefPolicy(roots=(MOL_S2,))))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stac_like(_local_hrefs | st.text(max_size=30)))
def test_the_whole_ingest_path_only_dead_letters_bad_messages(
    engine: Any, item: dict[str, Any]
) -> None:
    """Random items through what the worker runs per message (parse, read, zonal, store):
    each is processed or refused with a message fault (a dead letter), never another error,
    which the worker would retry forever."""
    from monitor.worker import is_message_fault

    payload = json.dumps(item, allow_nan=False) if _plain_json(item) else b"\xff"
    refusal: MonitorError | None = None
    try:
        result = engine.process(engine.parse(payload, base=MOL_S2))
    except MonitorError as exc:
        refusal = exc
    if refusal is None:
        assert result.observations.height > 0
    else:
        assert is_message_fault(refusal), f"{type(refusal).__name__}: {refusal}"
        assert "\n" not in str(refusal)


def _plain_json(item: dict[str, Any]) -> bool:
    try:
        json.dumps(item, allow_nan=False)
    except ValueError:
        return False
    return True
