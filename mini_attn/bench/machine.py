"""The record's header: which device, which versions, how loaded the machine was.

A timing means little without the machine it was taken on: the bench records the
device (name, memory, compute capability, driver), the versions of Python, PyTorch,
NumPy, Triton and this package, and the machine's load average before and after.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["available_memory", "default_out", "device_info", "load_average", "versions"]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nvidia_driver() -> str | None:
    """The driver's version, from ``nvidia-smi`` or, without it, from ``/proc`` (Linux)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        out = None
    if out is not None and out.stdout.strip():
        return out.stdout.strip().splitlines()[0]
    try:  # "NVRM version: NVIDIA UNIX ... Kernel Module  550.54.15 ..."
        found = re.search(
            r"Kernel Module\s+([\d.]+)", Path("/proc/driver/nvidia/version").read_text()
        )
    except OSError:
        return None
    return found.group(1) if found else None


def device_info(device: torch.device) -> dict:
    """What the record says about the device.

    Args:
        device (torch.device): where the sweep runs.

    Returns:
        dict: ``type`` and ``name``, ``memory_bytes``; on CUDA also
        ``compute_capability``, ``multiprocessors``, ``driver``, ``cuda``, ``cudnn``;
        on the CPU ``threads`` (PyTorch's intra-op threads).
    """
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {
            "type": "cuda",
            "name": props.name,
            "memory_bytes": props.total_memory,
            "compute_capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count,
            "driver": _nvidia_driver(),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
    pages = os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    return {
        "type": device.type,
        "name": _cpu_name() if device.type == "cpu" else device.type,
        "memory_bytes": pages * os.sysconf("SC_PAGE_SIZE") if pages else None,
        "threads": torch.get_num_threads(),
    }


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict:
    """The versions of Python, PyTorch, NumPy, Triton (None if absent), this package.

    Returns:
        dict: ``python``, ``torch``, ``numpy``, ``triton``, ``mini_attn``, ``platform``.
    """
    package = sys.modules.get("mini_attn")
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "triton": _installed("triton"),
        "mini_attn": getattr(package, "__version__", None),
        "platform": platform.platform(),
    }


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (``os.getloadavg``), or None where absent."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def available_memory() -> int | None:
    """The bytes of free physical memory, or None where the system does not say."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm)\)|\bcpu\b|\bprocessor\b", " ", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def default_out(info: dict, preset: str | None, variant: Sequence[str] = ()) -> Path:
    """``bench-<device>-<preset>[-<variant>...].json``, the record's default file name.

    A run that changes the preset's settings (``custom``), masks (``causal``) or allows
    TF32 (``tf32``) gets its own name, so that it never overwrites the preset's record.

    Args:
        info (dict): from :func:`device_info`.
        preset (str, optional): the preset's name.
        variant (sequence of str): the suffixes.

    Returns:
        Path: a file name, relative.
    """
    name = _slug(info["name"])
    if info["type"] == "cpu":
        name = f"cpu-{name}-{info['threads']}-threads"
    parts = [f"bench-{name}", *([preset] if preset else []), *variant]
    return Path("-".join(parts) + ".json")
