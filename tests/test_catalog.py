"""A folder of STAC Items as acquisitions in order, and `parcel-monitor publish` to Kafka.

Runs on the bundled real samples (Mol 2023: 12 S2 + 10 S1 items of tile 31UFS; Antwerp
2023 Q4: 19 S2 items of tile 31UES).
"""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka_records import consume

from monitor.broker import create_topics
from monitor.catalog import absolute_item, find_items, iter_catalog, read_catalog, time_range
from monitor.cli import main
from monitor.errors import ConfigError, InvalidAcquisition
from monitor.publish import acquisition_message
from monitor.stac import HrefPolicy, parse_item, read_item
from tests.sample_data import sample_path

MOL = sample_path("mol-2023")


@pytest.fixture
def two_tiles(tmp_path: Path) -> Path:
    """A catalog folder holding the Mol (31UFS) and Antwerp (31UES) items."""
    root = tmp_path / "catalog"
    shutil.copytree(MOL / "s2", root / "mol" / "s2")
    shutil.copytree(MOL / "s1", root / "mol" / "s1")
    shutil.copytree(sample_path("antwerp-2023q4", "s2"), root / "antwerp")
    return root


def test_sample_items_come_in_acquisition_order() -> None:
    entries = iter_catalog(MOL)
    assert len(entries) == 22
    keys = [(acq.acquired, acq.product_id) for _, acq in entries]
    assert keys == sorted(keys)
    assert {acq.sensor for _, acq in entries} == {"S1", "S2"}
    assert {acq.tile for _, acq in entries} == {"31UFS"}
    assert len({acq.product_id for _, acq in entries}) == 22
    for path, acq in entries:
        assert read_item(path).product_id == acq.product_id


def test_time_range_is_inclusive_of_both_days() -> None:
    when = time_range("2023-04-10", "2023-04-15")
    entries = iter_catalog(MOL, when.start, when.end)
    ids = [acq.product_id for _, acq in entries]
    assert ids[0] == "S2_31UFS_20230410_L2A"
    assert "S1_IW_GRD_31UFS_20230415" in ids
    assert "S2_31UFS_20230415_L2A" in ids
    assert "S1_IW_GRD_31UFS_20230408" not in ids
    everything = iter_catalog(MOL)
    inside = [
        acq.product_id
        for _, acq in everything
        if datetime(2023, 4, 10, tzinfo=UTC) <= acq.acquired < datetime(2023, 4, 16, tzinfo=UTC)
    ]
    assert ids == inside


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("April 10", None, "--from 'April 10': not a date"),
        (None, "2023-13-01", "--to '2023-13-01': not a date"),
        ("2023-04-20", "2023-04-10", "is not before --to"),
    ],
)
def test_bad_time_ranges_are_config_errors(start: str, end: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        time_range(start, end)


def test_a_time_with_a_zone_is_an_exact_bound() -> None:
    when = time_range("2023-04-05T13:00:00+02:00", "2023-04-05T17:30:00Z")
    ids = [acq.product_id for _, acq in iter_catalog(MOL, when.start, when.end)]
    assert ids == ["S1_IW_GRD_31UFS_20230405"]  # 11:00 UTC: after that day's S2 (10:50)


def test_catalog_json_links_are_followed(tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    shutil.copytree(MOL, root, ignore=shutil.ignore_patterns("*.gpkg"))
    (root / "s1" / "catalog.json").write_text(
        json.dumps(
            {
                "type": "Catalog",
                "id": "s1",
                "links": [{"rel": "item", "href": "./S1_IW_GRD_31UFS_20230403/item.json"}],
            }
        )
    )
    (root / "catalog.json").write_text(
        json.dumps(
            {
                "type": "Catalog",
                "id": "mol",
                "links": [
                    {"rel": "root", "href": "./catalog.json"},
                    {"rel": "child", "href": "./s1/catalog.json"},
                    {"rel": "item", "href": "s2/S2_31UFS_20230415_L2A/item.json"},
                ],
            }
        )
    )
    found = find_items(root)
    assert [p.parent.name for p in found] == ["S1_IW_GRD_31UFS_20230403", "S2_31UFS_20230415_L2A"]


def test_catalog_link_leaving_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "catalog.json").write_text(
        json.dumps({"type": "Catalog", "links": [{"rel": "item", "href": "../elsewhere.json"}]})
    )
    with pytest.raises(InvalidAcquisition, match="leaves the catalog folder"):
        find_items(tmp_path)


def test_bad_items_are_rejected_with_their_reason(tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    shutil.copytree(MOL, root, ignore=shutil.ignore_patterns("*.gpkg"))
    (root / "s2" / "S2_31UFS_20230410_L2A" / "item.json").write_text('{"type": "Feature", ')
    (root / "s1" / "S1_IW_GRD_31UFS_20230412" / "VH.tif").unlink()
    twin = root / "s2" / "copy-of-0415"
    shutil.copytree(root / "s2" / "S2_31UFS_20230415_L2A", twin)

    catalog = read_catalog(root)
    assert len(catalog.entries) == 20  # 22 + the copy, less 3
    reasons = {item.path.parent.name: item.reason for item in catalog.rejected}
    assert set(reasons) == {"S2_31UFS_20230410_L2A", "S1_IW_GRD_31UFS_20230412", "copy-of-0415"}
    assert "malformed JSON" in reasons["S2_31UFS_20230410_L2A"]
    assert "asset VH" in reasons["S1_IW_GRD_31UFS_20230412"]
    assert "not found" in reasons["S1_IW_GRD_31UFS_20230412"]
    assert "product id also in" in reasons["copy-of-0415"]
    assert all("\n" not in reason for reason in reasons.values())

    with pytest.raises(InvalidAcquisition, match=r"and 2 more bad items") as caught:
        iter_catalog(root)
    assert "\n" not in str(caught.value)


def test_absolute_hrefs_parse_without_a_folder() -> None:
    for path, acq in iter_catalog(MOL):
        item = absolute_item(acq, path.parent)
        hrefs = [asset["href"] for asset in item["assets"].values()]
        assert all(Path(href).is_absolute() and Path(href).is_file() for href in hrefs)
        key, value = acquisition_message(path, acq)
        assert key == b"31UFS"
        parsed = parse_item(value, policy=HrefPolicy(roots=(MOL,)))
        assert parsed.product_id == acq.product_id
        assert dict(parsed.assets) == dict(acq.assets)
        # The message left the item's own data untouched.
        assert item["properties"] == acq.item["properties"]
        assert acq.item["assets"][next(iter(acq.assets))]["href"].startswith("./")


def test_publish_fails_fast_on_a_bad_item(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "catalog"
    shutil.copytree(MOL / "s2", root)
    (root / "S2_31UFS_20230420_L2A" / "item.json").write_text("[]")
    # Nothing listens on port 9: the catalog is refused before any connection is tried.
    code = main(["publish", str(root), "--bootstrap", "127.0.0.1:9"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "S2_31UFS_20230420_L2A" in err
    assert "a JSON object is expected" in err


@pytest.mark.kafka
def test_publish_sends_items_keyed_by_tile_in_order(
    kafka_bootstrap: str, two_tiles: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = f"acquisitions-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, {topic: 6})
    code = main(["publish", str(two_tiles), "--bootstrap", kafka_bootstrap, "--topic", topic])
    assert code == 0
    out = capsys.readouterr().out
    assert "31UES: 19 acquisitions" in out
    assert "31UFS: 22 acquisitions" in out

    records = consume(kafka_bootstrap, topic, 41)
    assert len(records) == 41
    policy = HrefPolicy(roots=(two_tiles,))
    by_partition: dict[int, list[tuple[datetime, str]]] = {}
    tiles_of_partition: dict[int, set[str]] = {}
    for partition, key, value in records:
        acq = parse_item(value, policy=policy)
        assert key.decode() == acq.tile
        assert all(Path(asset.href).is_absolute() for asset in acq.assets.values())
        by_partition.setdefault(partition, []).append((acq.acquired, acq.product_id))
        tiles_of_partition.setdefault(partition, set()).add(acq.tile)
    for keys in by_partition.values():
        assert keys == sorted(keys)
    # Every tile lives on one partition.
    partitions_of_tile: dict[str, set[int]] = {}
    for partition, tiles in tiles_of_partition.items():
        for tile in tiles:
            partitions_of_tile.setdefault(tile, set()).add(partition)
    assert all(len(parts) == 1 for parts in partitions_of_tile.values())
    assert set(partitions_of_tile) == {"31UFS", "31UES"}


@pytest.mark.kafka
def test_publish_with_a_date_range(kafka_bootstrap: str) -> None:
    topic = f"acquisitions-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, {topic: 2})
    args = ["publish", str(MOL), "--bootstrap", kafka_bootstrap, "--topic", topic]
    assert main([*args, "--from", "2023-04-20", "--to", "2023-04-25"]) == 0
    records = consume(kafka_bootstrap, topic, 5)
    ids = [json.loads(value)["id"] for _, _, value in records]
    assert ids == [
        "S2_31UFS_20230420_L2A",  # 10:50
        "S1_IW_GRD_31UFS_20230420",  # 17:30
        "S2_31UFS_20230422_L2A",
        "S1_IW_GRD_31UFS_20230424",
        "S2_31UFS_20230425_L2A",
    ]
