"""Ring attention: one sequence split over the processes of a ``torch.distributed`` group.

Every rank holds one consecutive block of the queries, keys and values. The queries stay
where they are; the key/value blocks travel around the ring, rank ``r`` sending to
``r + 1`` and receiving from ``r - 1``, and each rank folds every block it receives into
its running output with the online softmax of :mod:`mini_attn.attention.tiled`
(Liu et al., 2023). After ``W`` steps every query has seen every key, and no rank has held
more than two key/value blocks (its own and the one in flight) at a time.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from .._validation import (
    HALF_DTYPES,
    broadcast_batch,
    check_qkv,
    fmt_shape,
)
from .tiled import (
    finish_online_softmax,
    online_softmax_update,
    start_online_softmax,
)

__all__ = ["block_source", "ring_attention", "ring_causal_work"]


def block_source(rank: int, step: int, world_size: int) -> int:
    """The rank whose key/value block rank ``rank`` holds at step ``step`` of the ring.

    At step 0 every rank holds its own block; after each step it has passed its block to
    ``rank + 1`` and received the block of ``rank - 1``: ``(rank - step) mod world_size``.
    """
    return (rank - step) % world_size


def ring_causal_work(
    positions: torch.Tensor, chunk_size: int
) -> torch.Tensor:
    """The causal scores each rank computes at each step of the ring, chunk by chunk.

    Rank ``r`` holds the queries and keys at ``positions[r]`` (global positions), in chunks
    of ``chunk_size`` consecutive entries. At step ``t`` it holds the keys of rank
    ``block_source(r, t, W)`` and computes, for every pair of a query chunk and a key
    chunk, the whole ``chunk_size × chunk_size`` block of scores unless every key of the
    chunk comes after every query of the other (a causal skip), as
    :func:`~mini_attn.ring_attention` does with one chunk per rank.

    Args:
        positions (Tensor): ``(W, n)`` integer global positions, rank by rank.
        chunk_size (int): positions per chunk; it divides ``n``.

    Returns:
        Tensor: ``(W, W)`` int64, the scores computed at step ``t`` (row) by rank ``r``
        (column).
    """
    world_size, n = positions.shape
    # (W, c, chunk)
    chunks = positions.reshape(world_size, n // chunk_size, chunk_size)
    first, last = chunks.amin(dim=-1), chunks.amax(dim=-1)  # (W, c) each
    work = torch.zeros(world_size, world_size, dtype=torch.int64)
    for step in range(world_size):
        for rank in range(world_size):
            source = block_source(rank, step, world_size)
            # (query c, key c)
            needed = first[source][None, :] <= last[rank][:, None]
            work[step, rank] = int(needed.sum()) * chunk_size * chunk_size
    return work


def ring_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    causal: bool = False,
    group: dist.ProcessGroup | None = None,
) -> torch.Tensor:
    r"""This rank's block of attention over a sequence split across a process group.

    Called by every rank of ``group``: rank ``r`` of ``W`` passes the ``r``-th of ``W``
    equal consecutive blocks of the queries, keys and values, and gets the ``r``-th block
    of ``scaled_dot_product_attention(Q, K, V, causal=causal)[0]`` over the whole
    sequence. The key/value blocks travel around the ring by point-to-point messages
    (``batch_isend_irecv``), the next block's transfer overlapping this block's compute;
    each rank folds the blocks into its output with :func:`online_softmax_update`. With
    ``causal=True`` the positions are global (query ``i`` of rank ``r`` is position
    ``r·L/W + i``): a block wholly in the future is skipped, the diagonal block masked.

    Differentiable: the backward pass sends the key/value blocks around the ring again,
    with the gradients of the keys and values travelling along, so every rank must call
    ``backward`` too. Works with any backend that has point-to-point messages: gloo on the
    CPU, NCCL on GPUs (one GPU per rank). A group of one is attention on one device.

    Args:
        query (Tensor): this rank's queries, :math:`(..., L/W, E)`.
        key (Tensor): this rank's keys, :math:`(..., S/W, E)`.
        value (Tensor): this rank's values, :math:`(..., S/W, Ev)`.
        causal (bool): let global query ``i`` attend to global keys ``j ≤ i`` only.
            Default: False.
        group (ProcessGroup, optional): the ranks that share the sequence, in order.
            Default: the default (world) group.

    Returns:
        Tensor: this rank's block of the output, :math:`(..., L/W, Ev)`, dtype of ``query``.

    Raises:
        RuntimeError: ``torch.distributed`` is not initialised.
        ValueError: on **every** rank, when any rank's inputs are invalid or differ from the
            others' in shape, dtype, device type or ``causal`` (one ``all_gather`` of every
            rank's description comes first, so that a bad rank cannot leave the others
            waiting for a message that never comes).

    Shape legend:

    - ``W``: ranks in ``group``
    - ``L``: queries and ``S`` keys of the whole sequence
    - ``E``: query/key size
    - ``Ev``: value size
    - ``...``: batch dimensions (they broadcast)
    """
    batch = _check_ring(query, key, value, causal, group)
    key, value = (
        key.expand(*batch, *key.shape[-2:]),
        value.expand(*batch, *value.shape[-2:]),
    )
    return _RingAttention.apply(query, key, value, causal, group)


def _pass_around(
    tensors: list[torch.Tensor], group
) -> tuple[list[torch.Tensor], list]:
    """Start sending ``tensors`` to the next rank and receiving the previous rank's.

    Returns the buffers the messages arrive in and the requests to ``wait()`` on.
    """
    rank, world_size = dist.get_rank(group), dist.get_world_size(group)
    # ranks in group
    send_to, recv_from = (
        (rank + 1) % world_size,
        (rank - 1) % world_size,
    )
    if group is not None:  # P2POp wants global ranks
        send_to, recv_from = (
            dist.get_global_rank(group, r) for r in (send_to, recv_from)
        )
    incoming = [torch.empty_like(t) for t in tensors]
    ops = [dist.P2POp(dist.isend, t, send_to, group) for t in tensors]
    ops += [dist.P2POp(dist.irecv, t, recv_from, group) for t in incoming]
    return incoming, dist.batch_isend_irecv(ops)


def _block_scores(query, key, rank, source, scale, causal, dtype):
    """The scores of this rank's queries against the key block of rank ``source``.

    ``None`` when causal and the block lies wholly in the future; masked (-inf) where a
    global key comes after the global query.
    """
    n_queries, n_keys = query.shape[-2], key.shape[-2]
    # global positions
    first_query, first_key = (rank * n_queries, source * n_keys)
    if causal and first_key > first_query + n_queries - 1:
        # every key of the block comes after every query:
        # nothing to attend
        return None
    scores = (query @ key.transpose(-2, -1)).to(
        dtype
    ) * scale  # (..., L/W, S/W)
    if (
        causal and first_key + n_keys - 1 > first_query
    ):  # the diagonal block: mask it
        query_pos = torch.arange(
            first_query, first_query + n_queries, device=query.device
        )
        key_pos = torch.arange(
            first_key, first_key + n_keys, device=query.device
        )
        scores = scores.masked_fill(
            key_pos > query_pos[:, None], -math.inf
        )
    return scores


def _ring_forward(query, key, value, causal, group):
    """The ring of the forward pass: the output and the log-sum-exp of
    every query."""
    rank, world_size = dist.get_rank(group), dist.get_world_size(group)
    scale = 1.0 / math.sqrt(query.shape[-1])
    acc_dtype = (
        torch.float32 if query.dtype in HALF_DTYPES else query.dtype
    )
    state = start_online_softmax(
        query.shape[:-2],
        query.shape[-2],
        value.shape[-1],
        like=query,
        dtype=acc_dtype,
    )
    # the block this rank holds now
    blocks = [key.contiguous(), value.contiguous()]
    for step in range(world_size):
        if (
            step < world_size - 1
        ):  # start passing it on before computing with it
            incoming, requests = _pass_around(blocks, group)
        source = block_source(rank, step, world_size)
        scores = _block_scores(
            query, blocks[0], rank, source, scale, causal, acc_dtype
        )
        if scores is not None:
            state = online_softmax_update(state, scores, blocks[1])
        if step < world_size - 1:
            for request in requests:
                request.wait()
            # the previous rank's block; this rank's is now one further
            blocks = incoming
    # (..., L/W, 1); -inf: no key
    log_sum_exp = state.row_max + torch.log(state.row_sum)
    return finish_online_softmax(state).to(query.dtype), log_sum_exp


def _ring_backward(
    query, key, value, output, log_sum_exp, grad_output, causal, group
):
    """The ring of the backward pass: the blocks travel again, their gradients with them."""
    rank, world_size = dist.get_rank(group), dist.get_world_size(group)
    scale = 1.0 / math.sqrt(query.shape[-1])
    dtype = log_sum_exp.dtype
    q, grad_out = query.to(dtype), grad_output.to(dtype)
    # rowsum(dO ∘ O)
    delta = (grad_out * output.to(dtype)).sum(dim=-1, keepdim=True)
    grad_query = torch.zeros_like(q)
    blocks = [key.contiguous(), value.contiguous()]
    grads = [
        torch.zeros_like(key, dtype=dtype),
        torch.zeros_like(value, dtype=dtype),
    ]
    for step in range(world_size):
        if step < world_size - 1:
            incoming, requests = _pass_around(blocks, group)
        k, v = (b.to(dtype) for b in blocks)
        source = block_source(rank, step, world_size)
        scores = _block_scores(
            query, blocks[0], rank, source, scale, causal, dtype
        )
        if scores is not None:
            # P, (..., L, S)
            weights = torch.exp(
                scores - log_sum_exp.nan_to_num(neginf=0.0)
            )
            # dV += Pᵀ dO
            grads[1] = grads[1] + weights.transpose(-2, -1) @ grad_out
            grad_scores = (
                weights * (grad_out @ v.transpose(-2, -1) - delta) * scale
            )
            grad_query = grad_query + grad_scores @ k  # dQ += dS K
            # dK += dSᵀ Q
            grads[0] = grads[0] + grad_scores.transpose(-2, -1) @ q
        if step < world_size - 1:
            for request in requests:
                request.wait()
            blocks = incoming
        if (
            world_size > 1
        ):  # the gradients follow their block: after W passes they are home
            grads, requests = _pass_around(grads, group)
            for request in requests:
                request.wait()
    return (
        grad_query.to(query.dtype),
        grads[0].to(key.dtype),
        grads[1].to(value.dtype),
    )


class _RingAttention(torch.autograd.Function):
    """Ring attention with its own backward: torch.distributed's messages have no autograd."""

    @staticmethod
    def forward(ctx, query, key, value, causal, group):
        output, log_sum_exp = _ring_forward(
            query, key, value, causal, group
        )
        ctx.save_for_backward(query, key, value, output, log_sum_exp)
        ctx.causal, ctx.group = causal, group
        return output

    @staticmethod
    def backward(ctx, grad_output):
        grads = _ring_backward(
            *ctx.saved_tensors, grad_output, ctx.causal, ctx.group
        )
        return (*grads, None, None)


def _check_ring(query, key, value, causal, group) -> tuple[int, ...]:
    """Check this rank's inputs, then that every rank's agree: one ``all_gather`` of them.

    A rank whose inputs are invalid still takes part in the ``all_gather`` (with its error
    message instead of its shapes), so that every rank raises instead of waiting forever.
    """
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "ring_attention needs torch.distributed: call "
            "torch.distributed.init_process_group first (on every rank)"
        )
    error, batch = None, ()
    try:
        check_qkv(query, key, value)
        batch = broadcast_batch(query=query, key=key, value=value)
    except (TypeError, ValueError) as bad:
        error = str(bad)
    if error is None:
        described = (
            f"query {fmt_shape(query.shape)}, key {fmt_shape(key.shape)}, "
            f"value {fmt_shape(value.shape)}, {query.dtype}, {query.device.type}, "
            f"causal={causal}"
        )
    else:
        described = "invalid input: " + error
    everyone = [None] * dist.get_world_size(group)
    dist.all_gather_object(everyone, (error, described), group=group)
    rank = dist.get_rank(group)
    if error is not None:
        raise ValueError(f"ring_attention on rank {rank}: {error}")
    for other, (other_error, other_described) in enumerate(everyone):
        if other_error is not None:
            raise ValueError(
                f"ring_attention: rank {other} was given {other_described}"
            )
        if other_described != described:
            table = "\n".join(
                f"  rank {r}: {d}" for r, (_, d) in enumerate(everyone)
            )
            raise ValueError(
                "ring_attention needs the same shapes, dtype, device type and causal on every "
                f"rank (equal blocks of one sequence); rank {rank} has {described}, rank "
                f"{other} has {other_described}:\n{table}"
            )
    return batch
