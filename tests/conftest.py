"""Shared test settings: deterministic hypothesis runs, a headless plotting backend."""

import os

import matplotlib
from hypothesis import settings

matplotlib.use("Agg")

# Deterministic property tests: the same examples on every run, here and in CI.
settings.register_profile("default", derandomize=True, deadline=None, max_examples=60)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
