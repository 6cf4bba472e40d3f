"""Heterogeneity classifier: a pixel-set encoder with temporal attention (PSE-TAE family).

Garnot, Landrieu, Giordano, Chehata, "Satellite image time series classification with pixel-set
encoders and temporal self-attention", CVPR 2020, with the lightweight temporal attention of
Garnot & Landrieu, "Lightweight temporal self-attention for classifying satellite image time
series" (L-TAE), 2020. Here it answers one question: does a declared parcel hold more than one
cover?

* Pixel-set encoder, per date: the S sampled pixels are normalised per parcel (deviation from
  the date's mean over the parcel's texture scale: the mean within-date std over its dates), a
  shared MLP runs over them (with the date's mean NDVI as context), then masked mean and
  standard deviation pooling (a heterogeneous parcel shows up as a bimodal set, or a spread
  that changes over the season), concatenated with the date's mean NDVI and relative spread,
  then a second MLP. With `level` (the default) the absolute level of the spread enters too,
  as explicit log features (per date and for the season): the normalisation throws it away,
  and on real fields it is the most useful signal (the std rule's; model card).
* Temporal attention encoder over the T dates: sinusoidal positional encoding of the day of
  year (dates are irregular), a few heads, each with a learned master query attending over the
  dates; padded or masked dates get zero attention weight.
* Decoder (combined head): an MLP over the temporal encoding and the season's log spread.

`StackedHeterogeneity` wraps the network with the same inputs and output: its logit linearly
combined with the log of the std rule computed on the sampled pixels (`spread_level`).

Inputs (float32; masks 1 = real, 0 = padding):
`pixels [N, T, S, C]`, `pixel_mask [N, T, S]`, `date_mask [N, T]`, `day_of_year [N, T]`.
Output: `logit [N]`. Invariant to the order of the pixels of a set and of the dates; values
behind a zero mask never reach the output.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

#: Attention score of a masked date: far below any real score, exp() of it is exactly 0.
_MASKED = -1.0e9
#: Added to a parcel's texture scale (NDVI) before dividing by it, so that a flat parcel (a
#: constant set) does not blow its pixel noise up. Real fields' spread is ~10x larger (median
#: within-parcel std 0.03-0.05, model card).
TEXTURE_FLOOR = 0.003
#: Added to a spread before its log is taken (the level features): below the flattest real
#: field's (~0.015), so the log still orders real spreads.
LEVEL_FLOOR = 0.005


def _log_level(spread: Tensor) -> Tensor:
    """log(spread + `LEVEL_FLOOR`) - log(0.05): ~0 at a typical real within-parcel std."""
    return torch.log(spread + LEVEL_FLOOR) - math.log(0.05)


class PixelSetEncoder(nn.Module):
    """Per date: shared MLP over the parcel-normalised pixels, masked mean+std pooling, the
    date's relative spread and mean NDVI, second MLP.

    Pixels enter as deviations from the date's parcel mean divided by the parcel's texture
    scale (the mean over its real dates of the within-date std), next to the date's mean NDVI:
    the structure of the spread (two populations, a spread that changes with the season). With
    `level`, the log of the date's spread and of the texture scale join the date's summary, so
    the level (what the std rule ranks by) is seen explicitly, not only through the floor.
    """

    def __init__(self, channels: int, hidden: int, out: int, *, level: bool = True) -> None:
        super().__init__()
        self.level = level
        # first layer split in two: the date's mean enters once per date, not once per pixel
        self.pixel_in = nn.Linear(channels, hidden)
        self.context_in = nn.Linear(channels, hidden, bias=False)
        self.pixel_mlp = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        level_features = 2 * channels if level else 0
        self.set_mlp = nn.Sequential(
            nn.Linear(2 * hidden + 2 * channels + level_features, out),
            nn.LayerNorm(out),
            nn.ReLU(),
        )

    def forward(
        self, pixels: Tensor, pixel_mask: Tensor, date_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """`pixels [N, T, S, C]`, `pixel_mask [N, T, S]`, `date_mask [N, T]` -> per date
        `[N, T, out]`, and the parcel's log texture scale `[N, C]` (the std rule's level)."""
        keep = pixel_mask.unsqueeze(-1) > 0
        # zero what is masked first, so NaN or garbage behind the mask cannot leak through
        pixels = torch.where(keep, pixels, torch.zeros_like(pixels))
        count = pixel_mask.sum(dim=2, keepdim=True).clamp(min=1.0).unsqueeze(-1)
        mean, std = _masked_mean_std(pixels, keep, count)  # [N, T, C]
        dates = date_mask.unsqueeze(-1)
        scale = (std * dates).sum(dim=1, keepdim=True) / dates.sum(dim=1, keepdim=True).clamp(
            min=1.0
        )  # [N, 1, C]
        season_level = _log_level(scale)  # [N, 1, C]
        scale = scale + TEXTURE_FLOOR
        relative = (pixels - mean.unsqueeze(2)) / scale.unsqueeze(2)
        features = self.pixel_mlp(self.pixel_in(relative) + self.context_in(mean).unsqueeze(2))
        f_mean, f_std = _masked_mean_std(features, keep, count)
        parts = [f_mean, f_std, mean, std / scale]
        if self.level:
            # the spread's level, per date and for the season: what the std rule ranks by
            parts += [_log_level(std), season_level.expand_as(std)]
        encoded: Tensor = self.set_mlp(torch.cat(parts, dim=-1))
        return encoded, season_level.squeeze(1)


def _masked_mean_std(values: Tensor, keep: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and population std over the pixel axis (dim 2) of the kept pixels."""
    values = torch.where(keep, values, torch.zeros_like(values))
    mean = values.sum(dim=2, keepdim=True) / count
    centred = torch.where(keep, values - mean, torch.zeros_like(values))
    var = (centred * centred).sum(dim=2, keepdim=True) / count
    return mean.squeeze(2), torch.sqrt(var + 1e-6).squeeze(2)


def day_of_year_encoding(day_of_year: Tensor, dim: int, period: float = 1000.0) -> Tensor:
    """Sinusoidal encoding `[N, T, dim]` of the acquisition day (as in the TAE paper)."""
    half = dim // 2
    freq = torch.exp(
        -math.log(period)
        * torch.arange(half, dtype=torch.float32, device=day_of_year.device)
        / half
    )
    angle = day_of_year.unsqueeze(-1) * freq
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


class TemporalAttentionEncoder(nn.Module):
    """L-TAE style: per head a learned master query attends over the (masked) dates."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be a multiple of heads {heads}")
        self.dim, self.heads = dim, heads
        self.norm = nn.LayerNorm(dim)
        self.key = nn.Linear(dim, dim)
        self.query = nn.Parameter(torch.randn(heads, dim // heads) * 0.1)
        self.out = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), nn.ReLU())

    def forward(self, dates: Tensor, day_of_year: Tensor, date_mask: Tensor) -> Tensor:
        """`dates [N, T, dim]` -> `[N, dim]`."""
        n, t, _ = dates.shape
        head_dim = self.dim // self.heads
        x = self.norm(dates + day_of_year_encoding(day_of_year, self.dim))
        keys = self.key(x).reshape(n, t, self.heads, head_dim)
        scores = (keys * self.query).sum(-1) / math.sqrt(head_dim)  # [N, T, H]
        scores = torch.where(date_mask.unsqueeze(-1) > 0, scores, torch.full_like(scores, _MASKED))
        weights = torch.softmax(scores, dim=1).unsqueeze(-1)  # [N, T, H, 1]
        values = x.reshape(n, t, self.heads, head_dim)
        attended = (weights * values).sum(dim=1).reshape(n, self.dim)
        encoded: Tensor = self.out(attended)
        return encoded


class HeterogeneityNet(nn.Module):
    """PSE + temporal attention + MLP decoder -> one logit per parcel."""

    def __init__(
        self,
        channels: int = 1,
        hidden: int = 32,
        dim: int = 64,
        heads: int = 4,
        level: bool = True,
    ) -> None:
        super().__init__()
        self.config = {
            "channels": channels,
            "hidden": hidden,
            "dim": dim,
            "heads": heads,
            "level": level,
        }
        self.level = level
        self.pse = PixelSetEncoder(channels, hidden, dim, level=level)
        self.tae = TemporalAttentionEncoder(dim, heads)
        head_in = dim + (channels if level else 0)
        self.decoder = nn.Sequential(nn.Linear(head_in, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(
        self, pixels: Tensor, pixel_mask: Tensor, date_mask: Tensor, day_of_year: Tensor
    ) -> Tensor:
        """`[N, T, S, C]`, `[N, T, S]`, `[N, T]`, `[N, T]` -> logit `[N]`."""
        dates, season_level = self.pse(pixels, pixel_mask, date_mask)
        dates = torch.where(date_mask.unsqueeze(-1) > 0, dates, torch.zeros_like(dates))
        doy = torch.where(date_mask > 0, day_of_year, torch.zeros_like(day_of_year))
        season = self.tae(dates, doy, date_mask)
        if self.level:
            # combined head: the season's spread level next to the learned structure
            season = torch.cat([season, season_level], dim=-1)
        logit: Tensor = self.decoder(season).squeeze(-1)
        return logit


def spread_level(pixels: Tensor, pixel_mask: Tensor, date_mask: Tensor) -> Tensor:
    """The std rule on the sampled pixels, `[N]`: per real date the population std of the real
    pixels' NDVI (channel 0), averaged over the real dates (0 for a parcel with none)."""
    keep = pixel_mask > 0
    ndvi = torch.where(keep, pixels[..., 0], torch.zeros_like(pixel_mask))
    count = pixel_mask.sum(dim=2).clamp(min=1.0)
    mean = ndvi.sum(dim=2, keepdim=True) / count.unsqueeze(-1)
    centred = torch.where(keep, ndvi - mean, torch.zeros_like(ndvi))
    std = torch.sqrt((centred * centred).sum(dim=2) / count)  # [N, T]
    dates = (date_mask > 0).to(std.dtype)
    return (std * dates).sum(dim=1) / dates.sum(dim=1).clamp(min=1.0)


class StackedHeterogeneity(nn.Module):
    """`a·net_logit + b·log(spread_level + LEVEL_FLOOR) + c`: the network's learned structure
    stacked with the spread level its per-parcel normalisation hides (the std rule's signal).

    Same inputs and output as `HeterogeneityNet`, so the runtime and the ONNX contract do not
    change; (a, b, c) come from a logistic regression (`fit_stack` in the training recipe).
    """

    coefficients: Tensor

    def __init__(self, net: HeterogeneityNet, coefficients: tuple[float, float, float]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("coefficients", torch.tensor(coefficients, dtype=torch.float32))

    def features(
        self, pixels: Tensor, pixel_mask: Tensor, date_mask: Tensor, day_of_year: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The network's logit and the log spread level, both `[N]`."""
        logit = self.net(pixels, pixel_mask, date_mask, day_of_year)
        return logit, torch.log(spread_level(pixels, pixel_mask, date_mask) + LEVEL_FLOOR)

    def forward(
        self, pixels: Tensor, pixel_mask: Tensor, date_mask: Tensor, day_of_year: Tensor
    ) -> Tensor:
        """`[N, T, S, C]`, `[N, T, S]`, `[N, T]`, `[N, T]` -> logit `[N]`."""
        logit, level = self.features(pixels, pixel_mask, date_mask, day_of_year)
        a, b, c = self.coefficients.unbind()
        stacked: Tensor = a * logit + b * level + c
        return stacked
