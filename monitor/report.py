"""One parcel's season as a picture: what an agency inspector looks at before a field visit.

Top panel: Sentinel-2 NDVI (parcel mean, with the p10-p90 band of its pixels) on the dates the
parcel was clear; dates masked by clouds (valid fraction under the threshold) are marked;
reconstructed (cloud-removed) values, when the store has them, are drawn dashed. Bottom panel:
Sentinel-1 VV and VH backscatter in dB. Events of the parcel (heterogeneity, practices) from an
events file (a replay's `--events-out`, or the demo's `model-events.jsonl`) are vertical lines
across both panels, labelled with type and confidence: at the practice's date, and at the
acquisition that flagged the parcel for heterogeneity. An events file, not the store's stage
state, because that state keeps only event ids, not the practice dates.

Drawn with matplotlib's Agg canvas on a `Figure` of its own (no pyplot state, no display).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import polars as pl

from monitor.errors import ConfigError, EventError, ParcelError
from monitor.events import ParcelEvent
from monitor.store import ObservationStore

#: Event types drawn as dated lines (observations are the points themselves).
MARKED_EVENTS: Final = (
    "heterogeneity",
    "practice.mowing",
    "practice.ploughing",
    "practice.harvest",
)
_EVENT_COLOURS: Final = {
    "heterogeneity": "tab:purple",
    "practice.mowing": "tab:green",
    "practice.ploughing": "tab:brown",
    "practice.harvest": "tab:orange",
}
DEFAULT_CLOUD_THRESHOLD: Final = 0.5


@dataclass(frozen=True)
class ReportSummary:
    """What a report shows: the parcel, its tiles and season, and how many points of each kind."""

    parcel_id: str
    tiles: tuple[str, ...]
    season: int
    clear_s2: int
    masked_s2: int
    reconstructed: int
    s1: int
    events: int


def parcel_events(path: Path, parcel_id: str) -> list[ParcelEvent]:
    """The heterogeneity and practice events of one parcel in a JSON Lines events file."""
    # A cheap byte test skips the other parcels' lines before any JSON parsing.
    needles = {json.dumps(parcel_id).encode(), json.dumps(parcel_id, ensure_ascii=False).encode()}
    found: list[ParcelEvent] = []
    try:
        with path.open("rb") as fh:
            for number, line in enumerate(fh, start=1):
                if not any(needle in line for needle in needles):
                    continue
                try:
                    event = ParcelEvent.from_json(line)
                except EventError as err:
                    raise EventError(f"{path} line {number}: {err}") from err
                if event.parcel_id == parcel_id and event.type in MARKED_EVENTS:
                    found.append(event)
    except OSError as exc:
        raise EventError(f"cannot read events file {path}: {exc.strerror or exc}") from exc
    return sorted(found, key=lambda e: (e.time, e.type))


def _history(store: ObservationStore, parcel_id: str, season: int | None) -> pl.DataFrame:
    rows = store.parcel_history(parcel_id)
    if rows.is_empty():
        raise ParcelError(f"parcel {parcel_id!r} has no observations in store {store.root}")
    seasons = sorted(rows.get_column("season").unique().to_list())
    chosen = seasons[-1] if season is None else season
    if chosen not in seasons:
        raise ParcelError(
            f"parcel {parcel_id!r} has no observations in season {season} "
            f"(it has {', '.join(map(str, seasons))})"
        )
    return rows.filter(pl.col("season") == chosen)


def _column(rows: pl.DataFrame, name: str) -> list[Any]:
    if name not in rows.columns:
        return [None] * rows.height
    return rows.get_column(name).cast(pl.Float64).fill_nan(None).to_list()


def parcel_report(
    store: ObservationStore,
    parcel_id: str,
    out: Path,
    *,
    events: Path | None = None,
    season: int | None = None,
    cloud_threshold: float = DEFAULT_CLOUD_THRESHOLD,
    size_px: tuple[int, int] = (1400, 900),
    dpi: int = 100,
) -> ReportSummary:
    """Draw `parcel_id`'s season (default: its latest) from `store` into the PNG `out`.

    Raises `ParcelError` when the store has no row of the parcel (in that season).
    """
    from matplotlib import dates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # matplotlib.dates has no annotations; mypy --strict refuses untyped calls.
    _dates: Any = dates
    rows = _history(store, parcel_id, season)
    marked = parcel_events(events, parcel_id) if events is not None else []
    season_value = int(rows.item(0, "season"))
    tiles = tuple(sorted(rows.get_column("tile").unique().to_list()))

    s2 = rows.filter((pl.col("sensor") == "S2") & (pl.col("source") == "observed"))
    ndvi = pl.col("NDVI_mean") if "NDVI_mean" in rows.columns else pl.lit(None)
    usable = (pl.col("valid_fraction") >= cloud_threshold) & ndvi.is_not_nan() & ndvi.is_not_null()
    clear = s2.filter(usable)
    masked = s2.filter(~usable)
    rebuilt = rows.filter(pl.col("source") == "reconstructed")
    s1 = rows.filter(pl.col("sensor") == "S1")

    width, height = size_px
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))

    if clear.height:
        when = clear.get_column("acquired").to_list()
        top.fill_between(
            when,
            _column(clear, "NDVI_p10"),
            _column(clear, "NDVI_p90"),
            color="tab:green",
            alpha=0.2,
            label="NDVI p10-p90 of the parcel's pixels",
        )
        top.plot(when, _column(clear, "NDVI_mean"), "o-", color="tab:green", label="NDVI mean")
    if rebuilt.height:
        top.plot(
            rebuilt.get_column("acquired").to_list(),
            _column(rebuilt, "NDVI_mean"),
            "s--",
            color="tab:blue",
            markerfacecolor="none",
            label="NDVI reconstructed (cloud removal)",
        )
    for i, moment in enumerate(masked.get_column("acquired").to_list()):
        top.axvline(moment, color="0.6", linestyle=":", linewidth=1)
        top.plot(
            [moment],
            [0.0],
            "x",
            color="0.4",
            transform=top.get_xaxis_transform(),
            clip_on=False,
            label=f"cloud-masked S2 (valid < {cloud_threshold:.0%})" if i == 0 else None,
        )
    top.set_ylabel("NDVI")
    top.set_ylim(-0.2, 1.0)
    top.grid(alpha=0.3)
    if not clear.height and not rebuilt.height:
        top.text(0.5, 0.5, "no clear Sentinel-2 observation", ha="center", transform=top.transAxes)

    if s1.height:
        when = s1.get_column("acquired").to_list()
        bottom.plot(when, _column(s1, "VV_mean"), "o-", color="tab:red", label="VV")
        bottom.plot(when, _column(s1, "VH_mean"), "o-", color="tab:cyan", label="VH")
    else:
        bottom.text(0.5, 0.5, "no Sentinel-1 observation", ha="center", transform=bottom.transAxes)
    bottom.set_ylabel("backscatter (dB)")
    bottom.grid(alpha=0.3)

    for event in marked:
        moment = datetime.fromisoformat(event.time)
        colour = _EVENT_COLOURS[event.type]
        for axis in (top, bottom):
            axis.axvline(moment, color=colour, linewidth=1.5, alpha=0.8)
        top.annotate(
            f"{event.type.removeprefix('practice.')} ({event.confidence:.2f})",
            xy=(_dates.date2num(moment), 1.0),  # annotations take no date units
            xycoords=top.get_xaxis_transform(),
            xytext=(3, -4),
            textcoords="offset points",
            rotation=90,
            va="top",
            fontsize=9,
            color=colour,
        )

    locator = _dates.AutoDateLocator()
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(_dates.ConciseDateFormatter(locator))
    for axis in (top, bottom):
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="upper left", fontsize=9, framealpha=0.85)
    fig.suptitle(
        f"Parcel {parcel_id} · tile {', '.join(tiles)} · season {season_value}\n"
        f"{clear.height} clear and {masked.height} cloud-masked Sentinel-2 dates, "
        f"{s1.height} Sentinel-1 dates, {rebuilt.height} reconstructed, {len(marked)} events",
        fontsize=12,
    )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=dpi, format="png")
    except OSError as exc:
        raise ConfigError(f"cannot write report {out}: {exc.strerror or exc}") from exc
    return ReportSummary(
        parcel_id,
        tiles,
        season_value,
        clear.height,
        masked.height,
        rebuilt.height,
        s1.height,
        len(marked),
    )
