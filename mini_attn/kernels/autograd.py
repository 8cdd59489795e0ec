"""Fused attention in Triton: the checked, batched wrapper (chapter 9).

The kernels live in :mod:`mini_attn.kernels.launch`, which imports Triton; this module
imports it only on the first call of :func:`triton_attention`, so that ``import mini_attn``
works without Triton and so that ``TRITON_INTERPRET`` can still be set before the kernels
are defined.
"""

from __future__ import annotations

import math
from types import ModuleType

import torch

from .._validation import (
    broadcast_batch,
    check_floating,
    check_tensor,
    fmt_shape,
)

__all__ = [
    "TRITON_DTYPES",
    "TRITON_HEAD_DIMS",
    "TritonAttentionFunction",
    "triton_attention",
]

# head sizes: powers of two from tl.dot's smallest size, 16; the GPU targets are 64 and 128
TRITON_HEAD_DIMS = (16, 32, 64, 128)
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _kernels() -> ModuleType:
    """Import :mod:`mini_attn.kernels.launch` (and Triton) on first use."""
    try:
        from . import launch
    except ModuleNotFoundError as error:
        if error.name != "triton":
            raise
        raise ModuleNotFoundError(
            "triton_attention needs Triton, which is not installed: "
            "`pip install -r requirements.txt` installs the tested version",
            name="triton",
        ) from None
    return launch


def _check_inputs(query, key, value, block_m, block_n) -> None:
    for name, x in (("query", query), ("key", key), ("value", value)):
        check_floating(check_tensor(x, name, min_ndim=2), name)
        if x.dtype not in TRITON_DTYPES:
            raise TypeError(
                f"{name} must be float16, bfloat16 or float32, got {x.dtype}"
            )
    if not query.dtype == key.dtype == value.dtype:
        raise TypeError(
            f"query, key and value must have one dtype, got {query.dtype}, {key.dtype}, "
            f"{value.dtype}"
        )
    if not query.device == key.device == value.device:
        raise ValueError(
            f"query, key and value must be on one device, got {query.device}, {key.device}, "
            f"{value.device}"
        )
    head_dim = query.shape[-1]
    if key.shape[-1] != head_dim or value.shape[-1] != head_dim:
        raise ValueError(
            f"query {fmt_shape(query.shape)}, key {fmt_shape(key.shape)} and value "
            f"{fmt_shape(value.shape)} must share the last dimension D (this kernel uses one "
            "head size for queries, keys and values)"
        )
    if head_dim not in TRITON_HEAD_DIMS:
        raise ValueError(
            f"the head size D (last dimension of query {fmt_shape(query.shape)}) must be one "
            f"of {TRITON_HEAD_DIMS}, got {head_dim}"
        )
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(
            f"key {fmt_shape(key.shape)} and value {fmt_shape(value.shape)} must have the same "
            "number of rows S (one value per key)"
        )
    if query.shape[-2] == 0 or key.shape[-2] == 0:
        raise ValueError(
            f"need at least one query and one key, got query {fmt_shape(query.shape)} and "
            f"key {fmt_shape(key.shape)}"
        )
    for name, block in (("block_m", block_m), ("block_n", block_n)):
        if (
            not isinstance(block, int)
            or block < 16
            or block & (block - 1)
        ):
            raise ValueError(
                f"{name} must be a power of two ≥ 16 (tl.dot's smallest), got {block}"
            )


def _check_device(device: torch.device, interpreted: bool) -> None:
    if device.type == "cpu" and not interpreted:
        raise RuntimeError(
            "the inputs are on the CPU, but the Triton kernels were compiled for the GPU. "
            "Set the environment variable TRITON_INTERPRET=1 before the first call of "
            "triton_attention (the kernels are defined then) to run them in Triton's "
            "interpreter on the CPU, or move the inputs to a CUDA device."
        )
    if device.type not in ("cpu", "cuda"):
        raise ValueError(
            f"the inputs must be on a CUDA device or the CPU, got {device}"
        )


def triton_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    causal: bool = False,
    scale: float | None = None,
    block_m: int = 128,
    block_n: int = 64,
) -> torch.Tensor:
    r"""Fused attention :math:`\mathrm{softmax}(Q K^\top \cdot \mathrm{scale})\, V` in Triton.

    The FlashAttention forward pass: one program per block of ``block_m`` queries loops
    over blocks of ``block_n`` keys with an online softmax, so the :math:`L \times S`
    score matrix never leaves the chip. Equals
    :func:`torch.nn.functional.scaled_dot_product_attention` (without mask or dropout) up
    to the rounding of the input's precision. Runs on CUDA tensors, or on CPU tensors in
    Triton's interpreter when ``TRITON_INTERPRET=1`` was set before the first call.
    Differentiable: two more kernels compute the gradients, recomputing the weights from
    the log-sum-exp of each query's scores that the forward kernel saves (a second
    derivative is not available).

    Args:
        query (Tensor): shape :math:`(..., L, D)`; float16, bfloat16 or float32 (on a GPU
            ``tl.dot`` multiplies float32 in TF32).
        key (Tensor): shape :math:`(..., S, D)`, same dtype and device.
        value (Tensor): shape :math:`(..., S, D)`.
        causal (bool): let query ``i`` attend to keys ``j ≤ i`` only (top-left aligned, as
            PyTorch's ``is_causal``). Default: False.
        scale (float, optional): the factor applied to the scores. Default: :math:`1/\sqrt{D}`.
        block_m (int): queries per program of the forward kernel, a power of two ≥ 16.
            Default: 128.
        block_n (int): keys per step of the forward kernel's loop, a power of two ≥ 16.
            Default: 64.

    Returns:
        Tensor: the output, shape :math:`(..., L, D)`, the dtype of ``query``.

    Raises:
        ModuleNotFoundError: if Triton is not installed.
        RuntimeError: for CPU inputs when the kernels were compiled for the GPU.

    Shape legend:

    - ``L``: queries
    - ``S``: keys
    - ``D``: head size (one of 16, 32, 64, 128)
    - ``...``: any batch dimensions (they broadcast)
    """
    _check_inputs(query, key, value, block_m, block_n)
    batch = broadcast_batch(query=query, key=key, value=value)
    kernels = _kernels()
    _check_device(query.device, kernels.INTERPRETED)
    (n_queries, head_dim), n_keys = query.shape[-2:], key.shape[-2]
    # (N, L, D)
    q = query.expand(*batch, n_queries, head_dim).reshape(
        -1, n_queries, head_dim
    )
    # (N, S, D)
    k = key.expand(*batch, n_keys, head_dim).reshape(-1, n_keys, head_dim)
    # (N, S, D)
    v = value.expand(*batch, n_keys, head_dim).reshape(
        -1, n_keys, head_dim
    )
    scale = 1.0 / math.sqrt(head_dim) if scale is None else float(scale)
    # (N, L, D)
    out = TritonAttentionFunction.apply(
        q, k, v, bool(causal), scale, block_m, block_n
    )
    return out.reshape(*batch, n_queries, head_dim)  # (..., L, D)


class TritonAttentionFunction(torch.autograd.Function):
    """The forward kernel, and the backward kernels for autograd, on 3-D tensors.

    :func:`~mini_attn.triton_attention` checks, broadcasts and flattens the inputs, then calls
    ``TritonAttentionFunction.apply(query, key, value, causal, scale, block_m, block_n)``.

    Args:
        query (Tensor): shape :math:`(N, L, D)`.
        key (Tensor): shape :math:`(N, S, D)`.
        value (Tensor): shape :math:`(N, S, D)`.
        causal (bool): top-left causal mask.
        scale (float): the factor applied to the scores.
        block_m (int): queries per program of the forward kernel.
        block_n (int): keys per step of its loop.

    Returns:
        Tensor: the output, shape :math:`(N, L, D)`; its backward pass returns
        ``dQ``, ``dK``, ``dV`` (and None for the other arguments).

    Shape legend:

    - ``N``: the flattened batch (and head) dimensions
    - ``L``: queries
    - ``S``: keys
    - ``D``: the head size
    """

    @staticmethod
    def forward(ctx, query, key, value, causal, scale, block_m, block_n):
        # (N, L, D), (N, L)
        out, lse = _kernels().attention_forward(
            query,
            key,
            value,
            causal=causal,
            scale=scale,
            block_m=block_m,
            block_n=block_n,
        )
        ctx.save_for_backward(query, key, value, out, lse)
        ctx.causal, ctx.scale = causal, scale
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        # dQ, dK, dV
        grads = _kernels().attention_backward(
            *ctx.saved_tensors,
            grad_out,
            causal=ctx.causal,
            scale=ctx.scale,
        )
        return (*grads, None, None, None, None)
