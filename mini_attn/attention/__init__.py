"""Mechanisms in PyTorch: pooling, scoring, soft and hard attention, self- and multi-head
attention, tiled attention.

The second layer of ``mini_attn``: these modules import :mod:`mini_attn.core` (and each
other), never a task, a tool or the benchmark.
"""
