"""A small decoder-only language model and its data: the date strings (chapter 7).

Each training text is ``"<source>=<ISO date>."``, for example ``"4 Oct 99=1999-10-04."``,
from :func:`~mini_attn.tasks.make_dates`: a character-level language model that learns it
continues a prompt ``"4 Oct 99="`` with the ISO date. Its attention layers are
:class:`~mini_attn.RotaryAttention` (rotary positions, grouped-query attention), so it can
generate with a key/value cache (:func:`generate`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...attention.cache import KVCache, SlidingWindowCache
from ...attention.modern import RotaryAttention
from ..data.dates import SOURCE_ALPHABET, CharTokenizer, make_dates

__all__ = [
    "DATE_LM_ALPHABET",
    "DateLMData",
    "DecoderBlock",
    "TinyDecoder",
    "generate",
    "lm_loss",
    "make_date_lm",
]

DATE_LM_ALPHABET = SOURCE_ALPHABET + "="  # "." (the end) is in it already


@dataclass
class DateLMData:
    """Texts ``"<source>=<ISO date>."`` and their ids.

    Attributes:
        texts (list of str): ``N`` texts.
        ids (Tensor): shape :math:`(N, T)`, int64: ``bos``, the characters, padding 0.
        tokenizer (CharTokenizer): the tokenizer (pad 0, bos 1).
    """

    texts: list[str]
    ids: torch.Tensor
    tokenizer: CharTokenizer


def make_date_lm(n: int, *, seed: int = 0, split: str = "train") -> DateLMData:
    """``n`` date texts of one split of :func:`~mini_attn.tasks.make_dates` (same seed).

    Args:
        n (int): the number of texts.
        seed (int): the seed of the date task. Default: 0.
        split (str): ``"train"`` or ``"test"`` (days disjoint from training). Default:
            ``"train"``.

    Returns:
        DateLMData: the texts, their ids (a ``bos`` first) and the tokenizer.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    data = getattr(make_dates(n, 1, n, seed=seed), split)
    texts = [f"{s}={t}." for s, t in zip(data.sources[:n], data.targets[:n], strict=True)]
    tokenizer = CharTokenizer(DATE_LM_ALPHABET)
    ids, _ = tokenizer.encode_batch(texts)  # (N, T - 1)
    bos = torch.full((len(texts), 1), tokenizer.bos_id, dtype=torch.long)
    return DateLMData(texts, torch.cat((bos, ids), dim=1), tokenizer)


class DecoderBlock(nn.Module):
    """Pre-norm block: ``x + attention(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, embed_dim: int, num_heads: int, num_kv_heads: int, window) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(embed_dim)
        self.attention = RotaryAttention(
            embed_dim, num_heads, num_kv_heads=num_kv_heads, window=window
        )
        self.mlp_norm = nn.LayerNorm(embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, 4 * embed_dim), nn.GELU(), nn.Linear(4 * embed_dim, embed_dim)
        )

    def forward(self, x, *, cache=None, need_weights=False):
        context, weights = self.attention(
            self.attention_norm(x), causal=True, cache=cache, need_weights=need_weights
        )
        x = x + context  # (B, L, E)
        return x + self.mlp(self.mlp_norm(x)), weights


class TinyDecoder(nn.Module):
    """A decoder-only Transformer: embeddings, causal rotary blocks, a language-model head.

    Args:
        vocab_size (int): the number of token ids ``V``.
        embed_dim (int): the model dimension ``E``. Default: 64.
        num_heads (int): query heads per layer. Default: 4.
        num_kv_heads (int, optional): key/value heads per layer. Default: ``num_heads``.
        num_layers (int): blocks. Default: 2.
        window (int, optional): sliding-window attention in every layer. Default: None.

    Shape legend:

    - ``B``: batch
    - ``L``: positions
    - ``V``: vocabulary
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 64,
        num_heads: int = 4,
        *,
        num_kv_heads: int | None = None,
        num_layers: int = 2,
        window: int | None = None,
    ) -> None:
        super().__init__()
        self.window = window
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.blocks = nn.ModuleList(
            DecoderBlock(embed_dim, num_heads, num_kv_heads, window) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, vocab_size)

    def new_caches(self) -> list[KVCache]:
        """One empty cache per layer (a rolling one with a sliding window)."""
        if self.window is None:
            return [KVCache() for _ in self.blocks]
        return [SlidingWindowCache(self.window) for _ in self.blocks]

    def forward(self, ids, *, caches=None, need_weights=False):
        """Logits ``(B, L, V)`` of the next token at every position (and each layer's weights).

        Args:
            ids (Tensor): int64, shape :math:`(B, L)`; with ``caches``, the positions that
                follow the cached ones.
            caches (list of KVCache, optional): one per layer, updated in place.
            need_weights (bool): also return the list of weights :math:`(B, H, L, S)`.
        """
        x = self.embedding(ids)  # (B, L, E)
        caches = [None] * len(self.blocks) if caches is None else caches
        all_weights = []
        for block, cache in zip(self.blocks, caches, strict=True):
            x, weights = block(x, cache=cache, need_weights=need_weights)
            all_weights.append(weights)
        logits = self.head(self.norm(x))  # (B, L, V)
        return (logits, all_weights) if need_weights else logits


def lm_loss(model: TinyDecoder, ids: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """Mean cross-entropy of the next character, padding excluded."""
    logits = model(ids[:, :-1])  # (B, T - 1, V): predict ids[:, 1:]
    return nn.functional.cross_entropy(
        logits.flatten(0, 1), ids[:, 1:].flatten(), ignore_index=pad_id
    )


@torch.no_grad()
def generate(
    model: TinyDecoder, prompt: torch.Tensor, n_new: int, *, use_cache: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy decoding: ``n_new`` tokens after ``prompt``, with or without the cache.

    With the cache, the prompt runs once (prefill) and each step feeds only the newest
    token (decode); without, each step runs the model over the whole sequence again.

    Args:
        model (TinyDecoder): the model (put in evaluation mode).
        prompt (Tensor): int64, shape :math:`(B, P)`.
        n_new (int): the number of tokens to generate.
        use_cache (bool): decode with a key/value cache. Default: True.

    Returns:
        (Tensor, Tensor): the ids :math:`(B, P + n_{new})` and the logits of every
        generated token :math:`(B, n_{new}, V)`.
    """
    model.eval()
    caches = model.new_caches() if use_cache else None
    ids, step_logits = prompt, []
    feed = prompt  # prefill: the whole prompt
    for _ in range(n_new):
        logits = model(feed, caches=caches)[:, -1]  # (B, V): the next token's logits
        step_logits.append(logits)
        next_id = logits.argmax(-1, keepdim=True)  # (B, 1)
        ids = torch.cat((ids, next_id), dim=1)
        feed = next_id if use_cache else ids  # decode: the new token only, or everything
    return ids, torch.stack(step_logits, dim=1)
