"""Packed rows (``segment_ids``): attention over several segments of one row equals running each segment
alone, outputs and gradients, for every kernel, both directions, the fast op and its plain twin, across tile
and chunk boundaries; exact attention's block-diagonal mask does the same."""

import pytest
import torch

from favor.ops import (
    KERNEL_NAMES,
    favor_attention,
    naive_favor_attention,
    random_projection,
    softmax_attention,
)
from favor.ops.segments import segment_layout, segment_positions

# Row 0: four segments (one of them 1 token long), row 1: two segments then padding.
ROWS = [[7, 20, 1, 12], [25, 9]]
LENGTH = 40


def _packed(seed=0, d=8, m=16, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 3, LENGTH, d, generator=g, dtype=torch.float64) for _ in range(3))
    w = random_projection(m, d, generator=g, dtype=torch.float64)
    segment_ids = torch.zeros(2, LENGTH, dtype=torch.long)
    padding = torch.ones(2, LENGTH, dtype=torch.bool)
    spans = []
    for row, lengths in enumerate(ROWS):
        start = 0
        for i, n in enumerate(lengths):
            # Ids that are neither contiguous nor sorted: only equality matters.
            segment_ids[row, start : start + n] = 10 * (len(lengths) - i)
            padding[row, start : start + n] = False
            spans.append((row, start, start + n))
            start += n
        segment_ids[row, start:] = 99  # padding: must belong to no segment whatever its id
    return [t.requires_grad_(True) for t in (q * scale, k * scale, v)], w, segment_ids, padding, spans


def _loss_weights(out):
    return torch.linspace(-1.0, 2.0, out.numel(), dtype=out.dtype).view_as(out)


def _packed_run(q, k, v, w, segment_ids, padding, op=favor_attention, **kwargs):
    out = op(q, k, v, w, segment_ids=segment_ids, key_padding_mask=padding, **kwargs)
    real = (~padding)[:, None, :, None]
    (torch.where(real, out, 0.0) * _loss_weights(out)).sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    return out.detach(), grads


def _alone_run(q, k, v, w, spans, op=favor_attention, **kwargs):
    """Each segment as a batch of its own, no padding; outputs and gradients put back in place."""
    out = torch.zeros_like(q)
    grads = [torch.zeros_like(q) for _ in range(3)]
    weights = _loss_weights(out)
    for row, start, stop in spans:
        parts = [t.detach()[row : row + 1, :, start:stop].clone().requires_grad_(True) for t in (q, k, v)]
        piece = op(*parts, w, **kwargs)
        (piece * weights[row : row + 1, :, start:stop]).sum().backward()
        out[row : row + 1, :, start:stop] = piece.detach()
        for grad, part in zip(grads, parts, strict=True):
            grad[row : row + 1, :, start:stop] = part.grad
    return out, grads


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("op", [favor_attention, naive_favor_attention], ids=["fast", "twin"])
def test_packed_equals_each_segment_alone(kernel, causal, op):
    (q, k, v), w, segment_ids, padding, spans = _packed()
    # Tiles of 5 rows and chunks of 4 put tile and chunk boundaries inside and between segments.
    options = {"op": op, "kernel": kernel, "causal": causal, "chunk_size": 4, "tile_size": 8 if causal else 5}
    packed, packed_grads = _packed_run(q, k, v, w, segment_ids, padding, **options)
    alone, alone_grads = _alone_run(q, k, v, w, spans, **options)
    torch.testing.assert_close(packed, alone, rtol=1e-10, atol=1e-12)
    for got, want, name in zip(packed_grads, alone_grads, "qkv", strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11, msg=lambda m, n=name: f"grad {n}: {m}")


def test_packed_differs_from_unsegmented():
    """The segments really are kept apart: without segment_ids the same row mixes them."""
    (q, k, v), w, segment_ids, padding, _ = _packed()
    with torch.no_grad():
        packed = favor_attention(q, k, v, w, segment_ids=segment_ids, key_padding_mask=padding)
        mixed = favor_attention(q, k, v, w, key_padding_mask=padding)
    real = ~padding[:, None, :, None]
    assert (packed - mixed).abs().masked_select(real).max() > 1e-2


def test_large_key_in_one_segment_does_not_underflow_another():
    """Stabilizers are per segment: a huge key in one segment leaves the other segment's weights intact."""
    (q, k, v), w, segment_ids, padding, spans = _packed()
    with torch.no_grad():
        k = k.clone()
        k[0, :, 10] *= 40.0  # inside the second segment of row 0
        packed = favor_attention(q, k, v, w, segment_ids=segment_ids, key_padding_mask=padding)
        alone = favor_attention(q[:1, :, :7], k[:1, :, :7], v[:1, :, :7], w)
    torch.testing.assert_close(packed[:1, :, :7], alone, rtol=1e-10, atol=1e-12)
    assert alone.abs().max() > 0.1


def test_padded_positions_get_zeros_and_ignore_their_ids():
    (q, k, v), w, segment_ids, padding, _ = _packed()
    with torch.no_grad():
        out = favor_attention(q, k, v, w, segment_ids=segment_ids, key_padding_mask=padding, causal=True)
        other = segment_ids.clone()
        other[padding] = 20  # the id of a real segment of row 0
        again = favor_attention(q, k, v, w, segment_ids=other, key_padding_mask=padding, causal=True)
    assert out[1, :, 34:].abs().max() == 0
    torch.testing.assert_close(out, again, rtol=0, atol=0)


@pytest.mark.parametrize("causal", [False, True])
def test_exact_attention_block_diagonal(causal):
    (q, k, v), _, segment_ids, padding, spans = _packed()
    with torch.no_grad():
        packed = softmax_attention(q, k, v, causal=causal, segment_ids=segment_ids, key_padding_mask=padding)
        for row, start, stop in spans:
            alone = softmax_attention(*(t[row : row + 1, :, start:stop] for t in (q, k, v)), causal=causal)
            torch.testing.assert_close(packed[row : row + 1, :, start:stop], alone, rtol=1e-12, atol=1e-12)


def test_positions_restart_at_each_segment():
    _, _, segment_ids, padding, spans = _packed()
    positions = segment_positions(segment_ids, padding)
    for row, start, stop in spans:
        assert positions[row, start:stop].tolist() == list(range(stop - start))
    assert positions[padding].eq(0).all()
    interleaved = torch.tensor([[3, 5, 3, 5, 5, 3]])
    assert segment_positions(interleaved).tolist() == [[0, 0, 1, 1, 2, 2]]


def test_layout_costs_linear_in_tokens():
    """Buckets pad each segment to at most twice its length: laid-out slots <= 2 x real tokens."""
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(1, 300, (200,), generator=g).tolist()
    ids = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))[None]
    layout = segment_layout(ids)
    slots = sum(s.numel() for s in layout.sources)
    assert slots <= 2 * ids.numel()
    assert len(layout.sources) <= 10  # one call per length bucket, not per segment


def test_bad_segment_ids_are_named():
    (q, k, v), w, segment_ids, padding, _ = _packed()
    with pytest.raises(ValueError, match="segment_ids must have shape"):
        favor_attention(q, k, v, w, segment_ids=segment_ids[:, :5])
    with pytest.raises(ValueError, match="integer"):
        favor_attention(q, k, v, w, segment_ids=segment_ids.double())
