"""The 1-D regression data set of chapter 1: noisy samples of a smooth curve."""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["RegressionData", "make_regression_1d", "regression_target"]


class RegressionData(NamedTuple):
    """Training points (sorted by ``x``), and a dense noise-free test grid."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def regression_target(x: torch.Tensor) -> torch.Tensor:
    """The noise-free curve the data is drawn from: ``f(x) = sin(2x) + 0.4 x``."""
    return torch.sin(2 * x) + 0.4 * x


def make_regression_1d(
    n_train: int = 50,
    n_test: int = 100,
    *,
    noise: float = 0.3,
    low: float = 0.0,
    high: float = 5.0,
    seed: int = 0,
) -> RegressionData:
    """Draw ``n_train`` noisy points of :func:`regression_target` on ``[low, high]``.

    Args:
        n_train (int): number of training points, drawn uniformly and sorted.
        n_test (int): number of test points, evenly spaced, without noise.
        noise (float): standard deviation of the Gaussian noise added to ``y_train``.
        low (float): left end of the interval.
        high (float): right end of the interval.
        seed (int): the seed; the same seed gives the same data.

    Returns:
        RegressionData: ``x_train``, ``y_train`` of shape :math:`(n_{train},)` and
        ``x_test``, ``y_test`` of shape :math:`(n_{test},)`, all float32.
    """
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be positive, got {n_train} and {n_test}")
    if not high > low:
        raise ValueError(f"high must be greater than low, got low={low}, high={high}")
    g = torch.Generator().manual_seed(seed)
    x_train = torch.sort(torch.rand(n_train, generator=g) * (high - low) + low).values
    y_train = regression_target(x_train) + noise * torch.randn(n_train, generator=g)
    x_test = torch.linspace(low, high, n_test)
    return RegressionData(x_train, y_train, x_test, regression_target(x_test))
