"""Finite results for large-norm inputs and half precision; the causal frame rescaling."""

import pytest
import torch
import torch.nn.functional as F

from favor.ops import KERNEL_NAMES, favor_attention, random_projection, softmax_attention


def _inputs(length, scale, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 4, length, 16, generator=g) for _ in range(3))
    w = random_projection(64, 16, generator=g)
    return q * scale, k * scale, v, w


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel", KERNEL_NAMES)
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
@pytest.mark.parametrize("kernel", ["softmax", "softmax_hyperbolic"])
def test_large_norm_keys_keep_their_weights_in_float32(causal, kernel):
    """Keys of norm 40 have log-scales near -150: unstabilized, every key weight is exp(-150) = 0 in float32
    and so is every output. With the stabilizer float32 gives what float64 gives."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 45, 16, generator=g) for _ in range(3))
    k = torch.nn.functional.normalize(k, dim=-1) * 40.0
    w = random_projection(64, 16, generator=g)
    out = favor_attention(q, k, v, w, causal=causal, kernel=kernel, chunk_size=16)
    wide = favor_attention(q.double(), k.double(), v.double(), w.double(), causal=causal, kernel=kernel)
    assert out.abs().mean() > 0.1
    torch.testing.assert_close(out.double(), wide, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel", KERNEL_NAMES)
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
    # A key aligned with a long projection row has the largest log-scale of all (|w|^2 / 2 = 112 here), so
    # one global frame would put every earlier key's weight at exp(-112), which is 0 in float32; the causal
    # path keeps a running maximum per chunk, so outputs before that key's chunk stay what they were.
    g = torch.Generator().manual_seed(0)
    d = 8
    q, k, v = (torch.randn(1, 1, 64, d, generator=g) * 0.5 for _ in range(3))
    w = random_projection(64, d, generator=g)
    direction = torch.nn.functional.normalize(w[0], dim=0)
    w[0] = direction * 15.0
    k_big = k.clone()
    k_big[:, :, -1] = direction * 15.0 * d**0.25  # x d^-1/4 = w[0]: the log-scale's maximiser
    small = favor_attention(q, k, v, w, causal=True, chunk_size=16)
    big = favor_attention(q, k_big, v, w, causal=True, chunk_size=16)
    assert small[:, :, :48].abs().min() > 0  # early outputs are non-trivial ...
    torch.testing.assert_close(big[:, :, :48], small[:, :, :48], rtol=1e-5, atol=1e-6)  # ... and unchanged
    assert torch.isfinite(big).all()
    # The last query, aligned with the big key too, attends to it almost alone, as softmax does.
    q_big = q.clone()
    q_big[:, :, -1] = k_big[:, :, -1] * 0.1
    last = favor_attention(q_big, k_big, v, w, causal=True, chunk_size=16)[:, :, -1]
    torch.testing.assert_close(last, v[:, :, -1], rtol=0.05, atol=0.05)


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
