"""Incremental decoding gives the logits of a full forward pass; generation on top of it."""

import pytest
import torch

from favor.models import (
    PerformerConfig,
    SequenceModel,
    generate,
    sample_next_token,
)
from tiny_models import VOCAB as V
from tiny_models import tiny_config

CAUSAL_BACKBONES = ["performer", "transformer", "rnn", "lstm", "gru", "cnn"]


def build(backbone: str, *, dtype=torch.float64, **overrides) -> SequenceModel:
    torch.manual_seed(0)
    return (
        SequenceModel(tiny_config(backbone, **{"task": "clm", "causal": True, **overrides})).to(dtype).eval()
    )


def decode_in_pieces(model: SequenceModel, ids: torch.Tensor, pieces: list[int]) -> torch.Tensor:
    state = model.init_state(ids.shape[0])
    logits, start = [], 0
    for size in pieces:
        chunk, state = model.step(ids[:, start : start + size], state)
        logits.append(chunk)
        start += size
    assert state.position == ids.shape[1]
    return torch.cat(logits, dim=1)


CASES = [(b, "learned") for b in CAUSAL_BACKBONES] + [("performer", "rotary"), ("transformer", "rotary")]


@pytest.mark.parametrize(("backbone", "position"), CASES)
def test_stepwise_logits_equal_full_forward(backbone, position):
    model = build(backbone, position=position)
    ids = torch.randint(0, V, (2, 13), generator=torch.Generator().manual_seed(0))
    full = model(ids).logits
    one_by_one = decode_in_pieces(model, ids, [1] * 13)
    torch.testing.assert_close(one_by_one, full, rtol=0, atol=1e-10)
    # A prompt in one call, then a chunk, then single tokens.
    mixed = decode_in_pieces(model, ids, [5, 3, 1, 4])
    torch.testing.assert_close(mixed, full, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kernel", ["softmax_hyperbolic", "relu"])
def test_performer_kernels_decode_stepwise(kernel):
    model = build("performer", attention=PerformerConfig(nb_features=8, chunk_size=4, kernel=kernel))
    ids = torch.randint(0, V, (1, 9), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(
        decode_in_pieces(model, ids, [2] * 4 + [1]), model(ids).logits, rtol=0, atol=1e-10
    )


def test_stepwise_decoding_in_float32():
    model = build("performer", dtype=torch.float32)
    ids = torch.randint(0, V, (2, 10), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(decode_in_pieces(model, ids, [1] * 10), model(ids).logits, rtol=0, atol=1e-5)


def test_step_does_not_modify_the_given_state():
    model = build("transformer")
    ids = torch.randint(0, V, (1, 6), generator=torch.Generator().manual_seed(3))
    _, state = model.step(ids[:, :4], None)
    first, _ = model.step(ids[:, 4:5], state)
    again, _ = model.step(ids[:, 4:5], state)
    torch.testing.assert_close(first, again, rtol=0, atol=0)


def test_bidirectional_models_refuse_to_decode():
    model = build("performer", task="mlm", causal=False)
    with pytest.raises(ValueError, match="causal"):
        model.init_state(1)


def test_generate_greedy_matches_argmax_of_full_forward():
    model = build("performer", dtype=torch.float32)
    prompt = torch.randint(0, V, (2, 4), generator=torch.Generator().manual_seed(4))
    out = generate(model, prompt, max_new_tokens=5, temperature=0.0)
    assert out.shape == (2, 9)
    assert torch.equal(out[:, :4], prompt)
    for t in range(4, 9):
        assert torch.equal(model(out[:, :t]).logits[:, -1].argmax(-1), out[:, t])


@pytest.mark.parametrize("backbone", CAUSAL_BACKBONES)
def test_generate_is_reproducible_with_a_generator(backbone):
    model = build(backbone, dtype=torch.float32)
    prompt = torch.randint(0, V, (2, 3), generator=torch.Generator().manual_seed(5))
    first = generate(
        model, prompt, max_new_tokens=6, top_k=5, top_p=0.9, generator=torch.Generator().manual_seed(0)
    )
    second = generate(
        model, prompt, max_new_tokens=6, top_k=5, top_p=0.9, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(first, second) and first.shape == (2, 9)


def test_generate_stops_at_eos_and_fills_finished_rows():
    model = build("gru", dtype=torch.float32)
    with torch.no_grad():
        # Make token 2 overwhelmingly likely everywhere.
        model.head.decoder.bias.fill_(-50.0)
        model.head.decoder.bias[2] = 50.0
    out = generate(model, torch.ones(3, 2, dtype=torch.long), max_new_tokens=10, eos_id=2)
    assert out.shape == (3, 3) and (out[:, 2] == 2).all()


def test_sampling_filters():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    generator = torch.Generator().manual_seed(0)
    picks = {int(sample_next_token(logits, top_k=2, generator=generator)) for _ in range(50)}
    assert picks <= {2, 3}
    picks = {int(sample_next_token(logits, top_p=0.5, generator=generator)) for _ in range(50)}
    assert picks == {3}
    assert int(sample_next_token(logits, temperature=0.0)) == 3
    with pytest.raises(ValueError, match="top_p"):
        sample_next_token(logits, top_p=0.0)
