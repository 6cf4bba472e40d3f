"""Parcel label rasters against the reference tools: pixel-centre labels against
`rasterio.features.rasterize`, coverage fractions against shapely's exact areas and against
exactextract, on the real Mol sample and on random polygons."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import exactextract
import numpy as np
import numpy.typing as npt
import pyogrio
import pytest
import rasterio
import rasterio.features
import shapely
from affine import Affine
from sample_data import sample_path

from monitor.errors import AssetError, ConfigError, KernelError, ParcelError
from monitor.labels import (
    LabelRaster,
    build_label_raster,
    cached_label_raster,
    load_label_raster,
    save_label_raster,
)

RANDOM_TRANSFORM = Affine(10.0, 0.0, 300_003.37, 0.0, -10.0, 5_000_011.91)
RANDOM_SHAPE = (40, 50)


def mol_band() -> Path:
    """B04 of the clear 2023-04-15 acquisition over Mol."""
    return sample_path("mol-2023", "s2", "S2_31UFS_20230415_L2A", "B04.tif")


def mol_segments() -> npt.NDArray[np.object_]:
    _, _, wkb, _ = pyogrio.raw.read(sample_path("mol-2023", "segments.gpkg"))
    return np.asarray(shapely.from_wkb(wkb))


def rasterio_labels(
    geoms: Sequence[shapely.Geometry], shape: tuple[int, int], transform: Affine
) -> npt.NDArray[np.uint32]:
    """GDAL's pixel-centre labels; burnt in reverse so that, as in ours, the first parcel wins."""
    shapes = [(g, i + 1) for i, g in enumerate(geoms) if g is not None and not g.is_empty]
    return rasterio.features.rasterize(
        reversed(shapes), out_shape=shape, transform=transform, all_touched=False, dtype="uint32"
    )


def star(rng: np.random.Generator, cx: float, cy: float, radius: float) -> npt.NDArray[np.float64]:
    """Vertices of a random ring, star-shaped around (cx, cy) (angle gaps below pi)."""
    n = int(rng.integers(5, 14))
    angles = (np.arange(n) + rng.uniform(0, 1, n)) * (2 * np.pi / n)
    radii = rng.uniform(0.4, 1.0, n) * radius
    return np.column_stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)])


def random_parcels(seed: int, n: int = 30) -> list[shapely.Geometry]:
    """Random polygons over and around the random grid: some with holes, some multipolygons,
    some partly or wholly outside the grid, overlapping each other."""
    rng = np.random.default_rng(seed)
    x0, y0 = RANDOM_TRANSFORM.c, RANDOM_TRANSFORM.f
    height, width = RANDOM_SHAPE
    parcels: list[shapely.Geometry] = []
    for _ in range(n):
        cx = rng.uniform(x0 - 60, x0 + 10 * width + 60)
        cy = rng.uniform(y0 - 10 * height - 60, y0 + 60)
        radius = rng.uniform(8, 90)
        outer = star(rng, cx, cy, radius)
        kind = rng.integers(0, 3)
        if kind == 0:
            parcels.append(shapely.Polygon(outer))
        elif kind == 1:
            hole = (outer - [cx, cy]) * rng.uniform(0.2, 0.35) + [cx, cy]
            parcels.append(shapely.Polygon(outer, [hole[::-1] if rng.random() < 0.5 else hole]))
        else:
            other = star(rng, cx + 2.5 * radius, cy - 0.5 * radius, radius)
            parcels.append(shapely.MultiPolygon([shapely.Polygon(outer), shapely.Polygon(other)]))
    assert shapely.is_valid(parcels).all()
    return parcels


def test_labels_match_rasterio_on_mol_segments() -> None:
    geoms = mol_segments()
    with rasterio.open(mol_band()) as ds:
        shape, transform = (ds.height, ds.width), ds.transform
    lr = build_label_raster(geoms, *shape, transform)
    expected = rasterio_labels(list(geoms), shape, transform)
    assert lr.shape == shape
    np.testing.assert_array_equal(lr.labels, expected)
    assert lr.pixel_counts.sum() == np.count_nonzero(expected)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_labels_match_rasterio_on_random_polygons(seed: int) -> None:
    parcels = random_parcels(seed)
    lr = build_label_raster(parcels, *RANDOM_SHAPE, RANDOM_TRANSFORM, coverage=False)
    expected = rasterio_labels(parcels, RANDOM_SHAPE, RANDOM_TRANSFORM)
    np.testing.assert_array_equal(lr.labels, expected)
    # The per-parcel pixel lists index the same labels.
    for p in range(lr.n_parcels):
        pixels = lr.parcel_pixels(p)
        assert (lr.labels.ravel()[pixels] == p + 1).all()
        assert len(pixels) == np.count_nonzero(expected == p + 1)


def test_labels_match_rasterio_on_ties() -> None:
    # Vertices on a half-pixel lattice put vertices, vertical edges and horizontal edges
    # exactly on pixel centres; rings of both orientations, with holes.
    rng = np.random.default_rng(11)
    x0, y0 = RANDOM_TRANSFORM.c, RANDOM_TRANSFORM.f
    parcels = []
    for _ in range(60):
        xs = x0 + 5.0 * np.sort(rng.choice(100, 4, replace=False))
        ys = y0 - 5.0 * np.sort(rng.choice(80, 4, replace=False))
        outer = shapely.box(xs[0], ys[3], xs[3], ys[0], ccw=bool(rng.random() < 0.5))
        hole = shapely.box(xs[1], ys[2], xs[2], ys[1], ccw=bool(rng.random() < 0.5))
        parcels.append(shapely.Polygon(outer.exterior, [hole.exterior]))
        n = 7
        angles = (np.arange(n) + rng.uniform(0, 1, n)) * (2 * np.pi / n)
        radii = rng.integers(3, 30, n)
        cx, cy = rng.integers(0, 100), rng.integers(0, 80)
        star_xy = np.column_stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)])
        lattice = np.column_stack([x0, y0]) + 5.0 * np.round(star_xy) * [1, -1]
        star_polygon = shapely.Polygon(lattice)
        if star_polygon.is_valid:
            parcels.append(star_polygon)
    for p, parcel in enumerate(parcels):
        lr = build_label_raster([parcel], *RANDOM_SHAPE, RANDOM_TRANSFORM, coverage=False)
        expected = rasterio_labels([parcel], RANDOM_SHAPE, RANDOM_TRANSFORM)
        assert (lr.labels == expected).all(), f"parcel {p}: {parcel.wkt}"


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_coverage_fractions_are_exact_areas(seed: int) -> None:
    parcels = random_parcels(seed, n=20)
    lr = build_label_raster(parcels, *RANDOM_SHAPE, RANDOM_TRANSFORM)
    height, width = RANDOM_SHAPE
    t = RANDOM_TRANSFORM
    rows, cols = np.divmod(np.arange(height * width), width)
    cells = shapely.box(
        t.c + cols * t.a, t.f + (rows + 1) * t.e, t.c + (cols + 1) * t.a, t.f + rows * t.e
    )
    checked_partial = 0
    for p, parcel in enumerate(parcels):
        near = shapely.intersects(cells, shapely.envelope(parcel))
        expected = np.zeros(height * width)
        expected[near] = shapely.area(shapely.intersection(cells[near], parcel)) / (t.a * -t.e)
        got = np.zeros(height * width)
        cov_pixels, fractions = lr.coverage(p)
        got[cov_pixels] = fractions
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
        assert (fractions > 0).all()
        assert (fractions <= 1).all()
        checked_partial += int(((expected > 0) & (expected < 1)).sum())
    assert checked_partial > 100


def test_coverage_matches_exactextract_cells_and_weighted_means() -> None:
    # The segments follow pixel edges; buffering them gives every border cell a partial
    # fraction and makes neighbours overlap.
    segments = mol_segments()
    for geoms in (segments, shapely.buffer(segments, 4.3, quad_segs=4)):
        with rasterio.open(mol_band()) as ds:
            band = ds.read(1).astype(np.float64)
            lr = build_label_raster(geoms, ds.height, ds.width, ds.transform)
            features = [
                {"type": "Feature", "properties": {"i": i}, "geometry": shapely.geometry.mapping(g)}
                for i, g in enumerate(geoms)
            ]
            reference = exactextract.exact_extract(
                ds, features, ["cell_id", "coverage", "mean"], include_cols=["i"]
            )
        assert len(reference) == len(geoms)
        for feature in reference:
            props = feature["properties"]
            p = props["i"]
            cov_pixels, fractions = lr.coverage(p)
            order = np.argsort(props["cell_id"])
            np.testing.assert_array_equal(cov_pixels, np.asarray(props["cell_id"])[order])
            np.testing.assert_allclose(fractions, np.asarray(props["coverage"])[order], atol=1e-9)
            values = band.ravel()[cov_pixels]
            mean = float((fractions * values).sum() / fractions.sum())
            assert mean == pytest.approx(props["mean"], rel=1e-6)


def test_empty_and_missing_geometries_get_no_pixels() -> None:
    square = shapely.box(300_020, 5_000_000 - 200, 300_100, 5_000_000 - 100)
    geoms = [shapely.Polygon(), square, None, shapely.MultiPolygon()]
    lr = build_label_raster(geoms, *RANDOM_SHAPE, RANDOM_TRANSFORM)
    assert lr.n_parcels == 4
    counts = lr.pixel_counts
    assert counts[[0, 2, 3]].tolist() == [0, 0, 0]
    assert counts[1] == np.count_nonzero(lr.labels == 2) > 0
    assert len(lr.coverage(0)[0]) == 0
    nothing = build_label_raster([None, shapely.Polygon()], *RANDOM_SHAPE, RANDOM_TRANSFORM)
    assert nothing.n_parcels == 2
    assert not nothing.labels.any()


def test_arrays_are_read_only_views_that_outlive_the_raster() -> None:
    lr = build_label_raster(random_parcels(8), *RANDOM_SHAPE, RANDOM_TRANSFORM)
    labels, offsets = lr.labels, lr.offsets
    assert not labels.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        labels[0, 0] = 7
    assert np.shares_memory(labels, lr.labels)
    snapshot = labels.copy()
    del lr
    np.testing.assert_array_equal(labels, snapshot)
    assert offsets[-1] == np.count_nonzero(snapshot)


def test_bad_parcels_are_refused_naming_the_parcel() -> None:
    bowtie = shapely.Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    with pytest.raises(ParcelError, match="parcel 1 is an invalid polygon"):
        build_label_raster([shapely.box(0, 0, 1, 1), bowtie], 4, 4, (1, 0, 0, 0, -1, 4))
    with pytest.raises(ParcelError, match="parcel 0 is a Point"):
        build_label_raster([shapely.Point(1, 1)], 4, 4, (1, 0, 0, 0, -1, 4))


def test_unsupported_grids_are_kernel_errors() -> None:
    square = [shapely.box(0, 0, 1, 1)]
    with pytest.raises(KernelError, match="rotated"):
        build_label_raster(square, 4, 4, Affine.rotation(10) @ Affine.scale(1, -1))
    with pytest.raises(KernelError, match="u32"):
        build_label_raster(square, 70_000, 70_000, (10, 0, 0, 0, -10, 0))
    with pytest.raises(KernelError, match="6 terms"):
        build_label_raster(square, 4, 4, (1, 0, 0))


def test_save_load_round_trip_and_corrupt_file(tmp_path: Path) -> None:
    lr = build_label_raster(random_parcels(9), *RANDOM_SHAPE, RANDOM_TRANSFORM)
    path = tmp_path / "tile.labels"
    save_label_raster(lr, path)
    back = load_label_raster(path)
    assert (back.n_parcels, back.shape, back.transform) == (lr.n_parcels, lr.shape, lr.transform)
    for name in ("labels", "offsets", "pixels", "cov_offsets", "cov_pixels", "cov_fraction"):
        np.testing.assert_array_equal(getattr(back, name), getattr(lr, name))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind

    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AssetError, match="truncated"):
        load_label_raster(path)
    path.write_bytes(b"not a label raster at all")
    with pytest.raises(AssetError, match="corrupt"):
        load_label_raster(path)
    with pytest.raises(AssetError, match="cannot read"):
        load_label_raster(tmp_path / "missing.labels")


def test_cache_builds_once_and_rebuilds_a_corrupt_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    parcels = random_parcels(10)
    builds = 0

    def build() -> LabelRaster:
        nonlocal builds
        builds += 1
        return build_label_raster(parcels, *RANDOM_SHAPE, RANDOM_TRANSFORM)

    first = cached_label_raster(tmp_path, "31UFS-v1", build)
    second = cached_label_raster(tmp_path, "31UFS-v1", build)
    assert builds == 1
    np.testing.assert_array_equal(first.labels, second.labels)

    (tmp_path / "31UFS-v1.labels").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="monitor.labels"):
        third = cached_label_raster(tmp_path, "31UFS-v1", build)
    assert builds == 2
    assert "rebuilding" in caplog.text
    np.testing.assert_array_equal(third.cov_fraction, first.cov_fraction)
    assert load_label_raster(tmp_path / "31UFS-v1.labels").n_parcels == len(parcels)

    with pytest.raises(ConfigError, match="cache key"):
        cached_label_raster(tmp_path, "../escape", build)
