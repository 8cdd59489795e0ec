"""The FlashAttention backward kernels, in Triton (chapter 9).

:func:`attention_backward_dkdv_kernel` and :func:`attention_backward_dq_kernel` recompute
the weights from the log-sum-exp that the forward pass saved; the first accumulates
``dK`` and ``dV`` per block of keys, the second ``dQ`` per block of queries.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = [
    "attention_backward_dkdv_kernel",
    "attention_backward_dq_kernel",
]


@triton.jit
def attention_backward_dkdv_kernel(
    # contiguous (N, L|S, D) tensors; LSE, Delta (N, L)
    Q, K, V, dOut, LSE, Delta, dK, dV,
    n_queries, n_keys, qk_scale, scale,
    CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, DOT_DTYPE: tl.constexpr,
):  # fmt: skip
    r"""dK, dV: program ``(n, b)`` owns keys ``n·BLOCK_N ...`` of entry ``b``, loops over queries.

    Launched with the grid ``(cdiv(S, BLOCK_N), N)``.

    Args:
        Q, K, V, dOut: pointers to contiguous tensors of shape :math:`(N, L, D)`,
            :math:`(N, S, D)`, :math:`(N, S, D)`, :math:`(N, L, D)`.
        LSE: pointer to the forward kernel's base-2 log-sum-exp, float32 :math:`(N, L)`.
        Delta: pointer to :math:`\delta_i = \sum_d dO_{id} O_{id}`, float32 :math:`(N, L)`.
        dK, dV: pointers to the gradients, :math:`(N, S, D)` each, written here.
        n_queries (int): ``L``.
        n_keys (int): ``S``.
        qk_scale (float): ``scale · log2(e)``.
        scale (float): the factor applied to the scores.
        CAUSAL (constexpr bool): top-left causal mask.
        HEAD_DIM (constexpr int): ``D``.
        BLOCK_M (constexpr int): queries per block.
        BLOCK_N (constexpr int): keys per block.
        DOT_DTYPE (constexpr dtype): the type of ``tl.dot``'s operands.

    Shape legend:

    - ``N``: sequences (batch and heads)
    - ``L``: queries
    - ``S``: keys
    - ``D``: head size
    """
    start_n = tl.program_id(0) * BLOCK_N
    batch = tl.program_id(1).to(tl.int64)
    # (BLOCK_N,) the key indices j
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offsets = (
        batch * n_keys * HEAD_DIM
        + offs_n[:, None] * HEAD_DIM
        + offs_d[None, :]
    )
    k = tl.load(
        K + kv_offsets, mask=offs_n[:, None] < n_keys, other=0.0
    ).to(DOT_DTYPE)
    v = tl.load(
        V + kv_offsets, mask=offs_n[:, None] < n_keys, other=0.0
    ).to(DOT_DTYPE)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    # causal: only queries i ≥ j see j
    start = start_n // BLOCK_M * BLOCK_M if CAUSAL else 0
    for start_m in range(start, n_queries, BLOCK_M):
        rows = start_m + offs_m  # (BLOCK_M,) the query indices i
        q_offsets = (
            batch * n_queries * HEAD_DIM
            + rows[:, None] * HEAD_DIM
            + offs_d[None, :]
        )
        q = tl.load(
            Q + q_offsets, mask=rows[:, None] < n_queries, other=0.0
        ).to(DOT_DTYPE)
        do = tl.load(
            dOut + q_offsets, mask=rows[:, None] < n_queries, other=0.0
        ).to(DOT_DTYPE)
        # a padding query gets lse = inf, so its weights are 2^-inf = 0
        lse = tl.load(
            LSE + batch * n_queries + rows,
            mask=rows < n_queries,
            other=float("inf"),
        )
        delta = tl.load(
            Delta + batch * n_queries + rows,
            mask=rows < n_queries,
            other=0.0,
        )
        # recompute the weights, transposed:
        # Pᵀ_ji = 2^(s_ij · log2 e - lse_i)
        # (BLOCK_N, BLOCK_M)
        weights_t = tl.exp2(
            tl.dot(k, tl.trans(q)) * qk_scale - lse[None, :]
        )
        if CAUSAL:
            weights_t = tl.where(
                offs_n[:, None] <= rows[None, :], weights_t, 0.0
            )
        dv = tl.dot(weights_t.to(DOT_DTYPE), do, dv)  # dV += Pᵀ dO
        dweights_t = tl.dot(v, tl.trans(do))  # dPᵀ = V dOᵀ
        # dSᵀ = Pᵀ ∘ (dPᵀ - δ)
        dscores_t = weights_t * (dweights_t - delta[None, :])
        # dK += dSᵀ Q (times scale, below)
        dk = tl.dot(dscores_t.to(DOT_DTYPE), q, dk)
    tl.store(
        dK + kv_offsets,
        (dk * scale).to(dK.dtype.element_ty),
        mask=offs_n[:, None] < n_keys,
    )
    tl.store(
        dV + kv_offsets,
        dv.to(dV.dtype.element_ty),
        mask=offs_n[:, None] < n_keys,
    )


@triton.jit
def attention_backward_dq_kernel(
    Q, K, V, dOut, LSE, Delta, dQ,  # contiguous (N, L|S, D) tensors; LSE, Delta (N, L)
    n_queries, n_keys, qk_scale, scale,
    CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, DOT_DTYPE: tl.constexpr,
):  # fmt: skip
    r"""dQ: program ``(m, b)`` owns queries ``m·BLOCK_M ...`` of entry ``b``, loops over keys.

    Launched with the grid ``(cdiv(L, BLOCK_M), N)``.

    Args:
        Q, K, V, dOut: pointers to contiguous tensors of shape :math:`(N, L, D)`,
            :math:`(N, S, D)`, :math:`(N, S, D)`, :math:`(N, L, D)`.
        LSE: pointer to the forward kernel's base-2 log-sum-exp, float32 :math:`(N, L)`.
        Delta: pointer to :math:`\delta_i = \sum_d dO_{id} O_{id}`, float32 :math:`(N, L)`.
        dQ: pointer to the gradient :math:`(N, L, D)`, written here.
        n_queries (int): ``L``.
        n_keys (int): ``S``.
        qk_scale (float): ``scale · log2(e)``.
        scale (float): the factor applied to the scores.
        CAUSAL (constexpr bool): top-left causal mask.
        HEAD_DIM (constexpr int): ``D``.
        BLOCK_M (constexpr int): queries per block.
        BLOCK_N (constexpr int): keys per block.
        DOT_DTYPE (constexpr dtype): the type of ``tl.dot``'s operands.

    Shape legend:

    - ``N``: sequences (batch and heads)
    - ``L``: queries
    - ``S``: keys
    - ``D``: head size
    """
    start_m = tl.program_id(0) * BLOCK_M
    batch = tl.program_id(1).to(tl.int64)
    # (BLOCK_M,) the query indices i
    rows = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    q_offsets = (
        batch * n_queries * HEAD_DIM
        + rows[:, None] * HEAD_DIM
        + offs_d[None, :]
    )
    q = tl.load(
        Q + q_offsets, mask=rows[:, None] < n_queries, other=0.0
    ).to(DOT_DTYPE)
    do = tl.load(
        dOut + q_offsets, mask=rows[:, None] < n_queries, other=0.0
    ).to(DOT_DTYPE)
    lse = tl.load(
        LSE + batch * n_queries + rows,
        mask=rows < n_queries,
        other=float("inf"),
    )
    delta = tl.load(
        Delta + batch * n_queries + rows, mask=rows < n_queries, other=0.0
    )
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    # causal: the block's last query sees no key after it
    stop = (
        tl.minimum(tl.minimum(start_m + BLOCK_M, n_queries), n_keys)
        if CAUSAL
        else n_keys
    )
    for start_n in range(0, stop, BLOCK_N):
        keys = start_n + offs_n  # (BLOCK_N,) the key indices j
        kv_offsets = (
            batch * n_keys * HEAD_DIM
            + keys[:, None] * HEAD_DIM
            + offs_d[None, :]
        )
        k = tl.load(
            K + kv_offsets, mask=keys[:, None] < n_keys, other=0.0
        ).to(DOT_DTYPE)
        v = tl.load(
            V + kv_offsets, mask=keys[:, None] < n_keys, other=0.0
        ).to(DOT_DTYPE)
        # P, (BLOCK_M, BLOCK_N)
        weights = tl.exp2(
            tl.dot(q, tl.trans(k)) * qk_scale - lse[:, None]
        )
        allowed = keys[None, :] < n_keys
        if CAUSAL:
            allowed = allowed & (keys[None, :] <= rows[:, None])
        weights = tl.where(allowed, weights, 0.0)
        dweights = tl.dot(do, tl.trans(v))  # dP = dO Vᵀ
        # dS = P ∘ (dP - δ)
        dscores = weights * (dweights - delta[:, None])
        # dQ += dS K (times scale, below)
        dq = tl.dot(dscores.to(DOT_DTYPE), k, dq)
    tl.store(
        dQ + q_offsets,
        (dq * scale).to(dQ.dtype.element_ty),
        mask=rows[:, None] < n_queries,
    )
