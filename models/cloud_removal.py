"""Cloud removal: Sentinel-1 + the last clear Sentinel-2 → Sentinel-2 reflectance, with uncertainty.

SAR-to-optical translation as in IGN's cloud-removal work for 3STR and the DSen2-CR family
(Meraner et al. 2020, "Cloud removal in Sentinel-2 imagery using a deep residual neural network
and SAR-optical data fusion", ISPRS J. 166): a convolutional network sees the radar, which goes
through clouds, and an optical image, and predicts the optical image under the clouds. Like
DSen2-CR it is residual: it predicts a correction to a baseline, so an untrained network is the
baseline and training only learns what the radar (`VV`, `VH` at t and their change since t0),
the gap and the season explain. Two modes, one network: streaming (only the last clear date t0:
the baseline is copy-last-clear) and reprocessing (a next clear date is also known: the
baseline is the linear interpolation between the two). Unlike DSen2-CR (millions of parameters,
GPU) this is a light U-Net (Ronneberger et al. 2015, ~0.3 M parameters) sized for CPU tiles,
without normalisation layers so that a pixel's output does not depend on the rest of its tile.
A second head gives a per-pixel, per-band Laplace scale trained by negative log-likelihood
(Kendall & Gal 2017), reported as a standard deviation in reflectance.

Inputs (physical units; normalised inside so the ONNX file takes them as read):
`s2_t0 [N, 3, H, W]` reflectance 0-1 of `BANDS` at t0; `s2_next [N, 3, H, W]` at the next
clear date (any values when there is none); `s1_t`, `s1_t0 [N, 2, H, W]` VV, VH γ⁰ in dB at t
and near t0; `timing [N, 3]` = (t - t0 in days, next - t in days or 0 when there is no next
clear date, day of year of t). Outputs: `reflectance [N, 3, H, W]` at t and
`uncertainty [N, 3, H, W]` (standard deviation, reflectance). H and W: multiples of 8.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# Red, near infrared, SWIR 1 (NDVI and moisture; the three the real Mol sample can evaluate).
from monitor.model_io import BANDS, POLARISATIONS

INPUT_NAMES = ("s2_t0", "s2_next", "s1_t", "s1_t0", "timing")
N_SCALARS = 5  # gap, next gap, has next, season sine and cosine
OUTPUT_NAMES = ("reflectance", "uncertainty")

# Normalisation: reflectance x4 (~0-2), dB centred on typical cropland backscatter, gap in months.
_S2_SCALE = 4.0
_S1_CENTRE, _S1_SCALE = -15.0, 6.0
_DS1_SCALE = 3.0
_GAP_SCALE = 30.0
_MIN_SCALE = 1e-4


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.LeakyReLU(0.1),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.LeakyReLU(0.1),
    )


class CloudRemovalNet(nn.Module):
    """Residual U-Net: 4 scales (1, 1/2, 1/4, 1/8) of `width`, 2·`width`, 4·`width`, 4·`width`."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        n_in = 2 * len(BANDS) + 2 * len(POLARISATIONS) + N_SCALARS
        w1, w2, w3 = width, 2 * width, 4 * width
        self.enc1 = _block(n_in, w1)
        self.enc2 = _block(w1, w2)
        self.enc3 = _block(w2, w3)
        self.bottom = _block(w3, w3)
        self.up3 = nn.ConvTranspose2d(w3, w3, 2, stride=2)
        self.dec3 = _block(2 * w3, w3)
        self.up2 = nn.ConvTranspose2d(w3, w2, 2, stride=2)
        self.dec2 = _block(2 * w2, w2)
        self.up1 = nn.ConvTranspose2d(w2, w1, 2, stride=2)
        self.dec1 = _block(2 * w1, w1)
        self.head = nn.Conv2d(w1, 2 * len(BANDS), 1)
        # Start as copy-last-clear with a moderate uncertainty: training learns the change.
        nn.init.zeros_(self.head.weight)
        assert self.head.bias is not None
        nn.init.zeros_(self.head.bias)

    def forward(
        self, s2_t0: Tensor, s2_next: Tensor, s1_t: Tensor, s1_t0: Tensor, timing: Tensor
    ) -> tuple[Tensor, Tensor]:
        gap, next_gap, day = timing[:, 0:1], timing[:, 1:2], timing[:, 2:3]
        has_next = (next_gap > 0).to(s2_t0.dtype)
        # Base: copy-last-clear, or the linear interpolation when a next clear date is given.
        weight = (has_next * gap / (gap + next_gap).clamp(min=1.0)).reshape(-1, 1, 1, 1)
        base = s2_t0 + weight * (s2_next - s2_t0)
        angle = 2.0 * math.pi * day / 365.25
        scalars = torch.cat(
            [gap / _GAP_SCALE, next_gap / _GAP_SCALE, has_next, torch.sin(angle), torch.cos(angle)],
            dim=1,
        )
        x = torch.cat(
            [
                s2_t0 * _S2_SCALE,
                (s2_next - s2_t0) * has_next.reshape(-1, 1, 1, 1) * _S2_SCALE,
                (s1_t - _S1_CENTRE) / _S1_SCALE,
                (s1_t - s1_t0) / _DS1_SCALE,
                scalars.reshape(-1, scalars.shape[1], 1, 1).expand(-1, -1, *s2_t0.shape[2:]),
            ],
            dim=1,
        )
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        b = self.bottom(F.max_pool2d(e3, 2))
        d3 = self.dec3(torch.cat([self.up3(b), e3], dim=1))
        d2 = self.dec2(torch.cat([self.up2(d3), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        delta, raw_scale = self.head(d1).chunk(2, dim=1)
        reflectance = base + delta / _S2_SCALE
        # Laplace scale b (reflectance); the standard deviation of a Laplace law is sqrt(2)·b.
        scale = F.softplus(raw_scale - 3.0) / _S2_SCALE + _MIN_SCALE
        return reflectance, scale * math.sqrt(2.0)


def laplace_nll(
    reflectance: Tensor, uncertainty: Tensor, target: Tensor, weight: Tensor | None = None
) -> Tensor:
    """Mean negative log-likelihood of `target` under Laplace(reflectance, uncertainty / √2),
    weighted per element by `weight` (default: all 1)."""
    scale = uncertainty / math.sqrt(2.0)
    nll = (target - reflectance).abs() / scale + torch.log(scale)
    if weight is None:
        return nll.mean()
    return (nll * weight).sum() / weight.sum().clamp(min=1.0)


def from_onnx(onnx_path: str) -> CloudRemovalNet:
    """The PyTorch network holding an exported file's weights (initializers keep the state-dict
    names), to compare runtimes on the same weights."""
    import onnx
    from onnx import numpy_helper

    weights = {
        init.name: torch.from_numpy(numpy_helper.to_array(init).copy())
        for init in onnx.load(onnx_path).graph.initializer
    }
    model = CloudRemovalNet(int(weights["enc1.0.weight"].shape[0]))
    model.load_state_dict(weights)
    return model.eval()
