"""The attention implementations the bench times, and how a failure is classified.

Each method is a :class:`Method`: ``kernel(q, k, v)`` is what the device is timed on,
``call(q, k, v)`` what a user calls (for most methods the same function). For chapter 9's
Triton kernel the two differ: ``kernel`` launches the compiled kernel on inputs that were
checked and reshaped once, ``call`` is :func:`~mini_attn.triton_attention` with its input
checks, so that the host's cost of the checks is reported (``host_ms``) rather than mixed
into the device's time.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..attention.tiled import tiled_attention
from ..core.sdpa import scaled_dot_product_attention

__all__ = ["MATERIALIZING", "METHODS", "Method", "classify", "make_method", "with_triton"]

#: every method the bench knows, in the order of the tables
METHODS = (
    "naive",
    "naive-compiled",
    "tiled",
    "sdpa-math",
    "sdpa-efficient",
    "sdpa-flash",
    "sdpa-cudnn",
    "triton",  # chapter 9's kernel: added to the presets on a GPU with Triton
)
DEFAULT_METHODS = ("naive", "tiled", "sdpa-math", "sdpa-efficient", "sdpa-flash", "sdpa-cudnn")
#: the methods that hold the L × S scores in memory
MATERIALIZING = ("naive", "naive-compiled", "sdpa-math")

Attention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class Method(NamedTuple):
    """One method of the bench.

    Attributes:
        kernel (callable): ``kernel(q, k, v) -> output``, the call timed on the device.
        call (callable): ``call(q, k, v) -> output``, what a user calls; its host time
            is reported as ``host_ms``.
    """

    kernel: Attention
    call: Attention


def _sdpa_backend(method: str):
    from torch.nn.attention import SDPBackend

    return {
        "sdpa-math": SDPBackend.MATH,
        "sdpa-efficient": SDPBackend.EFFICIENT_ATTENTION,
        "sdpa-flash": SDPBackend.FLASH_ATTENTION,
        "sdpa-cudnn": SDPBackend.CUDNN_ATTENTION,
    }[method]


def _fused(method: str, causal: bool) -> Attention:
    from torch.nn.attention import sdpa_kernel

    backend = _sdpa_backend(method)

    def fused(q, k, v):
        with sdpa_kernel(backend):  # only this backend: an error if it cannot run
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    return fused


def _triton(causal: bool) -> Method:
    """Chapter 9's kernel: the launcher timed, :func:`triton_attention` as the user call."""
    from ..kernels.autograd import triton_attention
    from ..kernels.launch import attention_forward

    def kernel(q, k, v):
        n_queries, head_dim = q.shape[-2:]
        q3, k3, v3 = (x.reshape(-1, *x.shape[-2:]) for x in (q, k, v))  # views: no copy
        out, _ = attention_forward(
            q3, k3, v3, causal=causal, scale=1 / math.sqrt(head_dim), block_m=128, block_n=64
        )
        return out.view(*q.shape[:-2], n_queries, head_dim)

    return Method(kernel, lambda q, k, v: triton_attention(q, k, v, causal=causal))


def make_method(method: str, *, causal: bool, block_size: int) -> Method:
    """The :class:`Method` named ``method``, one of :data:`METHODS`.

    Args:
        method (str): the method's name.
        causal (bool): mask the keys after each query.
        block_size (int): the key block of :func:`~mini_attn.tiled_attention`.

    Returns:
        Method: the timed kernel and the user's call.

    Raises:
        ValueError: for a name not in :data:`METHODS`.
    """
    if method == "naive":
        fn = lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=causal)[0]  # noqa: E731
    elif method == "naive-compiled":
        naive = make_method("naive", causal=causal, block_size=block_size).kernel
        fn = torch.compile(naive, dynamic=True)
    elif method == "tiled":
        fn = lambda q, k, v: tiled_attention(q, k, v, causal=causal, block_size=block_size)  # noqa: E731
    elif method == "triton":
        return _triton(causal)
    elif method in METHODS:
        fn = _fused(method, causal)
    else:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    return Method(fn, fn)


# Which backend says what when it cannot run (PyTorch 2.x wording; a message that matches
# none of these is recorded as "error", so a rewording shows up in the record, not silently):
# - "no available kernel": sdpa_kernel() with a backend that refuses these inputs;
# - "no viable backend": torch.compile / inductor finding no fused kernel;
# - "not supported" / "not implemented": a dtype or device a kernel does not cover
#   (e.g. flash on a CPU in float32, or bfloat16 matmuls on an old GPU).
_UNSUPPORTED = ("no available kernel", "no viable backend", "not supported", "not implemented")


def classify(error: Exception) -> tuple[str, str]:
    """``(status, note)`` for an exception raised by one configuration.

    Args:
        error (Exception): what the method raised.

    Returns:
        tuple of str: the status (``"oom"``, ``"unsupported"`` or ``"error"``) and the
        first line of the message (at most 200 characters).
    """
    message = str(error).strip().splitlines()[0][:200] if str(error).strip() else repr(error)
    if isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in message.lower():
        return "oom", message
    if any(text in message.lower() for text in _UNSUPPORTED):
        return "unsupported", message
    return "error", f"{type(error).__name__}: {message}"


def with_triton(methods: Sequence[str], device: torch.device) -> tuple[str, ...]:
    """A preset's methods, plus ``"triton"`` on a CUDA device when Triton is installed.

    Args:
        methods (sequence of str): the preset's methods.
        device (torch.device): where the sweep runs.

    Returns:
        tuple of str: the methods.
    """
    if device.type != "cuda" or "triton" in methods or importlib.util.find_spec("triton") is None:
        return tuple(methods)
    return (*methods, "triton")
