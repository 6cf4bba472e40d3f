"""The acquisitions the engine has seen, per tile and season: references for cloud removal.

The engine sees acquisitions one at a time (Kafka), yet reconstructing a cloudy Sentinel-2 date
needs earlier ones: the last clear Sentinel-2 of the tile (t0) and the Sentinel-1 nearest to t
and to t0. This index remembers, for every acquisition processed, what is needed to find and
read it again: product id, sensor, time, grid, resolved asset hrefs and (Sentinel-2) the share
of parcel pixels seen clear.

Layout, beside the observation store (one small JSON file per product, so reprocessing a product
replaces its entry and concurrent workers of different products never clash)::

    STORE/_acquisitions/tile=31UFS/season=2025/<product_id>.json

Files are written to a unique hidden tmp file, fsynced, then moved over the final name with
`os.replace` (atomic on POSIX); listings only read `*.json`, so a writer killed mid-write
leaves a tmp file that is ignored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from monitor.errors import StoreError
from monitor.files import atomic_write
from monitor.stac import Acquisition, Asset, Sensor, Transform
from monitor.store import check_product_id, check_tile

INDEX_DIR: Final = "_acquisitions"
FORMAT_VERSION: Final = 1


@dataclass(frozen=True)
class IndexedAcquisition:
    """One acquisition as the index remembers it (enough to read its assets again)."""

    product_id: str
    sensor: Sensor
    tile: str
    acquired: datetime
    epsg: int
    transform: Transform
    shape: tuple[int, int]
    assets: Mapping[str, Asset]
    clear_fraction: float | None
    """Share of the parcel pixels seen clear (Sentinel-2); None for Sentinel-1."""

    @classmethod
    def of(cls, acq: Acquisition, clear_fraction: float | None) -> IndexedAcquisition:
        """The index entry of a validated acquisition."""
        return cls(
            acq.product_id,
            acq.sensor,
            acq.tile,
            acq.acquired,
            acq.epsg,
            acq.transform,
            acq.shape,
            acq.assets,
            clear_fraction,
        )

    def acquisition(self) -> Acquisition:
        """An `Acquisition` to read this entry's assets with `monitor.raster.read_acquisition`."""
        return Acquisition(
            product_id=self.product_id,
            acquired=self.acquired,
            sensor=self.sensor,
            tile=self.tile,
            epsg=self.epsg,
            transform=self.transform,
            shape=self.shape,
            assets=self.assets,
            item={"id": self.product_id},  # the index keeps the resolved assets, not the item
        )

    def same_grid(self, acq: Acquisition) -> bool:
        """Whether this entry's grid is `acq`'s (same CRS, transform and shape)."""
        return (self.epsg, self.transform, self.shape) == (acq.epsg, acq.transform, acq.shape)

    def days_from(self, moment: datetime) -> float:
        """Signed days from `moment` to this acquisition (negative: before it)."""
        return (self.acquired - moment) / timedelta(days=1)

    def to_json(self) -> bytes:
        """The entry as canonical JSON (non-finite nodata as the raster extension's strings)."""
        body = {
            "version": FORMAT_VERSION,
            "product_id": self.product_id,
            "sensor": self.sensor,
            "tile": self.tile,
            "acquired": self.acquired.isoformat(),
            "epsg": self.epsg,
            "transform": list(self.transform),
            "shape": list(self.shape),
            "clear_fraction": self.clear_fraction,
            "assets": {key: _asset_json(asset) for key, asset in self.assets.items()},
        }
        return json.dumps(body, sort_keys=True, allow_nan=False).encode("utf-8")

    @classmethod
    def from_json(cls, text: bytes | str, where: str) -> IndexedAcquisition:
        """Parse an entry written by `to_json`; `StoreError` naming `where` if it is not one."""
        try:
            raw = json.loads(text)
            if raw["version"] != FORMAT_VERSION:
                raise ValueError(f"format version {raw['version']!r}")
            acquired = datetime.fromisoformat(raw["acquired"])
            if acquired.tzinfo is None:
                raise ValueError("naive acquisition time")
            clear = raw["clear_fraction"]
            return cls(
                product_id=str(raw["product_id"]),
                sensor=_sensor(raw["sensor"]),
                tile=str(raw["tile"]),
                acquired=acquired,
                epsg=int(raw["epsg"]),
                transform=_transform(raw["transform"]),
                shape=(int(raw["shape"][0]), int(raw["shape"][1])),
                assets=MappingProxyType(
                    {str(k): _asset_from(str(k), v) for k, v in raw["assets"].items()}
                ),
                clear_fraction=None if clear is None else float(clear),
            )
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise StoreError(f"corrupt acquisition index entry {where}: {exc}") from exc


def _sensor(value: object) -> Sensor:
    if value == "S1":
        return "S1"
    if value == "S2":
        return "S2"
    raise ValueError(f"unknown sensor {value!r}")


def _transform(value: Sequence[Any]) -> Transform:
    if len(value) != 6:
        raise ValueError(f"transform needs 6 numbers, got {len(value)}")
    a, b, c, d, e, f = (float(v) for v in value)
    return (a, b, c, d, e, f)


def _number_json(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _asset_json(asset: Asset) -> dict[str, Any]:
    return {
        "href": asset.href,
        "scale": asset.scale,
        "offset": asset.offset,
        "nodata": _number_json(asset.nodata),
        "unit": asset.unit,
        "data_type": asset.data_type,
        "transform": None if asset.transform is None else list(asset.transform),
        "shape": None if asset.shape is None else list(asset.shape),
    }


def _asset_from(key: str, raw: Mapping[str, Any]) -> Asset:
    nodata = raw["nodata"]
    shape = raw["shape"]
    return Asset(
        key=key,
        href=str(raw["href"]),
        scale=float(raw["scale"]),
        offset=float(raw["offset"]),
        nodata=None if nodata is None else float(nodata),
        unit=raw["unit"],
        data_type=raw["data_type"],
        transform=None if raw["transform"] is None else _transform(raw["transform"]),
        shape=None if shape is None else (int(shape[0]), int(shape[1])),
    )


class AcquisitionIndex:
    """Per tile and season, the acquisitions recorded so far (files under `root`).

    `season_of` maps an acquisition time to its season; pass the store's
    (`ObservationStore.season_of`) so the index and the store agree. Listings are read once per
    instance (and after each `record`): make one instance per acquisition processed, so other
    workers' entries are seen.
    """

    def __init__(self, root: Path, season_of: Callable[[datetime], int]) -> None:
        self.root = Path(root)
        self.season_of = season_of
        self._listed: dict[tuple[str, int], list[IndexedAcquisition]] = {}

    def _folder(self, tile: str, season: int) -> Path:
        return self.root / f"tile={check_tile(tile)}" / f"season={int(season)}"

    def record(self, entry: IndexedAcquisition) -> Path:
        """Write (or replace) the entry of one product, atomically; return its path."""
        season = self.season_of(entry.acquired)
        self._listed.pop((entry.tile, season), None)
        folder = self._folder(entry.tile, season)
        path = folder / f"{check_product_id(entry.product_id)}.json"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {folder}: {exc.strerror or exc}") from exc
        atomic_write(path, lambda fh: fh.write(entry.to_json()))
        return path

    def entries(self, tile: str, season: int) -> list[IndexedAcquisition]:
        """Every recorded acquisition of a tile and season, in acquisition order."""
        listed = self._listed.get((tile, season))
        if listed is None:
            listed = self._listed[(tile, season)] = self._read(tile, season)
        return list(listed)

    def _read(self, tile: str, season: int) -> list[IndexedAcquisition]:
        found = []
        for path in sorted(self._folder(tile, season).glob("[!.]*.json")):
            try:
                text = path.read_bytes()
            except FileNotFoundError:  # replaced or removed meanwhile
                continue
            except OSError as exc:
                raise StoreError(f"cannot read acquisition index {path}: {exc.strerror}") from exc
            found.append(IndexedAcquisition.from_json(text, str(path)))
        return sorted(found, key=lambda e: (e.acquired, e.product_id))

    def last_clear_s2(
        self,
        acq: Acquisition,
        *,
        min_clear_fraction: float,
        max_gap_days: float,
        bands: Sequence[str],
    ) -> IndexedAcquisition | None:
        """The latest Sentinel-2 of `acq`'s tile and grid strictly before it, at least
        `min_clear_fraction` clear, with `bands`, at most `max_gap_days` earlier."""
        candidates = [
            e
            for e in self.entries(acq.tile, self.season_of(acq.acquired))
            if e.sensor == "S2"
            and e.product_id != acq.product_id
            and -max_gap_days <= e.days_from(acq.acquired) < 0
            and (e.clear_fraction or 0.0) >= min_clear_fraction
            and set(bands) <= e.assets.keys()
            and e.same_grid(acq)
        ]
        return candidates[-1] if candidates else None

    def nearest_s1(
        self, acq: Acquisition, moment: datetime, *, max_days: float, not_after: datetime
    ) -> IndexedAcquisition | None:
        """The Sentinel-1 on `acq`'s tile and grid nearest to `moment` (within `max_days`,
        acquired on or before `not_after`); ties go to the earlier one."""
        candidates = [
            e
            for e in self.entries(acq.tile, self.season_of(acq.acquired))
            if e.sensor == "S1"
            and abs(e.days_from(moment)) <= max_days
            and e.acquired <= not_after
            and {"VV", "VH"} <= e.assets.keys()
            and e.same_grid(acq)
        ]
        if not candidates:
            return None
        return min(candidates, key=lambda e: (abs(e.days_from(moment)), e.acquired))
