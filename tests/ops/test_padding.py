"""Padding is exact: padded keys contribute to neither numerator nor denominator, nor to the stabilizer."""

import pytest
import torch

from favor.ops import KERNEL_NAMES, favor_attention, random_projection, softmax_attention


def _inputs(length, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 2, length, 8, generator=g, dtype=torch.float64) for _ in range(3))
    return q, k, v, random_projection(32, 8, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_appending_padding_never_changes_real_outputs(causal, kernel):
    q, k, v, w = _inputs(19)
    reference = favor_attention(q, k, v, w, causal=causal, kernel=kernel, chunk_size=8)
    extra = 13
    # Padded positions hold huge values: if they leaked into sums or the stabilizer, outputs would move.
    pad_q, pad_k, pad_v = (
        torch.cat([t, 50 * torch.randn(2, 2, extra, 8, dtype=t.dtype)], dim=2) for t in (q, k, v)
    )
    mask = torch.zeros(2, 19 + extra, dtype=torch.bool)
    mask[:, 19:] = True
    padded = favor_attention(
        pad_q, pad_k, pad_v, w, causal=causal, kernel=kernel, key_padding_mask=mask, chunk_size=8
    )
    torch.testing.assert_close(padded[:, :, :19], reference, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_interior_padding_matches_exact_reference_pattern(causal):
    # Per-row padding inside the batch: real outputs equal those of the unpadded rows run alone.
    q, k, v, w = _inputs(24)
    mask = torch.zeros(2, 24, dtype=torch.bool)
    mask[0, 17:] = True
    batched = favor_attention(q, k, v, w, causal=causal, key_padding_mask=mask)
    alone = favor_attention(q[:1, :, :17], k[:1, :, :17], v[:1, :, :17], w, causal=causal)
    torch.testing.assert_close(batched[:1, :, :17], alone, rtol=1e-10, atol=1e-12)
    exact_batched = softmax_attention(q, k, v, causal=causal, key_padding_mask=mask)
    exact_alone = softmax_attention(q[:1, :, :17], k[:1, :, :17], v[:1, :, :17], causal=causal)
    torch.testing.assert_close(exact_batched[:1, :, :17], exact_alone)


def test_mask_shape_and_dtype_are_checked():
    q, k, v, w = _inputs(5)
    with pytest.raises(ValueError, match="shape"):
        favor_attention(q, k, v, w, key_padding_mask=torch.zeros(2, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        favor_attention(q, k, v, w, key_padding_mask=torch.zeros(2, 5))


def _leaky_padding(length, positions, seed=1):
    """Inputs whose padded keys have ordinary norms (weights that do not underflow) and values of 1e3, so a
    key that leaked into the numerator or denominator would move real outputs by a lot."""
    q, k, v, w = _inputs(length, seed=seed)
    mask = torch.zeros(2, length, dtype=torch.bool)
    mask[:, positions] = True
    v = torch.where(mask[:, None, :, None], torch.full_like(v, 1e3), v)
    return q, k, v, w, mask


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_padded_keys_of_ordinary_norm_never_leak(causal, kernel, where):
    length = 30
    positions = {"start": slice(0, 7), "middle": slice(11, 18), "end": slice(23, 30)}[where]
    q, k, v, w, mask = _leaky_padding(length, positions)
    real = ~mask[0]
    out = favor_attention(q, k, v, w, causal=causal, kernel=kernel, key_padding_mask=mask, chunk_size=4)
    # The same real positions with the padding cut out: for causal rows, every real query sees the same
    # real keys before it, so the outputs must agree at every real position.
    alone = favor_attention(
        q[..., real, :], k[..., real, :], v[..., real, :], w, causal=causal, kernel=kernel
    )
    torch.testing.assert_close(out[..., real, :], alone, rtol=1e-10, atol=1e-10)
