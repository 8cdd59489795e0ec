"""The FlexAttention mask_mods and score_mods equal sdpa with the materialised mask/scores."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

import mini_attn as ma
from mini_attn.attention import flex

fa = pytest.importorskip("torch.nn.attention.flex_attention")

L = 128  # a multiple of the block size of 128: one block on this side


def _qkv(seed=0, length=2 * L):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 2, length, 16, generator=g, dtype=torch.float64) for _ in range(3)]


def _flex(q, k, v, **kwargs):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        return fa.flex_attention(q, k, v, **kwargs)


def _materialise(mask_mod, n):
    i = torch.arange(n)[:, None]
    j = torch.arange(n)[None, :]
    return mask_mod(0, 0, i, j)


DOCUMENT = torch.repeat_interleave(torch.arange(4), torch.tensor([50, 100, 6, 100]))
MASKS = {
    "causal": (flex.causal_mask_mod, ma.causal_mask(2 * L)),
    "sliding": (flex.sliding_window_mask_mod(40), ma.sliding_window_mask(2 * L, window=40)),
    "document": (
        flex.document_mask_mod(DOCUMENT),
        (DOCUMENT[:, None] == DOCUMENT[None, :]) & ma.causal_mask(2 * L),
    ),
    "prefix": (
        flex.prefix_lm_mask_mod(70),
        ma.causal_mask(2 * L) | (torch.arange(2 * L)[None, :] < 70),
    ),
}


@pytest.mark.parametrize("name", list(MASKS))
def test_mask_mods_equal_sdpa_with_the_materialised_mask(name):
    mask_mod, expected_mask = MASKS[name]
    assert torch.equal(_materialise(mask_mod, 2 * L), expected_mask)
    q, k, v = _qkv()
    block_mask = fa.create_block_mask(mask_mod, None, None, 2 * L, 2 * L, device="cpu")
    got = _flex(q, k, v, block_mask=block_mask)
    torch.testing.assert_close(
        got, F.scaled_dot_product_attention(q, k, v, attn_mask=expected_mask)
    )


def test_the_block_mask_skips_the_blocks_above_the_diagonal():
    block_mask = fa.create_block_mask(flex.causal_mask_mod, None, None, 4 * L, 4 * L, device="cpu")
    dense = block_mask.to_dense()[0, 0]  # (blocks, blocks): 1 where a block is computed
    assert torch.equal(dense.bool(), torch.ones(4, 4, dtype=torch.bool).tril())


def test_alibi_and_softcap_score_mods_equal_sdpa_with_the_modified_scores():
    q, k, v = _qkv(1)
    n = q.shape[-2]
    slopes = 2.0 ** (-8 * torch.arange(1, 3, dtype=torch.float64) / 2)
    distance = (torch.arange(n)[:, None] - torch.arange(n)[None, :]).double()
    scores = q @ k.transpose(-2, -1) / math.sqrt(16)
    block_mask = fa.create_block_mask(flex.causal_mask_mod, None, None, n, n, device="cpu")
    alibi = scores - slopes[:, None, None] * distance
    expected = ma.masked_softmax(alibi, ma.causal_mask(n)) @ v
    got = _flex(q, k, v, score_mod=flex.alibi_score_mod(slopes), block_mask=block_mask)
    torch.testing.assert_close(got, expected)
    capped = 2.0 * torch.tanh(scores / 2.0)
    got = _flex(q, k, v, score_mod=flex.softcap_score_mod(2.0))
    torch.testing.assert_close(got, torch.softmax(capped, -1) @ v)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="window must be a positive"):
        flex.sliding_window_mask_mod(0)
    with pytest.raises(ValueError, match="cap must be positive"):
        flex.softcap_score_mod(0.0)
    with pytest.raises(ValueError, match="document must have 1 dimension"):
        flex.document_mask_mod(torch.zeros(2, 3, dtype=torch.long))
