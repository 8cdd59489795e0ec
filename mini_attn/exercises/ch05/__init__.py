"""Checkers for the exercises of chapter 5, "The K/Q/V computation", one module each.

Notation as in the chapter: ``E`` model (input) size, ``D`` query/key size, ``Dv`` value size.
"""

from .decoder import check_decoder_attention
from .from_weights import check_self_attention_from_weights
from .numpy_attention import check_attention_numpy

__all__ = [
    "check_attention_numpy",
    "check_decoder_attention",
    "check_self_attention_from_weights",
]
