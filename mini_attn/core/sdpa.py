"""Scaled dot-product attention, ``softmax(Q Kᵀ / √D) V`` (chapter 5).

Notation, as in chapters 4–6: ``E`` is the model size (the features of each input vector,
``embed_dim``), ``D`` the query/key size (a head's size in multi-head attention) and ``Dv``
the value size. PyTorch's documentation of its own function calls the query/key size ``E``.
"""

from __future__ import annotations

import math

import torch

from .._validation import broadcast_batch, check_bool_mask, check_qkv
from .masks import causal_mask
from .softmax import masked_softmax

__all__ = ["scaled_dot_product_attention"]


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Scaled dot-product attention: :math:`\mathrm{softmax}(Q K^\top \cdot \mathrm{scale})\, V`.

    Equals :func:`torch.nn.functional.scaled_dot_product_attention` wherever both are
    defined, and also returns the attention weights. A query whose keys are all masked
    gets zero weights and a zero output row, never NaN (a naive softmax gives 0/0 there).

    Args:
        query (Tensor): shape :math:`(..., L, D)`.
        key (Tensor): shape :math:`(..., S, D)`.
        value (Tensor): shape :math:`(..., S, D_v)`.
        mask (Tensor, optional): boolean, broadcastable to :math:`(..., L, S)`, ``True``
            where a query may attend to a key.
        causal (bool): let query ``i`` attend to keys ``j ≤ i`` only (top-left aligned, as
            PyTorch's ``is_causal``); combined with ``mask`` by AND. Default: False.
        scale (float, optional): the factor applied to the scores. Default: :math:`1/\sqrt{D}`.
        dropout_p (float): dropout probability on the weights; use 0 in evaluation.
            Default: 0.

    Returns:
        (Tensor, Tensor): ``output`` of shape :math:`(..., L, D_v)` and ``weights`` of shape
        :math:`(..., L, S)` (after dropout, if any).

    Raises:
        TypeError: an input is not a floating-point tensor, or ``mask`` is not boolean
            (float masks are refused).
        ValueError: the shapes do not fit (named in the message), or ``dropout_p`` is not
            in [0, 1).

    Shape legend:
        - ``L``: the number of queries.
        - ``S``: the number of keys and values.
        - ``D``: the query/key size (``E`` in PyTorch's documentation of its function).
        - ``D_v``: the value size.
        - ``...``: any batch dimensions (they broadcast).
    """
    _check_inputs(query, key, value, mask, dropout_p)
    n_queries, n_keys = query.shape[-2], key.shape[-2]
    if causal:
        future = causal_mask(n_queries, n_keys, device=query.device)
        mask = future if mask is None else mask & future
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale

    # scale the queries, not the scores: (Q · scale) Kᵀ = Q Kᵀ · scale,
    # on an L × D matrix instead of the larger L × S one
    # (..., L, S): Q Kᵀ / √D
    scores = (query * scale) @ key.transpose(-2, -1)
    if (
        mask is not None
    ):  # the mask may carry batch dimensions that Q Kᵀ lacks
        scores = scores.expand(
            torch.broadcast_shapes(scores.shape, mask.shape)
        )
    # (..., L, S): rows sum to 1, or 0 if all masked
    weights = masked_softmax(scores, mask)
    if dropout_p > 0.0:
        weights = torch.nn.functional.dropout(weights, p=dropout_p)
    return weights @ value, weights  # (..., L, Dv), (..., L, S)


def _check_inputs(query, key, value, mask, dropout_p) -> None:
    """Floating-point tensors whose shapes fit, a boolean mask that broadcasts to the
    scores (..., L, S), and a dropout probability in [0, 1)."""
    check_qkv(query, key, value)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    batch = broadcast_batch(query=query, key=key, value=value)
    check_bool_mask(mask, (*batch, query.shape[-2], key.shape[-2]))
