"""Pieces shared by the bidirectional and causal FAVOR+ paths: key weights, tiles and the guarded division.

Both paths compute ``D^-1 Q' (K'^T V)`` with the key-side per-row scale and the padding mask folded into a
weight per key, ``w_j = keep_j * exp(log_scale_j - c)``. The weight multiplies the values and, as an extra
value column, gives the denominator from the same matrix product:

    V_aug = [w * V, w]            (batch, heads, length, d + 1)
    out_aug = Q' (K'^T V_aug)     numerator in [..., :d], denominator in [..., d]

**Tiles.** The fast paths never hold an ``(L, M)`` feature tensor: they sweep over tiles of rows sized so
that a tile's features (``batch * heads * rows * M`` floats) stay in a core's L2 cache, and the backward
pass recomputes each tile's features rather than storing them. Each sweep reuses one scratch buffer
(:class:`Scratch`) for the tiles' features and products. On CPU, tiling plus buffer reuse made forward +
backward at L=16K 1.9x faster than materialising the features (BENCHMARKS.md: no page faults on fresh
buffers, no trips to main memory between the matmul, the row max and the exp), and memory stays
``O(L d)`` plus the tiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from favor.ops.features import Features, Kernel

__all__ = ["augment_values", "keep_mask", "tile_rows"]

# Elements of one (batch * heads, rows, features) tile per CPU thread: 2 MiB of float32, about one core's
# L2 cache (each thread works on its share of the tile). On CUDA tiles are only there to bound memory, and
# large ones keep the kernel-launch count low.
TILE_ELEMENTS = 1 << 19
CUDA_TILE_ELEMENTS = 1 << 25


def keep_mask(key_padding_mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """``(batch, length)`` True-is-padding mask -> ``(batch, 1, length)`` True-is-real mask, or None."""
    if key_padding_mask is None:
        return None
    batch, _, length = like.shape[:3]
    if key_padding_mask.shape != (batch, length):
        raise ValueError(
            f"key_padding_mask must have shape (batch, length) = {(batch, length)}, "
            f"got {tuple(key_padding_mask.shape)}"
        )
    if key_padding_mask.dtype != torch.bool:
        raise ValueError(f"key_padding_mask must be bool (True marks padding), got {key_padding_mask.dtype}")
    return (~key_padding_mask).unsqueeze(1)


def augment_values(v: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``[w * v, w]``: values ``(..., L, d)`` and weights ``(..., L)`` -> ``(..., L, d + 1)``."""
    w = weights.unsqueeze(-1)
    return torch.cat([v * w, w], dim=-1)


def tile_rows(
    batch_heads: int,
    nb_features: int,
    *,
    multiple: int = 1,
    requested: int | None = None,
    device: torch.device | None = None,
) -> int:
    """Rows per tile, a positive multiple of ``multiple``: ``requested``, or what fits the budget.

    The budget is ``TILE_ELEMENTS`` per torch thread on CPU, up to two threads (measured at L=16K: 512-row
    tiles beat 256-row ones by 2-4% with two threads and lose by 15% with one), and ``CUDA_TILE_ELEMENTS``
    on CUDA.
    """
    if requested is not None and requested < 1:
        raise ValueError(f"tile_size must be positive, got {requested}")
    if device is not None and device.type == "cuda":
        budget = CUDA_TILE_ELEMENTS
    else:
        budget = TILE_ELEMENTS * min(torch.get_num_threads(), 2)
    rows = requested or budget // max(batch_heads * nb_features, 1)
    return max(multiple, rows // multiple * multiple)


class Scratch:
    """A reusable buffer for the tile sweeps: each tile's features (or states) live one iteration.

    A fresh tensor costs a page fault per 4 KiB on first touch, as much as the product that fills it at
    these sizes; one buffer per sweep, reused by every tile, pays that once.
    """

    def __init__(self, like: torch.Tensor, numel: int) -> None:
        self.buffer = like.new_empty(numel)

    def take(self, *shape: int) -> torch.Tensor:
        """A contiguous view of the buffer with this shape."""
        count = 1
        for size in shape:
            count *= size
        return self.buffer[:count].view(shape)


def divide(out_aug: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split ``(..., d + 1)`` into numerator / guarded denominator.

    Returns the quotient, the guarded denominator and the guard's pass-through mask (for the backward).
    """
    numerator, denominator = out_aug[..., :-1], out_aug[..., -1:]
    floor = torch.finfo(out_aug.dtype).tiny ** 0.5
    magnitude = denominator.abs()
    passes = magnitude > floor
    # Floor the magnitude, keep the sign: finite for positive and signed (trigonometric) features alike.
    safe = torch.where(denominator < 0, -1.0, 1.0).to(denominator.dtype) * magnitude.clamp_min(floor)
    return numerator / safe, safe, passes


def divide_backward(
    grad: torch.Tensor, out: torch.Tensor, safe: torch.Tensor, passes: torch.Tensor
) -> torch.Tensor:
    """Gradient of ``out = num / den`` with respect to ``[num, den]``, shape ``(..., d + 1)``."""
    grad_num = grad / safe
    grad_den = -(grad_num * out).sum(-1, keepdim=True) * passes
    return torch.cat([grad_num, grad_den], dim=-1)


def bmm_add(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``acc += a @ b`` in place over any leading batch dims; returns ``acc``."""
    flat = lambda t: t.reshape(-1, *t.shape[-2:])  # noqa: E731
    torch.baddbmm(flat(acc), flat(a), flat(b), out=flat(acc))
    return acc


@dataclass
class KeyTile:
    """Key features of one tile with their weights folded into the values.

    features: the kernel's output for the tile's keys; log_scale: ``(B, H, R)``, -inf at padded keys;
    weights: ``(B, H, R)``; v_aug: ``[w v, w]``, ``(B, H, R, d + 1)``.
    """

    features: Features
    log_scale: torch.Tensor
    weights: torch.Tensor | None = None
    v_aug: torch.Tensor | None = None

    def weigh(self, v: torch.Tensor, frames: torch.Tensor) -> None:
        """Set ``weights = exp(log_scale - frames)`` (frames broadcast to ``(B, H, R)``) and ``v_aug``."""
        self.weights = torch.exp(self.log_scale - frames)
        self.v_aug = augment_values(v, self.weights)


def key_tile(
    kernel: Kernel,
    k: torch.Tensor,
    projection: torch.Tensor | None,
    keep: torch.Tensor | None,
    out: torch.Tensor | None = None,
) -> KeyTile:
    """Key features for a tile ``k`` ``(B, H, R, d)``; ``keep`` ``(B, 1, R)`` True at real keys, or None.

    ``out``: optional scratch for the features (see :class:`Scratch`).
    """
    features = kernel.forward(k, projection, out)
    log_scale = features.log_scale if features.log_scale is not None else k.new_zeros(k.shape[:-1])
    if keep is not None:
        log_scale = log_scale.masked_fill(~keep, float("-inf"))
    return KeyTile(features=features, log_scale=log_scale)


def key_tile_backward(
    kernel: Kernel,
    k: torch.Tensor,
    v: torch.Tensor,
    projection: torch.Tensor | None,
    tile: KeyTile,
    grad_base: torch.Tensor,
    grad_v_aug: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the tile's keys and values from those of its features and augmented values."""
    w = tile.weights
    grad_v_weighted = grad_v_aug[..., :-1]
    grad_v = grad_v_weighted * w.unsqueeze(-1)
    grad_log_scale = None
    if tile.features.log_scale is not None:
        # w = exp(log_scale - frame) with a constant frame: dw/dlog_scale = w (and 0 at padded keys).
        grad_w = (grad_v_weighted * v).sum(-1) + grad_v_aug[..., -1]
        grad_log_scale = grad_w * w
    grad_k = kernel.backward(k, projection, tile.features, grad_base, grad_log_scale)
    return grad_k, grad_v
