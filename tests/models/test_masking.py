"""Causal backbones never see the future; padding never changes real positions."""

import pytest
import torch

from favor.models import ModelConfig, PerformerConfig, SequenceModel
from tiny_models import VOCAB as V
from tiny_models import tiny_config

CAUSAL_BACKBONES = ["performer", "transformer", "rnn", "lstm", "gru", "cnn"]
ALL_BACKBONES = CAUSAL_BACKBONES + ["linformer"]


def tiny(backbone: str, **overrides) -> ModelConfig:
    # Chunks of 3: the lengths below are not multiples of it.
    return tiny_config(backbone, **{"attention": PerformerConfig(nb_features=8, chunk_size=3), **overrides})


def build(backbone: str, **overrides) -> SequenceModel:
    torch.manual_seed(0)
    return SequenceModel(tiny(backbone, **overrides)).double().eval()


@pytest.mark.parametrize(
    ("backbone", "position"),
    [(b, "learned") for b in CAUSAL_BACKBONES] + [("performer", "rotary"), ("transformer", "rotary")],
)
def test_causal_outputs_ignore_later_tokens(backbone, position):
    model = build(backbone, task="clm", causal=True, position=position)
    ids = torch.randint(0, V, (2, 11), generator=torch.Generator().manual_seed(0))
    changed = ids.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % V
    before = model(ids, output_hidden_states=True)
    after = model(changed, output_hidden_states=True)
    torch.testing.assert_close(after.logits[:, :6], before.logits[:, :6], rtol=0, atol=1e-10)
    assert not torch.allclose(after.logits[:, 6:], before.logits[:, 6:])
    for h_before, h_after in zip(before.hidden_states, after.hidden_states, strict=True):
        torch.testing.assert_close(h_after[:, :6], h_before[:, :6], rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("backbone", "causal"),
    [(b, False) for b in ALL_BACKBONES] + [(b, True) for b in CAUSAL_BACKBONES],
)
def test_padding_never_changes_real_positions(backbone, causal):
    model = build(backbone, task="token_classification", causal=causal)
    generator = torch.Generator().manual_seed(1)
    lengths = [9, 5, 7]
    padded = torch.randint(0, V, (3, 12), generator=generator)
    padding_mask = torch.arange(12)[None, :] >= torch.tensor(lengths)[:, None]
    out = model(padded, padding_mask=padding_mask, output_hidden_states=True)
    for row, length in enumerate(lengths):
        alone = model(padded[row : row + 1, :length], output_hidden_states=True)
        torch.testing.assert_close(out.logits[row, :length], alone.logits[0], rtol=0, atol=1e-9)
        for h_batch, h_alone in zip(out.hidden_states, alone.hidden_states, strict=True):
            torch.testing.assert_close(h_batch[row, :length], h_alone[0], rtol=0, atol=1e-9)


@pytest.mark.parametrize("task", ["sequence_classification", "contact"])
@pytest.mark.parametrize("backbone", ["performer", "lstm", "cnn"])
def test_padding_never_changes_pooled_or_pair_outputs(backbone, task):
    model = build(backbone, task=task)
    ids = torch.randint(0, V, (1, 6), generator=torch.Generator().manual_seed(2))
    padded = torch.cat([ids, torch.full((1, 4), 3)], dim=1)
    padding_mask = torch.arange(10)[None, :] >= 6
    alone = model(ids).logits
    with_padding = model(padded, padding_mask=padding_mask).logits
    if task == "contact":
        with_padding = with_padding[:, :6, :6]
    torch.testing.assert_close(with_padding, alone, rtol=0, atol=1e-9)


def test_padding_token_values_do_not_matter_for_loss():
    model = build("transformer", task="mlm")
    ids = torch.randint(0, V, (2, 8), generator=torch.Generator().manual_seed(3))
    padding_mask = torch.zeros(2, 8, dtype=torch.bool)
    padding_mask[0, 5:] = True
    other = ids.clone()
    other[0, 5:] = 0
    labels = ids.clone()
    first = model(ids, padding_mask=padding_mask, labels=labels).loss
    second = model(other, padding_mask=padding_mask, labels=labels).loss
    torch.testing.assert_close(first, second, rtol=0, atol=1e-12)


def test_recurrent_backbones_reject_left_padding():
    model = build("lstm")
    padding_mask = torch.zeros(1, 5, dtype=torch.bool)
    padding_mask[0, 0] = True
    with pytest.raises(ValueError, match="right padding"):
        model(torch.zeros(1, 5, dtype=torch.long), padding_mask=padding_mask)


def test_contact_head_is_symmetric_on_concatenated_sequences():
    for kind in ("bilinear", "mlp"):
        model = build("performer", task="contact", pair_head=kind)
        first, second = torch.randint(0, V, (1, 5)), torch.randint(0, V, (1, 4))
        logits = model(torch.cat([first, second], dim=1)).logits
        assert logits.shape == (1, 9, 9)
        torch.testing.assert_close(logits, logits.transpose(1, 2))
        # The inter-sequence block of the pair map.
        assert logits[:, :5, 5:].shape == (1, 5, 4)
