"""Parcel sets: the declared parcels (LPIS) read from GeoPackage or GeoParquet, validated.

A `ParcelSet` holds ids (as strings), shapely polygons, their CRS, optional crop codes and a
`version`: a content hash of ids, geometries and CRS, used as the label-raster cache key.

Validation, on load: a missing id column, a null id, duplicate ids, a null or unreadable
geometry, or a non-polygon geometry refuses the file (`ParcelError`). Self-intersecting or
otherwise invalid polygons are repaired with `shapely.make_valid` (method "structure", which
keeps only the polygonal result: shells bound area, holes remove it) and counted; parcels that
are empty, or become empty once repaired, are dropped and counted. Both counts are logged as
warnings and kept on the set (`repaired`, `dropped`): an agency wants to know, not to stop.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pyogrio
import pyogrio.errors
import pyogrio.raw
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from monitor.errors import CrsMismatch, ParcelError

log = logging.getLogger(__name__)

Bounds = tuple[float, float, float, float]
ObjectArray = np.ndarray[Any, np.dtype[np.object_]]
IndexArray = np.ndarray[Any, np.dtype[np.intp]]

_POLYGON, _MULTIPOLYGON = 3, 6
_GEOMETRY_NAMES = {
    0: "Point",
    1: "LineString",
    2: "LinearRing",
    4: "MultiPoint",
    5: "MultiLineString",
    7: "GeometryCollection",
}
_HASH_CHUNK = 65_536


@dataclass(frozen=True, eq=False)
class ParcelSet:
    """Parcels with string ids, polygonal shapely geometries, a CRS and a content version."""

    ids: ObjectArray
    geometries: ObjectArray
    crs: CRS
    crops: ObjectArray | None
    version: str
    source: str = ""
    repaired: int = 0
    dropped: int = 0
    _reprojected: dict[int, ParcelSet] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def epsg(self) -> int | None:
        """The EPSG code of `crs`, when it has one."""
        code: int | None = self.crs.to_epsg()
        return code

    @property
    def bounds(self) -> Bounds:
        """(minx, miny, maxx, maxy) of all parcels in `crs` coordinates."""
        minx, miny, maxx, maxy = shapely.total_bounds(self.geometries)
        return float(minx), float(miny), float(maxx), float(maxy)

    @cached_property
    def _tree(self) -> shapely.STRtree:
        return shapely.STRtree(self.geometries)

    def to_crs(self, epsg: int) -> ParcelSet:
        """These parcels in EPSG:`epsg` (vertices transformed; cached per code in memory)."""
        if self.epsg == epsg:
            return self
        cached = self._reprojected.get(epsg)
        if cached is not None:
            return cached
        try:
            target = CRS.from_epsg(epsg)
        except CRSError as exc:
            raise CrsMismatch(f"parcels of {self.source}: unknown target EPSG:{epsg}") from exc
        transformer = Transformer.from_crs(self.crs, target, always_xy=True)

        def project(coords: np.ndarray[Any, np.dtype[np.float64]]) -> Any:
            x, y = transformer.transform(coords[:, 0], coords[:, 1])
            return np.column_stack([x, y])

        geometries = shapely.transform(self.geometries, project)
        bad = ~np.isfinite(shapely.bounds(geometries)).all(axis=1)
        if bad.any():
            first = self.ids[np.flatnonzero(bad)[0]]
            raise CrsMismatch(
                f"parcels of {self.source}: parcel {first!r} and {int(bad.sum()) - 1} more "
                f"cannot be projected to EPSG:{epsg}"
            )
        result = replace(
            self,
            geometries=geometries,
            crs=target,
            version=_derived_version(self.version, f"EPSG:{epsg}".encode()),
            _reprojected={},
        )
        self._reprojected[epsg] = result
        return result

    def clip_to_bounds(
        self, bounds: Sequence[float], *, tile: str | None = None, epsg: int | None = None
    ) -> tuple[ParcelSet, IndexArray]:
        """The parcels intersecting `bounds` (minx, miny, maxx, maxy, in `crs`) and their indices.

        `epsg`, when given, is the CRS of `bounds` and must be this set's (else `CrsMismatch`);
        `tile` names the grid in the error raised when no parcel overlaps it.
        """
        if epsg is not None and epsg != self.epsg:
            raise CrsMismatch(
                f"parcels of {self.source} are in {self.crs.to_string()}, the grid in "
                f"EPSG:{epsg}: reproject them with to_crs({epsg}) first"
            )
        minx, miny, maxx, maxy = (float(v) for v in bounds)
        if not (np.isfinite([minx, miny, maxx, maxy]).all() and minx < maxx and miny < maxy):
            raise ParcelError(f"parcels of {self.source}: bad clip bounds {tuple(bounds)}")
        kept = np.sort(self._tree.query(shapely.box(minx, miny, maxx, maxy), "intersects"))
        if kept.size == 0:
            where = f"tile {tile}" if tile else f"bounds {(minx, miny, maxx, maxy)}"
            raise ParcelError(
                f"no parcel of {self.source} overlaps {where} (parcels span "
                f"{tuple(round(v, 1) for v in self.bounds)} in {self.crs.to_string()})"
            )
        kept = kept.astype(np.intp)
        if kept.size == len(self):
            return self, kept
        clipped = replace(
            self,
            ids=self.ids[kept],
            geometries=self.geometries[kept],
            crops=None if self.crops is None else self.crops[kept],
            version=_derived_version(self.version, kept.astype("<i8").tobytes()),
            _reprojected={},
        )
        return clipped, kept


def load_parcels(
    path: str | Path,
    *,
    id_column: str = "id_parcel",
    crop_column: str | None = None,
    layer: str | None = None,
) -> ParcelSet:
    """Read and validate a parcel file: GeoPackage (`.gpkg`) or GeoParquet (`.parquet`).

    `id_column` holds the parcel ids (any type, kept as strings), `crop_column` the optional
    declared crop code, `layer` the GeoPackage layer when there are several.
    """
    path = Path(path)
    if not path.is_file():
        raise ParcelError(f"parcel file {path}: not found")
    suffix = path.suffix.lower()
    if suffix == ".gpkg":
        table, geometry_column, crs = _read_gpkg(path, id_column, crop_column, layer)
    elif suffix in {".parquet", ".geoparquet"}:
        table, geometry_column, crs = _read_geoparquet(path, id_column, crop_column)
    else:
        raise ParcelError(f"parcel file {path}: unsupported format {suffix!r} (.gpkg, .parquet)")
    return _validated(path, table, geometry_column, crs, id_column, crop_column)


def _require_columns(
    path: Path, available: Sequence[str], id_column: str, crop_column: str | None
) -> list[str]:
    wanted = [id_column] if crop_column is None else [id_column, crop_column]
    for column in wanted:
        if column not in available:
            raise ParcelError(
                f"parcel file {path}: no column {column!r} (available: {', '.join(available)})"
            )
    return wanted


def _read_gpkg(
    path: Path, id_column: str, crop_column: str | None, layer: str | None
) -> tuple[pa.Table, str, CRS]:
    try:
        if layer is None:
            layers = [str(name) for name, _ in pyogrio.list_layers(path)]
            if len(layers) != 1:
                raise ParcelError(f"parcel file {path}: {len(layers)} layers {layers}: pick one")
            layer = layers[0]
        info = pyogrio.read_info(path, layer=layer)
        columns = _require_columns(path, list(info["fields"]), id_column, crop_column)
        meta, table = pyogrio.raw.read_arrow(path, layer=layer, columns=columns)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError) as exc:
        raise ParcelError(f"parcel file {path}: unreadable: {_first_line(exc)}") from exc
    if meta["crs"] is None:
        raise ParcelError(f"parcel file {path}: layer {layer!r} has no CRS")
    geometry_column = meta["geometry_name"] or "wkb_geometry"
    return table, geometry_column, _crs(path, meta["crs"])


def _read_geoparquet(
    path: Path, id_column: str, crop_column: str | None
) -> tuple[pa.Table, str, CRS]:
    try:
        parquet = pq.ParquetFile(path)
        geo_raw = (parquet.schema_arrow.metadata or {}).get(b"geo")
        if geo_raw is None:
            raise ParcelError(f"parcel file {path}: no GeoParquet 'geo' metadata")
        geo = json.loads(geo_raw)
        primary = geo["primary_column"]
        spec = geo["columns"][primary]
        encoding = spec["encoding"]
    except (pa.ArrowException, OSError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, ParcelError):
            raise
        raise ParcelError(f"parcel file {path}: not GeoParquet: {_first_line(exc)}") from exc
    if not isinstance(encoding, str) or encoding.upper() != "WKB":
        raise ParcelError(f"parcel file {path}: geometry encoding {encoding!r}, WKB expected")
    if "crs" in spec and spec["crs"] is None:
        raise ParcelError(f"parcel file {path}: the geometry column declares an unknown CRS")
    # GeoParquet 1.0: an absent crs means OGC:CRS84 (longitude, latitude on WGS 84).
    crs = _crs(path, spec.get("crs", "OGC:CRS84"))
    names = [name for name in parquet.schema_arrow.names if name != primary]
    columns = _require_columns(path, names, id_column, crop_column)
    try:
        table = parquet.read(columns=[*columns, primary])
    except (pa.ArrowException, OSError) as exc:
        raise ParcelError(f"parcel file {path}: unreadable: {_first_line(exc)}") from exc
    return table, primary, crs


def _crs(path: Path, raw: object) -> CRS:
    try:
        return CRS.from_json_dict(raw) if isinstance(raw, dict) else CRS.from_user_input(raw)
    except CRSError as exc:
        raise ParcelError(f"parcel file {path}: unusable CRS: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _as_strings(path: Path, column: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    try:
        return pc.cast(column, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ParcelError(
            f"parcel file {path}: column {name!r} of type {column.type} cannot be read as text"
        ) from exc


def _validated(
    path: Path,
    table: pa.Table,
    geometry_column: str,
    crs: CRS,
    id_column: str,
    crop_column: str | None,
) -> ParcelSet:
    if table.num_rows == 0:
        raise ParcelError(f"parcel file {path}: no parcel")
    id_strings = _as_strings(path, table.column(id_column), id_column)
    if id_strings.null_count:
        row = int(pc.index(pc.is_null(id_strings), True).as_py())
        raise ParcelError(f"parcel file {path}: null {id_column} at row {row}")
    if pc.count_distinct(id_strings).as_py() != table.num_rows:
        counts = pc.value_counts(id_strings).flatten()
        dup = pc.filter(counts[0], pc.greater(counts[1], 1))
        raise ParcelError(
            f"parcel file {path}: duplicate {id_column} {dup[0].as_py()!r} "
            f"({len(dup)} ids appear more than once)"
        )
    ids: ObjectArray = id_strings.to_numpy(zero_copy_only=False).astype(object)
    wkb_column = table.column(geometry_column)
    null = pc.is_null(wkb_column).to_numpy(zero_copy_only=False)
    wkb = wkb_column.to_numpy(zero_copy_only=False)
    if null.any():
        raise ParcelError(
            f"parcel file {path}: parcel {ids[null.argmax()]!r} has no geometry "
            f"({int(null.sum())} null geometries)"
        )
    geometries = shapely.from_wkb(wkb, on_invalid="ignore")
    unreadable = shapely.is_missing(geometries)
    if unreadable.any():
        raise ParcelError(
            f"parcel file {path}: parcel {ids[unreadable.argmax()]!r} has unreadable WKB "
            f"({int(unreadable.sum())} such geometries)"
        )
    if shapely.has_z(geometries).any():  # some LPIS exports carry a constant Z
        geometries = shapely.force_2d(geometries)
    crops = None
    if crop_column is not None:
        crops = (
            _as_strings(path, table.column(crop_column), crop_column)
            .to_numpy(zero_copy_only=False)
            .astype(object)
        )
    return _cleaned(path, ids, geometries, crs, crops)


def _cleaned(
    path: Path, ids: ObjectArray, geometries: ObjectArray, crs: CRS, crops: ObjectArray | None
) -> ParcelSet:
    """Drop empty parcels, refuse non-polygons, repair invalid polygons; build the set."""
    empty = shapely.is_empty(geometries)
    types = shapely.get_type_id(geometries)
    wrong = ~empty & (types != _POLYGON) & (types != _MULTIPOLYGON)
    if wrong.any():
        first = int(wrong.argmax())
        raise ParcelError(
            f"parcel file {path}: parcel {ids[first]!r} is a "
            f"{_GEOMETRY_NAMES.get(int(types[first]), 'non-polygon')}, only polygons are "
            f"parcels ({int(wrong.sum())} non-polygon geometries)"
        )
    invalid = ~empty & ~shapely.is_valid(geometries)
    repaired = int(invalid.sum())
    if repaired:
        geometries = geometries.copy()
        geometries[invalid] = _polygonal(
            shapely.make_valid(geometries[invalid], method="structure", keep_collapsed=False)
        )
        empty |= shapely.is_empty(geometries)
        log.warning(
            "%s: repaired %d invalid parcel geometries (e.g. %r)",
            path,
            repaired,
            ids[invalid.argmax()],
        )
    dropped = int(empty.sum())
    if dropped:
        log.warning(
            "%s: dropped %d empty parcel geometries (e.g. %r)", path, dropped, ids[empty.argmax()]
        )
        keep = ~empty
        ids, geometries = ids[keep], geometries[keep]
        crops = None if crops is None else crops[keep]
    if len(ids) == 0:
        raise ParcelError(f"parcel file {path}: no non-empty parcel")
    return ParcelSet(
        ids=ids,
        geometries=geometries,
        crs=crs,
        crops=crops,
        version=_content_version(ids, geometries, crs),
        source=str(path),
        repaired=repaired,
        dropped=dropped,
    )


def _polygonal(geometries: ObjectArray) -> ObjectArray:
    """Keep only the polygons of each geometry (a repaired polygon may carry lines or points)."""
    out = geometries.copy()
    for i, geometry in enumerate(geometries):
        if shapely.get_type_id(geometry) in (_POLYGON, _MULTIPOLYGON):
            continue
        parts = shapely.get_parts(geometry)
        polygons = [p for p in parts if shapely.get_type_id(p) in (_POLYGON, _MULTIPOLYGON)]
        out[i] = shapely.union_all(polygons) if polygons else shapely.Polygon()
    return out


def _crs_identity(crs: CRS) -> bytes:
    """The CRS as its authority code when it has one, so GPKG and PROJJSON spellings agree."""
    authority = crs.to_authority()
    return (":".join(authority) if authority else crs.to_wkt()).encode()


def _content_version(ids: ObjectArray, geometries: ObjectArray, crs: CRS) -> str:
    """A stable hash of ids, geometries (2D little-endian WKB) and CRS."""
    digest = hashlib.sha256(b"parcel-set/1\0")
    digest.update(_crs_identity(crs) + b"\0" + str(len(ids)).encode() + b"\0")
    for start in range(0, len(ids), _HASH_CHUNK):
        chunk = slice(start, start + _HASH_CHUNK)
        digest.update("\0".join(ids[chunk]).encode() + b"\0")
        # WKB is self-delimiting, so plain concatenation is unambiguous.
        digest.update(b"".join(shapely.to_wkb(geometries[chunk], byte_order=1, output_dimension=2)))
    return digest.hexdigest()[:32]


def _derived_version(parent: str, detail: bytes) -> str:
    """The version of a set derived from `parent` (reprojected, clipped) without rehashing."""
    return hashlib.sha256(parent.encode() + b"\0" + detail).hexdigest()[:32]
