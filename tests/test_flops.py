"""attention_flops and attention_bytes: the formulas, checked against PyTorch's FLOP counter."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

import mini_attn as ma


def _counted_flops(fn, *args) -> int:
    """The FLOPs PyTorch's own counter sees (matrix products, 2 per multiply-add)."""
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops()


@given(
    batch=st.integers(1, 3),
    heads=st.integers(1, 3),
    n_queries=st.integers(1, 20),
    n_keys=st.integers(1, 20),
    head_dim=st.integers(1, 12),
)
def test_count_flops_of_attention_is_the_formula(batch, heads, n_queries, n_keys, head_dim):
    q = torch.randn(batch, heads, n_queries, head_dim)
    k = torch.randn(batch, heads, n_keys, head_dim)
    v = torch.randn(batch, heads, n_keys, head_dim)
    expected = ma.attention_flops(batch, heads, n_queries, n_keys, head_dim)
    assert ma.count_flops(ma.scaled_dot_product_attention, q, k, v) == expected
    # keyword arguments reach fn, and a mask does not change the products
    mask = torch.ones(n_queries, n_keys, dtype=torch.bool)
    assert ma.count_flops(ma.scaled_dot_product_attention, q, k, v, mask=mask) == expected


def test_count_flops_counts_matrix_products_only():
    x = torch.randn(64, 64)
    assert ma.count_flops(torch.softmax, x, dim=-1) == 0  # element-wise: not counted
    assert ma.count_flops(torch.mm, x, x) == 2 * 64**3
    assert ma.count_flops(lambda: (x @ x).softmax(-1) @ x) == 4 * 64**3


def test_count_flops_counts_a_backward_run_inside_fn():
    w = torch.randn(8, 8, requires_grad=True)
    x = torch.randn(4, 8)
    forward = ma.count_flops(lambda: x @ w)
    both = ma.count_flops(lambda: (x @ w).sum().backward())
    assert forward == 2 * 4 * 8 * 8
    assert both == 2 * forward  # dW = xᵀ·dY; x needs no gradient


def test_count_flops_refuses_a_non_callable():
    with pytest.raises(TypeError, match="fn must be callable"):
        ma.count_flops(torch.randn(3))


def test_the_formula_on_one_example():
    # 4 · B · H · L · S · D = 4 · 2 · 3 · 5 · 7 · 11
    assert ma.attention_flops(2, 3, 5, 7, 11) == 9240
    assert ma.attention_flops(2, 3, 5, 7, 11, causal=True) == 4620


@given(
    batch=st.integers(1, 3),
    heads=st.integers(1, 4),
    n_queries=st.integers(1, 33),
    n_keys=st.integers(1, 33),
    head_dim=st.integers(1, 16),
)
def test_equals_pytorchs_count_of_the_matrix_products(batch, heads, n_queries, n_keys, head_dim):
    q = torch.randn(batch, heads, n_queries, head_dim)
    k = torch.randn(batch, heads, n_keys, head_dim)
    v = torch.randn(batch, heads, n_keys, head_dim)
    expected = ma.attention_flops(batch, heads, n_queries, n_keys, head_dim)
    assert _counted_flops(lambda: ma.scaled_dot_product_attention(q, k, v)) == expected
    # the tiled version does the same products, block by block
    assert _counted_flops(lambda: ma.tiled_attention(q, k, v, block_size=5)) == expected


def test_causal_is_half_and_close_to_the_unmasked_pairs():
    n = 1024
    full, causal = (
        ma.attention_flops(1, 1, n, n, 64),
        ma.attention_flops(1, 1, n, n, 64, causal=True),
    )
    assert causal * 2 == full
    unmasked_pairs = n * (n + 1) // 2  # query i sees i + 1 keys
    assert abs(causal - 4 * unmasked_pairs * 64) / causal < 1 / n + 1e-12


def test_zero_sizes_give_zero():
    assert ma.attention_flops(0, 8, 128, 128, 64) == 0
    assert ma.attention_bytes(1, 1, 0, 0, 64) == 0


def test_bytes_of_a_fused_kernel_are_the_inputs_and_the_output():
    # Q and O: 2·B·H·L·D, K and V: 2·B·H·S·D elements, 2 bytes each in bfloat16
    got = ma.attention_bytes(2, 4, 100, 300, 64, element_size=2, materialized=False)
    assert got == (2 * 2 * 4 * 100 * 64 + 2 * 2 * 4 * 300 * 64) * 2


def test_materializing_adds_four_passes_over_the_scores():
    fused = ma.attention_bytes(2, 4, 100, 300, 64, materialized=False)
    naive = ma.attention_bytes(2, 4, 100, 300, 64)
    assert naive - fused == 4 * 2 * 4 * 100 * 300 * 4  # float32 by default


def test_fewer_kv_heads_move_fewer_key_and_value_bytes():
    mha = ma.attention_bytes(1, 8, 1, 4096, 128, materialized=False)
    mqa = ma.attention_bytes(1, 8, 1, 4096, 128, materialized=False, kv_heads=1)
    kv = 2 * 4096 * 128 * 4  # K and V of one head
    assert mha - mqa == 7 * kv


def test_intensity_of_naive_attention_stays_bounded_while_fused_grows():
    """Naive attention's FLOPs/byte tends to D/4 for float32; a fused kernel's grows with L."""
    d = 64
    naive = [
        ma.attention_flops(1, 1, n, n, d) / ma.attention_bytes(1, 1, n, n, d) for n in (1024, 65536)
    ]
    fused = [
        ma.attention_flops(1, 1, n, n, d) / ma.attention_bytes(1, 1, n, n, d, materialized=False)
        for n in (1024, 65536)
    ]
    assert naive[0] < naive[1] < d / 4
    assert fused[1] == pytest.approx(64 * fused[0])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(batch=-1), ValueError, "batch must be non-negative, got -1"),
        (dict(head_dim=2.0), TypeError, "head_dim must be an int, got float"),
        (dict(heads=True), TypeError, "heads must be an int, got bool"),
    ],
)
def test_bad_sizes(kwargs, error, match):
    sizes = dict(batch=1, heads=1, n_queries=4, n_keys=4, head_dim=8) | kwargs
    with pytest.raises(error, match=match):
        ma.attention_flops(**sizes)
    with pytest.raises(error, match=match):
        ma.attention_bytes(**sizes)


def test_bad_element_size():
    with pytest.raises(ValueError, match="element_size must be non-negative"):
        ma.attention_bytes(1, 1, 4, 4, 8, element_size=-2)


class _Traffic(TorchDispatchMode):
    """Bytes read and written by each ATen operation: every input and output, once."""

    def __init__(self):
        super().__init__()
        self.ops: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tensors = [x for x in tree_leaves((args, kwargs, out)) if isinstance(x, torch.Tensor)]
        self.ops.append((func.__name__, sum(x.numel() * x.element_size() for x in tensors)))
        return out

    def bytes_of(self, *names: str) -> int:
        return sum(n for name, n in self.ops if name.split(".")[0] in names)


@pytest.mark.parametrize(("n_queries", "n_keys", "head_dim"), [(256, 256, 16), (40, 70, 8)])
def test_bytes_equal_the_traffic_of_the_operations(n_queries, n_keys, head_dim):
    """An independent count: the tensors PyTorch's own operations read and write."""
    q = torch.randn(2, 3, n_queries, head_dim)
    k, v = torch.randn(2, 3, n_keys, head_dim), torch.randn(2, 3, n_keys, head_dim)
    sizes = (2, 3, n_queries, n_keys, head_dim)
    with torch.no_grad(), _Traffic() as naive:
        ma.scaled_dot_product_attention(q, k, v)
    # Q'Kᵀ (Q', K in, scores out), the softmax (scores in, weights out), P V (P, V in, O out)
    assert naive.bytes_of("bmm", "_softmax") == ma.attention_bytes(*sizes)
    with torch.no_grad(), _Traffic() as fused:
        torch.nn.functional.scaled_dot_product_attention(q, k, v)
    lse = 2 * 3 * n_queries * 4  # the fused kernel also writes one float32 per query
    assert fused.ops[0][1] == ma.attention_bytes(*sizes, materialized=False) + lse
