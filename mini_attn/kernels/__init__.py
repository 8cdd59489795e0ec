"""Mechanisms in Triton: the FlashAttention forward and backward kernels and their launchers.

The second layer of ``mini_attn``, beside :mod:`mini_attn.attention`; it imports only
:mod:`mini_attn.core` and :mod:`mini_attn._validation`. Importing this package does not
import Triton: :func:`mini_attn.triton_attention` imports :mod:`mini_attn.kernels.launch`
(and with it :mod:`~mini_attn.kernels.forward` and :mod:`~mini_attn.kernels.backward`) on
its first call, so that ``TRITON_INTERPRET`` can still be set before the kernels are defined.
"""
