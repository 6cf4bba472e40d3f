"""The stacked heterogeneity score (round 4): network logit + log spread level in one graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.heterogeneity import (  # noqa: E402
    LEVEL_FLOOR,
    HeterogeneityNet,
    StackedHeterogeneity,
    spread_level,
)
from models.heterogeneity_stack import fit_logistic, log_loss  # noqa: E402
from models.heterogeneity_training import (  # noqa: E402
    Season,
    example_inputs,
    export,
    fit_stack,
    load_network,
)
from monitor.heterogeneity import INPUT_NAMES, PixelSetSeries  # noqa: E402
from monitor.infer import load_model  # noqa: E402

BASE = Path(__file__).parents[1] / "models" / "heterogeneity_shipped_base.pt"
DAYS = np.arange(60, 305, 7, dtype=np.float32)


def _stack(coefficients: tuple[float, float, float] = (0.5, 1.5, 2.0)) -> StackedHeterogeneity:
    torch.manual_seed(0)
    return StackedHeterogeneity(HeterogeneityNet(level=False), coefficients).eval()


def _run(model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        out = model(*(torch.from_numpy(inputs[k]) for k in INPUT_NAMES))
    return np.asarray(out.numpy())


def test_level_is_the_std_rule_on_the_sampled_pixels() -> None:
    rng = np.random.default_rng(0)
    inputs = example_inputs(6, rng)
    pixels = inputs["pixels"].copy()
    pixels[inputs["pixel_mask"] == 0] = np.nan  # masked pixels must not count
    off_date = inputs["date_mask"] == 0
    pixels[off_date] = rng.uniform(-5.0, 5.0, pixels[off_date].shape)  # nor masked dates
    expected = []
    for p in range(6):
        stds = [
            np.std(pixels[p, d, inputs["pixel_mask"][p, d] > 0, 0].astype(np.float64))
            for d in range(pixels.shape[1])
            if inputs["date_mask"][p, d] > 0
        ]
        expected.append(np.mean(stds))
    level = spread_level(
        torch.from_numpy(pixels),
        torch.from_numpy(inputs["pixel_mask"]),
        torch.from_numpy(inputs["date_mask"]),
    ).numpy()
    np.testing.assert_allclose(level, expected, rtol=1e-5)


def test_stack_is_the_linear_combination_of_its_features() -> None:
    inputs = example_inputs(5, np.random.default_rng(1))
    stack = _stack((0.5, 1.5, 2.0))
    tensors = [torch.from_numpy(inputs[k]) for k in INPUT_NAMES]
    with torch.no_grad():
        logit = stack.net(*tensors).numpy()
        level = spread_level(*tensors[:3]).numpy()
    expected = 0.5 * logit + 1.5 * np.log(level + LEVEL_FLOOR) + 2.0
    np.testing.assert_allclose(_run(stack, inputs), expected, rtol=1e-5, atol=1e-5)


def test_stack_is_invariant_to_pixel_and_date_order() -> None:
    rng = np.random.default_rng(2)
    inputs = example_inputs(4, rng)
    stack = _stack()
    pixel_order = rng.permutation(inputs["pixels"].shape[2])
    date_order = rng.permutation(inputs["pixels"].shape[1])
    shuffled = {
        "pixels": inputs["pixels"][:, date_order][:, :, pixel_order],
        "pixel_mask": inputs["pixel_mask"][:, date_order][:, :, pixel_order],
        "date_mask": inputs["date_mask"][:, date_order],
        "day_of_year": inputs["day_of_year"][:, date_order],
    }
    np.testing.assert_allclose(_run(stack, shuffled), _run(stack, inputs), atol=1e-5)


def test_stack_onnx_runtime_matches_pytorch(tmp_path: Path) -> None:
    stack = _stack((0.3, 1.8, 3.0))
    checkpoint = tmp_path / "heterogeneity.pt"
    state = {
        "state_dict": stack.net.state_dict(),
        "config": stack.net.config,
        "stack": [0.3, 1.8, 3.0],
    }
    torch.save(state, checkpoint)
    onnx_path = tmp_path / "heterogeneity.onnx"
    export(checkpoint, onnx_path)
    inputs = example_inputs(9, np.random.default_rng(3))
    np.testing.assert_allclose(
        load_model(onnx_path).run(inputs)["logit"], _run(stack, inputs), atol=1e-4
    )


def test_logistic_fit_recovers_known_coefficients() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(0.0, 1.0, (20000, 2))
    labels = rng.random(20000) < 1.0 / (1.0 + np.exp(-(1.2 * x[:, 0] - 0.7 * x[:, 1] - 2.0)))
    a, b, c = fit_logistic(x, labels)
    np.testing.assert_allclose([a, b, c], [1.2, -0.7, -2.0], atol=0.1)


def _profile(green_up: float) -> np.ndarray:
    rise = 1.0 / (1.0 + np.exp(-(DAYS - green_up) / 8.0))
    fall = 1.0 / (1.0 + np.exp((DAYS - green_up - 100.0) / 8.0))
    return np.asarray(0.15 + 0.7 * rise * fall)


def _season(rng: np.random.Generator, n: int = 120) -> Season:
    """Homogeneous parcels of a few covers, textures 0.02-0.05 (realistic levels)."""
    profiles = np.stack([_profile(g) for g in rng.uniform(90.0, 170.0, n)])
    texture = rng.uniform(0.02, 0.05, (n, 1, 1))
    mask = rng.random((n, len(DAYS), 32)) < 0.95
    ndvi = np.where(mask, profiles[:, :, None] + rng.normal(0.0, 1.0, mask.shape) * texture, 0.0)
    ndvi = ndvi.astype(np.float32)
    std = np.ma.masked_array(ndvi, ~mask).std(axis=2).filled(np.nan).astype(np.float32)
    series = PixelSetSeries(DAYS, ndvi, mask, np.ones((n, len(DAYS)), np.float32), std)
    crops = np.array(["BTH", "MIS", "PPH", "ORH", "J6S", "PTC"] * (n // 6 + 1))[:n]
    return Season(series, np.zeros(n, bool), crops)


def test_stack_fit_is_deterministic_and_beats_the_network_alone() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(5)
    seasons = [_season(rng), _season(rng)]
    net = load_network(BASE)
    coefficients, losses = fit_stack(net, seasons, seed=11)
    again, _ = fit_stack(net, seasons, seed=11)
    other, _ = fit_stack(net, seasons, seed=12)
    assert coefficients == again
    assert coefficients != other
    assert losses["stack"] < losses["network"]
    assert np.isfinite(losses["network"])


def test_log_loss_on_hand_made_logits() -> None:
    labels = np.array([True, False])
    assert log_loss(np.array([0.0, 0.0]), labels) == pytest.approx(np.log(2.0))
    assert log_loss(np.array([20.0, -20.0]), labels) < 1e-8
