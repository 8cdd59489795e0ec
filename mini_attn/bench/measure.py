"""One configuration: its seeded inputs, its FLOPs and bytes, and its timing.

What the sweep (:mod:`~mini_attn.bench.sweep`) and the decode steps
(:mod:`~mini_attn.bench.decode`) both measure, the same way.
"""

from __future__ import annotations

import math

import torch

from ..tools.flops import attention_bytes, attention_flops
from ..tools.memory import measure_peak_memory
from ..tools.timing import (
    Timing,
    first_call_time,
    synchronizer,
    time_function,
    unsynchronized_times,
)
from .methods import MATERIALIZING, Method

__all__ = ["intensity", "seeded_inputs"]


def _sig(x: float) -> float:
    """``x`` to 6 significant digits: short JSON, no loss that a measurement would notice."""
    return float(f"{x:.6g}")


# A timed run lasts at least this long: a call shorter than that is repeated back to back
# inside one run (calls_per_run), so that the GPU's queue stays full and the time per call
# is the kernels' time, not the gap before the first launch. This helps only while the
# host launches a call faster than the device runs it: host_ms, measured separately,
# says whether it does (when host_ms ≈ median_ms, the run measured the launch rate).
_MIN_RUN_SECONDS = 1e-3
_MAX_CALLS_PER_RUN = 100


def _run_one(method: Method, q, k, v, *, device, warmup: int, repeats: int) -> dict:
    """Time one configuration: first call, timed runs, host cost per call, peak memory."""

    def kernel():
        return method.kernel(q, k, v)

    with torch.no_grad():
        first = first_call_time(kernel, device=device)  # compilation, kernel choice, memory
        one = time_function(kernel, device=device, warmup=warmup, repeats=1).min
        calls = min(_MAX_CALLS_PER_RUN, max(1, math.ceil(_MIN_RUN_SECONDS / max(one, 1e-9))))

        def run():
            for _ in range(calls):
                kernel()

        timing = time_function(run, device=device, warmup=0, repeats=repeats)
        host = unsynchronized_times(
            lambda: method.call(q, k, v), 3, synchronize=synchronizer(device)
        )
        peak = measure_peak_memory(kernel, device=device)
    per_call = Timing(tuple(t / calls for t in timing.times))  # seconds per call
    return {
        "first_call_ms": _sig(first * 1e3),
        "median_ms": _sig(per_call.median * 1e3),
        "min_ms": _sig(per_call.min * 1e3),
        "times_ms": [_sig(t * 1e3) for t in per_call.times],
        "calls_per_run": calls,
        "host_ms": _sig(Timing(tuple(host)).median * 1e3),
        "peak_memory_bytes": int(peak),
    }


def seeded_inputs(sizes, n_queries: int, seq_len: int, head_dim: int, dtype, device, seed: int):
    """Seeded ``q (B, H, L, D)``, ``k`` and ``v (B, H, S, D)`` in ``dtype``.

    Args:
        sizes (SweepSizes): the batch ``B`` and heads ``H``.
        n_queries (int): ``L``: ``S`` for prefill, 1 for a decode step.
        seq_len (int): ``S``.
        head_dim (int): ``D``.
        dtype (torch.dtype): the inputs' dtype (drawn in float32, then converted).
        device (torch.device): where they live.
        seed (int): the generator's seed.

    Returns:
        list of Tensor: ``[q, k, v]``.

    Shape legend:

    - ``B``: batch
    - ``H``: heads
    - ``L``: queries
    - ``S``: keys
    - ``D``: head size
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    shapes = [(sizes.batch, sizes.heads, n, head_dim) for n in (n_queries, seq_len, seq_len)]
    return [torch.randn(s, generator=generator, device=device).to(dtype) for s in shapes]


def intensity(sizes, n_queries: int, seq_len: int, head_dim: int, element_size: int, method):
    """``(flops, bytes)`` of one call: :func:`attention_flops` and :func:`attention_bytes`.

    Args:
        sizes (SweepSizes): the batch, the heads and ``causal``.
        n_queries (int): ``L``: ``S`` for prefill, 1 for a decode step.
        seq_len (int): ``S``.
        head_dim (int): ``D``.
        element_size (int): bytes per element.
        method (str): the method (a materializing one moves the scores too).

    Returns:
        tuple of int: the FLOPs and the least bytes moved.
    """
    shape = (sizes.batch, sizes.heads, n_queries, seq_len, head_dim)
    causal = sizes.causal and n_queries > 1  # the last query sees every key
    flops = attention_flops(*shape, causal=causal)
    moved = attention_bytes(*shape, element_size=element_size, materialized=method in MATERIALIZING)
    return flops, moved
