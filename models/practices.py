"""PracticeNet: a small dilated temporal CNN giving per-bin mowing, ploughing and harvest
probabilities over a parcel's season.

Method: a temporal convolutional network (TCN; Bai, Kolter & Koltun 2018, "An empirical
evaluation of generic convolutional and recurrent networks for sequence modeling") with
WaveNet-style dilations (van den Oord et al. 2016) over the regular day-of-year grid built by
`monitor.practices.series_tensor`, framed as per-time-step event detection with Gaussian
heat-map targets decoded by peak picking, as in keypoint/event-spotting detectors; the inputs
(Sentinel-2 NDVI and band means, Sentinel-1 VV, VH and their ratio, observed and reconstructed
masks) follow the S1+S2 deep-learning mowing detectors (e.g. Komisarenko et al. 2022,
"Exploiting time series of Sentinel-1 and Sentinel-2 to detect grassland mowing events using
deep learning with reject region", Scientific Reports 12:983).

The convolutions are two-sided (a bin sees ~±60 days); training on series cut at random days
teaches the model what the end of a growing series looks like, so it runs unchanged in
streaming. Day of year enters as a fixed sin/cos encoding of the grid held inside the model.
Sized for throughput: ~0.12 M multiply-adds per parcel-season.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from monitor.model_io import BIN_DAYS, CHANNELS, GRID_START_DOY, N_BINS, PRACTICES


def day_of_year_encoding() -> torch.Tensor:
    """(2, N_BINS): sin and cos of each bin centre's day of year."""
    doy = GRID_START_DOY + BIN_DAYS * torch.arange(N_BINS, dtype=torch.float32) + 1.5
    angle = 2 * math.pi * doy / 365.25
    return torch.stack([torch.sin(angle), torch.cos(angle)])


class PracticeNet(nn.Module):
    """(batch, len(CHANNELS), N_BINS) series -> (batch, len(PRACTICES), N_BINS) logits.

    A fine stem at the grid's resolution, a stride-2 dilated residual trunk (its receptive
    field spans the season), and a transposed convolution back to the grid, added to the stem
    features (a U-Net skip) so that dates keep the grid's resolution.
    """

    def __init__(self, fine: int = 8, hidden: int = 16, dilations: tuple[int, ...] = (1, 2, 4, 8)):
        super().__init__()
        self.doy: torch.Tensor
        self.register_buffer("doy", day_of_year_encoding()[None], persistent=False)
        self.stem = nn.Conv1d(len(CHANNELS) + 2, fine, kernel_size=3, padding=1)
        self.down = nn.Conv1d(fine, hidden, kernel_size=2, stride=2)
        self.blocks = nn.ModuleList(
            nn.Conv1d(hidden, hidden, kernel_size=3, padding=d, dilation=d) for d in dilations
        )
        self.up = nn.ConvTranspose1d(hidden, fine, kernel_size=2, stride=2)
        self.head = nn.Conv1d(fine, len(PRACTICES), kernel_size=3, padding=1)

    def forward(self, series: torch.Tensor) -> torch.Tensor:
        doy = self.doy.expand(series.shape[0], -1, -1)
        fine = torch.relu(self.stem(torch.cat([series, doy], dim=1)))
        x = torch.relu(self.down(fine))
        for block in self.blocks:
            x = x + torch.relu(block(x))
        x = torch.relu(self.up(x) + fine)
        logits: torch.Tensor = self.head(x)
        return logits


class PracticeProbabilities(nn.Module):
    """The exported graph: the network followed by a sigmoid."""

    def __init__(self, net: PracticeNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, series: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(series))


def from_onnx(path: str) -> PracticeNet:
    """A `PracticeNet` holding the weights of an exported model (benchmarks compare the two
    runtimes on the same weights)."""
    import onnx
    from onnx import numpy_helper

    weights = {
        init.name.removeprefix("net."): torch.from_numpy(numpy_helper.to_array(init).copy())
        for init in onnx.load(path).graph.initializer
        if init.name.startswith("net.")
    }
    net = PracticeNet()
    net.load_state_dict(weights)
    return net.eval()
