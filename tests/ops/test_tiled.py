"""The tiled fast paths against their plain twins: outputs and gradients, across tile boundaries.

The fast paths recompute features tile by tile in the backward pass with hand-written vector-Jacobian
products; the twins materialise features (and the attention matrix or prefix sums) and use autograd.
"""

import pytest
import torch

from favor.ops import (
    KERNEL_NAMES,
    favor_attention,
    favor_attention_step,
    naive_favor_attention,
    random_projection,
)
from favor.ops.features import KERNELS


def _inputs(length, *, d=8, m=16, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 3, length, d, generator=g, dtype=torch.float64) for _ in range(3))
    w = random_projection(m, d, generator=g, dtype=torch.float64)
    return [t.requires_grad_(True) for t in (q * scale, k * scale, v)], w


def _outputs_and_grads(op, q, k, v, w, padding, **kwargs):
    out = op(q, k, v, w, key_padding_mask=padding, **kwargs)
    real = (~padding)[:, None, :, None] if padding is not None else torch.ones(1, 1, 1, 1, dtype=torch.bool)
    # Only real positions carry meaning; padded query rows are excluded from the loss.
    loss_weights = torch.linspace(-1.0, 2.0, out.numel(), dtype=out.dtype).view_as(out)
    torch.where(real, out * loss_weights, 0.0).sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    return torch.where(real, out.detach(), 0.0), grads


def _assert_twins_agree(q, k, v, w, padding, **kwargs):
    fast = _outputs_and_grads(favor_attention, q, k, v, w, padding, **kwargs)
    naive = _outputs_and_grads(naive_favor_attention, q, k, v, w, padding, **kwargs)
    torch.testing.assert_close(fast[0], naive[0], rtol=1e-9, atol=1e-9)
    for got, want, name in zip(fast[1], naive[1], "qkv", strict=True):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-8, msg=lambda m, n=name: f"grad {n}: {m}")


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize("tile", [1, 5, 16, None])
def test_bidirectional_tiles_match_naive(kernel, tile):
    (q, k, v), w = _inputs(37)
    padding = torch.zeros(2, 37, dtype=torch.bool)
    padding[1, 25:] = True
    _assert_twins_agree(q, k, v, w, padding, kernel=kernel, tile_size=tile)


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize("chunk,tile", [(4, 4), (4, 12), (5, 7), (8, None), (3, 100)])
def test_causal_tiles_match_naive(kernel, chunk, tile):
    (q, k, v), w = _inputs(37)
    padding = torch.zeros(2, 37, dtype=torch.bool)
    padding[1, 25:] = True
    _assert_twins_agree(q, k, v, w, padding, kernel=kernel, causal=True, chunk_size=chunk, tile_size=tile)


@pytest.mark.parametrize("causal", [False, True])
def test_leading_padding_and_large_norm_keys(causal):
    # Whole tiles of padding first, then real keys whose log-scales are far below zero (|k| large):
    # the running frame must start from the first real key, not from a placeholder value.
    (q, k, v), w = _inputs(30, scale=6.0)
    padding = torch.zeros(2, 30, dtype=torch.bool)
    padding[:, :13] = True
    _assert_twins_agree(q, k, v, w, padding, causal=causal, chunk_size=4, tile_size=4)


def test_gradients_flow_through_carried_state():
    # Two steps of favor_attention_step with grad: step 2's outputs depend on step 1's inputs only
    # through the carried state (the final context of one call is the initial context of the next).
    (q, k, v), w = _inputs(13, d=4, m=8)

    def two_steps(q, k, v):
        first, state = favor_attention_step(q[:, :, :6], k[:, :, :6], v[:, :, :6], w, None, chunk_size=4)
        second, _ = favor_attention_step(q[:, :, 6:], k[:, :, 6:], v[:, :, 6:], w, state, chunk_size=4)
        return torch.cat([first, second], dim=2)

    full = favor_attention(q, k, v, w, causal=True, chunk_size=4)
    torch.testing.assert_close(two_steps(q, k, v), full, rtol=1e-10, atol=1e-10)
    assert torch.autograd.gradcheck(two_steps, (q, k, v))


@pytest.mark.parametrize(
    "kernel,with_projection", [(name, True) for name in KERNEL_NAMES] + [("relu", False)]
)
def test_kernel_backward_matches_autograd(kernel, with_projection):
    feature_kernel = KERNELS[kernel]
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 9, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = random_projection(16, 8, generator=g, dtype=torch.float64) if with_projection else None
    features = feature_kernel.forward(x, w)
    grad_base = torch.randn(features.base.shape, generator=g, dtype=torch.float64)
    grad_scale = None if features.log_scale is None else torch.randn(x.shape[:-1], generator=g, dtype=x.dtype)
    # Autograd twin. The row max inside the exp kernels is detached, as in the hand-written product.
    loss = (features.base * grad_base).sum()
    if grad_scale is not None:
        loss = loss + (features.log_scale * grad_scale).sum()
    (want,) = torch.autograd.grad(loss, x)
    with torch.no_grad():
        got = feature_kernel.backward(x, w, feature_kernel.forward(x, w), grad_base.clone(), grad_scale)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_fast_path_refuses_a_trainable_projection():
    (q, k, v), w = _inputs(5)
    with pytest.raises(ValueError, match="projection"):
        favor_attention(q, k, v, w.requires_grad_(True))
    out = naive_favor_attention(q, k, v, w)
    out.sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()


def test_bad_tile_size_is_an_error():
    (q, k, v), w = _inputs(5)
    with pytest.raises(ValueError, match="tile_size"):
        favor_attention(q, k, v, w, tile_size=0)


def test_tile_rows_budget_follows_threads_and_device():
    from favor.ops.common import CUDA_TILE_ELEMENTS, TILE_ELEMENTS, tile_rows

    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = tile_rows(8, 256)
        torch.set_num_threads(2)
        two = tile_rows(8, 256)
    finally:
        torch.set_num_threads(previous)
    assert one == TILE_ELEMENTS // (8 * 256) and two == 2 * one
    assert tile_rows(8, 256, device=torch.device("cuda")) == CUDA_TILE_ELEMENTS // (8 * 256)
    assert tile_rows(8, 256, multiple=64, requested=100) == 64  # rounded down to whole chunks
    assert tile_rows(8, 1 << 20, multiple=64) == 64  # never below one chunk


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_feature_offset_and_scale_options_keep_the_features(kernel):
    # The backward passes recompute features with the forward's offsets; queries skip log_scale.
    feature_kernel = KERNELS[kernel]
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 9, 8, generator=g) * 3
    w = random_projection(16, 8, generator=g)
    first = feature_kernel.forward(x, w)
    assert (first.offset is not None) == feature_kernel.has_offset
    again = feature_kernel.forward(x, w, offset=first.offset)
    torch.testing.assert_close(again.base, first.base, rtol=0, atol=0)
    if first.log_scale is not None:
        torch.testing.assert_close(again.log_scale, first.log_scale, rtol=0, atol=0)
    query = feature_kernel.forward(x, w, scale=False)
    assert query.log_scale is None
    torch.testing.assert_close(query.base, first.base, rtol=0, atol=0)


def test_workspace_roles_are_separate_and_reused():
    from favor.ops.common import Workspace

    ws = Workspace(torch.empty(0))
    a = ws.take("a", 4, 8).fill_(1.0)
    b = ws.take("b", 4, 8).fill_(2.0)
    assert a.data_ptr() != b.data_ptr() and bool((a == 1).all())
    again = ws.take("a", 2, 8)  # a smaller tile reuses the role's buffer
    assert again.data_ptr() == a.data_ptr() and again.is_contiguous()
    grown = ws.take("a", 8, 8)  # a larger one grows it
    assert grown.shape == (8, 8) and grown.numel() == 64
    dense = ws.dense("c", torch.arange(12.0).view(3, 4).t())
    assert dense.is_contiguous() and torch.equal(dense, torch.arange(12.0).view(3, 4).t())


def test_workspace_twins_of_the_shared_pieces_agree():
    from favor.ops.common import (
        KeyTile,
        Workspace,
        augment_values,
        divide,
        divide_backward,
        key_tile_backward,
    )
    from favor.ops.features import Features

    g = torch.Generator().manual_seed(5)
    v = torch.randn(2, 3, 7, 4, generator=g, dtype=torch.float64)
    weights = torch.rand(2, 3, 7, generator=g, dtype=torch.float64)
    ws = Workspace(v)
    torch.testing.assert_close(
        augment_values(v, weights, ws.take("values", 2, 3, 7, 5)), augment_values(v, weights)
    )
    out_aug = torch.randn(2, 3, 7, 5, generator=g, dtype=torch.float64)
    out_aug[0, 0, 0, -1] = 0.0  # a guarded denominator
    plain, with_ws = divide(out_aug), divide(out_aug, ws)
    for got, want in zip(with_ws, plain, strict=True):
        torch.testing.assert_close(got, want)
    grad = torch.randn(2, 3, 7, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(divide_backward(grad, *plain, ws), divide_backward(grad, *plain))

    kernel = KERNELS["softmax"]
    k = torch.randn(2, 3, 7, 4, generator=g, dtype=torch.float64)
    w = random_projection(6, 4, generator=g, dtype=torch.float64)

    def keys() -> KeyTile:
        features = kernel.forward(k, w)
        tile = KeyTile(features=Features(features.base, features.log_scale), log_scale=features.log_scale)
        tile.weigh(v, features.log_scale.amax(-1, keepdim=True))
        return tile

    grad_base = torch.randn(2, 3, 7, 6, generator=g, dtype=torch.float64)
    grad_v_aug = torch.randn(2, 3, 7, 5, generator=g, dtype=torch.float64)
    plain = key_tile_backward(kernel, k, v, w, keys(), grad_base.clone(), grad_v_aug)
    with_ws = key_tile_backward(kernel, k, v, w, keys(), grad_base.clone(), grad_v_aug, Workspace(v))
    for got, want in zip(with_ws, plain, strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("causal", [False, True])
def test_inference_and_training_forward_agree(causal):
    # Without grad the causal path keeps nothing for a backward; the outputs must not change.
    (q, k, v), w = _inputs(23)
    trained = favor_attention(q, k, v, w, causal=causal, chunk_size=4, tile_size=8)
    with torch.no_grad():
        inferred = favor_attention(q, k, v, w, causal=causal, chunk_size=4, tile_size=8)
    torch.testing.assert_close(inferred, trained.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_kernel_weight_built_by_the_caller_changes_nothing(kernel):
    # The tiled ops build each kernel's weight once per sweep and pass it in; the kernel keeps no state.
    feature_kernel = KERNELS[kernel]
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 9, 8, generator=g, dtype=torch.float64)
    w = random_projection(16, 8, generator=g, dtype=torch.float64)
    weight = feature_kernel.weight(w, x)
    plain, given = feature_kernel.forward(x, w), feature_kernel.forward(x, w, weight=weight)
    torch.testing.assert_close(given.base, plain.base, rtol=0, atol=0)
    grad_base = torch.randn(plain.base.shape, generator=g, dtype=torch.float64)
    grad_scale = None if plain.log_scale is None else torch.randn(x.shape[:-1], generator=g, dtype=x.dtype)
    torch.testing.assert_close(
        feature_kernel.backward(x, w, given, grad_base.clone(), grad_scale, weight=weight),
        feature_kernel.backward(x, w, plain, grad_base.clone(), grad_scale),
        rtol=0,
        atol=0,
    )


def test_projection_changed_in_place_is_seen_by_the_next_call():
    # Nothing outlives a call: a projection redrawn in place gives the result of a fresh tensor.
    (q, k, v), proj = _inputs(9)
    with torch.no_grad():
        before = favor_attention(q, k, v, proj)
        proj.copy_(random_projection(16, 8, generator=torch.Generator().manual_seed(9), dtype=proj.dtype))
        after = favor_attention(q, k, v, proj)
        fresh = favor_attention(q, k, v, proj.clone())
    torch.testing.assert_close(after, fresh, rtol=0, atol=0)
    assert not torch.allclose(after, before)


def test_gradient_through_the_carried_state_alone():
    # The second call's q, k, v need no gradient; its initial state does (it came from the first call).
    (q, k, v), w = _inputs(13, d=4, m=8)
    late = [t[:, :, 6:].detach() for t in (q, k, v)]
    _, state = favor_attention_step(q[:, :, :6], k[:, :, :6], v[:, :, :6], w, None, chunk_size=4)
    second, _ = favor_attention_step(*late, w, state, chunk_size=4)
    got = torch.autograd.grad(second.sum(), (q, k, v))
    whole = [torch.cat([t[:, :, :6], rest], dim=2) for t, rest in zip((q, k, v), late, strict=True)]
    reference = favor_attention(*whole, w, causal=True, chunk_size=4)[:, :, 6:]
    want = torch.autograd.grad(reference.sum(), (q, k, v))
    for g, r in zip(got, want, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)
