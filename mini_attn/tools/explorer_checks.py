"""The input checks of :func:`mini_attn.attention_explorer`, apart from its figure.

Each error names the argument, what it got and what it needs: the weights' shapes against the
tokens, and the starting example, layer and head against the numbers there are.
"""

from __future__ import annotations

import operator

import numpy as np
import torch

from .._validation import fmt_shape

__all__ = ["check_inputs", "check_start", "check_vmax"]


def _as_array(weights, index: int | None) -> np.ndarray:
    name = "weights" if index is None else f"weights[{index}]"
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().to("cpu", torch.float32).numpy()
    array = np.asarray(weights, dtype=np.float32)
    if array.ndim != 4:
        raise ValueError(
            f"{name} must have shape (layers, heads, L, S), got {fmt_shape(array.shape)}; "
            "for one matrix use weights[None, None]"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"{name} has NaN or infinite entries")
    return array


def check_inputs(weights, tokens, key_tokens, titles):
    """Normalise to lists of examples (weights, query tokens, key tokens, titles) and check."""
    if isinstance(weights, (torch.Tensor, np.ndarray)):
        weights, tokens = [weights], [tokens]
        key_tokens = None if key_tokens is None else [key_tokens]
        arrays = [_as_array(weights[0], None)]
    else:
        arrays = [_as_array(w, n) for n, w in enumerate(weights)]
    if len(arrays) == 0:
        raise ValueError("weights is empty: give at least one (layers, heads, L, S) tensor")
    key_tokens = tokens if key_tokens is None else key_tokens
    titles = [f"example {n + 1}" for n in range(len(arrays))] if titles is None else titles
    for name, given in (("tokens", tokens), ("key_tokens", key_tokens), ("titles", titles)):
        if len(given) != len(arrays):
            raise ValueError(f"{name} has {len(given)} entries for {len(arrays)} examples")
    if len(set(titles)) != len(titles):
        raise ValueError(f"titles must be distinct, got {list(titles)}")
    first = arrays[0].shape[:2]
    for n, (array, queries, keys) in enumerate(zip(arrays, tokens, key_tokens, strict=True)):
        layers, heads, n_queries, n_keys = array.shape
        if (layers, heads) != first:
            raise ValueError(
                f"every example needs the same layers and heads: weights[0] has {first}, "
                f"weights[{n}] has {(layers, heads)}"
            )
        if len(queries) != n_queries or len(keys) != n_keys:
            raise ValueError(
                f"example {n}: weights {fmt_shape(array.shape)} needs {n_queries} query tokens "
                f"and {n_keys} key tokens, got {len(queries)} and {len(keys)}"
            )
    return (
        arrays,
        [[str(t) for t in q] for q in tokens],
        [[str(t) for t in k] for k in key_tokens],
        [str(t) for t in titles],
    )


def check_start(arrays, example, layer, head) -> tuple[int, int, int]:
    """The starting (example, layer, head), each an integer index within its range."""
    layers, heads = arrays[0].shape[:2]
    start = []
    for name, value, count in (
        ("example", example, len(arrays)), ("layer", layer, layers), ("head", head, heads)
    ):  # fmt: skip
        try:
            index = None if isinstance(value, bool) else operator.index(value)
        except TypeError:
            index = None
        if index is None or not 0 <= index < count:
            raise ValueError(
                f"{name} must be an integer from 0 to {count - 1} ({count} "
                f"{name}{'s' * (count > 1)} given), got {value!r}"
            )
        start.append(index)
    return tuple(start)


def check_vmax(vmax):
    """None, the string ``"head"``, or a positive finite number."""
    if vmax is None or (isinstance(vmax, str) and vmax == "head"):
        return vmax
    if isinstance(vmax, (str, bool)) or not np.isfinite(vmax) or vmax <= 0:
        raise ValueError(f'vmax must be None, "head" or a positive number, got {vmax!r}')
    return float(vmax)
