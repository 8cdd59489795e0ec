"""Run a function on several local processes with ``torch.distributed``, and measure them.

:func:`run_processes` starts ``world_size`` fresh Python processes on this machine (the
``spawn`` start method: the function must be importable, never one defined in a notebook),
joins them in a gloo process group over the loopback address 127.0.0.1 only, calls
``fn(rank, world_size, *args)`` in each and returns what each returned, in rank order. A
process that fails or hangs makes it raise, with every rank's error, after ``timeout``
seconds at most. :func:`count_p2p_bytes` counts the bytes of the point-to-point messages
a block of code sends and receives; :func:`ring_attention_worker` is the appendix's
measurement, run on every rank.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import sys
import traceback
from collections.abc import Callable, Iterator
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..attention.ring import ring_attention
from ..core.sdpa import scaled_dot_product_attention
from .device import seed_everything, threads
from .memory import measure_peak_memory
from .timing import time_function

__all__ = ["count_p2p_bytes", "ring_attention_worker", "run_processes"]

LOOPBACK = "127.0.0.1"


def _free_port() -> int:
    """A TCP port that is free on the loopback address now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _loopback_interface() -> str:
    """The name of the loopback network interface (``lo`` on Linux, ``lo0`` on macOS)."""
    names = [name for _, name in socket.if_nameindex()]
    return next((n for n in names if n.startswith("lo")), "lo")


def _worker(rank, world_size, port, fn, args, results, timeout_s):
    """One process: join the group on 127.0.0.1, run ``fn``, report, leave the group."""
    os.environ.update(
        MASTER_ADDR=LOOPBACK,
        MASTER_PORT=str(port),
        GLOO_SOCKET_IFNAME=_loopback_interface(),  # gloo's own connections: loopback only
    )
    try:
        dist.init_process_group(
            "gloo", rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s)
        )
        try:
            results.put((rank, True, fn(rank, world_size, *args)))
        finally:
            dist.destroy_process_group()
    except BaseException as error:  # report every failure to the parent, then exit
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
        results.put((rank, False, detail))
        sys.exit(1)


def run_processes(fn: Callable, world_size: int, *args, timeout: float = 60.0) -> list:
    """Call ``fn(rank, world_size, *args)`` on ``world_size`` local processes; their results.

    Each process joins a gloo group over 127.0.0.1 (``MASTER_ADDR=127.0.0.1``, a free port,
    gloo bound to the loopback interface) and runs with one CPU thread. ``fn`` and ``args``
    are pickled: ``fn`` must be importable (a function of a module, not of a notebook), and
    what it returns should be plain Python values (numbers, strings, lists): a tensor would
    travel through shared memory that the finished process no longer holds.

    Args:
        fn (callable): ``fn(rank, world_size, *args)``, run on every rank.
        world_size (int): the number of processes.
        *args: more arguments for ``fn`` (picklable).
        timeout (float): seconds before a process that has not reported is killed and this
            raises; also the group's timeout for a collective. Default: 60.

    Returns:
        list: what ``fn`` returned on each rank, in rank order.

    Raises:
        RuntimeError: a rank raised (the message gives every rank's error) or did not
            finish in ``timeout`` seconds.
    """
    context = mp.get_context("spawn")
    results = context.Queue()
    port = _free_port()
    processes = [
        context.Process(target=_worker, args=(rank, world_size, port, fn, args, results, timeout))
        for rank in range(world_size)
    ]
    for process in processes:
        process.start()
    reported: dict[int, tuple[bool, object]] = {}
    try:
        while len(reported) < world_size:
            rank, ok, value = results.get(timeout=timeout)
            reported[rank] = (ok, value)
    except queue.Empty:
        pass
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():  # hung: stop this process we started
                process.kill()
                process.join()
    failed = {r: v for r, (ok, v) in reported.items() if not ok}
    missing = sorted(set(range(world_size)) - set(reported))
    if failed or missing:
        lines = [f"  rank {r}: {v}" for r, v in sorted(failed.items())]
        lines += [f"  rank {r}: did not finish within {timeout:g} s" for r in missing]
        raise RuntimeError(f"{fn.__name__} failed on {world_size} processes:\n" + "\n".join(lines))
    return [reported[rank][1] for rank in range(world_size)]


@contextlib.contextmanager
def count_p2p_bytes() -> Iterator[dict[str, int]]:
    """Count the bytes of the point-to-point messages sent and received inside the block.

    Wraps ``torch.distributed.batch_isend_irecv``, through which
    :func:`~mini_attn.ring_attention` sends every message: each ``isend`` adds its
    tensor's bytes to ``"sent"``, each ``irecv`` to ``"received"``.

    Yields:
        dict: ``{"sent": bytes, "received": bytes, "messages": count}``, filled as it runs.
    """
    counts = {"sent": 0, "received": 0, "messages": 0}
    original = dist.batch_isend_irecv

    def counting(ops):
        for op in ops:
            size = op.tensor.numel() * op.tensor.element_size()
            counts["sent" if op.op is dist.isend else "received"] += size
            counts["messages"] += 1
        return original(ops)

    dist.batch_isend_irecv = counting
    try:
        yield counts
    finally:
        dist.batch_isend_irecv = original


def ring_attention_worker(rank: int, world_size: int, cases: list[dict]) -> list[dict]:
    """The appendix's measurements on one rank: parity, bytes, memory and (optionally) time.

    For each case, every rank draws the same whole-sequence ``Q, K, V`` of
    ``case["shape"] = (B, H, L, D)`` from a seed, keeps its block of ``L/W`` positions of
    each, and runs :func:`~mini_attn.ring_attention` on one CPU thread.

    Args:
        rank (int): this process's rank.
        world_size (int): ``W``.
        cases (list of dict): each with ``shape``, and optionally ``causal`` (False),
            ``dtype`` (``torch.float32``), ``repeats`` (0: not timed), ``grad`` (False:
            with True, also compare the gradients) and ``seed`` (0).

    Returns:
        list of dict: per case, ``error`` (the largest difference from this rank's block
        of :func:`~mini_attn.scaled_dot_product_attention` over the whole sequence),
        ``sent``, ``received`` and ``messages`` (of one call), ``peak_bytes`` (the peak
        extra memory of one call: resident memory on the CPU), ``block_kv_bytes`` (this
        rank's keys and values), with ``grad``, ``grad_error`` (the largest difference of
        this rank's blocks of dQ, dK, dV from those of the whole-sequence attention, for a
        random output gradient) and, with ``repeats > 0``, ``median_s``, the median time
        of a call, every rank starting together after a barrier.
    """
    return [_measure_ring(rank, world_size, **case) for case in cases]


def _measure_ring(
    rank, world_size, shape, causal=False, dtype=torch.float32, repeats=0, grad=False, seed=0
):
    seed_everything(seed)
    q, k, v = torch.randn(3, *shape, dtype=dtype).unbind(0)  # (B, H, L, D) each
    block = shape[2] // world_size
    mine = slice(rank * block, (rank + 1) * block)
    q_r, k_r, v_r = (x[..., mine, :].contiguous() for x in (q, k, v))
    expected = scaled_dot_product_attention(q, k, v, causal=causal)[0][..., mine, :]
    grad_error = _gradient_error(q, k, v, mine, causal) if grad else None
    del q, k, v  # from here on this rank holds its own block only

    def call():
        return ring_attention(q_r, k_r, v_r, causal=causal)

    with threads(1), torch.no_grad():
        with count_p2p_bytes() as counts:
            output = call()
        result = {
            "error": (output - expected).abs().max().item(),
            **counts,
            "block_kv_bytes": (k_r.numel() + v_r.numel()) * k_r.element_size(),
            "grad_error": grad_error,
        }
        del output, expected
        dist.barrier()
        result["peak_bytes"] = measure_peak_memory(call, device="cpu")
        if repeats:
            dist.barrier()
            timing = time_function(call, device="cpu", warmup=1, repeats=repeats)
            result["median_s"] = timing.median
    return result


def _gradient_error(q, k, v, mine, causal) -> float:
    """The largest difference of ring attention's dQ, dK, dV blocks from one device's."""
    grad_output = torch.randn_like(q)
    full = [x.clone().requires_grad_() for x in (q, k, v)]
    scaled_dot_product_attention(*full, causal=causal)[0].backward(grad_output)
    blocks = [x[..., mine, :].clone().requires_grad_() for x in (q, k, v)]
    ring_attention(*blocks, causal=causal).backward(grad_output[..., mine, :])
    return max(
        (b.grad - f.grad[..., mine, :]).abs().max().item()
        for b, f in zip(blocks, full, strict=True)
    )
