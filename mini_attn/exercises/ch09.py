"""Checkers for the exercises of chapter 9, "Writing the fused kernel".

The checkers of Triton kernels import Triton when they are called, not before.
"""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F

from ..core.masks import causal_mask
from ..core.sdpa import scaled_dot_product_attention
from ._core import CheckFailed, call, expect_close, passed

__all__ = [
    "check_causal_single_block_kernel",
    "check_count_key_blocks",
    "check_softmax_kernel",
    "launch_rowwise",
]


def _count_tiles(n_queries, n_keys, block_m, block_n, causal, *, unmasked_only=False) -> int:
    """The (query block, key block) tiles that hold at least one allowed (query, key) pair.

    With ``unmasked_only``, the tiles where every query of the block sees every key of the
    block (padding queries do not count against a tile; padding keys do: they are masked).
    """
    allowed = (
        causal_mask(n_queries, n_keys)
        if causal
        else torch.ones(n_queries, n_keys, dtype=torch.bool)
    )
    padded = F.pad(allowed, (0, -n_keys % block_n), value=False)  # padding keys
    padded = F.pad(padded, (0, 0, 0, -n_queries % block_m), value=unmasked_only)  # queries
    tiles = padded.unflatten(0, (-1, block_m)).unflatten(2, (-1, block_n))  # (Mb, bm, Nb, bn)
    reduce = torch.all if unmasked_only else torch.any
    return int(reduce(reduce(tiles, dim=3), dim=1).sum())


def _causal_hints(n_queries: int, n_keys: int, block_m: int, block_n: int) -> list:
    """(count, hint) of two causal mistakes: a stop not clipped at S, and "half"."""
    n_query_blocks = math.ceil(n_queries / block_m)
    unclipped = sum(
        math.ceil(min((b + 1) * block_m, n_queries) / block_n) for b in range(n_query_blocks)
    )
    every = n_query_blocks * math.ceil(n_keys / block_n)
    half = (
        "the causal count is not half of all the blocks: the diagonal blocks are loaded "
        "whole, and the triangle's shape depends on block_m, block_n, L and S. Count, for "
        "each query block, the key blocks up to its last query."
    )
    return [
        (
            unclipped,
            "a program's causal stop is its last query + 1, but never more than S: with "
            "more queries than keys, clip it at n_keys (min(..., n_keys)).",
        ),
        (every // 2, half),
        (math.ceil(every / 2), half),
    ]


def check_count_key_blocks(fn) -> None:
    """Exercise 9.2: ``fn(n_queries, n_keys, *, block_m, block_n, causal) -> int``.

    The number of key blocks (each a ``(block_n, D)`` block of K and one of V) that all the
    programs of :func:`mini_attn.triton_attention`'s kernel load for one (batch, head): a
    program loads every key block holding at least one key that one of its queries sees.
    """
    cases = [
        ("L = S = 256, blocks 64 × 64", 256, 256, 64, 64, False),
        ("ragged: L = 100, S = 130, blocks 64 × 32", 100, 130, 64, 32, False),
        ("causal, L = S = 256, blocks 64 × 64", 256, 256, 64, 64, True),
        ("causal, block_m = 128 > block_n = 32", 256, 256, 128, 32, True),
        ("causal, block_m = 16 < block_n = 64", 200, 200, 16, 64, True),
        ("causal, more keys than queries: L = 100, S = 300", 100, 300, 64, 16, True),
        ("causal, more queries than keys: L = 300, S = 100", 300, 100, 64, 32, True),
    ]
    for case, n_queries, n_keys, block_m, block_n, causal in cases:
        expected = _count_tiles(n_queries, n_keys, block_m, block_n, causal)
        got = call(fn, case, n_queries, n_keys, block_m=block_m, block_n=block_n, causal=causal)
        try:
            got = operator.index(got)
        except TypeError:
            raise CheckFailed(
                f"case '{case}': the count should be an int, got {type(got).__name__}"
            ) from None
        if got == expected:
            continue
        n_query_blocks = math.ceil(n_queries / block_m)
        padded_queries = n_query_blocks * block_m
        hints = []
        if causal:
            hints += [
                (
                    n_query_blocks * math.ceil(n_keys / block_n),
                    "that is every key block for every query block: with causal=True a "
                    "program skips the key blocks that lie entirely above the diagonal "
                    "(keys j > i).",
                ),
                (
                    _count_tiles(padded_queries, n_keys, block_m, block_n, causal),
                    "the padding queries of the last block (rows ≥ L) need no key: that "
                    "block's last query is L - 1, so it loads keys up to L - 1 only.",
                ),
            ]
        if n_queries % block_m or n_keys % block_n:  # before the unmasked-only count, which
            hints.append((  # can coincide with the rounded-down one
                (n_queries // block_m) * (n_keys // block_n),
                "a ragged last block (fewer than block_m queries or block_n keys) still costs "
                "a whole program or a whole load: round up, as triton.cdiv does.",
            ))  # fmt: skip
        if causal:
            hints += _causal_hints(n_queries, n_keys, block_m, block_n)
        hints.append((
            _count_tiles(n_queries, n_keys, block_m, block_n, causal, unmasked_only=True),
            "you counted only the blocks without a mask, or rounded down with //: the "
            "masked blocks (on the diagonal, and the ragged last block) are loaded too. "
            "Round up: triton.cdiv(stop, block_n).",
        ))  # fmt: skip
        floor_loop = sum(
            (min(m + block_m, n_queries, n_keys) if causal else n_keys) // block_n
            for m in range(0, n_queries, block_m)
        )
        hints.append((  # the loop of the solution with // instead of a ceiling
            floor_loop,
            "you rounded each query block's key blocks down (stop // block_n): a ragged "
            "last key block is still loaded, masked. Round up: triton.cdiv(stop, block_n).",
        ))  # fmt: skip
        hints.append(
            (math.ceil(n_keys / block_n), "count the key blocks of every program, not of one.")
        )
        hint = next((text for count, text in hints if count == got), None)
        raise CheckFailed(
            f"case '{case}': expected {expected} key blocks, got {got}"
            + (f"\nHint: {hint}" if hint else "")
        )
    passed("count_key_blocks", len(cases))


def _kernel_device(kernel) -> str:
    """Where the learner's kernel runs: the CPU in Triton's interpreter, else a GPU."""
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    name = getattr(kernel, "__name__", "your kernel")
    if isinstance(kernel, InterpretedFunction):
        return "cpu"
    if isinstance(kernel, JITFunction) and torch.cuda.is_available():
        return "cuda"
    if isinstance(kernel, JITFunction):
        raise CheckFailed(
            f"{name} was compiled for a GPU and there is none: set "
            "os.environ['TRITON_INTERPRET'] = '1' before you define it (the chapter's first "
            "cell does), then run its cell again"
        )
    raise CheckFailed(f"{name} is not a Triton kernel: decorate it with @triton.jit")


def _run_kernel(case: str, launch, *args):
    """``launch(*args)``; a stub or a crash of the learner's kernel becomes a plain message."""
    try:
        return launch(*args)
    except CheckFailed as failure:
        raise CheckFailed(f"case '{case}': {failure}") from None
    except Exception as error:
        chain, cause = [], error
        while cause is not None and len(chain) < 10:
            chain.append(cause)
            cause = cause.__cause__ or cause.__context__
        if any(
            isinstance(e, NotImplementedError) or "NotImplementedError" in str(e) for e in chain
        ):
            raise CheckFailed(
                "your kernel is not implemented yet (it raised NotImplementedError). Replace "
                "the `raise NotImplementedError` line with your code, then run the check again."
            ) from None
        raise CheckFailed(
            f"case '{case}': your kernel raised {type(error).__name__}: {error}"
        ) from error


_CANARY = -12345.0  # fills the guard zones: a value a softmax never writes


def _guarded(n_elements: int, guard: int, like: torch.Tensor) -> torch.Tensor:
    """A flat buffer of ``guard + n_elements + guard`` elements, all the canary value."""
    return torch.full((2 * guard + n_elements,), _CANARY, dtype=like.dtype, device=like.device)


def _check_guards(buffer: torch.Tensor, guard: int, shape: tuple[int, int]) -> None:
    """Raise :class:`CheckFailed` naming the index and the row stride of a stray write."""
    n_rows, n_cols = shape
    n_elements = n_rows * n_cols
    written = (buffer != torch.tensor(_CANARY, dtype=buffer.dtype)).nonzero().flatten()
    written = (written - guard).tolist()
    outside = [i for i in written if not 0 <= i < n_elements]
    if not outside:
        return
    starts = [i for i in written if i - 1 not in set(written)]  # where each run begins
    stride = starts[1] - starts[0] if len(starts) > 1 else None
    where = (
        f"element {outside[0]}, {outside[0] - n_elements + 1} past the end"
        if outside[0] >= n_elements
        else f"element {outside[0]}, before the start"
    )
    raise CheckFailed(
        f"your kernel wrote Out outside the ({n_rows}, {n_cols}) tensor, at {where} "
        f"(it has {n_elements} elements; a guard zone around it caught the write, which "
        "would otherwise corrupt memory and could crash the kernel)"
        + (
            f". Its rows start {stride} elements apart: row r of a contiguous "
            f"(n_rows, n_cols) tensor starts at r · n_cols = r · {n_cols}, not r · BLOCK."
            if stride is not None and stride != n_cols
            else "."
        )
    )


def launch_rowwise(kernel, x: torch.Tensor) -> torch.Tensor:
    """Launch a softmax kernel like exercise 9.1's: one program per row of a 2-D tensor.

    The input and the output sit inside larger buffers whose guard zones, before and after,
    hold a canary value: a kernel that writes outside ``Out`` (a wrong row stride, say)
    writes into a guard zone instead of the process's memory, and is reported.

    Args:
        kernel (triton.JITFunction): ``kernel(X, Out, n_cols, BLOCK: tl.constexpr)``.
        x (Tensor): shape :math:`(R, C)`, on the CPU (interpreter) or a GPU.

    Returns:
        Tensor: ``Out``, shape :math:`(R, C)`, the dtype of ``x``.

    Raises:
        CheckFailed: if the kernel wrote outside ``Out``; the message names the first
            such element and the row stride the writes followed.

    Shape legend:

    - ``R``: rows (one program each)
    - ``C``: columns (``n_cols``)
    """
    import triton

    x = x.contiguous()
    n_rows, n_cols = x.shape
    block = triton.next_power_of_2(n_cols)
    guard = 4 * n_rows * block + 1024  # past any row stride up to 4 · BLOCK
    source, target = _guarded(x.numel(), guard, x), _guarded(x.numel(), guard, x)
    source[guard : guard + x.numel()] = x.flatten()
    x_in = source[guard : guard + x.numel()].view(n_rows, n_cols)
    out = target[guard : guard + x.numel()].view(n_rows, n_cols)
    kernel[(n_rows,)](x_in, out, n_cols, BLOCK=block)
    _check_guards(target, guard, (n_rows, n_cols))
    return out.clone()


def check_softmax_kernel(kernel) -> None:
    """Exercise 9.1: a Triton kernel for the softmax of each row of a 2-D tensor.

    ``kernel(X, Out, n_cols, BLOCK: tl.constexpr)`` is launched with one program per row,
    ``kernel[(n_rows,)](x, out, n_cols, BLOCK=triton.next_power_of_2(n_cols))``, on a
    contiguous ``(n_rows, n_cols)`` tensor ``x``; ``out`` has the shape and dtype of ``x``.
    """
    device = _kernel_device(kernel)
    g = torch.Generator().manual_seed(81)
    cases = [
        ("3 rows of 16 (a power of two)", torch.randn(3, 16, generator=g)),
        ("5 rows of 13 (padded to 16)", torch.randn(5, 13, generator=g)),
        ("2 rows of 100 (padded to 128)", torch.randn(2, 100, generator=g)),
        ("large values (± 1000)", torch.randn(4, 20, generator=g) * 1000),
        ("float16, 3 rows of 40", torch.randn(3, 40, generator=g).half()),
    ]
    for case, x in cases:
        expected = torch.softmax(x.float(), dim=-1).to(x.dtype)
        got = _run_kernel(case, launch_rowwise, kernel, x.to(device))
        tol = 1e-3 if x.dtype == torch.float16 else 1e-5

        def hint(got, expected=expected):
            got = got.float()
            if not torch.isfinite(got).all():
                return "exp overflows for large values: subtract the row's maximum first."
            sums = got.sum(dim=-1)
            if (sums < 1 - 1e-2).any():
                return (
                    "the rows sum to less than 1: the padding lanes (columns ≥ n_cols) count in "
                    "the sum. Load them with other=-float('inf'), so that exp gives them 0."
                )
            if got.shape[0] > 1 and torch.allclose(got, expected[:1].expand_as(got).float()):
                return "every row got row 0's softmax: move the pointers by row · n_cols."
            return None

        expect_close(case, got, expected, what="the softmax", atol=tol, rtol=tol, hint=hint)
    passed("softmax_kernel", len(cases))


def _with_padding_keys(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention that also sees the zero padding keys up to the kernel's BLOCK_S."""
    block_s = max(16, 1 << (k.shape[1] - 1).bit_length())
    k_pad, v_pad = (F.pad(x, (0, 0, 0, block_s - k.shape[1])) for x in (k, v))
    rows = torch.arange(q.shape[1])[:, None]
    mask = torch.arange(block_s)[None, :] <= rows
    return scaled_dot_product_attention(q, k_pad, v_pad, mask=mask)[0]


def check_causal_single_block_kernel(kernel) -> None:
    """Exercise 9.3: a causal version of ``single_block_attention_kernel``.

    ``kernel`` is a ``@triton.jit`` function with the signature of
    ``mini_attn.kernels.forward.single_block_attention_kernel``; it is launched by
    ``mini_attn.kernels.launch.launch_single_block``, one program per sequence. Query ``i``
    may attend to keys ``j ≤ i`` only (top-left aligned, as PyTorch's ``is_causal``). Runs
    on CPU tensors in Triton's interpreter, on CUDA tensors when compiled.
    """
    from ..kernels.launch import launch_single_block

    device = _kernel_device(kernel)
    g = torch.Generator().manual_seed(8)

    def qkv(n, n_queries, n_keys, dtype=torch.float32, q_scale=1.0):
        q = torch.randn(n, n_queries, 16, generator=g) * q_scale
        k, v = torch.randn(n, n_keys, 16, generator=g), torch.randn(n, n_keys, 16, generator=g)
        return tuple(x.to(device, dtype) for x in (q, k, v))

    cases = [
        ("one sequence, L = S = 16", *qkv(1, 16, 16)),
        ("two sequences, L = S = 20 (padded to 32)", *qkv(2, 20, 20)),
        ("more keys than queries: L = 12, S = 30", *qkv(1, 12, 30)),
        ("more queries than keys: L = 30, S = 12", *qkv(1, 30, 12)),
        ("large scores (queries × 30)", *qkv(1, 24, 24, q_scale=30.0)),
        ("float16, L = S = 32", *qkv(2, 32, 32, torch.float16)),
    ]
    for case, q, k, v in cases:
        q32, k32, v32 = q.float(), k.float(), v.float()
        expected = scaled_dot_product_attention(q32, k32, v32, causal=True)[0]
        got = _run_kernel(case, launch_single_block, kernel, q, k, v)
        tol = 2e-3 if q.dtype == torch.float16 else 1e-4
        n_queries, n_keys = q.shape[1], k.shape[1]

        def hint(got, q32=q32, k32=k32, v32=v32, n_queries=n_queries, n_keys=n_keys, tol=tol):
            got = got.float()
            if torch.isnan(got).any():
                return (
                    "NaN: a query row whose every score is -inf has no maximum to subtract. "
                    "With the mask j ≤ i, query i always sees key 0 — is your mask right, and "
                    "did you keep the mask of the padding keys (j < n_keys)?"
                )

            def attention(mask):
                return scaled_dot_product_attention(q32, k32, v32, mask=mask)[0]

            rows = torch.arange(n_queries)[:, None]
            cols = torch.arange(n_keys)[None, :]
            guesses = [
                (None, "the output is not causal: mask the scores where key j > query i."),
                (
                    cols >= rows,
                    "your mask is inverted: query i may see keys j ≤ i (on and below the "
                    "diagonal), not j ≥ i.",
                ),
                (
                    cols <= rows + (n_keys - n_queries),
                    "your diagonal is aligned bottom-right (key j ≤ i + S - L); PyTorch's "
                    "is_causal aligns it top-left: key j ≤ i, whatever L and S.",
                ),
            ]
            for mask, text in guesses:
                if torch.allclose(got, attention(mask), atol=tol, rtol=tol):
                    return text
            if torch.allclose(got, _with_padding_keys(q32, k32, v32), atol=tol, rtol=tol):
                return (
                    "the padding keys (j ≥ n_keys, loaded as zeros) get weights: a query i ≥ "
                    "S sees them through j ≤ i alone. Keep the mask j < n_keys as well."
                )
            return None

        expect_close(case, got, expected, what="the output", atol=tol, rtol=tol, hint=hint)
    passed("causal_single_block_kernel", len(cases))
