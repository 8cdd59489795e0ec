"""Exercise 5.2: causal attention over padded keys, the mask built by hand."""

from __future__ import annotations

import contextlib
import functools
import sys

import torch
import torch.nn.functional as F

from ...core import sdpa as _sdpa_module
from ...core.masks import causal_mask, padding_mask
from ...core.sdpa import scaled_dot_product_attention
from .._core import CheckFailed, expect_close, passed
from ._shared import call_with_hint, close, expect_unchanged, when_shape

__all__ = ["check_decoder_attention"]


@contextlib.contextmanager
def _refuse_causal_argument():
    """While the learner's function runs, record calls with ``causal=True`` / ``is_causal``.

    Exercise 5.2 asks for the mask to be built, not for the ``causal`` argument. The
    functions are wrapped only for the duration of the call and always restored.
    """
    used = []

    def ours(*args, causal=False, **kwargs):
        if causal:
            used.append("ma.scaled_dot_product_attention(..., causal=True)")
        return scaled_dot_product_attention(*args, causal=causal, **kwargs)

    torch_sdpa = F.scaled_dot_product_attention

    def theirs(*args, is_causal=False, **kwargs):
        if is_causal:
            used.append("F.scaled_dot_product_attention(..., is_causal=True)")
        return torch_sdpa(*args, is_causal=is_causal, **kwargs)

    package = sys.modules.get("mini_attn")
    targets = [
        (_sdpa_module, "scaled_dot_product_attention", ours),
        (F, "scaled_dot_product_attention", theirs),
    ]
    if package is not None:
        targets.append((package, "scaled_dot_product_attention", ours))
    saved = [(module, name, getattr(module, name)) for module, name, _ in targets]
    for module, name, wrapper in targets:
        setattr(module, name, wrapper)
    try:
        yield used
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


def _mask_crash_hint(batch, n_queries, n_keys):
    def hint(error):
        text = str(error)
        if "mask" in text or "size of tensor" in text or "broadcast" in text:
            return (
                f"build the masks so that they broadcast: the padding as (B, 1, S) = "
                f"({batch}, 1, {n_keys}) (a query axis of size 1), the causal part as "
                f"(L, S) = ({n_queries}, {n_keys}) (ma.causal_mask(L, S), not causal_mask(L)); "
                f"`padding & causal` is then (B, L, S) = ({batch}, {n_queries}, {n_keys})."
            )
        return None

    return hint


def _decoder_hint(got, padding, future, attend, lengths, n_keys):
    """The mask mistake whose output ``got`` reproduces, or None."""
    got = got.detach()
    if torch.isnan(got).any():
        return (
            "a query with no allowed key gives NaN; its output row must be zero "
            "(ma.scaled_dot_product_attention and a masked softmax do that)."
        )
    n_queries = future.shape[0]
    positions = torch.arange(n_keys)
    candidates = [
        (padding, "the causal mask is missing: query i may not see keys j > i."),
        (future, "the padding is not masked: keys j ≥ key_lengths[b] must get no weight."),
        (padding & ~future, "your causal mask is inverted: True (may attend) for j ≤ i."),
        (
            ~padding & future,
            "your padding mask is inverted: True for the real keys j < length.",
        ),
        (
            padding & torch.ones(n_queries, n_keys, dtype=torch.bool).tril(n_keys - n_queries),
            "the causal diagonal is aligned at the bottom right (query i sees keys up "
            "to i + S - L, the convention for decoding with a key/value cache). This "
            "exercise asks for the top-left alignment of ma.causal_mask and PyTorch's "
            "is_causal: query i sees keys 0 … i.",
        ),
        (
            (positions[None, None, :] <= lengths[:, None, None]) & future,
            "off by one in the padding: key_lengths[b] real keys are positions "
            "0 … length - 1, so keep j < length, not j ≤ length.",
        ),
        (
            padding | future,
            "the masks are combined with | (or): a key must be real AND not in the "
            "future, so combine them with &.",
        ),
    ]
    if padding.shape[0] == n_queries:  # (B, S) & (L, S) broadcasts silently if B = L
        candidates.append(
            (
                padding[:, 0, :] & future,
                "the padding mask (B, S) lines its batch axis up with the queries when "
                "B = L: query i gets the padding of sequence i. Give it a query axis: "
                "(B, 1, S).",
            )
        )
    for mask, message in candidates:
        if close(got, attend(mask)):
            return message
    return None


def check_decoder_attention(fn) -> None:
    """Exercise 5.2: ``fn(query (B, L, D), key (B, S, D), value (B, S, Dv), key_lengths (B,))``.

    Causal attention (query ``i`` attends to keys ``j ≤ i``, top-left aligned) that also
    ignores the padding keys ``j ≥ key_lengths[b]``; returns the output ``(B, L, Dv)``, with
    zero rows for queries that may attend to no key. The mask must be built: a call with
    ``causal=True`` (or PyTorch's ``is_causal=True``) is refused, as the exercise says.
    """
    g = torch.Generator().manual_seed(6)

    def qkv(b, n_queries, n_keys, dim=8, value_dim=3):
        return (
            torch.randn(b, n_queries, dim, generator=g),
            torch.randn(b, n_keys, dim, generator=g),
            torch.randn(b, n_keys, value_dim, generator=g),
        )

    cases = [
        ("B=2, L=S=5, lengths [5, 3]", *qkv(2, 5, 5), torch.tensor([5, 3])),
        ("no padding, L=S=4", *qkv(1, 4, 4), torch.tensor([4])),
        ("L=3, S=6, lengths [6, 2]", *qkv(2, 3, 6), torch.tensor([6, 2])),
        ("B=L=3, S=4, lengths [4, 2, 1]", *qkv(3, 3, 4), torch.tensor([4, 2, 1])),
        ("a sequence of length 0", *qkv(2, 4, 4), torch.tensor([4, 0])),
    ]
    for case, q, k, v, lengths in cases:
        batch, n_queries, n_keys = q.shape[0], q.shape[1], k.shape[1]
        padding = padding_mask(lengths, n_keys)  # (B, 1, S)
        future = causal_mask(n_queries, n_keys)
        expected = scaled_dot_product_attention(q, k, v, mask=padding & future)[0]

        def attend(mask, q=q, k=k, v=v):
            return scaled_dot_product_attention(q, k, v, mask=mask)[0]

        hint = functools.partial(
            _decoder_hint,
            padding=padding,
            future=future,
            attend=attend,
            lengths=lengths,
            n_keys=n_keys,
        )

        given = {
            "query": q.clone(),
            "key": k.clone(),
            "value": v.clone(),
            "key_lengths": lengths.clone(),
        }
        originals = {name: x.clone() for name, x in given.items()}
        with _refuse_causal_argument() as used:
            got = call_with_hint(
                fn, case, _mask_crash_hint(batch, n_queries, n_keys), *given.values()
            )
        if used:
            raise CheckFailed(
                f"case '{case}': your function called {used[0]}; the exercise asks you to build "
                "the causal mask yourself (j ≤ i) and combine it with the padding by &."
            )
        expect_unchanged(case, originals, given)
        if isinstance(got, tuple):
            raise CheckFailed(f"case '{case}': return only the output, got a tuple of {len(got)}")
        expect_close(case, got, expected, what="the output", hint=when_shape(hint, expected.shape))
    passed("decoder_attention", len(cases))
