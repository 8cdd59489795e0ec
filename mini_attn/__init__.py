"""mini_attn: small, tested attention mechanisms for the book "Attention, from the idea to the GPU".

Everything public is importable from the top level: ``import mini_attn as ma``.
Tensors are batch first; a boolean mask is ``True`` where a query may attend to a key.
The imports are grouped by the chapter that introduces them.
"""

from types import ModuleType as _ModuleType

# shared by every chapter
from .device import default_device, seed_everything
from .masks import causal_mask, padding_mask
from .plotting import plot_attention
from .sdpa import scaled_dot_product_attention
from .softmax import masked_softmax

# chapter 1: what attention is
from .pooling import KERNELS, attention_pooling, squared_distances
from .regression import RegressionData, make_regression_1d, regression_target

# chapter 2: soft attention
from .scoring import AdditiveScore, BilinearScore, dot_product_score, scaled_dot_product_score
from .soft import soft_attention
from .dates import DATE_FORMATS, CharTokenizer, DateData, DateSplits, format_date, make_dates
from .seq2seq import Seq2Seq, exact_matches, seq2seq_loss
from .training import TrainingHistory, train_model

# chapter 3: hard attention
from .hard import gumbel_softmax_attention, hard_attention, sample_attention, topk_attention
from .glimpses import GlimpseData, image_patches, load_digits_8x8, make_glimpse_digits
from .glimpse_models import (
    GlimpseClassifier,
    argmax_loss,
    expected_loss,
    glimpse_accuracy,
    glimpse_batches,
    gumbel_loss,
    reinforce_loss,
    scorer_gradient,
    soft_loss,
)

# chapters 4 and 5: self-attention, the K/Q/V computation
from .positional import sinusoidal_positional_encoding
from .self_attention import SelfAttention
from .kqv_numpy import scaled_dot_product_attention_numpy, self_attention_numpy
from .sequences import (
    SEQUENCE_TASKS,
    SequenceData,
    make_sequences,
    sequence_accuracy,
    sequence_target,
)
from .encoder import EncoderBlock, TinyEncoder, sequence_batches, token_loss, train_encoder

# chapter 6: multi-head attention
from .multihead import MultiHeadAttention, merge_heads, split_heads
from .minilm import MiniLM, MiniLMLayer, load_minilm, mean_pooling, minilm_attention, minilm_path

# chapter 7: profiling attention (the benchmark command is the module mini_attn.bench)
from .flops import attention_bytes, attention_flops
from .tiled import tiled_attention
from .profiling import (
    Timing,
    attainable_flops,
    measure_copy_bandwidth,
    measure_matmul_flops,
    measure_peak_memory,
    plot_roofline,
    time_function,
)

# chapter 8: writing the fused kernel (Triton is imported on the first call only)
from .triton_attention import triton_attention

__version__ = "0.1.0"

# every public name imported above (modules excluded)
__all__ = sorted(
    name
    for name, value in dict(globals()).items()
    if not name.startswith("_") and not isinstance(value, _ModuleType)
)
