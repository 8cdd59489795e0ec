"""Measure the peak memory of a call, on a GPU or on the CPU (chapter 8).

Memory is read from PyTorch's allocator on a GPU (``torch.cuda.max_memory_allocated``)
and from the operating system on the CPU (the process's resident set, whose high-water
mark Linux lets us reset).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import resource
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from .device import default_device

__all__ = ["measure_peak_memory"]


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
