"""tiled_attention: equal to the reference attention, block by block; memory linear in L."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import mini_attn as ma


def _qkv(batch, n_queries, n_keys, dim, value_dim=None, *, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*batch, n_queries, dim, generator=g, dtype=dtype)
    k = torch.randn(*batch, n_keys, dim, generator=g, dtype=dtype)
    v = torch.randn(*batch, n_keys, value_dim or dim, generator=g, dtype=dtype)
    return q, k, v


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize(
    ("n_queries", "n_keys", "block_size"),
    [(16, 16, 4), (16, 16, 5), (7, 13, 3), (13, 7, 4), (10, 10, 64), (33, 50, 1)],
)
def test_equals_the_reference(causal, n_queries, n_keys, block_size):
    q, k, v = _qkv((2, 3), n_queries, n_keys, 8, 5)
    expected, _ = ma.scaled_dot_product_attention(q, k, v, causal=causal)
    got = ma.tiled_attention(q, k, v, causal=causal, block_size=block_size)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_equals_pytorch(causal):
    q, k, v = _qkv((2, 4), 100, 100, 16, dtype=torch.float32)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    got = ma.tiled_attention(q, k, v, causal=causal, block_size=32)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@given(
    n_queries=st.integers(1, 40),
    n_keys=st.integers(1, 40),
    block_size=st.integers(1, 48),
    causal=st.booleans(),
    scale=st.sampled_from([None, 0.1, 3.0]),
)
def test_any_lengths_and_blocks(n_queries, n_keys, block_size, causal, scale):
    q, k, v = _qkv((2,), n_queries, n_keys, 4, 3, seed=n_queries * 41 + n_keys)
    expected, _ = ma.scaled_dot_product_attention(q, k, v, causal=causal, scale=scale)
    got = ma.tiled_attention(q, k, v, causal=causal, scale=scale, block_size=block_size)
    torch.testing.assert_close(got, expected)


def test_broadcasts_batch_dimensions():
    q, _, _ = _qkv((2, 3), 9, 9, 4)
    _, k, v = _qkv((3,), 9, 11, 4, seed=1)  # keys shared by the first batch dimension
    expected, _ = ma.scaled_dot_product_attention(q, k, v)
    got = ma.tiled_attention(q, k, v, block_size=4)
    assert got.shape == (2, 3, 9, 4)
    torch.testing.assert_close(got, expected)


def test_large_scores_are_stable():
    q, k, v = _qkv((1,), 20, 30, 8, dtype=torch.float32)
    expected = F.scaled_dot_product_attention(q * 300, k, v)
    got = ma.tiled_attention(q * 300, k, v, block_size=7)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_no_key_gives_a_zero_row_not_nan():
    q, k, v = _qkv((2,), 5, 0, 4)
    got = ma.tiled_attention(q, k, v, causal=True)
    assert got.shape == (2, 5, 4)
    assert (got == 0).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_keeps_its_dtype_and_is_close(dtype):
    q, k, v = _qkv((2, 2), 64, 80, 32, dtype=torch.float32)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    got = ma.tiled_attention(q.to(dtype), k.to(dtype), v.to(dtype), causal=True, block_size=16)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), expected, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_gradients(causal):
    q, k, v = (x.requires_grad_() for x in _qkv((2,), 5, 6, 3))
    assert torch.autograd.gradcheck(
        lambda q, k, v: ma.tiled_attention(q, k, v, causal=causal, block_size=2), (q, k, v)
    )


def test_gradients_equal_pytorchs():
    q, k, v = (x.requires_grad_() for x in _qkv((2, 2), 12, 12, 4, dtype=torch.float32))
    ma.tiled_attention(q, k, v, causal=True, block_size=5).square().sum().backward()
    ours = [x.grad.clone() for x in (q, k, v)]
    for x in (q, k, v):
        x.grad = None
    F.scaled_dot_product_attention(q, k, v, is_causal=True).square().sum().backward()
    for got, expected in zip(ours, (q.grad, k.grad, v.grad), strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("block_size", [0, -3, 2.5, True])
def test_bad_block_size(block_size):
    q, k, v = _qkv((1,), 4, 4, 2)
    with pytest.raises(ValueError, match="block_size must be a positive int"):
        ma.tiled_attention(q, k, v, block_size=block_size)


def test_mismatched_shapes_name_the_arguments():
    q, k, v = _qkv((1,), 4, 6, 2)
    with pytest.raises(ValueError, match=r"query \(1, 4, 2\) and key \(1, 6, 3\)"):
        ma.tiled_attention(q, torch.randn(1, 6, 3, dtype=q.dtype), v)
    with pytest.raises(ValueError, match=r"key \(1, 6, 2\) and value \(1, 5, 2\)"):
        ma.tiled_attention(q, k, v[:, :5])
    with pytest.raises(TypeError, match="query must be a floating-point tensor"):
        ma.tiled_attention(q.long(), k, v)


# --- memory: linear in L, measured in a fresh process -------------------------------------

# In a fresh interpreter, so that nothing that ran before (the other tests, a pytest plugin)
# has left memory behind; the peak is read by measure_peak_memory (the kernel's high-water
# mark of resident memory, reset before the call, on Linux; ru_maxrss growth elsewhere).
_MEMORY_SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    import mini_attn as ma

    torch.set_num_threads(1)
    method, n = sys.argv[1], int(sys.argv[2])
    attention = {
        "naive": lambda q, k, v: ma.scaled_dot_product_attention(q, k, v)[0],
        "tiled": lambda q, k, v: ma.tiled_attention(q, k, v, block_size=128),
    }[method]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        # a first, small call pays the one-time costs (code pages, JIT-compiled kernels)
        attention(*(torch.randn(1, 1, 256, 16, generator=g) for _ in range(3)))
        q, k, v = (torch.randn(1, 1, n, 16, generator=g) for _ in range(3))  # (B, H, L, D)
        print(ma.measure_peak_memory(lambda: attention(q, k, v), device="cpu"))
    """
)


@pytest.mark.slow
def test_memory_grows_linearly_not_quadratically():
    n = 8192
    # glibc raises its mmap threshold after the first large free and then keeps freed
    # blocks in its heap, which would count the allocator's cache as tiled's memory: a
    # fixed threshold returns every large block to the system when it is freed.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    runs = {
        method: subprocess.Popen(
            [sys.executable, "-c", _MEMORY_SCRIPT, method, str(n)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for method in ("naive", "tiled")
    }
    peak = {}
    for method, process in runs.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        peak[method] = int(out.strip().splitlines()[-1])
    scores = n * n * 4  # one float32 L × S matrix: 256 MiB
    print(
        f"\npeak extra memory at L=S={n}: naive {peak['naive'] / 2**20:.1f} MiB, "
        f"tiled {peak['tiled'] / 2**20:.1f} MiB"
    )
    assert peak["naive"] >= 0.9 * scores, "the measurement should see naive's L × S scores"
    assert peak["tiled"] < peak["naive"] / 8


# --- the online-softmax step, shared with ring attention ---------------------------------


@given(
    n_blocks=st.integers(1, 5),
    block=st.integers(1, 6),
    order_seed=st.integers(0, 1000),
    masked=st.booleans(),
)
def test_online_softmax_update_folds_blocks_in_any_order(n_blocks, block, order_seed, masked):
    q, k, v = _qkv((2,), 3, n_blocks * block, 4, 5, seed=order_seed)
    scores = q @ k.transpose(-2, -1) / 2.0  # (2, 3, S)
    if masked:  # the first key block masked for every query: -inf scores
        scores[..., :block] = -float("inf")
    order = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(order_seed))
    state = ma.start_online_softmax((2,), 3, 5, like=q, dtype=q.dtype)
    for b in order.tolist():
        part = slice(b * block, (b + 1) * block)
        state = ma.online_softmax_update(state, scores[..., part], v[..., part, :])
    expected = ma.masked_softmax(scores, torch.isfinite(scores)) @ v  # -inf: masked
    torch.testing.assert_close(ma.finish_online_softmax(state), expected)
    torch.testing.assert_close(
        (state.row_max + state.row_sum.log()).squeeze(-1), torch.logsumexp(scores, dim=-1)
    )


def test_a_state_with_no_key_finishes_as_zeros():
    q = torch.zeros(2, 3, 4)
    state = ma.start_online_softmax((2,), 3, 4, like=q, dtype=q.dtype)
    state = ma.online_softmax_update(state, torch.full((2, 3, 2), -float("inf")), q[:, :2])
    out = ma.finish_online_softmax(state)
    assert torch.isfinite(out).all() and (out == 0).all()


def test_tiled_attention_calls_the_shared_update(monkeypatch):
    """One implementation: tiled_attention's step is online_softmax_update itself."""
    from mini_attn.attention import tiled

    calls = []
    original = tiled.online_softmax_update
    monkeypatch.setattr(tiled, "online_softmax_update", lambda *a: calls.append(1) or original(*a))
    q, k, v = _qkv((1,), 8, 10, 4)
    ma.tiled_attention(q, k, v, block_size=3)
    assert len(calls) == 4  # ceil(10 / 3) blocks of keys
