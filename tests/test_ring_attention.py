"""ring_attention on 2, 3 and 4 local gloo processes (127.0.0.1 only), bounded in time.

Each world size is one launch of processes that runs every case (causal and not, float32
and float64, the gradients, the bad inputs) and reports back, so that the spawn cost is
paid three times, not once per case. run_processes kills a process that does not report
within its timeout, so a hang fails the test instead of blocking CI.
"""

from __future__ import annotations

import re
import time

import pytest
import torch
import torch.distributed as dist

import mini_attn as ma
from mini_attn.attention.ring import block_source
from mini_attn.tools.distributed import count_p2p_bytes, run_processes

SHAPE = (2, 3, 24, 8)  # (B, H, L, D): L = 24 splits into 2, 3 and 4 equal blocks
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12}


def _blocks(x, rank, world_size):
    n = x.shape[-2] // world_size
    return x[..., rank * n : (rank + 1) * n, :]


def _error_message(fn) -> str:
    try:
        fn()
    except ValueError as error:
        return str(error)
    return "no error"


def _all_cases(rank, world_size):
    """Run on every rank: parity, gradients, bytes and bad inputs; return what was seen."""
    seen = {}
    for dtype in (torch.float32, torch.float64):
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(SHAPE, generator=g, dtype=dtype) for _ in range(3))
        grad_out = torch.randn(SHAPE, generator=g, dtype=dtype)
        for causal in (False, True):
            leaves = [_blocks(x, rank, world_size).clone().requires_grad_() for x in (q, k, v)]
            with count_p2p_bytes() as counts:
                out = ma.ring_attention(*leaves, causal=causal)
            out.backward(_blocks(grad_out, rank, world_size))
            full = [x.clone().requires_grad_() for x in (q, k, v)]
            expected = torch.nn.functional.scaled_dot_product_attention(*full, is_causal=causal)
            expected.backward(grad_out)
            errors = [(out - _blocks(expected, rank, world_size)).abs().max().item()]
            errors += [
                (leaf.grad - _blocks(x.grad, rank, world_size)).abs().max().item()
                for leaf, x in zip(leaves, full, strict=True)
            ]
            seen[str(dtype), causal] = {"errors": errors, **counts}
    # half precision keeps its dtype
    q, k, v = (torch.randn(SHAPE, generator=g) for _ in range(3))
    out = ma.ring_attention(*(_blocks(x, rank, world_size).bfloat16() for x in (q, k, v)))
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    seen["bfloat16"] = (
        out.dtype,
        (out.float() - _blocks(expected, rank, world_size)).abs().max().item(),
    )
    # bad inputs: the error must reach every rank
    qb, kb, vb = (_blocks(x, rank, world_size) for x in (q, k, v))
    longer = torch.randn(2, 3, 6 + rank, 8)  # unequal block lengths
    seen["unequal blocks"] = _error_message(lambda: ma.ring_attention(longer, longer, longer))
    wider = torch.randn(2, 3, qb.shape[-2], 8 + (rank == 1))  # one rank has another E
    seen["mismatched E"] = _error_message(lambda: ma.ring_attention(wider, wider, wider))
    bad_value = vb[..., :-1, :] if rank == world_size - 1 else vb  # invalid on one rank only
    seen["invalid on one rank"] = _error_message(lambda: ma.ring_attention(qb, kb, bad_value))
    seen["causal differs"] = _error_message(lambda: ma.ring_attention(qb, kb, vb, causal=rank == 0))
    # a subgroup of the last two ranks, whose group ranks differ from their global ones
    members = [world_size - 2, world_size - 1]
    pair = dist.new_group(members)  # every rank must call new_group
    if rank in members:
        i = members.index(rank)
        q2, k2, v2 = (x[..., :16, :] for x in (q, k, v))  # a sequence of 16, 8 per rank
        out = ma.ring_attention(*(_blocks(x, i, 2) for x in (q2, k2, v2)), group=pair, causal=True)
        expected2 = torch.nn.functional.scaled_dot_product_attention(q2, k2, v2, is_causal=True)
        seen["subgroup"] = (out - _blocks(expected2, i, 2)).abs().max().item()
    # the group is still usable after the errors: one more correct call
    again = ma.ring_attention(qb, kb, vb)
    seen["after errors"] = (again - _blocks(expected, rank, world_size)).abs().max().item()
    return seen


@pytest.fixture(scope="module", params=[2, 3, 4], ids=lambda w: f"{w}-processes")
def runs(request):
    world_size = request.param
    start = time.perf_counter()
    seen = run_processes(_all_cases, world_size, timeout=120)
    print(f"\n{world_size} processes: {time.perf_counter() - start:.1f} s")
    return world_size, seen


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["torch.float32", "torch.float64"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_output_and_gradients_equal_pytorchs(runs, dtype, causal):
    world_size, seen = runs
    tolerance = TOLERANCE[getattr(torch, dtype.split(".")[1])]
    for rank, cases in enumerate(seen):
        errors = cases[dtype, causal]["errors"]
        print(
            f"W={world_size} rank {rank} {dtype} causal={causal}: "
            f"|Δout|, |ΔdQ|, |ΔdK|, |ΔdV| = {[f'{e:.1e}' for e in errors]}"
        )
        assert max(errors) < tolerance, (rank, errors)


@pytest.mark.slow
def test_bytes_per_rank_follow_the_formula(runs):
    world_size, seen = runs
    batch, heads, length, dim = SHAPE
    for dtype, size in (("torch.float32", 4), ("torch.float64", 8)):
        # W - 1 steps, each one block of L/W keys and L/W values, E + Ev numbers per token
        expected = (world_size - 1) * batch * heads * (length // world_size) * (dim + dim) * size
        for cases in seen:
            counts = cases[dtype, True]
            assert counts["sent"] == counts["received"] == expected
            assert counts["messages"] == 4 * (world_size - 1)  # K and V, sent and received


@pytest.mark.slow
def test_a_subgroup_uses_its_own_ranks(runs):
    world_size, seen = runs
    members = [world_size - 2, world_size - 1]
    for rank, cases in enumerate(seen):
        assert ("subgroup" in cases) == (rank in members)
        if rank in members:
            assert cases["subgroup"] < 1e-5


@pytest.mark.slow
def test_half_precision_keeps_its_dtype(runs):
    _, seen = runs
    for cases in seen:
        dtype, error = cases["bfloat16"]
        assert dtype == torch.bfloat16 and error < 3e-2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unequal blocks", r"same shapes.*rank 0 has query \(2, 3, 6, 8\)"),
        ("mismatched E", r"same shapes.*rank 1: query \(2, 3, \d+, 9\)"),
        ("invalid on one rank", r"rank \d+.*key \(2, 3, \d+, 8\) and value \(2, 3, \d+, 8\)"),
        ("causal differs", r"causal=True.*causal=False|causal=False.*causal=True"),
    ],
)
def test_bad_input_is_an_error_on_every_rank(runs, case, message):
    world_size, seen = runs
    assert len(seen) == world_size
    for rank, cases in enumerate(seen):
        assert cases[case] != "no error", f"rank {rank} raised no error for {case}"
        assert cases["after errors"] < 1e-5
        assert re.search(message, cases[case], re.S), (rank, cases[case])


def _skip_the_call_on_rank_1(rank, world_size):
    if rank != 1:
        x = torch.randn(1, 4, 2)
        ma.ring_attention(x, x, x)


@pytest.mark.slow
def test_a_rank_that_never_calls_fails_in_bounded_time():
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="rank 0"):
        run_processes(_skip_the_call_on_rank_1, 2, timeout=10)
    assert time.perf_counter() - start < 60


def test_without_a_process_group_it_says_so():
    assert not dist.is_initialized()
    x = torch.randn(1, 4, 2)
    with pytest.raises(RuntimeError, match="init_process_group"):
        ma.ring_attention(x, x, x)


def test_the_schedule_passes_each_block_to_the_next_rank():
    world_size = 4
    held = [[block_source(r, t, world_size) for r in range(world_size)] for t in range(world_size)]
    assert held[0] == [0, 1, 2, 3]  # every rank starts with its own block
    for t in range(1, world_size):
        assert held[t] == [held[t - 1][(r - 1) % world_size] for r in range(world_size)]
    for r in range(world_size):  # every rank sees every block exactly once
        assert sorted(held[t][r] for t in range(world_size)) == list(range(world_size))
