"""Key/value caches for decoding (chapter 7).

A decoder generates one token at a time. The keys and values of the tokens already seen do
not change, so they are kept (cached) and only the new token's are computed: each step costs
one row of attention instead of the whole sequence again.
"""

from __future__ import annotations

import torch

from .._validation import (
    check_floating,
    check_positive_int,
    check_tensor,
    fmt_shape,
)

__all__ = ["KVCache", "SlidingWindowCache"]


class KVCache:
    """The keys and values seen so far, one layer's worth.

    ``update(key, value)`` appends this step's keys and values along dim −2 and returns all
    of them; ``len(cache)`` is the number of cached positions.

    Shape legend:

    - ``B``: batch
    - ``Hkv``: key/value heads
    - ``S``: positions
    - ``D``: head size
    - ``Dv``: value head size
    """

    def __init__(self) -> None:
        self.keys: torch.Tensor | None = None  # (B, Hkv, S, D)
        self.values: torch.Tensor | None = None  # (B, Hkv, S, Dv)

    def __len__(self) -> int:
        return 0 if self.keys is None else self.keys.shape[-2]

    def __repr__(self) -> str:
        shape = None if self.keys is None else fmt_shape(self.keys.shape)
        return f"{type(self).__name__}(len={len(self)}, keys={shape})"

    @property
    def n_seen(self) -> int:
        """int: the number of positions seen, cached or not (the position of the next one)."""
        return len(self)

    def update(
        self, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``key`` and ``value`` and return every cached key and value.

        Args:
            key (Tensor): shape :math:`(B, Hkv, L, D)`, this step's keys.
            value (Tensor): shape :math:`(B, Hkv, L, Dv)`.

        Returns:
            (Tensor, Tensor): the keys :math:`(B, Hkv, S, D)` and values
            :math:`(B, Hkv, S, Dv)` of every position so far, ``S = len(cache)``.

        Raises:
            TypeError: ``key`` or ``value`` is not a floating-point tensor.
            ValueError: their batch size, head count or head size differs from the cached
                ones', or ``key`` and ``value`` disagree.
        """
        self._check_update(key, value)
        if self.keys is None:
            self.keys, self.values = key, value
        else:
            # (B, Hkv, S + L, D)
            self.keys = torch.cat((self.keys, key), dim=-2)
            # (B, Hkv, S + L, Dv)
            self.values = torch.cat((self.values, value), dim=-2)
        return self.keys, self.values

    def _check_update(self, key, value) -> None:
        for name, x in (("key", key), ("value", value)):
            check_floating(check_tensor(x, name, ndim=4), name)
        if key.shape[:-1] != value.shape[:-1]:
            raise ValueError(
                f"key {fmt_shape(key.shape)} and value {fmt_shape(value.shape)} must have the "
                "same batch size, head count and length (B, Hkv, L)"
            )
        if self.keys is None:
            return
        for name, new, old in (
            ("key", key, self.keys),
            ("value", value, self.values),
        ):
            for axis, what in (
                (0, "batch size B"),
                (1, "head count Hkv"),
                (3, "head size D"),
            ):
                if new.shape[axis] != old.shape[axis]:
                    raise ValueError(
                        f"{name} of shape {fmt_shape(new.shape)} has {what}={new.shape[axis]}, "
                        f"but the cache holds {name}s of shape {fmt_shape(old.shape)} "
                        f"({what}={old.shape[axis]})"
                    )


class SlidingWindowCache(KVCache):
    """A rolling cache for sliding-window attention: it keeps the last ``window`` positions.

    ``update`` returns the kept positions and this step's (all that a query of this step can
    see), then forgets all but the last ``window``: the memory stays constant however long
    the sequence. ``len(cache)`` is the number of positions kept, ``n_seen`` the number seen.

    Args:
        window (int): the attention window (each query sees itself and ``window − 1`` keys
            before it).
    """

    def __init__(self, window: int) -> None:
        super().__init__()
        self.window = check_positive_int(window, "window")
        self._seen = 0

    @property
    def n_seen(self) -> int:
        return self._seen

    def update(
        self, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = super().update(key, value)  # (B, Hkv, kept + L, D)
        self._seen += key.shape[-2]
        self.keys, self.values = (
            keys[..., -self.window :, :],
            values[..., -self.window :, :],
        )
        return keys, values
