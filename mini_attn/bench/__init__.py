"""``python -m mini_attn.bench``: time attention implementations across sequence lengths.

Tools layer, chapter 8. The command sweeps naive attention
(:func:`~mini_attn.scaled_dot_product_attention`, which materializes the ``L × S``
scores), :func:`~mini_attn.tiled_attention` and PyTorch's fused
:func:`torch.nn.functional.scaled_dot_product_attention` with each of its backends over
sequence lengths, head sizes and dtypes, on the best device present, and writes one JSON
file: the device, the versions, the date, the exact command, and for every configuration
its times, achieved TFLOP/s and peak memory. The chapter reads these files
(:func:`load_bench`, :func:`plot_bench`, :func:`bench_table`).

Usage::

    python -m mini_attn.bench --tiny      # seconds on any CPU (what CI runs)
    python -m mini_attn.bench --small     # a few minutes on a laptop CPU
    python -m mini_attn.bench             # the full sweep, L = 512 … 16384: for a GPU
    python -m mini_attn.bench --out book/data/bench-my-gpu.json

A configuration that does not fit in memory is recorded as ``"oom"``, one that a backend
does not support on this device or dtype as ``"unsupported"``: the sweep never stops
halfway.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import importlib.util
import json
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.std import tqdm

from ..attention.tiled import tiled_attention
from ..core.sdpa import scaled_dot_product_attention
from ..tools.device import default_device
from ..tools.flops import attention_flops
from ..tools.profiling import (
    measure_copy_bandwidth,
    measure_matmul_flops,
    measure_peak_memory,
    time_function,
)

__all__ = [
    "METHODS",
    "PRESETS",
    "SCHEMA",
    "bench_table",
    "describe_bench",
    "load_bench",
    "main",
    "plot_bench",
    "run_bench",
]

SCHEMA = "mini_attn.bench/1"

#: every method the bench knows, in the order of the tables
METHODS = (
    "naive",
    "naive-compiled",
    "tiled",
    "sdpa-math",
    "sdpa-efficient",
    "sdpa-flash",
    "sdpa-cudnn",
    "triton",  # chapter 9's kernel: added to the presets on a GPU with Triton
)
_DEFAULT_METHODS = ("naive", "tiled", "sdpa-math", "sdpa-efficient", "sdpa-flash", "sdpa-cudnn")
_MATERIALIZING = ("naive", "naive-compiled", "sdpa-math")  # hold the L × S scores

#: the sizes of each preset; ``full`` is the default on a GPU, ``small`` on a CPU
PRESETS = {
    "tiny": dict(
        seq_lens=(64, 128),
        head_dims=(16,),
        dtypes=("float32",),
        batch=1,
        heads=2,
        warmup=1,
        repeats=2,
        methods=_DEFAULT_METHODS,
    ),
    "small": dict(
        seq_lens=(256, 512, 1024, 2048, 4096, 8192),
        head_dims=(64,),
        dtypes=("float32", "bfloat16"),
        batch=1,
        heads=1,
        warmup=1,
        repeats=3,
        methods=_DEFAULT_METHODS,
    ),
    "full": dict(
        seq_lens=(512, 1024, 2048, 4096, 8192, 16384),
        head_dims=(64, 128),
        dtypes=("float32", "bfloat16", "float16"),
        batch=1,
        heads=8,
        warmup=3,
        repeats=10,
        methods=("naive", "naive-compiled", *_DEFAULT_METHODS[1:]),
    ),
}

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# --- the methods ---------------------------------------------------------------------------


def _sdpa_backend(method: str):
    from torch.nn.attention import SDPBackend

    return {
        "sdpa-math": SDPBackend.MATH,
        "sdpa-efficient": SDPBackend.EFFICIENT_ATTENTION,
        "sdpa-flash": SDPBackend.FLASH_ATTENTION,
        "sdpa-cudnn": SDPBackend.CUDNN_ATTENTION,
    }[method]


def _make_method(method: str, *, causal: bool, block_size: int) -> Callable:
    """``fn(query, key, value) -> output`` for one method of :data:`METHODS`."""
    if method == "naive":
        return lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=causal)[0]
    if method == "naive-compiled":
        naive = _make_method("naive", causal=causal, block_size=block_size)
        return torch.compile(naive, dynamic=True)
    if method == "tiled":
        return lambda q, k, v: tiled_attention(q, k, v, causal=causal, block_size=block_size)
    if method == "triton":
        return _triton_method(causal)
    if method in METHODS:
        from torch.nn.attention import sdpa_kernel

        backend = _sdpa_backend(method)

        def fused(q, k, v):
            with sdpa_kernel(backend):  # only this backend: an error if it cannot run
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

        return fused
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def _classify(error: Exception) -> tuple[str, str]:
    """``(status, note)`` for an exception raised by one configuration."""
    message = str(error).strip().splitlines()[0][:200] if str(error).strip() else repr(error)
    if isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in message.lower():
        return "oom", message
    unsupported = ("no available kernel", "no viable backend", "not supported", "not implemented")
    if any(text in message.lower() for text in unsupported):
        return "unsupported", message
    return "error", f"{type(error).__name__}: {message}"


# --- the record's header: device, versions, date -------------------------------------------


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nvidia_driver() -> str | None:
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
    try:  # Linux without nvidia-smi: "NVRM version: NVIDIA UNIX ... Kernel Module  550.54.15 ..."
        found = re.search(
            r"Kernel Module\s+([\d.]+)", Path("/proc/driver/nvidia/version").read_text()
        )
    except OSError:
        return None
    return found.group(1) if found else None


def _device_info(device: torch.device) -> dict:
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


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm)\)|\bcpu\b|\bprocessor\b", " ", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def _default_out(info: dict, preset: str | None, variant: Sequence[str] = ()) -> Path:
    """``bench-<device>-<preset>[-<variant>...].json``: a run that changes the preset's
    settings (``custom``), masks (``causal``) or allows TF32 (``tf32``) gets its own name, so
    that it never overwrites the preset's record."""
    name = _slug(info["name"])
    if info["type"] == "cpu":
        name = f"cpu-{name}-{info['threads']}-threads"
    parts = [f"bench-{name}", *([preset] if preset else []), *variant]
    return Path("-".join(parts) + ".json")


def _versions() -> dict:
    package = sys.modules.get(__package__)  # mini_attn, imported before this module
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "mini_attn": getattr(package, "__version__", None),
        "platform": platform.platform(),
    }


def _sig(x: float) -> float:
    """``x`` to 6 significant digits: short JSON, no loss that a measurement would notice."""
    return float(f"{x:.6g}")


def _load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _available_memory() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


# --- the sweep -----------------------------------------------------------------------------


def _inputs(batch, heads, seq_len, head_dim, dtype, device):
    generator = torch.Generator(device=device).manual_seed(seq_len * 1000 + head_dim)
    shape = (batch, heads, seq_len, head_dim)  # (B, H, L, D)
    return [torch.randn(shape, generator=generator, device=device).to(dtype) for _ in range(3)]


def _peaks(device: torch.device, dtypes: Sequence[str], tiny: bool) -> dict:
    """The device's measured ceilings: matmul FLOP/s per dtype and copy bandwidth."""
    on_gpu = device.type == "cuda"
    size = 8192 if on_gpu else (512 if tiny else 1024)
    n_bytes = 2**30 if on_gpu else (2**24 if tiny else 2**27)
    flops = {d: measure_matmul_flops(device=device, dtype=_DTYPES[d], size=size) for d in dtypes}
    return {
        "matmul_size": size,
        "matmul_tflops": {d: _sig(f / 1e12) for d, f in flops.items()},
        "copy_bytes": n_bytes,
        "copy_bandwidth_gbs": _sig(measure_copy_bandwidth(device=device, n_bytes=n_bytes) / 1e9),
    }


def _sync_demo(device, batch, heads, seq_len, head_dim, dtype) -> dict:
    """Time naive attention three ways: the first call, no synchronisation, correctly."""
    q, k, v = _inputs(batch, heads, seq_len, head_dim, _DTYPES[dtype], device)
    run = _make_method("naive", causal=False, block_size=128)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        sync()
        start = time.perf_counter()
        run(q, k, v)
        sync()
        first = time.perf_counter() - start
        unsynced = []
        for _ in range(5):
            start = time.perf_counter()
            run(q, k, v)  # returns as soon as the kernels are queued on a GPU
            unsynced.append(time.perf_counter() - start)
            sync()  # outside the timed region: the mistake is to leave it out above
        timing = time_function(lambda: run(q, k, v), device=device, warmup=1, repeats=5)
    return {
        "method": "naive",
        "dtype": dtype,
        "head_dim": head_dim,
        "seq_len": seq_len,
        "first_call_ms": _sig(first * 1e3),
        "no_sync_ms": _sig(float(np.median(unsynced)) * 1e3),
        "synced_ms": _sig(timing.median * 1e3),
    }


def _too_big_for_cpu(method, batch, heads, seq_len, element_size) -> str | None:
    available = _available_memory()
    if method not in _MATERIALIZING or available is None:
        return None
    need = 3 * batch * heads * seq_len * seq_len * max(element_size, 4)  # scores, exp, weights
    if need > available // 2:
        return f"skipped: needs about {need / 2**30:.1f} GiB, {available / 2**30:.1f} GiB free"
    return None


# a timed run lasts at least this long: a short call is repeated back to back inside it,
# so that the time per call measures the work, not the Python overhead of one launch
_MIN_RUN_SECONDS = 1e-3
_MAX_CALLS_PER_RUN = 100


def _run_one(fn, q, k, v, *, device, warmup, repeats) -> dict:
    with torch.no_grad():
        start = time.perf_counter()
        fn(q, k, v)  # the first call: compilation, kernel choice, allocation
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        first = time.perf_counter() - start
        one = time_function(lambda: fn(q, k, v), device=device, warmup=warmup, repeats=1).min
        calls = min(_MAX_CALLS_PER_RUN, max(1, math.ceil(_MIN_RUN_SECONDS / max(one, 1e-9))))

        def run():
            for _ in range(calls):
                fn(q, k, v)

        timing = time_function(run, device=device, warmup=0, repeats=repeats)
        peak = measure_peak_memory(lambda: fn(q, k, v), device=device)
    times = [t / calls for t in timing.times]  # seconds per call
    return {
        "first_call_ms": _sig(first * 1e3),
        "median_ms": _sig(statistics.median(times) * 1e3),
        "min_ms": _sig(min(times) * 1e3),
        "times_ms": [_sig(t * 1e3) for t in times],
        "calls_per_run": calls,
        "peak_memory_bytes": int(peak),
    }


def run_bench(
    *,
    device: torch.device | str | None = None,
    seq_lens: Sequence[int],
    head_dims: Sequence[int],
    dtypes: Sequence[str],
    methods: Sequence[str] = _DEFAULT_METHODS,
    batch: int = 1,
    heads: int = 8,
    causal: bool = False,
    block_size: int = 128,
    warmup: int = 2,
    repeats: int = 5,
    measure_ceilings: bool = True,
    progress: bool = True,
    command: str | None = None,
    preset: str | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> dict:
    """Run the sweep and return the record that ``python -m mini_attn.bench`` writes.

    For every dtype, head size, method and sequence length (``L = S``), in that order, the
    inputs are seeded random tensors of shape :math:`(B, H, L, D)`; the method is called
    once (``first_call_ms``), then timed with :func:`~mini_attn.time_function` (``warmup``
    untimed calls, ``repeats`` timed runs; a run repeats a call that takes less than a
    millisecond back to back, up to 100 times, ``calls_per_run``, so that the time per call
    measures the work rather than the overhead of one launch) and measured once with
    :func:`~mini_attn.measure_peak_memory`, all under :func:`torch.no_grad`. After an
    out-of-memory error the larger lengths of the same method are skipped.

    Args:
        device (torch.device or str, optional): Default: :func:`~mini_attn.default_device`.
        seq_lens (sequence of int): the lengths ``L = S``.
        head_dims (sequence of int): the head sizes ``D``.
        dtypes (sequence of str): among ``"float32"``, ``"bfloat16"``, ``"float16"``.
        methods (sequence of str): among :data:`METHODS`. Default: all but
            ``"naive-compiled"`` (``torch.compile`` takes minutes on a CPU).
        batch (int): ``B``. Default: 1.
        heads (int): ``H``. Default: 8.
        causal (bool): a causal mask (the FLOPs are halved). Default: False.
        block_size (int): the key block of :func:`~mini_attn.tiled_attention`. Default: 128.
        warmup (int): untimed calls before timing. Default: 2.
        repeats (int): timed calls. Default: 5.
        measure_ceilings (bool): also measure the matmul FLOP/s and the copy bandwidth
            (the roofline) and a timing without synchronisation. Default: True.
        progress (bool): show a progress bar (tqdm, on stderr). Default: True.
        command (str, optional): the command line to record. Default: None (a call from
            Python).
        preset (str, optional): the name of the preset the sizes come from, to record.
        checkpoint (str or path, optional): a file to write the record to after every
            configuration, marked ``"complete": false`` in its ``environment`` until the
            sweep ends (then ``true``), so that a run cut short keeps what it measured.
            Default: None.

    Returns:
        dict: the record: ``schema``, ``date``, ``command``, ``device``, ``versions``,
        ``settings``, ``environment``, ``ceilings`` (or None), ``sync_demo`` (or None) and
        ``results``, a list of one dict per configuration with ``method``, ``dtype``,
        ``head_dim``, ``seq_len``, ``status`` (``"ok"``, ``"oom"``, ``"unsupported"``,
        ``"skipped"`` or ``"error"``), ``note``, and when ``ok`` ``median_ms``, ``min_ms``,
        ``times_ms`` (per call), ``calls_per_run``, ``first_call_ms``, ``tflops`` and
        ``peak_memory_bytes``.

    Shape legend: ``B`` batch, ``H`` heads, ``L`` queries, ``S`` keys, ``D`` head size.
    """
    device = default_device() if device is None else torch.device(device)
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    for name in dtypes:
        if name not in _DTYPES:
            raise ValueError(f"unknown dtype {name!r}; choose from {', '.join(_DTYPES)}")
    if not seq_lens or not head_dims or not dtypes or not methods:
        raise ValueError("seq_lens, head_dims, dtypes and methods must not be empty")
    info = _device_info(device)
    record = {
        "schema": SCHEMA,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "device": info,
        "versions": _versions(),
        "settings": {
            "preset": preset,
            "seq_lens": list(seq_lens),
            "head_dims": list(head_dims),
            "dtypes": list(dtypes),
            "methods": list(methods),
            "batch": batch,
            "heads": heads,
            "causal": causal,
            "block_size": block_size,
            "warmup": warmup,
            "repeats": repeats,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "grad": False,
        },
        "environment": {
            "load_average_start": _load_average(),
            "torch_threads": torch.get_num_threads(),
            "complete": False,
        },
        "ceilings": None,
        "sync_demo": None,
        "results": [],
    }
    start = time.perf_counter()
    if measure_ceilings:
        record["ceilings"] = _peaks(device, dtypes, tiny=max(seq_lens) <= 256)
        demo_len = min(4096, max(seq_lens))
        demo_dtype = "bfloat16" if device.type == "cuda" and "bfloat16" in dtypes else dtypes[0]
        record["sync_demo"] = _sync_demo(device, batch, heads, demo_len, head_dims[0], demo_dtype)

    configs = [(d, h, m, n) for d in dtypes for h in head_dims for m in methods for n in seq_lens]
    bar = tqdm(
        configs,
        desc="bench",
        disable=not progress,
        bar_format="{desc}: {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt}{postfix}",
        file=sys.stderr,
        # in a terminal, a live bar; in a notebook or a log, the first and the last line only
        mininterval=1.0 if sys.stderr.isatty() else 600.0,
    )
    compiled = None
    error_seen = False
    failed: dict = {}  # (dtype, head_dim, method) -> the status that stops larger lengths
    for dtype, head_dim, method, seq_len in bar:
        bar.set_postfix_str(f"{method} {dtype} D={head_dim} L={seq_len}", refresh=False)
        entry = {"method": method, "dtype": dtype, "head_dim": head_dim, "seq_len": seq_len}
        entry.update(batch=batch, heads=heads, status="ok", note=None)
        group = (dtype, head_dim, method)
        too_big = (
            None
            if device.type == "cuda"
            else _too_big_for_cpu(method, batch, heads, seq_len, _DTYPES[dtype].itemsize)
        )
        if group in failed:
            entry.update(status=failed[group][0], note=failed[group][1])
        elif too_big:
            entry.update(status="skipped", note=too_big)
        else:
            try:
                if method == "naive-compiled":  # one function: it recompiles for a new dtype
                    if compiled is None:
                        compiled = _make_method(method, causal=causal, block_size=block_size)
                    fn = compiled
                else:
                    fn = _make_method(method, causal=causal, block_size=block_size)
                q, k, v = _inputs(batch, heads, seq_len, head_dim, _DTYPES[dtype], device)
                entry.update(_run_one(fn, q, k, v, device=device, warmup=warmup, repeats=repeats))
                flops = attention_flops(batch, heads, seq_len, seq_len, head_dim, causal=causal)
                entry["tflops"] = _sig(flops / (entry["median_ms"] / 1e3) / 1e12)
                if method == "triton" and dtype == "float32" and device.type == "cuda":
                    entry["note"] = "tl.dot multiplies float32 in TF32, whatever --tf32 says"
            except Exception as error:  # one configuration must not stop the sweep
                error_seen = True  # its traceback holds the inputs: collect it below
                status, note = _classify(error)
                entry.update(status=status, note=note)
                if status == "oom":  # larger lengths need more: do not try them
                    failed[group] = ("skipped", f"out of memory at L={seq_len} already")
                elif status == "unsupported":
                    failed[group] = (status, note)
            finally:
                q = k = v = None
                if error_seen:
                    gc.collect()  # only then: a full collection takes a noticeable time
                    error_seen = False
                if device.type == "cuda":
                    # a broken CUDA context raises here too: the next entry will say so
                    with contextlib.suppress(RuntimeError):
                        torch.cuda.empty_cache()
        record["results"].append(entry)
        if checkpoint is not None:
            _write_record(record, Path(checkpoint))
    bar.close()
    record["environment"]["load_average_end"] = _load_average()
    record["environment"]["seconds"] = round(time.perf_counter() - start, 1)
    record["environment"]["complete"] = True
    if checkpoint is not None:
        _write_record(record, Path(checkpoint))
    return record


# --- reading and showing a record ----------------------------------------------------------


def _write_record(record: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_text(json.dumps(record, indent=1) + "\n")
    partial.replace(path)  # never a half-written file, even if the run is killed here


def load_bench(path: str | os.PathLike) -> dict:
    """Read a record written by ``python -m mini_attn.bench``.

    Args:
        path (str or path): the JSON file.

    Returns:
        dict: the record (see :func:`run_bench`), with ``"path"`` set to ``path``.

    Raises:
        ValueError: the file is not a bench record of this schema.
    """
    with open(path) as file:
        record = json.load(file)
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        got = record.get("schema") if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"{path} is not a {SCHEMA} record (schema: {got!r})")
    missing = {"date", "command", "device", "versions", "settings", "results"} - set(record)
    if missing:
        raise ValueError(f"{path} lacks the fields {sorted(missing)}")
    record["path"] = str(path)
    return record


def describe_bench(record: dict) -> str:
    """One paragraph that says what a record is: device, versions, date, command.

    Args:
        record (dict): a record from :func:`run_bench` or :func:`load_bench`.

    Returns:
        str: the description.
    """
    info, versions, settings = record["device"], record["versions"], record["settings"]
    if info["type"] == "cuda":
        device = (
            f"{info['name']} (compute capability {info['compute_capability']}, "
            f"driver {info['driver'] or 'unknown'}, CUDA {info['cuda']})"
        )
    else:
        threads = info.get("threads")
        device = f"{info['type'].upper()} {info['name']} ({threads} thread{'s' * (threads != 1)})"
    command = record["command"] or "run_bench(...) called from Python"
    load = record.get("environment", {}).get("load_average_start")
    stopped = record.get("environment", {}).get("complete") is False
    return (
        f"{device}; torch {versions['torch']}, Python {versions['python']}, "
        f"mini_attn {versions['mini_attn']}; recorded {record['date']}"
        + (f" (load average {load[0]})" if load else "")
        + f"; B={settings['batch']}, H={settings['heads']}, "
        f"causal={settings['causal']}; command: {command}"
        + (
            f"; INCOMPLETE: the run stopped after {len(record['results'])} configurations"
            if stopped
            else ""
        )
    )


def _select(record: dict, dtype: str, head_dim: int) -> dict[str, dict[int, dict]]:
    table: dict[str, dict[int, dict]] = {}
    for entry in record["results"]:
        if entry["dtype"] == dtype and entry["head_dim"] == head_dim:
            table.setdefault(entry["method"], {})[entry["seq_len"]] = entry
    if not table:
        raise ValueError(
            f"the record has no results for dtype={dtype!r}, head_dim={head_dim}; it has "
            f"dtypes {record['settings']['dtypes']} and head_dims {record['settings']['head_dims']}"
        )
    return table


_METRICS = {
    "median_ms": ("time (ms, median)", 1.0, "{:.3g}"),
    "min_ms": ("time (ms, min)", 1.0, "{:.3g}"),
    "tflops": ("achieved TFLOP/s", 1.0, "{:.3g}"),
    "peak_memory_bytes": ("peak extra memory (MiB)", 1 / 2**20, "{:.4g}"),
}


def _metric(metric: str):
    if metric not in _METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(_METRICS)}")
    return _METRICS[metric]


def bench_table(record: dict, *, metric: str = "median_ms", dtype: str, head_dim: int) -> str:
    """A text table of one metric: a row per method, a column per sequence length.

    Args:
        record (dict): a record from :func:`run_bench` or :func:`load_bench`.
        metric (str): ``"median_ms"``, ``"min_ms"``, ``"tflops"`` or
            ``"peak_memory_bytes"`` (shown in MiB). Default: ``"median_ms"``.
        dtype (str): which dtype's results.
        head_dim (int): which head size's results.

    Returns:
        str: the table; a configuration that did not run shows its status (``oom``,
        ``unsupported``, ``skipped``, ``error``).
    """
    label, factor, fmt = _metric(metric)
    table = _select(record, dtype, head_dim)
    lengths = sorted({n for row in table.values() for n in row})
    width = max(len(m) for m in table) + 2
    lines = [
        f"{label}, {dtype}, D={head_dim}",
        "L".ljust(width) + "".join(f"{n:>12}" for n in lengths),
    ]
    for method, row in table.items():
        cells = []
        for n in lengths:
            entry = row.get(n)
            if entry is None:
                cells.append("")
            elif entry["status"] == "ok":
                cells.append(fmt.format(entry[metric] * factor))
            else:
                cells.append(entry["status"])
        lines.append(method.ljust(width) + "".join(f"{c:>12}" for c in cells))
    return "\n".join(lines)


def plot_bench(
    record: dict,
    *,
    metric: str = "median_ms",
    dtype: str,
    head_dim: int,
    methods: Sequence[str] | None = None,
    ax=None,
    title: str | None = None,
):
    """Plot one metric against the sequence length, a line per method, log-log.

    A method that ran out of memory ends with a cross at its last length, labelled in
    the legend.

    Args:
        record (dict): a record from :func:`run_bench` or :func:`load_bench`.
        metric (str): as in :func:`bench_table`. Default: ``"median_ms"``.
        dtype (str): which dtype's results.
        head_dim (int): which head size's results.
        methods (sequence of str, optional): which methods. Default: every method with
            at least one result that ran.
        ax (matplotlib Axes, optional): where to draw; a new figure if None.
        title (str, optional): the title. Default: the metric, dtype and head size.

    Returns:
        matplotlib Axes: the axes drawn on.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    label, factor, _ = _metric(metric)
    table = _select(record, dtype, head_dim)
    if methods is None:
        methods = [m for m, row in table.items() if any(e["status"] == "ok" for e in row.values())]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for i, method in enumerate(methods):
        row = table.get(method, {})
        ok = sorted((n, e[metric] * factor) for n, e in row.items() if e["status"] == "ok")
        oom = sorted(n for n, e in row.items() if e["status"] == "oom")
        if not ok:
            continue
        name = method + (f" (out of memory at L={oom[0]})" if oom else "")
        ax.loglog(*zip(*ok, strict=True), "o-", color=f"C{i % 10}", label=name)
        if oom:
            ax.plot([ok[-1][0]], [ok[-1][1]], "x", color=f"C{i % 10}", ms=12, mew=2)
    ax.set_xscale("log", base=2)
    lengths = sorted({n for row in table.values() for n in row})
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("sequence length L = S")
    ax.set_ylabel(label)
    ax.set_title(title or f"{label}: {dtype}, D={head_dim}")
    ax.legend(fontsize=8)
    return ax


# --- chapter 9: the Triton kernel joins the sweep on a GPU with Triton --------------------


def _triton_method(causal: bool) -> Callable:
    """Chapter 9's fused kernel, :func:`~mini_attn.triton_attention`, as a bench method."""
    from ..kernels.autograd import triton_attention

    return lambda q, k, v: triton_attention(q, k, v, causal=causal)


def _with_triton(methods: Sequence[str], device: torch.device) -> tuple[str, ...]:
    """A preset's methods, plus ``"triton"`` on a CUDA device when Triton is installed."""
    if device.type != "cuda" or "triton" in methods or importlib.util.find_spec("triton") is None:
        return tuple(methods)
    return (*methods, "triton")


# --- the command ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mini_attn.bench",
        description=(
            "Time naive, tiled and PyTorch's fused attention across sequence lengths on "
            "the best device present, and write one JSON record."
        ),
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--tiny", action="store_true", help="seconds on a CPU (CI)")
    size.add_argument("--small", action="store_true", help="a few minutes on a CPU")
    size.add_argument("--full", action="store_true", help="L = 512 … 16384 (GPU default)")
    parser.add_argument("--device", help="cuda, cpu, ... (default: cuda when present)")
    parser.add_argument("--seq-lens", type=int, nargs="+", help="override the preset's L")
    parser.add_argument("--head-dims", type=int, nargs="+", help="override the preset's D")
    parser.add_argument("--dtypes", nargs="+", choices=sorted(_DTYPES), help="override dtypes")
    parser.add_argument("--methods", nargs="+", choices=METHODS, help="override methods")
    parser.add_argument("--batch", type=int, help="override the batch size B")
    parser.add_argument("--heads", type=int, help="override the number of heads H")
    parser.add_argument("--warmup", type=int, help="override the untimed calls")
    parser.add_argument("--repeats", type=int, help="override the timed calls")
    parser.add_argument("--block-size", type=int, default=128, help="tiled_attention's block")
    parser.add_argument("--causal", action="store_true", help="use a causal mask")
    parser.add_argument("--tf32", action="store_true", help="let float32 matmuls use TF32")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (torch.set_num_threads)")
    parser.add_argument("--no-ceilings", action="store_true", help="skip the roofline peaks")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--out",
        type=Path,
        help=(
            "the JSON file, or a folder for bench-<device>-<preset>.json (default: here); "
            "-custom, -causal, -tf32 are added to the name when the run changes the preset"
        ),
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command ``python -m mini_attn.bench``; run with ``--help`` for its options.

    Args:
        argv (sequence of str, optional): the arguments. Default: ``sys.argv[1:]``.

    Returns:
        int: the exit status, 0 when the record was written.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    device = default_device() if args.device is None else torch.device(args.device)
    if args.tiny or args.small or args.full:
        preset = "tiny" if args.tiny else "small" if args.small else "full"
    else:
        preset = "full" if device.type == "cuda" else "small"
    sizes = dict(PRESETS[preset])
    variant = []
    for name in (
        "seq_lens",
        "head_dims",
        "dtypes",
        "methods",
        "batch",
        "heads",
        "warmup",
        "repeats",
    ):
        if getattr(args, name) is not None:
            sizes[name] = getattr(args, name)
            variant = ["custom"]
    variant += ["causal"] * args.causal + ["tf32"] * args.tf32
    if args.methods is None:
        sizes["methods"] = _with_triton(sizes["methods"], device)
    if args.tf32:
        torch.set_float32_matmul_precision("high")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out = args.out or _default_out(_device_info(device), preset, variant)
    if out.is_dir():
        out = out / _default_out(_device_info(device), preset, variant)
    record = run_bench(
        device=device,
        causal=args.causal,
        block_size=args.block_size,
        measure_ceilings=not args.no_ceilings,
        progress=not args.no_progress,
        command="python -m mini_attn.bench" + ("" if not argv else " " + shlex.join(argv)),
        preset=preset,
        checkpoint=out,  # written after every configuration: a run cut short keeps its data
        **sizes,
    )
    counts: dict[str, int] = {}
    for entry in record["results"]:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    print(describe_bench(record))
    print(bench_table(record, dtype=sizes["dtypes"][0], head_dim=sizes["head_dims"][0]))
    print(
        f"wrote {out}: {len(record['results'])} configurations ({summary}) "
        f"in {record['environment']['seconds']} s"
    )
    return 0
