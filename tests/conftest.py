"""Shared test settings: deterministic hypothesis runs, a headless plotting backend."""

import importlib.util
import os

import matplotlib
import pytest
import torch
from hypothesis import settings

matplotlib.use("Agg")

# Without a GPU, Triton kernels run in Triton's interpreter. Triton reads the choice when a
# kernel is defined, which an import (ours, or transformers') may do, so it is made here, first.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Deterministic property tests: the same examples on every run, here and in CI.
settings.register_profile("default", derandomize=True, deadline=None, max_examples=60)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_collection_modifyitems(items):
    """Chapter 9 runs Triton kernels: without Triton its tests skip and say why."""
    if importlib.util.find_spec("triton") is not None:
        return
    skip = pytest.mark.skip(reason="chapter 9 needs Triton: pip install -r requirements.txt")
    for item in items:
        if "09-fused-kernel" in item.nodeid:
            item.add_marker(skip)


@pytest.fixture
def one_thread():
    """Run a test on one CPU thread: tiny models train faster that way, most of all on a
    busy machine, where two threads wait for each other and for everyone else."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
