"""Inference backends behind one interface: ONNX Runtime on CPU (default), TensorRT on GPU nodes.

The exported models ship with the package (`monitor/artifacts/<name>.onnx`, each with its model
card `<name>.md`); `load_model(name, config)` returns a `Model` whose `run` takes and returns
numpy arrays by tensor name, whatever the backend. The backend is a setting
(`InferenceConfig.backend`), never a code change. The runtime never imports torch.

TensorRT engines are built from the ONNX file on first use, with one optimization profile
covering batch sizes 1..`max_batch` on the first (batch) axis, optionally in FP16, and cached
on disk under a key made of the model's hash, the TensorRT version and the GPU's name, so a
node rebuilds only when one of them changes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from monitor.errors import ConfigError, ModelError

Backend = Literal["onnxruntime", "tensorrt"]
Arrays = Mapping[str, npt.NDArray[Any]]


@dataclass(frozen=True)
class InferenceConfig:
    """How models run: backend, CPU threads (0 = ONNX Runtime's default), whether ONNX
    Runtime's worker threads spin between runs (`spinning`), TensorRT options."""

    backend: Backend = "onnxruntime"
    threads: int = 0
    #: ONNX Runtime's `session.intra_op.allow_spinning`: idle worker threads busy-wait for
    #: the next piece of work (lower latency, CPU burnt while the caller does other work). Off
    #: by default: on 2 shared cores the engine path took ~27 % fewer CPU seconds and less wall
    #: time without it (card `cloud_removal.md`, "ONNX Runtime spinning").
    spinning: bool = False
    fp16: bool = False
    max_batch: int = 4096
    engine_cache: Path | None = None

    def __post_init__(self) -> None:
        if self.backend not in ("onnxruntime", "tensorrt"):
            raise ConfigError(f"unknown inference backend {self.backend!r} (onnxruntime, tensorrt)")
        if self.threads < 0 or self.max_batch < 1:
            raise ConfigError("inference threads must be >= 0 and max_batch >= 1")


class Model(Protocol):
    """A loaded model: named numpy inputs in, named numpy outputs out."""

    name: str
    backend: Backend

    @property
    def input_names(self) -> list[str]: ...

    def run(self, inputs: Arrays) -> dict[str, npt.NDArray[Any]]: ...


def artifact_path(name: str) -> Path:
    """The ONNX file of a shipped model (`monitor/artifacts/<name>.onnx`)."""
    path = Path(str(files("monitor") / "artifacts" / f"{name}.onnx"))
    if not path.is_file():
        raise ModelError(
            f"no exported model {name!r} ({path} is missing: run parcel-monitor export)"
        )
    return path


def load_model(
    name_or_path: str | os.PathLike[str], config: InferenceConfig | None = None
) -> Model:
    """A shipped model by name (`"practices"`) or an ONNX file by path, on the configured
    backend."""
    config = config or InferenceConfig()
    text = os.fspath(name_or_path)
    path = Path(text) if text.endswith(".onnx") else artifact_path(text)
    if not path.is_file():
        raise ModelError(f"model file {path} not found")
    if config.backend == "tensorrt":
        return TensorRTModel(path, config)
    return OnnxRuntimeModel(path, config)


class OnnxRuntimeModel:
    """An ONNX Runtime session on CPU."""

    backend: Backend = "onnxruntime"

    def __init__(self, path: Path, config: InferenceConfig) -> None:
        import onnxruntime as ort

        self.name = path.stem
        options = ort.SessionOptions()
        if config.threads:
            options.intra_op_num_threads = config.threads
            options.inter_op_num_threads = 1
        if not config.spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"cannot load model {path}: {str(exc).splitlines()[0]}") from exc

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self._session.get_inputs()]

    def run(self, inputs: Arrays) -> dict[str, npt.NDArray[Any]]:
        names = [o.name for o in self._session.get_outputs()]
        try:
            outputs = self._session.run(names, dict(inputs))
        except Exception as exc:
            raise ModelError(f"model {self.name}: {str(exc).splitlines()[0]}") from exc
        return dict(zip(names, outputs, strict=True))


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class TensorRTModel:  # pragma: no cover - needs an NVIDIA GPU and tensorrt (tests/test_infer.py)
    """A TensorRT engine built from the ONNX file (cached on disk), run through cuda-python."""

    backend: Backend = "tensorrt"

    def __init__(self, path: Path, config: InferenceConfig) -> None:
        try:
            import tensorrt as trt
            from cuda.bindings import runtime as cudart
        except ImportError as exc:
            raise ModelError(
                "the tensorrt backend needs an NVIDIA GPU and the gpu extra "
                "(pip install 'parcel-monitor[gpu]')"
            ) from exc
        self.name = path.stem
        self._trt, self._cudart = trt, cudart
        self._logger = trt.Logger(trt.Logger.WARNING)
        err, props = cudart.cudaGetDeviceProperties(0)
        _check_cuda(err, "no CUDA device")
        gpu = props.name.decode(errors="replace").strip().replace(" ", "_")
        cache = config.engine_cache or Path.home() / ".cache" / "parcel-monitor" / "engines"
        precision = "fp16" if config.fp16 else "fp32"
        key = (
            f"{self.name}-{_file_hash(path)}-trt{trt.__version__}-{gpu}-{precision}"
            f"-b{config.max_batch}"
        )
        engine_path = cache / f"{key}.engine"
        if not engine_path.is_file():
            cache.mkdir(parents=True, exist_ok=True)
            serialized = self._build(path, config)
            tmp = engine_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(serialized)
            os.replace(tmp, engine_path)
        runtime = trt.Runtime(self._logger)
        self._engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self._engine is None:
            raise ModelError(f"TensorRT could not load engine {engine_path}")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self._inputs = [n for n in names if self._engine.get_tensor_mode(n) == mode]
        self._outputs = [n for n in names if self._engine.get_tensor_mode(n) != mode]
        err, self._stream = cudart.cudaStreamCreate()
        _check_cuda(err, "cannot create a CUDA stream")

    def _build(self, path: Path, config: InferenceConfig) -> bytes:
        trt = self._trt
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse(path.read_bytes()):
            raise ModelError(f"TensorRT cannot parse {path}: {parser.get_error(0)}")
        build_config = builder.create_builder_config()
        if config.fp16:
            build_config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            rest = tuple(tensor.shape)[1:]
            if any(d < 0 for d in rest):
                raise ModelError(f"{path}: only the batch axis of {tensor.name} may be dynamic")
            opt = max(1, config.max_batch // 2)
            profile.set_shape(tensor.name, (1, *rest), (opt, *rest), (config.max_batch, *rest))
        build_config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, build_config)
        if serialized is None:
            raise ModelError(f"TensorRT could not build an engine from {path}")
        return bytes(serialized)

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    def run(self, inputs: Arrays) -> dict[str, npt.NDArray[Any]]:
        trt, cudart = self._trt, self._cudart
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        buffers: list[int] = []
        try:
            for name in self._inputs:
                dtype = trt.nptype(self._engine.get_tensor_dtype(name))
                array = np.ascontiguousarray(inputs[name], dtype=dtype)
                self._context.set_input_shape(name, array.shape)
                ptr = self._malloc(array.nbytes, buffers)
                _check_cuda(cudart.cudaMemcpy(ptr, array.ctypes.data, array.nbytes, h2d)[0], name)
                self._context.set_tensor_address(name, ptr)
            results: dict[str, npt.NDArray[Any]] = {}
            for name in self._outputs:
                shape = tuple(self._context.get_tensor_shape(name))
                dtype = trt.nptype(self._engine.get_tensor_dtype(name))
                results[name] = np.empty(shape, dtype=dtype)
                ptr = self._malloc(results[name].nbytes, buffers)
                self._context.set_tensor_address(name, ptr)
            if not self._context.execute_async_v3(self._stream):
                raise ModelError(f"TensorRT execution of {self.name} failed")
            for name, ptr in zip(self._outputs, buffers[len(self._inputs) :], strict=True):
                out = results[name]
                _check_cuda(cudart.cudaMemcpy(out.ctypes.data, ptr, out.nbytes, d2h)[0], name)
            _check_cuda(cudart.cudaStreamSynchronize(self._stream)[0], "synchronize")
            return results
        finally:
            for ptr in buffers:
                cudart.cudaFree(ptr)

    def _malloc(self, nbytes: int, buffers: list[int]) -> int:
        err, ptr = self._cudart.cudaMalloc(max(nbytes, 1))
        _check_cuda(err, "cudaMalloc")
        buffers.append(int(ptr))
        return int(ptr)


def _check_cuda(err: Any, what: str) -> None:  # pragma: no cover - GPU only
    if int(err) != 0:
        raise ModelError(f"CUDA error {int(err)}: {what}")
