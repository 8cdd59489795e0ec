"""The sweep: every configuration of a preset, timed, and written as one record.

For every dtype, head size, method and sequence length (``L = S``), in that order, the
inputs are seeded random tensors of shape :math:`(B, H, L, D)`; the method is called
once (``first_call_ms``), then timed with :func:`~mini_attn.time_function`, its host
cost measured (``host_ms``) and its peak memory measured once, all under
:func:`torch.no_grad`; then a decode step of the same configuration is timed the same way
(:mod:`~mini_attn.bench.decode`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import gc
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.std import tqdm

from ..tools.device import default_device
from ..tools.roofline import measure_copy_bandwidth, measure_matmul_flops
from ..tools.timing import (
    sync_demo,
    synchronizer,
)
from .decode import measure_decode
from .machine import available_memory, device_info, load_average, versions
from .measure import _run_one, _sig, intensity, seeded_inputs
from .methods import DEFAULT_METHODS, MATERIALIZING, METHODS, Method, classify, make_method
from .records import SCHEMA, write_record

__all__ = ["DTYPES", "PRESETS", "SweepSizes", "run_bench"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclasses.dataclass(frozen=True)
class SweepSizes:
    """What one sweep measures: lengths, head sizes, dtypes, methods, the batch, repeats.

    Attributes:
        seq_lens (tuple of int): the lengths ``L = S``.
        head_dims (tuple of int): the head sizes ``D``.
        dtypes (tuple of str): among ``"float32"``, ``"bfloat16"``, ``"float16"``.
        methods (tuple of str): among :data:`~mini_attn.bench.METHODS`.
        batch (int): ``B``. Default: 1.
        heads (int): ``H``. Default: 8.
        causal (bool): a causal mask (the FLOPs are halved). Default: False.
        block_size (int): the key block of :func:`~mini_attn.tiled_attention`. Default: 128.
        warmup (int): untimed calls before timing. Default: 2.
        repeats (int): timed runs. Default: 5.
        decode (bool): also time a decode step (one query against ``S`` cached keys,
            :mod:`~mini_attn.bench.decode`) for every configuration. Default: True.

    Raises:
        ValueError: for an unknown method or dtype, or an empty list.
    """

    seq_lens: tuple[int, ...]
    head_dims: tuple[int, ...]
    dtypes: tuple[str, ...]
    methods: tuple[str, ...] = DEFAULT_METHODS
    batch: int = 1
    heads: int = 8
    causal: bool = False
    block_size: int = 128
    warmup: int = 2
    repeats: int = 5
    decode: bool = True

    def __post_init__(self) -> None:
        for name in ("seq_lens", "head_dims", "dtypes", "methods"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        for name in self.methods:
            if name not in METHODS:
                raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
        for name in self.dtypes:
            if name not in DTYPES:
                raise ValueError(f"unknown dtype {name!r}; choose from {', '.join(DTYPES)}")

    def replace(self, **changes) -> SweepSizes:
        """A copy with some fields changed (:func:`dataclasses.replace`)."""
        return dataclasses.replace(self, **changes)

    def configurations(self) -> list[tuple[str, int, str, int]]:
        """``(dtype, head_dim, method, seq_len)`` of every configuration, in sweep order."""
        return [
            (d, h, m, n)
            for d in self.dtypes
            for h in self.head_dims
            for m in self.methods
            for n in self.seq_lens
        ]


#: the sizes of each preset; ``full`` is the default on a GPU, ``small`` on a CPU, and
#: ``fill`` gives a GPU enough programs to fill it (B·H = 128)
PRESETS = {
    "tiny": SweepSizes((64, 128), (16,), ("float32",), batch=1, heads=2, warmup=1, repeats=2),
    "small": SweepSizes(
        (256, 512, 1024, 2048, 4096, 8192), (64,), ("float32", "bfloat16"), heads=1,
        warmup=1, repeats=3,
    ),
    "full": SweepSizes(
        (512, 1024, 2048, 4096, 8192, 16384), (64, 128), ("float32", "bfloat16", "float16"),
        methods=("naive", "naive-compiled", *DEFAULT_METHODS[1:]), heads=8, warmup=2,
        repeats=5,
    ),
    "fill": SweepSizes(
        (1024, 4096, 8192), (64, 128), ("bfloat16",),
        methods=("naive", "sdpa-efficient", "sdpa-flash", "sdpa-cudnn"), batch=4, heads=32,
        warmup=2, repeats=5,
    ),
}  # fmt: skip


def _inputs(sizes: SweepSizes, seq_len: int, head_dim: int, dtype: str, device):
    """Prefill's seeded inputs, ``(B, H, L, D)`` with ``L = S``."""
    seed = seq_len * 1000 + head_dim
    return seeded_inputs(sizes, seq_len, seq_len, head_dim, DTYPES[dtype], device, seed)


def _ceilings(device: torch.device, dtypes: Sequence[str], tiny: bool) -> dict:
    """The device's measured ceilings: matmul FLOP/s per dtype and copy bandwidth."""
    on_gpu = device.type == "cuda"
    size = 8192 if on_gpu else (512 if tiny else 1024)
    n_bytes = 2**30 if on_gpu else (2**24 if tiny else 2**27)
    flops = {d: measure_matmul_flops(device=device, dtype=DTYPES[d], size=size) for d in dtypes}
    return {
        "matmul_size": size,
        "matmul_tflops": {d: _sig(f / 1e12) for d, f in flops.items()},
        "copy_bytes": n_bytes,
        "copy_bandwidth_gbs": _sig(measure_copy_bandwidth(device=device, n_bytes=n_bytes) / 1e9),
    }


def _sync_demo(device: torch.device, sizes: SweepSizes) -> dict:
    """Naive attention timed three ways (:func:`~mini_attn.tools.timing.sync_demo`)."""
    seq_len, head_dim = min(4096, max(sizes.seq_lens)), sizes.head_dims[0]
    on_gpu_bf16 = device.type == "cuda" and "bfloat16" in sizes.dtypes
    dtype = "bfloat16" if on_gpu_bf16 else sizes.dtypes[0]
    q, k, v = _inputs(sizes, seq_len, head_dim, dtype, device)
    naive = make_method("naive", causal=False, block_size=sizes.block_size).kernel
    with torch.no_grad():
        demo = sync_demo(lambda: naive(q, k, v), synchronize=synchronizer(device))
    return {
        "method": "naive",
        "dtype": dtype,
        "head_dim": head_dim,
        "seq_len": seq_len,
        "first_call_ms": _sig(demo.first_call * 1e3),
        "no_sync_ms": _sig(demo.unsynchronized.median * 1e3),
        "synced_ms": _sig(demo.synchronized.median * 1e3),
    }


def _too_big_for_cpu(method: str, sizes: SweepSizes, seq_len: int, dtype: str) -> str | None:
    available = available_memory()
    if method not in MATERIALIZING or available is None:
        return None
    element_size = max(DTYPES[dtype].itemsize, 4)
    need = 3 * sizes.batch * sizes.heads * seq_len * seq_len * element_size  # scores, exp, P
    if need > available // 2:
        return f"skipped: needs about {need / 2**30:.1f} GiB, {available / 2**30:.1f} GiB free"
    return None


def _new_record(sizes: SweepSizes, device, command: str | None, preset: str | None) -> dict:
    settings = {"preset": preset, **dataclasses.asdict(sizes)}
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
    settings.update(
        float32_matmul_precision=torch.get_float32_matmul_precision(),
        tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32),
        grad=False,
    )
    return {
        "schema": SCHEMA,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "device": device_info(device),
        "versions": versions(),
        "settings": settings,
        "environment": {
            "load_average_start": load_average(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "complete": False,
        },
        "ceilings": None,
        "sync_demo": None,
        "results": [],
        "decode": [] if sizes.decode else None,
    }


class _Sweep:
    """The state a sweep carries from one configuration to the next."""

    def __init__(self, sizes: SweepSizes, device: torch.device):
        self.sizes, self.device = sizes, device
        self.compiled: Method | None = None  # naive-compiled: one function, every dtype
        self.failed: dict = {}  # (dtype, head_dim, method) -> the status for larger L

    def method(self, name: str) -> Method:
        if name != "naive-compiled":
            return make_method(name, causal=self.sizes.causal, block_size=self.sizes.block_size)
        if self.compiled is None:  # compiled once; it recompiles for a new dtype only
            self.compiled = make_method(name, causal=self.sizes.causal, block_size=128)
        return self.compiled

    def measure(self, dtype: str, head_dim: int, name: str, seq_len: int) -> dict:
        """The result entry of one configuration; never raises for the method's errors."""
        sizes, device = self.sizes, self.device
        entry = {"method": name, "dtype": dtype, "head_dim": head_dim, "seq_len": seq_len}
        entry.update(batch=sizes.batch, heads=sizes.heads, status="ok", note=None)
        group = (dtype, head_dim, name)
        too_big = None if device.type == "cuda" else _too_big_for_cpu(name, sizes, seq_len, dtype)
        if group in self.failed:
            return {**entry, "status": self.failed[group][0], "note": self.failed[group][1]}
        if too_big:
            return {**entry, "status": "skipped", "note": too_big}
        q = k = v = None
        try:
            q, k, v = _inputs(sizes, seq_len, head_dim, dtype, device)
            entry.update(_run_one(self.method(name), q, k, v, device=device,
                                  warmup=sizes.warmup, repeats=sizes.repeats))  # fmt: skip
            flops, moved = intensity(sizes, seq_len, seq_len, head_dim, DTYPES[dtype].itemsize,
                                     name)  # fmt: skip
            seconds = entry["median_ms"] / 1e3
            entry.update(tflops=_sig(flops / seconds / 1e12), flops_per_byte=_sig(flops / moved),
                         gbs=_sig(moved / seconds / 1e9))  # fmt: skip
            if name == "triton" and dtype == "float32" and device.type == "cuda":
                entry["note"] = "tl.dot multiplies float32 in TF32, whatever --tf32 says"
        except Exception as error:  # one configuration must not stop the sweep
            status, note = classify(error)
            entry.update(status=status, note=note)
            if status == "oom":  # larger lengths need more: do not try them
                self.failed[group] = ("skipped", f"out of memory at L={seq_len} already")
            elif status == "unsupported":
                self.failed[group] = (status, note)
            q = k = v = error = None  # the traceback holds the inputs: free them
            gc.collect()  # only after an error: a full collection takes a noticeable time
        finally:
            if device.type == "cuda":  # a broken CUDA context raises: the next entry says so
                with contextlib.suppress(RuntimeError):
                    torch.cuda.empty_cache()
        return entry


def _progress(configs: list, enabled: bool):
    return tqdm(
        configs,
        desc="bench",
        disable=not enabled,
        bar_format="{desc}: {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt}{postfix}",
        file=sys.stderr,
        # in a terminal, a live bar; in a notebook or a log, the first and the last line only
        mininterval=1.0 if sys.stderr.isatty() else 600.0,
    )


def run_bench(
    sizes: SweepSizes,
    *,
    device: torch.device | str | None = None,
    measure_ceilings: bool = True,
    progress: bool = True,
    command: str | None = None,
    preset: str | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> dict:
    """Run the sweep and return the record that ``python -m mini_attn.bench`` writes.

    For every configuration of ``sizes`` (:meth:`SweepSizes.configurations`), prefill
    (``L = S`` queries) and then a decode step (one query against ``S`` keys): the method
    is called once (``first_call_ms``, :func:`~mini_attn.first_call_time`), then timed
    with :func:`~mini_attn.time_function`: ``warmup`` untimed calls, ``repeats`` timed
    runs. A run repeats a call that takes less than a millisecond back to back, up to
    100 times (``calls_per_run``): this keeps the GPU's queue full, so the time per call
    is the kernels' time *provided the host launches calls faster than the GPU runs
    them*. Whether it does is measured separately: ``host_ms`` is the host's time per
    call of what a user calls (checks and launch included), without waiting for the
    device; when it comes close to ``median_ms`` the run is host-bound. Peak memory is
    measured once (:func:`~mini_attn.measure_peak_memory`). After an out-of-memory error
    the larger lengths of the same method are skipped.

    Args:
        sizes (SweepSizes): what to sweep (a value of
            :data:`~mini_attn.bench.sweep.PRESETS`, or your own).
        device (torch.device or str, optional): Default: :func:`~mini_attn.default_device`.
        measure_ceilings (bool): also measure the matmul FLOP/s and the copy bandwidth
            (the roofline) and the synchronisation demo. Default: True.
        progress (bool): show a progress bar (tqdm, on stderr). Default: True.
        command (str, optional): the command line to record. Default: None (a call from
            Python).
        preset (str, optional): the name of the preset the sizes come from, to record.
        checkpoint (str or path, optional): a file to write the record to after every
            configuration, marked ``"complete": false`` in its ``environment`` until the
            sweep ends, so that a run cut short keeps what it measured. Default: None.

    Returns:
        dict: the record: ``schema``, ``date``, ``command``, ``device``, ``versions``
        (Triton's included), ``settings``, ``environment`` (load averages, CPU count,
        seconds), ``ceilings`` (or None), ``sync_demo`` (or None) and ``results``, one
        dict per configuration with ``method``, ``dtype``, ``head_dim``, ``seq_len``,
        ``status`` (``"ok"``, ``"oom"``, ``"unsupported"``, ``"skipped"`` or
        ``"error"``), ``note``, and when ``ok`` ``median_ms``, ``min_ms``, ``times_ms``
        (per call), ``calls_per_run``, ``host_ms``, ``first_call_ms``, ``tflops`` and
        ``peak_memory_bytes``, ``flops_per_byte`` and ``gbs`` (the least bytes moved,
        :func:`~mini_attn.attention_bytes`, per second); ``decode`` (None when
        ``sizes.decode`` is False), the same fields for one decode step of every
        configuration (:func:`~mini_attn.bench.decode.measure_decode`).

    Raises:
        TypeError: if ``sizes`` is not a :class:`SweepSizes`.

    Shape legend:

    - ``B``: batch
    - ``H``: heads
    - ``L``: queries
    - ``S``: keys (``S = L``)
    - ``D``: head size
    """
    if not isinstance(sizes, SweepSizes):
        raise TypeError(f"sizes must be a SweepSizes, got {type(sizes).__name__}")
    device = default_device() if device is None else torch.device(device)
    record = _new_record(sizes, device, command, preset)
    start = time.perf_counter()
    if measure_ceilings:
        record["ceilings"] = _ceilings(device, sizes.dtypes, tiny=max(sizes.seq_lens) <= 256)
        record["sync_demo"] = _sync_demo(device, sizes)
    sweep = _Sweep(sizes, device)
    bar = _progress(sizes.configurations(), progress)
    for dtype, head_dim, method, seq_len in bar:
        bar.set_postfix_str(f"{method} {dtype} D={head_dim} L={seq_len}", refresh=False)
        record["results"].append(sweep.measure(dtype, head_dim, method, seq_len))
        if sizes.decode:
            record["decode"].append(
                measure_decode(sizes, DTYPES[dtype], head_dim, method, seq_len, device)
            )
        if checkpoint is not None:
            write_record(record, Path(checkpoint))
    bar.close()
    record["environment"].update(
        load_average_end=load_average(),
        seconds=round(time.perf_counter() - start, 1),
        complete=True,
    )
    if checkpoint is not None:
        write_record(record, Path(checkpoint))
    return record
