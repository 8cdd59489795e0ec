"""Measure time, memory and the hardware's ceilings, the right way per device.

Chapter 8. A GPU runs asynchronously: a call that launches a kernel returns long before
the kernel finishes, so a timer must wait for the device (CUDA events and
``torch.cuda.synchronize``), discard warm-up runs and repeat. On the CPU the call
returns when the work is done, and ``time.perf_counter()`` is enough. Memory is read
from PyTorch's allocator on a GPU (``torch.cuda.max_memory_allocated``) and from the
operating system on the CPU (the process's resident set).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .device import default_device

__all__ = [
    "Timing",
    "attainable_flops",
    "measure_copy_bandwidth",
    "measure_matmul_flops",
    "measure_peak_memory",
    "plot_roofline",
    "time_function",
]


@dataclass(frozen=True)
class Timing:
    """The wall times of the repeated runs of one function.

    Attributes:
        times (tuple of float): seconds of each timed run, in order (warm-up excluded).
    """

    times: tuple[float, ...]

    @property
    def median(self) -> float:
        """The median time in seconds, which a few slow runs do not move."""
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        """The fastest run in seconds, the one least disturbed by other work."""
        return min(self.times)

    @property
    def mean(self) -> float:
        """The mean time in seconds."""
        return statistics.fmean(self.times)

    def __str__(self) -> str:
        runs = len(self.times)
        return f"median {self.median * 1e3:.3g} ms, min {self.min * 1e3:.3g} ms, {runs} runs"


def _time_cuda(fn: Callable[[], object], repeats: int) -> list[float]:
    """Time ``fn`` on the current CUDA stream with events; seconds per run."""
    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()  # a marker in the GPU's queue, not a clock read on the CPU
        fn()
        end.record()
        end.synchronize()  # wait until the GPU has reached the end marker
        times.append(start.elapsed_time(end) / 1e3)  # elapsed_time is in milliseconds
    return times


def _time_host(fn: Callable[[], object], repeats: int, synchronize: Callable[[], None]):
    """Time ``fn`` with the CPU's clock, waiting for the device before reading it."""
    times = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        fn()
        synchronize()  # the work must be finished before the clock is read
        times.append(time.perf_counter() - start)
    return times


def time_function(
    fn: Callable[[], object],
    *,
    device: torch.device | str | None = None,
    warmup: int = 2,
    repeats: int = 10,
) -> Timing:
    """Time ``fn()`` correctly on its device: warm-up, synchronisation, repeats.

    The ``warmup`` first calls are not timed (they pay for memory allocation, kernel
    selection, caches and, with ``torch.compile``, compilation). On a CUDA device each
    run is timed with a pair of CUDA events recorded around it and read after the GPU
    has finished; elsewhere with ``time.perf_counter()``, after synchronising the
    device (MPS) when it runs asynchronously.

    Args:
        fn (callable): a function of no argument that runs the work on ``device``.
        device (torch.device or str, optional): where ``fn`` runs. Default:
            :func:`~mini_attn.default_device`.
        warmup (int): untimed calls first. Default: 2.
        repeats (int): timed calls. Default: 10.

    Returns:
        Timing: the seconds of each timed call, with their median and minimum.
    """
    device = default_device() if device is None else torch.device(device)
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got {warmup} and {repeats}")
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.synchronize()  # start from an idle GPU
            return Timing(tuple(_time_cuda(fn, repeats)))
    if device.type == "mps":
        return Timing(tuple(_time_host(fn, repeats, torch.mps.synchronize)))
    return Timing(tuple(_time_host(fn, repeats, lambda: None)))


# --- memory ------------------------------------------------------------------------------


def _proc_status(field: str) -> int | None:
    """A memory field of /proc/self/status (``VmRSS``, ``VmHWM``) in bytes; None off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # the kernel reports kB
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of resident memory to the current value (Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _release_free_memory() -> None:
    """Collect garbage and give the C allocator's free pages back to the system (glibc)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and name:
        with contextlib.suppress(OSError, AttributeError):  # no malloc_trim (musl)
            ctypes.CDLL(name).malloc_trim(0)


def _max_rss_bytes() -> int:
    """The process's peak resident memory so far, from getrusage (never reset)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def _cpu_peak_memory(fn: Callable[[], object]) -> int:
    _release_free_memory()
    if _reset_peak_rss():  # Linux: exact high-water mark of this call
        before = _proc_status("VmRSS")
        fn()
        return max(0, _proc_status("VmHWM") - before)
    # elsewhere the high-water mark cannot be reset: its growth is a lower bound
    before = _max_rss_bytes()
    fn()
    return max(0, _max_rss_bytes() - before)


def measure_peak_memory(fn: Callable[[], object], *, device: torch.device | str | None = None):
    """The peak memory that ``fn()`` needs on top of what was in use before, in bytes.

    On a CUDA device this is exact: PyTorch's allocator counts the bytes of every tensor
    (``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``). On the CPU it
    is the growth of the process's resident memory: on Linux the kernel's high-water
    mark is reset first, so the answer is the peak during this call (pages of the C
    allocator and of other threads included, so it is approximate to about a megabyte);
    on other systems, where it cannot be reset, the growth of the process's lifetime peak,
    which is 0 when an earlier call already used more: measure in a fresh process there.

    Args:
        fn (callable): a function of no argument that runs the work on ``device``.
        device (torch.device or str, optional): where ``fn`` runs. Default:
            :func:`~mini_attn.default_device`.

    Returns:
        int: peak extra bytes while ``fn`` ran (its result included, if it keeps one).
    """
    device = default_device() if device is None else torch.device(device)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            fn()
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - before
    return _cpu_peak_memory(fn)


# --- the roofline ------------------------------------------------------------------------


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
    timing = time_function(lambda: a @ b, device=device, warmup=1, repeats=repeats)
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
    timing = time_function(lambda: target.copy_(source), device=device, warmup=1, repeats=repeats)
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
    """
    if peak_flops <= 0 or bandwidth <= 0:
        raise ValueError(
            f"peak_flops and bandwidth must be positive, got {peak_flops}, {bandwidth}"
        )
    result = np.minimum(peak_flops, np.asarray(intensity, dtype=float) * bandwidth)
    return float(result) if result.ndim == 0 else result


def plot_roofline(
    peak_flops: float,
    bandwidth: float,
    *,
    points: Sequence[tuple[str, float, float]] = (),
    ax=None,
    title: str | None = None,
    intensity_range: tuple[float, float] | None = None,
):
    """Draw the roofline of a device and place measured computations under it.

    Log-log axes: arithmetic intensity (FLOP/byte) horizontally, FLOP/s vertically. The
    slanted part is the memory ceiling, the flat part the compute ceiling; they meet at
    the ridge point ``peak_flops / bandwidth``. A computation left of the ridge is
    memory-bound, right of it compute-bound.

    Args:
        peak_flops (float): the compute ceiling in FLOP/s.
        bandwidth (float): the memory ceiling in bytes/s.
        points (sequence of (str, float, float)): ``(label, intensity, achieved FLOP/s)``
            for each measured computation.
        ax (matplotlib Axes, optional): where to draw; a new figure if None.
        title (str, optional): the title of the axes.
        intensity_range (tuple of float, optional): the horizontal range. Default: from
            the points and the ridge point, with a margin.

    Returns:
        matplotlib Axes: the axes drawn on.
    """
    import matplotlib.pyplot as plt

    ridge = peak_flops / bandwidth
    if intensity_range is None:
        values = [ridge] + [p[1] for p in points]
        intensity_range = (min(values) / 8, max(values) * 8)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    x = np.geomspace(*intensity_range, 200)
    ax.loglog(x, attainable_flops(x, peak_flops, bandwidth), "k-", lw=2, label="roofline")
    ax.axvline(ridge, color="grey", ls=":", lw=1, label=f"ridge point, {ridge:.3g} FLOP/byte")
    for i, (label, intensity, achieved) in enumerate(points):
        ax.loglog([intensity], [achieved], "o", color=f"C{i % 10}", label=label)
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("FLOP/s")
    if title is not None:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return ax
