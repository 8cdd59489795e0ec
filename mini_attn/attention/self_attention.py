"""Single-head self-attention with learned projections (chapters 4 and 5)."""

from __future__ import annotations

import torch
from torch import nn

from .._validation import (
    check_floating,
    check_positive_int,
    check_tensor,
    fmt_shape,
)
from ..core.sdpa import scaled_dot_product_attention

__all__ = ["SelfAttention"]


def _check_input(x: torch.Tensor, embed_dim: int) -> None:
    """``x`` must be a floating tensor ``(..., N, E)`` with ``E = embed_dim``."""
    check_floating(check_tensor(x, "x", min_ndim=2), "x")
    if x.shape[-1] != embed_dim:
        raise ValueError(
            f"x of shape {fmt_shape(x.shape)} must have embed_dim={embed_dim} "
            "features in its last dimension"
        )


class SelfAttention(nn.Module):
    r"""One attention head whose queries, keys and values all come from the same sequence.

    .. math::

        Q = X W_q, \quad K = X W_k, \quad V = X W_v, \qquad
        \mathrm{output} = \mathrm{softmax}\!\left(Q K^\top / \sqrt{D}\right) V

    The projections are :class:`torch.nn.Linear` attributes ``q_proj``, ``k_proj`` and
    ``v_proj`` (so :math:`W_q` is ``q_proj.weight.T``). There is no output projection: the
    output has ``head_dim`` features.

    Args:
        embed_dim (int): the size ``E`` of each input vector.
        head_dim (int, optional): the size ``D`` of the queries, keys and values.
            Default: ``embed_dim``.
        bias (bool): add a learned bias to each projection. Default: False.

    Shape legend:

    - ``...``: any batch dimensions
    - ``N``: positions
    - ``E``: input size
    - ``D``: head size
    """

    def __init__(
        self,
        embed_dim: int,
        head_dim: int | None = None,
        *,
        bias: bool = False,
    ):
        super().__init__()
        check_positive_int(embed_dim, "embed_dim")
        head_dim = (
            embed_dim
            if head_dim is None
            else check_positive_int(head_dim, "head_dim")
        )
        self.embed_dim, self.head_dim = embed_dim, head_dim
        self.q_proj = nn.Linear(embed_dim, head_dim, bias=bias)  # W_q
        self.k_proj = nn.Linear(embed_dim, head_dim, bias=bias)  # W_k
        self.v_proj = nn.Linear(embed_dim, head_dim, bias=bias)  # W_v

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend from every position of ``x`` to every position of ``x``.

        Args:
            x (Tensor): the sequence, shape :math:`(..., N, E)`.
            mask (Tensor, optional): boolean, broadcastable to :math:`(..., N, N)`, ``True``
                where position ``i`` may attend to position ``j``.
            causal (bool): let position ``i`` attend to positions ``j ≤ i`` only (a
                decoder); combined with ``mask`` by AND. Default: False.

        Returns:
            (Tensor, Tensor): ``output`` of shape :math:`(..., N, D)` and ``weights`` of
            shape :math:`(..., N, N)`, row ``i`` holding position ``i``'s weights.
        """
        _check_input(x, self.embed_dim)
        query = self.q_proj(x)  # (..., N, D): Q = X W_q
        key = self.k_proj(x)  # (..., N, D): K = X W_k
        value = self.v_proj(x)  # (..., N, D): V = X W_v
        return scaled_dot_product_attention(
            query, key, value, mask=mask, causal=causal
        )

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, head_dim={self.head_dim}"
