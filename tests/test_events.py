"""Parcel events: deterministic ids, canonical JSON, the shipped JSON Schema."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from importlib.resources import files
from typing import Any

import jsonschema
import polars as pl
import pytest

from monitor.errors import EventError
from monitor.events import (
    EVENT_TYPES,
    Evidence,
    ModelRef,
    ParcelEvent,
    event_id_for,
    event_schema,
    make_event,
    observation_events,
    rfc3339,
    validate_event,
)

T0 = datetime(2025, 6, 1, 10, 56, 19, 24000, tzinfo=UTC)
CLOCK = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
MOWER = ModelRef("practices", "1.2.0")


def observations(product_id: str, sensor: str = "S2", n: int = 5) -> pl.DataFrame:
    """A small observation table; parcel P0 has no clear pixel (NaN statistics)."""
    bands = {
        "S2": {
            "NDVI_mean": [float("nan"), 0.5, 0.6, 0.7, 0.8],
            "B04_mean": [None, 0.1, 0.1, 0.1, 0.1],
        },
        "S1": {"VV_mean": [-11.0, -12.0, -13.0, -14.0, -15.0], "VH_mean": [-18.0] * 5},
    }[sensor]
    return pl.DataFrame(
        {
            "parcel_id": [f"P{i}" for i in range(n)],
            "acquired": [T0] * n,
            "sensor": [sensor] * n,
            "product_id": [product_id] * n,
            "tile": ["31UFS"] * n,
            "pixel_count": [100] * n,
            "valid_count": [0, 25, 50, 75, 100][:n],
            "valid_fraction": [0.0, 0.25, 0.5, 0.75, 1.0][:n],
            "source": ["observed"] * n,
            **{k: v[:n] for k, v in bands.items()},
        }
    )


def mowing() -> ParcelEvent:
    return make_event(
        "practice.mowing",
        "P1",
        "31UFS",
        time=T0,
        detected_at=CLOCK,
        confidence=0.87,
        model=MOWER,
        product_ids=["S2_A", "S2_B"],
        stats={"NDVI_drop": -0.31, "gap": float("nan")},
        window=(T0 - timedelta(days=5), T0),
    )


def test_event_id_is_deterministic_and_tells_facts_apart() -> None:
    start, end = T0 - timedelta(days=5), T0
    base = event_id_for("P1", "practice.mowing", start, end)
    assert base == event_id_for("P1", "practice.mowing", start, end)
    assert len(base) == 32
    assert int(base, 16) >= 0
    paris = timezone(timedelta(hours=2))
    assert base == event_id_for("P1", "practice.mowing", start.astimezone(paris), end)
    others = {
        event_id_for("P2", "practice.mowing", start, end),
        event_id_for("P1", "practice.harvest", start, end),
        event_id_for("P1", "practice.mowing", start - timedelta(days=1), end),
        event_id_for("P1", "practice.mowing", start, end + timedelta(seconds=1)),
        event_id_for("P1", "practice.mowing", start, end, product_id="S2_A"),
        event_id_for("P1", "practice.mowing", start, end, product_id="S2_A", tile="31UFT"),
    }
    assert len(others) == 6
    assert base not in others


def test_event_id_refuses_unknown_types_and_naive_times() -> None:
    with pytest.raises(EventError, match=r"practice\.sowing"):
        event_id_for("P1", "practice.sowing", T0, T0)
    with pytest.raises(EventError, match="time zone"):
        event_id_for("P1", "observation", datetime(2025, 6, 1), T0)


def test_rfc3339_is_utc_with_microseconds() -> None:
    assert rfc3339(T0) == "2025-06-01T10:56:19.024000Z"
    assert rfc3339(datetime(2025, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == (
        "2025-01-01T00:00:00.000000Z"
    )
    # the polars path writes the same text, whole seconds included
    moments = [T0, datetime(2025, 1, 1, tzinfo=UTC), datetime(999, 1, 1, tzinfo=UTC)]
    df = pl.concat([observations("S2_A", n=1).with_columns(acquired=pl.lit(m)) for m in moments])
    events = observation_events(df.with_columns(parcel_id=pl.Series(["a", "b", "c"])), "acquired")
    assert [e.time for e in events] == [rfc3339(m) for m in moments]


def test_observation_events_one_per_row_with_sensor_evidence() -> None:
    df = pl.concat([observations("S2_A"), observations("S1_A", "S1")], how="diagonal")
    events = observation_events(df, detected_at=CLOCK)
    assert len(events) == 10
    assert len({e.event_id for e in events}) == 10
    s2, s1 = events[1], events[6]
    assert (s2.parcel_id, s2.type, s2.tile) == ("P1", "observation", "31UFS")
    assert s2.time == "2025-06-01T10:56:19.024000Z"
    assert s2.detected_at == "2025-06-01T12:00:00.000000Z"
    assert s2.confidence == 0.25
    assert s2.evidence.product_ids == ("S2_A",)
    assert s2.evidence.stats == {"valid_fraction": 0.25, "NDVI_mean": 0.5, "B04_mean": 0.1}
    assert s1.evidence.stats == {"valid_fraction": 0.25, "VV_mean": -12.0, "VH_mean": -18.0}
    cloudy = events[0].evidence.stats
    assert cloudy["NDVI_mean"] is None
    assert cloudy["B04_mean"] is None
    expected_id = event_id_for("P1", "observation", T0, T0, product_id="S2_A", tile="31UFS")
    assert s2.event_id == expected_id


def test_reconstructed_rows_give_reconstruction_events() -> None:
    df = pl.concat(
        [observations("S2_A"), observations("S2_A").with_columns(source=pl.lit("reconstructed"))]
    )
    events = observation_events(df, detected_at=CLOCK)
    assert [e.type for e in events] == ["observation"] * 5 + ["reconstruction"] * 5
    assert len({e.event_id for e in events}) == 10


def test_replay_gives_byte_identical_events_whatever_the_row_order() -> None:
    df = observations("S2_A")
    first = [e.to_json() for e in observation_events(df, detected_at="acquired")]
    again = [e.to_json() for e in observation_events(df, detected_at="acquired")]
    shuffled = observation_events(df.reverse(), detected_at="acquired")
    assert first == again
    assert sorted(first) == sorted(e.to_json() for e in shuffled)
    assert json.loads(first[0])["detected_at"] == "2025-06-01T10:56:19.024000Z"


def test_detected_at_must_be_a_zoned_datetime_or_acquired() -> None:
    with pytest.raises(EventError, match="now"):
        observation_events(observations("S2_A"), detected_at="now")  # type: ignore[arg-type]
    with pytest.raises(EventError, match="time zone"):
        observation_events(observations("S2_A"), detected_at=datetime(2025, 6, 1))


def test_generated_events_follow_the_schema_and_round_trip() -> None:
    df = pl.concat([observations("S2_A"), observations("S1_A", "S1")], how="diagonal")
    for event in [*observation_events(df, detected_at=CLOCK), mowing()]:
        validate_event(event.to_dict())
        again = ParcelEvent.from_json(event.to_json())
        assert again == event
        assert hash(again) == hash(event)
        assert again.to_json() == event.to_json()


def test_canonical_json_is_sorted_and_compact() -> None:
    raw = mowing().to_json()
    text = raw.decode("utf-8")
    assert " " not in text
    assert "\n" not in text
    assert list(json.loads(text)) == sorted(json.loads(text))
    assert raw == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    assert json.loads(text)["evidence"]["stats"] == {"NDVI_drop": -0.31, "gap": None}
    assert json.loads(text)["window"] == {
        "start": "2025-05-27T10:56:19.024000Z",
        "end": "2025-06-01T10:56:19.024000Z",
    }


def test_practice_event_id_does_not_depend_on_its_evidence() -> None:
    other = make_event(
        "practice.mowing",
        "P1",
        "31UFS",
        time=T0,
        detected_at=CLOCK + timedelta(days=3),
        confidence=0.9,
        model=MOWER,
        product_ids=["S2_A", "S2_B", "S2_C"],
        stats={},
        window=(T0 - timedelta(days=5), T0),
    )
    assert other.event_id == mowing().event_id


def test_per_product_events_take_one_product() -> None:
    with pytest.raises(EventError, match="one product id"):
        make_event("observation", "P1", "31UFS", T0, CLOCK, 1.0, MOWER, ["a", "b"], {})


def test_bad_event_objects_are_refused_by_the_dataclass() -> None:
    with pytest.raises(EventError, match=r"practice\.sowing"):
        make_event("practice.sowing", "P1", "31UFS", T0, CLOCK, 1.0, MOWER, ["a"], {})
    with pytest.raises(EventError, match="confidence"):
        make_event("heterogeneity", "P1", "31UFS", T0, CLOCK, float("nan"), MOWER, ["a"], {})
    nan_stats = ParcelEvent(
        "0" * 32, "heterogeneity", "P1", "31UFS", "2025-06-01T00:00:00Z",
        "2025-06-01T00:00:00Z", 0.5, MOWER, Evidence(("a",), {"x": float("nan")}),
    )  # fmt: skip
    with pytest.raises(EventError, match="not valid JSON"):
        nan_stats.to_json()


def _spoil(path: str, value: Any) -> dict[str, Any]:
    event = mowing().to_dict()
    *parents, leaf = path.split(".")
    target = event
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[leaf]
    else:
        target[leaf] = value
    return event


@pytest.mark.parametrize(
    ("event", "where"),
    [
        pytest.param(_spoil("event_id", KeyError), "(top level)", id="no-id"),
        pytest.param(_spoil("event_id", "XYZ"), "event_id", id="id-not-hex"),
        pytest.param(_spoil("type", "practice.sowing"), "type", id="unknown-type"),
        pytest.param(_spoil("confidence", 1.5), "confidence", id="confidence-over-1"),
        pytest.param(_spoil("confidence", "high"), "confidence", id="confidence-text"),
        pytest.param(_spoil("time", "2025-06-01 10:56:19"), "time", id="time-not-rfc3339"),
        pytest.param(_spoil("time", "2025-13-01T00:00:00Z"), "time", id="month-13"),
        pytest.param(
            _spoil("detected_at", "2025-06-01T10:56:19+02:00"), "detected_at", id="not-utc"
        ),
        pytest.param(_spoil("model.version", KeyError), "model", id="model-no-version"),
        pytest.param(_spoil("evidence.product_ids", []), "evidence/product_ids", id="no-products"),
        pytest.param(_spoil("evidence.stats", {"a": "x"}), "evidence/stats/a", id="stat-text"),
        pytest.param(_spoil("window.end", KeyError), "window", id="window-no-end"),
        pytest.param(_spoil("colour", "red"), "(top level)", id="extra-field"),
        pytest.param(_spoil("schema_version", "0.9"), "schema_version", id="old-version"),
    ],
)
def test_schema_rejects_bad_events(event: dict[str, Any], where: str) -> None:
    with pytest.raises(EventError, match=re.escape(f"invalid at {where}:")):
        validate_event(event)
    with pytest.raises(EventError):
        ParcelEvent.from_json(json.dumps(event))


def test_from_json_refuses_non_objects() -> None:
    with pytest.raises(EventError, match="not JSON"):
        ParcelEvent.from_json(b"{nope")
    with pytest.raises(EventError, match="list"):
        ParcelEvent.from_json(b"[]")


def test_schema_ships_as_package_data_and_is_valid_draft_2020_12() -> None:
    resource = files("monitor").joinpath("schemas", "parcel-event.schema.json")
    assert resource.is_file()
    schema = json.loads(resource.read_text("utf-8"))
    assert schema == event_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert set(schema["properties"]["type"]["enum"]) == set(EVENT_TYPES)
