"""The glimpse models: soft and hard reading, the five losses, the estimators' gradients."""

from __future__ import annotations

import functools

import pytest
import torch
from torch.nn import functional as F

import mini_attn as ma


@pytest.fixture(scope="module")
def data():
    return ma.tasks.make_glimpse_digits(2000, 500, grid=3, seed=0)


@pytest.fixture(scope="module")
def patches(data):
    return ma.tasks.image_patches(data.train_images), ma.tasks.image_patches(data.test_images)


def _model(seed=0):
    torch.manual_seed(seed)
    return ma.tasks.GlimpseClassifier()


def _scorer_params(model):
    return list(model.scorer.parameters())


def test_shapes_and_soft_weights(patches):
    model = _model()
    x = patches[0][:7]
    assert model.scores(x).shape == (7, 1, 9)
    logits, index = model.classify_hard(x)
    assert logits.shape == (7, 10) and index.shape == (7,)
    logits, weights = model.classify_soft(x)
    assert logits.shape == (7, 10) and weights.shape == (7, 9)
    torch.testing.assert_close(weights.sum(-1), torch.ones(7))


def test_classify_hard_reads_the_best_scoring_patch_only(patches):
    model = _model()
    x = patches[0][:16]
    logits, index = model.classify_hard(x)
    torch.testing.assert_close(index, model.scores(x).squeeze(1).argmax(-1))
    torch.testing.assert_close(logits, model.read(x[torch.arange(16), index]))


def test_classify_soft_averages_the_features(patches):
    model = _model()
    x = patches[0][:16]
    logits, weights = model.classify_soft(x)
    expected = model.classifier((weights[:, :, None] * model.encoder(x)).sum(1))
    torch.testing.assert_close(logits, expected)


def test_classify_pixels_encodes_the_average_of_the_raw_patches(patches):
    model = _model()
    x = patches[0][:16]
    logits, weights = model.classify_pixels(x)
    torch.testing.assert_close(weights, torch.softmax(model.scores(x).squeeze(1), -1))
    torch.testing.assert_close(logits, model.read((weights[:, :, None] * x).sum(1)))


@pytest.mark.parametrize("k", [1, 2, 3, 9])
def test_classify_topk_averages_the_k_best_raw_patches(patches, k):
    model = _model()
    x = patches[0][:16]
    logits, weights = model.classify_topk(x, k)
    scores = model.scores(x).squeeze(1)
    best = scores.topk(k, -1)
    expected = torch.zeros_like(scores).scatter(-1, best.indices, torch.softmax(best.values, -1))
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(logits, model.read((weights[:, :, None] * x).sum(1)))
    if k == 1:  # top-1 is the argmax model
        torch.testing.assert_close(logits, model.classify_hard(x)[0])
    if k == 9:  # top-P is the soft average of pixels
        torch.testing.assert_close(logits, model.classify_pixels(x)[0])


def test_topk_loss_with_k_1_gives_the_scorer_no_gradient(patches, data):
    model = _model()
    batch = (patches[0][:32], data.train_labels[:32])
    loss_fn = functools.partial(ma.tasks.topk_loss, k=1)
    gradient = ma.tasks.scorer_gradient(
        model, lambda m, b: loss_fn(m, b) + 0 * sum(p.sum() for p in m.scorer.parameters()), batch
    )
    assert gradient.abs().sum() == 0


def test_glimpse_accuracy_with_a_classify_function(patches, data):
    model = _model()
    x, y, where = patches[1], data.test_labels, data.test_where
    accuracy, _ = ma.tasks.glimpse_accuracy(
        model, x, y, where, classify=functools.partial(model.classify_topk, k=2)
    )
    logits, _ = model.classify_topk(x, 2)
    assert accuracy == pytest.approx((logits.argmax(-1) == y).float().mean().item())


def test_scores_refuses_wrong_shapes():
    model = _model()
    with pytest.raises(ValueError, match=r"patches must have shape \(B, P, 64\), got \(2, 9, 32\)"):
        model.scores(torch.rand(2, 9, 32))
    with pytest.raises(ValueError, match=r"patches must have shape \(B, P, 64\), got \(9, 64\)"):
        model.classify_pixels(torch.rand(9, 64))


def test_argmax_loss_gives_the_scorer_no_gradient(patches, data):
    model = _model()
    batch = (patches[0][:32], data.train_labels[:32])
    grads = torch.autograd.grad(
        ma.tasks.argmax_loss(model, batch),
        [*_scorer_params(model), *model.encoder.parameters()],
        allow_unused=True,
    )
    n_scorer = len(_scorer_params(model))
    assert all(g is None for g in grads[:n_scorer]), "the argmax let a gradient through"
    assert all(g is not None and g.abs().sum() > 0 for g in grads[n_scorer:])


@pytest.mark.parametrize(
    "loss_fn",
    [
        ma.tasks.soft_loss,
        ma.tasks.expected_loss,
        functools.partial(ma.tasks.reinforce_loss, baseline=False),
        functools.partial(ma.tasks.reinforce_loss, baseline=True),
        ma.tasks.gumbel_loss,
        ma.tasks.pixel_soft_loss,
        functools.partial(ma.tasks.topk_loss, k=2),
    ],
    ids=["soft", "expected", "reinforce", "reinforce+baseline", "gumbel", "pixels", "top2"],
)
def test_trainable_losses_reach_the_scorer(loss_fn, patches, data):
    model = _model()
    batch = (patches[0][:32], data.train_labels[:32])
    gradient = ma.tasks.scorer_gradient(model, loss_fn, batch)
    assert gradient.shape == (sum(p.numel() for p in model.scorer.parameters()),)
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0


def test_expected_loss_is_the_probability_weighted_loss(patches, data):
    model = _model()
    x, y = patches[0][:8], data.train_labels[:8]
    probs = torch.softmax(model.scores(x).squeeze(1), dim=-1)  # (8, 9)
    per_patch = torch.stack(
        [F.cross_entropy(model.read(x[:, i]), y, reduction="none") for i in range(9)], dim=-1
    )
    torch.testing.assert_close(
        ma.tasks.expected_loss(model, (x, y)), (probs * per_patch).sum(-1).mean()
    )


def test_gumbel_loss_is_the_loss_of_one_patch(patches, data):
    model = _model()
    x, y = patches[0][:16], data.train_labels[:16]
    scores = model.scores(x)
    _, weights = ma.gumbel_softmax_attention(scores, x, generator=torch.Generator().manual_seed(0))
    chosen = weights.detach().squeeze(1).argmax(-1)
    loss = ma.tasks.gumbel_loss(model, (x, y), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loss, F.cross_entropy(model.read(x[torch.arange(16), chosen]), y))


@pytest.mark.parametrize("baseline", [False, True])
def test_reinforce_scorer_gradient_is_unbiased(baseline, patches, data, one_thread):
    """Averaged over many draws, the REINFORCE gradient equals the exact one."""
    model = _model()
    ma.tasks.train_model(  # a little soft training, so that the patches give different losses
        model,
        ma.tasks.soft_loss,
        ma.tasks.glimpse_batches(patches[0], data.train_labels, 64, seed=0),
        steps=30,
        lr=2e-3,
        progress=False,
    )
    x, y = patches[0][:1], data.train_labels[:1]  # one image
    exact = ma.tasks.scorer_gradient(model, ma.tasks.expected_loss, (x, y))
    copies = (x.expand(2000, -1, -1), y.expand(2000))  # 2000 independent draws per chunk
    g = torch.Generator().manual_seed(1)
    loss_fn = functools.partial(ma.tasks.reinforce_loss, baseline=baseline, generator=g)
    chunks = torch.stack([ma.tasks.scorer_gradient(model, loss_fn, copies) for _ in range(20)])
    mean, error = chunks.mean(0), chunks.std(0) / 20**0.5
    assert (exact.abs() > 0).any()
    assert ((mean - exact).abs() <= 5 * error + 1e-6).all(), (mean - exact).abs().max()


def test_reinforce_baseline_needs_two_images(patches, data):
    with pytest.raises(ValueError, match="at least 2 images"):
        ma.tasks.reinforce_loss(_model(), (patches[0][:1], data.train_labels[:1]))


def test_scorer_gradient_leaves_grad_fields_alone(patches, data):
    model = _model()
    batch = (patches[0][:8], data.train_labels[:8])
    ma.tasks.scorer_gradient(model, ma.tasks.soft_loss, batch)
    assert all(p.grad is None for p in model.parameters())
    ma.tasks.soft_loss(model, batch).backward()
    expected = torch.cat([p.grad.flatten() for p in model.scorer.parameters()])
    torch.testing.assert_close(ma.tasks.scorer_gradient(model, ma.tasks.soft_loss, batch), expected)


def test_glimpse_batches(patches, data):
    first = ma.tasks.glimpse_batches(patches[0], data.train_labels, 16, seed=3)
    again = ma.tasks.glimpse_batches(patches[0], data.train_labels, 16, seed=3)
    for _ in range(3):
        (xa, ya), (xb, yb) = next(first), next(again)
        assert xa.shape == (16, 9, 64) and ya.shape == (16,)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    with pytest.raises(ValueError, match="same number of images"):
        next(ma.tasks.glimpse_batches(patches[0], data.train_labels[:5], 4))
    with pytest.raises(ValueError, match="batch_size must be positive"):
        next(ma.tasks.glimpse_batches(patches[0], data.train_labels, 0))


def test_glimpse_accuracy_counts_answers_and_looks(patches, data):
    model = _model()
    x, y, where = patches[1], data.test_labels, data.test_where
    accuracy, found = ma.tasks.glimpse_accuracy(model, x, y, where)
    logits, index = model.classify_hard(x)
    assert accuracy == pytest.approx((logits.argmax(-1) == y).float().mean().item())
    assert found == pytest.approx((index == where).float().mean().item())
    soft_accuracy, _ = ma.tasks.glimpse_accuracy(model, x, y, where, soft=True)
    soft_logits, _ = model.classify_soft(x)
    assert soft_accuracy == pytest.approx((soft_logits.argmax(-1) == y).float().mean().item())


def test_trained_scorers_find_the_digit_and_argmax_does_not(patches, data, one_thread):
    """Short training runs: every estimator learns where to look; the argmax never does."""
    train, test = patches
    found = {}
    for name, loss_fn in {
        "soft": ma.tasks.soft_loss,
        "argmax": ma.tasks.argmax_loss,
        "reinforce+baseline": functools.partial(
            ma.tasks.reinforce_loss, generator=torch.Generator().manual_seed(0)
        ),
        "gumbel": functools.partial(
            ma.tasks.gumbel_loss, generator=torch.Generator().manual_seed(0)
        ),
    }.items():
        model = _model()
        ma.tasks.train_model(
            model,
            loss_fn,
            ma.tasks.glimpse_batches(train, data.train_labels, 128, seed=1),
            steps=150,
            lr=2e-3,
            progress=False,
        )
        found[name] = ma.tasks.glimpse_accuracy(model, test, data.test_labels, data.test_where)[1]
    print(found)
    assert found["argmax"] < 0.3
    for name in ("soft", "reinforce+baseline", "gumbel"):
        assert found[name] > 0.7, f"{name} found the digit in {found[name]:.0%} of the images"
