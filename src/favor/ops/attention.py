"""Public FAVOR+ attention entry points: the whole op from raw q, k, v to outputs.

Layout everywhere: ``(batch, heads, length, head_dim)``; ``key_padding_mask`` is ``(batch, length)``, bool,
True at padding (the PyTorch convention).
"""

from __future__ import annotations

import torch

from favor.ops.causal import FavorState, causal_attention
from favor.ops.common import keep_mask
from favor.ops.features import get_kernel
from favor.ops.inputs import check_qkv, full_precision
from favor.ops.naive import naive_favor_attention
from favor.ops.noncausal import noncausal_attention
from favor.ops.segments import attend_per_segment

__all__ = ["favor_attention", "favor_attention_step"]

# "naive" is an alias of the plain twin, favor.ops.naive_favor_attention (kept for callers that use it).
MODES = ("fast", "naive")


def _fixed(projection: torch.Tensor | None) -> torch.Tensor | None:
    """The fast paths treat the projection as a constant; say so rather than drop its gradient silently."""
    if projection is not None and projection.requires_grad and torch.is_grad_enabled():
        raise ValueError(
            "the fast FAVOR+ path does not differentiate through the projection; pass a projection that "
            "does not require grad (it is a fixed random draw) or use the plain twin, "
            "favor.ops.naive_favor_attention"
        )
    return projection


def favor_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    projection: torch.Tensor | None,
    *,
    causal: bool = False,
    kernel: str = "softmax",
    key_padding_mask: torch.Tensor | None = None,
    chunk_size: int = 64,
    tile_size: int | None = None,
    mode: str = "fast",
    segment_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """FAVOR+ estimate of ``softmax(q k^T / sqrt(d)) v`` (or generalized attention for ``kernel="relu"``).

    Args:
        q, k, v: ``(batch, heads, length, head_dim)``.
        projection: ``(nb_features, head_dim)`` (see :func:`favor.ops.random_projection`);
            None only for "relu".
        causal: query i attends to keys j <= i.
        kernel: "softmax" (positive features), "softmax_hyperbolic", "softmax_trig", or "relu".
        key_padding_mask: ``(batch, length)`` bool, True marks padded keys; they contribute to neither the
            numerator nor the denominator, and never move the stabilizer. Outputs at padded positions are
            finite but meaningless.
        chunk_size: positions per chunk of the causal path.
        tile_size: rows per tile of the fast paths (default: sized so a tile's features fit in cache;
            causal: rounded to a multiple of ``chunk_size``). Changes speed, not results.
        mode: "fast" (default), or "naive": an alias that returns
            :func:`favor.ops.naive_favor_attention` (the plain twin: an explicit (L, L) matrix or prefix
            sums) of the same arguments. The fast path gives no gradient to ``projection`` (a fixed random
            draw); the twin does.
        segment_ids: ``(batch, length)`` integers for packed rows: a query attends only to keys of its own
            row and segment id (bidirectional: per-segment key sums and stabilizers; causal: the prefix
            state restarts at each segment's first position). Equal to running each segment alone; the
            segments are laid out as rows of their own by :mod:`favor.ops.segments` (cost stays O(L)).
            Outputs at padded positions are zeros then.

    Returns:
        ``(batch, heads, length, head_dim)`` in the dtype of ``v``.

    Time O(L m d); memory O(L d + m d) bidirectional, O(L (d + C) + (L / R) m d) causal for tiles of R
    rows and chunks of C (features are never stored: see :mod:`favor.ops.common`). The twin
    (``mode="naive"``) is O(L^2) / O(L m d).
    """
    check_qkv(q, k, v)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    options = {"causal": causal, "kernel": kernel, "chunk_size": chunk_size, "tile_size": tile_size}
    if mode == "naive":
        return naive_favor_attention(
            q, k, v, projection, key_padding_mask=key_padding_mask, segment_ids=segment_ids, **options
        )
    if segment_ids is not None:

        def alone(q, k, v, padding):
            return favor_attention(q, k, v, projection, key_padding_mask=padding, **options)

        return attend_per_segment(alone, q, k, v, segment_ids, key_padding_mask)
    keep = keep_mask(key_padding_mask, q)
    feature_kernel = get_kernel(kernel, projection)
    with full_precision(q) as dtype:
        q32, k32, v32 = (t.to(dtype) for t in (q, k, v))
        projection = None if projection is None else projection.to(device=q.device, dtype=dtype)
        if causal:
            out, _ = causal_attention(
                q32,
                k32,
                v32,
                _fixed(projection),
                keep,
                kernel=feature_kernel,
                chunk_size=chunk_size,
                tile_size=tile_size,
            )
        else:
            out = noncausal_attention(
                q32, k32, v32, _fixed(projection), keep, kernel=feature_kernel, tile_size=tile_size
            )
    return out.to(v.dtype)


def favor_attention_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    projection: torch.Tensor | None,
    state: FavorState | None,
    *,
    kernel: str = "softmax",
    chunk_size: int = 64,
) -> tuple[torch.Tensor, FavorState]:
    """Causal FAVOR+ continued from a recurrent state (decoding, streaming, prefill).

    Args:
        q, k, v: ``(batch, heads, T, head_dim)``, T >= 1 new positions.
        projection: as in :func:`favor_attention`; must stay the same across the steps of one sequence.
        state: the state returned by the previous call, or None to start.

    Returns:
        outputs ``(batch, heads, T, head_dim)`` (each new position sees the state plus new positions up to
        itself) and the new state. One new token costs O(m d) per head, whatever the context length.
    """
    check_qkv(q, k, v)
    feature_kernel = get_kernel(kernel, projection)
    with full_precision(q) as dtype:
        q32, k32, v32 = (t.to(dtype) for t in (q, k, v))
        projection = None if projection is None else projection.to(device=q.device, dtype=dtype)
        out, state = causal_attention(
            q32,
            k32,
            v32,
            _fixed(projection),
            None,
            kernel=feature_kernel,
            chunk_size=min(chunk_size, q.shape[2]),
            initial=state,
        )
    return out.to(v.dtype), state
