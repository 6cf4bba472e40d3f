"""Practice events from decoded peaks (`monitor.practices._event_frame`, one Rust pass) against
a straightforward Python reference: dates, id windows, `event_id_for` ids, suppression of
emitted events and the output order, on random peaks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from monitor.events import ModelRef, event_id_for
from monitor.practices import (
    BIN_DAYS,
    EVENT_COLUMNS,
    EVENT_TYPES,
    GRID_START_DOY,
    MOVED_WINDOWS,
    N_BINS,
    WINDOW_DAYS,
    SeriesTensor,
    _event_frame,
)

MODEL = ModelRef("practices", "test")


def _random_peaks(seed: int) -> tuple[SeriesTensor, np.ndarray, pl.Series, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    parcel_ids = pl.Series(sorted({f"p-{i:03d}é" for i in rng.integers(0, 300, 120)}))
    # one series per parcel-year, as series_tensor makes them
    parcels, years = rng.integers(0, len(parcel_ids), 150), rng.integers(2019, 2027, 150)
    pairs = sorted({(int(p), int(y)) for p, y in zip(parcels, years, strict=True)})
    series_parcel = np.array([p for p, _ in pairs], dtype=np.uint32)
    n_series = len(pairs)
    keys = pl.DataFrame(
        {
            "parcel_id": parcel_ids.gather(series_parcel),
            "year": pl.Series([y for _, y in pairs], dtype=pl.Int32),
            "tile": [("31UFS", "31TCJ", None)[i] for i in rng.integers(0, 3, n_series)],
        }
    )
    n = 400
    # fractional bins as decode_peaks gives them (peaks of a series and practice >= 2 bins
    # apart), half of them on exact halves (rounding ties)
    offsets = np.where(rng.random(n) < 0.5, rng.choice([-0.5, 0.5, 0.0], n), rng.random(n) - 0.5)
    peaks = (
        pl.DataFrame(
            {
                "series": rng.integers(0, n_series, n).astype(np.int64),
                "practice": rng.integers(0, len(EVENT_TYPES), n).astype(np.int64),
                "bin": 2 * rng.integers(0, N_BINS // 2, n),
                "offset": offsets,
                "confidence": rng.random(n),
            }
        )
        .unique(["series", "practice", "bin"], keep="first", maintain_order=True)
        .select("series", "practice", pl.col("bin") + pl.col("offset"), "confidence")
    )
    tensor = SeriesTensor(keys, np.zeros((n_series, 1, 1), dtype=np.float32))
    return tensor, series_parcel, parcel_ids, peaks


def _window_id(parcel: str, kind: str, year: int, window: int) -> str:
    start = datetime(year, 1, 1, tzinfo=UTC) + timedelta(GRID_START_DOY - 1 + window * WINDOW_DAYS)
    return event_id_for(parcel, kind, start, start + timedelta(WINDOW_DAYS))


def _reference(
    tensor: SeriesTensor, peaks: pl.DataFrame, emitted: set[str]
) -> list[tuple[object, ...]]:
    out = []
    for series, practice, bin_, confidence in peaks.iter_rows():
        parcel, year, tile = tensor.keys.row(series)
        kind = EVENT_TYPES[practice]
        doy = round(GRID_START_DOY + BIN_DAYS * bin_ + (BIN_DAYS - 1) / 2)  # half to even
        window = (doy - GRID_START_DOY) // WINDOW_DAYS
        moved = range(window - MOVED_WINDOWS, window + MOVED_WINDOWS + 1)
        if any(_window_id(parcel, kind, year, w) in emitted for w in moved):
            continue
        day = date(year, 1, 1) + timedelta(doy - 1)
        start = datetime(year, 1, 1, tzinfo=UTC) + timedelta(
            GRID_START_DOY - 1 + window * WINDOW_DAYS
        )
        time = datetime(day.year, day.month, day.day, tzinfo=UTC)
        out.append(
            (
                _window_id(parcel, kind, year, window),
                parcel,
                tile,
                kind,
                day,
                time,
                confidence,
                start,
                start + timedelta(WINDOW_DAYS),
                MODEL.name,
                MODEL.version,
            )
        )
    return sorted(out, key=lambda e: (e[1], e[5], e[3]))


@pytest.mark.parametrize("seed", [1, 2])
def test_events_match_a_straightforward_reference(seed: int) -> None:
    tensor, series_parcel, parcel_ids, peaks = _random_peaks(seed)
    columns = list(EVENT_COLUMNS[: EVENT_COLUMNS.index("model_version") + 1])
    frame = _event_frame(tensor.keys, series_parcel, parcel_ids, peaks, MODEL, set())
    assert frame.select(columns).rows() == _reference(tensor, peaks, set())
    # parcel ranks index the ranked ids
    assert parcel_ids.gather(frame.get_column("parcel_rank")).equals(
        frame.get_column("parcel_id"), check_names=False
    )
    # emitted: some ids as they are, some moved one or two windows, one three windows away
    rows = frame.rows(named=True)
    emitted = {rows[i]["event_id"] for i in range(0, len(rows), 7)}
    for i, shift in ((3, 1), (5, -2), (11, 2), (13, 3)):
        year = rows[i]["date"].year
        window = (rows[i]["date"].timetuple().tm_yday - GRID_START_DOY) // WINDOW_DAYS
        emitted.add(_window_id(rows[i]["parcel_id"], rows[i]["type"], year, window + shift))
    kept = _event_frame(tensor.keys, series_parcel, parcel_ids, peaks, MODEL, emitted)
    expected = _reference(tensor, peaks, emitted)
    assert kept.select(columns).rows() == expected
    assert 0 < len(expected) < len(rows) - len(rows) // 7


def test_no_peaks_give_an_empty_frame() -> None:
    tensor, series_parcel, parcel_ids, peaks = _random_peaks(3)
    frame = _event_frame(tensor.keys, series_parcel, parcel_ids, peaks.head(0), MODEL, {"x"})
    assert frame.is_empty()
    assert frame.schema["window_start"] == pl.Datetime("us", "UTC")
