"""The encoder block and the tiny encoder of chapter 4, and their training loop.

The attention inside a block is a constructor argument: any module whose
``forward(x, *, mask=None, causal=False)`` returns ``(output, weights)`` with an output of
the same size as ``x`` (:class:`~mini_attn.SelfAttention` with ``head_dim = embed_dim``, or
a multi-head attention module).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn

from ..._validation import check_tensor, fmt_shape
from ...attention.self_attention import SelfAttention
from ...core.positional import sinusoidal_positional_encoding
from ..data.sequences import SequenceData, sequence_accuracy
from ..training import TrainingHistory, train_model

__all__ = [
    "EncoderBlock",
    "TinyEncoder",
    "sequence_batches",
    "token_loss",
    "train_encoder",
]


def _check_residual(attended: torch.Tensor, x: torch.Tensor) -> None:
    """The attention's output must have the shape of its input, for the residual sum."""
    if attended.shape != x.shape:
        raise ValueError(
            f"the attention returned an output of shape {fmt_shape(attended.shape)} for an "
            f"input of shape {fmt_shape(x.shape)}; the residual connection needs them equal"
        )


def _check_tokens(tokens: torch.Tensor, max_length: int) -> None:
    """Integer token ids ``(..., N)`` with ``N <= max_length``."""
    check_tensor(tokens, "tokens", min_ndim=1)
    if tokens.is_floating_point() or tokens.dtype == torch.bool:
        raise TypeError(
            f"tokens must be integer token ids, got dtype {tokens.dtype}"
        )
    if tokens.shape[-1] > max_length:
        raise ValueError(
            f"tokens of shape {fmt_shape(tokens.shape)} are longer than max_length="
            f"{max_length}; build the model with a larger max_length"
        )


class EncoderBlock(nn.Module):
    r"""A pre-norm Transformer encoder block: attention and an MLP, each in a residual branch.

    .. math::

        h = x + \mathrm{Attention}(\mathrm{LayerNorm}_1(x)), \qquad
        y = h + \mathrm{MLP}(\mathrm{LayerNorm}_2(h))

    Normalising the *input* of each branch (pre-norm) rather than the sum (post-norm, as in
    the original Transformer) keeps an identity path from the input to the output, which
    makes small models train reliably without a learning-rate warm-up.

    Args:
        embed_dim (int): the size ``E`` of each position's vector.
        attention (nn.Module): the attention; ``attention(x, mask=..., causal=...)`` must
            return ``(output, weights)`` with ``output`` of shape :math:`(..., N, E)`.
        mlp_dim (int, optional): the hidden size of the MLP. Default: ``4 * embed_dim``.

    Shape legend:

    - ``...``: any batch dimensions
    - ``N``: positions
    - ``E``: embedding size
    """

    def __init__(
        self,
        embed_dim: int,
        attention: nn.Module,
        *,
        mlp_dim: int | None = None,
    ):
        super().__init__()
        mlp_dim = 4 * embed_dim if mlp_dim is None else mlp_dim
        self.norm1 = nn.LayerNorm(embed_dim)
        self.attention = attention
        self.norm2 = nn.LayerNorm(embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, mlp_dim),
            nn.GELU(),
            nn.Linear(mlp_dim, embed_dim),
        )

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply the block.

        Args:
            x (Tensor): shape :math:`(..., N, E)`.
            mask (Tensor, optional): boolean, passed to the attention.
            causal (bool): passed to the attention. Default: False.

        Returns:
            (Tensor, Tensor): the new ``x``, shape :math:`(..., N, E)`, and the attention's
            weights as it returned them.
        """
        attended, weights = self.attention(
            self.norm1(x), mask=mask, causal=causal
        )
        _check_residual(attended, x)
        x = x + attended  # residual around the attention
        x = x + self.mlp(self.norm2(x))  # residual around the MLP
        return x, weights


class TinyEncoder(nn.Module):
    """Token embeddings, optional sinusoidal positions, encoder blocks, a linear read-out.

    The model of chapter 4: it reads a sequence of tokens and predicts one token per
    position (for example the reversed sequence, see :func:`~mini_attn.tasks.make_sequences`).

    Args:
        vocab_size (int): the number of distinct tokens ``V``.
        embed_dim (int): the size ``E`` of the embeddings. Default: 32.
        num_layers (int): the number of encoder blocks. Default: 2.
        max_length (int): the longest sequence the positional encodings cover. Default: 128.
        mlp_dim (int, optional): the hidden size of each block's MLP. Default: ``4 * E``.
        positional (bool): add :func:`~mini_attn.sinusoidal_positional_encoding` to the
            embeddings. Without it the model is permutation equivariant. Default: True.
        make_attention (callable, optional): called once per block, with no argument, to
            create its attention module (see :class:`EncoderBlock`). Default: a
            :class:`~mini_attn.SelfAttention` of size ``E``.

    Shape legend:

    - ``B``: batch
    - ``N``: positions
    - ``E``: embedding size
    - ``V``: vocabulary
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 32,
        *,
        num_layers: int = 2,
        max_length: int = 128,
        mlp_dim: int | None = None,
        positional: bool = True,
        make_attention: Callable[[], nn.Module] | None = None,
    ):
        super().__init__()
        if make_attention is None:

            def make_attention():
                return SelfAttention(embed_dim)

        self.max_length, self.positional = max_length, positional
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        # (max_length, E)
        encoding = sinusoidal_positional_encoding(max_length, embed_dim)
        self.register_buffer(
            "position_encoding", encoding, persistent=False
        )
        self.blocks = nn.ModuleList(
            EncoderBlock(embed_dim, make_attention(), mlp_dim=mlp_dim)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, vocab_size)

    def forward(
        self,
        tokens: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        causal: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Predict one token per position.

        Args:
            tokens (Tensor): integer token ids, shape :math:`(B, N)`.
            mask (Tensor, optional): boolean, passed to every block's attention.
            causal (bool): passed to every block's attention. Default: False.

        Returns:
            (Tensor, list of Tensor): ``logits`` of shape :math:`(B, N, V)`, and the
            attention weights of each block, first block first.
        """
        _check_tokens(tokens, self.max_length)
        n = tokens.shape[-1]
        x = self.embedding(tokens)  # (B, N, E)
        if self.positional:
            # (N, E) broadcasts over the batch
            x = x + self.position_encoding[:n]
        all_weights = []
        for block in self.blocks:
            x, weights = block(x, mask=mask, causal=causal)
            all_weights.append(weights)
        return self.head(self.norm(x)), all_weights  # (B, N, V)


def sequence_batches(
    data: SequenceData, batch_size: int, *, seed: int = 0
) -> Iterator:
    """Endless random mini-batches of ``data``, drawn with replacement (seeded).

    Args:
        data (SequenceData): ``inputs`` and ``targets`` of shape :math:`(n, N)`.
        batch_size (int): sequences per batch ``B``.
        seed (int): seeds the choice of sequences. Default: 0.

    Yields:
        (Tensor, Tensor): ``inputs`` and ``targets`` of shape :math:`(B, N)`.
    """
    inputs, targets = data
    if inputs.shape != targets.shape:
        raise ValueError(
            f"inputs {fmt_shape(inputs.shape)} and targets {fmt_shape(targets.shape)} "
            "must have the same shape"
        )
    generator = torch.Generator().manual_seed(seed)
    while True:
        batch = torch.randint(
            len(inputs), (batch_size,), generator=generator
        )
        yield inputs[batch], targets[batch]


def token_loss(
    model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """Cross-entropy of the model's prediction at every position of a batch.

    Args:
        model (nn.Module): maps tokens :math:`(B, N)` to ``(logits (B, N, V), ...)``.
        batch (tuple of Tensor): ``inputs`` and ``targets`` of shape :math:`(B, N)`; they
            are moved to the model's device.

    Returns:
        Tensor: the mean loss, a scalar.
    """
    device = next(model.parameters()).device
    inputs, targets = (t.to(device) for t in batch)
    logits = model(inputs)[0]  # (B, N, V)
    return nn.functional.cross_entropy(
        logits.flatten(0, -2), targets.flatten()
    )


def train_encoder(
    model: nn.Module,
    data: SequenceData,
    *,
    steps: int = 1000,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    validation: SequenceData | None = None,
    eval_every: int = 100,
    stop_at: float | None = 1.0,
    progress: bool = True,
) -> TrainingHistory:
    """Train a token-to-token model on a sequence task with :func:`~mini_attn.tasks.train_model`.

    Adam on :func:`token_loss`, with the mini-batches of :func:`sequence_batches`. With
    ``validation``, the sequence accuracy on it (the fraction of sequences with every token
    right) is recorded every ``eval_every`` steps, and training stops once it reaches
    ``stop_at``.

    Args:
        model (nn.Module): maps tokens :math:`(B, N)` to ``(logits (B, N, V), ...)``,
            such as :class:`TinyEncoder`.
        data (SequenceData): the training ``inputs`` and ``targets``, shape :math:`(n, N)`.
        steps (int): the largest number of gradient steps. Default: 1000.
        batch_size (int): sequences per step. Default: 64.
        lr (float): Adam's learning rate. Default: 3e-3.
        seed (int): seeds the choice of mini-batches. Default: 0.
        validation (SequenceData, optional): held-out sequences to evaluate on.
        eval_every (int): evaluate after every this many steps. Default: 100.
        stop_at (float, optional): stop when the validation sequence accuracy reaches this
            value; None never stops early. Used only with ``validation``. Default: 1.0.
        progress (bool): show the progress bar. Default: True.

    Returns:
        TrainingHistory: the loss of every step and the validation sequence accuracies.
    """
    evaluate = None
    if validation is not None:

        def evaluate(model: nn.Module) -> float:
            device = next(model.parameters()).device
            logits = model(validation.inputs.to(device))[0]  # (n, N, V)
            return sequence_accuracy(
                logits.argmax(-1).cpu(), validation.targets
            )[1]

    return train_model(
        model,
        token_loss,
        sequence_batches(data, batch_size, seed=seed),
        steps=steps,
        lr=lr,
        evaluate=evaluate,
        eval_every=eval_every,
        stop_at=None if validation is None else stop_at,
        progress=progress,
        desc="training the encoder",
    )
