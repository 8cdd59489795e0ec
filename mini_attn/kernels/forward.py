"""The FlashAttention forward kernels, in Triton (chapter 9).

- :func:`single_block_attention_kernel`: one program holds every key of one sequence,
  the smallest attention kernel (no tiling; short sequences only);
- :func:`attention_forward_kernel`: the FlashAttention forward pass, one program per
  block of queries, looping over blocks of keys with an online softmax; it calls
- :func:`attend_to_key_blocks`: the body of that loop, the online-softmax update.

Importing this module imports Triton, which decides when a kernel is defined whether to
compile it or to run it in its interpreter (``TRITON_INTERPRET=1``); the launchers are in
:mod:`mini_attn.kernels.launch`.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = [
    "attend_to_key_blocks",
    "attention_forward_kernel",
    "single_block_attention_kernel",
]


@triton.jit
def single_block_attention_kernel(
    # pointers to contiguous tensors:
    # (N, L, D), (N, S, D), (N, S, D), (N, L, D)
    Q, K, V, Out,
    n_queries, n_keys, scale,
    BLOCK_L: tl.constexpr, BLOCK_S: tl.constexpr, HEAD_DIM: tl.constexpr,
):  # fmt: skip
    """softmax(Q Kᵀ · scale) V for one sequence in one block: program ``n`` does entry ``n``.

    Launched with the grid ``(N,)`` by :func:`~mini_attn.kernels.launch.launch_single_block`.

    Args:
        Q, K, V, Out: pointers to contiguous tensors of shape :math:`(N, L, D)`,
            :math:`(N, S, D)`, :math:`(N, S, D)` and :math:`(N, L, D)`.
        n_queries (int): ``L``.
        n_keys (int): ``S``.
        scale (float): the factor applied to the scores.
        BLOCK_L (constexpr int): a power of two ≥ ``max(L, 16)``: every query in one block.
        BLOCK_S (constexpr int): a power of two ≥ ``max(S, 16)``: every key in one block.
        HEAD_DIM (constexpr int): ``D``, a power of two ≥ 16.

    Shape legend:

    - ``N``: sequences (batch and heads)
    - ``L``: queries
    - ``S``: keys
    - ``D``: head size
    """
    n = tl.program_id(0)
    rows = tl.arange(0, BLOCK_L)  # query indices i
    cols = tl.arange(0, BLOCK_S)  # key indices j
    dims = tl.arange(0, HEAD_DIM)
    q_offsets = (
        n * n_queries * HEAD_DIM
        + rows[:, None] * HEAD_DIM
        + dims[None, :]
    )
    kv_offsets = (
        n * n_keys * HEAD_DIM + cols[:, None] * HEAD_DIM + dims[None, :]
    )
    # (BLOCK_L, D)
    q = tl.load(Q + q_offsets, mask=rows[:, None] < n_queries, other=0.0)
    # (BLOCK_S, D)
    k = tl.load(K + kv_offsets, mask=cols[:, None] < n_keys, other=0.0)
    # (BLOCK_S, D)
    v = tl.load(V + kv_offsets, mask=cols[:, None] < n_keys, other=0.0)
    # (BLOCK_L, BLOCK_S): Q Kᵀ · scale
    scores = tl.dot(q, tl.trans(k)) * scale
    # padding keys get weight 0
    scores = tl.where(cols[None, :] < n_keys, scores, float("-inf"))
    # stable softmax, unnormalised
    weights = tl.exp(scores - tl.max(scores, axis=1)[:, None])
    # each row sums to 1
    weights = weights / tl.sum(weights, axis=1)[:, None]
    out = tl.dot(weights.to(v.dtype), v)  # (BLOCK_L, D)
    tl.store(
        Out + q_offsets,
        out.to(Out.dtype.element_ty),
        mask=rows[:, None] < n_queries,
    )


@triton.jit
def attend_to_key_blocks(
    # the running state of the online softmax (float32)
    acc, row_max, row_sum,
    # the query block and where the keys start
    q, k_ptrs, v_ptrs, stride_kn, stride_vn,
    offs_m, offs_n, start, stop, n_keys, qk_scale,
    MASKED: tl.constexpr, CAUSAL: tl.constexpr, BLOCK_N: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
):  # fmt: skip
    r"""Fold the key blocks ``start, start + BLOCK_N, ... < stop`` into the running state.

    The online softmax of chapter 8, one block of keys per step, in base 2.

    Args:
        acc (block): :math:`(B_M, D)` float32, the unnormalised output so far.
        row_max (block): :math:`(B_M,)` float32, the running maximum of the scaled scores.
        row_sum (block): :math:`(B_M,)` float32, the running sum of ``exp2(s - row_max)``.
        q (block): :math:`(B_M, D)`, the query block, in ``DOT_DTYPE``.
        k_ptrs (block of pointers): :math:`(D, B_N)`, the first block of :math:`K^\top`.
        v_ptrs (block of pointers): :math:`(B_N, D)`, the first block of :math:`V`.
        stride_kn (int): elements between two keys in ``K``.
        stride_vn (int): elements between two values in ``V``.
        offs_m (block): :math:`(B_M,)` the query indices of the block.
        offs_n (block): :math:`(B_N,)` ``0 … BLOCK_N - 1``.
        start (int): the first key of the first block (a multiple of ``BLOCK_N``).
        stop (int): the end of the keys to visit.
        n_keys (int): ``S``, to mask the padding keys.
        qk_scale (float): ``scale · log2(e)``.
        MASKED (constexpr bool): mask padding keys (and, with ``CAUSAL``, keys ``j > i``).
        CAUSAL (constexpr bool): the causal mask, when ``MASKED``.
        BLOCK_N (constexpr int): ``B_N``, keys per block.
        DOT_DTYPE (constexpr dtype): the type of ``tl.dot``'s operands.

    Returns:
        tuple of blocks: ``acc``, ``row_max``, ``row_sum`` after the last block.

    Shape legend:

    - ``B_M``: ``BLOCK_M`` queries
    - ``B_N``: ``BLOCK_N`` keys
    - ``D``: head size
    """
    for start_n in range(start, stop, BLOCK_N):
        # (BLOCK_N,) the key indices j of this block
        keys = start_n + offs_n
        if MASKED:
            k = tl.load(
                k_ptrs + start_n * stride_kn,
                mask=keys[None, :] < n_keys,
                other=0.0,
            )
        else:
            # (D, BLOCK_N): a block of Kᵀ
            k = tl.load(k_ptrs + start_n * stride_kn)
        # (BLOCK_M, BLOCK_N): Q Kᵀ · scale · log2 e
        scores = tl.dot(q, k.to(DOT_DTYPE)) * qk_scale
        if MASKED:
            # the last block may run past the last key
            allowed = keys[None, :] < n_keys
            if CAUSAL:
                # query i sees keys j ≤ i
                allowed = allowed & (keys[None, :] <= offs_m[:, None])
            scores = tl.where(allowed, scores, float("-inf"))
        # (BLOCK_M,) running max
        new_max = tl.maximum(row_max, tl.max(scores, axis=1))
        # exp(s - m), unnormalised
        weights = tl.exp2(scores - new_max[:, None])
        # rescales what was summed under the old max
        correction = tl.exp2(row_max - new_max)
        row_sum = row_sum * correction + tl.sum(weights, axis=1)
        if MASKED:
            v = tl.load(
                v_ptrs + start_n * stride_vn,
                mask=keys[:, None] < n_keys,
                other=0.0,
            )
        else:
            v = tl.load(v_ptrs + start_n * stride_vn)  # (BLOCK_N, D)
        acc = acc * correction[:, None]
        # acc += P V, in float32
        acc = tl.dot(weights.to(DOT_DTYPE), v.to(DOT_DTYPE), acc)
        row_max = new_max
    return acc, row_max, row_sum


@triton.jit
def attention_forward_kernel(
    # pointers to (N, L, D), (N, S, D), (N, S, D), (N, L, D), (N, L)
    Q, K, V, Out, LSE,
    stride_qb, stride_qm, stride_qd, stride_kb, stride_kn, stride_kd,
    stride_vb, stride_vn, stride_vd, stride_ob, stride_om, stride_od,
    n_queries, n_keys, qk_scale,
    CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, DOT_DTYPE: tl.constexpr,
):  # fmt: skip
    """FlashAttention forward: program ``(m, n)`` does the ``m``-th query block of entry ``n``.

    Launched with the grid ``(cdiv(L, BLOCK_M), N)`` by
    :func:`~mini_attn.kernels.launch.attention_forward`.

    Args:
        Q, K, V, Out: pointers to tensors of shape :math:`(N, L, D)`, :math:`(N, S, D)`,
            :math:`(N, S, D)` and :math:`(N, L, D)`, in any memory layout.
        LSE: pointer to a contiguous float32 :math:`(N, L)` tensor: each query's base-2
            log-sum-exp of its scaled scores, written for the backward pass.
        stride_qb, stride_qm, stride_qd (int): the strides of ``Q`` (entry, query, dim);
            likewise ``stride_k*`` of ``K``, ``stride_v*`` of ``V``, ``stride_o*`` of ``Out``.
        n_queries (int): ``L``.
        n_keys (int): ``S``.
        qk_scale (float): ``scale · log2(e)``: scores in base 2, for ``exp2``.
        CAUSAL (constexpr bool): top-left causal mask (key ``j ≤`` query ``i``).
        HEAD_DIM (constexpr int): ``D``.
        BLOCK_M (constexpr int): queries per program.
        BLOCK_N (constexpr int): keys per step of the loop.
        DOT_DTYPE (constexpr dtype): the type of ``tl.dot``'s operands.

    Shape legend:

    - ``N``: sequences (batch and heads)
    - ``L``: queries
    - ``S``: keys
    - ``D``: head size
    """
    start_m = tl.program_id(0) * BLOCK_M
    # 64-bit offsets: N·L·D can exceed 2³¹
    batch = tl.program_id(1).to(tl.int64)
    # (BLOCK_M,) the query indices i
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    q_ptrs = (
        Q
        + batch * stride_qb
        + offs_m[:, None] * stride_qm
        + offs_d[None, :] * stride_qd
    )
    k_ptrs = (
        K
        + batch * stride_kb
        + offs_n[None, :] * stride_kn
        + offs_d[:, None] * stride_kd
    )
    v_ptrs = (
        V
        + batch * stride_vb
        + offs_n[:, None] * stride_vn
        + offs_d[None, :] * stride_vd
    )
    # the query block is loaded once and stays on chip for the whole loop
    q = tl.load(q_ptrs, mask=offs_m[:, None] < n_queries, other=0.0).to(
        DOT_DTYPE
    )
    # Σ_j exp(s_ij - m_i) v_j
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    row_max = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # m_i
    row_sum = tl.zeros([BLOCK_M], dtype=tl.float32)  # Σ_j exp(s_ij - m_i)
    # keys [0, full_stop): every query of the block sees every key of
    # these blocks, no mask;
    # keys [full_stop, stop): the diagonal (causal) and the ragged last
    # block, masked
    if CAUSAL:
        # one past the block's last query
        last_query = tl.minimum(start_m + BLOCK_M, n_queries)
        # query i never sees keys j > i
        stop = tl.minimum(last_query, n_keys)
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
    o_ptrs = (
        Out
        + batch * stride_ob
        + offs_m[:, None] * stride_om
        + offs_d[None, :] * stride_od
    )
    tl.store(
        o_ptrs,
        out.to(Out.dtype.element_ty),
        mask=offs_m[:, None] < n_queries,
    )
    # for the backward pass: log2 Σ_j 2^(s_ij · log2 e),
    # the log-sum-exp in base 2
    lse = row_max + tl.log2(row_sum)
    tl.store(
        LSE + batch * n_queries + offs_m, lse, mask=offs_m < n_queries
    )
