"""Decode steps: one new query attending to ``S`` cached keys, timed per method.

A sweep's results time **prefill**: ``L = S`` queries at once, the work of reading a
prompt. Generating with a key/value cache (chapter 7) then runs one **decode** step per
token: a single query against every cached key and value. Its FLOPs are ``1/L`` of the
prefill's while it still reads all of ``K`` and ``V``, so its arithmetic intensity is
about ``2 / element_size`` FLOPs per byte whatever ``S`` is, far below any device's ridge
point: a decode step is bound by memory traffic. :func:`measure_decode` times that step
the way the sweep (:func:`~mini_attn.bench.run_bench`) times prefill, and records
``flops_per_byte`` and the bandwidth it reached (``gbs``) beside the time.

The last position sees every key, so a causal decode step is the same computation as a
non-causal one (bottom-right alignment); the step is timed without a mask.
"""

from __future__ import annotations

import contextlib
import gc

import torch

from .measure import _run_one, _sig, intensity, seeded_inputs
from .methods import classify, make_method

__all__ = ["measure_decode"]

#: methods whose decode step is not measured, and why
NOT_MEASURED = {
    "naive-compiled": "torch.compile specialises a length of 1: a new compilation, not timed",
}


def measure_decode(sizes, dtype: torch.dtype, head_dim: int, name: str, seq_len: int, device):
    """The decode entry of one configuration; never raises for the method's errors.

    Args:
        sizes (SweepSizes): the sweep (batch, heads, warm-up, repeats, block size).
        dtype (torch.dtype): the inputs' dtype.
        head_dim (int): ``D``.
        name (str): the method, one of :data:`~mini_attn.bench.METHODS`.
        seq_len (int): ``S``, the keys in the cache.
        device (torch.device): where to run.

    Returns:
        dict: ``method``, ``dtype``, ``head_dim``, ``seq_len`` (``S``), ``n_queries`` (1),
        ``status`` and ``note``, and when ``ok`` the fields of a sweep's result
        (``median_ms`` …) with ``tflops``, ``flops_per_byte`` and ``gbs`` (the least
        bytes moved per second, in GB/s).
    """
    entry = {"method": name, "dtype": str(dtype).removeprefix("torch."), "head_dim": head_dim,
             "seq_len": seq_len, "n_queries": 1, "status": "ok", "note": None}  # fmt: skip
    if name in NOT_MEASURED:
        return {**entry, "status": "skipped", "note": NOT_MEASURED[name]}
    q = k = v = None
    try:
        # a seed of its own: the decode query is not the prefill's first row
        seed = seq_len * 1000 + head_dim + 7
        q, k, v = seeded_inputs(sizes, 1, seq_len, head_dim, dtype, device, seed)
        method = make_method(name, causal=False, block_size=sizes.block_size)
        entry.update(_run_one(method, q, k, v, device=device, warmup=sizes.warmup,
                              repeats=sizes.repeats))  # fmt: skip
        flops, moved = intensity(sizes, 1, seq_len, head_dim, dtype.itemsize, name)
        seconds = entry["median_ms"] / 1e3
        entry.update(tflops=_sig(flops / seconds / 1e12), flops_per_byte=_sig(flops / moved),
                     gbs=_sig(moved / seconds / 1e9))  # fmt: skip
    except Exception as error:  # one configuration must not stop the sweep
        entry["status"], entry["note"] = classify(error)
        q = k = v = error = None  # the traceback holds the inputs: free them
        gc.collect()
    finally:
        if device.type == "cuda":
            with contextlib.suppress(RuntimeError):
                torch.cuda.empty_cache()
    return entry
