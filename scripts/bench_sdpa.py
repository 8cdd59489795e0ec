"""How much does ``ma.scaled_dot_product_attention`` cost over the bare three-line version?

    python scripts/bench_sdpa.py [--batch 4 --heads 8 --length 1024 --head-dim 64 --repeats 7]

The bare version is the formula and nothing else (matmul, softmax, matmul). The library
version also checks its inputs, supports masks and returns zero rows for fully masked
queries. Both run side by side in one process, alternating, on the same inputs; the script
prints the median time of each and their ratio (the target is at most 1.15). A measurement,
never a test: it does not fail on a slow result.
"""

from __future__ import annotations

import argparse
import math
import platform

import torch

import mini_attn as ma


def bare_attention(query, key, value):
    """The three lines: ``softmax(Q Kᵀ / √E) V``, no checks, no mask."""
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    weights = torch.softmax(scores, dim=-1)
    return weights @ value


def bare_attention_scaled_queries(query, key, value):
    """The three lines with the scale applied to Q (L × E) instead of the scores (L × S)."""
    scores = (query / math.sqrt(query.shape[-1])) @ key.transpose(-2, -1)
    weights = torch.softmax(scores, dim=-1)
    return weights @ value


def library_attention(query, key, value):
    return ma.scaled_dot_product_attention(query, key, value)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default=str(ma.default_device()))
    args = parser.parse_args()

    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    shape = (args.batch, args.heads, args.length, args.head_dim)
    query, key, value = (torch.randn(shape, generator=g).to(device) for _ in range(3))
    inputs = (query, key, value)
    candidates = {
        "bare three lines": bare_attention,
        "bare, Q scaled instead of QKᵀ": bare_attention_scaled_queries,
        "ma.scaled_dot_product_attention": library_attention,
    }

    with torch.no_grad():
        for fn in candidates.values():  # all three compute the same thing
            torch.testing.assert_close(fn(*inputs), bare_attention(*inputs))
        for fn in candidates.values():  # warm up both
            fn(*inputs)
        times: dict[str, list[float]] = {name: [] for name in candidates}
        for _ in range(args.repeats):  # alternate, so that a change of load hits both
            for name, fn in candidates.items():
                run = ma.time_function(lambda fn=fn: fn(*inputs), device=device, warmup=0,
                                       repeats=1)  # fmt: skip
                times[name] += run.times

    print(
        f"B={args.batch}, H={args.heads}, L=S={args.length}, D={args.head_dim}, float32, "
        f"{device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}"
    )
    timings = {name: ma.Timing(tuple(t)) for name, t in times.items()}
    medians = {name: timing.median for name, timing in timings.items()}
    for name, timing in timings.items():
        print(
            f"  {name:33s} median {1e3 * timing.median:8.1f} ms  "
            f"(min {1e3 * timing.min:.1f}, max {1e3 * max(timing.times):.1f}, "
            f"{len(timing.times)} runs)"
        )
    ours = medians["ma.scaled_dot_product_attention"]
    print(f"ratio ma / bare (medians): {ours / medians['bare three lines']:.3f}  (target: <= 1.15)")
    print(
        "ratio ma / bare with Q scaled (medians): "
        f"{ours / medians['bare, Q scaled instead of QKᵀ']:.3f}  (the same arithmetic)"
    )


if __name__ == "__main__":
    main()
