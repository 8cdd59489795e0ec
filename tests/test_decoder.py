"""TinyDecoder and generate: cached decoding gives the same tokens and logits as recomputing."""

from __future__ import annotations

import pytest
import torch

import mini_attn as ma
from mini_attn.tasks.models.decoder import TinyDecoder, generate, lm_loss, make_date_lm


def test_make_date_lm_texts_and_ids():
    data = make_date_lm(8)
    assert all("=" in t and t.endswith(".") for t in data.texts)
    assert data.ids[:, 0].eq(data.tokenizer.bos_id).all()
    assert data.tokenizer.decode(data.ids[0]) == data.texts[0]
    test = make_date_lm(8, split="test")
    assert not set(t.split("=")[1] for t in test.texts) & set(t.split("=")[1] for t in data.texts)
    with pytest.raises(ValueError, match="split must be"):
        make_date_lm(3, split="validation")


@pytest.mark.parametrize("window", [None, 3])
def test_generate_with_and_without_cache_agree(window):
    ma.seed_everything(0)
    data = make_date_lm(4)
    model = TinyDecoder(data.tokenizer.vocab_size, 32, 4, num_kv_heads=2, window=window)
    prompt = data.ids[:, :6]
    with_cache, logits_cached = generate(model, prompt, 12)
    without, logits = generate(model, prompt, 12, use_cache=False)
    assert torch.equal(with_cache, without)
    torch.testing.assert_close(logits_cached, logits, atol=1e-5, rtol=1e-5)


def test_lm_loss_decreases_with_a_few_steps():
    ma.seed_everything(0)
    data = make_date_lm(64)
    model = TinyDecoder(data.tokenizer.vocab_size, 32, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = lm_loss(model, data.ids).item()
    for _ in range(20):
        optimizer.zero_grad()
        lm_loss(model, data.ids).backward()
        optimizer.step()
    assert lm_loss(model, data.ids).item() < first - 0.5
