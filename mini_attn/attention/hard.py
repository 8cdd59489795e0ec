"""Hard attention: choose one key (or a few) instead of averaging them all (mechanisms, chapter 3).

Four ways to choose, from the least to the most trainable by gradient descent:

- :func:`hard_attention`: the argmax of the scores; no gradient reaches the scores.
- :func:`sample_attention`: a key drawn from the softmax of the scores, with the
  log-probability of the draw, so that the scores can be trained with REINFORCE.
- :func:`gumbel_softmax_attention`: a draw made differentiable by the Gumbel-softmax
  relaxation, optionally one-hot in the forward pass (straight-through).
- :func:`topk_attention`: a softmax over the ``k`` best keys only, a middle ground between
  hard (``k = 1``) and soft (``k = S``) attention.

All four take ``scores (..., L, S)`` and ``values (..., S, Ev)`` and a boolean ``mask``
(``True`` where a query may attend to a key). A query whose keys are all masked chooses
nothing: its index is ``-1``, its weights and its context are zero.
"""

from __future__ import annotations

import torch

from .._validation import (
    check_bool_mask,
    check_floating,
    check_tensor,
    fmt_shape,
)
from ..core.softmax import masked_softmax

__all__ = [
    "gumbel_softmax_attention",
    "hard_attention",
    "sample_attention",
    "topk_attention",
]


def _check_scores_values(scores, values, mask) -> None:
    """Scores ``(..., L, S)``, values ``(..., S, Ev)`` and a mask that broadcasts to the scores."""
    check_floating(check_tensor(scores, "scores", min_ndim=1), "scores")
    check_floating(check_tensor(values, "values", min_ndim=2), "values")
    if scores.shape[-1] != values.shape[-2]:
        raise ValueError(
            f"scores {fmt_shape(scores.shape)} and values {fmt_shape(values.shape)} must agree "
            "on the number of keys S: scores is (..., L, S) and values is (..., S, Ev)"
        )
    if scores.shape[-1] == 0:
        raise ValueError(
            f"scores {fmt_shape(scores.shape)} has no keys to choose from"
        )
    check_bool_mask(mask, scores.shape)


def _fill_masked(
    scores: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """The scores with masked keys set to -inf, so that they are never the maximum."""
    return (
        scores
        if mask is None
        else scores.masked_fill(~mask, float("-inf"))
    )


def _any_allowed(
    scores: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """Boolean ``(..., L)``: ``True`` where a query has at least one key it may attend to."""
    if mask is None:
        return torch.ones(
            scores.shape[:-1], dtype=torch.bool, device=scores.device
        )
    return mask.expand(scores.shape).any(dim=-1)


def _one_hot(
    index: torch.Tensor, n_keys: int, dtype: torch.dtype
) -> torch.Tensor:
    """``(..., L)`` indices, ``-1`` for "nothing" -> ``(..., L, S)`` one-hot weights."""
    weights = torch.nn.functional.one_hot(index.clamp_min(0), n_keys).to(
        dtype
    )
    # index -1: an all-zero row
    return weights * (index >= 0).unsqueeze(-1).to(dtype)


def hard_attention(
    scores: torch.Tensor,
    values: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard (argmax) attention: each query returns the value of its best-scoring key.

    The choice is an integer, so no gradient flows back to ``scores``: only ``values``
    receive a gradient (the chosen value's).

    Args:
        scores (Tensor): shape :math:`(..., L, S)`.
        values (Tensor): shape :math:`(..., S, Ev)`.
        mask (Tensor, optional): boolean, broadcastable to ``scores``, ``True`` where a query
            may attend to a key; masked keys are never chosen.

    Returns:
        (Tensor, Tensor): ``context`` of shape :math:`(..., L, Ev)`, the chosen values, and
        ``index`` of shape :math:`(..., L)` (int64), the chosen keys. A query whose keys are
        all masked gets ``index = -1`` and a zero context row.

    Shape legend:

    - ``L``: queries
    - ``S``: keys
    - ``Ev``: value size
    - ``...``: batch dimensions
    """
    _check_scores_values(scores, values, mask)
    # (..., L): the best allowed key
    index = _fill_masked(scores, mask).argmax(dim=-1)
    index = torch.where(_any_allowed(scores, mask), index, -1)
    # (..., L, S), one 1 per row
    weights = _one_hot(index, scores.shape[-1], values.dtype)
    return weights @ values, index  # (..., L, Ev): the chosen value


def sample_attention(
    scores: torch.Tensor,
    values: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Stochastic hard attention: draw one key per query from the softmax of the scores.

    The key is drawn with probabilities :math:`p = \mathrm{softmax}(s)` (masked keys have
    probability 0) and its value returned. The draw is not differentiable, but its
    log-probability :math:`\log p_i` is, with :math:`\partial \log p_i / \partial s_j =
    [i = j] - p_j`; REINFORCE multiplies it by a reward to train the scores.

    Args:
        scores (Tensor): shape :math:`(..., L, S)`.
        values (Tensor): shape :math:`(..., S, Ev)`.
        mask (Tensor, optional): boolean, broadcastable to ``scores``, ``True`` where a query
            may attend to a key; masked keys are never drawn.
        generator (torch.Generator, optional): the random generator of the draw, on the
            device of ``scores``. Default: PyTorch's global generator.

    Returns:
        (Tensor, Tensor, Tensor): ``context`` :math:`(..., L, Ev)`, the drawn values;
        ``index`` :math:`(..., L)` (int64), the drawn keys; ``log_prob`` :math:`(..., L)`,
        the log-probability of each draw, differentiable with respect to ``scores``. A query
        whose keys are all masked gets ``index = -1``, a zero context row and
        ``log_prob = 0``.

    Shape legend:

    - ``L``: queries
    - ``S``: keys
    - ``Ev``: value size
    - ``...``: batch dimensions
    """
    _check_scores_values(scores, values, mask)
    n_keys = scores.shape[-1]
    allowed = _any_allowed(scores, mask)  # (..., L)
    # (..., L, S), the distribution to draw from
    probs = masked_softmax(scores.detach(), mask)
    # any row, to keep it valid
    probs = torch.where(allowed.unsqueeze(-1), probs, 1.0 / n_keys)
    flat = probs.reshape(-1, n_keys)  # (N, S), multinomial wants 2-D
    # (..., L)
    index = torch.multinomial(flat, 1, generator=generator).view(
        scores.shape[:-1]
    )
    index = torch.where(allowed, index, -1)

    # log p_i = s_i - log Σ_j exp(s_j) over the allowed keys;
    # 0 for a query with no key
    filled = _fill_masked(scores, mask)
    filled = torch.where(
        allowed.unsqueeze(-1), filled, torch.zeros_like(filled)
    )
    log_probs = torch.log_softmax(filled, dim=-1)  # (..., L, S)
    # (..., L)
    log_prob = log_probs.gather(
        -1, index.clamp_min(0).unsqueeze(-1)
    ).squeeze(-1)
    log_prob = torch.where(allowed, log_prob, torch.zeros_like(log_prob))

    weights = _one_hot(index, n_keys, values.dtype)  # (..., L, S)
    return weights @ values, index, log_prob


def gumbel_softmax_attention(
    scores: torch.Tensor,
    values: torch.Tensor,
    *,
    tau: float = 1.0,
    hard: bool = True,
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Gumbel-softmax attention: a differentiable stand-in for a draw from ``softmax(scores)``.

    Adds Gumbel noise :math:`g_j = -\log E_j`, :math:`E_j \sim \mathrm{Exp}(1)`, to the
    scores and takes the relaxed weights :math:`y = \mathrm{softmax}((s + g) / \tau)`. The
    argmax of :math:`s + g` is an exact draw from :math:`\mathrm{softmax}(s)` (the
    Gumbel-max trick); as :math:`\tau \to 0` the relaxed weights approach that one-hot
    draw. With ``hard=True`` the forward pass uses the one-hot draw and the backward pass
    the gradient of :math:`y` (the straight-through estimator). Without a mask this equals
    :func:`torch.nn.functional.gumbel_softmax` for the same random numbers.

    Args:
        scores (Tensor): shape :math:`(..., L, S)`.
        values (Tensor): shape :math:`(..., S, Ev)`.
        tau (float): the temperature, > 0. Default: 1.
        hard (bool): one-hot weights in the forward pass, relaxed gradient in the backward
            pass. Default: True.
        mask (Tensor, optional): boolean, broadcastable to ``scores``, ``True`` where a query
            may attend to a key; masked keys get weight 0 and are never chosen.
        generator (torch.Generator, optional): the random generator of the noise, on the
            device of ``scores``. Default: PyTorch's global generator.

    Returns:
        (Tensor, Tensor): ``context`` of shape :math:`(..., L, Ev)` and ``weights`` of shape
        :math:`(..., L, S)` (one-hot if ``hard``). A query whose keys are all masked gets
        zero weights and a zero context row.

    Shape legend:

    - ``L``: queries
    - ``S``: keys
    - ``Ev``: value size
    - ``...``: batch dimensions
    """
    _check_scores_values(scores, values, mask)
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    # Gumbel noise as PyTorch's gumbel_softmax draws it: -log(Exp(1))
    gumbels = (
        -torch.empty_like(scores).exponential_(generator=generator).log()
    )
    # (..., L, S), relaxed weights
    soft = masked_softmax((scores + gumbels) / tau, mask)
    if hard:
        # (..., L): the draw
        index = _fill_masked(scores + gumbels, mask).argmax(dim=-1)
        index = torch.where(_any_allowed(scores, mask), index, -1)
        one_hot = _one_hot(index, scores.shape[-1], soft.dtype)
        # forward: one_hot; backward: d soft
        weights = one_hot - soft.detach() + soft
    else:
        weights = soft
    return weights @ values, weights  # (..., L, Ev), (..., L, S)


def topk_attention(
    scores: torch.Tensor,
    values: torch.Tensor,
    k: int,
    *,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k attention: a softmax over the ``k`` best-scoring keys, weight 0 for the others.

    ``k = 1`` is hard attention (with no gradient to the scores: a softmax over one key is
    the constant 1) and ``k = S`` is soft attention; in between, the ``k`` chosen scores
    receive the softmax's gradient. Ties are broken as :func:`torch.topk` breaks them.

    Args:
        scores (Tensor): shape :math:`(..., L, S)`.
        values (Tensor): shape :math:`(..., S, Ev)`.
        k (int): how many keys each query keeps, ``1 ≤ k ≤ S``.
        mask (Tensor, optional): boolean, broadcastable to ``scores``, ``True`` where a query
            may attend to a key; a query with fewer than ``k`` allowed keys keeps only those.

    Returns:
        (Tensor, Tensor): ``context`` of shape :math:`(..., L, Ev)` and ``weights`` of shape
        :math:`(..., L, S)`, at most ``k`` non-zero per row, summing to 1 (or all zero if
        every key of the row is masked).

    Shape legend:

    - ``L``: queries
    - ``S``: keys
    - ``Ev``: value size
    - ``...``: batch dimensions
    """
    _check_scores_values(scores, values, mask)
    n_keys = scores.shape[-1]
    if (
        isinstance(k, bool)
        or not isinstance(k, int)
        or not 1 <= k <= n_keys
    ):
        raise ValueError(
            f"k must be an integer in [1, S={n_keys}], got {k!r}"
        )
    filled = _fill_masked(scores, mask)
    best = filled.topk(k, dim=-1).indices  # (..., L, k)
    # (..., L, S)
    keep = torch.zeros_like(filled, dtype=torch.bool).scatter(
        -1, best, True
    )
    if mask is not None:
        # a masked key among the k "best" (-inf) stays masked
        keep = keep & mask
    # (..., L, S), zero outside the k best
    weights = masked_softmax(scores, keep)
    return weights @ values, weights  # (..., L, Ev), (..., L, S)
