"""Sequence-to-sequence tasks whose attention patterns can be read (chapter 4).

Every example is a sequence of random tokens, and the target at position ``i`` is a token of
the same sequence: reversing reads position ``N - 1 - i`` (a pattern that depends on
positions only), sorting reads the token of rank ``i`` (a pattern that depends on content).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..._validation import check_tensor, fmt_shape

__all__ = [
    "SEQUENCE_TASKS",
    "SequenceData",
    "make_sequences",
    "sequence_accuracy",
    "sequence_target",
]

SEQUENCE_TASKS = ("reverse", "sort")


class SequenceData(NamedTuple):
    """Token sequences and their targets, both integer tensors of shape ``(n, N)``."""

    inputs: torch.Tensor
    targets: torch.Tensor


def sequence_target(inputs: torch.Tensor, task: str = "reverse") -> torch.Tensor:
    """The target of a task for each input sequence.

    Args:
        inputs (Tensor): integer tokens, shape :math:`(..., N)`.
        task (str): ``"reverse"`` (position ``i`` gets token ``N - 1 - i``) or ``"sort"``
            (the tokens in increasing order). Default: ``"reverse"``.

    Returns:
        Tensor: same shape and dtype as ``inputs``.
    """
    check_tensor(inputs, "inputs", min_ndim=1)
    if inputs.is_floating_point() or inputs.dtype == torch.bool:
        raise TypeError(f"inputs must hold integer tokens, got dtype {inputs.dtype}")
    if task == "reverse":
        return inputs.flip(-1)
    if task == "sort":
        return inputs.sort(dim=-1).values
    raise ValueError(f"task must be one of {SEQUENCE_TASKS}, got {task!r}")


def make_sequences(
    n_sequences: int,
    length: int,
    *,
    vocab_size: int = 10,
    task: str = "reverse",
    seed: int = 0,
) -> SequenceData:
    """Draw random token sequences and their targets.

    Each token is drawn uniformly from ``0 .. vocab_size - 1``, independently.

    Args:
        n_sequences (int): the number of sequences ``n``.
        length (int): the length ``N`` of every sequence.
        vocab_size (int): the number of distinct tokens. Default: 10.
        task (str): ``"reverse"`` or ``"sort"``, see :func:`sequence_target`.
            Default: ``"reverse"``.
        seed (int): the seed; the same seed gives the same data. Default: 0.

    Returns:
        SequenceData: ``inputs`` and ``targets``, both int64 of shape :math:`(n, N)`.
    """
    if n_sequences < 1 or length < 1 or vocab_size < 2:
        raise ValueError(
            "need n_sequences >= 1, length >= 1 and vocab_size >= 2, got "
            f"n_sequences={n_sequences}, length={length}, vocab_size={vocab_size}"
        )
    if task not in SEQUENCE_TASKS:
        raise ValueError(f"task must be one of {SEQUENCE_TASKS}, got {task!r}")
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randint(vocab_size, (n_sequences, length), generator=g)  # (n, N)
    return SequenceData(inputs, sequence_target(inputs, task))


def sequence_accuracy(predictions: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """The fraction of correct tokens, and of sequences with every token correct.

    Args:
        predictions (Tensor): predicted tokens, shape :math:`(..., N)` (for example
            ``logits.argmax(-1)``).
        targets (Tensor): the target tokens, same shape.

    Returns:
        (float, float): token accuracy and sequence accuracy, both in ``[0, 1]``.
    """
    check_tensor(predictions, "predictions", min_ndim=1)
    check_tensor(targets, "targets", min_ndim=1)
    if predictions.shape != targets.shape:
        raise ValueError(
            f"predictions {fmt_shape(predictions.shape)} and targets {fmt_shape(targets.shape)} "
            "must have the same shape (did you forget .argmax(-1) on the logits?)"
        )
    correct = predictions == targets  # (..., N)
    return correct.float().mean().item(), correct.all(dim=-1).float().mean().item()
