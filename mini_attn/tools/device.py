"""Pick the device and make runs repeatable."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch

from .._validation import check_positive_int

__all__ = ["default_device", "seed_everything", "threads"]


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


@contextlib.contextmanager
def threads(n: int = 1) -> Iterator[None]:
    """Run the body of a ``with`` block on ``n`` CPU threads, then restore the old count.

    PyTorch's CPU results can depend on the thread count (a sum split over two threads
    adds in another order), and so can timings: chapters that train or time something
    small pin the count with ``with ma.threads(1):`` so that two machines print the same.

    Args:
        n (int): the number of intra-op threads for ``torch.set_num_threads``, at least 1.

    Raises:
        ValueError: if ``n`` is not a positive integer.
    """
    check_positive_int(n, "n")
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
