"""Cloud removal: the network, its ONNX export, the shipped artifact on the real Mol pair, and
`monitor.cloud_removal.reconstruct` (masking, tiling seams, bad input)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from monitor.cloud_removal import (
    BANDS,
    EXPORTED_TILE,
    POLARISATIONS,
    coarse_inputs,
    load_for_tile,
    reconstruct,
)
from monitor.errors import ModelError
from monitor.infer import Backend, InferenceConfig, Model, artifact_path, load_model

torch = pytest.importorskip("torch")

from models.cloud_removal import INPUT_NAMES, OUTPUT_NAMES, CloudRemovalNet, from_onnx  # noqa: E402
from models.cloud_removal_training import (  # noqa: E402
    MOL_DAY,
    Season,
    export_model,
    mae,
    mol_pair,
    spectral_angle,
    ssim,
    training_pairs,
)

Array = npt.NDArray[Any]


def _inputs(n: int, size: int, seed: int = 0) -> dict[str, Array]:
    rng = np.random.default_rng(seed)
    return {
        "s2_t0": rng.uniform(0.0, 0.5, (n, 3, size, size)).astype(np.float32),
        "s2_next": rng.uniform(0.0, 0.5, (n, 3, size, size)).astype(np.float32),
        "s1_t": rng.normal(-14.0, 4.0, (n, 2, size, size)).astype(np.float32),
        "s1_t0": rng.normal(-14.0, 4.0, (n, 2, size, size)).astype(np.float32),
        "timing": np.stack(
            [rng.uniform(1, 30, n), rng.choice([0.0, 12.0], n), rng.uniform(60, 300, n)], axis=1
        ).astype(np.float32),
    }


def _random_network(seed: int = 0) -> Any:
    """A network with every weight random (the trained head starts at zero)."""
    torch.manual_seed(seed)
    model = CloudRemovalNet(8)
    for param in model.parameters():
        torch.nn.init.normal_(param, std=0.1)
    return model.eval()


def test_forward_shapes_on_real_shapes() -> None:
    model = CloudRemovalNet()
    inputs = {k: torch.from_numpy(v) for k, v in _inputs(2, 128).items()}
    with torch.no_grad():
        reflectance, uncertainty = model(*(inputs[name] for name in INPUT_NAMES))
    assert reflectance.shape == (2, len(BANDS), 128, 128)
    assert uncertainty.shape == (2, len(BANDS), 128, 128)
    assert bool((uncertainty > 0).all())
    # Untrained, the residual network is exactly its baseline: copy-last-clear without a next
    # date, the linear interpolation with one.
    timing = inputs["timing"]
    gap, after = timing[:, 0], timing[:, 1]
    weight = torch.where(after > 0, gap / (gap + after), torch.zeros_like(gap))[:, None, None, None]
    expected = inputs["s2_t0"] + weight * (inputs["s2_next"] - inputs["s2_t0"])
    torch.testing.assert_close(reflectance, expected)


def test_onnx_runtime_matches_pytorch(tmp_path: Path) -> None:
    model = _random_network()
    path = tmp_path / "cloud_removal.onnx"
    export_model(model, path, tile=None)
    session = load_model(path, InferenceConfig(threads=1))
    assert session.input_names == list(INPUT_NAMES)
    for n, size in ((1, 64), (3, 128), (2, 72)):  # dynamic batch and spatial axes
        inputs = _inputs(n, size, seed=size)
        got = session.run(inputs)
        with torch.no_grad():
            want = model(*(torch.from_numpy(inputs[name]) for name in INPUT_NAMES))
        for name, expected in zip(OUTPUT_NAMES, want, strict=True):
            np.testing.assert_allclose(got[name], expected.numpy(), atol=1e-4, rtol=1e-4)


def test_shipped_artifact_matches_its_pytorch_weights() -> None:
    path = artifact_path("cloud_removal")
    assert path.stat().st_size < 5 * 2**20
    model = from_onnx(str(path))
    inputs = _inputs(2, 128, seed=3)
    got = load_model(path, InferenceConfig(threads=1)).run(inputs)
    with torch.no_grad():
        want = model(*(torch.from_numpy(inputs[name]) for name in INPUT_NAMES))
    for name, expected in zip(OUTPUT_NAMES, want, strict=True):
        np.testing.assert_allclose(got[name], expected.numpy(), atol=1e-4, rtol=1e-4)


def test_shipped_model_beats_copy_last_clear_on_the_real_mol_pair() -> None:
    s2_t0, s2_t, s1_t, s1_t0, clear, gap = mol_pair()
    cloudy_everywhere = np.zeros(clear.shape, dtype=bool)
    observed = np.full_like(s2_t, np.nan)
    out = reconstruct(observed, s2_t0, s1_t, s1_t0, gap, cloudy_everywhere, day_of_year=MOL_DAY)
    assert out.reconstructed.all()
    assert np.isfinite(out.reflectance).all()
    assert (out.uncertainty > 0).all()
    model_mae = mae(out.reflectance[:, clear], s2_t[:, clear])
    copy_mae = mae(s2_t0[:, clear], s2_t[:, clear])
    assert model_mae < copy_mae
    assert spectral_angle(out.reflectance[:, clear], s2_t[:, clear]) < spectral_angle(
        s2_t0[:, clear], s2_t[:, clear]
    )


def _mol_scene(size: int) -> tuple[Array, Array, Array, Array]:
    """A `size`² real-textured scene: the Mol pair mirrored out to `size`."""
    s2_t0, s2_t, s1_t, s1_t0, _, _ = mol_pair()

    def grow(a: Array) -> Array:
        pad = ((0, 0), (0, max(0, size - a.shape[1])), (0, max(0, size - a.shape[2])))
        return np.ascontiguousarray(np.pad(a, pad, mode="symmetric")[:, :size, :size])

    return grow(s2_t0), grow(s2_t), grow(s1_t), grow(s1_t0)


@pytest.fixture(scope="module")
def shipped() -> Model:
    return load_model("cloud_removal", InferenceConfig(threads=1))


def test_clear_pixels_are_untouched(shipped: Model) -> None:
    s2_t0, s2_t, s1_t, s1_t0 = _mol_scene(96)
    valid = np.ones(s2_t.shape[1:], dtype=bool)
    valid[20:50, 30:70] = False  # a cloud
    observed = s2_t.copy()
    observed[:, ~valid] = 0.9  # bright cloud tops, to be replaced
    out = reconstruct(observed, s2_t0, s1_t, s1_t0, 10.0, valid, day_of_year=MOL_DAY, model=shipped)
    np.testing.assert_array_equal(out.reflectance[:, valid], observed[:, valid])
    assert (out.uncertainty[:, valid] == 0).all()
    assert (out.reconstructed == ~valid).all()
    cloud = out.reflectance[:, ~valid]
    assert np.isfinite(cloud).all()
    assert cloud.max() < 0.8  # the cloud is gone
    assert (out.uncertainty[:, ~valid] > 0).all()


def test_next_clear_date_is_used_where_it_exists(shipped: Model) -> None:
    s2_t0, s2_t, s1_t, s1_t0 = _mol_scene(64)
    cloudy = np.zeros(s2_t.shape[1:], dtype=bool)
    observed = np.full_like(s2_t, np.nan)
    args = (observed, s2_t0, s1_t, s1_t0, 10.0, cloudy)
    kwargs: dict[str, Any] = {"day_of_year": MOL_DAY, "model": shipped}
    streaming = reconstruct(*args, **kwargs)
    after = s2_t + 0.05  # a brighter next clear date pulls the prediction up
    after[:, :, 32:] = np.nan  # known on the left half only
    both = reconstruct(*args, next_clear=after, next_gap_days=5.0, **kwargs)
    np.testing.assert_array_equal(both.reflectance[:, :, 32:], streaming.reflectance[:, :, 32:])
    assert both.reflectance[:, :, :32].mean() > streaming.reflectance[:, :, :32].mean() + 0.01


def test_nothing_to_fill_runs_no_model() -> None:
    s2_t0, s2_t, s1_t, s1_t0 = _mol_scene(64)
    valid = np.ones(s2_t.shape[1:], dtype=bool)
    out = reconstruct(s2_t, s2_t0, s1_t, s1_t0, 10.0, valid, day_of_year=MOL_DAY, model=_Unusable())
    np.testing.assert_array_equal(out.reflectance, s2_t)


class _Unusable:
    """A model that must not be called."""

    name = "unusable"
    backend: Backend = "onnxruntime"

    @property
    def input_names(self) -> list[str]:
        return []

    def run(self, inputs: Any) -> dict[str, Array]:
        raise AssertionError("the model ran although no pixel was invalid")


def test_tiled_run_has_no_seams(tmp_path: Path) -> None:
    # The shipped weights with free tile size, to compare a tiled run with a single window.
    export_model(from_onnx(str(artifact_path("cloud_removal"))), tmp_path / "any.onnx", None)
    shipped = load_model(tmp_path / "any.onnx", InferenceConfig(threads=1))
    s2_t0, _, s1_t, s1_t0 = _mol_scene(128)
    cloudy = np.zeros(s2_t0.shape[1:], dtype=bool)
    observed = np.full_like(s2_t0, np.nan)
    args = (observed, s2_t0, s1_t, s1_t0, 10.0, cloudy)
    whole = reconstruct(*args, day_of_year=MOL_DAY, model=shipped, tile=128, overlap=0)
    tiled = reconstruct(*args, day_of_year=MOL_DAY, model=shipped, tile=64, overlap=24)
    butted = reconstruct(*args, day_of_year=MOL_DAY, model=shipped, tile=64, overlap=0)
    diff = np.abs(tiled.reflectance - whole.reflectance)
    # Same image within a small fraction of the reflectance range...
    assert diff.mean() < 0.001
    assert diff.max() < 0.02

    def seam(result: Any) -> float:
        """Largest excess of a column-to-column step over the single-window run's."""
        steps = np.abs(np.diff(result.reflectance, axis=2)).mean(axis=(0, 1))
        reference = np.abs(np.diff(whole.reflectance, axis=2)).mean(axis=(0, 1))
        return float((steps - reference).max())

    # ...and no seam, where windows butted without overlap do show one.
    assert seam(tiled) < 0.0004 < seam(butted)


@pytest.mark.parametrize(("coarsen", "mean_tol", "max_tol"), [(1, 1e-4, 0.01), (2, 5e-4, 0.02)])
def test_larger_windows_give_the_128_px_output(
    shipped: Model, coarsen: int, mean_tol: float, max_tol: float
) -> None:
    """The shipped network with free height and width on 256 px windows against the exported
    128 px ones, on a fully cloudy 384² real-textured scene (3 x 3 windows of 128, 2 x 2 of
    256). Not bit-equal: the network's receptive field reaches past the 16 px overlap, so a
    pixel's value depends a little on where its window's zero-padded border falls. Measured:
    mean |diff| 1.9e-5 at 10 m and 1.0e-4 at 20 m, max 3.4e-3 / 1.5e-2 (at former window
    borders). The tolerances keep the mean under 1/30 of the model's pixel MAE on the Mol pair
    (0.0159) and the maximum within the tiled-against-whole bound of the seams test (0.02)."""
    big = load_for_tile(InferenceConfig(threads=1), 256)
    s2_t0, _, s1_t, s1_t0 = _mol_scene(384)
    cloudy = np.zeros(s2_t0.shape[1:], dtype=bool)
    args = (np.full_like(s2_t0, np.nan), s2_t0, s1_t, s1_t0, 10.0, cloudy)
    small = reconstruct(*args, day_of_year=MOL_DAY, model=shipped, coarsen=coarsen)
    large = reconstruct(*args, day_of_year=MOL_DAY, model=big, tile=256, coarsen=coarsen)
    for name in ("reflectance", "uncertainty"):
        diff = np.abs(getattr(large, name) - getattr(small, name))
        assert diff.mean() < mean_tol, name
        assert diff.max() < max_tol, name
    assert np.abs(small.reflectance - s2_t0).mean() > 10 * mean_tol  # the model did change t0


def test_other_windows_need_onnx_runtime_and_a_multiple_of_8() -> None:
    with pytest.raises(ModelError, match="tensorrt runs 128 px tiles only"):
        load_for_tile(InferenceConfig(backend="tensorrt"), 256)
    with pytest.raises(ModelError, match="multiple of 8"):
        load_for_tile(InferenceConfig(), 100)
    assert load_for_tile(InferenceConfig(), EXPORTED_TILE).input_names


def test_training_pairs_pick_t0_and_radar_as_the_engine_does() -> None:
    """t0 only where the SCL passes enough pixels; S1 within 4 days and never after t."""
    s2_days = np.array([100.45, 105.45, 110.45, 115.45])
    valid = np.ones((4, 8, 8), bool)
    valid[1] = False  # 105: fully cloudy, never a t0
    season = Season(
        s2_days=s2_days,
        s2=np.zeros((4, 3, 8, 8), np.float32),
        observed=np.zeros((4, 3, 8, 8), np.float32),
        valid=valid,
        clear_fraction=valid.mean(axis=(1, 2)),
        cloud_share=1.0 - valid.mean(axis=(1, 2)),
        # 99.2 (before 100), 106.7 (after 105: too late for t = 105), 109.2, 116.7.
        s1_days=np.array([99.24, 106.73, 109.24, 116.73]),
        s1=np.zeros((4, 2, 8, 8), np.float32),
    )
    pairs = training_pairs(season)
    assert all(i != 1 for i, *_ in pairs)
    by_dates = {(i, j): (k0, k) for i, j, k0, k in pairs}
    # t = 105.45: the 106.7 radar is nearer but later: the engine takes 99.2 (6.2 days: too
    # far), so no pair ends at 105.
    assert not any(j == 1 for _, j in by_dates)
    # t0 = 100.45, t = 110.45: S1 at t0 = 99.24, at t = 109.24 (106.73 is further).
    assert by_dates[(0, 2)] == (0, 2)
    # t = 115.45: 116.73 is after t; 109.24 is 6.2 days before: no radar.
    assert not any(j == 3 for _, j in by_dates)
    for _, j, k0, k in pairs:
        assert season.s1_days[k] <= s2_days[j]
        assert season.s1_days[k0] <= s2_days[j]


def test_metrics_behave() -> None:
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.05, 0.5, (3, 32, 32))
    assert ssim(truth, truth) == pytest.approx(1.0)
    assert spectral_angle(truth, truth * 2) == pytest.approx(0.0, abs=1e-3)
    assert ssim(truth + rng.normal(0, 0.05, truth.shape), truth) < 0.95


def test_bad_inputs_are_one_line_errors() -> None:
    s2 = np.zeros((len(BANDS), 16, 16), np.float32)
    s1 = np.zeros((len(POLARISATIONS), 16, 16), np.float32)
    valid = np.zeros((16, 16), bool)
    with pytest.raises(ModelError, match=r"s1_t must be \[2, 16, 16\]"):
        reconstruct(s2, s2, s1[:1], s1, 5.0, valid, day_of_year=100)
    with pytest.raises(ModelError, match="gap_days must be > 0"):
        reconstruct(s2, s2, s1, s1, 0.0, valid, day_of_year=100)
    with pytest.raises(ModelError, match="multiple of 8"):
        reconstruct(s2, s2, s1, s1, 5.0, valid, day_of_year=100, tile=60)
    with pytest.raises(ModelError, match="together"):
        reconstruct(s2, s2, s1, s1, 5.0, valid, day_of_year=100, next_clear=s2)
    with pytest.raises(ModelError, match="VV has no valid pixel"):
        reconstruct(s2, s2, s1 * np.nan, s1, 5.0, valid, day_of_year=100)
    with pytest.raises(ModelError, match="coarsen must be 1 or 2, got 3"):
        reconstruct(s2, s2, s1, s1, 5.0, valid, day_of_year=100, coarsen=3)


def test_coarse_inputs_average_reflectance_radar_power_and_any_invalid_pixel() -> None:
    s2 = np.full((len(BANDS), 3, 3), 0.2, np.float32)
    s2[:, 0, 0] = 0.4
    s2[:, 1, 1] = np.nan  # masked at t0: left out of its block's mean
    s2[:, 2, :] = np.nan  # a whole block masked (after padding): NaN
    s1 = np.full((len(POLARISATIONS), 3, 3), -10.0, np.float32)
    s1[:, 0, 0] = 0.0
    invalid = np.zeros((3, 3), bool)
    invalid[1, 2] = True
    t0, after, s1_t, s1_t0, coarse_invalid = coarse_inputs(s2, None, s1, s1, invalid)
    assert after is None
    assert t0.shape == (len(BANDS), 2, 2)
    np.testing.assert_allclose(t0[:, 0, 0], (0.4 + 0.2 + 0.2) / 3, rtol=1e-6)
    assert np.isnan(t0[:, 1, :]).all()
    # 0 dB and three -10 dB: the mean power is (1 + 3 x 0.1) / 4, not the mean of the dB.
    np.testing.assert_allclose(s1_t[:, 0, 0], 10 * np.log10(1.3 / 4), rtol=1e-5)
    np.testing.assert_allclose(s1_t[:, 1, 1], -10.0, rtol=1e-6)
    np.testing.assert_array_equal(s1_t, s1_t0)
    np.testing.assert_array_equal(coarse_invalid, [[False, True], [False, False]])


def test_coarse_run_fills_the_same_pixels_with_block_predictions(shipped: Model) -> None:
    s2_t0, s2_t, s1_t, s1_t0 = _mol_scene(96)
    valid = np.ones(s2_t.shape[1:], dtype=bool)
    valid[21:50, 30:71] = False  # a cloud, not aligned on 2 x 2 blocks
    s2_t0[:, 40, 40] = np.nan  # masked at t0 too: no prediction there at either resolution
    args = (s2_t, s2_t0, s1_t, s1_t0, 10.0, valid)
    fine = reconstruct(*args, day_of_year=MOL_DAY, model=shipped)
    coarse = reconstruct(*args, day_of_year=MOL_DAY, model=shipped, coarsen=2)
    np.testing.assert_array_equal(coarse.reflectance[:, valid], s2_t[:, valid])
    np.testing.assert_array_equal(np.isfinite(coarse.reflectance), np.isfinite(fine.reflectance))
    assert (coarse.uncertainty[:, 22:40, 30:40] > 0).all()
    # Pixels of one 2 x 2 block share its predicted change from t0; close to the 10 m run.
    change = (coarse.reflectance - s2_t0)[:, 22:24, 30:32].reshape(len(BANDS), -1)
    np.testing.assert_allclose(change, np.repeat(change[:, :1], 4, axis=1), atol=1e-6)
    assert np.abs(change).max() > 0
    cloud = ~valid & np.isfinite(fine.reflectance).all(axis=0)
    assert mae(coarse.reflectance[:, cloud], fine.reflectance[:, cloud]) < 0.02


@pytest.mark.parametrize("coarsen", [1, 2])
def test_the_int8_network_gives_nearly_the_fp32_output(coarsen: int) -> None:
    """The shipped int8 file against the fp32 one, both on 256 px windows, on a fully cloudy
    384² real-textured scene. Measured: mean |diff| of reflectance 3.7e-4 at 10 m and at
    20 m (mean bias 3e-5), max 3.7e-3 / 2.6e-3; uncertainty mean 2e-4. The tolerances keep the
    mean under 1/15 of the model's pixel MAE on the Mol pair (0.0153-0.0159) and 1/6 of its
    mean change from t0 (0.0067), the bias under 1/50 of that MAE (a bias does not average
    out over a parcel), and the maximum within the seams test's bound (0.02)."""
    config = InferenceConfig(threads=1)
    fp32, int8 = load_for_tile(config, 256), load_for_tile(config, 256, int8=True)
    s2_t0, _, s1_t, s1_t0 = _mol_scene(384)
    cloudy = np.zeros(s2_t0.shape[1:], dtype=bool)
    args = (np.full_like(s2_t0, np.nan), s2_t0, s1_t, s1_t0, 10.0, cloudy)
    want = reconstruct(*args, day_of_year=MOL_DAY, model=fp32, tile=256, coarsen=coarsen)
    got = reconstruct(*args, day_of_year=MOL_DAY, model=int8, tile=256, coarsen=coarsen)
    for name in ("reflectance", "uncertainty"):
        diff = getattr(got, name) - getattr(want, name)
        assert np.abs(diff).mean() < 1e-3, name
        assert abs(diff.mean()) < 3e-4, name
        assert np.abs(diff).max() < 0.02, name
    assert np.abs(want.reflectance - s2_t0).mean() > 5e-3  # the model did change t0


def test_the_int8_network_beats_copy_last_clear_on_the_real_mol_pair() -> None:
    s2_t0, s2_t, s1_t, s1_t0, clear, gap = mol_pair()
    int8 = load_for_tile(InferenceConfig(threads=1), int8=True)
    args = (np.full_like(s2_t, np.nan), s2_t0, s1_t, s1_t0, gap, np.zeros(clear.shape, bool))
    out = reconstruct(*args, day_of_year=MOL_DAY, model=int8)
    assert mae(out.reflectance[:, clear], s2_t[:, clear]) < mae(s2_t0[:, clear], s2_t[:, clear])


def test_the_shipped_int8_file_is_small_quantized_and_takes_any_window() -> None:
    import onnx

    path = artifact_path("cloud_removal_int8")
    assert path.stat().st_size < artifact_path("cloud_removal").stat().st_size
    proto = onnx.load(str(path))
    ops = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 15  # every convolution but the first and the head
    out = load_for_tile(InferenceConfig(threads=1), 64, int8=True).run(_inputs(1, 64))
    assert out["reflectance"].shape == (1, len(BANDS), 64, 64)


@pytest.mark.slow
def test_the_shipped_int8_file_is_regenerated_exactly(tmp_path: Path) -> None:
    """`quantize_int8` on the shipped fp32 file, calibrated on freshly simulated training
    seasons with the fixed seed, gives the shipped int8 weights and scales."""
    import onnx
    from onnx import numpy_helper

    from models.cloud_removal_int8 import quantize_int8

    out = tmp_path / "int8.onnx"
    quantize_int8(artifact_path("cloud_removal"), out, tmp_path / "data")

    def weights(path: Path) -> dict[str, Array]:
        proto = onnx.load(str(path))
        return {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}

    shipped, regenerated = weights(artifact_path("cloud_removal_int8")), weights(out)
    assert shipped.keys() == regenerated.keys()
    for name, value in shipped.items():
        np.testing.assert_array_equal(regenerated[name], value, err_msg=name)
