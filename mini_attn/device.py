"""Pick the device and make runs repeatable (primitives layer)."""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["default_device", "seed_everything"]


def default_device() -> torch.device:
    """``cuda`` when a GPU is present, else ``cpu`` (design principle 3)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) so two runs print the same numbers.

    Args:
        seed (int): the seed.

    Returns:
        torch.Generator: a CPU generator seeded with ``seed``, for code that takes one.
    """
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (the legacy global generator is what np.random.* uses)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)
