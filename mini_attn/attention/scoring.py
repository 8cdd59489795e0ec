"""Scoring functions: how well each key matches each query (chapter 2).

A scoring function turns a query of shape ``(..., L, E)`` and keys of shape ``(..., S, Ek)``
into scores of shape ``(..., L, S)``; a softmax over the last dimension turns the scores
into attention weights. Four classic choices:

=====================  ==========================================  =========================
name                   score of query ``q`` and key ``k``          introduced for
=====================  ==========================================  =========================
dot product            ``qᵀ k``                                    Luong et al. (2015)
scaled dot product     ``qᵀ k / √E``                               Vaswani et al. (2017)
additive (Bahdanau)    ``wᵀ tanh(W_q q + W_k k)``                  Bahdanau et al. (2015)
general (bilinear)     ``qᵀ W k``                                  Luong et al. (2015)
=====================  ==========================================  =========================
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._validation import check_floating, check_tensor, fmt_shape

__all__ = [
    "AdditiveScore",
    "BilinearScore",
    "dot_product_score",
    "scaled_dot_product_score",
]


def _check_query_key(
    query, key, query_dim: int | None = None, key_dim: int | None = None
):
    """Both tensors floating point with at least 2 dims; last dims as the module expects."""
    for name, x, dim in (
        ("query", query, query_dim),
        ("key", key, key_dim),
    ):
        check_floating(check_tensor(x, name, min_ndim=2), name)
        if dim is not None and x.shape[-1] != dim:
            raise ValueError(
                f"{name} must have last dimension {dim}, got shape {fmt_shape(x.shape)}"
            )


def dot_product_score(
    query: torch.Tensor, key: torch.Tensor
) -> torch.Tensor:
    r"""Dot-product scores :math:`q^\top k` of every query with every key.

    Args:
        query (Tensor): shape :math:`(..., L, E)`.
        key (Tensor): shape :math:`(..., S, E)`.

    Returns:
        Tensor: the scores, shape :math:`(..., L, S)`.

    Raises:
        ValueError: ``query`` and ``key`` differ in their last dimension.

    Shape legend:

    - ``L``: queries
    - ``S``: keys
    - ``E``: query/key size
    - ``...``: batch dimensions (they broadcast)
    """
    _check_query_key(query, key)
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"query {fmt_shape(query.shape)} and key {fmt_shape(key.shape)} must have the same "
            "last dimension E for a dot product"
        )
    return query @ key.transpose(-2, -1)  # (..., L, S)


def scaled_dot_product_score(
    query: torch.Tensor, key: torch.Tensor
) -> torch.Tensor:
    r"""Scaled dot-product scores :math:`q^\top k / \sqrt{E}` (chapter 5 explains the √E).

    Args:
        query (Tensor): shape :math:`(..., L, E)`.
        key (Tensor): shape :math:`(..., S, E)`.

    Returns:
        Tensor: the scores, shape :math:`(..., L, S)`.

    Raises:
        ValueError: ``query`` and ``key`` differ in their last dimension.

    Shape legend:

    - ``L``: queries
    - ``S``: keys
    - ``E``: query/key size
    - ``...``: batch dimensions (they broadcast)
    """
    return dot_product_score(query, key) / math.sqrt(query.shape[-1])


class AdditiveScore(nn.Module):
    r"""Additive (Bahdanau) scores :math:`w^\top \tanh(W_q q + W_k k)`.

    A one-hidden-layer network scores each query–key pair
    (Bahdanau et al., 2015). The query and the key may have different sizes.

    Args:
        query_dim (int): the query size ``Eq``.
        key_dim (int): the key size ``Ek``.
        hidden_dim (int): the size ``A`` of the hidden layer.

    Attributes:
        query_proj (nn.Linear): :math:`W_q`, ``Eq → A``, no bias.
        key_proj (nn.Linear): :math:`W_k`, ``Ek → A``, no bias.
        out (nn.Linear): :math:`w^\top`, ``A → 1``, no bias.

    Shape legend:

    - ``L``: queries
    - ``S``: keys
    - ``...``: batch dimensions (they broadcast)
    """

    def __init__(
        self, query_dim: int, key_dim: int, hidden_dim: int
    ) -> None:
        super().__init__()
        self.query_dim, self.key_dim = query_dim, key_dim
        self.query_proj = nn.Linear(query_dim, hidden_dim, bias=False)
        self.key_proj = nn.Linear(key_dim, hidden_dim, bias=False)
        self.out = nn.Linear(hidden_dim, 1, bias=False)

    def forward(
        self, query: torch.Tensor, key: torch.Tensor
    ) -> torch.Tensor:
        """Scores of every query with every key.

        Args:
            query (Tensor): shape :math:`(..., L, Eq)`.
            key (Tensor): shape :math:`(..., S, Ek)`.

        Returns:
            Tensor: the scores, shape :math:`(..., L, S)`.
        """
        _check_query_key(query, key, self.query_dim, self.key_dim)
        # every query with every key:
        # (..., L, 1, A) + (..., 1, S, A) -> (..., L, S, A)
        hidden = torch.tanh(
            self.query_proj(query).unsqueeze(-2)
            + self.key_proj(key).unsqueeze(-3)
        )
        # (..., L, S): wᵀ tanh(W_q q + W_k k)
        return self.out(hidden).squeeze(-1)


class BilinearScore(nn.Module):
    r"""General (bilinear) scores :math:`q^\top W k`, Luong's "general" score.

    A learned matrix :math:`W` compares a query and a key of possibly different sizes
    (Luong et al., 2015); with :math:`W = I` it is the dot product.

    Args:
        query_dim (int): the query size ``Eq``.
        key_dim (int): the key size ``Ek``.

    Attributes:
        weight (nn.Parameter): :math:`W`, shape :math:`(Eq, Ek)`, initialised with
            standard deviation :math:`1/\sqrt{Ek}`.

    Shape legend:

    - ``L``: queries
    - ``S``: keys
    - ``...``: batch dimensions (they broadcast)
    """

    def __init__(self, query_dim: int, key_dim: int) -> None:
        super().__init__()
        self.query_dim, self.key_dim = query_dim, key_dim
        self.weight = nn.Parameter(
            torch.randn(query_dim, key_dim) / math.sqrt(key_dim)
        )

    def forward(
        self, query: torch.Tensor, key: torch.Tensor
    ) -> torch.Tensor:
        """Scores of every query with every key.

        Args:
            query (Tensor): shape :math:`(..., L, Eq)`.
            key (Tensor): shape :math:`(..., S, Ek)`.

        Returns:
            Tensor: the scores, shape :math:`(..., L, S)`.
        """
        _check_query_key(query, key, self.query_dim, self.key_dim)
        # (..., L, Ek) @ (..., Ek, S)
        return (query @ self.weight) @ key.transpose(-2, -1)
