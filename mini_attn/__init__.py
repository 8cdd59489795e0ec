"""mini_attn: small, tested attention mechanisms for the book "Attention, from the idea to the GPU".

Everything public is importable from the top level: ``import mini_attn as ma``.
Tensors are batch first; a boolean mask is ``True`` where a query may attend to a key.
"""

from .device import default_device, seed_everything
from .masks import causal_mask, padding_mask
from .plotting import plot_attention
from .pooling import KERNELS, attention_pooling, squared_distances
from .regression import RegressionData, make_regression_1d, regression_target
from .sdpa import scaled_dot_product_attention
from .softmax import masked_softmax

__version__ = "0.1.0"

__all__ = [
    "KERNELS",
    "RegressionData",
    "attention_pooling",
    "causal_mask",
    "default_device",
    "make_regression_1d",
    "masked_softmax",
    "padding_mask",
    "plot_attention",
    "regression_target",
    "scaled_dot_product_attention",
    "seed_everything",
    "squared_distances",
]
