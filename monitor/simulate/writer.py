"""Files the real world delivers: Cloud-Optimized GeoTIFFs, STAC Items, a STAC Catalog and a
GeoParquet 1.0 parcel file, shaped like the real samples in `shared/data/mol-2023`."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
import shapely
from numpy.typing import NDArray
from pyproj import CRS, Transformer
from rasterio.enums import Resampling

from monitor.simulate.grid import TileGrid
from monitor.simulate.sar import Orbit

STAC_EXTENSIONS = [
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "https://stac-extensions.github.io/view/v1.0.0/schema.json",
]
_TIFF = "image/tiff; application=geotiff; profile=cloud-optimized"
_BLOCK = 512  # COG tile side, px


def write_cog(
    path: Path,
    array: NDArray[Any],
    grid: TileGrid,
    resolution: int,
    nodata: float | None,
    overviews: bool = True,
) -> None:
    """A (bands, h, w) or (h, w) array as a COG: ZSTD (level 1) with a predictor, 512-px tiles,
    overviews unless `overviews=False`, compressed on every core.

    ZSTD is read by every GDAL since 2.3 (rasterio, QGIS, the engine) and compresses a full
    tile's band about 4x faster than DEFLATE for the same size. The overviews are built on the
    in-memory dataset rasterio hands to the COG driver, which then copies them as they are:
    left to itself the driver builds them in a compressed temporary file and compresses them
    a second time, which cost twice the CPU of the whole write. The ground truth, which no
    person browses, is written without them (still a valid COG: tiled, IFD first).
    Deterministic.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    bands = array if array.ndim == 3 else array[None]
    count, height, width = bands.shape
    predictor = 3 if array.dtype == np.float32 else 2
    with rasterio.open(
        path,
        "w",
        driver="COG",
        width=width,
        height=height,
        count=count,
        dtype=array.dtype.name,
        crs=f"EPSG:{grid.epsg}",
        transform=grid.transform(resolution),
        nodata=nodata,
        compress="zstd",
        level=1,
        predictor=predictor,
        blocksize=_BLOCK,
        num_threads="ALL_CPUS",
        overviews="AUTO" if overviews else "NONE",
    ) as dst:
        dst.write(bands)
        if overviews and _overview_factors(height, width):
            # reflectance averages; classes and labels must not be averaged into values that
            # mean something else, nor dB (power averages in linear units; nearest is cheaper)
            average = array.dtype == np.uint16
            dst.build_overviews(
                _overview_factors(height, width),
                Resampling.average if average else Resampling.nearest,
            )


def _overview_factors(height: int, width: int) -> list[int]:
    """Halvings until the image fits one block: the levels GDAL's COG driver would make."""
    factors: list[int] = []
    while max(height, width) > _BLOCK * (factors[-1] if factors else 1):
        factors.append(2 * (factors[-1] if factors else 1))
    return factors


@cache
def _footprint(grid: TileGrid) -> tuple[list[float], dict[str, Any]]:
    xmin, ymin, xmax, ymax = grid.bounds
    to_lonlat = Transformer.from_crs(grid.epsg, 4326, always_xy=True)
    xs = [xmax, xmax, xmin, xmin, xmax]
    ys = [ymin, ymax, ymax, ymin, ymin]
    lon, lat = to_lonlat.transform(xs, ys)
    ring = [[float(x), float(y)] for x, y in zip(lon, lat, strict=True)]
    bbox = [min(lon), min(lat), max(lon), max(lat)]
    return [float(v) for v in bbox], {"type": "Polygon", "coordinates": [ring]}


def _transform_list(grid: TileGrid, resolution: int) -> list[float]:
    t = grid.transform(resolution)
    return [t.a, t.b, t.c, t.d, t.e, t.f]


def s2_item(
    item_id: str,
    when: datetime,
    grid: TileGrid,
    cloud_cover: float,
    bands_10m: tuple[str, ...],
    bands_20m: tuple[str, ...],
    platform: str,
    snow_cover: float,
) -> dict[str, Any]:
    assets: dict[str, Any] = {}
    for band in bands_10m + bands_20m:
        asset: dict[str, Any] = {
            "href": f"./{band}.tif",
            "type": _TIFF,
            "roles": ["data"],
            "eo:bands": [{"name": band}],
            "raster:bands": [{"data_type": "uint16", "scale": 0.0001, "offset": 0.0, "nodata": 0}],
        }
        if band in bands_20m:
            asset["gsd"] = 20
            asset["proj:transform"] = _transform_list(grid, 20)
            asset["proj:shape"] = list(grid.shape(20))
        assets[band] = asset
    assets["SCL"] = {
        "href": "./SCL.tif",
        "type": _TIFF,
        "roles": ["data", "cloud"],
        "title": "Scene classification (Sen2Cor SCL)",
        "raster:bands": [{"data_type": "uint8", "nodata": 0}],
        "proj:transform": _transform_list(grid, 20),
        "proj:shape": list(grid.shape(20)),
    }
    return _item(
        item_id,
        when,
        grid,
        {
            "platform": platform,
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "processing:level": "L2A",
            "grid:code": f"MGRS-{grid.tile}",
            "s2:mgrs_tile": grid.tile,
            "eo:cloud_cover": round(cloud_cover, 2),
            "eo:snow_cover": round(snow_cover, 2),
        },
        assets,
    )


def s1_item(
    item_id: str, when: datetime, grid: TileGrid, platform: str, orbit: Orbit, incidence: float
) -> dict[str, Any]:
    assets = {
        pol: {
            "href": f"./{pol}.tif",
            "type": _TIFF,
            "roles": ["data"],
            "title": f"gamma0 {pol}, dB",
            "raster:bands": [{"data_type": "float32", "unit": "dB"}],
        }
        for pol in ("VV", "VH")
    }
    return _item(
        item_id,
        when,
        grid,
        {
            "platform": platform,
            "constellation": "sentinel-1",
            "instruments": ["c-sar"],
            "sat:orbit_state": orbit.state,
            "sat:relative_orbit": orbit.relative_orbit,
            "view:incidence_angle": round(incidence, 2),
            "sar:instrument_mode": "IW",
            "sar:polarizations": ["VV", "VH"],
            "sar:product_type": "GRD",
            "grid:code": f"MGRS-{grid.tile}",
            "processing:level": "L1",
        },
        assets,
    )


def _item(
    item_id: str,
    when: datetime,
    grid: TileGrid,
    sensor_properties: dict[str, Any],
    assets: dict[str, Any],
) -> dict[str, Any]:
    """A STAC Item on the tile's 10 m grid; `sensor_properties` follow the common ones."""
    bbox, geometry = copy.deepcopy(_footprint(grid))
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "stac_extensions": STAC_EXTENSIONS,
        "bbox": bbox,
        "geometry": geometry,
        "properties": {
            "datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "proj:epsg": grid.epsg,
            "proj:shape": list(grid.shape(10)),
            "proj:transform": _transform_list(grid, 10),
            **sensor_properties,
        },
        "links": [],
        "assets": assets,
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1) + "\n")


def write_catalog(out: Path, item_paths: list[Path], description: str) -> None:
    """A STAC Catalog at `out/catalog.json` linking every item (relative hrefs)."""
    links: list[dict[str, Any]] = [
        {"rel": "root", "href": "./catalog.json", "type": "application/json"}
    ]
    links += [
        {
            "rel": "item",
            "href": "./" + path.relative_to(out).as_posix(),
            "type": "application/geo+json",
        }
        for path in sorted(item_paths)
    ]
    write_json(
        out / "catalog.json",
        {
            "type": "Catalog",
            "stac_version": "1.0.0",
            "id": "parcel-monitor-simulation",
            "description": description,
            "links": links,
        },
    )


def write_geoparquet(
    path: Path, columns: dict[str, Any], geometry: NDArray[np.object_], epsg: int
) -> None:
    """GeoParquet 1.0: WKB `geometry` column and the `geo` metadata with a PROJJSON CRS."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({**columns, "geometry": pa.array(shapely.to_wkb(geometry), type=pa.binary())})
    xmin, ymin, xmax, ymax = shapely.total_bounds(geometry)
    types = sorted({shapely.get_type_id(g) for g in geometry})
    names = {3: "Polygon", 6: "MultiPolygon"}
    geo = {
        "version": "1.0.0",
        "primary_column": "geometry",
        "columns": {
            "geometry": {
                "encoding": "WKB",
                "geometry_types": [names[int(t)] for t in types],
                "crs": CRS.from_epsg(epsg).to_json_dict(),
                "bbox": [float(xmin), float(ymin), float(xmax), float(ymax)],
            }
        },
    }
    metadata = {**(table.schema.metadata or {}), b"geo": json.dumps(geo).encode()}
    pq.write_table(table.replace_schema_metadata(metadata), path, compression="zstd")
