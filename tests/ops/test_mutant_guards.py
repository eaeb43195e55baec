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
