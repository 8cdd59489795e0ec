"""The glimpse data set: real digits hidden in clutter, and the patches a model reads."""

from __future__ import annotations

import pytest
import torch

import mini_attn as ma


@pytest.fixture(scope="module")
def digits():
    return ma.tasks.load_digits_8x8()


@pytest.fixture(scope="module")
def clean():
    """No background noise, so a digit cell is exactly one of the digits."""
    return ma.tasks.make_glimpse_digits(300, 200, grid=3, noise=0.0, seed=1)


def _index_of(patches: torch.Tensor, digits: torch.Tensor) -> torch.Tensor:
    """For each 64-pixel patch, the index of the identical digit, or -1."""
    flat = digits.reshape(len(digits), -1)  # (1797, 64)
    equal = (patches[:, None, :] == flat[None]).all(-1)  # (N, 1797)
    return torch.where(equal.any(-1), equal.float().argmax(-1), -1)


def test_load_digits(digits):
    images, labels = digits
    assert images.shape == (1797, 8, 8) and images.dtype == torch.float32
    assert images.min() == 0 and images.max() == 1
    assert labels.dtype == torch.int64 and set(labels.tolist()) == set(range(10))


@pytest.mark.parametrize("grid", [2, 3, 4])
def test_shapes_and_ranges(grid):
    data = ma.tasks.make_glimpse_digits(50, 20, grid=grid, seed=0)
    assert data.train_images.shape == (50, 8 * grid, 8 * grid)
    assert data.test_images.shape == (20, 8 * grid, 8 * grid)
    for images in (data.train_images, data.test_images):
        assert images.dtype == torch.float32 and images.min() >= 0 and images.max() <= 1
    for labels, where in (
        (data.train_labels, data.train_where),
        (data.test_labels, data.test_where),
    ):
        assert labels.dtype == torch.int64 and ((labels >= 0) & (labels <= 9)).all()
        assert where.dtype == torch.int64 and ((where >= 0) & (where < grid * grid)).all()


def test_same_seed_same_data_other_seed_other_data():
    first = ma.tasks.make_glimpse_digits(40, 10, seed=3)
    again = ma.tasks.make_glimpse_digits(40, 10, seed=3)
    other = ma.tasks.make_glimpse_digits(40, 10, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first.train_images, other.train_images)


def test_the_digit_cell_holds_a_real_digit_with_its_label(clean, digits):
    images, labels = digits
    for canvases, where, label in (
        (clean.train_images, clean.train_where, clean.train_labels),
        (clean.test_images, clean.test_where, clean.test_labels),
    ):
        patches = ma.tasks.image_patches(canvases)  # (N, 9, 64)
        chosen = patches[torch.arange(len(patches)), where]  # (N, 64)
        index = _index_of(chosen, images)
        assert (index >= 0).all(), "a digit cell is not one of scikit-learn's digits"
        assert torch.equal(labels[index], label)


def test_train_and_test_digits_are_disjoint(clean, digits):
    images, _ = digits

    def used(canvases, where):
        patches = ma.tasks.image_patches(canvases)
        return set(_index_of(patches[torch.arange(len(patches)), where], images).tolist())

    train = used(clean.train_images, clean.train_where)
    test = used(clean.test_images, clean.test_where)
    assert train and test and not train & test


def test_clutter_is_made_of_ink_but_never_a_whole_digit(clean, digits):
    images, _ = digits
    patches = ma.tasks.image_patches(clean.train_images[:60])  # (60, 9, 64)
    is_clutter = torch.ones(patches.shape[:2], dtype=torch.bool)
    is_clutter[torch.arange(60), clean.train_where[:60]] = False
    clutter = patches[is_clutter]  # (N · 8, 64)
    assert (_index_of(clutter, images) == -1).all()
    # about as much ink as a digit: the brightest patch is no giveaway
    ink = clutter.sum(-1).mean() / images.reshape(len(images), -1).sum(-1).mean()
    assert 0.7 < ink < 1.3, f"clutter has {ink:.2f} times the ink of a digit"


def test_brightness_alone_does_not_find_the_digit():
    data = ma.tasks.make_glimpse_digits(10, 2000, seed=0)
    brightest = ma.tasks.image_patches(data.test_images).sum(-1).argmax(-1)
    hit_rate = (brightest == data.test_where).float().mean().item()
    print(f"the brightest patch is the digit's in {hit_rate:.1%} of the canvases")
    assert hit_rate < 0.6


def test_no_clutter_and_no_noise_leaves_empty_cells():
    data = ma.tasks.make_glimpse_digits(20, 5, pieces=0, noise=0.0, seed=0)
    patches = ma.tasks.image_patches(data.train_images)
    ink = patches.sum(-1)  # (20, 9)
    others = torch.ones_like(ink, dtype=torch.bool)
    others[torch.arange(20), data.train_where] = False
    assert not ink[others].any() and (ink[~others] > 0).all()


def test_image_patches_equals_torch_unfold():
    images = torch.rand(5, 24, 16)
    patches = ma.tasks.image_patches(images)  # (5, 6, 64)
    expected = torch.nn.functional.unfold(images[:, None], kernel_size=8, stride=8)  # (5, 64, 6)
    torch.testing.assert_close(patches, expected.transpose(1, 2))
    torch.testing.assert_close(patches[:, 1].reshape(5, 8, 8), images[:, :8, 8:16])  # row 0, col 1


def test_image_patches_errors():
    with pytest.raises(ValueError, match=r"multiples of patch_size=8"):
        ma.tasks.image_patches(torch.rand(2, 20, 24))
    with pytest.raises(ValueError, match="3 dimension"):
        ma.tasks.image_patches(torch.rand(24, 24))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_train": 0}, "positive"),
        ({"grid": 1}, "grid must be at least 2"),
        ({"pieces": -1}, "non-negative"),
        ({"test_fraction": 1.0}, "test_fraction"),
    ],
)
def test_make_glimpse_digits_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ma.tasks.make_glimpse_digits(**{"n_train": 10, "n_test": 10, **kwargs})
