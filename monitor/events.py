"""Parcel events: the engine's output contract, one JSON document per parcel and fact.

The JSON Schema ships with the package (`monitor/schemas/parcel-event.schema.json`, read it with
`event_schema()`). Events are deterministic so that replay and reprocessing give the same bytes:
the id hashes what identifies the fact, `detected_at` is passed in by the caller (the wall clock
live, the acquisition time or a fixed clock in replay) and `to_json` is canonical (sorted keys,
compact separators, UTF-8).
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from typing import Any, Final, Literal

import jsonschema
import polars as pl

from monitor import __version__
from monitor.errors import EventError
from monitor.observations import BAND_SENSOR, parse_band_stat, validate_observations

SCHEMA_VERSION: Final = "1.0"
EVENT_TYPES: Final = (
    "observation",
    "reconstruction",
    "heterogeneity",
    "practice.mowing",
    "practice.ploughing",
    "practice.harvest",
)
# Per-acquisition facts: two products over the same parcel at the same time (overlapping tiles)
# are two facts, so their ids also hash the product id and the tile.
PER_PRODUCT_TYPES: Final = ("observation", "reconstruction")
EVENT_TYPE_OF_SOURCE: Final = {"observed": "observation", "reconstructed": "reconstruction"}
# Statistics copied into observation evidence when the frame has them (band ones only for rows
# of the band's sensor).
OBSERVATION_STATS: Final = (
    "valid_fraction",
    "NDVI_mean",
    "NDVI_std",
    "B02_mean",
    "B03_mean",
    "B04_mean",
    "B08_mean",
    "B11_mean",
    "VV_mean",
    "VH_mean",
)
# RFC 3339 in UTC with microseconds, the same text as `rfc3339` writes from Python.
_PL_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S%.6fZ"
_ID_HEX_DIGITS: Final = 32
# One shared encoder: `json.dumps` with options builds a new encoder on every call.
_CANONICAL: Final = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
_SEP: Final = "\x1f"  # ASCII unit separator: absent from real ids, so fields never run together


@dataclass(frozen=True, slots=True)
class ModelRef:
    """The model (or engine stage) that derived an event."""

    name: str
    version: str


ZONAL_MODEL: Final = ModelRef("parcel-monitor.zonal-statistics", __version__)


@dataclass(frozen=True, slots=True)
class Evidence:
    """The acquisitions and key statistics behind an event (None where a statistic is NaN)."""

    product_ids: tuple[str, ...]
    stats: Mapping[str, float | None]


@dataclass(frozen=True, slots=True)
class ParcelEvent:
    """One fact about one parcel. Times are canonical RFC 3339 UTC strings (see `rfc3339`)."""

    event_id: str
    type: str
    parcel_id: str
    tile: str
    time: str
    detected_at: str
    confidence: float
    model: ModelRef
    evidence: Evidence
    window: tuple[str, str] | None = None
    schema_version: str = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise EventError(f"event type {self.type!r} is not one of {EVENT_TYPES}")
        if not 0.0 <= self.confidence <= 1.0:  # also rejects NaN
            raise EventError(f"event {self.event_id}: confidence {self.confidence} not in [0, 1]")

    def __hash__(self) -> int:  # the stats mapping is not hashable; equal events share an id
        return hash(self.event_id)

    def to_dict(self) -> dict[str, Any]:
        """The event as the JSON object of the schema."""
        out: dict[str, Any] = {
            "schema_version": self.schema_version,
            "event_id": self.event_id,
            "type": self.type,
            "parcel_id": self.parcel_id,
            "tile": self.tile,
            "time": self.time,
            "detected_at": self.detected_at,
            "confidence": self.confidence,
            "model": {"name": self.model.name, "version": self.model.version},
            "evidence": {
                "product_ids": list(self.evidence.product_ids),
                "stats": dict(self.evidence.stats),
            },
        }
        if self.window is not None:
            out["window"] = {"start": self.window[0], "end": self.window[1]}
        return out

    def to_json(self) -> bytes:
        """Canonical JSON: sorted keys, no whitespace, UTF-8; equal events give equal bytes."""
        try:
            text = _CANONICAL.encode(self.to_dict())
        except ValueError as exc:  # NaN or infinity in the stats
            raise EventError(f"event {self.event_id} is not valid JSON: {exc}") from exc
        return text.encode("utf-8")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParcelEvent:
        """An event from its JSON object, checked against the schema."""
        validate_event(data)
        window = data.get("window")
        evidence = data["evidence"]
        return cls(
            event_id=data["event_id"],
            type=data["type"],
            parcel_id=data["parcel_id"],
            tile=data["tile"],
            time=data["time"],
            detected_at=data["detected_at"],
            confidence=float(data["confidence"]),
            model=ModelRef(data["model"]["name"], data["model"]["version"]),
            evidence=Evidence(tuple(evidence["product_ids"]), dict(evidence["stats"])),
            window=None if window is None else (window["start"], window["end"]),
            schema_version=data["schema_version"],
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> ParcelEvent:
        """An event from its JSON text, checked against the schema."""
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            raise EventError(f"parcel event is not JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise EventError(f"parcel event is a JSON {type(parsed).__name__}, not an object")
        return cls.from_dict(parsed)


def rfc3339(moment: datetime) -> str:
    """Canonical event time text: UTC, microseconds, `Z` suffix. Naive datetimes are refused."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise EventError(f"datetime {moment.isoformat()} has no time zone; events need UTC times")
    # isoformat, unlike strftime("%Y"), always pads the year to four digits.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _event_id(
    parcel_id: str, type: str, start: str, end: str, product_id: str | None, tile: str | None
) -> str:
    key = _SEP.join((parcel_id, type, start, end, product_id or "", tile or ""))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:_ID_HEX_DIGITS]


def event_id_for(
    parcel_id: str,
    type: str,
    window_start: datetime,
    window_end: datetime,
    *,
    product_id: str | None = None,
    tile: str | None = None,
) -> str:
    """The deterministic id of a fact: SHA-256 (32 hex digits) of parcel, type and window.

    Per-acquisition facts (observation, reconstruction) also pass their product id and tile (one
    Sentinel-1 product observes a parcel in the overlap of two tiles once per tile grid). Other
    facts leave them out, so redetecting a practice in the same window gives the same id
    whatever the evidence.
    """
    if type not in EVENT_TYPES:
        raise EventError(f"event type {type!r} is not one of {EVENT_TYPES}")
    start, end = rfc3339(window_start), rfc3339(window_end)
    return _event_id(parcel_id, type, start, end, product_id, tile)


def _clean_stats(stats: Mapping[str, float | None]) -> dict[str, float | None]:
    return {k: None if v is None or math.isnan(v) else float(v) for k, v in stats.items()}


def make_event(
    type: str,
    parcel_id: str,
    tile: str,
    time: datetime,
    detected_at: datetime,
    confidence: float,
    model: ModelRef,
    product_ids: Sequence[str],
    stats: Mapping[str, float | None],
    window: tuple[datetime, datetime] | None = None,
) -> ParcelEvent:
    """Build an event and its id; the window defaults to the instant `time`.

    Per-product types take exactly one product id, which enters the event id with the tile.
    """
    if type in PER_PRODUCT_TYPES and len(product_ids) != 1:
        raise EventError(f"a {type} event takes one product id, got {len(product_ids)}")
    start, end = window if window is not None else (time, time)
    per_product = type in PER_PRODUCT_TYPES
    return ParcelEvent(
        event_id=event_id_for(
            parcel_id,
            type,
            start,
            end,
            product_id=product_ids[0] if per_product else None,
            tile=tile if per_product else None,
        ),
        type=type,
        parcel_id=parcel_id,
        tile=tile,
        time=rfc3339(time),
        detected_at=rfc3339(detected_at),
        confidence=float(confidence),
        model=model,
        evidence=Evidence(tuple(product_ids), _clean_stats(stats)),
        window=None if window is None else (rfc3339(start), rfc3339(end)),
    )


def _evidence_stats(df: pl.DataFrame, names: Sequence[str]) -> list[dict[str, float | None]]:
    """Per-row evidence dicts, band statistics only for rows of the band's sensor."""
    present = [c for c in names if c in df.columns]
    out: list[dict[str, float | None]] = [{} for _ in range(df.height)]
    indexed = df.with_row_index("_row")
    for sensor in ("S2", "S1"):
        columns = [c for c in present if _sensor_of(c) in (None, sensor)]
        rows = indexed.filter(pl.col("sensor") == sensor)
        if not columns or rows.is_empty():
            continue
        values = rows.select(pl.col(columns).cast(pl.Float64).fill_nan(None)).to_dicts()
        for i, stats in zip(rows.get_column("_row").to_list(), values, strict=True):
            out[i] = stats
    return out


def _sensor_of(column: str) -> str | None:
    parsed = parse_band_stat(column)
    return None if parsed is None else BAND_SENSOR[parsed[0]]


def observation_events(
    df: pl.DataFrame,
    detected_at: datetime | Literal["acquired"],
    *,
    model: ModelRef = ZONAL_MODEL,
    stats: Sequence[str] = OBSERVATION_STATS,
) -> list[ParcelEvent]:
    """One event per row of a parcel observation table, in row order.

    Observed rows give `observation` events, reconstructed rows `reconstruction` events;
    confidence is the row's `valid_fraction`. `detected_at="acquired"` stamps each event with its
    acquisition time (replay); otherwise pass the clock's time.
    """
    if isinstance(detected_at, str) and detected_at != "acquired":
        raise EventError(f"detected_at must be a datetime or 'acquired', not {detected_at!r}")
    df = validate_observations(df)
    times = df.get_column("acquired").dt.strftime(_PL_TIME_FORMAT).to_list()
    detected = times if isinstance(detected_at, str) else [rfc3339(detected_at)] * df.height
    types = df.get_column("source").replace_strict(EVENT_TYPE_OF_SOURCE).to_list()
    columns = df.select("parcel_id", "tile", "product_id", "valid_fraction").get_columns()
    parcels, tiles, products, fractions = (c.to_list() for c in columns)
    evidence_stats = _evidence_stats(df, stats)
    rows = zip(
        parcels, types, times, products, tiles, detected, fractions, evidence_stats, strict=True
    )
    with _gc_paused():
        # Positional arguments in ParcelEvent field order: this loop is the hot part.
        return [
            ParcelEvent(
                _event_id(parcel, type_, time, time, product, tile),
                type_,
                parcel,
                tile,
                time,
                detected_time,
                fraction,
                model,
                Evidence((product,), row_stats),
            )
            for parcel, type_, time, product, tile, detected_time, fraction, row_stats in rows
        ]


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building many small acyclic objects.

    Each generation-0 collection would rescan the young events for nothing (none form cycles);
    pausing it saves about a quarter of the time of a 200 000-event batch.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _is_rfc3339(value: object) -> bool:
    if not isinstance(value, str):
        return True  # the schema's "type" reports non-strings
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


@cache
def event_schema() -> dict[str, Any]:
    """The parcel event JSON Schema shipped with the package."""
    text = files("monitor").joinpath("schemas", "parcel-event.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> jsonschema.Draft202012Validator:
    checker = jsonschema.FormatChecker(formats=())
    checker.checks("date-time")(_is_rfc3339)
    return jsonschema.Draft202012Validator(event_schema(), format_checker=checker)


def validate_event(event: Mapping[str, Any]) -> None:
    """Check an event object against the schema; raise `EventError` with the first problem."""
    error = jsonschema.exceptions.best_match(_validator().iter_errors(event))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        reason = error.message.splitlines()[0][:200]
        event_id = event.get("event_id", "?") if isinstance(event, Mapping) else "?"
        raise EventError(f"parcel event {event_id} invalid at {where}: {reason}")
