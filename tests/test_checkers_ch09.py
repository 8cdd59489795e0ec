"""The checkers of chapter 9 catch plausible wrong answers and say what is wrong.

The reference solutions are run by test_exercises.py, from the chapter itself. The
kernels below run in Triton's interpreter: ``TRITON_INTERPRET=1`` is set before they are
defined (see test_triton_attention.py).
"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"  # before any kernel below is defined

import math

import pytest
import torch

from mini_attn.exercises import (
    CheckFailed,
    check_causal_single_block_kernel,
    check_count_key_blocks,
    check_softmax_kernel,
)

try:
    import triton
    import triton.language as tl
except ImportError:  # the kernel tests skip; the counting tests still run
    triton = None

needs_triton = pytest.mark.skipif(triton is None, reason="needs Triton (requirements.txt)")


# --- exercise 9.2: counting key blocks (no Triton needed) ----------------------------------


def count_key_blocks(n_queries, n_keys, *, block_m, block_n, causal):
    total = 0
    for start_m in range(0, n_queries, block_m):
        stop = min(start_m + block_m, n_queries, n_keys) if causal else n_keys
        total += math.ceil(stop / block_n)
    return total


def count_ignoring_causal(n_queries, n_keys, *, block_m, block_n, causal):
    return math.ceil(n_queries / block_m) * math.ceil(n_keys / block_n)


def count_rounding_down(n_queries, n_keys, *, block_m, block_n, causal):
    return (n_queries // block_m) * (n_keys // block_n)


def count_floor_in_the_loop(n_queries, n_keys, *, block_m, block_n, causal):
    total = 0
    for start_m in range(0, n_queries, block_m):
        stop = min(start_m + block_m, n_queries, n_keys) if causal else n_keys
        total += stop // block_n  # floor instead of ceil
    return total


def count_padding_queries_too(n_queries, n_keys, *, block_m, block_n, causal):
    total = 0
    for start_m in range(0, n_queries, block_m):
        stop = min(start_m + block_m, n_keys) if causal else n_keys  # forgets the last query
        total += math.ceil(stop / block_n)
    return total


def count_unmasked_only(n_queries, n_keys, *, block_m, block_n, causal):
    total = 0
    for start_m in range(0, n_queries, block_m):
        stop = min(start_m + 1, n_keys) if causal else n_keys
        total += stop // block_n
    return total


def count_not_clipped_at_keys(n_queries, n_keys, *, block_m, block_n, causal):
    total = 0
    for start_m in range(0, n_queries, block_m):
        stop = min(start_m + block_m, n_queries) if causal else n_keys  # no min(..., n_keys)
        total += -(-stop // block_n)
    return total


def count_causal_half(n_queries, n_keys, *, block_m, block_n, causal):
    every = -(-n_queries // block_m) * -(-n_keys // block_n)
    return every // 2 if causal else every


def count_by_tiles(n_queries, n_keys, *, block_m, block_n, causal):
    """A different correct count: visit every tile and test its top-left pair."""
    return sum(
        1
        for m in range(0, n_queries, block_m)
        for n in range(0, n_keys, block_n)
        if not causal or n <= min(m + block_m, n_queries) - 1
    )


def test_a_different_correct_count_passes(capsys):
    check_count_key_blocks(count_by_tiles)
    assert "✓ count_key_blocks" in capsys.readouterr().out


def test_count_reference_passes(capsys):
    check_count_key_blocks(count_key_blocks)
    assert "✓ count_key_blocks" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (count_ignoring_causal, "skips the key blocks that lie entirely above the diagonal"),
        (count_rounding_down, "round up, as triton.cdiv does"),
        (count_floor_in_the_loop, "Round up: triton.cdiv(stop, block_n)"),
        (count_padding_queries_too, "padding queries of the last block"),
        (count_unmasked_only, "masked blocks (on the diagonal, and the ragged last block)"),
        (lambda *a, **k: 10.0, "should be an int, got float"),
        (count_not_clipped_at_keys, "clip it at n_keys"),
        (count_causal_half, "is not half of all the blocks"),
    ],
    ids=[
        "no-causal-skip",
        "round-down",
        "floor-in-the-loop",
        "padding-queries",
        "unmasked-only",
        "float",
        "not-clipped-at-S",
        "half",
    ],
)
def test_count_wrong_answers_fail_helpfully(wrong, message):
    with pytest.raises(CheckFailed, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_count_key_blocks(wrong)


# --- exercises 8.1 and 8.3: Triton kernels --------------------------------------------------

if triton is not None:

    @triton.jit
    def softmax_kernel(X, Out, n_cols, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        x = tl.load(X + row * n_cols + cols, mask=cols < n_cols, other=-float("inf"))
        e = tl.exp(x.to(tl.float32) - tl.max(x.to(tl.float32), axis=0))
        out = e / tl.sum(e, axis=0)
        tl.store(Out + row * n_cols + cols, out.to(Out.dtype.element_ty), mask=cols < n_cols)

    @triton.jit
    def softmax_padding_zero(X, Out, n_cols, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        x = tl.load(X + row * n_cols + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
        e = tl.exp(x - tl.max(x, axis=0))
        out = e / tl.sum(e, axis=0)
        tl.store(Out + row * n_cols + cols, out.to(Out.dtype.element_ty), mask=cols < n_cols)

    @triton.jit
    def softmax_no_max(X, Out, n_cols, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        x = tl.load(X + row * n_cols + cols, mask=cols < n_cols, other=-float("inf"))
        e = tl.exp(x.to(tl.float32))
        out = e / tl.sum(e, axis=0)
        tl.store(Out + row * n_cols + cols, out.to(Out.dtype.element_ty), mask=cols < n_cols)

    @triton.jit
    def softmax_row_zero_only(X, Out, n_cols, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        x = tl.load(X + cols, mask=cols < n_cols, other=-float("inf")).to(tl.float32)
        e = tl.exp(x - tl.max(x, axis=0))
        out = e / tl.sum(e, axis=0)
        tl.store(Out + row * n_cols + cols, out.to(Out.dtype.element_ty), mask=cols < n_cols)

    @triton.jit
    def softmax_stub(X, Out, n_cols, BLOCK: tl.constexpr):
        raise NotImplementedError("Exercise 9.1")

    @triton.jit
    def attention_with_mask(
        Q, K, V, Out, n_queries, n_keys, scale,
        BLOCK_L: tl.constexpr, BLOCK_S: tl.constexpr, HEAD_DIM: tl.constexpr, MASK: tl.constexpr,
    ):  # fmt: skip
        """The exercise's kernel with the mask chosen by MASK (0: the right one)."""
        n = tl.program_id(0)
        rows = tl.arange(0, BLOCK_L)
        cols = tl.arange(0, BLOCK_S)
        dims = tl.arange(0, HEAD_DIM)
        q_offsets = n * n_queries * HEAD_DIM + rows[:, None] * HEAD_DIM + dims[None, :]
        kv_offsets = n * n_keys * HEAD_DIM + cols[:, None] * HEAD_DIM + dims[None, :]
        q = tl.load(Q + q_offsets, mask=rows[:, None] < n_queries, other=0.0)
        k = tl.load(K + kv_offsets, mask=cols[:, None] < n_keys, other=0.0)
        v = tl.load(V + kv_offsets, mask=cols[:, None] < n_keys, other=0.0)
        scores = tl.dot(q, tl.trans(k)) * scale
        allowed = cols[None, :] < n_keys
        if MASK == 0:
            allowed = allowed & (cols[None, :] <= rows[:, None])  # right: j ≤ i
        elif MASK == 1:
            allowed = allowed & (cols[None, :] >= rows[:, None])  # inverted
        elif MASK == 2:
            allowed = allowed & (cols[None, :] < rows[:, None])  # the diagonal left out
        elif MASK == 3:
            allowed = allowed & (
                cols[None, :] <= rows[:, None] + n_keys - n_queries
            )  # bottom-right
        elif MASK == 4:
            allowed = cols[None, :] <= rows[:, None]  # the padding keys' mask dropped
        elif MASK == 5:  # right too, written differently: i - j ≥ 0
            allowed = allowed & ((rows[:, None] - cols[None, :]) >= 0)
        scores = tl.where(allowed, scores, float("-inf"))
        weights = tl.exp(scores - tl.max(scores, axis=1)[:, None])
        weights = weights / tl.sum(weights, axis=1)[:, None]
        out = tl.dot(weights.to(v.dtype), v)
        tl.store(Out + q_offsets, out.to(Out.dtype.element_ty), mask=rows[:, None] < n_queries)

    @triton.jit
    def causal_right(
        Q, K, V, Out, n_queries, n_keys, scale,
        BLOCK_L: tl.constexpr, BLOCK_S: tl.constexpr, HEAD_DIM: tl.constexpr,
    ):  # fmt: skip
        attention_with_mask(Q, K, V, Out, n_queries, n_keys, scale, BLOCK_L, BLOCK_S, HEAD_DIM, 0)

    @triton.jit
    def causal_inverted(
        Q, K, V, Out, n_queries, n_keys, scale,
        BLOCK_L: tl.constexpr, BLOCK_S: tl.constexpr, HEAD_DIM: tl.constexpr,
    ):  # fmt: skip
        attention_with_mask(Q, K, V, Out, n_queries, n_keys, scale, BLOCK_L, BLOCK_S, HEAD_DIM, 1)

    @triton.jit
    def causal_without_diagonal(
        Q, K, V, Out, n_queries, n_keys, scale,
        BLOCK_L: tl.constexpr, BLOCK_S: tl.constexpr, HEAD_DIM: tl.constexpr,
    ):  # fmt: skip
        attention_with_mask(Q, K, V, Out, n_queries, n_keys, scale, BLOCK_L, BLOCK_S, HEAD_DIM, 2)

    @triton.jit
    def causal_bottom_right(
        Q, K, V, Out, n_queries, n_keys, scale,
        BLOCK_L: tl.constexpr, BLOCK_S: tl.constexpr, HEAD_DIM: tl.constexpr,
    ):  # fmt: skip
        attention_with_mask(Q, K, V, Out, n_queries, n_keys, scale, BLOCK_L, BLOCK_S, HEAD_DIM, 3)

    @triton.jit
    def causal_padding_keys_seen(
        Q, K, V, Out, n_queries, n_keys, scale,
        BLOCK_L: tl.constexpr, BLOCK_S: tl.constexpr, HEAD_DIM: tl.constexpr,
    ):  # fmt: skip
        attention_with_mask(Q, K, V, Out, n_queries, n_keys, scale, BLOCK_L, BLOCK_S, HEAD_DIM, 4)

    @triton.jit
    def causal_by_difference(
        Q, K, V, Out, n_queries, n_keys, scale,
        BLOCK_L: tl.constexpr, BLOCK_S: tl.constexpr, HEAD_DIM: tl.constexpr,
    ):  # fmt: skip
        attention_with_mask(Q, K, V, Out, n_queries, n_keys, scale, BLOCK_L, BLOCK_S, HEAD_DIM, 5)

    @triton.jit
    def softmax_stride_block(X, Out, n_cols, BLOCK: tl.constexpr):
        """The rows BLOCK apart instead of n_cols: writes past the end of Out."""
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        x = tl.load(X + row * BLOCK + cols, mask=cols < n_cols, other=-float("inf"))
        e = tl.exp(x.to(tl.float32) - tl.max(x.to(tl.float32), axis=0))
        out = e / tl.sum(e, axis=0)
        tl.store(Out + row * BLOCK + cols, out.to(Out.dtype.element_ty), mask=cols < n_cols)

    @triton.jit
    def softmax_no_store_mask(X, Out, n_cols, BLOCK: tl.constexpr):
        """The store writes the padding lanes too: past the end of the last row."""
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        x = tl.load(X + row * n_cols + cols, mask=cols < n_cols, other=-float("inf"))
        e = tl.exp(x.to(tl.float32) - tl.max(x.to(tl.float32), axis=0))
        tl.store(Out + row * n_cols + cols, (e / tl.sum(e, axis=0)).to(Out.dtype.element_ty))

    @triton.jit
    def softmax_base_two(X, Out, n_cols, BLOCK: tl.constexpr):
        """A different correct kernel: exp2 of the scaled scores, as the chapter's kernel."""
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        x = tl.load(X + row * n_cols + cols, mask=cols < n_cols, other=-float("inf"))
        x = (x.to(tl.float32) - tl.max(x.to(tl.float32), axis=0)) * 1.4426950408889634
        e = tl.exp2(x)
        tl.store(Out + row * n_cols + cols, (e / tl.sum(e, axis=0)).to(Out.dtype.element_ty),
                 mask=cols < n_cols)  # fmt: skip


@needs_triton
def test_softmax_reference_passes(capsys):
    check_softmax_kernel(softmax_kernel)
    assert "✓ softmax_kernel" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy overflows in wrong kernels
@needs_triton
@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        ("softmax_padding_zero", "padding lanes"),
        ("softmax_no_max", "subtract the row's maximum"),
        ("softmax_row_zero_only", "move the pointers by row · n_cols"),
        ("softmax_stub", "not implemented yet"),
        (
            "softmax_stride_block",
            r"5 rows of 13.*wrote Out outside the \(5, 13\) tensor, at element 65, 1 past the "
            r"end.*rows start 16 elements apart: .* r · 13, not r · BLOCK",
        ),
        ("softmax_no_store_mask", r"5 rows of 13.*wrote Out outside the \(5, 13\) tensor"),
    ],
)
def test_softmax_wrong_answers_fail_helpfully(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        check_softmax_kernel(globals()[wrong])


@needs_triton
def test_a_different_correct_softmax_kernel_passes(capsys):
    check_softmax_kernel(softmax_base_two)
    assert "✓ softmax_kernel" in capsys.readouterr().out


@needs_triton
def test_a_stray_write_leaves_the_process_alive_and_the_guard_names_it():
    """The review's crash (heap corruption, 2 of 2 runs): in a subprocess, three times."""
    import subprocess
    import sys

    program = (
        "import os; os.environ['TRITON_INTERPRET'] = '1'\n"
        "import tests.test_checkers_ch09 as t\n"
        "from mini_attn.exercises import CheckFailed, check_softmax_kernel\n"
        "for _ in range(3):\n"
        "    try:\n"
        "        check_softmax_kernel(t.softmax_stride_block)\n"
        "    except CheckFailed as failure:\n"
        "        assert 'outside the' in str(failure)\n"
        "print('alive')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "alive" in done.stdout, done.stderr[-2000:]


@needs_triton
def test_a_plain_function_is_not_a_kernel():
    def softmax(X, Out, n_cols, BLOCK):
        pass

    with pytest.raises(CheckFailed, match=r"not a Triton kernel: decorate it with @triton\.jit"):
        check_softmax_kernel(softmax)


@needs_triton
@pytest.mark.skipif(torch.cuda.is_available(), reason="a compiled kernel runs on this GPU")
def test_a_compiled_kernel_without_gpu_says_how_to_interpret():
    from triton.runtime.jit import JITFunction

    compiled = JITFunction(softmax_kernel.fn)  # as if TRITON_INTERPRET had not been set
    with pytest.raises(CheckFailed, match="TRITON_INTERPRET"):
        check_softmax_kernel(compiled)


@needs_triton
def test_causal_reference_passes(capsys):
    check_causal_single_block_kernel(causal_right)
    assert "✓ causal_single_block_kernel" in capsys.readouterr().out


@needs_triton
def test_a_different_correct_causal_kernel_passes(capsys):
    check_causal_single_block_kernel(causal_by_difference)
    assert "✓ causal_single_block_kernel" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy overflows in wrong kernels
@needs_triton
@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        ("single_block_attention_kernel", "the output is not causal"),
        ("causal_inverted", "your mask is inverted"),
        ("causal_without_diagonal", "NaN: a query row whose every score is -inf"),
        ("causal_bottom_right", "aligned bottom-right"),
        ("causal_padding_keys_seen", "padding keys"),
    ],
)
def test_causal_wrong_answers_fail_helpfully(wrong, message):
    from mini_attn.kernels import forward

    kernel = globals().get(wrong) or getattr(forward, wrong)
    with pytest.raises(CheckFailed, match=message):
        check_causal_single_block_kernel(kernel)
