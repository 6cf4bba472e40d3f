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

S2_DATE_COLUMNS = (
    "id",
    "datetime",
    "platform",
    "cloud_share",
    "eo_cloud_cover",
    "clear_truth",
    "residual_cloud_share",
    "snow_share",
    "saturated_share",
)
S1_DATE_COLUMNS = (
    "id",
    "datetime",
    "soil_moisture",
    "orbit_state",
    "relative_orbit",
    "incidence_deg",
    "snow_share",
    "wet_snow",
)


def day_to_date(year: int, day: float) -> date:
    return date(year, 1, 1) + timedelta(days=round(day) - 1)


def _dates(year: int, days: NDArray[np.float64]) -> pa.Array:
    """Days of year as Arrow dates (null where NaN), vectorised: days since the epoch."""
    epoch = (date(year, 1, 1) - date(1970, 1, 1)).days - 1
    valid = np.isfinite(days)
    since_epoch = np.where(valid, np.round(np.nan_to_num(days)) + epoch, 0).astype(np.int32)
    return pa.array(since_epoch, pa.int32(), mask=~valid).cast(pa.date32())


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
) -> dict[str, NDArray[Any]]:
    """Every practice between `first_day` and `last_day` (unit, type, day) with the clear-sky
    NDVI of its part the day before and the day after, in time order."""
    units = np.flatnonzero(layout.unit_parcel >= 0)
    found: list[tuple[NDArray[np.intp], str, NDArray[np.float64]]] = []
    for name, days in (
        ("harvest", cal.harvest),
        ("ploughing", cal.plough),
        ("ploughing", cal.spring_plough),
        *(("mowing", cal.mowing[:, m]) for m in range(MAX_MOWINGS)),
    ):
        with np.errstate(invalid="ignore"):
            hit = units[(days[units] >= first_day) & (days[units] <= last_day)]
        found.append((hit, name, days[hit]))
    unit = np.concatenate([f[0] for f in found])
    kind: NDArray[np.str_] = np.concatenate([np.full(len(f[0]), f[1]) for f in found])
    day = np.concatenate([f[2] for f in found])
    order = np.lexsort((kind, unit, day))
    unit, kind, day = unit[order], kind[order], day[order]
    return {
        "unit": unit,
        "type": kind,
        "day": day,
        "before": _ndvi_of(layout, cal, weather, unit, day - 1),
        "after": _ndvi_of(layout, cal, weather, unit, day + 1),
    }


def _ndvi_of(
    layout: Layout,
    cal: Calendar,
    weather: Weather,
    units: NDArray[np.intp],
    days: NDArray[np.float64],
) -> NDArray[np.float64]:
    out = np.empty(len(units))
    for day in np.unique(days):
        pick = np.flatnonzero(days == day)
        u = units[pick]
        cover = layout.unit_cover[u]
        sub = cal.subset(u)
        state = surface_state(cover, sub, float(day))
        moisture = np.full(len(u), weather.soil_moisture(float(day)))
        mean, _ = unit_reflectance(cover, state, sub.soil_brightness, moisture)
        out[pick] = ndvi(mean)
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
    units = rows["unit"]
    parcel = layout.unit_parcel[units]
    is_main = _main_units(layout)[parcel] == units
    second = layout.parcel_second_fraction[parcel]
    fraction = np.where(is_main, 1.0 - second, second)
    ids = np.array(layout.parcel_id, dtype=object)
    codes = np.array([c.code for c in COVERS], dtype=object)
    table = pa.table(
        {
            "id_parcel": pa.array(ids[parcel], pa.string()),
            "type": pa.array(rows["type"], pa.string()),
            "date": _dates(year, rows["day"]),
            "cover": pa.array(codes[layout.unit_cover[units]], pa.string()),
            "part": pa.array(np.where(is_main, "main", "second"), pa.string()),
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
