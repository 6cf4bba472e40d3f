"""The practice detector's streaming evaluation: events emitted as a series grows, confirmed
`confirm_days` after their date and never emitted twice, as the engine's stage does."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl

from models.practices_training import (
    model_detector,
    rule_detector,
    streaming_events,
)
from monitor.infer import InferenceConfig, load_model

SEASON = 2025


def _series(parcel: str, start: date, ndvi: list[float], step: int = 5) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i, value in enumerate(ndvi):
        day = start + timedelta(days=step * i)
        rows.append(
            {
                "parcel_id": parcel,
                "acquired": datetime(day.year, day.month, day.day, 10, 30, tzinfo=UTC),
                "sensor": "S2",
                "product_id": f"S2_{day:%Y%m%d}",
                "tile": "31UFS",
                "valid_fraction": 1.0,
                "source": "observed",
                "NDVI_mean": value,
            }
        )
    return rows


# A mowing (drop then regrowth) in early May and a drop at the very end of the series.
GRASS = [0.8, 0.82, 0.55, 0.7, 0.8, 0.81, 0.82, 0.8, 0.81, 0.8, 0.5]
START = date(SEASON, 5, 1)


def test_rule_events_are_emitted_once_after_the_confirmation_delay() -> None:
    table = pl.DataFrame(_series("grass", START, GRASS))
    for confirm in (6, 12):
        events = streaming_events(table, rule_detector(), confirm)
        # the May drop is emitted once; the last drop has too little series after it
        assert events.select("parcel_id", "type", "date").rows() == [
            ("grass", "mowing", date(SEASON, 5, 8))
        ]
        delay = events.get_column("emitted_at").dt.date()[0] - date(SEASON, 5, 8)
        assert timedelta(days=confirm) <= delay < timedelta(days=confirm + 5)


def test_streaming_sees_only_the_rows_acquired_up_to_each_cut() -> None:
    table = pl.DataFrame(_series("grass", START, GRASS))
    seen: list[tuple[int, datetime]] = []

    def detect(cut: pl.DataFrame, emitted: set[str]) -> pl.DataFrame:
        seen.append((cut.height, cut.get_column("acquired").max()))  # type: ignore[arg-type]
        return rule_detector()(cut, emitted)

    streaming_events(table, detect, 12)
    acquired = table.get_column("acquired").to_list()
    assert seen == [(i + 1, moment) for i, moment in enumerate(acquired)]


def test_model_events_in_streaming_are_unique_and_confirmed() -> None:
    rows = _series("grass", date(SEASON, 3, 1), [0.7] * 12 + [0.85, 0.86, 0.4, 0.5, 0.65, 0.75])
    rows += _series("grass", date(SEASON, 6, 1), [0.8, 0.82, 0.83, 0.35, 0.5, 0.65, 0.75, 0.8])
    table = pl.DataFrame(rows)
    model = load_model("practices", InferenceConfig())
    events = streaming_events(table, model_detector(model), 12)
    assert events.height >= 1  # two clear cuts: at least one is found
    assert events.select("parcel_id", "type", "date").is_unique().all()
    delay = events.get_column("emitted_at").dt.date() - events.get_column("date")
    assert (delay >= timedelta(days=12)).all()
