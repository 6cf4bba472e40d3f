"""Static int8 quantization (QDQ) shared by the models' int8 recipes.

One setting for every network served in int8 on CPU: int8 weights per output channel, uint8
activations with MinMax ranges from the calibration feeds, QDQ format (ONNX Runtime fuses the
pairs into integer kernels; AVX-512 VNNI where the CPU has it). The recipes choose the feeds,
the operators quantized and the nodes left fp32.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Iterator, Sequence
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


def recipe_main(
    description: str | None, name: str, quantize: Callable[[Path, Path, Path], None]
) -> None:
    """The command line of an int8 recipe: `quantize(fp32, out, data_dir)` from the shipped
    fp32 artifact `name` to its shipped int8 file unless `--fp32` / `--out` say otherwise."""
    parser = argparse.ArgumentParser(description=(description or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--fp32", type=Path, default=None, help="default: the shipped file")
    parser.add_argument("--out", type=Path, default=None, help="default: the shipped int8 file")
    args = parser.parse_args()
    from monitor.infer import artifact_path

    fp32 = args.fp32 or artifact_path(name)
    out = args.out or fp32.with_name(f"{name}_int8.onnx")
    quantize(fp32, out, args.data)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.3f} MB)")
