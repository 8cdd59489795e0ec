"""How long a sweep will take on a GPU, estimated before it starts (for a lent machine).

A lent GPU machine is held for minutes, not hours: ``scripts/record_gpu.sh`` prints this
estimate, preset by preset, before it starts. The device's part is estimated from each
configuration's FLOPs and bytes against a specification sheet's peaks (derated: real
kernels reach a fraction of them); the host's part (launches, compilation) from fixed
costs measured on a CPU. It is an estimate, printed as one, never a measurement.
"""

from __future__ import annotations

import math

from .decode import NOT_MEASURED
from .measure import intensity
from .methods import MATERIALIZING
from .sweep import DTYPES, SweepSizes

__all__ = ["H100_SXM", "estimate_seconds"]

#: NVIDIA H100 SXM5, from NVIDIA's specification sheet ("NVIDIA H100 Tensor Core GPU
#: datasheet", https://www.nvidia.com/en-us/data-center/h100/): dense tensor-core rates
#: (the sheet's headline figures with sparsity are twice these), FP32 without tensor
#: cores, and HBM3 bandwidth. Cited numbers, not measurements.
H100_SXM = {
    "name": "NVIDIA H100 SXM5 (specification sheet)",
    "source": "https://www.nvidia.com/en-us/data-center/h100/",
    "tflops": {"bfloat16": 989.0, "float16": 989.0, "tf32": 494.0, "float32": 67.0},
    "bandwidth_tbs": 3.35,
}

_COMPUTE_EFFICIENCY, _MEMORY_EFFICIENCY = 0.4, 0.6  # what kernels reach, pessimistically
_LAUNCH_S = 30e-6  # host time of one launch through PyTorch (measured order on CPUs)
_COMPILE_S = {"naive-compiled": 30.0, "triton": 5.0}  # per dtype / per (dtype, D)
_FIXED_S = 15.0  # imports, the ceilings, the synchronisation demo


def _call_seconds(sizes: SweepSizes, method: str, dtype: str, head_dim: int, seq_len: int,
                  n_queries: int | None = None):  # fmt: skip
    """One call's estimated seconds and least bytes: prefill, or a decode step (1 query)."""
    n_queries = seq_len if n_queries is None else n_queries
    peaks = H100_SXM["tflops"]
    peak = peaks["tf32" if method == "triton" and dtype == "float32" else dtype] * 1e12
    flops, moved = intensity(sizes, n_queries, seq_len, head_dim, DTYPES[dtype].itemsize, method)
    device = max(
        flops / (_COMPUTE_EFFICIENCY * peak),
        moved / (_MEMORY_EFFICIENCY * H100_SXM["bandwidth_tbs"] * 1e12),
    )
    launches = 4 * math.ceil(seq_len / sizes.block_size) if method == "tiled" else 4
    return max(device, launches * _LAUNCH_S), moved


def _timed_seconds(call: float, sizes: SweepSizes) -> float:
    """The seconds :func:`~mini_attn.bench.measure._run_one` spends on a call of ``call``."""
    calls = min(100, max(1, math.ceil(1e-3 / call)))
    runs = 1 + sizes.warmup + 1 + sizes.repeats * calls + 3 + 1  # first, ..., memory
    return runs * call + 0.02


def estimate_seconds(sizes: SweepSizes, *, memory_bytes: float = 80e9) -> float:
    """The estimated wall time of ``run_bench(sizes)`` on an H100 SXM, in seconds.

    Args:
        sizes (SweepSizes): the sweep.
        memory_bytes (float): the GPU's memory; a materializing configuration that needs
            more is counted as a quick out-of-memory error. Default: 80e9.

    Returns:
        float: seconds (an estimate), the decode steps included when ``sizes.decode``.
    """
    total = _FIXED_S
    total += _COMPILE_S["naive-compiled"] * len(sizes.dtypes) * ("naive-compiled" in sizes.methods)
    total += (
        _COMPILE_S["triton"]
        * len(sizes.dtypes)
        * len(sizes.head_dims)
        * ("triton" in sizes.methods)
    )
    for dtype, head_dim, method, seq_len in sizes.configurations():
        call, moved = _call_seconds(sizes, method, dtype, head_dim, seq_len)
        if method in MATERIALIZING and moved > memory_bytes:
            total += 0.1  # out of memory at once; larger lengths are skipped
            continue
        total += _timed_seconds(call, sizes)
    for dtype, head_dim, method, seq_len in sizes.configurations() if sizes.decode else []:
        if method not in NOT_MEASURED:
            call, _ = _call_seconds(sizes, method, dtype, head_dim, seq_len, n_queries=1)
            total += _timed_seconds(call, sizes)
    return total
