"""The masked softmax: turns attention scores into attention weights (chapter 1)."""

from __future__ import annotations

import torch

from .._validation import (
    HALF_DTYPES,
    check_bool_mask,
    check_dim,
    check_floating,
    check_tensor,
)

__all__ = ["masked_softmax"]


def masked_softmax(
    scores: torch.Tensor, mask: torch.Tensor | None = None, dim: int = -1
) -> torch.Tensor:
    r"""Softmax over ``dim`` in which masked positions get weight exactly 0.

    .. math:: w_j = \frac{m_j \exp(s_j - \max_k s_k)}{\sum_k m_k \exp(s_k - \max_k s_k)}

    Subtracting the largest unmasked score first keeps ``exp`` from overflowing, so
    scores of any size are safe. A row in which every position is masked gets all-zero
    weights, never NaN. Half-precision scores (float16, bfloat16) are computed in
    float32 and returned in their own dtype.

    Args:
        scores (Tensor): attention scores, shape :math:`(..., L, S)` (any shape works;
            the softmax runs over ``dim``). A score of ``-inf`` gets weight 0, like a
            masked position, but a row must have a mask to get zeros when every score
            is ``-inf``; ``+inf`` and NaN are not meaningful scores.
        mask (Tensor, optional): boolean, broadcastable to ``scores``; ``True`` where a
            query may attend to a key (the convention of
            :func:`torch.nn.functional.scaled_dot_product_attention`). Default: None,
            every position allowed.
        dim (int): the dimension that sums to one. Default: -1 (the keys).

    Returns:
        Tensor: the weights, same shape and dtype as ``scores``; non-negative, each
        slice along ``dim`` sums to 1, or is all zeros if fully masked.

    Raises:
        TypeError: ``scores`` is not a floating-point tensor, or ``mask`` is not boolean.
        ValueError: ``mask`` does not broadcast to ``scores``, or ``dim`` is out of range.

    Shape legend:

    - ``L``: queries
    - ``S``: keys
    - ``...``: any batch dimensions
    """
    check_floating(check_tensor(scores, "scores", min_ndim=1), "scores")
    dim = check_dim(dim, scores.dim())
    check_bool_mask(mask, scores.shape)

    # half: sum in float32
    x = scores.float() if scores.dtype in HALF_DTYPES else scores
    if mask is not None:
        # masked keys: exp(-inf) = 0
        x = x.masked_fill(~mask, float("-inf"))
    # torch.softmax subtracts the row maximum before exp, so large scores
    # cannot overflow
    weights = torch.softmax(x, dim=dim)
    if mask is not None:
        # a row with every position masked is 0/0 = NaN:
        # give it zeros instead
        # as many dims as x
        mask = mask.reshape((1,) * (x.dim() - mask.dim()) + mask.shape)
        weights = weights.masked_fill(
            ~mask.any(dim=dim, keepdim=True), 0.0
        )
    return weights.to(scores.dtype)
