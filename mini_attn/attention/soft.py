"""Soft attention: softmax over scores, then a weighted average of values (mechanisms, ch. 2)."""

from __future__ import annotations

import torch

from .._validation import (
    check_bool_mask,
    check_floating,
    check_tensor,
    fmt_shape,
)
from ..core.softmax import masked_softmax

__all__ = ["soft_attention"]


def soft_attention(
    scores: torch.Tensor,
    values: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Soft attention: the average of the values weighted by :math:`\mathrm{softmax}(s)`.

    The weights are non-negative and sum to one over the keys, so the context is a
    weighted average of the values; every step is differentiable. Masked keys get weight
    exactly 0, and a query whose keys are all masked gets zero weights and a zero context
    (never NaN).

    Args:
        scores (Tensor): shape :math:`(..., L, S)`, from any scoring function.
        values (Tensor): shape :math:`(..., S, Ev)`.
        mask (Tensor, optional): boolean, broadcastable to :math:`(..., L, S)`, ``True``
            where a query may attend to a key. Default: None, every key allowed.

    Returns:
        (Tensor, Tensor): ``context`` of shape :math:`(..., L, Ev)` and ``weights`` of
        shape :math:`(..., L, S)`.

    Raises:
        TypeError: ``scores`` or ``values`` is not a floating-point tensor, or ``mask`` is
            not boolean.
        ValueError: ``scores`` and ``values`` disagree on the number of keys ``S``, or
            ``mask`` does not broadcast to ``scores``.

    Shape legend:

    - ``L``: queries
    - ``S``: keys
    - ``Ev``: value size
    - ``...``: batch dimensions (they broadcast)
    """
    for name, x in (("scores", scores), ("values", values)):
        check_floating(check_tensor(x, name, min_ndim=2), name)
    if scores.shape[-1] != values.shape[-2]:
        raise ValueError(
            f"scores {fmt_shape(scores.shape)} and values "
            f"{fmt_shape(values.shape)} must agree on the number "
            "of keys S: scores (..., L, S), values (..., S, Ev)"
        )
    check_bool_mask(mask, scores.shape)
    # (..., L, S), rows sum to 1 (or are all 0)
    weights = masked_softmax(scores, mask)
    # (..., L, Ev): the weighted average of the values
    context = weights @ values
    return context, weights
