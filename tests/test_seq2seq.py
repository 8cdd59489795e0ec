"""Seq2Seq: the encoder equals a bidirectional GRU, padding changes nothing, decoding modes
agree, attention weights are distributions over the real characters, training lowers the loss."""

from __future__ import annotations

import pytest
import torch

import mini_attn as ma


def _model(attention=True, seed=0, **kwargs):
    torch.manual_seed(seed)
    return ma.tasks.Seq2Seq(12, 7, embed_dim=8, encoder_dim=6, decoder_dim=10, attention_dim=5,
                      attention=attention, **kwargs)  # fmt: skip


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([7, 3, 5, 1])
    source = torch.randint(2, 12, (4, 7), generator=g)
    source[torch.arange(7) >= lengths[:, None]] = 0  # pad after each sequence
    targets = torch.randint(2, 7, (4, 5), generator=g)
    return source, lengths, targets


def test_encoder_equals_a_bidirectional_gru_with_the_same_weights():
    model = _model()
    source, lengths, _ = _batch()
    memory, summary = model.encode(source, lengths)
    gru = torch.nn.GRU(8, 6, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for name, p in model.forward_gru.named_parameters():
            getattr(gru, name).copy_(p)
        for name, p in model.backward_gru.named_parameters():
            getattr(gru, f"{name}_reverse").copy_(p)
    for b, n in enumerate(lengths.tolist()):  # each sequence alone, without padding
        states, last = gru(model.source_embed(source[b : b + 1, :n]))
        torch.testing.assert_close(memory[b, :n], states[0])
        torch.testing.assert_close(summary[b], torch.cat([last[0, 0], last[1, 0]]))
        assert torch.equal(memory[b, n:], torch.zeros(7 - n, 12)), "zero memory at padding"


@pytest.mark.parametrize("attention", [True, False])
def test_padding_does_not_change_the_output(attention):
    model = _model(attention)
    source, lengths, targets = _batch()
    logits, _ = model(source, lengths, targets)
    padded = torch.cat([source, torch.zeros(4, 9, dtype=torch.long)], dim=1)  # 9 more pads
    logits_padded, _ = model(padded, lengths, targets)
    torch.testing.assert_close(logits_padded, logits)
    for b in range(4):  # one sequence at a time, no padding at all
        n = int(lengths[b])
        alone, _ = model(source[b : b + 1, :n], lengths[b : b + 1], targets[b : b + 1])
        torch.testing.assert_close(alone[0], logits[b])


def test_attention_weights_are_distributions_over_the_real_characters():
    model = _model()
    source, lengths, targets = _batch()
    logits, weights = model(source, lengths, targets)
    assert logits.shape == (4, 5, 7) and weights.shape == (4, 5, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, 5))
    padding = (torch.arange(7) >= lengths[:, None])[:, None, :].expand(4, 5, 7)  # (B, T, S)
    assert torch.equal(weights[padding], torch.zeros(int(padding.sum())))


def test_baseline_has_no_attention_and_no_score_parameters():
    model = _model(attention=False)
    source, lengths, targets = _batch()
    logits, weights = model(source, lengths, targets)
    assert logits.shape == (4, 5, 7) and weights is None
    assert model.score is None
    n_with = sum(p.numel() for p in _model().parameters())
    n_without = sum(p.numel() for p in model.parameters())
    assert n_with - n_without == sum(p.numel() for p in _model().score.parameters())


@pytest.mark.parametrize("attention", [True, False])
def test_greedy_decoding_agrees_with_teacher_forcing_on_its_own_output(attention):
    """Fed its own greedy predictions as targets, teacher forcing computes the same logits."""
    model = _model(attention, seed=3)
    source, lengths, _ = _batch(seed=1)
    greedy_logits, greedy_weights = model(source, lengths, n_steps=6)
    predictions = greedy_logits.argmax(-1)  # (B, 6)
    forced_logits, forced_weights = model(source, lengths, predictions)
    torch.testing.assert_close(forced_logits, greedy_logits)
    if attention:
        torch.testing.assert_close(forced_weights, greedy_weights)


def test_exact_matches_compares_whole_sequences():
    model = _model(seed=4)
    source, lengths, _ = _batch(seed=2)
    predictions = model(source, lengths, n_steps=5)[0].argmax(-1)
    targets = predictions.clone()
    targets[1, 4] = (targets[1, 4] + 1) % 7  # one wrong character in example 1
    targets[3, 0] = (targets[3, 0] + 1) % 7  # and in example 3
    got = ma.tasks.exact_matches(model, source, lengths, targets, batch_size=3)
    assert got.tolist() == [True, False, True, False]


def test_a_short_training_run_lowers_the_loss():
    """A smoke test on the real task, not an accuracy assertion."""
    ma.seed_everything(0)
    data = ma.tasks.make_dates(512, 10, 10, seed=0).train
    model = ma.tasks.Seq2Seq(data.source_tokenizer.vocab_size, data.target_tokenizer.vocab_size,
                       embed_dim=16, encoder_dim=32, decoder_dim=32, attention_dim=16)  # fmt: skip
    history = ma.tasks.train_model(
        model, ma.tasks.seq2seq_loss, data.batches(64, seed=0), steps=40, lr=1e-2, progress=False
    )
    first, last = sum(history.losses[:5]) / 5, sum(history.losses[-5:]) / 5
    print(f"loss {first:.3f} -> {last:.3f} in {history.steps} steps, {history.seconds:.1f} s")
    assert last < 0.7 * first


def test_bad_arguments_are_refused():
    model = _model()
    source, lengths, targets = _batch()
    with pytest.raises(ValueError, match="exactly one of targets"):
        model(source, lengths)
    with pytest.raises(ValueError, match="exactly one of targets"):
        model(source, lengths, targets, n_steps=3)
    with pytest.raises(ValueError, match=r"lengths must have shape \(4,\)"):
        model(source, lengths[:3], targets)
    with pytest.raises(ValueError, match="source must have 2 dimension"):
        model(source[0], lengths, targets)
