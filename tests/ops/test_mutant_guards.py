"""Behaviours the mutation run (tools/mutation.sh) found unguarded: each test fails on the mutant it names."""

import pytest
import torch

from favor.ops import favor_attention, random_projection, softmax_attention


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
