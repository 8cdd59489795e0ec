"""The chapter-7 layers equal transformers' with the same weights, built from configs offline.

References (transformers 5.24): LlamaAttention (RoPE + GQA), MistralAttention with a sliding
window, DeepseekV3Attention (multi-head latent attention), GptOssAttention (sink logits).
Masks come from transformers' own masking_utils for the config, with a right-padded batch.

Tolerances: float32 ``2e-5`` (outputs of size ~1; the reference softmax is in float32 too);
float64 ``1e-12`` where the reference computes in float64 (sdpa); DeepSeek's RMSNorm
computes in float32 whatever the input, so its float64 tolerance is float32's (``1e-5``).
"""

from __future__ import annotations

import pytest
import torch

import mini_attn as ma
from mini_attn.attention.modern import LatentAttention, RotaryAttention, SinkAttention
from mini_attn.core.rotary import rotary_angles

transformers = pytest.importorskip("transformers")
from transformers.masking_utils import (  # noqa: E402
    create_causal_mask,
    create_sliding_window_causal_mask,
)
from transformers.models.deepseek_v3 import modeling_deepseek_v3 as deepseek  # noqa: E402
from transformers.models.gpt_oss import modeling_gpt_oss as gpt_oss  # noqa: E402
from transformers.models.llama import modeling_llama as llama  # noqa: E402
from transformers.models.mistral import modeling_mistral as mistral  # noqa: E402

SHAPES = [  # (batch, length, lengths of the padded batch or None)
    (1, 1, None),
    (2, 7, None),
    (3, 12, [12, 9, 4]),
]
DTYPES = [(torch.float32, 2e-5), (torch.float64, 1e-12)]


def _rope(head_dim, base=10000.0):
    return {"rope_type": "default", "rope_theta": base}


def _inputs(batch, length, lengths, hidden, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, hidden, generator=g).to(dtype)
    lengths = torch.tensor(lengths or [length] * batch)
    keep = ma.padding_mask(lengths, length)  # (B, 1, S): True = a real token
    return x, lengths, keep


def _hf_mask(config, x, keep, sliding=False):
    make = create_sliding_window_causal_mask if sliding else create_causal_mask
    position_ids = torch.arange(x.shape[1])[None].expand(x.shape[0], -1)
    return make(
        config=config,
        inputs_embeds=x,
        attention_mask=keep[:, 0].long(),  # transformers: 1 = real token, (B, S)
        cache=None,
        position_ids=position_ids,
        allow_is_causal_skip=False,
    )


def _position_embeddings(rotary, x, head_dim, base, half=False):
    """(cos, sin) of shape (B, L, D): theirs in float32; in float64, float64 angles for both.

    transformers' rotary embeddings compute the angles in float32 whatever the dtype (ours
    too for float32 inputs); in float64 ours uses float64 angles, so the float64 reference
    gets the same float64 angles to be compared tightly.
    """
    batch, length = x.shape[:2]
    positions = torch.arange(length)
    if x.dtype != torch.float64:
        return rotary(x, positions[None].expand(batch, -1))
    angles = rotary_angles(positions, head_dim, base=base, dtype=torch.float64)  # (L, D)
    angles = angles[..., : head_dim // 2] if half else angles
    return angles.cos()[None].expand(batch, -1, -1), angles.sin()[None].expand(batch, -1, -1)


def _copy_projections(ours, theirs):
    with torch.no_grad():
        for name in ("q_proj", "k_proj", "v_proj"):
            getattr(ours, name).load_state_dict(getattr(theirs, name).state_dict())
        ours.out_proj.load_state_dict(theirs.o_proj.state_dict())


def _close_on_real_rows(ours, theirs, lengths, tol):
    for b, n in enumerate(lengths.tolist()):  # padded queries are not compared
        torch.testing.assert_close(ours[b, :n], theirs[b, :n], atol=tol, rtol=tol)
    return max((ours[b, :n] - theirs[b, :n]).abs().max().item() for b, n in enumerate(lengths))


def _llama_like(kind, dtype, window=None):
    common = dict(
        hidden_size=32,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        rope_parameters=_rope(8, 500000.0),
        attention_bias=False,
    )
    if kind == "mistral":
        config = mistral.MistralConfig(sliding_window=window, **common)
        theirs = mistral.MistralAttention(config, layer_idx=0)
        rotary = mistral.MistralRotaryEmbedding(config)
    else:
        config = llama.LlamaConfig(**common)
        theirs = llama.LlamaAttention(config, layer_idx=0)
        rotary = llama.LlamaRotaryEmbedding(config)
    config._attn_implementation = "sdpa" if dtype == torch.float64 else "eager"
    ours = RotaryAttention(32, 4, num_kv_heads=2, base=500000.0, window=window)
    torch.manual_seed(1)
    theirs = theirs.to(dtype)
    for p in theirs.parameters():
        torch.nn.init.normal_(p, std=0.3)
    ours = ours.to(dtype)
    _copy_projections(ours, theirs)
    return config, theirs, rotary, ours


@pytest.mark.parametrize("batch, length, lengths", SHAPES)
@pytest.mark.parametrize("dtype, tol", DTYPES)
@pytest.mark.parametrize("kind, window", [("llama", None), ("mistral", 3), ("mistral", 5)])
def test_rotary_attention_equals_llama_and_mistral_attention(
    kind, window, batch, length, lengths, dtype, tol
):
    config, theirs, rotary, ours = _llama_like(kind, dtype, window)
    x, lengths_t, keep = _inputs(batch, length, lengths, 32, dtype)
    mask = _hf_mask(config, x, keep, sliding=window is not None)
    expected, _ = theirs(x, _position_embeddings(rotary, x, 8, 500000.0), mask)
    got, _ = ours(x, mask=keep, causal=True)
    _close_on_real_rows(got, expected, lengths_t, tol)


def test_rotary_attention_gradients_equal_llamas():
    config, theirs, rotary, ours = _llama_like("llama", torch.float64)
    x, _, keep = _inputs(2, 6, None, 32, torch.float64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    cos_sin = _position_embeddings(rotary, x, 8, 500000.0)
    theirs(x1, cos_sin, _hf_mask(config, x1, keep))[0].square().sum().backward()
    ours(x2, causal=True)[0].square().sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, atol=1e-12, rtol=1e-12)
    for name in ("q_proj", "k_proj", "v_proj"):
        torch.testing.assert_close(
            getattr(ours, name).weight.grad, getattr(theirs, name).weight.grad, atol=1e-11, rtol=0
        )
    torch.testing.assert_close(ours.out_proj.weight.grad, theirs.o_proj.weight.grad)


@pytest.mark.parametrize("window", [None, 4])
def test_rotary_attention_decodes_with_a_cache_as_one_call(window):
    torch.manual_seed(0)
    module = RotaryAttention(16, 4, num_kv_heads=2, window=window).double().eval()
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    full, _ = module(x, causal=True)
    cache = ma.KVCache() if window is None else ma.SlidingWindowCache(window)
    outs = [module(x[:, :3], causal=True, cache=cache)[0]]
    outs += [module(x[:, t : t + 1], causal=True, cache=cache)[0] for t in range(3, 11)]
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-12, rtol=1e-12)
    assert len(cache) == (11 if window is None else window)


# --- GPT-OSS: learned sinks -------------------------------------------------------------


def _gpt_oss(dtype, sliding):
    config = gpt_oss.GptOssConfig(
        hidden_size=32,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        num_hidden_layers=2,
        sliding_window=4,
        layer_types=["sliding_attention", "full_attention"],
        rope_parameters=_rope(8, 150000.0),
        attention_bias=True,
    )
    config._attn_implementation = "eager"
    theirs = gpt_oss.GptOssAttention(config, layer_idx=0 if sliding else 1).to(dtype)
    torch.manual_seed(2)
    for p in theirs.parameters():
        torch.nn.init.normal_(p, std=0.3)
    with torch.no_grad():
        theirs.sinks.mul_(10)  # sinks large enough to matter
    ours = SinkAttention(32, 4, num_kv_heads=2, base=150000.0, window=4 if sliding else None)
    ours = ours.to(dtype)
    _copy_projections(ours, theirs)
    with torch.no_grad():
        ours.sinks.copy_(theirs.sinks)
    return config, theirs, gpt_oss.GptOssRotaryEmbedding(config), ours


@pytest.mark.parametrize("batch, length, lengths", SHAPES)
@pytest.mark.parametrize("dtype, tol", DTYPES)
@pytest.mark.parametrize("sliding", [False, True])
def test_sink_attention_equals_gpt_oss_attention(sliding, batch, length, lengths, dtype, tol):
    config, theirs, rotary, ours = _gpt_oss(dtype, sliding)
    x, lengths_t, keep = _inputs(batch, length, lengths, 32, dtype, seed=3)
    mask = _hf_mask(config, x, keep, sliding=sliding)
    expected, _ = theirs(x, _position_embeddings(rotary, x, 8, 150000.0, half=True), mask)
    got, weights = ours(x, mask=keep, causal=True, need_weights=True)
    _close_on_real_rows(got, expected, lengths_t, tol)
    assert (weights.sum(-1) < 1).all()  # the sink takes part of every row's mass


def test_sink_attention_gradients_equal_gpt_oss_including_the_sinks():
    config, theirs, rotary, ours = _gpt_oss(torch.float64, sliding=False)
    x, _, keep = _inputs(2, 5, None, 32, torch.float64, seed=4)
    cos_sin = _position_embeddings(rotary, x, 8, 150000.0, half=True)
    theirs(x, cos_sin, _hf_mask(config, x, keep))[0].square().sum().backward()
    ours(x, causal=True)[0].square().sum().backward()
    torch.testing.assert_close(ours.sinks.grad, theirs.sinks.grad, atol=1e-11, rtol=1e-11)
    torch.testing.assert_close(ours.q_proj.weight.grad, theirs.q_proj.weight.grad)


# --- DeepSeek-V3: multi-head latent attention -------------------------------------------


def _deinterleave(rope_dim):
    """DeepSeek's interleaved pairs (0, 1), (2, 3), ... as rotate-half pairs (i, i + d/2)."""
    return torch.cat([torch.arange(0, rope_dim, 2), torch.arange(1, rope_dim, 2)])


def _deepseek(dtype, q_rank, interleave):
    heads, nope, rope, vdim, rank = 4, 6, 4, 5, 12
    config = deepseek.DeepseekV3Config(
        hidden_size=32,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        q_lora_rank=q_rank,
        kv_lora_rank=rank,
        qk_rope_head_dim=rope,
        qk_nope_head_dim=nope,
        v_head_dim=vdim,
        rope_interleave=interleave,
        rope_parameters=_rope(rope, 10000.0),
        attention_bias=False,
    )
    config._attn_implementation = "sdpa" if dtype == torch.float64 else "eager"
    theirs = deepseek.DeepseekV3Attention(config, layer_idx=0).to(dtype)
    torch.manual_seed(5)
    for name, p in theirs.named_parameters():
        torch.nn.init.normal_(p, mean=1.0 if "layernorm" in name else 0.0, std=0.3)
    ours = LatentAttention(
        32, heads, kv_rank=rank, rope_dim=rope, nope_dim=nope, v_dim=vdim, q_rank=q_rank
    ).to(dtype)
    order = _deinterleave(rope) if interleave else torch.arange(rope)
    q_rows = torch.cat(
        [h * (nope + rope) + torch.cat([torch.arange(nope), nope + order]) for h in range(heads)]
    )
    kv_rows = torch.cat([torch.arange(rank), rank + order])
    with torch.no_grad():
        if q_rank is None:
            ours.q_proj.weight.copy_(theirs.q_proj.weight[q_rows])
        else:
            ours.q_proj[0].load_state_dict(theirs.q_a_proj.state_dict())
            ours.q_proj[1].weight.copy_(theirs.q_a_layernorm.weight)
            ours.q_proj[2].weight.copy_(theirs.q_b_proj.weight[q_rows])
        ours.kv_down.weight.copy_(theirs.kv_a_proj_with_mqa.weight[kv_rows])
        ours.kv_norm.weight.copy_(theirs.kv_a_layernorm.weight)
        ours.kv_up.weight.copy_(theirs.kv_b_proj.weight)
        ours.out_proj.weight.copy_(theirs.o_proj.weight)
    return config, theirs, deepseek.DeepseekV3RotaryEmbedding(config), ours


@pytest.mark.parametrize("batch, length, lengths", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("q_rank, interleave", [(None, True), (8, True), (8, False)])
def test_latent_attention_equals_deepseek_v3_attention(
    q_rank, interleave, batch, length, lengths, dtype
):
    config, theirs, rotary, ours = _deepseek(dtype, q_rank, interleave)
    x, lengths_t, keep = _inputs(batch, length, lengths, 32, dtype, seed=6)
    cos_sin = _position_embeddings(rotary, x, 4, 10000.0)
    expected, _ = theirs(x, cos_sin, _hf_mask(config, x, keep))
    got, _ = ours(x, mask=keep, causal=True)
    _close_on_real_rows(got, expected, lengths_t, 2e-5 if dtype == torch.float32 else 1e-5)


def test_latent_attention_caches_only_the_latent_and_decodes_as_one_call():
    torch.manual_seed(7)
    module = LatentAttention(32, 4, kv_rank=12, rope_dim=4, nope_dim=6, v_dim=5).double()
    x = torch.randn(2, 9, 32, dtype=torch.float64)
    full, _ = module(x, causal=True)
    cache = ma.KVCache()
    outs = [module(x[:, :4], causal=True, cache=cache)[0]]
    outs += [module(x[:, t : t + 1], causal=True, cache=cache)[0] for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-12, rtol=1e-12)
    assert cache.keys.shape == (2, 1, 9, 12) and cache.values.shape == (2, 1, 9, 4)


def test_latent_attention_gradients_equal_deepseeks():
    config, theirs, rotary, ours = _deepseek(torch.float32, 8, False)
    x, _, keep = _inputs(2, 5, None, 32, torch.float32, seed=8)
    position_ids = torch.arange(5)[None].expand(2, -1)
    theirs(x, rotary(x, position_ids), _hf_mask(config, x, keep))[0].square().sum().backward()
    ours(x, causal=True)[0].square().sum().backward()
    torch.testing.assert_close(
        ours.kv_up.weight.grad, theirs.kv_b_proj.weight.grad, atol=1e-4, rtol=1e-4
    )
    torch.testing.assert_close(
        ours.out_proj.weight.grad, theirs.o_proj.weight.grad, atol=1e-4, rtol=1e-4
    )
