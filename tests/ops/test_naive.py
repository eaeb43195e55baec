"""The plain twins as entry points: the signatures of the ops they twin, and ``mode="naive"`` is exactly them.

The comparisons of every fast path with its twin (outputs and gradients) live beside each fast path:
test_tiled.py, test_causal.py, test_cross.py, test_segments.py.
"""

import inspect

import pytest
import torch

from favor.ops import (
    KERNEL_NAMES,
    favor_attention,
    favor_cross_attention,
    naive_favor_attention,
    naive_favor_cross_attention,
    random_projection,
)


def _parameters(fn, *, without=()):
    return [
        (p.name, p.kind, p.default, p.annotation)
        for p in inspect.signature(fn).parameters.values()
        if p.name not in without
    ]


@pytest.mark.parametrize(
    "fast,twin",
    [(favor_attention, naive_favor_attention), (favor_cross_attention, naive_favor_cross_attention)],
)
def test_twin_has_the_signature_of_its_fast_op_without_mode(fast, twin):
    assert _parameters(twin) == _parameters(fast, without=("mode",))


def _inputs(lengths=(11, 11), seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (
        torch.randn(2, 3, n, 4, generator=g, dtype=torch.float64) for n in (lengths[0], *lengths[1:] * 2)
    )
    w = random_projection(8, 4, generator=g, dtype=torch.float64)
    return q, k, v, w


def _output_and_grads(fn, *tensors):
    tensors = [t.detach().clone().requires_grad_(True) for t in tensors]
    out = fn(*tensors)
    (out * torch.linspace(-1.0, 2.0, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    return out.detach(), [t.grad for t in tensors]


def _assert_identical(got, want):
    (out_got, grads_got), (out_want, grads_want) = got, want
    torch.testing.assert_close(out_got, out_want, rtol=0, atol=0)
    for a, b in zip(grads_got, grads_want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("packed", [False, True])
def test_naive_mode_is_the_twin(kernel, causal, packed):
    q, k, v, w = _inputs()
    padding = torch.zeros(2, 11, dtype=torch.bool)
    padding[1, 8:] = True
    options = {"causal": causal, "kernel": kernel, "key_padding_mask": padding, "chunk_size": 4}
    if packed:
        options["segment_ids"] = torch.tensor([[0] * 5 + [1] * 6, [3] * 4 + [2] * 7])
    # The projection gets a gradient too: the twin differentiates through it.
    alias = _output_and_grads(lambda *t: favor_attention(*t, mode="naive", **options), q, k, v, w)
    twin = _output_and_grads(lambda *t: naive_favor_attention(*t, **options), q, k, v, w)
    _assert_identical(alias, twin)
    assert twin[1][3].abs().max() > 0


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_naive_cross_mode_is_the_twin(kernel):
    q, k, v, w = _inputs((5, 7))
    padding = torch.zeros(2, 7, dtype=torch.bool)
    padding[0, 4:] = True
    options = {"kernel": kernel, "key_padding_mask": padding}
    alias = _output_and_grads(lambda *t: favor_cross_attention(*t, mode="naive", **options), q, k, v, w)
    twin = _output_and_grads(lambda *t: naive_favor_cross_attention(*t, **options), q, k, v, w)
    _assert_identical(alias, twin)


def test_twins_check_their_inputs_as_the_fast_ops_do():
    q, k, v, w = _inputs()
    with pytest.raises(ValueError, match="q and k must match"):
        naive_favor_attention(q, k[:, :, :5], v, w)
    with pytest.raises(ValueError, match="key_padding_mask must have shape"):
        naive_favor_attention(q, k, v, w, key_padding_mask=torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="k and v"):
        naive_favor_cross_attention(q, k, v[:, :, :3], w)
    for fast in (favor_attention, favor_cross_attention):
        with pytest.raises(ValueError, match="mode must be one of"):
            fast(q, k, v, w, mode="plain")
