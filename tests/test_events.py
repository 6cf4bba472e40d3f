"""Parcel events: deterministic ids, canonical JSON, the shipped JSON Schema."""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import struct
from datetime import UTC, datetime, timedelta, timezone
from importlib.resources import files
from typing import Any

import jsonschema
import polars as pl
import pytest

from monitor.errors import EventError
from monitor.events import (
    EVENT_TYPES,
    EventBatch,
    Evidence,
    ModelRef,
    ParcelEvent,
    event_id_for,
    event_ids,
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


# Parcel ids a country's registers may hold: accents, CJK, emoji, quotes, escapes, controls.
ODD_IDS = ["é-01", "地块/7", "🌾", 'say "hi"', "back\\slash", "tab\tnew\nline", "\x01\x1f\x7f", ""]


def _reference_id(parts: tuple[str, ...]) -> str:
    """The id scheme written out: SHA-256 of the fields joined by U+001F, 32 hex digits."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def test_event_ids_of_columns_equal_the_scheme_one_by_one() -> None:
    rng = random.Random(7)
    rows = []
    for i in range(300):
        type_ = EVENT_TYPES[i % len(EVENT_TYPES)]
        start = T0 + timedelta(days=rng.randrange(-400, 400), microseconds=rng.randrange(10**6))
        rows.append(
            {
                "parcel_id": rng.choice(ODD_IDS) + str(i),
                "type": type_,
                "window_start": start,
                "window_end": start + timedelta(days=rng.randrange(0, 30)),
                "product_id": rng.choice(["S2A_MSIL2A_é", "S1_地"]),
                "tile": rng.choice(["31UFS", "31TCJ"]),
            }
        )
    frame = pl.DataFrame(rows, schema_overrides={"window_start": pl.Datetime("us", "UTC")})
    got = event_ids(frame).to_list()
    per_product = [r["type"] in ("observation", "reconstruction") for r in rows]
    expected = [
        _reference_id(
            (
                r["parcel_id"],
                r["type"],
                rfc3339(r["window_start"]),
                rfc3339(r["window_end"]),
                r["product_id"] if p else "",
                r["tile"] if p else "",
            )
        )
        for r, p in zip(rows, per_product, strict=True)
    ]
    assert got == expected
    one_by_one = [
        event_id_for(
            r["parcel_id"],
            r["type"],
            r["window_start"],
            r["window_end"],
            product_id=r["product_id"] if p else None,
            tile=r["tile"] if p else None,
        )
        for r, p in zip(rows, per_product, strict=True)
    ]
    assert got == one_by_one
    # RFC 3339 text gives the same ids as the datetimes it spells
    text = frame.with_columns(
        pl.col("window_start", "window_end").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
    )
    assert event_ids(text).to_list() == got


def test_event_ids_refuse_unknown_types_and_missing_columns() -> None:
    frame = pl.DataFrame(
        {
            "parcel_id": ["P1"],
            "type": ["practice.sowing"],
            "window_start": ["a"],
            "window_end": ["b"],
        }
    )
    with pytest.raises(EventError, match=r"practice\.sowing"):
        event_ids(frame)
    with pytest.raises(EventError, match="product_id"):
        event_ids(frame.with_columns(type=pl.lit("observation")))
    with pytest.raises(EventError, match="window_end"):
        event_ids(frame.drop("window_end"))


def _random_float(rng: random.Random) -> float:
    """Floats of every magnitude, including the ones `repr` writes in exponent form."""
    kind = rng.randrange(4)
    if kind == 0:
        bits = rng.getrandbits(64)
        value = struct.unpack("<d", struct.pack("<Q", bits))[0]
        return value if math.isfinite(value) else 0.5
    if kind == 1:
        return rng.uniform(-1, 1) * 10 ** rng.randrange(-30, 30)
    if kind == 2:
        return float(rng.randrange(-(10**17), 10**17))
    return float(struct.unpack("<f", struct.pack("<f", rng.random()))[0])  # a float32 mean


def test_batch_json_is_byte_identical_to_event_to_json() -> None:
    rng = random.Random(11)
    events = [mowing()]
    for i in range(400):
        type_ = EVENT_TYPES[i % len(EVENT_TYPES)]
        window = None
        if type_ not in ("observation", "reconstruction"):
            window = (T0, T0 + timedelta(days=rng.randrange(1, 20)))
        names = rng.sample(["NDVI_mean", "B04_mean", "gap_days", "zé", "a b", "Z"], 3)
        stats = {n: rng.choice([None, float("nan"), _random_float(rng)]) for n in names}
        products = ["S2_é"] if window is None else [f"S2_{k}" for k in range(rng.randrange(1, 4))]
        events.append(
            make_event(
                type_,
                rng.choice(ODD_IDS) + str(i),
                rng.choice(["31UFS", "地"]),
                T0 + timedelta(seconds=i),
                CLOCK,
                rng.choice([0.0, 1.0, rng.random(), 1e-7]),
                ModelRef(rng.choice(["zonal", "practices ✓"]), "1.2.0"),
                products,
                stats,
                window=window,
            )
        )
    batch = EventBatch.from_events(events)
    assert batch.values() == [e.to_json() for e in events]
    assert [k for k, _ in batch.records()] == [e.parcel_id.encode() for e in events]
    assert list(batch) == events
    # kinds of events concatenate; a statistic one kind lacks stays absent from its events
    observed = observation_events(observations("S2_A"), detected_at=CLOCK)
    both = EventBatch.concat([observed, batch, EventBatch.empty()])
    assert both.values() == [e.to_json() for e in [*observed.events(), *events]]
    assert both.type_counts()["observation"] == 5 + sum(e.type == "observation" for e in events)


def test_batch_floats_read_as_python_repr() -> None:
    """Float32 means (exact ties between two shortest digit strings), powers of two (where
    only one of them reads back), integers and random doubles, as `json` writes them."""
    rng = random.Random(5)
    values = [_random_float(rng) for _ in range(20_000)]
    values += [
        float(struct.unpack("<f", struct.pack("<f", rng.random()))[0]) for _ in range(20_000)
    ]
    values += [2.0**e for e in range(-1074, 1024)] + [0.83728790283203125, -0.0, 1e16, 1e-5]
    one = EventBatch.from_events([mowing()]).frame
    frame = one.select(pl.all().gather([0] * len(values))).with_columns(
        pl.Series("stats.gap", values, dtype=pl.Float64)
    )
    texts = [re.search(rb'"gap":([^}]*)}', v) for v in EventBatch(frame).values()]
    assert [m.group(1).decode() if m else None for m in texts] == [repr(v) for v in values]


def test_observation_batch_json_matches_the_object_path() -> None:
    """Observation events as columns give the JSON the objects give (NaN and null statistics,
    band statistics only for the band's sensor, unicode parcel ids)."""
    s2 = observations("S2_A").with_columns(parcel_id=pl.Series(ODD_IDS[:5]))
    df = pl.concat([s2, observations("S1_é", "S1")], how="diagonal")
    batch = observation_events(df, detected_at="acquired")
    values = batch.values()
    assert values == [e.to_json() for e in batch.events()]
    assert json.loads(values[0])["evidence"]["stats"] == {
        "B04_mean": None,
        "NDVI_mean": None,
        "valid_fraction": 0.0,
    }
    assert "NDVI_mean" not in json.loads(values[7])["evidence"]["stats"]
    for value in values:
        validate_event(json.loads(value))


def test_batch_refuses_what_to_json_refuses() -> None:
    good = EventBatch.from_events([mowing()])
    with pytest.raises(EventError, match="not valid JSON"):
        EventBatch(good.frame.with_columns(pl.lit(float("inf")).alias("stats.gap"))).records()
    with pytest.raises(EventError, match="confidence"):
        EventBatch(good.frame.with_columns(confidence=pl.lit(float("nan"))))
    with pytest.raises(EventError, match=r"practice\.sowing"):
        EventBatch(good.frame.with_columns(type=pl.lit("practice.sowing")))
    with pytest.raises(EventError, match="unexpected"):
        EventBatch(good.frame.with_columns(extra=pl.lit(1)))
