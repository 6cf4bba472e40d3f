"""Ground-truth tables written to `DIR/truth/` (schema in the package docstring)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from monitor.simulate.covers import COVERS
from monitor.simulate.fields import Layout
from monitor.simulate.phenology import MAX_MOWINGS, Calendar, surface_state
from monitor.simulate.spectra import ndvi, unit_reflectance
from monitor.simulate.weather import Weather


def day_to_date(year: int, day: float) -> date:
    return date(year, 1, 1) + timedelta(days=round(day) - 1)


def _dates(year: int, days: NDArray[np.float64]) -> pa.Array:
    return pa.array(
        [None if not np.isfinite(d) else day_to_date(year, d) for d in days], pa.date32()
    )


def write_parcels(path: Path, layout: Layout, cal: Calendar, year: int) -> None:
    main_unit = _main_units(layout)
    second = layout.parcel_second_cover
    mowings = np.isfinite(cal.mowing[main_unit]).sum(axis=1)
    sowing = np.where(np.isfinite(cal.sowing[main_unit]), cal.sowing[main_unit], np.nan)
    table = pa.table(
        {
            "id_parcel": pa.array(layout.parcel_id, pa.string()),
            "declared_code": pa.array(layout.parcel_code, pa.string()),
            "cover": pa.array(layout.parcel_code, pa.string()),
            "second_cover": pa.array(
                [COVERS[c].code if c >= 0 else None for c in second], pa.string()
            ),
            "second_fraction": pa.array(layout.parcel_second_fraction, pa.float64()),
            "heterogeneous": pa.array(second >= 0, pa.bool_()),
            "area_ha": pa.array(layout.parcel_area_ha, pa.float64()),
            "sowing": _dates(year, sowing),
            "green_up": _dates(year, cal.sos[main_unit]),
            "senescence": _dates(year, cal.eos[main_unit]),
            "harvest": _dates(year, cal.harvest[main_unit]),
            "mowings": pa.array(mowings, pa.int8()),
        }
    )
    pq.write_table(table, path)


def _main_units(layout: Layout) -> NDArray[np.intp]:
    """Unit index of each parcel's main part (the first unit pointing to it)."""
    units = np.flatnonzero(layout.unit_parcel >= 0)
    parcels = layout.unit_parcel[units]
    first = np.full(layout.n_parcels, -1, dtype=np.intp)
    first[parcels[::-1]] = units[::-1]
    return first


def practice_rows(
    layout: Layout, cal: Calendar, weather: Weather, first_day: float, last_day: float
) -> dict[str, list[Any]]:
    """Every practice between `first_day` and `last_day` with the clear-sky NDVI of its part
    the day before and the day after."""
    units = np.flatnonzero(layout.unit_parcel >= 0)
    events: list[tuple[int, str, float]] = []
    for kind, days in (
        ("harvest", cal.harvest),
        ("ploughing", cal.plough),
        ("ploughing", cal.spring_plough),
        *(("mowing", cal.mowing[:, m]) for m in range(MAX_MOWINGS)),
    ):
        with np.errstate(invalid="ignore"):
            hit = units[(days[units] >= first_day) & (days[units] <= last_day)]
        events += [(int(u), kind, float(days[u])) for u in hit]
    events.sort(key=lambda e: (e[2], int(layout.unit_parcel[e[0]]), e[1], e[0]))
    rows: dict[str, list[Any]] = {k: [] for k in ("unit", "type", "day", "before", "after")}
    for unit, kind, day in events:
        rows["unit"].append(unit)
        rows["type"].append(kind)
        rows["day"].append(day)
    if events:
        idx = np.array(rows["unit"])
        days = np.array(rows["day"])
        rows["before"] = list(_ndvi_of(layout, cal, weather, idx, days - 1))
        rows["after"] = list(_ndvi_of(layout, cal, weather, idx, days + 1))
    return rows


def _ndvi_of(
    layout: Layout,
    cal: Calendar,
    weather: Weather,
    units: NDArray[np.intp],
    days: NDArray[np.float64],
) -> NDArray[np.float64]:
    out = np.empty(len(units))
    for day in np.unique(days):
        pick = days == day
        u = units[pick]
        state = surface_state(layout.unit_cover, cal, float(day))
        moisture = np.full(layout.n_units, weather.soil_moisture(float(day)))
        mean, _ = unit_reflectance(layout.unit_cover, state, cal.soil_brightness, moisture)
        out[pick] = ndvi(mean[u])
    return out


def write_practices(
    path: Path,
    layout: Layout,
    cal: Calendar,
    weather: Weather,
    year: int,
    first_day: float,
    last_day: float,
) -> int:
    rows = practice_rows(layout, cal, weather, first_day, last_day)
    units = np.array(rows["unit"], dtype=np.intp)
    parcel = layout.unit_parcel[units] if len(units) else np.empty(0, dtype=np.int32)
    main = _main_units(layout)
    is_main = main[parcel] == units if len(units) else np.empty(0, dtype=bool)
    fraction = (
        np.where(
            is_main,
            1.0 - layout.parcel_second_fraction[parcel],
            layout.parcel_second_fraction[parcel],
        )
        if len(units)
        else np.empty(0)
    )
    table = pa.table(
        {
            "id_parcel": pa.array([layout.parcel_id[p] for p in parcel], pa.string()),
            "type": pa.array(rows["type"], pa.string()),
            "date": _dates(year, np.array(rows["day"], dtype=np.float64)),
            "cover": pa.array([COVERS[layout.unit_cover[u]].code for u in units], pa.string()),
            "part": pa.array(["main" if m else "second" for m in is_main], pa.string()),
            "area_fraction": pa.array(fraction, pa.float64()),
            "ndvi_before": pa.array(rows["before"], pa.float64()),
            "ndvi_after": pa.array(rows["after"], pa.float64()),
        }
    )
    pq.write_table(table, path)
    return len(units)


def write_units(path: Path, layout: Layout) -> None:
    """Which parcel and cover each value of `truth/units.tif` is (unit 0: land between)."""
    parcel = layout.unit_parcel
    table = pa.table(
        {
            "unit": pa.array(np.arange(layout.n_units), pa.int32()),
            "id_parcel": pa.array(
                [layout.parcel_id[p] if p >= 0 else None for p in parcel], pa.string()
            ),
            "cover": pa.array([COVERS[c].code for c in layout.unit_cover], pa.string()),
        }
    )
    pq.write_table(table, path)


def write_table(path: Path, columns: dict[str, list[Any]]) -> None:
    pq.write_table(pa.table(columns), path)
