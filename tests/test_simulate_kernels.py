"""The simulator's fused Rust renderers against the numpy formulas they replace."""

from __future__ import annotations

import numpy as np
import pytest

from monitor import _core
from monitor.errors import KernelError
from monitor.simulate import noise
from monitor.simulate.sar import speckle_table


def _inputs(shape: tuple[int, int], n_units: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "labels": rng.integers(0, n_units, shape, dtype=np.int32),
        "mean": rng.uniform(0.02, 0.4, n_units).astype(np.float32),
        "slope": rng.uniform(0.0, 0.03, n_units).astype(np.float32),
        "texture": rng.standard_normal(shape, dtype=np.float32),
    }


def test_optical_band_is_the_numpy_formula_with_the_sky_interpolated_from_20_m() -> None:
    shape = (37, 41)  # odd sides: the 20 m grid's last cell covers one 10 m pixel
    a = _inputs(shape)
    rng = np.random.default_rng(2)
    coarse = (19, 21)
    opacity = rng.uniform(0, 0.8, coarse).astype(np.float32)
    through = ((1 - opacity) ** 2.5).astype(np.float32)
    cirrus = rng.uniform(0, 0.02, coarse).astype(np.float32)
    snow = rng.uniform(0, 1, shape).astype(np.float32)
    out = np.empty(shape, np.float32)
    _core.sim_render_optical(
        a["labels"], a["mean"], a["slope"], a["texture"], out,
        snow=snow, snow_value=0.8, through=through, opacity=opacity, cloud=0.9,
        cirrus=cirrus, cirrus_factor=1.05, haze=0.004,
    )  # fmt: skip
    surface = np.maximum(a["mean"][a["labels"]] + a["slope"][a["labels"]] * a["texture"], 0.0005)
    surface = surface * (1 - snow) + snow * 0.8
    expected = (
        surface * noise.upsample(through, 2.0, shape)
        + noise.upsample(opacity, 2.0, shape) * 0.9
        + noise.upsample(cirrus, 2.0, shape) * 1.05
        + 0.004
    )
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_digital_band_is_deterministic_per_seed_and_keeps_the_surface_truth() -> None:
    shape = (64, 48)
    a = _inputs(shape)

    def render(seed: int) -> tuple[np.ndarray, np.ndarray]:
        observed = np.empty(shape, np.uint16)
        surface = np.empty(shape, np.uint16)
        saturated = np.zeros((32, 24), bool)
        saturated[3, 4] = True
        _core.sim_render_optical(
            a["labels"], a["mean"], a["slope"], a["texture"], observed,
            noise_seed=seed, haze=0.01, surface_out=surface, saturated=saturated,
        )  # fmt: skip
        return observed, surface

    (obs1, sur1), (obs2, sur2), (obs3, _) = render(5), render(5), render(6)
    assert np.array_equal(obs1, obs2)
    assert np.array_equal(sur1, sur2)
    assert not np.array_equal(obs1, obs3)
    assert (obs1[6:8, 8:10] == 65535).all()
    clean = np.ones(shape, bool)
    clean[6:8, 8:10] = False
    # the haze adds 0.01 (100 digital numbers) on top of the surface, nothing else
    assert np.abs(obs1[clean].astype(int) - sur1[clean] - 100).max() <= 1
    # sensor noise: 0.002 + 1 % of the signal, uniform
    exact = a["mean"][a["labels"]] + a["slope"][a["labels"]] * a["texture"]
    residual = sur1 / 1e4 - exact
    assert 0.5 < residual.std() / (0.002 + 0.01 * exact).mean() < 1.5
    assert abs(residual.mean()) < 3e-4


def test_radar_band_adds_texture_ramp_and_centred_speckle() -> None:
    shape = (200, 160)
    a = _inputs(shape)
    db = np.linspace(-20, -8, 5).astype(np.float32)
    ramp = np.linspace(-0.5, 0.5, shape[1]).astype(np.float32)
    extra = np.full(shape, -3.0, np.float32)
    table = speckle_table()

    def render(seed: int, extra_db: np.ndarray | None = None) -> np.ndarray:
        out = np.empty(shape, np.float32)
        _core.sim_render_radar(
            a["labels"], db, a["texture"], 0.5, ramp, table, seed, out, extra_db=extra_db
        )
        return out

    first, again, other = render(9), render(9), render(10)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    speckle = first - (db[a["labels"]] + 0.5 * a["texture"] + ramp)
    assert abs(float(speckle.mean())) < 0.1
    assert 1.5 < float(speckle.std()) < 2.6  # ~2 dB within a field, as on the real Mol γ⁰
    assert np.all((first * 64) == np.round(first * 64))
    np.testing.assert_allclose(render(9, extra) - first, -3.0, atol=1 / 64)


def test_kernels_refuse_labels_without_a_spectrum_and_mismatched_shapes() -> None:
    a = _inputs((8, 8))
    out = np.empty((8, 8), np.float32)
    bad = a["labels"].copy()
    bad[0, 0] = 7
    with pytest.raises(KernelError, match="label 7"):
        _core.sim_render_optical(bad, a["mean"], a["slope"], a["texture"], out)
    with pytest.raises(KernelError, match="opacity"):
        _core.sim_render_optical(
            a["labels"], a["mean"], a["slope"], a["texture"], out,
            opacity=np.zeros((3, 3), np.float32),
        )  # fmt: skip
    with pytest.raises(KernelError, match="out must be"):
        _core.sim_render_optical(
            a["labels"], a["mean"], a["slope"], a["texture"], np.empty((8, 8), np.int16)
        )


def _bilinear(
    coarse: np.ndarray, factor: float, shape: tuple[int, int], offset: float
) -> np.ndarray:
    """The numpy bilinear interpolation `noise.upsample` replaced (columns, then rows)."""

    def axis(n: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(n) + 0.5) / factor - 0.5 + offset, 0.0, size - 1.0)
        i0 = np.minimum(np.floor(pos).astype(np.intp), size - 1)
        return i0, np.minimum(i0 + 1, size - 1), (pos - i0).astype(np.float32)

    i0, i1, wr = axis(shape[0], coarse.shape[0])
    j0, j1, wc = axis(shape[1], coarse.shape[1])
    half = coarse[:, j0] * (1.0 - wc) + coarse[:, j1] * wc
    return half[i0] * (1.0 - wr)[:, None] + half[i1] * wr[:, None]


@pytest.mark.parametrize(("factor", "offset"), [(2.0, 0.0), (3.0, 0.0), (6.0, 0.0), (7.5, 1.0)])
def test_upsample_is_the_numpy_bilinear_interpolation(factor: float, offset: float) -> None:
    coarse = np.random.default_rng(3).standard_normal((13, 11), dtype=np.float32)
    shape = (int(13 * factor) - 1, int(11 * factor) + 2)  # ragged edges are clamped
    out = noise.upsample(coarse, factor, shape, offset=offset)
    np.testing.assert_allclose(out, _bilinear(coarse, factor, shape, offset), atol=1e-6)


def test_snow_fraction_is_the_clipped_field_scaled_by_the_unit() -> None:
    rng = np.random.default_rng(4)
    field = rng.uniform(-0.5, 1.5, (9, 9)).astype(np.float32)
    visible = np.array([0.0, 0.35, 1.0], np.float32)
    labels = rng.integers(0, 3, (54, 54), dtype=np.int32)
    out = np.empty((54, 54), np.float32)
    _core.sim_snow_fraction(field, 6.0, labels, visible, out)
    expected = np.clip(_bilinear(field, 6.0, (54, 54), 0.0), 0, 1) * visible[labels]
    np.testing.assert_allclose(out, expected, atol=1e-6)
    labels[0, 0] = 3
    with pytest.raises(KernelError, match="label 3"):
        _core.sim_snow_fraction(field, 6.0, labels, visible, out)


def test_texture_is_scaled_patches_plus_a_normal_grain_deterministic_per_seed() -> None:
    shape = (200, 160)
    labels = np.zeros(shape, np.int32)
    labels[:, 80:] = 1
    patches = np.random.default_rng(5).standard_normal((100, 80), dtype=np.float32)
    patchy, grainy = np.array([1.5, 0.0], np.float32), np.array([0.0, 2.0], np.float32)

    def texture(seed: int) -> np.ndarray:
        out = np.empty(shape, np.float32)
        _core.sim_texture(labels, patches, patchy, grainy, noise.normal_table(), seed, out)
        return out

    a = texture(1)
    np.testing.assert_array_equal(a, texture(1))
    assert not np.array_equal(a, texture(2))
    smooth = noise.upsample(patches, 2.0, shape)
    np.testing.assert_allclose(a[:, :80], 1.5 * smooth[:, :80], atol=1e-5)
    grain = a[:, 80:] / 2.0
    assert abs(grain.mean()) < 0.03
    assert abs(grain.std() - 1.0) < 0.03
    assert abs(np.corrcoef(grain[:, :-1].ravel(), grain[:, 1:].ravel())[0, 1]) < 0.03
