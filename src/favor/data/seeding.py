"""Derived seeds: every random choice of the data pipeline is a pure function of a few integers.

Random crops and MLM masks are drawn from generators seeded with ``derive_seed(seed, epoch, index)``
rather than from one long-lived generator. The outcome then depends only on (seed, epoch, item), not
on batch composition, worker count, prefetching or rank, so a resumed run reproduces the data stream
exactly from three integers.
"""

from __future__ import annotations

import torch

__all__ = ["derive_seed", "generator_for"]

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def derive_seed(*keys: int) -> int:
    """Mix integer keys into one 63-bit seed (order matters; equal keys give equal seeds)."""
    h = 0x243F6A8885A308D3
    for key in keys:
        if not isinstance(key, int):
            raise TypeError(f"derive_seed: keys must be ints, got {type(key).__name__} {key!r}")
        h = _splitmix64(h ^ (key & _MASK64))
    return h >> 1


def generator_for(*keys: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``derive_seed(*keys)``."""
    return torch.Generator().manual_seed(derive_seed(*keys))
