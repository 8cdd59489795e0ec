"""The command ``python -m mini_attn.bench``: parse the options, run, write, summarise."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from ..tools.device import default_device
from .budget import estimate_seconds
from .machine import default_out, device_info
from .methods import METHODS, with_triton
from .records import bench_table, describe_bench
from .sweep import DTYPES, PRESETS, SweepSizes, run_bench

__all__ = ["main"]

_OVERRIDES = ("seq_lens", "head_dims", "dtypes", "methods", "batch", "heads", "warmup", "repeats")


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
    size.add_argument("--fill", action="store_true", help="B·H = 128: enough work to fill a GPU")
    parser.add_argument("--device", help="cuda, cpu, ... (default: cuda when present)")
    parser.add_argument("--seq-lens", type=int, nargs="+", help="override the preset's L")
    parser.add_argument("--head-dims", type=int, nargs="+", help="override the preset's D")
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), help="override dtypes")
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
    parser.add_argument(
        "--no-decode", action="store_true", help="skip the decode steps (one query, S keys)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--estimate",
        action="store_true",
        help="print the estimated seconds of this sweep on an H100 and exit (runs nothing)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help=(
            "the .json file, or a folder (created if missing) for "
            "bench-<device>-<preset>.json (default: here); -custom, -causal, -tf32 are "
            "added to the name when the run changes the preset"
        ),
    )
    return parser


def _sizes(args: argparse.Namespace, device: torch.device) -> tuple[str, SweepSizes, list]:
    """The preset's name, the sizes with the command line's overrides, the name's suffixes."""
    flags = [name for name in ("tiny", "small", "full", "fill") if getattr(args, name)]
    preset = flags[0] if flags else "full" if device.type == "cuda" else "small"
    changes = {name: getattr(args, name) for name in _OVERRIDES if getattr(args, name) is not None}
    variant = ["custom"] if changes else []
    variant += ["causal"] * args.causal + ["tf32"] * args.tf32
    sizes = PRESETS[preset].replace(
        **changes, causal=args.causal, block_size=args.block_size, decode=not args.no_decode
    )
    if args.methods is None:
        sizes = sizes.replace(methods=with_triton(sizes.methods, device))
    return preset, sizes, variant


def _out_path(out: Path | None, default: Path) -> Path:
    """``out`` itself if it names a ``.json`` file, else ``out / default`` (folder made)."""
    if out is None:
        return default
    if out.is_dir() or out.suffix.lower() != ".json":
        out.mkdir(parents=True, exist_ok=True)
        return out / default
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """The command ``python -m mini_attn.bench``; run with ``--help`` for its options.

    Args:
        argv (sequence of str, optional): the arguments. Default: ``sys.argv[1:]``.

    Returns:
        int: the exit status, 0 when the record was written (or the estimate printed).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    device = default_device() if args.device is None else torch.device(args.device)
    preset, sizes, variant = _sizes(args, device)
    if args.estimate:
        seconds = estimate_seconds(sizes)
        print(f"estimate for --{preset} on an H100 SXM: {seconds:.0f} s "
              f"({len(sizes.configurations())} configurations)")  # fmt: skip
        return 0
    if args.tf32:
        torch.set_float32_matmul_precision("high")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out = _out_path(args.out, default_out(device_info(device), preset, variant))
    record = run_bench(
        sizes,
        device=device,
        measure_ceilings=not args.no_ceilings,
        progress=not args.no_progress,
        command="python -m mini_attn.bench" + ("" if not argv else " " + shlex.join(argv)),
        preset=preset,
        checkpoint=out,  # written after every configuration: a run cut short keeps its data
    )
    counts: dict[str, int] = {}
    for entry in record["results"]:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    print(describe_bench(record))
    first = {"dtype": sizes.dtypes[0], "head_dim": sizes.head_dims[0]}
    print(bench_table(record, **first))
    if record["decode"] is not None:
        print(bench_table(record, **first, phase="decode"))
    print(
        f"wrote {out}: {len(record['results'])} configurations ({summary}) "
        f"in {record['environment']['seconds']} s"
    )
    return 0
