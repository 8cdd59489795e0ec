"""Checkers for the exercises of the appendix (chapter 10), "Attention across devices"."""

from __future__ import annotations

import numpy as np
import torch

from ..attention.ring import block_source, ring_causal_work
from ._core import CheckFailed, call, passed

__all__ = ["check_ring_bytes", "check_ring_schedule", "check_zigzag_positions"]


def _as_int_table(got, case: str, what: str) -> torch.Tensor:
    """A list of lists, an array or a tensor of integers as an int64 tensor, or a clear error."""
    try:
        table = torch.as_tensor(np.asarray(got.tolist() if hasattr(got, "tolist") else got))
    except (TypeError, ValueError):
        raise CheckFailed(
            f"case '{case}': return {what} as a list of lists or a tensor of integers, "
            f"got {type(got).__name__}"
        ) from None
    if table.dtype.is_floating_point or table.dtype == torch.bool or table.is_complex():
        if table.dtype.is_floating_point and bool((table == table.round()).all()):
            return table.long()
        raise CheckFailed(f"case '{case}': {what} should hold integers, got {table.dtype}")
    return table.long()


def check_ring_schedule(fn) -> None:
    """Exercise 10.1: ``fn(world_size) -> (W, W) table``, ``held[step][rank]``.

    The rank whose key/value block rank ``rank`` holds at step ``step``, when every rank
    starts with its own block and, after each step, passes the block it holds to
    ``rank + 1`` and receives the block of ``rank - 1`` (wrapping around).
    """
    cases = [(f"world_size={w}", w) for w in (2, 3, 4, 5, 1)]
    for case, world_size in cases:
        expected = torch.tensor(
            [[block_source(r, t, world_size) for r in range(world_size)] for t in range(world_size)]
        )
        got = _as_int_table(call(fn, case, world_size), case, "the schedule")
        steps = torch.arange(world_size)[:, None]
        ranks = torch.arange(world_size)[None, :]
        if tuple(got.shape) != (world_size, world_size):
            hint = ""
            if tuple(got.shape) == (world_size - 1, world_size):
                hint = (
                    "\nHint: there are W steps, not W - 1: at the last step a rank still "
                    "computes with the block it has just received (it only stops passing it)."
                )
            raise CheckFailed(
                f"case '{case}': the schedule should have shape ({world_size}, {world_size}): "
                f"one row per step, one column per rank; got {tuple(got.shape)}{hint}"
            )
        if torch.equal(got, expected):
            continue
        message = f"case '{case}': expected held[step][rank] =\n{expected.tolist()}\ngot\n"
        message += f"{got.tolist()}"
        if torch.equal(got, (ranks + steps) % world_size):
            hint = (
                "the blocks travel the other way: rank r receives from r - 1, so at step t "
                "it holds the block of rank r - t."
            )
        elif torch.equal(got, ranks - steps):
            hint = "wrap around the ring: rank r - t is taken modulo W (Python's % does it)."
        elif torch.equal(got, (ranks - steps - 1) % world_size):
            hint = "at step 0 every rank still holds its own block."
        elif torch.equal(got, expected.T):
            hint = "rows are steps and columns ranks: held[step][rank], not held[rank][step]."
        elif (got.sort(dim=0).values != torch.arange(world_size)[:, None]).any():
            hint = "every rank must see every block exactly once over the W steps."
        else:
            hint = None
        raise CheckFailed(message + (f"\nHint: {hint}" if hint else ""))
    passed("ring_schedule", len(cases))


def check_ring_bytes(fn) -> None:
    """Exercise 10.2: ``fn(batch, heads, n_tokens, head_dim, value_dim, world_size,
    element_size) -> int``, the bytes one rank **sends** in one forward call of
    :func:`~mini_attn.ring_attention` (it receives as many)."""
    cases = [
        ("B=2, H=4, L=1024, E=Ev=64, W=4, float32", (2, 4, 1024, 64, 64, 4, 4)),
        ("B=1, H=1, L=8, E=Ev=4, W=2, float32", (1, 1, 8, 4, 4, 2, 4)),
        ("E=64 but Ev=32, W=3, float64", (1, 2, 96, 64, 32, 3, 8)),
        ("one process, W=1: nothing to send", (1, 2, 16, 8, 8, 1, 4)),
        ("B=3, H=2, L=120, E=Ev=16, W=3, bfloat16", (3, 2, 120, 16, 16, 3, 2)),
    ]
    for case, args in cases:
        batch, heads, n_tokens, head_dim, value_dim, world_size, size = args
        block = n_tokens // world_size
        expected = (world_size - 1) * batch * heads * block * (head_dim + value_dim) * size
        got = call(fn, case, *args)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, int | float | np.integer | np.floating):
            raise CheckFailed(f"case '{case}': return a number of bytes, got {type(got).__name__}")
        if got == expected:
            continue
        per_step = expected // (world_size - 1) if world_size > 1 else 0
        keys_only = (world_size - 1) * batch * heads * block * head_dim * size
        hints = [
            (
                world_size > 1 and got == world_size * per_step,
                "W steps but W - 1 messages: the block a rank holds at the last step is "
                "not passed on.",
            ),
            (
                got == 2 * expected and expected,
                "count what one rank sends only, not sent + received.",
            ),
            (
                got == keys_only or (head_dim != value_dim and got == 2 * keys_only),
                "the values travel with the keys: E + Ev numbers per token, not E (or 2·E).",
            ),
            (
                got == expected * world_size,
                "each message is one block of L / W tokens, not the whole sequence.",
            ),
            (got == expected // size, "multiply by element_size: the answer is in bytes."),
            (
                got == expected // (batch * heads),
                "every batch element and head sends its own block: multiply by B · H.",
            ),
        ]
        hint = next((h for condition, h in hints if condition), None)
        raise CheckFailed(
            f"case '{case}': expected {expected} bytes, got {got}"
            + (f"\nHint: {hint}" if hint else "")
        )
    passed("ring_bytes", len(cases))


def check_zigzag_positions(fn) -> None:
    """Exercise 10.3: ``fn(n_tokens, world_size) -> (W, L/W) positions``, the zig-zag layout.

    The sequence is cut into ``2W`` equal chunks; rank ``r`` holds chunk ``r`` followed by
    chunk ``2W - 1 - r``, so that every rank has one early and one late chunk and the
    causal work of the ring is balanced.
    """
    cases = [
        ("L=8, W=2", 8, 2),
        ("L=16, W=4", 16, 4),
        ("L=24, W=3", 24, 3),
        ("L=64, W=4", 64, 4),
        ("L=2, W=1", 2, 1),
    ]
    for case, n_tokens, world_size in cases:
        n = n_tokens // (2 * world_size)
        chunks = torch.arange(n_tokens).reshape(2 * world_size, n)
        expected = torch.stack(
            [torch.cat([chunks[r], chunks[2 * world_size - 1 - r]]) for r in range(world_size)]
        )
        got = _as_int_table(call(fn, case, n_tokens, world_size), case, "the positions")
        if torch.equal(got, expected):
            continue
        message = f"case '{case}': expected positions\n{expected.tolist()}\ngot\n{got.tolist()}"
        if tuple(got.shape) != tuple(expected.shape):
            message = (
                f"case '{case}': expected shape {tuple(expected.shape)} (one row of L/W "
                f"positions per rank), got {tuple(got.shape)}"
            )
            raise CheckFailed(message)
        contiguous = torch.arange(n_tokens).reshape(world_size, -1)
        striped = torch.arange(n_tokens).reshape(-1, world_size).T
        if torch.equal(got, contiguous):
            work = ring_causal_work(contiguous, n)
            hint = (
                "that is the contiguous layout, whose causal work is unbalanced: at the "
                f"last step rank 0 computes {work[-1, 0]} scores and rank {world_size - 1} "
                f"{work[-1, -1]}. Give rank r chunks r and 2W - 1 - r."
            )
        elif torch.equal(got, striped):
            hint = (
                "that is the striped layout (r, r + W, r + 2W, ...), another remedy; this "
                "exercise asks for zig-zag: chunks r and 2W - 1 - r of L / (2W) tokens."
            )
        elif torch.equal(got.sort(dim=1).values, expected):
            hint = "keep the early chunk first: chunk r, then chunk 2W - 1 - r."
        elif torch.equal(
            got,
            torch.stack(
                [torch.cat([chunks[r], chunks[r + world_size]]) for r in range(world_size)]
            ),
        ):
            hint = (
                "chunks r and r + W are both late for the last ranks; pair each chunk with "
                "its mirror image, 2W - 1 - r."
            )
        elif sorted(got.flatten().tolist()) != list(range(n_tokens)):
            hint = "every position 0 … L - 1 must be held by exactly one rank."
        else:
            hint = None
        raise CheckFailed(message + (f"\nHint: {hint}" if hint else ""))
    passed("zigzag_positions", len(cases))
