"""Boolean attention masks (primitives layer): ``True`` where a query may attend to a key."""

from __future__ import annotations

import torch

__all__ = ["causal_mask", "padding_mask"]


def causal_mask(n_queries: int, n_keys: int | None = None, *, device=None) -> torch.Tensor:
    """The causal (look-ahead) mask: query ``i`` may attend to keys ``j ≤ i``.

    Top-left aligned, as ``is_causal=True`` in
    :func:`torch.nn.functional.scaled_dot_product_attention`: with ``L ≠ S`` the diagonal
    starts at ``(0, 0)``.

    Args:
        n_queries (int): the number of queries ``L``.
        n_keys (int, optional): the number of keys ``S``. Default: ``n_queries``.
        device (torch.device, optional): where to put the mask.

    Returns:
        Tensor: boolean, shape :math:`(L, S)`, ``True`` on and below the diagonal.
    """
    n_keys = n_queries if n_keys is None else n_keys
    if n_queries < 0 or n_keys < 0:
        raise ValueError(f"sizes must be non-negative, got n_queries={n_queries}, n_keys={n_keys}")
    return torch.ones(n_queries, n_keys, dtype=torch.bool, device=device).tril()


def padding_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """Key-padding mask from sequence lengths: ``True`` for real positions, ``False`` for padding.

    Args:
        lengths (Tensor): integer, shape :math:`(B,)`, the length of each sequence.
        max_length (int, optional): the padded length ``S``. Default: ``lengths.max()``.

    Returns:
        Tensor: boolean, shape :math:`(B, 1, S)`, which broadcasts against scores of shape
        :math:`(B, L, S)`.
    """
    if lengths.dim() != 1 or lengths.is_floating_point():
        raise ValueError(
            f"lengths must be a 1-D integer tensor, got {lengths.dtype} {tuple(lengths.shape)}"
        )
    max_length = int(lengths.max()) if max_length is None else max_length
    positions = torch.arange(max_length, device=lengths.device)
    return (positions[None, :] < lengths[:, None])[:, None, :]  # (B, 1, S)
