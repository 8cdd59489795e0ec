"""mini_attn: small, tested attention mechanisms for the book "Attention, from the idea to the GPU".

``import mini_attn as ma``. The folders are the layers, and each imports only those above it::

    core/        primitives: masked softmax, scaled dot-product attention, masks, encodings
      ↑
    attention/   mechanisms in PyTorch        kernels/   the same in Triton
      ↑
    tasks/       data sets, models, losses, the training loop
      ↑
    tools/       devices, timing, memory, FLOPs, figures;  bench/, exercises/

What the top level holds: the primitives, the mechanisms and the tools, the names a
reader calls to *do* attention or to *measure* it (the public API of the book's design).
The tasks' data sets, models and losses are one level down, under ``ma.tasks``
(``ma.tasks.make_dates``, ``ma.tasks.soft_loss``), the benchmark command is
``python -m mini_attn.bench``, and the exercise checkers are in ``mini_attn.exercises``.

Tensors are batch first; a boolean mask is ``True`` where a query may attend to a key.
"""

from . import tasks

# --- core: the primitives -----------------------------------------------------------
# chapter 1: the masked softmax; chapter 2: padding masks; chapter 4: causal masks and
# positional encodings; chapter 5: scaled dot-product attention, in PyTorch and NumPy
from .core.masks import causal_mask, padding_mask, sliding_window_mask
from .core.numpy_reference import scaled_dot_product_attention_numpy, self_attention_numpy
from .core.positional import sinusoidal_positional_encoding
from .core.rotary import apply_rotary
from .core.sdpa import scaled_dot_product_attention
from .core.softmax import masked_softmax

# --- attention: the mechanisms in PyTorch ---------------------------------------------
# chapter 1: attention pooling
from .attention.pooling import POOLING_KERNELS, attention_pooling, squared_distances

# chapter 2: scoring functions and soft attention
from .attention.scoring import (
    AdditiveScore,
    BilinearScore,
    dot_product_score,
    scaled_dot_product_score,
)
from .attention.soft import soft_attention

# chapter 3: hard attention
from .attention.hard import (
    gumbel_softmax_attention,
    hard_attention,
    sample_attention,
    topk_attention,
)

# chapters 4 to 6: self-attention and multi-head attention
from .attention.self_attention import SelfAttention
from .attention.heads import merge_heads, split_heads
from .attention.multihead import MultiHeadAttention

# chapter 7: attention in today's language models
from .attention.cache import KVCache, SlidingWindowCache
from .attention.modern import LatentAttention, RotaryAttention, SinkAttention

# chapter 8: tiled attention (the online softmax)
from .attention.tiled import (
    OnlineSoftmax,
    finish_online_softmax,
    online_softmax_update,
    start_online_softmax,
    tiled_attention,
)

# appendix (chapter 10): ring attention across processes
from .attention.ring import block_source, ring_attention

# --- kernels: the mechanisms in Triton (Triton is imported on the first call only) ---
# chapter 9: the fused kernel
from .kernels.autograd import triton_attention

# --- tools: devices, measurement, figures -------------------------------------------
from .tools.device import default_device, seed_everything, threads
from .tools.plotting import plot_attention

# interactive figures, offline (Bokeh): chapters 1, 2, 3 and 6
from .tools.explorer import attention_explorer
from .tools.sliders import slider_figure

# chapter 8: profiling attention
from .tools.flops import attention_bytes, attention_flops, count_flops
from .tools.memory import measure_peak_memory
from .tools.plotting import plot_roofline
from .tools.roofline import attainable_flops, measure_copy_bandwidth, measure_matmul_flops
from .tools.timing import Timing, first_call_time, time_function

# appendix (chapter 10): processes on this machine, and their messages
from .tools.distributed import count_p2p_bytes, run_processes

__version__ = "0.1.0"

__all__ = [
    # core
    "apply_rotary",
    "causal_mask",
    "masked_softmax",
    "padding_mask",
    "scaled_dot_product_attention",
    "scaled_dot_product_attention_numpy",
    "self_attention_numpy",
    "sinusoidal_positional_encoding",
    "sliding_window_mask",
    # attention: chapter 1
    "POOLING_KERNELS",
    "attention_pooling",
    "squared_distances",
    # attention: chapter 2
    "AdditiveScore",
    "BilinearScore",
    "dot_product_score",
    "scaled_dot_product_score",
    "soft_attention",
    # attention: chapter 3
    "gumbel_softmax_attention",
    "hard_attention",
    "sample_attention",
    "topk_attention",
    # attention: chapters 4 to 6
    "MultiHeadAttention",
    "SelfAttention",
    "merge_heads",
    "split_heads",
    # attention: chapter 7
    "KVCache",
    "LatentAttention",
    "RotaryAttention",
    "SinkAttention",
    "SlidingWindowCache",
    # attention: chapter 8
    "OnlineSoftmax",
    "finish_online_softmax",
    "online_softmax_update",
    "start_online_softmax",
    "tiled_attention",
    # attention: the appendix (chapter 10)
    "block_source",
    "ring_attention",
    # kernels: chapter 9
    "triton_attention",
    # tools
    "default_device",
    "plot_attention",
    "seed_everything",
    "threads",
    # tools: interactive figures
    "attention_explorer",
    "slider_figure",
    # tools: chapter 8
    "Timing",
    "attainable_flops",
    "attention_bytes",
    "attention_flops",
    "count_flops",
    "first_call_time",
    "measure_copy_bandwidth",
    "measure_matmul_flops",
    "measure_peak_memory",
    "plot_roofline",
    "time_function",
    # tools: the appendix (chapter 10)
    "count_p2p_bytes",
    "run_processes",
    # the tasks, one level down: ma.tasks.NAME
    "tasks",
]
