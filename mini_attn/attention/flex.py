"""The chapter's masks and a score modification as FlexAttention functions (chapter 7).

:func:`torch.nn.attention.flex_attention.flex_attention` takes the mask as a function
``mask_mod(b, h, q_idx, kv_idx) -> bool`` (``True`` where the query may attend, as every
boolean mask of this package) and a ``score_mod(score, b, h, q_idx, kv_idx) -> score``
applied to each scaled score before the softmax. The functions here build them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .._validation import check_positive_int, check_tensor

__all__ = [
    "alibi_score_mod",
    "causal_mask_mod",
    "document_mask_mod",
    "prefix_lm_mask_mod",
    "sliding_window_mask_mod",
    "softcap_score_mod",
]


def causal_mask_mod(b, h, q_idx, kv_idx):
    """Query ``i`` sees keys ``j ≤ i``: :func:`~mini_attn.causal_mask` as a ``mask_mod``."""
    return q_idx >= kv_idx


def sliding_window_mask_mod(window: int) -> Callable:
    """Query ``i`` sees keys ``i − window < j ≤ i``: :func:`~mini_attn.sliding_window_mask`."""
    window = check_positive_int(window, "window")

    def mask_mod(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (q_idx - kv_idx < window)

    return mask_mod


def document_mask_mod(document: torch.Tensor) -> Callable:
    """Causal attention inside each of several documents packed into one sequence.

    Args:
        document (Tensor): integer, shape :math:`(N,)`: the document of each position.
    """
    check_tensor(document, "document", ndim=1)

    def mask_mod(b, h, q_idx, kv_idx):
        return (document[q_idx] == document[kv_idx]) & (q_idx >= kv_idx)

    return mask_mod


def prefix_lm_mask_mod(prefix_length: int) -> Callable:
    """Prefix LM: the first ``prefix_length`` positions see each other, the rest is causal."""

    def mask_mod(b, h, q_idx, kv_idx):
        return (kv_idx < prefix_length) | (q_idx >= kv_idx)

    return mask_mod


def alibi_score_mod(slopes: torch.Tensor) -> Callable:
    """ALiBi: head ``h`` adds ``−slopes[h] · (i − j)`` to the score of query ``i``, key ``j``.

    Args:
        slopes (Tensor): shape :math:`(H,)`, one slope per head (Press et al. use
            ``2^(−8 h / H)`` for ``h = 1 … H``).
    """
    check_tensor(slopes, "slopes", ndim=1)

    def score_mod(score, b, h, q_idx, kv_idx):
        return score - slopes[h] * (q_idx - kv_idx)

    return score_mod


def softcap_score_mod(cap: float) -> Callable:
    """Soft-capping (Gemma 2): ``cap · tanh(score / cap)`` keeps every score in ``(−cap, cap)``."""
    if not cap > 0:
        raise ValueError(f"cap must be positive, got {cap}")

    def score_mod(score, b, h, q_idx, kv_idx):
        return cap * torch.tanh(score / cap)

    return score_mod
