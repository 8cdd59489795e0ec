"""Boolean attention masks: ``True`` where a query may attend to a key."""

from __future__ import annotations

import torch

from .._validation import fmt_shape

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
        :math:`(B, L, S)`. (The opposite of ``torch.nn.MultiheadAttention``'s
        ``key_padding_mask``, which is ``True`` for the keys to ignore.)

    Raises:
        TypeError: ``lengths`` is not an integer tensor.
        ValueError: ``lengths`` is not 1-D, has a negative entry, or is longer than
            ``max_length``.
    """
    if not isinstance(lengths, torch.Tensor):
        raise TypeError(f"lengths must be a torch.Tensor, got {type(lengths).__name__}")
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must be an integer tensor, got dtype {lengths.dtype}")
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D, shape (B,), got shape {fmt_shape(lengths.shape)}")
    if len(lengths) and int(lengths.min()) < 0:
        raise ValueError(f"lengths must be non-negative, got {lengths.tolist()}")
    longest = int(lengths.max()) if len(lengths) else 0
    max_length = longest if max_length is None else max_length
    if max_length < longest:
        raise ValueError(
            f"max_length={max_length} is shorter than the longest sequence (length {longest})"
        )
    positions = torch.arange(max_length, device=lengths.device)  # (S,)
    return (positions[None, :] < lengths[:, None])[:, None, :]  # (B, 1, S)
