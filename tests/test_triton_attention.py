"""The Triton kernel of chapter 9, run on CPU tensors in Triton's interpreter.

Triton decides when a kernel is *defined* whether to compile it or to interpret it, so
``TRITON_INTERPRET=1`` is set here, at collection, before any test runs: the kernels are
defined on the first call of ``triton_attention`` (``import mini_attn`` does not import
Triton; a test below checks it). On a machine with CUDA, one more test runs the compiled
kernel in a fresh process.
"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"  # before the first call of triton_attention (see above)

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import mini_attn as ma

triton = pytest.importorskip(
    "triton", reason="triton_attention needs Triton: pip install -r requirements.txt"
)

# Triton's interpreter before 3.9 calls int() on a one-element NumPy array
# (triton/runtime/interpreter.py; 3.9 adds .squeeze()), which NumPy 2.4 and later refuse:
# on such a machine (a lent GPU's stack, say) the interpreter tests would fail for that
# bug alone, so they are skipped with this message and only the compiled-kernel test runs.
TRITON_VERSION = tuple(int(p) for p in triton.__version__.split(".")[:2] if p.isdigit())
OLD_INTERPRETER = TRITON_VERSION < (3, 9)
OLD_INTERPRETER_MESSAGE = (
    f"Triton {triton.__version__}'s interpreter has a bug fixed in 3.9 (int() of a NumPy "
    "array, refused by NumPy >= 2.4): the interpreter tests are skipped; the compiled "
    "kernel's test still runs on a GPU"
)

ROOT = Path(__file__).resolve().parents[1]

# a tolerance fit for each precision: about two units in the last place of the output
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}


@pytest.fixture(autouse=True)
def interpreter_recent_enough(request):
    if OLD_INTERPRETER and request.node.name != "test_compiled_kernel_on_the_gpu":
        pytest.skip(OLD_INTERPRETER_MESSAGE)


@pytest.fixture(scope="module", autouse=True)
def interpreted_kernels():
    from mini_attn.kernels import launch

    assert launch.INTERPRETED, (
        "mini_attn.kernels.launch was imported before TRITON_INTERPRET=1 was set: something "
        "called triton_attention before this module was collected"
    )


def _qkv(shape_q, shape_k, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(shape_q, generator=g).to(dtype)
    k = torch.randn(shape_k, generator=g).to(dtype)
    v = torch.randn(shape_k, generator=g).to(dtype)
    return q, k, v


def _reference(q, k, v, **kwargs):
    """PyTorch's attention in float32, from the same (rounded) inputs."""
    return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **kwargs)


def _assert_close(got, expected, dtype):
    tol = TOLERANCE[dtype]
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), expected, atol=tol, rtol=tol)


@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
def test_equals_pytorch(dtype, causal, head_dim):
    # 40 queries and 72 keys: ragged last blocks on both sides, several key blocks per program
    q, k, v = _qkv((2, 40, head_dim), (2, 72, head_dim), dtype)
    got = ma.triton_attention(q, k, v, causal=causal, block_m=32, block_n=32)
    _assert_close(got, _reference(q, k, v, is_causal=causal), dtype)


@settings(max_examples=12)
@given(
    n_queries=st.integers(1, 70),
    n_keys=st.integers(1, 70),
    block_m=st.sampled_from([16, 32, 64]),
    block_n=st.sampled_from([16, 32, 64]),
    causal=st.booleans(),
)
def test_any_lengths_and_blocks(n_queries, n_keys, block_m, block_n, causal):
    """Every block size gives the same output, for lengths that fit no block exactly."""
    q, k, v = _qkv((n_queries, 16), (n_keys, 16))
    got = ma.triton_attention(q, k, v, causal=causal, block_m=block_m, block_n=block_n)
    _assert_close(got, _reference(q, k, v, is_causal=causal), torch.float32)


def test_batch_dimensions_broadcast():
    q, _, _ = _qkv((2, 3, 20, 32), (1,))
    _, k, v = _qkv((1,), (3, 24, 32), seed=1)  # no leading 2: broadcasts
    got = ma.triton_attention(q, k, v, block_m=16, block_n=16)
    assert got.shape == (2, 3, 20, 32)
    _assert_close(got, _reference(q, k.expand(2, 3, 24, 32), v.expand(2, 3, 24, 32)), q.dtype)


def test_strided_inputs_and_scale():
    # heads split from (B, L, H, D) and transposed, as attention layers hand them over
    x, _, _ = _qkv((1, 24, 2, 3 * 32), (1,))
    q, k, v = (t.transpose(1, 2) for t in x.chunk(3, dim=-1))  # 3 × (1, 2, 24, 32), strided
    assert not q.is_contiguous()
    got = ma.triton_attention(q, k, v, causal=True, scale=0.3, block_m=16, block_n=16)
    _assert_close(got, _reference(q, k, v, is_causal=True, scale=0.3), q.dtype)


def test_large_scores_are_stable():
    q, k, v = _qkv((30, 16), (50, 16), torch.float16)
    q = q * 40  # scores in the hundreds: exp overflows without the running maximum
    got = ma.triton_attention(q, k, v, block_m=16, block_n=16)
    assert torch.isfinite(got).all()
    _assert_close(got, _reference(q, k, v), torch.float16)


def test_single_block_kernel():
    from mini_attn.kernels import forward, launch

    for dtype in (torch.float32, torch.float16):
        q, k, v = _qkv((3, 20, 16), (3, 37, 16), dtype)
        got = launch.launch_single_block(forward.single_block_attention_kernel, q, k, v)
        _assert_close(got, _reference(q, k, v), dtype)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda q, k, v: (q.long(), k, v), TypeError, "query must be a floating-point"),
        (lambda q, k, v: (q.double(), k.double(), v.double()), TypeError, "float16, bfloat16"),
        (lambda q, k, v: (q, k.half(), v), TypeError, "one dtype"),
        (lambda q, k, v: (q[..., :24], k[..., :24], v[..., :24]), ValueError, "one of (16,"),
        (lambda q, k, v: (q, k[..., :16], v), ValueError, "share the last dimension D"),
        (lambda q, k, v: (q, k, v[:, :7]), ValueError, "same number of rows S"),
        (lambda q, k, v: (q[:, :0], k, v), ValueError, "at least one query"),
        (lambda q, k, v: (q.repeat(3, 1, 1), k, v), ValueError, "do not broadcast"),
        (lambda q, k, v: (q.numpy(), k, v), TypeError, "query must be a torch.Tensor"),
    ],
)
def test_bad_input_is_refused_clearly(change, error, message):
    q, k, v = _qkv((2, 10, 32), (2, 12, 32))
    with pytest.raises(error, match=message.replace("(", r"\(")):
        ma.triton_attention(*change(q, k, v), block_m=16, block_n=16)


@pytest.mark.parametrize("blocks", [{"block_m": 24}, {"block_n": 8}, {"block_m": 32.0}])
def test_bad_block_size_is_refused(blocks):
    q, k, v = _qkv((10, 16), (12, 16))
    name = next(iter(blocks))
    with pytest.raises(ValueError, match=f"{name} must be a power of two"):
        ma.triton_attention(q, k, v, **blocks)


@pytest.mark.parametrize(
    ("dtype", "causal", "head_dim"),
    [
        (torch.float32, False, 64),
        (torch.float32, True, 64),
        (torch.float16, False, 64),
        (torch.float16, True, 128),
        (torch.bfloat16, False, 128),
        (torch.bfloat16, True, 64),
    ],
    ids=str,
)
def test_gradients_equal_pytorch(dtype, causal, head_dim):
    """The backward kernels against autograd through PyTorch's attention in float32.

    No float64 gradcheck: the kernels accumulate in float32 whatever the input, so the
    reference is PyTorch's exact float32 gradient, at a tolerance fit for ``dtype``.
    """
    q, k, v = (x.requires_grad_() for x in _qkv((2, 40, head_dim), (2, 72, head_dim), dtype))
    out = ma.triton_attention(q, k, v, causal=causal, block_m=32, block_n=16)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    out.backward(grad_out)
    q32, k32, v32 = (x.detach().float().requires_grad_() for x in (q, k, v))
    _reference(q32, k32, v32, is_causal=causal).backward(grad_out.float())
    for name, got, expected in (("query", q, q32), ("key", k, k32), ("value", v, v32)):
        assert got.grad.dtype == dtype, name
        tol = 2 * TOLERANCE[dtype]
        torch.testing.assert_close(got.grad.float(), expected.grad, atol=tol, rtol=tol, msg=name)


def test_gradients_through_broadcast_and_strided_inputs():
    x, _, _ = _qkv((1, 24, 2, 3 * 32), (1,))
    x.requires_grad_()
    q, k, v = (t.transpose(1, 2) for t in x.chunk(3, dim=-1))  # 3 × (1, 2, 24, 32), strided
    k = k[:, :1]  # one key/value head for two query heads: broadcast
    v = v[:, :1]
    ma.triton_attention(q, k, v, causal=True, block_m=16, block_n=16).sum().backward()
    x32 = x.detach().clone().requires_grad_()
    q32, k32, v32 = (t.transpose(1, 2) for t in x32.chunk(3, dim=-1))
    k32, v32 = k32[:, :1].expand(1, 2, 24, 32), v32[:, :1].expand(1, 2, 24, 32)
    _reference(q32, k32, v32, is_causal=True).sum().backward()
    torch.testing.assert_close(x.grad, x32.grad, atol=1e-5, rtol=1e-5)


def test_no_graph_under_no_grad():
    q, k, v = (x.requires_grad_() for x in _qkv((10, 16), (12, 16)))
    with torch.no_grad():
        out = ma.triton_attention(q, k, v, block_m=16, block_n=16)
    assert not out.requires_grad
    assert ma.triton_attention(q, k, v, block_m=16, block_n=16).grad_fn is not None


def _run_python(code: str, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | env
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment,
        timeout=300,
    )


def test_import_needs_no_triton_and_cpu_inputs_need_the_interpreter():
    """In a fresh process without TRITON_INTERPRET: no Triton at import, a clear error at call."""
    result = _run_python(
        """
        import sys
        import torch
        import mini_attn as ma
        assert "triton" not in sys.modules, "import mini_attn imported Triton"
        x = torch.zeros(16, 16)
        try:
            ma.triton_attention(x, x, x)
        except RuntimeError as error:
            print(error)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "compiled for the GPU" in result.stdout and "TRITON_INTERPRET=1" in result.stdout


def test_missing_triton_is_named(monkeypatch):
    import mini_attn

    monkeypatch.setitem(sys.modules, "triton", None)  # as if Triton were not installed
    for name in ("launch", "forward", "backward"):
        monkeypatch.delitem(sys.modules, f"mini_attn.kernels.{name}", raising=False)
        monkeypatch.delattr(mini_attn.kernels, name, raising=False)
    q, k, v = _qkv((10, 16), (12, 16))
    with pytest.raises(ModuleNotFoundError, match=r"needs Triton.*requirements\.txt"):
        ma.triton_attention(q, k, v)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled kernel needs a CUDA GPU")
def test_compiled_kernel_on_the_gpu():
    """The compiled kernels (no interpreter) in a fresh process: forward and gradients."""
    result = _run_python(
        """
        import torch
        import torch.nn.functional as F
        import mini_attn as ma
        tolerance = {torch.float16: 2e-3, torch.bfloat16: 2e-2}
        for dtype in tolerance:
            for head_dim in (64, 128):
                for causal in (False, True):
                    g = torch.Generator(device="cuda").manual_seed(0)
                    q, k, v = (torch.randn(2, 4, 1000, head_dim, device="cuda", generator=g)
                               .to(dtype).requires_grad_() for _ in range(3))
                    got = ma.triton_attention(q, k, v, causal=causal)
                    inputs = [x.detach().float().requires_grad_() for x in (q, k, v)]
                    expected = F.scaled_dot_product_attention(*inputs, is_causal=causal)
                    tol = tolerance[dtype]
                    torch.testing.assert_close(got.float(), expected, atol=tol, rtol=tol)
                    grad_out = torch.randn_like(expected)
                    got.backward(grad_out.to(dtype))
                    expected.backward(grad_out)
                    for x, x32 in zip((q, k, v), inputs):
                        torch.testing.assert_close(
                            x.grad.float(), x32.grad, atol=2 * tol, rtol=2 * tol)
        print("ok")
        """
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr
