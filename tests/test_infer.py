"""Inference backends: the same ONNX model through ONNX Runtime (and TensorRT where a GPU is)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from monitor.errors import ConfigError, ModelError
from monitor.infer import InferenceConfig, load_model


def _linear_model(path: Path, weights: np.ndarray) -> Path:
    """y = x @ W + 1 with a dynamic batch axis, as our exported models have."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", weights.shape[0]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", weights.shape[1]])
    w = helper.make_tensor("w", TensorProto.FLOAT, weights.shape, weights.ravel().tolist())
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "one"], ["y"]),
        ],
        "linear",
        [x],
        [y],
        [w, one],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def test_onnxruntime_runs_any_batch_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(5, 3)).astype(np.float32)
    model = load_model(_linear_model(tmp_path / "linear.onnx", weights), InferenceConfig(threads=1))
    assert model.backend == "onnxruntime"
    assert model.input_names == ["x"]
    for batch in (1, 7, 300):
        x = rng.normal(size=(batch, 5)).astype(np.float32)
        y = model.run({"x": x})["y"]
        np.testing.assert_allclose(y, x @ weights + 1, rtol=1e-5, atol=1e-5)


def test_missing_model_and_bad_config_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no exported model 'nope'"):
        load_model("nope")
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "absent.onnx")
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load model"):
        load_model(tmp_path / "broken.onnx")
    with pytest.raises(ConfigError, match="unknown inference backend"):
        InferenceConfig(backend="cuda")  # type: ignore[arg-type]


def _gpu_reason() -> str | None:
    try:
        import tensorrt  # noqa: F401
        from cuda.bindings import runtime as cudart
    except ImportError:
        return "tensorrt (the gpu extra) is not installed"
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        return "no NVIDIA GPU on this machine"
    return None


@pytest.mark.gpu
@pytest.mark.skipif(_gpu_reason() is not None, reason=str(_gpu_reason()))
def test_tensorrt_matches_onnxruntime(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(5, 3)).astype(np.float32)
    path = _linear_model(tmp_path / "linear.onnx", weights)
    config = InferenceConfig(backend="tensorrt", max_batch=512, engine_cache=tmp_path / "engines")
    trt_model = load_model(path, config)
    x = rng.normal(size=(300, 5)).astype(np.float32)
    expected = load_model(path)
    np.testing.assert_allclose(
        trt_model.run({"x": x})["y"], expected.run({"x": x})["y"], rtol=1e-4, atol=1e-4
    )
    assert len(list((tmp_path / "engines").glob("*.engine"))) == 1
    load_model(path, config)  # second load reuses the cached engine
    assert len(list((tmp_path / "engines").glob("*.engine"))) == 1
