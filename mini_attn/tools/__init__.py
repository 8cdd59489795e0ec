"""Tools: devices and threads, timing, memory, FLOPs and the roofline, figures.

The last layer of ``mini_attn``, with :mod:`mini_attn.bench` and :mod:`mini_attn.exercises`:
it may import every layer above it, and nothing above imports it.
"""
