"""A small, generic training loop with a progress bar (chapter 2 onwards).

Every chapter that trains a model uses :func:`train_model`: it takes the model, a function
that computes the loss of one batch, and the batches; it runs the optimiser, shows one
progress bar, evaluates every few steps and returns a :class:`TrainingHistory`.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.std import tqdm  # plain text: renders in a terminal, a notebook and the HTML book

__all__ = ["TrainingHistory", "train_model"]

# no rate or elapsed time in the bar: two runs print the same text
_BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} steps{postfix}"


@dataclass
class TrainingHistory:
    """What :func:`train_model` recorded: the loss of every step and every evaluation.

    Attributes:
        losses (list of float): the training loss of each step, in order.
        eval_steps (list of int): the step count after which each evaluation ran.
        eval_values (list of float): the value ``evaluate(model)`` returned at those steps.
        seconds (float): wall time of the whole loop, evaluations included.
    """

    losses: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_values: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def steps(self) -> int:
        """The number of optimiser steps taken."""
        return len(self.losses)

    def first_step_reaching(self, value: float) -> int | None:
        """The first evaluated step whose value is at least ``value``; None if never.

        The answer is only as fine as the evaluation interval (``eval_every``).
        """
        for step, got in zip(self.eval_steps, self.eval_values, strict=True):
            if got >= value:
                return step
        return None


def _endless(batches: Iterable) -> Iterable:
    """Yield from ``batches`` forever, starting it again when it runs out (a list, a loader)."""
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty or iter(batches) is batches:  # an exhausted iterator cannot be restarted
            raise ValueError(
                "batches ran out: pass a re-iterable (list, DataLoader) or an endless iterator"
            )


def train_model(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
    batches: Iterable,
    *,
    steps: int,
    lr: float | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    clip_grad_norm: float | None = None,
    evaluate: Callable[[torch.nn.Module], float] | None = None,
    eval_every: int = 100,
    stop_at: float | None = None,
    progress: bool = True,
    desc: str = "training",
) -> TrainingHistory:
    """Train ``model`` for ``steps`` optimiser steps, with a progress bar.

    Each step takes the next batch, computes ``loss = loss_fn(model, batch)``,
    back-propagates and updates the parameters. Every ``eval_every`` steps (and after the
    last one) ``evaluate(model)`` runs in evaluation mode without gradients; its value is
    recorded and shown on the bar, and training stops early once it reaches ``stop_at``.

    Args:
        model (Module): the model; put in training mode while it trains.
        loss_fn (callable): ``loss_fn(model, batch)`` returns the scalar loss of a batch.
        batches (iterable): the batches, in order. A list or a ``DataLoader`` is started
            again when it runs out; an iterator must be endless.
        steps (int): the largest number of optimiser steps.
        lr (float, optional): the learning rate of the default optimiser,
            :class:`torch.optim.Adam`. Default: None, Adam's own 1e-3.
        optimizer (Optimizer, optional): use this optimiser instead (then leave ``lr``
            out: it only sets the default optimiser).
        clip_grad_norm (float, optional): clip the gradient norm to this value before
            each update. Default: None, no clipping.
        evaluate (callable, optional): ``evaluate(model)`` returns a number to record
            (for example the validation accuracy), larger is better.
        eval_every (int): evaluate after every this many steps. Default: 100.
        stop_at (float, optional): stop once ``evaluate`` returns at least this value.
        progress (bool): show the progress bar on ``stderr``. In a terminal it moves as
            training goes; elsewhere (a notebook, a log file) it prints its first and last
            state only. Default: True.
        desc (str): the label of the progress bar. Default: ``"training"``.

    Returns:
        TrainingHistory: the loss of every step, the evaluations and the wall time.

    Raises:
        ValueError: ``steps`` or ``eval_every`` is not positive, ``stop_at`` is given
            without ``evaluate``, both ``optimizer`` and ``lr`` are given, the loss is not
            a finite scalar, or the batches run out.
    """
    if steps < 1 or eval_every < 1:
        raise ValueError(f"steps and eval_every must be positive, got {steps} and {eval_every}")
    if stop_at is not None and evaluate is None:
        raise ValueError("stop_at needs an evaluate function to compare with")
    if optimizer is not None and lr is not None:
        raise ValueError("pass either optimizer or lr, not both (lr only sets the default Adam)")
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3 if lr is None else lr)

    history = TrainingHistory()
    start = time.perf_counter()
    # In a terminal the bar moves; elsewhere (a notebook, a log) it prints its first and last
    # state only, so the output is short and the same on every run.
    interactive = sys.stderr.isatty()
    bar = tqdm(
        total=steps,
        desc=desc,
        disable=not progress,
        mininterval=0.5 if interactive else math.inf,
        maxinterval=10.0 if interactive else math.inf,
        bar_format=_BAR_FORMAT,
    )
    model.train()
    for step, batch in enumerate(_endless(batches), start=1):
        loss = loss_fn(model, batch)
        if loss.dim() != 0 or not torch.isfinite(loss):
            bar.close()
            raise ValueError(f"loss_fn must return a finite scalar, got {loss} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        optimizer.step()
        history.losses.append(loss.item())
        postfix = {"loss": f"{history.losses[-1]:.3f}"}

        done = step == steps
        if evaluate is not None and (step % eval_every == 0 or done):
            model.eval()
            with torch.no_grad():
                value = float(evaluate(model))
            model.train()
            history.eval_steps.append(step)
            history.eval_values.append(value)
            done = done or (stop_at is not None and value >= stop_at)
        if history.eval_values:
            postfix["eval"] = f"{history.eval_values[-1]:.4g}"
        bar.set_postfix(postfix, refresh=False)
        bar.update(1)
        if done:
            break
    bar.close()
    model.eval()
    history.seconds = time.perf_counter() - start
    return history
