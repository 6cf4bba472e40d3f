"""The Rust kernels through `monitor.kernels`, against plain numpy references."""

from __future__ import annotations

import signal
from types import FrameType

import numpy as np
import numpy.typing as npt
import pytest
import rasterio
import shapely
from reference_stats import STATS, dilate_reference, zonal_reference
from sample_data import sample_dir

from monitor import kernels
from monitor.errors import KernelError
from monitor.kernels import LabelRaster
from monitor.labels import build_label_raster

SAMPLE = sample_dir() / "mol-2023" / "s2" / "S2_31UFS_20230405_L2A"
TRANSFORM = (10.0, 0.0, 600000.0, 0.0, -10.0, 5700000.0)


def random_labels(
    rng: np.random.Generator, shape: tuple[int, int], n_parcels: int
) -> npt.NDArray[np.uint32]:
    """Random labels with background (0); the last two parcels get no pixel at all."""
    return rng.integers(0, n_parcels - 1, size=shape).astype(np.uint32)


def block_labels(shape: tuple[int, int], block: int) -> tuple[npt.NDArray[np.uint32], int]:
    """Square parcels of side `block` tiling the grid, numbered row-major from 1."""
    rows = np.arange(shape[0]) // block
    cols = np.arange(shape[1]) // block
    n_cols = cols[-1] + 1
    labels = (rows[:, None] * n_cols + cols[None, :] + 1).astype(np.uint32)
    return labels, int(labels.max())


def assert_matches_reference(df: object, expected: dict[str, npt.NDArray[np.float64]]) -> None:
    import polars as pl

    assert isinstance(df, pl.DataFrame)
    for name, values in expected.items():
        np.testing.assert_allclose(
            df[name].to_numpy().astype(np.float64),
            values,
            rtol=1e-10,
            atol=1e-12,
            equal_nan=True,
            err_msg=name,
        )


# --- zonal statistics --------------------------------------------------------------------------


def test_zonal_u16_with_nodata_mask_and_ndvi_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    shape, n = (57, 73), 40
    labels = random_labels(rng, shape, n)
    bands = {
        name: rng.integers(0, 10000, size=shape, dtype=np.uint16) for name in ("B02", "B04", "B08")
    }
    for band in bands.values():
        band[rng.random(shape) < 0.05] = 0  # nodata
    valid = rng.random(shape) < 0.8
    valid[labels == 3] = False  # parcel 2: no valid pixel
    scales = {"B02": 1e-4, "B04": 1e-4, "B08": 1e-4}
    offsets = {"B08": -0.1}  # some NIR pixels go negative: nir + red <= 0 leaves NDVI
    lr = LabelRaster.from_labels(labels, n, TRANSFORM)

    df = kernels.zonal_statistics(
        lr, bands, valid, scales=scales, offsets=offsets, nodata=0, ndvi=("B04", "B08")
    )

    nodata = dict.fromkeys(bands, 0.0)
    expected = zonal_reference(labels, n, bands, valid, scales, offsets, nodata, ("B04", "B08"))
    assert_matches_reference(df, expected)
    assert df["parcel_index"].to_list() == list(range(n))
    assert df.columns[:4] == ["parcel_index", "pixel_count", "valid_count", "valid_fraction"]
    assert df.columns[4:] == [f"{b}_{s}" for b in (*bands, "NDVI") for s in STATS]
    # The cases the reference must not hide: a parcel without valid pixel, parcels without pixels.
    assert df["valid_count"][2] == 0
    assert np.isnan(df["B04_mean"][2])
    assert df["pixel_count"][n - 1] == 0
    assert df["valid_fraction"][n - 1] == 0.0
    assert (df["NDVI_max"].drop_nans() < 1).all()  # red > 0 on every valid pixel


def test_weighted_means_match_shapely_coverage_with_masks_nodata_and_overlaps() -> None:
    """The weighted mean reads only boundary cells from the label raster (interior pixels
    weigh 1): check it against coverage computed by shapely, cell by cell, independently."""
    rng = np.random.default_rng(5)
    shape, n = (30, 36), 24
    t = TRANSFORM
    parcels = []
    for i in range(n):
        cx = rng.uniform(t[2] - 30, t[2] + 10 * shape[1] + 30)
        cy = rng.uniform(t[5] - 10 * shape[0] - 30, t[5] + 30)
        radius = 3.0 if i % 7 == 0 else rng.uniform(10, 90)  # some smaller than a pixel
        parcels.append(shapely.Point(cx, cy).buffer(radius, quad_segs=3))
    lr = build_label_raster(parcels, *shape, t)
    red = rng.integers(1, 10000, size=shape, dtype=np.uint16)
    nir = rng.integers(1, 10000, size=shape, dtype=np.uint16)
    nir[rng.random(shape) < 0.05] = 0  # nodata
    vv = rng.normal(-12, 3, size=shape).astype(np.float32)
    vv[rng.random(shape) < 0.05] = np.nan
    valid = rng.random(shape) < 0.9
    bands = {"B04": red, "B08": nir, "VV": vv}

    df = kernels.zonal_statistics(
        lr, bands, valid, scales={"B04": 1e-4, "B08": 1e-4}, nodata=0, weighted_mean=True
    )

    rows, cols = np.divmod(np.arange(shape[0] * shape[1]), shape[1])
    cells = shapely.box(
        t[2] + cols * t[0], t[5] + (rows + 1) * t[4], t[2] + (cols + 1) * t[0], t[5] + rows * t[4]
    )
    usable = (valid & (nir != 0) & ~np.isnan(vv)).ravel()
    scaled = {"B04": red.ravel() * 1e-4, "B08": nir.ravel() * 1e-4, "VV": vv.ravel()}
    ndvi_ok = usable & (scaled["B04"] + scaled["B08"] > 0)
    ndvi = (scaled["B08"] - scaled["B04"]) / np.where(ndvi_ok, scaled["B08"] + scaled["B04"], 1)
    partial = 0
    for p, parcel in enumerate(parcels):
        f = shapely.area(shapely.intersection(cells, parcel)) / 100.0
        f[f < 1e-12] = 0.0
        partial += int(((f > 0) & (f < 1 - 1e-12)).sum())
        for name, values, ok in [(b, scaled[b], usable) for b in bands] + [("NDVI", ndvi, ndvi_ok)]:
            w = np.where(ok, f, 0.0)
            expected = (w * np.where(ok, values, 0)).sum() / w.sum() if w.sum() > 0 else np.nan
            got = df[f"{name}_wmean"][p]
            if np.isnan(expected):
                assert np.isnan(got), (p, name)
            else:
                assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), (p, name)
    assert partial > 200
    # Only boundary cells are stored: far fewer than all the covered cells.
    covered = sum(len(lr.coverage(p)[0]) for p in range(n))
    assert 0 < len(lr.cov_pixels) < covered


def test_zonal_float_bands_treat_nan_as_nodata() -> None:
    rng = np.random.default_rng(2)
    shape, n = (40, 31), 25
    labels = random_labels(rng, shape, n)
    vv = rng.normal(-12, 3, size=shape).astype(np.float32)
    vh = rng.normal(-18, 3, size=shape).astype(np.float32)
    vv[rng.random(shape) < 0.1] = np.nan
    vh[:, :4] = np.nan
    lr = LabelRaster.from_labels(labels, n, TRANSFORM)

    df = kernels.zonal_statistics(lr, {"VV": vv, "VH": vh})

    bands = {"VV": vv, "VH": vh}
    expected = zonal_reference(labels, n, bands, None, {}, {}, {}, None)
    assert_matches_reference(df, expected)
    assert not any(c.startswith("NDVI") for c in df.columns)


def test_all_nodata_band_leaves_no_valid_pixel() -> None:
    rng = np.random.default_rng(3)
    shape, n = (20, 20), 10
    labels = random_labels(rng, shape, n)
    lr = LabelRaster.from_labels(labels, n, TRANSFORM)
    good = rng.integers(1, 5000, size=shape, dtype=np.uint16)
    empty = np.zeros(shape, dtype=np.uint16)

    df = kernels.zonal_statistics(lr, {"B04": good, "B11": empty}, nodata={"B11": 0})

    assert (df["valid_count"] == 0).all()
    assert (df["pixel_count"] > 0).sum() == n - 2
    assert df["B04_mean"].is_nan().all()
    assert df["B11_p90"].is_nan().all()


def test_zonal_on_the_real_sample_with_scl_mask() -> None:
    with rasterio.open(SAMPLE / "B04.tif") as src:
        red = src.read(1)
        transform = tuple(src.transform)[:6]
    with rasterio.open(SAMPLE / "B08.tif") as src:
        nir = src.read(1)
    with rasterio.open(SAMPLE / "SCL.tif") as src:
        scl = src.read(1)
    labels, n = block_labels(red.shape, 8)
    lr = LabelRaster.from_labels(labels, n, transform)
    valid = kernels.validity_mask_from_scl(scl, dilation=1)
    bands = {"B04": red, "B08": nir}

    df = kernels.zonal_statistics(lr, bands, valid, scales=1e-4, nodata=0)

    scales = dict.fromkeys(bands, 1e-4)
    nodata = dict.fromkeys(bands, 0.0)
    expected = zonal_reference(labels, n, bands, valid, scales, {}, nodata, ("B04", "B08"))
    assert_matches_reference(df, expected)
    # A clear spring date over fields: mostly valid, reflectance in 0-1, vegetation NDVI > 0.
    assert df["valid_fraction"].mean() > 0.5  # type: ignore[operator]
    assert df["B04_max"].max() <= 1.0  # type: ignore[operator]
    assert df["NDVI_p50"].median() > 0.2  # type: ignore[operator]


def test_zonal_bad_input_names_the_band() -> None:
    labels, n = block_labels((10, 12), 4)
    lr = LabelRaster.from_labels(labels, n, TRANSFORM)
    ok = np.ones((10, 12), dtype=np.uint16)
    with pytest.raises(KernelError, match="band B08 has shape"):
        kernels.zonal_statistics(lr, {"B04": ok, "B08": np.ones((10, 11), dtype=np.uint16)})
    with pytest.raises(KernelError, match=r"band B04 has dtype int64"):
        kernels.zonal_statistics(lr, {"B04": ok.astype(np.int64)})
    with pytest.raises(KernelError, match="band B04 must be 2-D"):
        kernels.zonal_statistics(lr, {"B04": ok[None]})
    with pytest.raises(KernelError, match="unknown band B8A"):
        kernels.zonal_statistics(lr, {"B04": ok}, scales={"B8A": 1e-4})
    with pytest.raises(KernelError, match="scales of band B04 must be finite and > 0"):
        kernels.zonal_statistics(lr, {"B04": ok}, scales={"B04": -1e-4})
    with pytest.raises(KernelError, match="NDVI band B05"):
        kernels.zonal_statistics(lr, {"B04": ok}, ndvi=("B04", "B05"))
    with pytest.raises(KernelError, match="valid mask"):
        kernels.zonal_statistics(lr, {"B04": ok}, np.ones((3, 3), dtype=bool))
    with pytest.raises(KernelError, match="coverage"):
        kernels.zonal_statistics(lr, {"B04": ok}, weighted_mean=True)


def test_zonal_reads_non_contiguous_and_integer_masks() -> None:
    rng = np.random.default_rng(4)
    labels, n = block_labels((16, 16), 4)
    lr = LabelRaster.from_labels(labels, n, TRANSFORM)
    wide = rng.integers(1, 100, size=(16, 32), dtype=np.uint16)
    view = wide[:, ::2]  # strided view: the facade makes it contiguous
    mask = (rng.random((16, 16)) < 0.5).astype(np.uint8)

    df = kernels.zonal_statistics(lr, {"B04": view}, mask)

    expected = zonal_reference(labels, n, {"B04": view}, mask.astype(bool), {}, {}, {}, None)
    assert_matches_reference(df, expected)


def test_ctrl_c_interrupts_a_long_pass() -> None:
    class Interrupted(Exception):
        pass

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted

    labels, n = block_labels((2000, 2000), 50)
    lr = LabelRaster.from_labels(labels, n, TRANSFORM)
    band = np.random.default_rng(5).integers(1, 10000, size=(2000, 2000), dtype=np.uint16)
    # The same array 100 times: a pass of seconds (stopped after ~50 ms) without 100 copies.
    bands = {f"B{i:03d}": band for i in range(100)}
    previous = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        with pytest.raises(Interrupted):
            kernels.zonal_statistics(lr, bands)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- validity masks ----------------------------------------------------------------------------


@pytest.mark.parametrize("dilation", [0, 1, 3])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_scl_mask_matches_numpy(dilation: int, dtype: type[np.generic]) -> None:
    rng = np.random.default_rng(dilation)
    scl = rng.choice(np.array([4, 5, 6, 4, 4, 4, 4, 8, 9, 3, 12], dtype=dtype), size=(90, 70))
    valid = kernels.validity_mask_from_scl(scl, dilation=dilation)
    invalid = np.isin(scl, kernels.DEFAULT_INVALID_SCL)
    np.testing.assert_array_equal(valid, ~dilate_reference(invalid, dilation))
    assert valid.dtype == np.bool_


def test_scl_mask_with_custom_classes() -> None:
    scl = np.array([[4, 5, 8], [9, 10, 3]], dtype=np.uint8)
    valid = kernels.validity_mask_from_scl(scl, invalid_classes=[5, 10])
    np.testing.assert_array_equal(valid, [[True, False, True], [True, False, True]])


def test_probability_mask_threshold_nodata_and_dilation() -> None:
    rng = np.random.default_rng(7)
    prob = rng.random((50, 60)).astype(np.float32)
    prob[prob < 0.02] = np.nan
    prob[5, 5] = -1
    valid = kernels.validity_mask_from_probability(prob, 0.9, dilation=2, nodata=-1)
    invalid = np.isnan(prob) | (prob == -1) | (prob > 0.9)
    np.testing.assert_array_equal(valid, ~dilate_reference(invalid, 2))

    clp = (rng.random((30, 30)) * 100).astype(np.uint8)
    clp[0, :] = 255
    valid = kernels.validity_mask_from_probability(clp, 40, nodata=255)
    np.testing.assert_array_equal(valid, (clp <= 40) & (clp != 255))


def test_mask_bad_input() -> None:
    with pytest.raises(KernelError, match="SCL raster has dtype float32"):
        kernels.validity_mask_from_scl(np.zeros((3, 3), dtype=np.float32))
    with pytest.raises(KernelError, match="dilation"):
        kernels.validity_mask_from_scl(np.zeros((3, 3), dtype=np.uint8), dilation=-1)
    with pytest.raises(KernelError, match="must be 2-D"):
        kernels.validity_mask_from_probability(np.zeros(9, dtype=np.float32), 0.5)


def test_upsample_nearest_repeats_pixels() -> None:
    scl = np.random.default_rng(8).integers(0, 12, size=(7, 5), dtype=np.uint8)
    up = kernels.upsample_nearest(scl, 2)
    np.testing.assert_array_equal(up, np.repeat(np.repeat(scl, 2, axis=0), 2, axis=1))
    assert up.dtype == np.uint8


# --- pixel sets --------------------------------------------------------------------------------


def test_pixel_sets_are_deterministic_valid_and_masked() -> None:
    rng = np.random.default_rng(9)
    shape, n, s = (40, 40), 30, 16
    labels = random_labels(rng, shape, n)
    b04 = rng.integers(1, 10000, size=shape, dtype=np.uint16)
    b08 = rng.integers(1, 10000, size=shape, dtype=np.uint16)
    b04[rng.random(shape) < 0.1] = 0
    valid = rng.random(shape) < 0.7
    valid[labels == 1] = False
    lr = LabelRaster.from_labels(labels, n, TRANSFORM)
    bands = {"B04": b04, "B08": b08}

    a = kernels.pixel_sets(lr, bands, valid, n_samples=s, seed=42, scales=1e-4, nodata=0)
    b = kernels.pixel_sets(lr, bands, valid, n_samples=s, seed=42, scales=1e-4, nodata=0)
    c = kernels.pixel_sets(lr, bands, valid, n_samples=s, seed=43, scales=1e-4, nodata=0)

    assert a.values.shape == (n, s, 2)
    assert a.values.dtype == np.float32
    assert a.mask.shape == (n, s)
    assert a.mask.dtype == np.bool_
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert not np.array_equal(a.values, c.values)
    usable = valid & (b04 != 0)
    for p in range(n):
        members = np.flatnonzero((labels == p + 1) & usable)
        count = min(len(members), s)
        assert a.mask[p].sum() == count
        assert a.mask[p, :count].all()
        np.testing.assert_array_equal(a.values[p, count:], 0.0)
        pairs = (
            (b04.ravel()[members] * 1e-4).astype(np.float32),
            (b08.ravel()[members] * 1e-4).astype(np.float32),
        )
        member_set = set(zip(pairs[0].tolist(), pairs[1].tolist(), strict=True))
        drawn = [tuple(v) for v in a.values[p, :count].tolist()]
        assert set(drawn) <= member_set
        if len(members) <= s:  # all of them, in pixel order
            assert drawn == list(zip(pairs[0].tolist(), pairs[1].tolist(), strict=True))
    assert not a.mask[0].any()  # parcel 0 is fully masked


def test_pixel_sets_reject_zero_samples() -> None:
    labels, n = block_labels((8, 8), 4)
    lr = LabelRaster.from_labels(labels, n, TRANSFORM)
    with pytest.raises(KernelError, match="n_samples"):
        kernels.pixel_sets(lr, {"B04": np.ones((8, 8), dtype=np.uint16)}, n_samples=0)


# --- tiling ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "tile", "overlap"),
    [(100, 130, 32, 8), (64, 64, 32, 0), (20, 45, 32, 4), (33, 97, 16, 15)],
)
def test_windows_cover_the_grid_and_round_trip(
    height: int, width: int, tile: int, overlap: int
) -> None:
    windows = kernels.tile_windows(height, width, tile, overlap)
    covered = np.zeros((height, width), dtype=int)
    for w in windows:
        assert w.row + w.height <= height
        assert w.col + w.width <= width
        assert w.height == min(tile, height)
        assert w.width == min(tile, width)
        covered[w.row : w.row + w.height, w.col : w.col + w.width] += 1
    assert covered.min() >= 1

    image = np.random.default_rng(10).normal(size=(3, height, width)).astype(np.float32)
    tiles = kernels.extract_tiles(image, tile, overlap)
    assert tiles.shape == (len(windows), 3, tile, tile)
    np.testing.assert_array_equal(kernels.stitch(tiles, height, width, overlap), image)


def test_stitching_blends_seams_away() -> None:
    height, width, tile, overlap = 96, 96, 32, 12
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.sin(xx / 15.0)[None].astype(np.float32) + np.cos(yy / 11.0)[None]
    tiles = kernels.extract_tiles(image, tile, overlap)
    # Each window's model output is off by its own constant: hard pasting would leave steps.
    bias = np.random.default_rng(11).uniform(-1, 1, size=len(tiles)).astype(np.float32)
    error = kernels.stitch(tiles + bias[:, None, None, None], height, width, overlap) - image
    largest_step = max(np.abs(np.diff(error, axis=1)).max(), np.abs(np.diff(error, axis=2)).max())
    bias_spread = bias.max() - bias.min()
    assert largest_step < 0.25 * bias_spread
    assert error.min() >= bias.min() - 1e-5
    assert error.max() <= bias.max() + 1e-5


def test_tiling_bad_input() -> None:
    with pytest.raises(KernelError, match="overlap"):
        kernels.tile_windows(100, 100, 32, 32)
    with pytest.raises(KernelError, match="tiles"):
        kernels.stitch(np.zeros((3, 1, 8, 8), dtype=np.float32), 20, 20, 2)
