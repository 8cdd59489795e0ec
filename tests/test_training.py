"""train_model: lowers the loss, evaluates on schedule, stops early, refuses bad input."""

from __future__ import annotations

import re
import time

import pytest
import torch

import mini_attn as ma


def _regression_batches(n_batches=8, seed=0):
    """Batches of a noiseless linear map y = x W, so a linear model can fit it exactly."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(3, 2, generator=g)
    batches = []
    for _ in range(n_batches):
        x = torch.randn(16, 3, generator=g)
        batches.append((x, x @ weight))
    return batches


def _mse(model, batch):
    x, y = batch
    return torch.nn.functional.mse_loss(model(x), y)


def test_training_lowers_the_loss_and_records_every_step():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    history = ma.tasks.train_model(
        model, _mse, _regression_batches(), steps=200, lr=0.05, progress=False
    )
    assert history.steps == 200 and len(history.losses) == 200
    assert history.losses[-1] < 0.01 * history.losses[0]
    assert history.seconds > 0
    assert not model.training, "the model is left in evaluation mode"


def test_evaluations_run_on_schedule_without_gradients_in_eval_mode():
    seen = []

    def evaluate(model):
        seen.append((model.training, torch.is_grad_enabled()))
        return 0.5

    history = ma.tasks.train_model(
        torch.nn.Linear(3, 2), _mse, _regression_batches(), steps=25, evaluate=evaluate,
        eval_every=10, progress=False,
    )  # fmt: skip
    assert history.eval_steps == [10, 20, 25]  # and once after the last step
    assert history.eval_values == [0.5, 0.5, 0.5]
    assert seen == [(False, False)] * 3


def test_stop_at_ends_training_early():
    values = iter([0.2, 0.6, 0.99, 1.0])
    history = ma.tasks.train_model(
        torch.nn.Linear(3, 2), _mse, _regression_batches(), steps=100,
        evaluate=lambda model: next(values), eval_every=5, stop_at=0.95, progress=False,
    )  # fmt: skip
    assert history.steps == 15
    assert history.eval_steps == [5, 10, 15]
    assert history.first_step_reaching(0.5) == 10
    assert history.first_step_reaching(0.95) == 15
    assert history.first_step_reaching(1.5) is None


def test_a_list_of_batches_is_cycled_in_order():
    seen = []

    def loss_fn(model, batch):
        seen.append(batch)
        return model(torch.ones(1, 1)).sum() * 0 + float(batch)

    ma.tasks.train_model(torch.nn.Linear(1, 1), loss_fn, [1, 2, 3], steps=7, progress=False)
    assert seen == [1, 2, 3, 1, 2, 3, 1]


def test_a_custom_optimizer_is_used():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: nothing may change
    before = [p.detach().clone() for p in model.parameters()]
    ma.tasks.train_model(
        model, _mse, _regression_batches(), steps=5, optimizer=optimizer, progress=False
    )
    for old, new in zip(before, model.parameters(), strict=True):
        assert torch.equal(old, new)


def test_gradient_clipping_bounds_the_update():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    batch = (torch.ones(1, 1), torch.full((1, 1), 1e6))  # a huge gradient
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    ma.tasks.train_model(
        model, _mse, [batch], steps=1, optimizer=optimizer, clip_grad_norm=0.5, progress=False
    )
    torch.testing.assert_close(model.weight.abs(), torch.tensor([[0.5]]))


def test_progress_bar_prints_its_first_and_last_state_outside_a_terminal(capsys):
    def slow_mse(model, batch):
        time.sleep(0.01)  # 40 steps take longer than any refresh interval of a terminal bar
        return _mse(model, batch)

    ma.tasks.train_model(
        torch.nn.Linear(3, 2), slow_mse, _regression_batches(), steps=40, desc="fit"
    )
    states = [s for s in re.split(r"[\r\n]+", capsys.readouterr().err) if s.strip()]
    assert len(states) == 2, f"expected the first and the last state only, got {states}"
    assert states[0].startswith("fit:   0%") and "0/40 steps" in states[0]
    assert states[1].startswith("fit: 100%") and "40/40 steps, loss=" in states[1]
    assert "it/s" not in states[1] and "s/it" not in states[1], "no timings: runs print the same"


def test_bad_arguments_are_refused():
    model = torch.nn.Linear(3, 2)
    batches = _regression_batches()
    with pytest.raises(ValueError, match="steps and eval_every must be positive"):
        ma.tasks.train_model(model, _mse, batches, steps=0)
    with pytest.raises(ValueError, match="stop_at needs an evaluate"):
        ma.tasks.train_model(model, _mse, batches, steps=5, stop_at=0.9)
    with pytest.raises(ValueError, match="either optimizer or lr"):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        ma.tasks.train_model(model, _mse, batches, steps=5, lr=0.1, optimizer=optimizer)


def test_bad_loss_and_exhausted_iterator_are_reported():
    model = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match="finite scalar"):
        ma.tasks.train_model(
            model, lambda m, b: m(b[0]) - b[1], _regression_batches(), steps=3, progress=False
        )
    with pytest.raises(ValueError, match="finite scalar"):
        ma.tasks.train_model(
            model, lambda m, b: _mse(m, b) * float("nan"), _regression_batches(), steps=3,
            progress=False,
        )  # fmt: skip
    with pytest.raises(ValueError, match="batches ran out"):
        ma.tasks.train_model(model, _mse, iter(_regression_batches(2)), steps=5, progress=False)


def _train_small_translator(n_threads: int) -> list[torch.Tensor]:
    """Chapter 2's training (the date task, Seq2Seq, Adam, clipping) at reduced size."""
    train, _, _ = ma.tasks.make_dates(n_train=300, n_validation=5, n_test=5, seed=0)
    with ma.threads(n_threads):
        ma.seed_everything(0)
        model = ma.tasks.Seq2Seq(
            train.source_tokenizer.vocab_size, train.target_tokenizer.vocab_size
        )
        ma.tasks.train_model(
            model,
            ma.tasks.seq2seq_loss,
            train.batches(64, seed=0),
            steps=8,
            lr=6e-3,
            clip_grad_norm=1.0,
            progress=False,
        )
    return [p.detach().clone() for p in model.parameters()]


def test_chapter_2s_training_is_bit_for_bit_repeatable_on_one_thread():
    """Chapter 2 trains under ``ma.threads(1)``: two runs must give the very same weights
    (with two threads PyTorch may split sums differently, and on the machine this was
    written on the weights did differ, so the chapter pins one)."""
    first, second = _train_small_translator(1), _train_small_translator(1)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    threads_before = torch.get_num_threads()
    two = _train_small_translator(2)
    assert torch.get_num_threads() == threads_before  # ma.threads restored the count
    largest = max((a - b).abs().max().item() for a, b in zip(first, two, strict=True))
    print(f"largest weight difference between 1 and 2 threads: {largest:.3g}")


def test_chapter_2_trains_and_measures_inside_ma_threads_1():
    """Every training and exact-match call of chapter 2 sits in a ``with ma.threads(1):``."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "book" / "02-soft-attention.md").read_text()
    lines = text.splitlines()
    calls = [
        i
        for i, line in enumerate(lines)
        if re.search(r"ma\.tasks\.(train_model|exact_matches)\(", line)
    ]
    assert calls, "chapter 2 no longer trains with ma.tasks.train_model?"
    for i in calls:
        indent = len(lines[i]) - len(lines[i].lstrip())
        above = [line for line in lines[max(0, i - 3) : i] if "with " in line]
        assert any(
            "ma.threads(1)" in line and len(line) - len(line.lstrip()) < indent for line in above
        ), f"chapter 2, line {i + 1}: {lines[i].strip()} is not inside `with ma.threads(1):`"
    assert "set_num_threads" not in text
