"""What the public entry points and their plain twins share before any math: shape checks and precision.

Layout: ``(batch, heads, length, head_dim)``. The fast ops (`favor.ops.attention`, `favor.ops.cross`) and
their twins (`favor.ops.naive`) check their inputs with the same functions and compute in the same
precision, so that a twin differs from its fast path only in how it computes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["check_cross_qkv", "check_qkv", "compute_dtype", "full_precision"]


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Self-attention inputs: q and k of one shape, v sharing their (batch, heads, length)."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            "q, k, v must be (batch, heads, length, head_dim); "
            f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape != k.shape or k.shape[:3] != v.shape[:3]:
        raise ValueError(
            f"q and k must match and v must share (batch, heads, length); "
            f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )


def check_cross_qkv(q: torch.Tensor | None, k: torch.Tensor, v: torch.Tensor) -> None:
    """Cross-attention inputs: k and v ``(batch, heads, L_k, d)``; q (if given) ``(batch, heads, L_q, d)``."""
    if k.dim() != 4 or v.dim() != 4 or k.shape[:3] != v.shape[:3]:
        raise ValueError(
            f"k and v must be (batch, heads, L_k, head_dim) with equal (batch, heads, L_k); got "
            f"{tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q is not None and (q.dim() != 4 or q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]):
        raise ValueError(
            f"q must be (batch, heads, L_q, head_dim) with the batch, heads and head_dim of k; got "
            f"{tuple(q.shape)} and {tuple(k.shape)}"
        )


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 for float64 inputs, else float32: half-precision exp and long sums lose too much."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


@contextlib.contextmanager
def full_precision(x: torch.Tensor) -> Iterator[torch.dtype]:
    """Autocast off on ``x``'s device; yields :func:`compute_dtype` of ``x``.

    Features, exponentials and sums then run in float32 (or float64), whatever autocast or the inputs say;
    callers cast the result back to the input dtype.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        yield compute_dtype(x)
