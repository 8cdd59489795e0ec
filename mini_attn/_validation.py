"""Input checks shared by every layer: clear errors that name the argument and the shapes.

Design principle 6: bad input gets an error that names the argument, the shape it got
and the shape it wanted; nothing returns NaN silently.
"""

from __future__ import annotations

import torch

__all__ = [
    "HALF_DTYPES",
    "broadcast_batch",
    "check_bool_mask",
    "check_dim",
    "check_floating",
    "check_positive_int",
    "check_qkv",
    "check_tensor",
    "fmt_shape",
]

# the 16-bit floating-point types, whose softmax statistics are accumulated in float32
HALF_DTYPES = (torch.float16, torch.bfloat16)


def fmt_shape(shape) -> str:
    """``(2, 3)`` for a shape, ``()`` for a scalar: the form every error message uses."""
    dims = tuple(shape)
    return "(" + ", ".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"


def check_tensor(x, name: str, *, ndim: int | None = None, min_ndim: int | None = None):
    """Refuse anything that is not a tensor, or a tensor with the wrong number of dims.

    Args:
        x: the argument to check.
        name (str): its name, for the message.
        ndim (int, optional): the number of dimensions it must have.
        min_ndim (int, optional): the least number of dimensions it may have.

    Returns:
        Tensor: ``x``, unchanged.

    Raises:
        TypeError: ``x`` is not a tensor.
        ValueError: ``x`` has the wrong number of dimensions.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {fmt_shape(x.shape)}")
    if min_ndim is not None and x.dim() < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimension(s), got shape {fmt_shape(x.shape)}"
        )
    return x


def check_floating(x: torch.Tensor, name: str) -> torch.Tensor:
    """Refuse integer and boolean tensors where a floating-point one is needed."""
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def check_dim(dim: int, ndim: int, name: str = "dim") -> int:
    """Return ``dim`` made non-negative, or raise if it does not index an ``ndim``-d tensor."""
    if not -ndim <= dim < ndim:
        raise ValueError(f"{name}={dim} is out of range for a tensor with {ndim} dimension(s)")
    return dim % ndim


def check_bool_mask(mask, shape, *, name: str = "mask", target: str = "scores"):
    """Check that ``mask`` is a boolean tensor that broadcasts to ``shape``.

    A boolean mask is ``True`` where a query may attend to a key, as in
    :func:`torch.nn.functional.scaled_dot_product_attention`. Float (additive) masks
    are refused: their meaning (0 or -inf added to the scores) is a different convention.

    Args:
        mask (Tensor or None): the mask to check; None passes.
        shape (tuple): the shape it must broadcast to.
        name (str): its name, for the message. Default: ``"mask"``.
        target (str): what ``shape`` is the shape of, for the message. Default: ``"scores"``.

    Returns:
        Tensor or None: ``mask``, unchanged.

    Raises:
        TypeError: ``mask`` is not a boolean tensor.
        ValueError: ``mask`` does not broadcast to ``shape``.
    """
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a boolean torch.Tensor or None, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(
            f"{name} must be a boolean tensor (True where a query may attend to a key), "
            f"got dtype {mask.dtype}. An additive float mask (0 to keep, -inf to drop) "
            f"converts with `{name} = {name} == 0`."
        )
    try:
        broadcast = torch.broadcast_shapes(mask.shape, tuple(shape))
    except RuntimeError:
        broadcast = None
    if broadcast != tuple(shape):
        raise ValueError(
            f"{name} of shape {fmt_shape(mask.shape)} does not broadcast to {target} "
            f"of shape {fmt_shape(shape)}"
        )
    return mask


def broadcast_batch(**tensors: torch.Tensor) -> tuple[int, ...]:
    """The broadcast shape of the batch dimensions (all but the last two) of named tensors.

    ``broadcast_batch(query=q, key=k, value=v)`` raises a ValueError naming every shape
    when the batch dimensions do not broadcast.
    """
    try:
        return tuple(torch.broadcast_shapes(*(t.shape[:-2] for t in tensors.values())))
    except RuntimeError:
        shapes = ", ".join(f"{name} {fmt_shape(t.shape)}" for name, t in tensors.items())
        raise ValueError(f"the batch dimensions of {shapes} do not broadcast") from None


def check_positive_int(value, name: str) -> int:
    """Refuse anything but a positive ``int`` (``True``, ``2.0`` and ``0`` included).

    Raises:
        ValueError: ``value`` is not an integer of at least 1.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_qkv(query, key, value, *, names=("query", "key", "value")) -> None:
    """Check queries ``(..., L, D)``, keys ``(..., S, D)`` and values ``(..., S, Dv)``.

    Floating-point tensors with at least two dimensions, queries and keys of one size
    ``D``, one value per key, and batch dimensions that broadcast.

    Args:
        query, key, value (Tensor): the three inputs.
        names (tuple of str): their names in the caller's signature, for the messages.
            Default: ``("query", "key", "value")``.

    Raises:
        TypeError: an argument is not a floating-point tensor.
        ValueError: the sizes do not match, or the batch dimensions do not broadcast.
    """
    q_name, k_name, v_name = names
    for name, x in zip(names, (query, key, value), strict=True):
        check_floating(check_tensor(x, name, min_ndim=2), name)
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"{q_name} {fmt_shape(query.shape)} and {k_name} {fmt_shape(key.shape)} must have "
            "the same last dimension D (a score is a dot product of a query and a key)"
        )
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(
            f"{k_name} {fmt_shape(key.shape)} and {v_name} {fmt_shape(value.shape)} must have "
            "the same number of rows S (one value per key)"
        )
    broadcast_batch(**dict(zip(names, (query, key, value), strict=True)))
