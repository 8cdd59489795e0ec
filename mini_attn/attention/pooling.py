"""Nadaraya–Watson kernel regression as attention pooling (chapter 1)."""

from __future__ import annotations

import torch

from .._validation import (
    check_floating,
    check_qkv,
    check_tensor,
    fmt_shape,
)
from ..core.softmax import masked_softmax

__all__ = ["POOLING_KERNELS", "attention_pooling", "squared_distances"]

POOLING_KERNELS = ("gaussian", "boxcar", "epanechnikov")


def squared_distances(
    queries: torch.Tensor, keys: torch.Tensor
) -> torch.Tensor:
    """Squared Euclidean distance between every query and every key.

    Args:
        queries (Tensor): shape :math:`(..., L, E)`.
        keys (Tensor): shape :math:`(..., S, E)`.

    Returns:
        Tensor: shape :math:`(..., L, S)`, entry ``[i, j]`` is ``‖q_i - k_j‖²``.
    """
    diff = queries.unsqueeze(-2) - keys.unsqueeze(-3)  # (..., L, S, E)
    return (diff**2).sum(dim=-1)  # (..., L, S)


def attention_pooling(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    *,
    kernel: str = "gaussian",
    bandwidth: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Nadaraya–Watson regression: each query's output is a weighted average of the values.

    The weight of key :math:`k_j` for query :math:`q` depends only on their distance
    :math:`d = \lVert q - k_j \rVert`, through a kernel with bandwidth :math:`h`:

    - ``"gaussian"``: :math:`\alpha_j = \mathrm{softmax}_j(-d^2 / 2h^2)`;
    - ``"boxcar"``: equal weights on the keys with :math:`d \le h`;
    - ``"epanechnikov"``: :math:`\alpha_j \propto \max(0,\ 1 - d^2/h^2)`.

    Every kernel is a softmax over scores with a mask: the boxcar and Epanechnikov
    weights are :func:`masked_softmax` of ``0`` and ``log(1 - d²/h²)`` over the keys
    inside the window. A query with no key inside its window gets all-zero weights and
    output 0, never NaN.

    Args:
        queries (Tensor): shape :math:`(L,)` for scalar inputs, or :math:`(..., L, E)`.
        keys (Tensor): shape :math:`(S,)`, or :math:`(..., S, E)`.
        values (Tensor): shape :math:`(S,)`, or :math:`(..., S, Ev)`.
        kernel (str): one of ``"gaussian"``, ``"boxcar"``, ``"epanechnikov"``.
        bandwidth (float or Tensor): the kernel width :math:`h > 0`; small values follow
            the data closely, large values average over many keys. A tensor that requires
            grad lets the bandwidth be learned by gradient descent.

    Returns:
        (Tensor, Tensor): ``output`` of shape :math:`(L,)` or :math:`(..., L, Ev)`, and
        ``weights`` of shape :math:`(L, S)` or :math:`(..., L, S)`, whose rows sum to 1.

    Raises:
        TypeError: an input is not a floating-point tensor.
        ValueError: an unknown ``kernel``, a bandwidth that is not positive, or shapes
            that do not match (the message names them).

    Shape legend:

    - ``L``: queries
    - ``S``: keys
    - ``E``: query/key size
    - ``Ev``: value size
    """
    queries, keys, values, scalar = _check_pooling(
        queries, keys, values, kernel, bandwidth
    )
    # (..., L, S): d² / h²
    sq_dist = squared_distances(queries, keys) / bandwidth**2
    if kernel == "gaussian":
        weights = masked_softmax(-sq_dist / 2)
    elif kernel == "boxcar":
        weights = masked_softmax(torch.zeros_like(sq_dist), sq_dist <= 1)
    else:  # epanechnikov: weights ∝ 1 - d²/h² inside the window
        inside = sq_dist < 1
        scores = torch.log1p(-sq_dist.masked_fill(~inside, 0.0))
        weights = masked_softmax(scores, inside)
    # (..., L, Ev): the weighted average of the values
    output = weights @ values
    if scalar:
        output = output.squeeze(-1)
    return output, weights


def _check_pooling(queries, keys, values, kernel, bandwidth):
    """Refuse bad arguments of :func:`attention_pooling` with a message naming them;
    return the inputs as 2-D ``(..., n, E)`` tensors and whether they were 1-D."""
    for name, x in (
        ("queries", queries),
        ("keys", keys),
        ("values", values),
    ):
        check_floating(check_tensor(x, name, min_ndim=1), name)
    if kernel not in POOLING_KERNELS:
        raise ValueError(
            f"kernel must be one of {POOLING_KERNELS}, got {kernel!r}"
        )
    h = (
        bandwidth.detach()
        if isinstance(bandwidth, torch.Tensor)
        else torch.tensor(bandwidth)
    )
    if not bool((h > 0).all()):
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")

    scalar = queries.dim() == 1
    if scalar:
        if keys.dim() != 1 or values.dim() != 1:
            raise ValueError(
                "with 1-D queries, keys and values must be 1-D too: got keys "
                f"{fmt_shape(keys.shape)} and values {fmt_shape(values.shape)}"
            )
        if keys.shape != values.shape:
            raise ValueError(
                f"keys {fmt_shape(keys.shape)} and values {fmt_shape(values.shape)} "
                "must have the same length (one value per key)"
            )
        queries, keys, values = (
            queries[:, None],
            keys[:, None],
            values[:, None],
        )
    else:
        check_qkv(
            queries, keys, values, names=("queries", "keys", "values")
        )

    return queries, keys, values, scalar
