"""Fitting the stacked heterogeneity score (`models.heterogeneity.StackedHeterogeneity`).

The stack is `a·net_logit + b·log(spread_level + LEVEL_FLOOR) + c`; (a, b, c) are the
maximum-likelihood logistic regression of the labels on those two features, one row per
parcel and engine check (the season so far, as `monitor.stages.heterogeneity` scores it).
The features come from the same PyTorch graph that is exported, so the fitted coefficients
mean in ONNX what they mean here.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from models.heterogeneity import HeterogeneityNet, StackedHeterogeneity
from monitor.errors import ModelError
from monitor.heterogeneity import (
    DEFAULT_BATCH,
    INPUT_NAMES,
    MIN_DATES,
    N_DATES,
    PixelSetSeries,
    model_inputs,
)

F64 = npt.NDArray[np.float64]
#: Ridge on the slopes (not the intercept): keeps Newton's steps finite on separable rows
#: without moving the fit on real-sized sets.
RIDGE = 1e-4


def stack_features(
    net: HeterogeneityNet, series: PixelSetSeries, *, batch: int = DEFAULT_BATCH
) -> tuple[npt.NDArray[np.intp], F64]:
    """Rows of `series` the runtime scores (>= `MIN_DATES` usable dates) and their features
    `[rows, 2]`: the network's logit and the log spread level."""
    stack = StackedHeterogeneity(net, (1.0, 0.0, 0.0)).eval()
    usable = series.usable()
    rows = np.flatnonzero(np.minimum(usable.sum(axis=1), N_DATES) >= MIN_DATES)
    out = np.zeros((len(rows), 2))
    for start in range(0, len(rows), batch):
        part = rows[start : start + batch]
        inputs = model_inputs(series.take(part), usable[part])
        with torch.no_grad():
            logit, level = stack.features(*(torch.from_numpy(inputs[k]) for k in INPUT_NAMES))
        out[start : start + len(part)] = np.stack([logit.numpy(), level.numpy()], axis=1)
    return rows, out


def fit_logistic(features: F64, labels: npt.NDArray[np.bool_]) -> tuple[float, float, float]:
    """(a, b, c) of `P(label) = sigmoid(a·f0 + b·f1 + c)` by Newton's method (deterministic)."""
    y = np.asarray(labels, dtype=np.float64)
    if not 0 < y.sum() < len(y):
        raise ModelError("the stack needs both heterogeneous and homogeneous rows")
    x = np.column_stack([features, np.ones(len(y))])
    ridge = np.diag([RIDGE, RIDGE, 0.0]) * len(y)
    w = np.zeros(3)
    for _ in range(100):
        p = _sigmoid(x @ w)
        gradient = x.T @ (p - y) + ridge @ w
        hessian = (x * (p * (1.0 - p))[:, None]).T @ x + ridge
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    a, b, c = (float(v) for v in w)
    return a, b, c


def log_loss(logits: F64, labels: npt.NDArray[np.bool_]) -> float:
    """Mean binary cross-entropy of `logits` (numerically stable)."""
    y = np.asarray(labels, dtype=np.float64)
    return float(np.mean(np.logaddexp(0.0, logits) - y * logits))


def _sigmoid(z: F64) -> F64:
    out: F64 = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out
