"""The chunked causal path against its naive prefix-sum twin, and causality itself."""

import pytest
import torch

from favor.ops import (
    KERNEL_NAMES,
    favor_attention,
    favor_attention_step,
    naive_favor_attention,
    random_projection,
)


def _inputs(length, *, d=8, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 3, length, d, generator=g, dtype=torch.float64) for _ in range(3))
    w = random_projection(16, d, generator=g, dtype=torch.float64)
    return [t.requires_grad_(requires_grad) for t in (q, k, v)], w


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize("length,chunk", [(37, 8), (37, 64), (50, 7), (1, 4), (64, 16)])
def test_chunked_matches_naive_outputs_and_gradients(kernel, length, chunk):
    (q, k, v), w = _inputs(length, requires_grad=True)
    padding = torch.zeros(2, length, dtype=torch.bool)
    padding[1, max(1, length * 2 // 3) :] = True  # keep one real key per row
    grads = []
    outs = []
    for op in (favor_attention, naive_favor_attention):
        out = op(q, k, v, w, causal=True, kernel=kernel, key_padding_mask=padding, chunk_size=chunk)
        # Only real positions carry meaning; padded query rows are excluded from the loss.
        real = (~padding)[:, None, :, None]
        (out * real).pow(2).sum().backward()
        outs.append(out.detach() * real)
        grads.append([t.grad.clone() for t in (q, k, v)])
        for t in (q, k, v):
            t.grad = None
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-9, atol=1e-9)
    for fast, naive in zip(*grads, strict=True):
        torch.testing.assert_close(fast, naive, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("kernel", ["softmax", "relu"])
def test_gradcheck_float64(kernel):
    (q, k, v), w = _inputs(11, d=4, requires_grad=True)
    fn = lambda q, k, v: favor_attention(q, k, v, w, causal=True, kernel=kernel, chunk_size=4)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (q, k, v))
    fn_bi = lambda q, k, v: favor_attention(q, k, v, w, kernel=kernel)  # noqa: E731
    assert torch.autograd.gradcheck(fn_bi, (q, k, v))


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_output_at_i_ignores_later_positions(kernel):
    (q, k, v), w = _inputs(40)
    before = favor_attention(q, k, v, w, causal=True, kernel=kernel, chunk_size=16)
    i = 21
    q2, k2, v2 = (t.clone() for t in (q, k, v))
    for t in (q2, k2, v2):
        t[:, :, i + 1 :] = torch.randn_like(t[:, :, i + 1 :]) * 5
    after = favor_attention(q2, k2, v2, w, causal=True, kernel=kernel, chunk_size=16)
    torch.testing.assert_close(before[:, :, : i + 1], after[:, :, : i + 1], rtol=1e-10, atol=1e-10)
    assert not torch.allclose(before[:, :, i + 1 :], after[:, :, i + 1 :])


@pytest.mark.parametrize("kernel", ["softmax", "softmax_hyperbolic", "relu"])
@pytest.mark.parametrize("splits", [[1] * 9, [4, 1, 1, 3], [9]])
def test_recurrent_steps_match_full_causal_pass(kernel, splits):
    (q, k, v), w = _inputs(sum(splits))
    full = favor_attention(q, k, v, w, causal=True, kernel=kernel, chunk_size=4)
    state, outs, start = None, [], 0
    for size in splits:
        window = slice(start, start + size)
        out, state = favor_attention_step(
            q[:, :, window], k[:, :, window], v[:, :, window], w, state, kernel=kernel
        )
        outs.append(out)
        start += size
    assert state.length == sum(splits)
    torch.testing.assert_close(torch.cat(outs, dim=2), full, rtol=1e-10, atol=1e-10)
