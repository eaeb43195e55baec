"""Finite results for large-norm inputs and half precision; the causal frame rescaling."""

import pytest
import torch
import torch.nn.functional as F

from favor.ops import favor_attention, random_projection, softmax_attention

KERNELS = ["softmax", "softmax_hyperbolic", "softmax_trig", "relu"]


def _inputs(length, scale, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 4, length, 16, generator=g) for _ in range(3))
    w = random_projection(64, 16, generator=g)
    return q * scale, k * scale, v, w


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("scale", [1.0, 30.0, 1000.0])
def test_large_norm_inputs_stay_finite_with_finite_gradients(causal, kernel, scale):
    q, k, v, w = _inputs(45, scale)
    q.requires_grad_(True)
    k.requires_grad_(True)
    out = favor_attention(q, k, v, w, causal=causal, kernel=kernel, chunk_size=16)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel", KERNELS)
def test_bfloat16_autocast_is_finite_and_close_to_float32(causal, kernel):
    q, k, v, w = (t.bfloat16() for t in _inputs(33, 1.0))
    # The op computes in float32 whatever autocast says: the only bf16 rounding left is that of the output.
    reference = favor_attention(q.float(), k.float(), v.float(), w.float(), causal=causal, kernel=kernel)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = favor_attention(q, k, v, w, causal=causal, kernel=kernel)
    assert low.dtype == torch.bfloat16
    assert torch.isfinite(low).all()
    torch.testing.assert_close(low.float(), reference, rtol=1e-2, atol=1e-2)


def test_late_large_key_does_not_wipe_out_early_causal_outputs():
    # A global key stabilizer would underflow every earlier key's feature once one late key is huge;
    # the causal path rescales per chunk, so early outputs stay exact.
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, 64, 8, generator=g, dtype=torch.float64) * 0.5 for _ in range(3))
    k_big = k.clone()
    k_big[:, :, -1] = 40.0
    w = random_projection(256, 8, generator=g, dtype=torch.float64)
    small = favor_attention(q, k, v, w, causal=True, chunk_size=16)
    big = favor_attention(q, k_big, v, w, causal=True, chunk_size=16)
    torch.testing.assert_close(big[:, :, :48], small[:, :, :48], rtol=1e-9, atol=1e-12)
    assert torch.isfinite(big).all()


def test_exact_reference_matches_torch_sdpa():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 17, 8, generator=g) for _ in range(3))
    mask = torch.zeros(2, 17, dtype=torch.bool)
    mask[1, 11:] = True
    for causal in (False, True):
        ours = softmax_attention(q, k, v, causal=causal, key_padding_mask=mask)
        allowed = ~mask[:, None, None, :]
        if causal:
            allowed = allowed & torch.ones(17, 17, dtype=torch.bool).tril()
        theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
