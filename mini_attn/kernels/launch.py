"""Launching the Triton kernels: grids, block sizes, pipeline depth (chapter 9).

Importing this module imports Triton and the kernels of :mod:`mini_attn.kernels.forward`
and :mod:`mini_attn.kernels.backward`. Triton decides *when a kernel is defined* whether to
compile it for the GPU or to run it in its interpreter (NumPy, on the CPU): set the
environment variable ``TRITON_INTERPRET=1`` before this module is first imported to run
the kernels on CPU tensors. :func:`mini_attn.triton_attention` imports it on its first
call, so ``import mini_attn`` never needs Triton.

Every tensor handed to a launcher is 3-D, ``(N, L, D)`` with ``N`` the flattened batch
(and head) dimensions; :func:`mini_attn.triton_attention` checks and reshapes.
"""

from __future__ import annotations

import functools
import math

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from .backward import (
    attention_backward_dkdv_kernel,
    attention_backward_dq_kernel,
)
from .forward import attention_forward_kernel

__all__ = [
    "INTERPRETED",
    "attention_backward",
    "attention_forward",
    "dot_dtype",
    "forward_num_stages",
    "forward_shared_bytes",
    "launch_single_block",
]

LOG2_E = 1.4426950408889634  # log2(e): exp(x) = exp2(x · log2 e), and exp2 is cheaper on a GPU

# Is this module running its kernels in Triton's interpreter (TRITON_INTERPRET=1 when it
# was imported)? Then they take CPU tensors; compiled, they take CUDA tensors.
INTERPRETED = isinstance(attention_forward_kernel, InterpretedFunction)

_TL_DTYPES = {
    torch.float16: tl.float16,
    torch.bfloat16: tl.bfloat16,
    torch.float32: tl.float32,
}


def dot_dtype(dtype: torch.dtype):
    """The type of ``tl.dot``'s operands for inputs of ``dtype``.

    The input's own type (the GPU's tensor cores multiply float16 and bfloat16 and add in
    float32), except that Triton's interpreter cannot multiply bfloat16 matrices
    (triton-lang/triton#11584): there, bfloat16 blocks are widened to float32 first, which
    is exact.

    Args:
        dtype (torch.dtype): float16, bfloat16 or float32.

    Returns:
        triton.language.dtype: the operands' type.
    """
    if INTERPRETED and dtype == torch.bfloat16:
        return tl.float32
    return _TL_DTYPES[dtype]


def forward_shared_bytes(
    block_m: int,
    block_n: int,
    head_dim: int,
    itemsize: int,
    num_stages: int,
) -> int:
    """Shared memory one program of :func:`attention_forward_kernel` needs on an NVIDIA GPU.

    The query block, and ``num_stages`` blocks of keys and of values in flight (the block
    being multiplied and those loaded ahead): ``(block_m + 2 · num_stages · block_n) · D``
    elements. ``tests/test_triton_compile.py`` compares it with the compiler's count.

    Args:
        block_m (int): queries per program.
        block_n (int): keys per block.
        head_dim (int): ``D``.
        itemsize (int): bytes per element (2 or 4).
        num_stages (int): blocks of keys and values in flight.

    Returns:
        int: bytes.
    """
    return (block_m + 2 * num_stages * block_n) * head_dim * itemsize


@functools.cache
def _max_shared_bytes(driver, device) -> int:
    """The most shared memory one program may use on the GPU Triton launches on."""
    return driver.utils.get_device_properties(device)["max_shared_mem"]


def forward_num_stages(
    block_m: int, block_n: int, head_dim: int, itemsize: int
) -> int:
    """The deepest pipeline, 3, 2 or 1 stages, whose shared memory fits the current GPU.

    Args:
        block_m (int): queries per program.
        block_n (int): keys per block.
        head_dim (int): ``D``.
        itemsize (int): bytes per element.

    Returns:
        int: the number of stages (3 in the interpreter, which has no shared memory).

    Raises:
        ValueError: if even one stage does not fit; the message gives both sizes.
    """
    if INTERPRETED:  # the interpreter has no shared memory to run out of
        return 3
    driver = triton.runtime.driver.active
    limit = _max_shared_bytes(driver, driver.get_current_device())
    for stages in (3, 2, 1):
        if (
            forward_shared_bytes(
                block_m, block_n, head_dim, itemsize, stages
            )
            <= limit
        ):
            return stages
    need = forward_shared_bytes(block_m, block_n, head_dim, itemsize, 1)
    raise ValueError(
        f"block_m={block_m} and block_n={block_n} with D={head_dim} and "
        f"{itemsize}-byte elements need {need / 1024:.0f} KiB of shared "
        "memory per program, even loading no block ahead; this GPU "
        f"allows {limit / 1024:.0f} KiB: choose smaller blocks"
    )


def attention_forward(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    causal: bool,
    scale: float,
    block_m: int,
    block_n: int,
    num_stages: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch :func:`attention_forward_kernel` on checked 3-D inputs.

    Args:
        query (Tensor): shape :math:`(N, L, D)`, any strides.
        key (Tensor): shape :math:`(N, S, D)`, same dtype and device.
        value (Tensor): shape :math:`(N, S, D)`.
        causal (bool): top-left causal mask.
        scale (float): the factor applied to the scores.
        block_m (int): queries per program, a power of two ≥ 16.
        block_n (int): keys per step of the kernel's loop, a power of two ≥ 16.
        num_stages (int, optional): how many blocks of keys and values are in flight.
            Default: the deepest pipeline whose shared memory fits the GPU, at most 3
            (:func:`forward_num_stages`).

    Returns:
        tuple of Tensor: the output :math:`(N, L, D)`, the dtype of ``query``, and the
        base-2 log-sum-exp of each query's scores :math:`(N, L)`, float32, which the
        backward pass needs.

    Raises:
        ValueError: if no pipeline depth fits the GPU's shared memory.

    Shape legend:

    - ``N``: sequences (batch and heads)
    - ``L``: queries
    - ``S``: keys
    - ``D``: head size
    """
    n_batch, n_queries, head_dim = query.shape
    n_keys = key.shape[1]
    if num_stages is None:
        num_stages = forward_num_stages(
            block_m, block_n, head_dim, query.element_size()
        )
    out = torch.empty_like(query)  # (N, L, D)
    # (N, L)
    lse = torch.empty(
        n_batch, n_queries, device=query.device, dtype=torch.float32
    )
    # one program per (query block, entry)
    grid = (triton.cdiv(n_queries, block_m), n_batch)
    attention_forward_kernel[grid](
        query, key, value, out, lse,
        *query.stride(), *key.stride(), *value.stride(), *out.stride(),
        n_queries, n_keys, scale * LOG2_E,
        CAUSAL=causal, HEAD_DIM=head_dim,
        BLOCK_M=block_m, BLOCK_N=block_n,
        DOT_DTYPE=dot_dtype(query.dtype),
        num_warps=4 if head_dim <= 64 else 8, num_stages=num_stages,
    )  # fmt: skip
    return out, lse


def attention_backward(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    grad_out: torch.Tensor,
    *,
    causal: bool,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the two backward kernels: the gradients with respect to Q, K and V.

    The kernels take contiguous tensors (copied here if needed) and blocks of 64 queries
    by 64 keys (32 by 32 for D = 128); these settings are not tuned for speed.

    Args:
        query (Tensor): shape :math:`(N, L, D)`.
        key (Tensor): shape :math:`(N, S, D)`.
        value (Tensor): shape :math:`(N, S, D)`.
        out (Tensor): the forward output, shape :math:`(N, L, D)`.
        lse (Tensor): the forward kernel's base-2 log-sum-exp, float32 :math:`(N, L)`.
        grad_out (Tensor): :math:`dO`, shape :math:`(N, L, D)`.
        causal (bool): top-left causal mask, as in the forward pass.
        scale (float): the factor applied to the scores, as in the forward pass.

    Returns:
        tuple of Tensor: ``dQ`` :math:`(N, L, D)`, ``dK`` :math:`(N, S, D)`, ``dV``
        :math:`(N, S, D)`.

    Shape legend:

    - ``N``: sequences (batch and heads)
    - ``L``: queries
    - ``S``: keys
    - ``D``: head size
    """
    query, key, value, grad_out = (
        x.contiguous() for x in (query, key, value, grad_out)
    )
    n_batch, n_queries, head_dim = query.shape
    n_keys = key.shape[1]
    # δ_i = Σ_d dO_id O_id, which equals Σ_j P_ij dP_ij: one number per query
    delta = (out.float() * grad_out.float()).sum(dim=-1)  # (N, L)
    grad_query, grad_key, grad_value = (
        torch.empty_like(x) for x in (query, key, value)
    )
    block = 64 if head_dim <= 64 else 32
    inputs = (query, key, value, grad_out, lse, delta)
    sizes = (n_queries, n_keys, scale * LOG2_E, scale)
    settings = dict(
        CAUSAL=causal, HEAD_DIM=head_dim, BLOCK_M=block, BLOCK_N=block,
        DOT_DTYPE=dot_dtype(query.dtype), num_warps=4, num_stages=2,
    )  # fmt: skip
    # one program per (key block, entry)
    grid = (triton.cdiv(n_keys, block), n_batch)
    attention_backward_dkdv_kernel[grid](
        *inputs, grad_key, grad_value, *sizes, **settings
    )
    # one program per (query block, entry)
    grid = (triton.cdiv(n_queries, block), n_batch)
    attention_backward_dq_kernel[grid](
        *inputs, grad_query, *sizes, **settings
    )
    return grad_query, grad_key, grad_value


def launch_single_block(
    kernel, query, key, value, *, scale=None
) -> torch.Tensor:
    r"""Run a single-block kernel with the signature of :func:`single_block_attention_kernel`.

    The kernel is an argument, so that the chapter's exercises launch their own kernels the
    same way; ``L`` and ``S`` are padded up to powers of two (at least 16, the smallest
    ``tl.dot``) for the kernel's blocks.

    Args:
        kernel (triton.JITFunction): the kernel, launched with the grid ``(N,)``.
        query (Tensor): shape :math:`(N, L, D)` (made contiguous).
        key (Tensor): shape :math:`(N, S, D)`.
        value (Tensor): shape :math:`(N, S, D)`.
        scale (float, optional): Default: :math:`1/\sqrt{D}`.

    Returns:
        Tensor: the output, shape :math:`(N, L, D)`.

    Shape legend:

    - ``N``: sequences
    - ``L``: queries
    - ``S``: keys
    - ``D``: head size
    """
    query, key, value = (x.contiguous() for x in (query, key, value))
    n_batch, n_queries, head_dim = query.shape
    n_keys = key.shape[1]
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    out = torch.empty_like(query)  # (N, L, D)
    kernel[(n_batch,)](
        query, key, value, out, n_queries, n_keys, scale,
        BLOCK_L=max(16, triton.next_power_of_2(n_queries)),
        BLOCK_S=max(16, triton.next_power_of_2(n_keys)), HEAD_DIM=head_dim,
    )  # fmt: skip
    return out
