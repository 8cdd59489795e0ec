"""The models of chapter 3's glimpse experiment: where to look, and what is there.

A :class:`GlimpseClassifier` has three parts. A small **scorer** reads every patch's
pixels and gives it a score (where to look). An **encoder** turns a patch into features
and a linear **classifier** names the digit (what is there). Soft attention encodes every
patch and averages the features; hard attention encodes only the chosen patch.

The loss functions train the same model in the five ways the chapter compares; each has
the signature ``loss_fn(model, batch)`` of :func:`~mini_attn.tasks.train_model` once its options
are fixed (with :func:`functools.partial` or a lambda).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from ..._validation import check_tensor, fmt_shape
from ...attention.hard import (
    gumbel_softmax_attention,
    hard_attention,
    sample_attention,
    topk_attention,
)
from ...attention.soft import soft_attention
from ...core.softmax import masked_softmax

__all__ = [
    "GlimpseClassifier",
    "argmax_loss",
    "expected_loss",
    "glimpse_accuracy",
    "glimpse_batches",
    "gumbel_loss",
    "pixel_soft_loss",
    "reinforce_loss",
    "scorer_gradient",
    "soft_loss",
    "topk_loss",
]

# patches (B, P, p²), labels (B,)
Batch = tuple[torch.Tensor, torch.Tensor]


def _check_patches(patches: torch.Tensor, patch_dim: int) -> None:
    """Patches must be ``(B, P, p²)`` with the model's ``p²``."""
    if (
        not isinstance(patches, torch.Tensor)
        or patches.dim() != 3
        or patches.shape[-1] != patch_dim
    ):
        shape = (
            fmt_shape(patches.shape)
            if isinstance(patches, torch.Tensor)
            else type(patches)
        )
        raise ValueError(
            f"patches must have shape (B, P, {patch_dim}), got {shape}"
        )


class GlimpseClassifier(nn.Module):
    """A scorer that chooses where to look, and an encoder and classifier that read a patch.

    Args:
        patch_dim (int): pixels per patch, ``p²``. Default: 64 (8×8 patches).
        hidden_dim (int): the encoder's hidden size. Default: 128.
        feature_dim (int): the size of a patch's features. Default: 64.
        scorer_dim (int): the scorer's hidden size. Default: 32.
        n_classes (int): the number of classes ``C``. Default: 10.

    Shape legend:

    - ``B``: images
    - ``P``: patches per image
    - ``p²``: pixels per patch
    - ``C``: classes
    """

    def __init__(
        self,
        patch_dim: int = 64,
        *,
        hidden_dim: int = 128,
        feature_dim: int = 64,
        scorer_dim: int = 32,
        n_classes: int = 10,
    ) -> None:
        super().__init__()
        self.patch_dim = patch_dim
        self.scorer = nn.Sequential(
            nn.Linear(patch_dim, scorer_dim),
            nn.ReLU(),
            nn.Linear(scorer_dim, 1),
        )
        self.encoder = nn.Sequential(
            nn.Linear(patch_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, feature_dim),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(feature_dim, n_classes)

    def scores(self, patches: torch.Tensor) -> torch.Tensor:
        """Where to look: scores ``(B, P, p²) -> (B, 1, P)``."""
        _check_patches(patches, self.patch_dim)
        # (B, P, 1) -> (B, 1, P)
        return self.scorer(patches).transpose(-2, -1)

    def read(self, patches: torch.Tensor) -> torch.Tensor:
        """What is there: logits ``(..., p²) -> (..., C)``."""
        return self.classifier(self.encoder(patches))

    def classify_hard(
        self, patches: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The best patch only: ``logits (B, C)``, ``index (B,)``."""
        # (B, 1, p²), (B, 1)
        glimpse, index = hard_attention(self.scores(patches), patches)
        return self.read(glimpse.squeeze(1)), index.squeeze(1)

    def classify_soft(
        self, patches: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every patch encoded, then averaged: ``logits``, ``weights``."""
        # (B, P, F): every patch is encoded
        features = self.encoder(patches)
        # (B, 1, F), (B, 1, P)
        context, weights = soft_attention(self.scores(patches), features)
        return self.classifier(context.squeeze(1)), weights.squeeze(1)

    def classify_pixels(
        self, patches: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw patches averaged, encoded once: ``logits``, ``weights``."""
        # (B, 1, p²)
        glimpse, weights = soft_attention(self.scores(patches), patches)
        return self.read(glimpse.squeeze(1)), weights.squeeze(1)

    def classify_topk(
        self, patches: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` best patches averaged: ``logits``, ``weights``."""
        # (B, 1, p²)
        glimpse, weights = topk_attention(
            self.scores(patches), patches, k
        )
        return self.read(glimpse.squeeze(1)), weights.squeeze(1)


def soft_loss(model: GlimpseClassifier, batch: Batch) -> torch.Tensor:
    """Soft attention: the cross-entropy of :meth:`GlimpseClassifier.classify_soft`."""
    patches, labels = batch
    logits, _ = model.classify_soft(patches)
    return F.cross_entropy(logits, labels)


def pixel_soft_loss(
    model: GlimpseClassifier, batch: Batch
) -> torch.Tensor:
    """Soft attention over raw pixels: the loss of :meth:`GlimpseClassifier.classify_pixels`.

    The weighted average of the patches is encoded once, so the model costs what hard
    attention costs, and the scorer is trained by plain backpropagation.
    """
    patches, labels = batch
    logits, _ = model.classify_pixels(patches)
    return F.cross_entropy(logits, labels)


def topk_loss(
    model: GlimpseClassifier, batch: Batch, *, k: int = 2
) -> torch.Tensor:
    """Top-k attention over raw pixels: the loss of :meth:`GlimpseClassifier.classify_topk`.

    Only the ``k`` chosen scores receive a gradient; ``k = 1`` is :func:`argmax_loss`.
    """
    patches, labels = batch
    logits, _ = model.classify_topk(patches, k)
    return F.cross_entropy(logits, labels)


def argmax_loss(model: GlimpseClassifier, batch: Batch) -> torch.Tensor:
    """Hard argmax attention: the cross-entropy of the best-scoring patch.

    The argmax passes no gradient, so the scorer never learns: it keeps its initial
    preferences, and only the encoder and the classifier are trained.
    """
    patches, labels = batch
    logits, _ = model.classify_hard(patches)
    return F.cross_entropy(logits, labels)


def reinforce_loss(
    model: GlimpseClassifier,
    batch: Batch,
    *,
    baseline: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Stochastic hard attention trained with REINFORCE: read one sampled patch per image.

    The reward of a draw is minus its cross-entropy. The surrogate loss
    :math:`\ell - (r - b) \log p(i)`, averaged over the batch, has the gradient of the
    cross-entropy for the encoder and classifier, and the REINFORCE estimate of the
    gradient of the *expected* cross-entropy for the scorer.

    Args:
        model (GlimpseClassifier): the model.
        batch (tuple of Tensor): ``patches`` :math:`(B, P, p^2)` and ``labels`` :math:`(B,)`.
        baseline (bool): subtract from each reward the mean reward of the *other* images of
            the batch (which does not depend on this image's draw, so the estimate stays
            unbiased). Default: True.
        generator (torch.Generator, optional): the generator of the draws.

    Returns:
        Tensor: the surrogate loss, a scalar (not the cross-entropy itself).
    """
    patches, labels = batch
    glimpse, _, log_prob = sample_attention(
        model.scores(patches), patches, generator=generator
    )
    # (B,)
    loss = F.cross_entropy(
        model.read(glimpse.squeeze(1)), labels, reduction="none"
    )
    # a number to the scorer: no gradient flows through it
    reward = -loss.detach()
    advantage = reward
    if baseline:
        n = reward.numel()
        if n < 2:
            raise ValueError(
                "the leave-one-out baseline needs a batch of at least "
                "2 images"
            )
        # r - b, b: the others' mean
        advantage = reward - (reward.sum() - reward) / (n - 1)
    # ∇ E[ℓ] ≈ ∇ℓ (encoder, classifier) - (r - b) ∇ log p(i) (scorer),
    # with the reward r = -ℓ
    return (loss - advantage * log_prob.squeeze(1)).mean()


def gumbel_loss(
    model: GlimpseClassifier,
    batch: Batch,
    *,
    tau: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Hard attention trained with Gumbel-softmax straight-through: read one patch per image.

    The forward pass reads the patch chosen by the Gumbel-max draw; the backward pass gives
    the scorer the gradient of the relaxed weights at temperature ``tau`` (biased).

    Args:
        model (GlimpseClassifier): the model.
        batch (tuple of Tensor): ``patches`` :math:`(B, P, p^2)` and ``labels`` :math:`(B,)`.
        tau (float): the temperature of the relaxation. Default: 1.
        generator (torch.Generator, optional): the generator of the Gumbel noise.

    Returns:
        Tensor: the mean cross-entropy, a scalar.
    """
    patches, labels = batch
    scores = model.scores(patches)  # (B, 1, P)
    glimpse, _ = gumbel_softmax_attention(
        scores, patches, tau=tau, generator=generator
    )
    return F.cross_entropy(model.read(glimpse.squeeze(1)), labels)


def expected_loss(model: GlimpseClassifier, batch: Batch) -> torch.Tensor:
    r"""The exact objective of stochastic hard attention, :math:`\sum_i p_i \, \ell_i`.

    Reads every patch (so it costs what soft attention costs) and weights each patch's
    cross-entropy by the probability of drawing it. Its gradient is what REINFORCE
    estimates from a single draw.

    Args:
        model (GlimpseClassifier): the model.
        batch (tuple of Tensor): ``patches`` :math:`(B, P, p^2)` and ``labels`` :math:`(B,)`.

    Returns:
        Tensor: the expected cross-entropy, averaged over the batch, a scalar.
    """
    patches, labels = batch
    probs = masked_softmax(model.scores(patches)).squeeze(1)  # (B, P)
    logits = model.read(patches)  # (B, P, C): every patch is read
    # (B, P): the loss if patch i were read
    per_patch = F.cross_entropy(
        logits.transpose(1, 2),
        labels[:, None].expand(-1, patches.shape[1]),
        reduction="none",
    )
    return (probs * per_patch).sum(dim=-1).mean()


def scorer_gradient(
    model: GlimpseClassifier,
    loss_fn: Callable[[GlimpseClassifier, Batch], torch.Tensor],
    batch,
) -> torch.Tensor:
    """The gradient of ``loss_fn(model, batch)`` with respect to the scorer, as one vector.

    Args:
        model (GlimpseClassifier): the model (its ``.grad`` fields are left untouched).
        loss_fn (callable): ``loss_fn(model, batch)`` returns a scalar.
        batch: what ``loss_fn`` takes.

    Returns:
        Tensor: the flattened gradient, shape :math:`(n_{scorer},)`, the number of the
        scorer's parameters.
    """
    params = list(model.scorer.parameters())
    grads = torch.autograd.grad(loss_fn(model, batch), params)
    return torch.cat([g.flatten() for g in grads])


def glimpse_batches(
    patches: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    *,
    seed: int = 0,
) -> Iterator[Batch]:
    """Endless random mini-batches of patches and labels, drawn with replacement (seeded).

    Args:
        patches (Tensor): shape :math:`(N, P, p^2)`.
        labels (Tensor): shape :math:`(N,)`, on the device of ``patches``.
        batch_size (int): images per batch ``B``.
        seed (int): seeds the choice of images. Default: 0.

    Yields:
        (Tensor, Tensor): ``patches`` :math:`(B, P, p^2)` and ``labels`` :math:`(B,)`.
    """
    check_tensor(patches, "patches", ndim=3)
    check_tensor(labels, "labels", ndim=1)
    if len(patches) != len(labels):
        raise ValueError(
            f"patches {fmt_shape(patches.shape)} and labels {fmt_shape(labels.shape)} must "
            "have the same number of images"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    while True:
        chosen = torch.randint(
            len(patches), (batch_size,), generator=generator
        )
        chosen = chosen.to(patches.device)
        yield patches[chosen], labels[chosen]


@torch.no_grad()
def glimpse_accuracy(
    model: GlimpseClassifier,
    patches: torch.Tensor,
    labels: torch.Tensor,
    where: torch.Tensor,
    *,
    soft: bool = False,
    classify: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    | None = None,
) -> tuple[float, float]:
    """How often the model names the digit, and how often its best score is the digit's patch.

    Args:
        model (GlimpseClassifier): the model.
        patches (Tensor): shape :math:`(N, P, p^2)`.
        labels (Tensor): shape :math:`(N,)`, the digits.
        where (Tensor): shape :math:`(N,)`, the patch that holds each digit.
        soft (bool): classify with soft attention (every patch read); otherwise read the
            best-scoring patch only. Default: False.
        classify (callable, optional): ``classify(patches) -> (logits, _)``, used instead of
            the two above (for instance ``lambda p: model.classify_topk(p, 2)``).

    Returns:
        (float, float): the accuracy, and the fraction of images whose best-scoring patch
        is the digit's.
    """
    if classify is None:
        classify = model.classify_soft if soft else model.classify_hard
    logits, _ = classify(patches)
    accuracy = (logits.argmax(dim=-1) == labels).float().mean().item()
    found = (
        (model.scores(patches).squeeze(1).argmax(dim=-1) == where)
        .float()
        .mean()
        .item()
    )
    return accuracy, found
