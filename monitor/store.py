"""The parcel observation store: a Parquet dataset partitioned by tile and season.

Layout::

    ROOT/_store.json                                           layout version and season rule
    ROOT/tile=31UFS/season=2025/<product_id>.observed.parquet
    ROOT/tile=31UFS/season=2025/<product_id>.reconstructed.parquet
    ROOT/tile=31UFS/season=2025/<product_id>.practices.parquet      stage state (see below)
    ROOT/tile=31UFS/season=2025/<product_id>.pixelsets.npz          stage arrays
    ROOT/_acquisitions/tile=31UFS/season=2025/<product_id>.json     `monitor.acquisition_index`

One file per (tile, season, product id, source). Observed rows are written when an acquisition
is processed, reconstructed rows later by the cloud-removal model: separate files let each stage
replace its own rows atomically, with no read-modify-write. Writing a product replaces the files
it touches (last writer wins), so reprocessing an acquisition never duplicates rows. Which
version of a product id is kept depends on the writer: the streaming worker (`monitor.worker`)
skips a product whose events are committed (its `acquisitions.done` ledger), so the store keeps
the first committed version (only an acquisition redone after a crash, before its commit, is
written again, with the same input); `replay` writes every product it reads, so a replay's
version replaces the older one. A new processing baseline of ESA (a different product id for
the same acquisition) is a different product and is kept beside it.

Every file is written to a hidden tmp file in its partition directory, fsynced, then moved over
the final name with `os.replace` (atomic on POSIX filesystems). Tmp names are unique, so
concurrent writers of different products never clash; scans only read `*.parquet` files, so a
writer killed mid-write leaves only a tmp file, which is ignored and removed on a later open
once it is older than `stale_tmp_seconds` (younger ones may belong to a live writer elsewhere).

A file that is not a readable Parquet file of the contract makes scans raise `StoreError`
naming it: silently skipping observations would make every later answer wrong without notice.
Delete the product with `delete_product` (every file the store holds of it) and reprocess
the acquisition.

The inference stages keep what they must remember between acquisitions in the same partition,
one file per product and kind, written the same atomic way: small tables (`write_state`, e.g.
the ids of the practice events a product emitted) and arrays (`write_arrays`, e.g. the pixel
sets of an acquisition). Being per product, redoing an acquisition replaces its own state, so
a stage that reads only the state of the *other* products (`read_state(exclude=...)`) computes
the same answer again after a crash: what makes events exactly once with Kafka transactions.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

from monitor.errors import StoreError
from monitor.files import atomic_write
from monitor.observations import (
    BAND_STAT_DTYPE,
    FIXED_SCHEMA,
    SOURCES,
    parse_band_stat,
    sort_band_stats,
    validate_observations,
)

LAYOUT_VERSION: Final = 1
MANIFEST: Final = "_store.json"
SEASON_DTYPE: Final[pl.DataType] = pl.Int32()
# Small row groups of parcel-sorted rows let a parcel lookup skip most of a big file by its
# min/max statistics instead of decoding every parcel id.
ROW_GROUP_SIZE: Final = 16_384

#: Kinds of per-product stage state: tables (Parquet) and arrays (uncompressed npz).
STATE_KINDS: Final = ("practices", "heterogeneity")
ARRAY_KINDS: Final = ("pixelsets",)

_SAFE_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SAFE_TILE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class StoredProduct:
    """One file of the store: the rows of one product, tile, season and source."""

    product_id: str
    tile: str
    season: int
    source: str
    path: Path


@dataclass(frozen=True)
class WriteResult:
    """What `ObservationStore.write_acquisition` wrote."""

    product_id: str
    files: tuple[StoredProduct, ...]
    rows: int
    replaced: int  # how many of the files already existed and were replaced


def _check_kind(kind: str, kinds: tuple[str, ...]) -> str:
    if kind not in kinds:
        raise StoreError(f"unknown stage state kind {kind!r} (one of {', '.join(kinds)})")
    return kind


def check_tile(tile: str) -> str:
    """`tile`, refused with `StoreError` unless it is a safe directory name (no path tricks)."""
    if not _SAFE_TILE.match(tile):
        raise StoreError(f"tile id {tile!r} is not a safe directory name")
    return tile


def check_product_id(product_id: str) -> str:
    """`product_id`, refused with `StoreError` unless it is a safe file name."""
    if not _SAFE_NAME.match(product_id):
        raise StoreError(f"product id {product_id!r} is not a safe file name")
    return product_id


class ObservationStore:
    """The parcel observation table on a (possibly shared) filesystem.

    `season_start_month` sets the season rule: 1 (default) makes the season the calendar year of
    `acquired`; e.g. 10 makes October 2024 to September 2025 season 2025 (the harvest year). The
    rule is recorded in the store on first open and must match on every later open.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        season_start_month: int = 1,
        stale_tmp_seconds: float = 3600.0,
    ) -> None:
        if not 1 <= season_start_month <= 12:
            raise StoreError(f"season_start_month {season_start_month} is not a month (1-12)")
        self.root = Path(root)
        self.season_start_month = season_start_month
        self._schemas: dict[tuple[Path, int, int], dict[str, pl.DataType]] = {}
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create store {self.root}: {exc.strerror or exc}") from exc
        self._check_manifest()
        self._remove_stale_tmp(stale_tmp_seconds)

    # -- layout ----------------------------------------------------------------------------

    def _check_manifest(self) -> None:
        expected = {"layout": LAYOUT_VERSION, "season_start_month": self.season_start_month}
        path = self.root / MANIFEST
        if not path.exists():
            body = json.dumps(expected, sort_keys=True).encode()
            atomic_write(path, lambda fh: fh.write(body))
            return
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise StoreError(f"store manifest {path} is unreadable: {exc}") from exc
        if found != expected:
            raise StoreError(f"store {self.root} was created with {found}, not {expected}")

    def _remove_stale_tmp(self, older_than: float) -> None:
        deadline = time.time() - older_than
        for tmp in [*self.root.glob(".*.tmp"), *self.root.glob("tile=*/season=*/.*.tmp")]:
            try:
                if tmp.stat().st_mtime <= deadline:
                    tmp.unlink()
            except FileNotFoundError:  # another process cleaned it first
                continue
            except OSError as exc:
                raise StoreError(f"cannot remove stale tmp file {tmp}: {exc.strerror}") from exc

    def season_of(self, acquired: datetime) -> int:
        """The season of an acquisition time under this store's season rule."""
        late = self.season_start_month > 1 and acquired.month >= self.season_start_month
        return acquired.year + int(late)

    def season_window(self, season: int) -> tuple[datetime, datetime]:
        """First instant of a season and of the next one (UTC)."""
        month = self.season_start_month
        first_year = season - int(month > 1)
        return (
            datetime(first_year, month, 1, tzinfo=UTC),
            datetime(first_year + 1, month, 1, tzinfo=UTC),
        )

    def _season_expr(self) -> pl.Expr:
        year = pl.col("acquired").dt.year()
        if self.season_start_month == 1:
            return year.cast(pl.Int32)
        late = (pl.col("acquired").dt.month() >= self.season_start_month).cast(pl.Int32)
        return (year + late).cast(pl.Int32)

    def _partition(self, tile: str, season: int) -> Path:
        return self.root / f"tile={check_tile(tile)}" / f"season={season}"

    def _path(self, product_id: str, tile: str, season: int, source: str) -> Path:
        name = f"{check_product_id(product_id)}.{source}.parquet"
        return self._partition(tile, season) / name

    # -- writing ---------------------------------------------------------------------------

    def write_acquisition(self, df: pl.DataFrame) -> WriteResult:
        """Write all rows of one product id, replacing what the store held for it.

        The frame is validated against the observation table contract first. It may hold rows
        of several tiles (a Sentinel-1 product spans several) and both sources; each
        (tile, season, source) becomes one file, written atomically.
        """
        df = validate_observations(df)
        if df.is_empty():
            raise StoreError("write_acquisition got no rows: nothing identifies the product")
        products = df.get_column("product_id").unique()
        if len(products) != 1:
            raise StoreError(
                f"write_acquisition takes one product id per call, got {len(products)}"
            )
        product_id = check_product_id(str(products[0]))
        df = df.with_columns(self._season_expr().alias("season"))
        files: list[StoredProduct] = []
        replaced = 0
        for part in df.sort("parcel_id").partition_by(["tile", "season", "source"]):
            tile, season, source = (part.item(0, c) for c in ("tile", "season", "source"))
            path = self._path(product_id, tile, season, source)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create {path.parent}: {exc.strerror or exc}") from exc
            replaced += path.exists()
            rows = part.drop("season")
            atomic_write(path, partial(rows.write_parquet, row_group_size=ROW_GROUP_SIZE))
            files.append(StoredProduct(product_id, tile, season, source, path))
        return WriteResult(product_id, tuple(files), df.height, replaced)

    def delete_product(
        self, product_id: str, tile: str, season: int, source: str | None = None
    ) -> int:
        """Remove a product's rows of one `source`, or (`source` None) everything the store
        holds of it: its rows of every source, its stage state tables and arrays, and its
        acquisition index entry. Returns how many files were removed.

        Each file goes with one unlink (atomic). The rows go last: until a delete cut short is
        retried, the product still shows as stored (`has_product`) and the retry finishes it.
        """
        if source is not None:
            return self._unlink(product_id, self._path(product_id, tile, season, source))
        from monitor.acquisition_index import INDEX_DIR  # the index imports the store

        folder = self._partition(tile, season)
        name = check_product_id(product_id)
        paths = [
            *(folder / f"{name}.{kind}.parquet" for kind in STATE_KINDS),
            *(folder / f"{name}.{kind}.npz" for kind in ARRAY_KINDS),
            self.root / INDEX_DIR / folder.relative_to(self.root) / f"{name}.json",
            *(self._path(product_id, tile, season, src) for src in SOURCES),
        ]
        return sum(self._unlink(product_id, path) for path in paths)

    def _unlink(self, product_id: str, path: Path) -> int:
        try:
            path.unlink()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StoreError(f"cannot delete product {product_id!r}: {exc.strerror}") from exc
        return 1

    # -- reading ---------------------------------------------------------------------------

    def has_product(
        self, product_id: str, tile: str, season: int, source: str | None = None
    ) -> bool:
        """Whether the store holds rows of this product (of one source, or of any)."""
        sources = SOURCES if source is None else (source,)
        return any(self._path(product_id, tile, season, src).exists() for src in sources)

    def products(self, tile: str | None = None, season: int | None = None) -> list[StoredProduct]:
        """The files of the store, optionally of one tile and/or season, in path order."""
        tile_dir = "tile=*" if tile is None else f"tile={check_tile(tile)}"
        season_dir = "season=*" if season is None else f"season={int(season)}"
        found = []
        for path in sorted(self.root.glob(f"{tile_dir}/{season_dir}/*.parquet")):
            stem, _, source = path.name.removesuffix(".parquet").rpartition(".")
            if source not in SOURCES or path.name.startswith("."):
                continue
            tile_value = path.parent.parent.name.removeprefix("tile=")
            season_text = path.parent.name.removeprefix("season=")
            if not season_text.isdigit():
                raise StoreError(f"unexpected directory {path.parent} in the store")
            season_value = int(season_text)
            found.append(StoredProduct(stem, tile_value, season_value, source, path))
        return found

    def _file_schema(
        self, path: Path, known: dict[tuple[Path, int, int], dict[str, pl.DataType]]
    ) -> dict[str, pl.DataType]:
        """A file's schema from its footer, reusing `known` while the file is unchanged."""
        try:
            stat = path.stat()
            key = (path, stat.st_mtime_ns, stat.st_size)
            schema = known.get(key) or pl.read_parquet_schema(path)
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise StoreError(f"corrupt observation file {path}: {exc}") from exc
        for column, dtype in FIXED_SCHEMA.items():
            if schema.get(column) != dtype:
                raise StoreError(f"corrupt observation file {path}: column {column!r} is wrong")
        self._schemas[key] = schema
        return schema

    def scan(self, tile: str | None = None, season: int | None = None) -> pl.LazyFrame:
        """A lazy scan of the store (or of one tile and/or season) with a `season` column.

        Files lacking some band statistic (an S1 product has no `B04_mean`) read them as null.
        """
        files = [p.path for p in self.products(tile, season)]
        schema: dict[str, pl.DataType] = dict(FIXED_SCHEMA)
        stats: set[str] = set()
        known = self._schemas
        self._schemas = {}  # keep only the footers of files that still exist
        for path in files:
            stats.update(c for c in self._file_schema(path, known) if parse_band_stat(c))
        for column in sort_band_stats(stats):
            schema[column] = BAND_STAT_DTYPE
        hive = {"tile": pl.String(), "season": SEASON_DTYPE}
        if not files:
            return pl.LazyFrame(schema={**schema, "season": SEASON_DTYPE})
        return pl.scan_parquet(
            files,
            schema=schema,
            hive_partitioning=True,
            hive_schema=hive,
            missing_columns="insert",
        )

    def parcel_history(
        self, parcel_id: str, tile: str | None = None, season: int | None = None
    ) -> pl.DataFrame:
        """Every row of one parcel, sorted by acquisition time (then sensor, product, source)."""
        query = self.scan(tile, season).filter(pl.col("parcel_id") == parcel_id)
        try:
            rows = query.collect()
        except pl.exceptions.PolarsError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StoreError(f"cannot read store {self.root}: {reason}") from exc
        return rows.sort(["acquired", "sensor", "product_id", "source"])

    # -- stage state -----------------------------------------------------------------------

    def _state_path(self, product_id: str, tile: str, season: int, kind: str, suffix: str) -> Path:
        path = self._partition(tile, season) / f"{check_product_id(product_id)}.{kind}{suffix}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {path.parent}: {exc.strerror or exc}") from exc
        return path

    def write_state(
        self, product_id: str, tile: str, season: int, kind: str, frame: pl.DataFrame
    ) -> Path:
        """Replace a product's state table of `kind` (one of `STATE_KINDS`), atomically."""
        kind = _check_kind(kind, STATE_KINDS)
        path = self._state_path(product_id, tile, season, kind, ".parquet")
        atomic_write(path, frame.write_parquet)
        return path

    def state_files(self, tile: str, season: int, kind: str) -> dict[str, Path]:
        """Product id -> state file of `kind` (a table or an array kind), in product order."""
        suffix = ".npz" if kind in ARRAY_KINDS else ".parquet"
        _check_kind(kind, STATE_KINDS + ARRAY_KINDS)
        ending = f".{kind}{suffix}"
        folder = self._partition(tile, season)
        return {
            path.name.removesuffix(ending): path
            for path in sorted(folder.glob(f"*{ending}"))
            if not path.name.startswith(".")
        }

    def read_state(
        self,
        tile: str,
        season: int,
        kind: str,
        schema: Mapping[str, pl.DataType],
        *,
        exclude: str | None = None,
    ) -> pl.DataFrame:
        """The state tables of `kind` of every product of a tile and season but `exclude`
        (stacked, with a `product_id` column); `schema` gives the columns to read and the
        empty answer's shape."""
        files = {p: f for p, f in self.state_files(tile, season, kind).items() if p != exclude}
        columns = dict(schema)
        frames = []
        for product_id, path in files.items():
            try:
                frame = pl.read_parquet(path, columns=list(columns))
            except (OSError, pl.exceptions.PolarsError) as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise StoreError(f"corrupt state file {path}: {reason}") from exc
            frames.append(
                frame.cast(pl.Schema(columns)).with_columns(pl.lit(product_id).alias("product_id"))
            )
        if not frames:
            return pl.DataFrame(schema={**columns, "product_id": pl.String()})
        return pl.concat(frames)

    def write_arrays(
        self,
        product_id: str,
        tile: str,
        season: int,
        kind: str,
        arrays: Mapping[str, npt.NDArray[Any]],
    ) -> Path:
        """Replace a product's arrays of `kind` (one of `ARRAY_KINDS`): an uncompressed npz,
        written atomically (uncompressed: reading a season back is a copy, not a decode)."""
        path = self._state_path(product_id, tile, season, _check_kind(kind, ARRAY_KINDS), ".npz")
        atomic_write(path, lambda fh: np.savez(fh, allow_pickle=False, **arrays))
        return path

    def read_arrays(self, path: Path, names: Sequence[str]) -> dict[str, npt.NDArray[Any]]:
        """The arrays `names` of an npz state file (only those are read)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                return {name: data[name] for name in names}
        except (OSError, KeyError, ValueError) as exc:
            raise StoreError(f"corrupt state file {path}: {exc}") from exc
