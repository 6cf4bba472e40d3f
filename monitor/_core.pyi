"""Type stubs of the compiled kernels (`rust_core`, built by maturin). Private: import the
typed facades in `monitor` instead. Checked against the compiled module by mypy stubtest."""

from typing import final

import numpy as np
import numpy.typing as npt

__all__ = ["LabelRaster", "__version__"]
__version__: str

@final
class LabelRaster:
    @staticmethod
    def from_labels(
        labels: npt.NDArray[np.uint32], n_parcels: int, transform: tuple[float, ...] | list[float]
    ) -> LabelRaster: ...
    @property
    def n_parcels(self) -> int: ...
    @property
    def shape(self) -> tuple[int, int]: ...
    @property
    def transform(self) -> list[float]: ...
    @property
    def has_coverage(self) -> bool: ...
