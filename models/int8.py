"""Static int8 quantization (QDQ) shared by the models' int8 recipes.

One setting for every network served in int8 on CPU: int8 weights per output channel, uint8
activations with MinMax ranges from the calibration feeds, QDQ format (ONNX Runtime fuses the
pairs into integer kernels; AVX-512 VNNI where the CPU has it). The recipes choose the feeds,
the operators quantized and the nodes left fp32.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy.typing as npt

Feed = dict[str, npt.NDArray[Any]]


def quantize_qdq(
    fp32_path: Path,
    int8_path: Path,
    feeds: list[Feed],
    *,
    keep_fp32: Sequence[str],
    op_types: Sequence[str],
) -> None:
    """Writes the int8 (QDQ) version of the network `fp32_path` to `int8_path`, calibrated on
    `feeds` (model inputs by name). `keep_fp32`: node names left fp32; `op_types`: the
    operators quantized."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self, feeds: list[Feed]) -> None:
            self._feeds: Iterator[Feed] = iter(feeds)

        def get_next(self) -> Feed | None:
            return next(self._feeds, None)

    int8_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="int8-") as folder:
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(int8_path),
            Reader(feeds),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=list(op_types),
            nodes_to_exclude=list(keep_fp32),
        )
