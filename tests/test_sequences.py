"""The sequence tasks of chapter 4: targets, determinism, accuracy."""

from __future__ import annotations

import pytest
import torch

import mini_attn as ma


def test_reverse_and_sort_targets():
    inputs = torch.tensor([[3, 1, 2, 1], [0, 9, 4, 4]])
    assert ma.tasks.sequence_target(inputs, "reverse").tolist() == [[1, 2, 1, 3], [4, 4, 9, 0]]
    assert ma.tasks.sequence_target(inputs, "sort").tolist() == [[1, 1, 2, 3], [0, 4, 4, 9]]


@pytest.mark.parametrize("task", ma.tasks.SEQUENCE_TASKS)
def test_make_sequences(task):
    data = ma.tasks.make_sequences(50, 7, vocab_size=5, task=task, seed=3)
    assert isinstance(data, ma.tasks.SequenceData)
    assert data.inputs.shape == data.targets.shape == (50, 7)
    assert data.inputs.dtype == torch.int64
    assert data.inputs.min() >= 0 and data.inputs.max() < 5
    assert torch.equal(data.targets, ma.tasks.sequence_target(data.inputs, task))
    # the targets are a rearrangement of each input sequence
    assert torch.equal(data.targets.sort(-1).values, data.inputs.sort(-1).values)


def test_make_sequences_is_deterministic():
    a, b = ma.tasks.make_sequences(20, 6, seed=1), ma.tasks.make_sequences(20, 6, seed=1)
    assert torch.equal(a.inputs, b.inputs)
    assert not torch.equal(a.inputs, ma.tasks.make_sequences(20, 6, seed=2).inputs)
    assert len(ma.tasks.make_sequences(1000, 8).inputs.unique()) == 10  # every token of the vocab


def test_sequence_accuracy():
    targets = torch.tensor([[1, 2, 3], [4, 5, 6]])
    predictions = torch.tensor([[1, 2, 3], [4, 0, 6]])
    token, sequence = ma.tasks.sequence_accuracy(predictions, targets)
    assert token == pytest.approx(5 / 6) and sequence == pytest.approx(0.5)
    assert ma.tasks.sequence_accuracy(targets, targets) == (1.0, 1.0)


def test_bad_input():
    with pytest.raises(ValueError, match=r"task must be one of \('reverse', 'sort'\), got 'shift'"):
        ma.tasks.make_sequences(3, 4, task="shift")
    with pytest.raises(ValueError, match="vocab_size=1"):
        ma.tasks.make_sequences(3, 4, vocab_size=1)
    with pytest.raises(TypeError, match="integer tokens"):
        ma.tasks.sequence_target(torch.rand(2, 3))
    with pytest.raises(ValueError, match=r"predictions \(2, 3, 10\) and targets \(2, 3\).*argmax"):
        ma.tasks.sequence_accuracy(torch.rand(2, 3, 10), torch.zeros(2, 3, dtype=torch.long))
