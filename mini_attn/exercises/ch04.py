"""Checkers for the exercises of chapter 4, "Self-attention"."""

from __future__ import annotations

import torch
from torch import nn

from .._validation import fmt_shape
from ..attention.self_attention import SelfAttention
from ..core.masks import causal_mask
from ..core.positional import sinusoidal_positional_encoding
from ._core import CheckFailed, call, expect_close, passed

__all__ = ["check_causal_mask", "check_encoder_block", "check_positional_encoding"]


def check_positional_encoding(fn) -> None:
    """Exercise 4.1: ``fn(n_positions, dim) -> (n_positions, dim)``, ``dim`` even.

    ``PE[p, 2i] = sin(p / 10000^(2i/dim))`` and ``PE[p, 2i+1] = cos(p / 10000^(2i/dim))``.
    """
    cases = [
        ("4 positions, dim 2", 4, 2),
        ("10 positions, dim 8", 10, 8),
        ("50 positions, dim 16", 50, 16),
        ("one position, dim 6", 1, 6),
        ("200 positions, dim 64", 200, 64),
    ]

    def hint_for(n_positions, dim):
        expected = sinusoidal_positional_encoding(n_positions, dim, dtype=torch.float64)
        sines, cosines = expected[:, 0::2], expected[:, 1::2]
        # a frequent slip: the column index j in the exponent instead of the pair index 2i
        j = torch.arange(dim, dtype=torch.float64)
        angles = torch.arange(n_positions, dtype=torch.float64)[:, None] / 10000 ** (j / dim)
        by_column = torch.where(j % 2 == 0, torch.sin(angles), torch.cos(angles))
        # and a wrong exponent: p · 10000^(2i/dim) instead of p / 10000^(2i/dim)
        pairs = torch.arange(0, dim, 2, dtype=torch.float64)
        inverted = torch.arange(n_positions, dtype=torch.float64)[:, None] * 10000 ** (pairs / dim)

        def interleave(angles):
            return torch.stack([torch.sin(angles), torch.cos(angles)], -1).flatten(-2)

        positions = torch.arange(n_positions, dtype=torch.float64)[:, None]
        halved = positions / 10000 ** (pairs / 2 / dim)  # 10000^(i/dim), i the pair number
        wrong = {
            "positions start at 0: the first row is sin(0) = 0, cos(0) = 1.": interleave(
                (positions + 1) / 10000 ** (pairs / dim)
            ),
            "the exponent is 2i/dim, with i the number of the pair (0, 1, ...): yours "
            "turns too fast, as with i/dim.": interleave(halved),
            "every pair turns at the same speed: the exponent 2i/dim must be a fraction "
            "(integer division 2i // dim is 0).": interleave(positions.expand(-1, dim // 2)),
            "sin and cos are swapped: even columns (0, 2, ...) hold the sines, odd ones the "
            "cosines.": torch.stack([cosines, sines], dim=-1).flatten(-2),
            "your encoding puts all the sines first, then all the cosines; they alternate "
            "(interleave them: column 2i is a sine, column 2i+1 the cosine of the same "
            "angle).": torch.cat([sines, cosines], dim=-1),
            "columns 2i and 2i+1 must share one frequency, 1 / 10000^(2i/dim); your odd "
            "columns use the exponent (2i+1)/dim.": by_column,
            "divide the position by 10000^(2i/dim), do not multiply: the wavelengths grow "
            "with i.": torch.stack([torch.sin(inverted), torch.cos(inverted)], -1).flatten(-2),
        }

        def hint(got):
            got = got.detach().to("cpu", torch.float64)
            for message, candidate in wrong.items():
                if candidate.shape == got.shape and torch.allclose(got, candidate, atol=1e-4):
                    return message
            return None

        return hint

    for case, n_positions, dim in cases:
        expected = sinusoidal_positional_encoding(n_positions, dim)
        got = call(fn, case, n_positions, dim)
        if isinstance(got, torch.Tensor) and not got.is_floating_point():
            raise CheckFailed(f"case '{case}': return a floating-point tensor, got {got.dtype}")
        expect_close(case, got, expected, what="the encoding", hint=hint_for(n_positions, dim))
    passed("positional_encoding", len(cases))


def check_causal_mask(fn) -> None:
    """Exercise 4.2: ``fn(n_queries, n_keys) -> (n_queries, n_keys)`` boolean.

    ``True`` where query ``i`` may attend to key ``j``, that is ``j ≤ i``, top-left aligned
    as PyTorch's ``is_causal`` (also when the two sizes differ).
    """
    cases = [
        ("4 queries, 4 keys", 4, 4),
        ("3 queries, 6 keys", 3, 6),
        ("6 queries, 3 keys", 6, 3),
        ("1 query, 1 key", 1, 1),
        ("1 query, 5 keys", 1, 5),
    ]
    for case, n_queries, n_keys in cases:
        expected = causal_mask(n_queries, n_keys)
        got = call(fn, case, n_queries, n_keys)
        if not isinstance(got, torch.Tensor):
            raise CheckFailed(f"case '{case}': return a torch.Tensor, got {type(got).__name__}")
        if got.dtype != torch.bool:
            raise CheckFailed(
                f"case '{case}': return a boolean tensor (True where a query may attend), got "
                f"dtype {got.dtype}. A comparison such as `j <= i` gives one directly."
            )
        if tuple(got.shape) != (n_queries, n_keys):
            raise CheckFailed(
                f"case '{case}': the mask should have shape {fmt_shape(expected.shape)} "
                f"(queries × keys), got {fmt_shape(got.shape)}"
            )
        if torch.equal(got, expected):
            continue
        full = torch.ones(n_queries, n_keys, dtype=torch.bool)
        hints = [
            (full.tril(-1), "a query may attend to its own position: keep the diagonal."),
            (~expected, "your mask is inverted: True means 'may attend' (j ≤ i)."),
            (
                full.triu(),
                "that is the upper triangle: query i may attend to keys j ≤ i, on "
                "and below the diagonal.",
            ),
            (
                full.tril(n_keys - n_queries),
                "your diagonal is aligned at the bottom right (query i sees keys 0 … "
                "i + S - L). That is a legitimate convention elsewhere: decoding with a cache, "
                "where the L queries are the last L of S positions, needs it (PyTorch's "
                "causal_lower_right, FlashAttention ≥ 2.1). This exercise asks for the "
                "top-left alignment of PyTorch's is_causal (and of ma.causal_mask): query i "
                "sees keys 0 … i, whatever the number of keys.",
            ),
        ]
        hint = next((text for mask, text in hints if torch.equal(got, mask)), None)
        wrong = (got != expected).nonzero()[0].tolist()
        raise CheckFailed(
            f"case '{case}': wrong value at (query {wrong[0]}, key {wrong[1]}): expected "
            f"{bool(expected[wrong[0], wrong[1]])}, got {bool(got[wrong[0], wrong[1]])}.\n"
            f"  expected:\n{expected.int()}\n  got:\n{got.int()}"
            + (f"\nHint: {hint}" if hint else "")
        )
    passed("causal_mask", len(cases))


def _block_parts(embed_dim: int, seed: int):
    with torch.random.fork_rng(devices=[]):  # seeded parts, the learner's RNG untouched
        torch.manual_seed(seed)
        return _make_block_parts(embed_dim)


def _make_block_parts(embed_dim: int):
    attention = SelfAttention(embed_dim)
    norm1, norm2 = nn.LayerNorm(embed_dim), nn.LayerNorm(embed_dim)
    with torch.no_grad():  # non-trivial norms, so that forgetting one shows
        for norm in (norm1, norm2):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    mlp = nn.Sequential(
        nn.Linear(embed_dim, 2 * embed_dim), nn.GELU(), nn.Linear(2 * embed_dim, embed_dim)
    )
    return attention, norm1, mlp, norm2


def check_encoder_block(fn) -> None:
    """Exercise 4.3: ``fn(x (..., N, E), attention, norm1, mlp, norm2) -> (..., N, E)``.

    A pre-norm block: ``h = x + attention(norm1(x))[0]``, then ``h + mlp(norm2(h))``.
    ``attention`` returns ``(output, weights)``.
    """
    g = torch.Generator().manual_seed(4)
    cases = [
        ("B=2, N=5, E=8", torch.randn(2, 5, 8, generator=g), 8, 0),
        ("one sequence, N=1", torch.randn(1, 1, 8, generator=g), 8, 1),
        ("batch dims (3, 2), N=4, E=6", torch.randn(3, 2, 4, 6, generator=g), 6, 2),
    ]
    for case, x, embed_dim, seed in cases:
        attention, norm1, mlp, norm2 = _block_parts(embed_dim, seed)
        with torch.no_grad():
            h = x + attention(norm1(x))[0]
            expected = h + mlp(norm2(h))
            post = norm1(x + attention(x)[0])
            post = norm2(post + mlp(post))
            wrong = {
                "that is a post-norm block (normalise after adding); this exercise's block "
                "normalises the input of each branch: x + attention(norm1(x)).": post,
                "the residual connections are missing: add each branch's input back, "
                "x + attention(norm1(x)), then h + mlp(norm2(h)).": mlp(
                    norm2(attention(norm1(x))[0])
                ),
                "the second residual is missing: return h + mlp(norm2(h)).": mlp(norm2(h)),
                "the first residual is missing: h = x + attention(norm1(x))[0].": (
                    attention(norm1(x))[0] + mlp(norm2(attention(norm1(x))[0]))
                ),
                "the MLP branch must read h, the output of the attention branch, not x: "
                "the two branches run one after the other (h = x + attention(norm1(x))[0], "
                "then h + mlp(norm2(h))).": x + attention(norm1(x))[0] + mlp(norm2(x)),
                "the MLP branch has its own LayerNorm: normalise h with norm2, not norm1.": (
                    h + mlp(norm1(h))
                ),
                "add the residual to the un-normalised x, not to norm1(x).": (
                    norm1(x)
                    + attention(norm1(x))[0]
                    + mlp(norm2(norm1(x) + attention(norm1(x))[0]))
                ),
            }

        def hint(got, wrong=wrong):
            got = got.detach()
            return next(
                (
                    m
                    for m, c in wrong.items()
                    if c.shape == got.shape and torch.allclose(got, c, atol=1e-5)
                ),
                None,
            )

        try:
            got = call(fn, case, x.clone(), attention, norm1, mlp, norm2)
        except CheckFailed as failure:
            if not isinstance(failure.__cause__, TypeError) or "tuple" not in str(failure):
                raise
            raise CheckFailed(
                f"{failure}\nHint: attention(h) returns a pair (output, weights); keep the "
                "output: attended, _ = attention(norm1(x))."
            ) from failure.__cause__
        if isinstance(got, tuple):
            raise CheckFailed(
                f"case '{case}': return the block's output, a tensor of shape "
                f"{fmt_shape(expected.shape)}, not a tuple (attention returns a pair, the block "
                "does not)."
            )
        expect_close(case, got, expected, what="the block's output", hint=hint)
    passed("encoder_block", len(cases))
