"""Checkers for the exercises of chapter 3, "Hard attention"."""

from __future__ import annotations

import torch

from ..attention.hard import hard_attention, topk_attention
from ._core import CheckFailed, call, expect_close, passed

__all__ = [
    "check_gumbel_max_sample",
    "check_hard_weights",
    "check_reinforce_gradient",
    "check_topk_weights",
]


def _one_hot_argmax(scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The reference one-hot weights of the (masked) argmax, from ``hard_attention``."""
    n_keys = scores.shape[-1]
    eye = torch.eye(n_keys, dtype=scores.dtype)
    weights, _ = hard_attention(
        scores[..., None, :], eye, mask=None if mask is None else mask[..., None, :]
    )
    return weights.squeeze(-2)  # (..., S)


def check_hard_weights(fn) -> None:
    """Exercise 3.1: ``fn(scores (..., S), mask=None) -> (..., S)`` one-hot argmax weights.

    1 at the best-scoring allowed key of each row, 0 elsewhere; a row with every key
    masked gets all zeros.
    """
    g = torch.Generator().manual_seed(30)
    scores = torch.randn(4, 6, generator=g)
    best_masked = torch.ones(4, 6, dtype=torch.bool)
    best_masked[torch.arange(4), scores.argmax(-1)] = False  # forbid every row's best key
    empty_row = best_masked.clone()
    empty_row[2] = False
    batch_scores = torch.randn(2, 3, 5, generator=g)
    batch_mask = torch.rand(3, 5, generator=g) > 0.4
    batch_mask[:, 1] = True
    negative = torch.tensor([[-1.0, -2.0, -0.5], [-3.0, -0.2, -0.1], [0.5, -1.0, 2.0]])
    negative_mask = torch.tensor([[True, True, False], [True, True, False], [False, True, False]])
    cases = [
        ("no mask (mask=None)", scores, None),
        ("the best key of every row is masked", scores, best_masked),
        ("every allowed score is negative", negative, negative_mask),
        ("large scores (1000 and more)", scores * 1000 + 1000, best_masked),
        ("a row with every key masked", scores, empty_row),
        ("batch dims (2, 3, 5) with a (3, 5) mask", batch_scores, batch_mask),
    ]

    def hint_for(s, mask):
        def hint(got):
            if got.shape != s.shape:
                return None
            got = got.detach().float()
            if not torch.isin(got, torch.tensor([0.0, 1.0])).all():
                return "the weights must be 0 or 1 (one-hot), not a softmax."
            if mask is not None:
                empty = ~mask.expand(s.shape).any(dim=-1)
                if empty.any() and got[empty].any():
                    return (
                        "a row with every key masked must get all zeros: the argmax of a row "
                        "of -inf is index 0, so zero those rows afterwards."
                    )
            zeroed = _one_hot_argmax(s * mask).float() if mask is not None else None
            if mask is not None and (
                torch.equal(got, zeroed)
                or torch.equal(got, zeroed * mask.expand(s.shape).any(-1, keepdim=True))
            ):
                return (
                    "multiplying the scores by the mask sets masked scores to 0, which beats "
                    "every negative allowed score: set them to -inf with masked_fill instead."
                )
            if mask is not None and torch.equal(got, _one_hot_argmax(s).float()):
                return (
                    "masked keys (mask False) must never be chosen: set their scores to -inf "
                    "(and check that the mask is not inverted: True means 'may be chosen')."
                )
            if mask is not None and (got * (~mask).float()).sum() > 0:
                return "your mask is inverted, or ignored: True means 'may be chosen'."
            if torch.equal(got, _one_hot_argmax(-s, mask).float()):
                return "you chose the smallest score: use argmax, not argmin."
            return None

        return hint

    for case, s, mask in cases:
        expected = _one_hot_argmax(s, mask)
        got = call(fn, case, s.clone(), None if mask is None else mask.clone())
        expect_close(case, got, expected, what="the weights", hint=hint_for(s, mask))
    passed("hard_weights", len(cases))


def _reinforce_reference(scores, index, loss, baseline) -> torch.Tensor:
    probs = torch.softmax(scores, dim=-1)
    one_hot = torch.nn.functional.one_hot(index, scores.shape[-1]).to(scores.dtype)
    return torch.as_tensor(loss - baseline, dtype=scores.dtype)[..., None] * (one_hot - probs)


def check_reinforce_gradient(fn) -> None:
    """Exercise 3.2: ``fn(scores (..., S), index (...), loss (...), baseline) -> (..., S)``.

    The REINFORCE estimate ``(loss - baseline) · (one_hot(index) - softmax(scores))``.
    """
    g = torch.Generator().manual_seed(31)
    row = torch.randn(5, generator=g)
    rows = torch.randn(4, 6, generator=g)
    batch = torch.randn(2, 3, 4, generator=g)
    cases = [
        ("one row, baseline 0", row, torch.tensor(2), torch.tensor(1.7), 0.0),
        (
            "four rows, baseline 1.5",
            rows,
            torch.tensor([0, 5, 2, 2]),
            torch.tensor([2.0, 0.5, 1.0, 3.0]),
            1.5,
        ),
        (
            "batch (2, 3), one baseline per row",
            batch,
            torch.tensor([[0, 1, 3], [2, 2, 0]]),
            torch.tensor([[1.0, 2.0, 0.3], [0.7, 2.5, 1.1]]),
            torch.tensor([[1.2, 1.2, 1.2], [0.9, 0.8, 1.0]]),
        ),
        (
            "large scores (500 and more)",
            rows * 100 + 500,
            torch.tensor([1, 1, 4, 0]),
            torch.tensor([0.2, 1.0, 2.0, 0.1]),
            0.5,
        ),
    ]
    for case, s, index, loss, baseline in cases:
        expected = _reinforce_reference(s, index, loss, baseline)

        def hint(got, s=s, index=index, loss=loss, baseline=baseline, expected=expected):
            if torch.isnan(got).any():
                return "NaN: compute the probabilities with torch.softmax, which is stable."
            if torch.allclose(got, -expected, atol=1e-5):
                return "the sign is flipped: the estimate is (loss - baseline) · (one_hot - p)."
            if torch.allclose(got, _reinforce_reference(s, index, loss, 0.0), atol=1e-5):
                return "subtract the baseline from the loss."
            advantage = torch.as_tensor(loss - baseline, dtype=s.dtype)[..., None]
            one_hot = torch.nn.functional.one_hot(index, s.shape[-1]).to(s.dtype)
            if torch.allclose(got, advantage * one_hot, atol=1e-5):
                return "∇ log p_i is one_hot(i) - p, not one_hot(i): subtract the probabilities."
            probs = torch.softmax(s, -1)
            p_drawn = probs.gather(-1, index[..., None])
            if torch.allclose(got, p_drawn * expected, atol=1e-5):
                return (
                    "this is (loss - baseline) · ∇p_i, the gradient of the probability; "
                    "REINFORCE uses ∇ log p_i = ∇p_i / p_i = one_hot(i) - p."
                )
            if torch.allclose(got, advantage * (one_hot - 1), atol=1e-5) or torch.allclose(
                got, advantage * (1 - torch.softmax(s, -1)) * one_hot, atol=1e-5
            ):
                return "every score gets a gradient: -p_j for the keys not drawn."
            return None

        try:
            got = call(fn, case, s.clone(), index.clone(), loss.clone(), baseline)
        except CheckFailed as failure:
            if not isinstance(failure.__cause__, RuntimeError) or "size of tensor" not in str(
                failure
            ):
                raise
            raise CheckFailed(
                f"{failure}\nHint: scores has shape {tuple(s.shape)} and loss - baseline has "
                f"shape {tuple(loss.shape)}: give the factor a last dimension of size 1, "
                "(loss - baseline)[..., None], so that each row of scores gets its own factor."
            ) from failure.__cause__
        if isinstance(got, torch.Tensor) and got.shape != s.shape:
            expect_close(case, got, expected, what="the gradient estimate")
        expect_close(case, got, expected, what="the gradient estimate", hint=hint)
    passed("reinforce_gradient", len(cases))


def _frequency_tolerance(probs: torch.Tensor, n: int) -> torch.Tensor:
    """Five standard deviations of a binomial frequency, plus a little slack."""
    return 5 * torch.sqrt(probs * (1 - probs) / n) + 2e-3


def _noise_shared_across_rows(fn, scores: torch.Tensor, n: int) -> bool:
    """Whether ``fn`` draws one key for every row that still changes with the seed."""
    keys = set()
    for seed in range(20, 40):
        try:
            draws = fn(scores.expand(n, -1), torch.Generator().manual_seed(seed))
            keys.update(torch.as_tensor(draws).flatten().long().unique().tolist())
        except Exception:  # a crash here only means: no hint
            return False
        if len(keys) > 1:
            return True
    return False


def check_gumbel_max_sample(fn) -> None:
    """Exercise 3.3: ``fn(scores (..., S), generator) -> (...)`` int64 draws from the softmax.

    Counts the draws over many rows and compares the frequencies with the softmax. The
    learner's global RNG is left as it was, even if ``fn`` draws from it.
    """
    with torch.random.fork_rng(devices=[]):
        _check_gumbel_max_sample(fn)


def _check_gumbel_max_sample(fn) -> None:
    n = 20_000
    shape_case = "scores of shape (2, 3, 5)"
    got = call(fn, shape_case, torch.randn(2, 3, 5), torch.Generator().manual_seed(0))
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != (2, 3):
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        raise CheckFailed(
            f"case '{shape_case}': expected indices of shape (2, 3), got {shape}. Take the "
            "argmax over the last dimension."
        )
    if got.is_floating_point() or got.dtype == torch.bool:
        raise CheckFailed(f"case '{shape_case}': the indices must be integers, got {got.dtype}")

    same_case = "the same generator seed twice"
    s = torch.randn(50, 4, generator=torch.Generator().manual_seed(1))
    first = call(fn, same_case, s, torch.Generator().manual_seed(7))
    again = call(fn, same_case, s, torch.Generator().manual_seed(7))
    if not torch.equal(first, again):
        raise CheckFailed(
            f"case '{same_case}': two calls with generators of the same seed gave different "
            "draws. Draw the noise with torch.rand(..., generator=generator)."
        )

    cases = [
        ("five keys", torch.tensor([1.0, 0.0, 2.0, -0.5, 0.5])),
        ("an unlikely key", torch.tensor([3.0, -2.0, 2.5])),
        ("large scores (1000 and more)", torch.tensor([1000.0, 1001.0, 999.0])),
    ]
    for i, (case, scores) in enumerate(cases):
        draws = call(fn, case, scores.expand(n, -1), torch.Generator().manual_seed(10 + i))
        probs = torch.softmax(scores, dim=-1)
        freq = torch.bincount(draws.flatten().long(), minlength=len(scores))[: len(scores)] / n
        if ((freq - probs).abs() <= _frequency_tolerance(probs, n)).all():
            continue
        message = (
            f"case '{case}': over {n} draws the frequencies are "
            f"{[round(f, 3) for f in freq.tolist()]}, but softmax(scores) is "
            f"{[round(p, 3) for p in probs.tolist()]}."
        )
        if freq.max() == 1.0 and _noise_shared_across_rows(fn, scores, n):
            message += (
                "\nHint: every row drew the same key, and that key changes with the seed: "
                "one noise vector is shared by all the rows. Draw one noise value per "
                "score, torch.rand(scores.shape, generator=generator)."
            )
        elif freq.max() == 1.0:
            message += (
                "\nHint: every draw is the same key: add Gumbel noise g = -log(-log U), U uniform "
                "in (0, 1), to the scores before the argmax (it must be able to change the order)."
            )
        else:
            message += (
                "\nHint: the noise must be Gumbel, g = -log(-log U) with U uniform in (0, 1), "
                "added to the scores themselves (no scaling)."
            )
        raise CheckFailed(message)
    passed("gumbel_max_sample", len(cases) + 2)


def check_topk_weights(fn) -> None:
    """Exercise 3.4: ``fn(scores (..., S), k) -> (..., S)``: a softmax over the k best keys.

    The weights are the softmax of the ``k`` largest scores of each row, at their positions,
    and 0 elsewhere.
    """
    g = torch.Generator().manual_seed(34)
    row = torch.randn(1, 5, generator=g)
    rows = torch.randn(4, 7, generator=g)
    batch = torch.randn(2, 3, 6, generator=g)
    cases = [
        ("one row, k = 2", row, 2),
        ("k = 1 (hard attention)", rows, 1),
        ("k = S (soft attention)", rows, 7),
        ("batch (2, 3, 6), k = 3", batch, 3),
        ("large scores (1000 and more), k = 4", rows * 1000 + 1000, 4),
    ]
    for case, s, k in cases:
        _, expected = topk_attention(s, torch.eye(s.shape[-1]), k)

        def hint(got, s=s, k=k):
            if got.shape[:-1] == s.shape[:-1] and got.shape[-1] == k != s.shape[-1]:
                return (
                    f"your rows have k = {k} entries: scatter the softmax of the k best scores "
                    "back to their positions in a row of S zeros."
                )
            if got.shape != s.shape:
                return None
            if torch.isnan(got).any():
                return "NaN: a softmax of large scores needs the maximum subtracted first."
            if ((got.abs() > 1e-6).sum(-1) > k).any():
                return f"more than k = {k} weights are non-zero in a row: zero all the others."
            sums = got.sum(-1)
            if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
                return (
                    "each row must sum to 1: take the softmax over the k kept scores only, "
                    "not over all the scores before zeroing."
                )
            _, smallest = topk_attention(-s, torch.eye(s.shape[-1]), k)
            if (got.abs() > 1e-6).eq(smallest > 0).all():
                return "you kept the k smallest scores: keep the k largest."
            return None

        got = call(fn, case, s.clone(), k)
        expect_close(case, got, expected, what="the weights", hint=hint)
    passed("topk_weights", len(cases))
