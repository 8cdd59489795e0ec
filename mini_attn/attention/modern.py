"""The attention layers of today's language models (chapter 7).

* :class:`RotaryAttention`: multi-head attention with rotary positions and grouped-query
  attention, as Llama's; with ``window`` a sliding window, as Mistral's.
* :class:`SinkAttention`: the same with a learned sink logit per head, as GPT-OSS's.
* :class:`LatentAttention`: multi-head latent attention, as DeepSeek-V2/V3's: the keys and
  values are rebuilt from a small latent vector per token, which is all the cache keeps.

Each is proven equal to the ``transformers`` module with the same weights in
``tests/test_parity_transformers.py``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._validation import check_bool_mask, check_positive_int
from ..core.masks import causal_mask, sliding_window_mask
from ..core.rotary import apply_rotary
from ..core.sdpa import scaled_dot_product_attention
from ..core.softmax import masked_softmax
from .cache import KVCache
from .heads import (
    fold_query_groups,
    merge_heads,
    split_heads,
    unfold_query_groups,
)
from .multihead import MultiHeadAttention

__all__ = ["LatentAttention", "RotaryAttention", "SinkAttention"]


class RotaryAttention(MultiHeadAttention):
    r"""Multi-head (grouped-query) self-attention with rotary position embeddings.

    The queries and keys of every head are rotated by :func:`~mini_attn.apply_rotary` at
    their positions (``len(cache)`` onwards with a cache) before the scores: Llama's
    attention layer. With ``window``, ``causal=True`` means the sliding window of
    :func:`~mini_attn.sliding_window_mask` (Mistral's); decode with a
    :class:`~mini_attn.SlidingWindowCache` to keep only the window.

    Args:
        embed_dim (int): the model dimension ``E``.
        num_heads (int): the query heads ``H``.
        num_kv_heads (int, optional): the key/value heads ``Hkv``. Default: ``num_heads``.
        base (float): the rotary base (``rope_theta``). Default: 10000.
        window (int, optional): the sliding window. Default: None (full causal attention).
        bias (bool): biases in the projections. Default: False (as Llama).
        dropout (float): dropout on the attention weights. Default: 0.

    Shape legend:

    - ``B``: batch
    - ``L``: positions
    - ``E``: model dimension
    - ``H``: heads
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        num_kv_heads: int | None = None,
        base: float = 10000.0,
        window: int | None = None,
        bias: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            embed_dim,
            num_heads,
            num_kv_heads=num_kv_heads,
            bias=bias,
            dropout=dropout,
        )
        self.base = base
        self.window = (
            None
            if window is None
            else check_positive_int(window, "window")
        )

    def project(self, query, key, value, start: int = 0):
        # (B, H, L, D), (B, Hkv, L, D) x2
        q, k, v = super().project(query, key, value)
        # (L,)
        positions = torch.arange(
            start, start + q.shape[-2], device=q.device
        )
        # rotate by each position's angle
        q = apply_rotary(q, positions, base=self.base)
        k = apply_rotary(k, positions, base=self.base)
        return q, k, v

    def structure_mask(self, n_queries, n_keys, offset, device):
        if self.window is None:
            return causal_mask(
                n_queries, n_keys, offset=offset, device=device
            )
        return sliding_window_mask(
            n_queries,
            n_keys,
            window=self.window,
            offset=offset,
            device=device,
        )


class SinkAttention(RotaryAttention):
    r"""Rotary attention with one learned sink logit per head (GPT-OSS).

    The softmax of head ``h`` gets one more entry, the learned logit :math:`s_h`, which has
    no value: :math:`w_{ij} = e^{a_{ij}} / (e^{s_h} + \sum_k e^{a_{ik}})`. A head can so put
    weight "nowhere" instead of on the first token.

    Args:
        embed_dim, num_heads, num_kv_heads, base, window, bias, dropout: as
            :class:`RotaryAttention` (``bias`` defaults to True, as GPT-OSS).

    Attributes:
        sinks (nn.Parameter): shape :math:`(H,)`, the sink logits.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        bias: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(embed_dim, num_heads, bias=bias, **kwargs)
        self.sinks = nn.Parameter(torch.zeros(num_heads))

    def attend(self, q, k, v, mask):
        num_heads, num_kv_heads = q.shape[1], k.shape[1]
        # (B, Hkv, G·L, S)
        scores = fold_query_groups(q, num_kv_heads) @ k.transpose(-2, -1)
        # (B, H, L, S)
        scores = unfold_query_groups(scores, num_heads) / math.sqrt(
            q.shape[-1]
        )
        # (B, H, L, 1)
        sinks = self.sinks.view(1, -1, 1, 1).expand(*scores.shape[:-1], 1)
        if mask is not None:  # the sink is never masked
            mask = mask.expand(*scores.shape[:-1], scores.shape[-1])
            mask = torch.cat(
                (mask, mask.new_ones(*mask.shape[:-1], 1)), dim=-1
            )
        weights = masked_softmax(
            torch.cat((scores, sinks), dim=-1), mask
        )[..., :-1]  # drop it
        weights = nn.functional.dropout(
            weights, self.dropout, self.training
        )
        # (B, Hkv, G·L, D)
        context = fold_query_groups(weights, num_kv_heads) @ v
        return unfold_query_groups(
            context, num_heads
        ), weights  # (B, H, L, D), (B, H, L, S)


class LatentAttention(nn.Module):
    r"""Multi-head latent attention (DeepSeek-V2/V3).

    Each token's keys and values are rebuilt from a latent vector :math:`c` of
    ``kv_rank`` features, and one rotary key of ``rope_dim`` features is shared by every
    head; a cache keeps only these ``kv_rank + rope_dim`` numbers per token:

    .. math::
        c = \mathrm{RMSNorm}(x W^{DKV}), \quad
        [k^{\mathrm{nope}}_h, v_h] = c\, W^{UKV}_h, \quad
        k_h = [k^{\mathrm{nope}}_h, \mathrm{RoPE}(x W^{KR})], \quad
        q_h = [q^{\mathrm{nope}}_h, \mathrm{RoPE}(q^{\mathrm{rope}}_h)]

    The queries come from ``x`` directly or, with ``q_rank``, through a low-rank
    bottleneck with an RMSNorm. Rotary features are in the rotate-half layout
    (DeepSeek's interleaved layout is a permutation of the weights' rows).

    Args:
        embed_dim (int): the model dimension ``E``.
        num_heads (int): the heads ``H``.
        kv_rank (int): the latent size (``kv_lora_rank``).
        rope_dim (int): the rotary part of a query/key head (``qk_rope_head_dim``).
        nope_dim (int): the part without positions (``qk_nope_head_dim``).
        v_dim (int): the value head size (``v_head_dim``).
        q_rank (int, optional): the query bottleneck (``q_lora_rank``). Default: None.
        base (float): the rotary base. Default: 10000.
        eps (float): the RMSNorms' epsilon. Default: 1e-6.
        bias (bool): biases on the down projections and the output. Default: False.

    Shape legend:

    - ``B``: batch
    - ``L``: positions
    - ``S``: keys
    - ``E``: model dimension
    - ``H``: heads
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        kv_rank: int,
        rope_dim: int,
        nope_dim: int,
        v_dim: int,
        q_rank: int | None = None,
        base: float = 10000.0,
        eps: float = 1e-6,
        bias: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (
            ("embed_dim", embed_dim),
            ("num_heads", num_heads),
        ):
            check_positive_int(value, name)
        for name, value in (
            ("kv_rank", kv_rank),
            ("rope_dim", rope_dim),
            ("v_dim", v_dim),
        ):
            check_positive_int(value, name)
        self.num_heads, self.kv_rank, self.rope_dim = (
            num_heads,
            kv_rank,
            rope_dim,
        )
        self.nope_dim, self.v_dim, self.base = nope_dim, v_dim, base
        q_size = num_heads * (nope_dim + rope_dim)
        if q_rank is None:
            self.q_proj = nn.Linear(embed_dim, q_size, bias=False)
        else:
            self.q_proj = nn.Sequential(
                nn.Linear(embed_dim, q_rank, bias=bias),  # down to q_rank
                nn.RMSNorm(q_rank, eps=eps),
                nn.Linear(q_rank, q_size, bias=False),  # up to every head
            )
        # latent | rotary key
        self.kv_down = nn.Linear(embed_dim, kv_rank + rope_dim, bias=bias)
        self.kv_norm = nn.RMSNorm(kv_rank, eps=eps)
        self.kv_up = nn.Linear(
            kv_rank, num_heads * (nope_dim + v_dim), bias=False
        )
        self.out_proj = nn.Linear(num_heads * v_dim, embed_dim, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        r"""Self-attention over ``x`` (and the cached latents).

        Args:
            x (Tensor): shape :math:`(B, L, E)`.
            mask (Tensor, optional): boolean, broadcastable to :math:`(B, L, S)`.
            causal (bool): bottom-right aligned causal mask (top-left without a cache).
            need_weights (bool): also return the weights :math:`(B, H, L, S)`.
            cache (KVCache, optional): keeps the latents :math:`(B, 1, S, r)` as its keys
                and the rotary keys :math:`(B, 1, S, d_r)` as its values.

        Returns:
            (Tensor, Tensor or None): the output :math:`(B, L, E)` and the weights.
        """
        start = 0 if cache is None else cache.n_seen
        # (L,)
        positions = torch.arange(
            start, start + x.shape[1], device=x.device
        )
        # (B, H, L, nope + rope)
        q = split_heads(self.q_proj(x), self.num_heads)
        q_nope, q_rot = q.split([self.nope_dim, self.rope_dim], dim=-1)
        latent, k_rot = self.kv_down(x).split(
            [self.kv_rank, self.rope_dim], dim=-1
        )
        # (B, 1, L, r): one latent for all heads
        latent = self.kv_norm(latent)[:, None]
        # (B, 1, L, d_r)
        k_rot = apply_rotary(k_rot[:, None], positions, base=self.base)
        if cache is not None:
            # (B, 1, S, r), (B, 1, S, d_r)
            latent, k_rot = cache.update(latent, k_rot)
        # (B, H, S, nope + Dv)
        kv = split_heads(self.kv_up(latent[:, 0]), self.num_heads)
        k_nope, v = kv.split([self.nope_dim, self.v_dim], dim=-1)
        q = torch.cat(
            (q_nope, apply_rotary(q_rot, positions, base=self.base)),
            dim=-1,
        )
        k = torch.cat(
            (k_nope, k_rot.expand(-1, self.num_heads, -1, -1)), dim=-1
        )
        mask = self._mask(
            mask, causal, x.shape[0], q.shape[-2], k.shape[-2]
        )
        # (B, H, L, Dv)
        context, weights = scaled_dot_product_attention(
            q, k, v, mask=mask
        )
        # (B, L, H·Dv) -> (B, L, E)
        output = self.out_proj(merge_heads(context))
        return output, (weights if need_weights else None)

    def _mask(self, mask, causal, batch, n_queries, n_keys):
        check_bool_mask(
            mask, (batch, n_queries, n_keys), target="scores (B, L, S)"
        )
        if (
            mask is not None
        ):  # (B|1, L|1, S|1) -> (B|1, 1, L|1, S|1): every head alike
            mask = mask.reshape(
                (1,) * (3 - mask.dim()) + tuple(mask.shape)
            )[:, None]
        if causal:
            future = causal_mask(
                n_queries, n_keys, offset=n_keys - n_queries, device=None
            )
            future = future.to(self.out_proj.weight.device)
            mask = future if mask is None else mask & future
        return mask
