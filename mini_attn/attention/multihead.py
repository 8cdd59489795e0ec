"""Multi-head and grouped-query attention (chapter 6).

``MultiHeadAttention`` projects the inputs, splits the model dimension into heads, runs
:func:`~mini_attn.scaled_dot_product_attention` in every head at once, merges the heads and
projects the result. With ``num_kv_heads < num_heads`` several query heads share one
key/value head (grouped-query attention; multi-query attention when ``num_kv_heads == 1``).
"""

from __future__ import annotations

import torch
from torch import nn

from .._validation import (
    check_bool_mask,
    check_floating,
    check_positive_int,
    check_tensor,
    fmt_shape,
)
from ..core.masks import causal_mask
from .cache import KVCache
from .heads import grouped_attention, merge_heads, split_heads

__all__ = ["MultiHeadAttention"]


class MultiHeadAttention(nn.Module):
    r"""Multi-head attention with optional grouped-query attention.

    .. math::
        \mathrm{MultiHead}(Q, K, V) = \mathrm{Concat}(\mathrm{head}_1, \dots,
        \mathrm{head}_H)\, W^O, \qquad
        \mathrm{head}_h = \mathrm{softmax}\!\Big(\frac{Q W^Q_h (K W^K_{g(h)})^\top}{\sqrt{D}}\Big)
        V W^V_{g(h)}

    where :math:`g(h) = h \,//\, (H / H_{kv})` is the key/value head that query head ``h``
    uses. With ``num_kv_heads == num_heads`` (the default) :math:`g(h) = h`: ordinary
    multi-head attention; with ``num_kv_heads == 1`` every query head shares one key and
    one value head (multi-query attention).

    Args:
        embed_dim (int): the model dimension ``E``.
        num_heads (int): the number of query heads ``H``; must divide ``embed_dim``. The head
            size is ``D = E // H``.
        num_kv_heads (int, optional): the number of key/value heads ``Hkv``; must divide
            ``num_heads``. Default: ``num_heads``.
        bias (bool): add biases to the four projections. Default: True.
        dropout (float): dropout probability on the attention weights, applied in training
            mode only. Default: 0.

    Attributes:
        q_proj (nn.Linear): ``E → H·D``.
        k_proj (nn.Linear): ``E → Hkv·D``.
        v_proj (nn.Linear): ``E → Hkv·D``.
        out_proj (nn.Linear): ``H·D → E``.

    Shape legend:

    - ``B``: batch
    - ``H``: query heads
    - ``Hkv``: key/value heads
    - ``L``: queries
    - ``S``: keys
    - ``E``: model dimension
    - ``D``: head size
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        num_kv_heads: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_positive_int(embed_dim, "embed_dim")
        check_positive_int(num_heads, "num_heads")
        num_kv_heads = (
            num_heads
            if num_kv_heads is None
            else check_positive_int(num_kv_heads, "num_kv_heads")
        )
        if embed_dim % num_heads != 0:
            raise ValueError(
                f"num_heads={num_heads} must divide embed_dim={embed_dim} "
                "(every head gets embed_dim // num_heads features)"
            )
        if num_heads % num_kv_heads != 0:
            raise ValueError(
                f"num_kv_heads={num_kv_heads} must divide num_heads={num_heads} "
                "(every key/value head serves the same number of query heads)"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.embed_dim, self.num_heads, self.num_kv_heads = (
            embed_dim,
            num_heads,
            num_kv_heads,
        )
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        kv_dim = num_kv_heads * self.head_dim
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, kv_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, kv_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
            f"num_kv_heads={self.num_kv_heads}, head_dim={self.head_dim}, dropout={self.dropout}"
        )

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        r"""Attend from ``query`` to ``key``/``value`` in every head.

        Args:
            query (Tensor): shape :math:`(B, L, E)`.
            key (Tensor, optional): shape :math:`(B, S, E)`. Default: ``query``
                (self-attention).
            value (Tensor, optional): shape :math:`(B, S, E)`. Default: ``key``.
            mask (Tensor, optional): boolean, ``True`` where a query may attend to a key;
                broadcastable to :math:`(B, L, S)` (the same mask for every head, e.g. the
                :math:`(B, 1, S)` of :func:`~mini_attn.padding_mask`), or 4-D and
                broadcastable to :math:`(B, H, L, S)` (one mask per head). With a cache,
                ``S`` is the number of cached positions after this call.
            causal (bool): query ``i`` attends to keys ``j ≤ i`` only (with a cache:
                bottom-right aligned, ``j ≤ i + S − L``, the queries being the last ``L``
                positions); combined with ``mask`` by AND. Default: False.
            need_weights (bool): also return the attention weights of every head.
                Default: False.
            cache (KVCache, optional): this call's projected keys and values are appended
                to it, and the queries attend to every cached position. Default: None.

        Returns:
            (Tensor, Tensor or None): ``output`` of shape :math:`(B, L, E)`, and the
            weights of shape :math:`(B, H, L, S)` if ``need_weights`` else ``None``.

        Raises:
            ValueError: the inputs' shapes disagree, or ``mask`` does not fit the scores
                (with a cache: its key length is not the cached length).
        """
        key = query if key is None else key
        value = key if value is None else value
        self._check_inputs(query, key, value)
        # the position of query 0
        start = 0 if cache is None else cache.n_seen
        # (B, H, L, D), (B, Hkv, S, D) x2
        q, k, v = self.project(query, key, value, start)
        if cache is not None:
            # every position so far: (B, Hkv, S, D)
            k, v = cache.update(k, v)
        # bottom-right with a cache
        offset = 0 if cache is None else k.shape[-2] - q.shape[-2]
        # (B, L, S)
        scores_shape = (query.shape[0], q.shape[-2], k.shape[-2])
        mask = self._combine_masks(
            mask, causal, scores_shape, offset, cache is not None
        )
        # (B, H, L, D), (B, H, L, S)
        context, weights = self.attend(q, k, v, mask)
        # (B, L, H·D) -> (B, L, E)
        output = self.out_proj(merge_heads(context))
        return output, (weights if need_weights else None)

    def project(self, query, key, value, start: int = 0):
        """The queries, keys and values of every head (``start``: the position of row 0)."""
        # (B, H, L, D)
        q = split_heads(self.q_proj(query), self.num_heads)
        # (B, Hkv, S, D)
        k = split_heads(self.k_proj(key), self.num_kv_heads)
        # (B, Hkv, S, D)
        v = split_heads(self.v_proj(value), self.num_kv_heads)
        return q, k, v

    def attend(self, q, k, v, mask):
        """Attention in every head: :func:`grouped_attention` (dropout in training only)."""
        return grouped_attention(
            q, k, v, mask=mask, dropout_p=self.dropout * self.training
        )

    def structure_mask(
        self, n_queries: int, n_keys: int, offset: int, device
    ) -> torch.Tensor:
        """The mask ``causal=True`` stands for: here :func:`~mini_attn.causal_mask`."""
        return causal_mask(
            n_queries, n_keys, offset=offset, device=device
        )

    def _check_inputs(self, query, key, value) -> None:
        for name, x in (("query", query), ("key", key), ("value", value)):
            check_floating(check_tensor(x, name, ndim=3), name)
            if x.shape[-1] != self.embed_dim:
                raise ValueError(
                    f"{name} of shape {fmt_shape(x.shape)} must have embed_dim="
                    f"{self.embed_dim} features in its last dimension"
                )
        if not query.shape[0] == key.shape[0] == value.shape[0]:
            raise ValueError(
                f"query {fmt_shape(query.shape)}, key {fmt_shape(key.shape)} and value "
                f"{fmt_shape(value.shape)} must have the same batch size B"
            )
        if key.shape[1] != value.shape[1]:
            raise ValueError(
                f"key {fmt_shape(key.shape)} and value {fmt_shape(value.shape)} must have the "
                "same length S (one value per key)"
            )

    def _combine_masks(
        self, mask, causal, scores_shape, offset, cached: bool
    ):
        """``mask`` AND the causal mask, as one (B|1, H|1, L|1, S|1) boolean mask, or None."""
        batch, n_queries, n_keys = scores_shape
        if mask is not None:
            if (
                cached
                and isinstance(mask, torch.Tensor)
                and mask.shape[-1] not in (1, n_keys)
            ):
                raise ValueError(
                    f"mask of shape {fmt_shape(mask.shape)} has {mask.shape[-1]} keys, but with "
                    f"the cache the queries attend to the S={n_keys} cached positions"
                )
            if (
                isinstance(mask, torch.Tensor) and mask.dim() == 4
            ):  # one mask per head
                shape = (batch, self.num_heads, n_queries, n_keys)
                check_bool_mask(mask, shape, target="weights")
            else:  # the same mask for every head: (B|1, L|1, S|1) -> (B|1, 1, L|1, S|1)
                check_bool_mask(
                    mask, scores_shape, target="scores (B, L, S)"
                )
                mask = mask.reshape(
                    (1,) * (3 - mask.dim()) + tuple(mask.shape)
                )[:, None]
        if causal:
            structure = self.structure_mask(
                n_queries, n_keys, offset, self.q_proj.weight.device
            )
            # (L, S)
            mask = (
                structure[None, None]
                if mask is None
                else mask & structure
            )
        return mask

    @classmethod
    def from_torch(
        cls, module: nn.MultiheadAttention
    ) -> MultiHeadAttention:
        """A ``MultiHeadAttention`` with the weights of a :class:`torch.nn.MultiheadAttention`.

        The result gives the same output as ``module`` for the same batch-first input
        (transpose the input first if ``module.batch_first`` is False). PyTorch's
        ``key_padding_mask`` is ``True`` for keys to *ignore*: the equivalent ``mask`` here
        is ``~key_padding_mask[:, None, :]``.

        Args:
            module (nn.MultiheadAttention): the module to copy; it must have equal query,
                key and value sizes, and neither ``add_bias_kv`` nor ``add_zero_attn``.

        Returns:
            MultiHeadAttention: a new module, on the device and with the dtype of ``module``.
        """
        if not isinstance(module, nn.MultiheadAttention):
            raise TypeError(
                "module must be a torch.nn.MultiheadAttention, "
                f"got {type(module).__name__}"
            )
        if not module._qkv_same_embed_dim:
            raise ValueError(
                f"module has kdim={module.kdim}, vdim={module.vdim} "
                f"different from embed_dim={module.embed_dim}; "
                "MultiHeadAttention projects inputs of that size"
            )
        if module.bias_k is not None or module.add_zero_attn:
            raise ValueError(
                "module uses add_bias_kv or add_zero_attn, "
                "which MultiHeadAttention has not"
            )
        has_bias = module.in_proj_bias is not None
        ours = cls(
            module.embed_dim,
            module.num_heads,
            bias=has_bias,
            dropout=module.dropout,
        )
        ours = ours.to(
            device=module.in_proj_weight.device,
            dtype=module.in_proj_weight.dtype,
        )
        projections = (ours.q_proj, ours.k_proj, ours.v_proj)
        with torch.no_grad():
            # in_proj_weight stacks W_q, W_k, W_v as one (3E, E) matrix,
            # in_proj_bias as (3E,)
            for proj, weight in zip(
                projections, module.in_proj_weight.chunk(3), strict=True
            ):
                proj.weight.copy_(weight)
            if has_bias:
                for proj, bias in zip(
                    projections, module.in_proj_bias.chunk(3), strict=True
                ):
                    proj.bias.copy_(bias)
                ours.out_proj.bias.copy_(module.out_proj.bias)
            ours.out_proj.weight.copy_(module.out_proj.weight)
        return ours.train(module.training)
