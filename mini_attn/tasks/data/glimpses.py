"""The glimpse data set of chapter 3: a handwritten digit hidden in clutter.

Each image is a ``grid × grid`` canvas of 8×8 cells. One cell holds a real handwritten
digit from scikit-learn's bundled digits data set (no download); every other cell holds
clutter made of quarters of other digits, so it looks like ink, not like noise. A
classifier that may look at one cell only has to learn *where* to look.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..._validation import check_tensor, fmt_shape

__all__ = ["GlimpseData", "image_patches", "load_digits_8x8", "make_glimpse_digits"]

PATCH = 8  # the digits are 8×8, and so is every cell of the canvas


class GlimpseData(NamedTuple):
    """Cluttered canvases, their labels and the cell that holds the digit.

    The training canvases are built from one part of the digits, the test canvases from
    the other, so a test digit is never seen in training (not even as clutter).
    """

    train_images: torch.Tensor
    """float32 :math:`(N_{train}, 8G, 8G)`, values in ``[0, 1]``."""
    train_labels: torch.Tensor
    """int64 :math:`(N_{train},)`, the digit, 0 to 9."""
    train_where: torch.Tensor
    """int64 :math:`(N_{train},)`, the cell of the digit, row-major, 0 to ``G² - 1``."""
    test_images: torch.Tensor
    """float32 :math:`(N_{test}, 8G, 8G)`."""
    test_labels: torch.Tensor
    """int64 :math:`(N_{test},)`."""
    test_where: torch.Tensor
    """int64 :math:`(N_{test},)`."""


def load_digits_8x8() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled handwritten digits (1797 images, shipped with the package).

    Returns:
        (Tensor, Tensor): ``images`` float32 :math:`(1797, 8, 8)` scaled to ``[0, 1]`` and
        ``labels`` int64 :math:`(1797,)`.
    """
    from sklearn.datasets import load_digits  # imported here: only this data set needs it

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32) / 16.0  # pixel values 0..16
    return images, torch.tensor(digits.target, dtype=torch.int64)


def image_patches(images: torch.Tensor, patch_size: int = PATCH) -> torch.Tensor:
    """Cut square images into non-overlapping patches, row-major, each flattened.

    Args:
        images (Tensor): shape :math:`(B, H, W)`, with ``H`` and ``W`` multiples of
            ``patch_size``.
        patch_size (int): the side of a patch. Default: 8.

    Returns:
        Tensor: shape :math:`(B, P, patch\\_size^2)` with ``P = (H / patch_size) ·
        (W / patch_size)``; patch ``p`` is row ``p // (W / patch_size)``, column
        ``p % (W / patch_size)`` of the grid.

    Shape legend:

    - ``B``: images
    - ``P``: patches
    """
    check_tensor(images, "images", ndim=3)
    batch, height, width = images.shape
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"images {fmt_shape(images.shape)}: height and width must be multiples of "
            f"patch_size={patch_size}"
        )
    rows, cols = height // patch_size, width // patch_size
    x = images.reshape(batch, rows, patch_size, cols, patch_size)  # (B, R, p, C, p)
    x = x.permute(0, 1, 3, 2, 4)  # (B, R, C, p, p)
    return x.reshape(batch, rows * cols, patch_size * patch_size)  # (B, P, p²)


def _clutter_cells(
    quarters: torch.Tensor, n_cells: int, pieces: int, generator: torch.Generator
) -> torch.Tensor:
    """``n_cells`` 8×8 cells, each the overlay (max) of ``pieces`` random 4×4 quarters."""
    cells = torch.zeros(n_cells, PATCH, PATCH)
    cell_index = torch.arange(n_cells)[:, None, None]  # (M, 1, 1)
    offsets = torch.arange(PATCH // 2)
    for _ in range(pieces):
        quarter = quarters[torch.randint(len(quarters), (n_cells,), generator=generator)]
        top, left = torch.randint(PATCH // 2 + 1, (2, n_cells), generator=generator)
        rows = (top[:, None] + offsets)[:, :, None]  # (M, 4, 1)
        cols = (left[:, None] + offsets)[:, None, :]  # (M, 1, 4)
        cells[cell_index, rows, cols] = torch.maximum(cells[cell_index, rows, cols], quarter)
    return cells


def _canvases(
    digits: torch.Tensor,
    labels: torch.Tensor,
    n: int,
    grid: int,
    pieces: int,
    noise: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` canvases built from ``digits`` only: images, labels, the cell of the digit."""
    n_cells = grid * grid
    quarters = digits.unfold(1, PATCH // 2, PATCH // 2).unfold(2, PATCH // 2, PATCH // 2)
    quarters = quarters.reshape(-1, PATCH // 2, PATCH // 2)  # (4 · digits, 4, 4)
    cells = _clutter_cells(quarters, n * n_cells, pieces, generator)
    cells = cells.view(n, n_cells, PATCH, PATCH)  # (N, G², 8, 8)

    chosen = torch.randint(len(digits), (n,), generator=generator)
    where = torch.randint(n_cells, (n,), generator=generator)
    cells[torch.arange(n), where] = digits[chosen]  # the digit replaces the clutter of its cell
    cells = cells + noise * torch.rand(cells.shape, generator=generator)  # light background noise
    images = cells.view(n, grid, grid, PATCH, PATCH).permute(0, 1, 3, 2, 4)  # (N, G, 8, G, 8)
    images = images.reshape(n, grid * PATCH, grid * PATCH).clamp(0.0, 1.0)  # (N, 8G, 8G)
    return images, labels[chosen], where


def make_glimpse_digits(
    n_train: int = 20000,
    n_test: int = 2000,
    *,
    grid: int = 3,
    pieces: int = 4,
    noise: float = 0.1,
    test_fraction: float = 0.3,
    seed: int = 0,
) -> GlimpseData:
    """Hide real handwritten digits in cluttered canvases, for a model that looks at one cell.

    The 1797 digits are split once (``test_fraction`` of them for the test canvases). Each
    canvas is a ``grid × grid`` arrangement of 8×8 cells: one random cell holds a digit of
    the split, and every other cell the overlay of ``pieces`` random quarters (4×4) of
    digits of the same split, at random places in the cell. Uniform noise in
    ``[0, noise]`` is added everywhere.

    Args:
        n_train (int): the number of training canvases.
        n_test (int): the number of test canvases.
        grid (int): cells per side; a canvas is ``8·grid`` pixels wide. Default: 3.
        pieces (int): quarters of digits overlaid in each clutter cell. Default: 4.
        noise (float): the amplitude of the background noise. Default: 0.1.
        test_fraction (float): the fraction of the digits kept for the test canvases.
        seed (int): the seed; the same arguments give the same data.

    Returns:
        GlimpseData: images, labels and the cell of the digit, for training and test.
    """
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be positive, got {n_train} and {n_test}")
    if grid < 2:
        raise ValueError(f"grid must be at least 2 (one digit and some clutter), got {grid}")
    if pieces < 0 or noise < 0:
        raise ValueError(f"pieces and noise must be non-negative, got {pieces} and {noise}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    generator = torch.Generator().manual_seed(seed)
    digits, labels = load_digits_8x8()
    order = torch.randperm(len(digits), generator=generator)
    n_test_digits = round(test_fraction * len(digits))
    test_ids, train_ids = order[:n_test_digits], order[n_test_digits:]
    train = _canvases(digits[train_ids], labels[train_ids], n_train, grid, pieces, noise, generator)
    test = _canvases(digits[test_ids], labels[test_ids], n_test, grid, pieces, noise, generator)
    return GlimpseData(*train, *test)
