"""``python -m mini_attn.bench``: time attention implementations across sequence lengths.

Tools layer, chapters 8 and 9. The command sweeps naive attention
(:func:`~mini_attn.scaled_dot_product_attention`, which materializes the ``L × S``
scores), :func:`~mini_attn.tiled_attention`, PyTorch's fused
:func:`torch.nn.functional.scaled_dot_product_attention` with each of its backends and,
on a GPU, chapter 9's Triton kernel, over sequence lengths, head sizes and dtypes, on the
best device present, and writes one JSON file: the device, the versions, the date, the
machine's load, the exact command, and for every configuration its times, achieved
TFLOP/s, FLOPs per byte and peak memory, for prefill (``L = S`` queries) and for one
decode step (one query against ``S`` cached keys, chapter 7). The chapters read these
files (:func:`load_records`, :func:`plot_bench`, :func:`bench_table`,
:func:`roofline_from_record`).

One module per job: :mod:`~mini_attn.bench.methods` (what is timed),
:mod:`~mini_attn.bench.machine` (the record's header), :mod:`~mini_attn.bench.sweep`
(:class:`SweepSizes`, :data:`PRESETS`, :func:`run_bench`), :mod:`~mini_attn.bench.measure`
(one configuration timed), :mod:`~mini_attn.bench.decode` (the decode steps),
:mod:`~mini_attn.bench.records` (reading and showing), :mod:`~mini_attn.bench.budget`
(the time a GPU run will take) and :mod:`~mini_attn.bench.cli` (the command).

Usage::

    python -m mini_attn.bench --tiny      # seconds on any CPU (what CI runs)
    python -m mini_attn.bench --small     # a few minutes on a laptop CPU
    python -m mini_attn.bench             # the full sweep, L = 512 … 16384: for a GPU
    python -m mini_attn.bench --fill      # B·H = 128, enough programs to fill a GPU
    python -m mini_attn.bench --out book/data   # a folder: created if missing

A configuration that does not fit in memory is recorded as ``"oom"``, one that a backend
does not support on this device or dtype as ``"unsupported"``: the sweep never stops
halfway.
"""

from __future__ import annotations

from .budget import H100_SXM, estimate_seconds
from .cli import main
from .methods import METHODS
from .records import (
    SCHEMA,
    bench_table,
    data_folder,
    describe_bench,
    load_bench,
    load_records,
    plot_bench,
    roofline_from_record,
)
from .sweep import PRESETS, SweepSizes, run_bench

__all__ = [
    "H100_SXM",
    "METHODS",
    "PRESETS",
    "SCHEMA",
    "SweepSizes",
    "bench_table",
    "data_folder",
    "describe_bench",
    "estimate_seconds",
    "load_bench",
    "load_records",
    "main",
    "plot_bench",
    "roofline_from_record",
    "run_bench",
]
