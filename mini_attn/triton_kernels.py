"""The FlashAttention forward pass written in Triton (mechanisms layer, chapter 8).

This module imports Triton, and Triton decides *when a kernel is defined* whether to
compile it for the GPU or to run it in its interpreter (NumPy, on the CPU): set the
environment variable ``TRITON_INTERPRET=1`` before this module is first imported to run
the kernels on CPU tensors. :func:`mini_attn.triton_attention` imports it on its first
call, so ``import mini_attn`` never needs Triton.

The kernels and their launchers:

- :func:`single_block_attention_kernel`: one program holds every key of one sequence,
  the smallest attention kernel (no tiling; short sequences only);
- :func:`attention_forward_kernel`: the FlashAttention forward pass, one program per
  block of queries, looping over blocks of keys with an online softmax; it calls
- :func:`attend_to_key_blocks`: the body of that loop, the online-softmax update;
- :func:`attention_backward_dkdv_kernel` and :func:`attention_backward_dq_kernel`: the
  backward pass, which recomputes the weights from the saved log-sum-exp.

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

__all__ = [
    "INTERPRETED",
    "attend_to_key_blocks",
    "attention_backward",
    "attention_backward_dkdv_kernel",
    "attention_backward_dq_kernel",
    "attention_forward",
    "attention_forward_kernel",
    "forward_num_stages",
    "forward_shared_bytes",
    "launch_single_block",
    "single_block_attention_kernel",
]

LOG2_E = 1.4426950408889634  # log2(e): exp(x) = exp2(x · log2 e), and exp2 is cheaper on a GPU


@triton.jit
def single_block_attention_kernel(
    Q, K, V, Out,  # pointers to contiguous (N, L, D), (N, S, D), (N, S, D), (N, L, D) tensors
    n_queries, n_keys, scale,
    BLOCK_L: tl.constexpr, BLOCK_S: tl.constexpr, HEAD_DIM: tl.constexpr,
):  # fmt: skip
    """softmax(Q Kᵀ · scale) V for one sequence in one block: program ``n`` does entry ``n``."""
    n = tl.program_id(0)
    rows = tl.arange(0, BLOCK_L)  # query indices i
    cols = tl.arange(0, BLOCK_S)  # key indices j
    dims = tl.arange(0, HEAD_DIM)
    q_offsets = n * n_queries * HEAD_DIM + rows[:, None] * HEAD_DIM + dims[None, :]
    kv_offsets = n * n_keys * HEAD_DIM + cols[:, None] * HEAD_DIM + dims[None, :]
    q = tl.load(Q + q_offsets, mask=rows[:, None] < n_queries, other=0.0)  # (BLOCK_L, D)
    k = tl.load(K + kv_offsets, mask=cols[:, None] < n_keys, other=0.0)  # (BLOCK_S, D)
    v = tl.load(V + kv_offsets, mask=cols[:, None] < n_keys, other=0.0)  # (BLOCK_S, D)
    scores = tl.dot(q, tl.trans(k)) * scale  # (BLOCK_L, BLOCK_S): Q Kᵀ · scale
    scores = tl.where(cols[None, :] < n_keys, scores, float("-inf"))  # padding keys get weight 0
    weights = tl.exp(scores - tl.max(scores, axis=1)[:, None])  # stable softmax, unnormalised
    weights = weights / tl.sum(weights, axis=1)[:, None]  # each row sums to 1
    out = tl.dot(weights.to(v.dtype), v)  # (BLOCK_L, D)
    tl.store(Out + q_offsets, out.to(Out.dtype.element_ty), mask=rows[:, None] < n_queries)


@triton.jit
def attend_to_key_blocks(
    acc, row_max, row_sum,  # the running state of the online softmax (float32)
    q, k_ptrs, v_ptrs, stride_kn, stride_vn,  # the query block and where the keys start
    offs_m, offs_n, start, stop, n_keys, qk_scale,
    MASKED: tl.constexpr, CAUSAL: tl.constexpr, BLOCK_N: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
):  # fmt: skip
    """Fold the key blocks ``start, start + BLOCK_N, ... < stop`` into the running state."""
    for start_n in range(start, stop, BLOCK_N):
        keys = start_n + offs_n  # (BLOCK_N,) the key indices j of this block
        if MASKED:
            k = tl.load(k_ptrs + start_n * stride_kn, mask=keys[None, :] < n_keys, other=0.0)
        else:
            k = tl.load(k_ptrs + start_n * stride_kn)  # (D, BLOCK_N): a block of Kᵀ
        scores = tl.dot(q, k.to(DOT_DTYPE)) * qk_scale  # (BLOCK_M, BLOCK_N): Q Kᵀ · scale · log2 e
        if MASKED:
            allowed = keys[None, :] < n_keys  # the last block may run past the last key
            if CAUSAL:
                allowed = allowed & (keys[None, :] <= offs_m[:, None])  # query i sees keys j ≤ i
            scores = tl.where(allowed, scores, float("-inf"))
        new_max = tl.maximum(row_max, tl.max(scores, axis=1))  # (BLOCK_M,) running max
        weights = tl.exp2(scores - new_max[:, None])  # exp(s - m), unnormalised
        correction = tl.exp2(row_max - new_max)  # rescales what was summed under the old max
        row_sum = row_sum * correction + tl.sum(weights, axis=1)
        if MASKED:
            v = tl.load(v_ptrs + start_n * stride_vn, mask=keys[:, None] < n_keys, other=0.0)
        else:
            v = tl.load(v_ptrs + start_n * stride_vn)  # (BLOCK_N, D)
        acc = acc * correction[:, None]
        acc = tl.dot(weights.to(DOT_DTYPE), v.to(DOT_DTYPE), acc)  # acc += P V, in float32
        row_max = new_max
    return acc, row_max, row_sum


@triton.jit
def attention_forward_kernel(
    Q, K, V, Out, LSE,  # pointers to (N, L, D), (N, S, D), (N, S, D), (N, L, D), (N, L)
    stride_qb, stride_qm, stride_qd, stride_kb, stride_kn, stride_kd,
    stride_vb, stride_vn, stride_vd, stride_ob, stride_om, stride_od,
    n_queries, n_keys, qk_scale,
    CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, DOT_DTYPE: tl.constexpr,
):  # fmt: skip
    """FlashAttention forward: program ``(m, n)`` does the ``m``-th query block of entry ``n``."""
    start_m = tl.program_id(0) * BLOCK_M
    batch = tl.program_id(1).to(tl.int64)  # 64-bit offsets: N·L·D can exceed 2³¹
    offs_m = start_m + tl.arange(0, BLOCK_M)  # (BLOCK_M,) the query indices i
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    q_ptrs = Q + batch * stride_qb + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd
    k_ptrs = K + batch * stride_kb + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd
    v_ptrs = V + batch * stride_vb + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd
    # the query block is loaded once and stays on chip for the whole loop
    q = tl.load(q_ptrs, mask=offs_m[:, None] < n_queries, other=0.0).to(DOT_DTYPE)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)  # Σ_j exp(s_ij - m_i) v_j
    row_max = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # m_i
    row_sum = tl.zeros([BLOCK_M], dtype=tl.float32)  # Σ_j exp(s_ij - m_i)
    # keys [0, full_stop): every query of the block sees every key of these blocks, no mask;
    # keys [full_stop, stop): the diagonal (causal) and the ragged last block, masked
    if CAUSAL:
        last_query = tl.minimum(start_m + BLOCK_M, n_queries)  # one past the block's last query
        stop = tl.minimum(last_query, n_keys)  # query i never sees keys j > i
        full_stop = tl.minimum(start_m + 1, n_keys) // BLOCK_N * BLOCK_N
    else:
        stop = n_keys
        full_stop = n_keys // BLOCK_N * BLOCK_N
    acc, row_max, row_sum = attend_to_key_blocks(
        acc, row_max, row_sum, q, k_ptrs, v_ptrs, stride_kn, stride_vn,
        offs_m, offs_n, 0, full_stop, n_keys, qk_scale,
        MASKED=False, CAUSAL=CAUSAL, BLOCK_N=BLOCK_N, DOT_DTYPE=DOT_DTYPE,
    )  # fmt: skip
    acc, row_max, row_sum = attend_to_key_blocks(
        acc, row_max, row_sum, q, k_ptrs, v_ptrs, stride_kn, stride_vn,
        offs_m, offs_n, full_stop, stop, n_keys, qk_scale,
        MASKED=True, CAUSAL=CAUSAL, BLOCK_N=BLOCK_N, DOT_DTYPE=DOT_DTYPE,
    )  # fmt: skip
    out = acc / row_sum[:, None]  # normalise once, at the end
    o_ptrs = Out + batch * stride_ob + offs_m[:, None] * stride_om + offs_d[None, :] * stride_od
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=offs_m[:, None] < n_queries)
    # for the backward pass: log2 Σ_j 2^(s_ij · log2 e), the log-sum-exp in base 2
    lse = row_max + tl.log2(row_sum)
    tl.store(LSE + batch * n_queries + offs_m, lse, mask=offs_m < n_queries)


@triton.jit
def attention_backward_dkdv_kernel(
    Q, K, V, dOut, LSE, Delta, dK, dV,  # contiguous (N, L|S, D) tensors; LSE, Delta (N, L)
    n_queries, n_keys, qk_scale, scale,
    CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, DOT_DTYPE: tl.constexpr,
):  # fmt: skip
    """dK, dV: program ``(n, b)`` owns keys ``n·BLOCK_N ...`` of entry ``b``, loops over queries."""
    start_n = tl.program_id(0) * BLOCK_N
    batch = tl.program_id(1).to(tl.int64)
    offs_n = start_n + tl.arange(0, BLOCK_N)  # (BLOCK_N,) the key indices j
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offsets = batch * n_keys * HEAD_DIM + offs_n[:, None] * HEAD_DIM + offs_d[None, :]
    k = tl.load(K + kv_offsets, mask=offs_n[:, None] < n_keys, other=0.0).to(DOT_DTYPE)
    v = tl.load(V + kv_offsets, mask=offs_n[:, None] < n_keys, other=0.0).to(DOT_DTYPE)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    start = start_n // BLOCK_M * BLOCK_M if CAUSAL else 0  # causal: only queries i ≥ j see j
    for start_m in range(start, n_queries, BLOCK_M):
        rows = start_m + offs_m  # (BLOCK_M,) the query indices i
        q_offsets = batch * n_queries * HEAD_DIM + rows[:, None] * HEAD_DIM + offs_d[None, :]
        q = tl.load(Q + q_offsets, mask=rows[:, None] < n_queries, other=0.0).to(DOT_DTYPE)
        do = tl.load(dOut + q_offsets, mask=rows[:, None] < n_queries, other=0.0).to(DOT_DTYPE)
        # a padding query gets lse = inf, so its weights are 2^-inf = 0
        lse = tl.load(LSE + batch * n_queries + rows, mask=rows < n_queries, other=float("inf"))
        delta = tl.load(Delta + batch * n_queries + rows, mask=rows < n_queries, other=0.0)
        # recompute the weights, transposed: Pᵀ_ji = 2^(s_ij · log2 e - lse_i)
        weights_t = tl.exp2(tl.dot(k, tl.trans(q)) * qk_scale - lse[None, :])  # (BLOCK_N, BLOCK_M)
        if CAUSAL:
            weights_t = tl.where(offs_n[:, None] <= rows[None, :], weights_t, 0.0)
        dv = tl.dot(weights_t.to(DOT_DTYPE), do, dv)  # dV += Pᵀ dO
        dweights_t = tl.dot(v, tl.trans(do))  # dPᵀ = V dOᵀ
        dscores_t = weights_t * (dweights_t - delta[None, :])  # dSᵀ = Pᵀ ∘ (dPᵀ - δ)
        dk = tl.dot(dscores_t.to(DOT_DTYPE), q, dk)  # dK += dSᵀ Q (times scale, below)
    tl.store(dK + kv_offsets, (dk * scale).to(dK.dtype.element_ty), mask=offs_n[:, None] < n_keys)
    tl.store(dV + kv_offsets, dv.to(dV.dtype.element_ty), mask=offs_n[:, None] < n_keys)


@triton.jit
def attention_backward_dq_kernel(
    Q, K, V, dOut, LSE, Delta, dQ,  # contiguous (N, L|S, D) tensors; LSE, Delta (N, L)
    n_queries, n_keys, qk_scale, scale,
    CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, DOT_DTYPE: tl.constexpr,
):  # fmt: skip
    """dQ: program ``(m, b)`` owns queries ``m·BLOCK_M ...`` of entry ``b``, loops over keys."""
    start_m = tl.program_id(0) * BLOCK_M
    batch = tl.program_id(1).to(tl.int64)
    rows = start_m + tl.arange(0, BLOCK_M)  # (BLOCK_M,) the query indices i
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    q_offsets = batch * n_queries * HEAD_DIM + rows[:, None] * HEAD_DIM + offs_d[None, :]
    q = tl.load(Q + q_offsets, mask=rows[:, None] < n_queries, other=0.0).to(DOT_DTYPE)
    do = tl.load(dOut + q_offsets, mask=rows[:, None] < n_queries, other=0.0).to(DOT_DTYPE)
    lse = tl.load(LSE + batch * n_queries + rows, mask=rows < n_queries, other=float("inf"))
    delta = tl.load(Delta + batch * n_queries + rows, mask=rows < n_queries, other=0.0)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    # causal: the block's last query sees no key after it
    stop = tl.minimum(tl.minimum(start_m + BLOCK_M, n_queries), n_keys) if CAUSAL else n_keys
    for start_n in range(0, stop, BLOCK_N):
        keys = start_n + offs_n  # (BLOCK_N,) the key indices j
        kv_offsets = batch * n_keys * HEAD_DIM + keys[:, None] * HEAD_DIM + offs_d[None, :]
        k = tl.load(K + kv_offsets, mask=keys[:, None] < n_keys, other=0.0).to(DOT_DTYPE)
        v = tl.load(V + kv_offsets, mask=keys[:, None] < n_keys, other=0.0).to(DOT_DTYPE)
        weights = tl.exp2(tl.dot(q, tl.trans(k)) * qk_scale - lse[:, None])  # P, (BLOCK_M, BLOCK_N)
        allowed = keys[None, :] < n_keys
        if CAUSAL:
            allowed = allowed & (keys[None, :] <= rows[:, None])
        weights = tl.where(allowed, weights, 0.0)
        dweights = tl.dot(do, tl.trans(v))  # dP = dO Vᵀ
        dscores = weights * (dweights - delta[:, None])  # dS = P ∘ (dP - δ)
        dq = tl.dot(dscores.to(DOT_DTYPE), k, dq)  # dQ += dS K (times scale, below)
    tl.store(dQ + q_offsets, (dq * scale).to(dQ.dtype.element_ty), mask=rows[:, None] < n_queries)


# Is this module running its kernels in Triton's interpreter (TRITON_INTERPRET=1 when it
# was imported)? Then they take CPU tensors; compiled, they take CUDA tensors.
INTERPRETED = isinstance(attention_forward_kernel, InterpretedFunction)

_TL_DTYPES = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32}


def dot_dtype(dtype: torch.dtype):
    """The type of ``tl.dot``'s operands for inputs of ``dtype``.

    The input's own type (the GPU's tensor cores multiply float16 and bfloat16 and add in
    float32), except that Triton's interpreter cannot multiply bfloat16 matrices
    (triton-lang/triton#11584): there, bfloat16 blocks are widened to float32 first, which
    is exact.
    """
    if INTERPRETED and dtype == torch.bfloat16:
        return tl.float32
    return _TL_DTYPES[dtype]


def forward_shared_bytes(
    block_m: int, block_n: int, head_dim: int, itemsize: int, num_stages: int
) -> int:
    """Shared memory one program of :func:`attention_forward_kernel` needs on an NVIDIA GPU.

    The query block, and ``num_stages`` blocks of keys and of values in flight (the block
    being multiplied and those loaded ahead), as Triton 3.9 lays them out; the tests check
    this count against the compiler's, for an H100 and an A100.
    """
    return (block_m + 2 * num_stages * block_n) * head_dim * itemsize


@functools.cache
def _max_shared_bytes(driver, device) -> int:
    """The most shared memory one program may use on the GPU Triton launches on."""
    return driver.utils.get_device_properties(device)["max_shared_mem"]


def forward_num_stages(block_m: int, block_n: int, head_dim: int, itemsize: int) -> int:
    """The deepest pipeline, 3, 2 or 1 stages, whose shared memory fits the current GPU."""
    if INTERPRETED:  # the interpreter has no shared memory to run out of
        return 3
    driver = triton.runtime.driver.active
    limit = _max_shared_bytes(driver, driver.get_current_device())
    for stages in (3, 2, 1):
        if forward_shared_bytes(block_m, block_n, head_dim, itemsize, stages) <= limit:
            return stages
    need = forward_shared_bytes(block_m, block_n, head_dim, itemsize, 1)
    raise ValueError(
        f"block_m={block_m} and block_n={block_n} with D={head_dim} and {itemsize}-byte "
        f"elements need {need / 1024:.0f} KiB of shared memory per program, even loading no "
        f"block ahead; this GPU allows {limit / 1024:.0f} KiB: choose smaller blocks"
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

    Returns the output ``(N, L, D)`` and the base-2 log-sum-exp of each query's scores
    ``(N, L)``, float32, which the backward pass needs. ``num_stages`` (default: the
    deepest pipeline whose shared memory fits the GPU, at most 3) is how many blocks of
    keys and values are in flight.
    """
    n_batch, n_queries, head_dim = query.shape
    n_keys = key.shape[1]
    if num_stages is None:
        num_stages = forward_num_stages(block_m, block_n, head_dim, query.element_size())
    out = torch.empty_like(query)  # (N, L, D)
    lse = torch.empty(n_batch, n_queries, device=query.device, dtype=torch.float32)  # (N, L)
    grid = (triton.cdiv(n_queries, block_m), n_batch)  # one program per (query block, entry)
    attention_forward_kernel[grid](
        query, key, value, out, lse,
        *query.stride(), *key.stride(), *value.stride(), *out.stride(),
        n_queries, n_keys, scale * LOG2_E,
        CAUSAL=causal, HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n,
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
    """Launch the two backward kernels; returns ``dQ (N, L, D)``, ``dK (N, S, D)``, ``dV``.

    The kernels take contiguous tensors and blocks of 64 queries by 64 keys (32 by 32 for
    D = 128); these settings are not tuned for speed.
    """
    query, key, value, grad_out = (x.contiguous() for x in (query, key, value, grad_out))
    n_batch, n_queries, head_dim = query.shape
    n_keys = key.shape[1]
    # δ_i = Σ_d dO_id O_id, which equals Σ_j P_ij dP_ij: one number per query
    delta = (out.float() * grad_out.float()).sum(dim=-1)  # (N, L)
    grad_query, grad_key, grad_value = (torch.empty_like(x) for x in (query, key, value))
    block = 64 if head_dim <= 64 else 32
    inputs = (query, key, value, grad_out, lse, delta)
    sizes = (n_queries, n_keys, scale * LOG2_E, scale)
    settings = dict(
        CAUSAL=causal, HEAD_DIM=head_dim, BLOCK_M=block, BLOCK_N=block,
        DOT_DTYPE=dot_dtype(query.dtype), num_warps=4, num_stages=2,
    )  # fmt: skip
    grid = (triton.cdiv(n_keys, block), n_batch)  # one program per (key block, entry)
    attention_backward_dkdv_kernel[grid](*inputs, grad_key, grad_value, *sizes, **settings)
    grid = (triton.cdiv(n_queries, block), n_batch)  # one program per (query block, entry)
    attention_backward_dq_kernel[grid](*inputs, grad_query, *sizes, **settings)
    return grad_query, grad_key, grad_value


def launch_single_block(kernel, query, key, value, *, scale=None) -> torch.Tensor:
    """Run a single-block kernel with the signature of :func:`single_block_attention_kernel`.

    The kernel is an argument, so that the chapter's exercises launch their own kernels the
    same way. Inputs are ``(N, L, D)``, ``(N, S, D)``, ``(N, S, D)``; ``L`` and ``S`` are
    padded up to powers of two (at least 16, the smallest ``tl.dot``); returns ``(N, L, D)``.
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
