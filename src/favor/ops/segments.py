"""Packed rows: several independent sequences (segments) in one row, attended to without cross-talk.

A packed batch carries ``segment_ids`` ``(batch, length)``, integers: a query attends only to keys of the same
row and the same id (ids need not be contiguous or sorted; padding, per ``key_padding_mask``, belongs to no
segment). The attention ops honour it by laying the segments out as rows of their own:

    layout = segment_layout(segment_ids, key_padding_mask)
    pieces = layout.split(q)                    # one (G_b, heads, L_b, d) tensor per length bucket
    out = layout.merge([op(piece, ..., key_padding_mask=layout.padding[b]) for b, piece in ...])

(`attend_per_segment` is that loop, for any op of ``(q, k, v, key_padding_mask)``.)

Segments are grouped into buckets of similar length (each bucket's rows are at most twice as long as its
shortest segment, so at most half of a bucket is padding), and each bucket is one call of the unpacked op.
The cost stays O(L) per row, as the op's own: ``split`` and ``merge`` are gathers and scatters of
``batch * length * head_dim`` numbers, and every bucket's call is linear in its rows. Because each segment is
a row of its own, everything per-row in the op is per segment: the key stabilizer of the bidirectional path,
the causal prefix state (which therefore restarts at each segment's first position) and padding. The result
equals running each segment alone, which is what the tests check, outputs and gradients.

`segment_positions` gives each position its index within its segment (positions restart at each segment:
rotary and learned positions of packed proteins).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from favor.ops.common import keep_mask

__all__ = [
    "SegmentLayout",
    "attend_per_segment",
    "check_segment_ids",
    "segment_layout",
    "segment_positions",
]


def check_segment_ids(segment_ids: torch.Tensor, like: torch.Tensor) -> None:
    """``segment_ids`` must be integers ``(batch, length)`` matching ``like`` ``(batch, ..., length, d)``."""
    batch, length = like.shape[0], like.shape[-2]
    if segment_ids.dtype.is_floating_point or segment_ids.dtype == torch.bool or segment_ids.is_complex():
        raise ValueError(f"segment_ids must be an integer tensor, got {segment_ids.dtype}")
    if tuple(segment_ids.shape) != (batch, length):
        raise ValueError(
            f"segment_ids must have shape (batch, length) = {(batch, length)}, got {tuple(segment_ids.shape)}"
        )


@dataclass(frozen=True)
class SegmentLayout:
    """Where every real position of a packed ``(batch, length)`` batch sits once segments are rows.

    sources: per bucket, ``(G_b, L_b)`` flat indices ``b * length + l`` of each segment's positions in order
        (padding slots point at 0 and are masked).
    padding: per bucket, ``(G_b, L_b)`` bool, True at the padding slots past a segment's end.
    destinations: flat indices of the real slots of every bucket, concatenated (where ``merge`` writes).

    Each position's index within its segment (rotary and learned positions) is `segment_positions`.
    """

    batch: int
    length: int
    sources: tuple[torch.Tensor, ...]
    padding: tuple[torch.Tensor, ...]
    destinations: torch.Tensor

    def split(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(batch, heads, length, d)`` -> one ``(G_b, heads, L_b, d)`` tensor per bucket."""
        batch, heads, length, dim = x.shape
        flat = x.transpose(1, 2).reshape(batch * length, heads, dim)
        return [flat[index].transpose(1, 2) for index in self.sources]

    def merge(self, pieces: list[torch.Tensor]) -> torch.Tensor:
        """Inverse of `split` on real slots; padded positions of the packed batch get zeros."""
        heads, dim = pieces[0].shape[1], pieces[0].shape[-1]
        real = [piece.transpose(1, 2)[~pad] for piece, pad in zip(pieces, self.padding, strict=True)]
        values = torch.cat(real, dim=0)  # (N_real, heads, d)
        flat = values.new_zeros(self.batch * self.length, heads, dim)
        flat = flat.index_copy(0, self.destinations, values)
        return flat.view(self.batch, self.length, heads, dim).transpose(1, 2)


def _sorted_segments(
    segment_ids: torch.Tensor, key_padding_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat positions of real tokens sorted by (row, segment id, position); each segment's start, length."""
    batch, length = segment_ids.shape
    device = segment_ids.device
    ids = segment_ids.long()
    real = torch.ones_like(ids, dtype=torch.bool) if key_padding_mask is None else ~key_padding_mask
    flat_positions = torch.arange(batch * length, device=device).view(batch, length)[real]
    row_ids = ids[real]
    if row_ids.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty, empty
    span = int(row_ids.max() - row_ids.min()) + 1
    rows = flat_positions // length
    keys = rows * span + (row_ids - row_ids.min())
    # A stable sort keeps positions in order within a segment (flat positions are already increasing).
    keys, order = torch.sort(keys, stable=True)
    positions = flat_positions[order]
    _, counts = torch.unique_consecutive(keys, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    return positions, starts, counts


def segment_layout(segment_ids: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> SegmentLayout:
    """The layout of a packed batch: segments of ``segment_ids`` ``(batch, length)`` bucketed by length.

    Positions where ``key_padding_mask`` is True belong to no segment.
    """
    batch, length = segment_ids.shape
    device = segment_ids.device
    positions, starts, counts = _sorted_segments(segment_ids, key_padding_mask)
    sources: list[torch.Tensor] = []
    padding: list[torch.Tensor] = []
    destinations: list[torch.Tensor] = []
    if counts.numel():
        # Bucket b holds segments of length in (2^(b-1), 2^b]: rows at most twice the shortest one.
        buckets = torch.ceil(torch.log2(counts.double())).long()
        for bucket in torch.unique(buckets).tolist():
            members = torch.nonzero(buckets == bucket).squeeze(1)
            lengths = counts[members]
            width = int(lengths.max())
            slots = torch.arange(width, device=device)
            pad = slots[None, :] >= lengths[:, None]  # (G_b, L_b)
            index = (starts[members][:, None] + slots[None, :]).clamp(max=positions.numel() - 1)
            source = torch.where(pad, 0, positions[index])
            sources.append(source)
            padding.append(pad)
            destinations.append(source[~pad])
    dest = torch.cat(destinations) if destinations else torch.zeros(0, dtype=torch.long, device=device)
    return SegmentLayout(
        batch=batch,
        length=length,
        sources=tuple(sources),
        padding=tuple(padding),
        destinations=dest,
    )


def _within(
    positions: torch.Tensor, starts: torch.Tensor, counts: torch.Tensor, batch: int, length: int
) -> torch.Tensor:
    within = torch.zeros(batch * length, dtype=torch.long, device=positions.device)
    if counts.numel():
        segment_of = torch.repeat_interleave(torch.arange(counts.numel(), device=positions.device), counts)
        within[positions] = torch.arange(positions.numel(), device=positions.device) - starts[segment_of]
    return within.view(batch, length)


def segment_positions(
    segment_ids: torch.Tensor, key_padding_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``(batch, length)`` long: each position's index within its segment (0 at padding)."""
    return _within(*_sorted_segments(segment_ids, key_padding_mask), *segment_ids.shape)


def attend_per_segment(
    op: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    segment_ids: torch.Tensor,
    key_padding_mask: torch.Tensor | None,
) -> torch.Tensor:
    """``op(q, k, v, key_padding_mask)`` run with every segment as a row of its own, merged back.

    q, k, v: ``(batch, heads, length, head_dim)``; ``segment_ids`` and ``key_padding_mask``:
    ``(batch, length)``, validated here. ``op`` is called once per length bucket, on
    ``(G_b, heads, L_b, head_dim)`` pieces and their padding. Returns ``(batch, heads, length, head_dim)``,
    zeros at padded positions.
    """
    check_segment_ids(segment_ids, q)
    keep_mask(key_padding_mask, q)  # validates the mask
    layout = segment_layout(segment_ids, key_padding_mask)
    if not layout.sources:  # every position is padding: zeros, still part of the graph (zero gradients)
        return v.masked_fill(torch.ones((), dtype=torch.bool, device=v.device), 0.0)
    pieces = [
        op(*parts, pad)
        for *parts, pad in zip(layout.split(q), layout.split(k), layout.split(v), layout.padding, strict=True)
    ]
    return layout.merge(pieces)
