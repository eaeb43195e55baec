"""Packed rows through the whole model: a row of several proteins (``segment_ids``) gives every protein the
logits and hidden states it gets alone, positions restarting at each protein (learned and rotary)."""

import pytest
import torch

from favor.models import SequenceModel
from tiny_models import VOCAB, tiny_config

LENGTHS = [5, 11, 3]


def _packed_row():
    g = torch.Generator().manual_seed(3)
    pieces = [torch.randint(0, VOCAB, (n,), generator=g) for n in LENGTHS]
    ids = torch.cat(pieces + [torch.zeros(4, dtype=torch.long)])[None]  # 4 padding tokens at the end
    segment_ids = torch.cat([torch.full((n,), i) for i, n in enumerate(LENGTHS)] + [torch.full((4,), 7)])[
        None
    ]
    padding = torch.zeros_like(ids, dtype=torch.bool)
    padding[0, sum(LENGTHS) :] = True
    return pieces, ids, segment_ids, padding


@pytest.mark.parametrize("backbone", ["performer", "transformer"])
@pytest.mark.parametrize("position", ["learned", "rotary"])
@pytest.mark.parametrize("causal", [False, True])
def test_packed_row_equals_proteins_alone(backbone, position, causal):
    torch.manual_seed(0)
    task = "clm" if causal else "mlm"
    model = SequenceModel(tiny_config(backbone, position=position, causal=causal, task=task)).double().eval()
    pieces, ids, segment_ids, padding = _packed_row()
    with torch.no_grad():
        packed = model(ids, padding_mask=padding, segment_ids=segment_ids, output_hidden_states=True)
        start = 0
        for piece in pieces:
            alone = model(piece[None], output_hidden_states=True)
            stop = start + len(piece)
            torch.testing.assert_close(packed.logits[:, start:stop], alone.logits, rtol=1e-10, atol=1e-10)
            for got, want in zip(packed.hidden_states, alone.hidden_states, strict=True):
                torch.testing.assert_close(got[:, start:stop], want, rtol=1e-10, atol=1e-10)
            start = stop
        unpacked = model(ids, padding_mask=padding)
    # Without segment_ids the proteins see each other (and the second one sits at positions 5..15).
    assert (unpacked.logits[0, 5:16] - packed.logits[0, 5:16]).abs().max() > 1e-4


@pytest.mark.parametrize("backbone", ["linformer", "lstm", "cnn"])
def test_backbones_that_mix_positions_refuse_packing(backbone):
    model = SequenceModel(tiny_config(backbone))
    _, ids, segment_ids, padding = _packed_row()
    with pytest.raises(ValueError, match="segment"):
        model(ids, padding_mask=padding, segment_ids=segment_ids)
