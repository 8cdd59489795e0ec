"""Sinusoidal positional encodings (chapter 4).

Self-attention treats its input as a set: permute the positions and the outputs are
permuted the same way. Adding a different vector to each position is how a model learns
where a token is.
"""

from __future__ import annotations

import torch

__all__ = ["sinusoidal_positional_encoding"]


def sinusoidal_positional_encoding(
    n_positions: int,
    dim: int,
    *,
    base: float = 10000.0,
    device=None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""The fixed positional encodings of "Attention is all you need".

    .. math::

        PE_{p,\,2i} = \sin\!\left(p / \mathrm{base}^{2i/\mathrm{dim}}\right), \qquad
        PE_{p,\,2i+1} = \cos\!\left(p / \mathrm{base}^{2i/\mathrm{dim}}\right)

    Column pair ``(2i, 2i+1)`` turns at the angular frequency
    :math:`\omega_i = \mathrm{base}^{-2i/\mathrm{dim}}`, from one radian per position
    (``i = 0``) down to about :math:`1/\mathrm{base}`. For every offset ``k``, ``PE[p + k]``
    is a fixed rotation of ``PE[p]``, and the dot product ``PE[p] · PE[q]`` depends on
    ``p - q`` only. With an odd ``dim``, the last column is a sine.

    Args:
        n_positions (int): the number of positions ``N`` (0 to ``N - 1``).
        dim (int): the size of each encoding ``E``.
        base (float): the wavelength scale. Default: 10000.
        device (torch.device, optional): where to put the result.
        dtype (torch.dtype): a floating-point dtype. Default: ``torch.float32``.

    Returns:
        Tensor: shape :math:`(N, E)`; add it to the token embeddings of shape
        :math:`(..., N, E)`.
    """
    if n_positions < 0 or dim < 1:
        raise ValueError(
            "n_positions must be >= 0 and dim >= 1, got "
            f"n_positions={n_positions}, dim={dim}"
        )
    if not dtype.is_floating_point:
        raise TypeError(
            f"dtype must be a floating-point dtype, got {dtype}"
        )
    # compute in float64 so that large positions keep their precision,
    # then convert
    positions = torch.arange(
        n_positions, dtype=torch.float64, device=device
    )[:, None]  # (N, 1)
    # 2i = 0, 2, 4, ...
    even = torch.arange(0, dim, 2, dtype=torch.float64, device=device)
    # ω_i = base^(-2i/dim), shape (ceil(E/2),)
    frequencies = base ** (-even / dim)
    angles = positions * frequencies  # (N, ceil(E/2)): p · ω_i
    encoding = torch.empty(
        n_positions, dim, dtype=torch.float64, device=device
    )
    encoding[:, 0::2] = torch.sin(angles)  # even columns: sin(p ω_i)
    # odd columns: cos(p ω_i)
    encoding[:, 1::2] = torch.cos(angles[:, : dim // 2])
    return encoding.to(dtype)
