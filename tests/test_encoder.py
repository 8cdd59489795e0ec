"""The encoder block and tiny encoder of chapter 4, and their training loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mini_attn as ma


class TorchAttention(nn.Module):
    """nn.MultiheadAttention behind the interface EncoderBlock expects."""

    def __init__(self, embed_dim, num_heads):
        super().__init__()
        self.mha = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)

    def forward(self, x, *, mask=None, causal=False):
        allowed = ma.causal_mask(x.shape[-2]) if causal else mask
        forbidden = None if allowed is None else ~allowed  # PyTorch: True = may NOT attend
        return self.mha(x, x, x, attn_mask=forbidden, average_attn_weights=False)


def test_encoder_block_is_two_pre_norm_residual_branches():
    torch.manual_seed(0)
    block = ma.tasks.EncoderBlock(8, ma.SelfAttention(8), mlp_dim=16)
    x = torch.randn(2, 5, 8)
    output, weights = block(x, causal=True)
    h = x + block.attention(block.norm1(x), causal=True)[0]
    expected = h + block.mlp(block.norm2(h))
    torch.testing.assert_close(output, expected)
    assert weights.shape == (2, 5, 5) and (weights.triu(1) == 0).all()
    assert block.mlp[0].out_features == 16
    assert ma.tasks.EncoderBlock(8, ma.SelfAttention(8)).mlp[0].out_features == 32  # default 4 E


def test_encoder_block_takes_any_attention_module():
    torch.manual_seed(0)
    block = ma.tasks.EncoderBlock(8, TorchAttention(8, num_heads=2))
    x = torch.randn(3, 4, 8)
    output, weights = block(x, causal=True)
    assert output.shape == (3, 4, 8) and weights.shape == (3, 2, 4, 4)
    assert (weights.triu(1) == 0).all()


def test_encoder_block_refuses_an_attention_of_the_wrong_size():
    block = ma.tasks.EncoderBlock(8, ma.SelfAttention(8, head_dim=4))
    with pytest.raises(
        ValueError, match=r"output of shape \(2, 5, 4\).*input of shape \(2, 5, 8\)"
    ):
        block(torch.randn(2, 5, 8))


def test_tiny_encoder_shapes_and_one_attention_per_block():
    torch.manual_seed(0)
    made = []

    def make_attention():
        made.append(ma.SelfAttention(16))
        return made[-1]

    model = ma.tasks.TinyEncoder(7, 16, num_layers=3, max_length=10, make_attention=make_attention)
    assert len(made) == 3 and [b.attention for b in model.blocks] == made
    logits, weights = model(torch.randint(7, (4, 9)))
    assert logits.shape == (4, 9, 7)
    assert len(weights) == 3 and all(w.shape == (4, 9, 9) for w in weights)


def test_without_positions_the_encoder_is_permutation_equivariant():
    torch.manual_seed(0)
    tokens = torch.randint(10, (2, 8))
    perm = torch.randperm(8)
    blind = ma.tasks.TinyEncoder(10, 16, positional=False).double()
    logits = blind(tokens)[0]
    torch.testing.assert_close(blind(tokens[:, perm])[0], logits[:, perm])
    seeing = ma.tasks.TinyEncoder(10, 16, positional=True).double()
    assert (seeing(tokens[:, perm])[0] - seeing(tokens)[0][:, perm]).abs().max() > 1e-3


def test_tiny_encoder_causal_and_mask():
    torch.manual_seed(0)
    model = ma.tasks.TinyEncoder(10, 16, num_layers=2)
    tokens = torch.randint(10, (2, 6))
    changed = tokens.clone()
    changed[:, 3:] = (changed[:, 3:] + 1) % 10
    torch.testing.assert_close(
        model(changed, causal=True)[0][:, :3], model(tokens, causal=True)[0][:, :3]
    )
    _, weights = model(tokens, mask=ma.padding_mask(torch.tensor([6, 2])))
    assert all((w[1, :, 2:] == 0).all() for w in weights)


def test_tiny_encoder_bad_input():
    model = ma.tasks.TinyEncoder(10, 8, max_length=5)
    with pytest.raises(ValueError, match=r"\(1, 6\) are longer than max_length=5"):
        model(torch.zeros(1, 6, dtype=torch.long))
    with pytest.raises(TypeError, match="integer token ids"):
        model(torch.zeros(1, 4))


def test_sequence_batches_and_token_loss():
    data = ma.tasks.make_sequences(30, 5)
    first = next(ma.tasks.sequence_batches(data, 8, seed=1))
    again = next(ma.tasks.sequence_batches(data, 8, seed=1))
    assert first[0].shape == (8, 5) and torch.equal(first[0], again[0])
    assert torch.equal(first[1], ma.tasks.sequence_target(first[0]))
    torch.manual_seed(0)
    model = ma.tasks.TinyEncoder(10, 8)
    logits = model(first[0])[0]
    expected = nn.functional.cross_entropy(logits.reshape(-1, 10), first[1].reshape(-1))
    torch.testing.assert_close(ma.tasks.token_loss(model, first), expected)
    with pytest.raises(ValueError, match="same shape"):
        next(ma.tasks.sequence_batches(ma.tasks.SequenceData(data.inputs, data.targets[:, :4]), 8))


def test_training_is_deterministic_and_lowers_the_loss(one_thread):
    data = ma.tasks.make_sequences(500, 5, vocab_size=5)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = ma.tasks.TinyEncoder(5, 16, num_layers=1)
        runs.append(
            ma.tasks.train_encoder(model, data, steps=40, batch_size=32, progress=False).losses
        )
    assert runs[0] == runs[1]
    assert sum(runs[0][-5:]) < 0.9 * sum(runs[0][:5])  # from ln 5 = 1.61 down


def test_tiny_encoder_learns_to_reverse_and_fails_without_positions(one_thread):
    train = ma.tasks.make_sequences(5000, 6, vocab_size=6, seed=0)
    validation = ma.tasks.make_sequences(300, 6, vocab_size=6, seed=1)
    results = {}
    for positional, steps in ((True, 400), (False, 150)):
        torch.manual_seed(0)
        model = ma.tasks.TinyEncoder(6, 32, num_layers=1, positional=positional)
        history = ma.tasks.train_encoder(
            model, train, steps=steps, validation=validation, eval_every=50, progress=False
        )
        with torch.no_grad():
            logits = model(validation.inputs)[0]
        results[positional] = ma.tasks.sequence_accuracy(logits.argmax(-1), validation.targets)
        assert history.eval_values[-1] == results[positional][1]
    assert results[True][1] > 0.95, results
    assert results[False][0] < 0.5, results  # it cannot tell where a token is
