"""Rotary position embeddings (RoPE, chapter 7), in the rotate-half layout of Llama.

Feature ``i < D/2`` and feature ``i + D/2`` form a pair, a point in the plane, that is
rotated by the angle ``p · base^(−2i/D)`` at position ``p``. A rotation by ``a`` of the
query and by ``b`` of the key leaves their dot product depending on ``a − b`` only: the
scores see relative positions.
"""

from __future__ import annotations

import torch

from .._validation import check_floating, check_tensor, fmt_shape

__all__ = ["apply_rotary", "rotary_angles", "rotate_half"]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``(x₁, x₂) ↦ (−x₂, x₁)`` on the two halves of the last dimension: a quarter turn."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def rotary_angles(
    positions: torch.Tensor,
    dim: int,
    *,
    base: float = 10000.0,
    dtype=torch.float32,
) -> torch.Tensor:
    r"""The rotation angle of every position and feature, both halves of a pair alike.

    Args:
        positions (Tensor): integer, shape :math:`(N,)`.
        dim (int): the feature size ``D`` (even).
        base (float): the base of the frequencies. Default: 10000.
        dtype (torch.dtype): float32 (as Llama's ``LlamaRotaryEmbedding``) or float64.

    Returns:
        Tensor: shape :math:`(N, D)`; entry ``(n, i)`` is
        ``positions[n] · base^(−2 (i mod D/2) / D)``.
    """
    frequencies = 1.0 / base ** (
        torch.arange(0, dim, 2, device=positions.device, dtype=dtype)
        / dim
    )
    angles = positions[:, None].to(dtype) * frequencies  # (N, D/2)
    # (N, D): the same angle for i and i + D/2
    return torch.cat((angles, angles), dim=-1)


def apply_rotary(
    x: torch.Tensor, positions: torch.Tensor, *, base: float = 10000.0
) -> torch.Tensor:
    r"""Rotate every feature pair ``(i, i + D/2)`` of ``x`` by its position's angle.

    .. math::
        \mathrm{RoPE}(x)_p = x_p \cos\theta_p + \mathrm{rotate\_half}(x_p) \sin\theta_p,
        \qquad \theta_{p, i} = p \cdot \mathrm{base}^{-2i/D}

    This is ``apply_rotary_pos_emb`` of Llama in ``transformers``, with the angles of its
    ``LlamaRotaryEmbedding`` (computed in float32, as there; in float64 for a float64 ``x``).

    Args:
        x (Tensor): floating point, shape :math:`(..., N, D)`, ``D`` even.
        positions (Tensor): integer, shape :math:`(N,)`: the position of each of the ``N``
            rows (for example ``torch.arange(N)``, or ``len(cache) + torch.arange(N)``).
        base (float): the base of the frequencies. Default: 10000 (Llama 3 uses 500000).

    Returns:
        Tensor: the shape and dtype of ``x``.

    Raises:
        TypeError: ``x`` is not floating point, or ``positions`` is not an integer tensor.
        ValueError: ``D`` is odd, or ``positions`` is not of shape :math:`(N,)`.

    Shape legend:

    - ``N``: positions
    - ``D``: features (the head size)
    - ``...``: batch and heads
    """
    _check_rotary(x, positions)
    precision = (
        torch.float64 if x.dtype == torch.float64 else torch.float32
    )
    # (N, D)
    angles = rotary_angles(
        positions, x.shape[-1], base=base, dtype=precision
    )
    # (N, D)
    cos, sin = (angles.cos().to(x.dtype), angles.sin().to(x.dtype))
    return x * cos + rotate_half(x) * sin  # (..., N, D)


def _check_rotary(x, positions) -> None:
    check_floating(check_tensor(x, "x", min_ndim=2), "x")
    check_tensor(positions, "positions", ndim=1)
    if (
        positions.is_floating_point()
        or positions.is_complex()
        or positions.dtype == torch.bool
    ):
        raise TypeError(
            f"positions must be an integer tensor, got dtype {positions.dtype}"
        )
    if x.shape[-1] % 2:
        raise ValueError(
            f"x of shape {fmt_shape(x.shape)} must have an even last dimension D "
            "(the features are rotated in pairs)"
        )
    if positions.shape[0] != x.shape[-2]:
        raise ValueError(
            f"positions of shape {fmt_shape(positions.shape)} must give one position for each "
            f"of the N={x.shape[-2]} rows of x {fmt_shape(x.shape)}"
        )
