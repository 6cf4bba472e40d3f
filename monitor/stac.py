"""The acquisition message: a STAC Item 1.0 validated into an `Acquisition`.

Every problem with the item raises `InvalidAcquisition` (one line, naming the item id and the
field); every problem with an asset href (unexpected scheme, a path escaping the allowed roots)
raises `AssetError`. Nothing is read from disk here: `monitor.raster` opens the assets.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from monitor.errors import AssetError, InvalidAcquisition

Sensor = Literal["S2", "S1"]
Transform = tuple[float, float, float, float, float, float]

S2_BANDS = frozenset(
    {"B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"}
)
S2_ASSETS = S2_BANDS | {"SCL"}
S1_BANDS = frozenset({"VV", "VH"})
S1_UNITS = {"db": "dB", "linear": "linear"}

# An acquisition stamped a few minutes ahead of our clock is skew, not a forged message.
DEFAULT_CLOCK_SKEW = timedelta(minutes=10)
REMOTE_SCHEMES = frozenset({"http", "https", "s3"})
#: Largest grid side accepted (an MGRS tile at 10 m is 10 980 px): the label raster of the
#: declared grid is allocated before any raster is read, so a forged `proj:shape` must not
#: reach it.
MAX_GRID_SIDE = 16_384
_MGRS = re.compile(r"^(0?[1-9]|[1-5][0-9]|60)[C-HJ-NP-X][A-HJ-NP-Z][A-HJ-NP-V]$")
_MAX_SHOWN = 80


@dataclass(frozen=True)
class HrefPolicy:
    """Which asset hrefs an item may point to.

    `schemes`: allowed URL schemes; `""` and `"file"` are local paths. Remote schemes
    (`http`, `https`, `s3`) are off unless listed. `roots`: local folders an asset path must stay
    under once resolved (symlinks followed); empty means "the item's own folder" (`base`).
    """

    schemes: frozenset[str] = frozenset({"file"})
    roots: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        unknown = self.schemes - REMOTE_SCHEMES - {"file"}
        if unknown:
            raise AssetError(f"unsupported href schemes in policy: {sorted(unknown)}")


@dataclass(frozen=True)
class Asset:
    """One band of an acquisition: where it is and how to read its numbers.

    `transform`/`shape` are set only when the asset declares its own `proj:*` grid (e.g. 20 m
    bands in an item whose grid is 10 m); otherwise the band is on the item's grid.
    """

    key: str
    href: str
    scale: float = 1.0
    offset: float = 0.0
    nodata: float | None = None
    unit: str | None = None
    data_type: str | None = None
    transform: Transform | None = None
    shape: tuple[int, int] | None = None

    @property
    def is_local(self) -> bool:
        """True when `href` is a local file path (not an http(s)/s3 URL)."""
        return urlsplit(self.href).scheme not in REMOTE_SCHEMES


@dataclass(frozen=True)
class Acquisition:
    """A validated acquisition: one Sentinel product over one MGRS tile, on one grid."""

    product_id: str
    acquired: datetime
    sensor: Sensor
    tile: str
    epsg: int
    transform: Transform
    shape: tuple[int, int]
    assets: Mapping[str, Asset]
    item: dict[str, Any] = field(repr=False)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of the grid in `epsg` coordinates (north-up grids)."""
        a, _, c, _, e, f = self.transform
        height, width = self.shape
        xs = (c, c + a * width)
        ys = (f, f + e * height)
        return min(xs), min(ys), max(xs), max(ys)


def read_item(path: Path, *, policy: HrefPolicy | None = None) -> Acquisition:
    """Parse the STAC Item file at `path`, resolving relative hrefs against its folder."""
    try:
        payload = path.read_bytes()
    except OSError as exc:
        raise InvalidAcquisition(f"item file {str(path)!r}: cannot read: {exc.strerror}") from exc
    return parse_item(payload, base=path.parent, policy=policy)


def parse_item(
    payload: bytes | str | Mapping[str, Any],
    *,
    base: Path | None = None,
    policy: HrefPolicy | None = None,
    now: datetime | None = None,
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
) -> Acquisition:
    """Validate a STAC Item (JSON bytes/text or an already decoded mapping).

    `base` is the item's folder: relative hrefs resolve against it and, unless `policy.roots`
    says otherwise, asset paths must stay under it. `now` (default: the clock) bounds
    `datetime` from above, allowing `clock_skew`.
    """
    item = _decode(payload)
    item_id = _item_id(item)
    props = _get_mapping(item, "properties", item_id)
    sensor = _sensor(props, item_id)
    epsg, transform, shape = _grid(props, item_id, "properties")
    return Acquisition(
        product_id=item_id,
        acquired=_acquired(props, item_id, now or datetime.now(UTC), clock_skew),
        sensor=sensor,
        tile=_tile(props, item_id),
        epsg=epsg,
        transform=transform,
        shape=shape,
        assets=MappingProxyType(_assets(item, item_id, sensor, epsg, base, policy or HrefPolicy())),
        item=item,
    )


def _shown(value: object) -> str:
    """A short one-line rendering of a bad value for an error message."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _fail(item_id: str, where: str, reason: str) -> InvalidAcquisition:
    return InvalidAcquisition(f"item {item_id!r}: {where}: {reason}")


def _decode(payload: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(payload, bytes | bytearray | memoryview | str | Mapping):
        raise InvalidAcquisition(f"item payload: not JSON text or a mapping: {_shown(payload)}")
    try:
        if isinstance(payload, str):
            text = payload
        elif isinstance(payload, Mapping):
            # A JSON round trip copies the mapping and proves it is plain JSON data.
            text = json.dumps(payload, allow_nan=False)
        else:
            text = bytes(payload).decode("utf-8")
        item = json.loads(text)
    except UnicodeDecodeError as exc:
        raise InvalidAcquisition(f"item payload: not UTF-8 text ({exc.reason})") from exc
    except json.JSONDecodeError as exc:
        raise InvalidAcquisition(f"item payload: malformed JSON: {exc}") from exc
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidAcquisition(f"item payload: not plain JSON data: {_shown(exc)}") from exc
    if not isinstance(item, dict):
        raise InvalidAcquisition(f"item payload: a JSON object is expected, got {_shown(item)}")
    return item


def _item_id(item: dict[str, Any]) -> str:
    raw_id = item.get("id")
    shown = raw_id if isinstance(raw_id, str) and raw_id else "?"
    if item.get("type") != "Feature":
        raise _fail(shown, "type", f"not a STAC Item (type {_shown(item.get('type'))})")
    version = item.get("stac_version")
    if not isinstance(version, str) or not version.startswith("1."):
        raise _fail(shown, "stac_version", f"STAC 1.x expected, got {_shown(version)}")
    if not isinstance(raw_id, str) or not raw_id:
        raise _fail(shown, "id", f"a non-empty string is expected, got {_shown(raw_id)}")
    # The id names partitions and files downstream: no separators or control characters.
    if raw_id in {".", ".."} or any(c in raw_id for c in "/\\") or not raw_id.isprintable():
        raise _fail("?", "id", f"unusable product id {_shown(raw_id)}")
    return raw_id


def _get_mapping(parent: Mapping[str, Any], key: str, item_id: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise _fail(item_id, key, f"an object is expected, got {_shown(value)}")
    return value


def _acquired(props: dict[str, Any], item_id: str, now: datetime, skew: timedelta) -> datetime:
    key = "datetime" if props.get("datetime") is not None else "start_datetime"
    raw = props.get(key)
    if raw is None:
        raise _fail(item_id, "properties.datetime", "missing")
    if not isinstance(raw, str):
        raise _fail(item_id, f"properties.{key}", f"an RFC 3339 string is expected: {_shown(raw)}")
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise _fail(item_id, f"properties.{key}", f"unparsable date {_shown(raw)}") from exc
    if parsed.tzinfo is None:
        raise _fail(item_id, f"properties.{key}", f"no time zone in {_shown(raw)}")
    try:
        acquired = parsed.astimezone(UTC)
    except OverflowError as exc:
        raise _fail(item_id, f"properties.{key}", f"date out of range {_shown(raw)}") from exc
    if acquired > now.astimezone(UTC) + skew:
        raise _fail(item_id, f"properties.{key}", f"{acquired.isoformat()} is in the future")
    return acquired


def _sensor(props: dict[str, Any], item_id: str) -> Sensor:
    for key in ("constellation", "platform"):
        value = props.get(key)
        if isinstance(value, str):
            name = value.strip().lower()
            if name.startswith("sentinel-2"):
                return "S2"
            if name.startswith("sentinel-1"):
                return "S1"
    shown = _shown(props.get("constellation", props.get("platform")))
    raise _fail(item_id, "properties.constellation", f"unknown sensor {shown}")


def _tile(props: dict[str, Any], item_id: str) -> str:
    candidates: dict[str, str] = {}
    code = props.get("grid:code")
    if code is not None:
        if not isinstance(code, str) or not code.upper().startswith("MGRS-"):
            raise _fail(item_id, "properties.grid:code", f"not an MGRS code: {_shown(code)}")
        candidates["grid:code"] = code[5:].upper()
    mgrs = props.get("s2:mgrs_tile")
    if mgrs is not None:
        if not isinstance(mgrs, str):
            raise _fail(item_id, "properties.s2:mgrs_tile", f"not a tile id: {_shown(mgrs)}")
        candidates["s2:mgrs_tile"] = mgrs.upper()
    if not candidates:
        raise _fail(item_id, "properties.grid:code", "missing (no MGRS tile id)")
    for key, tile in candidates.items():
        if not _MGRS.match(tile):
            raise _fail(item_id, f"properties.{key}", f"not an MGRS tile id: {_shown(tile)}")
    tiles = {tile.zfill(5) for tile in candidates.values()}
    if len(tiles) > 1:
        raise _fail(item_id, "properties.grid:code", f"disagrees with s2:mgrs_tile: {tiles}")
    return tiles.pop()


def _number(value: object) -> float | None:
    """A finite JSON number as float, else None (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _grid(
    props: Mapping[str, Any], item_id: str, where: str
) -> tuple[int, Transform, tuple[int, int]]:
    return (
        _epsg(props, item_id, where),
        _transform(props.get("proj:transform"), item_id, f"{where}.proj:transform"),
        _shape(props.get("proj:shape"), item_id, f"{where}.proj:shape"),
    )


def _epsg(props: Mapping[str, Any], item_id: str, where: str) -> int:
    epsg = props.get("proj:epsg")
    code = props.get("proj:code")  # projection extension v2 spells it "EPSG:32631"
    if epsg is None and isinstance(code, str) and code.upper().startswith("EPSG:"):
        epsg = int(code[5:]) if code[5:].isdigit() else code
    if isinstance(epsg, bool) or not isinstance(epsg, int) or not 1024 <= epsg <= 999_999:
        raise _fail(item_id, f"{where}.proj:epsg", f"an EPSG code is expected, got {_shown(epsg)}")
    return epsg


def _transform(raw: object, item_id: str, where: str) -> Transform:
    if not isinstance(raw, list) or len(raw) not in (6, 9):
        raise _fail(item_id, where, f"6 or 9 numbers are expected, got {_shown(raw)}")
    numbers = [_number(v) for v in raw]
    a, b, c, d, e, f = numbers[:6]
    if a is None or b is None or c is None or d is None or e is None or f is None:
        raise _fail(item_id, where, f"non-numeric or non-finite value in {_shown(raw)}")
    if len(raw) == 9 and numbers[6:] != [0.0, 0.0, 1.0]:
        raise _fail(item_id, where, f"last row must be 0, 0, 1: {_shown(raw)}")
    # Sentinel grids are north-up; rotated or flipped grids would need a warp we do not do.
    if b != 0 or d != 0 or a <= 0 or e >= 0:
        raise _fail(item_id, where, f"not a north-up grid: {_shown(raw)}")
    return a, b, c, d, e, f


def _shape(raw: object, item_id: str, where: str) -> tuple[int, int]:
    if (
        not isinstance(raw, list)
        or len(raw) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in raw)
    ):
        raise _fail(item_id, where, f"[height, width] positive integers expected: {_shown(raw)}")
    if max(raw) > MAX_GRID_SIDE:
        raise _fail(item_id, where, f"{raw[0]}x{raw[1]} px is over {MAX_GRID_SIDE} px a side")
    return raw[0], raw[1]


def _assets(
    item: dict[str, Any],
    item_id: str,
    sensor: Sensor,
    epsg: int,
    base: Path | None,
    policy: HrefPolicy,
) -> dict[str, Asset]:
    raw_assets = _get_mapping(item, "assets", item_id)
    known, data_bands = (S2_ASSETS, S2_BANDS) if sensor == "S2" else (S1_BANDS, S1_BANDS)
    assets: dict[str, Asset] = {}
    for key in sorted(known & raw_assets.keys()):
        assets[key] = _asset(key, raw_assets[key], item_id, sensor, epsg, base, policy)
    if not data_bands & assets.keys():
        expected = ", ".join(sorted(data_bands))
        raise _fail(item_id, "assets", f"no usable {sensor} band (expected one of {expected})")
    return assets


def _asset(
    key: str,
    raw: object,
    item_id: str,
    sensor: Sensor,
    epsg: int,
    base: Path | None,
    policy: HrefPolicy,
) -> Asset:
    where = f"assets.{key}"
    if not isinstance(raw, dict):
        raise _fail(item_id, where, f"an object is expected, got {_shown(raw)}")
    href = raw.get("href")
    if not isinstance(href, str) or not href:
        raise _fail(item_id, f"{where}.href", f"a non-empty string is expected: {_shown(href)}")
    band = _first_raster_band(raw, item_id, where)
    scale = _optional_number(band, "scale", 1.0, item_id, where)
    if scale == 0.0:
        raise _fail(item_id, f"{where}.raster:bands[0].scale", "zero scale")
    unit = band.get("unit")
    if unit is not None and not isinstance(unit, str):
        raise _fail(item_id, f"{where}.raster:bands[0].unit", f"not a string: {_shown(unit)}")
    if sensor == "S1":
        unit = S1_UNITS.get((unit or "").strip().lower())
        if unit is None:
            shown = _shown(band.get("unit"))
            raise _fail(
                item_id, f"{where}.raster:bands[0].unit", f"'dB' or 'linear' expected: {shown}"
            )
    data_type = band.get("data_type")
    if data_type is not None and not isinstance(data_type, str):
        raise _fail(item_id, f"{where}.raster:bands[0].data_type", f"{_shown(data_type)}")
    transform, shape = None, None
    if any(k.startswith("proj:") for k in raw):
        if "proj:epsg" in raw or "proj:code" in raw:
            asset_epsg = _epsg(raw, item_id, where)
            if asset_epsg != epsg:
                raise _fail(item_id, f"{where}.proj:epsg", f"{asset_epsg} differs from {epsg}")
        if "proj:transform" in raw or "proj:shape" in raw:
            transform = _transform(raw.get("proj:transform"), item_id, f"{where}.proj:transform")
            shape = _shape(raw.get("proj:shape"), item_id, f"{where}.proj:shape")
    return Asset(
        key=key,
        href=resolve_href(href, base=base, policy=policy, label=f"item {item_id!r} {where}"),
        scale=scale,
        offset=_optional_number(band, "offset", 0.0, item_id, where),
        nodata=_nodata(band.get("nodata"), item_id, where),
        unit=unit,
        data_type=data_type,
        transform=transform,
        shape=shape,
    )


def _first_raster_band(raw: dict[str, Any], item_id: str, where: str) -> dict[str, Any]:
    bands = raw.get("raster:bands")
    if bands is None:
        return {}
    if not isinstance(bands, list) or not bands or not isinstance(bands[0], dict):
        raise _fail(
            item_id, f"{where}.raster:bands", f"a list of objects expected: {_shown(bands)}"
        )
    first: dict[str, Any] = bands[0]
    return first


def _optional_number(
    band: dict[str, Any], key: str, default: float, item_id: str, where: str
) -> float:
    raw = band.get(key)
    if raw is None:
        return default
    number = _number(raw)
    if number is None:
        raise _fail(item_id, f"{where}.raster:bands[0].{key}", f"not a number: {_shown(raw)}")
    return number


def _nodata(raw: object, item_id: str, where: str) -> float | None:
    if raw is None:
        return None
    # The raster extension spells non-finite nodata as strings.
    if isinstance(raw, str) and raw in {"nan", "inf", "-inf"}:
        return float(raw)
    number = _number(raw)
    if number is None:
        raise _fail(item_id, f"{where}.raster:bands[0].nodata", f"not a number: {_shown(raw)}")
    return number


def resolve_href(
    href: str, *, base: Path | None, policy: HrefPolicy | None = None, label: str = "asset"
) -> str:
    """Resolve an asset href to a local path or an allowed URL, or raise `AssetError`.

    Relative paths resolve against `base`; a local path must stay, once resolved (`..` and
    symlinks followed), under one of `policy.roots` (default: `base`). Remote URLs pass only when
    their scheme is in `policy.schemes`.
    """
    policy = policy or HrefPolicy()
    if "\x00" in href or not href.isprintable():
        raise AssetError(f"{label}: href {_shown(href)} contains control characters")
    parts = urlsplit(href)
    scheme = parts.scheme.lower()
    # One-letter "schemes" are Windows drive letters (C:/...), i.e. local paths.
    if scheme in ("", "file") or len(scheme) == 1:
        path_text = unquote(parts.path) if scheme == "file" else href
        if scheme == "file" and parts.netloc not in ("", "localhost"):
            raise AssetError(f"{label}: file URL {_shown(href)} names a remote host")
        return str(_local_path(path_text, base, policy, label, href))
    if scheme in policy.schemes and scheme in REMOTE_SCHEMES:
        if not parts.netloc:
            raise AssetError(f"{label}: URL {_shown(href)} has no host")
        return href
    allowed = ", ".join(sorted(policy.schemes | {"relative path"}))
    raise AssetError(f"{label}: href scheme {scheme!r} not allowed ({allowed}): {_shown(href)}")


def _local_path(
    path_text: str, base: Path | None, policy: HrefPolicy, label: str, href: str
) -> Path:
    path = Path(path_text)
    if not path.is_absolute():
        if base is None:
            raise AssetError(
                f"{label}: relative href {_shown(href)} but no item folder to resolve it"
            )
        path = base / path
    roots = policy.roots or ((base,) if base is not None else ())
    if not roots:
        raise AssetError(f"{label}: no allowed root folder configured for {_shown(href)}")
    try:
        resolved = path.resolve()
        allowed = [root.resolve() for root in roots]
    except (OSError, RuntimeError, ValueError) as exc:
        raise AssetError(f"{label}: cannot resolve href {_shown(href)}: {exc}") from exc
    if not any(resolved.is_relative_to(root) for root in allowed):
        shown_roots = ", ".join(str(root) for root in allowed)
        raise AssetError(f"{label}: href {_shown(href)} escapes the allowed roots ({shown_roots})")
    return resolved
