"""The chapters' models, built from the mechanisms of :mod:`mini_attn.attention`."""
