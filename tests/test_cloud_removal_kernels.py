"""The cloud-removal pixel kernels (`monitor.kernels.block_mean`, `block_any`,
`detail_transfer`, `physical_values`, `fill_back`) against straightforward numpy, and the
stage's block geometry."""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt
import pytest

from monitor.errors import KernelError
from monitor.kernels import (
    block_any,
    block_mean,
    detail_transfer,
    fill_back,
    physical_values,
    tile_windows,
)
from monitor.stages.reconstruction import _blocks

Floats = npt.NDArray[np.float32]


def _padded(a: npt.NDArray[np.generic], f: int) -> npt.NDArray[np.generic]:
    pad = ((0, 0), (0, -a.shape[1] % f), (0, -a.shape[2] % f))
    return np.pad(a, pad, "edge")


def _blocks_of(a: npt.NDArray[np.generic], f: int) -> npt.NDArray[np.generic]:
    """`[C, h, w, f*f]`: each block's pixels (edge-padded), row-major inside the block."""
    p = _padded(a, f)
    c, h, w = p.shape[0], p.shape[1] // f, p.shape[2] // f
    return p.reshape(c, h, f, w, f).transpose(0, 1, 3, 2, 4).reshape(c, h, w, f * f)


def _numpy_block_mean(a: Floats, f: int, decibel: bool) -> Floats:
    values = _blocks_of(a, f).astype(np.float64)
    if decibel:
        values = 10 ** (values / 10)
    finite = np.isfinite(values)
    count = finite.sum(axis=-1)
    total = np.where(finite, values, 0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        out = 10 * np.log10(mean) if decibel else mean
    return np.where(count > 0, out, np.nan).astype(np.float32)


@pytest.mark.parametrize(("shape", "factor"), [((3, 7, 9), 2), ((2, 8, 8), 2), ((1, 10, 5), 3)])
@pytest.mark.parametrize("decibel", [False, True])
def test_block_mean_matches_numpy(shape: tuple[int, int, int], factor: int, decibel: bool) -> None:
    rng = np.random.default_rng(sum(shape) + factor)
    low, high = (-25.0, 5.0) if decibel else (0.0, 0.6)
    a = rng.uniform(low, high, shape).astype(np.float32)
    a[rng.random(shape) < 0.3] = np.nan
    a[:, :factor, :factor] = np.nan  # one block with no finite value
    got = block_mean(a, factor, decibel=decibel)
    expected = _numpy_block_mean(a, factor, decibel)
    assert got.shape == expected.shape == (shape[0], -(-shape[1] // factor), -(-shape[2] // factor))
    assert np.isnan(got[:, 0, 0]).all()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    # float32 sums of <= 9 values (and float32 exp/log10 in dB): a few ulps.
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_block_any_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    mask = rng.random((9, 11)) < 0.05
    expected = _blocks_of(mask[None], 2)[0].any(axis=-1)
    np.testing.assert_array_equal(block_any(mask, 2), expected)
    assert expected.any()
    assert not expected.all()


def test_detail_transfer_matches_numpy_upsampling() -> None:
    rng = np.random.default_rng(2)
    c, h, w, f = 3, 9, 7, 2
    t0 = rng.uniform(0, 0.5, (c, h, w)).astype(np.float32)
    t0[:, 0, 0] = np.nan
    coarse_t0 = block_mean(t0, f)
    coarse_t0[:, 1, 1] = np.nan  # a block without t0: change counted 0
    predicted = rng.uniform(0, 0.5, coarse_t0.shape).astype(np.float32)
    sigma = rng.uniform(0.01, 0.05, coarse_t0.shape).astype(np.float32)
    pixels = rng.random((h, w)) < 0.6
    reflectance = np.full((c, h, w), 7.0, np.float32)
    uncertainty = np.zeros((c, h, w), np.float32)
    detail_transfer(coarse_t0, predicted, sigma, t0, pixels, f, reflectance, uncertainty)

    def up(a: Floats) -> Floats:
        return a.repeat(f, axis=1).repeat(f, axis=2)[:, :h, :w]

    expected = t0 + up(np.nan_to_num(predicted - coarse_t0))
    np.testing.assert_allclose(reflectance[:, pixels], expected[:, pixels], rtol=1e-6)
    np.testing.assert_array_equal(uncertainty[:, pixels], up(sigma)[:, pixels])
    assert (reflectance[:, ~pixels] == 7.0).all()
    assert (uncertainty[:, ~pixels] == 0).all()


@pytest.mark.parametrize(
    ("dtype", "scale", "offset", "nodata"),
    [(np.uint16, 1e-4, -0.1, 0.0), (np.int16, 0.01, 0.0, -9999.0), (np.float32, 1.0, 0.0, None)],
)
def test_physical_values_match_numpy(
    dtype: type[np.generic], scale: float, offset: float, nodata: float | None
) -> None:
    rng = np.random.default_rng(3)
    raw = rng.integers(1, 9000, (6, 5)).astype(dtype)
    if nodata is not None:
        raw[0, :2] = nodata
    if np.issubdtype(dtype, np.floating):
        raw[1, 1] = np.nan
    valid = rng.random((6, 5)) < 0.8
    out = np.empty((6, 5), np.float32)
    physical_values(raw, scale, offset, nodata, out, valid)
    expected = raw.astype(np.float32) * np.float32(scale) + np.float32(offset)
    blank = np.isnan(expected) | ~valid
    if nodata is not None and not math.isnan(nodata):
        blank |= raw == nodata
    expected[blank] = np.nan
    np.testing.assert_array_equal(out, expected)
    assert np.isnan(out).any()


def test_fill_back_matches_numpy_bookkeeping() -> None:
    rng = np.random.default_rng(4)
    c, height, width, n = 3, 10, 12, 5
    bands = rng.uniform(0, 0.5, (c, height, width)).astype(np.float32)
    done = np.zeros((height, width), bool)
    sums = (np.zeros(n), np.zeros((c, n)), np.zeros(n))
    h, w, row, col = 4, 6, 3, 5
    reflectance = rng.uniform(0, 0.5, (c, h, w)).astype(np.float32)
    sigma = rng.uniform(0.005, 0.05, (c, h, w)).astype(np.float32)
    reflectance[1, 0, 0] = np.nan  # not finite in one band: not filled
    target = rng.random((h, w)) < 0.7
    target[0, 0] = True
    labels = rng.integers(0, n, (h, w)).astype(np.uint32)
    expected_bands = bands.copy()
    fill_back(bands, done, sums, (reflectance, sigma), target, labels, (row, col), 0.02)

    ok = target & np.isfinite(reflectance).all(axis=0) & np.isfinite(sigma).all(axis=0)
    view = expected_bands[:, row : row + h, col : col + w]
    view[:, ok] = reflectance[:, ok]
    np.testing.assert_array_equal(bands, expected_bands)
    assert done.sum() == ok.sum()
    assert done[row : row + h, col : col + w][ok].all()
    where = labels[ok]
    np.testing.assert_array_equal(sums[0], np.bincount(where, minlength=n))
    for j in range(c):
        expected = np.bincount(where, weights=sigma[j][ok], minlength=n)
        np.testing.assert_allclose(sums[1][j], expected, rtol=1e-9)
    weights = np.exp(-sigma[:, ok].astype(np.float64).mean(axis=0) / 0.02)
    np.testing.assert_allclose(sums[2], np.bincount(where, weights=weights, minlength=n), rtol=1e-6)


def test_bad_kernel_inputs_are_one_line_errors() -> None:
    image = np.zeros((1, 4, 4), np.float32)
    out = np.zeros((1, 2, 2), np.float32)
    cases = [
        lambda: block_mean(image[0], 2),  # 2-D
        lambda: block_mean(image, 0),
        lambda: block_any(np.zeros((4, 4), np.uint8), 2),  # not bool
        lambda: detail_transfer(  # blocks of 1 x 1 for 4 x 4 pixels in blocks of 2
            out[:, :1, :1],
            out[:, :1, :1],
            out[:, :1, :1],
            image,
            np.ones((4, 4), bool),
            2,
            image.copy(),
            image.copy(),
        ),
        lambda: physical_values(np.zeros((4, 4), np.uint16), 1.0, 0.0, None, out[0]),
        lambda: fill_back(
            image.copy(),
            np.zeros((4, 4), bool),
            (np.zeros(1), np.zeros((1, 1)), np.zeros(1)),
            (out, out),
            np.ones((2, 2), bool),
            np.full((2, 2), 3, np.uint32),  # label 3 of 1
            (0, 0),
            0.02,
        ),
    ]
    for case in cases:
        with pytest.raises(KernelError) as error:
            case()
        assert "\n" not in str(error.value)


@pytest.mark.parametrize(("coarsen", "block_rows"), [(2, 512), (2, 1000), (1, 512)])
def test_blocks_hold_whole_network_windows(coarsen: int, block_rows: int) -> None:
    """Interior blocks span exactly n windows of the tiling kernel, none cut by a block edge,
    and the cores cover every target row once."""
    tile, overlap = 128, 16
    target = np.zeros((3000, 700), bool)
    target[37:2950:3, 5:690] = True
    blocks = _blocks(target, block_rows, tile, overlap, coarsen)
    cores = [(core0, core1) for (_, core0, core1, _), _ in blocks]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(cores))
    assert cores[0][0] <= 37
    assert cores[-1][1] >= 2948
    for (ctx0, core0, core1, ctx1), (c0, _) in blocks[1:-1]:
        assert ctx0 % coarsen == 0
        assert c0 % coarsen == 0
        assert core1 - core0 <= block_rows
        rows = -(-(ctx1 - ctx0) // coarsen)
        n = len(tile_windows(rows, tile, tile, overlap))
        assert rows == n * (tile - overlap) + overlap  # the windows fill the block exactly
