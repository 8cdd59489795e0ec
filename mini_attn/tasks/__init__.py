"""Tasks: the chapters' data sets, their models and losses, and the training loop.

The third layer of ``mini_attn``: it imports :mod:`mini_attn.core` and
:mod:`mini_attn.attention`, never a tool. Its names live under ``ma.tasks``, apart from
the mechanisms at the top level, so that ``ma.soft_attention`` (a mechanism) and
``ma.tasks.soft_loss`` (the loss of chapter 3's soft model) cannot be confused::

    import mini_attn as ma
    data = ma.tasks.make_dates(1000)
"""

# chapter 1: the regression data of attention pooling
# chapter 2: dates, the encoder–decoder, the training loop
from .data.dates import DATE_FORMATS, CharTokenizer, DateData, DateSplits, format_date, make_dates

# chapter 3: digits in clutter, the glimpse classifier and its losses
from .data.glimpses import GlimpseData, image_patches, load_digits_8x8, make_glimpse_digits
from .data.regression import RegressionData, make_regression_1d, regression_target

# chapter 4: sequence tasks and the tiny encoder
from .data.sequences import (
    SEQUENCE_TASKS,
    SequenceData,
    make_sequences,
    sequence_accuracy,
    sequence_target,
)
from .models.encoder import EncoderBlock, TinyEncoder, sequence_batches, token_loss, train_encoder
from .models.glimpse import (
    GlimpseClassifier,
    argmax_loss,
    expected_loss,
    glimpse_accuracy,
    glimpse_batches,
    gumbel_loss,
    pixel_soft_loss,
    reinforce_loss,
    scorer_gradient,
    soft_loss,
    topk_loss,
)

# chapter 6: a real pretrained model, all-MiniLM-L6-v2
from .models.minilm import MiniLM, MiniLMLayer, minilm_attention
from .models.minilm_files import load_minilm, mean_pooling, minilm_path
from .models.seq2seq import Seq2Seq, exact_matches, seq2seq_loss
from .training import TrainingHistory, train_model

# chapter 7: a small decoder-only language model of dates
from .models.decoder import (
    DateLMData,
    DecoderBlock,
    TinyDecoder,
    generate,
    lm_loss,
    make_date_lm,
)

__all__ = [
    # chapter 1
    "RegressionData",
    "make_regression_1d",
    "regression_target",
    # chapter 2
    "DATE_FORMATS",
    "CharTokenizer",
    "DateData",
    "DateSplits",
    "Seq2Seq",
    "TrainingHistory",
    "exact_matches",
    "format_date",
    "make_dates",
    "seq2seq_loss",
    "train_model",
    # chapter 3
    "GlimpseClassifier",
    "GlimpseData",
    "argmax_loss",
    "expected_loss",
    "glimpse_accuracy",
    "glimpse_batches",
    "gumbel_loss",
    "image_patches",
    "load_digits_8x8",
    "make_glimpse_digits",
    "pixel_soft_loss",
    "reinforce_loss",
    "scorer_gradient",
    "soft_loss",
    "topk_loss",
    # chapter 4
    "SEQUENCE_TASKS",
    "EncoderBlock",
    "SequenceData",
    "TinyEncoder",
    "make_sequences",
    "sequence_accuracy",
    "sequence_batches",
    "sequence_target",
    "token_loss",
    "train_encoder",
    # chapter 6
    "MiniLM",
    "MiniLMLayer",
    "load_minilm",
    "mean_pooling",
    "minilm_attention",
    "minilm_path",
    # chapter 7
    "DateLMData",
    "DecoderBlock",
    "TinyDecoder",
    "generate",
    "lm_loss",
    "make_date_lm",
]
