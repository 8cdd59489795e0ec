"""mini_attn: attention mechanisms, small and tested, for the book "Attention, from the idea to the GPU".

Everything public is importable from the top level: ``import mini_attn as ma``.
Tensors are batch first; a boolean mask is ``True`` where a query may attend to a key.
"""

from .device import default_device, seed_everything
from .plotting import plot_attention
from .pooling import attention_pooling, squared_distances
from .softmax import masked_softmax

__version__ = "0.1.0"

__all__ = [
    "attention_pooling",
    "default_device",
    "masked_softmax",
    "plot_attention",
    "seed_everything",
    "squared_distances",
]
