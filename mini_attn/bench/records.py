"""Reading and showing bench records: load, check, describe, tabulate, plot (chapters 8, 9).

One loader, :func:`load_bench` (one file) or :func:`load_records` (a folder), checks the
schema; the chapters read records only through it. :func:`roofline_from_record` places a
record's naive and fused points under the roofline its ceilings define.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from ..tools.flops import attention_bytes, attention_flops
from ..tools.plotting import plot_roofline, point_style

__all__ = [
    "SCHEMA",
    "bench_table",
    "data_folder",
    "describe_bench",
    "load_bench",
    "load_records",
    "plot_bench",
    "roofline_from_record",
    "write_record",
]

SCHEMA = "mini_attn.bench/1"

_REQUIRED = {"date", "command", "device", "versions", "settings", "results"}
_ENTRY = {"method", "dtype", "head_dim", "seq_len", "status"}


def write_record(record: dict, path: str | os.PathLike) -> None:
    """Write ``record`` as JSON to ``path``, creating its folder; never half a file.

    Args:
        record (dict): a record from :func:`~mini_attn.bench.run_bench`.
        path (str or path): the file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_text(json.dumps(record, indent=1) + "\n")
    partial.replace(path)  # atomic: a run killed here leaves the previous file whole


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
    missing = _REQUIRED - set(record)
    if missing:
        raise ValueError(f"{path} lacks the fields {sorted(missing)}")
    for part, what in (("results", "result"), ("decode", "decode entry")):
        for i, entry in enumerate(record.get(part) or []):  # decode: absent in older records
            if not isinstance(entry, dict) or _ENTRY - set(entry):
                raise ValueError(f"{path}: {what} {i} lacks the fields {sorted(_ENTRY)}")
    record["path"] = str(path)
    return record


def data_folder(start: str | os.PathLike = ".") -> Path | None:
    """The book's ``data`` folder: ``start/data`` if it exists, else the repository's.

    Args:
        start (str or path): where to look first (a chapter runs in ``book/``).
            Default: the current folder.

    Returns:
        Path or None: the folder, or None when neither exists (an installed package).
    """
    repository = Path(__file__).resolve().parents[2] / "book" / "data"
    return next((p for p in (Path(start) / "data", repository) if p.is_dir()), None)


def load_records(
    folder: str | os.PathLike | None = None, *, device_type: str | None = None
) -> list[dict]:
    """Every record ``bench-*.json`` in ``folder``, checked by :func:`load_bench`.

    Args:
        folder (str or path, optional): Default: :func:`data_folder`.
        device_type (str, optional): keep only the records of this device type
            (``"cuda"``, ``"cpu"``). Default: all.

    Returns:
        list of dict: the records, sorted by file name; empty when there is no folder.

    Raises:
        ValueError: if a file is not a record of this schema.
    """
    folder = data_folder() if folder is None else Path(folder)
    if folder is None or not folder.is_dir():
        return []
    records = [load_bench(p) for p in sorted(folder.glob("bench-*.json"))]
    return [r for r in records if device_type in (None, r["device"]["type"])]


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
    environment = record.get("environment", {})
    load = environment.get("load_average_start")
    cpus = f" on {environment['cpu_count']} CPUs" if environment.get("cpu_count") else ""
    stopped = record.get("environment", {}).get("complete") is False
    return (
        f"{device}; torch {versions['torch']}, "
        + (f"Triton {versions['triton']}, " if versions.get("triton") else "")
        + f"Python {versions['python']}, "
        f"mini_attn {versions['mini_attn']}; recorded {record['date']}"
        + (f" (load average {load[0]}{cpus})" if load else "")
        + f"; B={settings['batch']}, H={settings['heads']}, "
        f"causal={settings['causal']}; command: {command}"
        + (
            f"; INCOMPLETE: the run stopped after {len(record['results'])} configurations"
            if stopped
            else ""
        )
    )


def _results_by_method(
    record: dict, dtype: str, head_dim: int, phase: str = "prefill"
) -> dict[str, dict[int, dict]]:
    if phase not in ("prefill", "decode"):
        raise ValueError(f"phase must be 'prefill' or 'decode', got {phase!r}")
    entries = record["results"] if phase == "prefill" else record.get("decode")
    if entries is None:
        raise ValueError("the record has no decode steps (recorded before they were, or with "
                         "decode=False)")  # fmt: skip
    table: dict[str, dict[int, dict]] = {}
    for entry in entries:
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
    "host_ms": ("host time per call (ms, not synchronised)", 1.0, "{:.3g}"),
    "flops_per_byte": ("FLOPs per byte moved (least traffic)", 1.0, "{:.3g}"),
    "gbs": ("least bytes moved per second (GB/s)", 1.0, "{:.3g}"),
}


def _metric_format(metric: str):
    if metric not in _METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(_METRICS)}")
    return _METRICS[metric]


def bench_table(
    record: dict, *, metric: str = "median_ms", dtype: str, head_dim: int, phase: str = "prefill"
) -> str:
    """A text table of one metric: a row per method, a column per sequence length.

    Args:
        record (dict): a record from :func:`run_bench` or :func:`load_bench`.
        metric (str): ``"median_ms"``, ``"min_ms"``, ``"tflops"``,
            ``"peak_memory_bytes"`` (shown in MiB), ``"host_ms"``, ``"flops_per_byte"``
            or ``"gbs"``. Default: ``"median_ms"``.
        dtype (str): which dtype's results.
        head_dim (int): which head size's results.
        phase (str): ``"prefill"`` (``L = S`` queries, the sweep's results) or
            ``"decode"`` (one query against ``S`` keys). Default: ``"prefill"``.

    Returns:
        str: the table; a configuration that did not run shows its status (``oom``,
        ``unsupported``, ``skipped``, ``error``).

    Raises:
        ValueError: for an unknown metric or phase, a dtype and head size the record
            lacks, or decode steps the record does not have.
    """
    label, factor, fmt = _metric_format(metric)
    table = _results_by_method(record, dtype, head_dim, phase)
    lengths = sorted({n for row in table.values() for n in row})
    width = max(len(m) for m in table) + 2
    what = "prefill, L = S" if phase == "prefill" else "decode step, one query"
    lines = [
        f"{label}, {dtype}, D={head_dim}" + (f" ({what})" if record.get("decode") else ""),
        ("L" if phase == "prefill" else "S").ljust(width) + "".join(f"{n:>12}" for n in lengths),
    ]
    for method, row in table.items():
        cells = []
        for n in lengths:
            entry = row.get(n)
            if entry is None:
                cells.append("")
            elif entry["status"] == "ok":
                value = entry.get(metric)  # host_ms: absent from records before it existed
                cells.append("n/a" if value is None else fmt.format(value * factor))
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
    the legend. Rates below 1 TFLOP/s (a CPU) are drawn in GFLOP/s.

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

    Raises:
        ValueError: for an unknown metric, or a dtype and head size the record lacks.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    label, factor, _ = _metric_format(metric)
    table = _results_by_method(record, dtype, head_dim)
    rates = [e.get("tflops") or 0 for row in table.values() for e in row.values()]
    if metric == "tflops" and max(rates, default=0) < 1:  # a CPU: GFLOP/s reads better
        label, factor = "achieved GFLOP/s", 1e3
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
        style = point_style(i)
        ax.loglog(*zip(*ok, strict=True), "-", label=name, **style)
        if oom:
            ax.plot([ok[-1][0]], [ok[-1][1]], "x", color=style["color"], ms=12, mew=2)
    ax.set_xscale("log", base=2)
    lengths = sorted({n for row in table.values() for n in row})
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("sequence length L = S")
    ax.set_ylabel(label)
    ax.set_title(title or f"{label}: {dtype}, D={head_dim}")
    ax.legend(fontsize=8)
    return ax


def roofline_from_record(
    record: dict,
    *,
    dtype: str = "bfloat16",
    head_dim: int = 64,
    methods: Sequence[str] = ("naive", "sdpa-flash"),
    ax=None,
):
    """A recorded device's roofline, with the recorded points of some methods under it.

    The ceilings are the record's measured ones (matmul FLOP/s for ``dtype``, copy
    bandwidth); each point's intensity is :func:`~mini_attn.attention_flops` over
    :func:`~mini_attn.attention_bytes` (materialized for the methods that hold the
    scores), its height the recorded FLOP/s.

    Args:
        record (dict): a record with ``ceilings`` (not None).
        dtype (str): which dtype; the record's first if it has no ceiling for it.
            Default: ``"bfloat16"``.
        head_dim (int): which head size. Default: 64.
        methods (sequence of str): whose points. Default: naive and sdpa-flash.
        ax (matplotlib Axes, optional): where to draw; a new figure if None.

    Returns:
        matplotlib Axes: the axes drawn on.

    Raises:
        ValueError: if the record has no ceilings.
    """
    from .methods import MATERIALIZING

    ceilings = record.get("ceilings")
    if not ceilings:
        raise ValueError(f"{record.get('path', 'the record')} has no ceilings (--no-ceilings)")
    dtype = dtype if dtype in ceilings["matmul_tflops"] else record["settings"]["dtypes"][0]
    element_size = {"float32": 4, "bfloat16": 2, "float16": 2}[dtype]
    causal = bool(record["settings"].get("causal"))
    points = []
    for e in record["results"]:
        if e["status"] != "ok" or (e["dtype"], e["head_dim"]) != (dtype, head_dim):
            continue
        if e["method"] in methods:
            sizes = (e["batch"], e["heads"], e["seq_len"], e["seq_len"], e["head_dim"])
            moved = attention_bytes(
                *sizes, element_size=element_size, materialized=e["method"] in MATERIALIZING
            )
            intensity = attention_flops(*sizes, causal=causal) / moved
            points.append((f"{e['method']}, L = {e['seq_len']}", intensity, e["tflops"] * 1e12))
    title = f"{record['device']['name']}, {dtype}, D = {head_dim} (recorded)"
    return plot_roofline(
        ceilings["matmul_tflops"][dtype] * 1e12,
        ceilings["copy_bandwidth_gbs"] * 1e9,
        points=points,
        ax=ax,
        title=title,
    )
