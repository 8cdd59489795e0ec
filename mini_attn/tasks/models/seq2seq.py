"""A GRU encoder–decoder, with additive attention or without (chapter 2).

The encoder reads the source characters in both directions. The decoder writes the
target one character at a time, reading a fixed summary of the source (the last states of
the encoder) at every step (Cho et al., 2014). With ``attention=True`` each decoder state
also queries every encoder state with an additive score (Bahdanau et al., 2015; Luong et
al., 2015); with ``attention=False`` the summary is all it has: the baseline that shows
what attention buys.
"""

from __future__ import annotations

import torch
from torch import nn

from ..._validation import check_tensor, fmt_shape
from ...attention.scoring import AdditiveScore
from ...attention.soft import soft_attention
from ...core.masks import padding_mask

__all__ = ["Seq2Seq", "exact_matches", "seq2seq_loss"]


def _reversal_index(
    lengths: torch.Tensor, n_positions: int
) -> torch.Tensor:
    """``(B, S)`` positions that reverse each sequence within its length, padding left alone."""
    positions = torch.arange(n_positions, device=lengths.device).expand(
        len(lengths), -1
    )
    reversed_positions = lengths[:, None] - 1 - positions  # (B, S)
    return torch.where(
        reversed_positions >= 0, reversed_positions, positions
    )


def _gather_positions(
    x: torch.Tensor, index: torch.Tensor
) -> torch.Tensor:
    """``x[b, index[b, s]]`` for every ``b``, ``s``: ``(B, S, D)``, ``(B, S')`` → ``(B, S', D)``."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class Seq2Seq(nn.Module):
    """A character-level GRU encoder–decoder, with additive attention or without.

    Args:
        source_vocab_size (int): the number of source token ids (padding id 0 included).
        target_vocab_size (int): the number of target token ids (ids 0 and 1 are the
            padding and the begin-of-sequence ids; the decoder never outputs them usefully).
        embed_dim (int): the size of the character embeddings. Default: 32.
        encoder_dim (int): the size of each direction of the bidirectional encoder, so the
            encoder states have size ``M = 2 · encoder_dim``. Default: 64.
        decoder_dim (int): the size of the decoder state. Default: 128.
        attention_dim (int): the hidden size ``A`` of the additive score. Default: 64.
        attention (bool): also attend to every encoder state (True), or rely on the
            fixed summary of the source alone (False, the baseline). Default: True.
        bos_id (int): the begin-of-sequence id, the decoder's first input. Default: 1.

    Shape legend:

    - ``B``: batch
    - ``S``: source length
    - ``T``: target length
    - ``M``: encoder state size
    - ``Hd``: decoder state size (not a number of heads)
    - ``V``: target vocabulary size
    """

    def __init__(
        self,
        source_vocab_size: int,
        target_vocab_size: int,
        *,
        embed_dim: int = 32,
        encoder_dim: int = 64,
        decoder_dim: int = 128,
        attention_dim: int = 64,
        attention: bool = True,
        bos_id: int = 1,
    ) -> None:
        super().__init__()
        memory_dim = 2 * encoder_dim
        self.bos_id = bos_id
        self.source_embed = nn.Embedding(
            source_vocab_size, embed_dim, padding_idx=0
        )
        self.forward_gru = nn.GRU(
            embed_dim, encoder_dim, batch_first=True
        )
        self.backward_gru = nn.GRU(
            embed_dim, encoder_dim, batch_first=True
        )
        self.init_state = nn.Linear(memory_dim, decoder_dim)
        self.score = (
            AdditiveScore(decoder_dim, memory_dim, attention_dim)
            if attention
            else None
        )
        self.target_embed = nn.Embedding(target_vocab_size, embed_dim)
        self.decoder = nn.GRU(
            embed_dim + memory_dim, decoder_dim, batch_first=True
        )
        self.out = nn.Linear(decoder_dim + memory_dim, target_vocab_size)

    def encode(
        self, source: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Read the source in both directions.

        Args:
            source (Tensor): token ids, shape :math:`(B, S)`, padded after each sequence.
            lengths (Tensor): shape :math:`(B,)`, the real length of each source.

        Returns:
            (Tensor, Tensor): ``memory``, the encoder state at every position, shape
            :math:`(B, S, M)` (zero at padding), and ``summary``, the last state of each
            direction concatenated, shape :math:`(B, M)`.
        """
        check_tensor(source, "source", ndim=2)
        if lengths.shape != source.shape[:1]:
            raise ValueError(
                f"lengths must have shape ({source.shape[0]},) for source "
                f"{fmt_shape(source.shape)}, got {fmt_shape(lengths.shape)}"
            )
        embedded = self.source_embed(source)  # (B, S, embed_dim)
        # left to right: the padding comes after the characters, so it changes nothing before it
        forward_states, _ = self.forward_gru(embedded)  # (B, S, M/2)
        # right to left: reverse each sequence within its length, so padding again comes last
        reverse = _reversal_index(lengths, source.shape[1])  # (B, S)
        backward_states, _ = self.backward_gru(
            _gather_positions(embedded, reverse)
        )
        # (B, S, M/2), in order
        backward_states = _gather_positions(backward_states, reverse)
        # (B, S, 1)
        real = padding_mask(lengths, source.shape[1]).transpose(1, 2)
        # (B, S, M)
        memory = (
            torch.cat([forward_states, backward_states], dim=-1) * real
        )
        # each direction's last state: at the last character (forward), the first (backward)
        forward_last = _gather_positions(
            forward_states, lengths[:, None] - 1
        )[:, 0]  # (B, M/2)
        # (B, M)
        summary = torch.cat([forward_last, backward_states[:, 0]], dim=-1)
        return memory, summary

    def decode(
        self,
        tokens: torch.Tensor,
        memory: torch.Tensor,
        summary: torch.Tensor,
        mask: torch.Tensor,
        hidden: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Run the decoder over input tokens, all steps at once.

        Args:
            tokens (Tensor): the decoder's inputs (the previous characters), shape
                :math:`(B, T)`.
            memory (Tensor): the encoder states, shape :math:`(B, S, M)`.
            summary (Tensor): the fixed summary of the source, shape :math:`(B, M)`.
            mask (Tensor): boolean, :math:`(B, 1, S)`, True on the real source characters.
            hidden (Tensor, optional): the decoder state to continue from, shape
                :math:`(1, B, Hd)`. Default: None, start from the summary.

        Returns:
            (Tensor, Tensor or None, Tensor): ``logits`` :math:`(B, T, V)`, the attention
            ``weights`` :math:`(B, T, S)` (None without attention) and the last decoder
            state :math:`(1, B, Hd)`.
        """
        embedded = self.target_embed(tokens)  # (B, T, embed_dim)
        # (B, T, M)
        summary_each_step = summary.unsqueeze(1).expand(
            -1, tokens.shape[1], -1
        )
        if hidden is None:
            # (1, B, Hd)
            hidden = torch.tanh(self.init_state(summary)).unsqueeze(0)
        # both models see the summary
        inputs = torch.cat([embedded, summary_each_step], dim=-1)
        states, hidden = self.decoder(inputs, hidden)  # (B, T, Hd)
        if (
            self.score is None
        ):  # the baseline: the same summary at every step, nothing else
            context, weights = summary_each_step, None
        else:
            # attention: every decoder state queries every encoder state
            # (B, T, S) = wᵀ tanh(W_q s_t + W_k h_j)
            scores = self.score(states, memory)
            # (B, T, M)
            context, weights = soft_attention(scores, memory, mask=mask)
        # (B, T, V)
        logits = self.out(torch.cat([states, context], dim=-1))
        return logits, weights, hidden

    def forward(
        self,
        source: torch.Tensor,
        lengths: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        n_steps: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Translate: with teacher forcing if ``targets`` is given, else greedily.

        Args:
            source (Tensor): token ids, shape :math:`(B, S)`, padded after each sequence.
            lengths (Tensor): shape :math:`(B,)`, the real length of each source.
            targets (Tensor, optional): shape :math:`(B, T)`. Step ``t`` then reads the
                true character ``t - 1`` (teacher forcing) and all steps run at once;
                without it, the model reads its own previous prediction (greedy decoding).
            n_steps (int, optional): the number of characters ``T`` to write when
                ``targets`` is None.

        Returns:
            (Tensor, Tensor or None): ``logits`` of shape :math:`(B, T, V)`, and the
            attention ``weights`` of shape :math:`(B, T, S)` (None without attention).
        """
        if (targets is None) == (n_steps is None):
            raise ValueError(
                "give exactly one of targets (teacher forcing) and n_steps"
            )
        memory, summary = self.encode(source, lengths)
        # (B, 1, S): True on real characters
        mask = padding_mask(lengths, source.shape[1])
        bos = torch.full_like(lengths, self.bos_id).unsqueeze(1)  # (B, 1)
        if (
            targets is not None
        ):  # teacher forcing: the inputs are the true previous characters
            tokens = torch.cat([bos, targets[:, :-1]], dim=1)  # (B, T)
            logits, weights, _ = self.decode(
                tokens, memory, summary, mask
            )
            return logits, weights
        token, hidden, all_logits, all_weights = bos, None, [], []
        for _ in range(
            n_steps
        ):  # greedy: one step at a time, reading its own predictions
            logits, weights, hidden = self.decode(
                token, memory, summary, mask, hidden
            )
            all_logits.append(logits)
            all_weights.append(weights)
            token = logits.argmax(dim=-1)  # (B, 1)
        # (B, T, S)
        weights = (
            None if self.score is None else torch.cat(all_weights, dim=1)
        )
        return torch.cat(all_logits, dim=1), weights  # (B, T, V)


def seq2seq_loss(
    model: Seq2Seq, batch: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    """The mean cross-entropy of every target character, with teacher forcing.

    Args:
        model (Seq2Seq): the model.
        batch (tuple of Tensor): ``(source (B, S), lengths (B,), targets (B, T))``, as
            :meth:`~mini_attn.tasks.DateData.batches` yields them.

    Returns:
        Tensor: the scalar loss.
    """
    source, lengths, targets = batch
    logits, _ = model(source, lengths, targets)  # (B, T, V)
    return nn.functional.cross_entropy(
        logits.flatten(0, 1), targets.flatten()
    )


@torch.no_grad()
def exact_matches(
    model: Seq2Seq,
    source: torch.Tensor,
    lengths: torch.Tensor,
    targets: torch.Tensor,
    *,
    batch_size: int = 1000,
) -> torch.Tensor:
    """Which examples the model writes exactly right, decoding greedily.

    Args:
        model (Seq2Seq): the model.
        source (Tensor): shape :math:`(N, S)`.
        lengths (Tensor): shape :math:`(N,)`.
        targets (Tensor): shape :math:`(N, T)`.
        batch_size (int): examples decoded at once. Default: 1000.

    Returns:
        Tensor: boolean, shape :math:`(N,)`, True where every character is right.
    """
    device = next(model.parameters()).device
    correct = []
    for start in range(0, len(source), batch_size):
        rows = slice(start, start + batch_size)
        length = lengths[rows]
        logits, _ = model(
            source[rows, : int(length.max())].to(device), length.to(device),
            n_steps=targets.shape[1],
        )  # fmt: skip
        correct.append(
            (logits.argmax(-1).cpu() == targets[rows]).all(dim=-1)
        )
    return torch.cat(correct)
