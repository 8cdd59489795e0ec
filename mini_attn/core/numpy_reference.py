"""The K/Q/V computation in NumPy: the math of chapter 5, without a framework (primitives).

It computes exactly what :func:`~mini_attn.scaled_dot_product_attention` and
:class:`~mini_attn.SelfAttention` compute, on NumPy arrays: the tests check that the two
agree. Only the forward pass: NumPy has no automatic gradients.
"""

from __future__ import annotations

import numpy as np

__all__ = ["scaled_dot_product_attention_numpy", "self_attention_numpy"]


def _shape(x) -> str:
    dims = tuple(x.shape)
    return (
        "("
        + ", ".join(str(d) for d in dims)
        + ("," if len(dims) == 1 else "")
        + ")"
    )


def _check_array(x, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy.ndarray, got {type(x).__name__}"
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(
            f"{name} must be a floating-point array, got dtype {x.dtype}"
        )
    if x.ndim < 2:
        raise ValueError(
            f"{name} must have at least 2 dimensions, got shape {_shape(x)}"
        )
    return x


def _softmax(scores: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Softmax over the last axis; masked keys get 0, a fully masked row is all zeros."""
    if mask is not None:
        # masked keys: exp(-inf) = 0
        scores = np.where(mask, scores, -np.inf)
    # subtract it: exp never overflows
    row_max = scores.max(axis=-1, keepdims=True)
    # a fully masked row: max is -inf
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    exp = np.exp(scores - row_max)
    denom = exp.sum(axis=-1, keepdims=True)
    # 0 / tiny = 0 for such rows
    return exp / np.maximum(denom, np.finfo(scores.dtype).tiny)


def scaled_dot_product_attention_numpy(
    query: np.ndarray,
    key: np.ndarray,
    value: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Scaled dot-product attention in NumPy: :math:`\mathrm{softmax}(Q K^\top / \sqrt{D})\, V`.

    Args:
        query (ndarray): shape :math:`(..., L, D)`.
        key (ndarray): shape :math:`(..., S, D)`.
        value (ndarray): shape :math:`(..., S, D_v)`.
        mask (ndarray, optional): boolean, broadcastable to :math:`(..., L, S)`, ``True``
            where a query may attend to a key.
        causal (bool): query ``i`` attends to keys ``j ≤ i`` only (top-left aligned);
            combined with ``mask`` by AND. Default: False.
        scale (float, optional): the factor applied to the scores. Default: :math:`1/\sqrt{D}`.

    Returns:
        (ndarray, ndarray): ``output`` of shape :math:`(..., L, D_v)` and ``weights`` of
        shape :math:`(..., L, S)`; a query with every key masked gets zero weights and a
        zero output row.

    Raises:
        TypeError: an input is not a floating-point array, or ``mask`` is not boolean.
        ValueError: ``query`` and ``key`` differ in ``D``, or ``key`` and ``value`` in ``S``.

    Shape legend:
        - ``L``: the number of queries.
        - ``S``: the number of keys and values.
        - ``D``: the query/key size.
        - ``D_v``: the value size.
        - ``...``: any batch dimensions (they broadcast).
    """
    for name, x in (("query", query), ("key", key), ("value", value)):
        _check_array(x, name)
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"query {_shape(query)} and key {_shape(key)} must have the "
            "same last dimension D"
        )
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(
            f"key {_shape(key)} and value {_shape(value)} must have "
            "the same number of rows S"
        )
    n_queries, n_keys = query.shape[-2], key.shape[-2]
    if mask is not None and (
        not isinstance(mask, np.ndarray) or mask.dtype != np.bool_
    ):
        raise TypeError(
            "mask must be a boolean numpy.ndarray (True where a query "
            "may attend to a key), "
            f"got {getattr(mask, 'dtype', type(mask).__name__)}"
        )
    if causal:
        # (L, S): True for j ≤ i
        future = np.tril(np.ones((n_queries, n_keys), dtype=bool))
        mask = future if mask is None else mask & future
    scale = 1.0 / np.sqrt(query.shape[-1]) if scale is None else scale

    # (..., L, S): Q Kᵀ / √D
    scores = query @ np.swapaxes(key, -1, -2) * scale
    # (..., L, S): each row sums to 1 (or is all 0)
    weights = _softmax(scores, mask)
    return weights @ value, weights  # (..., L, Dv), (..., L, S)


def self_attention_numpy(
    x: np.ndarray,
    w_q: np.ndarray,
    w_k: np.ndarray,
    w_v: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    causal: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    r"""One self-attention head in NumPy: :math:`Q = X W_q`, :math:`K = X W_k`, :math:`V = X W_v`.

    The same computation as :class:`~mini_attn.SelfAttention` without bias, whose
    ``q_proj.weight`` is ``w_q.T`` (``nn.Linear`` stores the transposed matrix).

    Args:
        x (ndarray): the sequence, shape :math:`(..., N, E)`.
        w_q (ndarray): the query projection, shape :math:`(E, D)`.
        w_k (ndarray): the key projection, shape :math:`(E, D)`.
        w_v (ndarray): the value projection, shape :math:`(E, D_v)`.
        mask (ndarray, optional): boolean, broadcastable to :math:`(..., N, N)`.
        causal (bool): position ``i`` attends to positions ``j ≤ i`` only. Default: False.

    Returns:
        (ndarray, ndarray): ``output`` of shape :math:`(..., N, D_v)` and ``weights`` of
        shape :math:`(..., N, N)`.

    Raises:
        TypeError, ValueError: as :func:`scaled_dot_product_attention_numpy`, or a weight
            is not an ``(E, ·)`` matrix.

    Shape legend:
        - ``N``: the number of positions.
        - ``E``: the input (model) size.
        - ``D``: the query/key size.
        - ``D_v``: the value size.
    """
    _check_array(x, "x")
    for name, w in (("w_q", w_q), ("w_k", w_k), ("w_v", w_v)):
        _check_array(w, name)
        if w.ndim != 2 or w.shape[0] != x.shape[-1]:
            raise ValueError(
                f"{name} of shape {_shape(w)} must be a matrix (E, D) with E = {x.shape[-1]}, "
                f"the last dimension of x {_shape(x)}"
            )
    query = x @ w_q  # (..., N, D)
    key = x @ w_k  # (..., N, D)
    value = x @ w_v  # (..., N, Dv)
    return scaled_dot_product_attention_numpy(
        query, key, value, mask=mask, causal=causal
    )
