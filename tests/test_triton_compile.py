"""The Triton kernels compiled for real GPUs on this CPU machine (no GPU needed).

The interpreter tests (test_triton_attention.py) prove the kernels right line by line, but
they never run Triton's compiler: a kernel can be right in NumPy and still fail to compile,
need more shared memory than a GPU has, or spill its registers. Here every launch the
package makes is compiled for an H100 and an A100, with the launchers' own settings.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton", reason="compiling the kernels needs Triton")

from mini_attn.kernels.launch import forward_shared_bytes
from mini_attn.kernels.offline_compile import GPUS, compile_for_gpu

pytestmark = pytest.mark.slow  # Triton compiles every launch for two GPUs: ~35 s

DTYPES = ("float16", "bfloat16", "float32")
ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4}


@pytest.fixture(scope="module")
def h100_builds():
    """triton_attention's forward launches, and its backward ones, compiled for an H100.

    Every forward variant (dtype, head size, causal); the backward kernels causal only (the
    causal variant holds every line of the other) and for one 16-bit type. About 20
    kernels, a few seconds each on a CPU (Triton caches them in ~/.triton afterwards).
    """
    forward = [
        dict(dtype=dtype, head_dim=head_dim, causal=causal)
        for dtype in DTYPES
        for head_dim in (64, 128)
        for causal in (False, True)
    ]
    backward = [
        dict(dtype=dtype, head_dim=head_dim, causal=True, backward=True)
        for dtype in ("bfloat16", "float32")
        for head_dim in (64, 128)
    ]
    return compile_for_gpu(forward + backward, gpu="H100")


def test_every_launch_compiles_for_an_h100_and_fits(h100_builds):
    assert len(h100_builds) == 12 + 4 * 2  # the backward launches compile two kernels
    for build in h100_builds:
        assert build.gpu == "H100" and build.max_shared_bytes == GPUS["H100"]["max_shared_mem"]
        assert build.fits, build  # else Triton would refuse to launch it
        assert build.local_bytes == 0, f"registers spilled: {build}"
        assert build.tensor_core_op in ("wgmma", "mma"), f"no tensor cores: {build}"


def test_forward_uses_hoppers_warpgroup_mma(h100_builds):
    """The precondition of FlashAttention-class speed on an H100: wgmma, not mma."""
    forward = [b for b in h100_builds if b.kernel == "attention_forward_kernel"]
    assert len(forward) == 12
    assert all(b.tensor_core_op == "wgmma" for b in forward), forward


def test_float32_at_head_size_128_takes_fewer_stages(h100_builds):
    """Three stages of float32 blocks at D = 128 need 256 KiB, more than an H100's 227 KiB."""
    (build,) = [
        b
        for b in h100_builds
        if b.kernel == "attention_forward_kernel" and b.dtype == "float32" and b.head_dim == 128
        and not b.causal
    ]  # fmt: skip
    assert forward_shared_bytes(128, 64, 128, 4, 3) > GPUS["H100"]["max_shared_mem"]
    assert build.num_stages == 2 and build.fits
    sixteen_bit = [
        b
        for b in h100_builds
        if b.kernel == "attention_forward_kernel" and b.dtype != "float32"
    ]  # fmt: skip
    assert {b.num_stages for b in sixteen_bit} == {3}


@pytest.mark.parametrize("gpu", ["H100", "A100"])
def test_shared_memory_count_against_the_compiler(gpu):
    """forward_shared_bytes is exact on an H100 with 2 or more stages, an upper bound otherwise."""
    cases = [
        ("bfloat16", 128, 128, 64, 1),
        ("bfloat16", 128, 128, 64, 2),
        ("bfloat16", 64, 64, 128, 3),
        ("float32", 128, 128, 64, 2),
        ("float32", 64, 64, 32, 3),
    ]
    configs = [
        dict(dtype=dtype, head_dim=d, block_m=m, block_n=n, num_stages=stages)
        for dtype, d, m, n, stages in cases
    ]
    for (dtype, d, m, n, stages), build in zip(
        cases, compile_for_gpu(configs, gpu=gpu), strict=True
    ):
        assert (build.block_m, build.block_n, build.num_stages) == (m, n, stages)
        count = forward_shared_bytes(m, n, d, ITEMSIZE[dtype], stages)
        if gpu == "H100" and stages >= 2:
            assert build.shared_bytes == count, build
        else:
            assert build.shared_bytes <= count, build
        if gpu == "H100" and stages == 1:
            assert build.shared_bytes < count, "the count is exact with one stage: say so"


def test_a100_defaults_fit():
    configs = [dict(dtype=dtype, head_dim=head_dim) for dtype in DTYPES for head_dim in (64, 128)]
    builds = compile_for_gpu(configs, gpu="A100")
    assert all(b.fits and b.local_bytes == 0 and b.tensor_core_op == "mma" for b in builds), builds
    stages = {(b.dtype, b.head_dim): b.num_stages for b in builds}
    # the count for 2 stages, 192 KiB, exceeds an A100's 163 KiB; the compiler would need
    # less (the count is an upper bound off an H100): the launcher errs on the safe side
    assert stages[("float32", 128)] == 1
    assert stages[("bfloat16", 128)] == 3


def test_blocks_too_large_for_the_gpu_are_refused_clearly():
    config = dict(dtype=torch.float32, head_dim=128, block_m=256, block_n=128)
    with pytest.raises(RuntimeError, match=r"need 256 KiB of shared memory.*allows 64 KiB"):
        compile_for_gpu([config], gpu="T4")


def test_bad_requests_are_named():
    with pytest.raises(ValueError, match=r"gpu must be one of .*'H100'"):
        compile_for_gpu([{}], gpu="H200")
    with pytest.raises(ValueError, match=r"unknown settings \['block_size'\]"):
        compile_for_gpu([dict(block_size=64)])
    with pytest.raises(ValueError, match="dtype must be one of"):
        compile_for_gpu([dict(dtype=torch.float64)])
