"""The roofline: the hardware's two ceilings, measured, and the rate they allow (chapter 8).

A computation of arithmetic intensity ``I`` (FLOPs per byte moved) runs at most at
``min(peak FLOP/s, I × bandwidth)``. :func:`measure_matmul_flops` and
:func:`measure_copy_bandwidth` measure the two ceilings with the project's one timer,
:func:`~mini_attn.time_function`; :func:`~mini_attn.plot_roofline` draws them.
"""

from __future__ import annotations

import numpy as np
import torch

from .device import default_device
from .timing import time_function

__all__ = [
    "attainable_flops",
    "measure_copy_bandwidth",
    "measure_matmul_flops",
]


def measure_matmul_flops(
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    size: int = 2048,
    repeats: int = 5,
) -> float:
    r"""The FLOP/s of a large square matrix product: a measured compute ceiling.

    Args:
        device (torch.device or str, optional): Default: :func:`~mini_attn.default_device`.
        dtype (torch.dtype): the dtype of the matrices. Default: float32.
        size (int): ``n`` of the :math:`n \times n` matrices; use 8192 on a large GPU.
            Default: 2048.
        repeats (int): timed runs; the median is used. Default: 5.

    Returns:
        float: :math:`2 n^3` FLOPs divided by the median time, in FLOP/s.
    """
    device = default_device() if device is None else torch.device(device)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    timing = time_function(
        lambda: a @ b, device=device, warmup=1, repeats=repeats
    )
    return 2 * size**3 / timing.median


def measure_copy_bandwidth(
    *,
    device: torch.device | str | None = None,
    n_bytes: int = 2**27,
    repeats: int = 5,
) -> float:
    r"""The bytes per second of a large tensor copy: a measured memory-bandwidth ceiling.

    Args:
        device (torch.device or str, optional): Default: :func:`~mini_attn.default_device`.
        n_bytes (int): the size of the copied tensor; choose it much larger than the
            caches (use 2**30 on a GPU). Default: 2**27 (128 MiB).
        repeats (int): timed runs; the median is used. Default: 5.

    Returns:
        float: bytes read plus bytes written (:math:`2 \times` ``n_bytes``) per second.
    """
    device = default_device() if device is None else torch.device(device)
    source = torch.ones(n_bytes // 4, device=device)
    target = torch.empty_like(source)
    timing = time_function(
        lambda: target.copy_(source),
        device=device,
        warmup=1,
        repeats=repeats,
    )
    return 2 * source.numel() * 4 / timing.median


def attainable_flops(intensity, peak_flops: float, bandwidth: float):
    """The roofline: the best FLOP/s a computation of a given intensity can reach.

    A computation that does ``intensity`` FLOPs per byte moved cannot run faster than the
    memory delivers bytes (``intensity × bandwidth``) nor than the arithmetic units
    compute (``peak_flops``): it reaches at most the smaller of the two.

    Args:
        intensity (float or array): arithmetic intensity in FLOP/byte.
        peak_flops (float): the compute ceiling in FLOP/s.
        bandwidth (float): the memory ceiling in bytes/s.

    Returns:
        float or array: ``min(peak_flops, intensity * bandwidth)`` in FLOP/s, the shape of
        ``intensity``.

    Raises:
        ValueError: if ``peak_flops`` or ``bandwidth`` is not positive.
    """
    if peak_flops <= 0 or bandwidth <= 0:
        raise ValueError(
            "peak_flops and bandwidth must be positive, got "
            f"{peak_flops}, {bandwidth}"
        )
    result = np.minimum(
        peak_flops, np.asarray(intensity, dtype=float) * bandwidth
    )
    return float(result) if result.ndim == 0 else result
