"""Behaviours the mutation run (tools/mutation.sh) found unguarded: each test fails on the mutant it names."""

import pytest
import torch

from favor.ops import (
    favor_attention,
    favor_attention_matrix,
    favor_cross_attention,
    naive_favor_attention,
    naive_favor_cross_attention,
    random_projection,
    softmax_attention,
    softmax_attention_matrix,
)


def _qkv(length=12, heads=2, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, heads, length, dim, generator=g, dtype=torch.float64) for _ in range(3)]


def test_exact_reference_is_bidirectional_by_default():
    # Guards `causal: bool = False` -> True in favor.ops.exact.softmax_attention.
    q, k, v = _qkv()
    weights = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1)
    torch.testing.assert_close(softmax_attention(q, k, v), weights @ v)


@pytest.mark.parametrize("bad", ["q", "k", "v"])
def test_every_input_must_be_four_dimensional(bad):
    # Guards `or` -> `and` between the three dimension checks of favor.ops.inputs.check_qkv.
    q, k, v = (t.float() for t in _qkv())
    inputs = {"q": q, "k": k, "v": v}
    inputs[bad] = inputs[bad][0]
    with pytest.raises(ValueError, match="must be \\(batch, heads, length, head_dim\\)"):
        favor_attention(inputs["q"], inputs["k"], inputs["v"], random_projection(16, 8))


def test_traced_bidirectional_attention_equals_the_eager_op():
    # Guards the untiled form favor_attention takes under tracing (ONNX export) in favor.ops.noncausal.
    q, k, v = (t.float() for t in _qkv(length=20))
    projection = random_projection(16, 8, generator=torch.Generator().manual_seed(1))
    pad = torch.zeros(2, 20, dtype=torch.bool)
    pad[1, 15:] = True

    def attend(q, k, v):
        return favor_attention(q, k, v, projection, key_padding_mask=pad)

    traced = torch.jit.trace(attend, (q, k, v), check_trace=False)
    torch.testing.assert_close(traced(q, k, v), attend(q, k, v), rtol=1e-5, atol=1e-6)


def _half_inputs(length=6):
    q, k, v = (t.float().to(torch.bfloat16) for t in _qkv(length=length))
    return q, k, v, random_projection(16, 8, generator=torch.Generator().manual_seed(2))


def test_decoding_step_computes_half_precision_inputs_in_float32():
    # Guards `t.to(dtype)` -> `t.to(None)` in favor_attention_step: bf16 inputs are computed in float32, so
    # the result is exactly the float32 computation on the same values, rounded once at the end.
    from favor.ops import favor_attention_step

    q, k, v, projection = _half_inputs()
    out, _ = favor_attention_step(q, k, v, projection, None)
    reference, _ = favor_attention_step(q.float(), k.float(), v.float(), projection, None)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, reference.to(torch.bfloat16))


def test_cross_twin_computes_half_precision_inputs_in_float32():
    # The same for the plain twin of cross-attention (`t.to(dtype)` and the final `.to(q.dtype)`).
    from favor.ops import naive_favor_cross_attention

    q, k, v, projection = _half_inputs()
    out = naive_favor_cross_attention(q, k, v, projection)
    reference = naive_favor_cross_attention(q.float(), k.float(), v.float(), projection)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, reference.to(torch.bfloat16))


def test_relu_backward_without_projection_fills_the_given_buffer():
    # Guards `out.copy_(grad_pre)` in ReluKernel.backward (the projection-free ReLU with a workspace).
    from favor.ops.features import KERNELS

    kernel = KERNELS["relu"]
    x = torch.randn(2, 3, 5, 8, generator=torch.Generator().manual_seed(3))
    features = kernel.forward(x, None)
    grad = torch.randn(features.base.shape, generator=torch.Generator().manual_seed(4))
    expected = kernel.backward(x, None, features, grad.clone(), None)
    buffer = torch.empty_like(expected)
    result = kernel.backward(x, None, features, grad.clone(), None, out=buffer)
    assert result.data_ptr() == buffer.data_ptr()
    torch.testing.assert_close(buffer, expected, rtol=0, atol=0)
    assert (expected == 0).any() and (expected != 0).any()  # the mask at relu's kink is exercised


def test_cross_read_computes_in_float32_even_under_autocast():
    # Guards `torch.autocast(..., enabled=False)` -> `enabled=True` in favor_cross_read: the read of a source
    # context stays in float32 (CPU autocast would run its matmuls in bfloat16), with or without an autocast
    # region around the caller.
    from favor.ops import favor_cross_context, favor_cross_read

    q, k, v = (t.float() for t in _qkv(length=9))
    projection = random_projection(32, 8, generator=torch.Generator().manual_seed(5))
    context = favor_cross_context(k, v, projection)
    reference = favor_cross_read(q.double(), context.double(), projection.double())
    plain = favor_cross_read(q, context, projection)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        under_autocast = favor_cross_read(q, context, projection)
    for out in (plain, under_autocast):
        assert out.dtype == torch.float32
        torch.testing.assert_close(out.double(), reference, rtol=1e-5, atol=1e-6)


def test_chi_row_norms_are_drawn_in_float64():
    # Guards the float64 draw of the chi row lengths in random_projection (docstring: "drawn on CPU in
    # float64"): lengths drawn in float32 would make every float64 row norm a float32 number.
    projection = random_projection(64, 16, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    norms = projection.norm(dim=1)
    assert (norms - norms.float().double()).abs().max() > 1e-9


@pytest.mark.parametrize("causal", [False, True])
def test_one_segment_per_row_equals_the_unsegmented_op(causal):
    # A single length bucket (every row one segment): guards reading the shape of a second bucket in
    # SegmentLayout.merge, which only exists when segment lengths differ.
    q, k, v = _qkv(length=10)
    projection = random_projection(16, 8, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    segment_ids = torch.full((2, 10), 3)
    packed = favor_attention(q, k, v, projection, causal=causal, segment_ids=segment_ids)
    torch.testing.assert_close(packed, favor_attention(q, k, v, projection, causal=causal))


@pytest.mark.parametrize("causal", [False, True])
def test_all_padding_packed_batch_gives_zeros_and_zero_gradients(causal):
    # Guards the empty layout of a packed batch with no real token (favor.ops.segments._sorted_segments).
    q, k, v = (t.requires_grad_(True) for t in _qkv(length=10))
    projection = random_projection(16, 8, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    padding = torch.ones(2, 10, dtype=torch.bool)
    segment_ids = torch.arange(10).repeat(2, 1)
    out = favor_attention(
        q, k, v, projection, causal=causal, segment_ids=segment_ids, key_padding_mask=padding
    )
    assert out.shape == v.shape and torch.equal(out, torch.zeros_like(out))
    out.sum().backward()
    for t in (q, k, v):
        assert t.grad is None or torch.equal(t.grad, torch.zeros_like(t))


def _rows_of_different_scale(length=16, heads=2, dim=16):
    """Float32 q, k, v whose second batch row has keys of norm ~40: its key log-scales sit ~100 below the
    first row's, so one stabilizer shared across rows would underflow the second row's weights to 0."""
    q, k, v = (t.float() for t in _qkv(length=length, heads=heads, dim=dim, seed=3))
    k = k.clone()
    k[1] = k[1] / k[1].norm(dim=-1, keepdim=True) * 40.0
    return q, k, v


@pytest.mark.parametrize("causal", [False, True])
def test_plain_twins_keep_one_key_stabilizer_per_batch_row(causal):
    # Guards `amax(dim=-1)` -> `amax(dim=None)` and `exp(log_scale - c)` -> `exp(log_scale + c)` in
    # favor.ops.common.noncausal_key_weights (the plain twin, the cross op and the matrix form use it).
    q, k, v = _rows_of_different_scale()
    projection = random_projection(32, 16, generator=torch.Generator().manual_seed(2))
    fast = favor_attention(q, k, v, projection, causal=causal)
    assert fast[1].abs().amax() > 0.1  # the second row attends: its outputs are averages of v, not 0
    torch.testing.assert_close(
        naive_favor_attention(q, k, v, projection, causal=causal), fast, rtol=1e-4, atol=1e-5
    )
    matrix = favor_attention_matrix(q, k, projection, causal=causal)
    torch.testing.assert_close(matrix @ v, fast, rtol=1e-4, atol=1e-5)
    if not causal:
        torch.testing.assert_close(favor_cross_attention(q, k, v, projection), fast, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(
            naive_favor_cross_attention(q, k, v, projection), fast, rtol=1e-4, atol=1e-5
        )


def test_random_projection_returns_the_dtype_asked_for():
    # Guards `.to(device=device, dtype=dtype)` -> dtype dropped in favor.ops.projection.random_projection
    # (the draw is made in float64, then cast).
    default = random_projection(8, 4, generator=torch.Generator().manual_seed(5))
    double = random_projection(8, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    half = random_projection(8, 4, generator=torch.Generator().manual_seed(5), dtype=torch.bfloat16)
    assert (default.dtype, double.dtype, half.dtype) == (
        torch.get_default_dtype(),
        torch.float64,
        torch.bfloat16,
    )
    torch.testing.assert_close(default, double.float())


def test_the_cross_twin_checks_the_shape_of_q():
    # Guards `check_cross_qkv(q, k, v)` -> `check_cross_qkv(None, k, v)` in naive_favor_cross_attention.
    q, k, v = (t.float() for t in _qkv(dim=8))
    with pytest.raises(ValueError, match="q must be \\(batch, heads, L_q, head_dim\\)"):
        naive_favor_cross_attention(q[..., :4], k, v, random_projection(16, 8))


def test_a_trainable_projection_is_refused_with_the_plain_twin_named():
    # Guards the message of favor.ops.attention._fixed: it names the function that does differentiate.
    q, k, v = (t.float() for t in _qkv(dim=8))
    projection = random_projection(16, 8).requires_grad_()
    with pytest.raises(ValueError, match="use the plain twin, favor.ops.naive_favor_attention"):
        favor_attention(q, k, v, projection)


@pytest.mark.parametrize("causal", [False, True])
def test_the_matrix_form_of_a_fully_padded_row_is_zero_like_the_op(causal):
    # Guards the denominator floor `tiny ** 0.5` -> `tiny ** 1.5` (0 in float32: 0 / 0) in
    # favor.ops.matrices.favor_attention_matrix.
    q, k, v = (t.float() for t in _qkv(dim=8))
    pad = torch.zeros(2, 12, dtype=torch.bool)
    pad[1] = True
    projection = random_projection(16, 8, generator=torch.Generator().manual_seed(6))
    matrix = favor_attention_matrix(q, k, projection, causal=causal, key_padding_mask=pad)
    assert torch.equal(matrix[1], torch.zeros_like(matrix[1]))
    fast = favor_attention(q, k, v, projection, causal=causal, key_padding_mask=pad)
    torch.testing.assert_close(matrix @ v, fast, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("favor", [False, True])
def test_the_matrix_forms_build_their_masks_on_the_inputs_device(favor):
    # Guards `device=q.device` -> None in favor.ops.matrices (_visible's ones, and the call that passes the
    # device): meta tensors stand in for a CUDA device, on which a CPU mask fails the same way.
    q, k = (t.float().to("meta") for t in _qkv(dim=8)[:2])
    pad = torch.zeros(2, 12, dtype=torch.bool, device="meta")
    if favor:
        out = favor_attention_matrix(
            q, k, random_projection(16, 8, device="meta"), causal=True, key_padding_mask=pad
        )
    else:
        out = softmax_attention_matrix(q, k, causal=True, key_padding_mask=pad)
    assert out.device.type == "meta" and out.shape == (2, 2, 12, 12)
