"""Checkers for the exercises of chapter 6, "Multi-head attention"."""

from __future__ import annotations

import torch

from ..attention.heads import split_heads
from ..attention.multihead import MultiHeadAttention
from ._core import CheckFailed, call, expect_close, passed
from .ch05._shared import expect_unchanged as _unchanged
from .ch05._shared import when_shape as _same_shape

__all__ = [
    "check_gqa_from_mha",
    "check_multi_head_attention",
    "check_repeat_kv",
    "check_split_heads",
]


def check_split_heads(fn) -> None:
    """Exercise 6.1: ``fn(x (..., N, H·D), num_heads) -> (..., H, N, D)``.

    Head ``h`` holds the features ``h·D … (h+1)·D - 1`` of every position.
    """
    g = torch.Generator().manual_seed(0)
    cases = [
        ("B=2, N=3, E=8, two heads", torch.randn(2, 3, 8, generator=g), 2),
        ("B=1, N=5, E=12, three heads", torch.randn(1, 5, 12, generator=g), 3),
        ("one head (nothing to split)", torch.randn(2, 4, 6, generator=g), 1),
        ("as many heads as features (D=1)", torch.randn(2, 3, 4, generator=g), 4),
        ("two batch dimensions (2, 3, 4, 6), three heads", torch.randn(2, 3, 4, 6, generator=g), 3),
    ]
    for case, x, num_heads in cases:
        expected = split_heads(x, num_heads)
        head_dim = x.shape[-1] // num_heads

        def hint(got, x=x, num_heads=num_heads, head_dim=head_dim):
            *batch, n, _ = x.shape
            if got.shape != (*batch, num_heads, n, head_dim):
                return None
            if torch.equal(got, x.reshape(*batch, num_heads, n, head_dim)):
                return (
                    "reshaping (..., N, H·D) straight to (..., H, N, D) mixes positions into "
                    "heads. Reshape to (..., N, H, D) first, then swap the N and H axes."
                )
            strided = x.unflatten(-1, (head_dim, num_heads)).movedim(-1, -3)  # (..., H, N, D)
            if torch.equal(got, strided):
                return (
                    "your head h takes every H-th feature (h, h+H, ...); it should take D "
                    "consecutive features: unflatten the last axis as (H, D), not (D, H)."
                )
            return None

        given = {"x": x.clone()}
        got = call(fn, case, given["x"], num_heads)
        _unchanged(case, {"x": x}, given)
        expect_close(
            case,
            got,
            expected,
            what="the heads",
            atol=0,
            rtol=0,
            hint=_same_shape(hint, expected.shape),
        )
    passed("split_heads", len(cases))


def _reference_mha(x, w_q, w_k, w_v, w_o, num_heads, mask):
    embed_dim = x.shape[-1]
    with torch.random.fork_rng(devices=[]):  # the weights are replaced: leave the learner's RNG
        module = MultiHeadAttention(embed_dim, num_heads, bias=False).to(x.dtype)
    with torch.no_grad():  # nn.Linear computes x Wᵀ: our (E, E) matrices are used as x W
        for proj, w in zip(
            (module.q_proj, module.k_proj, module.v_proj, module.out_proj),
            (w_q, w_k, w_v, w_o),
            strict=True,
        ):
            proj.weight.copy_(w.T)
        return module(x, mask=mask)[0]


_W_NAMES = ("w_q", "w_k", "w_v", "w_o")

_MASK_HINT = (
    "the scores of all heads have shape (B, H, N, N), and a (B, 1, N) or (B, N, N) mask lines "
    "up with their last three axes, its batch axis against the heads. Give the mask an axis "
    "for the heads: mask.unsqueeze(-3), shape (B, 1, 1, N) or (B, 1, N, N)."
)


def check_multi_head_attention(fn) -> None:
    """Exercise 6.2: multi-head self-attention from four ``(E, E)`` matrices.

    ``fn(x (B, N, E), w_q, w_k, w_v, w_o, num_heads, mask=None) -> (B, N, E)``: ``Q = x w_q``
    (likewise K and V), split into heads, ``softmax(Q Kᵀ / √D) V`` in each head with
    ``D = E // num_heads``, heads merged, times ``w_o``. ``mask`` is boolean, broadcastable to
    ``(B, N, N)``, ``True`` where a query may attend to a key, the same for every head.
    """
    g = torch.Generator().manual_seed(1)

    def weights(embed_dim):
        return [torch.randn(embed_dim, embed_dim, generator=g) / embed_dim**0.5 for _ in range(4)]

    padding = torch.tensor([[True] * 5, [True, True, True, False, False]])[:, None, :]
    padding3 = torch.tensor(
        [[True] * 5, [True, True, True, False, False], [True] * 2 + [False] * 3]
    )
    cases = [
        ("one head (ordinary attention)", torch.randn(2, 4, 8, generator=g), weights(8), 1, None),
        ("four heads", torch.randn(2, 4, 8, generator=g), weights(8), 4, None),
        ("three heads, E=12, N=6", torch.randn(1, 6, 12, generator=g), weights(12), 3, None),
        (
            "B=3 sequences, two heads, a padding mask (3, 1, 5)",
            torch.randn(3, 5, 8, generator=g),
            weights(8),
            2,
            padding3[:, None, :],
        ),
        (
            "B=2 sequences, two heads, a padding mask (2, 1, 5)",
            torch.randn(2, 5, 8, generator=g),
            weights(8),
            2,
            padding,
        ),
    ]
    for case, x, ws, num_heads, mask in cases:
        expected = _reference_mha(x, *ws, num_heads, mask)

        def hint(got, x=x, ws=ws, num_heads=num_heads, mask=mask):
            head_dim = x.shape[-1] // num_heads
            if num_heads > 1 and torch.allclose(got, _reference_mha(x, *ws, 1, mask), atol=1e-5):
                return "this is one head of full width: split Q, K and V into num_heads heads."
            scaled = [ws[0] * (head_dim / x.shape[-1]) ** 0.5, *ws[1:]]  # 1/√E instead of 1/√D
            if num_heads > 1 and torch.allclose(
                got, _reference_mha(x, *scaled, num_heads, mask), atol=1e-5
            ):
                return "scale the scores by 1/√D, the head size E // num_heads, not by 1/√E."
            transposed = [w.T for w in ws]
            if torch.allclose(got, _reference_mha(x, *transposed, num_heads, mask), atol=1e-5):
                return "use the matrices as x @ w (Q = x w_q), not x @ w.T."
            if mask is None:
                return None
            inverted = _reference_mha(x, *ws, num_heads, ~mask)
            if torch.allclose(got[1], inverted[1], atol=1e-5):
                return "the mask is True where a query MAY attend; yours is inverted."
            if mask.shape[0] == num_heads:  # a (B, 1, N) mask read as (H, 1, N): silently wrong
                by_head = _reference_mha(x, *ws, num_heads, mask.unsqueeze(0))  # (1, H, 1, N)
                if torch.allclose(got, by_head, atol=1e-5):
                    return _MASK_HINT
            return None

        given = {"x": x.clone(), **{n: w.clone() for n, w in zip(_W_NAMES, ws, strict=True)}}
        if mask is not None:
            given["mask"] = mask.clone()
        originals = {"x": x, **dict(zip(_W_NAMES, ws, strict=True))}
        if mask is not None:
            originals["mask"] = mask
        try:
            got = call(
                fn,
                case,
                given["x"],
                *[given[n] for n in _W_NAMES],
                num_heads,
                mask=given.get("mask"),
            )
        except CheckFailed as failure:
            if mask is None or failure.__cause__ is None:  # no mask, or not a crash
                raise
            raise CheckFailed(f"{failure}\nHint: {_MASK_HINT}") from failure.__cause__
        _unchanged(case, originals, given)
        if isinstance(got, tuple):
            raise CheckFailed(f"case '{case}': return only the output, got a tuple of {len(got)}")
        expect_close(case, got, expected, what="the output", hint=_same_shape(hint, expected.shape))
    passed("multi_head_attention", len(cases))


def check_repeat_kv(fn) -> None:
    """Exercise 6.3: ``fn(kv (B, Hkv, S, D), num_heads) -> (B, H, S, D)``.

    Query head ``h`` uses key/value head ``h // (H // Hkv)``: each key/value head is
    repeated for the consecutive query heads of its group.
    """
    g = torch.Generator().manual_seed(2)
    cases = [
        ("as many key/value heads as query heads", torch.randn(2, 4, 3, 2, generator=g), 4),
        ("2 key/value heads for 8 query heads", torch.randn(2, 2, 3, 2, generator=g), 8),
        ("3 key/value heads for 6 query heads", torch.randn(1, 3, 5, 4, generator=g), 6),
        (
            "multi-query: 1 key/value head for 4 query heads",
            torch.randn(2, 1, 3, 2, generator=g),
            4,
        ),
    ]
    for case, kv, num_heads in cases:
        group = num_heads // kv.shape[1]
        expected = kv[:, torch.arange(num_heads) // group]  # head h reads k/v head h // group

        def hint(got, kv=kv, group=group, expected=expected):
            if got.shape == expected.shape and torch.equal(got, kv.repeat(1, group, 1, 1)):
                return (
                    "kv.repeat tiles the heads (0, 1, 0, 1, ...); query heads 0 and 1 belong to "
                    "the same group and must both read key/value head 0 (0, 0, 1, 1, ...): "
                    "use repeat_interleave."
                )
            return None

        given = {"kv": kv.clone()}
        got = call(fn, case, given["kv"], num_heads)
        _unchanged(case, {"kv": kv}, given)
        expect_close(
            case,
            got,
            expected,
            what="the repeated heads",
            atol=0,
            rtol=0,
            hint=_same_shape(hint, expected.shape),
        )
    passed("repeat_kv", len(cases))


def _mean_pooled(module: MultiHeadAttention, num_kv_heads: int) -> dict[str, torch.Tensor]:
    """The state dict of the grouped module that mean pooling the k/v heads gives."""
    group = module.num_heads // num_kv_heads
    state = {name: p.detach().clone() for name, p in module.state_dict().items()}
    for name in ("k_proj", "v_proj"):
        weight = state[f"{name}.weight"]  # (H·D, E): head h is rows h·D .. (h+1)·D - 1
        weight = weight.unflatten(0, (num_kv_heads, group, module.head_dim))  # (Hkv, g, D, E)
        state[f"{name}.weight"] = weight.mean(1).flatten(0, 1)  # (Hkv·D, E)
        if f"{name}.bias" in state:
            bias = state[f"{name}.bias"].unflatten(0, (num_kv_heads, group, module.head_dim))
            state[f"{name}.bias"] = bias.mean(1).flatten()
    return state


def _check_not_shared(case: str, module: MultiHeadAttention, got: MultiHeadAttention) -> None:
    """Refuse a result that shares a layer or a tensor's memory with the original module:
    training the converted model would then change the original too."""
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        if getattr(got, name, None) is getattr(module, name):
            raise CheckFailed(
                f"case '{case}': the result's {name} is the original module's {name} (the same "
                "nn.Linear object): training one would change the other. Copy the weights "
                "(e.g. load_state_dict of cloned tensors, or copy.deepcopy)."
            )
    storage = {}
    for name, p in module.named_parameters():
        storage[p.untyped_storage().data_ptr()] = name
    for name, p in got.named_parameters():
        shared = storage.get(p.untyped_storage().data_ptr())
        if shared is not None:
            raise CheckFailed(
                f"case '{case}': the result's {name} shares its memory with the original's "
                f"{shared}: training one would change the other. Copy the tensors "
                "(.clone()) instead of assigning them."
            )


def check_gqa_from_mha(fn) -> None:
    """Exercise 6.4: ``fn(module, num_kv_heads) -> MultiHeadAttention`` with ``num_kv_heads``.

    The query and output projections are copied; each key (and value) head of the result
    is the mean of the heads of its group in ``module``: the initialisation of Ainslie et
    al. (2023) for turning a multi-head checkpoint into a grouped-query one. ``module``
    must not change.
    """
    with torch.random.fork_rng(devices=[]):  # seeded modules, the learner's RNG untouched
        torch.manual_seed(3)
        cases = [
            ("8 heads to 2 groups", MultiHeadAttention(16, 8), 2),
            ("4 heads to 1 group (multi-query)", MultiHeadAttention(12, 4), 1),
            ("6 heads to 3 groups, no bias", MultiHeadAttention(12, 6, bias=False), 3),
            ("4 heads kept as 4 groups (unchanged)", MultiHeadAttention(8, 4), 4),
        ]
        inputs = [torch.randn(2, 5, module.embed_dim) for _, module, _ in cases]
    for (case, module, num_kv_heads), x in zip(cases, inputs, strict=True):
        before = {name: p.detach().clone() for name, p in module.state_dict().items()}
        got = call(fn, case, module, num_kv_heads)
        if not isinstance(got, MultiHeadAttention):
            raise CheckFailed(
                f"case '{case}': return a mini_attn.MultiHeadAttention, got {type(got).__name__}"
            )
        if got.num_kv_heads != num_kv_heads or got.num_heads != module.num_heads:
            raise CheckFailed(
                f"case '{case}': the result should have num_heads={module.num_heads} and "
                f"num_kv_heads={num_kv_heads}, got {got.num_heads} and {got.num_kv_heads}"
            )
        for name, p in module.state_dict().items():
            if not torch.equal(p, before[name]):
                raise CheckFailed(
                    f"case '{case}': {name} of the original module changed; copy, do not modify"
                )
        _check_not_shared(case, module, got)
        expected = _mean_pooled(module, num_kv_heads)
        state = got.state_dict()
        group = module.num_heads // num_kv_heads
        for name, value in expected.items():

            def hint(got_value, name=name, group=group, before=before, n_kv=num_kv_heads):
                if not name.startswith(("k_proj", "v_proj")):
                    return None
                original = before[name].unflatten(0, (group, n_kv, -1))
                strided = original.mean(0).flatten(0, 1)
                if got_value.shape == strided.shape and torch.allclose(got_value, strided):
                    return (
                        "you averaged every num_kv_heads-th head; a group is made of "
                        "consecutive heads (group g holds heads g·G … g·G + G - 1)."
                    )
                return None

            if name not in state:
                raise CheckFailed(f"case '{case}': the result has no {name}")
            expect_close(case, state[name], value, what=name, hint=_same_shape(hint, value.shape))
        with torch.no_grad(), torch.random.fork_rng(devices=[]):  # its init draws are not kept
            reference = MultiHeadAttention(
                module.embed_dim,
                module.num_heads,
                num_kv_heads=num_kv_heads,
                bias=module.q_proj.bias is not None,
            )
        reference.load_state_dict(expected)
        with torch.no_grad():
            expected_output = reference.eval()(x)[0]
            got_output = call(got.eval(), f"{case}, calling the result", x)[0]
        expect_close(case, got_output, expected_output, what="the output")
    passed("gqa_from_mha", len(cases))
