"""Primitives: the masked softmax, scaled dot-product attention, masks, positional encodings.

The first layer of ``mini_attn``: these modules import PyTorch, NumPy and
:mod:`mini_attn._validation`, never another layer.
"""
