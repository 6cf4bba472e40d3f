"""A folder of STAC Items (a season's archive) as acquisitions in acquisition order.

Shared by `parcel-monitor publish` (which sends them to Kafka) and `parcel-monitor replay`
(which feeds them to the engine directly). Items are found either through a `catalog.json` at
the folder's root (its `item` links, and `child` links to sub-catalogs, followed recursively) or,
without one, as every `item.json` below the folder. Asset hrefs may point anywhere inside the
catalog folder (not only the item's own folder) and must exist.

Order is acquisition time, then product id: the order per MGRS tile that the engine expects and
that makes a replay deterministic.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from monitor.errors import AssetError, ConfigError, InvalidAcquisition, MonitorError
from monitor.stac import Acquisition, HrefPolicy, read_item

log = logging.getLogger(__name__)

CATALOG_FILE = "catalog.json"
ITEM_FILE = "item.json"


@dataclass(frozen=True)
class CatalogEntry:
    """A valid item of a catalog: its file and the acquisition it describes."""

    path: Path
    acquisition: Acquisition


@dataclass(frozen=True)
class RejectedItem:
    """An item of a catalog that is not a usable acquisition, with the one-line reason."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Catalog:
    """The items of a catalog folder: valid ones in acquisition order, rejected ones by path."""

    root: Path
    entries: tuple[CatalogEntry, ...]
    rejected: tuple[RejectedItem, ...]


@dataclass(frozen=True)
class TimeRange:
    """Acquisition times kept by `--from`/`--to`: `start <= acquired < end` (either open)."""

    start: datetime | None = None
    end: datetime | None = None

    def __contains__(self, moment: datetime) -> bool:
        return (self.start is None or moment >= self.start) and (
            self.end is None or moment < self.end
        )


def time_range(start: str | None, end: str | None) -> TimeRange:
    """The range of `--from START --to END`, both inclusive.

    Each bound is a date (`2023-04-15`: `--to` then keeps that whole day) or an RFC 3339 time
    (`2023-04-15T12:00:00Z`; without a zone, UTC). Raises `ConfigError` on unparsable bounds or
    an empty range.
    """
    low = None if start is None else _bound(start, "--from", end_of_day=False)
    high = None if end is None else _bound(end, "--to", end_of_day=True)
    if low is not None and high is not None and low >= high:
        raise ConfigError(f"--from {start} is not before --to {end}")
    return TimeRange(low, high)


def _bound(text: str, option: str, *, end_of_day: bool) -> datetime:
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time(), tzinfo=UTC)
            return moment + timedelta(days=1) if end_of_day else moment
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{option} {text!r}: not a date (YYYY-MM-DD) or RFC 3339 time") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    # An inclusive instant: keep an acquisition stamped exactly at `--to`.
    return moment + timedelta(microseconds=1) if end_of_day else moment


def find_items(root: Path) -> list[Path]:
    """The item files of a catalog folder, by path (see the module docstring for how)."""
    if not root.is_dir():
        raise ConfigError(f"catalog {root}: not a folder")
    catalog = root / CATALOG_FILE
    if catalog.is_file():
        found: set[Path] = set()
        _walk_catalog(catalog, root.resolve(), found, set())
        return sorted(found)
    return sorted(p for p in root.rglob(ITEM_FILE) if p.is_file())


def _walk_catalog(catalog: Path, root: Path, found: set[Path], seen: set[Path]) -> None:
    """Collect the `item` links of `catalog` and of its `child` catalogs (each visited once)."""
    path = catalog.resolve()
    if path in seen:
        return
    seen.add(path)
    document = _read_json(path, "catalog")
    links = document.get("links")
    if not isinstance(links, list):
        raise InvalidAcquisition(f"catalog {path}: 'links' is not a list")
    for link in links:
        if not isinstance(link, dict) or link.get("rel") not in ("item", "child"):
            continue
        target = _link_target(link.get("href"), path, root)
        if link["rel"] == "item":
            found.add(target)
        else:
            _walk_catalog(target, root, found, seen)


def _link_target(href: object, catalog: Path, root: Path) -> Path:
    if not isinstance(href, str) or not href:
        raise InvalidAcquisition(f"catalog {catalog}: a link has no href")
    parts = urlsplit(href)
    if parts.scheme not in ("", "file"):
        raise InvalidAcquisition(f"catalog {catalog}: link {href!r} is not a local file")
    target = (catalog.parent / unquote(parts.path)).resolve()
    if not target.is_relative_to(root):
        raise InvalidAcquisition(f"catalog {catalog}: link {href!r} leaves the catalog folder")
    return target


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        document = json.loads(path.read_bytes())
    except OSError as exc:
        raise InvalidAcquisition(f"{what} {path}: cannot read: {exc.strerror}") from exc
    except ValueError as exc:
        raise InvalidAcquisition(f"{what} {path}: malformed JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidAcquisition(f"{what} {path}: not a JSON object")
    return document


def read_catalog(
    root: Path | str, when: TimeRange | None = None, *, policy: HrefPolicy | None = None
) -> Catalog:
    """Validate every item of a catalog folder; keep those acquired in `when`.

    `policy` defaults to local files anywhere under `root`. An invalid item (malformed, a
    missing asset, a product id seen twice) is rejected with its reason, not raised: callers
    decide whether one bad item stops them.
    """
    root = Path(root)
    when = when or TimeRange()
    policy = policy or HrefPolicy(roots=(root,))
    entries: list[CatalogEntry] = []
    rejected: list[RejectedItem] = []
    first_path: dict[str, Path] = {}
    for path in find_items(root):
        try:
            acq = read_item(path, policy=policy)
            _check_assets_exist(acq)
        except MonitorError as err:
            rejected.append(RejectedItem(path, str(err)))
            continue
        if acq.acquired not in when:
            continue
        other = first_path.setdefault(acq.product_id, path)
        if other != path:
            reason = f"item {acq.product_id!r}: product id also in {other}"
            rejected.append(RejectedItem(path, reason))
            continue
        entries.append(CatalogEntry(path, acq))
    entries.sort(key=lambda e: (e.acquisition.acquired, e.acquisition.product_id))
    for item in rejected:
        log.warning("rejected %s: %s", item.path, item.reason)
    return Catalog(root, tuple(entries), tuple(rejected))


def iter_catalog(
    root: Path | str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    policy: HrefPolicy | None = None,
) -> list[tuple[Path, Acquisition]]:
    """The valid items of a catalog acquired in `[start, end)`, in acquisition order.

    Fails fast: the first rejected item raises its `InvalidAcquisition` / `AssetError`, so
    nothing is sent when part of the catalog is broken.
    """
    catalog = read_catalog(root, TimeRange(start, end), policy=policy)
    if catalog.rejected:
        bad = catalog.rejected[0]
        more = len(catalog.rejected) - 1
        tail = f" (and {more} more bad items)" if more else ""
        raise InvalidAcquisition(f"{bad.path}: {bad.reason}{tail}")
    return [(e.path, e.acquisition) for e in catalog.entries]


def _check_assets_exist(acq: Acquisition) -> None:
    for asset in acq.assets.values():
        if asset.is_local and not Path(asset.href).is_file():
            raise AssetError(f"item {acq.product_id!r} asset {asset.key}: {asset.href} not found")


def absolute_item(acq: Acquisition, base: Path) -> dict[str, Any]:
    """The item of `acq` with every local asset and link href made absolute.

    A Kafka message has no folder to resolve relative hrefs against; absolute paths keep the
    item readable by a worker that shares the filesystem.
    """
    item: dict[str, Any] = json.loads(json.dumps(acq.item))
    assets = item.get("assets", {})
    for key, asset in assets.items():
        if key in acq.assets:
            asset["href"] = acq.assets[key].href  # validated and resolved by `parse_item`
        elif isinstance(asset, dict):
            asset["href"] = _absolute(asset.get("href"), base)
    for link in item.get("links") or []:
        if isinstance(link, dict):
            link["href"] = _absolute(link.get("href"), base)
    return item


def _absolute(href: object, base: Path) -> object:
    """A relative local href made absolute against `base`; anything else unchanged."""
    if not isinstance(href, str) or not href or urlsplit(href).scheme or Path(href).is_absolute():
        return href
    return str((base / href).resolve())
