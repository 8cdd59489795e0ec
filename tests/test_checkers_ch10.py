"""The appendix's checkers (chapter 10) reject plausible wrong answers with a pointed message."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mini_attn.exercises import (
    CheckFailed,
    check_ring_bytes,
    check_ring_schedule,
    check_zigzag_positions,
)

# --- exercise 10.1: the schedule -------------------------------------------------------------


def schedule(world_size):
    return [
        [(rank - step) % world_size for rank in range(world_size)] for step in range(world_size)
    ]


def test_a_correct_schedule_passes(capsys):
    check_ring_schedule(schedule)
    assert "✓ ring_schedule" in capsys.readouterr().out


def test_a_schedule_built_by_rolling_passes(capsys):
    def rolled(world_size):
        ranks = torch.arange(world_size)
        return torch.stack([ranks.roll(step) for step in range(world_size)])  # a tensor

    check_ring_schedule(rolled)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (lambda w: [[(r + t) % w for r in range(w)] for t in range(w)], "other way"),
        (lambda w: [[r - t for r in range(w)] for t in range(w)], "modulo W"),
        (lambda w: [[(r - t - 1) % w for r in range(w)] for t in range(w)], "step 0"),
        (lambda w: [[(r - t) % w for r in range(w)] for t in range(w - 1)], "W steps, not W - 1"),
        (lambda w: [[r for r in range(w)] for t in range(w)], "exactly once"),
        (lambda w: "0 1 / 1 0", "list of lists"),
        (lambda w: np.full((w, w), 0.5), "integers"),
    ],
    ids=["reversed", "no-modulo", "off-by-one", "w-1-steps", "never-moves", "string", "floats"],
)
def test_wrong_schedules_are_refused(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        check_ring_schedule(wrong)


def test_the_transposed_schedule_gets_its_own_hint():
    # for W >= 3, held[rank][step] = (rank - step) % W transposed is (step - rank) % W,
    # which is also the reversed ring: either hint points at the mistake
    def transposed(w):
        return [[(t - r) % w for r in range(w)] for t in range(w)]

    with pytest.raises(CheckFailed, match=r"other way|held\[step\]\[rank\]"):
        check_ring_schedule(transposed)


# --- exercise 10.2: bytes per rank -------------------------------------------------------------


def ring_bytes(batch, heads, n_tokens, head_dim, value_dim, world_size, element_size):
    block = n_tokens // world_size
    return (world_size - 1) * batch * heads * block * (head_dim + value_dim) * element_size


def test_the_formula_passes(capsys):
    check_ring_bytes(ring_bytes)
    assert "✓ ring_bytes" in capsys.readouterr().out


def test_counting_tensor_sizes_step_by_step_passes(capsys):
    def by_tensors(batch, heads, n_tokens, head_dim, value_dim, world_size, element_size):
        block = n_tokens // world_size
        k = torch.empty(batch, heads, block, head_dim)
        v = torch.empty(batch, heads, block, value_dim)
        per_step = (k.numel() + v.numel()) * element_size
        return torch.tensor(per_step * (world_size - 1))  # a one-element tensor is fine

    check_ring_bytes(by_tensors)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (lambda b, h, n, e, ev, w, s: w * b * h * (n // w) * (e + ev) * s, "W - 1 messages"),
        (
            lambda b, h, n, e, ev, w, s: 2 * ring_bytes(b, h, n, e, ev, w, s),
            "not sent \\+ received",
        ),
        (lambda b, h, n, e, ev, w, s: (w - 1) * b * h * (n // w) * e * s, "values travel"),
        (lambda b, h, n, e, ev, w, s: (w - 1) * b * h * (n // w) * 2 * e * s, "values travel"),
        (lambda b, h, n, e, ev, w, s: (w - 1) * b * h * n * (e + ev) * s, "L / W tokens"),
        (lambda b, h, n, e, ev, w, s: (w - 1) * b * h * (n // w) * (e + ev), "in bytes"),
        (lambda b, h, n, e, ev, w, s: (w - 1) * (n // w) * (e + ev) * s, "B · H"),
        (lambda b, h, n, e, ev, w, s: "many", "number of bytes"),
    ],
    ids=[
        "W-messages",
        "sent+received",
        "keys-only",
        "2E",
        "whole-sequence",
        "elements",
        "no-batch",
        "string",
    ],
)
def test_wrong_byte_counts_are_refused(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        check_ring_bytes(wrong)


# --- exercise 10.3: zig-zag ----------------------------------------------------------------------


def zigzag_positions(n_tokens, world_size):
    chunks = torch.arange(n_tokens).reshape(2 * world_size, -1)  # (2W, L / 2W)
    return torch.stack([torch.cat([chunks[r], chunks[-1 - r]]) for r in range(world_size)])


def test_the_zigzag_solution_passes(capsys):
    check_zigzag_positions(zigzag_positions)
    assert "✓ zigzag_positions" in capsys.readouterr().out


def test_a_list_comprehension_solution_passes(capsys):
    def zigzag(n_tokens, world_size):
        n = n_tokens // (2 * world_size)
        return [
            list(range(r * n, (r + 1) * n))
            + list(range((2 * world_size - 1 - r) * n, (2 * world_size - r) * n))
            for r in range(world_size)
        ]

    check_zigzag_positions(zigzag)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (lambda n, w: torch.arange(n).reshape(w, -1), "contiguous layout.*unbalanced"),
        (lambda n, w: torch.arange(n).reshape(-1, w).T, "striped layout"),
        (lambda n, w: zigzag_positions(n, w).flip(1), "early chunk first"),
        (
            lambda n, w: torch.cat(
                [torch.arange(n).reshape(2 * w, -1)[:w], torch.arange(n).reshape(2 * w, -1)[w:]],
                dim=1,
            ),
            "mirror image",
        ),
        (lambda n, w: zigzag_positions(n, w).clamp(max=n - 2), "exactly one rank"),
        (lambda n, w: zigzag_positions(n, w).flatten(), "one row of L/W"),
        (lambda n, w: zigzag_positions(n, w).float() + 0.5, "integers"),
    ],
    ids=["contiguous", "striped", "late-first", "r-and-r+W", "duplicate", "flat", "floats"],
)
def test_wrong_layouts_are_refused(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        check_zigzag_positions(wrong)


def test_the_checkers_do_not_change_the_rng():
    state = torch.get_rng_state()
    check_ring_schedule(schedule)
    check_ring_bytes(ring_bytes)
    check_zigzag_positions(zigzag_positions)
    assert torch.equal(state, torch.get_rng_state())
