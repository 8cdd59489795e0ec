"""Chapter 6's checkers accept right answers and reject plausible wrong ones, helpfully."""

from __future__ import annotations

import math

import pytest
import torch

import mini_attn as ma
from mini_attn.exercises import (
    CheckFailed,
    check_gqa_from_mha,
    check_multi_head_attention,
    check_repeat_kv,
    check_split_heads,
)

# --- split_heads ------------------------------------------------------------------------------


def test_split_heads_accepts_the_library_function(capsys):
    check_split_heads(ma.split_heads)
    assert "✓ split_heads" in capsys.readouterr().out


def test_split_heads_without_the_transpose():
    def reshape_only(x, num_heads):
        *batch, n, e = x.shape
        return x.reshape(*batch, num_heads, n, e // num_heads)

    with pytest.raises(CheckFailed, match=r"(?s)two heads.*Reshape to \(\.\.\., N, H, D\) first"):
        check_split_heads(reshape_only)


def test_split_heads_with_strided_heads():
    def strided(x, num_heads):
        return x.unflatten(-1, (-1, num_heads)).movedim(-1, -3)

    with pytest.raises(CheckFailed, match="every H-th feature"):
        check_split_heads(strided)


def test_split_heads_that_only_handles_three_dimensions():
    def three_d(x, num_heads):
        b, n, e = x.shape
        return x.view(b, n, num_heads, e // num_heads).transpose(1, 2)

    with pytest.raises(CheckFailed, match=r"two batch dimensions.*raised ValueError"):
        check_split_heads(three_d)


# --- multi_head_attention ---------------------------------------------------------------------


def _mha(x, w_q, w_k, w_v, w_o, num_heads, mask=None, *, scale_dim=None, merge=True):
    """A correct solution; scale_dim and merge=False let tests plant one mistake."""
    q, k, v = (ma.split_heads(x @ w, num_heads) for w in (w_q, w_k, w_v))  # (B, H, N, D)
    if mask is not None:
        mask = mask.unsqueeze(1)  # (B, 1, N, N): one mask for every head
    scale = 1 / math.sqrt(scale_dim or q.shape[-1])
    context, _ = ma.scaled_dot_product_attention(q, k, v, mask=mask, scale=scale)
    return ma.merge_heads(context) @ w_o


def test_multi_head_attention_accepts_a_correct_solution(capsys):
    check_multi_head_attention(_mha)
    assert "✓ multi_head_attention" in capsys.readouterr().out


def test_multi_head_attention_scaled_by_the_model_dimension():
    def wrong_scale(x, w_q, w_k, w_v, w_o, num_heads, mask=None):
        return _mha(x, w_q, w_k, w_v, w_o, num_heads, mask, scale_dim=x.shape[-1])

    with pytest.raises(CheckFailed, match=r"(?s)four heads.*1/√D, the head size"):
        check_multi_head_attention(wrong_scale)


def test_multi_head_attention_with_a_single_wide_head():
    def one_head(x, w_q, w_k, w_v, w_o, num_heads, mask=None):
        return _mha(x, w_q, w_k, w_v, w_o, 1, mask)

    with pytest.raises(CheckFailed, match="one head of full width"):
        check_multi_head_attention(one_head)


def test_multi_head_attention_with_transposed_weights():
    def transposed(x, w_q, w_k, w_v, w_o, num_heads, mask=None):
        return _mha(x, w_q.T, w_k.T, w_v.T, w_o.T, num_heads, mask)

    with pytest.raises(CheckFailed, match=r"x @ w \(Q = x w_q\), not x @ w\.T"):
        check_multi_head_attention(transposed)


def test_multi_head_attention_with_the_mask_inverted():
    def inverted(x, w_q, w_k, w_v, w_o, num_heads, mask=None):
        return _mha(x, w_q, w_k, w_v, w_o, num_heads, None if mask is None else ~mask)

    with pytest.raises(CheckFailed, match=r"(?s)padding mask.*yours is inverted"):
        check_multi_head_attention(inverted)


def test_multi_head_attention_with_the_mask_given_no_head_axis():
    """The likely slip: a (B, 1, N) mask passed as it is, its batch axis against the heads."""

    def no_head_axis(x, w_q, w_k, w_v, w_o, num_heads, mask=None):
        q, k, v = (ma.split_heads(x @ w, num_heads) for w in (w_q, w_k, w_v))  # (B, H, N, D)
        context, _ = ma.scaled_dot_product_attention(q, k, v, mask=mask)
        return ma.merge_heads(context) @ w_o

    with pytest.raises(CheckFailed, match=r"(?s)B=3 sequences.*raised.*mask\.unsqueeze\(-3\)"):
        check_multi_head_attention(no_head_axis)


def test_multi_head_attention_with_the_mask_read_as_heads_when_b_equals_h():
    """Where B = H the same slip runs silently; the checker still names it."""

    def no_head_axis(x, w_q, w_k, w_v, w_o, num_heads, mask=None):
        q, k, v = (ma.split_heads(x @ w, num_heads) for w in (w_q, w_k, w_v))
        if mask is not None and mask.shape[0] != num_heads:
            mask = mask.unsqueeze(-3)  # right for the B ≠ H case, wrong (absent) for B = H
        context, _ = ma.scaled_dot_product_attention(q, k, v, mask=mask)
        return ma.merge_heads(context) @ w_o

    with pytest.raises(CheckFailed, match=r"(?s)B=2 sequences.*wrong value.*mask\.unsqueeze\(-3\)"):
        check_multi_head_attention(no_head_axis)


# --- repeat_kv --------------------------------------------------------------------------------


def test_repeat_kv_accepts_repeat_interleave(capsys):
    check_repeat_kv(lambda kv, h: kv.repeat_interleave(h // kv.shape[1], dim=1))
    assert "✓ repeat_kv" in capsys.readouterr().out


def test_repeat_kv_with_repeat_instead_of_repeat_interleave():
    with pytest.raises(CheckFailed, match=r"(?s)2 key/value heads for 8.*use repeat_interleave"):
        check_repeat_kv(lambda kv, h: kv.repeat(1, h // kv.shape[1], 1, 1))


def test_repeat_kv_along_the_wrong_axis():
    with pytest.raises(CheckFailed, match=r"should have shape \(2, 8, 3, 2\), got \(2, 2, 12, 2\)"):
        check_repeat_kv(lambda kv, h: kv.repeat_interleave(h // kv.shape[1], dim=2))


# --- gqa_from_mha -----------------------------------------------------------------------------


def _convert(module, num_kv_heads, *, strided=False, in_place=False):
    """A correct conversion; strided=True groups heads h, h+Hkv, ... (a planted mistake)."""
    group = module.num_heads // num_kv_heads
    result = ma.MultiHeadAttention(
        module.embed_dim,
        module.num_heads,
        num_kv_heads=num_kv_heads,
        bias=module.q_proj.bias is not None,
    )
    state = dict(module.state_dict())
    for name in ("k_proj", "v_proj"):
        for kind in ("weight", "bias"):
            key = f"{name}.{kind}"
            if key not in state:
                continue
            heads = state[key].unflatten(0, (module.num_heads, module.head_dim))  # (H, D, ...)
            if strided:
                pooled = heads.unflatten(0, (group, num_kv_heads)).mean(0)
            else:
                pooled = heads.unflatten(0, (num_kv_heads, group)).mean(1)  # (Hkv, D, ...)
            state[key] = pooled.flatten(0, 1)
    result.load_state_dict(state)
    if in_place:
        with torch.no_grad():
            module.q_proj.weight.zero_()
    return result


def test_gqa_from_mha_accepts_a_correct_solution(capsys):
    check_gqa_from_mha(_convert)
    assert "✓ gqa_from_mha" in capsys.readouterr().out


def test_gqa_from_mha_with_strided_groups():
    with pytest.raises(CheckFailed, match=r"(?s)8 heads to 2 groups.*consecutive heads"):
        check_gqa_from_mha(lambda m, n: _convert(m, n, strided=True))


def test_gqa_from_mha_that_keeps_the_first_head_of_each_group():
    def first_head(module, num_kv_heads):
        result = _convert(module, num_kv_heads)
        group = module.num_heads // num_kv_heads
        with torch.no_grad():
            for name in ("k_proj", "v_proj"):
                heads = getattr(module, name).weight.unflatten(0, (module.num_heads, -1))
                getattr(result, name).weight.copy_(heads[::group].flatten(0, 1))
        return result

    with pytest.raises(CheckFailed, match=r"wrong value in k_proj\.weight"):
        check_gqa_from_mha(first_head)


def test_gqa_from_mha_that_modifies_the_original():
    with pytest.raises(CheckFailed, match="changed; copy, do not modify"):
        check_gqa_from_mha(lambda m, n: _convert(m, n, in_place=True))


def test_gqa_from_mha_returning_the_wrong_head_count():
    with pytest.raises(CheckFailed, match="num_kv_heads=2, got 8 and 8"):
        check_gqa_from_mha(lambda m, n: m)


# --- issue 16: more mistakes, clean refusals, two correct solutions each ------------------------


def test_split_heads_two_correct_solutions(capsys):
    def chapter(x, num_heads):
        *batch, n, features = x.shape
        return x.reshape(*batch, n, num_heads, features // num_heads).transpose(-3, -2)

    check_split_heads(chapter)
    check_split_heads(lambda x, h: x.unflatten(-1, (h, -1)).movedim(-2, -3))
    assert capsys.readouterr().out.count("✓ split_heads") == 2


@pytest.mark.parametrize(
    "fn, message",
    [
        (lambda x, h: x.unflatten(-1, (h, -1)), r"should have shape"),  # no transpose at all
        (lambda x, h: x.unflatten(-1, (h, -1)).transpose(-3, -2).numpy(), "torch.Tensor"),
        (lambda x, h: x.unflatten(-1, (h, -1)).transpose(-3, -2).half(), "wrong value"),
        (lambda x, h: ma.split_heads(x.add_(1.0), h), "changed its argument `x` in place"),
        (lambda x, h: (ma.split_heads(x, h), h), "torch.Tensor, got tuple"),
    ],
)
def test_split_heads_more_mistakes(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_split_heads(fn)


def test_multi_head_attention_a_different_correct_solution(capsys):
    def with_pytorch(x, w_q, w_k, w_v, w_o, num_heads, mask=None):
        b, n, e = x.shape
        q, k, v = ((x @ w).view(b, n, num_heads, -1).transpose(1, 2) for w in (w_q, w_k, w_v))
        attn_mask = None if mask is None else mask[:, None]
        context = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return context.transpose(1, 2).reshape(b, n, e) @ w_o

    check_multi_head_attention(with_pytorch)
    assert "✓ multi_head_attention" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fn, message",
    [
        # merging without the transpose back: right shape, wrong values
        (
            lambda x, wq, wk, wv, wo, h, mask=None: (
                ma.scaled_dot_product_attention(
                    *(ma.split_heads(x @ w, h) for w in (wq, wk, wv)),
                    mask=None if mask is None else mask.unsqueeze(-3),
                )[0].reshape(x.shape)
                @ wo
            ),
            r"(?s)four heads.*wrong value",
        ),
        # the output projection forgotten
        (
            lambda x, wq, wk, wv, wo, h, mask=None: _mha(
                x, wq, wk, wv, torch.eye(x.shape[-1]), h, mask
            ),
            "wrong value",
        ),
        # the heads returned unmerged: a shape the hints must not crash on
        (
            lambda x, wq, wk, wv, wo, h, mask=None: ma.split_heads(
                _mha(x, wq, wk, wv, wo, h, mask), h
            ),
            r"should have shape \(2, 4, 8\)",
        ),
        (
            lambda x, wq, wk, wv, wo, h, mask=None: (_mha(x, wq, wk, wv, wo, h, mask), None),
            "tuple of 2",
        ),
        (
            lambda x, wq, wk, wv, wo, h, mask=None: _mha(x, wq.mul_(2) / 2, wk, wv, wo, h, mask),
            "changed its argument `w_q` in place",
        ),
    ],
)
def test_multi_head_attention_more_mistakes(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_multi_head_attention(fn)


def test_repeat_kv_a_different_correct_solution(capsys):
    def expand(kv, num_heads):
        b, hkv, s, d = kv.shape
        return kv[:, :, None].expand(b, hkv, num_heads // hkv, s, d).reshape(b, num_heads, s, d)

    check_repeat_kv(expand)
    assert "✓ repeat_kv" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fn, message",
    [
        (lambda kv, h: kv.repeat_interleave(h, dim=1), r"should have shape"),  # H, not H // Hkv
        (
            lambda kv, h: kv[:, :, None].expand(-1, -1, h // kv.shape[1], -1, -1),
            "should have shape",
        ),
        (lambda kv, h: kv[:, torch.arange(h) % kv.shape[1]], "use repeat_interleave"),
        (lambda kv, h: kv.repeat_interleave(h // kv.shape[1], dim=1).numpy(), "torch.Tensor"),
        (lambda kv, h: kv.zero_().repeat_interleave(h // kv.shape[1], dim=1), "in place"),
    ],
)
def test_repeat_kv_more_mistakes(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_repeat_kv(fn)


def _convert_with_deepcopy(module, num_kv_heads):
    """A different correct 6.4: deepcopy the q/out projections, pool k/v with mean()."""
    import copy

    result = ma.MultiHeadAttention(
        module.embed_dim,
        module.num_heads,
        num_kv_heads=num_kv_heads,
        bias=module.q_proj.bias is not None,
    )
    result.q_proj = copy.deepcopy(module.q_proj)
    result.out_proj = copy.deepcopy(module.out_proj)
    group = module.num_heads // num_kv_heads
    with torch.no_grad():
        for name in ("k_proj", "v_proj"):
            src, dst = getattr(module, name), getattr(result, name)
            dst.weight.copy_(
                src.weight.view(num_kv_heads, group, -1, module.embed_dim).mean(1).flatten(0, 1)
            )
            if src.bias is not None:
                dst.bias.copy_(src.bias.view(num_kv_heads, group, -1).mean(1).flatten())
    return result


def test_gqa_from_mha_a_different_correct_solution(capsys):
    check_gqa_from_mha(_convert_with_deepcopy)
    assert "✓ gqa_from_mha" in capsys.readouterr().out


def test_gqa_from_mha_sharing_the_projections_fails():
    """Issue 16: q_proj/out_proj shared with the original (not copied) used to pass."""

    def shares_modules(module, num_kv_heads):
        result = _convert_with_deepcopy(module, num_kv_heads)
        result.q_proj, result.out_proj = module.q_proj, module.out_proj
        return result

    def shares_tensors(module, num_kv_heads):
        result = _convert_with_deepcopy(module, num_kv_heads)
        result.q_proj.weight = module.q_proj.weight  # the same Parameter, not a copy
        return result

    with pytest.raises(CheckFailed, match=r"q_proj is the original module's q_proj"):
        check_gqa_from_mha(shares_modules)
    with pytest.raises(CheckFailed, match=r"q_proj.weight shares its memory with the original"):
        check_gqa_from_mha(shares_tensors)


def test_gqa_from_mha_more_mistakes():
    def summed(module, num_kv_heads):
        result = _convert_with_deepcopy(module, num_kv_heads)
        group = module.num_heads // num_kv_heads
        with torch.no_grad():
            result.k_proj.weight.mul_(group)  # the sum of the group, not its mean
        return result

    with pytest.raises(
        CheckFailed, match=r"(?s)8 heads to 2 groups.*wrong value in k_proj\.weight"
    ):
        check_gqa_from_mha(summed)

    def assumes_bias(module, num_kv_heads):
        module.k_proj.bias.shape  # noqa: B018 (AttributeError on the no-bias case)
        return _convert_with_deepcopy(module, num_kv_heads)

    with pytest.raises(CheckFailed, match=r"no bias.*raised AttributeError"):
        check_gqa_from_mha(assumes_bias)
    with pytest.raises(
        CheckFailed, match=r"return a mini_attn\.MultiHeadAttention, got OrderedDict"
    ):
        check_gqa_from_mha(lambda m, n: _convert(m, n).state_dict())


def test_chapter_6_checkers_leave_the_rng_alone():
    """check_gqa_from_mha used to call torch.manual_seed(3) on the learner's generator."""
    torch.manual_seed(123)
    state = torch.get_rng_state()
    check_split_heads(ma.split_heads)
    check_multi_head_attention(_mha)
    check_repeat_kv(lambda kv, h: kv.repeat_interleave(h // kv.shape[1], dim=1))

    def without_drawing(module, num_kv_heads):  # the learner's own draws are theirs
        with torch.random.fork_rng(devices=[]):
            return _convert_with_deepcopy(module, num_kv_heads)

    check_gqa_from_mha(without_drawing)
    assert torch.equal(torch.get_rng_state(), state)
